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
//! # Proxies
//!
//! Behind a reverse proxy or load balancer every request arrives from the proxy's address, so
//! [`PeerIp`] would put all clients in one bucket. Use [`ForwardedIp`] with the proxies'
//! networks: it believes `X-Forwarded-For` (or `Forwarded`) only as far as the hops were
//! written by those proxies, so clients cannot choose their own key by sending the header.

mod extractor;
mod forwarded;
mod header;
mod peer;

pub use extractor::{Global, KeyExtractor};
pub use forwarded::{ForwardedIp, IpNet};
pub use header::{Header, HeaderKey};
pub use peer::PeerIp;
