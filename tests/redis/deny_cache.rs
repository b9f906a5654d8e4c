//! The local deny cache: a flooded key, or a stack that one policy keeps denying, is answered
//! without round trips, with the decisions Redis would give.

use std::time::Duration;

use tower_ratelimit::store::RedisStack;
use tower_ratelimit::{
    Decisions, ManualClock, MemoryStack, MemoryStore, Policy, Quota, RedisStore, Store,
};

use crate::support::{command_calls, strict_store, RedisServer};

async fn store(server: &RedisServer, clock: Option<&ManualClock>) -> RedisStore {
    let mut builder = strict_store("deny-cache").url(server.url());
    if let Some(clock) = clock {
        builder = builder.clock(clock.clone());
    }
    builder.build().await.unwrap()
}

#[tokio::test]
async fn the_deny_cache_answers_a_flooded_key_without_round_trips() {
    let server = RedisServer::start();
    let store = store(&server, None).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(10))])
        .unwrap();
    let mut conn = server.connection();
    let before = command_calls(&mut conn, "evalsha");
    let mut allowed = 0;
    let mut last = None;
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        let decisions = store.check(&stack, b"flood", 1).await.unwrap();
        allowed += u32::from(decisions.is_allowed());
        last = Some(decisions);
    }
    let calls = command_calls(&mut conn, "evalsha") - before;
    assert_eq!(allowed, 10);
    assert!(calls <= 11, "{calls} script calls for 1000 checks");
    let last = last.unwrap();
    assert_eq!(last.as_slice()[0].remaining(), 0);
    // Answered locally, yet with Redis's wait: the 6 s interval less the time since the first
    // check (at most the loop's time). The cache takes the script's time to be the moment the
    // check began, before the script ran, so its wait errs short by the call's delay, which a
    // loaded machine stretches to milliseconds (2 ms seen): 50 ms are allowed for it.
    let waited = started.elapsed() + Duration::from_millis(50);
    let wait = last.retry_after();
    assert!(
        wait <= Duration::from_secs(6) && wait + waited >= Duration::from_secs(6),
        "retry after {wait:?}, {waited:?} after the first check"
    );
    // Another key still goes to Redis.
    assert!(store.check(&stack, b"calm", 1).await.unwrap().is_allowed());
    assert_eq!(command_calls(&mut conn, "evalsha") - before, calls + 1);
}

/// Checks `stack` on both stores and asserts the same answer.
async fn same(
    redis: &RedisStore,
    stack: &RedisStack,
    memory: &MemoryStore<ManualClock>,
    reference: &MemoryStack,
    cost: u32,
) -> Decisions {
    let got = redis.check(stack, b"k", cost).await.unwrap();
    assert_eq!(got, memory.check_now(reference, b"k", cost));
    got
}

#[tokio::test]
async fn a_stack_that_one_policy_keeps_denying_is_answered_locally_as_redis_would() {
    let server = RedisServer::start();
    let clock = crate::support::clock_at_unix_time();
    let store = store(&server, Some(&clock)).await;
    let memory = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let policies = [
        Policy::new("per-second", Quota::per_second(5)),
        Policy::new("per-hour", Quota::per_hour(10)),
    ];
    let stack = store.register(&policies).unwrap();
    let reference = memory.register(&policies).unwrap();
    let mut conn = server.connection();
    let before = command_calls(&mut conn, "evalsha");
    let calls = |conn: &mut redis::Connection| command_calls(conn, "evalsha") - before;

    // The per-second policy is spent; the per-hour one has room, and says how much.
    assert!(same(&store, &stack, &memory, &reference, 5)
        .await
        .is_allowed());
    for _ in 0..100 {
        let decisions = same(&store, &stack, &memory, &reference, 1).await;
        assert!(!decisions.is_allowed());
        assert_eq!(decisions.as_slice()[1].remaining(), 5);
    }
    assert_eq!(calls(&mut conn), 1, "the denials were answered locally");

    // A second later the cache admits nothing by itself: the check goes to Redis, which
    // spends the per-hour policy.
    clock.advance(Duration::from_secs(1));
    assert!(same(&store, &stack, &memory, &reference, 5)
        .await
        .is_allowed());
    assert_eq!(calls(&mut conn), 2);
    // Now the per-hour policy denies while the per-second one, which denials never write,
    // refills: still answered locally, with the per-hour wait.
    for second in 0..100 {
        clock.advance(Duration::from_millis(700));
        let decisions = same(&store, &stack, &memory, &reference, 1).await;
        assert!(!decisions.is_allowed(), "second {second}");
    }
    assert_eq!(calls(&mut conn), 2);

    // 71 s after the per-hour policy was spent, a cost-3 check waits for three of its cells.
    let costly = same(&store, &stack, &memory, &reference, 3).await;
    assert_eq!(costly.retry_after(), Duration::from_secs(3 * 360 - 71));
    assert_eq!(calls(&mut conn), 2);

    clock.advance(Duration::from_secs(3600));
    assert!(same(&store, &stack, &memory, &reference, 1)
        .await
        .is_allowed());
    assert_eq!(calls(&mut conn), 3);
}

#[tokio::test]
async fn a_denied_costly_check_does_not_deny_a_cheaper_one_from_the_cache() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = store(&server, Some(&clock)).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(10))])
        .unwrap();
    assert!(store.check(&stack, b"k", 7).await.unwrap().is_allowed());
    // Cost 4 is denied and cached; cost 3 still fits and must go to Redis and be allowed.
    assert!(!store.check(&stack, b"k", 4).await.unwrap().is_allowed());
    assert!(!store.check(&stack, b"k", 4).await.unwrap().is_allowed());
    let three = store.check(&stack, b"k", 3).await.unwrap();
    assert!(three.is_allowed(), "{three:?}");
    assert_eq!(three.as_slice()[0].remaining(), 0);
}

#[tokio::test]
async fn a_stack_with_a_shadow_policy_always_asks_redis() {
    let server = RedisServer::start();
    let store = store(&server, None).await;
    let stack = store
        .register(&[
            Policy::new("enforced", Quota::per_minute(2)),
            Policy::new("candidate", Quota::per_minute(1)).shadow(true),
        ])
        .unwrap();
    let mut conn = server.connection();
    let before = command_calls(&mut conn, "evalsha");
    let mut admitted = 0;
    for _ in 0..20 {
        admitted += u32::from(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    }
    assert_eq!(admitted, 2);
    assert_eq!(command_calls(&mut conn, "evalsha") - before, 20);
}
