//! Coalesced checks: checks that queue behind a call in flight share the next call and get the
//! decisions one call per check would give; a hot key queued many times is decided in arrival
//! order; a busy queue is not a Redis failure.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower_ratelimit::store::RedisStoreFuture;
use tower_ratelimit::{
    Decision, Decisions, ManualClock, MemoryStore, Policy, Quota, RedisStack, RedisStore, Store,
};

use crate::properties::case_policies;
use crate::support::{
    cluster_command_calls, command_calls, strict_store, RedisCluster, RedisServer,
};

/// Checks that arrive together; `None` as cost is a peek.
#[derive(Clone, Debug)]
struct Group {
    /// Time since the last group, in µs.
    advance: u64,
    /// (stack, key, cost)
    checks: Vec<(usize, u8, Option<u32>)>,
}

#[derive(Clone, Debug)]
struct Schedule {
    /// (interval in µs, burst, shadow) of the three policies.
    policies: Vec<(u64, u32, bool)>,
    groups: Vec<Group>,
}

/// The stacks the checks use, as indices into the schedule's policies: one policy alone, two
/// policies sharing the first one's budget, and a third policy alone.
const STACKS: [&[usize]; 3] = [&[0], &[0, 1], &[2]];

fn schedules() -> impl Strategy<Value = Schedule> {
    let policy = (1u64..500_000, 1u32..=5, prop::bool::weighted(0.2));
    let check = (
        0..STACKS.len(),
        0u8..4,
        prop::option::weighted(0.85, 1u32..=3),
    );
    let group = (0u64..400_000, prop::collection::vec(check, 1..48))
        .prop_map(|(advance, checks)| Group { advance, checks });
    (
        prop::collection::vec(policy, 3),
        prop::collection::vec(group, 1..8),
    )
        .prop_map(|(policies, groups)| Schedule { policies, groups })
}

/// Where the two stores of the differential test live.
enum Target {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Target {
    fn evalsha_calls(&self) -> u64 {
        match self {
            Target::Server(server) => command_calls(&mut server.connection(), "evalsha"),
            Target::Cluster(cluster) => cluster_command_calls(cluster, "evalsha"),
        }
    }

    async fn store(
        &self,
        clock: &ManualClock,
        max_batch: usize,
        calls_in_flight: usize,
        deny_cache: bool,
    ) -> RedisStore {
        let builder = strict_store("coalescing")
            .clock(clock.clone())
            .max_batch(max_batch)
            .calls_in_flight(calls_in_flight)
            .deny_cache(deny_cache);
        let builder = match self {
            Target::Server(server) => builder.url(server.url()),
            Target::Cluster(cluster) => builder.cluster(cluster.urls()),
        };
        builder.build().await.unwrap()
    }
}

/// Runs random schedules through coalescing stores (one and four calls in flight, and the
/// default with its deny cache) and a store that sends every check alone, in arrival order;
/// every decision must be the same.
fn differential(target: Target, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = crate::support::clock_at_unix_time();
    let (alone, coalescing, four, cached) = rt.block_on(async {
        (
            target.store(&clock, 1, 1, false).await,
            target.store(&clock, 128, 1, false).await,
            target.store(&clock, 128, 4, false).await,
            target.store(&clock, 128, 2, true).await,
        )
    });
    let case = AtomicU32::new(0);
    let (checks, coalesced_calls) = (Cell::new(0u64), Cell::new(0u64));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&schedules(), |schedule| {
            let case = case.fetch_add(1, Ordering::Relaxed);
            let policies = case_policies(case, &schedule.policies);
            let register = |store: &RedisStore| -> Vec<RedisStack> {
                STACKS
                    .iter()
                    .map(|stack| {
                        let policies: Vec<Policy> =
                            stack.iter().map(|&i| policies[i].clone()).collect();
                        store.register(&policies).unwrap()
                    })
                    .collect()
            };
            let (alone_stacks, coalescing_stacks, four_stacks, cached_stacks) = (
                register(&alone),
                register(&coalescing),
                register(&four),
                register(&cached),
            );
            for (g, group) in schedule.groups.iter().enumerate() {
                clock.advance(Duration::from_micros(group.advance));
                let expected: Vec<Decisions> = rt.block_on(async {
                    let mut out = Vec::new();
                    for &(stack, key, cost) in &group.checks {
                        out.push(ask(&alone, &alone_stacks[stack], key, cost).await.unwrap());
                    }
                    out
                });
                for (name, store, stacks) in [
                    ("coalescing", &coalescing, &coalescing_stacks),
                    ("four calls in flight", &four, &four_stacks),
                    (CACHED, &cached, &cached_stacks),
                ] {
                    let before = target.evalsha_calls();
                    // Every check is queued before the runtime runs the lane's sender.
                    let got = rt.block_on(async {
                        let queued: Vec<RedisStoreFuture> = group
                            .checks
                            .iter()
                            .map(|&(stack, key, cost)| ask(store, &stacks[stack], key, cost))
                            .collect();
                        in_order(queued).await
                    });
                    if name == "coalescing" {
                        coalesced_calls
                            .set(coalesced_calls.get() + target.evalsha_calls() - before);
                        checks.set(checks.get() + group.checks.len() as u64);
                    }
                    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
                        // The deny cache answers denials from a lower bound of the keys' state
                        // (it has not seen the checks queued before this one yet): the same
                        // denial, its figures from that bound.
                        let (got, expected) = match name {
                            CACHED if !got.is_allowed() => (&verdicts(got), &verdicts(expected)),
                            _ => (got, expected),
                        };
                        prop_assert_eq!(
                            got,
                            expected,
                            "{}: group {}, check {} {:?}",
                            name,
                            g,
                            i,
                            group.checks[i]
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (checks, coalesced_calls) = (checks.get(), coalesced_calls.get());
    assert!(
        coalesced_calls * 2 < checks,
        "{checks} checks in {coalesced_calls} calls: the checks were not coalesced"
    );
}

const CACHED: &str = "coalescing with deny cache";

/// A denial and its limits, without the figures the deny cache takes from a lower bound.
fn verdicts(decisions: &Decisions) -> Decisions {
    Decisions::new(
        decisions.is_allowed(),
        decisions
            .as_slice()
            .iter()
            .map(|d| Decision::allowed(d.limit(), 0, Duration::ZERO)),
    )
}

/// A check or a peek, queued when called.
fn ask(store: &RedisStore, stack: &RedisStack, key: u8, cost: Option<u32>) -> RedisStoreFuture {
    let key = [b'k', key];
    match cost {
        Some(cost) => store.check(stack, &key, cost),
        None => store.peek(stack, &key),
    }
}

/// The answers of checks already queued, in their order.
async fn in_order(queued: Vec<RedisStoreFuture>) -> Vec<Decisions> {
    let mut out = Vec::with_capacity(queued.len());
    for answer in queued {
        out.push(answer.await.unwrap());
    }
    out
}

#[test]
fn coalesced_checks_decide_as_one_call_per_check() {
    differential(Target::Server(RedisServer::start()), 32);
}

#[test]
fn coalesced_checks_decide_as_one_call_per_check_on_a_cluster() {
    differential(Target::Cluster(RedisCluster::start()), 12);
}

#[tokio::test(flavor = "current_thread")]
async fn a_hot_key_queued_many_times_is_decided_in_arrival_order_in_capped_calls() {
    let server = RedisServer::start();
    let store = strict_store("hot")
        .url(server.url())
        .deny_cache(false)
        .max_batch(100)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("hot", Quota::per_hour(40))])
        .unwrap();
    let before = command_calls(&mut server.connection(), "evalsha");
    let decisions = in_order((0..250).map(|_| store.check(&stack, b"hot", 1)).collect()).await;
    let calls = command_calls(&mut server.connection(), "evalsha") - before;
    // The first goes alone; the 249 that queued behind it go in calls of at most 100.
    assert_eq!(calls, 4, "250 checks of one key");
    for (i, decision) in decisions.iter().enumerate() {
        assert_eq!(decision.is_allowed(), i < 40, "check {i}");
        if i < 40 {
            assert_eq!(
                decision.as_slice()[0].remaining(),
                39 - i as u32,
                "check {i}"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_queued_check_dropped_before_its_call_is_sent_takes_nothing() {
    let server = RedisServer::start();
    let store = strict_store("dropped")
        .url(server.url())
        .deny_cache(false)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("dropped", Quota::per_hour(3))])
        .unwrap();
    // The first goes alone; the next two queue behind it, and one is dropped (its request was
    // cancelled, its client gone) before the call that would carry it is sent.
    let first = store.check(&stack, b"k", 1);
    let dropped = store.check(&stack, b"k", 1);
    let kept = store.check(&stack, b"k", 1);
    drop(dropped);
    assert!(first.await.unwrap().is_allowed());
    assert!(kept.await.unwrap().is_allowed());
    let left = store.peek(&stack, b"k").await.unwrap();
    assert_eq!(
        left.as_slice()[0].remaining(),
        1,
        "the dropped check took a cell"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_check_that_finds_no_call_in_flight_goes_alone_at_once() {
    let server = RedisServer::start();
    let store = strict_store("alone")
        .url(server.url())
        .deny_cache(false)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("alone", Quota::per_second(5))])
        .unwrap();
    let before = command_calls(&mut server.connection(), "evalsha");
    for _ in 0..10 {
        store.check(&stack, b"k", 1).await.unwrap();
    }
    assert_eq!(
        command_calls(&mut server.connection(), "evalsha") - before,
        10
    );
}

#[test]
fn max_batch_zero_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = rt
        .block_on(
            RedisStore::builder()
                .url("redis://127.0.0.1:1")
                .max_batch(0)
                .build(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("max_batch is 0"), "{error}");
    let error = rt
        .block_on(
            RedisStore::builder()
                .url("redis://127.0.0.1:1")
                .calls_in_flight(0)
                .build(),
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("calls_in_flight is 0"),
        "{error}"
    );
}

/// Checks made where no runtime runs (no task can be spawned to send the queued ones), then
/// awaited on the store's runtime: the first goes alone, the two queued behind it share the next
/// call, and they are decided in the order they were made.
#[test]
fn checks_made_outside_a_runtime_are_coalesced_and_decided_in_order() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(strict_store("outside").url(server.url()).build())
        .unwrap();
    let stack = store
        .register(&[Policy::new("outside", Quota::per_second(2))])
        .unwrap();
    let before = command_calls(&mut server.connection(), "evalsha");
    // Made here, with no runtime to run a lane's sender on; awaited later on one.
    let queued: Vec<RedisStoreFuture> = (0..3).map(|_| store.check(&stack, b"k", 1)).collect();
    let decisions = rt.block_on(in_order(queued));
    let allowed: Vec<bool> = decisions.iter().map(Decisions::is_allowed).collect();
    assert_eq!(allowed, [true, true, false]);
    let calls = command_calls(&mut server.connection(), "evalsha") - before;
    assert_eq!(
        calls, 2,
        "one check alone, then one call for the two queued"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_of_more_keys_than_lua_unpacks_at_once_is_decided() {
    let server = RedisServer::start();
    let store = strict_store("wide")
        .url(server.url())
        .deny_cache(false)
        .max_batch(10_000)
        .calls_in_flight(1)
        .build()
        .await
        .unwrap();
    // Two policies, 4 500 checks of 1 500 keys: 9 000 keys in one call.
    let stack = store
        .register(&[
            Policy::new("wide-a", Quota::per_hour(3)),
            Policy::new("wide-b", Quota::per_hour(100)),
        ])
        .unwrap();
    let keys: Vec<String> = (0..1_500).map(|i| format!("key-{i}")).collect();
    let before = command_calls(&mut server.connection(), "evalsha");
    let queued: Vec<RedisStoreFuture> = (0..4_501)
        .map(|i| store.check(&stack, keys[i % keys.len()].as_bytes(), 1))
        .collect();
    let decisions = in_order(queued).await;
    assert_eq!(
        command_calls(&mut server.connection(), "evalsha") - before,
        2,
        "one check alone, then one call for the rest"
    );
    // Each key's first three checks are allowed, in arrival order; the fourth is denied.
    for (i, decision) in decisions.iter().enumerate() {
        assert_eq!(decision.is_allowed(), i < 4_500, "check {i}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_call_carries_checks_of_several_stacks_on_redis_time() {
    let server = RedisServer::start();
    let store = strict_store("stacks")
        .url(server.url())
        .deny_cache(false)
        .calls_in_flight(1)
        .build()
        .await
        .unwrap();
    let hourly = Policy::new("hourly", Quota::per_hour(5));
    let strict = Policy::new("strict", Quota::per_hour(3));
    let policies = [vec![hourly.clone()], vec![hourly, strict]];
    let stacks: Vec<RedisStack> = policies
        .iter()
        .map(|p| store.register(p).unwrap())
        .collect();
    // The same checks in memory, on a clock that does not move (an hour's quotas do not refill
    // in the time the Redis calls take).
    let memory = MemoryStore::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let memory_stacks: Vec<_> = policies
        .iter()
        .map(|p| memory.register(p).unwrap())
        .collect();
    // Both stacks and two keys, mixed in one call.
    let schedule: Vec<(usize, &[u8])> = (0..24)
        .map(|i| ((i + i / 12) % 2, [&b"a"[..], b"b"][i / 7 % 2]))
        .collect();
    let before = command_calls(&mut server.connection(), "evalsha");
    let queued: Vec<RedisStoreFuture> = schedule
        .iter()
        .map(|&(stack, key)| store.check(&stacks[stack], key, 1))
        .collect();
    let got = in_order(queued).await;
    assert_eq!(
        command_calls(&mut server.connection(), "evalsha") - before,
        2,
        "one check alone, the rest in one call"
    );
    for (i, (&(stack, key), got)) in schedule.iter().zip(&got).enumerate() {
        let expected = memory.check_now(&memory_stacks[stack], key, 1);
        assert_eq!(got.is_allowed(), expected.is_allowed(), "check {i}");
        let remaining =
            |d: &Decisions| -> Vec<u32> { d.as_slice().iter().map(|d| d.remaining()).collect() };
        assert_eq!(remaining(got), remaining(&expected), "check {i}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn keys_are_shared_among_the_queues_and_each_keeps_its_order() {
    let server = RedisServer::start();
    for queues in [1u64, 2, 4] {
        let store = strict_store(&format!("queues-{queues}"))
            .url(server.url())
            .deny_cache(false)
            .calls_in_flight(queues as usize)
            .max_batch(1_000)
            .build()
            .await
            .unwrap();
        let stack = store
            .register(&[Policy::new("queued", Quota::per_hour(2))])
            .unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        let before = command_calls(&mut server.connection(), "evalsha");
        let queued: Vec<RedisStoreFuture> = (0..300)
            .map(|i| store.check(&stack, keys[i % keys.len()].as_bytes(), 1))
            .collect();
        let decisions = in_order(queued).await;
        // Each queue: its first check alone, then one call for the rest.
        assert_eq!(
            command_calls(&mut server.connection(), "evalsha") - before,
            2 * queues,
            "{queues} queues"
        );
        // Each key's first two checks are allowed and its third denied, in arrival order.
        for (i, decision) in decisions.iter().enumerate() {
            assert_eq!(decision.is_allowed(), i < 200, "{queues} queues, check {i}");
        }
    }
}

/// A call carries at most `max_batch` checks: eleven queued behind a call in flight, with a cap
/// of ten, go in two calls (ten, then one), and each cell is taken once.
#[tokio::test(flavor = "current_thread")]
async fn a_call_carries_at_most_max_batch_checks_and_takes_each_cell_once() {
    let server = RedisServer::start();
    let store = strict_store("capped")
        .url(server.url())
        .deny_cache(false)
        .max_batch(10)
        .calls_in_flight(1)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("capped", Quota::per_hour(100))])
        .unwrap();
    let before = command_calls(&mut server.connection(), "evalsha");
    let decisions = in_order((0..12).map(|_| store.check(&stack, b"k", 1)).collect()).await;
    assert_eq!(
        command_calls(&mut server.connection(), "evalsha") - before,
        3,
        "one check alone, then calls of ten and one"
    );
    for (i, decision) in decisions.iter().enumerate() {
        assert_eq!(
            decision.as_slice()[0].remaining(),
            99 - i as u32,
            "check {i}"
        );
    }
    let left = store.peek(&stack, b"k").await.unwrap();
    assert_eq!(left.as_slice()[0].remaining(), 88, "a cell was taken twice");
}
