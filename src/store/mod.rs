//! Where the state of every key lives, and the one question it answers.
//!
//! A [`Store`] takes a key, a [`Quota`](crate::Quota) and a cost and answers with a
//! [`Decision`](crate::Decision). [`MemoryStore`] keeps the state in this process; its future is
//! always ready, so checking costs no allocation and no wakeup. A network store returns a future
//! that really waits, and the service handles both through the same path.
//!
//! ```
//! use tower_ratelimit::{MemoryStore, Quota, Store};
//!
//! let store = MemoryStore::new();
//! let quota = Quota::per_second(2);
//! let decision = store.check_now(&"alice", &quota, 1).unwrap();
//! assert!(decision.is_allowed());
//! assert_eq!(decision.remaining(), 1);
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod traits;

pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::{
    FailurePolicy, RedisKey, RedisStore, RedisStoreBuilder, RedisStoreError, RedisStoreFuture,
};
pub use traits::Store;
