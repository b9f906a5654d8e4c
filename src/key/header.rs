use std::fmt;
use std::hash::{Hash, Hasher};

use http::header::HeaderName;
use http::{HeaderValue, Request};

use super::KeyExtractor;

/// The value of one request header, such as an API key.
///
/// A request without the header, or with an empty value, has no key. With several values the
/// first counts.
///
/// ```
/// use http::Request;
/// use tower_ratelimit::{Header, KeyExtractor};
///
/// let key = Header::new("x-api-key");
/// let req = Request::builder().header("x-api-key", "k-123").body(()).unwrap();
/// assert_eq!(key.extract(&req).unwrap().as_bytes(), b"k-123");
/// ```
///
/// Key by what your authentication has checked (put the layer behind it, or key by what it
/// leaves in the request's extensions): a header nobody checked lets a client take a fresh
/// budget with each new value it sends. A checked header does too wherever the check takes
/// one credential in several spellings, as each spelling is a key of its own here:
/// `Authorization` with its scheme in any case (`Bearer`, `bearer`) or more than one space
/// before the token, gRPC `-bin` metadata in base64 with or without padding, or the header
/// sent twice to a check that reads another value than the first. For such a header, key by
/// the identity your authentication leaves in the request's extensions, or by a closure that
/// writes the credential one way.
///
/// A request without a key gets the layer's [`MissingKey`](crate::MissingKey) answer, by
/// default `500`, which says the server is set up wrong. A missing API key is the client's
/// doing: answer it `401` (`UNAUTHENTICATED` for gRPC callers), or let it through unlimited.
///
/// ```
/// use http::StatusCode;
/// use tower_ratelimit::{Header, MissingKey, Quota, RateLimitLayer};
///
/// let layer = RateLimitLayer::builder()
///     .key(Header::new("x-api-key"))
///     .quota(Quota::per_second(10))
///     .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
///     .build()?;
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// Keys requests by the header `name`, in any case (`"X-Api-Key"` is `x-api-key`).
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name; this happens where the layer is configured, never
    /// on a request. Use [`Header::from_name`] with a parsed [`HeaderName`] to handle a name
    /// read at run time.
    ///
    /// ```
    /// use tower_ratelimit::Header;
    /// assert_eq!(format!("{:?}", Header::new("X-Api-Key")), format!("{:?}", Header::new("x-api-key")));
    /// ```
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Header { name },
            Err(_) => panic!(
                "Header::new({name:?}): not a valid header name (letters, digits and `-` as a \
                 rule); use Header::from_name with a parsed HeaderName for a name read at run \
                 time"
            ),
        }
    }

    /// Keys requests by the header `name`.
    ///
    /// ```
    /// use http::header::AUTHORIZATION;
    /// use tower_ratelimit::{Header, KeyExtractor};
    ///
    /// let key = Header::from_name(AUTHORIZATION);
    /// let req = http::Request::builder().header(AUTHORIZATION, "Bearer t-1").body(()).unwrap();
    /// assert_eq!(key.extract(&req).unwrap().as_bytes(), b"Bearer t-1");
    /// ```
    #[must_use]
    pub fn from_name(name: HeaderName) -> Self {
        Header { name }
    }
}

impl<B> KeyExtractor<B> for Header {
    type Key = HeaderKey;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<HeaderKey> {
        req.headers()
            .get(&self.name)
            .filter(|value| !value.is_empty())
            .map(|value| HeaderKey(value.clone()))
    }

    fn missing_key_hint(&self) -> &'static str {
        "the request has no value for the key header; if clients must send it, answer them \
         401 with `.on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))` (the default \
         500 says the server is set up wrong); `MissingKey::Allow` lets them through unlimited"
    }
}

/// A header value used as a key.
///
/// A header value that a server parsed can share memory with the whole request head it came
/// from; cloning a `HeaderKey` copies the bytes, so that a key kept past its request holds only
/// itself. (The stores keep a key's bytes, not the `HeaderKey`.)
#[derive(Eq)]
pub struct HeaderKey(HeaderValue);

impl HeaderKey {
    /// The header value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Clone for HeaderKey {
    fn clone(&self) -> Self {
        // The bytes came from a valid header value, so the copy succeeds; were it ever refused,
        // sharing the original is still correct, only less frugal.
        let mut copy =
            HeaderValue::from_bytes(self.0.as_bytes()).unwrap_or_else(|_| self.0.clone());
        copy.set_sensitive(self.0.is_sensitive());
        HeaderKey(copy)
    }
}

impl PartialEq for HeaderKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl Hash for HeaderKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are often credentials: never print them.
        f.write_str("HeaderKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_headers_have_no_key() {
        let key = Header::new("x-api-key");
        assert!(key.extract(&Request::new(())).is_none());
        let empty = Request::builder().header("x-api-key", "").body(()).unwrap();
        assert!(key.extract(&empty).is_none());
    }

    #[test]
    fn binary_values_are_keys_and_clones_are_equal_copies() {
        let value = HeaderValue::from_bytes(b"\xff\x80secret").unwrap();
        let req = Request::builder()
            .header("x-api-key", value)
            .body(())
            .unwrap();
        let key = Header::new("x-api-key").extract(&req).unwrap();
        let copy = key.clone();
        assert_eq!(copy, key);
        assert_eq!(copy.as_bytes(), b"\xff\x80secret");
        assert_ne!(copy.as_bytes().as_ptr(), key.as_bytes().as_ptr());
        assert_eq!(format!("{key:?}"), "HeaderKey(..)");
    }
}
