//! One set of store scenarios, written once, run against every store: `MemoryStore` on a
//! manual clock, and (with the `redis` feature) `RedisStore` on a private `redis-server` with
//! its time taken from the same kind of manual clock, with and without the deny cache.
//!
//! Every quota here has an interval of whole microseconds, the unit of the Redis store, so the
//! stores must agree to the last field of every decision.

use std::time::Duration;

use tower_ratelimit::{Decision, ManualClock, Quota, Store};

#[cfg(feature = "redis")]
mod support;

const MS: Duration = Duration::from_millis(1);

/// 6 cells at once, then one every 10 s.
fn six_per_minute() -> Quota {
    Quota::per_minute(6)
}

async fn check<S: Store<&'static str>>(
    store: &S,
    key: &'static str,
    quota: &Quota,
    cost: u32,
) -> Decision {
    store
        .check(&key, quota, cost)
        .await
        .unwrap_or_else(|e| panic!("check failed: {e}"))
}

async fn peek<S: Store<&'static str>>(store: &S, key: &'static str, quota: &Quota) -> Decision {
    store
        .peek(&key, quota)
        .await
        .unwrap_or_else(|e| panic!("peek failed: {e}"))
}

fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Decision {
    Decision::allowed(limit, remaining, reset_after)
}

fn denied(limit: u32, remaining: u32, retry_after: Duration, reset_after: Duration) -> Decision {
    Decision::denied(limit, remaining, retry_after, reset_after)
}

async fn fresh_key_admits_exactly_the_burst_then_one_per_interval<S: Store<&'static str>>(
    store: &S,
    clock: &ManualClock,
) {
    let q = six_per_minute();
    for i in 0..6u32 {
        let d = check(store, "k", &q, 1).await;
        assert_eq!(
            d,
            allowed(6, 5 - i, Duration::from_secs(10 * u64::from(i + 1)))
        );
    }
    let sec = Duration::from_secs;
    assert_eq!(
        check(store, "k", &q, 1).await,
        denied(6, 0, sec(10), sec(60))
    );
    clock.advance(sec(10));
    assert_eq!(check(store, "k", &q, 1).await, allowed(6, 0, sec(60)));
    assert_eq!(
        check(store, "k", &q, 1).await,
        denied(6, 0, sec(10), sec(60))
    );
}

async fn retry_after_is_exact_and_waiting_it_conforms<S: Store<&'static str>>(
    store: &S,
    clock: &ManualClock,
) {
    let q = Quota::with_period(Duration::from_millis(250)).allow_burst(40);
    for _ in 0..40 {
        assert!(check(store, "k", &q, 1).await.is_allowed());
    }
    clock.advance(Duration::from_micros(1_234));
    let d = check(store, "k", &q, 1).await;
    let wait = Duration::from_micros(250_000 - 1_234);
    assert_eq!(
        d,
        denied(
            40,
            0,
            wait,
            Duration::from_secs(10) - Duration::from_micros(1_234)
        )
    );
    clock.advance(wait - Duration::from_micros(1));
    let almost = check(store, "k", &q, 1).await;
    assert_eq!(almost.retry_after(), Duration::from_micros(1));
    assert!(!almost.is_allowed());
    clock.advance(Duration::from_micros(1));
    assert!(check(store, "k", &q, 1).await.is_allowed());
}

async fn cost_n_takes_n_cells_and_a_denied_costly_check_takes_nothing<S: Store<&'static str>>(
    store: &S,
    clock: &ManualClock,
) {
    let q = Quota::with_period(Duration::from_secs(2)).allow_burst(5);
    let sec = Duration::from_secs;
    assert_eq!(check(store, "k", &q, 3).await, allowed(5, 2, sec(6)));
    assert_eq!(check(store, "k", &q, 3).await, denied(5, 2, sec(2), sec(6)));
    // The denied cost-3 check took nothing: cost 2 still fits, and cost 1 was never denied.
    assert_eq!(check(store, "k", &q, 2).await, allowed(5, 0, sec(10)));
    assert_eq!(
        check(store, "k", &q, 1).await,
        denied(5, 0, sec(2), sec(10))
    );
    clock.advance(sec(3));
    // One cell back (and a second after 4 s): cost 1 fits, cost 2 waits another 1 s.
    assert_eq!(check(store, "k", &q, 2).await, denied(5, 1, sec(1), sec(7)));
    assert_eq!(check(store, "k", &q, 1).await, allowed(5, 0, sec(9)));
}

async fn a_cost_above_the_burst_is_an_error_not_a_wait<S: Store<&'static str>>(
    store: &S,
    _clock: &ManualClock,
) {
    let q = Quota::per_minute(6);
    let error = store.check(&"k", &q, 7).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("cost 7") && message.contains("burst 6"),
        "{message}"
    );
    // And nothing was taken.
    assert_eq!(
        check(store, "k", &q, 6).await,
        allowed(6, 0, Duration::from_secs(60))
    );
}

async fn denials_write_nothing_however_many<S: Store<&'static str>>(
    store: &S,
    clock: &ManualClock,
) {
    let q = Quota::with_period(Duration::from_millis(100)).allow_burst(100);
    assert!(check(store, "k", &q, 100).await.is_allowed());
    for _ in 0..50 {
        clock.advance(Duration::from_micros(997));
        assert!(!check(store, "k", &q, 1).await.is_allowed());
    }
    // 49 850 µs passed; a cell comes back at 100 ms whatever the denials did.
    clock.advance(Duration::from_micros(100_000 - 49_850));
    assert_eq!(
        check(store, "k", &q, 1).await,
        allowed(100, 0, Duration::from_secs(10))
    );
}

async fn remaining_and_reset_after_follow_the_recovery<S: Store<&'static str>>(
    store: &S,
    clock: &ManualClock,
) {
    let q = Quota::with_period(Duration::from_secs(1)).allow_burst(10);
    assert!(check(store, "k", &q, 10).await.is_allowed());
    clock.advance(Duration::from_millis(4_500));
    // 4.5 cells back: 4 whole ones; the key is full again in 5.5 s.
    let p = peek(store, "k", &q).await;
    assert_eq!(p, allowed(10, 4, Duration::from_millis(5_500)));
    assert_eq!(
        check(store, "k", &q, 1).await,
        allowed(10, 3, Duration::from_millis(6_500))
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        check(store, "k", &q, 1).await,
        allowed(10, 9, Duration::from_secs(1))
    );
}

async fn peek_reports_without_taking<S: Store<&'static str>>(store: &S, clock: &ManualClock) {
    let q = Quota::with_period(Duration::from_secs(5)).allow_burst(2);
    let sec = Duration::from_secs;
    assert_eq!(peek(store, "k", &q).await, allowed(2, 2, Duration::ZERO));
    assert_eq!(peek(store, "k", &q).await, allowed(2, 2, Duration::ZERO));
    assert_eq!(check(store, "k", &q, 1).await, allowed(2, 1, sec(5)));
    assert_eq!(peek(store, "k", &q).await, allowed(2, 1, sec(5)));
    assert_eq!(check(store, "k", &q, 1).await, allowed(2, 0, sec(10)));
    assert_eq!(peek(store, "k", &q).await, denied(2, 0, sec(5), sec(10)));
    assert_eq!(peek(store, "k", &q).await, denied(2, 0, sec(5), sec(10)));
    clock.advance(sec(5));
    assert_eq!(peek(store, "k", &q).await, allowed(2, 1, sec(5)));
    assert_eq!(check(store, "k", &q, 1).await, allowed(2, 0, sec(10)));
}

async fn keys_are_independent<S: Store<&'static str>>(store: &S, _clock: &ManualClock) {
    let q = Quota::per_minute(1);
    assert!(check(store, "a", &q, 1).await.is_allowed());
    assert!(!check(store, "a", &q, 1).await.is_allowed());
    assert!(check(store, "b", &q, 1).await.is_allowed());
    assert!(!check(store, "b", &q, 1).await.is_allowed());
}

async fn idle_keys_return_to_a_full_burst<S: Store<&'static str>>(store: &S, clock: &ManualClock) {
    let q = six_per_minute();
    assert!(check(store, "k", &q, 6).await.is_allowed());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        check(store, "k", &q, 6).await,
        allowed(6, 0, Duration::from_secs(60))
    );
    clock.advance(Duration::from_secs(60) + MS);
    assert_eq!(peek(store, "k", &q).await, allowed(6, 6, Duration::ZERO));
}

macro_rules! conformance {
    ($run:ident; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                super::$run(|store, clock| async move {
                    super::$scenario(&store, &clock).await
                })
                .await;
            }
        )*
    };
}

macro_rules! all_scenarios {
    ($run:ident) => {
        conformance!($run;
            fresh_key_admits_exactly_the_burst_then_one_per_interval,
            retry_after_is_exact_and_waiting_it_conforms,
            cost_n_takes_n_cells_and_a_denied_costly_check_takes_nothing,
            a_cost_above_the_burst_is_an_error_not_a_wait,
            denials_write_nothing_however_many,
            remaining_and_reset_after_follow_the_recovery,
            peek_reports_without_taking,
            keys_are_independent,
            idle_keys_return_to_a_full_burst,
        );
    };
}

async fn with_memory<F, Fut>(scenario: F)
where
    F: FnOnce(tower_ratelimit::MemoryStore<ManualClock>, ManualClock) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let clock = ManualClock::new();
    let store = tower_ratelimit::MemoryStore::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    scenario(store, clock).await;
}

mod memory {
    all_scenarios!(with_memory);
}

#[cfg(feature = "redis")]
async fn with_redis_store<F, Fut>(deny_cache: bool, scenario: F)
where
    F: FnOnce(tower_ratelimit::RedisStore, ManualClock) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let redis = support::redis_url();
    let clock = ManualClock::new();
    // Start well past zero, as Redis TIME would be.
    clock.advance(Duration::from_secs(1_700_000_000));
    let store = tower_ratelimit::RedisStore::builder()
        .url(redis.url())
        .prefix(support::unique_prefix("conformance"))
        .clock(clock.clone())
        .deny_cache(deny_cache)
        // Never let an in-memory fallback answer in Redis's place.
        .on_failure(tower_ratelimit::FailurePolicy::Deny)
        // Generous: a slow machine must not turn a check into a fallback answer.
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    scenario(store, clock).await;
}

#[cfg(feature = "redis")]
async fn with_redis<F, Fut>(scenario: F)
where
    F: FnOnce(tower_ratelimit::RedisStore, ManualClock) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_redis_store(true, scenario).await;
}

#[cfg(feature = "redis")]
async fn with_redis_script_only<F, Fut>(scenario: F)
where
    F: FnOnce(tower_ratelimit::RedisStore, ManualClock) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_redis_store(false, scenario).await;
}

#[cfg(feature = "redis")]
mod redis {
    all_scenarios!(with_redis);
}

#[cfg(feature = "redis")]
mod redis_without_deny_cache {
    all_scenarios!(with_redis_script_only);
}
