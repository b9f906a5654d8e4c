//! [`RateLimit`]: the middleware service.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{Config, Verdict};
use crate::response::MakeRejection;
use crate::{
    DefaultRejection, KeyExtractor, MemoryStore, PeerIp, Quota, RateLimitLayer, ResponseBody, Store,
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
pub struct RateLimit<S, E = PeerIp, St = MemoryStore, R = DefaultRejection> {
    inner: S,
    config: Arc<Config<E, St, R>>,
}

impl<S> RateLimit<S> {
    /// A [`RateLimitLayer`] limiting each peer IP address to `quota`; the same as
    /// [`RateLimitLayer::new`].
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(quota)
    }
}

impl<S, E, St, R> RateLimit<S, E, St, R> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<E, St, R>>) -> Self {
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

impl<S: Clone, E, St, R> Clone for RateLimit<S, E, St, R> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, E, St, R> fmt::Debug for RateLimit<S, E, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("quota", &self.config.quota)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB, E, St, R> Service<Request<ReqB>> for RateLimit<S, E, St, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    E: KeyExtractor<ReqB>,
    St: Store<E::Key>,
    St::Future: Unpin,
    R: MakeRejection,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, E, St, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        let Some(key) = config.key.extract(&req) else {
            let verdict = config.missing_key_verdict(&req, config.key.missing_key_hint());
            return self.decided(verdict, req);
        };
        let mut check = config.store.check(&key, &config.quota, config.cost);
        // One poll without a real waker: a store that already knows the answer gives it now,
        // and the request is decided here without cloning anything.
        match Pin::new(&mut check).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => {
                let verdict = config.verdict(outcome, &req);
                self.decided(verdict, req)
            }
            Poll::Pending => {
                // The inner call happens inside the future: take the service that was driven
                // to readiness and leave a clone for the next request.
                let clone = self.inner.clone();
                let ready = mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, ready, req, Arc::clone(&self.config))
            }
        }
    }
}

impl<S, E, St, R> RateLimit<S, E, St, R> {
    fn decided<ReqB, ResB>(
        &mut self,
        verdict: Verdict,
        req: Request<ReqB>,
    ) -> ResponseFuture<S, ReqB, E, St, R>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        E: KeyExtractor<ReqB>,
        St: Store<E::Key>,
    {
        match verdict {
            Verdict::Allow(headers) => ResponseFuture::inner(self.inner.call(req), headers),
            Verdict::Respond(response) => ResponseFuture::respond(response),
        }
    }
}

/// A rate-limited tonic service keeps the inner service's name, so that one service can get
/// its own quota: `Server::builder().add_service(RateLimitLayer::new(quota).layer(greeter))`.
#[cfg(feature = "tonic")]
impl<S, E, St, R> tonic::server::NamedService for RateLimit<S, E, St, R>
where
    S: tonic::server::NamedService,
{
    const NAME: &'static str = S::NAME;
}
