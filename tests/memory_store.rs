//! The memory store through its public API: key counting, eviction of idle keys, the cap and
//! the overflow budget, policies and stacks, keys as bytes, the `Store` trait's immediate
//! futures.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::{
    Clock, Decisions, KeyBytes, ManualClock, MemoryStack, MemoryStore, Policy, Quota,
    RateLimitLayer, Store, MAX_KEY_LEN,
};

mod common;
use common::Captured;

fn store(max_keys: usize) -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(max_keys)
        .build()
        .expect("a valid store");
    (store, clock)
}

/// A one-policy stack of `quota` on `store`.
fn one(store: &MemoryStore<ManualClock>, quota: Quota) -> MemoryStack {
    store
        .register(&[Policy::new("test", quota)])
        .expect("a fresh policy name")
}

fn allowed(store: &MemoryStore<ManualClock>, stack: &MemoryStack, key: u64) -> bool {
    store
        .check_now(stack, key.key_bytes().as_bytes(), 1)
        .is_allowed()
}

#[test]
fn len_counts_tracked_keys_and_a_peek_tracks_nothing() {
    let (store, _) = store(1_000);
    let stack = one(&store, Quota::per_second(2));
    assert!(store.is_empty());
    for key in [1u64, 2, 3, 1, 2] {
        allowed(&store, &stack, key);
    }
    assert_eq!(store.len(), 3);
    let peeked = store.peek_now(&stack, b"99");
    assert!(peeked.is_allowed());
    assert_eq!(peeked.as_slice()[0].remaining(), 2);
    assert_eq!(store.len(), 3, "a peek inserted a key");
    assert!(!store.is_empty());
    assert_eq!(store.clone().len(), 3, "clones share the map");
}

/// A check of cost zero takes nothing and tracks nothing: it answers as a peek does, as on
/// Redis.
#[test]
fn a_check_of_cost_zero_is_a_peek() {
    let (store, _) = store(1_000);
    let stack = one(&store, Quota::per_second(2));
    let fresh = store.check_now(&stack, b"new", 0);
    assert_eq!(store.len(), 0, "a zero cost tracked a key");
    assert_eq!(fresh, store.peek_now(&stack, b"new"));
    assert!(allowed(&store, &stack, 7) && allowed(&store, &stack, 7));
    let spent = store.check_now(&stack, b"7", 0);
    assert!(
        !spent.is_allowed(),
        "nothing left: a cost-1 check would be denied"
    );
    assert_eq!(spent, store.peek_now(&stack, b"7"));
}

#[test]
fn idle_keys_are_dropped_as_the_map_grows_without_a_background_task() {
    const ROUND: u64 = 20_000;
    let (store, clock) = store(1_000_000);
    let stack = one(&store, Quota::per_second(10));
    let mut peak = 0;
    for round in 0..10 {
        for key in round * ROUND..(round + 1) * ROUND {
            assert!(allowed(&store, &stack, key));
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
    let stack = one(&store, Quota::per_second(1));
    for key in 0..500 {
        allowed(&store, &stack, key);
    }
    clock.advance(Duration::from_millis(600));
    for key in 500..1_000 {
        allowed(&store, &stack, key);
    }
    assert_eq!(store.len(), 1_000);
    clock.advance(Duration::from_millis(400));
    assert_eq!(store.sweep(), 500, "the first half is idle");
    assert_eq!(store.len(), 500);
    assert!(!allowed(&store, &stack, 700), "a live key kept its state");
    assert!(allowed(&store, &stack, 7), "an evicted key starts afresh");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep(), 0);
    assert!(store.is_empty());
}

#[test]
fn a_key_is_idle_only_when_every_policy_that_saw_it_is() {
    let (store, clock) = store(1_000);
    let short = store
        .register(&[Policy::new("short", Quota::per_second(1))])
        .unwrap();
    let long = store
        .register(&[Policy::new("long", Quota::per_minute(1))])
        .unwrap();
    assert!(store.check_now(&short, b"k", 1).is_allowed());
    assert!(store.check_now(&long, b"k", 1).is_allowed());
    assert_eq!(store.len(), 1, "one key, two policies");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep(), 1, "the long policy still holds the key");
    assert!(
        !store.check_now(&long, b"k", 1).is_allowed(),
        "the sweep lost the long policy's state"
    );
    clock.advance(Duration::from_secs(59));
    assert_eq!(store.sweep(), 0);
}

#[test]
fn max_keys_caps_the_tracked_keys_under_a_flood_of_new_keys() {
    let (store, clock) = store(1_000);
    assert_eq!(store.max_keys(), 1_000);
    let stack = one(&store, Quota::per_minute(5));
    let mut admitted = 0;
    for key in 0..100_000u64 {
        if allowed(&store, &stack, key) {
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
        allowed(&store, &stack, 0),
        "a tracked key keeps its own budget"
    );

    // Once the tracked keys go idle they make room for new ones, and the overflow budget is
    // full again.
    clock.advance(Duration::from_secs(60));
    let fresh: usize = (200_000..200_100u64)
        .filter(|key| allowed(&store, &stack, *key))
        .count();
    assert_eq!(fresh, 100);
    assert!(store.len() <= 1_000);
}

#[test]
fn at_the_cap_new_keys_share_one_overflow_budget_per_policy() {
    // 64 keys fit in one shard, so the cap is reached exactly at the 64th key.
    let (captured, _guard) = Captured::install(tracing::Level::WARN);
    let (store, clock) = store(64);
    let stack = one(&store, Quota::per_second(2));
    for key in 0..64 {
        assert!(allowed(&store, &stack, key));
    }
    assert_eq!(captured.text(), "", "nothing to say below the cap");
    let overflow: Vec<bool> = (1_000..1_010).map(|k| allowed(&store, &stack, k)).collect();
    assert_eq!(
        overflow,
        [true, true, false, false, false, false, false, false, false, false]
    );
    // The operator hears of it once, not once per key.
    let said = captured.text();
    assert_eq!(said.matches("overflow budget").count(), 1, "{said}");
    assert!(said.contains("max_keys=64"), "{said}");
    let peeked = store.peek_now(&stack, b"5000");
    assert!(
        !peeked.is_allowed(),
        "an untracked key reads the overflow budget"
    );
    assert_eq!(peeked.retry_after(), Duration::from_millis(500));
    assert_eq!(store.len(), 64);

    // Another policy has an overflow budget of its own.
    let other = store
        .register(&[Policy::new("other", Quota::per_second(1))])
        .unwrap();
    assert!(store.check_now(&other, b"5001", 1).is_allowed());
    assert!(!store.check_now(&other, b"5002", 1).is_allowed());

    // Tracked keys are not affected by the overflow.
    assert!(allowed(&store, &stack, 3));
    clock.advance(Duration::from_millis(500));
    assert!(
        allowed(&store, &stack, 5_000),
        "the overflow budget refills at the quota's rate"
    );
}

#[test]
fn the_overflow_line_comes_once_per_ten_seconds_of_the_store_clock() {
    let (captured, _guard) = Captured::install(tracing::Level::WARN);
    let (store, clock) = store(64);
    // No key goes idle within the test: every new key finds the store full.
    let stack = one(&store, Quota::per_hour(1));
    for key in 0..64 {
        assert!(allowed(&store, &stack, key));
    }
    let lines = || captured.text().matches("overflow budget").count();
    for key in 1_000..1_005 {
        allowed(&store, &stack, key);
    }
    assert_eq!(lines(), 1, "{}", captured.text());
    clock.advance(Duration::from_millis(9_999));
    allowed(&store, &stack, 2_000);
    assert_eq!(lines(), 1, "{}", captured.text());
    clock.advance(Duration::from_millis(1));
    allowed(&store, &stack, 2_001);
    assert_eq!(lines(), 2, "{}", captured.text());
    assert!(
        captured.text().contains("new_keys_not_logged=5"),
        "four keys after the first line and one at 9.999 s: {}",
        captured.text()
    );
}

#[test]
fn a_full_store_admits_known_keys_and_sends_new_keys_from_every_thread_to_the_overflow_budget() {
    let (store, clock) = store(64);
    let stack = one(&store, Quota::per_second(2));
    for key in 0..64 {
        assert!(allowed(&store, &stack, key));
    }
    // Two threads of new keys: none is tracked, and together they get one burst.
    let admitted: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, stack) = (&store, &stack);
                s.spawn(move || {
                    (0..1_000u64)
                        .filter(|i| allowed(store, stack, 10_000 + t * 1_000 + i))
                        .count()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(admitted, 2, "the overflow budget's burst, once");
    assert_eq!(store.len(), 64);
    assert!(
        allowed(&store, &stack, 5),
        "a known key keeps its own budget"
    );
    assert!(!allowed(&store, &stack, 5));

    // Once the tracked keys are idle and the shard may sweep again, new keys are tracked,
    // each with a budget of its own.
    clock.advance(Duration::from_secs(1));
    for key in 20_000..20_064u64 {
        assert!(allowed(&store, &stack, key), "{key}");
        assert!(allowed(&store, &stack, key), "{key}: its own burst");
        assert!(!allowed(&store, &stack, key), "{key}");
    }
    assert!(store.len() <= 64);
}

#[test]
fn keys_longer_than_the_longest_kept_and_keys_spelling_a_digest_are_keys_of_their_own() {
    let (store, clock) = store(1_000);
    let stack = one(&store, Quota::per_second(2));
    // Two long keys that differ in their last byte only, a long key that starts with a short
    // one, and the key of the longest length kept as it is.
    let long = vec![b'k'; 4 * MAX_KEY_LEN];
    let mut other = long.clone();
    *other.last_mut().unwrap() = b'j';
    let short = &long[..MAX_KEY_LEN];
    // And a key that spells the form the first is kept in (`sha256:` and the first 16 bytes of
    // its SHA-256, from `sha256sum`): a client who learns it cannot spend that key's budget.
    let spelled = b"sha256:ce16fe78208a4e93f7158e62393680e0";
    for key in [&long[..], &other, short, spelled] {
        assert!(store.check_now(&stack, key, 2).is_allowed());
        assert!(!store.check_now(&stack, key, 1).is_allowed());
        assert!(!store.peek_now(&stack, key).is_allowed());
    }
    assert_eq!(store.len(), 4);
    clock.advance(Duration::from_millis(500));
    let again = store.check_now(&stack, &long, 1);
    assert!(again.is_allowed());
    assert!(!store.check_now(&stack, &long, 1).is_allowed());
    assert_eq!(again.as_slice()[0].remaining(), 0);
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
    let stack = one(&store, Quota::per_second(1));
    let mut cx = Context::from_waker(Waker::noop());
    let check = pin!(Store::check(&store, &stack, b"k", 1));
    match check.poll(&mut cx) {
        Poll::Ready(Ok(decisions)) => assert!(decisions.is_allowed()),
        other => panic!("not ready at once: {other:?}"),
    }
    let peek = pin!(Store::peek(&store, &stack, b"k"));
    match peek.poll(&mut cx) {
        Poll::Ready(Ok(decisions)) => assert!(!decisions.is_allowed()),
        other => panic!("not ready at once: {other:?}"),
    }
}

#[test]
fn a_cost_above_an_enforced_burst_is_denied_forever_and_takes_nothing() {
    let (store, clock) = store(100);
    let stack = store
        .register(&[
            Policy::new("wide", Quota::per_second(10)),
            Policy::new("narrow", Quota::per_second(2)),
        ])
        .unwrap();
    let too_costly = store.check_now(&stack, b"k", 3);
    assert!(!too_costly.is_allowed());
    assert_eq!(too_costly.retry_after(), Duration::from_nanos(u64::MAX));
    assert!(
        too_costly.as_slice()[0].is_allowed(),
        "the wide policy fits the cost"
    );
    assert!(!too_costly.as_slice()[1].is_allowed());
    clock.advance(Duration::from_secs(3600));
    assert!(!store.check_now(&stack, b"k", 3).is_allowed());
    let peeked = store.peek_now(&stack, b"k");
    assert_eq!(
        (
            peeked.as_slice()[0].remaining(),
            peeked.as_slice()[1].remaining()
        ),
        (10, 2),
        "a check that could never conform took cells"
    );
}

#[test]
fn clones_used_from_many_threads_admit_exactly_the_burst() {
    let (store, _) = store(1_000);
    let stack = one(&store, Quota::per_hour(500));
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (store, stack) = (store.clone(), stack.clone());
                s.spawn(move || {
                    (0..400)
                        .filter(|_| store.check_now(&stack, b"hot", 1).is_allowed())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 500);
}

#[test]
fn a_stack_checked_from_many_threads_is_all_or_nothing() {
    let (store, _) = store(1_000);
    let wide = Policy::new("wide", Quota::per_hour(300));
    let narrow = Policy::new("narrow", Quota::per_hour(200));
    let stack = store.register(&[wide.clone(), narrow]).unwrap();
    // The wide policy alone, checked at the same time: it shares the wide budget.
    let alone = store.register(&[wide]).unwrap();
    let (stacked, single): (usize, usize) = std::thread::scope(|s| {
        let spawn = |stack: MemoryStack| {
            let store = store.clone();
            s.spawn(move || {
                (0..300)
                    .filter(|_| store.check_now(&stack, b"hot", 1).is_allowed())
                    .count()
            })
        };
        let handles = [
            spawn(stack.clone()),
            spawn(stack.clone()),
            spawn(alone.clone()),
        ];
        let [a, b, c] = handles.map(|h| h.join().unwrap());
        (a + b, c)
    });
    assert!(stacked <= 200, "{stacked} admitted by a burst of 200");
    assert_eq!(
        stacked + single,
        300,
        "the wide budget was spent exactly once"
    );
    let peeked = store.peek_now(&stack, b"hot");
    assert_eq!(peeked.as_slice()[0].remaining(), 0);
    assert_eq!(
        peeked.as_slice()[1].remaining(),
        200 - stacked as u32,
        "a denied stack check took from the narrow policy"
    );
}

#[test]
fn a_key_checked_alone_then_by_stacks_from_many_threads_spends_each_cell_once() {
    let (store, _) = store(1_000);
    let a = Policy::new("a", Quota::per_hour(400));
    let b = Policy::new("b", Quota::per_hour(150));
    let alone_a = store.register(std::slice::from_ref(&a)).unwrap();
    let alone_b = store.register(std::slice::from_ref(&b)).unwrap();
    let both = store.register(&[a, b]).unwrap();
    // The key is tracked with one state first; the threads race to add the second while
    // checks of the first keep going.
    assert!(store.check_now(&alone_a, b"hot", 1).is_allowed());
    let [a1, a2, b1, stacked] = std::thread::scope(|s| {
        let spawn = |stack: &MemoryStack, n: usize| {
            let (store, stack) = (store.clone(), stack.clone());
            s.spawn(move || {
                (0..n)
                    .filter(|_| store.check_now(&stack, b"hot", 1).is_allowed())
                    .count()
            })
        };
        let handles = [
            spawn(&alone_a, 300),
            spawn(&alone_a, 300),
            spawn(&alone_b, 200),
            spawn(&both, 300),
        ];
        handles.map(|h| h.join().unwrap())
    });
    assert_eq!(1 + a1 + a2 + stacked, 400, "policy a spent exactly once");
    assert_eq!(b1 + stacked, 150, "policy b spent exactly once");
}

#[test]
fn policies_with_different_names_never_share_a_budget() {
    let (store, _) = store(100);
    let a = store
        .register(&[Policy::new("a", Quota::per_hour(1))])
        .unwrap();
    let b = store
        .register(&[Policy::new("b", Quota::per_hour(1))])
        .unwrap();
    assert!(store.check_now(&a, b"k", 1).is_allowed());
    assert!(store.check_now(&b, b"k", 1).is_allowed());
    assert!(!store.check_now(&a, b"k", 1).is_allowed());
    assert!(!store.check_now(&b, b"k", 1).is_allowed());
}

#[test]
fn one_name_with_one_quota_is_one_budget_across_stacks() {
    let (store, _) = store(100);
    let shared = Policy::new("shared", Quota::per_hour(3));
    let alone = store.register(std::slice::from_ref(&shared)).unwrap();
    let stacked = store
        .register(&[Policy::new("other", Quota::per_hour(100)), shared.clone()])
        .unwrap();
    let again = store.register(&[shared]).unwrap();
    assert!(store.check_now(&alone, b"k", 1).is_allowed());
    assert!(store.check_now(&stacked, b"k", 1).is_allowed());
    assert!(store.check_now(&again, b"k", 1).is_allowed());
    assert!(!store.check_now(&alone, b"k", 1).is_allowed());
    let denied = store.check_now(&stacked, b"k", 1);
    assert!(!denied.is_allowed());
    assert_eq!(denied.as_slice()[1].remaining(), 0);
    assert_eq!(
        store.peek_now(&stacked, b"k").as_slice()[0].remaining(),
        99,
        "the denied stack check took from its other policy"
    );
}

#[test]
fn one_name_with_two_quotas_is_refused_naming_the_policy() {
    let (first, _) = store(100);
    let (second, _) = store(100);
    first
        .register(&[Policy::new("login", Quota::per_minute(5))])
        .unwrap();
    let err = first
        .register(&[
            Policy::new("fresh", Quota::per_second(1)),
            Policy::new("login", Quota::per_minute(6)),
        ])
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("\"login\""), "{message}");
    assert!(
        message.contains("5/min") && message.contains("6/min"),
        "{message}"
    );
    // The store of another layer is another namespace.
    assert!(second
        .register(&[Policy::new("login", Quota::per_minute(6))])
        .is_ok());
}

#[test]
fn a_key_is_its_bytes_whatever_its_type() {
    let (store, _) = store(100);
    let stack = one(&store, Quota::per_hour(2));
    assert_eq!(7u32.key_bytes().as_bytes(), b"7");
    assert_eq!("7".key_bytes(), 7i64.key_bytes());
    assert!(store
        .check_now(&stack, 7u32.key_bytes().as_bytes(), 1)
        .is_allowed());
    assert!(store
        .check_now(&stack, "7".key_bytes().as_bytes(), 1)
        .is_allowed());
    assert!(
        !store
            .check_now(&stack, String::from("7").key_bytes().as_bytes(), 1)
            .is_allowed(),
        "the string \"7\" and the integer 7 are one key"
    );
    assert!(store
        .check_now(&stack, 70u8.key_bytes().as_bytes(), 1)
        .is_allowed());
    assert_eq!(store.len(), 2);

    // An IP address is its text; tuples cannot run into each other.
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(ip.key_bytes().as_bytes(), b"192.0.2.7");
    assert_ne!(("ab", "c").key_bytes(), ("a", "bc").key_bytes());
}

#[tokio::test]
async fn two_layers_keyed_by_an_integer_and_by_its_text_share_one_budget() {
    let (store, _) = store(100);
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let policy = Policy::new("tenant", Quota::per_hour(1));
    let by_number = RateLimitLayer::builder()
        .policy(policy.clone())
        .key(|_: &Request<()>| Some(7u32))
        .store(store.clone())
        .build()
        .unwrap()
        .layer(inner);
    let by_text = RateLimitLayer::builder()
        .policy(policy)
        .key(|_: &Request<()>| Some(String::from("7")))
        .store(store.clone())
        .build()
        .unwrap()
        .layer(inner);
    let first = by_number.oneshot(Request::new(())).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = by_text.oneshot(Request::new(())).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(store.len(), 1);
}

#[test]
fn long_keys_are_kept_whole() {
    let (store, _) = store(100);
    let stack = one(&store, Quota::per_hour(1));
    let long = |last: u8| {
        let mut key = vec![b'k'; 300];
        key.push(last);
        key
    };
    assert!(store.check_now(&stack, &long(b'a'), 1).is_allowed());
    assert!(
        store.check_now(&stack, &long(b'b'), 1).is_allowed(),
        "two long keys that differ in their last byte were taken as one"
    );
    assert!(!store.check_now(&stack, &long(b'a'), 1).is_allowed());
    // At the inline limit and one past it.
    for (len, byte) in [(22, b'x'), (23, b'y')] {
        let key = vec![byte; len];
        assert!(store.check_now(&stack, &key, 1).is_allowed(), "{len}");
        assert!(!store.check_now(&stack, &key, 1).is_allowed(), "{len}");
        assert!(store.check_now(&stack, &key[1..], 1).is_allowed(), "{len}");
    }
}

#[test]
fn a_refused_registration_registers_nothing() {
    let (store, _) = store(100);
    store
        .register(&[Policy::new("login", Quota::per_minute(5))])
        .unwrap();
    let refused = store.register(&[
        Policy::new("fresh", Quota::per_second(1)),
        Policy::new("login", Quota::per_minute(6)),
    ]);
    assert!(refused.is_err());
    assert!(
        store
            .register(&[Policy::new("fresh", Quota::per_second(2))])
            .is_ok(),
        "the refused stack left \"fresh\" registered with its quota"
    );
}

#[test]
fn a_layer_whose_tiers_give_one_name_two_quotas_is_refused_and_registers_nothing() {
    let (store, _) = store(100);
    let refused = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_minute(10)))
        .tier("pro", [Policy::new("api", Quota::per_minute(100))])
        .select_tier(|req: &Request<()>| req.headers().contains_key("x-pro").then_some("pro"))
        .store(store.clone())
        .build();
    assert!(refused.is_err());
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_minute(100)))
        .store(store.clone())
        .build();
    assert!(
        layer.is_ok(),
        "the refused layer left \"api\" registered with its default tier's quota"
    );
}

#[test]
fn a_lone_shadow_policy_admits_what_it_would_deny_once_the_key_is_known() {
    let (store, clock) = store(100);
    let stack = store
        .register(&[Policy::new("trial", Quota::per_minute(1)).shadow(true)])
        .unwrap();
    // The first check inserts the key; the next ones decide on the key as it is.
    let first = store.check_now(&stack, b"client", 1);
    assert!(first.is_allowed() && !first.any_denied());
    for _ in 0..3 {
        let over = store.check_now(&stack, b"client", 1);
        assert!(over.is_allowed(), "a shadow policy denied a request");
        assert!(over.any_denied());
        assert_eq!(over.retry_after(), Duration::ZERO);
        assert_eq!(over.as_slice()[0].retry_after(), Duration::from_secs(60));
    }
    clock.advance(Duration::from_secs(60));
    assert!(!store.check_now(&stack, b"client", 1).any_denied());
}

/// With the `metrics` feature, `ratelimit_memory_keys` is the sum of the stores' `len`: moved by
/// inserts, by the sweeps that inserts run and by `sweep`, never by the overflow key, and left
/// by a dropped store.
#[cfg(feature = "metrics")]
#[test]
fn the_key_gauge_follows_every_store_through_inserts_sweeps_and_drop() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let keys = || {
        let text = recorder.handle().render();
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix("ratelimit_memory_keys "))
            .unwrap_or_else(|| panic!("no key gauge in\n{text}"));
        value.parse::<usize>().unwrap()
    };
    // The gauge is registered with the first stack, under the recorder.
    let (store, clock) = store(64);
    let stack = metrics::with_local_recorder(&recorder, || one(&store, Quota::per_second(1)));
    for key in 0..64 {
        assert!(allowed(&store, &stack, key));
    }
    assert_eq!(keys(), 64);
    for key in 1_000..1_010 {
        allowed(&store, &stack, key);
    }
    assert_eq!(
        (store.len(), keys()),
        (64, 64),
        "the overflow key is not tracked"
    );

    // The insert that finds the shard full of idle keys sweeps them.
    clock.advance(Duration::from_secs(1));
    assert!(allowed(&store, &stack, 5_000));
    assert_eq!((store.len(), keys()), (1, 1));

    let other = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let minute = metrics::with_local_recorder(&recorder, || {
        other
            .register(&[Policy::new("minute", Quota::per_minute(1))])
            .unwrap()
    });
    for key in [b"a", b"b", b"c"] {
        assert!(other.check_now(&minute, key, 1).is_allowed());
    }
    assert_eq!(keys(), 4, "both stores");
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep(), 0);
    assert_eq!(keys(), 3);
    drop(other);
    assert_eq!(keys(), 0);

    // A stack checked on a store that did not register it counts there too, and its keys
    // leave the gauge when swept.
    let third = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        for key in [b"x", b"y"] {
            assert!(third.check_now(&minute, key, 1).is_allowed());
        }
    });
    assert_eq!((third.len(), keys()), (2, 2));
    clock.advance(Duration::from_secs(60));
    assert_eq!(third.sweep(), 0);
    assert_eq!(keys(), 0);
}

/// A clock the test sets, whose next reading can be made to wait: the reading is taken, then
/// the reader waits until the test lets it go on, as a thread preempted right after reading
/// the time would.
#[derive(Clone, Default)]
struct HeldClock(Arc<Held>);

#[derive(Default)]
struct Held {
    nanos: AtomicU64,
    /// Armed by the test: the next reader says it has read, then waits for the word to go on.
    hold: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl HeldClock {
    fn set(&self, nanos: u64) {
        self.0.nanos.store(nanos, Ordering::SeqCst);
    }

    /// Holds the next reader of the clock right after its reading; returns the signal that it
    /// has read and the switch that lets it go on.
    fn hold_next_reader(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (read_tx, read_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        *self.0.hold.lock().unwrap() = Some((read_tx, go_rx));
        (read_rx, go_tx)
    }
}

impl Clock for HeldClock {
    fn now_nanos(&self) -> u64 {
        let now = self.0.nanos.load(Ordering::SeqCst);
        let hold = self.0.hold.lock().unwrap().take();
        if let Some((read, go_on)) = hold {
            read.send(()).unwrap();
            go_on.recv().unwrap();
        }
        now
    }
}

/// A key spends its burst of 4 (one cell back every 500 ms) at 0; a check of 4 reads the time
/// at 600 ms, where it cannot conform, and waits; meanwhile the time reaches 2 s, where the key
/// is idle, a sweep drops it, and `meanwhile` runs. The late check, which comes after the
/// sweep and so after 2 s, takes a full burst; then, at 2 s, nothing is left.
fn a_late_check_across_a_sweep(meanwhile: impl FnOnce(&MemoryStore<HeldClock>, &MemoryStack)) {
    const MS: u64 = 1_000_000;
    let clock = HeldClock::default();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(8)
        .build()
        .unwrap();
    let stack = store
        .register(&[Policy::new("test", Quota::per_second(2).allow_burst(4))])
        .unwrap();
    assert!(store.check_now(&stack, b"k", 4).is_allowed());
    clock.set(600 * MS);
    let (read, go_on) = clock.hold_next_reader();
    std::thread::scope(|s| {
        // Owned here, so that a failed assertion drops it and frees the held reader: else the
        // scope would wait for it for ever.
        let go_on = go_on;
        let late = s.spawn(|| store.check_now(&stack, b"k", 4));
        read.recv().unwrap();
        clock.set(2_000 * MS);
        assert_eq!(store.sweep(), 0);
        meanwhile(&store, &stack);
        go_on.send(()).unwrap();
        assert!(late.join().unwrap().is_allowed());
    });
    let after = store.check_now(&stack, b"k", 1);
    assert!(
        !after.is_allowed(),
        "more than a burst at one instant: {after:?}"
    );
    assert_eq!(after.retry_after(), Duration::from_millis(500));
}

#[test]
fn a_key_swept_between_a_checks_reading_of_the_time_and_its_decision_keeps_its_spent_cells() {
    // The late check inserts the key afresh, under the shard's exclusive lock.
    a_late_check_across_a_sweep(|_, _| {});
}

#[test]
fn a_key_swept_and_tracked_again_at_a_full_burst_keeps_the_spent_cells_of_a_late_check() {
    // A check whose cost can never fit tracks the key again and takes nothing: its state is
    // that of a key never seen, which the late check finds under the shared lock.
    a_late_check_across_a_sweep(|store, stack| {
        assert!(!store.check_now(stack, b"k", 5).is_allowed());
    });
}

/// Cells taken from each policy by one thread's checks, from its decisions alone: an enforced
/// policy takes the cost when the stack is admitted, a shadow one when its own decision allows.
fn count_taken(taken: &mut [u64], ids: &[usize], shadow: &[bool], cost: u32, d: &Decisions) {
    for (i, (&id, &shadow)) in ids.iter().zip(shadow).enumerate() {
        let took = if shadow {
            d.as_slice()[i].is_allowed()
        } else {
            d.is_allowed()
        };
        if took {
            taken[id] += u64::from(cost);
        }
    }
}

#[test]
fn stacks_costs_shadows_and_peeks_from_many_threads_spend_each_cell_exactly_once_at_the_cap() {
    // One shard of 16 keys. The clock stands still, so every cell spent stays spent, no key
    // goes idle, and each policy's state tells exactly how many cells it gave.
    let (store, _clock) = store(16);
    let quotas = [
        Quota::per_hour(300),
        Quota::per_hour(120),
        Quota::per_hour(50),
        Quota::per_second(5),
    ];
    let names = ["a", "b", "s", "fresh"];
    let policy = |i: usize, shadow: bool| Policy::new(names[i], quotas[i]).shadow(shadow);
    // (policy indexes, shadow flags) of each stack.
    let stacks: Vec<(Vec<usize>, Vec<bool>)> = vec![
        (vec![0], vec![false]),
        (vec![0, 1], vec![false, false]),
        (vec![1, 2], vec![false, true]),
        (vec![0, 1, 2], vec![false, false, true]),
        (vec![2], vec![false]),
        (vec![2], vec![true]),
    ];
    let registered: Vec<MemoryStack> = stacks
        .iter()
        .map(|(ids, shadow)| {
            let policies: Vec<Policy> = ids
                .iter()
                .zip(shadow)
                .map(|(&i, &s)| policy(i, s))
                .collect();
            store.register(&policies).unwrap()
        })
        .collect();
    let fresh = store.register(&[policy(3, false)]).unwrap();
    let all = store
        .register(&[policy(0, false), policy(1, false), policy(2, false)])
        .unwrap();
    let hot: [&[u8]; 3] = [b"hot-0", b"hot-1", b"hot-2"];
    // The hot keys are tracked before the fresh keys fill the shard.
    for key in hot {
        assert!(store.peek_now(&all, key).is_allowed());
        assert!(store.check_now(&registered[3], key, 1).is_allowed());
    }
    // Each hot key has given one cell of each policy.
    let expected = [[1u64; 3]; 3];

    let (taken, fresh_admitted) = std::thread::scope(|s| {
        let hot_threads: Vec<_> = (0..3u64)
            .map(|t| {
                let (store, registered, stacks) = (&store, &registered, &stacks);
                s.spawn(move || {
                    let mut taken = [[0u64; 4]; 3];
                    let mut seed = t * 7_919 + 1;
                    for _ in 0..3_000 {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let r = (seed >> 33) as usize;
                        let key = r % 3;
                        let which = (r / 3) % stacks.len();
                        let cost = 1 + (r / 18 % 3) as u32;
                        if (r / 54).is_multiple_of(5) {
                            let peeked = store.peek_now(&registered[which], hot[key]);
                            for d in peeked.as_slice() {
                                assert!(d.remaining() <= d.limit());
                            }
                            continue;
                        }
                        let d = store.check_now(&registered[which], hot[key], cost);
                        let (ids, shadow) = &stacks[which];
                        count_taken(&mut taken[key], ids, shadow, cost, &d);
                    }
                    taken
                })
            })
            .collect();
        let fresh_threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, fresh) = (&store, &fresh);
                s.spawn(move || {
                    (0..2_000u64)
                        .filter(|i| {
                            let key = (t << 32 | i).to_be_bytes();
                            store.check_now(fresh, &key, 1).is_allowed()
                        })
                        .count()
                })
            })
            .collect();
        let mut taken = [[0u64; 4]; 3];
        for h in hot_threads {
            for (sum, one) in taken.iter_mut().zip(h.join().unwrap()) {
                for (a, b) in sum.iter_mut().zip(one) {
                    *a += b;
                }
            }
        }
        let fresh_admitted: usize = fresh_threads.into_iter().map(|h| h.join().unwrap()).sum();
        (taken, fresh_admitted)
    });

    for (key, bytes) in hot.iter().enumerate() {
        let state = store.peek_now(&all, bytes);
        for (policy, d) in state.as_slice().iter().enumerate() {
            let quota = &quotas[policy];
            let spent = d.reset_after().as_nanos() as u64 / quota.interval_nanos();
            assert_eq!(
                d.reset_after().as_nanos() as u64 % quota.interval_nanos(),
                0,
                "key {key} policy {policy}"
            );
            assert!(
                spent <= u64::from(quota.burst()),
                "key {key} policy {policy}: {spent}"
            );
            assert_eq!(
                spent,
                expected[key][policy] + taken[key][policy],
                "key {key} policy {policy}: the cells the decisions report are the cells spent"
            );
        }
    }
    // 3 hot keys and 13 fresh ones fill the shard; every other fresh key shares the overflow
    // budget of 5.
    assert_eq!(store.len(), 16);
    assert_eq!(fresh_admitted, 13 + 5);
}

/// A store of 8 keys at most, holding 8 keys each checked once against 1/s, and a stack of
/// one policy of 1/hour that no key has checked yet.
fn full_of_live_keys() -> (MemoryStore<ManualClock>, ManualClock, MemoryStack) {
    let (store, clock) = store(8);
    let second = one(&store, Quota::per_second(1));
    let hour = store
        .register(&[Policy::new("hour", Quota::per_hour(1))])
        .unwrap();
    for key in 0..8 {
        assert!(allowed(&store, &second, key));
    }
    (store, clock, hour)
}

#[test]
fn a_peek_of_a_new_key_at_the_cap_answers_what_a_check_would() {
    let (store, clock, hour) = full_of_live_keys();
    // At 950 ms a new key finds the store full of live keys: it spends the overflow budget of
    // the hourly policy, and the shard may not sweep again before 1 050 ms.
    clock.advance(Duration::from_millis(950));
    assert!(store.check_now(&hour, b"new-1", 1).is_allowed());
    let peek_and_check = |key: &[u8]| (store.peek_now(&hour, key), store.check_now(&hour, key, 1));

    // At 1 s the tracked keys are idle, but a check cannot sweep them yet.
    clock.advance(Duration::from_millis(50));
    let (peeked, checked) = peek_and_check(b"new-2");
    assert!(!checked.is_allowed(), "the overflow budget is spent");
    assert_eq!(
        peeked, checked,
        "a denial takes nothing: the peek is the check"
    );

    // At 1 050 ms a check sweeps the idle keys and tracks the new key with a full burst.
    clock.advance(Duration::from_millis(50));
    let (peeked, checked) = peek_and_check(b"new-3");
    assert!(checked.is_allowed(), "a sweep made room");
    assert!(
        peeked.is_allowed(),
        "the peek read the spent overflow budget"
    );
    assert_eq!(peeked.as_slice()[0].remaining(), 1);
    assert_eq!(store.len(), 1);
}

#[test]
fn sweeps_under_contention_drop_idle_keys_only_and_the_overflow_budget_refills_as_they_do() {
    const EPOCHS: usize = 10;
    const STEP: Duration = Duration::from_millis(200);
    const HOT_CHECKS: usize = 100;
    const FRESH_KEYS: u64 = 20;
    let (store, clock) = store(16);
    // Never idle between epochs: a key spends faster than it refills.
    let hot_quota = Quota::per_minute(600).allow_burst(400);
    let hot = store.register(&[Policy::new("hot", hot_quota)]).unwrap();
    // Idle 5 ms after a check: every new key of an epoch is idle at the next.
    let fresh = store
        .register(&[Policy::new(
            "fresh",
            Quota::with_period(Duration::from_millis(1)).allow_burst(5),
        )])
        .unwrap();
    let hot_keys: [&[u8]; 3] = [b"hot-0", b"hot-1", b"hot-2"];
    for key in hot_keys {
        assert!(store.check_now(&hot, key, 1).is_allowed());
    }
    let barrier = std::sync::Barrier::new(6);
    let (hot_admitted, fresh_admitted) = std::thread::scope(|s| {
        let hot_threads: Vec<_> = (0..3)
            .map(|_| {
                let (store, hot, barrier) = (&store, &hot, &barrier);
                s.spawn(move || {
                    let mut admitted = [[0u64; 3]; EPOCHS];
                    for epoch in &mut admitted {
                        barrier.wait();
                        for i in 0..3 * HOT_CHECKS {
                            if store.check_now(hot, hot_keys[i % 3], 1).is_allowed() {
                                epoch[i % 3] += 1;
                            }
                        }
                        barrier.wait();
                    }
                    admitted
                })
            })
            .collect();
        let fresh_threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, fresh, barrier) = (&store, &fresh, &barrier);
                s.spawn(move || {
                    let mut admitted = [0u64; EPOCHS];
                    for (epoch, count) in admitted.iter_mut().enumerate() {
                        barrier.wait();
                        for i in 0..FRESH_KEYS {
                            let key = format!("fresh-{epoch}-{t}-{i}");
                            if store.check_now(fresh, key.as_bytes(), 1).is_allowed() {
                                *count += 1;
                            }
                        }
                        barrier.wait();
                    }
                    admitted
                })
            })
            .collect();
        for _ in 0..EPOCHS {
            barrier.wait();
            barrier.wait();
            assert!(store.len() <= 16);
            clock.advance(STEP);
        }
        let hot: Vec<_> = hot_threads.into_iter().map(|h| h.join().unwrap()).collect();
        let fresh: Vec<_> = fresh_threads
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        (hot, fresh)
    });

    // What one key admits at each epoch's instant, by the sequential algorithm.
    let interval = hot_quota.interval_nanos();
    let window = interval * u64::from(hot_quota.burst());
    let mut tat = interval;
    for epoch in 0..EPOCHS {
        let now = epoch as u64 * STEP.as_nanos() as u64;
        let room = (window - tat.saturating_sub(now)) / interval;
        let expected = room.min(3 * HOT_CHECKS as u64);
        tat = tat.max(now) + expected * interval;
        for key in 0..3 {
            let admitted: u64 = hot_admitted.iter().map(|t| t[epoch][key]).sum();
            assert_eq!(admitted, expected, "epoch {epoch}, hot key {key}");
        }
        // 3 hot keys and 13 new ones fill the 16 keys; the idle keys of the epoch before
        // make room, and the other new keys share an overflow budget of 5, full again.
        let fresh: u64 = fresh_admitted.iter().map(|t| t[epoch]).sum();
        assert_eq!(fresh, 13 + 5, "epoch {epoch}");
    }
}

#[test]
fn a_peek_that_finds_no_idle_key_at_the_cap_counts_as_the_sweep_a_check_would_run() {
    let (store, clock, hour) = full_of_live_keys();
    // The first new key sweeps in vain at 0 ms and spends the hourly overflow budget.
    assert!(store.check_now(&hour, b"new-1", 1).is_allowed());
    // At 950 ms a sweep may run again; a peek looks, and finds no idle key.
    clock.advance(Duration::from_millis(950));
    assert!(!store.peek_now(&hour, b"new-2").is_allowed());
    // At 1 s the tracked keys are idle, but neither a peek nor a check looks before 1 050 ms.
    clock.advance(Duration::from_millis(50));
    assert!(!store.peek_now(&hour, b"new-2").is_allowed());
    assert!(!store.check_now(&hour, b"new-2", 1).is_allowed());
    assert_eq!(store.len(), 8);
    clock.advance(Duration::from_millis(50));
    assert!(store.peek_now(&hour, b"new-2").is_allowed());
    assert!(store.check_now(&hour, b"new-2", 1).is_allowed());
    assert_eq!(store.len(), 1);
}

/// A stack belongs to the store that registered it. Used on another store (a store of its own,
/// not a clone), it counts there apart from that store's policies: it never reads or writes
/// the state of a policy it is not, as it once did (its policy's number named the other
/// store's first policy).
#[test]
fn a_stack_used_on_another_store_never_touches_that_store_policies() {
    let (home, _) = store(100);
    let (other, _) = store(100);
    let strict = home
        .register(&[Policy::new("strict", Quota::per_hour(1))])
        .unwrap();
    let loose = other
        .register(&[Policy::new("loose", Quota::per_hour(100))])
        .unwrap();
    let remaining = |store: &MemoryStore<ManualClock>, stack: &MemoryStack| {
        let decisions = store.check_now(stack, b"k", 1);
        (decisions.is_allowed(), decisions.as_slice()[0].remaining())
    };
    assert_eq!(remaining(&other, &strict), (true, 0));
    assert_eq!(remaining(&other, &strict), (false, 0));
    assert_eq!(remaining(&other, &loose), (true, 99));
    assert_eq!(remaining(&other, &loose), (true, 98));
    // Nor did the other store's checks reach the home store's budget.
    assert_eq!(remaining(&home, &strict), (true, 0));
}

/// A peek reads a stack's states as one: never one policy's state after a check and another's
/// before it. Two policies with one quota always hold one state, so they must peek alike.
#[test]
fn a_peek_never_sees_a_stack_halfway_through_a_check() {
    let (store, _clock) = store(1_000);
    let fine = Quota::per_second(1_000_000_000);
    let stack = store
        .register(&[Policy::new("a", fine), Policy::new("b", fine)])
        .unwrap();
    assert!(store.check_now(&stack, b"k", 1).is_allowed());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                store.check_now(&stack, b"k", 1);
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..500_000 {
                let peeked = store.peek_now(&stack, b"k");
                let [a, b] = peeked.as_slice() else {
                    panic!("two decisions: {peeked:?}")
                };
                assert_eq!(a, b, "a torn peek");
            }
        }));
        done.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}
