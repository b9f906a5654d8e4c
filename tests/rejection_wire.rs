//! What a rejection looks like on the wire: its exact header list and Content-Length, and the
//! connection it leaves open. Sent over a real TCP socket to a real axum server, read as bytes.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::util::ServiceFn;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_ratelimit::{
    DefaultRejection, MakeRejection, ManualClock, MemoryStore, PeerIp, Policy, Quota,
    RateLimitLayer, RateLimited,
};

mod common;
use common::{header, manual_store};

/// A server on a free port whose one route says "hello", limited per peer by `layer`.
async fn serve<R>(layer: RateLimitLayer<PeerIp, MemoryStore<ManualClock>, R>) -> SocketAddr
where
    R: MakeRejection + Send + Sync + 'static,
{
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    common::serve(app).await.0
}

/// One response read from `socket`: the head's lines (the status line first) and the body,
/// whose length the `content-length` header gives.
async fn read_response(socket: &mut TcpStream, buf: &mut Vec<u8>) -> (Vec<String>, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap().to_owned();
            let lines: Vec<String> = head.split("\r\n").map(str::to_owned).collect();
            let length: usize = lines
                .iter()
                .find_map(|line| line.strip_prefix("content-length: "))
                .unwrap_or_else(|| panic!("no content-length in {lines:?}"))
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + length {
                let body = buf[end + 4..end + 4 + length].to_vec();
                buf.drain(..end + 4 + length);
                return (lines, body);
            }
        }
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("the server answers")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A connection to a server whose layer admits `per_hour` requests an hour, on a clock that
/// does not move.
async fn connect_hourly(per_hour: u32) -> TcpStream {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(per_hour))
        .store(store)
        .build()
        .unwrap();
    TcpStream::connect(serve(layer).await).await.unwrap()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n";
const HEAD: &[u8] = b"HEAD / HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// The answers of the server at `addr` to `requests`, sent at once on one connection: each
/// answer's head lines and body, and nothing after the last.
async fn answers_on_one_connection(
    addr: SocketAddr,
    requests: &[&[u8]],
) -> Vec<(Vec<String>, Vec<u8>)> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(&requests.concat()).await.unwrap();
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for _ in requests {
        // `read_response` reads the head's `content-length` and panics where there is none.
        answers.push(read_response(&mut socket, &mut buf).await);
    }
    assert!(buf.is_empty(), "nothing after the last answer: {buf:?}");
    answers
}

#[tokio::test]
async fn a_rejection_on_the_wire_has_its_headers_in_order_and_an_exact_content_length() {
    let mut socket = connect_hourly(1).await;
    let mut buf = Vec::new();
    socket.write_all(GET).await.unwrap();
    let (head, body) = read_response(&mut socket, &mut buf).await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(body, b"hello");

    socket.write_all(GET).await.unwrap();
    let (head, body) = read_response(&mut socket, &mut buf).await;
    let names: Vec<&str> = head[1..]
        .iter()
        .map(|line| line.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(head[0], "HTTP/1.1 429 Too Many Requests");
    assert_eq!(
        &head[1..5],
        [
            "content-type: text/plain; charset=utf-8",
            "retry-after: 3600",
            "ratelimit-policy: \"default\";q=1;w=3600",
            "ratelimit: \"default\";r=0;t=3600",
        ]
    );
    assert_eq!(head[5], format!("content-length: {}", body.len()));
    assert_eq!(
        names,
        [
            "content-type",
            "retry-after",
            "ratelimit-policy",
            "ratelimit",
            "content-length",
            "date"
        ]
    );
    assert_eq!(body, b"Too Many Requests: retry in 3600 s\n");
}

#[tokio::test]
async fn keep_alive_survives_a_429_over_a_real_socket() {
    let mut socket = connect_hourly(2).await;
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    // Two admitted, then rejections, all on the one connection; the last two pipelined.
    for _ in 0..4 {
        socket.write_all(GET).await.unwrap();
        let (head, _) = read_response(&mut socket, &mut buf).await;
        assert!(
            !head.iter().any(|line| line.starts_with("connection:")),
            "{head:?}"
        );
        statuses.push(head[0].clone());
    }
    socket.write_all(&[GET, GET].concat()).await.unwrap();
    for _ in 0..2 {
        let (head, _) = read_response(&mut socket, &mut buf).await;
        statuses.push(head[0].clone());
    }
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 429 Too Many Requests",
            "HTTP/1.1 429 Too Many Requests",
            "HTTP/1.1 429 Too Many Requests",
            "HTTP/1.1 429 Too Many Requests",
        ]
    );
}

/// The service every layer below wraps: "ok", at once.
type Inner = ServiceFn<Answer>;
type Answer = fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>;

/// A request from one peer.
fn from_peer() -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
    req
}

/// The answer to the second of two requests made by `request` through `layer`.
async fn second_response<L, S>(layer: L, request: impl Fn() -> Request<()>) -> Response<String>
where
    L: Layer<Inner, Service = S>,
    S: Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
{
    let inner: Answer = |_| ready(Ok(Response::new(String::from("ok"))));
    let svc = layer.layer(service_fn(inner));
    svc.clone().oneshot(request()).await.unwrap();
    svc.oneshot(request()).await.unwrap()
}

/// The body of `response`, collected.
async fn body(response: Response<String>) -> Bytes {
    use http_body_util::BodyExt;
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn every_http_rejection_carries_the_content_length_of_its_body() {
    // The default rejection, for one policy and a stack of two.
    let (store, _clock) = manual_store();
    let one = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .store(store)
        .build()
        .unwrap();
    let (store, _clock) = manual_store();
    let stack = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(1)))
        .policy(Policy::new("per-hour", Quota::per_hour(1_000)))
        .store(store)
        .build()
        .unwrap();
    // A custom rejection, which sets no length of its own.
    let (store, _clock) = manual_store();
    let custom = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .rejection(|limited: &RateLimited| {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .body(format!("slow down for {} s", limited.retry_after_secs()))
                .unwrap()
        })
        .store(store)
        .build()
        .unwrap();
    for response in [
        second_response(one, from_peer).await,
        second_response(stack, from_peer).await,
        second_response(custom, from_peer).await,
    ] {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let length: usize = header(&response, "content-length").parse().unwrap();
        assert_eq!(header(&response, "retry-after"), "1");
        assert_eq!(body(response).await.len(), length);
    }
}

/// An extension a test puts on a request or a response.
#[derive(Clone, Debug, PartialEq)]
struct Marker(&'static str);

#[tokio::test]
async fn a_rejection_carries_its_own_extensions_and_none_of_the_request() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .rejection(|_: &RateLimited| {
            let mut response = Response::new("limited");
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
                .extensions_mut()
                .insert(Marker("from the rejection"));
            response
        })
        .store(store)
        .build()
        .unwrap();
    let request = || {
        let mut req = from_peer();
        req.extensions_mut().insert(Marker("from the request"));
        req.extensions_mut().insert(7u32);
        req
    };
    let limited = second_response(layer, request).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let extensions = limited.extensions();
    assert_eq!(
        extensions.get::<Marker>(),
        Some(&Marker("from the rejection"))
    );
    assert!(extensions.get::<RateLimited>().is_some());
    assert!(extensions.get::<u32>().is_none());
    assert!(extensions.get::<SocketAddr>().is_none());
    assert_eq!(extensions.len(), 2);
}

#[tokio::test]
async fn a_rejection_made_from_the_default_one_with_another_body_gets_that_body_s_length() {
    // The default rejection's headers with a body of another length: the Content-Length it
    // carries is the default body's, which would break the connection.
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .rejection(|limited: &RateLimited| {
            DefaultRejection
                .make_rejection(limited)
                .map(|_| Bytes::from_static(b"{\"error\":\"slow down\"}"))
        })
        .store(store)
        .build()
        .unwrap();
    let mut socket = TcpStream::connect(serve(layer).await).await.unwrap();
    // Pipelined: the answers must stay in step with the requests.
    socket.write_all(&[GET, GET, GET].concat()).await.unwrap();
    let mut buf = Vec::new();
    let (head, body) = read_response(&mut socket, &mut buf).await;
    assert_eq!(
        (head[0].as_str(), &body[..]),
        ("HTTP/1.1 200 OK", &b"hello"[..])
    );
    for _ in 0..2 {
        let (head, body) = read_response(&mut socket, &mut buf).await;
        assert_eq!(head[0], "HTTP/1.1 429 Too Many Requests");
        assert_eq!(body, b"{\"error\":\"slow down\"}");
        let lengths = head
            .iter()
            .filter(|line| line.starts_with("content-length"));
        assert_eq!(lengths.collect::<Vec<_>>(), ["content-length: 21"]);
    }
}

/// The status, headers and body (or why it could not be read) of a request with `method` to
/// `addr` over HTTP/2 without TLS.
async fn over_http2(
    addr: SocketAddr,
    method: http::Method,
) -> (StatusCode, http::HeaderMap, Result<Bytes, String>) {
    use http_body_util::{BodyExt, Empty};
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let executor = hyper_util::rt::TokioExecutor::new();
    let (mut send, connection) = hyper::client::conn::http2::handshake(executor, io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (head, body) = send.send_request(request).await.unwrap().into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the body ends")
        .map(|body| body.to_bytes())
        .map_err(|e| format!("{e:?}"));
    (head.status, head.headers, body)
}

#[tokio::test]
async fn a_rejection_of_a_head_request_has_no_body_over_http2_and_http1() {
    // Around the whole Router, where axum does not take a HEAD answer's body away.
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .store(store)
        .build()
        .unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Router::new().route("/", get(|| async { "hello" })));
    let addr = common::serve(app).await.0;

    let (status, _, body) = over_http2(addr, http::Method::HEAD).await;
    assert_eq!((status, body), (StatusCode::OK, Ok(Bytes::new())));
    // A body sent for a HEAD request is a protocol error on HTTP/2.
    let (status, headers, body) = over_http2(addr, http::Method::HEAD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, Ok(Bytes::new()));
    assert_eq!(headers["retry-after"], "3600");
    // The length of the body a GET gets.
    assert_eq!(headers["content-length"], "35");
    let (status, headers, body) = over_http2(addr, http::Method::GET).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body.unwrap(), "Too Many Requests: retry in 3600 s\n");
    assert_eq!(headers["content-length"], "35");

    // HTTP/1.1 on one connection: the HEAD answer ends at its head, and the next is read whole.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(&[HEAD, GET].concat()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0; 4096];
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head: Vec<u8> = buf.drain(..end + 4).collect();
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 35\r\n"), "{head}");
    let (head, body) = read_response(&mut socket, &mut buf).await;
    assert_eq!(head[0], "HTTP/1.1 429 Too Many Requests");
    assert_eq!(body, b"Too Many Requests: retry in 3600 s\n");
}

#[tokio::test]
async fn every_kind_of_rejection_of_a_head_request_has_no_body_and_the_get_s_length() {
    use tower_ratelimit::{Header, MissingKey};
    fn head() -> Request<()> {
        let mut req = from_peer();
        *req.method_mut() = http::Method::HEAD;
        req
    }
    // Each kind of rejection, for requests made by `request`: a fresh layer each time.
    let answers = |request: fn() -> Request<()>| async move {
        // No key: the layer's missing-key answer.
        let missing = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .key(Header::new("x-api-key"))
            .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
            .build()
            .unwrap();
        // The store fails.
        let failing = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .store(common::DownStore)
            .build()
            .unwrap();
        // A cost above the burst.
        let too_large = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .cost_by(|_: &Request<()>| 2)
            .store(manual_store().0)
            .build()
            .unwrap();
        // Rate limited.
        let limited = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .store(manual_store().0)
            .build()
            .unwrap();
        [
            second_response(missing, request).await,
            second_response(failing, request).await,
            second_response(too_large, request).await,
            second_response(limited, request).await,
        ]
    };
    let heads = answers(head).await;
    let gets = answers(from_peer).await;
    let statuses = heads.iter().map(Response::status).collect::<Vec<_>>();
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    for (head, get) in heads.into_iter().zip(gets) {
        assert_eq!(head.status(), get.status());
        let length = header(&head, "content-length").to_owned();
        assert_eq!(body(head).await, Bytes::new());
        let get = body(get).await;
        assert!(!get.is_empty());
        assert_eq!(length, get.len().to_string(), "the GET's body: {get:?}");
    }
}

#[tokio::test]
async fn a_head_request_rejected_with_an_empty_body_is_told_its_length_as_a_get_is() {
    // A rejection whose body is empty: a GET is told `content-length: 0`, and so must a HEAD be.
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .rejection(|_: &RateLimited| {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .body(String::new())
                .unwrap()
        })
        .store(store)
        .build()
        .unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Router::new().route("/", get(|| async { "hello" })));
    let addr = common::serve(app).await.0;

    // HTTP/1.1, one connection: the first GET is served, then a GET and a HEAD are rejected.
    let answers = answers_on_one_connection(addr, &[GET, GET, HEAD, GET]).await;
    let (lines, body) = &answers[0];
    assert_eq!(
        (lines[0].as_str(), &body[..]),
        ("HTTP/1.1 200 OK", &b"hello"[..])
    );
    for (lines, body) in &answers[1..] {
        assert_eq!(lines[0], "HTTP/1.1 429 Too Many Requests");
        assert!(lines.contains(&"content-length: 0".to_owned()), "{lines:?}");
        assert!(body.is_empty());
    }

    // HTTP/2.
    for method in [http::Method::HEAD, http::Method::GET] {
        let (status, headers, body) = over_http2(addr, method.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{method}");
        assert_eq!(headers["content-length"], "0", "{method}");
        assert_eq!(body, Ok(Bytes::new()), "{method}");
    }
}

/// Sends requests without a key to a login page, with an empty body.
struct ToLogin;

impl MakeRejection for ToLogin {
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        DefaultRejection.make_rejection(limited)
    }

    fn make_missing_key(&self, rejected: &tower_ratelimit::MissingKeyRejected) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = rejected.status();
        response.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_static("/login"),
        );
        response
    }
}

/// A rejection other than `limited` whose body is empty (here a redirect for a request without
/// a key): a GET is told `content-length: 0`, and so must a HEAD be, as for a limited request.
#[tokio::test]
async fn a_head_request_without_a_key_redirected_with_an_empty_body_is_told_its_length() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .key(tower_ratelimit::Header::new("x-api-key"))
        .on_missing_key(tower_ratelimit::MissingKey::Reject(StatusCode::SEE_OTHER))
        .rejection(ToLogin)
        .build()
        .unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Router::new().route("/", get(|| async { "hello" })));
    let addr = common::serve(app).await.0;
    let answers = answers_on_one_connection(addr, &[GET, HEAD, GET]).await;
    for (method, (lines, body)) in ["GET", "HEAD", "GET"].into_iter().zip(answers) {
        assert_eq!(lines[0], "HTTP/1.1 303 See Other", "{method}");
        assert!(
            lines.contains(&"content-length: 0".to_owned()),
            "{method}: {lines:?}"
        );
        assert!(body.is_empty());
    }
}
