//! gRPC: a real tonic server behind the layer on a loopback port, called by real tonic clients.
//!
//! Time is a `ManualClock`: "waiting the delay" is advancing the clock by exactly the delay the
//! server gave, so the tests neither sleep nor race.

#[path = "../examples/greeter/mod.rs"]
mod greeter;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::{
    GrpcMethod, Header, KeyBytes, KeyExtractor, ManualClock, MemoryStore, MissingKey, PeerIp,
    Policy, Quota, RateLimitLayer, Store,
};

use greeter::{rpc, GreeterClient, GreeterServer, HelloRequest};

mod common;
#[cfg(feature = "redis")]
mod support;
use common::manual_store;

/// A burst of 3, then one call every 200 ms.
fn quota() -> Quota {
    Quota::with_period(Duration::from_millis(200)).allow_burst(3)
}

/// The default layer (peer IP keys) on a store whose time the test drives.
fn manual_layer() -> (
    RateLimitLayer<PeerIp, MemoryStore<ManualClock>>,
    ManualClock,
) {
    manual_layer_of(quota())
}

/// A layer of `quota` per peer on a store whose clock stands still, and that clock.
fn manual_layer_of(
    quota: Quota,
) -> (
    RateLimitLayer<PeerIp, MemoryStore<ManualClock>>,
    ManualClock,
) {
    let (store, clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(quota)
        .store(store)
        .build()
        .unwrap();
    (layer, clock)
}

/// Serves the greeter and the health service behind `layer` on a loopback port; the server
/// stops with the test's runtime.
async fn serve<E, St>(layer: RateLimitLayer<E, St>, http1: bool) -> SocketAddr
where
    E: KeyExtractor<tonic::body::Body> + Send + Sync + 'static,
    E::Key: KeyBytes,
    St: Store + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GreeterServer>().await;
    let server = Server::builder()
        .accept_http1(http1)
        .layer(layer)
        .add_service(health_service)
        .add_service(GreeterServer)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(async move { server.await.expect("the test server failed") });
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.into(),
        count: 1,
    }
}

/// Checks everything a limited call carries: the code, the message, the pushback and the
/// `RetryInfo` of the `google.rpc.Status` in the details, all stating `wait`.
fn assert_limited(status: &Status, wait: Duration, wait_text: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let message = format!("rate limit exceeded; retry in {wait_text}");
    assert_eq!(status.message(), message);
    let pushback_ms = wait.as_nanos().div_ceil(1_000_000).max(1) as u64;
    assert_eq!(
        rpc::pushback(status),
        Some(Duration::from_millis(pushback_ms))
    );
    let details = rpc::status_details(status).expect("details hold a google.rpc.Status");
    assert_eq!(details.code, Code::ResourceExhausted as i32);
    assert_eq!(details.message, message);
    assert_eq!(details.details.len(), 1);
    assert_eq!(rpc::retry_delay(&details), Some(wait));
}

#[tokio::test]
async fn unary_calls_beyond_the_burst_are_resource_exhausted_until_the_delay_passes() {
    let (layer, clock) = manual_layer();
    let mut client = GreeterClient::new(channel(serve(layer, false).await).await);

    for n in 0..3 {
        let reply = client.say_hello(hello("a")).await.unwrap();
        assert_eq!(reply.get_ref().message, "hello, a", "call {n}");
    }
    let status = client.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");

    // One nanosecond short of the delay is still too early, and says so exactly.
    clock.advance(Duration::from_millis(200) - Duration::from_nanos(1));
    let status = client.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_nanos(1), "1 ms");

    clock.advance(Duration::from_nanos(1));
    client.say_hello(hello("a")).await.unwrap();
    let status = client.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

/// A tonic server that terminates TLS itself still gives the layer the peer address: calls are
/// keyed by it and limited, not rejected for want of a key.
#[tokio::test]
async fn a_server_terminating_tls_keys_calls_by_the_peer_address() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

    // Not `support::unique_prefix`: `support` needs the `redis` feature, and this test does not.
    let dir = std::env::temp_dir().join(format!("grpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    common::make_certificates(&dir);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (layer, _clock) = manual_layer();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::builder()
        .tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(read("server.crt"), read("server.key"))),
        )
        .unwrap()
        .layer(layer)
        .add_service(GreeterServer)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(async move { server.await.expect("the test server failed") });
    let trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(trust)
        .unwrap()
        .connect()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut client = GreeterClient::new(channel);

    for n in 0..3 {
        let reply = client.say_hello(hello("tls")).await.unwrap();
        assert_eq!(reply.get_ref().message, "hello, tls", "call {n}");
    }
    let status = client.say_hello(hello("tls")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

#[tokio::test]
async fn streaming_calls_and_health_checks_share_the_budget() {
    let (layer, clock) = manual_layer();
    let channel = channel(serve(layer, false).await).await;
    let mut greeter = GreeterClient::new(channel.clone());
    let mut health = HealthClient::new(channel);

    let request = HelloRequest {
        name: "s".into(),
        count: 4,
    };
    for _ in 0..2 {
        let stream = greeter.say_hello_stream(request.clone()).await.unwrap();
        let replies: Vec<_> = stream.into_inner().collect().await;
        assert_eq!(replies.len(), 4);
        assert!(replies
            .iter()
            .all(|r| r.as_ref().unwrap().message == "hello, s"));
    }
    let check = || HealthCheckRequest {
        service: greeter::SERVICE.into(),
    };
    health.check(check()).await.unwrap();

    let status = greeter.say_hello_stream(request.clone()).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
    let status = health.check(check()).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");

    clock.advance(Duration::from_millis(200));
    let stream = greeter.say_hello_stream(request).await.unwrap();
    assert_eq!(stream.into_inner().collect::<Vec<_>>().await.len(), 4);
}

#[tokio::test]
async fn plain_http_requests_through_the_same_layer_get_429() {
    let (layer, _clock) = manual_layer();
    let addr = serve(layer, true).await;
    let mut greeter = GreeterClient::new(channel(addr).await);
    for _ in 0..3 {
        greeter.say_hello(hello("a")).await.unwrap();
    }

    let http: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}{}", greeter::SAY_HELLO)
        .parse()
        .unwrap();
    let response = http.get(uri).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(!response.headers().contains_key("grpc-status"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Too Many Requests: retry in 1 s\n");

    let status = greeter.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

#[tokio::test]
async fn peer_and_method_keys_give_each_method_its_own_budget() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .key((PeerIp::new(), GrpcMethod))
        .store(store.clone())
        .build()
        .unwrap();
    let channel = channel(serve(layer, false).await).await;
    let mut greeter = GreeterClient::new(channel.clone());
    let mut health = HealthClient::new(channel);

    for _ in 0..3 {
        greeter.say_hello(hello("a")).await.unwrap();
    }
    let status = greeter.say_hello(hello("a")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let check = HealthCheckRequest {
        service: String::new(),
    };
    health.check(check.clone()).await.unwrap();
    // The key came from tonic's connection info: the peer is this test's loopback address.
    let key = (
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
        GrpcMethod
            .extract(&Request::post(greeter::SAY_HELLO).body(()).unwrap())
            .unwrap(),
    );
    assert_eq!(
        key.key_bytes().as_bytes(),
        format!("9:127.0.0.1{}", greeter::SAY_HELLO).as_bytes()
    );
    let stack = store
        .register(&[Policy::new("default", quota())])
        .expect("the layer's own policy");
    assert!(!store
        .peek_now(&stack, key.key_bytes().as_bytes())
        .is_allowed());
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn api_keys_in_metadata_are_keys_and_a_missing_one_is_unauthenticated() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
        .store(store)
        .build()
        .unwrap();
    let mut greeter = GreeterClient::new(channel(serve(layer, false).await).await);
    let with_key = |api_key: &'static str| {
        let mut request = tonic::Request::new(hello("k"));
        request
            .metadata_mut()
            .insert("x-api-key", api_key.parse().unwrap());
        request
    };

    for _ in 0..3 {
        greeter.say_hello(with_key("alpha")).await.unwrap();
    }
    let status = greeter.say_hello(with_key("alpha")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    greeter.say_hello(with_key("beta")).await.unwrap();

    let status = greeter.say_hello(hello("k")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_grpc_content_type_in_any_case_gets_a_grpc_answer() {
    use http::header::{HeaderValue, CONTENT_TYPE};
    use http::uri::PathAndQuery;
    use tonic_prost::ProstCodec;

    let (layer, _clock) = manual_layer();
    let channel = channel(serve(layer, false).await).await;
    // Media types are case-insensitive: tonic serves this call like any other.
    let channel = tower::ServiceBuilder::new()
        .map_request(|mut req: Request<tonic::body::Body>| {
            let content_type = HeaderValue::from_static("Application/gRPC+proto");
            req.headers_mut().insert(CONTENT_TYPE, content_type);
            req
        })
        .service(channel);
    let grpc = tonic::client::Grpc::new(channel);
    let call = || {
        let codec = ProstCodec::<HelloRequest, greeter::HelloReply>::default();
        let path = PathAndQuery::from_static(greeter::SAY_HELLO);
        let request = tonic::Request::new(hello("a"));
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(request, path, codec).await
        }
    };
    for _ in 0..3 {
        assert_eq!(call().await.unwrap().into_inner().message, "hello, a");
    }
    let status = call().await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

#[tokio::test]
async fn for_grpc_answers_every_limited_request_as_a_grpc_call() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .store(store)
        .for_grpc()
        .build()
        .unwrap();
    let inner = service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    let svc = layer.layer(inner);
    let request = || {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        req
    };
    for _ in 0..3 {
        let response = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("grpc-status"));
    }
    let response = svc.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "8");
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "200");
    let status = Status::from_header_map(response.headers()).unwrap();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

#[tokio::test]
async fn a_layer_on_one_service_limits_that_service_alone() {
    let (layer, _clock) = manual_layer();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GreeterServer>().await;
    let server = Server::builder()
        .add_service(health_service)
        .add_service(layer.layer(GreeterServer))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(async move { server.await.expect("the test server failed") });
    let channel = channel(addr).await;
    let mut greeter = GreeterClient::new(channel.clone());
    let mut health = HealthClient::new(channel);

    for _ in 0..3 {
        greeter.say_hello(hello("a")).await.unwrap();
    }
    let status = greeter.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
    for _ in 0..10 {
        let check = HealthCheckRequest {
            service: String::new(),
        };
        health.check(check).await.unwrap();
    }
}

/// Serves the greeter behind `layer` on a loopback port, on TLS streams that `acceptor`
/// accepts before tonic gets them; returns the port.
async fn serve_own_tls<E>(
    acceptor: tokio_rustls::TlsAcceptor,
    layer: RateLimitLayer<E, MemoryStore<ManualClock>>,
) -> u16
where
    E: KeyExtractor<tonic::body::Body> + Send + Sync + 'static,
    E::Key: KeyBytes,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = TcpListenerStream::new(listener).then(move |tcp| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(tcp?).await }
    });
    let server = Server::builder()
        .layer(layer)
        .add_service(GreeterServer)
        .serve_with_incoming(incoming);
    tokio::spawn(async move { server.await.expect("the test server failed") });
    port
}

/// A server given TLS streams the application accepted itself (`serve_with_incoming`) gets
/// tonic's `TlsConnectInfo` alone, not the `TcpConnectInfo` that `PeerIp` reads: the warning
/// says so and what to do, and a key closure reading `TlsConnectInfo` limits each peer.
#[tokio::test]
async fn a_tls_stream_of_the_application_s_own_gets_a_warning_naming_tls_connect_info() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto::ring, ServerConfig};
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    use tonic::transport::{Certificate, ClientTlsConfig};

    let dir = std::env::temp_dir().join(format!("grpc-own-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    common::make_certificates(&dir);
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let connect = |port: u16| {
        let trust = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("localhost");
        let endpoint = Channel::from_shared(format!("https://localhost:{port}")).unwrap();
        async move { endpoint.tls_config(trust).unwrap().connect().await }
    };

    let (logs, _guard) = common::Captured::install(tracing::Level::WARN);
    let (layer, _clock) = manual_layer();
    let mut client = GreeterClient::new(
        connect(serve_own_tls(acceptor.clone(), layer).await)
            .await
            .unwrap(),
    );
    let status = client.say_hello(hello("tls")).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let log = logs.text();
    assert!(
        log.contains("TlsConnectInfo"),
        "the warning must say what a TLS stream of one's own gives: {log}"
    );

    let tls_peer = |req: &Request<tonic::body::Body>| {
        let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
        Some(info.get_ref().remote_addr()?.ip())
    };
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .key(tls_peer)
        .store(manual_store().0)
        .build()
        .unwrap();
    let mut client = GreeterClient::new(
        connect(serve_own_tls(acceptor.clone(), layer).await)
            .await
            .unwrap(),
    );
    for _ in 0..3 {
        client.say_hello(hello("tls")).await.unwrap();
    }
    let status = client.say_hello(hello("tls")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

/// Messages that a client sends one at a time, then a stream left open: a client still
/// streaming when the server answers.
fn endless(name: &str) -> impl tokio_stream::Stream<Item = HelloRequest> + Send + 'static {
    tokio_stream::iter(vec![hello(name); 3]).chain(tokio_stream::pending())
}

#[tokio::test]
async fn concurrent_calls_on_one_connection_each_spend_the_peer_s_budget() {
    let (layer, clock) = manual_layer();
    let addr = serve(layer, false).await;
    let connection = channel(addr).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut greeter = GreeterClient::new(connection.clone());
            tokio::spawn(async move { greeter.say_hello(hello("c")).await })
        })
        .collect();
    let mut served = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => served += 1,
            Err(status) => assert_limited(&status, Duration::from_millis(200), "200 ms"),
        }
    }
    assert_eq!(served, 3);

    // A second connection (`channel` connects anew) from the same address spends the same
    // budget.
    clock.advance(Duration::from_millis(200));
    let mut other = GreeterClient::new(channel(addr).await);
    other.say_hello(hello("c")).await.unwrap();
    let status = GreeterClient::new(connection)
        .say_hello(hello("c"))
        .await
        .unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

#[tokio::test]
async fn a_limited_streaming_call_gets_its_status_while_the_client_still_streams() {
    let (layer, _clock) = manual_layer();
    let mut greeter = GreeterClient::new(channel(serve(layer, false).await).await);
    for _ in 0..3 {
        greeter.say_hello(hello("a")).await.unwrap();
    }

    let status = greeter.say_hello_to_all(endless("up")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
    let status = greeter.chat(endless("bidi")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");

    // A deadline shorter than the wait does not turn the answer into DEADLINE_EXCEEDED: an
    // hour's wait against a deadline of seconds, which a loaded machine's client still reads
    // the answer within.
    let (hourly, _clock) = manual_layer_of(Quota::per_hour(1));
    let mut greeter = GreeterClient::new(channel(serve(hourly, false).await).await);
    greeter.say_hello(hello("a")).await.unwrap();
    let mut call = tonic::Request::new(hello("a"));
    call.set_timeout(Duration::from_secs(5));
    let status = greeter.say_hello(call).await.unwrap_err();
    assert_limited(&status, Duration::from_secs(3600), "3600 s");
}

#[tokio::test]
async fn a_streaming_call_is_one_request_and_runs_on_once_the_budget_is_spent() {
    let (layer, clock) = manual_layer();
    let mut greeter = GreeterClient::new(channel(serve(layer, false).await).await);

    let (send, requests) = tokio::sync::mpsc::unbounded_channel();
    let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(requests);
    send.send(hello("first")).unwrap();
    let mut replies = greeter.chat(requests).await.unwrap().into_inner();
    assert_eq!(
        replies.message().await.unwrap().unwrap().message,
        "hello, first"
    );
    for _ in 0..2 {
        greeter.say_hello(hello("a")).await.unwrap();
    }
    let status = greeter.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");

    // The budget is spent, and the stream admitted before goes on, message after message.
    for n in 0..10 {
        send.send(hello(&n.to_string())).unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.message, format!("hello, {n}"));
    }
    drop(send);
    assert!(replies.message().await.unwrap().is_none());

    // Ten messages up a client stream are one call: one cell of the budget.
    clock.advance(Duration::from_millis(200));
    let names = (0..10).map(|n| hello(&n.to_string()));
    let reply = greeter
        .say_hello_to_all(tokio_stream::iter(names))
        .await
        .unwrap();
    assert_eq!(
        reply.get_ref().message,
        "hello, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    );
    let status = greeter.say_hello(hello("a")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
}

/// Serves the greeter to gRPC-Web clients through tonic-web on a loopback port, with the rate
/// limit in front of tonic-web (`outside`: it sees gRPC-Web calls) or behind it (it sees the
/// gRPC calls tonic-web makes of them).
async fn serve_web(
    layer: RateLimitLayer<PeerIp, MemoryStore<ManualClock>>,
    outside: bool,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpListenerStream::new(listener);
    let web = tonic_web::GrpcWebLayer::new();
    let builder = Server::builder().accept_http1(true);
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match outside {
            true => Box::pin(
                builder
                    .layer(layer)
                    .layer(web)
                    .add_service(GreeterServer)
                    .serve_with_incoming(incoming),
            ),
            false => Box::pin(
                builder
                    .layer(web)
                    .layer(layer)
                    .add_service(GreeterServer)
                    .serve_with_incoming(incoming),
            ),
        };
    tokio::spawn(async move { server.await.expect("the test server failed") });
    addr
}

/// Calls `SayHello` on `addr` as a gRPC-Web client over HTTP/1.1.
async fn say_hello_web(addr: SocketAddr) -> Result<String, Status> {
    use http::uri::PathAndQuery;
    use tonic_prost::ProstCodec;

    let http = Client::builder(TokioExecutor::new()).build_http();
    let web = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(http);
    let mut grpc = tonic::client::Grpc::with_origin(web, format!("http://{addr}").parse().unwrap());
    grpc.ready().await.unwrap();
    let codec = ProstCodec::<HelloRequest, greeter::HelloReply>::default();
    let path = PathAndQuery::from_static(greeter::SAY_HELLO);
    let reply = grpc
        .unary(tonic::Request::new(hello("web")), path, codec)
        .await?;
    Ok(reply.into_inner().message)
}

#[tokio::test]
async fn grpc_web_calls_through_tonic_web_get_resource_exhausted_either_side_of_it() {
    for outside in [true, false] {
        let (layer, _clock) = manual_layer();
        let addr = serve_web(layer, outside).await;
        for _ in 0..3 {
            assert_eq!(say_hello_web(addr).await.unwrap(), "hello, web");
        }
        let status = say_hello_web(addr).await.unwrap_err();
        assert_limited(&status, Duration::from_millis(200), "200 ms");
        let content_type = &status.metadata().as_ref()["content-type"];
        assert!(
            content_type
                .to_str()
                .unwrap()
                .starts_with("application/grpc-web"),
            "{status:?}"
        );
    }
}

/// A tonic server on a Unix socket has no peer IP address: the warning says so and what to key
/// by instead, rather than asking for a `tonic` feature that is already on.
#[cfg(unix)]
#[tokio::test]
async fn a_unix_socket_server_gets_a_warning_naming_uds_connect_info() {
    use hyper_util::rt::TokioIo;
    use tokio::net::{UnixListener, UnixStream};
    use tokio_stream::wrappers::UnixListenerStream;
    use tonic::transport::Endpoint;

    let dir = std::env::temp_dir().join(format!("grpc-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("greeter.sock");
    let (layer, _clock) = manual_layer();
    let server = Server::builder()
        .layer(layer)
        .add_service(GreeterServer)
        .serve_with_incoming(UnixListenerStream::new(UnixListener::bind(&path).unwrap()));
    tokio::spawn(async move { server.await.expect("the test server failed") });
    let socket = path.clone();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .unwrap();
    let mut client = GreeterClient::new(channel);

    let (logs, _guard) = common::Captured::install(tracing::Level::WARN);
    let status = client.say_hello(hello("uds")).await.unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let log = logs.text();
    assert!(
        log.contains("UdsConnectInfo") && log.contains("Global"),
        "the warning must say that a Unix socket has no peer IP and what to key by: {log}"
    );
}

/// The caller a tonic interceptor identified, as it leaves it in the request's extensions.
#[derive(Clone, Copy)]
struct Caller(u32);

/// A tonic interceptor that checks a bearer token and leaves the caller it names; two tokens
/// name caller 1.
fn authenticate(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    let token = req.metadata().get("authorization").map(|v| v.as_bytes());
    let caller = match token {
        Some(b"Bearer one-a" | b"Bearer one-b") => 1,
        Some(b"Bearer two") => 2,
        _ => return Err(Status::unauthenticated("no valid token")),
    };
    req.extensions_mut().insert(Caller(caller));
    Ok(req)
}

/// Keys calls by the caller that `authenticate` identified; runs the interceptor in front of the
/// limit (`first`) or on the service, behind it.
async fn serve_authenticated(first: bool) -> SocketAddr {
    use tonic::service::InterceptorLayer;

    let by_caller =
        |req: &Request<tonic::body::Body>| req.extensions().get::<Caller>().map(|c| c.0);
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .key(by_caller)
        .store(manual_store().0)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpListenerStream::new(listener);
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match first {
            true => Box::pin(
                Server::builder()
                    .layer(InterceptorLayer::new(authenticate))
                    .layer(layer)
                    .add_service(GreeterServer)
                    .serve_with_incoming(incoming),
            ),
            false => Box::pin(
                Server::builder()
                    .layer(layer)
                    .add_service(InterceptorLayer::new(authenticate).layer(GreeterServer))
                    .serve_with_incoming(incoming),
            ),
        };
    tokio::spawn(async move { server.await.expect("the test server failed") });
    addr
}

#[tokio::test]
async fn an_interceptor_s_caller_is_a_key_when_its_layer_runs_before_the_limit() {
    let call = |token: &'static str| {
        let mut request = tonic::Request::new(hello("i"));
        let bearer = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", bearer);
        request
    };
    let mut greeter = GreeterClient::new(channel(serve_authenticated(true).await).await);
    for token in ["one-a", "one-b", "one-a"] {
        greeter.say_hello(call(token)).await.unwrap();
    }
    // Both tokens of caller 1 spend one budget; caller 2 has its own.
    let status = greeter.say_hello(call("one-b")).await.unwrap_err();
    assert_limited(&status, Duration::from_millis(200), "200 ms");
    greeter.say_hello(call("two")).await.unwrap();
    let status = greeter.say_hello(hello("i")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // An interceptor on the service runs after the limit: the limit finds no caller.
    let mut greeter = GreeterClient::new(channel(serve_authenticated(false).await).await);
    let status = greeter.say_hello(call("one-a")).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}

/// gRPC on Redis: two real tonic servers, each with a store of its own on one private Redis,
/// limit per (peer IP, method), and real tonic clients see one shared budget per method.
#[cfg(feature = "redis")]
mod redis_store {
    use super::*;
    use support::RedisServer;
    use tower_ratelimit::RedisStore;

    /// A server behind a per-(peer, method) layer on its own store on `redis_url`.
    async fn serve_on_redis(redis_url: &str, prefix: &str, clock: &ManualClock) -> SocketAddr {
        let store = RedisStore::builder()
            .url(redis_url)
            .prefix(prefix)
            .clock(clock.clone())
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap();
        let layer = RateLimitLayer::builder()
            .policy(Policy::new(
                "per-method",
                Quota::with_period(Duration::from_millis(200)).allow_burst(3),
            ))
            .key((PeerIp::new(), GrpcMethod))
            .store(store)
            .for_grpc()
            .build()
            .unwrap();
        serve(layer, false).await
    }

    fn redis_hello() -> HelloRequest {
        HelloRequest {
            name: "redis".into(),
            count: 1,
        }
    }

    #[tokio::test]
    async fn two_servers_share_each_clients_budget_per_method_on_redis() {
        let redis = RedisServer::start();
        let prefix = support::unique_prefix("grpc");
        let clock = ManualClock::new();
        let first = channel(serve_on_redis(&redis.url(), &prefix, &clock).await).await;
        let second = channel(serve_on_redis(&redis.url(), &prefix, &clock).await).await;
        let mut greeter_a = GreeterClient::new(first);
        let mut greeter_b = GreeterClient::new(second.clone());
        let mut health_b = HealthClient::new(second);

        for _ in 0..3 {
            greeter_a.say_hello(redis_hello()).await.unwrap();
        }
        let limited = greeter_b.say_hello(redis_hello()).await.unwrap_err();
        assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
        assert_eq!(limited.message(), "rate limit exceeded; retry in 200 ms");

        // Another method has a budget of its own.
        for _ in 0..3 {
            let check = HealthCheckRequest {
                service: String::new(),
            };
            health_b.check(check).await.unwrap();
        }

        clock.advance(Duration::from_millis(200));
        greeter_b.say_hello(redis_hello()).await.unwrap();
        let again = greeter_a.say_hello(redis_hello()).await.unwrap_err();
        assert_eq!(again.code(), Code::ResourceExhausted);

        // The Redis keys say whose budget they hold.
        let mut conn = redis.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{prefix}:*"))
            .query(&mut conn)
            .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                format!("{{{prefix}:9:127.0.0.1/greeter.Greeter/SayHello}}"),
                format!("{{{prefix}:9:127.0.0.1/grpc.health.v1.Health/Check}}"),
            ]
        );
    }
}
