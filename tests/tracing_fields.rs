//! Every outcome is a `tracing` event that a subscriber can filter on by `outcome` and `policy`.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::{ManualClock, MemoryStore, MissingKey, Policy, Quota, RateLimitLayer};

mod common;
use common::Captured;

#[tokio::test]
async fn outcomes_and_policies_are_event_fields() {
    let (captured, _guard) = Captured::install(tracing::Level::TRACE);

    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let layer = RateLimitLayer::builder()
        .store(store)
        .policy(Policy::new("per-second", Quota::per_second(1)))
        .policy(Policy::new("trial", Quota::per_hour(1)).shadow(true))
        .bypass(|req: &Request<()>| req.uri().path() == "/health")
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let request = |path: &str| {
        let mut req = Request::get(path).body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        req
    };
    let text = || captured.text();
    for path in ["/", "/", "/health"] {
        svc.clone().oneshot(request(path)).await.unwrap();
    }
    let seen = text();
    assert!(seen.contains("outcome=\"allowed\""), "{seen}");
    assert!(
        seen.contains("outcome=\"limited\" policy=\"per-second\""),
        "{seen}"
    );
    assert!(seen.contains("outcome=\"bypassed\""), "{seen}");
    assert!(!seen.contains("shadow-limited"), "{seen}");

    // A second later the per-second policy admits again; the shadow policy, spent by the first
    // request, would have limited this one.
    clock.advance(std::time::Duration::from_secs(1));
    let admitted = svc.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(admitted.status(), http::StatusCode::OK);
    let seen = text();
    assert!(
        seen.contains("outcome=\"shadow-limited\" path=\"/\" policy=\"trial\""),
        "{seen}"
    );
}

#[tokio::test]
async fn a_flood_of_requests_costing_more_than_the_burst_logs_a_line_a_second() {
    let (captured, _guard) = Captured::install(tracing::Level::DEBUG);

    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(2)))
        .cost_by(|_: &Request<()>| 3)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        let response = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }
    let seconds = started.elapsed().as_secs();
    let seen = captured.text();
    let lines = seen.matches("outcome=\"cost-too-large\"").count();
    assert!(
        (1..=1 + seconds as usize).contains(&lines),
        "{lines} lines in {seconds} s:\n{seen}"
    );
}

#[tokio::test]
async fn each_shadow_policy_that_would_have_limited_is_logged() {
    let (captured, _guard) = Captured::install(tracing::Level::INFO);

    let layer = RateLimitLayer::builder()
        .policy(Policy::new("trial-minute", Quota::per_minute(1)).shadow(true))
        .policy(Policy::new("trial-hour", Quota::per_hour(1)).shadow(true))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    // Two requests: the second is over both policies, and the first line of each throttle
    // is let through however long the requests take.
    for _ in 0..2 {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        let response = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    let seen = captured.text();
    for policy in ["trial-minute", "trial-hour"] {
        assert_eq!(
            captured.count(&format!("policy=\"{policy}\"")),
            1,
            "{policy}:\n{seen}"
        );
    }
}

#[tokio::test]
async fn a_request_let_through_without_a_key_is_a_trace_event() {
    let (captured, _guard) = Captured::install(tracing::Level::TRACE);

    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(1)))
        .on_missing_key(tower_ratelimit::MissingKey::Allow)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = svc
        .oneshot(Request::get("/no-peer").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let seen = captured.text();
    assert!(
        seen.contains("outcome=\"missing-key\" path=\"/no-peer\""),
        "{seen}"
    );
}

/// A shadow policy in two tiers is throttled in each, a line a second: each line names its
/// tier, so the two lines and their counts can be told apart.
#[tokio::test]
async fn a_shadow_policy_of_two_tiers_is_logged_with_the_tier() {
    let (captured, _guard) = Captured::install(tracing::Level::INFO);

    let trial = Policy::new("trial", Quota::per_hour(1)).shadow(true);
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .policy(trial.clone())
        .tier("pro", [Policy::new("pro", Quota::per_minute(100)), trial])
        .select_tier(|req: &Request<()>| req.headers().contains_key("x-pro").then_some("pro"))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    // The first request spends the trial's one cell; the other four of each tier would each be
    // limited by it: one line for each tier, the three others held back.
    let pro = [false; 5].into_iter().chain([true; 4]);
    for pro in pro {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        if pro {
            req.headers_mut().insert("x-pro", "1".parse().unwrap());
        }
        let response = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    let seen = captured.text();
    for tier in ["default", "pro"] {
        assert_eq!(
            captured.count(&format!("policy=\"trial\" tier=\"{tier}\"")),
            1,
            "{tier}:\n{seen}"
        );
    }
}

/// A shadow policy whose burst a request's cost exceeds would never admit it: its line says
/// so, rather than giving a wait of hundreds of millions of years.
#[tokio::test]
async fn a_shadow_policy_that_a_cost_can_never_fit_is_logged_as_such() {
    let (captured, _guard) = Captured::install(tracing::Level::INFO);

    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-second", Quota::per_second(100)))
        .policy(Policy::new("trial", Quota::per_second(5)).shadow(true))
        .cost_by(|_: &Request<()>| 10)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let mut req = Request::get("/batch").body(()).unwrap();
    req.extensions_mut()
        .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(layer.shadow_limited("trial"), 1);
    let seen = captured.text();
    assert_eq!(captured.count("outcome=\"shadow-limited\""), 1, "{seen}");
    assert!(seen.contains("policy=\"trial\""), "{seen}");
    assert!(seen.contains("burst=5"), "{seen}");
    assert!(seen.contains("never"), "{seen}");
    assert!(!seen.contains("retry_after_ms"), "{seen}");
}

/// A request without a key on a layer that answers it 401 is the client's doing: a rejection
/// at `debug`, without advice on setting the layer up. The default 500 is a server set up
/// wrong: a warning that says what to fix.
#[tokio::test]
async fn a_missing_key_answered_as_the_clients_doing_is_no_warning() {
    let (captured, _guard) = Captured::install(tracing::Level::DEBUG);

    let layer = |missing| {
        RateLimitLayer::builder()
            .policy(Policy::new("per-second", Quota::per_second(1)))
            .key(tower_ratelimit::Header::new("x-api-key"))
            .on_missing_key(missing)
            .build()
            .unwrap()
            .layer(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }))
    };
    let unauthorized = layer(MissingKey::Reject(http::StatusCode::UNAUTHORIZED));
    let response = unauthorized
        .oneshot(Request::get("/anonymous").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
    let seen = captured.text();
    assert_eq!(captured.count("outcome=\"missing-key\""), 1, "{seen}");
    assert!(seen.contains("DEBUG"), "{seen}");
    assert!(!seen.contains("WARN"), "{seen}");
    assert!(!seen.contains("on_missing_key"), "{seen}");

    let server_error = layer(MissingKey::default());
    let response = server_error
        .oneshot(Request::get("/anonymous").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    let seen = captured.text();
    assert_eq!(captured.count("WARN"), 1, "{seen}");
    assert!(seen.contains("on_missing_key"), "{seen}");
}

/// A wait shorter than a millisecond is logged as 1 ms, rounded up as `grpc-retry-pushback-ms`
/// is: a limited request never reads as one to retry at once.
#[tokio::test]
async fn a_wait_below_a_millisecond_is_logged_rounded_up() {
    let (captured, _guard) = Captured::install(tracing::Level::DEBUG);

    // One cell, back every 500 µs: the second request of an instant waits 500 µs.
    let quota = Quota::per_second(2_000).allow_burst(1);
    for policy in [
        Policy::new("fast", quota),
        Policy::new("trial", quota).shadow(true),
    ] {
        let store = MemoryStore::builder()
            .clock(ManualClock::new())
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .store(store)
            .policy(policy)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        for _ in 0..2 {
            let mut req = Request::get("/").body(()).unwrap();
            req.extensions_mut()
                .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
            svc.clone().oneshot(req).await.unwrap();
        }
    }
    let seen = captured.text();
    assert!(seen.contains("outcome=\"limited\""), "{seen}");
    assert!(seen.contains("outcome=\"shadow-limited\""), "{seen}");
    assert!(!seen.contains("retry_after_ms=0"), "{seen}");
    assert_eq!(captured.count("retry_after_ms=1 "), 2, "{seen}");
}

/// `default` is the name of the tier of `.quota` and `.policy`: a selector that names it (a
/// plan read from a configuration, say) gets that tier without a warning; a name the layer does
/// not have still gets the default tier with one.
#[tokio::test]
async fn a_selector_naming_the_default_tier_gets_it_without_a_warning() {
    let (captured, _guard) = Captured::install(tracing::Level::WARN);

    let layer = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(1)))
        .tier("pro", [Policy::new("pro", Quota::per_minute(100))])
        .select_tier(|req: &Request<()>| {
            let tier = req.headers().get("x-tier")?.to_str().ok()?;
            Some(tier.to_owned())
        })
        .headers_on_success(true)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let request = |tier: &str| {
        let mut req = Request::get("/").header("x-tier", tier).body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        req
    };
    let response = svc.clone().oneshot(request("default")).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-policy"], r#""free";q=1;w=60"#);
    let seen = captured.text();
    assert!(!seen.contains("WARN"), "{seen}");

    let response = svc.clone().oneshot(request("gold")).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["ratelimit-policy"], r#""free";q=1;w=60"#);
    assert_eq!(captured.count("tier=\"gold\""), 1, "{}", captured.text());
}

/// Each throttled line says how many like it were held back since the one before: a flood of
/// limited requests, of requests the store could not decide and of requests without a key, a
/// line for each at first, then, once their intervals (1 s, 10 s and 10 s) have passed, a line
/// for each that counts the rest.
#[tokio::test]
async fn a_throttled_line_counts_the_lines_held_back_before_it() {
    let (captured, _guard) = Captured::install(tracing::Level::DEBUG);

    let inner = || {
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    };
    let limited = RateLimitLayer::builder()
        .policy(Policy::new("per-hour", Quota::per_hour(1)))
        .build()
        .unwrap()
        .layer(inner());
    let failing = RateLimitLayer::builder()
        .policy(Policy::new("on-a-down-store", Quota::per_hour(1)))
        .store(common::DownStore)
        .build()
        .unwrap()
        .layer(inner());
    let keyless = RateLimitLayer::builder()
        .policy(Policy::new("per-api-key", Quota::per_hour(1)))
        .key(tower_ratelimit::Header::new("x-api-key"))
        .build()
        .unwrap()
        .layer(inner());
    let from_peer = || {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        req
    };
    // `n` requests to each: the first to `limited` is served, the others are not.
    let flood = async |n: usize| {
        for _ in 0..n {
            limited.clone().oneshot(from_peer()).await.unwrap();
            failing.clone().oneshot(from_peer()).await.unwrap();
            keyless.clone().oneshot(from_peer()).await.unwrap();
        }
    };
    flood(6).await;
    let seen = captured.text();
    assert_eq!(captured.count("outcome=\"limited\""), 1, "{seen}");
    assert_eq!(captured.count("outcome=\"store-error\""), 1, "{seen}");
    assert_eq!(captured.count("outcome=\"missing-key\""), 1, "{seen}");
    assert!(
        seen.contains("outcome=\"store-error\" tier=\"default\" error=connection refused"),
        "{seen}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(10_100)).await;
    flood(1).await;
    let seen = captured.text();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 6, "{seen}");
    // The limited requests held back: the 5 of 6 after the served one, less the one logged.
    let held_back = |outcome: &str, field: &str| {
        let line = lines[3..]
            .iter()
            .find(|line| line.contains(&format!("outcome=\"{outcome}\"")))
            .unwrap_or_else(|| panic!("no second {outcome} line: {seen}"));
        let at = line.find(&format!("{field}=")).expect(field) + field.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(held_back("limited", "similar_rejections_not_logged"), 4);
    assert_eq!(held_back("store-error", "similar_errors_not_logged"), 5);
    assert_eq!(held_back("missing-key", "similar_requests_not_logged"), 5);
}
