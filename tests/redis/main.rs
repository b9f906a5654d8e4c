//! `RedisStore` against real `redis-server`s that the tests start (see `tests/support`): the
//! script and its keys, the deny cache, stacks of policies decided as `MemoryStore` decides
//! them, failures and recovery (and their metrics), one budget across processes, failovers
//! under Redis Sentinel, and Redis Cluster.
//!
//! The store-independent scenarios live in `tests/conformance.rs`, which runs them on every
//! store.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod coalescing;
mod deny_cache;
mod failures;
#[cfg(feature = "metrics")]
mod metrics;
mod properties;
mod script;
mod sentinel;
mod shared;
#[cfg(feature = "tls")]
mod tls;
