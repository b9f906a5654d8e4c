//! Three stores flooding one Redis budget on a machine whose every core is busy: checks that
//! wait in a store's own queue are not Redis failures, so no store falls back to its local
//! budget. In a binary of its own, so that its CPU hogs slow no other test.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tower_ratelimit::store::RedisStoreBuilder;
use tower_ratelimit::{Policy, Quota, RedisStore, Store};

use support::{clock_at_unix_time, unique_prefix, RedisServer};

/// Three stores (three processes' worth of connections and queues) flood one shared budget
/// with the default settings while CPU hogs starve the machine: checks wait in the stores'
/// queues, which is not a Redis failure, so no store switches to its local budget and the
/// total admitted is exactly the shared budget. (With `max_batch(1)`, where the 4 500 checks
/// first in flight each wait on the connection for a call of their own, within the timeout,
/// five runs of the same flood on a 2-CPU machine admitted 8 131 to 9 000.)
#[test]
fn three_stores_flooding_a_starved_machine_admit_the_shared_budget_once() {
    let admitted = flood(|builder| builder);
    assert_eq!(admitted, FLOOD_BUDGET, "9 000 checks of one shared budget");
}

const FLOOD_BUDGET: u32 = 3_000;

/// Floods one budget of [`FLOOD_BUDGET`] an hour from three stores with the default settings
/// but what `configure` sets, 1 500 tasks each checking twice, with a CPU hog per core;
/// returns how many checks were admitted. The stores share a clock that stands still: on
/// Redis `TIME` a cell would come back every 1.2 s, and a flood slowed past that by a loaded
/// machine would be admitted one more check for each.
fn flood(configure: fn(RedisStoreBuilder) -> RedisStoreBuilder) -> u32 {
    // A switch to the failure policy is logged: show it with a failure.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let server = RedisServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prefix = unique_prefix("flood");
    let clock = clock_at_unix_time();
    let admitted = rt.block_on(async {
        let mut stores = Vec::new();
        for _ in 0..3 {
            let builder = RedisStore::builder()
                .url(server.url())
                .prefix(prefix.clone())
                .clock(clock.clone());
            let store = configure(builder).build().await.unwrap();
            let stack = store
                .register(&[Policy::new("shared", Quota::per_hour(FLOOD_BUDGET))])
                .unwrap();
            stores.push((store, stack));
        }
        let mut tasks = Vec::new();
        for (store, stack) in &stores {
            for _ in 0..1_500 {
                let (store, stack) = (store.clone(), stack.clone());
                tasks.push(tokio::spawn(async move {
                    let mut admitted = 0u32;
                    for _ in 0..2 {
                        if store
                            .check(&stack, b"one-budget", 1)
                            .await
                            .unwrap()
                            .is_allowed()
                        {
                            admitted += 1;
                        }
                    }
                    admitted
                }));
            }
        }
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        for (store, _) in &stores {
            assert!(
                !store.is_degraded(),
                "a store still answers by its failure policy"
            );
        }
        admitted
    });
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    admitted
}
