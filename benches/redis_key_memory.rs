//! Redis memory per tracked key: checks a number of distinct keys through `RedisStore` on a
//! private `redis-server` and divides the growth of Redis's `used_memory` (`INFO memory`) by
//! the keys, for a stack of one and of two policies and keys of several lengths.
//!
//! ```sh
//! cargo bench --features redis --bench redis_key_memory              # 100 000 keys each
//! cargo bench --features redis --bench redis_key_memory -- 1000000   # a number of your choice
//! ```
//!
//! Keys are written as `examples/policies.rs` writes an API key (`key:` and the header's
//! bytes) under the default prefix, so a Redis key is `{ratelimit:key:<api key>}`, holding a
//! record of each policy, named as the example's free tier (`per-second`, `per-minute`). The quotas keep
//! every key alive for the whole run (a key expires the moment it is full again), the worst case
//! of a flood of fresh keys. A key longer than `MAX_KEY_LEN` is stored as its 39-byte digest.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use tower_ratelimit::{Policy, Quota, RedisStore, Store};

/// How many policies check each key, and the length of its API key (13, 40, 64 and 200 bytes
/// with `key:`; the last is kept as its digest).
const SHAPES: [(usize, usize); 5] = [(2, 9), (1, 9), (2, 36), (2, 60), (2, 196)];
/// Checks in flight at once while filling.
const IN_FLIGHT: usize = 256;

fn main() {
    let keys = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .map_or(100_000, |n| {
            n.parse().expect("the number of keys: a whole number")
        });
    let server = support::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let mut conn = server.connection();
    println!("keys       policies  key bytes  Redis used_memory growth/key");
    for (policies, key_len) in SHAPES {
        let store = runtime.block_on(
            RedisStore::builder()
                .url(server.url())
                .deny_cache(false)
                .build(),
        );
        let store = store.expect("a store on the private redis-server");
        // The keys of the last shape, and the one the build writes for a millisecond.
        redis::cmd("FLUSHALL")
            .query::<()>(&mut conn)
            .expect("FLUSHALL");
        let before = used_memory(&mut conn);
        // Quotas no key of the run spends or sees refill: every key lives an hour.
        let stack = store
            .register(
                &[
                    Policy::new("per-second", Quota::per_hour(10)),
                    Policy::new("per-minute", Quota::per_hour(20)),
                ][..policies],
            )
            .expect("the free tier's names");
        let (store, stack) = (Arc::new(store), Arc::new(stack));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..IN_FLIGHT)
                .map(|caller| {
                    let (store, stack) = (Arc::clone(&store), Arc::clone(&stack));
                    tokio::spawn(async move {
                        for n in (caller..keys).step_by(IN_FLIGHT) {
                            let key = format!("key:{n:x<key_len$}");
                            let decisions = store.check(&stack, key.as_bytes(), 1).await;
                            assert!(decisions.expect("Redis answers").is_allowed());
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a caller");
            }
        });
        let stored: usize = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
        assert_eq!(stored, keys, "one Redis key per key");
        let growth = used_memory(&mut conn).saturating_sub(before);
        println!(
            "{keys:<10} {policies:<9} {:<10} {:>10.1}",
            key_len + 4,
            growth as f64 / keys as f64
        );
    }
}

/// Redis's `used_memory`, in bytes.
fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(conn)
        .expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory")
}
