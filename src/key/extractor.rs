use http::Request;

/// Pulls the rate-limiting key out of a request.
///
/// Implemented by the extractors of this module and by every closure
/// `Fn(&Request<B>) -> Option<K>`. Returning `None` means the request has no key; what happens
/// then is the layer's [`MissingKey`](crate::MissingKey) setting.
///
/// The key is owned and must be [`KeyBytes`](crate::KeyBytes): it cannot borrow from the
/// request, so return a `String`, a `Vec<u8>` or a cloned `HeaderValue` rather than a `&str`.
/// It may be empty (one budget for every request whose key is empty) or of any length (see
/// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)). The extractor runs inside the service's `call`; a
/// panic in it is not caught.
///
/// `B` is the request body type: write `impl<B> KeyExtractor<B> for MyKey` unless the
/// extractor reads the body type. An extractor for another body type than the service's
/// (`KeyExtractor<()>` under an axum `Router`, whose body is `axum::body::Body`) fails to
/// compile where the layer is applied, with "expected a `Fn(&Request<Body>)` closure, found
/// `MyKey`" and a note "required for `MyKey` to implement `KeyExtractor<Body>`".
///
/// ```
/// use http::Request;
/// use tower_ratelimit::KeyExtractor;
///
/// let by_path = |req: &Request<()>| Some(req.uri().path().to_owned());
/// let req = Request::get("/a").body(()).unwrap();
/// assert_eq!(by_path.extract(&req).as_deref(), Some("/a"));
/// ```
pub trait KeyExtractor<B> {
    /// The key that requests are counted against.
    type Key;

    /// The key of `req`, or `None` if it has none.
    fn extract(&self, req: &Request<B>) -> Option<Self::Key>;

    /// What to tell the operator when [`extract`](KeyExtractor::extract) finds no key: what was
    /// missing and how to fix it.
    fn missing_key_hint(&self) -> &'static str {
        "the key extractor returned no key for this request"
    }
}

impl<B, K, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<K>,
{
    type Key = K;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<K> {
        self(req)
    }
}

/// One key for every request: the limit applies to the service as a whole.
///
/// ```
/// use tower_ratelimit::{Global, Quota, RateLimitLayer};
///
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_second(1000))
///     .key(Global)
///     .build()?;
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Global;

impl<B> KeyExtractor<B> for Global {
    type Key = ();

    #[inline]
    fn extract(&self, _: &Request<B>) -> Option<()> {
        Some(())
    }
}
