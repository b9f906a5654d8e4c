//! The service the layer benchmarks wrap, and how they drive one request through it without a
//! runtime.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower::{service_fn, Service};

/// The trivial service every variant wraps: an empty `200 OK`.
pub fn inner() -> impl Service<
    Request<()>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

/// `poll_ready`, `call` and the response future, each polled once; every one must be ready.
#[inline]
pub fn drive<S, B>(svc: &mut S, req: Request<()>) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the service is always ready"),
    }
    let future = pin!(svc.call(req));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status(),
        _ => panic!("the response is ready at once"),
    }
}
