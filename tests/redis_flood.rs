//! Three stores flooding one Redis budget while Redis keeps stalling: checks that wait in a
//! store's own queue longer than the store's timeout are not Redis failures, so no store falls
//! back to its local budget. In a binary of its own, so that its pauses of Redis and its burst
//! of tasks slow no other test.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tower_ratelimit::{Policy, Quota, RedisStore, Store};

use support::{clock_at_unix_time, unique_prefix, RedisServer};

/// Three stores (three processes' worth of connections and queues) flood one shared budget of
/// 3 000 with 9 000 checks, 4 500 in flight at first, while Redis holds every command for
/// [`STALL`] at a time, again and again. Every call Redis is sent is answered within a stall
/// and a little, well inside the store's timeout, but the checks queued behind those calls
/// wait many stalls: the slowest waits more than twice the timeout. None of that is a Redis
/// failure, so no store switches to its local budget and the total admitted is exactly the
/// shared budget.
#[test]
fn checks_queued_past_the_timeout_behind_a_stalling_redis_admit_the_shared_budget_once() {
    let flood = flood();
    assert_eq!(
        flood.admitted, FLOOD_BUDGET,
        "9 000 checks of one shared budget"
    );
    assert!(
        flood.slowest > 2 * TIMEOUT,
        "the flood was meant to keep checks queued past the timeout; the slowest took {:?}",
        flood.slowest
    );
}

const FLOOD_BUDGET: u32 = 3_000;

/// The stores' timeout: longer than the default, so that a call held by one stall (and a
/// slow moment of a shared machine) stays well inside it.
const TIMEOUT: Duration = Duration::from_millis(250);

/// How long Redis holds every client's commands each time (`CLIENT PAUSE`).
const STALL: Duration = Duration::from_millis(50);

struct Flood {
    admitted: u32,
    /// The longest any one check took, queue and call.
    slowest: Duration,
}

/// Floods one budget of [`FLOOD_BUDGET`] an hour from three stores, 1 500 tasks each checking
/// twice, while Redis stalls. The stores share a clock that stands still: on Redis `TIME` a
/// cell would come back every 1.2 s, and a flood that the stalls stretch past that would be
/// admitted one more check for each.
fn flood() -> Flood {
    // A switch to the failure policy is logged: show it with a failure.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prefix = unique_prefix("flood");
    let clock = clock_at_unix_time();
    let stores: Vec<_> = rt.block_on(async {
        let mut stores = Vec::new();
        for _ in 0..3 {
            let store = RedisStore::builder()
                .url(server.url())
                .prefix(prefix.clone())
                .clock(clock.clone())
                .timeout(TIMEOUT)
                .build()
                .await
                .unwrap();
            let stack = store
                .register(&[Policy::new("shared", Quota::per_hour(FLOOD_BUDGET))])
                .unwrap();
            stores.push((store, stack));
        }
        stores
    });

    // Stalls Redis until the flood is over: each pause ends by itself, and the next one is
    // asked for a moment later, so calls get through between them one round at a time.
    let over = AtomicBool::new(false);
    let flood = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !over.load(Ordering::Relaxed) {
                server.pause(STALL.as_millis() as u64);
                std::thread::sleep(STALL + Duration::from_millis(1));
            }
        });
        let flood = rt.block_on(async {
            let mut tasks = Vec::new();
            for (store, stack) in &stores {
                for _ in 0..1_500 {
                    let (store, stack) = (store.clone(), stack.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut admitted = 0u32;
                        let mut slowest = Duration::ZERO;
                        for _ in 0..2 {
                            let started = Instant::now();
                            let decision = store.check(&stack, b"one-budget", 1).await.unwrap();
                            slowest = slowest.max(started.elapsed());
                            admitted += u32::from(decision.is_allowed());
                        }
                        (admitted, slowest)
                    }));
                }
            }
            let mut flood = Flood {
                admitted: 0,
                slowest: Duration::ZERO,
            };
            for task in tasks {
                let (admitted, slowest) = task.await.unwrap();
                flood.admitted += admitted;
                flood.slowest = flood.slowest.max(slowest);
            }
            flood
        });
        over.store(true, Ordering::Relaxed);
        flood
    });
    for (store, _) in &stores {
        assert!(
            !store.is_degraded(),
            "a store still answers by its failure policy"
        );
    }
    flood
}
