//! The gRPC form of an answer: a trailers-only response whose status and message travel in
//! headers, with the wait as `grpc-retry-pushback-ms` and as a `google.rpc.RetryInfo`.
//!
//! Built from `http` types alone, so the crate does not depend on tonic.
//!
//! ```
//! use http::Request;
//! use tower_ratelimit::response::grpc;
//!
//! let call = Request::post("/helloworld.Greeter/SayHello")
//!     .header("content-type", "application/grpc+proto")
//!     .body(())
//!     .unwrap();
//! assert_eq!(grpc::content_type(&call).unwrap(), "application/grpc");
//! assert!(grpc::content_type(&Request::new(())).is_none());
//! let get = Request::get("/app.js").header("content-type", "application/grpc").body(()).unwrap();
//! assert!(grpc::content_type(&get).is_none(), "a gRPC call is a POST");
//! let other = Request::post("/upload").header("content-type", "application/grpcx").body(()).unwrap();
//! assert!(grpc::content_type(&other).is_none(), "another media type");
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

/// The content type of a gRPC answer to `req`, if `req` is a gRPC call: the request's own for
/// gRPC-Web (`application/grpc-web`, `-web+proto`, `-web-text`), `application/grpc` otherwise.
/// Media types are case-insensitive: `Application/gRPC` is a gRPC call too. The type ends
/// there or goes on with `+` (a subtype: `+proto`, `+json`) or `;` (parameters), as gRPC
/// servers read it: `application/grpcfoo` is not gRPC.
///
/// A gRPC call is a `POST`: any other request is answered as HTTP whatever its content type,
/// so that a client cannot turn the `429` of a page (a `GET`) into a `200` with an empty body,
/// which a cache in front of the app could keep and serve to everyone as the page.
pub fn content_type<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.method() != Method::POST {
        return None;
    }
    let content_type = req.headers().get(CONTENT_TYPE)?;
    let is = |media_type: &[u8]| {
        let bytes = content_type.as_bytes();
        bytes
            .get(..media_type.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(media_type))
            && matches!(bytes.get(media_type.len()), None | Some(b'+' | b';'))
    };
    if is(b"application/grpc-web") || is(b"application/grpc-web-text") {
        Some(content_type.clone())
    } else if is(b"application/grpc") {
        Some(APPLICATION_GRPC)
    } else {
        None
    }
}

/// The content type of a gRPC answer.
pub const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// The gRPC status code `RESOURCE_EXHAUSTED`.
pub(crate) const GRPC_RESOURCE_EXHAUSTED: u8 = 8;
/// The gRPC status code `UNAVAILABLE`.
pub(crate) const GRPC_UNAVAILABLE: u8 = 14;
/// The gRPC status code `INTERNAL`.
pub(crate) const GRPC_INTERNAL: u8 = 13;
/// The gRPC status code `UNAUTHENTICATED`.
pub(crate) const GRPC_UNAUTHENTICATED: u8 = 16;

/// The gRPC status code `INVALID_ARGUMENT`.
pub(crate) const GRPC_INVALID_ARGUMENT: u8 = 3;
/// The gRPC status code `NOT_FOUND`.
const GRPC_NOT_FOUND: u8 = 5;
/// The gRPC status code `PERMISSION_DENIED`.
const GRPC_PERMISSION_DENIED: u8 = 7;
/// The gRPC status code `FAILED_PRECONDITION`.
const GRPC_FAILED_PRECONDITION: u8 = 9;

/// The gRPC status code that says what the HTTP `status` says, for answers the layer makes
/// with a status of the user's choice (a request without a key).
pub(crate) fn code_for(status: StatusCode) -> u8 {
    match status {
        StatusCode::BAD_REQUEST => GRPC_INVALID_ARGUMENT,
        StatusCode::UNAUTHORIZED => GRPC_UNAUTHENTICATED,
        StatusCode::FORBIDDEN => GRPC_PERMISSION_DENIED,
        StatusCode::NOT_FOUND => GRPC_NOT_FOUND,
        StatusCode::TOO_MANY_REQUESTS => GRPC_RESOURCE_EXHAUSTED,
        StatusCode::SERVICE_UNAVAILABLE => GRPC_UNAVAILABLE,
        s if s.is_client_error() => GRPC_FAILED_PRECONDITION,
        _ => GRPC_INTERNAL,
    }
}

/// A trailers-only gRPC response: HTTP 200, the status and message in the headers, no body.
pub(crate) fn status(code: u8, message: &str, content_type: HeaderValue) -> Response<Bytes> {
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
pub(crate) fn resource_exhausted(wait: Duration, content_type: HeaderValue) -> Response<Bytes> {
    let message = format!("rate limit exceeded; retry in {}", human_wait(wait));
    let mut response = status(GRPC_RESOURCE_EXHAUSTED, &message, content_type);
    let headers = response.headers_mut();
    // A signed 32-bit number of milliseconds (gRPC's retry design, A6), where a negative one
    // asks the client not to retry: a wait too long for it (over 24.8 days) is one the client
    // cannot wait out by retrying. The message and the details still carry it.
    let pushback = i32::try_from(pushback_millis(wait)).unwrap_or(-1);
    headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from(pushback));
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
pub(crate) const GRPC_RETRY_PUSHBACK_MS: HeaderName =
    HeaderName::from_static("grpc-retry-pushback-ms");
/// The `grpc-status-details-bin` header name.
const GRPC_STATUS_DETAILS_BIN: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// The wait in whole milliseconds, rounded up and at least 1: a client that retries after it
/// is never early, and `0` would mean "retry now".
pub(crate) fn pushback_millis(wait: Duration) -> u64 {
    let millis = wait.as_millis() + u128::from(!wait.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(millis).unwrap_or(u64::MAX).max(1)
}

/// The wait for people: milliseconds below a second, seconds (up to three decimals) above.
/// Rounded up, so that it is never shorter than the real wait.
pub(crate) fn human_wait(wait: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("a%b é\n"), "a%25b %C3%A9%0A");
        let response = status(8, "retry in 1 s", APPLICATION_GRPC);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "retry in 1 s");
    }

    #[test]
    fn grpc_rejection_carries_the_wait_three_ways() {
        let response = resource_exhausted(Duration::from_millis(1_250), APPLICATION_GRPC);
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
        let response = resource_exhausted(Duration::from_millis(200), APPLICATION_GRPC);
        assert_eq!(
            response.headers()["grpc-status-details-bin"],
            "CAgSJHJhdGUgbGltaXQgZXhjZWVkZWQ7IHJldHJ5IGluIDIwMCBtcxozCih0eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5ycGMuUmV0cnlJbmZvEgcKBRCAhK9f"
        );
    }

    #[test]
    fn a_wait_too_long_for_the_pushback_field_asks_the_client_not_to_retry() {
        let pushback = |wait| {
            resource_exhausted(wait, APPLICATION_GRPC).headers()["grpc-retry-pushback-ms"].clone()
        };
        let longest = Duration::from_millis(i32::MAX as u64);
        assert_eq!(pushback(longest), "2147483647");
        assert_eq!(pushback(longest + Duration::from_nanos(1)), "-1");
        let month = Duration::from_secs(30 * 86_400);
        let response = resource_exhausted(month, APPLICATION_GRPC);
        assert_eq!(response.headers()["grpc-retry-pushback-ms"], "-1");
        // The message still says how long.
        assert_eq!(
            response.headers()["grpc-message"],
            "rate limit exceeded; retry in 2592000 s"
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
    fn http_statuses_map_to_the_grpc_codes_that_mean_the_same() {
        assert_eq!(code_for(StatusCode::UNAUTHORIZED), GRPC_UNAUTHENTICATED);
        assert_eq!(code_for(StatusCode::FORBIDDEN), GRPC_PERMISSION_DENIED);
        assert_eq!(code_for(StatusCode::BAD_REQUEST), GRPC_INVALID_ARGUMENT);
        assert_eq!(code_for(StatusCode::INTERNAL_SERVER_ERROR), GRPC_INTERNAL);
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), GRPC_FAILED_PRECONDITION);
        assert_eq!(code_for(StatusCode::NOT_FOUND), GRPC_NOT_FOUND);
        assert_eq!(
            code_for(StatusCode::TOO_MANY_REQUESTS),
            GRPC_RESOURCE_EXHAUSTED
        );
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), GRPC_UNAVAILABLE);
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), GRPC_INTERNAL);
    }
}
