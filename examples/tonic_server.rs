//! A tonic server behind `RateLimitLayer`: the greeter of `examples/greeter/greeter.proto` and
//! the standard health service, 5 calls per second per client IP across every method, health
//! checks included.
//!
//! ```sh
//! cargo run --features tonic --example tonic_server
//! # in another terminal
//! cargo run --features tonic --example tonic_client
//! # on Redis, per client IP and method; copies of the server share the budgets
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --features tonic,redis --example tonic_server
//! PORT=50052 REDIS_URL=redis://127.0.0.1:6379 cargo run --features tonic,redis --example tonic_server
//! ```
//!
//! `PORT` picks the port (default 50051; the client reads it too). The `tonic` feature lets the
//! layer read the peer address from tonic's connection info.

#[path = "env/mod.rs"]
mod env;
#[path = "greeter/mod.rs"]
mod greeter;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower::util::Either;
use tower_ratelimit::{GrpcMethod, PeerIp, Quota, RateLimitLayer};
#[cfg(feature = "redis")]
use tower_ratelimit::{Policy, RedisStore};

use greeter::GreeterServer;

/// The port the server listens on unless `PORT` says otherwise; the client calls the same.
const DEFAULT_PORT: u16 = 50051;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=debug".into()),
        )
        .init();

    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => DEFAULT_PORT,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let quota = Quota::per_second(5);
    println!("gRPC server on http://{addr}: greeter.Greeter and grpc.health.v1.Health");
    let limit = match env::var("REDIS_URL")? {
        Some(url) if !url.is_empty() => {
            // The server's address only: a password (before `@` or in `?pass=`) stays out of
            // the log.
            let server = url.split('?').next().unwrap_or_default();
            let server = server.rsplit_once('@').map_or(server, |(_, server)| server);
            println!("quota {quota} per client IP and method, shared on {server}; Ctrl-C to stop");
            Either::Right(shared_limit(&url, quota).await?)
        }
        _ => {
            println!("quota {quota} per client IP, shared by every method; Ctrl-C to stop");
            // One layer for the whole server: every method of every service shares a client's
            // budget.
            Either::Left(RateLimitLayer::builder().quota(quota).for_grpc().build()?)
        }
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GreeterServer>().await;
    Server::builder()
        .layer(limit)
        .add_service(health_service)
        .add_service(GreeterServer)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The layer of a fleet: per (client IP, method) on Redis, so that every copy of the server
/// shares each client's budget for each method.
#[cfg(feature = "redis")]
async fn shared_limit(
    url: &str,
    quota: Quota,
) -> Result<RateLimitLayer<(PeerIp, GrpcMethod), RedisStore>, Box<dyn std::error::Error>> {
    let store = RedisStore::builder()
        .url(url)
        .prefix("tonic-example")
        .build()
        .await?;
    Ok(RateLimitLayer::builder()
        .policy(Policy::new("per-method", quota))
        .key((PeerIp::new(), GrpcMethod))
        .store(store)
        .for_grpc()
        .build()?)
}

#[cfg(not(feature = "redis"))]
async fn shared_limit(
    _url: &str,
    _quota: Quota,
) -> Result<RateLimitLayer<(PeerIp, GrpcMethod)>, Box<dyn std::error::Error>> {
    Err(
        "REDIS_URL is set, but this build has no Redis store: run with `--features tonic,redis`"
            .into(),
    )
}
