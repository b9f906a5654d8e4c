//! A plain axum server limited per client IP: 5 requests at once, then 1 per second.
//!
//! `GET /` and `GET /health` sit behind one `Router::layer`, so they share each
//! client's budget; every answer carries `RateLimit-Policy` and `RateLimit`, and a limited one
//! is `429` with `Retry-After`.
//!
//! ```sh
//! cargo run --example axum_server            # listens on 127.0.0.1:3000
//! PORT=8080 cargo run --example axum_server  # or another port
//! ```

#[path = "env/mod.rs"]
mod env;

use std::net::SocketAddr;

use axum::{routing::get, Router};
use tower_ratelimit::{Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=debug,info".into()),
        )
        .init();

    let quota: Quota = "1/s; burst=5".parse()?;
    let limit = RateLimitLayer::builder()
        .quota(quota)
        .headers_on_success(true)
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello, within the limit\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .layer(limit);

    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 3000,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}  (quota: {quota} per client IP)");
    println!("try: for i in $(seq 7); do curl -si http://{addr}/ | head -n 1; done");

    // Connect info carries the peer address to the rate limiter.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
