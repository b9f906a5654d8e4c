//! One budget across processes: independent stores (separate connections) hammering one key
//! admit exactly what the quota (or the tightest policy of a stack) allows, and two axum
//! servers on one Redis share one budget.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_ratelimit::{Policy, Quota, Store};

use crate::support::{clock_at_unix_time, strict_store, unique_prefix, RedisServer};

#[tokio::test]
async fn a_policy_name_the_script_cannot_keep_is_refused() {
    let server = RedisServer::start();
    let store = strict_store("bad-name")
        .url(server.url())
        .build()
        .await
        .unwrap();
    // The script ends each policy's name with a zero byte: a name with one would leave a
    // record it cannot read back, a full burst on every check.
    let err = store
        .register(&[Policy::new("a\0b", Quota::per_minute(1))])
        .unwrap_err();
    assert!(err.to_string().contains("cannot be used"), "{err}");
}

/// Four stores with four callers each, all on one manual clock, check `policies` on one key
/// in rounds: in each, every caller checks until it is denied, and once all are, the clock
/// moves on by `step`. Returns how many checks were admitted over the first round and
/// `rounds` more. The clock moves only between rounds, so what the quota allows does not
/// depend on how fast the machine runs the callers.
async fn hammer(policies: &[Policy], step: Duration, rounds: u32) -> u32 {
    let server = RedisServer::start();
    let prefix = unique_prefix("hammer");
    let clock = clock_at_unix_time();
    let admitted = Arc::new(AtomicU32::new(0));
    let mut stores = Vec::new();
    for _ in 0..4 {
        let store = strict_store("hammer")
            .url(server.url())
            .prefix(prefix.clone())
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        let stack = Arc::new(store.register(policies).unwrap());
        stores.push((store, stack));
    }
    for round in 0..=rounds {
        if round > 0 {
            clock.advance(step);
        }
        let mut tasks = Vec::new();
        for (store, stack) in &stores {
            for _ in 0..4 {
                let (store, stack) = (store.clone(), Arc::clone(stack));
                let admitted = Arc::clone(&admitted);
                tasks.push(tokio::spawn(async move {
                    while store
                        .check(&stack, b"shared", 1)
                        .await
                        .unwrap()
                        .is_allowed()
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
    admitted.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stores_hammering_one_key_admit_exactly_the_quota() {
    let interval = Duration::from_millis(20);
    let policy = Policy::new("shared", Quota::with_period(interval).allow_burst(5));
    // The burst, then a cell a round.
    assert_eq!(hammer(&[policy], interval, 50).await, 5 + 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stores_hammering_a_stack_admit_exactly_its_tightest_policy() {
    let policies = [
        Policy::new(
            "fast",
            Quota::with_period(Duration::from_millis(20)).allow_burst(5),
        ),
        Policy::new(
            "slow",
            Quota::with_period(Duration::from_millis(100)).allow_burst(3),
        ),
    ];
    // Rounds 20 ms apart: the slow policy's burst, then a cell every five rounds.
    let admitted = hammer(&policies, Duration::from_millis(20), 50).await;
    assert_eq!(admitted, 3 + 50 / 5);
}

/// Needs feature `axum`: the layer in a `Router` answers in axum's `Body`.
#[cfg(feature = "axum")]
mod axum_servers {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::{routing::get, Router};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower_ratelimit::{Policy, Quota, RateLimitLayer, RedisStore};

    use crate::support::{redis_url, unique_prefix};

    async fn serve(store: RedisStore) -> SocketAddr {
        let layer = RateLimitLayer::builder()
            .policy(Policy::new("per-minute", Quota::per_minute(4)))
            .policy(Policy::new("per-hour", Quota::per_hour(100)))
            .store(store)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(layer);
        crate::common::serve(app).await.0
    }

    /// One HTTP/1.1 request over a fresh TCP connection; the status and the `retry-after` value.
    async fn get_status(addr: SocketAddr) -> (u16, Option<String>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let retry_after = response
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .map(str::to_owned);
        (status, retry_after)
    }

    #[tokio::test]
    async fn two_axum_servers_on_one_redis_share_one_budget() {
        let redis = redis_url();
        let prefix = unique_prefix("axum");
        let mut addrs = Vec::new();
        for _ in 0..2 {
            // A timeout a stalled test cannot reach: a check that timed out would be answered by
            // the in-memory fallback of one server, outside the shared budget.
            let store = RedisStore::builder()
                .url(redis.url())
                .prefix(prefix.clone())
                .timeout(Duration::from_secs(5))
                .build()
                .await
                .unwrap();
            addrs.push(serve(store).await);
        }
        let mut statuses = Vec::new();
        for i in 0..8 {
            statuses.push(get_status(addrs[i % 2]).await);
        }
        let codes: Vec<u16> = statuses.iter().map(|s| s.0).collect();
        assert_eq!(codes, [200, 200, 200, 200, 429, 429, 429, 429]);
        for (_, retry_after) in &statuses[4..] {
            let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
            assert!((1..=15).contains(&secs), "retry-after {secs}");
        }
    }
}

#[tokio::test]
async fn stores_sharing_a_prefix_decide_one_policy_name_each_by_its_own_quota() {
    let server = RedisServer::start();
    let prefix = unique_prefix("quotas");
    let clock = clock_at_unix_time();
    let store = || {
        strict_store("quotas")
            .url(server.url())
            .prefix(prefix.clone())
            .clock(clock.clone())
            .deny_cache(false)
            .build()
    };
    let (fast, slow) = (store().await.unwrap(), store().await.unwrap());
    // Neither store knows the other's quota: both register the name.
    let fast_stack = fast
        .register(&[Policy::new("api", Quota::per_second(10))])
        .unwrap();
    let slow_stack = slow
        .register(&[Policy::new("api", Quota::per_second(1))])
        .unwrap();
    // One TAT: the slow quota's one cell moves it a second ahead, past what the fast quota's
    // burst of 10 (a second's worth) tolerates.
    assert!(slow.check(&slow_stack, b"k", 1).await.unwrap().is_allowed());
    let fast_check = fast.check(&fast_stack, b"k", 1).await.unwrap();
    assert!(!fast_check.is_allowed());
    assert_eq!(fast_check.retry_after(), Duration::from_millis(100));
}
