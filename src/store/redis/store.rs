//! [`RedisStore`]: what every clone shares, and the [`Store`] it implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use smallvec::SmallVec;

use super::batch::Lanes;
use super::builder::{
    DEFAULT_BACKOFF, DEFAULT_CALLS_IN_FLIGHT, DEFAULT_FAILURES_BEFORE_BACKOFF, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_LOCAL_KEYS, DEFAULT_PREFIX, DEFAULT_TIMEOUT,
};
use super::connection::{Connection, Target};
use super::deny_cache::DenyCache;
use super::health::Health;
use super::script::{MicroQuota, NotMicro, GCRA_LUA};
use super::{FailurePolicy, RedisStoreBuilder, RedisStoreFuture};
use crate::gcra::Cell;
use crate::key::with_kept_in_hash_tag;
use crate::{Clock, ConfigError, KeyBytes, MemoryStack, MemoryStore, Policy, Store};

/// A store in Redis: one GCRA budget shared by every process that uses the same Redis and
/// prefix.
///
/// Each key is one Redis string, `{<prefix>:<key bytes>}` (see [`KeyBytes`](crate::KeyBytes)
/// and [`redis_key`](RedisStore::redis_key)), holding for each policy that limits it the
/// theoretical arrival time in microseconds of Redis `TIME`, with an expiry at the moment its
/// last policy is back to a full burst (or that moment rounded up to an
/// [`expiry_step`](RedisStoreBuilder::expiry_step)): idle keys vanish on their own. The hash
/// tag is the whole key: Redis Cluster spreads keys over slots by it. One Lua script,
/// loaded once and run with `EVALSHA` (reloaded by itself after `SCRIPT FLUSH` or a restart),
/// decides a whole stack of policies atomically, for a batch of checks in one call; a denial
/// writes nothing. Decisions
/// are those of [`MemoryStore`] cell for cell, with the interval rounded up to whole
/// microseconds. [`register`](Store::register) refuses a quota that rounding would slow by
/// more than 1 % (an interval under 100 µs that is not whole microseconds, such as
/// 30 000 per second; 1 000 000 per second is 1 µs, exact), and one whose window
/// (burst × interval) is longer than 2^52 µs (about 142 years, where a
/// [`Quota`](crate::Quota) may reach 2^62 ns, about 146), which the script's doubles cannot
/// count exactly.
///
/// Around the script:
/// - **Connections**: a multiplexed connection that reconnects by itself
///   (`redis::aio::ConnectionManager`), so concurrent checks pipeline on one socket. It is
///   replaced by a new one, which looks the host's name up again, when the old one stays open
///   but useless: after Redis refused a reconnection (as with a changed password), when the
///   server answers `READONLY` (a failover that moved a DNS name to the new primary), and
///   after a check timed out on a connection that has answered nothing since it was sent nor
///   for a second (one dropped without a word by a load balancer or NAT). Or Redis Cluster
///   through the cluster client, which keeps reconnecting to a node by itself, after a refused
///   reconnection too; it is replaced by a new client, once that one is connected, after a
///   check timed out on a primary that has answered nothing on it since nor for a second. Auth (`redis://user:pass@host`) comes from the
///   URL. TLS (`rediss://`) needs the `tls` feature (rustls); servers are checked against
///   the system's roots, and a private certificate authority is trusted through
///   [`client`](RedisStoreBuilder::client) with `redis::Client::build_with_tls`.
/// - **Deny cache**: when Redis denies a check, or allows it but leaves its stack without the
///   cells to allow the same check again (an allowed check that spent a key's last cell), the
///   TATs it reported for the stack's keys are kept here, and each later answer from Redis
///   moves the kept ones forward. A check is then answered here, without a round trip, when
///   every key of its stack is kept and those TATs already deny it at its cost: Redis only
///   moves a TAT forward, so it would deny the check too. The wait and remaining come from the
///   kept TATs (Redis may hold later ones, written by other processes, and give a longer
///   wait). A key that Redis loses (deleted to reset a client, flushed, evicted under
///   `maxmemory`, gone with a restart or a failover) is still denied here until its kept TAT
///   lets the check through: for at most the wait the cache answers with. So is a key whose
///   Redis clock stepped forward (`TIME` is the server's wall clock: an NTP step, a failover
///   to a primary whose clock runs ahead), by at most that step, as kept TATs are counted on
///   this process's clock from the answer that reported them. Stacks with a
///   shadow policy always go to Redis. Bounded by
///   [`max_local_keys`](RedisStoreBuilder::max_local_keys).
/// - **Coalescing**: a check that finds no call in flight is sent at once, alone; while a call
///   is in flight, the checks that arrive queue, and the next call carries them all (up to
///   [`max_batch`](RedisStoreBuilder::max_batch), default 128), decided one after another in
///   arrival order inside the script, with the decisions one call per check would give. A
///   single server's keys are shared by hash among
///   [`calls_in_flight`](RedisStoreBuilder::calls_in_flight) queues (default 2), each with one
///   call in flight, so a key's checks keep their order. Under load Redis then runs one script
///   call for many checks instead of one per check. A Redis Cluster has one queue per primary,
///   by the store's map of which primary serves each slot (`CLUSTER SLOTS`, asked when the
///   store is built and again, at most every 100 ms, when a primary refuses a call): a call
///   carries checks of all the primary's slots and, since a call may declare keys of one slot
///   only, names its keys in its arguments and reads them one `GET` each (a call of one slot
///   declares them and reads them with one `MGET`). A primary refuses a call that reaches a key
///   it does not serve (the map is out of date); its checks then go again by slot, in runs. A
///   key's checks keep their order but across a change of the map. While a Redis Cluster
///   moves a slot to another primary (resharding), it refuses a call of several of the slot's
///   keys (`TRYAGAIN`) and serves a call of one key where the key is: such a call's checks go
///   again as runs of one key, one call each, in order.
/// - **Failures**: each call waits at most the [timeout](RedisStoreBuilder::timeout) (default
///   50 ms; the wait in the store's own queue does not count); an error or a timeout is
///   answered by the [`FailurePolicy`] (default: an in-memory GCRA with the same policies) for
///   every check of the call. After [repeated
///   failures](RedisStoreBuilder::failures_before_backoff) checks stop waiting on Redis for a
///   [back-off](RedisStoreBuilder::backoff) period (those queued when it begins too, answered
///   then by the policy), then one check probes Redis; when it succeeds, checks go back to
///   Redis. Failures are counted for the store as a whole ("repeated" means with no success
///   between them), and a failed call starts no back-off if another call succeeded while it
///   waited: on a Redis Cluster with one node down and the others answering, the checks of that
///   node's keys each wait the timeout until the cluster itself fails over or refuses commands,
///   and the other nodes' keys are still answered by Redis, however many of that node's calls
///   fail at once. Each outage gets its lines at `warn`: its first failed call ("failed;
///   answering by the failure policy") and the start of its back-off if it comes to one ("keeps
///   failing; backing off …"), both with the error and its causes, and its end, when a call
///   succeeds ("answering again", with the outage's length, its failed calls and the checks the
///   policy answered). Its other failed calls are not logged, but for a probe that fails during
///   the back-off (at `debug`). A probe that fails after a call sent before the back-off has
///   succeeded (which ended the outage, and logged its end) begins a new outage: "failed again;
///   backing off", and later its own end. The lines of at most one outage per 10 s are logged:
///   a Redis failing every other call (out of memory, where admitted checks fail and denials
///   pass) would otherwise log two lines per call; the next outage logged counts the others
///   (`similar_outages_not_logged`). A back-off is logged even when its outage's first failure
///   was not (a blip had just been logged), with the outage's end, at most once per 10 s
///   (`similar_backoffs_not_logged`); a back-off held back by that limit is logged at its first
///   failed probe past it: Redis that keeps failing is never left out of the log. A check whose
///   answer holds values that are not TATs (something else wrote to its key) is answered by the
///   failure policy without counting as a failed call, and logged at `warn` with the key
///   (quoted, its quotes and bytes outside printable ASCII escaped: `\"`, `\n`, `\xff`), at
///   most once per 10 s. Under [`FailurePolicy::Deny`] the layer also logs the requests it
///   could not serve ("rate limit store failed; the request is not served"), at `warn`, at
///   most once per 10 s with the number of lines held back.
///   [`is_degraded`](RedisStore::is_degraded) tells which state the store is in.
/// - **Failover**: behind Redis Sentinel ([`sentinel`](RedisStoreBuilder::sentinel)), a
///   primary that stops answering as one sends the store back to the sentinels, and checks go
///   to the replica they promote, with no restart. Writes the replica had not received are
///   lost with the old primary: at most one burst per key (none in the measurements of
///   `BENCHES.md` with the replica in sync, a whole burst with its link cut).
///
/// Clones share the connection, the caches and the failure state. Checks are polled on a Tokio
/// runtime with the time driver enabled, or outside any runtime (a sync caller's own
/// executor), whose checks are timed on the store's runtime. The connection's tasks, the tasks
/// that send queued checks, the calls of checks polled on another runtime or outside any (and,
/// behind Sentinel, the lookups of a new primary) run on the runtime the store is built on:
/// build it on the runtime that serves the checks, and keep that runtime running for as long
/// as the store is used. A check that finds its queue idle makes its call from its own future
/// (as a task on the store's runtime when polled elsewhere), and the checks that queue
/// meanwhile wait for that call: poll check futures (and the layer's response futures)
/// concurrently or in the order they were made, as servers do, not a later one before an
/// earlier one. Under Tokio's paused time (`tokio::time::pause`, `start_paused` in tests) an
/// idle runtime jumps to its next timer while Redis's answer is on its way, so the build and
/// the checks time out, some or all of them: test with the time running, and a
/// [clock](RedisStoreBuilder::clock) of your own to move the store's time.
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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) connection: Connection,
    /// Where checks queue behind the call in flight; `None` sends each check in its own call.
    pub(super) lanes: Option<Lanes>,
    /// The runtime the store was built on, whose tasks run its connection: where lanes'
    /// senders run, so that a sender never waits on a runtime that nobody drives.
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) script: Script,
    /// `{<prefix>:`
    pub(super) key_head: Box<[u8]>,
    pub(super) timeout: Duration,
    pub(super) policy: FailurePolicy,
    pub(super) health: Health,
    pub(super) deny_cache: Option<DenyCache>,
    pub(super) fallback: MemoryStore<SharedClock>,
    pub(super) clock: SharedClock,
    /// Whether the script's time comes from `clock` rather than Redis `TIME`.
    pub(super) clock_time: bool,
    /// Each key's expiry rounded up to a multiple of this many µs: 1 for exact expiries.
    pub(super) expiry_step_us: u64,
    /// The log line of a check whose answer from Redis was not one.
    pub(super) bad_reply_log: crate::log::Throttle,
    #[cfg(feature = "metrics")]
    pub(super) metrics: crate::telemetry::redis::RedisMetrics,
}

/// A clock shared by the store's parts.
#[derive(Clone)]
pub(super) struct SharedClock(pub(super) Arc<dyn Clock>);

impl Clock for SharedClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.0.now_nanos()
    }
}

/// A stack registered with a [`RedisStore`]: each policy's name and quota in
/// microseconds, and the same stack in the local fallback store. Clones share it, so that a
/// check waiting on Redis takes it along without copying.
#[derive(Clone, Debug)]
pub struct RedisStack {
    pub(super) parts: Arc<StackParts>,
}

/// What a [`RedisStack`] holds.
#[derive(Debug)]
pub(super) struct StackParts {
    /// `}:<policy name>` for each policy.
    pub(super) suffixes: SmallVec<[Box<[u8]>; 2]>,
    pub(super) micro: SmallVec<[MicroQuota; 2]>,
    /// The policies with their quotas in whole microseconds, as the script counts.
    pub(super) cells: SmallVec<[Cell; 2]>,
    /// Whether some policy is in shadow mode (the deny cache then stays out of the way).
    pub(super) shadow: bool,
    pub(super) local: MemoryStack,
}

impl StackParts {
    /// Each policy's name, which names its record in a key's value.
    pub(super) fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.suffixes
            .iter()
            .map(|suffix| &suffix[SUFFIX_HEAD.len()..])
    }
}

impl RedisStore {
    /// The Lua script the store runs with `EVALSHA`, for review, or to drive it directly.
    ///
    /// `KEYS` are the Redis keys of the batch's checks, one per check (none for a stack of no
    /// policies), in order; a key's value is a record of each policy that limits it (see
    /// [`redis_key`](Self::redis_key)). A call to one Redis Cluster primary for keys of several
    /// of its slots declares no key: its `ARGV` begin with `node`, the number of keys and the
    /// keys, and the arguments below follow. `ARGV` are the least expiry in ms (the store passes 0, or an hour, 3 600 000, when
    /// checks carry their time, as with a [`clock`](RedisStoreBuilder::clock)); `0` to read
    /// Redis `TIME` once for the call (`1` if each check carries its time in µs); the expiry step in µs (1 for none, see
    /// [`expiry_step`](RedisStoreBuilder::expiry_step)); the number of stacks; for each stack its
    /// number of policies and, per policy, its interval in µs, burst, shadow flag (`1` or
    /// `0`) and name; then the checks in runs of consecutive checks of one stack and one cost: the run's
    /// number of checks, its stack (from 1) and its cost (0 for a peek), followed, if checks
    /// carry their time, by the time of each of its checks. It answers one string of
    /// little-endian 64-bit floats (each a whole number): the call's time in µs (0 when the
    /// checks carry theirs), then, for each check and each policy of its stack, the TAT it found
    /// in µs (at least the check's time); the decision follows from those as in
    /// [`MemoryStore`].
    pub const SCRIPT: &'static str = GCRA_LUA;

    /// Connects to the Redis server at `url` with the default settings.
    ///
    /// `url` is `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS (with the `tls`
    /// feature), or `redis+unix:///path`.
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
            max_batch: DEFAULT_MAX_BATCH,
            calls_in_flight: DEFAULT_CALLS_IN_FLIGHT,
            deny_cache: true,
            expiry_step: Duration::ZERO,
            clock: None,
        }
    }

    /// The Redis key that holds the state of `key` under every policy that limits it:
    /// `{<prefix>:<key bytes>}`, or, for a key longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN),
    /// beginning with `sha256:` or holding a `}` (which would close the Redis Cluster hash tag
    /// early and put every key that begins alike in one slot), `{<prefix>:sha256:<32 hex
    /// digits>}`. Its value is one record per policy whose TAT has not passed: the policy's
    /// name, a zero byte and the TAT in µs as a little-endian 64-bit float
    /// ([`SCRIPT`](Self::SCRIPT)).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = tower_ratelimit::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.redis_key(&"alice"), b"{ratelimit:alice}");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn redis_key<K: KeyBytes + ?Sized>(&self, key: &K) -> Vec<u8> {
        let key = key.key_bytes();
        with_kept_in_hash_tag(key.as_bytes(), |key| {
            [&self.inner.key_head[..], key, b"}"].concat()
        })
    }

    /// Whether checks currently skip Redis after repeated failures (until a probe succeeds).
    #[must_use]
    pub fn is_backing_off(&self) -> bool {
        self.inner.health.backing_off()
    }

    /// Whether Redis is failing this store: true from a failed call (an error or a timeout)
    /// until a call succeeds, the [back-off](Self::is_backing_off) included. Meanwhile the
    /// [failure policy](RedisStoreBuilder::on_failure) answers the checks whose calls fail
    /// and, during a back-off, every check but the probe (and those the deny cache answers). A
    /// check that waits behind other checks in the store's own queue is not a failure.
    ///
    /// The `ratelimit_redis_degraded` gauge (feature `metrics`) says less: it is 1 only during
    /// a back-off, as [`is_backing_off`](Self::is_backing_off) is true. A short blip, fewer
    /// failed calls than [`failures_before_backoff`](RedisStoreBuilder::failures_before_backoff)
    /// before one succeeds, makes `is_degraded` true for its length and leaves the gauge at 0.
    ///
    /// Both are changed by checks only: nothing probes Redis in the background. A process that
    /// gets no checks keeps reporting the state its last check left, degraded or not, until a
    /// check reaches Redis again (during a back-off, the first check after its period). A
    /// health route that must stay current on a quiet process can make a check of its own
    /// first, such as a [`peek`](Store::peek) of a key no client uses, which takes nothing and
    /// is the probe once a back-off period is over (see the example below).
    ///
    /// Export it to see when a fleet's processes limit on their own instead of sharing one
    /// budget. An outage's first failed call, the start of its back-off and its end are also
    /// logged at `warn`, the end with the outage's length, its failed calls and the checks the
    /// policy answered ([`RedisStore`]'s docs list every line).
    ///
    /// ```no_run
    /// use tower_ratelimit::store::RedisStack;
    /// use tower_ratelimit::{Policy, Quota, RedisStore, Store};
    ///
    /// /// Whether this process shares its budgets through Redis, as of a check made now.
    /// async fn healthy(store: &RedisStore, stack: &RedisStack) -> bool {
    ///     let _ = store.peek(stack, b"health-check").await;
    ///     !store.is_degraded()
    /// }
    ///
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let stack = store.register(&[Policy::new("health", Quota::per_second(1))])?;
    /// assert!(healthy(&store, &stack).await);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.inner.health.degraded()
    }

    /// The failure policy.
    #[must_use]
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisStore")
            .field("connection", &inner.connection.kind())
            .field("key_head", &String::from_utf8_lossy(&inner.key_head))
            .field("timeout", &inner.timeout)
            .field("policy", &inner.policy)
            .field(
                "max_batch",
                &inner.lanes.as_ref().map_or(1, Lanes::max_batch),
            )
            .field("queues", &inner.lanes.as_ref().map_or(0, Lanes::count))
            .field("degraded", &inner.health.degraded())
            .field("backing_off", &inner.health.backing_off())
            .finish_non_exhaustive()
    }
}

impl Store for RedisStore {
    type Stack = RedisStack;
    type Error = super::RedisStoreError;
    type Future = RedisStoreFuture;

    fn register(&self, policies: &[Policy]) -> Result<RedisStack, ConfigError> {
        let micro = policies
            .iter()
            .map(|policy| {
                MicroQuota::new(policy.quota()).map_err(|why| {
                    ConfigError::new(match why {
                        NotMicro::Window => format!(
                            "policy {:?}: the quota's window (burst × interval) is longer than \
                             the Redis store can count exactly (2^52 µs, about 142 years); use \
                             a shorter interval or burst",
                            policy.name()
                        ),
                        NotMicro::Coarse(micros) => format!(
                            "policy {:?}: the quota {} has an interval of {} ns, which the Redis \
                             store, counting whole microseconds, would count as {micros} µs, a \
                             rate more than 1 % lower; use an interval of whole microseconds \
                             (a rate per second that divides 1 000 000) or a slower rate",
                            policy.name(),
                            policy.quota(),
                            policy.quota().interval_nanos()
                        ),
                    })
                })
            })
            .collect::<Result<SmallVec<[MicroQuota; 2]>, _>>()?;
        // The local fallback keeps the store's registry: one quota per name.
        let local = self.inner.fallback.register(policies)?;
        Ok(RedisStack {
            parts: Arc::new(StackParts {
                suffixes: policies
                    .iter()
                    .map(|policy| suffix(policy.name()))
                    .collect(),
                cells: policies
                    .iter()
                    .zip(&micro)
                    .map(|(policy, micro)| Cell {
                        quota: micro.to_quota(),
                        shadow: policy.is_shadow(),
                    })
                    .collect(),
                shadow: policies.iter().any(Policy::is_shadow),
                micro,
                local,
            }),
        })
    }

    fn check(&self, stack: &RedisStack, key: &[u8], cost: u32) -> RedisStoreFuture {
        Inner::start(&self.inner, stack, key, cost)
    }

    fn peek(&self, stack: &RedisStack, key: &[u8]) -> RedisStoreFuture {
        Inner::start(&self.inner, stack, key, 0)
    }
}

/// What follows a key's bytes in the deny cache's name of its TAT under `policy`:
/// `}:<policy>`.
fn suffix(policy: &str) -> Box<[u8]> {
    [SUFFIX_HEAD, policy.as_bytes()].concat().into()
}

const SUFFIX_HEAD: &[u8] = b"}:";
