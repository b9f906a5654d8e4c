//! A self-driving demo: starts a limited server, sends it a burst, waits as `Retry-After`
//! says, and prints what happened.
//!
//! ```sh
//! cargo run --example demo
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_ratelimit::{Quota, RateLimitLayer};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quota: Quota = "2/s; burst=4".parse()?;
    let app = Router::new().route("/", get(|| async { "hello\n" })).layer(
        RateLimitLayer::builder()
            .quota(quota)
            .headers_on_success(true)
            .build()?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    println!("server on http://{addr}, quota {quota} per client IP\n");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let url: http::Uri = format!("http://{addr}/").parse()?;
    let start = Instant::now();

    println!("a burst of 6 requests:");
    let mut retry_after = None;
    for _ in 0..6 {
        retry_after = send(&client, &url, start).await?.or(retry_after);
    }

    let wait = Duration::from_secs(retry_after.ok_or("the burst was never limited")?);
    println!("\nwaiting {wait:?}, as Retry-After says...\n");
    tokio::time::sleep(wait).await;
    send(&client, &url, start).await?;
    send(&client, &url, start).await?;
    Ok(())
}

/// Sends one request, prints a timeline line, and returns `Retry-After` if there was one.
async fn send(
    client: &HttpClient,
    url: &http::Uri,
    start: Instant,
) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    let response = client.get(url.clone()).await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let (status, ratelimit, retry) = (
        response.status(),
        header("ratelimit"),
        header("retry-after"),
    );
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "t={:>6.3}s  {}  RateLimit: {:<24} Retry-After: {:<3} body: {:?}",
        start.elapsed().as_secs_f64(),
        status,
        ratelimit,
        retry,
        String::from_utf8_lossy(&body).trim_end()
    );
    Ok(retry.parse().ok())
}
