//! What a limited request gets back, and the rate-limit headers.
//!
//! By default a limited HTTP request gets `429 Too Many Requests` with
//!
//! - `Retry-After`: the exact wait rounded **up** to whole seconds, never `0`;
//! - `RateLimit-Policy: "default";q=<burst>;w=<window seconds>` and
//!   `RateLimit: "default";r=<remaining>;t=<seconds until full>`, the IETF `RateLimit` fields;
//! - a short `text/plain` body;
//! - a [`RateLimited`] in the response extensions, for middleware further out.
//!
//! A gRPC request (its `content-type` starts with `application/grpc`) gets a gRPC status
//! instead: HTTP 200 with `grpc-status: 8` (`RESOURCE_EXHAUSTED`), because gRPC clients read a
//! bare HTTP 429 as `UNAVAILABLE`.
//!
//! Any closure `Fn(&RateLimited) -> Response<T>` (with `T: Into<Bytes>`) can replace the
//! rejection; the headers above are added to its response unless it set them itself.
//!
//! ```
//! use bytes::Bytes;
//! use http::{header, Response, StatusCode};
//! use tower_ratelimit::{Quota, RateLimitLayer, RateLimited};
//!
//! let problem = |limited: &RateLimited| {
//!     let body = format!(
//!         r#"{{"type":"about:blank","title":"Too Many Requests","status":429,"retry_after":{}}}"#,
//!         limited.retry_after_secs()
//!     );
//!     Response::builder()
//!         .status(StatusCode::TOO_MANY_REQUESTS)
//!         .header(header::CONTENT_TYPE, "application/problem+json")
//!         .body(body)
//!         .unwrap()
//! };
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(5))
//!     .rejection(problem)
//!     .build()?;
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::{Decision, Quota};

/// The `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Why a request was rejected: the decision and the quota it was checked against.
///
/// The default rejection and custom ones are built from it, and it is inserted into the
/// extensions of every rejection response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    decision: Decision,
    quota: Quota,
    grpc: bool,
}

impl RateLimited {
    pub(crate) fn new(decision: Decision, quota: Quota, grpc: bool) -> Self {
        RateLimited {
            decision,
            quota,
            grpc,
        }
    }

    /// The store's decision (denied).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The quota the request was checked against.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The exact time until the request would conform.
    pub fn retry_after(&self) -> Duration {
        self.decision.retry_after()
    }

    /// The wait in whole seconds, rounded up and at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.decision.retry_after()).max(1)
    }

    /// Whether the request was a gRPC call (or the layer answers every request as one).
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }
}

/// Builds the response for a limited request.
///
/// Implemented by [`DefaultRejection`] and by every closure `Fn(&RateLimited) -> Response<T>`
/// where `T: Into<Bytes>` (`String`, `Vec<u8>`, `&'static str`, `Bytes`).
pub trait MakeRejection {
    /// The response for the limited request that `limited` describes.
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes>;
}

impl<F, T> MakeRejection for F
where
    F: Fn(&RateLimited) -> Response<T>,
    T: Into<Bytes>,
{
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        self(limited).map(Into::into)
    }
}

/// `429 Too Many Requests` with a short `text/plain` body for HTTP requests, `RESOURCE_EXHAUSTED`
/// for gRPC ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejection;

impl MakeRejection for DefaultRejection {
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        let secs = limited.retry_after_secs();
        if limited.is_grpc() {
            grpc_status(
                GRPC_RESOURCE_EXHAUSTED,
                &format!("rate limit exceeded; retry in {secs} s"),
            )
        } else {
            text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too Many Requests: retry in {secs} s\n"),
            )
        }
    }
}

/// The gRPC status code `RESOURCE_EXHAUSTED`.
const GRPC_RESOURCE_EXHAUSTED: u8 = 8;
/// The gRPC status code `UNAVAILABLE`.
const GRPC_UNAVAILABLE: u8 = 14;
/// The gRPC status code `INTERNAL`.
const GRPC_INTERNAL: u8 = 13;
/// The gRPC status code `UNAUTHENTICATED`.
const GRPC_UNAUTHENTICATED: u8 = 16;

/// Whether `req` is a gRPC call.
#[inline]
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A `text/plain` response.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A trailers-only gRPC response: HTTP 200, the status and message in the headers, no body.
fn grpc_status(code: u8, message: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", message);
    }
    response
}

/// Percent-encodes a `grpc-message`: every byte outside printable ASCII, and `%` itself.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The answer when the key extractor found no key and the layer is set to reject.
pub(crate) fn missing_key(status: StatusCode, grpc: bool) -> Response<Bytes> {
    if grpc {
        let code = if status == StatusCode::UNAUTHORIZED {
            GRPC_UNAUTHENTICATED
        } else {
            GRPC_INTERNAL
        };
        grpc_status(code, "request has no rate-limit key")
    } else {
        text(status, "request has no rate-limit key\n")
    }
}

/// The answer when the store failed and its policy was to fail closed.
pub(crate) fn store_unavailable(grpc: bool) -> Response<Bytes> {
    let mut response = if grpc {
        grpc_status(GRPC_UNAVAILABLE, "rate limit store unavailable")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limit store unavailable\n",
        )
    };
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The `RateLimit-Policy` value of `quota` under the policy `name`.
pub(crate) fn policy_header(name: &str, quota: &Quota) -> HeaderValue {
    let value = format!(
        "\"{name}\";q={};w={}",
        quota.burst(),
        ceil_secs(quota.window()).max(1)
    );
    HeaderValue::try_from(value).expect("policy names are checked when the layer is built")
}

/// Adds `RateLimit-Policy` and `RateLimit` (and `Retry-After` when denied), keeping any the
/// response already has.
pub(crate) fn insert_headers(
    headers: &mut HeaderMap,
    policy: &HeaderValue,
    name: &str,
    decision: &Decision,
) {
    if !decision.is_allowed() && !headers.contains_key(RETRY_AFTER) {
        let secs = ceil_secs(decision.retry_after()).max(1);
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if !headers.contains_key(RATELIMIT_POLICY) {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    if !headers.contains_key(RATELIMIT) {
        let mut value = BytesMut::with_capacity(name.len() + 32);
        let _ = write!(
            value,
            "\"{name}\";r={};t={}",
            decision.remaining(),
            ceil_secs(decision.reset_after())
        );
        let value = HeaderValue::from_maybe_shared(value.freeze())
            .expect("policy names are checked when the layer is built");
        headers.insert(RATELIMIT, value);
    }
}

/// Whether `name` can stand between quotes in a structured-field string.
pub(crate) fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// `d` in whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let limited = |nanos| {
            RateLimited::new(
                Decision::denied(1, 0, Duration::from_nanos(nanos), Duration::ZERO),
                Quota::per_second(1),
                false,
            )
        };
        assert_eq!(limited(1).retry_after_secs(), 1);
        assert_eq!(limited(999_999_999).retry_after_secs(), 1);
        assert_eq!(limited(1_000_000_000).retry_after_secs(), 1);
        assert_eq!(limited(1_000_000_001).retry_after_secs(), 2);
        assert_eq!(limited(0).retry_after_secs(), 1);
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let quota = Quota::per_minute(10).allow_burst(20);
        let policy = policy_header("default", &quota);
        assert_eq!(policy, "\"default\";q=20;w=120");
        let mut headers = HeaderMap::new();
        let decision = Decision::denied(
            20,
            0,
            Duration::from_millis(5_500),
            Duration::from_millis(119_500),
        );
        insert_headers(&mut headers, &policy, "default", &decision);
        assert_eq!(headers[RETRY_AFTER], "6");
        assert_eq!(headers[RATELIMIT], "\"default\";r=0;t=120");
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("a%b é\n"), "a%25b %C3%A9%0A");
        let response = grpc_status(8, "retry in 1 s");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "retry in 1 s");
    }

    #[test]
    fn policy_names_are_checked() {
        assert!(valid_policy_name("api-v1 burst"));
        assert!(!valid_policy_name(""));
        assert!(!valid_policy_name("a\"b"));
        assert!(!valid_policy_name("é"));
    }
}
