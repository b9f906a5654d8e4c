//! The layer in a real axum `Router`: routes sharing a budget, per-route quotas, and a server on
//! a real TCP socket answering a real HTTP client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower_ratelimit::{
    CostTooLarge, DefaultRejection, Header, MakeRejection, ManualClock, MemoryStore, MissingKey,
    MissingKeyRejected, Policy, Quota, RateLimitLayer, RateLimited, StoreFailed,
};

mod common;
use common::{manual_store, DownStore};

fn layer(
    policy: Policy,
    store: MemoryStore<ManualClock>,
) -> RateLimitLayer<tower_ratelimit::PeerIp, MemoryStore<ManualClock>> {
    RateLimitLayer::builder()
        .policy(policy)
        .store(store)
        .build()
        .expect("a valid layer")
}

fn get_from(path: &str, peer: &str) -> Request {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn status(app: &Router, req: Request) -> StatusCode {
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn two_routes_under_one_layer_share_one_budget() {
    let (store, _clock) = manual_store();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (Arc::clone(&calls), Arc::clone(&calls));
    let app = Router::new()
        .route(
            "/a",
            get(move || async move {
                a.fetch_add(1, Ordering::SeqCst);
                "a"
            }),
        )
        .route(
            "/b",
            get(move || async move {
                b.fetch_add(1, Ordering::SeqCst);
                "b"
            }),
        )
        .layer(layer(Policy::new("default", Quota::per_minute(3)), store))
        .layer(MockConnectInfo(SocketAddr::from(([198, 51, 100, 7], 1234))));

    let plain = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let mut statuses = Vec::new();
    for path in ["/a", "/b", "/a", "/b", "/a"] {
        statuses.push(status(&app, plain(path)).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a handler ran for a limited request"
    );

    let limited = app.clone().oneshot(plain("/b")).await.unwrap();
    assert_eq!(limited.headers()["retry-after"], "20");
    assert_eq!(
        limited.headers()["ratelimit-policy"],
        "\"default\";q=3;w=60"
    );
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"Too Many Requests"), "{body:?}");
}

#[tokio::test]
async fn each_peer_address_has_its_own_budget_in_a_router() {
    let (store, clock) = manual_store();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer(Policy::new("default", Quota::per_second(1)), store));
    assert_eq!(
        status(&app, get_from("/", "198.51.100.1:1000")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, get_from("/", "198.51.100.1:2000")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "another port of the same address is the same client"
    );
    assert_eq!(
        status(&app, get_from("/", "198.51.100.2:1000")).await,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        status(&app, get_from("/", "198.51.100.1:1000")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn route_layer_gives_each_route_its_own_quota() {
    // One store, one named policy per route: each policy is a budget of its own.
    let (store, _) = manual_store();
    let search = layer(Policy::new("search", Quota::per_second(3)), store.clone());
    let upload = layer(Policy::new("upload", Quota::per_hour(1)), store.clone());
    let app = Router::new()
        .route("/search", get(|| async { "results" }).route_layer(search))
        .route("/upload", post(|| async { "stored" }).route_layer(upload))
        .route("/health", get(|| async { "up" }));
    let peer = "203.0.113.5:5555";
    let post_from = |path: &str| {
        let mut req = Request::post(path).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    };

    assert_eq!(status(&app, post_from("/upload")).await, StatusCode::OK);
    assert_eq!(
        status(&app, post_from("/upload")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(
            status(&app, get_from("/search", peer)).await,
            StatusCode::OK
        );
    }
    let limited = app
        .clone()
        .oneshot(get_from("/search", peer))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let info = limited.extensions().get::<RateLimited>().unwrap();
    assert_eq!(info.policy().name(), "search");
    assert_eq!(info.quota(), &Quota::per_second(3));
    assert_eq!(store.len(), 1, "one peer, one key, two policies");
    for _ in 0..10 {
        assert_eq!(
            status(&app, get_from("/health", peer)).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&app, get_from("/missing", peer)).await,
            StatusCode::NOT_FOUND,
            "unrouted paths are not limited by route layers"
        );
    }
}

#[tokio::test]
async fn a_router_served_without_connect_info_answers_500() {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(Quota::per_second(10)));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_real_server_answers_a_real_client_with_200s_then_429() {
    let (store, clock) = manual_store();
    let app = Router::new()
        .route(
            "/hello",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
            }),
        )
        .layer(
            RateLimitLayer::builder()
                .quota(Quota::per_minute(3))
                .headers_on_success(true)
                .store(store)
                .build()
                .unwrap(),
        );
    let (addr, server) = common::serve(app).await;

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/hello").parse().unwrap();

    for (remaining, full_in) in [(2, 20), (1, 40), (0, 60)] {
        let response = client.get(uri.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"default\";r={remaining};t={full_in}").as_str()
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello 127.0.0.1");
    }

    let limited = client.get(uri.clone()).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = limited.headers().clone();
    assert_eq!(headers["retry-after"], "20");
    assert_eq!(headers["ratelimit-policy"], "\"default\";q=3;w=60");
    assert_eq!(headers["ratelimit"], "\"default\";r=0;t=60");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    assert!(body.starts_with(b"Too Many Requests"), "{body:?}");

    // The client waits what it was told and is admitted.
    clock.advance(Duration::from_secs(20));
    let admitted = client.get(uri).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);

    server.abort();
}

#[tokio::test]
async fn a_layer_around_the_router_limits_before_routing() {
    use tower::ServiceBuilder;

    let (store, _clock) = manual_store();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let router = Router::new().route(
        "/hello",
        get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "hello"
        }),
    );
    let app = ServiceBuilder::new()
        .layer(layer(Policy::new("app", Quota::per_minute(2)), store))
        .service(router);
    let (addr, server) = common::serve(app).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str| {
        let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
        client.get(uri)
    };

    // A path no route matches spends the budget too: the limiter runs before routing.
    assert_eq!(get("/hello").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/nowhere").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    for path in ["/hello", "/nowhere"] {
        let limited = get(path).await.unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(limited.headers()["retry-after"], "30");
        let body = limited.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "Too Many Requests: retry in 30 s\n");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the admitted request reached the handler"
    );
    server.abort();
}

#[tokio::test]
async fn an_allowed_response_lists_every_policy_that_checked_it() {
    use tower::ServiceBuilder;

    let on_success = |name: &str, quota: Quota| {
        let (store, _clock) = manual_store();
        RateLimitLayer::builder()
            .policy(Policy::new(name, quota))
            .store(store)
            .headers_on_success(true)
            .build()
            .unwrap()
    };
    // A limit per route inside a limit for the whole app, and a route whose handler passes on
    // the `RateLimit` field of an upstream API.
    let router = Router::new()
        .route(
            "/hello",
            get(|| async { "hello" }).route_layer(on_success("per-route", Quota::per_minute(3))),
        )
        .route(
            "/proxied",
            get(|| async { ([("ratelimit", "\"upstream\";r=5;t=10")], "proxied") }),
        );
    let app = ServiceBuilder::new()
        .layer(on_success("app", Quota::per_hour(100)))
        .service(router);
    let (addr, server) = common::serve(app).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str| {
        let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
        client.get(uri)
    };

    let hello = get("/hello").await.unwrap();
    assert_eq!(hello.status(), StatusCode::OK);
    let headers = hello.headers();
    assert_eq!(
        headers["ratelimit-policy"],
        "\"per-route\";q=3;w=60, \"app\";q=100;w=3600"
    );
    assert_eq!(
        headers["ratelimit"],
        "\"per-route\";r=2;t=20, \"app\";r=99;t=36"
    );
    assert_eq!(headers.get_all("ratelimit").iter().count(), 1);
    assert_eq!(headers["content-length"], "5");
    assert_eq!(
        hello.into_body().collect().await.unwrap().to_bytes(),
        "hello"
    );

    let proxied = get("/proxied").await.unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    let headers = proxied.headers();
    assert_eq!(headers["ratelimit-policy"], "\"app\";q=100;w=3600");
    assert_eq!(
        headers["ratelimit"],
        "\"upstream\";r=5;t=10, \"app\";r=98;t=72"
    );
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn tower_http_layers_that_answer_with_an_empty_body_wrap_the_limiter() {
    use tower::ServiceBuilder;
    use tower_http::cors::CorsLayer;
    use tower_http::timeout::TimeoutLayer;

    // CORS outside the limiter, so that a browser can read a 429; both answer some requests
    // themselves with an empty body of the inner service's type (`Default`).
    let (store, _clock) = manual_store();
    let router = Router::new().route("/", get(|| async { "hello" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let app = ServiceBuilder::new()
        .layer(CorsLayer::permissive())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(1),
        ))
        .layer(layer(Policy::new("app", Quota::per_minute(2)), store))
        .service(router);
    let from_browser = |method: http::Method, path: &str| {
        let mut req = get_from(path, "198.51.100.7:1000");
        *req.method_mut() = method;
        let headers = req.headers_mut();
        headers.insert(http::header::ORIGIN, "https://app.example".parse().unwrap());
        headers.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "GET".parse().unwrap(),
        );
        req
    };

    let send = |method, path| app.clone().oneshot(from_browser(method, path));

    // A preflight is answered by CORS and spends nothing.
    let preflight = send(http::Method::OPTIONS, "/").await.unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    let preflight_body = preflight.into_body().collect().await.unwrap().to_bytes();
    assert!(preflight_body.is_empty());
    let timed_out = send(http::Method::GET, "/slow").await.unwrap();
    assert_eq!(timed_out.status(), StatusCode::REQUEST_TIMEOUT);
    let allowed = send(http::Method::GET, "/").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let limited = send(http::Method::GET, "/").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["access-control-allow-origin"], "*");
    assert_eq!(limited.headers()["retry-after"], "30");
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Too Many Requests: retry in 30 s\n");
}

/// Problem details (RFC 9457) for every HTTP request that the layer does not serve, and the
/// default answers for gRPC calls. Keeps the text of each store error it is shown.
#[derive(Clone, Default)]
struct Problem {
    store_errors: Arc<Mutex<Vec<String>>>,
}

fn problem(status: StatusCode, detail: &str) -> Response<Bytes> {
    let body = format!(
        r#"{{"title":"{}","status":{},"detail":"{detail}"}}"#,
        status.canonical_reason().unwrap_or_default(),
        status.as_u16()
    );
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/problem+json")
        .body(Bytes::from(body))
        .unwrap()
}

impl MakeRejection for Problem {
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        if limited.is_grpc() {
            return DefaultRejection.make_rejection(limited);
        }
        let detail = format!("retry in {} s", limited.retry_after_secs());
        problem(StatusCode::TOO_MANY_REQUESTS, &detail)
    }

    fn make_cost_too_large(&self, too_large: &CostTooLarge) -> Response<Bytes> {
        if too_large.is_grpc() {
            return DefaultRejection.make_cost_too_large(too_large);
        }
        let detail = format!(
            "cost {} exceeds burst {}",
            too_large.cost(),
            too_large.burst()
        );
        problem(StatusCode::PAYLOAD_TOO_LARGE, &detail)
    }

    fn make_missing_key(&self, rejected: &MissingKeyRejected) -> Response<Bytes> {
        if rejected.is_grpc() {
            return DefaultRejection.make_missing_key(rejected);
        }
        problem(rejected.status(), "no API key")
    }

    fn make_store_failed(&self, failed: &StoreFailed<'_>) -> Response<Bytes> {
        self.store_errors
            .lock()
            .unwrap()
            .push(failed.error().to_string());
        if failed.is_grpc() {
            return DefaultRejection.make_store_failed(failed);
        }
        problem(StatusCode::SERVICE_UNAVAILABLE, "try again shortly")
    }
}

/// `POST /` answering "ok" and `POST /batch` answering "done", for a layer to wrap.
fn api_routes() -> Router {
    Router::new()
        .route("/", post(|| async { "ok" }))
        .route("/batch", post(|| async { "done" }))
}

/// A request to `path` with `api_key`, as HTTP or as a gRPC call.
fn api_call(path: &str, api_key: Option<&str>, grpc: bool) -> Request {
    let mut req = Request::post(path);
    if let Some(api_key) = api_key {
        req = req.header("x-api-key", api_key);
    }
    if grpc {
        req = req.header(CONTENT_TYPE, "application/grpc");
    }
    req.body(Body::empty()).unwrap()
}

/// The status, content type and body of the answer of `app` to `req`.
async fn answer(app: &Router, req: Request) -> (StatusCode, String, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The `grpc-status` of the answer of `app` to `req`, a gRPC call.
async fn grpc_status(app: &Router, req: Request) -> String {
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["grpc-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// gRPC calls are POSTs. A GET that claims a gRPC content type is answered as HTTP: its
/// rejection is a 429, never a `200` with an empty body, which a cache in front of the app
/// (one that keeps pages and files, and does not key them by the request's content type)
/// could keep and serve as the page to everyone else.
#[tokio::test]
async fn a_get_claiming_grpc_is_limited_with_a_429_not_a_cacheable_200() {
    let (store, _clock) = manual_store();
    let app = Router::new()
        .route("/app.js", get(|| async { "console.log(1)" }))
        .route("/", post(|| async { "ok" }))
        .layer(layer(Policy::new("api", Quota::per_minute(1)), store));
    let get_claiming_grpc = || {
        let mut req = get_from("/app.js", "192.0.2.7:1000");
        let value = "application/grpc".parse().unwrap();
        req.headers_mut().insert(CONTENT_TYPE, value);
        req
    };
    assert_eq!(status(&app, get_claiming_grpc()).await, StatusCode::OK);
    let limited = app.clone().oneshot(get_claiming_grpc()).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("grpc-status").is_none());

    // A POST with the same content type is a gRPC call, and gets a gRPC answer.
    let mut call = Request::post("/").body(Body::empty()).unwrap();
    call.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    let addr: SocketAddr = "192.0.2.7:1000".parse().unwrap();
    call.extensions_mut().insert(ConnectInfo(addr));
    assert_eq!(grpc_status(&app, call).await, "8");
}

#[tokio::test]
async fn a_rejection_type_answers_limited_and_too_costly_requests_as_it_chose() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .key(Header::new("x-api-key"))
        .cost_by(|req: &Request| if req.uri().path() == "/batch" { 5 } else { 1 })
        .store(store)
        .rejection(Problem::default())
        .build()
        .unwrap();
    let app = api_routes().layer(layer);

    let too_large = answer(&app, api_call("/batch", Some("alice"), false)).await;
    assert_eq!(
        too_large,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "application/problem+json".to_owned(),
            r#"{"title":"Payload Too Large","status":413,"detail":"cost 5 exceeds burst 2"}"#
                .to_owned()
        )
    );
    for _ in 0..2 {
        let (status, _, body) = answer(&app, api_call("/", Some("alice"), false)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    let limited = answer(&app, api_call("/", Some("alice"), false)).await;
    assert_eq!(
        limited,
        (
            StatusCode::TOO_MANY_REQUESTS,
            "application/problem+json".to_owned(),
            r#"{"title":"Too Many Requests","status":429,"detail":"retry in 30 s"}"#.to_owned()
        )
    );
    assert_eq!(
        grpc_status(&app, api_call("/", Some("alice"), true)).await,
        "8",
        "RESOURCE_EXHAUSTED"
    );
}

#[tokio::test]
async fn a_rejection_type_answers_a_request_without_a_key_as_it_chose() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
        .store(store)
        .rejection(Problem::default())
        .build()
        .unwrap();
    let app = api_routes().layer(layer);

    for path in ["/", "/batch"] {
        let keyless = answer(&app, api_call(path, None, false)).await;
        assert_eq!(
            keyless,
            (
                StatusCode::UNAUTHORIZED,
                "application/problem+json".to_owned(),
                r#"{"title":"Unauthorized","status":401,"detail":"no API key"}"#.to_owned()
            ),
            "{path}"
        );
    }
    assert_eq!(
        grpc_status(&app, api_call("/", None, true)).await,
        "16",
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn a_rejection_type_answers_a_request_the_store_could_not_decide_as_it_chose() {
    let problem = Problem::default();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .key(Header::new("x-api-key"))
        .store(DownStore)
        .rejection(problem.clone())
        .build()
        .unwrap();
    let app = api_routes().layer(layer);

    let failed = answer(&app, api_call("/", Some("alice"), false)).await;
    assert_eq!(
        failed,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/problem+json".to_owned(),
            r#"{"title":"Service Unavailable","status":503,"detail":"try again shortly"}"#
                .to_owned()
        )
    );
    assert_eq!(
        grpc_status(&app, api_call("/", Some("alice"), true)).await,
        "14",
        "UNAVAILABLE"
    );
    assert_eq!(
        *problem.store_errors.lock().unwrap(),
        ["connection refused", "connection refused"]
    );
}

#[tokio::test]
async fn a_rejection_closure_leaves_a_keyless_request_and_a_failed_store_to_the_defaults() {
    let closure = |_: &RateLimited| problem(StatusCode::TOO_MANY_REQUESTS, "slow down");
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
        .store(DownStore)
        .rejection(closure)
        .build()
        .unwrap();
    let app = api_routes().layer(layer);

    let keyless = answer(&app, api_call("/", None, false)).await;
    assert_eq!(
        keyless,
        (
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8".to_owned(),
            "request has no rate-limit key\n".to_owned()
        )
    );
    let failed = answer(&app, api_call("/", Some("alice"), false)).await;
    assert_eq!(
        failed,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8".to_owned(),
            "rate limit store unavailable\n".to_owned()
        )
    );
}
