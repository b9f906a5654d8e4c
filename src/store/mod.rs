//! Where the state of every key lives, and the one question it answers.
//!
//! A [`Store`] keeps one state per (policy, key) and decides a stack of
//! [`Policy`](crate::Policy)s for a key and a cost at once, answering with
//! [`Decisions`](crate::Decisions). [`MemoryStore`] keeps the state in this process; its future
//! is always ready, so checking costs no allocation and no wakeup. A network store returns a
//! future that really waits, and the service handles both through the same path.
//!
//! ```
//! use tower_ratelimit::{MemoryStore, Policy, Quota, Store};
//!
//! let store = MemoryStore::new();
//! let api = store.register(&[Policy::new("api", Quota::per_second(2))])?;
//! let decisions = store.check_now(&api, b"alice", 1);
//! assert!(decisions.is_allowed());
//! assert_eq!(decisions.as_slice()[0].remaining(), 1);
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod registry;
mod table;
mod traits;

pub use memory::{MemoryStack, MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::{
    FailurePolicy, RedisStack, RedisStore, RedisStoreBuilder, RedisStoreError, RedisStoreFuture,
};
pub use traits::Store;
