//! Named policies through a real axum `Router`: budgets kept apart and shared by name, stacks
//! decided all-or-nothing, tiers, costs, shadow mode, bypass, and the `RateLimit` headers of
//! several policies read back by a structured-field parser.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_ratelimit::{
    AllowIps, CostTooLarge, ForwardedIp, Header, ManualClock, MemoryStore, MissingKey, Policy,
    Quota, RateLimitLayer, RateLimited,
};

mod common;
use common::{header, manual_store};

const PEER: &str = "198.51.100.7:1234";

/// A GET of `uri` from `peer`, which the layer reads from axum's connect info.
fn get_from(uri: &str, peer: &str) -> Request {
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn send(app: &Router, req: Request) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

async fn status(app: &Router, uri: &str) -> StatusCode {
    send(app, get_from(uri, PEER)).await.status()
}

fn limited(response: &Response) -> &RateLimited {
    response
        .extensions()
        .get::<RateLimited>()
        .unwrap_or_else(|| panic!("not limited: {}", response.status()))
}

async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A peer-IP layer checking `policies` on `store`.
fn layer(
    policies: impl IntoIterator<Item = Policy>,
    store: &MemoryStore<ManualClock>,
) -> RateLimitLayer<tower_ratelimit::PeerIp, MemoryStore<ManualClock>> {
    policies
        .into_iter()
        .fold(RateLimitLayer::builder(), |builder, policy| {
            builder.policy(policy)
        })
        .headers_on_success(true)
        .store(store.clone())
        .build()
        .expect("a valid layer")
}

#[tokio::test]
async fn route_layers_sharing_a_store_never_spend_each_other_s_policies() {
    let (store, _clock) = manual_store();
    let a = layer([Policy::new("a", Quota::per_second(1))], &store);
    let b = layer([Policy::new("b", Quota::per_second(100))], &store);
    let app = Router::new()
        .route("/a", get(|| async { "a" }).route_layer(a))
        .route("/b", get(|| async { "b" }).route_layer(b));

    for _ in 0..50 {
        assert_eq!(status(&app, "/b").await, StatusCode::OK);
    }
    let first_a = send(&app, get_from("/a", PEER)).await;
    assert_eq!(
        first_a.status(),
        StatusCode::OK,
        "requests to /b spent the budget of /a"
    );
    assert_eq!(header(&first_a, "ratelimit"), "\"a\";r=0;t=1");
    let second_a = send(&app, get_from("/a", PEER)).await;
    assert_eq!(second_a.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited(&second_a).policy().name(), "a");

    // /b still has exactly the half of its burst that it did not spend.
    for _ in 0..50 {
        assert_eq!(status(&app, "/b").await, StatusCode::OK);
    }
    let last_b = send(&app, get_from("/b", PEER)).await;
    assert_eq!(last_b.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited(&last_b).policy().name(), "b");
    assert_eq!(store.len(), 1, "one peer is one key");
}

#[tokio::test]
async fn one_policy_named_by_two_layers_of_one_store_is_one_budget() {
    let (store, clock) = manual_store();
    let shared = Policy::new("shared", Quota::per_minute(3));
    let x = layer([shared.clone()], &store);
    let y = layer([shared], &store);
    let app = Router::new()
        .route("/x", get(|| async { "x" }).route_layer(x))
        .route("/y", get(|| async { "y" }).route_layer(y));

    let mut statuses = Vec::new();
    for path in ["/x", "/y", "/x", "/y"] {
        statuses.push(status(&app, path).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(status(&app, "/x").await, StatusCode::TOO_MANY_REQUESTS);
    clock.advance(Duration::from_secs(20));
    assert_eq!(status(&app, "/y").await, StatusCode::OK);
    assert_eq!(status(&app, "/x").await, StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn one_policy_name_with_two_quotas_on_one_store_is_a_build_error_naming_it() {
    let (store, _clock) = manual_store();
    let first = RateLimitLayer::builder()
        .policy(Policy::new("search", Quota::per_second(10)))
        .store(store.clone())
        .build();
    assert!(first.is_ok());
    let err = RateLimitLayer::builder()
        .policy(Policy::new("search", Quota::per_second(20)))
        .store(store.clone())
        .build()
        .expect_err("the second quota was accepted");
    let message = err.to_string();
    assert!(message.contains("\"search\""), "{message}");
    assert!(
        message.contains("10/s") && message.contains("20/s"),
        "{message}"
    );

    // The same in the tiers of one layer.
    let err = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_minute(10)))
        .tier("pro", [Policy::new("api", Quota::per_minute(100))])
        .select_tier(|_: &Request<()>| Some("pro"))
        .store(store.clone())
        .build()
        .expect_err("one name with two quotas in one layer was accepted");
    let message = err.to_string();
    assert!(
        message.contains(
            "policy \"api\" two quotas, 10/min in tier \"default\" and 100/min in tier \"pro\""
        ),
        "{message}"
    );
    // Refused before the store registered either quota.
    assert!(RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_minute(100)))
        .store(store)
        .build()
        .is_ok());

    // Another store is another namespace.
    let (other, _clock) = manual_store();
    assert!(RateLimitLayer::builder()
        .policy(Policy::new("search", Quota::per_second(20)))
        .store(other)
        .build()
        .is_ok());
}

#[test]
fn tier_names_that_cannot_be_told_apart_are_build_errors_naming_them() {
    let err = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .tier("default", [Policy::new("pro", Quota::per_minute(100))])
        .build()
        .expect_err("a tier named like the default tier was accepted");
    let message = err.to_string();
    assert!(message.contains("\"default\""), "{message}");
    assert!(message.contains("another name"), "{message}");

    let err = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .tier("pro", [Policy::new("pro", Quota::per_minute(100))])
        .tier("pro", [Policy::new("team", Quota::per_minute(1000))])
        .build()
        .expect_err("two tiers of one name were accepted");
    assert!(err.to_string().contains("two tiers named \"pro\""), "{err}");
}

#[test]
fn tier_names_follow_the_rule_of_policy_names() {
    // Empty, control characters (a tier's name is a field of the log lines), too long.
    for name in [String::new(), "pro\nplan".into(), "p".repeat(65)] {
        let err = RateLimitLayer::builder()
            .policy(Policy::new("free", Quota::per_minute(10)))
            .tier(name.clone(), [Policy::new("pro", Quota::per_minute(100))])
            .select_tier(|_: &http::Request<()>| Some("pro"))
            .build()
            .expect_err("a tier name no policy could have was accepted");
        let message = err.to_string();
        assert!(
            message.contains(&format!("tier name {name:?} cannot be used")),
            "{message}"
        );
    }
    assert!(RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .tier("pro plan", [Policy::new("pro", Quota::per_minute(100))])
        .select_tier(|_: &http::Request<()>| Some("pro plan"))
        .build()
        .is_ok());
}

#[test]
fn tiers_without_a_tier_selector_are_a_build_error() {
    let err = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .tier("pro", [Policy::new("pro", Quota::per_minute(100))])
        .build()
        .expect_err("tiers no request could ever get were accepted");
    let message = err.to_string();
    assert!(message.contains("[\"pro\"]"), "{message}");
    assert!(message.contains(".select_tier("), "{message}");

    // A selector without tiers is accepted: the names it gives are logged as unknown.
    assert!(RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(10)))
        .select_tier(|_: &Request<()>| Some("pro"))
        .build()
        .is_ok());
}

/// A layer of tiers alone has policies, but none for the requests that its selector puts in no
/// tier: the error says which tier lacks them, rather than that the layer has none.
#[test]
fn tiers_without_a_default_stack_are_a_build_error_naming_the_default_tier() {
    let err = RateLimitLayer::builder()
        .tier("free", [Policy::new("free", Quota::per_minute(10))])
        .tier("pro", [Policy::new("pro", Quota::per_minute(100))])
        .select_tier(|req: &Request<()>| req.headers().contains_key("x-pro").then_some("pro"))
        .build()
        .expect_err("a layer without a default stack was accepted");
    let message = err.to_string();
    assert!(message.contains("default tier"), "{message}");
    assert!(message.contains("[\"free\", \"pro\"]"), "{message}");
    assert!(message.contains(".policy("), "{message}");
    assert!(!message.contains("has no policy"), "{message}");
}

/// One name with one quota in two tiers of one layer is one budget, as across layers.
#[tokio::test]
async fn two_tiers_naming_one_policy_share_its_budget() {
    let (shared_store, _clock) = manual_store();
    let hourly = Policy::new("per-hour", Quota::per_hour(1));
    let tiers = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_second(10)))
        .policy(hourly.clone())
        .tier("pro", [Policy::new("pro", Quota::per_second(100)), hourly])
        .select_tier(|req: &Request| req.headers().contains_key("x-pro").then_some("pro"))
        .store(shared_store)
        .build()
        .expect("two tiers may share a policy");
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tiers);
    assert_eq!(status(&app, "/").await, StatusCode::OK);
    let mut pro = get_from("/", PEER);
    pro.headers_mut()
        .insert("x-pro", http::HeaderValue::from_static("1"));
    assert_eq!(
        send(&app, pro).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the free tier spent the shared hourly budget"
    );
}

/// A stack of 2/s with a burst of 4 and 10/min: the per-second policy refills in 2 s, the
/// per-minute one in 60 s.
fn per_second_and_per_minute(store: &MemoryStore<ManualClock>) -> Router {
    let stack = layer(
        [
            Policy::new("per-second", Quota::per_second(2).allow_burst(4)),
            Policy::new("per-minute", Quota::per_minute(10)),
        ],
        store,
    );
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(stack)
}

#[tokio::test]
async fn a_stack_admits_only_what_every_policy_admits_and_a_denial_takes_nothing() {
    let (store, clock) = manual_store();
    let app = per_second_and_per_minute(&store);
    let request = || send(&app, get_from("/", PEER));
    let advance = |ms| clock.advance(Duration::from_millis(ms));

    for _ in 0..4 {
        assert_eq!(request().await.status(), StatusCode::OK);
    }
    // Denied by the per-second policy alone: the per-minute one keeps its 6.
    for _ in 0..3 {
        let denied = request().await;
        assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            header(&denied, "ratelimit"),
            "\"per-second\";r=0;t=2, \"per-minute\";r=6;t=24"
        );
        assert_eq!(header(&denied, "retry-after"), "1");
        assert_eq!(limited(&denied).policy().name(), "per-second");
        assert_eq!(limited(&denied).retry_after(), Duration::from_millis(500));
    }

    // Spend the per-minute policy down to nothing: 4 at 2 s, 1 at 2.5 s, 1 at 3 s.
    advance(2_000);
    for _ in 0..4 {
        assert_eq!(request().await.status(), StatusCode::OK);
    }
    advance(500);
    assert_eq!(request().await.status(), StatusCode::OK);
    advance(500);
    let last = request().await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(
        header(&last, "ratelimit"),
        "\"per-second\";r=0;t=2, \"per-minute\";r=0;t=57"
    );

    // Both deny: the wait is the longer one, 3 s, not the per-second policy's 0.5 s.
    let both = request().await;
    assert_eq!(both.status(), StatusCode::TOO_MANY_REQUESTS);
    let info = limited(&both);
    assert!(info.decisions().as_slice().iter().all(|d| !d.is_allowed()));
    assert_eq!(
        info.decisions().as_slice()[0].retry_after(),
        Duration::from_millis(500)
    );
    assert_eq!(info.retry_after(), Duration::from_secs(3));
    assert_eq!(info.policy().name(), "per-minute");
    assert_eq!(header(&both, "retry-after"), "3");

    // Half a second on, the per-second policy has a cell again; denials by the per-minute
    // policy must not take it.
    advance(500);
    for _ in 0..3 {
        let denied = request().await;
        assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            header(&denied, "ratelimit"),
            "\"per-second\";r=1;t=2, \"per-minute\";r=0;t=57"
        );
        assert_eq!(limited(&denied).retry_after(), Duration::from_millis(2_500));
        assert_eq!(header(&denied, "retry-after"), "3");
        assert_eq!(limited(&denied).policy().name(), "per-minute");
    }

    // After the wait both admit, and the per-second policy has lost only this one cell.
    advance(2_500);
    let admitted = request().await;
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(
        header(&admitted, "ratelimit"),
        "\"per-second\";r=3;t=1, \"per-minute\";r=0;t=60"
    );
}

#[tokio::test]
async fn tiers_give_pro_keys_the_larger_quota_and_unknown_tiers_the_default() {
    let (store, _clock) = manual_store();
    let tiers = RateLimitLayer::builder()
        .policy(Policy::new("free", Quota::per_minute(2)))
        .tier("pro", [Policy::new("pro", Quota::per_minute(5))])
        .select_tier(|req: &Request| {
            let key = req.headers().get("x-api-key")?.as_bytes();
            if key.starts_with(b"pro-") {
                Some("pro")
            } else if key.starts_with(b"gold-") {
                Some("gold")
            } else {
                None
            }
        })
        .key(Header::new("x-api-key"))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tiers);
    let with_key = |key: &'static str| {
        Request::get("/")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap()
    };
    let admitted = |key: &'static str| {
        let app = app.clone();
        async move {
            let mut n = 0;
            loop {
                let response = send(&app, with_key(key)).await;
                if response.status() != StatusCode::OK {
                    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                    let name = limited(&response).policy().name().to_owned();
                    assert_eq!(
                        header(&response, "ratelimit-policy"),
                        format!("\"{name}\";q={n};w=60")
                    );
                    return (n, name);
                }
                n += 1;
                assert!(n <= 100, "never limited");
            }
        }
    };
    assert_eq!(admitted("pro-alice").await, (5, "pro".to_owned()));
    assert_eq!(admitted("free-bob").await, (2, "free".to_owned()));
    assert_eq!(
        admitted("gold-carol").await,
        (2, "free".to_owned()),
        "a tier the layer does not have means the default tier"
    );
    assert_eq!(admitted("pro-dave").await, (5, "pro".to_owned()));
    assert_eq!(store.len(), 4);
}

/// The plan an authentication layer before ours put in the request's extensions.
#[derive(Clone)]
struct Plan(std::sync::Arc<str>);

#[tokio::test]
async fn tiers_named_at_run_time_are_selected_by_names_that_are_not_static() {
    let (store, _clock) = manual_store();
    // Names and quotas as a configuration file would give them.
    let plans: Vec<(String, u32)> = vec![("pro".into(), 4), ("partner".into(), 6)];
    let builder = plans.iter().fold(
        RateLimitLayer::builder().policy(Policy::new("free", Quota::per_minute(2))),
        |builder, (plan, per_minute)| {
            builder.tier(
                plan.as_str(),
                [Policy::new(plan.as_str(), Quota::per_minute(*per_minute))],
            )
        },
    );
    let tiers = builder
        .select_tier(|req: &Request| req.extensions().get::<Plan>().map(|plan| plan.0.clone()))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tiers);
    for (peer, plan, admitted) in [
        ("198.51.100.1:1", Some("pro"), 4),
        ("198.51.100.2:1", Some("partner"), 6),
        ("198.51.100.3:1", None, 2),
    ] {
        let mut n = 0;
        loop {
            let mut req = get_from("/", peer);
            if let Some(plan) = plan {
                req.extensions_mut().insert(Plan(plan.into()));
            }
            let response = send(&app, req).await;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let expected = plan.unwrap_or("free");
                assert_eq!(limited(&response).policy().name(), expected);
                break;
            }
            assert_eq!(response.status(), StatusCode::OK);
            n += 1;
            assert!(n <= 100, "never limited");
        }
        assert_eq!(n, admitted, "{plan:?}");
    }
}

/// The cost of a request: the `cost` query parameter, 1 without one.
fn cost_from_query(req: &Request) -> u32 {
    req.uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("cost=")))
        .map_or(1, |n| n.parse().expect("a number"))
}

#[tokio::test]
async fn a_cost_closure_takes_that_many_cells_and_refuses_costs_above_the_burst() {
    let (store, _clock) = manual_store();
    // A burst of 5, one cell every 12 s.
    let costly = RateLimitLayer::builder()
        .policy(Policy::new("search", Quota::per_minute(5)))
        .cost_by(cost_from_query)
        .headers_on_success(true)
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/search", get(|| async { "results" }))
        .layer(costly);
    let search = |cost: &str| send(&app, get_from(&format!("/search?cost={cost}"), PEER));

    for _ in 0..3 {
        let free = search("0").await;
        assert_eq!(free.status(), StatusCode::OK);
        assert!(free.headers().get("ratelimit").is_none());
    }
    assert!(store.is_empty(), "a cost of 0 touched the store");

    let too_large = search("6").await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        too_large.headers().get("retry-after").is_none(),
        "waiting would not help, so there is no Retry-After"
    );
    let info = too_large.extensions().get::<CostTooLarge>().unwrap();
    assert_eq!(
        (info.policy().name(), info.cost(), info.burst()),
        ("search", 6, 5)
    );
    let body = text(too_large).await;
    assert!(
        body.contains("\"search\"") && body.contains('6') && body.contains('5'),
        "{body}"
    );
    assert!(store.is_empty(), "a cost above the burst touched the store");

    let three = search("3").await;
    assert_eq!(three.status(), StatusCode::OK);
    assert_eq!(header(&three, "ratelimit"), "\"search\";r=2;t=36");
    let denied = search("3").await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&denied, "retry-after"),
        "12",
        "one more cell is needed"
    );
    assert_eq!(limited(&denied).decision().remaining(), 2);
    let two = search("2").await;
    assert_eq!(two.status(), StatusCode::OK);
    assert_eq!(header(&two, "ratelimit"), "\"search\";r=0;t=60");
    assert_eq!(
        send(&app, get_from("/search", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "no query parameter is a cost of 1"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_cost_too_large_names_the_enforced_policy_with_the_smallest_burst() {
    let (store, _clock) = manual_store();
    let stack = RateLimitLayer::builder()
        .policy(Policy::new("wide", Quota::per_second(100)))
        .policy(Policy::new("narrow", Quota::per_second(5)))
        .policy(Policy::new("trial", Quota::per_second(2)).shadow(true))
        .cost_by(cost_from_query)
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(stack);

    let fits = send(&app, get_from("/?cost=5", PEER)).await;
    assert_eq!(
        fits.status(),
        StatusCode::OK,
        "a shadow policy's burst refused a cost"
    );
    let too_large = send(&app, get_from("/?cost=6", PEER)).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let info = too_large.extensions().get::<CostTooLarge>().unwrap();
    assert_eq!((info.policy().name(), info.burst()), ("narrow", 5));
}

#[tokio::test]
async fn a_shadow_policy_never_rejects_and_counts_what_it_would_have_limited() {
    let (store, _clock) = manual_store();
    let trial = layer(
        [Policy::new("trial", Quota::per_minute(2)).shadow(true)],
        &store,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(trial.clone());
    for i in 0..10 {
        let response = send(&app, get_from("/", PEER)).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert!(response.extensions().get::<RateLimited>().is_none());
    }
    assert_eq!(trial.shadow_limited("trial"), 8);
    assert_eq!(trial.shadow_limited("nothing-by-this-name"), 0);
}

/// The metric, the layer's count and the log agree on what a shadow policy would have limited:
/// requests that went on, not the ones an enforced policy refused anyway.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn the_shadow_metric_counts_what_the_layer_counts() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let (store, _clock) = manual_store();
    // A layer of `enforced` and `trial` (in shadow mode), registered with the recorder, and
    // the statuses of `n` requests through it from one client.
    let run = async |enforced: Quota, trial: Quota, names: [&str; 2], n: usize| {
        let limit = metrics::with_local_recorder(&recorder, || {
            layer(
                [
                    Policy::new(names[0], enforced),
                    Policy::new(names[1], trial).shadow(true),
                ],
                &store,
            )
        });
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(limit.clone());
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(status(&app, "/").await);
        }
        (limit, statuses)
    };
    // The first takes both cells; the next two are refused by the enforced policy, which the
    // shadow one would have refused too.
    let one = Quota::per_minute(1);
    let (mixed, statuses) = run(one, one, ["enforced-1", "trial-1"], 3).await;
    let limited = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(statuses, [StatusCode::OK, limited, limited]);
    let count = |policy: &str, outcome: &str| {
        let text = recorder.handle().render();
        let series =
            format!("ratelimit_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!(count("enforced-1", "limited"), 2);
    assert_eq!(mixed.shadow_limited("trial-1"), 0);
    assert_eq!(count("trial-1", "shadow_limited"), 0);
    assert_eq!(count("trial-1", "allowed"), 1);

    // A shadow policy that would have admitted the requests the enforced one refused took
    // nothing from them: it counts the one request that went on.
    let roomy = Quota::per_minute(100);
    let (_, statuses) = run(one, roomy, ["enforced-2", "trial-100"], 5).await;
    assert_eq!(
        statuses,
        [StatusCode::OK, limited, limited, limited, limited]
    );
    assert_eq!(count("enforced-2", "limited"), 4);
    assert_eq!(count("trial-100", "allowed"), 1);
    assert_eq!(count("trial-100", "shadow_limited"), 0);
}

/// A fixed cost was checked against every burst when the layer was built and can never be too
/// large: its layer registers no `cost_too_large` series. A cost from the request can, and its
/// layer registers the series of its tightest enforced policy at 0, before any request.
#[cfg(feature = "metrics")]
#[test]
fn only_a_cost_from_the_request_registers_a_cost_too_large_series() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let (store, _clock) = manual_store();
    metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder()
            .policy(Policy::new("fixed-wide", Quota::per_second(100)))
            .policy(Policy::new("fixed-narrow", Quota::per_second(5)))
            .cost(5)
            .store(store.clone())
            .build()
            .unwrap();
        RateLimitLayer::builder()
            .policy(Policy::new("by-request-wide", Quota::per_second(100)))
            .policy(Policy::new("by-request-narrow", Quota::per_second(5)))
            .cost_by(cost_from_query)
            .store(store.clone())
            .build()
            .unwrap();
    });
    let text = recorder.handle().render();
    let too_large: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("outcome=\"cost_too_large\""))
        .collect();
    assert_eq!(
        too_large,
        ["ratelimit_decisions_total{policy=\"by-request-narrow\",outcome=\"cost_too_large\"} 0"],
        "{text}"
    );
    assert!(
        text.contains("ratelimit_decisions_total{policy=\"fixed-narrow\",outcome=\"allowed\"} 0"),
        "the fixed-cost layer registered its other series: {text}"
    );
}

/// The value of `ratelimit_decisions_total` for `policy` and `outcome` in `recorder`, 0 when
/// it has no such series.
#[cfg(feature = "metrics")]
fn decisions(
    recorder: &metrics_exporter_prometheus::PrometheusRecorder,
    policy: &str,
    outcome: &str,
) -> u64 {
    let series = format!("ratelimit_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} ");
    recorder
        .handle()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.parse().unwrap())
}

/// A request that every policy of its stack refuses is `limited` for each of them.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn a_request_refused_by_two_policies_counts_as_limited_by_both() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let (store, _clock) = manual_store();
    let limit = metrics::with_local_recorder(&recorder, || {
        layer(
            [
                Policy::new("both-per-minute", Quota::per_minute(1)),
                Policy::new("both-per-hour", Quota::per_hour(1)),
            ],
            &store,
        )
    });
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit);
    assert_eq!(status(&app, "/").await, StatusCode::OK);
    assert_eq!(status(&app, "/").await, StatusCode::TOO_MANY_REQUESTS);
    for policy in ["both-per-minute", "both-per-hour"] {
        assert_eq!(decisions(&recorder, policy, "allowed"), 1, "{policy}");
        assert_eq!(decisions(&recorder, policy, "limited"), 1, "{policy}");
    }
}

/// Every request without a key counts once as `missing_key`, whether it is rejected, let
/// through, or served by a dry run (every policy in shadow mode).
#[cfg(feature = "metrics")]
#[tokio::test]
async fn requests_without_a_key_are_counted_however_they_are_answered() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let answers = [
        (
            MissingKey::Reject(StatusCode::UNAUTHORIZED),
            false,
            StatusCode::UNAUTHORIZED,
        ),
        (MissingKey::Allow, false, StatusCode::OK),
        (MissingKey::default(), true, StatusCode::OK),
    ];
    for (missing, dry_run, answer) in answers {
        let limit = metrics::with_local_recorder(&recorder, || {
            RateLimitLayer::builder()
                .policy(Policy::new("per-api-key", Quota::per_minute(1)).shadow(dry_run))
                .key(Header::new("x-api-key"))
                .on_missing_key(missing)
                .build()
                .unwrap()
        });
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(limit);
        for _ in 0..3 {
            assert_eq!(status(&app, "/").await, answer, "{missing:?}");
        }
    }
    assert_eq!(decisions(&recorder, "", "missing_key"), 9);
    assert_eq!(decisions(&recorder, "per-api-key", "allowed"), 0);
}

#[tokio::test]
async fn in_a_mixed_stack_the_enforced_policy_still_rejects_and_the_shadow_one_only_counts() {
    let (store, _clock) = manual_store();
    let mixed = layer(
        [
            // One cell every 12 s.
            Policy::new("enforced", Quota::per_minute(5)),
            // One cell every 30 s.
            Policy::new("trial", Quota::per_minute(2)).shadow(true),
        ],
        &store,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(mixed.clone());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(status(&app, "/").await);
    }
    assert_eq!(statuses, [StatusCode::OK; 5]);
    assert_eq!(mixed.shadow_limited("trial"), 3);
    assert_eq!(mixed.shadow_limited("enforced"), 0);

    let denied = send(&app, get_from("/", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited(&denied).policy().name(), "enforced");
    assert_eq!(
        header(&denied, "retry-after"),
        "12",
        "the shadow policy's wait of 30 s counted"
    );
    assert_eq!(
        header(&denied, "ratelimit"),
        "\"enforced\";r=0;t=60, \"trial\";r=0;t=60"
    );
}

#[tokio::test]
async fn a_fixed_cost_above_a_shadow_burst_is_counted_not_refused() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("big", Quota::per_minute(100)))
        .policy(Policy::new("tiny", Quota::per_minute(2)).shadow(true))
        .cost(3)
        .store(store)
        .build()
        .expect("a cost above a shadow burst is no configuration error");
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer.clone());
    for _ in 0..4 {
        assert_eq!(status(&app, "/").await, StatusCode::OK);
    }
    assert_eq!(layer.shadow_limited("tiny"), 4);
}

#[tokio::test]
async fn a_bypass_predicate_lets_health_checks_through_untracked() {
    let (store, _clock) = manual_store();
    let limit = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_hour(1)))
        .bypass(|req: &Request| req.uri().path() == "/health")
        .headers_on_success(true)
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/health", get(|| async { "up" }))
        .layer(limit);

    for _ in 0..20 {
        let health = send(&app, get_from("/health", PEER)).await;
        assert_eq!(health.status(), StatusCode::OK);
        assert!(health.headers().get("ratelimit").is_none());
    }
    assert!(store.is_empty(), "a bypassed request was tracked");
    assert_eq!(status(&app, "/").await, StatusCode::OK);
    assert_eq!(status(&app, "/").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(store.len(), 1);
    assert_eq!(
        status(&app, "/health").await,
        StatusCode::OK,
        "a limited client's health checks are still bypassed"
    );
}

#[tokio::test]
async fn a_bypassed_request_is_let_through_without_a_key() {
    let (store, _clock) = manual_store();
    let limit = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_hour(1)))
        .key(Header::new("x-api-key"))
        .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
        .bypass(|req: &Request| req.uri().path() == "/health")
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/health", get(|| async { "up" }))
        .layer(limit);

    // A load balancer's health check carries no API key: the bypass comes before the key.
    let health = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&app, health).await.status(), StatusCode::OK);
    let keyless = Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(send(&app, keyless).await.status(), StatusCode::UNAUTHORIZED);
    assert!(store.is_empty());
}

#[tokio::test]
async fn an_allow_list_lets_its_networks_through_untracked_and_limits_the_rest() {
    let (store, _clock) = manual_store();
    let limit = RateLimitLayer::builder()
        .policy(Policy::new("api", Quota::per_hour(1)))
        .bypass(AllowIps::new(["10.0.0.0/8", "198.51.100.0/24"]).unwrap())
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit);

    // IPv4 peers as such, IPv4-mapped, and a public one through a NAT64 translator
    // (198.51.100.7), as `PeerIp` keys them.
    for peer in [
        "10.1.2.3:1000",
        "10.255.0.1:2000",
        "[::ffff:10.0.0.5]:3000",
        "[64:ff9b::c633:6407]:4000",
    ] {
        for _ in 0..10 {
            let response = send(&app, get_from("/", peer)).await;
            assert_eq!(response.status(), StatusCode::OK, "{peer}");
        }
    }
    assert!(store.is_empty(), "a bypassed request was tracked");

    for peer in ["11.0.0.1:1000", "192.0.2.1:1000"] {
        assert_eq!(
            send(&app, get_from("/", peer)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(&app, get_from("/", peer)).await.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{peer} is not in the allow list"
        );
    }
    assert_eq!(store.len(), 2);

    let no_peer = Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        send(&app, no_peer).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "a request without a peer address is not bypassed"
    );
}

#[test]
fn an_allow_list_reads_a_nat64_address_as_ipv4_and_as_itself() {
    let nat64: IpAddr = "64:ff9b::c000:207".parse().unwrap();
    assert!(AllowIps::new(["192.0.2.7"]).unwrap().contains(nat64));
    assert!(AllowIps::new(["64:ff9b::/96"]).unwrap().contains(nat64));
    assert!(!AllowIps::new(["192.0.2.8"]).unwrap().contains(nat64));
}

#[test]
fn an_allow_list_reads_a_tunnel_address_as_the_public_ipv4_it_carries_and_no_other() {
    let six_to_four: IpAddr = "2002:c000:207:1::5".parse().unwrap();
    let teredo: IpAddr = "2001:0:4136:e378:8000:63bf:3fff:fdf8".parse().unwrap();
    let monitor = AllowIps::new(["192.0.2.7"]).unwrap();
    assert!(monitor.contains(six_to_four) && monitor.contains(teredo));
    // A tunnel address made from a local IPv4 address is no local client.
    let local = AllowIps::new(["127.0.0.0/8", "10.0.0.0/8"]).unwrap();
    for ip in [
        "2002:7f00:1::1",
        "2002:a00:1:ffff::5",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "64:ff9b::10.1.2.3",
    ] {
        assert!(!local.contains(ip.parse().unwrap()), "{ip}");
    }
}

/// Behind a proxy that the allow list holds, the peer of every request is the proxy: read
/// alone, the list lets every client through. Given the proxies, it reads the client they
/// forwarded: their clients are limited, a listed client is not, and a client that writes a
/// listed address into the header itself gets nothing from it.
#[tokio::test]
async fn an_allow_list_behind_proxies_reads_the_forwarded_client() {
    let proxies = ForwardedIp::new(["10.0.0.0/8"]).unwrap();
    let via_proxy = |forwarded: &str| {
        let mut req = get_from("/", "10.0.0.2:40000");
        let value = forwarded.parse().unwrap();
        req.headers_mut().insert("x-forwarded-for", value);
        req
    };
    let app = |allow: AllowIps| {
        let (store, _clock) = manual_store();
        let limit = RateLimitLayer::builder()
            .policy(Policy::new("api", Quota::per_hour(1)))
            .key(proxies.clone())
            .bypass(allow)
            .store(store.clone())
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(limit);
        (app, store)
    };
    let internal = AllowIps::new(["10.0.0.0/8", "192.0.2.7"]).unwrap();

    let (by_peer, _) = app(internal.clone());
    for _ in 0..3 {
        let response = send(&by_peer, via_proxy("203.0.113.9")).await;
        assert_eq!(response.status(), StatusCode::OK, "the peer is the proxy");
    }

    let (app, store) = app(internal.behind(proxies.clone()));
    for forwarded in ["192.0.2.7", "10.9.8.7", "10.9.8.7, 10.0.0.3"] {
        for _ in 0..3 {
            let response = send(&app, via_proxy(forwarded)).await;
            assert_eq!(response.status(), StatusCode::OK, "{forwarded}");
        }
    }
    for _ in 0..3 {
        let response = send(&app, get_from("/", "10.0.0.2:40000")).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the proxy's own requests"
        );
    }
    assert!(store.is_empty(), "a bypassed request was tracked");
    for forwarded in ["203.0.113.9", "192.0.2.7, 203.0.113.10"] {
        let first = send(&app, via_proxy(forwarded)).await;
        assert_eq!(first.status(), StatusCode::OK, "{forwarded}");
        let second = send(&app, via_proxy(forwarded)).await;
        assert_eq!(
            second.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{forwarded} is a client of the proxy"
        );
    }
    assert_eq!(store.len(), 2);

    // A hop the proxy wrote that holds no address does not make the request the proxy's own:
    // the client is unknown, so it is not let through by the list (it gets the answer for a
    // request without a key) and takes nothing from anyone's budget.
    for forwarded in ["garbage", "203.0.113.11\u{a0}", "unknown", "_hidden"] {
        let mut req = get_from("/", "10.0.0.2:40000");
        req.headers_mut().insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(forwarded.as_bytes()).unwrap(),
        );
        let response = send(&app, req).await;
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{forwarded:?}"
        );
    }
    assert_eq!(store.len(), 2);
}

/// A rate-limit header read as a structured-field List: each member's String and its Integer
/// parameters, in order.
fn parse_list(response: &Response, name: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let value = header(response, name);
    let list: sfv::List = sfv::Parser::new(value)
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {value:?} is not a structured-field List: {e}"));
    list.into_iter()
        .map(|member| {
            let sfv::ListEntry::Item(item) = member else {
                panic!("{name}: an inner list in {value:?}");
            };
            let policy = item
                .bare_item
                .as_string()
                .unwrap_or_else(|| panic!("{name}: a member of {value:?} is not a String"))
                .as_str()
                .to_owned();
            let params = item
                .params
                .iter()
                .map(|(key, value)| {
                    let n = value
                        .as_integer()
                        .unwrap_or_else(|| panic!("{name}: {key:?} is not an Integer"));
                    (key.as_str().to_owned(), i64::from(n))
                })
                .collect();
            (policy, params)
        })
        .collect()
}

fn member(policy: &str, params: &[(&str, i64)]) -> (String, Vec<(String, i64)>) {
    let params = params.iter().map(|&(k, v)| (k.to_owned(), v)).collect();
    (policy.to_owned(), params)
}

#[tokio::test]
async fn the_headers_of_a_stack_parse_as_structured_field_lists() {
    let (store, _clock) = manual_store();
    let app = per_second_and_per_minute(&store);

    let allowed = send(&app, get_from("/", PEER)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        parse_list(&allowed, "ratelimit-policy"),
        [
            member("per-second", &[("q", 4), ("w", 2)]),
            member("per-minute", &[("q", 10), ("w", 60)]),
        ]
    );
    assert_eq!(
        parse_list(&allowed, "ratelimit"),
        [
            member("per-second", &[("r", 3), ("t", 1)]),
            member("per-minute", &[("r", 9), ("t", 6)]),
        ]
    );

    for _ in 0..3 {
        send(&app, get_from("/", PEER)).await;
    }
    let denied = send(&app, get_from("/", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(parse_list(&denied, "ratelimit-policy").len(), 2);
    assert_eq!(
        parse_list(&denied, "ratelimit"),
        [
            member("per-second", &[("r", 0), ("t", 2)]),
            member("per-minute", &[("r", 6), ("t", 24)]),
        ]
    );
}

#[tokio::test]
async fn one_policy_and_awkward_names_parse_as_structured_field_lists() {
    let (store, _clock) = manual_store();
    let single = layer([Policy::new("default", Quota::per_minute(3))], &store);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(single);
    let response = send(&app, get_from("/", PEER)).await;
    assert_eq!(
        parse_list(&response, "ratelimit-policy"),
        [member("default", &[("q", 3), ("w", 60)])]
    );
    assert_eq!(
        parse_list(&response, "ratelimit"),
        [member("default", &[("r", 2), ("t", 20)])]
    );

    // Every character a name may hold stays inside its String.
    let tricky = "per-user, b;q=9 =x (y) <z> [w] !#$%&'*+-./:?@^_`|~";
    let listed = layer(
        [
            Policy::new(tricky, Quota::per_second(4)),
            Policy::new("then", Quota::per_minute(1)),
        ],
        &store,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(listed);
    let response = send(&app, get_from("/", PEER)).await;
    assert_eq!(
        parse_list(&response, "ratelimit-policy"),
        [
            member(tricky, &[("q", 4), ("w", 1)]),
            member("then", &[("q", 1), ("w", 60)]),
        ]
    );
    assert_eq!(
        parse_list(&response, "ratelimit"),
        [
            member(tricky, &[("r", 3), ("t", 1)]),
            member("then", &[("r", 0), ("t", 60)]),
        ]
    );
}

/// The 429 the README shows for its stack of `per-second` (10/s) and `per-hour` (1000/h): the
/// eleventh request of one instant.
#[tokio::test]
async fn the_readme_s_limited_response_is_the_one_a_stack_answers() {
    let (store, _clock) = manual_store();
    let limit = layer(
        [
            Policy::new("per-second", Quota::per_second(10)),
            Policy::new("per-hour", Quota::per_hour(1000)),
        ],
        &store,
    );
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit);
    for _ in 0..10 {
        assert_eq!(status(&app, "/").await, StatusCode::OK);
    }
    let response = send(&app, get_from("/", PEER)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(
        header(&response, "ratelimit-policy"),
        r#""per-second";q=10;w=1, "per-hour";q=1000;w=3600"#
    );
    assert_eq!(
        header(&response, "ratelimit"),
        r#""per-second";r=0;t=1, "per-hour";r=990;t=36"#
    );
}

/// A dry run (every policy in shadow mode) limits nothing, so a request it cannot key (here an
/// app served without connect info) is served, as a store failure under it is; a layer with an
/// enforced policy still answers it as `on_missing_key` says.
#[tokio::test]
async fn a_dry_run_serves_a_request_without_a_key() {
    let (store, _clock) = manual_store();
    let dry_run = RateLimitLayer::builder()
        .policy(Policy::new("trial", Quota::per_minute(1)).shadow(true))
        .policy(Policy::new("trial-hourly", Quota::per_hour(10)).shadow(true))
        .store(store.clone())
        .build()
        .unwrap();
    let enforced = RateLimitLayer::builder()
        .policy(Policy::new("enforced", Quota::per_minute(1)))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/dry", get(|| async { "ok" }).layer(dry_run.clone()))
        .route("/enforced", get(|| async { "ok" }).layer(enforced));
    let keyless = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

    for _ in 0..3 {
        let response = send(&app, keyless("/dry")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "ok");
    }
    assert_eq!(dry_run.shadow_limited("trial"), 0, "nothing was checked");
    assert_eq!(store.len(), 0);
    assert_eq!(
        send(&app, keyless("/enforced")).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // A status of the client's doing is not a reason to reject in a dry run either.
    let api = RateLimitLayer::builder()
        .policy(Policy::new("api-trial", Quota::per_minute(1)).shadow(true))
        .key(Header::new("x-api-key"))
        .on_missing_key(tower_ratelimit::MissingKey::Reject(
            StatusCode::UNAUTHORIZED,
        ))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(api);
    assert_eq!(send(&app, keyless("/")).await.status(), StatusCode::OK);
}
