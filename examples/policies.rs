//! Named policies on one store: stacked limits, a free and a pro tier, a cost per request, a
//! bypassed health check, and a dry-run switch.
//!
//! ```sh
//! cargo run --example policies                       # in memory, 127.0.0.1:3004
//! PORT=3005 cargo run --example policies
//! DRY_RUN=1 cargo run --example policies             # every policy in shadow mode (or `true`)
//! MAX_KEYS=100000 cargo run --example policies       # track at most 100 000 keys in memory
//! POLICIES=examples/policies.toml cargo run --features serde --example policies
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example policies
//! REDIS_URL=redis://127.0.0.1:6379 REDIS_ON_FAILURE=deny cargo run --features redis --example policies
//! cargo run --features metrics --example policies    # and GET /metrics
//! ```
//!
//! - `GET /`: per client IP, or per `x-api-key` when the request has one. Free tier:
//!   `per-second` (2/s, burst 4) and `per-minute` (10/min) stacked; with `x-api-key: pro-…`:
//!   `pro-per-second` (20/s, burst 40) and `pro-per-minute` (100/min).
//! - `GET /search?cost=N`: policy `search` (10/s) per client IP, each request taking N cells
//!   (default 1); a cost above 10 can never fit and is answered 413.
//! - `GET /health`: never limited.
//! - `GET /metrics`, with the `metrics` feature: the crate's metrics in the Prometheus text
//!   format, never limited.
//!
//! In memory, at most `MAX_KEYS` keys are tracked (default: the store's 1 000 000); past that,
//! new keys share one overflow budget (see `MemoryStore`).
//!
//! With `POLICIES` the policies come from that TOML file instead (`examples/policies.toml`
//! holds the built-in ones); a value that is not a policy stops the server with an error that
//! names it.
//!
//! Every answer from `/` and `/search` that the store decided carries `RateLimit-Policy` and
//! `RateLimit` (not `/search?cost=0`, which takes nothing, nor a cost above the burst, answered
//! 413). With `REDIS_URL` every copy of the server shares every budget; `REDIS_ON_FAILURE`
//! (`local`, the default, `allow` or `deny`) says how checks are answered while Redis fails.

#[path = "env/mod.rs"]
mod env;

use std::fmt;
use std::net::SocketAddr;
use std::num::ParseIntError;
use std::path::Path;

use axum::extract::Request;
#[cfg(feature = "metrics")]
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::{routing::get, Router};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_ratelimit::{
    ConfigError, KeyExtractor, MemoryStore, PeerIp, Policy, Quota, RateLimitLayer, Store,
};

/// The policies of `/` and `/search`, in shadow mode when `dry_run`.
#[derive(Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Policies {
    /// The stack of `/` without an API key or with one that is not `pro-…`.
    free: Vec<Policy>,
    /// The stack of `/` with a `pro-…` API key.
    pro: Vec<Policy>,
    /// The policy of `/search`.
    search: Policy,
}

impl Policies {
    pub fn new(dry_run: bool) -> Result<Self, ConfigError> {
        let policy = |name: &str, quota: &str| -> Result<Policy, ConfigError> {
            Ok(Policy::new(name, quota.parse::<Quota>()?).shadow(dry_run))
        };
        Ok(Policies {
            free: vec![
                policy("per-second", "2/s; burst=4")?,
                policy("per-minute", "10/min")?,
            ],
            pro: vec![
                policy("pro-per-second", "20/s; burst=40")?,
                policy("pro-per-minute", "100/min")?,
            ],
            search: policy("search", "10/s")?,
        })
    }

    /// The policies in the TOML file at `path`, shaped like `examples/policies.toml`; every
    /// one in shadow mode when `dry_run`, else as the file says. An error names the file, the
    /// line and the field, and quotes the bad value; policies that the layers could not be
    /// built with (an empty tier, a name twice in a tier, one name with two quotas) are refused
    /// here too, naming the file and the field.
    #[cfg(feature = "serde")]
    pub fn from_file(path: impl AsRef<Path>, dry_run: bool) -> Result<Self, FileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError(format!("cannot read policies from {}: {e}", path.display())))?;
        // `field` is a path such as `free[1].quota`, or `.` for the document itself.
        let invalid = |field: &str, error: toml::de::Error| {
            let location = error.span().map_or_else(String::new, |span| {
                let before = &text[..span.start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = before[line_start..].chars().count() + 1;
                format!(":{line}:{column}")
            });
            let field = if field == "." {
                String::new()
            } else {
                format!(" {field}:")
            };
            FileError(format!(
                "{}{location}:{field} {}",
                path.display(),
                error.message()
            ))
        };
        let document = toml::Deserializer::parse(&text).map_err(|e| invalid(".", e))?;
        let policies: Policies = serde_path_to_error::deserialize(document)
            .map_err(|e| invalid(&e.path().to_string(), e.into_inner()))?;
        policies
            .check()
            .map_err(|e| FileError(format!("{}: {e}", path.display())))?;
        let shadow = |policy: Policy| {
            let shadow = dry_run || policy.is_shadow();
            policy.shadow(shadow)
        };
        Ok(Policies {
            free: policies.free.into_iter().map(shadow).collect(),
            pro: policies.pro.into_iter().map(shadow).collect(),
            search: shadow(policies.search),
        })
    }

    /// The policies that the app's layers could not be built with, named by their field: an
    /// empty tier, a name twice in one tier, or one name with two quotas (all share one store).
    #[cfg(feature = "serde")]
    fn check(&self) -> Result<(), String> {
        let mut fields: Vec<(String, &str, &Policy)> = Vec::new();
        for (tier, policies) in [("free", &self.free), ("pro", &self.pro)] {
            if policies.is_empty() {
                return Err(format!("{tier}: no policy"));
            }
            let field = |(i, policy)| (format!("{tier}[{i}]"), tier, policy);
            fields.extend(policies.iter().enumerate().map(field));
        }
        fields.push(("search".to_owned(), "search", &self.search));
        for (i, (field, tier, policy)) in fields.iter().enumerate() {
            let name = policy.name();
            let earlier = fields[..i].iter().filter(|(_, _, p)| p.name() == name);
            for (other, other_tier, other_policy) in earlier {
                if other_tier == tier {
                    return Err(format!(
                        "{field}.name: {name:?} is also the name of {other}; give each policy of \
                         a tier a name of its own"
                    ));
                }
                if other_policy.quota() != policy.quota() {
                    return Err(format!(
                        "{field}.name: {name:?} is also the name of {other}, whose quota is {}, \
                         not {}; give it the same quota to share its budget, or a name of its own",
                        other_policy.quota(),
                        policy.quota()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Without the `serde` feature: an error saying to build with it.
    #[cfg(not(feature = "serde"))]
    pub fn from_file(path: impl AsRef<Path>, _dry_run: bool) -> Result<Self, FileError> {
        Err(FileError(format!(
            "cannot read policies from {}: this build has no `serde` feature; run with \
             `--features serde`",
            path.as_ref().display()
        )))
    }
}

/// A policy file that cannot be read or is not policies.
pub struct FileError(String);

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileError {
    /// The message as written: `main` prints the error it returns with `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileError {}

/// The key of `/`: the API key when there is one, else the client IP as `PeerIp` reads it
/// (an IPv6 client by its /64, an IPv4-mapped one by its IPv4 address: one client, one
/// budget); prefixed so the two kinds never meet.
///
/// The API key is taken as the client says: in front of a real API, key by it only behind
/// authentication that checked it, or every made-up key is a fresh budget.
fn client(req: &Request) -> Option<Vec<u8>> {
    if let Some(api_key) = req.headers().get("x-api-key") {
        return Some([b"key:", api_key.as_bytes()].concat());
    }
    let ip = PeerIp::new().extract(req)?;
    Some(format!("ip:{ip}").into_bytes())
}

/// The tier of `/`: `pro` for API keys that start with `pro-`.
fn tier(req: &Request) -> Option<&'static str> {
    let api_key = req.headers().get("x-api-key")?.as_bytes();
    api_key.starts_with(b"pro-").then_some("pro")
}

/// The `cost` query parameter of `/search` (its first, as written): `None` without one. The
/// layer charges it and the handler checks it from this one reading, so that no way of writing
/// the query (the parameter twice, percent-encoded digits) is charged one cost and served
/// another.
fn cost_param(uri: &Uri) -> Option<Result<u32, ParseIntError>> {
    let query = uri.query()?;
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cost="))?;
    Some(raw.parse())
}

/// The cost of `/search`: its `cost`, 1 when absent or not a number (the handler answers
/// those 400).
fn search_cost(req: &Request) -> u32 {
    cost_param(req.uri()).and_then(Result::ok).unwrap_or(1)
}

async fn search(uri: Uri) -> (StatusCode, String) {
    match cost_param(&uri) {
        Some(Err(_)) => (
            StatusCode::BAD_REQUEST,
            "cost must be a whole number from 0 to 10\n".to_owned(),
        ),
        _ => (StatusCode::OK, "results\n".to_owned()),
    }
}

/// Requests that are never limited: the health check and the metrics.
fn bypassed(req: &Request) -> bool {
    let path = req.uri().path();
    path == "/health" || (cfg!(feature = "metrics") && path == "/metrics")
}

/// The whole app on `store`.
pub fn app<St>(store: St, policies: Policies) -> Result<Router, ConfigError>
where
    St: Store + Clone + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    app_with(store, policies, Router::new())
}

/// The whole app on `store` with `GET /metrics` rendering `prometheus`. Build the store and
/// the app after installing the recorder (or under it, with `metrics::with_local_recorder`):
/// they register their metrics when they are built.
#[cfg(feature = "metrics")]
pub fn app_with_metrics<St>(
    store: St,
    policies: Policies,
    prometheus: PrometheusHandle,
) -> Result<Router, ConfigError>
where
    St: Store + Clone + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    app_with(store, policies, metrics_route(prometheus))
}

/// The content type of the Prometheus text format.
#[cfg(feature = "metrics")]
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: what `prometheus` holds, in the Prometheus text format.
#[cfg(feature = "metrics")]
fn metrics_route(prometheus: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = prometheus.render();
            std::future::ready(([(CONTENT_TYPE, PROMETHEUS_TEXT)], text))
        }),
    )
}

/// The Prometheus recorder of `/metrics`, with buckets for the Redis store's histograms: the
/// time of its calls and the time checks wait in its queues.
#[cfg(feature = "metrics")]
pub fn prometheus() -> PrometheusBuilder {
    const SECONDS: [f64; 10] = [
        0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    ];
    [
        "ratelimit_store_latency_seconds",
        "ratelimit_store_queue_wait_seconds",
    ]
    .into_iter()
    .fold(PrometheusBuilder::new(), |builder, name| {
        builder
            .set_buckets_for_metric(Matcher::Full(name.into()), &SECONDS)
            .expect("the bucket list is not empty")
    })
}

/// The app on `store`, with `routes` under the limit of `/` (and bypassed by it if they should
/// be).
fn app_with<St>(store: St, policies: Policies, routes: Router) -> Result<Router, ConfigError>
where
    St: Store + Clone + Send + Sync + 'static,
    St::Future: Send + 'static,
{
    let main = RateLimitLayer::builder().store(store.clone()).key(client);
    // The free tier is the default stack: every policy of `free`, however many.
    let main = policies
        .free
        .into_iter()
        .fold(main, |main, policy| main.policy(policy))
        .tier("pro", policies.pro)
        .select_tier(tier)
        .bypass(bypassed)
        .headers_on_success(true)
        .build()?;
    let search_limit = RateLimitLayer::builder()
        .store(store)
        .key(PeerIp::new())
        .policy(policies.search)
        .cost_by(search_cost)
        .headers_on_success(true)
        .build()?;
    Ok(Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .merge(routes)
        .layer(main)
        .merge(
            Router::new()
                .route("/search", get(search))
                .route_layer(search_limit),
        ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_ratelimit=info,info".into()),
        )
        .init();

    let dry_run = dry_run(env::var("DRY_RUN")?.as_deref())?;
    let policies = match std::env::var_os("POLICIES") {
        Some(path) if !path.is_empty() => Policies::from_file(path, dry_run)?,
        _ => Policies::new(dry_run)?,
    };
    // With `metrics` the recorder comes first: the store and the layers register their
    // metrics when they are built.
    #[cfg(feature = "metrics")]
    let routes = {
        let prometheus = prometheus().install_recorder()?;
        let upkeep = prometheus.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        metrics_route(prometheus)
    };
    #[cfg(not(feature = "metrics"))]
    let routes = Router::new();
    let (app, where_) = match env::var("REDIS_URL")? {
        Some(url) if !url.is_empty() => {
            let app = redis_app(&url, policies, routes).await?;
            // The server's address only: a password (before `@` or in `?pass=`) stays out of
            // the log.
            let server = url.split('?').next().unwrap_or_default();
            let server = server.rsplit_once('@').map_or(server, |(_, server)| server);
            (app, server.to_owned())
        }
        _ => (
            app_with(memory_store()?, policies, routes)?,
            "memory".to_owned(),
        ),
    };

    let port: u16 = match env::var("PORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        None => 3004,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!(
        "budgets in {where_}{}; try: curl -si http://{addr}/search?cost=3",
        if dry_run { ", dry run" } else { "" }
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Whether `DRY_RUN` (unset or `value`) asks for a dry run: `1` or `true` does, unset, empty,
/// `0` or `false` does not, in any case. Any other value is an error: a misspelt switch must not
/// leave every policy enforced while the operator believes it is a dry run.
pub fn dry_run(value: Option<&str>) -> Result<bool, Box<dyn std::error::Error>> {
    match value
        .map(str::trim)
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "1" | "true" => Ok(true),
        "" | "0" | "false" => Ok(false),
        _ => Err(format!(
            "DRY_RUN must be `1` or `true`, `0` or `false`, got {:?}",
            value.unwrap_or_default()
        )
        .into()),
    }
}

/// The in-memory store, with `MAX_KEYS` as its cap when set.
fn memory_store() -> Result<MemoryStore, Box<dyn std::error::Error>> {
    match env::var("MAX_KEYS")? {
        Some(max) if !max.is_empty() => {
            let max = max
                .parse()
                .map_err(|_| format!("MAX_KEYS must be a whole number of keys, got {max:?}"))?;
            Ok(MemoryStore::builder().max_keys(max).build()?)
        }
        _ => Ok(MemoryStore::new()),
    }
}

#[cfg(feature = "redis")]
async fn redis_app(
    url: &str,
    policies: Policies,
    routes: Router,
) -> Result<Router, Box<dyn std::error::Error>> {
    let on_failure = failure_policy(env::var("REDIS_ON_FAILURE")?.as_deref())?;
    let store = tower_ratelimit::RedisStore::builder()
        .url(url)
        .prefix("policies-example")
        .on_failure(on_failure)
        .build()
        .await?;
    Ok(app_with(store, policies, routes)?)
}

/// The failure policy that `REDIS_ON_FAILURE` names (`local` when unset or empty).
#[cfg(feature = "redis")]
pub fn failure_policy(
    name: Option<&str>,
) -> Result<tower_ratelimit::FailurePolicy, Box<dyn std::error::Error>> {
    use tower_ratelimit::FailurePolicy;
    match name.map(str::trim).unwrap_or("") {
        "" | "local" => Ok(FailurePolicy::Local),
        "allow" => Ok(FailurePolicy::Allow),
        "deny" => Ok(FailurePolicy::Deny),
        other => Err(
            format!("REDIS_ON_FAILURE must be `local`, `allow` or `deny`, got {other:?}").into(),
        ),
    }
}

#[cfg(not(feature = "redis"))]
async fn redis_app(
    _url: &str,
    _policies: Policies,
    _routes: Router,
) -> Result<Router, Box<dyn std::error::Error>> {
    Err("REDIS_URL is set, but this build has no Redis store: run with `--features redis`".into())
}
