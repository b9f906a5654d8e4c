//! Random schedules of stack checks give the same decisions on a real Redis as in memory, for
//! short keys and for keys kept as their digests, and for quotas at the edges of what the Redis
//! store accepts.

use std::cell::Cell;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower_ratelimit::{
    Clock, ManualClock, MemoryStore, Policy, Quota, RedisStore, Store, MAX_KEY_LEN,
};

use crate::support::{redis_url, strict_store};

#[derive(Clone, Debug)]
struct Schedule {
    /// (interval in µs, burst, shadow) of each policy of the stack.
    policies: Vec<(u64, u32, bool)>,
    /// (advance in µs, cost, key, peek afterwards)
    steps: Vec<(u64, u32, u8, bool)>,
}

/// The bytes of key `k`: keys 0 and 1 are one byte, 2 and 3 longer than the stores keep as they
/// are (kept as their digests).
fn key_bytes(k: u8) -> Vec<u8> {
    match k {
        0 | 1 => vec![k],
        _ => vec![k; MAX_KEY_LEN + usize::from(k)],
    }
}

/// The policies of one generated case, from (interval in µs, burst, shadow), with names of
/// that case only: a name keeps its quota for the life of a store.
pub(crate) fn case_policies(case: u32, specs: &[(u64, u32, bool)]) -> Vec<Policy> {
    specs
        .iter()
        .enumerate()
        .map(|(i, &(interval_us, burst, shadow))| {
            let quota = Quota::with_period(Duration::from_micros(interval_us)).allow_burst(burst);
            Policy::new(format!("case{case}-{i}"), quota).shadow(shadow)
        })
        .collect()
}

fn schedules() -> impl Strategy<Value = Schedule> {
    let policy = (1u64..2_000_000, 1u32..=6, prop::bool::weighted(0.2));
    (prop::collection::vec(policy, 2..=3), 1u64..2_000_000).prop_flat_map(|(policies, scale)| {
        let step = (0u64..=1000, 1u32..=3, 0u8..4, any::<bool>())
            .prop_map(move |(f, cost, key, peek)| (scale * f / 250, cost, key, peek));
        prop::collection::vec(step, 1..40).prop_map(move |steps| Schedule {
            policies: policies.clone(),
            steps,
        })
    })
}

#[test]
fn random_stack_schedules_give_the_same_decisions_in_redis_and_in_memory() {
    let redis = redis_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = crate::support::clock_at_unix_time();
    let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let store = |deny_cache: bool| {
        strict_store("properties")
            .url(redis.url())
            .clock(clock.clone())
            .deny_cache(deny_cache)
            .build()
    };
    let (script, cached): (RedisStore, RedisStore) =
        rt.block_on(async { (store(false).await.unwrap(), store(true).await.unwrap()) });
    let case = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&schedules(), |schedule| {
            case.set(case.get() + 1);
            let policies = case_policies(case.get(), &schedule.policies);
            let reference = memory.register(&policies).unwrap();
            let stacks = [
                ("script", &script, script.register(&policies).unwrap()),
                ("deny cache", &cached, cached.register(&policies).unwrap()),
            ];
            for (i, &(advance, cost, key, peek)) in schedule.steps.iter().enumerate() {
                clock.advance(Duration::from_micros(advance));
                let key = key_bytes(key);
                let expected = memory.check_now(&reference, &key, cost);
                let peeked = peek.then(|| memory.peek_now(&reference, &key));
                for (name, store, stack) in &stacks {
                    let (got, got_peek) = rt.block_on(async {
                        let got = store.check(stack, &key, cost).await.unwrap();
                        let got_peek = match peek {
                            true => Some(store.peek(stack, &key).await.unwrap()),
                            false => None,
                        };
                        (got, got_peek)
                    });
                    prop_assert_eq!(&got, &expected, "{}, step {} (cost {})", name, i, cost);
                    prop_assert_eq!(&got_peek, &peeked, "{}, peek after step {}", name, i);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The longest window the Redis store accepts, in µs: the script counts in doubles.
const LONGEST_WINDOW_US: u64 = 1 << 52;

#[derive(Clone, Debug)]
struct EdgeSchedule {
    /// (interval in µs, burst, shadow) of each policy of the stack.
    policies: Vec<(u64, u32, bool)>,
    /// The clock's reading before the first check, in µs.
    start: u64,
    deny_cache: bool,
    /// (advance, cost), each a choice among the scales of the stack's quotas, with a random
    /// number to draw from.
    steps: Vec<(u8, u8, u64)>,
}

/// Quotas from one cell per µs to one per 2^52 µs, bursts from 1 to `u32::MAX`, each window
/// at most the longest the Redis store accepts.
fn edge_policy() -> impl Strategy<Value = (u64, u32, bool)> {
    let interval = prop_oneof![
        Just(1u64),
        1u64..1_000,
        1u64..1 << 32,
        Just(1u64 << 20),
        Just(1u64 << 51),
        Just(LONGEST_WINDOW_US),
    ];
    let burst = prop_oneof![Just(1u32), 1u32..10, Just(u32::MAX), 1u32..=u32::MAX];
    (interval, burst, prop::bool::weighted(0.2)).prop_filter(
        "a window the Redis store accepts",
        |&(interval, burst, _)| {
            interval
                .checked_mul(u64::from(burst))
                .is_some_and(|window| window <= LONGEST_WINDOW_US)
        },
    )
}

fn edge_schedules() -> impl Strategy<Value = EdgeSchedule> {
    let start = prop_oneof![
        Just(0u64),
        Just(1_700_000_000_000_000u64),
        Just(LONGEST_WINDOW_US - (1 << 45)),
    ];
    (
        prop::collection::vec(edge_policy(), 1..=3),
        start,
        any::<bool>(),
        prop::collection::vec((0u8..4, 0u8..6, any::<u64>()), 1..30),
    )
        .prop_map(|(policies, start, deny_cache, steps)| EdgeSchedule {
            policies,
            start,
            deny_cache,
            steps,
        })
}

#[test]
fn quotas_at_the_edges_give_the_same_decisions_in_redis_and_in_memory() {
    let redis = redis_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let case = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&edge_schedules(), |schedule| {
            case.set(case.get() + 1);
            let policies = case_policies(1_000_000 + case.get(), &schedule.policies);
            let clock = ManualClock::new();
            clock.advance(Duration::from_micros(schedule.start));
            let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
            let store = rt
                .block_on(
                    strict_store("edges")
                        .url(redis.url())
                        .clock(clock.clone())
                        .deny_cache(schedule.deny_cache)
                        .build(),
                )
                .unwrap();
            let (reference, stack) = (
                memory.register(&policies).unwrap(),
                store.register(&policies).unwrap(),
            );
            let specs = &schedule.policies;
            let least_interval = specs.iter().map(|p| p.0).min().unwrap();
            let longest_window = specs.iter().map(|p| p.0 * u64::from(p.1)).max().unwrap();
            let least_burst = specs.iter().map(|p| p.1).min().unwrap();
            let most_burst = specs.iter().map(|p| p.1).max().unwrap();
            for (i, &(advance, cost, n)) in schedule.steps.iter().enumerate() {
                let advance = match advance {
                    0 => 0,
                    1 => n % 3,
                    2 => n % (least_interval + 1),
                    _ => n % (longest_window + 1),
                };
                // The script counts exactly below 2^52 µs of the clock; later checks are the
                // failure policy's.
                if clock.now_nanos() / 1000 + advance >= LONGEST_WINDOW_US {
                    break;
                }
                clock.advance(Duration::from_micros(advance));
                // Costs up to the burst, and above some policy's (never admitted by it).
                let cost = match cost {
                    0 => 1,
                    1 => least_burst,
                    2 => least_burst.saturating_add(1),
                    3 => most_burst,
                    4 => (n % u64::from(most_burst)) as u32 + 1,
                    _ => u32::MAX,
                };
                let expected = memory.check_now(&reference, b"k", cost);
                let got = rt.block_on(store.check(&stack, b"k", cost)).unwrap();
                prop_assert_eq!(&got, &expected, "step {} (cost {})", i, cost);
                let expected = memory.peek_now(&reference, b"k");
                let got = rt.block_on(store.peek(&stack, b"k")).unwrap();
                prop_assert_eq!(&got, &expected, "peek after step {}", i);
            }
            Ok(())
        })
        .unwrap();
}
