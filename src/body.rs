//! The response body of a rate-limited service: the inner service's own body type, which a
//! rejection's bytes are turned into.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

/// A response body that a rejection can be written in.
///
/// [`RateLimit`](crate::RateLimit) answers in its inner service's body type: an allowed
/// response passes through untouched (no second boxing by axum or tonic), and a rejection's
/// bytes, from [`MakeRejection`](crate::MakeRejection), become a body of that type through this
/// trait. It is implemented for axum's `Body` (feature `axum`), tonic's `Body` (feature
/// `tonic`), `http_body_util`'s `Full<Bytes>`, `BoxBody` and `UnsyncBoxBody`, `String`, and
/// [`ResponseBody`], which adapts any other body:
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use tower::{service_fn, ServiceBuilder};
/// use tower_ratelimit::{Quota, RateLimitLayer, ResponseBody};
///
/// // `Empty` cannot hold a rejection's text: answer in `ResponseBody<Empty<Bytes>>` instead.
/// let service = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(Quota::per_second(10)))
///     .map_response(|response: Response<Empty<Bytes>>| response.map(ResponseBody::new))
///     .service(service_fn(|_: Request<()>| async {
///         Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
///     }));
/// # let _ = service;
/// ```
#[diagnostic::on_unimplemented(
    message = "the rate limiter cannot write a rejection in a `{Self}` response body",
    note = "answer in a body that implements `RejectionBody` (axum's or tonic's `Body`, \
            `Full<Bytes>`, `String`), or wrap this one in `ResponseBody::new` inside the layer \
            (`.map_response(|r| r.map(ResponseBody::new))`)",
    note = "axum's and tonic's `Body` implement it with the crate's `axum` and `tonic` features"
)]
pub trait RejectionBody: Sized {
    /// The body of a rejection whose content is `bytes` (empty for a gRPC rejection, whose
    /// status is in its headers).
    fn from_rejection(bytes: Bytes) -> Self;
}

#[cfg(feature = "axum")]
impl RejectionBody for axum::body::Body {
    fn from_rejection(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            axum::body::Body::empty()
        } else {
            axum::body::Body::from(bytes)
        }
    }
}

#[cfg(feature = "tonic")]
impl RejectionBody for tonic::body::Body {
    fn from_rejection(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            tonic::body::Body::empty()
        } else {
            tonic::body::Body::new(Full::new(bytes))
        }
    }
}

impl RejectionBody for Full<Bytes> {
    fn from_rejection(bytes: Bytes) -> Self {
        Full::new(bytes)
    }
}

impl<E: 'static> RejectionBody for BoxBody<Bytes, E> {
    fn from_rejection(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never).boxed()
    }
}

impl<E: 'static> RejectionBody for UnsyncBoxBody<Bytes, E> {
    fn from_rejection(bytes: Bytes) -> Self {
        Full::new(bytes).map_err(never).boxed_unsync()
    }
}

/// The rejections this crate writes are ASCII; a custom one that is not UTF-8 has each byte
/// of its invalid sequences replaced by `?`, which keeps its length: the `Content-Length` the
/// layer set from the bytes still holds.
impl RejectionBody for String {
    fn from_rejection(bytes: Bytes) -> Self {
        let mut text = String::with_capacity(bytes.len());
        for chunk in bytes.utf8_chunks() {
            text.push_str(chunk.valid());
            text.extend(chunk.invalid().iter().map(|_| '?'));
        }
        text
    }
}

fn never<E>(never: Infallible) -> E {
    match never {}
}

pin_project! {
    /// A body of any type, or the few bytes of a rejection: what lets a service whose body
    /// cannot be built from bytes (such as `Empty`, or a file stream) be rate-limited: map the
    /// inner service's responses with `ResponseBody::new` inside the layer; see
    /// [`RejectionBody`].
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body, passed through untouched.
    pub fn new(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }
}

impl<B> RejectionBody for ResponseBody<B> {
    fn from_rejection(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Rejection {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

/// An empty body: what a middleware around the limiter answers with when it responds by itself
/// (tower-http's CORS preflights, timeouts and authorization use `ResBody::default()`).
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::from_rejection(Bytes::new())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner(..)"),
            Kind::Rejection { data } => f
                .debug_tuple("ResponseBody::Rejection")
                .field(data)
                .finish(),
        }
    }
}
