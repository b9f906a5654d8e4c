//! A user's own implementations of the extension traits (a store, a key extractor, a key type,
//! a rejection, a clock, tier, cost and bypass closures) behind a real axum `Router`.

use std::collections::HashMap;
use std::future::{ready, Future, Pending, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http::Response;
use tower::ServiceExt;
use tower_ratelimit::{
    Clock, ConfigError, Decision, Decisions, Global, Header, KeyBuf, KeyBytes, KeyExtractor,
    MakeRejection, MemoryStore, Policy, Quota, RateLimitLayer, RateLimited, Store,
};

mod common;
use common::header;

fn app<L>(layer: L) -> Router
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service:
        tower::Service<Request, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<Request>>::Response: axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<Request>>::Future: Send + 'static,
{
    Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .layer(layer)
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1000))))
}

fn get_req(path: &str) -> Request {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn call(app: &Router, path: &str) -> Response<Body> {
    app.clone().oneshot(get_req(path)).await.unwrap()
}

/// A fixed-window counter: a store of a user's own, answering at once.
#[derive(Clone, Default)]
struct Counting {
    counts: Arc<Mutex<Counts>>,
}

/// Cells taken, by policy name and key.
type Counts = HashMap<(String, Vec<u8>), u32>;

impl Store for Counting {
    type Stack = Vec<Policy>;
    type Error = std::io::Error;
    type Future = Ready<Result<Decisions, std::io::Error>>;

    fn register(&self, policies: &[Policy]) -> Result<Vec<Policy>, ConfigError> {
        Ok(policies.to_vec())
    }

    fn check(&self, stack: &Vec<Policy>, key: &[u8], cost: u32) -> Self::Future {
        let mut counts = self.counts.lock().unwrap();
        let each: Vec<(u32, u32)> = stack
            .iter()
            .map(|p| {
                let used = *counts.get(&(p.name().into(), key.to_vec())).unwrap_or(&0);
                (p.quota().burst(), used)
            })
            .collect();
        let admitted = each.iter().all(|&(burst, used)| used + cost <= burst);
        let decisions = stack.iter().zip(&each).map(|(p, &(burst, used))| {
            if admitted {
                *counts.entry((p.name().into(), key.to_vec())).or_default() += cost;
                Decision::allowed(burst, burst - used - cost, Duration::from_secs(60))
            } else if used + cost <= burst {
                Decision::allowed(burst, burst - used, Duration::from_secs(60))
            } else {
                Decision::denied(
                    burst,
                    burst - used,
                    Duration::from_millis(1500),
                    Duration::from_secs(60),
                )
            }
        });
        let decisions = Decisions::new(admitted, decisions.collect::<Vec<_>>());
        ready(Ok(decisions))
    }

    fn peek(&self, stack: &Vec<Policy>, key: &[u8]) -> Self::Future {
        let counts = self.counts.lock().unwrap();
        let each = stack.iter().map(|p| {
            let used = *counts.get(&(p.name().into(), key.to_vec())).unwrap_or(&0);
            Decision::allowed(p.quota().burst(), p.quota().burst() - used, Duration::ZERO)
        });
        ready(Ok(Decisions::new(true, each.collect::<Vec<_>>())))
    }
}

#[tokio::test]
async fn a_store_of_ones_own_limits_an_axum_router() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .store(Counting::default())
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(call(&app, "/a").await.status(), StatusCode::OK);
    assert_eq!(call(&app, "/b").await.status(), StatusCode::OK);
    let limited = call(&app, "/a").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "2");
    assert_eq!(header(&limited, "ratelimit"), "\"default\";r=0;t=60");
}

/// A store whose answer comes on the second poll, after waking the task.
#[derive(Clone, Default)]
struct Later(Counting);

struct LaterFuture(Option<Ready<Result<Decisions, std::io::Error>>>, bool);

impl Future for LaterFuture {
    type Output = Result<Decisions, std::io::Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.1 {
            self.1 = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(self.0.as_mut().unwrap()).poll(cx)
    }
}

impl Store for Later {
    type Stack = Vec<Policy>;
    type Error = std::io::Error;
    type Future = LaterFuture;
    fn register(&self, policies: &[Policy]) -> Result<Vec<Policy>, ConfigError> {
        self.0.register(policies)
    }
    fn check(&self, stack: &Vec<Policy>, key: &[u8], cost: u32) -> LaterFuture {
        LaterFuture(Some(self.0.check(stack, key, cost)), false)
    }
    fn peek(&self, stack: &Vec<Policy>, key: &[u8]) -> LaterFuture {
        LaterFuture(Some(self.0.peek(stack, key)), false)
    }
}

#[tokio::test]
async fn a_store_that_waits_is_awaited() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .store(Later::default())
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(call(&app, "/a").await.status(), StatusCode::OK);
    let limited = call(&app, "/b").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "2");
}

/// A store whose answer never comes.
struct Never;

impl Store for Never {
    type Stack = ();
    type Error = std::io::Error;
    type Future = Pending<Result<Decisions, std::io::Error>>;
    fn register(&self, _: &[Policy]) -> Result<(), ConfigError> {
        Ok(())
    }
    fn check(&self, _: &(), _: &[u8], _: u32) -> Self::Future {
        std::future::pending()
    }
    fn peek(&self, _: &(), _: &[u8]) -> Self::Future {
        std::future::pending()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_holds_the_request() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .store(Never)
        .build()
        .unwrap();
    let app = app(layer);
    let answer = tokio::time::timeout(Duration::from_secs(3600), call(&app, "/a")).await;
    assert!(answer.is_err(), "the layer puts no deadline on a store");
}

/// A store whose future panics when polled.
struct Panics;

struct PanicFuture;

impl Future for PanicFuture {
    type Output = Result<Decisions, std::io::Error>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        panic!("the store's own bug")
    }
}

impl Store for Panics {
    type Stack = ();
    type Error = std::io::Error;
    type Future = PanicFuture;
    fn register(&self, _: &[Policy]) -> Result<(), ConfigError> {
        Ok(())
    }
    fn check(&self, _: &(), _: &[u8], _: u32) -> PanicFuture {
        PanicFuture
    }
    fn peek(&self, _: &(), _: &[u8]) -> PanicFuture {
        PanicFuture
    }
}

#[tokio::test]
async fn a_panicking_store_panics_the_callers_task() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .store(Panics)
        .build()
        .unwrap();
    let app = app(layer);
    let outcome = tokio::spawn(async move { call(&app, "/a").await }).await;
    let panic = outcome.expect_err("the store's panic is not caught");
    assert_eq!(
        panic.into_panic().downcast_ref::<&str>(),
        Some(&"the store's own bug")
    );
}

#[tokio::test]
async fn a_store_error_is_answered_with_503() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .store(common::DownStore)
        .build()
        .unwrap();
    let response = call(&app(layer), "/a").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "1");
}

/// A store that answers a fixed, wrong-shaped `Decisions`.
#[derive(Clone)]
struct Answers(Decisions);

impl Store for Answers {
    type Stack = ();
    type Error = std::io::Error;
    type Future = Ready<Result<Decisions, std::io::Error>>;
    fn register(&self, _: &[Policy]) -> Result<(), ConfigError> {
        Ok(())
    }
    fn check(&self, _: &(), _: &[u8], _: u32) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
    fn peek(&self, _: &(), _: &[u8]) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

/// A rejection that reads the limiting decision, as a user's may.
fn by_decision(limited: &RateLimited) -> Response<String> {
    let mut response = Response::new(format!("wait {:?}", limited.decision().retry_after()));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
}

#[tokio::test]
async fn a_store_answering_decisions_for_another_stack_is_a_store_error() {
    let two = [
        Policy::new("per-second", Quota::per_second(1)),
        Policy::new("per-minute", Quota::per_minute(10)),
    ];
    let denied = Decision::denied(1, 0, Duration::from_millis(300), Duration::from_secs(1));
    let allowed = Decision::allowed(1, 0, Duration::from_secs(1));
    for answer in [
        Decisions::new(false, []),
        Decisions::new(true, []),
        Decisions::new(false, [denied]),
        Decisions::new(true, [allowed, allowed, allowed]),
    ] {
        let layer = RateLimitLayer::builder()
            .policy(two[0].clone())
            .policy(two[1].clone())
            .store(Answers(answer.clone()))
            .headers_on_success(true)
            .rejection(by_decision)
            .build()
            .unwrap();
        let response = call(&app(layer), "/a").await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{answer:?}"
        );
    }
}

/// A clock the test sets to any reading, backwards too.
#[derive(Clone, Default)]
struct SetClock(Arc<AtomicU64>);

impl Clock for SetClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const YEAR: u64 = 365 * 24 * 3600 * 1_000_000_000;

#[tokio::test]
async fn a_clock_that_jumps_gives_no_panic_and_a_retry_after_of_at_least_one() {
    let clock = SetClock::default();
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .store(store)
        .build()
        .unwrap();
    let app = app(layer);
    for now in [
        0,
        100 * YEAR,
        5,
        100 * YEAR + 1,
        u64::MAX - 1,
        u64::MAX,
        3,
        u64::MAX,
    ] {
        clock.0.store(now, Ordering::SeqCst);
        for _ in 0..3 {
            let response = call(&app, "/a").await;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let secs: u64 = header(&response, "retry-after").parse().unwrap();
                assert!(secs >= 1, "at {now}");
            } else {
                assert_eq!(response.status(), StatusCode::OK, "at {now}");
            }
        }
    }
}

/// A key type of a user's own.
struct Tenant(Vec<u8>);

impl KeyBytes for Tenant {
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(&self.0);
    }
}

/// A key extractor of a user's own: the `x-tenant` header, any length, empty included.
struct TenantKey;

impl<B> KeyExtractor<B> for TenantKey {
    type Key = Tenant;
    fn extract(&self, req: &http::Request<B>) -> Option<Tenant> {
        let value = req.headers().get("x-tenant")?;
        Some(Tenant(value.as_bytes().to_vec()))
    }
    fn missing_key_hint(&self) -> &'static str {
        "send x-tenant"
    }
}

#[tokio::test]
async fn huge_and_empty_keys_are_budgets_of_their_own() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .key(TenantKey)
        .build()
        .unwrap();
    let app = app(layer);
    let from = |tenant: &str| {
        Request::get("/a")
            .header("x-tenant", tenant)
            .body(Body::empty())
            .unwrap()
    };
    let huge = "t".repeat(60_000);
    let huge_too = format!("{}u", "t".repeat(59_999));
    for tenant in ["", &huge, &huge_too] {
        let first = app.clone().oneshot(from(tenant)).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let second = app.clone().oneshot(from(tenant)).await.unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let keyless = call(&app, "/a").await;
    assert_eq!(keyless.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_custom_rejection_keeps_the_promised_headers() {
    struct Teapot;
    impl MakeRejection for Teapot {
        fn make_rejection(&self, _: &RateLimited) -> Response<bytes::Bytes> {
            let mut response = Response::new(bytes::Bytes::from_static(b"slow down"));
            *response.status_mut() = StatusCode::IM_A_TEAPOT;
            response
        }
    }
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .key(Global)
        .rejection(Teapot)
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(call(&app, "/a").await.status(), StatusCode::OK);
    let limited = call(&app, "/b").await;
    assert_eq!(limited.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&limited, "retry-after"), "1");
    assert_eq!(header(&limited, "content-length"), "9");
    assert_eq!(header(&limited, "ratelimit-policy"), "\"default\";q=1;w=1");
    assert!(header(&limited, "ratelimit").starts_with("\"default\";r=0;t="));
}

#[tokio::test]
async fn panicking_closures_are_not_caught() {
    let tier_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&tier_calls);
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .key(Header::new("x-api-key"))
        .bypass(|req: &Request| req.uri().path() == "/a" && panic!("bypass"))
        .cost_by(|req: &Request| {
            if req.uri().path() == "/b" {
                panic!("cost")
            } else {
                1
            }
        })
        .tier("pro", [Policy::new("pro", Quota::per_second(100))])
        .select_tier(move |req: &Request| -> Option<&'static str> {
            calls.fetch_add(1, Ordering::SeqCst);
            if req.uri().path() == "/c" {
                panic!("tier")
            }
            None
        })
        .build()
        .unwrap();
    let app = app(layer);
    // The bypass is asked first, then the tier, then the cost: each path gets as far as the
    // closure that panics on it.
    for (path, message) in [("/a", "bypass"), ("/c", "tier"), ("/b", "cost")] {
        let req = Request::get(path)
            .header("x-api-key", "k")
            .body(Body::empty())
            .unwrap();
        let outcome = tokio::spawn(app.clone().oneshot(req)).await;
        let panic = outcome.expect_err("not caught").into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&message));
    }
    assert_eq!(tier_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_wait_of_a_shadow_policy_is_not_the_retry_after_of_a_store_of_ones_own() {
    let denied = |wait| Decision::denied(1, 0, wait, wait);
    // What a store of one's own answers with `Decisions::new`, the one constructor it has: the
    // enforced policy waits 300 ms, the shadow one an hour.
    let answer = Decisions::new(
        false,
        [
            denied(Duration::from_millis(300)),
            denied(Duration::from_secs(3600)),
        ],
    );
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(1)))
        .policy(Policy::new("per-hour", Quota::per_hour(1)).shadow(true))
        .store(Answers(answer))
        .build()
        .unwrap();
    let limited = call(&app(layer), "/a").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "1");
    let rejected = limited.extensions().get::<RateLimited>().unwrap();
    assert_eq!(rejected.retry_after(), Duration::from_millis(300));
    assert_eq!(rejected.policy().name(), "per-second");
}
