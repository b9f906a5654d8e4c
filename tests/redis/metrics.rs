//! The metrics of a `RedisStore` failing under a layer (feature `metrics`): the failure policy's
//! answers counted as `fallback_allowed` and `fallback_limited`, a `Deny` answer as
//! `store_error`, the degraded gauge raised for the back-off and lowered when Redis answers
//! again, and only real round trips in the latency histogram.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_ratelimit::{
    FailurePolicy, Global, ManualClock, Policy, Quota, RateLimitLayer, RedisStore,
    RedisStoreBuilder, Store,
};

use crate::support::{unique_prefix, RedisServer};

/// A layer of one policy, 2 per minute for everyone, on a store of `server` that fails over to
/// `policy` and backs off after 3 failures; both registered with a recorder of their own.
async fn limited(
    server: &RedisServer,
    clock: &ManualClock,
    policy: FailurePolicy,
) -> (
    impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible> + Clone,
    RedisStore,
    PrometheusHandle,
) {
    let recorder = PrometheusBuilder::new().build_recorder();
    // A test runtime has one thread: the thread's recorder gets every handle registered while
    // the guard lives.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let store = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix("metrics"))
        .clock(clock.clone())
        .timeout(Duration::from_millis(100))
        .failures_before_backoff(3)
        .backoff(Duration::from_secs(1))
        .on_failure(policy)
        .build()
        .await
        .unwrap();
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-minute", Quota::per_minute(2)))
        .key(Global)
        .store(store.clone())
        .build()
        .unwrap();
    let inner = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    (layer.layer(inner), store, recorder.handle())
}

/// The value of `series`, written as the Prometheus text format writes it.
fn value(prometheus: &PrometheusHandle, series: &str) -> f64 {
    let text = prometheus.render();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line.parse().unwrap()
}

fn decisions(outcome: &str) -> String {
    format!("ratelimit_decisions_total{{policy=\"per-minute\",outcome=\"{outcome}\"}}")
}

const DEGRADED: &str = "ratelimit_redis_degraded";
const WAITED: &str = "ratelimit_store_latency_seconds_count{store=\"redis\"}";

async fn statuses<S, B>(svc: &S, n: usize) -> Vec<StatusCode>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
{
    let mut seen = Vec::new();
    for _ in 0..n {
        let response = svc.clone().oneshot(Request::new(())).await.unwrap();
        seen.push(response.status());
    }
    seen
}

#[tokio::test]
async fn the_local_failure_policy_counts_as_fallback_and_the_backoff_as_degraded() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new();
    let (svc, store, prometheus) = limited(&server, &clock, FailurePolicy::Local).await;
    assert_eq!(statuses(&svc, 1).await, [StatusCode::OK]);
    assert_eq!(value(&prometheus, &decisions("allowed")), 1.0);
    assert_eq!(value(&prometheus, DEGRADED), 0.0);

    server.kill();
    // Three failed round trips, answered by a fresh local budget of 2; then the back-off, whose
    // answers wait on nothing.
    let limited = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(
        statuses(&svc, 3).await,
        [StatusCode::OK, StatusCode::OK, limited]
    );
    assert!(store.is_backing_off());
    assert_eq!(statuses(&svc, 2).await, [limited, limited]);
    assert_eq!(value(&prometheus, &decisions("fallback_allowed")), 2.0);
    assert_eq!(value(&prometheus, &decisions("fallback_limited")), 3.0);
    assert_eq!(value(&prometheus, &decisions("allowed")), 1.0);
    assert_eq!(value(&prometheus, &decisions("limited")), 0.0);
    assert_eq!(value(&prometheus, &decisions("store_error")), 0.0);
    assert_eq!(value(&prometheus, DEGRADED), 1.0);
    assert_eq!(value(&prometheus, WAITED), 4.0, "1 answer and 3 failures");

    server.restart();
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(2))])
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.is_backing_off() {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never came back"
        );
        clock.advance(Duration::from_secs(1));
        let _ = store.check(&stack, b"probe", 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(value(&prometheus, DEGRADED), 0.0);
    // The restarted Redis is empty: the budget is whole again there.
    assert_eq!(statuses(&svc, 1).await, [StatusCode::OK]);
    assert_eq!(value(&prometheus, &decisions("allowed")), 2.0);
}

#[tokio::test]
async fn a_deny_failure_policy_counts_store_errors() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new();
    let (svc, _store, prometheus) = limited(&server, &clock, FailurePolicy::Deny).await;
    assert_eq!(statuses(&svc, 1).await, [StatusCode::OK]);
    server.kill();
    assert_eq!(
        statuses(&svc, 2).await,
        [StatusCode::SERVICE_UNAVAILABLE; 2]
    );
    assert_eq!(value(&prometheus, &decisions("store_error")), 2.0);
    assert_eq!(value(&prometheus, &decisions("fallback_allowed")), 0.0);
    assert_eq!(value(&prometheus, &decisions("allowed")), 1.0);
    assert_eq!(
        value(&prometheus, DEGRADED),
        0.0,
        "2 failures, no back-off yet"
    );
}

/// A store of `server` on a manual clock, with a timeout of 5 s and the `Deny` failure policy,
/// set further by `settings`; its metrics registered with a recorder of its own.
async fn recorded(
    server: &RedisServer,
    name: &str,
    settings: impl FnOnce(RedisStoreBuilder) -> RedisStoreBuilder,
) -> (RedisStore, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let builder = RedisStore::builder()
        .url(server.url())
        .prefix(unique_prefix(name))
        .clock(ManualClock::new())
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Deny);
    let store = {
        let _guard = metrics::set_default_local_recorder(&recorder);
        settings(builder).build().await.unwrap()
    };
    (store, recorder.handle())
}

/// Checks that queue behind a call in flight record how long they waited in the queue; the
/// check sent alone waits in none, and the latency histogram counts the two calls, not the
/// queue.
#[tokio::test]
async fn checks_queued_behind_a_held_call_record_their_wait_in_the_queue() {
    let server = RedisServer::start();
    let (store, prometheus) = recorded(&server, "queue-wait", |b| b.calls_in_flight(1)).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(100))])
        .unwrap();
    // Redis holds the first check's call for 300 ms; the four made meanwhile queue behind it
    // and go together in the next call once it is answered.
    server.pause(300);
    let held = std::time::Instant::now();
    let checks: Vec<_> = (0..5u8).map(|i| store.check(&stack, &[i], 1)).collect();
    for check in checks {
        assert!(check.await.unwrap().is_allowed());
    }
    let all = held.elapsed().as_secs_f64();
    let queued = "ratelimit_store_queue_wait_seconds_count{store=\"redis\"}";
    assert_eq!(value(&prometheus, queued), 4.0, "the four that queued");
    let waited = value(
        &prometheus,
        "ratelimit_store_queue_wait_seconds_sum{store=\"redis\"}",
    );
    // Each waited from its check to the end of the pause (less the time the server took to
    // take the pause) and no longer than the whole test.
    assert!(
        waited >= 4.0 * 0.1 && waited <= 4.0 * all,
        "the four waited {waited} s in all, the test took {all} s"
    );
    assert_eq!(value(&prometheus, WAITED), 2.0, "two calls");
}

/// Checks queued behind a call that fails and begins a back-off are answered by the failure
/// policy without going to Redis: their wait in the queue is recorded all the same.
#[tokio::test]
async fn checks_a_back_off_answers_from_the_queue_record_their_wait_there() {
    let server = RedisServer::start();
    let (store, prometheus) = recorded(&server, "queue-wait-backoff", |b| {
        b.calls_in_flight(1)
            .timeout(Duration::from_millis(200))
            .failures_before_backoff(1)
    })
    .await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(100))])
        .unwrap();
    // The first check's call times out and begins the back-off (on a clock that never
    // reaches its end, so no probe goes); the four queued behind it skip Redis.
    server.pause(1_000);
    let checks: Vec<_> = (0..5u8).map(|i| store.check(&stack, &[i], 1)).collect();
    for check in checks {
        check
            .await
            .expect_err("answered by the `Deny` failure policy");
    }
    assert!(store.is_backing_off());
    let queued = "ratelimit_store_queue_wait_seconds_count{store=\"redis\"}";
    assert_eq!(value(&prometheus, queued), 4.0, "the four that queued");
    let waited = value(
        &prometheus,
        "ratelimit_store_queue_wait_seconds_sum{store=\"redis\"}",
    );
    assert!(waited >= 4.0 * 0.15, "the four waited {waited} s in all");
    assert_eq!(value(&prometheus, WAITED), 1.0, "one call");
}

/// A call sent alone is its request's future: a request that goes away while Redis holds the
/// call (a client that hangs up, an outer timeout) still leaves a sample of the time it waited,
/// so that the slowest calls are not the ones left out.
#[tokio::test]
async fn a_call_whose_request_went_away_is_recorded_with_the_time_it_waited() {
    let server = RedisServer::start();
    let (store, prometheus) = recorded(&server, "latency-cancelled", |b| b).await;
    let stack = store
        .register(&[Policy::new("per-minute", Quota::per_minute(100))])
        .unwrap();
    assert!(store.check(&stack, b"k", 1).await.unwrap().is_allowed());
    assert_eq!(value(&prometheus, WAITED), 1.0);
    let sum = "ratelimit_store_latency_seconds_sum{store=\"redis\"}";
    let before = value(&prometheus, sum);

    server.pause(1_000);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), store.check(&stack, b"k", 1));
    assert!(gave_up.await.is_err(), "Redis is paused");
    assert_eq!(value(&prometheus, WAITED), 2.0, "the call the request left");
    let waited = value(&prometheus, sum) - before;
    assert!(
        (0.2..1.0).contains(&waited),
        "waited {waited} s: the request's 200 ms, not the pause"
    );
}
