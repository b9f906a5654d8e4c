//! The Lua script against a real `redis-server`: it matches the Rust GCRA on random sequences,
//! keys expire on their own, denials and peeks write nothing, `SCRIPT FLUSH` is survived, and
//! the deny cache spares round trips.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis::Commands;
use tower_ratelimit::store::RedisStoreError;
use tower_ratelimit::{FailurePolicy, ManualClock, MemoryStore, Quota, RedisStore, Store};

use support::{command_calls, RedisServer};

async fn store(url: &str, clock: Option<&ManualClock>, deny_cache: bool) -> RedisStore {
    let mut builder = RedisStore::builder()
        .url(url)
        .prefix(support::unique_prefix("script"))
        .deny_cache(deny_cache)
        .on_failure(FailurePolicy::Deny)
        .timeout(Duration::from_secs(5));
    if let Some(clock) = clock {
        builder = builder.clock(clock.clone());
    }
    builder.build().await.unwrap()
}

/// Redis's count of writes since the last save: it moves on every write, and only then.
fn writes(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[derive(Clone, Debug)]
struct Case {
    interval_us: u64,
    burst: u32,
    /// (advance in µs, cost — 0 for a peek —, key)
    steps: Vec<(u64, u32, u8)>,
}

fn cases() -> impl Strategy<Value = Case> {
    (1u64..2_000_000, 1u32..=12).prop_flat_map(|(interval_us, burst)| {
        let step = (0u64..=1000, 0u32..=burst + 1, 0u8..3)
            .prop_map(move |(f, cost, key)| (interval_us * f / 250, cost, key));
        proptest::collection::vec(step, 1..60).prop_map(move |steps| Case {
            interval_us,
            burst,
            steps,
        })
    })
}

fn same_outcome(
    memory: Result<tower_ratelimit::Decision, tower_ratelimit::InsufficientCapacity>,
    redis: Result<tower_ratelimit::Decision, RedisStoreError>,
) -> Result<(), String> {
    match (memory, redis) {
        (Ok(m), Ok(r)) if m == r => Ok(()),
        (Err(m), Err(r)) if r.insufficient_capacity() == Some(m) => Ok(()),
        (m, r) => Err(format!("memory {m:?} != redis {r:?}")),
    }
}

#[test]
fn script_matches_the_rust_gcra_on_random_sequences() {
    let server = support::redis_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_700_000_000));
    let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let (script, cached) = rt.block_on(async {
        (
            store(&server.url(), Some(&clock), false).await,
            store(&server.url(), Some(&clock), true).await,
        )
    });
    let case_number = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&cases(), |case| {
            case_number.set(case_number.get() + 1);
            let quota =
                Quota::with_period(Duration::from_micros(case.interval_us)).allow_burst(case.burst);
            for (i, &(advance, cost, key)) in case.steps.iter().enumerate() {
                clock.advance(Duration::from_micros(advance));
                let key = format!("case{}-{key}", case_number.get());
                let expected = if cost == 0 {
                    Ok(memory.peek_now(&key, &quota))
                } else {
                    memory.check_now(&key, &quota, cost)
                };
                for (name, store) in [("script", &script), ("deny cache", &cached)] {
                    let got = rt.block_on(async {
                        if cost == 0 {
                            store.peek(&key, &quota).await
                        } else {
                            store.check(&key, &quota, cost).await
                        }
                    });
                    same_outcome(expected, got).map_err(|e| {
                        TestCaseError::fail(format!("{name}, step {i} (cost {cost}): {e}"))
                    })?;
                }
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn keys_hold_the_tat_and_expire_when_the_key_is_fresh_again() {
    let server = RedisServer::start();
    let store = store(&server.url(), None, false).await;
    let quota = Quota::per_second(10);
    let decision = store.check(&"alice", &quota, 4).await.unwrap();
    assert_eq!(decision.reset_after(), Duration::from_millis(400));
    let key = store.redis_key(&"alice");
    assert!(
        key.ends_with(b":{alice}"),
        "{}",
        String::from_utf8_lossy(&key)
    );

    let mut conn = server.connection();
    let pttl: i64 = conn.pttl(&key).unwrap();
    assert!((300..=400).contains(&pttl), "PTTL {pttl}");
    let tat: u64 = conn.get(&key).unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let now = secs * 1_000_000 + micros;
    assert!(
        tat > now && tat <= now + 400_000,
        "TAT {tat} should be within 400 ms after {now}"
    );

    // A denial leaves the expiry as it was; a conforming check moves it.
    store.check(&"alice", &quota, 6).await.unwrap();
    let pttl: i64 = conn.pttl(&key).unwrap();
    assert!((900..=1000).contains(&pttl), "PTTL {pttl}");
}

#[tokio::test]
async fn denials_and_peeks_write_nothing() {
    let server = RedisServer::start();
    let store = store(&server.url(), None, false).await;
    let quota = Quota::per_minute(5);
    let mut conn = server.connection();
    let before = writes(&mut conn);
    assert!(store.check(&7u64, &quota, 5).await.unwrap().is_allowed());
    let after_one = writes(&mut conn);
    assert_eq!(after_one, before + 1, "a conforming check writes once");
    for _ in 0..100 {
        assert!(!store.check(&7u64, &quota, 1).await.unwrap().is_allowed());
        assert!(!store.peek(&7u64, &quota).await.unwrap().is_allowed());
        assert!(store.peek(&8u64, &quota).await.unwrap().is_allowed());
    }
    assert_eq!(writes(&mut conn), after_one);
    let keys: Vec<Vec<u8>> = conn.keys("*").unwrap();
    assert_eq!(keys, vec![store.redis_key(&7u64)], "peeks create no keys");
}

#[tokio::test]
async fn the_script_is_reloaded_after_script_flush() {
    let server = RedisServer::start();
    let store = store(&server.url(), None, false).await;
    let quota = Quota::per_minute(3);
    let mut conn = server.connection();
    assert!(store.check(&"k", &quota, 1).await.unwrap().is_allowed());
    let loads = command_calls(&mut conn, "script|load");
    let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    // The failure policy is Deny: an answer here comes from the script.
    let decision = store.check(&"k", &quota, 1).await.unwrap();
    assert!(decision.is_allowed());
    assert_eq!(decision.remaining(), 1);
    assert_eq!(command_calls(&mut conn, "script|load"), loads + 1);
    assert_eq!(store.check(&"k", &quota, 1).await.unwrap().remaining(), 0);
}

#[tokio::test]
async fn the_deny_cache_answers_a_flooded_key_without_round_trips() {
    let server = RedisServer::start();
    let store = store(&server.url(), None, true).await;
    let quota = Quota::per_minute(10);
    let mut conn = server.connection();
    let before = command_calls(&mut conn, "evalsha");
    let mut allowed = 0;
    let mut last = None;
    for _ in 0..1000 {
        let decision = store.check(&"flood", &quota, 1).await.unwrap();
        allowed += u32::from(decision.is_allowed());
        last = Some(decision);
    }
    let calls = command_calls(&mut conn, "evalsha") - before;
    assert_eq!(allowed, 10);
    assert!(calls <= 11, "{calls} script calls for 1000 checks");
    let last = last.unwrap();
    assert_eq!(last.remaining(), 0);
    // Answered locally, yet with Redis's wait: close to the 6 s interval.
    assert!(
        last.retry_after() > Duration::from_secs(5) && last.retry_after() <= Duration::from_secs(6),
        "{:?}",
        last.retry_after()
    );
    // Another key still goes to Redis.
    assert!(store.check(&"calm", &quota, 1).await.unwrap().is_allowed());
    assert_eq!(command_calls(&mut conn, "evalsha") - before, calls + 1);
}

#[tokio::test]
async fn a_denied_costly_check_does_not_deny_a_cheaper_one_from_the_cache() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = store(&server.url(), Some(&clock), true).await;
    let quota = Quota::per_minute(10);
    assert!(store.check(&"k", &quota, 7).await.unwrap().is_allowed());
    // Cost 4 is denied and cached; cost 3 still fits and must go to Redis and be allowed.
    assert!(!store.check(&"k", &quota, 4).await.unwrap().is_allowed());
    assert!(!store.check(&"k", &quota, 4).await.unwrap().is_allowed());
    let three = store.check(&"k", &quota, 3).await.unwrap();
    assert!(three.is_allowed(), "{three:?}");
    assert_eq!(three.remaining(), 0);
}
