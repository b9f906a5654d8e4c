//! What a request is counted against: its key.
//!
//! A [`KeyExtractor`] pulls a key out of a request, or says there is none. The extractors here
//! cover the usual cases; any closure `Fn(&Request<B>) -> Option<K>` is one too.
//!
//! | extractor | key | for |
//! |---|---|---|
//! | [`PeerIp`] | the peer's IP address (IPv6 grouped by /64) | servers that clients reach directly |
//! | [`ForwardedIp`] | the client address that trusted proxies forwarded | servers behind a load balancer |
//! | [`Header`] | a header's value, such as an API key | authenticated APIs |
//! | [`Global`] | one key for every request | protecting a resource as a whole |
//! | [`GrpcMethod`] | the gRPC method, `/package.Service/Method` | a budget per method |
//! | a tuple such as `(PeerIp, GrpcMethod)` | all the parts together | a budget per client and method |
//!
//! ```
//! use axum::extract::Request;
//! use tower_ratelimit::{KeyExtractor, RateLimitLayer, Quota};
//!
//! // Limit per tenant, read from a header; requests without one are not keyed.
//! let by_tenant = |req: &Request| {
//!     req.headers()
//!         .get("x-tenant")
//!         .and_then(|v| v.to_str().ok())
//!         .map(str::to_owned)
//! };
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(100))
//!     .key(by_tenant)
//!     .build()?;
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```
//!
//! # Several parts
//!
//! A tuple of two or three extractors is an extractor whose key holds every part; a request
//! missing any part has no key. With tonic, `(PeerIp::new(), GrpcMethod)` gives each client a
//! budget per method, and `(Header::new("x-api-key"), GrpcMethod)` one per API key and method
//! (gRPC metadata are HTTP headers).
//!
//! ```
//! use tower_ratelimit::{GrpcMethod, Header, Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(20))
//!     .key((Header::new("x-api-key"), GrpcMethod))
//!     .for_grpc()
//!     .build()?;
//! // tonic::transport::Server::builder().layer(layer).add_service(..)
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```
//!
//! A key closure can read what a tonic interceptor left in the request's extensions, such as
//! the caller its token names, if the interceptor runs before the limit:
//! `Server::builder().layer(InterceptorLayer::new(check)).layer(limit)`. An interceptor on a
//! service (`with_interceptor`) runs after a limit on the server, which finds no caller then.
//!
//! # Proxies
//!
//! Behind a reverse proxy or load balancer every request arrives from the proxy's address, so
//! [`PeerIp`] would put all clients in one bucket. Use [`ForwardedIp`] with the proxies'
//! networks: it believes `X-Forwarded-For` (or `Forwarded`) only as far as the hops were
//! written by those proxies, so clients cannot choose their own key by sending the header.

mod bytes;
mod extractor;
mod forwarded;
mod grpc;
mod header;
mod peer;
mod tuple;

pub(crate) use bytes::with_kept;
#[cfg(feature = "redis")]
pub(crate) use bytes::with_kept_in_hash_tag;
pub use bytes::{KeyBuf, KeyBytes, MAX_KEY_LEN};
pub use extractor::{Global, KeyExtractor};
pub use forwarded::{ForwardedIp, IpNet};
pub use grpc::{GrpcMethod, MethodKey};
pub use header::{Header, HeaderKey};
pub use peer::PeerIp;
pub(crate) use peer::{group, peer_addr};
