//! Random schedules of stack checks give the same decisions on a real Redis as in memory, for
//! short keys and for keys kept as their digests.

use std::cell::Cell;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower_ratelimit::{MemoryStore, Policy, Quota, RedisStore, Store, MAX_KEY_LEN};

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
