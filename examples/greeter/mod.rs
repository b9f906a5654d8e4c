//! The greeter of `greeter.proto`: its messages, a tonic server and a tonic client.
//!
//! Written by hand in the shape that tonic's code generator gives, so that the examples and
//! tests build without `protoc`. Kept in step with `greeter.proto` beside this file.

#![allow(dead_code)] // Each example and test uses part of it.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tokio_stream::{Iter, Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, BoxStream, Service, StdError};
use tonic::server::{
    ClientStreamingService, Grpc, NamedService, ServerStreamingService, StreamingService,
    UnaryService,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// `greeter.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many replies `SayHelloStream` sends (at least one).
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// `greeter.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The service's full name.
pub const SERVICE: &str = "greeter.Greeter";
/// The path of the unary method.
pub const SAY_HELLO: &str = "/greeter.Greeter/SayHello";
/// The path of the server-streaming method.
pub const SAY_HELLO_STREAM: &str = "/greeter.Greeter/SayHelloStream";
/// The path of the client-streaming method.
pub const SAY_HELLO_TO_ALL: &str = "/greeter.Greeter/SayHelloToAll";
/// The path of the bidirectional-streaming method.
pub const CHAT: &str = "/greeter.Greeter/Chat";

/// The greeter, ready for `tonic::transport::Server::add_service`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.unary(SayHello, req).await)
            }),
            SAY_HELLO_STREAM => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.server_streaming(SayHelloStream, req).await)
            }),
            SAY_HELLO_TO_ALL => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.client_streaming(SayHelloToAll, req).await)
            }),
            CHAT => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.streaming(Chat, req).await)
            }),
            _ => Box::pin(ready(Ok(
                Status::unimplemented("no such method").into_http()
            ))),
        }
    }
}

fn greeting(name: &str) -> HelloReply {
    HelloReply {
        message: format!("hello, {name}"),
    }
}

struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = Ready<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        ready(Ok(Response::new(greeting(&request.get_ref().name))))
    }
}

struct SayHelloStream;

impl ServerStreamingService<HelloRequest> for SayHelloStream {
    type Response = HelloReply;
    type ResponseStream = Iter<std::vec::IntoIter<Result<HelloReply, Status>>>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let HelloRequest { name, count } = request.into_inner();
        let replies: Vec<_> = (0..count.max(1)).map(|_| Ok(greeting(&name))).collect();
        ready(Ok(Response::new(tokio_stream::iter(replies))))
    }
}

struct SayHelloToAll;

impl ClientStreamingService<HelloRequest> for SayHelloToAll {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<Streaming<HelloRequest>>) -> Self::Future {
        let mut requests = request.into_inner();
        Box::pin(async move {
            let mut names = Vec::new();
            while let Some(request) = requests.message().await? {
                names.push(request.name);
            }
            Ok(Response::new(greeting(&names.join(", "))))
        })
    }
}

struct Chat;

impl StreamingService<HelloRequest> for Chat {
    type Response = HelloReply;
    type ResponseStream = BoxStream<HelloReply>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<HelloRequest>>) -> Self::Future {
        let replies = request
            .into_inner()
            .map(|request| request.map(|request| greeting(&request.name)));
        ready(Ok(Response::new(Box::pin(replies))))
    }
}

/// A client of the greeter.
#[derive(Clone, Debug)]
pub struct GreeterClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl GreeterClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        GreeterClient {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls `SayHello`.
    pub async fn say_hello(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(SAY_HELLO);
        self.grpc.unary(request.into_request(), path, codec).await
    }

    /// Calls `SayHelloStream`.
    pub async fn say_hello_stream(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(SAY_HELLO_STREAM);
        self.grpc
            .server_streaming(request.into_request(), path, codec)
            .await
    }

    /// Calls `SayHelloToAll` with the messages of `requests`.
    pub async fn say_hello_to_all(
        &mut self,
        requests: impl Stream<Item = HelloRequest> + Send + 'static,
    ) -> Result<Response<HelloReply>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(SAY_HELLO_TO_ALL);
        self.grpc
            .client_streaming(Request::new(requests), path, codec)
            .await
    }

    /// Calls `Chat` with the messages of `requests`.
    pub async fn chat(
        &mut self,
        requests: impl Stream<Item = HelloRequest> + Send + 'static,
    ) -> Result<Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(CHAT);
        self.grpc
            .streaming(Request::new(requests), path, codec)
            .await
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))
    }
}

/// The standard error model's messages that carry a retry delay, for reading
/// `Status::details()`.
pub mod rpc {
    use std::time::Duration;

    use prost::Message;

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        /// The gRPC status code.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// The message.
        #[prost(string, tag = "2")]
        pub message: String,
        /// Typed details.
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// Names the type of `value`.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The encoded message.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `google.rpc.RetryInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        /// How long to wait before retrying.
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<ProtoDuration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoDuration {
        /// Whole seconds.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds past the seconds.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// The type URL of `RetryInfo` in an `Any`.
    pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

    /// The `google.rpc.Status` in a status's details, if there is one.
    pub fn status_details(status: &tonic::Status) -> Option<RpcStatus> {
        RpcStatus::decode(status.details()).ok()
    }

    /// The retry delay of the first `RetryInfo` in `details`.
    pub fn retry_delay(details: &RpcStatus) -> Option<Duration> {
        let any = details
            .details
            .iter()
            .find(|any| any.type_url == RETRY_INFO_TYPE_URL)?;
        let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
        Some(Duration::new(
            u64::try_from(delay.seconds).ok()?,
            u32::try_from(delay.nanos).ok()?,
        ))
    }

    /// The `grpc-retry-pushback-ms` metadata of a status, if there is one.
    pub fn pushback(status: &tonic::Status) -> Option<Duration> {
        let millis = status.metadata().get("grpc-retry-pushback-ms")?;
        Some(Duration::from_millis(millis.to_str().ok()?.parse().ok()?))
    }
}
