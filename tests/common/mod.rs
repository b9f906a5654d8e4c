//! Helpers shared by the test binaries; each binary uses some of them.

#![allow(dead_code)]

use std::net::SocketAddr;

use http::Response;
use tower_ratelimit::{ManualClock, MemoryStore};

/// A memory store on a clock the test moves, and that clock.
pub fn manual_store() -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .build()
        .expect("a valid store");
    (store, clock)
}

/// The value of the header `name` of `response`, which must have it as text.
pub fn header<'a, B>(response: &'a Response<B>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap()
}

/// Serves `app` on a free loopback port, with the peer's address as connect info; returns
/// the address and the server's task.
pub async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, server)
}
