//! A hello-world axum server for measuring what rate limiting costs per request: bare, behind
//! `RateLimitLayer` (per client IP, in memory), or behind `tower_governor`'s layer, on the path
//! where every request is allowed or the one where every request (but the first) is rejected.
//! `benches/wrk_cpu.sh` drives it with wrk and reads its CPU time.
//!
//! ```sh
//! LIMITER=ours OUTCOME=reject PORT=3010 cargo run --release --example hello_server
//! ```
//!
//! `LIMITER`: `none` (default), `ours` or `tower_governor`; `OUTCOME`: `allow` (default) or
//! `reject`; `PORT`: default 3010.

use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::get, Router};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_ratelimit::{Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = std::env::var("LIMITER").unwrap_or_else(|_| "none".into());
    let outcome = std::env::var("OUTCOME").unwrap_or_else(|_| "allow".into());
    // Allow: a burst no run can spend. Reject: one request an hour.
    let (period, burst) = match outcome.as_str() {
        "allow" => (Duration::from_nanos(1), 1_000_000_000),
        "reject" => (Duration::from_secs(3600), 1),
        other => return Err(format!("OUTCOME must be allow or reject, got {other:?}").into()),
    };
    let hello = Router::new().route("/", get(|| async { "hello" }));
    let app = match limiter.as_str() {
        "none" => hello,
        "ours" => hello.layer(
            RateLimitLayer::builder()
                .quota(Quota::with_period(period).allow_burst(burst))
                .build()?,
        ),
        "tower_governor" => hello.layer(GovernorLayer::new(
            GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .finish()
                .ok_or("invalid tower_governor configuration")?,
        )),
        other => {
            return Err(
                format!("LIMITER must be none, ours or tower_governor, got {other:?}").into(),
            )
        }
    };
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        Err(_) => 3010,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
