//! [`RedisStoreBuilder`]: the connection, the prefix, the timeout and the failure policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::Script;

use super::batch::Lanes;
use super::connection::{connect, Dest, Target, CONNECT_TIMEOUT};
use super::deny_cache::DenyCache;
use super::health::Health;
use super::script::GCRA_LUA;
use super::store::{Inner, SharedClock};
use super::{FailurePolicy, RedisStore};
use crate::log::Chain;
use crate::{Clock, ConfigError, MemoryStore, MonotonicClock};

/// The longest the build waits for each answer of a connected Redis, whatever the checks'
/// timeout.
const BUILD_ANSWER_MAX: Duration = Duration::from_secs(5);
/// A check timeout from which on the cluster client's nodes get no timeout of their own: a
/// day, beyond which a timeout is taken to mean none.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub(super) const DEFAULT_PREFIX: &str = "ratelimit";
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
pub(super) const DEFAULT_FAILURES_BEFORE_BACKOFF: u32 = 3;
pub(super) const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_MAX_LOCAL_KEYS: usize = 100_000;
pub(super) const DEFAULT_MAX_BATCH: usize = 128;
pub(super) const DEFAULT_CALLS_IN_FLIGHT: usize = 2;
/// The longest [`RedisStoreBuilder::expiry_step`].
const MAX_EXPIRY_STEP: Duration = Duration::from_secs(24 * 3600);

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
///
/// The connection is given by one of [`url`](Self::url), [`client`](Self::client),
/// [`cluster`](Self::cluster), [`sentinel`](Self::sentinel),
/// [`sentinel_client`](Self::sentinel_client), [`connection_manager`](Self::connection_manager)
/// and [`cluster_connection`](Self::cluster_connection): the last one called is used. Every
/// setting replaces what an earlier call of the same setter gave.
///
/// ```
/// let builder = tower_ratelimit::RedisStore::builder()
///     .url("redis://10.0.0.1:6379")
///     .cluster(["redis://10.0.0.2:6379"]);
/// let debug = format!("{builder:?}");
/// assert!(debug.contains("cluster") && debug.contains("10.0.0.2"), "{debug}");
/// assert!(!debug.contains("10.0.0.1"), "{debug}");
/// ```
#[must_use]
pub struct RedisStoreBuilder {
    pub(super) target: Target,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) policy: FailurePolicy,
    pub(super) failures_before_backoff: u32,
    pub(super) backoff: Duration,
    pub(super) max_local_keys: usize,
    pub(super) max_batch: usize,
    pub(super) calls_in_flight: usize,
    pub(super) deny_cache: bool,
    pub(super) expiry_step: Duration,
    pub(super) clock: Option<SharedClock>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target.describe();
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
        self.target = Target::Client(Box::new(client));
        self
    }

    /// Connects to a Redis Cluster through some of its nodes; the others are discovered.
    ///
    /// Each key lives on the node of its slot: a limited key is one Redis key, its hash tag
    /// (`{<prefix>:<key bytes>}`), holding every policy's state, so that a stack is one script
    /// call. The cluster client waits for a node's answer as long as the checks'
    /// [`timeout`](Self::timeout), a second at least: a node that takes connections but
    /// answers nothing (a stalled replica) does not hold up the build. The client calls a
    /// node again on the connection that timed out; the store opens a new client when a
    /// primary has answered nothing on it for a second while calls to it timed out (its
    /// connection dropped without a word by a load balancer or NAT between), and keeps using
    /// the one in use until the new one is connected.
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

    /// Connects to the primary that Redis Sentinel names for `master`, and follows it through
    /// failovers.
    ///
    /// `sentinels` are the addresses of the sentinels (`redis://host:26379`, a password in the
    /// URL is the sentinel's); `master` is the name they monitor (`sentinel monitor <master>
    /// ..`). Building the store asks them for the primary and connects to it; an empty list,
    /// sentinels that cannot be reached, or a name they know no primary for is a
    /// [`ConfigError`]. Afterwards, when the primary stops answering as one (a broken
    /// connection, `READONLY` from a demoted primary, `NOREPLICAS` from one cut off from its
    /// replicas under `min-replicas-to-write`, a check that times out), the store asks
    /// the sentinels again in the background until they name a primary, and checks go to the
    /// new one; meanwhile the [`FailurePolicy`] answers. Timed-out checks ask the sentinels at
    /// most once per 100 ms, and each answer is checked by asking the primary it names for its
    /// `ROLE` on a connection of its own: a primary that is only slow gets up to ten such
    /// connections a second from each process whose checks time out on it. Writes that the
    /// old primary had not yet passed to its replica are lost with it: at most about one burst
    /// per key, once per failover.
    ///
    /// The primary is reached without a password; for a password, a database, TLS or other
    /// settings toward the primary use [`sentinel_client`](Self::sentinel_client).
    ///
    /// ```no_run
    /// use tower_ratelimit::{Quota, RateLimitLayer, RedisStore};
    ///
    /// # async fn run() -> Result<(), tower_ratelimit::ConfigError> {
    /// let store = RedisStore::builder()
    ///     .sentinel(
    ///         ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///         "mymaster",
    ///     )
    ///     .build()
    ///     .await?;
    /// assert!(!store.is_backing_off());
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_second(10))
    ///     .store(store)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<I>(mut self, sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.target = Target::Sentinel(
            sentinels.into_iter().map(Into::into).collect(),
            master.into(),
        );
        self
    }

    /// Connects to the primary that an existing Sentinel client names, and follows it through
    /// failovers as [`sentinel`](Self::sentinel) does. The client carries the settings toward
    /// the sentinels and toward the primary (passwords, database, TLS); it must be built with
    /// `SentinelServerType::Master`, or building the store fails.
    ///
    /// ```
    /// use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    /// use redis::ConnectionAddr;
    ///
    /// let sentinels = [ConnectionAddr::Tcp("10.0.0.1".into(), 26379)];
    /// let client = SentinelClientBuilder::new(sentinels, "mymaster", SentinelServerType::Master)?
    ///     .set_client_to_redis_password("primary's password")
    ///     .build()?;
    /// let builder = tower_ratelimit::RedisStore::builder().sentinel_client(client);
    /// assert!(format!("{builder:?}").contains("sentinel client"));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn sentinel_client(mut self, client: SentinelClient) -> Self {
        self.target = Target::SentinelClient(Box::new(client));
        self
    }

    /// Uses an existing single-server connection manager, with its own settings: the store
    /// opens its own with one reconnection attempt and no sleep between attempts (the store's
    /// back-off spaces them out), and no response timeout of its own (the store's bounds every
    /// call); a manager passed in that sleeps between reconnection attempts can hold a call
    /// past the store's timeout once Redis is back. The store also replaces its own manager
    /// when Redis refused a reconnection (a password it no longer takes), after which a
    /// manager tries no more; a manager passed in is kept, and stays failed until the process
    /// restarts.
    ///
    /// A manager set up as the store sets up its own:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    /// use tower_ratelimit::RedisStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let config = ConnectionManagerConfig::new()
    ///     .set_number_of_retries(0)
    ///     .set_connection_timeout(Some(Duration::from_secs(1)))
    ///     .set_response_timeout(None);
    /// let manager = ConnectionManager::new_with_config(client, config).await?;
    /// let store = RedisStore::builder().connection_manager(manager).build().await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn connection_manager(mut self, connection: ConnectionManager) -> Self {
        self.target = Target::Manager(connection);
        self
    }

    /// Uses an existing Redis Cluster connection, with its own settings (the store opens its
    /// own with three retries, enough for a restarted node's dead connection and the
    /// redirection that follows it, and waits of at most 8 ms before a retry that Redis asked
    /// for). A connection whose waits are longer than the store's timeout (the cluster client's
    /// default is over a second) fails the checks of a slot's keys while the slot moves to
    /// another primary: Redis refuses a call of several of its keys with `TRYAGAIN`, and the
    /// store sends them again one key per call only once the client gives up on it. A
    /// connection passed in is kept: one to a primary that goes silent without a word stays
    /// in use until the kernel gives up on it, where the store's own is replaced (see
    /// [`cluster`](Self::cluster)).
    ///
    /// A connection set up as the store sets up its own (with the default timeout of 50 ms,
    /// whose node answers it waits for a second at most):
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redis::cluster::ClusterClient;
    /// use tower_ratelimit::RedisStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = ClusterClient::builder(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
    ///     .retries(3)
    ///     .min_retry_wait(1)
    ///     .max_retry_wait(8)
    ///     .retry_wait_formula(1, 2)
    ///     .connection_timeout(Duration::from_secs(1))
    ///     .response_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// let connection = client.get_async_connection().await?;
    /// let store = RedisStore::builder().cluster_connection(connection).build().await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn cluster_connection(mut self, connection: ClusterConnection) -> Self {
        self.target = Target::ClusterConnection(connection);
        self
    }

    /// The first part of every Redis key (default `ratelimit`): keys are
    /// `{<prefix>:<key bytes>}`, each holding the state of every policy that limits the key
    /// ([`RedisStore::redis_key`]). Stores with the same prefix on the same Redis share
    /// budgets: each decides a policy's keys by the quota it gives that name, unchecked against
    /// the others' (see [`policy`](crate::policy)), so they must agree on each name's quota.
    /// The prefix may not contain `{` or `}`. Keep one store's prefix from beginning
    /// with another's followed by `:` (`api` and `api:v2`): the two would share the budgets of
    /// some keys (`v2:alice` under `api` is `alice` under `api:v2`).
    ///
    /// ```no_run
    /// use tower_ratelimit::{Policy, Quota, RedisStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "redis://127.0.0.1:6379";
    /// let login = RedisStore::builder().url(url).prefix("login").build().await?;
    /// let also_login = RedisStore::builder().url(url).prefix("login").build().await?;
    /// let api = RedisStore::builder().url(url).prefix("api").build().await?;
    ///
    /// let per_ip = [Policy::new("per-ip", Quota::per_second(1))];
    /// let admits = async |store: &RedisStore| {
    ///     let stack = store.register(&per_ip).unwrap();
    ///     store.check(&stack, b"192.0.2.1", 1).await.unwrap().is_allowed()
    /// };
    /// assert!(admits(&login).await);
    /// // The same prefix: one budget, now spent. Another prefix: a budget of its own.
    /// assert!(!admits(&also_login).await);
    /// assert!(admits(&api).await);
    /// # Ok(()) }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one script call may take before the failure policy answers its checks
    /// (default 50 ms; longer than zero; `Duration::MAX` for none). The wait of a check queued
    /// behind the call in flight does not count: under a load that Redis answers, however
    /// slowly, no check goes to the failure policy (under the default
    /// [`Local`](FailurePolicy::Local) each process would then admit its whole quota), so a
    /// check's wait grows with the queue (with the `metrics` feature,
    /// `ratelimit_store_queue_wait_seconds` shows it). A call whose timer fired late (this
    /// process was starved) gets one more timeout. A call that times out after it was sent may
    /// still run in Redis: its checks then count there as well as in the failure policy's
    /// answer, which can only deny more, never admit more. So does a check whose future is
    /// dropped (its request cancelled) once its call is sent; one dropped before, while it waits
    /// in the queue, takes nothing. The queue holds one entry per request waiting on the store,
    /// so what bounds the server's requests in flight bounds it too: to cap a check's whole
    /// wait, put tower's `Timeout` (or `LoadShed` and `ConcurrencyLimit`) in front of the
    /// limit, and a request it gives up on while queued takes nothing.
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

    /// How many failures in a row start a back-off (default 3; at least 1). A call that fails
    /// after another call succeeded while it waited (on a Redis Cluster, a call to a node down
    /// while the others answer) starts none.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().failures_before_backoff(5);
    /// ```
    pub fn failures_before_backoff(mut self, failures: u32) -> Self {
        self.failures_before_backoff = failures;
        self
    }

    /// How long checks skip Redis after repeated failures before one check probes it again
    /// (default 1 s; longer than zero). Measured on the store's clock.
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
    /// [`FailurePolicy::Local`] (default 100 000 each; at least 1). The deny cache holds an
    /// entry per key and policy: with stacks of two policies, about half as many keys.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().max_local_keys(10_000);
    /// ```
    pub fn max_local_keys(mut self, max_keys: usize) -> Self {
        self.max_local_keys = max_keys;
        self
    }

    /// The most checks one script call carries (default 128; at least 1); 1 sends every check
    /// in its own call as soon as it arrives.
    ///
    /// While a call is in flight, the checks that arrive wait, and the next call carries them
    /// all, each decided in arrival order inside the script, exactly as if each had its own
    /// call: one Redis core then decides many checks per call instead of one, and a check
    /// that finds no call in flight goes at once, alone, from its own future (on the store's
    /// runtime if the check is polled elsewhere); the calls that carry queued checks are made
    /// by a task on the runtime the store was built on. There are
    /// [`calls_in_flight`](Self::calls_in_flight) queues for a single server, or one per
    /// primary on a Redis Cluster. The store's [timeout](Self::timeout) bounds the
    /// call, not the wait in the queue: a busy queue is not a Redis failure.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().max_batch(64);
    /// ```
    pub fn max_batch(mut self, checks: usize) -> Self {
        self.max_batch = checks;
        self
    }

    /// How many coalesced script calls may be in flight at once to a single server (default
    /// 2; at least 1); on a Redis Cluster there is one queue per primary whatever this says.
    ///
    /// The keys are shared among `calls` queues by their hash slot, each with at most one call
    /// in flight: a key always takes the same queue, so its checks are still decided in the
    /// order they arrive, while Redis runs one queue's call as the next call of another is on
    /// its way. Two keep Redis busier than one without making the batches much smaller; more
    /// split the checks into smaller calls (see the crate's BENCHES.md). Past the 16 384 hash
    /// slots more queues would stay empty, so that is the most there are. Has no effect with
    /// [`max_batch(1)`](Self::max_batch).
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().calls_in_flight(4);
    /// ```
    pub fn calls_in_flight(mut self, calls: usize) -> Self {
        self.calls_in_flight = calls;
        self
    }

    /// Whether to answer without a round trip the checks that the TATs Redis last reported for
    /// their keys already deny (default on; the [`RedisStore`] docs say which TATs are kept).
    /// Turn it off to send every check to Redis.
    ///
    /// ```
    /// let builder = tower_ratelimit::RedisStore::builder().deny_cache(false);
    /// ```
    pub fn deny_cache(mut self, enabled: bool) -> Self {
        self.deny_cache = enabled;
        self
    }

    /// Rounds each key's expiry up to a multiple of `step` on Redis's clock (default: no
    /// rounding), so that most checks of a busy key leave its expiry as it is.
    ///
    /// By default every allowed check moves its keys' expiry to the moment they are full again,
    /// and no key outlives its state; moving an expiry is about a fifth of what a coalesced
    /// check costs Redis (see the crate's BENCHES.md). With a step, a check moves a key's
    /// expiry only when its state passes the rounded moment already set, and writes the new
    /// state keeping the expiry (`SET … KEEPTTL`, Redis 6.0 or later) otherwise. The decisions
    /// are the same; keys live up to `step` longer than their state matters, which costs Redis
    /// memory under a flood of fresh keys.
    ///
    /// Every store sharing these keys should use the same step. While they differ (as while a
    /// fleet is being switched to it), a key whose expiry another store set can expire up to
    /// one step before its state does, once, and admit what that step would have refilled.
    /// Has no effect with a [`clock`](Self::clock). At most a day.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = tower_ratelimit::RedisStore::builder().expiry_step(Duration::from_secs(1));
    /// ```
    pub fn expiry_step(mut self, step: Duration) -> Self {
        self.expiry_step = step;
        self
    }

    /// Takes the time from `clock` instead of Redis `TIME`, passing it to the script in
    /// microseconds; the back-off and the local caches read it too. Since Redis expires keys
    /// by its own clock, keys written in this mode live at least an hour.
    ///
    /// Redis `TIME` (the default) gives every process one clock. Use a clock for deterministic
    /// tests with [`ManualClock`](crate::ManualClock), or when all processes share a clock
    /// source; clocks that disagree let the fastest one spend budgets early. The script counts
    /// exactly up to 2^52 µs from the clock's origin (about 142 years; Unix time is far below):
    /// a check at a later time is answered by the [failure policy](Self::on_failure).
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
    /// no connection given, a prefix with `{` or `}`, a zero timeout, back-off, key cap,
    /// failures before a back-off, batch size or calls in flight, an expiry step longer than a
    /// day, a build outside a Tokio runtime, a Redis that cannot be reached or will not run the
    /// script, a single server that is a replica (which refuses writes) or a node of a Redis
    /// Cluster (which answers `MOVED` for the keys of other nodes' slots: use
    /// [`cluster`](Self::cluster)). Every check but the last four is made before connecting.
    /// A Redis that asks for a password the URL does not give, or that is not serving yet
    /// (`LOADING` its data, `BUSY` with a script, a cluster down), is an error that says so.
    /// Once connected, Redis must answer `INFO cluster`, the script's load and `ROLE` each
    /// within the [timeout](Self::timeout), but at least a second and at
    /// most five (a timeout of `Duration::MAX` included): a Redis that stops answering is an
    /// error, not a build that never ends. Then one run of the script (a check of a key no
    /// limited key uses, `{<prefix>:sha256:build}`, which it writes for a millisecond; waited
    /// for as long, and Redis holds it while writes are paused) fails the build if Redis
    /// refuses it: when an ACL keeps the user from `EVALSHA`, `TIME` (unless the store has a
    /// [clock](Self::clock)), `MGET`, `PSETEX` or the store's keys, or writing them (`%R~`), or
    /// when one of these commands is renamed. A Redis out of memory
    /// under `maxmemory` (`OOM`) refuses the write too: that passes with a `warn` line, as the
    /// failure policy answers the admitted checks until Redis has room. With an
    /// [expiry step](Self::expiry_step) checks also write with `SET`, which the build does not
    /// try. `ROLE` tells a replica and `INFO cluster` a node of a cluster; a server that
    /// refuses either (to a user without `+role` or `+info`) is taken for a standalone
    /// primary. So a user of its own needs
    /// `+evalsha +script|load +time +mget +psetex +set +role +info ~{ratelimit:*` for the default
    /// prefix (the keys begin with the hash tag's `{`), and `+select` for a database other
    /// than 0. On a Redis Cluster it also needs `+cluster|slots`, to read the slot map, and
    /// `+get`: a call that carries keys of several hash slots of one primary reads them one by
    /// one, which the build's check of one key does not try. Without `+get` each such call is
    /// refused and its checks are sent again slot by slot, one call for each.
    pub async fn build(self) -> Result<RedisStore, ConfigError> {
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(format!(
                "RedisStore prefix {:?} contains `{{` or `}}`, which would change the keys' \
                 cluster hash tag: use a prefix without braces",
                self.prefix
            )));
        }
        for (setting, value) in [("timeout", self.timeout), ("backoff", self.backoff)] {
            if value.is_zero() {
                return Err(ConfigError::new(format!(
                    "RedisStore {setting} is zero: it must be longer than zero"
                )));
            }
        }
        if self.failures_before_backoff == 0 {
            return Err(ConfigError::new(
                "RedisStore failures_before_backoff is 0; a back-off follows at least one failed \
                 call: use 1 or more",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::new(
                "RedisStore max_batch is 0; a call carries at least one check (1 sends each \
                 check in its own call)",
            ));
        }
        if self.calls_in_flight == 0 {
            return Err(ConfigError::new(
                "RedisStore calls_in_flight is 0; at least one call must be allowed in flight",
            ));
        }
        if self.expiry_step > MAX_EXPIRY_STEP {
            return Err(ConfigError::new(format!(
                "RedisStore expiry_step of {:?} is longer than a day; keys would outlive their \
                 state by that much: use a step of at most a day (or none)",
                self.expiry_step
            )));
        }
        if self.max_local_keys == 0 {
            return Err(ConfigError::new(
                "RedisStore max_local_keys is 0; it must hold at least one key",
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ConfigError::new(
                "RedisStore must be built inside a Tokio runtime, which runs its connection: \
                 build it on the runtime that serves the checks (`#[tokio::main]`, or a runtime \
                 built with `enable_all()`), and keep that runtime running",
            ));
        };
        // A node of a Redis Cluster that takes connections but answers nothing (a stalled
        // replica) would hold the cluster client's connection, and so the build, until it
        // answers: each answer waits as long as the checks' timeout, a second at least.
        let node_answer_within = self.timeout.max(CONNECT_TIMEOUT);
        let node_answer_within = (node_answer_within < NO_TIMEOUT).then_some(node_answer_within);
        let (mut connection, name) = connect(self.target, &runtime, node_answer_within).await?;
        // A Redis that stops answering once connected (stopped, or cut off by the network)
        // must not hold the build forever, whatever the checks' timeout: the caller retries it.
        let answer_within = self.timeout.clamp(CONNECT_TIMEOUT, BUILD_ANSWER_MAX);
        let silent = || {
            ConfigError::new(format!(
                "Redis at {name} took the connection but did not answer within \
                 {answer_within:?}: check that it is running (not stopped or overloaded) and \
                 reachable, then build the store again"
            ))
        };
        let cluster_node = tokio::time::timeout(answer_within, connection.is_cluster_node()).await;
        if cluster_node.map_err(|_| silent())? {
            return Err(ConfigError::new(format!(
                "Redis at {name} is a node of a Redis Cluster, which would answer the checks of \
                 keys in other nodes' slots with MOVED: connect with `.cluster([..])`"
            )));
        }
        let script = Script::new(GCRA_LUA);
        match tokio::time::timeout(answer_within, connection.load(&script)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let message = not_ready(&name, &e).unwrap_or_else(|| {
                    format!(
                        "could not load the rate limit script into Redis at {name}: check that \
                         Redis is reachable, that the user may run SCRIPT LOAD and EVALSHA, \
                         and that scripting is enabled"
                    )
                });
                return Err(ConfigError::with_source(message, e));
            }
            Err(_) => return Err(silent()),
        }
        let replica = tokio::time::timeout(answer_within, connection.is_replica()).await;
        if replica.map_err(|_| silent())? {
            return Err(ConfigError::new(format!(
                "Redis at {name} is a replica, where every check would fail with READONLY: \
                 point the store at the primary, or at Sentinel to follow failovers"
            )));
        }
        let clock_time = self.clock.is_some();
        // A user that may load the script but not run it on its keys (an ACL without EVALSHA,
        // the commands the script reads and writes with, or the prefix's keys), or a command
        // renamed, would fail every check (every admitted one, for a write): one check fails
        // the build instead. Redis runs scripts as writes: one that does not answer in time
        // (its writes paused by `CLIENT PAUSE WRITE`, as in a failover) leaves the build to the
        // answers above, whether the build's wait ends it or the response timeout of a
        // connection passed in.
        let mut key_head = b"{".to_vec();
        key_head.extend_from_slice(self.prefix.as_bytes());
        key_head.push(b':');
        let probe = build_check(&script, &key_head, clock_time);
        let sent = std::time::Instant::now();
        match tokio::time::timeout(
            answer_within,
            connection.invoke(&probe, &script, Dest::default()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Err(_) => connection.timed_out(Dest::default(), sent),
            Ok(Err(e)) if e.is_timeout() => {}
            Ok(Err(e)) if e.code() == Some("OOM") => tracing::warn!(
                redis = %name,
                error = %Chain(&e),
                "Redis is out of memory (`maxmemory`) and refuses the rate limit's writes: \
                 admitted checks are answered by the failure policy until it has room"
            ),
            Ok(Err(e)) => {
                let message = not_ready(&name, &e).unwrap_or_else(|| {
                    format!(
                        "Redis at {name} refused to run the rate limit script: check that no \
                         command it uses is renamed and, with ACLs, that the user may run them \
                         on the store's keys (`+evalsha +script|load +time +mget +psetex +set \
                         +role +info ~{{{prefix}:*`, and `+cluster|slots +get` on a Redis \
                         Cluster)",
                        prefix = self.prefix
                    )
                });
                return Err(ConfigError::with_source(message, e));
            }
        }
        // In clock mode the TATs are not on Redis's clock, which runs the expiries: no step.
        let expiry_step_us = match clock_time {
            true => 1,
            false => (self.expiry_step.as_nanos().div_ceil(1000) as u64).max(1),
        };
        let clock = self
            .clock
            .unwrap_or_else(|| SharedClock(Arc::new(MonotonicClock::new())));
        let fallback = MemoryStore::builder()
            .clock(clock.clone())
            .max_keys(self.max_local_keys)
            .cap_setting(
                "the RedisStore's max_local_keys (the cap of its local fallback, which answers \
                 while Redis fails)",
            );
        #[cfg(feature = "metrics")]
        let fallback = fallback.uncounted();
        let fallback = fallback.build()?;
        // Which primary serves each slot of a cluster. Without an answer, every slot is
        // taken for one primary's until a call times out or a primary refuses one.
        if let Some(map) = connection.slot_map().cloned() {
            let slots = tokio::time::timeout(answer_within, connection.cluster_slots());
            if let Ok(Ok(ranges)) = slots.await {
                map.set(&ranges);
            }
        }
        // A script call may only declare keys of one slot: on a cluster a lane per primary,
        // whose calls name their keys in their arguments.
        let lanes = match (self.max_batch > 1, connection.slot_map()) {
            (false, _) => None,
            (true, Some(map)) => Some(Lanes::by_node(self.max_batch, Arc::clone(map))),
            (true, None) => Some(Lanes::new(self.max_batch, self.calls_in_flight)),
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                lanes,
                runtime,
                script,
                key_head: key_head.into(),
                timeout: self.timeout,
                policy: self.policy,
                health: Health::new(self.failures_before_backoff, self.backoff),
                deny_cache: self.deny_cache.then(|| DenyCache::new(self.max_local_keys)),
                fallback,
                clock,
                clock_time,
                expiry_step_us,
                bad_reply_log: crate::log::Throttle::new(Duration::from_secs(10)),
                #[cfg(feature = "metrics")]
                metrics: crate::telemetry::redis::RedisMetrics::new(),
            }),
        })
    }
}

/// The message of a build refused with `error` for a reason other than the user's permissions
/// or renamed commands: no password given, or a state that passes (a dataset loading, a script
/// running, a cluster down); `None` for any other refusal.
fn not_ready(name: &str, error: &redis::RedisError) -> Option<String> {
    match error.code()? {
        "NOAUTH" => Some(format!(
            "Redis at {name} asks for a password that the store did not give: put it in the \
             URL (`redis://:password@host` or `redis://user:password@host`)"
        )),
        "LOADING" | "BUSY" | "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" => Some(format!(
            "Redis at {name} is not serving yet (its answer is the source of this error): build \
             the store again once it is"
        )),
        _ => None,
    }
}

/// The script's check, at cost 1, of a Redis key no check uses (`sha256:` followed by other
/// than a digest is no limited key's bytes), in the store's time mode: it runs what every
/// check runs, its write of a new key among it (the key lives a millisecond).
fn build_check(script: &Script, key_head: &[u8], clock_time: bool) -> redis::Cmd {
    let key = [key_head, b"sha256:build}"].concat();
    let mut check = redis::cmd("EVALSHA");
    check.arg(script.get_hash()).arg(1).arg(key);
    // No least expiry, the time mode, no expiry step, one stack of one policy (1 µs, burst 1,
    // enforced, named `build`), and one run of one check at cost 1 (at time 0 when checks
    // carry theirs).
    check.arg(0).arg(u8::from(clock_time)).arg(1).arg(1);
    check.arg(1).arg(1).arg(1).arg(0).arg("build");
    check.arg(1).arg(1).arg(1);
    if clock_time {
        check.arg(0);
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let no_failures = RedisStore::builder()
            .url("redis://127.0.0.1:1")
            .failures_before_backoff(0)
            .build()
            .await
            .unwrap_err();
        assert!(
            no_failures
                .to_string()
                .contains("failures_before_backoff is 0"),
            "{no_failures}"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn a_tls_url_in_a_build_without_tls_asks_for_the_feature() {
        let error = RedisStore::builder()
            .url("rediss://127.0.0.1:1")
            .build()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("`tls` feature"), "{error}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let builder = RedisStore::builder();
        assert_eq!(builder.prefix, "ratelimit");
        assert_eq!(builder.timeout, Duration::from_millis(50));
        assert_eq!(builder.policy, FailurePolicy::Local);
        assert_eq!(builder.failures_before_backoff, 3);
        assert_eq!(builder.backoff, Duration::from_secs(1));
        assert_eq!(builder.max_local_keys, 100_000);
        assert_eq!(builder.max_batch, 128);
        assert_eq!(builder.calls_in_flight, 2);
        assert!(builder.deny_cache);
        assert_eq!(builder.expiry_step, Duration::ZERO);
        assert!(builder.clock.is_none());
    }

    #[tokio::test]
    async fn each_documented_limit_is_refused_before_connecting() {
        // Port 1 refuses connections: every error below comes before an attempt.
        let builder = || RedisStore::builder().url("redis://127.0.0.1:1");
        let cases: [(RedisStoreBuilder, &str); 7] = [
            (builder().timeout(Duration::ZERO), "timeout is zero"),
            (builder().backoff(Duration::ZERO), "backoff is zero"),
            (builder().max_local_keys(0), "max_local_keys is 0"),
            (builder().max_batch(0), "max_batch is 0"),
            (builder().calls_in_flight(0), "calls_in_flight is 0"),
            (
                builder().expiry_step(MAX_EXPIRY_STEP + Duration::from_micros(1)),
                "longer than a day",
            ),
            (
                builder().failures_before_backoff(0),
                "failures_before_backoff",
            ),
        ];
        for (builder, message) in cases {
            let error = builder.build().await.unwrap_err().to_string();
            assert!(error.contains(message), "{message}: {error}");
        }
        // A step of exactly a day passes the checks and fails only on the connection.
        let error = builder()
            .expiry_step(MAX_EXPIRY_STEP)
            .build()
            .await
            .unwrap_err()
            .to_string();
        assert!(!error.contains("longer than a day"), "{error}");
    }

    #[tokio::test]
    async fn a_socket_password_stays_out_of_messages() {
        let url = "redis+unix:///nonexistent/redis.sock?db=2&pass=s3cret";
        let builder = RedisStore::builder().url(url);
        assert!(!format!("{builder:?}").contains("s3cret"), "{builder:?}");
        let error = builder.build().await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("redis.sock?db=2&pass=***"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
