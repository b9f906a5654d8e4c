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
//! A gRPC request (its `content-type` starts with `application/grpc`, or any request when the
//! layer is built [`for_grpc`](crate::RateLimitLayerBuilder::for_grpc)) gets a gRPC status
//! instead, because gRPC clients read a bare HTTP 429 as `UNAVAILABLE`. It is a trailers-only
//! response: HTTP 200, `content-type: application/grpc` (a gRPC-Web call gets its own
//! `application/grpc-web*` type back), no body, and
//!
//! - `grpc-status: 8` (`RESOURCE_EXHAUSTED`);
//! - `grpc-message`: `rate limit exceeded; retry in <wait>`, percent-encoded;
//! - `grpc-retry-pushback-ms`: the wait in milliseconds, rounded up and at least 1, which gRPC
//!   clients with a retry policy honour;
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
    /// The content type of a gRPC answer, for a gRPC request.
    grpc: Option<HeaderValue>,
}

impl RateLimited {
    pub(crate) fn new(decision: Decision, quota: Quota, grpc: Option<HeaderValue>) -> Self {
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
        self.grpc.is_some()
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
        if let Some(content_type) = &limited.grpc {
            grpc_resource_exhausted(limited.retry_after(), content_type.clone())
        } else {
            let mut body = BytesMut::with_capacity(48);
            let _ = writeln!(
                body,
                "Too Many Requests: retry in {} s",
                limited.retry_after_secs()
            );
            text(StatusCode::TOO_MANY_REQUESTS, body.freeze())
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

/// The content type of a gRPC answer to `req`, if `req` is a gRPC call: the request's own for
/// gRPC-Web (`application/grpc-web`, `-web+proto`, `-web-text`), `application/grpc` otherwise.
pub(crate) fn grpc_content_type<B>(req: &Request<B>) -> Option<HeaderValue> {
    let content_type = req.headers().get(CONTENT_TYPE)?;
    let bytes = content_type.as_bytes();
    if bytes.starts_with(b"application/grpc-web") {
        Some(content_type.clone())
    } else if bytes.starts_with(b"application/grpc") {
        Some(APPLICATION_GRPC)
    } else {
        None
    }
}

/// The content type of a gRPC answer.
pub(crate) const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// A `text/plain` response.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    // Room for the rate-limit headers added next, so the map is allocated once; six entries
    // keep the allocation small enough for the allocator's fast paths.
    *response.headers_mut() = HeaderMap::with_capacity(6);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A trailers-only gRPC response: HTTP 200, the status and message in the headers, no body.
fn grpc_status(code: u8, message: &str, content_type: HeaderValue) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.headers_mut() = HeaderMap::with_capacity(8);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
    response
}

/// `RESOURCE_EXHAUSTED` with the wait in the message, in `grpc-retry-pushback-ms`, and as a
/// `google.rpc.RetryInfo` in `grpc-status-details-bin`.
fn grpc_resource_exhausted(wait: Duration, content_type: HeaderValue) -> Response<Bytes> {
    let message = format!("rate limit exceeded; retry in {}", human_wait(wait));
    let mut response = grpc_status(GRPC_RESOURCE_EXHAUSTED, &message, content_type);
    let headers = response.headers_mut();
    headers.insert(
        GRPC_RETRY_PUSHBACK_MS,
        HeaderValue::from(pushback_millis(wait)),
    );
    let details = rpc_status(GRPC_RESOURCE_EXHAUSTED, &message, wait);
    if let Ok(details) = HeaderValue::try_from(base64_unpadded(&details)) {
        headers.insert(GRPC_STATUS_DETAILS_BIN, details);
    }
    response
}

/// The `grpc-status` header name.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header name.
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-retry-pushback-ms` header name.
const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
/// The `grpc-status-details-bin` header name.
const GRPC_STATUS_DETAILS_BIN: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// The wait in whole milliseconds, rounded up and at least 1: a client that retries after it
/// is never early, and `0` would mean "retry now".
fn pushback_millis(wait: Duration) -> u64 {
    let millis = wait.as_millis() + u128::from(!wait.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(millis).unwrap_or(u64::MAX).max(1)
}

/// The wait for people: milliseconds below a second, seconds (up to three decimals) above.
/// Rounded up, so that it is never shorter than the real wait.
fn human_wait(wait: Duration) -> String {
    let millis = pushback_millis(wait);
    match (millis / 1000, millis % 1000) {
        (0, ms) => format!("{ms} ms"),
        (secs, 0) => format!("{secs} s"),
        (secs, ms) => {
            let fraction = format!("{ms:03}");
            format!("{secs}.{} s", fraction.trim_end_matches('0'))
        }
    }
}

/// The protobuf encoding of a `google.rpc.Status` with `code`, `message` and one detail: a
/// `google.rpc.RetryInfo` whose `retry_delay` is `wait`.
///
/// The messages involved are small and fixed, so they are written out here rather than pulling
/// in a protobuf library:
///
/// ```text
/// google.rpc.Status         { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
/// google.protobuf.Any       { string type_url = 1; bytes value = 2; }
/// google.rpc.RetryInfo      { google.protobuf.Duration retry_delay = 1; }
/// google.protobuf.Duration  { int64 seconds = 1; int32 nanos = 2; }
/// ```
fn rpc_status(code: u8, message: &str, wait: Duration) -> Vec<u8> {
    let mut duration = Vec::with_capacity(16);
    if wait.as_secs() > 0 {
        // Seconds fit in an int64: a `Duration` from a quota is far below 2^63 seconds.
        put_varint_field(&mut duration, 1, wait.as_secs().min(i64::MAX as u64));
    }
    if wait.subsec_nanos() > 0 {
        put_varint_field(&mut duration, 2, u64::from(wait.subsec_nanos()));
    }
    let mut retry_info = Vec::with_capacity(duration.len() + 2);
    put_bytes_field(&mut retry_info, 1, &duration);
    let mut any = Vec::with_capacity(RETRY_INFO_TYPE_URL.len() + retry_info.len() + 4);
    put_bytes_field(&mut any, 1, RETRY_INFO_TYPE_URL.as_bytes());
    put_bytes_field(&mut any, 2, &retry_info);
    let mut status = Vec::with_capacity(message.len() + any.len() + 8);
    put_varint_field(&mut status, 1, u64::from(code));
    put_bytes_field(&mut status, 2, message.as_bytes());
    put_bytes_field(&mut status, 3, &any);
    status
}

/// The `google.protobuf.Any` type URL of `google.rpc.RetryInfo`.
const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// Appends a protobuf varint.
fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends field `number` with wire type 0 (varint).
fn put_varint_field(buf: &mut Vec<u8>, number: u8, value: u64) {
    put_varint(buf, u64::from(number) << 3);
    put_varint(buf, value);
}

/// Appends field `number` with wire type 2 (length-delimited).
fn put_bytes_field(buf: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    put_varint(buf, (u64::from(number) << 3) | 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Standard base64 without padding, the form gRPC sends `-bin` metadata in.
fn base64_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        // A chunk of k bytes gives k + 1 characters.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
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
pub(crate) fn missing_key(status: StatusCode, grpc: Option<HeaderValue>) -> Response<Bytes> {
    if let Some(content_type) = grpc {
        let code = if status == StatusCode::UNAUTHORIZED {
            GRPC_UNAUTHENTICATED
        } else {
            GRPC_INTERNAL
        };
        grpc_status(code, "request has no rate-limit key", content_type)
    } else {
        text(status, "request has no rate-limit key\n")
    }
}

/// The answer when the store failed and its policy was to fail closed.
pub(crate) fn store_unavailable(grpc: Option<HeaderValue>) -> Response<Bytes> {
    let mut response = if let Some(content_type) = grpc {
        let mut response = grpc_status(
            GRPC_UNAVAILABLE,
            "rate limit store unavailable",
            content_type,
        );
        response
            .headers_mut()
            .insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("1000"));
        response
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
    if !decision.is_allowed() {
        headers
            .entry(RETRY_AFTER)
            .or_insert_with(|| HeaderValue::from(ceil_secs(decision.retry_after()).max(1)));
    }
    headers
        .entry(RATELIMIT_POLICY)
        .or_insert_with(|| policy.clone());
    if let http::header::Entry::Vacant(entry) = headers.entry(RATELIMIT) {
        let mut value = BytesMut::with_capacity(name.len() + 32);
        let _ = write!(
            value,
            "\"{name}\";r={};t={}",
            decision.remaining(),
            ceil_secs(decision.reset_after())
        );
        // The name was checked when the layer was built, so this always succeeds.
        if let Ok(value) = HeaderValue::from_maybe_shared(value.freeze()) {
            entry.insert(value);
        }
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
                None,
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
        let response = grpc_status(8, "retry in 1 s", APPLICATION_GRPC);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "retry in 1 s");
    }

    #[test]
    fn grpc_rejection_carries_the_wait_three_ways() {
        let response = grpc_resource_exhausted(Duration::from_millis(1_250), APPLICATION_GRPC);
        let headers = response.headers();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.body().is_empty());
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(
            headers["grpc-message"],
            "rate limit exceeded; retry in 1.25 s"
        );
        assert_eq!(headers["grpc-retry-pushback-ms"], "1250");
        let details = rpc_status(
            8,
            "rate limit exceeded; retry in 1.25 s",
            Duration::from_millis(1_250),
        );
        assert_eq!(
            headers["grpc-status-details-bin"],
            base64_unpadded(&details).as_str()
        );

        // The same Status encoded independently: a fixed vector.
        let response = grpc_resource_exhausted(Duration::from_millis(200), APPLICATION_GRPC);
        assert_eq!(
            response.headers()["grpc-status-details-bin"],
            "CAgSJHJhdGUgbGltaXQgZXhjZWVkZWQ7IHJldHJ5IGluIDIwMCBtcxozCih0eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5ycGMuUmV0cnlJbmZvEgcKBRCAhK9f"
        );
    }

    #[test]
    fn waits_round_up_to_the_millisecond_and_read_well() {
        assert_eq!(pushback_millis(Duration::ZERO), 1);
        assert_eq!(pushback_millis(Duration::from_nanos(1)), 1);
        assert_eq!(pushback_millis(Duration::from_nanos(200_000_001)), 201);
        assert_eq!(pushback_millis(Duration::from_millis(200)), 200);
        assert_eq!(pushback_millis(Duration::MAX), u64::MAX);
        assert_eq!(human_wait(Duration::from_millis(200)), "200 ms");
        assert_eq!(human_wait(Duration::from_nanos(999_999_999)), "1 s");
        assert_eq!(human_wait(Duration::from_millis(1_500)), "1.5 s");
        assert_eq!(human_wait(Duration::from_millis(61_007)), "61.007 s");
        assert_eq!(human_wait(Duration::from_secs(3_600)), "3600 s");
    }

    #[test]
    fn status_details_are_the_expected_protobuf() {
        // Status{code: 8, message: "m", details: [Any{type_url, value: RetryInfo{retry_delay:
        // Duration{seconds: 1, nanos: 500_000_000}}}]}, encoded field by field.
        let mut expected = vec![0x08, 0x08, 0x12, 0x01, b'm', 0x1a, 0x36, 0x0a, 0x28];
        expected.extend_from_slice(RETRY_INFO_TYPE_URL.as_bytes());
        expected.extend_from_slice(&[0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, 0x10]);
        expected.extend_from_slice(&[0x80, 0xca, 0xb5, 0xee, 0x01]);
        assert_eq!(rpc_status(8, "m", Duration::from_millis(1_500)), expected);
        // A sub-second delay has no seconds field.
        let short = rpc_status(8, "", Duration::from_millis(200));
        assert!(short.ends_with(&[0x12, 0x07, 0x0a, 0x05, 0x10, 0x80, 0x84, 0xaf, 0x5f]));
    }

    #[test]
    fn base64_matches_the_rfc_vectors_without_padding() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (input, output) in cases {
            assert_eq!(base64_unpadded(input), output);
        }
        assert_eq!(base64_unpadded(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn policy_names_are_checked() {
        assert!(valid_policy_name("api-v1 burst"));
        assert!(!valid_policy_name(""));
        assert!(!valid_policy_name("a\"b"));
        assert!(!valid_policy_name("é"));
    }
}
