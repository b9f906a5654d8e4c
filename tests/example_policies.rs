//! The contract of `examples/policies.rs`, through a real server on a real socket: the app of
//! the example, served with connect info, asked by a real HTTP client. The same contract runs
//! on a `MemoryStore` and (with the `redis` feature) on a private Redis and a Redis Cluster, each
//! on a manual clock so that every answer is exact.

mod common;
#[path = "../examples/policies.rs"]
#[allow(dead_code)]
mod policies;
#[cfg(feature = "redis")]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_ratelimit::{ManualClock, MemoryStore, Store};

/// The example's app on `store`, served on a loopback port.
struct Server {
    addr: SocketAddr,
    client: Client<HttpConnector, Empty<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start<St>(store: St, dry_run: bool) -> Server
    where
        St: Store + Clone + Send + Sync + 'static,
        St::Future: Send + 'static,
    {
        let policies = policies::Policies::new(dry_run).unwrap();
        Server::serve(policies::app(store, policies).unwrap()).await
    }

    /// `app`, served with connect info on a loopback port.
    async fn serve(app: axum::Router) -> Server {
        let (addr, task) = common::serve(app).await;
        Server {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            task,
        }
    }

    /// The status, headers and body of `GET path`, with an `x-api-key` if given.
    async fn get(&self, path: &str, api_key: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut req = http::Request::get(format!("http://{}{path}", self.addr));
        if let Some(key) = api_key {
            req = req.header("x-api-key", key);
        }
        let response = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn status(&self, path: &str, api_key: Option<&str>) -> StatusCode {
        self.get(path, api_key).await.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const OK: StatusCode = StatusCode::OK;
const LIMITED: StatusCode = StatusCode::TOO_MANY_REQUESTS;

/// Every promise of the example, on one store whose time `clock` drives.
async fn the_example_keeps_its_contract<St>(store: St, clock: ManualClock)
where
    St: Store + Clone + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    let server = Server::start(store, false).await;

    // Free tier per client IP: per-second (burst 4) and per-minute (10) stacked.
    for _ in 0..4 {
        let (status, headers, _) = server.get("/", None).await;
        assert_eq!(status, OK);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"per-second\";q=4;w=2, \"per-minute\";q=10;w=60"
        );
    }
    let (status, headers, _) = server.get("/", None).await;
    assert_eq!(status, LIMITED);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        headers["ratelimit"], "\"per-second\";r=0;t=2, \"per-minute\";r=6;t=24",
        "the denied request took nothing from per-minute"
    );

    // The per-minute policy stops the eleventh request, with its own wait.
    clock.advance(Duration::from_secs(2));
    for _ in 0..4 {
        assert_eq!(server.status("/", None).await, OK);
    }
    clock.advance(Duration::from_secs(2));
    for _ in 0..2 {
        assert_eq!(server.status("/", None).await, OK);
    }
    let (status, headers, _) = server.get("/", None).await;
    assert_eq!(status, LIMITED);
    assert_eq!(
        headers["retry-after"], "2",
        "60 s of per-minute, 4 s gone, 6 s per cell"
    );
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .ends_with("\"per-minute\";r=0;t=56"),
        "{:?}",
        headers["ratelimit"]
    );

    // An API key has its own budget; a `pro-` key gets the pro tier.
    assert_eq!(server.status("/", Some("free-key")).await, OK);
    for _ in 0..40 {
        assert_eq!(server.status("/", Some("pro-key")).await, OK);
    }
    let (status, headers, _) = server.get("/", Some("pro-key")).await;
    assert_eq!(status, LIMITED);
    assert!(headers["ratelimit-policy"]
        .to_str()
        .unwrap()
        .starts_with("\"pro-per-second\";q=40;w=2"));

    // /search shares the store but not the budgets of `/`, and costs what it says.
    let (status, headers, body) = server.get("/search?cost=11", None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!headers.contains_key("retry-after"));
    assert!(body.contains("\"search\""), "{body}");
    let (status, headers, _) = server.get("/search?cost=10", None).await;
    assert_eq!(status, OK);
    assert_eq!(headers["ratelimit"], "\"search\";r=0;t=1");
    let (status, headers, _) = server.get("/search", None).await;
    assert_eq!(status, LIMITED);
    assert_eq!(headers["ratelimit-policy"], "\"search\";q=10;w=1");
    assert_eq!(server.status("/search?cost=0", None).await, OK);
    // A cost that is not a number counts as 1 and is answered 400 by the handler.
    clock.advance(Duration::from_secs(1));
    let (status, headers, _) = server.get("/search?cost=ten", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["ratelimit"], "\"search\";r=9;t=1");
    // The cost charged is the cost served: the first of two, and percent-encoded digits are
    // not a number (charged 1, answered 400).
    let (status, headers, _) = server.get("/search?cost=1&cost=50", None).await;
    assert_eq!(status, OK);
    assert_eq!(headers["ratelimit"], "\"search\";r=8;t=1");
    let (status, headers, _) = server.get("/search?cost=%35%30", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["ratelimit"], "\"search\";r=7;t=1");

    // /health is never limited and carries no rate-limit headers.
    for _ in 0..20 {
        let (status, headers, body) = server.get("/health", None).await;
        assert_eq!((status, body.as_str()), (OK, "ok\n"));
        assert!(!headers.contains_key("ratelimit"));
    }
}

/// With every policy in shadow mode nothing is rejected, and the headers still say where the
/// budgets stand.
async fn a_dry_run_rejects_nothing<St>(store: St)
where
    St: Store + Clone + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    let server = Server::start(store, true).await;
    for _ in 0..15 {
        let (status, headers, _) = server.get("/", None).await;
        assert_eq!(status, OK);
        assert!(headers.contains_key("ratelimit"));
    }
    let (_, headers, _) = server.get("/", None).await;
    assert!(headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"per-second\";r=0"));
    assert_eq!(server.status("/search?cost=10", None).await, OK);
    assert_eq!(server.status("/search?cost=10", None).await, OK);
}

fn memory_store() -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    (store, clock)
}

#[tokio::test]
async fn the_example_keeps_its_contract_in_memory() {
    let (store, clock) = memory_store();
    the_example_keeps_its_contract(store, clock).await;
}

#[tokio::test]
async fn a_dry_run_rejects_nothing_in_memory() {
    a_dry_run_rejects_nothing(memory_store().0).await;
}

/// A client is one budget however it shows its address: any address of one IPv6 /64, and an
/// IPv4 address with or without its IPv6 mapping.
#[tokio::test]
async fn one_client_is_one_budget_whatever_address_of_its_own_it_comes_from() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    async fn statuses(peers: &[String]) -> Vec<StatusCode> {
        let policies = policies::Policies::new(false).unwrap();
        let app = policies::app(memory_store().0, policies).unwrap();
        let mut statuses = Vec::new();
        for peer in peers {
            let mut req = axum::extract::Request::new(axum::body::Body::empty());
            let addr: SocketAddr = peer.parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
            statuses.push(app.clone().oneshot(req).await.unwrap().status());
        }
        statuses
    }
    // The free tier's burst is 4.
    let one_64: Vec<String> = (1..=5)
        .map(|i| format!("[2001:db8:1:2::{i}]:5000"))
        .collect();
    assert_eq!(statuses(&one_64).await, [OK, OK, OK, OK, LIMITED]);
    let mapped = [
        "[::ffff:192.0.2.9]:5000",
        "192.0.2.9:5000",
        "192.0.2.9:5001",
    ];
    let mapped: Vec<String> = mapped
        .iter()
        .chain(&["192.0.2.9:5002"; 2])
        .map(|p| p.to_string())
        .collect();
    assert_eq!(statuses(&mapped).await, [OK, OK, OK, OK, LIMITED]);
}

#[test]
fn dry_run_is_1_or_true_0_or_false_in_any_case_and_nothing_else() {
    for (value, dry_run) in [
        (None, false),
        (Some(""), false),
        (Some("0"), false),
        (Some("false"), false),
        (Some("FALSE"), false),
        (Some("1"), true),
        (Some("true"), true),
        (Some(" True "), true),
    ] {
        assert_eq!(policies::dry_run(value).unwrap(), dry_run, "{value:?}");
    }
    // A value that is neither stops the server instead of enforcing every policy unasked.
    for value in ["yes", "on", "2", "dryrun"] {
        let error = policies::dry_run(Some(value)).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("DRY_RUN must be `1` or `true`, `0` or `false`, got {value:?}")
        );
    }
}

/// `GET /metrics` with the `metrics` feature: a known traffic pattern, and the exact counts it
/// leaves, per policy and outcome. Each test records into a Prometheus recorder of its own,
/// set as the thread's recorder while the store and the app are built; the scrapes are also
/// written under the target directory, where `.ci/run` checks them with `promtool`.
#[cfg(feature = "metrics")]
mod scrape {
    use std::collections::BTreeMap;

    use metrics_exporter_prometheus::PrometheusRecorder;

    use super::*;

    impl Server {
        /// The example's app with `GET /metrics`, on the store that `store` builds, both
        /// built under `recorder`.
        async fn start_with_metrics<St>(
            recorder: &PrometheusRecorder,
            store: impl AsyncFnOnce() -> St,
            dry_run: bool,
        ) -> Server
        where
            St: Store + Clone + Send + Sync + 'static,
            St::Future: Send + 'static,
        {
            // The test runtime has one thread, so the thread's recorder is the one every
            // handle is registered with while the guard lives.
            let guard = metrics::set_default_local_recorder(recorder);
            let store = store().await;
            let policies = policies::Policies::new(dry_run).unwrap();
            let app = policies::app_with_metrics(store, policies, recorder.handle()).unwrap();
            drop(guard);
            Server::serve(app).await
        }

        /// `GET /metrics`: its `ratelimit_` series, each with its labels in name order, and the
        /// text, which is also written to `<target>/tmp/<name>.prom`.
        async fn scrape(&self, name: &str) -> (BTreeMap<String, f64>, String) {
            let (status, headers, text) = self.get("/metrics", None).await;
            assert_eq!(status, OK);
            assert_eq!(
                headers["content-type"],
                "text/plain; version=0.0.4; charset=utf-8"
            );
            let path =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.prom"));
            std::fs::write(&path, &text).unwrap();
            (series(&text), text)
        }
    }

    /// The `ratelimit_` series of a scrape in the Prometheus text format.
    fn series(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|line| line.starts_with("ratelimit_"))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let series = match series.split_once('{') {
                    Some((name, labels)) => {
                        let mut labels: Vec<&str> =
                            labels.trim_end_matches('}').split(',').collect();
                        labels.sort_unstable();
                        format!("{name}{{{}}}", labels.join(","))
                    }
                    None => series.to_owned(),
                };
                (series, value.parse().unwrap())
            })
            .collect()
    }

    /// The decision counter of `policy` and `outcome`, as `series` names it.
    fn decisions(policy: &str, outcome: &str) -> String {
        format!("ratelimit_decisions_total{{outcome=\"{outcome}\",policy=\"{policy}\"}}")
    }

    /// Sends the same requests to the example on any store, and returns how many of them the
    /// store was asked to decide. Outcomes are noted per line: `a` allowed, `l` limited.
    async fn known_traffic(server: &Server, clock: &ManualClock) -> u32 {
        let statuses = |n| async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                seen.push(server.status("/", None).await);
            }
            seen
        };
        // Free tier by client IP: per-second (burst 4) and per-minute (10) stacked. At 0 s:
        // 4 a, then 2 l by per-second (per-minute would admit, and is not counted).
        assert_eq!(
            statuses(6).await,
            [[OK; 4].as_slice(), &[LIMITED; 2]].concat()
        );
        // At 2 s, per-second is full again: 4 a. At 4 s: 2 a, then per-minute is spent: 1 l
        // by per-minute alone.
        clock.advance(Duration::from_secs(2));
        assert_eq!(statuses(4).await, [OK; 4]);
        clock.advance(Duration::from_secs(2));
        assert_eq!(statuses(3).await, [OK, OK, LIMITED]);
        // A free API key: 1 a more for both free policies.
        assert_eq!(server.status("/", Some("free-key")).await, OK);
        // A pro key: 40 a on both pro policies, then 2 l by pro-per-second.
        for _ in 0..40 {
            assert_eq!(server.status("/", Some("pro-key")).await, OK);
        }
        for _ in 0..2 {
            assert_eq!(server.status("/", Some("pro-key")).await, LIMITED);
        }
        // /search: a cost above the burst never reaches the store; cost 10 a, cost 1 l, cost 0
        // a without the store, and 1 s later cost 1 a.
        let search = [
            ("/search?cost=11", StatusCode::PAYLOAD_TOO_LARGE),
            ("/search?cost=10", OK),
            ("/search", LIMITED),
            ("/search?cost=0", OK),
        ];
        for (path, status) in search {
            assert_eq!(server.status(path, None).await, status, "{path}");
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(server.status("/search?cost=1", None).await, OK);
        // Bypassed: 3 health checks (and the scrape itself).
        for _ in 0..3 {
            assert_eq!(server.status("/health", None).await, OK);
        }
        6 + 4 + 3 + 1 + 42 + 3
    }

    /// What `known_traffic` and one scrape leave in the decision counter: every series the two
    /// layers registered. The layer of `/`, whose cost is fixed, has no `cost_too_large`
    /// series; the layer of `/search`, whose cost comes from the request, has one.
    fn known_decisions() -> BTreeMap<String, f64> {
        [
            ("per-second", "allowed", 11.0),
            ("per-second", "limited", 2.0),
            ("per-minute", "allowed", 11.0),
            ("per-minute", "limited", 1.0),
            ("pro-per-second", "allowed", 40.0),
            ("pro-per-second", "limited", 2.0),
            ("pro-per-minute", "allowed", 40.0),
            ("pro-per-minute", "limited", 0.0),
            ("search", "allowed", 3.0),
            ("search", "limited", 1.0),
            ("search", "cost_too_large", 1.0),
            ("", "bypassed", 4.0),
            ("", "missing_key", 0.0),
        ]
        .into_iter()
        .map(|(policy, outcome, n)| (decisions(policy, outcome), n))
        .collect()
    }

    #[tokio::test]
    async fn metrics_count_each_policy_and_outcome_of_known_traffic_in_memory() {
        let recorder = policies::prometheus().build_recorder();
        let clock = ManualClock::new();
        let store_clock = clock.clone();
        let server = Server::start_with_metrics(
            &recorder,
            async || MemoryStore::builder().clock(store_clock).build().unwrap(),
            false,
        )
        .await;
        known_traffic(&server, &clock).await;
        let (series, _) = server.scrape("example-policies-memory").await;
        let mut expected = known_decisions();
        // Client IP and two API keys on `/`, the client IP on `/search`.
        expected.insert("ratelimit_memory_keys".to_owned(), 4.0);
        assert_eq!(series, expected);
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn metrics_count_each_policy_and_outcome_of_known_traffic_on_redis() {
        use tower_ratelimit::RedisStore;

        let redis = support::RedisServer::start();
        let recorder = policies::prometheus().build_recorder();
        let clock = ManualClock::new();
        let store_clock = clock.clone();
        let server = Server::start_with_metrics(
            &recorder,
            async || {
                // Every answer must be Redis's: a timeout a loaded machine cannot hit.
                RedisStore::builder()
                    .url(redis.url())
                    .prefix(support::unique_prefix("metrics"))
                    .clock(store_clock)
                    .timeout(Duration::from_secs(5))
                    .build()
                    .await
                    .unwrap()
            },
            false,
        )
        .await;
        let checks = known_traffic(&server, &clock).await;
        let (mut series, _) = server.scrape("example-policies-redis").await;

        // The same decisions as in memory, and at 0 the outcomes of a store that can fail: the
        // layer registers them for any such store, `store_error` included, which the example's
        // `FailurePolicy::Local` never gives.
        let mut expected = known_decisions();
        for policy in [
            "per-second",
            "per-minute",
            "pro-per-second",
            "pro-per-minute",
            "search",
        ] {
            for outcome in ["store_error", "fallback_allowed", "fallback_limited"] {
                expected.insert(decisions(policy, outcome), 0.0);
            }
        }
        expected.insert("ratelimit_redis_degraded".to_owned(), 0.0);
        // Once Redis has reported a stack spent, the deny cache answers its next checks: the 2
        // limited at 0 s, the per-minute one at 4 s, the 2 pro ones and the search one. Every
        // other check waited on Redis once.
        let hits = series.remove("ratelimit_deny_cache_hits_total").unwrap();
        let waited = series
            .remove("ratelimit_store_latency_seconds_count{store=\"redis\"}")
            .unwrap();
        assert_eq!(hits, 6.0);
        assert_eq!(hits + waited, f64::from(checks));
        // One request at a time: no check queued behind another's call.
        let queued = series.remove("ratelimit_store_queue_wait_seconds_count{store=\"redis\"}");
        assert_eq!(queued.unwrap_or(0.0), 0.0);
        series.retain(|name, _| !name.starts_with("ratelimit_store_"));
        assert_eq!(series, expected);
    }

    #[tokio::test]
    async fn metrics_count_what_a_dry_run_would_have_limited() {
        let recorder = policies::prometheus().build_recorder();
        let server = Server::start_with_metrics(&recorder, async || memory_store().0, true).await;
        for _ in 0..16 {
            assert_eq!(server.status("/", None).await, OK);
        }
        for _ in 0..2 {
            assert_eq!(server.status("/search?cost=10", None).await, OK);
        }
        let (series, _) = server.scrape("example-policies-dry-run").await;
        let expected: BTreeMap<String, f64> = [
            // A shadow policy that admits takes the cells; one that would refuse takes none.
            ("per-second", "allowed", 4.0),
            ("per-second", "shadow_limited", 12.0),
            ("per-minute", "allowed", 10.0),
            ("per-minute", "shadow_limited", 6.0),
            ("pro-per-second", "allowed", 0.0),
            ("pro-per-second", "shadow_limited", 0.0),
            ("pro-per-minute", "allowed", 0.0),
            ("pro-per-minute", "shadow_limited", 0.0),
            ("search", "allowed", 1.0),
            ("search", "shadow_limited", 1.0),
            ("", "bypassed", 1.0),
            ("", "missing_key", 0.0),
        ]
        .into_iter()
        .map(|(policy, outcome, n)| (decisions(policy, outcome), n))
        .chain([("ratelimit_memory_keys".to_owned(), 2.0)])
        .collect();
        assert_eq!(series, expected);
    }
}

/// `Policies::from_file`, the reader behind `POLICIES=path`.
mod policy_file {
    use super::policies::Policies;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies.toml");

    /// The shipped file with `from` replaced by `to`, written to a file of its own.
    #[cfg(feature = "serde")]
    fn shipped_with(name: &str, from: &str, to: &str) -> (std::path::PathBuf, String) {
        let shipped = std::fs::read_to_string(SHIPPED).unwrap();
        let text = shipped.replacen(from, to, 1);
        assert_ne!(text, shipped, "{from:?} is not in {SHIPPED}");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}.toml", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    #[cfg(feature = "serde")]
    #[test]
    fn the_shipped_file_holds_exactly_the_built_in_policies() {
        for dry_run in [false, true] {
            assert_eq!(
                Policies::from_file(SHIPPED, dry_run).unwrap(),
                Policies::new(dry_run).unwrap(),
                "dry run: {dry_run}"
            );
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_bad_value_is_named_with_its_line_and_field() {
        let (path, text) = shipped_with("bad-value", "\"10/min\"", "\"0/min\"");
        let error = Policies::from_file(&path, false).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        let line = 1 + text.lines().position(|l| l == "quota = \"0/min\"").unwrap();
        assert_eq!(
            error,
            format!(
                "{}:{line}:9: free[1].quota: invalid quota \"0/min\": the rate is 0; use at least 1",
                path.display()
            )
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn an_unknown_field_is_named() {
        let (path, _) = shipped_with("unknown-field", "[search]\n", "[search]\nshadw = true\n");
        let error = Policies::from_file(&path, false).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            error.contains("search.shadw: unknown field `shadw`"),
            "{error}"
        );
    }

    /// The error of reading the shipped file with `from` replaced by `to`, and the file's path.
    #[cfg(feature = "serde")]
    fn error_with(name: &str, from: &str, to: &str) -> (String, String) {
        let (path, _) = shipped_with(name, from, to);
        let error = Policies::from_file(&path, false).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        (error, path.display().to_string())
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_tier_without_policies_is_named() {
        let free = "[[free]]\nname = \"per-second\"\nquota = \"2/s; burst=4\"\n\n\
                    [[free]]\nname = \"per-minute\"\nquota = \"10/min\"\n";
        let (error, path) = error_with("empty-tier", free, "free = []\n");
        assert_eq!(error, format!("{path}: free: no policy"));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_name_twice_in_a_tier_is_named() {
        let (error, path) = error_with(
            "name-twice",
            "name = \"pro-per-minute\"",
            "name = \"pro-per-second\"",
        );
        assert_eq!(
            error,
            format!(
                "{path}: pro[1].name: \"pro-per-second\" is also the name of pro[0]; give each \
                 policy of a tier a name of its own"
            )
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn one_name_with_two_quotas_is_named() {
        let (error, path) = error_with("two-quotas", "name = \"search\"", "name = \"per-minute\"");
        assert_eq!(
            error,
            format!(
                "{path}: search.name: \"per-minute\" is also the name of free[1], whose quota is \
                 10/min, not 10/s; give it the same quota to share its budget, or a name of its own"
            )
        );
    }

    #[cfg(not(feature = "serde"))]
    #[test]
    fn without_serde_a_policy_file_asks_for_the_feature() {
        let error = Policies::from_file(SHIPPED, false).unwrap_err().to_string();
        assert!(error.contains("run with `--features serde`"), "{error}");
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use support::{RedisCluster, RedisServer};
    use tower_ratelimit::store::RedisStoreBuilder;
    use tower_ratelimit::RedisStore;

    /// A store whose every answer is Redis's own: a failure is an error (the layer answers
    /// 503), never the local fallback, which would give the same answers as Redis here.
    async fn redis_store(
        name: &str,
        target: impl FnOnce(RedisStoreBuilder) -> RedisStoreBuilder,
    ) -> (RedisStore, ManualClock) {
        let clock = ManualClock::new();
        let store = target(support::strict_store(name))
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        (store, clock)
    }

    #[tokio::test]
    async fn the_example_keeps_its_contract_on_redis() {
        let server = RedisServer::start();
        let (store, clock) = redis_store("example", |b| b.url(server.url())).await;
        the_example_keeps_its_contract(store, clock).await;
        let (store, _) = redis_store("dry-run", |b| b.url(server.url())).await;
        a_dry_run_rejects_nothing(store).await;
    }

    #[test]
    fn redis_on_failure_names_the_failure_policy_and_refuses_other_names() {
        use tower_ratelimit::FailurePolicy;
        for (name, policy) in [
            (None, FailurePolicy::Local),
            (Some(""), FailurePolicy::Local),
            (Some("local"), FailurePolicy::Local),
            (Some("allow"), FailurePolicy::Allow),
            (Some(" deny "), FailurePolicy::Deny),
        ] {
            assert_eq!(policies::failure_policy(name).unwrap(), policy, "{name:?}");
        }
        let error = policies::failure_policy(Some("closed")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "REDIS_ON_FAILURE must be `local`, `allow` or `deny`, got \"closed\""
        );
    }

    #[tokio::test]
    async fn the_example_keeps_its_contract_on_a_redis_cluster() {
        let cluster = RedisCluster::start();
        let (store, clock) = redis_store("cluster", |b| b.cluster(cluster.urls())).await;
        the_example_keeps_its_contract(store, clock).await;
    }
}
