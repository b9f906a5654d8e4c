//! [`ResponseFuture`]: the answer of a [`RateLimit`](crate::RateLimit) service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::decide::{Config, SuccessHeaders, Verdict};
use crate::policy::Rules;
use crate::response::MakeRejection;
use crate::{RejectionBody, Store};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit): the inner service's response,
    /// or the rejection.
    pub struct ResponseFuture<S, ReqB, E, St, R, X>
    where
        S: Service<Request<ReqB>>,
        St: Store,
    {
        #[pin]
        state: State<S, ReqB, E, St, R, X>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB, E, St, R, X>
    where
        S: Service<Request<ReqB>>,
        St: Store,
    {
        // The request was allowed and is with the inner service, or, once `answered`, was
        // answered by it (the finished future stays: dropping it here would move the response
        // once more).
        Inner {
            #[pin]
            future: S::Future,
            headers: Option<Box<SuccessHeaders>>,
            answered: bool,
        },
        // The store is still deciding; the ready inner service and the request wait here,
        // boxed so that they do not make the future of every decided request larger.
        Checking {
            pending: Box<Pending<S, ReqB, E, St, R, X>>,
        },
        // Decided without the inner service.
        Respond {
            response: Option<Response<Bytes>>,
        },
        // The response was given.
        Done,
    }
}

/// What a request waiting on the store holds.
struct Pending<S, ReqB, E, St: Store, R, X> {
    check: St::Future,
    /// The index of the request's tier.
    tier: usize,
    inner: Option<S>,
    request: Option<Request<ReqB>>,
    config: Arc<Config<E, St, R, X>>,
}

impl<S, ReqB, E, St, R, X> ResponseFuture<S, ReqB, E, St, R, X>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    pub(crate) fn inner(future: S::Future, headers: Option<Box<SuccessHeaders>>) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                headers,
                answered: false,
            },
        }
    }

    pub(crate) fn respond(response: Response<Bytes>) -> Self {
        ResponseFuture {
            state: State::Respond {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(
        check: St::Future,
        tier: usize,
        inner: S,
        request: Request<ReqB>,
        config: Arc<Config<E, St, R, X>>,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                pending: Box::new(Pending {
                    check,
                    tier,
                    inner: Some(inner),
                    request: Some(request),
                    config,
                }),
            },
        }
    }
}

impl<S, ReqB, ResB, E, St, R, C, T, P> Future for ResponseFuture<S, ReqB, E, St, R, Rules<C, T, P>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: RejectionBody,
    St: Store,
    R: MakeRejection,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Inner {
                    future,
                    headers,
                    answered,
                } => {
                    assert!(!*answered, "ResponseFuture polled after completion");
                    if headers.is_none() {
                        // The inner service's answer as it is, returned where it was written.
                        let poll = future.poll(cx);
                        *answered = poll.is_ready();
                        return poll;
                    }
                    let output = ready!(future.poll(cx));
                    *answered = true;
                    let mut response = output?;
                    if let Some(success) = headers.take() {
                        let (decisions, spec) = &*success;
                        spec.add_to_allowed(response.headers_mut(), decisions);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Checking { pending } => {
                    let Pending {
                        check,
                        tier,
                        inner,
                        request,
                        config,
                    } = &mut **pending;
                    let outcome = ready!(Pin::new(check).poll(cx));
                    let mut request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match config.verdict(*tier, outcome, &mut request) {
                        Verdict::Allow(headers) => {
                            let mut inner = inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            state.set(State::Inner {
                                future,
                                headers,
                                answered: false,
                            });
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
                    return Poll::Ready(Ok(response.map(ResB::from_rejection)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, ReqB, E, St, R, X> std::fmt::Debug for ResponseFuture<S, ReqB, E, St, R, X>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner {
                answered: false, ..
            } => "inner",
            State::Inner { answered: true, .. } => "done",
            State::Checking { .. } => "checking",
            State::Respond { .. } => "respond",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
