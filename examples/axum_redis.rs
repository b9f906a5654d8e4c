//! An axum server limited per client IP on Redis: run several copies on different ports and
//! they share one budget per client.
//!
//! ```sh
//! cargo run --features redis --example axum_redis             # 127.0.0.1:3001
//! PORT=3002 cargo run --features redis --example axum_redis   # a second copy, same budget
//! REDIS_URL=redis://10.0.0.5:6379 cargo run --features redis --example axum_redis
//! ```

#[path = "env/mod.rs"]
mod env;

use std::net::SocketAddr;

use axum::{routing::get, Router};
use tower_ratelimit::{Quota, RateLimitLayer, RedisStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=debug,info".into()),
        )
        .init();

    let redis_url = env::var("REDIS_URL")?.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    // The default failure policy: if Redis fails, each copy limits on its own until it is back.
    let store = RedisStore::builder()
        .url(&redis_url)
        .prefix("axum-redis-example")
        .build()
        .await?;

    let quota: Quota = "1/s; burst=5".parse()?;
    let limit = RateLimitLayer::builder()
        .quota(quota)
        .store(store)
        .headers_on_success(true)
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello, within the shared limit\n" }))
        .layer(limit);

    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 3001,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    // The server's address only: a password (before `@` or in `?pass=`) stays out of the log.
    let server = redis_url.split('?').next().unwrap_or_default();
    let server = server.rsplit_once('@').map_or(server, |(_, server)| server);
    println!("listening on http://{addr}  (quota: {quota} per client IP, shared on {server})");
    println!("try: for i in $(seq 7); do curl -si http://{addr}/ | head -n 1; done");

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
