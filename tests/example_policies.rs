//! The contract of `examples/policies.rs`, through a real server on a real socket: the app of
//! the example, served with connect info, asked by a real HTTP client. The same contract runs
//! on a `MemoryStore` and (with the `redis` feature) on a private Redis and a Redis Cluster, each
//! on a manual clock so that every answer is exact.

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
        let app = policies::app(store, policies).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
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
    use tower_ratelimit::RedisStore;

    async fn redis_store(
        builder: tower_ratelimit::store::RedisStoreBuilder,
        name: &str,
    ) -> (RedisStore, ManualClock) {
        let clock = ManualClock::new();
        let store = builder
            .prefix(support::unique_prefix(name))
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        (store, clock)
    }

    #[tokio::test]
    async fn the_example_keeps_its_contract_on_redis() {
        let server = RedisServer::start();
        let (store, clock) = redis_store(RedisStore::builder().url(server.url()), "example").await;
        the_example_keeps_its_contract(store, clock).await;
        let (store, _) = redis_store(RedisStore::builder().url(server.url()), "dry-run").await;
        a_dry_run_rejects_nothing(store).await;
    }

    #[tokio::test]
    async fn the_example_keeps_its_contract_on_a_redis_cluster() {
        let cluster = RedisCluster::start();
        let (store, clock) =
            redis_store(RedisStore::builder().cluster(cluster.urls()), "cluster").await;
        the_example_keeps_its_contract(store, clock).await;
    }
}
