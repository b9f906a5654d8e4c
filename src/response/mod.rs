//! What a limited request gets back, and the rate-limit headers.
//!
//! By default a limited HTTP request gets `429 Too Many Requests` with
//!
//! - `Retry-After`: the exact wait rounded **up** to whole seconds, never `0`;
//! - `RateLimit-Policy: "<policy>";q=<quota>;w=<window seconds>` and
//!   `RateLimit: "<policy>";r=<remaining>;t=<seconds until full>`, the IETF `RateLimit` fields
//!   (see [`headers`]), one list member per policy of the request;
//! - a short `text/plain` body, and its exact `Content-Length`;
//! - a [`RateLimited`] in the response extensions, for middleware further out.
//!
//! A request whose cost can never fit the burst of one of its enforced policies gets
//! `413 Content Too Large` (gRPC: `INVALID_ARGUMENT`) without `Retry-After`: waiting would not
//! help. See [`CostTooLarge`].
//!
//! A request without a key, on a layer that rejects such requests
//! ([`MissingKey::Reject`](crate::MissingKey::Reject)), gets the status the layer is set to
//! answer with and a short `text/plain` body (gRPC: the code that means the same, such as
//! `UNAUTHENTICATED` for `401`; see [`MissingKeyRejected`]), unless every policy of the layer
//! is in shadow mode: such a dry run serves it. A request that the store could not decide
//! gets `503 Service Unavailable` with `Retry-After: 1` (gRPC: `UNAVAILABLE` with
//! `grpc-retry-pushback-ms: 1000`; see [`StoreFailed`]), unless every policy of its stack is in
//! shadow mode: it is then served.
//!
//! A gRPC request (a `POST` whose `content-type` starts with `application/grpc`, in any case,
//! or any request when the layer is built
//! [`for_grpc`](crate::RateLimitLayerBuilder::for_grpc)) gets a gRPC status instead, because
//! gRPC clients read a bare HTTP 429 as `UNAVAILABLE`. It is a trailers-only response: HTTP
//! 200, `content-type: application/grpc` (a gRPC-Web call gets its own `application/grpc-web*`
//! type back), no body, and
//!
//! - `grpc-status: 8` (`RESOURCE_EXHAUSTED`);
//! - `grpc-message`: `rate limit exceeded; retry in <wait>`, percent-encoded;
//! - `grpc-retry-pushback-ms`: the wait in milliseconds, rounded up and at least 1, which gRPC
//!   clients with a retry policy honour; `-1` (do not retry) for a wait longer than the
//!   header's largest value, 2^31 - 1 ms (about 24.8 days);
//! - `grpc-status-details-bin`: a `google.rpc.Status` with the same code and message whose
//!   details hold one `google.rpc.RetryInfo` with the exact wait as its `retry_delay`, the form
//!   that the standard error model's client libraries read;
//! - the `Retry-After` and `RateLimit` headers of an HTTP rejection, as metadata.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_ratelimit::{ManualClock, MemoryStore, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_ratelimit::ConfigError> {
//! let greeter = service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(String::new()))
//! });
//! // A clock that stands still, so that the wait below is exact.
//! let store = MemoryStore::builder().clock(ManualClock::new()).build()?;
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(1))
//!     .store(store)
//!     .build()?;
//! let svc = layer.layer(greeter);
//! let call = || {
//!     let mut req = Request::post("/helloworld.Greeter/SayHello")
//!         .header("content-type", "application/grpc")
//!         .body(())
//!         .unwrap();
//!     req.extensions_mut().insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
//!     req
//! };
//! svc.clone().oneshot(call()).await.unwrap();
//! let limited = svc.oneshot(call()).await.unwrap();
//! assert_eq!(limited.status(), StatusCode::OK);
//! let headers = limited.headers();
//! assert_eq!(headers["content-type"], "application/grpc");
//! assert_eq!(headers["grpc-status"], "8");
//! assert_eq!(headers["grpc-message"], "rate limit exceeded; retry in 1 s");
//! assert_eq!(headers["grpc-retry-pushback-ms"], "1000");
//! assert!(headers.contains_key("grpc-status-details-bin"));
//! # Ok(())
//! # }
//! ```
//!
//! A tonic client gets `Err(status)` with `status.code() == Code::ResourceExhausted`, the
//! message above as `status.message()`, the pushback in `status.metadata()`, and the encoded
//! `google.rpc.Status` as `status.details()`.
//!
//! Any closure `Fn(&RateLimited) -> Response<T>` (with `T: Into<Bytes>`) can replace the
//! rejection; `Retry-After` and the `RateLimit` headers (and, for an HTTP answer, the
//! `Content-Length` of its body) are added to its response unless it set them itself. The
//! closure answers gRPC callers too, and they read a bare `429` as `UNAVAILABLE`: unless it
//! writes a gRPC answer itself, it should hand [`RateLimited::is_grpc`] requests to
//! [`DefaultRejection`], as below. A closure shapes the answer to a limited request only; a
//! type that implements [`MakeRejection`] shapes the other answers above as well (see its
//! example). The rejection is assembled by [`rejection`], the headers by [`headers`], the gRPC
//! wire form by [`grpc`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{header, Response, StatusCode};
//! use tower_ratelimit::{DefaultRejection, MakeRejection, Quota, RateLimitLayer, RateLimited};
//!
//! let problem = |limited: &RateLimited| -> Response<Bytes> {
//!     if limited.is_grpc() {
//!         return DefaultRejection.make_rejection(limited);
//!     }
//!     let body = format!(
//!         r#"{{"type":"about:blank","title":"Too Many Requests","status":429,"retry_after":{}}}"#,
//!         limited.retry_after_secs()
//!     );
//!     Response::builder()
//!         .status(StatusCode::TOO_MANY_REQUESTS)
//!         .header(header::CONTENT_TYPE, "application/problem+json")
//!         .body(Bytes::from(body))
//!         .unwrap()
//! };
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(5))
//!     .rejection(problem)
//!     .build()?;
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```

pub mod grpc;
pub mod headers;
pub mod rejection;

pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use rejection::{
    CostTooLarge, DefaultRejection, MakeRejection, MissingKeyRejected, RateLimited, StoreFailed,
};
