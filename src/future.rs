//! [`ResponseFuture`]: the answer of a [`RateLimit`](crate::RateLimit) service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::layer::{Config, SuccessHeaders, Verdict};
use crate::response::MakeRejection;
use crate::{KeyExtractor, ResponseBody, Store};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit): the inner service's response,
    /// or the rejection.
    pub struct ResponseFuture<S, ReqB, E, St, R>
    where
        S: Service<Request<ReqB>>,
        E: KeyExtractor<ReqB>,
        St: Store<E::Key>,
    {
        #[pin]
        state: State<S, ReqB, E, St, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB, E, St, R>
    where
        S: Service<Request<ReqB>>,
        E: KeyExtractor<ReqB>,
        St: Store<E::Key>,
    {
        // The request was allowed and is with the inner service.
        Inner {
            #[pin]
            future: S::Future,
            headers: Option<Box<SuccessHeaders>>,
        },
        // The store is still deciding; the ready inner service and the request wait here,
        // boxed so that they do not make the future of every decided request larger.
        Checking {
            pending: Box<Pending<S, ReqB, E, St, R>>,
        },
        // Decided without the inner service.
        Respond {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

/// What a request waiting on the store holds.
struct Pending<S, ReqB, E, St, R>
where
    E: KeyExtractor<ReqB>,
    St: Store<E::Key>,
{
    check: St::Future,
    inner: Option<S>,
    request: Option<Request<ReqB>>,
    config: Arc<Config<E, St, R>>,
}

impl<S, ReqB, E, St, R> ResponseFuture<S, ReqB, E, St, R>
where
    S: Service<Request<ReqB>>,
    E: KeyExtractor<ReqB>,
    St: Store<E::Key>,
{
    pub(crate) fn inner(future: S::Future, headers: Option<Box<SuccessHeaders>>) -> Self {
        ResponseFuture {
            state: State::Inner { future, headers },
        }
    }

    pub(crate) fn respond(response: Box<Response<Bytes>>) -> Self {
        ResponseFuture {
            state: State::Respond {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(
        check: St::Future,
        inner: S,
        request: Request<ReqB>,
        config: Arc<Config<E, St, R>>,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                pending: Box::new(Pending {
                    check,
                    inner: Some(inner),
                    request: Some(request),
                    config,
                }),
            },
        }
    }
}

impl<S, ReqB, ResB, E, St, R> Future for ResponseFuture<S, ReqB, E, St, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    E: KeyExtractor<ReqB>,
    St: Store<E::Key>,
    St::Future: Unpin,
    R: MakeRejection,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Inner { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(success) = headers.take() {
                        let (decision, spec) = &*success;
                        spec.insert(response.headers_mut(), decision);
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Checking { pending } => {
                    let Pending {
                        check,
                        inner,
                        request,
                        config,
                    } = &mut **pending;
                    let outcome = ready!(Pin::new(check).poll(cx));
                    let request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match config.verdict(outcome, &request) {
                        Verdict::Allow(headers) => {
                            let mut inner = inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            state.set(State::Inner { future, headers });
                        }
                        Verdict::Respond(response) => {
                            state.set(State::Respond {
                                response: Some(response),
                            });
                        }
                    }
                }
                StateProj::Respond { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok((*response).map(ResponseBody::rejection)));
                }
            }
        }
    }
}
