//! The memory store through its public API: key counting, eviction of idle keys, the cap and
//! the overflow budget, the `Store` trait's immediate futures.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::{ManualClock, MemoryStore, Quota, RateLimitLayer, Store};

fn store(max_keys: usize) -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(max_keys)
        .build()
        .expect("a valid store");
    (store, clock)
}

fn allowed(store: &MemoryStore<ManualClock>, key: u64, quota: &Quota) -> bool {
    store.check_now(&key, quota, 1).unwrap().is_allowed()
}

#[test]
fn len_counts_tracked_keys_and_a_peek_tracks_nothing() {
    let (store, _) = store(1_000);
    let quota = Quota::per_second(2);
    assert!(store.is_empty());
    for key in [1u64, 2, 3, 1, 2] {
        allowed(&store, key, &quota);
    }
    assert_eq!(store.len(), 3);
    assert!(store.peek_now(&99u64, &quota).is_allowed());
    assert_eq!(store.peek_now(&99u64, &quota).remaining(), 2);
    assert_eq!(store.len(), 3, "a peek inserted a key");
    assert!(!store.is_empty());
    assert_eq!(store.clone().len(), 3, "clones share the map");
}

#[test]
fn idle_keys_are_dropped_as_the_map_grows_without_a_background_task() {
    const ROUND: u64 = 20_000;
    let (store, clock) = store(1_000_000);
    let quota = Quota::per_second(10);
    let mut peak = 0;
    for round in 0..10 {
        for key in round * ROUND..(round + 1) * ROUND {
            assert!(allowed(&store, key, &quota));
        }
        peak = peak.max(store.len());
        // Every key of this round becomes idle: its theoretical arrival time passes.
        clock.advance(Duration::from_secs(1));
    }
    // Ten rounds made 200 000 keys; without eviction all would still be there. Each shard
    // sweeps when it doubles, so at most about two rounds' worth (plus each shard's minimum
    // before it sweeps at all) is ever held.
    assert!(peak < 3 * ROUND as usize + 256 * 64, "peak {peak}");
    assert!(store.len() < 100_000, "{} tracked", store.len());
}

#[test]
fn sweep_drops_exactly_the_idle_keys_and_an_evicted_key_is_as_good_as_new() {
    let (store, clock) = store(1_000_000);
    let quota = Quota::per_second(1);
    for key in 0..500 {
        allowed(&store, key, &quota);
    }
    clock.advance(Duration::from_millis(600));
    for key in 500..1_000 {
        allowed(&store, key, &quota);
    }
    assert_eq!(store.len(), 1_000);
    clock.advance(Duration::from_millis(400));
    assert_eq!(store.sweep(), 500, "the first half is idle");
    assert_eq!(store.len(), 500);
    assert!(!allowed(&store, 700, &quota), "a live key kept its state");
    assert!(allowed(&store, 7, &quota), "an evicted key starts afresh");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep(), 0);
    assert!(store.is_empty());
}

#[test]
fn max_keys_caps_the_tracked_keys_under_a_flood_of_new_keys() {
    let (store, clock) = store(1_000);
    assert_eq!(store.max_keys(), 1_000);
    let quota = Quota::per_minute(5);
    let mut admitted = 0;
    for key in 0..100_000u64 {
        if allowed(&store, key, &quota) {
            admitted += 1;
        }
        if key % 1_000 == 0 {
            assert!(store.len() <= 1_000, "{} keys at {key}", store.len());
        }
    }
    let tracked = store.len();
    assert!(tracked <= 1_000 && tracked > 500, "{tracked} tracked");
    assert_eq!(
        admitted,
        tracked + 5,
        "every tracked key once, and the shared overflow budget of one burst"
    );
    assert!(
        allowed(&store, 0, &quota),
        "a tracked key keeps its own budget"
    );

    // Once the tracked keys go idle they make room for new ones, and the overflow budget is
    // full again.
    clock.advance(Duration::from_secs(60));
    let fresh: usize = (200_000..200_100u64)
        .filter(|key| allowed(&store, *key, &quota))
        .count();
    assert_eq!(fresh, 100);
    assert!(store.len() <= 1_000);
}

#[test]
fn at_the_cap_new_keys_share_one_overflow_budget_of_the_quota() {
    // 64 keys fit in one shard, so the cap is reached exactly at the 64th key.
    let (store, clock) = store(64);
    let quota = Quota::per_second(2);
    for key in 0..64 {
        assert!(allowed(&store, key, &quota));
    }
    let overflow: Vec<bool> = (1_000..1_010).map(|k| allowed(&store, k, &quota)).collect();
    assert_eq!(
        overflow,
        [true, true, false, false, false, false, false, false, false, false]
    );
    let peeked = store.peek_now(&5_000u64, &quota);
    assert!(
        !peeked.is_allowed(),
        "an untracked key reads the overflow budget"
    );
    assert_eq!(peeked.retry_after(), Duration::from_millis(500));
    assert_eq!(store.len(), 64);

    // Tracked keys are not affected by the overflow.
    assert!(allowed(&store, 3, &quota));
    clock.advance(Duration::from_millis(500));
    assert!(
        allowed(&store, 5_000, &quota),
        "the overflow budget refills at the quota's rate"
    );
}

#[tokio::test]
async fn a_layer_over_a_capped_store_bounds_memory_under_rotating_addresses() {
    let (store, _clock) = store(64);
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let svc = RateLimitLayer::builder()
        .quota(Quota::per_minute(3))
        .store(store.clone())
        .build()
        .unwrap()
        .layer(inner);
    let mut ok = 0;
    for i in 0..5_000u32 {
        let mut req = Request::new(());
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        req.extensions_mut().insert(SocketAddr::new(ip, 1));
        if svc.clone().oneshot(req).await.unwrap().status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(store.len(), 64);
    assert_eq!(
        ok,
        64 + 3,
        "rotating addresses got more than one key's quota"
    );
}

#[test]
fn a_zero_cap_is_rejected_with_a_message() {
    let err = MemoryStore::builder().max_keys(0).build().unwrap_err();
    assert!(err.to_string().contains("max_keys is 0"), "{err}");
}

#[test]
fn store_futures_are_ready_at_the_first_poll() {
    let (store, _) = store(100);
    let quota = Quota::per_second(1);
    let mut cx = Context::from_waker(Waker::noop());
    let check = pin!(Store::check(&store, &"k", &quota, 1));
    match check.poll(&mut cx) {
        Poll::Ready(Ok(decision)) => assert!(decision.is_allowed()),
        other => panic!("not ready at once: {other:?}"),
    }
    let peek = pin!(Store::<&str>::peek(&store, &"k", &quota));
    match peek.poll(&mut cx) {
        Poll::Ready(Ok(decision)) => assert!(!decision.is_allowed()),
        other => panic!("not ready at once: {other:?}"),
    }
    let too_costly = pin!(Store::check(&store, &"k", &quota, 2));
    match too_costly.poll(&mut cx) {
        Poll::Ready(Err(err)) => {
            let message = err.to_string();
            assert!(
                message.contains("cost 2") && message.contains("burst 1"),
                "{message}"
            );
        }
        other => panic!("a cost above the burst must fail: {other:?}"),
    }
}

#[test]
fn clones_used_from_many_threads_admit_exactly_the_burst() {
    let (store, _) = store(1_000);
    let quota = Quota::per_hour(500);
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                s.spawn(move || {
                    (0..400)
                        .filter(|_| store.check_now(&"hot", &quota, 1).unwrap().is_allowed())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 500);
}
