//! One request through a trivial service: bare, behind `RateLimitLayer` (one policy, and a
//! stack of two), and behind `tower_governor`'s layer with the same quota, on the allow path
//! and on the reject path. The reject path is also measured with two clients whose waits
//! differ, alternating, so that no rejection repeats the numbers of the one before it.
//!
//! Each iteration drives `poll_ready`, `call` and the response future to completion by polling
//! them directly (every one is ready at once, so no runtime is involved) and drops the
//! response. Building the request is not timed. Both limiters key on the peer IP taken from
//! the request extensions, where axum's connect info puts it.
//!
//! With the `metrics` feature a Prometheus recorder is installed before the layers are built,
//! so every decision increments its counters as in an application that exports them; the same
//! benchmark without the feature is the baseline.
//!
//! ```text
//! cargo bench --bench layer -- --warm-up-time 1 --measurement-time 3
//! cargo bench --features metrics --bench layer -- --warm-up-time 1 --measurement-time 3
//! benches/compare_revision.py . layer 'layer/allow/' --features metrics --base-features ''
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_ratelimit::{ManualClock, MemoryStore, Policy, Quota, RateLimitLayer};

mod service;
use service::{drive, inner};

/// The quota as (interval, burst). Allow: a burst no run can spend. Reject: one cell an hour,
/// spent before timing starts.
const ALLOW: (Duration, u32) = (Duration::from_millis(1), 1_000_000_000);
const REJECT: (Duration, u32) = (Duration::from_secs(3600), 1);

fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 40000))
}

/// A second client, whose wait is a second longer than [`peer`]'s.
fn other_peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 8], 40000))
}

/// Every contender gets the same request: the peer address in axum's `ConnectInfo`, where
/// `axum::serve(.., into_make_service_with_connect_info::<SocketAddr>())` puts it.
fn request() -> Request<()> {
    request_from(peer())
}

fn request_from(peer: SocketAddr) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn ours(
    (interval, burst): (Duration, u32),
) -> impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible> {
    let layer = RateLimitLayer::builder()
        .quota(Quota::with_period(interval).allow_burst(burst))
        .build()
        .expect("a valid layer");
    layer.layer(inner())
}

/// The rejecting layer on a manual clock, with the burst of [`peer`] spent a second after
/// that of [`other_peer`]: their rejections show different numbers, so requests that alternate
/// between the two render every rejection anew.
fn ours_two_waits() -> impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible>
{
    let (interval, burst) = REJECT;
    let clock = ManualClock::new();
    let layer = RateLimitLayer::builder()
        .quota(Quota::with_period(interval).allow_burst(burst))
        .store(
            MemoryStore::builder()
                .clock(clock.clone())
                .build()
                .expect("a valid store"),
        )
        .build()
        .expect("a valid layer");
    let mut svc = layer.layer(inner());
    assert_eq!(drive(&mut svc, request_from(other_peer())), StatusCode::OK);
    clock.advance(Duration::from_secs(1));
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    svc
}

/// Two policies of the same quota checked together, all-or-nothing.
fn ours_stacked(
    (interval, burst): (Duration, u32),
) -> impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible> {
    let quota = Quota::with_period(interval).allow_burst(burst);
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("short", quota))
        .policy(Policy::new("long", quota))
        .build()
        .expect("a valid layer");
    layer.layer(inner())
}

fn governed(
    (interval, burst): (Duration, u32),
) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> {
    let config = GovernorConfigBuilder::default()
        .period(interval)
        .burst_size(burst)
        .finish()
        .expect("a valid config");
    GovernorLayer::new(config).layer(inner())
}

/// How many requests the layer with the policy `default` counted as `allowed`.
#[cfg(feature = "metrics")]
fn counted_allowed(prometheus: &metrics_exporter_prometheus::PrometheusHandle) -> u64 {
    let series = r#"ratelimit_decisions_total{policy="default",outcome="allowed"} "#;
    let text = prometheus.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no allowed count in\n{text}"))
}

/// The Prometheus recorder, installed the first time: before any layer is built, since layers
/// register their counters when they are built.
#[cfg(feature = "metrics")]
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder is installed")
    })
}

fn bench(c: &mut Criterion) {
    #[cfg(feature = "metrics")]
    let prometheus = prometheus();

    let mut group = c.benchmark_group("layer/allow");
    let mut bare = inner();
    assert_eq!(drive(&mut bare, request()), StatusCode::OK);
    group.bench_function("bare", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut bare, req)),
            BatchSize::SmallInput,
        )
    });
    let mut svc = ours(ALLOW);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    group.bench_function("tower-ratelimit", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    #[cfg(feature = "metrics")]
    assert!(
        counted_allowed(prometheus) >= 2,
        "the recorder counts the layer's requests"
    );
    let mut svc = ours_stacked(ALLOW);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    group.bench_function("tower-ratelimit (2 policies)", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    let mut svc = governed(ALLOW);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    group.bench_function("tower_governor", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    group.finish();

    let mut group = c.benchmark_group("layer/reject");
    let mut svc = ours(REJECT);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    group.bench_function("tower-ratelimit", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    let mut svc = ours_two_waits();
    let mut peers = [peer(), other_peer()].into_iter().cycle();
    group.bench_function("tower-ratelimit (two clients, waits alternating)", |b| {
        b.iter_batched(
            || request_from(peers.next().unwrap_or_else(peer)),
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    let mut svc = ours_stacked(REJECT);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    group.bench_function("tower-ratelimit (2 policies)", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    let mut svc = governed(REJECT);
    assert_eq!(drive(&mut svc, request()), StatusCode::OK);
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    group.bench_function("tower_governor", |b| {
        b.iter_batched(
            request,
            |req| black_box(drive(&mut svc, req)),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(drive(&mut svc, request()), StatusCode::TOO_MANY_REQUESTS);
    group.finish();
}

/// With the `metrics` feature, what one increment of a counter handle costs with the
/// Prometheus recorder: the floor of what counting adds to a request, per policy.
#[cfg(feature = "metrics")]
fn counter(c: &mut Criterion) {
    let prometheus = prometheus();
    let counter = metrics::counter!("bench_increments_total");
    c.bench_function("layer/metrics/counter increment", |b| {
        b.iter(|| black_box(&counter).increment(1))
    });
    assert!(prometheus.render().contains("bench_increments_total "));
}

#[cfg(not(feature = "metrics"))]
fn counter(_: &mut Criterion) {}

criterion_group!(benches, bench, counter);
criterion_main!(benches);
