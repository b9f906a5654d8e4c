//! Keys from an API-key header, and a different quota per route.
//!
//! `/search` is expensive: 2 requests per second per API key, burst 4. `/items` allows 20 per
//! second per key. Requests without `x-api-key` get `401 Unauthorized`.
//!
//! ```sh
//! cargo run --example custom_key
//! curl -si -H 'x-api-key: alice' http://127.0.0.1:3001/search
//! ```

use std::net::SocketAddr;

use axum::{extract::Request, http::StatusCode, routing::get, Router};
use tower_ratelimit::{MissingKey, Quota, RateLimitLayer};

/// The API key, if the request carries a non-empty one.
fn api_key(req: &Request) -> Option<String> {
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=debug,info".into()),
        )
        .init();

    let per_key = |quota: Quota| {
        RateLimitLayer::builder()
            .quota(quota)
            .key(api_key)
            .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
            .headers_on_success(true)
            .build()
    };

    let app = Router::new()
        .route("/search", get(|| async { "search results\n" }))
        .route_layer(per_key("2/s; burst=4".parse()?)?)
        .merge(
            Router::new()
                .route("/items", get(|| async { "items\n" }))
                .route_layer(per_key(Quota::per_second(20))?),
        );

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("try: for i in $(seq 6); do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'x-api-key: alice' http://{addr}/search; done");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
