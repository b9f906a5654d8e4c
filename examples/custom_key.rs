//! Keys from an API-key header, and a different quota per route.
//!
//! `/search` is expensive: 2 requests per second per API key, burst 4. `/items` allows 20 per
//! second per key. Requests without `x-api-key` get `401 Unauthorized`. Limited requests get an
//! `application/problem+json` body (RFC 9457) instead of the default text.
//!
//! ```sh
//! cargo run --example custom_key
//! curl -si -H 'x-api-key: alice' http://127.0.0.1:3003/search
//! ```

#[path = "env/mod.rs"]
mod env;

use std::net::SocketAddr;

use axum::http::{header, Response, StatusCode};
use axum::{extract::Request, routing::get, Router};
use tower_ratelimit::{MissingKey, Quota, RateLimitLayer, RateLimited};

/// The API key, if the request carries a non-empty one.
fn api_key(req: &Request) -> Option<String> {
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A problem-details rejection; the layer adds `Retry-After` and the `RateLimit` headers.
fn problem(limited: &RateLimited) -> Response<String> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": format!("retry in {} s", limited.retry_after_secs()),
        "limit": limited.quota().to_string(),
    });
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "application/problem+json")
        .body(body.to_string())
        .expect("a static status and header are valid")
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
            .rejection(problem)
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

    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 3003,
    };
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
