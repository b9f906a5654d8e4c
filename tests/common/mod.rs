//! Helpers shared by the test binaries that need no Redis.

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
