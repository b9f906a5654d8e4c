//! [`RateLimit`]: the middleware service.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower_service::Service;

use crate::decide::{Config, Start, Verdict};
use crate::future::ResponseFuture;
use crate::policy::{Bypass, Cost, Rules, SelectTier};
use crate::response::MakeRejection;
use crate::{
    DefaultRejection, KeyBytes, KeyExtractor, MemoryStore, PeerIp, Quota, RateLimitLayer,
    RejectionBody, Store,
};

/// Rate-limits requests to the inner service: a limited request is answered by the rejection
/// and never reaches it.
///
/// Made by [`RateLimitLayer`]. `poll_ready` is the inner service's; the decision happens in
/// `call`. With a store that answers at once, such as [`MemoryStore`], the request is decided
/// inside `call` without cloning the inner service or allocating; with a store that must wait,
/// the ready inner service is taken along into the response future and a clone left in its
/// place.
///
/// The inner service must be `Clone`, whatever the store (a type cannot depend on whether a
/// store answers at once): one that is not, such as `tower::util::BoxService`, goes behind
/// `tower::buffer::Buffer` or becomes a `BoxCloneService`. While a check waits on such a store,
/// the request holds what the inner service's readiness reserved (a `ConcurrencyLimit` permit,
/// a `Buffer` slot), a request that is then rejected too, for as long as the store takes (at
/// most its timeout); a concurrency limit inside the rate limit counts those requests.
///
/// The responses are the inner service's own type: an allowed one is passed through untouched
/// (headers added when the layer is set to), and a rejection's bytes are written in the inner
/// body type through [`RejectionBody`](crate::RejectionBody).
///
/// ```
/// use std::convert::Infallible;
/// use std::net::SocketAddr;
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, Layer, Service, ServiceExt};
/// use tower_ratelimit::{Quota, RateLimitLayer};
///
/// # tokio_test();
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn tokio_test() {
/// let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::from("ok"))) });
/// let mut svc = RateLimitLayer::new(Quota::per_second(1)).layer(inner);
///
/// let request = || {
///     let mut req = Request::new(());
///     req.extensions_mut().insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
///     req
/// };
/// let first = svc.ready().await.unwrap().call(request()).await.unwrap();
/// assert_eq!(first.status(), StatusCode::OK);
/// let second = svc.ready().await.unwrap().call(request()).await.unwrap();
/// assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(second.headers()["retry-after"], "1");
/// # }
/// ```
pub struct RateLimit<S, E = PeerIp, St: Store = MemoryStore, R = DefaultRejection, X = Rules> {
    inner: S,
    config: Arc<Config<E, St, R, X>>,
}

// Not generic over the inner service, which `layer` does not name: `RateLimit::layer(..)` needs
// no type annotation.
impl RateLimit<()> {
    /// A [`RateLimitLayer`] limiting each peer IP address to `quota`; the same as
    /// [`RateLimitLayer::new`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer};
    /// use tower_ratelimit::{Quota, RateLimit};
    ///
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let layer = RateLimit::layer(Quota::per_second(10));
    /// assert_eq!(layer.policies()[0].quota().burst(), 10);
    /// let svc = layer.layer(inner);
    /// ```
    #[must_use]
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(quota)
    }
}

impl<S, E, St: Store, R, X> RateLimit<S, E, St, R, X> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<E, St, R, X>>) -> Self {
        RateLimit { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the middleware.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, E, St: Store, R, X> Clone for RateLimit<S, E, St, R, X> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, E, St: Store, R, X> fmt::Debug for RateLimit<S, E, St, R, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("tiers", &self.config.debug_tiers())
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB, E, St, R, C, T, P> Service<Request<ReqB>>
    for RateLimit<S, E, St, R, Rules<C, T, P>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: RejectionBody,
    E: KeyExtractor<ReqB>,
    E::Key: KeyBytes,
    St: Store,
    R: MakeRejection,
    C: Cost<ReqB>,
    T: SelectTier<ReqB>,
    P: Bypass<ReqB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, E, St, R, Rules<C, T, P>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        let verdict = match config.start(&req) {
            Start::Decided(verdict) => verdict,
            Start::Checking(tier, mut check) => {
                // One poll without a real waker: a store that already knows the answer gives
                // it now, and the request is decided here without cloning anything.
                match Pin::new(&mut check).poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(outcome) => config.verdict(tier, outcome, &mut req),
                    Poll::Pending => {
                        // The inner call happens inside the future: take the service that was
                        // driven to readiness and leave a clone for the next request.
                        let clone = self.inner.clone();
                        let ready = mem::replace(&mut self.inner, clone);
                        return ResponseFuture::checking(
                            check,
                            tier,
                            ready,
                            req,
                            Arc::clone(&self.config),
                        );
                    }
                }
            }
        };
        match verdict {
            Verdict::Allow(headers) => ResponseFuture::inner(self.inner.call(req), headers),
            Verdict::Respond(response) => ResponseFuture::respond(response),
        }
    }
}

/// A rate-limited tonic service keeps the inner service's name, so that one service can get
/// its own quota: `Server::builder().add_service(RateLimitLayer::new(quota).layer(greeter))`.
#[cfg(feature = "tonic")]
impl<S, E, St, R, X> tonic::server::NamedService for RateLimit<S, E, St, R, X>
where
    S: tonic::server::NamedService,
    St: Store,
{
    const NAME: &'static str = S::NAME;
}
