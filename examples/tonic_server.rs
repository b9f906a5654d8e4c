//! A tonic server behind `RateLimitLayer`: the greeter of `examples/greeter/greeter.proto` and
//! the standard health service, 5 calls per second per client IP across every method, health
//! checks included.
//!
//! ```sh
//! cargo run --features tonic --example tonic_server
//! # in another terminal
//! cargo run --features tonic --example tonic_client
//! ```
//!
//! The `tonic` feature lets the layer read the peer address from tonic's connection info.

#[path = "greeter/mod.rs"]
mod greeter;

use std::net::SocketAddr;

use tonic::transport::Server;
use tower_ratelimit::{Quota, RateLimitLayer};

use greeter::GreeterServer;

/// The address the server listens on, and the client calls.
const ADDR: &str = "127.0.0.1:50051";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=debug".into()),
        )
        .init();

    let quota = Quota::per_second(5);
    // One layer for the whole server: every method of every service shares a client's budget.
    let limit = RateLimitLayer::builder().quota(quota).for_grpc().build()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GreeterServer>().await;

    let addr: SocketAddr = ADDR.parse()?;
    println!("gRPC server on http://{addr}: greeter.Greeter and grpc.health.v1.Health");
    println!("quota {quota} per client IP, shared by every method; Ctrl-C to stop");
    Server::builder()
        .layer(limit)
        .add_service(health_service)
        .add_service(GreeterServer)
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
