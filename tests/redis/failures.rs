//! Redis failing under the store: killed, paused past the timeout, restarted. Every check gets
//! an answer under each failure policy, the back-off engages so that checks stop waiting, an
//! outage's start, back-off and end are logged, and checks go back to Redis when it returns.
//!
//! The back-off runs on a manual clock, so it ends exactly when the test says; only the
//! server's own stop, pause and restart take real time.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use redis::Commands;
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::store::{RedisStack, RedisStoreBuilder, RedisStoreFuture};
use tower_ratelimit::{
    Clock, Decisions, FailurePolicy, Global, ManualClock, Policy, Quota, RateLimitLayer,
    RedisStore, Store,
};

use crate::common::Captured;
use crate::support::{
    command_calls, kill_other_clients, role, set_password, strict_store, unique_prefix, Proxy,
    RedisServer,
};
use crate::{records, stored_tat};

const BACKOFF: Duration = Duration::from_secs(1);

async fn store(
    url: &str,
    clock: &ManualClock,
    policy: FailurePolicy,
    timeout: Duration,
) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .prefix(unique_prefix("failures"))
        .clock(clock.clone())
        .timeout(timeout)
        .failures_before_backoff(3)
        .backoff(BACKOFF)
        .on_failure(policy)
        .build()
        .await
        .unwrap()
}

/// Polls once: a backed-off store must answer without waiting.
fn answer_now(future: RedisStoreFuture) -> Option<Result<Decisions, String>> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => Some(outcome.map_err(|e| e.to_string())),
        Poll::Pending => None,
    }
}

fn remaining(decisions: &Decisions) -> Vec<u32> {
    decisions.as_slice().iter().map(|d| d.remaining()).collect()
}

/// Probes once per back-off period until a check reaches Redis again.
async fn wait_for_recovery(store: &RedisStore, clock: &ManualClock, stack: &RedisStack) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.is_backing_off() {
        assert!(
            Instant::now() < deadline,
            "the store never went back to Redis"
        );
        clock.advance(BACKOFF);
        let _ = store.check(stack, b"probe", 1).await;
        if store.is_backing_off() {
            // The server is still coming up: let it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The timeout of the stores of tests that make Redis too slow on purpose.
const SHORT: Duration = Duration::from_millis(100);
/// The timeout of the stores of tests whose Redis fails at once, or not at all: one a stalled
/// machine does not reach, so that only the failures the test makes count.
const PATIENT: Duration = Duration::from_secs(5);

/// A server, a store on it with the local failure policy and `timeout`, a stack of 5 per
/// minute, and one check of `k` that Redis answered.
async fn one_check_done(timeout: Duration) -> (RedisServer, ManualClock, RedisStore, RedisStack) {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = store(&server.url(), &clock, FailurePolicy::Local, timeout).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(5))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    (server, clock, store, stack)
}

async fn outage(policy: FailurePolicy) {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let mut server = RedisServer::start();
    let clock = ManualClock::new();
    let store = store(&server.url(), &clock, policy, PATIENT).await;
    let stack = store
        .register(&[
            Policy::new("per-minute", Quota::per_minute(2)),
            Policy::new("per-hour", Quota::per_hour(100)),
        ])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    assert!(!store.is_degraded());

    server.kill();
    let mut failed_admitted = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = store.check(&stack, b"k", 1).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        match policy {
            FailurePolicy::Deny => assert!(outcome.is_err()),
            _ => failed_admitted.push(outcome.expect("answered by the policy").is_allowed()),
        }
    }
    match policy {
        // The in-memory GCRA starts from the key's first check: 2 per minute.
        FailurePolicy::Local => assert_eq!(failed_admitted, [true, true, false]),
        FailurePolicy::Allow => assert_eq!(failed_admitted, [true; 3]),
        _ => assert!(failed_admitted.is_empty()),
    }
    assert!(store.is_backing_off());
    assert!(store.is_degraded());

    let mut allowed = 0;
    for _ in 0..1000 {
        let outcome = answer_now(store.check(&stack, b"k", 1))
            .expect("a backed-off store answers without waiting");
        match (policy, outcome) {
            (FailurePolicy::Deny, Err(e)) => assert!(e.contains("backing off"), "{e}"),
            (FailurePolicy::Deny, Ok(d)) => panic!("Deny answered {d:?}"),
            (FailurePolicy::Allow, Ok(d)) => {
                // What a key's first check gets: its burst less the cost, full again after
                // the cost's cells refill (2 per minute: 30 s; 100 per hour: 36 s).
                assert_eq!(remaining(&d), [1, 99]);
                let resets: Vec<Duration> = d.as_slice().iter().map(|d| d.reset_after()).collect();
                assert_eq!(resets, [Duration::from_secs(30), Duration::from_secs(36)]);
                allowed += u32::from(d.is_allowed());
            }
            (_, Ok(d)) => allowed += u32::from(d.is_allowed()),
            (_, Err(e)) => panic!("{policy:?} answered {e}"),
        }
    }
    match policy {
        // The in-memory GCRA keeps limiting the stack: 2 per minute, less what the failures
        // took.
        FailurePolicy::Local => assert_eq!(allowed, 0),
        FailurePolicy::Allow => assert_eq!(allowed, 1000),
        _ => assert_eq!(allowed, 0),
    }
    assert_eq!(log.count("backing off"), 1);
    assert_eq!(log.count("store failed"), 1);

    server.restart();
    wait_for_recovery(&store, &clock, &stack).await;
    let mut conn = server.connection();
    let before = command_calls(&mut conn, "evalsha");
    // The restarted Redis is empty: the key has its full burst there.
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert_eq!(remaining(&decisions), [1, 99]);
    assert_eq!(command_calls(&mut conn, "evalsha"), before + 1);
    for policy in ["per-minute", "per-hour"] {
        assert!(stored_tat(&mut conn, &store.redis_key(&"k"), policy).is_some());
    }
    assert_eq!(log.count("answering again"), 1);
    assert!(!store.is_degraded());
    // The recovery says how long the outage was and what the failure policy answered: the
    // three failed checks and the thousand of the back-off at least.
    let answered = log.field("answering again", "checks_answered_by_policy");
    assert!(answered >= 1003, "{answered} checks answered by the policy");
    assert!(log.field("answering again", "failed_calls") >= 3);
}

#[tokio::test]
async fn one_failed_call_is_logged_once_and_so_is_the_recovery() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, _clock, store, stack) = one_check_done(SHORT).await;

    // One call times out, fewer than the back-off needs. The pause (of writes, which scripts
    // are, so that `CLIENT UNPAUSE` is not held too) outlasts any stall of the test: it ends
    // when the test says.
    server.pause_writes(60_000);
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    assert!(store.is_degraded(), "the failure policy answered");
    assert!(!store.is_backing_off());
    assert_eq!(log.count("store failed"), 1);
    assert_eq!(log.count("answering again"), 0);

    server.unpause();
    store.check(&stack, b"k", 1).await.unwrap();
    assert_one_call_outage_ended(&log, &store);
}

/// `store` answers from Redis again, and `log` has the end of one outage: one failed call,
/// whose one check the failure policy answered.
fn assert_one_call_outage_ended(log: &Captured, store: &RedisStore) {
    assert!(!store.is_degraded());
    assert_eq!(log.count("answering again"), 1);
    assert_eq!(log.field("answering again", "failed_calls"), 1);
    assert_eq!(log.field("answering again", "checks_answered_by_policy"), 1);
}

#[tokio::test]
async fn a_backoff_right_after_a_logged_blip_is_logged_and_so_is_its_end() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, clock, store, stack) = one_check_done(SHORT).await;

    // A blip: one call times out, the next is answered; both lines are logged.
    server.pause(400);
    store.check(&stack, b"k", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    store.check(&stack, b"k", 1).await.unwrap();
    assert_eq!(log.count("store failed"), 1);
    assert_eq!(log.count("answering again"), 1);

    // Seconds later Redis stops answering: the outage's first failure is held back (the
    // blip's lines were just logged), but its back-off is not, nor its end.
    server.pause(3_000);
    for _ in 0..3 {
        store.check(&stack, b"k", 1).await.unwrap();
    }
    assert!(store.is_backing_off());
    assert_eq!(log.count("store failed"), 1, "{}", log.text());
    assert_eq!(log.count("keeps failing"), 1, "{}", log.text());
    wait_for_recovery(&store, &clock, &stack).await;
    assert_eq!(log.count("answering again"), 2, "{}", log.text());
}

#[tokio::test]
async fn killed_redis_falls_back_to_local_limits_and_recovers() {
    outage(FailurePolicy::Local).await;
}

#[tokio::test]
async fn killed_redis_fails_open_with_allow_and_recovers() {
    outage(FailurePolicy::Allow).await;
}

#[tokio::test]
async fn killed_redis_fails_closed_with_deny_and_recovers() {
    outage(FailurePolicy::Deny).await;
}

#[tokio::test]
async fn a_pause_longer_than_the_timeout_trips_the_backoff_until_redis_answers() {
    let (server, clock, store, stack) = one_check_done(SHORT).await;

    // Long enough that a starved machine, on which a late timer gives a call a second timeout,
    // still times out three calls within it.
    let pause_ms = 3_000;
    server.pause(pause_ms);
    let paused = Instant::now();
    for _ in 0..3 {
        let started = Instant::now();
        let decisions = store.check(&stack, b"k", 1).await.unwrap();
        let waited = started.elapsed();
        assert!(decisions.is_allowed());
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_millis(1_000),
            "waited {waited:?}: the timeout, not the pause"
        );
    }
    assert!(store.is_backing_off());
    // Local limits: 5 per minute in this process, 3 taken by the timed-out checks.
    let local: Vec<bool> = (0..5)
        .map(|_| {
            answer_now(store.check(&stack, b"k", 1))
                .unwrap()
                .unwrap()
                .is_allowed()
        })
        .collect();
    assert_eq!(local, [true, true, false, false, false]);
    assert!(
        paused.elapsed() < Duration::from_millis(pause_ms),
        "too slow to test the pause"
    );

    let recovering = clock.now_nanos();
    wait_for_recovery(&store, &clock, &stack).await;
    // Redis kept its own count: the check before the pause, and the three that timed out,
    // which the pause held and Redis ran when it ended (with the times they carried), not the
    // ones the local policy admitted. Probing advanced the clock by a back-off per probe, and
    // the per-minute quota refilled a cell per 12 s of it.
    let refilled = (clock.now_nanos() - recovering) / 12_000_000_000;
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert!(decisions.is_allowed());
    assert_eq!(remaining(&decisions), [refilled.min(4) as u32]);
}

#[tokio::test]
async fn the_layer_answers_503_with_retry_after_when_redis_is_down_and_policy_is_deny() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new();
    let store = store(&server.url(), &clock, FailurePolicy::Deny, PATIENT).await;
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(100))
        .key(Global)
        .store(store)
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |_req: Request<()>| {
        *counted.lock().unwrap() += 1;
        async { Ok::<_, std::convert::Infallible>(Response::new(String::from("ok"))) }
    });
    let svc = layer.layer(inner);
    let ok = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    server.kill();
    for _ in 0..5 {
        let response = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_timeout_longer_than_half_a_second_is_honoured() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix("long-timeout"))
        .clock(clock.clone())
        .timeout(Duration::from_secs(3))
        .on_failure(FailurePolicy::Deny)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(5))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());

    server.pause(800);
    let started = Instant::now();
    // With `Deny`, anything but Redis's own answer would be an error.
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    let waited = started.elapsed();
    assert!(decisions.is_allowed());
    assert_eq!(remaining(&decisions), [3]);
    assert!(
        waited >= Duration::from_millis(600),
        "the pause should have held the check, waited {waited:?}"
    );
    assert!(!store.is_backing_off());
}

/// A Redis restarted while the store was idle: the store's connection is dead, but the first
/// check finds Redis on a new one, not the failure policy.
#[tokio::test]
async fn the_first_check_after_a_restart_while_idle_is_answered_by_redis() {
    let (mut server, _clock, store, stack) = one_check_done(PATIENT).await;
    server.restart();
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert!(!store.is_degraded(), "answered by the failure policy");
    // The restarted server is empty: Redis counts this as the key's first check.
    assert_eq!(remaining(&decisions), [4]);
}

/// Redis back after an outage long enough to back off: the first probe finds it, though the
/// reconnections tried during the outage all failed.
#[tokio::test]
async fn the_first_probe_after_redis_is_back_finds_it() {
    let (mut server, clock, store, stack) = one_check_done(PATIENT).await;
    server.kill();
    for _ in 0..3 {
        let _ = store.check(&stack, b"k", 1).await;
    }
    assert!(store.is_backing_off());
    // An outage longer than a reconnection attempt: the one the last failure started fails.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    clock.advance(BACKOFF);
    let _ = store.check(&stack, b"k", 1).await;
    assert!(
        !store.is_backing_off(),
        "the probe failed: the store backs off again"
    );
}

/// A Redis that stops answering once the connection is made (stopped, or cut off by the
/// network) fails the build with an error that says so: the build does not wait forever. It
/// waits for each answer as long as the checks' timeout, at least a second.
#[tokio::test]
async fn building_on_a_redis_that_stops_answering_once_connected_is_an_error() {
    let (error, waited) = build_on_silent_redis(Duration::from_millis(100)).await;
    assert!(error.contains("did not answer within 1s"), "{error}");
    assert!(waited >= Duration::from_secs(1), "a second at least");
}

/// The build's wait for each answer is bounded whatever the checks' timeout: with no timeout
/// for checks (`Duration::MAX`), a silent Redis still fails the build, after five seconds.
#[tokio::test]
async fn a_build_without_a_check_timeout_still_gives_up_on_a_silent_redis() {
    let (error, waited) = build_on_silent_redis(Duration::MAX).await;
    assert!(error.contains("did not answer within 5s"), "{error}");
    assert!(waited >= Duration::from_secs(5));
}

/// Builds a store with the checks' `timeout` on a Redis that goes silent once connected: the
/// build's error, and how long it took to come.
async fn build_on_silent_redis(timeout: Duration) -> (String, Duration) {
    let server = RedisServer::start();
    let proxy = proxy_silent_from_script_load(&server);
    let started = Instant::now();
    let built = tokio::time::timeout(
        Duration::from_secs(20),
        RedisStore::builder()
            .url(format!("redis://127.0.0.1:{proxy}"))
            .timeout(timeout)
            .build(),
    )
    .await
    .expect("the build waits on a silent Redis for ever");
    (built.unwrap_err().to_string(), started.elapsed())
}

/// A proxy to `server` for one connection, which forwards everything until the client sends
/// `SCRIPT` (the store's `SCRIPT LOAD`), and from there forwards nothing more from it: Redis
/// goes silent after the connection's handshake. Returns its port.
fn proxy_silent_from_script_load(server: &RedisServer) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = server.port();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let (mut to_client, mut from_server) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        // Ends when the server closes the connection, stopped with the test.
        std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
        let mut buf = [0; 4096];
        let mut silent = false;
        while let Ok(n @ 1..) = client.read(&mut buf) {
            silent |= buf[..n]
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"SCRIPT"));
            if !silent && server.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    port
}

/// Redis closes the store's connection (`CLIENT KILL`) while a call waits on it and checks
/// queue behind it: the call goes again on a new connection, and Redis answers every check,
/// the store never degraded.
#[tokio::test]
async fn a_connection_killed_under_a_call_costs_no_check_its_answer_from_redis() {
    let server = RedisServer::start();
    let store = strict_store("killed")
        .url(server.url())
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(10))])
        .unwrap();
    server.pause_writes(5_000);
    // The first is sent alone and held by the pause; the others queue behind it.
    let checks: Vec<_> = (0..5)
        .map(|_| tokio::spawn(store.check(&stack, b"k", 1)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = kill_other_clients(&mut server.connection());
    assert!(killed >= 1, "the store's connection was not killed");
    server.unpause();
    for check in checks {
        let answer = tokio::time::timeout(Duration::from_secs(10), check)
            .await
            .expect("a check was never answered")
            .unwrap();
        assert!(answer.unwrap().is_allowed(), "not Redis's answer");
    }
    assert!(!store.is_degraded());
}

/// Redis refuses the store's password for a while (a restart with another `requirepass`, a
/// rotation gone wrong): each connection attempt then fails, not with an I/O error but with
/// Redis's refusal. Once Redis takes the password again, a probe must find it.
#[tokio::test]
async fn a_store_whose_password_redis_refused_for_a_while_recovers() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let server = RedisServer::start();
    let mut admin = server.connection();
    // `admin`, connected before, stays authenticated whatever the password becomes.
    set_password(&mut admin, "secret");
    let clock = ManualClock::new();
    let store = RedisStore::builder()
        .url(format!("redis://:secret@127.0.0.1:{}", server.port()))
        .prefix(unique_prefix("password"))
        .clock(clock.clone())
        .timeout(PATIENT)
        .deny_cache(false)
        .failures_before_backoff(1)
        .backoff(BACKOFF)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(5))])
        .unwrap();
    for _ in 0..3 {
        assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    }
    set_password(&mut admin, "rotated");
    kill_other_clients(&mut admin);
    // The local policy answers: the key's first check here.
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert_eq!(remaining(&decisions), [4]);
    assert!(store.is_backing_off());
    assert!(log.count("AuthenticationFailed") >= 1, "{}", log.text());

    set_password(&mut admin, "secret");
    wait_for_recovery(&store, &clock, &stack).await;
    assert!(!store.is_degraded());
    // Redis answers again: the key's fourth check there.
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert_eq!(remaining(&decisions), [1]);
    assert_eq!(log.count("answering again"), 1);
}

/// A store on a proxy to Redis that answers nothing but Redis's own answers (`Deny`), a stack
/// of 5 per minute, and one check of `k` that Redis answered; `timeout` bounds each.
async fn one_check_through(
    proxy: &Proxy,
    clock: &ManualClock,
    timeout: Duration,
) -> (RedisStore, RedisStack) {
    let store = store(&proxy.url(), clock, FailurePolicy::Deny, timeout).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(5))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    (store, stack)
}

/// Checks `k` on `store`, which must time out: Redis's answer does not reach it.
async fn times_out(store: &RedisStore, stack: &RedisStack) {
    let error = store.check(stack, b"k", 1).await.unwrap_err().to_string();
    assert!(error.contains("did not answer"), "{error}");
}

/// Checks `k` on `store`, which must go on a connection `proxy` accepted after the first
/// `opened`, and be Redis's answer to the key's second check (the ones that timed out never
/// reached it).
async fn answered_on_a_new_connection(
    store: &RedisStore,
    stack: &RedisStack,
    proxy: &Proxy,
    opened: u64,
) {
    let decisions = store.check(stack, b"k", 1).await.unwrap();
    assert_eq!(remaining(&decisions), [3]);
    assert!(proxy.connections() > opened, "a new connection");
}

/// A failover that moves the name the store connects by (a managed Redis's DNS name) to the
/// new primary, the old one made its replica: the store's open connection now reaches a
/// replica, which answers every write `READONLY`. The store connects again, and finds the new
/// primary.
#[tokio::test]
async fn a_store_whose_server_became_a_replica_connects_again_and_finds_the_primary() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let proxy = Proxy::to(&old);
    let clock = ManualClock::new();
    let (store, stack) = one_check_through(&proxy, &clock, PATIENT).await;

    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port())
        .query(&mut old.connection())
        .unwrap();
    assert_eq!(role(&old), "slave");
    proxy.point_at(&new);
    let error = store.check(&stack, b"k", 1).await.unwrap_err();
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        source.unwrap_or_default().contains("read only replica"),
        "{error:?}"
    );

    // The next check goes on a new connection, to the new primary: `k`'s first check there
    // (the old one's data went with it).
    let decisions = store.check(&stack, b"k", 1).await.unwrap();
    assert_eq!(remaining(&decisions), [4]);
    assert!(command_calls(&mut new.connection(), "evalsha") >= 2);
}

/// The store's connection is dropped without a word on the way (a load balancer's idle
/// timeout, a NAT that forgot it): it stays open and nothing comes back. Calls time out, and
/// the store connects again instead of waiting on it until the kernel gives up.
#[tokio::test]
async fn a_connection_that_went_silent_is_replaced_after_a_timeout() {
    let server = RedisServer::start();
    let proxy = Proxy::to(&server);
    let clock = ManualClock::new();
    // Long enough for a new connection's first call on a loaded machine.
    let (store, stack) = one_check_through(&proxy, &clock, Duration::from_secs(1)).await;
    let connections = proxy.connections();

    proxy.silence_open_connections();
    times_out(&store, &stack).await;

    // The next check goes on a new connection, which Redis answers: the key's second check.
    answered_on_a_new_connection(&store, &stack, &proxy, connections).await;
}

/// A connection that goes silent before Redis answered a call on it (a new one, whose way to
/// Redis died right after its handshake) is replaced too, not kept until the kernel gives up
/// on it.
#[tokio::test]
async fn a_new_connection_that_never_answered_is_replaced_after_a_timeout() {
    let server = RedisServer::start();
    let proxy = Proxy::to(&server);
    let clock = ManualClock::new();
    let (store, stack) = one_check_through(&proxy, &clock, Duration::from_secs(1)).await;

    proxy.silence_open_connections();
    proxy.silence_new_connections_after_their_handshake();
    // The open connection times out; the next check's new connection, past its handshake,
    // answers nothing either.
    for _ in 0..2 {
        times_out(&store, &stack).await;
    }
    let opened = proxy.connections();
    proxy.silence_open_connections();

    // The next check goes on a connection opened now, which Redis answers.
    answered_on_a_new_connection(&store, &stack, &proxy, opened).await;
}

/// A Redis whose every answer comes after the store's timeout looks silent (the store never
/// sees the late answers): its connection is replaced, then each replacement waits twice as
/// long as the one before, so that it costs a few new connections, not one a second.
#[tokio::test]
async fn a_redis_that_answers_too_late_costs_a_few_new_connections_not_one_a_second() {
    let server = RedisServer::start();
    let proxy = Proxy::to(&server);
    let store = RedisStore::builder()
        .url(proxy.url())
        .prefix(unique_prefix("late"))
        .timeout(Duration::from_millis(100))
        .failures_before_backoff(u32::MAX)
        .on_failure(FailurePolicy::Deny)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(1_000))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    let before = proxy.connections();

    proxy.delay_answers(Duration::from_millis(150));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(7_500) {
        times_out(&store, &stack).await;
    }
    // Replaced after 1 s of silence, then after 1, 2 and 4 s more: about 1, 2 and 4 s in.
    // One a second would be seven.
    let opened = proxy.connections() - before;
    assert!(
        (1..=4).contains(&opened),
        "{opened} new connections in 7.5 s"
    );
}

#[tokio::test]
async fn a_check_dropped_before_it_was_polled_gives_its_lane_back() {
    let (_server, _clock, store, stack) = one_check_done(PATIENT).await;
    // Sent alone, its lane being idle, then dropped unpolled, as `select!` drops a branch.
    drop(store.check(&stack, b"k", 1));
    let next = tokio::time::timeout(Duration::from_secs(5), store.check(&stack, b"k", 1)).await;
    let next = next.expect("the lane was left busy: checks queue behind a call never sent");
    assert!(next.unwrap().is_allowed());
}

#[tokio::test]
async fn a_probe_dropped_before_it_was_polled_lets_the_next_check_probe() {
    let (mut server, clock, store, stack) = one_check_done(PATIENT).await;
    server.kill();
    for _ in 0..3 {
        let _ = store.check(&stack, b"k", 1).await;
    }
    assert!(store.is_backing_off());
    server.restart();
    clock.advance(BACKOFF);
    // The first check after the back-off is the probe; dropped unpolled, it must hand over.
    drop(store.check(&stack, b"k", 1));
    wait_for_recovery(&store, &clock, &stack).await;
}

/// Checks of one key spawned on a runtime that shuts down while Redis holds their call: the
/// one in flight and the ones queued behind it go with the runtime, and the lane is free for
/// the next check, on another runtime.
#[test]
fn checks_left_behind_by_a_runtime_that_shut_down_do_not_hold_their_lane() {
    let server = RedisServer::start();
    let (main, store, stack) = runtime_with_store(strict_store("shutdown").url(server.url()));
    server.pause(1_000);
    on_a_runtime_that_shuts_down(async {
        for _ in 0..4 {
            spawn_check(&store, &stack);
        }
        // The first is sent and waits on Redis; the others queue behind it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let next = main.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), store.check(&stack, b"k", 1)).await
    });
    let next = next.expect("the lane was left busy: checks queue behind a sender that is gone");
    assert!(next.unwrap().is_allowed());
}

/// A check of another runtime, queued behind a call whose runtime then shuts down, is
/// answered, with no other check of its lane to restart the lane.
#[test]
fn a_check_queued_behind_a_runtime_that_shut_down_is_still_answered() {
    let server = RedisServer::start();
    let (main, store, stack) = runtime_with_store(strict_store("handed-back").url(server.url()));
    server.pause(500);
    let mut queued = None;
    on_a_runtime_that_shuts_down(async {
        // Sent alone from this runtime, and held by the paused server.
        spawn_check(&store, &stack);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (store, stack) = (store.clone(), stack.clone());
        queued = Some(main.spawn(async move { store.check(&stack, b"k", 1).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let answer = main
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), queued.unwrap()).await });
    let answer = answer.expect("the check queued behind a sender that is gone was never sent");
    assert!(answer.unwrap().unwrap().is_allowed());
}

#[tokio::test]
async fn a_timeout_too_long_for_the_clock_means_no_timeout() {
    let server = RedisServer::start();
    let store = strict_store("no-timeout")
        .url(server.url())
        .timeout(Duration::MAX)
        .backoff(Duration::MAX)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(2))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    // Several at once: one alone, the others in a batch behind it.
    let checks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(store.check(&stack, b"k", 1)))
        .collect();
    let mut allowed = 0;
    for check in checks {
        allowed += usize::from(check.await.unwrap().unwrap().is_allowed());
    }
    assert_eq!(allowed, 1, "one cell of the two was left");
}

#[tokio::test]
async fn a_key_holding_something_else_than_a_tat_is_answered_by_the_policy_and_logged() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, _clock, store, stack) = one_check_done(PATIENT).await;
    // A number past what the script can answer as a TAT, written by something else.
    let key = store.redis_key(&"k");
    let () = server
        .connection()
        .set(&key, records(&[("per-minute", 1e300)]))
        .unwrap();
    for _ in 0..3 {
        let decisions = store.check(&stack, b"k", 1).await.unwrap();
        assert!(decisions.is_allowed(), "the local policy answers");
    }
    assert_eq!(log.count("not TATs"), 1, "once, then held back");
    assert!(log.count("key=\"k\"") == 1, "the line names the key");
    assert!(!store.is_degraded(), "one bad key is not a Redis outage");
}

/// The line of a bad answer names the key quoted, with its bytes escaped: a key that a client
/// chose (a header's value, a path read by a key closure) cannot break the line, forge
/// another, or end the field to forge one of its own.
#[tokio::test]
async fn a_key_named_by_the_log_is_escaped() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, _clock, store, stack) = one_check_done(PATIENT).await;
    let key: &[u8] = b"k\" forged=1\nWARN forged line\x1b[2J\xff";
    let () = server
        .connection()
        .set(store.redis_key(key), records(&[("per-minute", 1e300)]))
        .unwrap();
    assert!(store.check(&stack, key, 1).await.unwrap().is_allowed());
    let text = log.text();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        text.contains(r#"key="k\" forged=1\nWARN forged line\x1b[2J\xff""#),
        "the key's bytes, escaped: {text:?}"
    );
}

#[tokio::test]
async fn a_redis_error_is_logged_with_redis_own_words() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, _clock, store, stack) = one_check_done(PATIENT).await;
    // Redis is up, but refuses every write.
    max_memory(&server, "1");
    let decisions = store.check(&stack, b"a-new-key", 1).await.unwrap();
    assert!(decisions.is_allowed(), "the local policy answers");
    assert_eq!(log.count("store failed"), 1);
    assert_eq!(log.count("OOM"), 1, "the line carries Redis's error");
}

/// A probe queued behind a call whose sender goes with its runtime, and whose own future goes
/// too: no check reaches Redis while a probe is out, so the probe must hand over to the next
/// check, and the store finds Redis again.
#[test]
fn a_probe_left_queued_by_a_runtime_that_shut_down_lets_the_next_check_probe() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let (main, store, stack) = runtime_with_store(
        RedisStore::builder()
            .url(server.url())
            .prefix(unique_prefix("queued-probe"))
            .clock(clock.clone())
            .timeout(Duration::from_millis(100))
            .failures_before_backoff(1)
            .backoff(BACKOFF),
    );
    server.pause(1_500);
    on_a_runtime_that_shuts_down(async {
        // The first goes alone and times out (the back-off begins); the second, queued behind
        // it, then goes out with a sender and waits on the paused server.
        spawn_check(&store, &stack);
        tokio::time::sleep(Duration::from_millis(10)).await;
        spawn_check(&store, &stack);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !store.is_backing_off() {
            assert!(Instant::now() < deadline, "the first call never timed out");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The back-off is over: the next check is the probe, queued behind the sender's call.
        clock.advance(BACKOFF);
        spawn_check(&store, &stack);
        tokio::time::sleep(Duration::from_millis(5)).await;
    });
    // Until the pause ends, each probe times out; then one finds Redis.
    main.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.is_backing_off() {
            assert!(
                Instant::now() < deadline,
                "still backing off: the probe is stuck in its lane"
            );
            clock.advance(BACKOFF);
            let _ = store.check(&stack, b"x", 1).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// A sync caller polls the layer's futures with an executor of its own, outside any Tokio
/// runtime: its checks are still answered by Redis, on the store's runtime, timeout included.
#[test]
fn a_request_polled_outside_any_runtime_is_decided_by_redis() {
    let server = RedisServer::start();
    let (_main, store, _stack) = runtime_with_store(strict_store("outside").url(server.url()));
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .key(Global)
        .store(store)
        .build()
        .unwrap();
    let inner = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    });
    let statuses = std::thread::spawn(move || {
        let svc = layer.layer(inner);
        let first = block_on_without_runtime(svc.clone().oneshot(Request::new(())));
        let second = block_on_without_runtime(svc.oneshot(Request::new(())));
        [first.unwrap().status(), second.unwrap().status()]
    })
    .join()
    .expect("a request polled outside a Tokio runtime panicked");
    // Under `Deny` a failed call would be a 503: both were Redis's answers.
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
}

/// A check polled outside any runtime times out on a connection gone silent: the failure
/// policy answers it, and the next check, on a new connection, is Redis's. The connection is
/// replaced by that next call, on the store's runtime, not where the timeout was seen, where no
/// runtime runs to take the new connection's task.
#[test]
fn a_check_polled_outside_any_runtime_that_times_out_on_a_silent_connection_is_answered() {
    let server = RedisServer::start();
    let proxy = Proxy::to(&server);
    // Long enough for a new connection's first call on a loaded machine.
    let builder = strict_store("outside-silent")
        .url(proxy.url())
        .timeout(Duration::from_secs(1));
    let (_main, store, stack) = runtime_with_store(builder);
    let outcomes = std::thread::spawn(move || {
        let check = || block_on_without_runtime(store.check(&stack, b"k", 1));
        let first = check().map(|decisions| remaining(&decisions));
        proxy.silence_open_connections();
        let second = check().map_err(|error| error.to_string());
        let third = check().map(|decisions| remaining(&decisions));
        (first, second, third)
    })
    .join()
    .expect("a check polled outside a Tokio runtime panicked");
    assert_eq!(outcomes.0.unwrap(), [9]);
    let error = outcomes.1.unwrap_err();
    assert!(error.contains("did not answer"), "{error}");
    assert_eq!(outcomes.2.unwrap(), [8], "the check after is Redis's");
}

/// A check polled on another runtime while the store's runtime is blocked (a test that joins a
/// thread from inside `#[tokio::test]`) is timed where it is polled: the failure policy
/// answers it after the timeout, without waiting for the blocked runtime.
#[test]
fn a_check_polled_elsewhere_while_the_store_runtime_is_blocked_times_out() {
    let server = RedisServer::start();
    let store_runtime = current_thread();
    let builder = strict_store("blocked").timeout(Duration::from_millis(200));
    let (store, stack) = built_on(&store_runtime, builder, &server);
    store_runtime.block_on(async {
        // Blocks the store's runtime until the thread is done.
        let answer = std::thread::spawn(move || {
            current_thread().block_on(async {
                tokio::time::timeout(Duration::from_secs(5), store.check(&stack, b"k", 1)).await
            })
        })
        .join()
        .unwrap();
        let error = answer
            .expect("the check waited on the blocked runtime")
            .expect_err("Redis cannot answer through a blocked runtime");
        assert!(error.is_timeout(), "{error}");
    });
}

/// Two `#[tokio::test]`s sharing one store: the runtime of the first, on which the store was
/// built and which ran its connection, is gone when the second checks. The failure policy
/// answers, with an error that names the runtime, not Redis.
#[test]
fn a_check_on_a_store_whose_runtime_has_shut_down_says_so() {
    let server = RedisServer::start();
    let first_test = current_thread();
    let (store, stack) = built_on(&first_test, strict_store("runtime-gone"), &server);
    drop(first_test);
    let error = current_thread()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(5), store.check(&stack, b"k", 1)).await
        })
        .expect("no answer within 5 s")
        .expect_err("under `Deny` a call that cannot be made is an error")
        .to_string();
    assert!(error.contains("runtime the store was built on"), "{error}");
    assert!(error.contains("#[tokio::test]"), "{error}");
    assert!(!error.contains("Redis could not be reached"), "{error}");
}

/// A store built outside any Tokio runtime would have no runtime to run its connection on:
/// the build says so, where the Redis client would panic.
#[test]
fn a_store_built_outside_any_runtime_is_a_configuration_error() {
    let server = RedisServer::start();
    let builder = strict_store("built-outside").url(server.url());
    let built = std::thread::spawn(move || block_on_without_runtime(builder.build()).err())
        .join()
        .expect("a store built outside a Tokio runtime panicked");
    let message = built.expect("built without a runtime").to_string();
    assert!(message.contains("inside a Tokio runtime"), "{message}");
    assert!(message.contains("enable_all"), "{message}");
}

/// Polls `future` on this thread, outside any Tokio runtime, as a sync caller's executor does;
/// panics after 10 s.
fn block_on_without_runtime<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut future = pin!(future);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return output;
        }
        assert!(Instant::now() < deadline, "no answer within 10 s");
        std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// A runtime for the test's own checks, the one the store is built on, and a store built from
/// `builder` with a stack of 10 per minute.
fn runtime_with_store(
    builder: RedisStoreBuilder,
) -> (tokio::runtime::Runtime, RedisStore, RedisStack) {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, stack) = main.block_on(async {
        let store = builder.build().await.unwrap();
        let stack = store
            .register(&[Policy::new("per-minute", Quota::per_minute(10))])
            .unwrap();
        (store, stack)
    });
    (main, store, stack)
}

/// Runs `checks` on a runtime of their own, which then shuts down with whatever they left.
fn on_a_runtime_that_shuts_down(checks: impl Future<Output = ()>) {
    let other = current_thread();
    other.block_on(checks);
}

/// Spawns a check of `k` whose answer nobody waits for.
fn spawn_check(store: &RedisStore, stack: &RedisStack) {
    let (store, stack) = (store.clone(), stack.clone());
    tokio::spawn(async move {
        let _ = store.check(&stack, b"k", 1).await;
    });
}

/// The lane of `key` among a single server's two lanes (the default `calls_in_flight`).
fn lane_of(store: &RedisStore, key: &str) -> u16 {
    let key = store.redis_key(&key);
    let slot = redis::cluster_routing::Slot::for_key(&key);
    (0..16_384u16)
        .find(|&n| redis::cluster_routing::Slot::new(n) == Some(slot))
        .unwrap()
        % 2
}

/// A current-thread runtime of a sync caller (`runtime.block_on(check)` per call): its
/// `block_on` returns as soon as its own check is answered, and the runtime then waits,
/// undriven, for the caller's next call. A check of another runtime queued behind that call
/// must not wait for it.
#[test]
fn a_check_queued_behind_a_call_of_an_undriven_current_thread_runtime_is_answered() {
    let server = RedisServer::start();
    let (main, store, stack) = runtime_with_store(strict_store("undriven").url(server.url()));
    let sync_caller = current_thread();
    // Made first, so it holds its lane: the lane's call is the sync caller's.
    let first = store.check(&stack, b"k", 1);
    // Queued behind it; its task runs on the main runtime.
    let queued = main.spawn(store.check(&stack, b"k", 1));
    assert!(sync_caller.block_on(first).unwrap().is_allowed());
    // `sync_caller` lives on, not driven, as between two calls of a sync API.
    let answer =
        main.block_on(async { tokio::time::timeout(Duration::from_secs(5), queued).await });
    let answer =
        answer.expect("the queued check waits on a sender spawned on a runtime nobody drives");
    assert!(answer.unwrap().unwrap().is_allowed());
    drop(sync_caller);
}

/// The same with the probe queued there: the store must not back off for good.
#[test]
fn a_probe_queued_behind_a_call_of_an_undriven_current_thread_runtime_is_not_lost() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let (main, store, stack) = runtime_with_store(
        RedisStore::builder()
            .url(server.url())
            .prefix(unique_prefix("undriven-probe"))
            .clock(clock.clone())
            .timeout(Duration::from_millis(100))
            .failures_before_backoff(1)
            .backoff(BACKOFF),
    );
    let sync_caller = current_thread();
    let other = (0..100)
        .map(|i| format!("o{i}"))
        .find(|o| lane_of(&store, o) != lane_of(&store, "k"))
        .unwrap();
    let first = store.check(&stack, b"k", 1);
    // Redis refuses every write: a check of the other lane fails, and the store backs off.
    let oom = |bytes: &str| {
        for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", bytes)] {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query(&mut server.connection())
                .unwrap();
        }
    };
    oom("1");
    let _ = main.block_on(store.check(&stack, other.as_bytes(), 1));
    assert!(store.is_backing_off());
    // The back-off is over: the next check is the probe, queued behind `first`.
    clock.advance(BACKOFF);
    let probe = main.spawn(store.check(&stack, b"k", 1));
    let _ = sync_caller.block_on(first);
    oom("0");
    main.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.is_backing_off() {
            assert!(
                Instant::now() < deadline,
                "still backing off: the probe waits on a sender nobody drives"
            );
            clock.advance(BACKOFF);
            let _ = store.check(&stack, other.as_bytes(), 1).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    drop(probe);
    drop(sync_caller);
}

/// A sync caller (a current-thread runtime driven only inside its `block_on`) makes the first
/// check after Redis restarted: the new connection its call opens must not be left on that
/// runtime, which nobody drives once `block_on` returns, or every later check times out.
#[test]
fn a_reconnection_made_for_a_sync_caller_does_not_strand_the_connection() {
    let mut server = RedisServer::start();
    let (main, store, stack) = runtime_with_store(
        RedisStore::builder()
            .url(server.url())
            .prefix(unique_prefix("stranded"))
            .timeout(Duration::from_millis(200))
            .failures_before_backoff(3),
    );
    assert!(main
        .block_on(store.check(&stack, b"k", 1))
        .unwrap()
        .is_allowed());
    server.restart();
    let sync_caller = current_thread();
    assert!(sync_caller
        .block_on(store.check(&stack, b"k", 1))
        .unwrap()
        .is_allowed());
    assert!(
        !store.is_degraded(),
        "the sync caller's check was not answered by Redis"
    );
    // `sync_caller` lives on, undriven, as between two calls of a sync API.
    for i in 0..3 {
        let key = format!("m{i}");
        let _ = main.block_on(store.check(&stack, key.as_bytes(), 1));
        assert!(
            !store.is_degraded(),
            "check {i} from the store's own runtime failed: the connection is stranded on the \
             sync caller's runtime"
        );
    }
    drop(sync_caller);
}

/// A check of another runtime carried by a call in flight when the store's runtime shuts down
/// is answered by the failure policy (under `Local` a check never fails). The key is spent in
/// Redis first, so that only the policy's fresh local budget admits it.
#[test]
fn a_check_carried_by_a_call_dropped_with_the_store_runtime_gets_the_failure_policy() {
    let server = RedisServer::start();
    let (store_runtime, store, stack) = runtime_with_store(
        RedisStore::builder()
            .url(server.url())
            .prefix(unique_prefix("dropped-call-spent"))
            .timeout(Duration::from_secs(5))
            .deny_cache(false)
            .on_failure(FailurePolicy::Local),
    );
    store_runtime.block_on(async {
        for _ in 0..10 {
            assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
        }
    });
    let checks = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    server.pause(1_000);
    // Made first, it holds the lane; dropped, it hands the check queued behind it to the
    // lane's sender, on the store's runtime, which sends it: the paused server holds the call.
    let first = store.check(&stack, b"k", 1);
    let carried = checks.spawn(store.check(&stack, b"k", 1));
    checks.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    drop(store_runtime);
    let answer = checks
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), carried).await })
        .expect("never answered")
        .unwrap();
    assert!(
        answer.as_ref().is_ok_and(Decisions::is_allowed),
        "Redis, not the failure policy, answered: {:?}",
        answer.map_err(|e| e.to_string())
    );
}

/// Checks queued when the store's runtime shuts down have no sender to carry them: each goes
/// back to its own future, which sends it alone and, Redis being out of reach with that
/// runtime, gets the failure policy. None waits for a sender that will never come.
#[test]
fn checks_queued_when_the_store_runtime_shuts_down_get_the_failure_policy() {
    let server = RedisServer::start();
    let (store_runtime, store, stack) = runtime_with_store(
        RedisStore::builder()
            .url(server.url())
            .prefix(unique_prefix("handed-back"))
            .timeout(Duration::from_secs(5))
            .deny_cache(false)
            .on_failure(FailurePolicy::Local),
    );
    // Spent in Redis: only the failure policy's local budget admits a check now.
    store_runtime
        .block_on(async { while store.check(&stack, b"k", 1).await.unwrap().is_allowed() {} });
    let checks = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    server.pause(2_000);
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let task = checks.spawn(store.check(&stack, b"k", 1));
            // The first holds the lane (its call held by the paused server); the others queue.
            checks.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
            task
        })
        .collect();
    drop(store_runtime);
    for task in tasks {
        let answer = checks
            .block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await })
            .expect("a queued check waits for a sender that will never come")
            .unwrap();
        assert!(
            answer.as_ref().is_ok_and(Decisions::is_allowed),
            "not the failure policy's answer: {:?}",
            answer.map_err(|e| e.to_string())
        );
    }
}

/// Sets `maxmemory` on `server` (with `noeviction`): "1" refuses every write, "0" lifts it.
fn max_memory(server: &RedisServer, bytes: &str) {
    for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", bytes)] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut server.connection())
            .unwrap();
    }
}

/// A check the policy answers outside any outage (its key holds something else than a TAT)
/// belongs to no outage: the next outage's end counts only the checks answered during it.
#[tokio::test]
async fn a_bad_key_answered_between_outages_is_not_counted_in_the_next_one() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let (server, _clock, store, stack) = one_check_done(PATIENT).await;
    let key = store.redis_key(&"bad");
    let () = server
        .connection()
        .set(&key, records(&[("per-minute", 1e300)]))
        .unwrap();
    assert!(store.check(&stack, b"bad", 1).await.unwrap().is_allowed());
    assert!(!store.is_degraded());

    // One failed call, one check answered by the policy, then Redis answers again.
    max_memory(&server, "1");
    assert!(store.check(&stack, b"new", 1).await.unwrap().is_allowed());
    assert!(store.is_degraded());
    max_memory(&server, "0");
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    assert_one_call_outage_ended(&log, &store);
}

/// Checks queued behind a call that fails and begins a back-off skip Redis like any check made
/// during it: the failure policy answers them at once, rather than each batch of them waiting
/// its own timeout on a Redis the store has stopped waiting on.
#[tokio::test]
async fn checks_queued_when_a_backoff_begins_are_answered_by_the_policy_at_once() {
    let server = RedisServer::start();
    let store = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix("queued-backoff"))
        .clock(ManualClock::new())
        .timeout(Duration::from_millis(100))
        .failures_before_backoff(1)
        .backoff(BACKOFF)
        .max_batch(2)
        .calls_in_flight(1)
        .on_failure(FailurePolicy::Deny)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(100))])
        .unwrap();
    server.pause(3_000);
    // The first goes alone and times out, which begins the back-off; the others queued
    // behind it meanwhile.
    let checks: Vec<_> = (0..7).map(|_| store.check(&stack, b"k", 1)).collect();
    let mut errors = Vec::new();
    for check in checks {
        let error = check
            .await
            .expect_err("Deny answers a failure with an error");
        errors.push(if error.is_timeout() {
            "timeout"
        } else if error.is_backing_off() {
            "backing off"
        } else {
            "other"
        });
    }
    assert!(store.is_backing_off());
    assert_eq!(
        errors,
        [["timeout"].as_slice(), &["backing off"; 6]].concat()
    );
}

#[tokio::test]
async fn a_full_local_fallback_names_the_setting_that_raises_its_cap() {
    let (log, _guard) = Captured::install(tracing::Level::WARN);
    let mut server = RedisServer::start();
    let store = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix("full-fallback"))
        .clock(ManualClock::new())
        .timeout(PATIENT)
        .failures_before_backoff(1)
        .backoff(BACKOFF)
        .max_local_keys(1)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(5))])
        .unwrap();
    server.kill();
    // The local fallback tracks `a`, and has no room for `b`, which gets the overflow budget.
    for key in [b"a", b"b"] {
        assert!(store.check(&stack, key, 1).await.unwrap().is_allowed());
    }
    assert!(store.is_backing_off());
    assert_eq!(log.count("full of keys"), 1, "{}", log.text());
    assert_eq!(log.count("max_local_keys"), 1, "{}", log.text());
}

#[tokio::test]
async fn a_redis_out_of_memory_without_eviction_fails_admitted_checks_and_still_denies() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let store = strict_store("oom")
        .url(server.url())
        .deny_cache(false)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("p", Quota::per_hour(1))])
        .unwrap();
    assert!(store.check(&stack, b"spent", 1).await.unwrap().is_allowed());
    // Far below what Redis already uses: every write is refused.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query(&mut server.connection())
        .unwrap();
    let denied = store.check(&stack, b"spent", 1).await.unwrap();
    assert!(!denied.is_allowed());
    let fresh = store.check(&stack, b"fresh", 1).await.unwrap_err();
    let cause = std::error::Error::source(&fresh).unwrap().to_string();
    assert!(cause.contains("OOM"), "{cause}");
}

/// A current-thread runtime with its I/O and time drivers: what a sync caller's `block_on`, or
/// a `#[tokio::test]`, runs on.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The store of `builder` on `server`, built on `runtime` (which runs its connection), and a
/// stack of one policy of 10 a minute.
fn built_on(
    runtime: &tokio::runtime::Runtime,
    builder: RedisStoreBuilder,
    server: &RedisServer,
) -> (RedisStore, RedisStack) {
    runtime.block_on(async {
        let store = builder.url(server.url()).build().await.unwrap();
        let stack = store
            .register(&[Policy::new("per-minute", Quota::per_minute(10))])
            .unwrap();
        (store, stack)
    })
}

/// A cost above a policy's burst never conforms, and Redis says so; with Redis down,
/// `FailurePolicy::Allow` answers it the same, not with an admission whose headers disagree.
#[tokio::test]
async fn allow_answers_a_cost_above_the_burst_as_never_conforming_while_redis_is_down() {
    let mut server = RedisServer::start();
    let store = strict_store("allow-too-costly")
        .url(server.url())
        .on_failure(FailurePolicy::Allow)
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("upload", Quota::per_second(2))])
        .unwrap();
    let by_redis = store.check(&stack, b"alice", 3).await.unwrap();
    assert!(!by_redis.is_allowed() && by_redis.as_slice()[0].never_conforms());
    server.kill();
    // Another key: nothing of it is in the deny cache.
    let by_policy = store.check(&stack, b"bob", 3).await.unwrap();
    assert!(store.is_degraded());
    assert!(
        !by_policy.is_allowed() && by_policy.as_slice()[0].never_conforms(),
        "{by_policy:?}"
    );
    // A cost that fits is admitted, as a key's first check.
    let fits = store.check(&stack, b"bob", 2).await.unwrap();
    assert!(fits.is_allowed());
    assert_eq!(remaining(&fits), [0]);
    assert_eq!(fits.as_slice()[0].reset_after(), Duration::from_secs(1));
}

/// A check made before a back-off began and first polled after it ended goes to Redis as the
/// probe: once it is answered, the next back-off has its own probe, and the store recovers
/// from it too (it is not left answering by the policy for good).
#[tokio::test]
async fn a_check_made_before_a_backoff_that_probes_after_it_lets_the_next_backoff_probe() {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let store = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix("late-probe"))
        .clock(clock.clone())
        .timeout(Duration::from_millis(100))
        .failures_before_backoff(1)
        .backoff(BACKOFF)
        .max_batch(1)
        .on_failure(FailurePolicy::Deny)
        .build()
        .await
        .unwrap();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(100))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    let outage = |store: RedisStore, stack: RedisStack| {
        let server = &server;
        async move {
            server.pause(2_000);
            let error = store.check(&stack, b"k", 1).await.unwrap_err();
            assert!(error.is_timeout(), "{error}");
            server.unpause();
            assert!(store.is_backing_off());
        }
    };
    // Made while Redis answers, polled once the back-off is over.
    let late = store.check(&stack, b"k", 1);
    outage(store.clone(), stack.clone()).await;
    clock.advance(BACKOFF * 2);
    assert!(late.await.unwrap().is_allowed());
    assert!(!store.is_backing_off());

    outage(store.clone(), stack.clone()).await;
    clock.advance(BACKOFF * 2);
    let probe = store.check(&stack, b"k", 1).await;
    assert!(probe.expect("the probe is answered by Redis").is_allowed());
    assert!(!store.is_backing_off());
}

/// A peek that the local failure policy answers reads the local budget and takes nothing from
/// it, as a peek answered by Redis does.
#[tokio::test]
async fn a_peek_answered_by_the_local_policy_takes_nothing_from_its_budget() {
    let (mut server, _clock, store, stack) = one_check_done(PATIENT).await;
    server.kill();
    for _ in 0..5 {
        let peek = store.peek(&stack, b"peeked").await.unwrap();
        assert!(peek.is_allowed());
        assert_eq!(remaining(&peek), [5], "a peek took a cell");
    }
    assert!(store.is_degraded());
    let allowed: Vec<bool> = allowed_in_turn(&store, &stack, b"peeked", 6).await;
    assert_eq!(allowed, [true, true, true, true, true, false]);
}

/// Whether each of `n` checks of `key`, one after another, is allowed.
async fn allowed_in_turn(
    store: &RedisStore,
    stack: &RedisStack,
    key: &[u8],
    n: usize,
) -> Vec<bool> {
    let mut allowed = Vec::with_capacity(n);
    for _ in 0..n {
        allowed.push(store.check(stack, key, 1).await.unwrap().is_allowed());
    }
    allowed
}
