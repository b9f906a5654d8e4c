//! Helpers shared by the test binaries that need no Redis.

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
#[allow(dead_code)] // Not every test binary reads headers.
pub fn header<'a, B>(response: &'a Response<B>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap()
}
