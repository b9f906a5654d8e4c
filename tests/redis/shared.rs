//! One budget across processes: independent stores (separate connections) hammering one key
//! admit exactly what the quota (or the tightest policy of a stack) allows, and two axum
//! servers on one Redis share one budget.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_ratelimit::{Policy, Quota, RateLimitLayer, RedisStore, Store};

use crate::support::{redis_url, strict_store, unique_prefix, RedisServer};

fn redis_time(conn: &mut redis::Connection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    secs * 1_000_000 + micros
}

/// How long the callers check, from the moment `TIME` is read.
const WINDOW: Duration = Duration::from_millis(1000);

/// Four stores with four callers each check `policies` on one key for [`WINDOW`]; returns how
/// many checks were admitted and how long the hammering took by Redis's clock, in µs, from
/// before the first check to after the last one returned.
async fn hammer(policies: &[Policy]) -> (u32, u64) {
    let server = RedisServer::start();
    let prefix = unique_prefix("hammer");
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    let mut conn = server.connection();
    let mut stores = Vec::new();
    for _ in 0..4 {
        let store = strict_store("hammer")
            .url(server.url())
            .prefix(prefix.clone())
            .build()
            .await
            .unwrap();
        let stack = Arc::new(store.register(policies).unwrap());
        stores.push((store, stack));
    }
    let start = redis_time(&mut conn);
    let deadline = Instant::now() + WINDOW;
    for (store, stack) in &stores {
        for _ in 0..4 {
            let (store, stack) = (store.clone(), Arc::clone(stack));
            let admitted = Arc::clone(&admitted);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if store
                        .check(&stack, b"shared", 1)
                        .await
                        .unwrap()
                        .is_allowed()
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let end = redis_time(&mut conn);
    (admitted.load(Ordering::Relaxed), end - start)
}

/// `admitted` is what a quota of `burst` and `interval` allows: never more than it allows over
/// `elapsed_us`, the whole run; and at most two less than it allows over [`WINDOW`], the time
/// callers kept asking (one cell for the GCRA's granularity, one for the time between reading
/// `TIME` and the first check). Time after the window, while the last checks return and the
/// tasks are joined, only loosens the first bound, so a slow machine cannot fail the second.
fn assert_exactly_the_quota(admitted: u32, elapsed_us: u64, burst: u32, interval: Duration) {
    let cells = |us: u64| burst + (us / interval.as_micros() as u64) as u32;
    let most = cells(elapsed_us);
    assert!(admitted <= most, "admitted {admitted}, quota allows {most}");
    let least = cells(WINDOW.as_micros() as u64);
    assert!(
        admitted + 2 >= least,
        "admitted {admitted}, quota allows {least} while callers asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stores_hammering_one_key_admit_exactly_the_quota() {
    let interval = Duration::from_millis(20);
    let policy = Policy::new("shared", Quota::with_period(interval).allow_burst(5));
    let (admitted, elapsed) = hammer(&[policy]).await;
    assert_exactly_the_quota(admitted, elapsed, 5, interval);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stores_hammering_a_stack_admit_exactly_its_tightest_policy() {
    let interval = Duration::from_millis(100);
    let (admitted, elapsed) = hammer(&[
        Policy::new(
            "fast",
            Quota::with_period(Duration::from_millis(20)).allow_burst(5),
        ),
        Policy::new("slow", Quota::with_period(interval).allow_burst(3)),
    ])
    .await;
    assert_exactly_the_quota(admitted, elapsed, 3, interval);
}

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
        let store = RedisStore::builder()
            .url(redis.url())
            .prefix(prefix.clone())
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
