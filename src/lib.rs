//! GCRA rate limiting for [tower] services: axum routers, tonic servers, hyper services, any
//! `tower::ServiceBuilder` stack.
//!
//! For each request the [`RateLimit`] middleware takes a key from the request (by default the
//! peer IP address), asks a [`Store`] whether the key's [`Quota`] allows it, and either calls the
//! inner service or answers `429 Too Many Requests` with an exact `Retry-After` (rounded up,
//! never `0`) and the IETF `RateLimit` headers. gRPC calls get `RESOURCE_EXHAUSTED` instead.
//!
//! # axum
//!
//! The layer answers in its inner service's body type, so responses pass through untouched
//! (see [`RejectionBody`]). The `axum` feature (a default one) makes that axum's `Body`, and
//! reads the peer address from axum's connect info.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use tower_ratelimit::{Quota, RateLimitLayer};
//!
//! # #[tokio::main] async fn main() {
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(Quota::per_second(10)));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! // The peer address reaches the layer through connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! # tonic
//!
//! The same layer protects a tonic server, with the `tonic` feature: the layer answers in tonic's
//! `Body`, and the peer address comes from tonic's connection info (with or without tonic's own
//! TLS; for TLS streams the application accepts itself, see [`PeerIp`]); gRPC clients get
//! `RESOURCE_EXHAUSTED` with the wait in the message, in `grpc-retry-pushback-ms` and as a
//! `google.rpc.RetryInfo` (see [`response`]).
//! A call is one request, however many messages it streams: it is checked once, as it starts
//! (a cost is per call), and a stream admitted once runs to its end after the budget is spent.
//!
//! ```no_run
//! # #[cfg(feature = "tonic")]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic::transport::Server;
//! use tower_ratelimit::{GrpcMethod, PeerIp, Quota, RateLimitLayer};
//!
//! // Each client gets 20 calls per second per method, health checks included.
//! let limit = RateLimitLayer::builder()
//!     .quota(Quota::per_second(20))
//!     .key((PeerIp::new(), GrpcMethod))
//!     .for_grpc()
//!     .build()?;
//! let (_, health) = tonic_health::server::health_reporter();
//! Server::builder()
//!     .layer(limit)
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! # #[cfg(not(feature = "tonic"))]
//! # fn main() {}
//! ```
//!
//! # A custom key
//!
//! Any closure from the request to an optional key works; here, an API key header with a
//! per-route quota.
//!
//! ```
//! use axum::{extract::Request, routing::get, Router};
//! use tower_ratelimit::{MissingKey, Quota, RateLimitLayer};
//!
//! let by_api_key = |req: &Request| {
//!     req.headers().get("x-api-key").map(|v| v.as_bytes().to_vec())
//! };
//! let search = RateLimitLayer::builder()
//!     .quota("10/s; burst=20".parse()?)
//!     .key(by_api_key)
//!     .on_missing_key(MissingKey::Reject(http::StatusCode::UNAUTHORIZED))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/search", get(|| async { "results" }))
//!     .route_layer(search);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # hyper
//!
//! A hyper server gives the peer address to its service per connection: insert it into each
//! request *before* the layer (in the handler it would be too late), and the default key reads it.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{Empty, Full};
//! use hyper::body::Incoming;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::service::TowerToHyperService;
//! use tower::{service_fn, ServiceBuilder};
//! use tower_ratelimit::{Quota, RateLimitLayer};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello"))))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = RateLimitLayer::new(Quota::per_minute(1)); // one budget for every connection
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     loop {
//!         let Ok((stream, peer)) = listener.accept().await else { continue };
//!         let service = ServiceBuilder::new()
//!             .map_request(move |mut req: Request<Incoming>| {
//!                 req.extensions_mut().insert::<SocketAddr>(peer);
//!                 req
//!             })
//!             .layer(limit.clone())
//!             .service(service_fn(hello));
//!         let service = TowerToHyperService::new(service);
//!         tokio::spawn(
//!             hyper::server::conn::http1::Builder::new()
//!                 .serve_connection(TokioIo::new(stream), service),
//!         );
//!     }
//! });
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let url: http::Uri = format!("http://{addr}/").parse()?;
//! assert_eq!(client.get(url.clone()).await?.status(), StatusCode::OK);
//! let limited = client.get(url).await?;
//! assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(limited.headers()["retry-after"], "60");
//! # Ok(()) }
//! ```
//!
//! Not sure which key, store or policies you need? See the [`guide`].
//!
//! # Policies
//!
//! A [`Policy`] is a name and a quota; a budget is (store, policy name, key), so layers that
//! share one store (one Redis connection for the whole app) never touch each other's budgets
//! unless they name the same policy. Policies stack ("10/s and 1000/h", all-or-nothing), a
//! closure picks a tier per request, a closure gives each request its cost, shadow mode tries a
//! limit on live traffic without rejecting, and a predicate or an [`AllowIps`] list bypasses
//! the limit. See [`policy`].
//!
//! # Metrics
//!
//! With the `metrics` feature the layers and the stores report through the
//! [`metrics`](https://docs.rs/metrics) facade to whatever exporter the application installs
//! (Prometheus, StatsD, OpenTelemetry, ...). Handles are registered once, when a store or a
//! layer is built (a `MemoryStore`'s key gauge when its first stack or key is), and a request
//! only increments them: **install the recorder before building stores and layers**; one built
//! without a recorder records nothing. Labels hold policy names, never keys.
//!
//! | metric | type, unit | labels | what it counts or measures |
//! |---|---|---|---|
//! | `ratelimit_decisions_total` | counter | `policy`, `outcome="allowed"` | requests that took cells from `policy` (every policy of the stack, shadow ones too, for a request that passes at cost 0) |
//! | | | `policy`, `outcome="limited"` | requests that the enforced `policy` refused; a stack counts each policy that refused, and not the ones that would have admitted (shadow ones included) |
//! | | | `policy`, `outcome="shadow_limited"` | requests that `policy`, in shadow mode, would have refused and that went on (not the ones an enforced policy refused), as [`RateLimitLayer::shadow_limited`] counts |
//! | | | `policy`, `outcome="fallback_allowed"`, `"fallback_limited"` | as `allowed` and `limited`, for the answers of the Redis store's `FailurePolicy` (`Local`, `Allow`) while Redis fails |
//! | | | `policy`, `outcome="store_error"` | requests the store could not decide (answered by `MakeRejection::make_store_failed`, by default 503, or served when every policy of the stack is in shadow mode), once per policy of the stack |
//! | | | `policy`, `outcome="cost_too_large"` | requests refused (413) because their cost exceeds the burst of `policy`, the enforced policy of the stack with the smallest burst; only on a layer with `cost_by` |
//! | | | `policy=""`, `outcome="bypassed"` | requests the bypass let through before their key was read |
//! | | | `policy=""`, `outcome="missing_key"` | requests without a key, answered as [`MissingKey`] says (served by a dry run) |
//! | `ratelimit_store_latency_seconds` | histogram, seconds | `store="redis"` | how long each script call to Redis took, from sending it to its answer, error or timeout (or, for a call that carried one request's check alone, to that request going away, as a client that hangs up or an outer timeout ends it: the least the call took): one sample per call, which carries one check or, under load, a batch of them (the wait in the store's queue is not included). Answers of the deny cache or the back-off, and `MemoryStore` checks, wait for nothing and are not recorded |
//! | `ratelimit_store_queue_wait_seconds` | histogram, seconds | `store="redis"` | how long each check that found a call in flight on its queue waited there, until the call carrying it was sent (or the back-off answered it): the part of a check's wait that the latency above leaves out, which grows when checks arrive faster than Redis answers them (see `RedisStoreBuilder::max_batch`). A check sent at once, alone, waits in no queue and is not recorded; nor is one whose request was cancelled while it waited. One clock read and one sample per queued check: about 0.3–0.45 µs of CPU per check at 256 checks in flight (BENCHES.md) |
//! | `ratelimit_deny_cache_hits_total` | counter | | Redis checks (and direct `Store::peek`s) that the deny cache answered without a round trip |
//! | `ratelimit_redis_degraded` | gauge | | 1 while a `RedisStore` backs off, after `failures_before_backoff` failed calls in a row or a failed probe (checks skip Redis but for one probe per back-off period, and its failure policy answers them), 0 from the call that succeeds; with several stores, how many back off. Narrower than `RedisStore::is_degraded`, true from the first failed call: a blip of fewer failed calls leaves the gauge at 0. Moved by checks only (nothing probes Redis in the background): a process without traffic keeps the value its last check left |
//! | `ratelimit_memory_keys` | gauge | | keys that `MemoryStore`s track, idle ones not yet dropped included ([`MemoryStore::len`]), changed as keys are inserted and swept; not the Redis store's local fallback |
//!
//! A request checked against a stack counts once for each policy that took its cells or
//! refused them: with `per-second` and `per-minute` stacked, an admitted request is `allowed`
//! for both, and one that `per-second` alone refuses is `limited` for `per-second` and not
//! counted for `per-minute`, which took nothing. A request is counted when it is decided: one
//! dropped by its client while its check waits on Redis is not counted, though Redis may still
//! take its cells.
//!
//! A layer registers its series when it is built, at 0, so that they are scraped before they
//! first move. It leaves out those its own configuration rules out: each policy of each tier
//! gets `allowed`, and `limited` if it is enforced or `shadow_limited` if it is a shadow; the
//! enforced policy with the smallest burst gets `cost_too_large` only on a layer whose cost
//! comes from the request ([`cost_by`](RateLimitLayerBuilder::cost_by)), since `build` refuses
//! a fixed cost above an enforced burst; every layer gets `bypassed` and `missing_key`. On a
//! store whose error type is not `Infallible` (`RedisStore`, not `MemoryStore`) each policy
//! also gets `store_error`, `fallback_allowed`, and `fallback_limited` if it is enforced,
//! whatever the store does when it fails: that is the store's business, which the layer does
//! not see. A `RedisStore` answers a failure with `store_error` under `FailurePolicy::Deny`,
//! with `fallback_allowed` or `fallback_limited` under `Local`, and with `fallback_allowed`
//! under `Allow`; the others stay at 0.
//!
//! How a histogram is exported is the exporter's choice: `metrics-exporter-prometheus` renders
//! `ratelimit_store_latency_seconds` and `ratelimit_store_queue_wait_seconds` as summaries
//! (quantiles) unless it is given buckets for them (`set_buckets_for_metric`), as
//! `examples/policies.rs` does, so that the fleet's latencies can be aggregated.
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//! use axum::extract::{ConnectInfo, Request};
//! use axum::{body::Body, routing::get, Router};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tower::ServiceExt;
//! use tower_ratelimit::{Policy, Quota, RateLimitLayer};
//!
//! // The recorder first: the layer registers its counters when it is built.
//! let prometheus = PrometheusBuilder::new().install_recorder()?;
//! let scrape = prometheus.clone();
//! let limit = RateLimitLayer::builder()
//!     .policy(Policy::new("api", Quota::per_minute(1)))
//!     .bypass(|req: &Request| req.uri().path() == "/metrics")
//!     .build()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/metrics", get(move || std::future::ready(scrape.render())))
//!     .layer(limit);
//!
//! for _ in 0..2 {
//!     let mut req = Request::new(Body::empty());
//!     req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
//!     app.clone().oneshot(req).await?;
//! }
//! let text = prometheus.render();
//! assert!(text.contains(r#"ratelimit_decisions_total{policy="api",outcome="allowed"} 1"#));
//! assert!(text.contains(r#"ratelimit_decisions_total{policy="api",outcome="limited"} 1"#));
//! # Ok(()) }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! # Semantics
//!
//! A quota is a burst `b` and an interval `T`; `Quota::per_second(n)` is `b = n`, `T = 1s/n`.
//! A fresh key admits exactly `b` requests at one instant, then one every `T`; a denied
//! request takes nothing. See [`gcra`] for the exact arithmetic; it matches `governor`
//! decision for decision.
//!
//! [tower]: https://docs.rs/tower

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod clock;
mod decide;
mod error;
pub mod future;
pub mod gcra;
pub mod guide;
pub mod key;
mod layer;
mod log;
pub mod policy;
pub mod quota;
pub mod response;
mod service;
pub mod store;
#[cfg(feature = "metrics")]
mod telemetry;

/// The README's snippets, compiled and run as doctests.
#[cfg(all(doctest, feature = "tonic", feature = "redis"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use body::{RejectionBody, ResponseBody};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decide::MissingKey;
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use gcra::{Decision, Decisions};
pub use key::{
    ForwardedIp, Global, GrpcMethod, Header, HeaderKey, IpNet, KeyBuf, KeyBytes, KeyExtractor,
    MethodKey, PeerIp, MAX_KEY_LEN,
};
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
pub use policy::{AllowIps, Bypass, Cost, Policy, SelectTier};
pub use quota::{Quota, QuotaError};
pub use response::{
    CostTooLarge, DefaultRejection, MakeRejection, MissingKeyRejected, RateLimited, StoreFailed,
};
pub use service::RateLimit;
#[cfg(feature = "redis")]
pub use store::{
    FailurePolicy, RedisStack, RedisStore, RedisStoreBuilder, RedisStoreError, RedisStoreFuture,
};
pub use store::{MemoryStack, MemoryStore, MemoryStoreBuilder, Store};
