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

/// The TAT in µs that `value`, the value of a store's Redis key, holds for `policy`: one record
/// per policy, its name, a zero byte and the TAT as a little-endian 64-bit float.
fn tat_in(value: &[u8], policy: &str) -> Option<u64> {
    let mut rest = value;
    while let Some(end) = rest.iter().position(|&b| b == 0) {
        let (name, tail) = rest.split_at(end);
        let tat = f64::from_le_bytes(tail.get(1..9)?.try_into().ok()?);
        if name == policy.as_bytes() {
            return Some(tat as u64);
        }
        rest = &tail[9..];
    }
    None
}

/// A Redis key's value as the script writes it: a record of each policy and its TAT in µs.
fn records(tats: &[(&str, f64)]) -> Vec<u8> {
    let mut value = Vec::new();
    for (policy, tat) in tats {
        value.extend_from_slice(policy.as_bytes());
        value.push(0);
        value.extend_from_slice(&tat.to_le_bytes());
    }
    value
}

/// The TAT in µs that `key` holds for `policy`, if it holds one.
fn stored_tat(conn: &mut redis::Connection, key: &[u8], policy: &str) -> Option<u64> {
    let value: Option<Vec<u8>> = redis::Commands::get(conn, key).unwrap();
    tat_in(&value?, policy)
}

#[test]
fn records_are_read_back_by_policy() {
    let value = records(&[("a", 5.0), ("per-minute", 1_700_000_000_000_123.0)]);
    assert_eq!(tat_in(&value, "a"), Some(5));
    assert_eq!(tat_in(&value, "per-minute"), Some(1_700_000_000_000_123));
    assert_eq!(tat_in(&value, "b"), None);
    assert_eq!(tat_in(b"a\0short", "a"), None);
}
