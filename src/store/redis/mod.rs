//! [`RedisStore`]: one budget per (policy, key) shared by every process on a Redis server or
//! Redis Cluster.
//!
//! Requires the `redis` feature. Each (policy, key) is one Redis key holding its theoretical
//! arrival time; one Lua script decides a whole stack of policies atomically inside Redis, with
//! Redis's clock, exactly as [`MemoryStore`](crate::MemoryStore) decides in memory. See
//! [`RedisStore`] for the connection, the local deny cache and the [`FailurePolicy`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_ratelimit::store::{FailurePolicy, RedisStore};
//! use tower_ratelimit::{Policy, Quota, RateLimitLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::builder()
//!     .url(std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into()))
//!     .prefix("api")
//!     .timeout(Duration::from_millis(25))
//!     .on_failure(FailurePolicy::Local)
//!     .build()
//!     .await?;
//! let layer = RateLimitLayer::builder()
//!     .policy(Policy::new("per-second", Quota::per_second(10)))
//!     .policy(Policy::new("per-hour", Quota::per_hour(600)))
//!     .store(store)
//!     .build()?;
//! # Ok(()) }
//! ```

mod batch;
mod builder;
mod check;
mod connection;
mod deny_cache;
mod error;
mod future;
mod health;
mod policy;
mod script;
mod sentinel;
mod store;

pub use builder::RedisStoreBuilder;
pub use error::RedisStoreError;
pub use future::RedisStoreFuture;
pub use policy::FailurePolicy;
pub use store::{RedisStack, RedisStore};
