//! [`RedisStoreFuture`]: ready at once, or a round trip to Redis.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::batch::{Answer, Outcome};
use super::store::Inner;
use super::RedisStoreError;
use crate::Decisions;

/// The answer of a [`RedisStore`](super::RedisStore) check: ready at once when the deny cache
/// or the back-off answers it, else a round trip to Redis, alone or with the checks queued
/// behind the call in flight.
#[must_use = "futures do nothing unless polled"]
pub struct RedisStoreFuture {
    state: FutureState,
}

pub(super) type Pending = Pin<Box<dyn Future<Output = Result<Decisions, RedisStoreError>> + Send>>;

enum FutureState {
    Ready(Option<Result<Decisions, RedisStoreError>>),
    Pending(Pending),
    Queued(Answer),
}

impl RedisStoreFuture {
    pub(super) fn ready(outcome: Result<Decisions, RedisStoreError>) -> Self {
        RedisStoreFuture {
            state: FutureState::Ready(Some(outcome)),
        }
    }

    pub(super) fn pending(future: Pending) -> Self {
        RedisStoreFuture {
            state: FutureState::Pending(future),
        }
    }

    pub(super) fn queued(answer: Answer) -> Self {
        RedisStoreFuture {
            state: FutureState::Queued(answer),
        }
    }
}

impl Future for RedisStoreFuture {
    type Output = Result<Decisions, RedisStoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            FutureState::Ready(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("RedisStoreFuture polled after completion"),
            ),
            FutureState::Pending(future) => future.as_mut().poll(cx),
            FutureState::Queued(answer) => match ready!(Pin::new(answer).poll(cx)) {
                Ok(Outcome::Decided(outcome)) => Poll::Ready(outcome),
                // Its lane's sender went with its runtime: submitted again from here.
                Ok(Outcome::Returned(ask, inner)) => {
                    *self = Inner::submit(&inner, ask);
                    self.poll(cx)
                }
                Err(_) => Poll::Ready(Err(RedisStoreError::lost())),
            },
        }
    }
}

impl fmt::Debug for RedisStoreFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            FutureState::Ready(_) => "ready",
            FutureState::Pending(_) => "pending",
            FutureState::Queued(_) => "queued",
        };
        f.debug_struct("RedisStoreFuture")
            .field("state", &state)
            .finish()
    }
}
