//! The layer answers in its inner service's body type: every body that can carry a rejection
//! carries its bytes whole, with an exact length, and `ResponseBody` adapts any other body.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_ratelimit::{Quota, RateLimitLayer, RateLimited, RejectionBody, ResponseBody};

const TEXT: &[u8] = b"Too Many Requests: retry in 1 s\n";

/// `B` made from a rejection's bytes: its length is known before it is read, and reading it
/// gives the bytes back; an empty rejection (gRPC's) is an ended body.
async fn carries<B>()
where
    B: RejectionBody + Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let name = std::any::type_name::<B>();
    let body = B::from_rejection(Bytes::from_static(TEXT));
    assert_eq!(body.size_hint().exact(), Some(TEXT.len() as u64), "{name}");
    assert!(!body.is_end_stream(), "{name}");
    let read = body.collect().await.unwrap().to_bytes();
    assert_eq!(read, TEXT, "{name}");

    let empty = B::from_rejection(Bytes::new());
    assert_eq!(empty.size_hint().exact(), Some(0), "{name}");
    assert!(empty.is_end_stream(), "{name}");
    assert!(
        empty.collect().await.unwrap().to_bytes().is_empty(),
        "{name}"
    );
}

#[tokio::test]
async fn every_rejection_body_carries_the_bytes_whole_with_their_length() {
    carries::<axum::body::Body>().await;
    carries::<tonic::body::Body>().await;
    carries::<Full<Bytes>>().await;
    carries::<BoxBody<Bytes, Infallible>>().await;
    carries::<UnsyncBoxBody<Bytes, std::io::Error>>().await;
    carries::<String>().await;
    carries::<ResponseBody<Empty<Bytes>>>().await;
}

#[test]
fn a_rejection_that_is_not_utf8_becomes_a_string_of_its_length() {
    let body = String::from_rejection(Bytes::from_static(b"limited \xff\xfe \xe2\x82 \xc3\xa9"));
    assert_eq!(body, "limited ?? ?? \u{e9}");
}

/// A custom rejection that is not UTF-8, in a `String` body: the `Content-Length` the layer
/// set is the length of the body sent.
#[tokio::test]
async fn a_string_rejection_that_is_not_utf8_has_the_length_it_declares() {
    let svc = ServiceBuilder::new()
        .layer(
            RateLimitLayer::builder()
                .quota(Quota::per_minute(1))
                .rejection(|_: &RateLimited| {
                    Response::builder()
                        .status(StatusCode::TOO_MANY_REQUESTS)
                        .body(Bytes::from_static(b"\xff\xfex"))
                        .unwrap()
                })
                .build()
                .unwrap(),
        )
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("hello")))
        }));
    let _ = svc.clone().oneshot(from_peer(())).await.unwrap();
    let limited = svc.oneshot(from_peer(())).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let declared = limited.headers()[http::header::CONTENT_LENGTH].clone();
    let body = limited.into_body();
    assert_eq!(body, "??x");
    assert_eq!(declared.to_str().unwrap(), body.len().to_string());
}

fn from_peer<B>(body: B) -> Request<B> {
    let mut request = Request::new(body);
    request
        .extensions_mut()
        .insert("192.0.2.7:4000".parse::<SocketAddr>().unwrap());
    request
}

/// A service whose body cannot hold text answers through `ResponseBody`: an allowed response
/// keeps the inner body (and its length), a rejection carries the default text.
#[tokio::test]
async fn response_body_adapts_a_body_that_cannot_carry_a_rejection() {
    let layer = RateLimitLayer::new(Quota::per_minute(1));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .map_response(|response: Response<Empty<Bytes>>| response.map(ResponseBody::new))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }));

    let allowed = svc.clone().oneshot(from_peer(())).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.body().size_hint().exact(), Some(0));
    assert!(allowed
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());

    let limited = svc.oneshot(from_peer(())).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "60");
    let text = limited.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "Too Many Requests: retry in 60 s\n");

    // What tower-http's layers outside the limiter answer with by themselves: an empty body.
    let default = ResponseBody::<Empty<Bytes>>::default();
    assert!(default.is_end_stream());
    assert_eq!(default.size_hint().exact(), Some(0));
}

/// The answer has the inner service's own type: an axum `Router` wrapped by the layer is still
/// a service of axum's `Response`, and its rejection is in axum's `Body`.
#[tokio::test]
async fn around_a_router_the_answers_are_axum_responses() {
    use axum::routing::get;
    use axum::Router;

    let router = Router::new().route("/", get(|| async { "hello" }));
    let svc = RateLimitLayer::new(Quota::per_minute(1)).layer(router);
    let answer = |svc| async move {
        let response: axum::response::Response = ServiceExt::<Request<axum::body::Body>>::oneshot(
            svc,
            from_peer(axum::body::Body::empty()),
        )
        .await
        .unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    };
    assert_eq!(
        answer(svc.clone()).await,
        (StatusCode::OK, Bytes::from("hello"))
    );
    assert_eq!(
        answer(svc).await,
        (
            StatusCode::TOO_MANY_REQUESTS,
            Bytes::from("Too Many Requests: retry in 60 s\n")
        )
    );
}
