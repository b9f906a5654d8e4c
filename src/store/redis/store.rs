use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind};

use super::deny_cache::DenyCache;
use super::health::{Health, Route};
use super::script::{MicroQuota, Reply, GCRA_LUA};
use super::{FailurePolicy, RedisKey, RedisStoreError};
use crate::gcra;
use crate::{Clock, ConfigError, Decision, MemoryStore, MonotonicClock, Quota, Store};

const DEFAULT_PREFIX: &str = "ratelimit";
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_FAILURES_BEFORE_BACKOFF: u32 = 3;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_LOCAL_KEYS: usize = 100_000;
/// In clock mode, the least time a written key lives in Redis: Redis expires keys by its own
/// clock, which a manual clock does not drive.
const CLOCK_MODE_MIN_EXPIRY_MS: u64 = 3_600_000;
/// How long one attempt to (re)connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A store in Redis: one GCRA budget shared by every process that uses the same Redis and
/// prefix.
///
/// Each key is one Redis string, `<prefix>:{<key bytes>}` (see [`RedisKey`]), holding the
/// key's theoretical arrival time in microseconds of Redis `TIME`, with an expiry at the moment
/// the key is back to a full burst: idle keys vanish on their own. One Lua script, loaded once
/// and run with `EVALSHA` (reloaded by itself after `SCRIPT FLUSH` or a restart), makes each
/// decision atomically; a denial writes nothing. Decisions are those of
/// [`MemoryStore`] cell for cell, with the interval rounded up to whole microseconds.
///
/// Around the script:
/// - **Connections**: a multiplexed connection that reconnects by itself
///   ([`ConnectionManager`]), so concurrent checks pipeline on one socket; or Redis Cluster
///   through the cluster client. TLS (`rediss://`) and auth (`redis://user:pass@host`) come
///   from the URL as the `redis` crate reads it.
/// - **Deny cache**: once Redis reports a key limited, later checks of that key that the
///   reported state already denies are answered here, with the wait and remaining Redis would
///   give, without a round trip. Bounded by [`max_local_keys`](RedisStoreBuilder::max_local_keys).
/// - **Failures**: each check waits at most the [timeout](RedisStoreBuilder::timeout)
///   (default 50 ms); an error or a timeout is answered by the [`FailurePolicy`] (default: an
///   in-memory GCRA with the same quota). After
///   [repeated failures](RedisStoreBuilder::failures_before_backoff) checks stop waiting on
///   Redis for a [back-off](RedisStoreBuilder::backoff) period, then one check probes Redis;
///   when it succeeds, checks go back to Redis. Each change is logged once at `warn`.
///
/// Clones share the connection, the caches and the failure state. Checks need a Tokio
/// runtime with the time driver enabled.
///
/// ```no_run
/// use std::net::SocketAddr;
/// use axum::{routing::get, Router};
/// use tower_ratelimit::{Quota, RateLimitLayer, RedisStore};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(
///         RateLimitLayer::builder()
///             .quota(Quota::per_second(10))
///             .store(store)
///             .build()?,
///     );
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    script: Script,
    /// `<prefix>:{`
    key_head: Box<[u8]>,
    timeout: Duration,
    policy: FailurePolicy,
    health: Health,
    deny_cache: Option<DenyCache>,
    fallback: MemoryStore<SharedClock>,
    clock: SharedClock,
    /// Whether the script's time comes from `clock` rather than Redis `TIME`.
    clock_time: bool,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `call` (an `EVALSHA` of `script`); loads the script and runs `call` once more if
    /// Redis has lost it (after `SCRIPT FLUSH`, a restart or a failover).
    async fn invoke(&mut self, call: &Cmd, script: &Script) -> RedisResult<Vec<i64>> {
        match self.query(call).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(script).await?;
                self.query(call).await
            }
            outcome => outcome,
        }
    }

    async fn query(&mut self, call: &Cmd) -> RedisResult<Vec<i64>> {
        match self {
            Connection::Single(c) => call.query_async(c).await,
            Connection::Cluster(c) => call.query_async(c).await,
        }
    }

    async fn load(&mut self, script: &Script) -> RedisResult<String> {
        match self {
            Connection::Single(c) => script.load_async(c).await,
            Connection::Cluster(c) => script.load_async(c).await,
        }
    }
}

/// A clock shared by the store's parts.
#[derive(Clone)]
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.0.now_nanos()
    }
}

impl RedisStore {
    /// The Lua script the store runs with `EVALSHA`, for review, or to drive it directly.
    ///
    /// `KEYS[1]` is the Redis key; `ARGV` are the interval in µs, the burst, the cost (0 for a
    /// peek), the time in µs (empty for Redis `TIME`) and the least expiry in ms (0). It
    /// answers `{allowed (1, 0, or -1 for a cost above the burst), remaining, retry_after µs,
    /// reset_after µs, TAT µs, now µs}`.
    pub const SCRIPT: &'static str = GCRA_LUA;

    /// Connects to the Redis server at `url` with the default settings.
    ///
    /// `url` is `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS (with a TLS
    /// feature of the `redis` crate enabled), or `redis+unix:///path`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = tower_ratelimit::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<RedisStore, ConfigError> {
        RedisStore::builder().url(url).build().await
    }

    /// A builder to choose the connection, the prefix, the timeout and the failure policy.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_ratelimit::store::{FailurePolicy, RedisStore};
    ///
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = RedisStore::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .prefix("api")
    ///     .timeout(Duration::from_millis(20))
    ///     .on_failure(FailurePolicy::Local)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            target: Target::None,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            policy: FailurePolicy::default(),
            failures_before_backoff: DEFAULT_FAILURES_BEFORE_BACKOFF,
            backoff: DEFAULT_BACKOFF,
            max_local_keys: DEFAULT_MAX_LOCAL_KEYS,
            deny_cache: true,
            clock: None,
        }
    }

    /// The Redis key that holds the state of `key`: `<prefix>:{<key bytes>}`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = tower_ratelimit::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.redis_key(&"alice"), b"ratelimit:{alice}");
    /// # Ok(()) }
    /// ```
    pub fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        self.inner.redis_key(key)
    }

    /// Whether checks currently skip Redis after repeated failures (until a probe succeeds).
    pub fn is_backing_off(&self) -> bool {
        self.inner.health.backing_off()
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisStore")
            .field(
                "connection",
                &match inner.connection {
                    Connection::Single(_) => "single",
                    Connection::Cluster(_) => "cluster",
                },
            )
            .field("key_head", &String::from_utf8_lossy(&inner.key_head))
            .field("timeout", &inner.timeout)
            .field("policy", &inner.policy)
            .field("backing_off", &inner.health.backing_off())
            .finish_non_exhaustive()
    }
}

impl<K: RedisKey + ?Sized> Store<K> for RedisStore {
    type Error = RedisStoreError;
    type Future = RedisStoreFuture;

    fn check(&self, key: &K, quota: &Quota, cost: u32) -> RedisStoreFuture {
        Inner::start(&self.inner, key, quota, cost)
    }

    fn peek(&self, key: &K, quota: &Quota) -> RedisStoreFuture {
        Inner::start(&self.inner, key, quota, 0)
    }
}

/// The answer of a [`RedisStore`] check: ready at once when the deny cache or the back-off
/// answers it, else a round trip to Redis.
#[must_use = "futures do nothing unless polled"]
pub struct RedisStoreFuture {
    state: FutureState,
}

type Pending = Pin<Box<dyn Future<Output = Result<Decision, RedisStoreError>> + Send>>;

enum FutureState {
    Ready(Option<Result<Decision, RedisStoreError>>),
    Pending(Pending),
}

impl RedisStoreFuture {
    fn ready(outcome: Result<Decision, RedisStoreError>) -> Self {
        RedisStoreFuture {
            state: FutureState::Ready(Some(outcome)),
        }
    }
}

impl Future for RedisStoreFuture {
    type Output = Result<Decision, RedisStoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            FutureState::Ready(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("RedisStoreFuture polled after completion"),
            ),
            FutureState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for RedisStoreFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            FutureState::Ready(_) => "ready",
            FutureState::Pending(_) => "pending",
        };
        f.debug_struct("RedisStoreFuture")
            .field("state", &state)
            .finish()
    }
}

/// What one check sends to Redis and needs back.
struct Ask {
    key: Vec<u8>,
    quota: Quota,
    micro: MicroQuota,
    /// 0 for a peek.
    cost: u32,
    /// The script's time in µs in clock mode; `None` to read Redis `TIME`.
    now_arg: Option<u64>,
    /// The local time (ns) that corresponds to the script's time.
    base: u64,
    probe: bool,
}

impl Inner {
    fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_head.len() + 24);
        out.extend_from_slice(&self.key_head);
        key.write_redis_key(&mut out);
        out.push(b'}');
        out
    }

    fn start<K: RedisKey + ?Sized>(
        this: &Arc<Self>,
        key: &K,
        quota: &Quota,
        cost: u32,
    ) -> RedisStoreFuture {
        if cost > quota.burst() {
            return RedisStoreFuture::ready(Err(RedisStoreError::over_burst(cost, quota.burst())));
        }
        let Some(micro) = MicroQuota::new(quota) else {
            return RedisStoreFuture::ready(Err(RedisStoreError::quota_too_long()));
        };
        let key = this.redis_key(key);
        let local_now = this.clock.now_nanos();
        // In clock mode the script gets whole microseconds; the local side uses the same
        // instant so that its answers are the script's.
        let (now_arg, base) = if this.clock_time {
            let micros = local_now / 1000;
            (Some(micros), micros * 1000)
        } else {
            (None, local_now)
        };
        if let Some(decision) = this.cached_denial(&key, micro, cost, base) {
            return RedisStoreFuture::ready(Ok(decision));
        }
        match this.health.route(local_now) {
            Route::Policy => RedisStoreFuture::ready(this.by_policy(
                &key,
                quota,
                cost,
                RedisStoreError::backing_off(),
            )),
            Route::Redis { probe } => {
                let ask = Ask {
                    key,
                    quota: *quota,
                    micro,
                    cost,
                    now_arg,
                    base,
                    probe,
                };
                RedisStoreFuture {
                    state: FutureState::Pending(Box::pin(Arc::clone(this).ask(ask))),
                }
            }
        }
    }

    /// The denial Redis would give, if the TAT it last reported for `key` already denies.
    fn cached_denial(
        &self,
        key: &[u8],
        micro: MicroQuota,
        cost: u32,
        now: u64,
    ) -> Option<Decision> {
        let tat = self.deny_cache.as_ref()?.get(key, now)?;
        let quota = micro.to_quota();
        let decision = if cost == 0 {
            gcra::peek(&quota, tat, now)
        } else {
            gcra::check(&quota, tat, now, cost).ok()?.decision
        };
        (!decision.is_allowed()).then_some(decision)
    }

    async fn ask(self: Arc<Self>, ask: Ask) -> Result<Decision, RedisStoreError> {
        let mut probe = ProbeGuard {
            health: &self.health,
            armed: ask.probe,
        };
        // The command is written straight into one buffer: no per-argument vectors.
        let mut call = Cmd::with_capacity(9, 96 + ask.key.len());
        call.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(1)
            .arg(&ask.key[..])
            .arg(ask.micro.interval)
            .arg(ask.micro.burst)
            .arg(ask.cost);
        match ask.now_arg {
            Some(micros) => call.arg(micros).arg(CLOCK_MODE_MIN_EXPIRY_MS),
            None => call.arg("").arg(0),
        };
        let mut connection = self.connection.clone();
        let invoke = connection.invoke(&call, &self.script);
        let outcome = match tokio::time::timeout(self.timeout, invoke).await {
            Ok(Ok(values)) => match Reply::parse(&values, ask.micro.burst) {
                Some(reply) => Ok(reply),
                None => Err(RedisStoreError::reply(values)),
            },
            Ok(Err(error)) => Err(RedisStoreError::redis(error)),
            Err(_) => Err(RedisStoreError::timeout(self.timeout)),
        };
        probe.armed = false;
        let local_now = self.clock.now_nanos();
        match outcome {
            Ok(Reply::Decided { decision, tat, now }) => {
                self.health.success(local_now, ask.probe);
                if let Some(cache) = &self.deny_cache {
                    let local_tat = ask
                        .base
                        .saturating_add(tat.saturating_sub(now).saturating_mul(1000));
                    // Cache the key when the same check would now be denied; update it when
                    // it is cached already.
                    let exhausted =
                        !decision.is_allowed() || decision.remaining() < ask.cost.max(1);
                    cache.record(&ask.key, local_tat, ask.base, exhausted);
                }
                Ok(decision)
            }
            Ok(Reply::OverBurst) => {
                self.health.success(local_now, ask.probe);
                Err(RedisStoreError::over_burst(ask.cost, ask.micro.burst))
            }
            Err(error) => {
                self.health
                    .failure(local_now, ask.probe, &error, self.policy);
                self.by_policy(&ask.key, &ask.quota, ask.cost, error)
            }
        }
    }

    /// The failure policy's answer to a check that Redis could not answer.
    fn by_policy(
        &self,
        key: &Vec<u8>,
        quota: &Quota,
        cost: u32,
        error: RedisStoreError,
    ) -> Result<Decision, RedisStoreError> {
        self.health.answered_by_policy();
        match self.policy {
            FailurePolicy::Local if cost == 0 => Ok(self.fallback.peek_now(key, quota)),
            FailurePolicy::Local => Ok(self.fallback.check_now(key, quota, cost)?),
            FailurePolicy::Allow => Ok(Decision::allowed(
                quota.burst(),
                quota.burst() - cost,
                Duration::ZERO,
            )),
            FailurePolicy::Deny => Err(error),
        }
    }
}

/// Marks a probe abandoned if its check is dropped before Redis answers.
struct ProbeGuard<'a> {
    health: &'a Health,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.probe_abandoned();
        }
    }
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder {
    target: Target,
    prefix: String,
    timeout: Duration,
    policy: FailurePolicy,
    failures_before_backoff: u32,
    backoff: Duration,
    max_local_keys: usize,
    deny_cache: bool,
    clock: Option<SharedClock>,
}

enum Target {
    None,
    Url(String),
    Client(redis::Client),
    Cluster(Vec<String>),
    Manager(ConnectionManager),
    ClusterConnection(ClusterConnection),
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::None => "none".to_owned(),
            Target::Url(url) => redact(url),
            Target::Client(_) => "client".to_owned(),
            Target::Cluster(urls) => format!(
                "cluster {:?}",
                urls.iter().map(|u| redact(u)).collect::<Vec<_>>()
            ),
            Target::Manager(_) => "connection manager".to_owned(),
            Target::ClusterConnection(_) => "cluster connection".to_owned(),
        };
        f.debug_struct("RedisStoreBuilder")
            .field("target", &target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Connects to one Redis server at `url` with a multiplexed connection that reconnects by
    /// itself. See [`RedisStore::connect`] for the URL forms.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().url("redis://127.0.0.1:6379/0");
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Url(url.into());
        self
    }

    /// Connects to one Redis server through an existing client, with a multiplexed connection
    /// that reconnects by itself.
    ///
    /// ```
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let builder = tower_ratelimit::RedisStore::builder().client(client);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn client(mut self, client: redis::Client) -> Self {
        self.target = Target::Client(client);
        self
    }

    /// Connects to a Redis Cluster through some of its nodes; the others are discovered.
    ///
    /// Each key lives on the node of its slot, and its hash tag (`{<key bytes>}`) keeps every
    /// Redis key of one limited key in one slot.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder()
    ///     .cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]);
    /// ```
    pub fn cluster<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.target = Target::Cluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// Uses an existing single-server connection manager.
    pub fn connection_manager(mut self, connection: ConnectionManager) -> Self {
        self.target = Target::Manager(connection);
        self
    }

    /// Uses an existing Redis Cluster connection.
    pub fn cluster_connection(mut self, connection: ClusterConnection) -> Self {
        self.target = Target::ClusterConnection(connection);
        self
    }

    /// The first part of every Redis key (default `ratelimit`): keys are
    /// `<prefix>:{<key bytes>}`. Stores with the same prefix on the same Redis share budgets.
    /// The prefix may not contain `{` or `}`.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().prefix("login");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a check waits for Redis before the failure policy answers it (default 50 ms).
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder()
    ///     .timeout(std::time::Duration::from_millis(20));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How checks are answered when Redis fails or times out (default
    /// [`FailurePolicy::Local`]).
    ///
    /// ```
    /// use tower_ratelimit::store::{FailurePolicy, RedisStore};
    /// let builder = RedisStore::builder().on_failure(FailurePolicy::Allow);
    /// ```
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many failures in a row start a back-off (default 3).
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().failures_before_backoff(5);
    /// ```
    pub fn failures_before_backoff(mut self, failures: u32) -> Self {
        self.failures_before_backoff = failures;
        self
    }

    /// How long checks skip Redis after repeated failures before one check probes it again
    /// (default 1 s). Measured on the store's clock.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder()
    ///     .backoff(std::time::Duration::from_millis(500));
    /// ```
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The most keys held in this process by the deny cache, and by the in-memory GCRA of
    /// [`FailurePolicy::Local`] (default 100 000 each).
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().max_local_keys(10_000);
    /// ```
    pub fn max_local_keys(mut self, max_keys: usize) -> Self {
        self.max_local_keys = max_keys;
        self
    }

    /// Whether to answer checks of keys known to be limited without a round trip (default
    /// on). Turn it off to send every check to Redis.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().deny_cache(false);
    /// ```
    pub fn deny_cache(mut self, enabled: bool) -> Self {
        self.deny_cache = enabled;
        self
    }

    /// Takes the time from `clock` instead of Redis `TIME`, passing it to the script in
    /// microseconds; the back-off and the local caches read it too. Since Redis expires keys
    /// by its own clock, keys written in this mode live at least an hour.
    ///
    /// Redis `TIME` (the default) gives every process one clock. Use a clock for deterministic
    /// tests with [`ManualClock`](crate::ManualClock), or when all processes share a clock
    /// source; clocks that disagree let the fastest one spend budgets early.
    ///
    /// ```
    /// use tower_ratelimit::{ManualClock, RedisStore};
    /// let builder = RedisStore::builder().clock(ManualClock::new());
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(SharedClock(Arc::new(clock)));
        self
    }

    /// Connects, loads the script, and returns the store; or an error naming what is wrong:
    /// no connection given, a prefix with `{` or `}`, a zero timeout, back-off or key cap,
    /// or a Redis that cannot be reached or cannot run scripts.
    pub async fn build(self) -> Result<RedisStore, ConfigError> {
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(format!(
                "RedisStore prefix {:?} contains `{{` or `}}`, which would change the keys' \
                 cluster hash tag: use a prefix without braces",
                self.prefix
            )));
        }
        if self.timeout.is_zero() || self.backoff.is_zero() {
            return Err(ConfigError::new(
                "RedisStore timeout and backoff must be longer than zero",
            ));
        }
        if self.max_local_keys == 0 {
            return Err(ConfigError::new(
                "RedisStore max_local_keys is 0; it must hold at least one key",
            ));
        }
        let (mut connection, name) = connect(self.target).await?;
        let script = Script::new(GCRA_LUA);
        connection.load(&script).await.map_err(|e| {
            ConfigError::with_source(
                format!(
                    "could not load the rate limit script into Redis at {name}: check that \
                     Redis is reachable, that the user may run SCRIPT LOAD and EVALSHA, and \
                     that scripting is enabled"
                ),
                e,
            )
        })?;
        let clock_time = self.clock.is_some();
        let clock = self
            .clock
            .unwrap_or_else(|| SharedClock(Arc::new(MonotonicClock::new())));
        let fallback = MemoryStore::builder()
            .clock(clock.clone())
            .max_keys(self.max_local_keys)
            .build()?;
        let mut key_head = self.prefix.into_bytes();
        key_head.extend_from_slice(b":{");
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                script,
                key_head: key_head.into(),
                timeout: self.timeout,
                policy: self.policy,
                health: Health::new(self.failures_before_backoff, self.backoff),
                deny_cache: self.deny_cache.then(|| DenyCache::new(self.max_local_keys)),
                fallback,
                clock,
                clock_time,
            }),
        })
    }
}

/// Opens the connection; returns it with a printable name of where it goes.
async fn connect(target: Target) -> Result<(Connection, String), ConfigError> {
    let single = |client: redis::Client, name: String| async move {
        // One quick reconnection attempt per check: the store's back-off spaces them out. No
        // response timeout of the connection's own: the store's timeout bounds every check,
        // and a second timer per check would only cost time.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        match ConnectionManager::new_with_config(client, config).await {
            Ok(manager) => Ok((Connection::Single(manager), name)),
            Err(e) => Err(unreachable(&name, e)),
        }
    };
    match target {
        Target::None => Err(ConfigError::new(
            "RedisStore has no Redis to connect to: call `.url(\"redis://host:6379\")`, \
             `.cluster([..])` or pass a connection",
        )),
        Target::Url(url) => {
            let name = redact(&url);
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                ConfigError::with_source(
                    format!(
                        "invalid Redis URL {name}: expected redis://[user:password@]host[:port][/db], \
                         rediss:// for TLS or redis+unix:///path"
                    ),
                    e,
                )
            })?;
            single(client, name).await
        }
        Target::Client(client) => {
            let name = client.get_connection_info().addr().to_string();
            single(client, name).await
        }
        Target::Cluster(urls) => {
            let name = format!(
                "cluster {}",
                urls.iter()
                    .map(|u| redact(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let client = ClusterClient::builder(urls)
                .retries(1)
                .connection_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| {
                    ConfigError::with_source(format!("invalid Redis Cluster node list {name}"), e)
                })?;
            match client.get_async_connection().await {
                Ok(connection) => Ok((Connection::Cluster(connection), name)),
                Err(e) => Err(unreachable(&name, e)),
            }
        }
        Target::Manager(manager) => Ok((Connection::Single(manager), "connection manager".into())),
        Target::ClusterConnection(connection) => {
            Ok((Connection::Cluster(connection), "cluster connection".into()))
        }
    }
}

fn unreachable(name: &str, error: redis::RedisError) -> ConfigError {
    ConfigError::with_source(
        format!(
            "could not connect to Redis at {name}: check the URL and that Redis is running and \
             reachable (for a local one: `apt-get install redis-server`)"
        ),
        error,
    )
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[tokio::test]
    async fn bad_configurations_are_refused_with_what_to_do() {
        let no_target = RedisStore::builder().build().await.unwrap_err();
        assert!(no_target.to_string().contains(".url("), "{no_target}");
        let braces = RedisStore::builder()
            .url("redis://127.0.0.1:1")
            .prefix("a{b")
            .build()
            .await
            .unwrap_err();
        assert!(braces.to_string().contains("braces"), "{braces}");
        let bad_url = RedisStore::builder()
            .url("http://x")
            .build()
            .await
            .unwrap_err();
        assert!(
            bad_url.to_string().contains("invalid Redis URL"),
            "{bad_url}"
        );
    }
}
