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
//! The same layer protects a tonic server. With the `tonic` feature the peer address comes from
//! tonic's connection info; gRPC clients get `RESOURCE_EXHAUSTED` with the wait in the message,
//! in `grpc-retry-pushback-ms` and as a `google.rpc.RetryInfo` (see [`response`]).
//!
//! ```no_run
//! use tonic::transport::Server;
//! use tower_ratelimit::{GrpcMethod, PeerIp, Quota, RateLimitLayer};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

/// The README's snippets, compiled and run as doctests.
#[cfg(all(doctest, feature = "tonic", feature = "redis"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use body::ResponseBody;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decide::MissingKey;
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use gcra::{Decision, Decisions};
pub use key::{
    ForwardedIp, Global, GrpcMethod, Header, HeaderKey, IpNet, KeyBuf, KeyBytes, KeyExtractor,
    MethodKey, PeerIp,
};
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
pub use policy::{AllowIps, Bypass, Cost, Policy, SelectTier};
pub use quota::{Quota, QuotaError};
pub use response::{CostTooLarge, DefaultRejection, MakeRejection, RateLimited};
pub use service::RateLimit;
#[cfg(feature = "redis")]
pub use store::{FailurePolicy, RedisStack, RedisStore};
pub use store::{MemoryStack, MemoryStore, MemoryStoreBuilder, Store};
