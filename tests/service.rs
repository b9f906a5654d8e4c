//! The middleware on its own: a `service_fn` or a `tower_test` mock behind the layer, time
//! driven by a `ManualClock`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_ratelimit::{
    ConfigError, Decisions, DefaultRejection, Header, MakeRejection, ManualClock, MemoryStack,
    MemoryStore, MissingKey, MissingKeyRejected, PeerIp, Policy, Quota, RateLimitLayer,
    RateLimited, Store,
};

mod common;
use common::{header, manual_store, Captured, DownStore};

const PEER: &str = "192.0.2.10:40000";

/// A request from `peer`, carrying its address the way a plain hyper server would.
fn from(peer: &str) -> Request<String> {
    let mut req = Request::new(String::new());
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().expect("a socket address"));
    req
}

/// An inner service that answers `ok` and counts its calls.
fn counting_ok() -> (
    impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = service_fn(move |_req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
    });
    (svc, calls)
}

/// One request a second per peer, on a store whose clock stands still: the request after the
/// first is limited however long the first one took.
fn one_a_second() -> RateLimitLayer<PeerIp, MemoryStore<ManualClock>> {
    RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .store(manual_store().0)
        .build()
        .unwrap()
}

/// Sends one request through `svc`, waiting for readiness first.
async fn send<S>(svc: &mut S, req: Request<String>) -> Response<String>
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

async fn text(response: Response<String>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).expect("a UTF-8 body")
}

#[tokio::test]
async fn admits_the_burst_then_rejects_with_429_and_retry_after() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(3))
        .store(store)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(inner);

    for _ in 0..3 {
        let response = send(&mut svc, from(PEER)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "ok");
    }
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "1");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let other = send(&mut svc, from("192.0.2.11:40000")).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another peer has its own budget"
    );
}

#[tokio::test]
async fn retry_after_is_the_exact_wait_rounded_up_and_never_zero() {
    let (store, clock) = manual_store();
    // Two per minute: one cell every 30 s.
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    send(&mut svc, from(PEER)).await;
    send(&mut svc, from(PEER)).await;

    let cases = [
        (Duration::ZERO, "30", Duration::from_secs(30)),
        (
            Duration::from_millis(10_500),
            "20",
            Duration::from_millis(19_500),
        ),
        (
            Duration::from_nanos(19_499_999_999),
            "1",
            Duration::from_nanos(1),
        ),
    ];
    for (advance, expected, exact) in cases {
        clock.advance(advance);
        let limited = send(&mut svc, from(PEER)).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&limited, "retry-after"), expected);
        let info = limited.extensions().get::<RateLimited>().unwrap();
        assert_eq!(info.retry_after(), exact);
    }
}

#[tokio::test]
async fn rejection_carries_ratelimit_policy_and_ratelimit_fields_in_draft_syntax() {
    let (store, clock) = manual_store();
    let mut svc = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_minute(10).allow_burst(20)))
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    for _ in 0..20 {
        assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    }
    clock.advance(Duration::from_millis(500));
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // q = burst, w = the window b·T in seconds.
    assert_eq!(header(&limited, "ratelimit-policy"), "\"api\";q=20;w=120");
    // r = cost-1 checks left now, t = seconds until a full burst again (119.5 s, rounded up).
    assert_eq!(header(&limited, "ratelimit"), "\"api\";r=0;t=120");
    assert_eq!(header(&limited, "retry-after"), "6");

    // Three more cells accrue in 18 s, and no more.
    clock.advance(Duration::from_secs(18));
    for _ in 0..3 {
        assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    }
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "6");
}

#[tokio::test]
async fn rejection_is_a_short_text_plain_body() {
    let mut svc = RateLimitLayer::new(Quota::per_hour(1)).layer(counting_ok().0);
    send(&mut svc, from(PEER)).await;
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        header(&limited, "content-type").starts_with("text/plain"),
        "{:?}",
        limited.headers()
    );
    let body = text(limited).await;
    assert!(!body.is_empty() && body.len() < 100, "{body:?}");
    assert!(
        body.contains("3600"),
        "the body says how long to wait: {body:?}"
    );
}

#[tokio::test]
async fn rejection_puts_the_typed_limit_in_the_response_extensions() {
    let (store, clock) = manual_store();
    let quota = Quota::per_second(4);
    let mut svc = RateLimitLayer::builder()
        .quota(quota)
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    for _ in 0..4 {
        let allowed = send(&mut svc, from(PEER)).await;
        assert!(allowed.extensions().get::<RateLimited>().is_none());
    }
    clock.advance(Duration::from_millis(40));
    let limited = send(&mut svc, from(PEER)).await;
    let info = limited
        .extensions()
        .get::<RateLimited>()
        .expect("RateLimited in the extensions");
    assert_eq!(info.quota(), &quota);
    assert_eq!(info.policy().name(), "default");
    assert_eq!(info.policies(), [Policy::new("default", quota)]);
    assert_eq!(info.decisions().len(), 1);
    assert!(!info.is_grpc());
    assert!(!info.decision().is_allowed());
    assert_eq!(info.decision().limit(), 4);
    assert_eq!(info.decision().remaining(), 0);
    assert_eq!(info.retry_after(), Duration::from_millis(210));
    assert_eq!(info.decision().reset_after(), Duration::from_millis(960));
    assert_eq!(info.retry_after_secs(), 1);
}

#[tokio::test]
async fn allowed_responses_carry_the_headers_when_enabled() {
    let (store, _clock) = manual_store();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .headers_on_success(true)
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    let first = send(&mut svc, from(PEER)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit-policy"), "\"default\";q=2;w=1");
    assert_eq!(header(&first, "ratelimit"), "\"default\";r=1;t=1");
    assert!(first.headers().get(RETRY_AFTER).is_none());
    let second = send(&mut svc, from(PEER)).await;
    assert_eq!(header(&second, "ratelimit"), "\"default\";r=0;t=1");
    assert_eq!(text(second).await, "ok", "the inner body is untouched");
}

#[tokio::test]
async fn allowed_responses_carry_no_headers_by_default() {
    let mut svc = RateLimitLayer::new(Quota::per_second(2)).layer(counting_ok().0);
    let allowed = send(&mut svc, from(PEER)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    for name in ["ratelimit", "ratelimit-policy", "retry-after"] {
        assert!(allowed.headers().get(name).is_none(), "{name} present");
    }
}

#[tokio::test]
async fn a_request_of_cost_n_takes_n_cells() {
    let (store, clock) = manual_store();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .cost(3)
        .headers_on_success(true)
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    let remaining: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            let allowed = send(&mut svc, from(PEER)).await;
            assert_eq!(allowed.status(), StatusCode::OK);
            out.push(header(&allowed, "ratelimit").to_owned());
        }
        out
    };
    assert_eq!(
        remaining,
        [
            "\"default\";r=7;t=1",
            "\"default\";r=4;t=1",
            "\"default\";r=1;t=1"
        ]
    );
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let info = limited.extensions().get::<RateLimited>().unwrap();
    assert_eq!(
        info.retry_after(),
        Duration::from_millis(200),
        "one cell is left, two more must accrue"
    );
    assert_eq!(info.decision().remaining(), 1);

    clock.advance(Duration::from_millis(199));
    assert_eq!(
        send(&mut svc, from(PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
}

fn problem_json(limited: &RateLimited) -> Response<String> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "retry_after": limited.retry_after_secs(),
    });
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(CONTENT_TYPE, "application/problem+json")
        .body(body.to_string())
        .unwrap()
}

#[tokio::test]
async fn a_custom_rejection_gets_the_standard_headers_added() {
    let (store, _clock) = manual_store();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_minute(6))
        .rejection(problem_json)
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    for _ in 0..6 {
        send(&mut svc, from(PEER)).await;
    }
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "content-type"), "application/problem+json");
    assert_eq!(header(&limited, "retry-after"), "10");
    assert_eq!(header(&limited, "ratelimit-policy"), "\"default\";q=6;w=60");
    assert_eq!(header(&limited, "ratelimit"), "\"default\";r=0;t=60");
    assert!(limited.extensions().get::<RateLimited>().is_some());
    let body: serde_json::Value = serde_json::from_str(&text(limited).await).unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry_after"], 10);
}

#[tokio::test]
async fn a_custom_rejection_keeps_the_headers_it_set_itself() {
    let own_headers = |limited: &RateLimited| {
        let mut response = problem_json(limited);
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        headers.insert("ratelimit-policy", HeaderValue::from_static("\"own\";q=1"));
        headers.insert("ratelimit", HeaderValue::from_static("\"own\";r=0"));
        response
    };
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .rejection(own_headers)
        .store(manual_store().0)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    send(&mut svc, from(PEER)).await;
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(header(&limited, "retry-after"), "3600");
    assert_eq!(header(&limited, "ratelimit-policy"), "\"own\";q=1");
    assert_eq!(header(&limited, "ratelimit"), "\"own\";r=0");
    assert_eq!(limited.headers().get_all(RETRY_AFTER).iter().count(), 1);
}

#[tokio::test]
async fn a_request_without_a_peer_address_gets_500_and_a_warning_saying_what_to_fix() {
    let (logs, _guard) = Captured::install(tracing::Level::WARN);

    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::new(Quota::per_second(10)).layer(inner);
    let response = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the inner service ran");
    assert!(!text(response).await.is_empty());

    let log = logs.text();
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "the warning must say how to fix the server: {log}"
    );
}

#[tokio::test]
async fn missing_key_allow_lets_keyless_requests_through_unlimited() {
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Allow)
        .headers_on_success(true)
        .build()
        .unwrap()
        .layer(inner);
    for _ in 0..5 {
        let response = send(&mut svc, Request::new(String::new())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers().get("ratelimit").is_none(),
            "no decision was made, so there is nothing to report"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    let keyed = || {
        Request::builder()
            .header("x-api-key", "k1")
            .body(String::new())
            .unwrap()
    };
    assert_eq!(send(&mut svc, keyed()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&mut svc, keyed()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A layer keyed by the `x-api-key` header that answers a request without one `401`.
fn api_key_layer() -> RateLimitLayer<Header> {
    RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
        .build()
        .unwrap()
}

#[tokio::test]
async fn missing_key_reject_answers_with_the_configured_status() {
    let (inner, calls) = counting_ok();
    let mut svc = api_key_layer().layer(inner);
    let response = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let empty = Request::builder()
        .header("x-api-key", "")
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(&mut svc, empty).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
#[should_panic(expected = "ResponseFuture polled after completion")]
fn an_allowed_response_future_polled_again_panics_with_a_message() {
    // An inner future that answers whenever it is polled: only ours can refuse a second poll.
    let inner = service_fn(|_req: Request<String>| {
        std::future::poll_fn(|_| Poll::Ready(Ok::<_, Infallible>(Response::new(String::new()))))
    });
    let mut svc = RateLimitLayer::new(Quota::per_second(10)).layer(inner);
    let mut future = std::pin::pin!(svc.call(from(PEER)));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_ready());
    let _ = future.as_mut().poll(&mut cx);
}

/// A 1xx or 2xx answer, or a 304 (use the copy you have), would tell the client it was
/// served; `http::StatusCode` holds any three digits, and HTTP's classes end at 5xx, so a
/// client cannot tell what 6xx to 9xx mean.
#[test]
fn a_missing_key_status_that_says_served_or_is_in_no_http_class_is_a_build_error() {
    let served = [
        StatusCode::OK,
        StatusCode::NO_CONTENT,
        StatusCode::CONTINUE,
        StatusCode::NOT_MODIFIED,
    ];
    let classless = [600, 700, 999].map(|code| StatusCode::from_u16(code).unwrap());
    for (status, why) in (served
        .iter()
        .map(|s| (s, "would tell the client it was served")))
    .chain(
        classless
            .iter()
            .map(|s| (s, "is in no class of HTTP status")),
    ) {
        let err = RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .key(Header::new("x-api-key"))
            .on_missing_key(MissingKey::Reject(*status))
            .build()
            .expect_err("a status no client can read as a rejection was accepted");
        let message = err.to_string();
        assert!(message.contains(status.as_str()), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(message.contains("4xx or 5xx"), "{message}");
    }
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::from_u16(599).unwrap(),
    ] {
        assert!(RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .on_missing_key(MissingKey::Reject(status))
            .build()
            .is_ok());
    }
}

/// Sends requests without a key to a login page.
struct ToLogin;

impl MakeRejection for ToLogin {
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        DefaultRejection.make_rejection(limited)
    }

    fn make_missing_key(&self, rejected: &MissingKeyRejected) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = rejected.status();
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/login"));
        response
    }
}

/// A redirect to a login page is a way to answer a request without a session, once the
/// answer says where to go: the default rejection's does not, and is refused when the layer
/// is built rather than sent as a redirect to nowhere.
#[tokio::test]
async fn a_missing_key_redirect_needs_an_answer_with_a_location() {
    let to_login = || {
        RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .key(Header::new("x-api-key"))
            .on_missing_key(MissingKey::Reject(StatusCode::SEE_OTHER))
    };
    let err = to_login()
        .build()
        .expect_err("a redirect without a Location was accepted");
    let message = err.to_string();
    assert!(message.contains("303 See Other"), "{message}");
    assert!(message.contains("Location"), "{message}");

    let mut svc = to_login()
        .rejection(ToLogin)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    let keyless = send(&mut svc, from(PEER)).await;
    assert_eq!(keyless.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&keyless, "location"), "/login");
}

#[tokio::test]
async fn for_grpc_answers_resource_exhausted_over_http_200() {
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .for_grpc()
        .store(manual_store().0)
        .build()
        .unwrap()
        .layer(inner);
    assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::OK);
    assert_eq!(header(&limited, "grpc-status"), "8");
    assert!(header(&limited, "content-type").starts_with("application/grpc"));
    assert!(header(&limited, "grpc-message").contains("rate limit"));
    assert!(limited.extensions().get::<RateLimited>().unwrap().is_grpc());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(text(limited).await.is_empty(), "a trailers-only response");

    let keyless = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(keyless.status(), StatusCode::OK);
    assert_eq!(header(&keyless, "grpc-status"), "13", "INTERNAL");
}

#[tokio::test]
async fn grpc_requests_are_recognised_by_their_content_type() {
    let mut svc = one_a_second().layer(counting_ok().0);
    let grpc = || {
        let mut req = from(PEER);
        *req.method_mut() = Method::POST;
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        req
    };
    assert_eq!(send(&mut svc, grpc()).await.status(), StatusCode::OK);
    let limited = send(&mut svc, grpc()).await;
    assert_eq!(limited.status(), StatusCode::OK);
    assert_eq!(header(&limited, "grpc-status"), "8");
    let plain = send(&mut svc, from(PEER)).await;
    assert_eq!(plain.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn grpc_answers_carry_application_grpc_and_grpc_web_ones_echo_their_content_type() {
    let mut svc = one_a_second().layer(counting_ok().0);
    let with_type = |content_type: &'static str| {
        let mut req = from(PEER);
        *req.method_mut() = Method::POST;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        req
    };
    assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    for (sent, answered) in [
        ("application/grpc", "application/grpc"),
        ("application/grpc+proto", "application/grpc"),
        ("application/grpc-web", "application/grpc-web"),
        ("application/grpc-web+proto", "application/grpc-web+proto"),
        ("application/grpc-web-text", "application/grpc-web-text"),
    ] {
        let limited = send(&mut svc, with_type(sent)).await;
        assert_eq!(limited.status(), StatusCode::OK, "{sent}");
        assert_eq!(header(&limited, "grpc-status"), "8", "{sent}");
        assert_eq!(header(&limited, "content-type"), answered, "{sent}");
    }
}

#[test]
fn builder_errors_name_the_bad_value() {
    fn message<E, St: Store, R, X>(
        built: Result<RateLimitLayer<E, St, R, X>, ConfigError>,
    ) -> String {
        match built {
            Ok(_) => panic!("the layer was built"),
            Err(err) => err.to_string(),
        }
    }
    let no_policy = message(RateLimitLayer::builder().build());
    assert!(no_policy.contains("no policy"), "{no_policy}");
    assert!(no_policy.contains(".quota("), "{no_policy}");

    let too_big = message(
        RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .cost(11)
            .build(),
    );
    assert!(
        too_big.contains("cost 11") && too_big.contains("burst 10"),
        "{too_big}"
    );
    let too_big_for_one = message(
        RateLimitLayer::builder()
            .policy(Policy::new("wide", Quota::per_second(100)))
            .policy(Policy::new("narrow", Quota::per_second(4)))
            .cost(5)
            .build(),
    );
    assert!(too_big_for_one.contains("\"narrow\""), "{too_big_for_one}");

    for bad in [
        "",
        "say \"hi\"",
        "back\\slash",
        "naïve",
        "line\nbreak",
        "{braced}",
    ] {
        let err = message(
            RateLimitLayer::builder()
                .policy(Policy::new(bad, Quota::per_second(10)))
                .build(),
        );
        assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
    }
    let long = "x".repeat(65);
    let err = message(
        RateLimitLayer::builder()
            .policy(Policy::new(long.as_str(), Quota::per_second(10)))
            .build(),
    );
    assert!(err.contains(&long), "{err}");

    let twice = message(
        RateLimitLayer::builder()
            .policy(Policy::new("api", Quota::per_second(10)))
            .policy(Policy::new("api", Quota::per_minute(100)))
            .build(),
    );
    assert!(
        twice.contains("\"api\"") && twice.contains("twice"),
        "{twice}"
    );

    let empty_tier = message(
        RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .tier("pro", [])
            .build(),
    );
    assert!(empty_tier.contains("\"pro\""), "{empty_tier}");

    let same_tier = message(
        RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .tier("pro", [Policy::new("pro", Quota::per_second(100))])
            .tier("pro", [Policy::new("pro-2", Quota::per_second(100))])
            .build(),
    );
    assert!(same_tier.contains("\"pro\""), "{same_tier}");

    let bad_tier_name = message(
        RateLimitLayer::builder()
            .quota(Quota::per_second(10))
            .tier("pro", [Policy::new("say \"pro\"", Quota::per_second(100))])
            .build(),
    );
    assert!(bad_tier_name.contains("say"), "{bad_tier_name}");
}

#[tokio::test]
async fn a_fixed_cost_of_0_lets_every_request_through_without_touching_the_store() {
    let (store, _clock) = manual_store();
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .cost(0)
        .headers_on_success(true)
        .store(store.clone())
        .build()
        .unwrap()
        .layer(inner);
    for _ in 0..5 {
        let response = send(&mut svc, from(PEER)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(store.is_empty());
}

#[test]
fn a_cost_equal_to_the_burst_is_valid() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .cost(10)
        .build();
    assert!(layer.is_ok());
}

#[tokio::test]
async fn every_clone_of_the_service_shares_one_budget() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .store(store)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let svc = layer.layer(inner);
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses.push(svc.clone().oneshot(from(PEER)).await.unwrap().status());
    }
    let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(allowed, 10, "{statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 10);

    // Services made from clones of the layer share the budget too.
    let from_clone = layer.clone().layer(counting_ok().0);
    let response = from_clone.oneshot(from(PEER)).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn two_layers_are_two_budgets_unless_they_share_a_store() {
    // An hour's quota: had the two layers one budget, the second would be limited however
    // long the first request took.
    let separate_a = RateLimitLayer::new(Quota::per_hour(1)).layer(counting_ok().0);
    let separate_b = RateLimitLayer::new(Quota::per_hour(1)).layer(counting_ok().0);
    assert_eq!(
        separate_a.oneshot(from(PEER)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        separate_b.oneshot(from(PEER)).await.unwrap().status(),
        StatusCode::OK
    );

    let (store, _clock) = manual_store();
    let layer = |store: MemoryStore<ManualClock>| {
        RateLimitLayer::builder()
            .quota(Quota::per_second(1))
            .store(store)
            .build()
            .unwrap()
    };
    let shared_a = layer(store.clone()).layer(counting_ok().0);
    let shared_b = layer(store).layer(counting_ok().0);
    assert_eq!(
        shared_a.oneshot(from(PEER)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        shared_b.oneshot(from(PEER)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_client_that_waits_exactly_retry_after_is_admitted() {
    let (store, clock) = manual_store();
    // One a minute: the exact wait is a whole number of seconds, so the header is exact too.
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    clock.advance(Duration::from_millis(12_000));
    let limited = send(&mut svc, from(PEER)).await;
    let wait: u64 = header(&limited, "retry-after").parse().unwrap();
    assert_eq!(wait, 48);

    clock.advance(Duration::from_secs(wait) - Duration::from_nanos(1));
    let early = send(&mut svc, from(PEER)).await;
    assert_eq!(
        early.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "1 ns early is still too early"
    );
    assert_eq!(
        early
            .extensions()
            .get::<RateLimited>()
            .unwrap()
            .retry_after(),
        Duration::from_nanos(1)
    );
    assert_eq!(header(&early, "retry-after"), "1", "never 0");
    clock.advance(Duration::from_nanos(1));
    assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_waits_the_exact_wait_from_the_extension_is_admitted() {
    let (store, clock) = manual_store();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(3).allow_burst(2))
        .store(store)
        .build()
        .unwrap()
        .layer(counting_ok().0);
    for step in [0, 7, 1_234_567, 1] {
        clock.advance(Duration::from_nanos(step));
        loop {
            let response = send(&mut svc, from(PEER)).await;
            if response.status() == StatusCode::OK {
                continue;
            }
            let exact = response
                .extensions()
                .get::<RateLimited>()
                .unwrap()
                .retry_after();
            assert!(exact > Duration::ZERO);
            let header_wait: u64 = header(&response, "retry-after").parse().unwrap();
            assert!(Duration::from_secs(header_wait) >= exact);
            clock.advance(exact - Duration::from_nanos(1));
            assert_eq!(
                send(&mut svc, from(PEER)).await.status(),
                StatusCode::TOO_MANY_REQUESTS
            );
            clock.advance(Duration::from_nanos(1));
            assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
            break;
        }
    }
}

type MockService = tower_test::mock::Mock<Request<String>, Response<String>>;

#[tokio::test]
async fn the_inner_service_is_called_for_allowed_requests_only() {
    let layer = one_a_second();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_with(move |mock: MockService| layer.layer(mock));

    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let allowed = svc.call(from(PEER));
    let (request, reply) = handle.next_request().await.expect("the inner service ran");
    assert_eq!(
        request.extensions().get::<SocketAddr>(),
        Some(&PEER.parse().unwrap()),
        "the request reaches the inner service unchanged"
    );
    reply.send_response(Response::new(String::from("from inner")));
    let response = allowed.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "from inner");

    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let limited = svc.call(from(PEER)).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        handle.poll_request().is_pending(),
        "the inner service was called for a limited request"
    );
}

#[tokio::test]
async fn poll_ready_forwards_to_the_inner_service() {
    let layer = RateLimitLayer::new(Quota::per_second(1));
    let (mut svc, mut handle) =
        tower_test::mock::spawn_with(move |mock: MockService| layer.layer(mock));

    handle.allow(0);
    assert!(
        svc.poll_ready().is_pending(),
        "inner not ready, layer ready"
    );
    handle.allow(1);
    assert!(
        svc.is_woken(),
        "the inner service's wakeup reaches the caller"
    );
    assert!(svc.poll_ready().is_ready());

    handle.send_error("inner failed");
    let mut fresh = svc.clone();
    match fresh.poll_ready() {
        Poll::Ready(Err(err)) => assert_eq!(err.to_string(), "inner failed"),
        other => panic!("the inner error must come through unchanged: {other:?}"),
    }
}

#[tokio::test]
async fn inner_errors_come_through_unchanged() {
    let failing = service_fn(|_req: Request<String>| async {
        Err::<Response<String>, _>(io::Error::other("backend down"))
    });
    let svc = RateLimitLayer::new(Quota::per_second(1)).layer(failing);
    let err = svc.oneshot(from(PEER)).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
}

/// A store that answers one poll later, as a network store would, and counts how often its
/// futures were polled.
#[derive(Clone)]
struct SlowStore {
    memory: MemoryStore<ManualClock>,
    polls: Arc<AtomicUsize>,
}

struct Later {
    outcome: Option<Result<Decisions, Infallible>>,
    waited: bool,
    polls: Arc<AtomicUsize>,
}

impl Future for Later {
    type Output = Result<Decisions, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.outcome.take().expect("polled after completion"))
    }
}

impl SlowStore {
    fn later(&self, decisions: Decisions) -> Later {
        Later {
            outcome: Some(Ok(decisions)),
            waited: false,
            polls: Arc::clone(&self.polls),
        }
    }
}

impl Store for SlowStore {
    type Stack = MemoryStack;
    type Error = Infallible;
    type Future = Later;

    fn register(&self, policies: &[Policy]) -> Result<MemoryStack, ConfigError> {
        self.memory.register(policies)
    }

    fn check(&self, stack: &MemoryStack, key: &[u8], cost: u32) -> Later {
        self.later(self.memory.check_now(stack, key, cost))
    }

    fn peek(&self, stack: &MemoryStack, key: &[u8]) -> Later {
        self.later(self.memory.peek_now(stack, key))
    }
}

/// A custom key: the peer's IP address read from a plain `SocketAddr` extension.
fn peer_ip(req: &Request<String>) -> Option<IpAddr> {
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

#[tokio::test]
async fn a_store_that_must_wait_decides_inside_the_response_future() {
    let (memory, _clock) = manual_store();
    let polls = Arc::new(AtomicUsize::new(0));
    let store = SlowStore {
        memory,
        polls: Arc::clone(&polls),
    };
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .key(peer_ip)
        .headers_on_success(true)
        .store(store)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(inner);

    let first = svc.ready().await.unwrap().call(from(PEER));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "called before the store answered"
    );
    assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once inside call");
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit"), "\"default\";r=1;t=1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Two calls in flight at once: the service stays usable while a check waits.
    let second = svc.ready().await.unwrap().call(from(PEER));
    let third = svc.ready().await.unwrap().call(from(PEER));
    let (second, third) = tokio::join!(second, third);
    assert_eq!(second.unwrap().status(), StatusCode::OK);
    let third = third.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&third, "retry-after"), "1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_store_that_must_wait_decides_the_request_s_tier_and_whole_stack() {
    let (memory, _clock) = manual_store();
    let store = SlowStore {
        memory,
        polls: Arc::new(AtomicUsize::new(0)),
    };
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(5)))
        .policy(Policy::new("per-minute", Quota::per_minute(2)))
        .tier("vip", [Policy::new("vip", Quota::per_minute(3))])
        .select_tier(|req: &Request<String>| req.headers().contains_key("x-vip").then_some("vip"))
        .key(peer_ip)
        .store(store)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(inner);
    let vip = || {
        let mut req = from(PEER);
        req.headers_mut()
            .insert("x-vip", HeaderValue::from_static("1"));
        req
    };
    for _ in 0..2 {
        assert_eq!(send(&mut svc, from(PEER)).await.status(), StatusCode::OK);
    }
    let limited = send(&mut svc, from(PEER)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&limited, "ratelimit"),
        "\"per-second\";r=3;t=1, \"per-minute\";r=0;t=60"
    );
    assert_eq!(header(&limited, "retry-after"), "30");
    for _ in 0..3 {
        assert_eq!(send(&mut svc, vip()).await.status(), StatusCode::OK);
    }
    let limited = send(&mut svc, vip()).await;
    assert_eq!(header(&limited, "ratelimit-policy"), "\"vip\";q=3;w=60");
    assert_eq!(
        limited
            .extensions()
            .get::<RateLimited>()
            .unwrap()
            .policy()
            .name(),
        "vip"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_failing_store_answers_503_with_retry_after_1_without_calling_inner() {
    let (logs, _guard) = Captured::install(tracing::Level::WARN);
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .key(peer_ip)
        .store(DownStore)
        .build()
        .unwrap()
        .layer(inner);
    let response = send(&mut svc, from(PEER)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The line names the tier, as the line of a failure served under shadow policies does.
    let line = logs.text();
    assert!(line.contains("the request is not served"), "{line}");
    assert!(line.contains("tier=\"default\""), "{line}");
}

/// A shadow policy never rejects: a store that fails under a stack of shadow policies alone
/// has nothing to enforce, and the request is served.
#[tokio::test]
async fn a_failing_store_under_shadow_policies_alone_serves_the_request() {
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .policy(Policy::new("trial", Quota::per_second(2)).shadow(true))
        .key(peer_ip)
        .store(DownStore)
        .build()
        .unwrap()
        .layer(inner);
    let response = send(&mut svc, from(PEER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // With an enforced policy in the stack, the store's failure is still a failure.
    let (inner, calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(2)))
        .policy(Policy::new("trial", Quota::per_second(1)).shadow(true))
        .key(peer_ip)
        .store(DownStore)
        .build()
        .unwrap()
        .layer(inner);
    let response = send(&mut svc, from(PEER)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A gRPC call without a peer address or an API key.
fn grpc_call() -> Request<String> {
    Request::post("/helloworld.Greeter/SayHello")
        .header(CONTENT_TYPE, "application/grpc")
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn the_default_answer_without_a_key_is_plain_text_or_a_grpc_status() {
    let (inner, _calls) = counting_ok();
    let mut svc = api_key_layer().layer(inner);
    let response = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers().len(), 1, "{:?}", response.headers());
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(text(response).await, "request has no rate-limit key\n");

    let response = send(&mut svc, grpc_call()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().len(), 3, "{:?}", response.headers());
    assert_eq!(header(&response, "content-type"), "application/grpc");
    assert_eq!(header(&response, "grpc-status"), "16", "UNAUTHENTICATED");
    assert_eq!(
        header(&response, "grpc-message"),
        "request has no rate-limit key"
    );
    assert_eq!(text(response).await, "");
}

#[tokio::test]
async fn the_default_answer_of_a_failing_store_is_plain_text_or_a_grpc_status() {
    let (inner, _calls) = counting_ok();
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .key(tower_ratelimit::Global)
        .store(DownStore)
        .build()
        .unwrap()
        .layer(inner);
    let response = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().len(), 2, "{:?}", response.headers());
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(text(response).await, "rate limit store unavailable\n");

    let response = send(&mut svc, grpc_call()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().len(), 5, "{:?}", response.headers());
    assert_eq!(header(&response, "content-type"), "application/grpc");
    assert_eq!(header(&response, "grpc-status"), "14", "UNAVAILABLE");
    assert_eq!(
        header(&response, "grpc-message"),
        "rate limit store unavailable"
    );
    assert_eq!(header(&response, "grpc-retry-pushback-ms"), "1000");
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(text(response).await, "");
}

#[tokio::test]
async fn any_request_body_type_is_accepted() {
    let inner = service_fn(|req: Request<Bytes>| async move {
        Ok::<_, Infallible>(Response::new(http_body_util::Full::new(req.into_body())))
    });
    let mut svc = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .key(tower_ratelimit::Global)
        .store(manual_store().0)
        .build()
        .unwrap()
        .layer(inner);
    let echoed = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(Bytes::from_static(b"payload")))
        .await
        .unwrap();
    let body = echoed.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "payload");
    let limited = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(Bytes::new()))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"Too Many Requests"), "{body:?}");
}

#[cfg(feature = "axum")]
#[test]
fn the_layer_and_service_are_clone_send_sync_static_with_a_send_future() {
    use tower_ratelimit::{AllowIps, RateLimit};

    fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    fn send_future<S, Req>()
    where
        S: Service<Req>,
        S::Future: Send + 'static,
    {
    }

    clone_send_sync::<RateLimitLayer>();
    clone_send_sync::<RateLimit<axum::routing::Route>>();
    clone_send_sync::<RateLimit<axum::Router>>();
    send_future::<RateLimit<axum::routing::Route>, axum::extract::Request>();
    send_future::<RateLimit<axum::Router>, axum::extract::Request>();

    // With a custom key closure, another store and a custom rejection as well.
    fn fits_axum<L>(_: &L)
    where
        L: Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<axum::extract::Request>>::Future: Send + 'static,
    {
    }
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .key(|req: &axum::extract::Request| {
            req.headers()
                .get("x-api-key")
                .map(|v| v.as_bytes().to_vec())
        })
        .store(
            MemoryStore::builder()
                .clock(ManualClock::new())
                .build()
                .unwrap(),
        )
        .rejection(problem_json)
        .build()
        .unwrap();
    fits_axum(&layer);
    fits_axum(&RateLimitLayer::new(Quota::per_second(1)));

    // With every per-request rule set, over a store that must wait.
    let everything = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(10)))
        .policy(Policy::new("trial", Quota::per_second(1)).shadow(true))
        .tier("pro", [Policy::new("pro", Quota::per_second(100))])
        .select_tier(|req: &axum::extract::Request| {
            req.headers().contains_key("x-pro").then_some("pro")
        })
        .cost_by(|req: &axum::extract::Request| u32::from(req.method() == http::Method::POST) + 1)
        .bypass(AllowIps::new(["10.0.0.0/8"]).unwrap())
        .store(SlowStore {
            memory: manual_store().0,
            polls: Arc::new(AtomicUsize::new(0)),
        })
        .build()
        .unwrap();
    fits_axum(&everything);
}

#[test]
fn the_service_s_debug_shows_every_tier_as_the_layer_s_does() {
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .tier("pro", [Policy::new("pro", Quota::per_minute(1000))])
        .select_tier(|req: &Request<String>| req.headers().contains_key("x-pro").then_some("pro"))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let layer_debug = format!("{layer:?}");
    let svc_debug = format!("{svc:?}");
    assert!(layer_debug.contains("\"pro\""), "{layer_debug}");
    let tiers = |debug: &str| {
        let start = debug.find("tiers: ").expect("a tiers field");
        debug[start..].to_owned()
    };
    assert!(svc_debug.starts_with("RateLimit { inner: "), "{svc_debug}");
    assert_eq!(tiers(&svc_debug), tiers(&layer_debug));
}

/// The panic on a second poll holds on the path that adds the headers to an allowed response
/// too, not only on the path that passes the inner answer through as it is.
#[test]
#[should_panic(expected = "ResponseFuture polled after completion")]
fn an_allowed_response_future_with_headers_polled_again_panics_with_a_message() {
    let inner = service_fn(|_req: Request<String>| {
        std::future::poll_fn(|_| Poll::Ready(Ok::<_, Infallible>(Response::new(String::new()))))
    });
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .headers_on_success(true)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    let mut future = std::pin::pin!(svc.call(from(PEER)));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => assert!(response.headers().contains_key("ratelimit")),
        _ => panic!("the allowed answer is ready on the first poll"),
    }
    let _ = future.as_mut().poll(&mut cx);
}

/// The response future's `Debug` says what it is waiting on, and that it is done once it has
/// answered.
#[test]
fn a_response_future_says_done_once_it_has_answered() {
    let inner = service_fn(|_req: Request<String>| {
        std::future::poll_fn(|_| Poll::Ready(Ok::<_, Infallible>(Response::new(String::new()))))
    });
    let mut svc = RateLimitLayer::new(Quota::per_second(10)).layer(inner);
    let mut future = std::pin::pin!(svc.call(from(PEER)));
    assert_eq!(
        format!("{future:?}"),
        r#"ResponseFuture { state: "inner" }"#
    );
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_ready());
    assert_eq!(format!("{future:?}"), r#"ResponseFuture { state: "done" }"#);
}

/// While a check waits on the store, the request must be served by the very service that
/// `poll_ready` drove to readiness: a `ConcurrencyLimit` clone holds no permit, and calling
/// it panics.
#[tokio::test]
async fn a_store_that_must_wait_calls_the_inner_service_that_was_made_ready() {
    let (memory, _clock) = manual_store();
    let store = SlowStore {
        memory,
        polls: Arc::new(AtomicUsize::new(0)),
    };
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .key(peer_ip)
        .store(store)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(tower::limit::ConcurrencyLimit::new(inner, 1));
    for _ in 0..3 {
        let response = svc.ready().await.unwrap().call(from(PEER)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A layer is a dry run only if every tier is all shadow: one shadow-only tier beside an
/// enforced default tier must not make the layer serve requests without a key.
#[tokio::test]
async fn a_shadow_only_tier_does_not_make_the_layer_serve_requests_without_a_key() {
    let q = Quota::per_second(10);
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("free", q))
        .tier("trial", [Policy::new("trial", q).shadow(true)])
        .select_tier(|req: &Request<String>| {
            req.headers().contains_key("x-trial").then_some("trial")
        })
        .key(Header::new("x-api-key"))
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(inner);
    let keyless = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(keyless.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Tiers without a default stack: the error names the default tier, with one tier as with
/// several.
#[test]
fn one_tier_without_a_default_policy_is_a_build_error_that_names_the_default_tier() {
    let err = RateLimitLayer::builder()
        .tier("pro", [Policy::new("pro", Quota::per_second(10))])
        .select_tier(|_: &Request<String>| None::<&str>)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"tiers ["pro"] but no policy for the default tier"#),
        "{err}"
    );
}

/// `grpc-message` is percent-encoded (gRPC's HTTP/2 protocol), whatever the message holds: a
/// policy name may hold a `%`, which a client would otherwise decode (`%41` is `A`).
#[tokio::test]
async fn a_grpc_answer_percent_encodes_a_policy_name_in_its_message() {
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("a%41", Quota::per_second(1)))
        .key(tower_ratelimit::Global)
        .cost_by(|_: &Request<String>| 5)
        .build()
        .unwrap();
    let (inner, calls) = counting_ok();
    let mut svc = layer.layer(inner);
    let response = send(&mut svc, grpc_call()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "grpc-status"), "3");
    assert_eq!(
        header(&response, "grpc-message"),
        r#"a request of cost 5 can never fit policy "a%2541", whose burst is 1"#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A policy is shown as its name, its quota and, in shadow mode, `shadow`.
#[test]
fn a_policy_displays_its_name_quota_and_shadow_mode() {
    let policy = Policy::new("search", Quota::per_second(10));
    assert_eq!(policy.to_string(), "search (10/s)");
    assert_eq!(policy.shadow(true).to_string(), "search (10/s), shadow");
}
