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
//!
//! # Memory of the in-memory store
//!
//! [`MemoryStore`] tracks at most [`max_keys`](MemoryStoreBuilder::max_keys) keys (default
//! 1 000 000), so a client that sends a fresh key with every request cannot grow memory without
//! bound. Measured in a real process (`cargo bench --bench key_memory`; figures in BENCHES.md),
//! a store filled to its cap holds about 185 bytes of resident memory per key checked by a stack
//! of two policies, and about 140 bytes per key with one policy, for keys of up to 24 bytes.
//! Keys of 25 to [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) (64) bytes are boxed and cost more (about
//! 255 bytes per key at 40 bytes, 265 at 64); a longer key is kept as a 39-byte digest of
//! itself, so a key's memory does not grow with its length (about 235 bytes at 200 bytes).
//!
//! Plan for 320 bytes per key, whatever its length, with up to two policies: a server whose
//! only growing state is the store stays within `320 × max_keys` bytes above what it holds
//! without keys. `benches/flood.sh`
//! checks this with 5 000 000 fresh API keys against `examples/policies.rs` (bound:
//! 320 × 1 000 000 bytes + 32 MiB for the whole process), and `tests/key_flood.rs` with a cap of
//! 10 000 in every test run.

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
