//! [`RedisStore`]: one budget shared by every process on a Redis server or Redis Cluster.
//!
//! Requires the `redis` feature. Each limited key is one Redis key holding its theoretical
//! arrival time; one Lua script decides atomically inside Redis, with Redis's clock, exactly
//! as [`MemoryStore`](crate::MemoryStore) decides in memory. See [`RedisStore`] for the
//! connection, the local deny cache and the [`FailurePolicy`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_ratelimit::store::{FailurePolicy, RedisStore};
//! use tower_ratelimit::{Quota, RateLimitLayer};
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
//!     .quota(Quota::per_minute(600))
//!     .store(store)
//!     .build()?;
//! # Ok(()) }
//! ```

mod deny_cache;
mod error;
mod health;
mod key;
mod policy;
mod script;
mod store;

pub use error::RedisStoreError;
pub use key::RedisKey;
pub use policy::FailurePolicy;
pub use store::{RedisStore, RedisStoreBuilder, RedisStoreFuture};
