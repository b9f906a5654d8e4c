//! The connection to Redis: one server through a multiplexed, reconnecting connection, the
//! primary that Redis Sentinel names, or a Redis Cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

use super::batch::{SlotMap, NODE_LANES};
use super::sentinel::SentinelConnection;
use crate::ConfigError;

/// How long one attempt to (re)connect may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest wait, in milliseconds, before a Redis Cluster client retries a call that Redis
/// asked to retry later.
const RETRY_WAIT_MS: u64 = 8;

#[derive(Clone)]
pub(super) enum Connection {
    Single(Single),
    Sentinel(SentinelConnection),
    Cluster(Cluster),
}

/// A Redis Cluster client, kept, with the store's map of the primary serving each slot, by
/// which the client's answers are followed per primary (and the store's lanes go).
#[derive(Clone)]
pub(super) struct Cluster {
    kept: Kept<ClusterConnection>,
    map: Arc<SlotMap>,
}

impl Cluster {
    fn new(connection: ClusterConnection, opener: Option<ClusterOpener>) -> Self {
        Cluster {
            kept: Kept::new(connection, opener),
            map: Arc::new(SlotMap::new()),
        }
    }
}

/// Where a call goes: the hash slot of its keys, and on a Redis Cluster, for a call that names
/// its keys in its arguments, the slot whose primary it is sent to instead.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Dest {
    pub(super) slot: usize,
    pub(super) primary_of: Option<u16>,
}

impl Dest {
    /// The slot whose primary the call goes to.
    fn call_slot(self) -> usize {
        self.primary_of.map_or(self.slot, usize::from)
    }
}

impl Connection {
    /// Runs `call` (an `EVALSHA` of `script`); loads the script and runs `call` once more if
    /// Redis has lost it (after `SCRIPT FLUSH`, a restart or a failover).
    ///
    /// A call that fails on a broken connection (Redis restarted, or the last reconnection
    /// failed while Redis was down or refused it) goes once more, on the new connection its
    /// failure started: with Redis back, the first call finds it. If Redis had run the call
    /// before the connection broke, its checks count twice, which can only deny, never admit,
    /// more.
    ///
    /// On a Redis Cluster, the call goes where `dest` says.
    pub(super) async fn invoke(
        &mut self,
        call: &Cmd,
        script: &Script,
        dest: Dest,
    ) -> RedisResult<Vec<u8>> {
        let outcome = match self.query(call, dest).await {
            Err(e) if e.is_io_error() || e.is_unrecoverable_error() => self.query(call, dest).await,
            outcome => outcome,
        };
        match outcome {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(script).await?;
                self.query(call, dest).await
            }
            outcome => outcome,
        }
    }

    /// Each range of hash slots with the address of the primary serving it, by `CLUSTER
    /// SLOTS`; nothing but on a Redis Cluster.
    pub(super) async fn cluster_slots(&mut self) -> RedisResult<Vec<(u16, u16, String)>> {
        let Connection::Cluster(c) = self else {
            return Ok(Vec::new());
        };
        let mut c = c.kept.link();
        let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let ranges = c.route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), any);
        let ranges = ranges.await?.extract_error()?;
        let ranges: Vec<Vec<redis::Value>> = FromRedisValue::from_redis_value(ranges)?;
        let range = |range: &Vec<redis::Value>| {
            use redis::Value::{Array, Int};
            let [Int(first), Int(last), Array(primary), ..] = range.as_slice() else {
                return None;
            };
            let [host, Int(port), ..] = primary.as_slice() else {
                return None;
            };
            let host: String = FromRedisValue::from_redis_value_ref(host).ok()?;
            let (first, last) = (u16::try_from(*first).ok()?, u16::try_from(*last).ok()?);
            Some((first, last, format!("{host}:{port}")))
        };
        Ok(ranges.iter().filter_map(range).collect())
    }

    /// A call to `dest` sent at `sent` got no answer within the store's timeout: the
    /// connection may be dead without a word (a peer or a middlebox that dropped it silently),
    /// and behind Sentinel the primary may have moved.
    pub(super) fn timed_out(&self, dest: Dest, sent: Instant) {
        match self {
            Connection::Single(c) => c.timed_out(0, sent),
            Connection::Sentinel(c) => c.timed_out(sent),
            Connection::Cluster(c) => c.kept.timed_out(c.map.node(dest.call_slot()), sent),
        }
    }

    /// On a Redis Cluster, the store's map of the primary serving each slot.
    pub(super) fn slot_map(&self) -> Option<&Arc<SlotMap>> {
        match self {
            Connection::Cluster(c) => Some(&c.map),
            Connection::Single(_) | Connection::Sentinel(_) => None,
        }
    }

    async fn query(&mut self, call: &Cmd, dest: Dest) -> RedisResult<Vec<u8>> {
        match self {
            Connection::Single(c) => c.query(call).await,
            Connection::Sentinel(c) => c.query(call).await,
            Connection::Cluster(c) => {
                let run = |mut link: ClusterConnection| async move {
                    let Some(slot) = dest.primary_of else {
                        return call.query_async(&mut link).await;
                    };
                    let primary = Route::new(slot, SlotAddr::Master);
                    let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary));
                    // An error reply comes back as a value.
                    let answer = link
                        .route_command(call.clone(), to)
                        .await?
                        .extract_error()?;
                    Ok(FromRedisValue::from_redis_value(answer)?)
                };
                c.kept.run(c.map.node(dest.call_slot()), run).await
            }
        }
    }

    pub(super) async fn load(&mut self, script: &Script) -> RedisResult<String> {
        match self {
            Connection::Single(c) => script.load_async(&mut c.manager()).await,
            Connection::Sentinel(c) => c.load(script).await,
            Connection::Cluster(c) => script.load_async(&mut c.kept.link()).await,
        }
    }
}

/// Whether `error` is the answer of a server that is not the primary to write to (any more):
/// a replica (`READONLY` to a write, or `MASTERDOWN`), or a primary that refuses writes for
/// want of replicas (`NOREPLICAS`, under `min-replicas-to-write`: what a primary cut off from
/// the others answers once Sentinel may have promoted one of them).
pub(super) fn not_the_primary(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
    ) || error.code() == Some("NOREPLICAS")
}

/// A connection kept for every clone of the store, and replaced by a new one when it stays
/// open and useless: one server's connection manager (a single server's, or the primary's
/// behind Sentinel), or a Redis Cluster client.
///
/// Either opens new connections by itself after an I/O error, but not when a connection stays
/// open and useless, which it would for as long as the process runs:
///
/// - a connection dropped without a word (by a load balancer or NAT that forgot it, or a host
///   that vanished) takes calls and answers none until the kernel gives up on it, many
///   minutes on (a Redis Cluster client's call to that node times out, and goes again on the
///   same connection);
/// - one server's manager, after a connection attempt that Redis refused (authentication
///   failed, as after a restart with another password), gets that attempt's error again on
///   every later call;
/// - one server that became a replica (a failover that moved a DNS name to the new primary, or
///   `REPLICAOF` on the old one) answers every write `READONLY`; an old primary cut off from
///   its replicas, `NOREPLICAS` (with `min-replicas-to-write`).
///
/// A call failing so replaces the link with a new one, which connects (looking the hosts'
/// names up again) on its first call, or, a cluster client, before it takes the place of the
/// one in use, which takes the calls meanwhile ([`Opening`]); so does the call after one
/// that timed out on a server (on a cluster, the primary it was sent to) that has answered
/// nothing on the link since the call was sent, nor for [`DEAD_AFTER`] (a Redis that is slow
/// but answers, or stalls for less, keeps its connection). A server never answered counts from
/// when the link came into use (a connection can go silent before its first answer too), and
/// waits twice as long for each link in a row before it that was replaced for a server never
/// answered on it (up to [`DEAD_AFTER`] × 64): a Redis whose every answer comes after the
/// timeout, which the store never sees, or a cluster node stalled for minutes, costs a handful
/// of new connections, not one a second. The last link on which the server it was replaced for
/// had answered stays open until that server answers on a later link: a Redis that was only
/// stalled (paused for a failover, busy with a slow command) still runs the calls sent on it
/// before the stall, as it would had the connection been kept. The calls sent on links it never
/// answered, in between, are dropped with them: each was answered by the failure policy when
/// it timed out, and is not counted by Redis. A link the caller passed in
/// ([`Target::Manager`], [`Target::ClusterConnection`]) is kept as it is.
pub(super) struct Kept<L: Link>(Arc<KeptParts<L>>);

impl<L: Link> Clone for Kept<L> {
    fn clone(&self) -> Self {
        Kept(Arc::clone(&self.0))
    }
}

/// One server's connection manager, kept.
pub(super) type Single = Kept<ConnectionManager>;

/// A connection that [`Kept`] replaces when it stays open and useless.
pub(super) trait Link: Clone + Send + Sync + 'static {
    /// What opens a new one.
    type Opener: Send + Sync + 'static;
    /// How many servers' answers the link's liveness is kept for: a call names its server by
    /// a number, taken modulo this.
    const SERVERS: usize;
    /// A new link. Must run inside a Tokio runtime, where the new link's task goes.
    fn open(opener: &Self::Opener) -> Option<Opening<Self>>;
    /// Whether Redis answering a call with `error` leaves the link useless.
    fn useless_after(error: &redis::RedisError) -> bool;
}

impl Link for ConnectionManager {
    type Opener = redis::Client;
    const SERVERS: usize = 1;

    /// Connects at its first call: calls wait for one server only.
    fn open(client: &redis::Client) -> Option<Opening<Self>> {
        // Refuses only settings the first manager was built with.
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config());
        manager.ok().map(Opening::Ready)
    }

    fn useless_after(error: &redis::RedisError) -> bool {
        not_the_primary(error) || error.is_unrecoverable_error()
    }
}

/// A Redis Cluster client's settings, to open a new client as the first.
pub(super) struct ClusterOpener {
    client: ClusterClient,
    config: ClusterConfig,
}

impl Link for ClusterConnection {
    type Opener = ClusterOpener;
    /// A primary's number is the store's (its [`SlotMap`]'s).
    const SERVERS: usize = NODE_LANES;

    /// Connected before it takes calls: a new client connects to every node it was given
    /// before it sends a call to any, so that a call to a primary that answers would wait on
    /// one that is slow to connect.
    fn open(opener: &ClusterOpener) -> Option<Opening<Self>> {
        let (client, config) = (opener.client.clone(), opener.config.clone());
        let connect = async move { client.get_async_connection_with_config(config).await };
        Some(Opening::Connecting(Box::pin(connect)))
    }

    /// The cluster client follows moved slots and promoted replicas, and opens again a
    /// connection to a node that refused it, by itself.
    fn useless_after(_: &redis::RedisError) -> bool {
        false
    }
}

/// A new link: ready to take calls, or to be used once connected (the link in use takes them
/// meanwhile).
pub(super) enum Opening<L> {
    Ready(L),
    Connecting(Pin<Box<dyn Future<Output = RedisResult<L>> + Send>>),
}

/// A link replaced while calls may still be waiting on it at a stalled server.
struct Retired<L> {
    /// The generation that replaced it.
    by: u64,
    /// The server it was replaced for (`None`: after an answer that left it useless).
    server: Option<usize>,
    /// Held open, never called.
    _link: L,
}

struct KeptParts<L: Link> {
    current: RwLock<Current<L>>,
    /// What opens a new link; `None` for a link passed in.
    opener: Option<L::Opener>,
    /// The generation of a link that a timed-out call took for dead, plus one (zero for none),
    /// shifted left by [`SERVER_BITS`], and the number of the server it timed out on: the next
    /// call replaces the link. Not the call that timed out, which may have been polled where no
    /// runtime runs to take the new link's task.
    dead: AtomicU64,
    /// The last link that the server it was replaced for answered, until that server answers
    /// on a later link.
    retired: Mutex<Option<Retired<L>>>,
    /// Whether a new link is connecting.
    connecting: AtomicBool,
    epoch: Instant,
}

/// The bits of [`KeptParts::dead`] that name a server.
const SERVER_BITS: u32 = 16;
const _: () = assert!(NODE_LANES <= 1 << SERVER_BITS);

/// How long a server must have answered nothing, a call timing out on it meanwhile, to be
/// taken for dead.
const DEAD_AFTER: Duration = Duration::from_secs(1);

/// The link in use, how many were replaced before it, how many of those in a row, just before
/// it, were replaced for a server never answered on them, when it came into use and when each server last answered a call on
/// it (a value or an error), in nanoseconds since the parts' `epoch` (zero if never).
struct Current<L> {
    link: L,
    generation: u64,
    unanswered_before: u32,
    since: u64,
    answered: Arc<[AtomicU64]>,
}

impl<L: Clone> Clone for Current<L> {
    fn clone(&self) -> Self {
        Current {
            link: self.link.clone(),
            generation: self.generation,
            unanswered_before: self.unanswered_before,
            since: self.since,
            answered: Arc::clone(&self.answered),
        }
    }
}

impl<L: Link> Kept<L> {
    /// `link`, replaced when needed by a new one that `opener` opens.
    pub(super) fn new(link: L, opener: Option<L::Opener>) -> Self {
        Kept(Arc::new(KeptParts {
            current: RwLock::new(Current {
                link,
                generation: 0,
                unanswered_before: 0,
                since: 1,
                answered: unanswered::<L>(),
            }),
            opener,
            dead: AtomicU64::new(0),
            retired: Mutex::new(None),
            connecting: AtomicBool::new(false),
            epoch: Instant::now(),
        }))
    }

    /// Nanoseconds from the parts' epoch to `at`, at least one.
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// The link in use.
    pub(super) fn link(&self) -> L {
        self.current().link
    }

    /// The generation of the link in use.
    fn generation(&self) -> u64 {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    fn current(&self) -> Current<L> {
        // Nothing panics while holding the lock: a poisoned one still holds a link.
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `call` on the link in use, a call to server `server`; replaces the link if the way
    /// the call failed leaves it failed. Runs on the store's runtime, where a new link's task
    /// goes.
    async fn run<T, F>(&self, server: usize, call: impl FnOnce(L) -> F) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let dead = self.0.dead.swap(0, Ordering::Relaxed);
        if let Some(generation) = (dead >> SERVER_BITS).checked_sub(1) {
            let server = (dead & ((1 << SERVER_BITS) - 1)) as usize;
            self.replace(generation, Some(server));
        }
        let current = self.current();
        let server = server % L::SERVERS;
        let outcome = call(current.link).await;
        let Err(e) = &outcome else {
            self.answered(current.generation, server, &current.answered[server]);
            return outcome;
        };
        if e.is_io_error() || e.is_connection_dropped() {
            // The link connects again by itself.
            return outcome;
        }
        self.answered(current.generation, server, &current.answered[server]);
        if L::useless_after(e) {
            self.replace(current.generation, None);
        }
        outcome
    }

    /// `server` answered a call on the link of `generation`, whose record of that server's
    /// answers is `answered`: at its first answer there, a link retired for that server by this
    /// one or an earlier one is closed.
    fn answered(&self, generation: u64, server: usize, answered: &AtomicU64) {
        if answered.fetch_max(self.nanos(Instant::now()), Ordering::Relaxed) != 0 {
            return;
        }
        let mut retired = self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let done = |r: &Retired<L>| r.by <= generation && r.server.is_none_or(|s| s == server);
        if retired.as_ref().is_some_and(done) {
            *retired = None;
        }
    }

    /// A call to server `server` sent at `sent` timed out: if the server was answered on the
    /// link in use before the call was sent but neither since nor for [`DEAD_AFTER`], or was
    /// never answered on it since it came into use, [`DEAD_AFTER`] ago or longer (doubled for
    /// each link in a row before it replaced for a server never answered), the link is taken
    /// for dead, and the next call replaces it. (A link never answered may not have carried the call, made before it
    /// came into use: then it had no call to answer, and a new one costs a connection.)
    pub(super) fn timed_out(&self, server: usize, sent: Instant) {
        let now = self.nanos(Instant::now());
        let sent = self.nanos(sent);
        let current = self.current();
        let dead_after = DEAD_AFTER.as_nanos() as u64;
        // Silent since when, and for how long before it is taken for dead.
        let server = server % L::SERVERS;
        let answered = current.answered[server].load(Ordering::Relaxed);
        let (silent_since, dead_after) = match answered {
            0 => (
                current.since,
                dead_after << current.unanswered_before.min(6),
            ),
            answered if answered >= sent => return,
            answered => (answered, dead_after),
        };
        if now.saturating_sub(silent_since) >= dead_after {
            let dead = (current.generation + 1) << SERVER_BITS | server as u64;
            self.0.dead.store(dead, Ordering::Relaxed);
        }
    }

    /// Replaces the link of `generation` by a new one, unless another call did already; `silent`
    /// is the server that a call timed out on, if that is why. Must run inside a Tokio runtime:
    /// the new link spawns its task at once. A link that connects before it takes calls does
    /// so in a task of its own, one at a time, and replaces the link once connected.
    fn replace(&self, generation: u64, silent: Option<usize>) {
        let Some(opener) = &self.0.opener else {
            return;
        };
        // A link connecting already replaces this one once connected: no second one.
        if self.generation() != generation || self.0.connecting.load(Ordering::Acquire) {
            return;
        }
        let connecting = match L::open(opener) {
            None => return,
            Some(Opening::Ready(link)) => return self.install(generation, silent, link),
            Some(Opening::Connecting(connecting)) => connecting,
        };
        if self.0.connecting.swap(true, Ordering::Acquire) {
            return;
        }
        let kept = self.clone();
        tokio::spawn(async move {
            if let Ok(link) = connecting.await {
                kept.install(generation, silent, link);
            }
            kept.0.connecting.store(false, Ordering::Release);
        });
    }

    /// Puts `link` in use in place of the link of `generation`, unless another call replaced
    /// that one already.
    fn install(&self, generation: u64, silent: Option<usize>, link: L) {
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation {
            return;
        }
        let never = |server: &AtomicU64| server.load(Ordering::Relaxed) == 0;
        let never_answered = current.answered.iter().all(never);
        let silent_never_answered = silent.is_some_and(|s| never(&current.answered[s]));
        let next = Current {
            link,
            generation: generation + 1,
            unanswered_before: match silent_never_answered {
                true => current.unanswered_before.saturating_add(1),
                false => 0,
            },
            since: self.nanos(Instant::now()),
            answered: unanswered::<L>(),
        };
        let old = std::mem::replace(&mut *current, next);
        // The last link on which the server answered stays open: a server that was only
        // stalled still runs the calls sent on it before the stall. The calls on a link it
        // never answered, each answered by the failure policy when it timed out, go with it.
        let kept_in_vain = match silent {
            Some(_) => silent_never_answered,
            None => never_answered,
        };
        if kept_in_vain {
            return;
        }
        // Under the write lock, so that no answer of the new link comes before it.
        let mut retired = self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *retired = Some(Retired {
            by: generation + 1,
            server: silent,
            _link: old.link,
        });
    }
}

/// No server of a new link answered yet.
fn unanswered<L: Link>() -> Arc<[AtomicU64]> {
    (0..L::SERVERS).map(|_| AtomicU64::new(0)).collect()
}

impl Single {
    /// The manager in use.
    pub(super) fn manager(&self) -> ConnectionManager {
        self.link()
    }

    /// Runs `call`; replaces the manager if the way it failed leaves the manager failed.
    pub(super) async fn query(&self, call: &Cmd) -> RedisResult<Vec<u8>> {
        self.run(0, |mut manager| async move {
            call.query_async(&mut manager).await
        })
        .await
    }
}

impl Connection {
    /// Whether a single server is a replica, by `ROLE` (its writes would all fail with
    /// `READONLY`). Sentinel and Cluster connections find the primaries themselves; a server
    /// that does not answer `ROLE` (an ACL may forbid it) is taken for a primary.
    pub(super) async fn is_replica(&mut self) -> bool {
        let Connection::Single(c) = self else {
            return false;
        };
        let role: RedisResult<Vec<redis::Value>> =
            redis::cmd("ROLE").query_async(&mut c.manager()).await;
        matches!(
            role.as_deref(),
            Ok([redis::Value::BulkString(role), ..]) if role == b"slave" || role == b"replica"
        )
    }

    /// Whether a single server is a node of a Redis Cluster (`cluster_enabled:1` in `INFO
    /// cluster`), whose keys of other nodes' slots it would answer `MOVED`. A server that does
    /// not answer `INFO` (an ACL may forbid it) is taken for a standalone one.
    pub(super) async fn is_cluster_node(&mut self) -> bool {
        let Connection::Single(c) = self else {
            return false;
        };
        let info: RedisResult<String> = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut c.manager())
            .await;
        info.is_ok_and(|info| info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Connection::Single(_) => "single",
            Connection::Sentinel(_) => "sentinel",
            Connection::Cluster(_) => "cluster",
        }
    }
}

/// Where the store connects.
pub(super) enum Target {
    None,
    Url(String),
    /// Boxed: with TLS a client carries its whole TLS configuration.
    Client(Box<redis::Client>),
    Cluster(Vec<String>),
    /// Sentinel addresses and the master name they monitor.
    Sentinel(Vec<String>, String),
    /// Boxed like a client.
    SentinelClient(Box<SentinelClient>),
    Manager(ConnectionManager),
    ClusterConnection(ClusterConnection),
}

impl Target {
    /// A printable name of where the target goes, without passwords.
    pub(super) fn describe(&self) -> String {
        match self {
            Target::None => "none".to_owned(),
            Target::Url(url) => redact(url),
            Target::Client(_) => "client".to_owned(),
            Target::Cluster(urls) => format!(
                "cluster {:?}",
                urls.iter().map(|u| redact(u)).collect::<Vec<_>>()
            ),
            Target::Sentinel(urls, master) => sentinel_name(urls, master),
            Target::SentinelClient(_) => "sentinel client".to_owned(),
            Target::Manager(_) => "connection manager".to_owned(),
            Target::ClusterConnection(_) => "cluster connection".to_owned(),
        }
    }
}

/// `master "mymaster" via sentinels redis://a:26379, redis://b:26379`, without passwords.
fn sentinel_name(urls: &[String], master: &str) -> String {
    format!(
        "master {master:?} via sentinels {}",
        urls.iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The settings of every connection manager the store opens: a reconnection is one attempt,
/// with no retry of its own to sleep through (the store's back-off spaces the attempts out,
/// and a call waiting on a reconnection asleep would time out though Redis is back), and no
/// response timeout of the connection's own (the store's timeout bounds every check, and a
/// second timer per check would only cost time).
pub(super) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
}

/// Opens the connection; returns it with a printable name of where it goes.
/// Sentinel's lookups of a new primary run on `runtime`, the store's. A Redis Cluster client
/// gives up on a node's answer after `node_answer_within`, if any.
pub(super) async fn connect(
    target: Target,
    runtime: &tokio::runtime::Handle,
    node_answer_within: Option<Duration>,
) -> Result<(Connection, String), ConfigError> {
    let single = |client: redis::Client, name: String| async move {
        match ConnectionManager::new_with_config(client.clone(), manager_config()).await {
            Ok(manager) => Ok((Connection::Single(Single::new(manager, Some(client))), name)),
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
            tls_in_build(&url, cfg!(feature = "tls"))?;
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
            single(*client, name).await
        }
        Target::Cluster(urls) => {
            let name = format!(
                "cluster {}",
                urls.iter()
                    .map(|u| redact(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for url in &urls {
                tls_in_build(url, cfg!(feature = "tls"))?;
            }
            // A restarted node costs a request two retries: its dead connection, then the
            // `MOVED` of the node first asked instead; a third leaves room for one more. A
            // call that Redis asks to send again later (`TRYAGAIN` of a moving slot,
            // `CLUSTERDOWN`) goes again after a few milliseconds, not the client's default of
            // over a second: a call past the store's timeout is failed whatever comes after,
            // and the store splits a call of a moving slot into calls that Redis serves.
            let client = ClusterClient::builder(urls)
                .retries(3)
                .min_retry_wait(1)
                .max_retry_wait(RETRY_WAIT_MS)
                .retry_wait_formula(1, 2)
                .build()
                .map_err(|e| {
                    ConfigError::with_source(format!("invalid Redis Cluster node list {name}"), e)
                })?;
            let mut config = ClusterConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
            if let Some(within) = node_answer_within {
                config = config.set_response_timeout(within);
            }
            match client
                .get_async_connection_with_config(config.clone())
                .await
            {
                Ok(connection) => {
                    let opener = ClusterOpener { client, config };
                    Ok((
                        Connection::Cluster(Cluster::new(connection, Some(opener))),
                        name,
                    ))
                }
                Err(e) => Err(unreachable(&name, e)),
            }
        }
        Target::Sentinel(urls, master) => {
            let name = sentinel_name(&urls, &master);
            if urls.is_empty() {
                return Err(ConfigError::new(format!(
                    "RedisStore has an empty list of Redis Sentinels for master {master:?}: \
                     pass their addresses, `.sentinel([\"redis://10.0.0.1:26379\", ..], \
                     \"{master}\")`"
                )));
            }
            for url in &urls {
                tls_in_build(url, cfg!(feature = "tls"))?;
            }
            let client =
                SentinelClient::build(urls, master.clone(), None, SentinelServerType::Master)
                    .map_err(|e| {
                        ConfigError::with_source(
                            format!(
                                "invalid Redis Sentinel address in {name}: expected \
                                 redis://[user:password@]host[:port] of each sentinel"
                            ),
                            e,
                        )
                    })?;
            sentinel(client, name, runtime).await
        }
        Target::SentinelClient(client) => {
            sentinel(*client, "sentinel client".to_owned(), runtime).await
        }
        Target::Manager(manager) => Ok((
            Connection::Single(Single::new(manager, None)),
            "connection manager".into(),
        )),
        Target::ClusterConnection(connection) => {
            let cluster = Cluster::new(connection, None);
            Ok((Connection::Cluster(cluster), "cluster connection".into()))
        }
    }
}

async fn sentinel(
    client: SentinelClient,
    name: String,
    runtime: &tokio::runtime::Handle,
) -> Result<(Connection, String), ConfigError> {
    let (connection, primary) =
        SentinelConnection::connect(client, name.clone(), runtime.clone()).await?;
    Ok((
        Connection::Sentinel(connection),
        format!("{name} (primary at {primary})"),
    ))
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

/// An error for a `rediss://` URL when the build has no `tls` feature (`tls` says whether it
/// has), which the Redis client would refuse naming a feature of its own instead.
fn tls_in_build(url: &str, tls: bool) -> Result<(), ConfigError> {
    let asks_tls = url
        .get(.."rediss://".len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if asks_tls && !tls {
        return Err(ConfigError::new(format!(
            "Redis URL {} asks for TLS, but tower-ratelimit was built without its `tls` \
             feature: enable it (`features = [\"redis\", \"tls\"]`), or use redis://",
            redact(url)
        )));
    }
    Ok(())
}

/// The URL without its password, for messages: the one before `@`, and a socket's `pass=`.
fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    let Some((address, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| match pair.starts_with("pass=") {
            true => "pass=***",
            false => pair,
        })
        .collect();
    format!("{address}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link to two servers that connects at once; its opener counts the links it opened.
    #[derive(Clone)]
    struct TwoServers;

    impl Link for TwoServers {
        type Opener = AtomicU64;
        const SERVERS: usize = 2;

        fn open(opened: &AtomicU64) -> Option<Opening<Self>> {
            opened.fetch_add(1, Ordering::Relaxed);
            Some(Opening::Ready(TwoServers))
        }

        fn useless_after(_: &redis::RedisError) -> bool {
            false
        }
    }

    /// A call to `server` that the server answers.
    async fn answered(kept: &Kept<TwoServers>, server: usize) {
        let call = |_| async { RedisResult::Ok(()) };
        kept.run(server, call).await.unwrap();
    }

    fn opened(kept: &Kept<TwoServers>) -> u64 {
        kept.0.opener.as_ref().unwrap().load(Ordering::Relaxed)
    }

    /// Server 0 stops answering while server 1 answers on every link: the first link is
    /// replaced a second after server 0's last answer, the second a second after it came into
    /// use, and the third waits two, as server 0 never answered on the second either.
    #[tokio::test]
    async fn a_link_replaced_for_a_server_never_answered_on_it_waits_longer_whoever_else_answered()
    {
        let kept = Kept::new(TwoServers, Some(AtomicU64::new(0)));
        answered(&kept, 0).await;
        answered(&kept, 1).await;
        let second = Duration::from_millis(1100);
        for (wait, links) in [(second, 1), (second, 2), (second, 2), (second, 3)] {
            tokio::time::sleep(wait).await;
            kept.timed_out(0, Instant::now());
            // The next call replaces a link taken for dead.
            answered(&kept, 1).await;
            assert_eq!(opened(&kept), links);
        }
    }

    fn retired(kept: &Kept<TwoServers>) -> bool {
        kept.0.retired.lock().unwrap().is_some()
    }

    /// Server 0 goes silent on the first link, which is replaced: the first link stays open
    /// (a stalled server 0 still runs the calls sent on it) through answers of server 1 and
    /// through a broken connection to server 0 on the new link, and is closed at server 0's
    /// first answer there.
    #[tokio::test]
    async fn a_retired_link_is_closed_at_the_first_answer_of_its_server_on_the_new_link() {
        let kept = Kept::new(TwoServers, Some(AtomicU64::new(0)));
        answered(&kept, 0).await;
        answered(&kept, 1).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        kept.timed_out(0, Instant::now());
        answered(&kept, 1).await;
        assert_eq!(opened(&kept), 1);
        assert!(
            retired(&kept),
            "kept for server 0, whatever server 1 answers"
        );
        let broken = |_| async {
            let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
            RedisResult::<()>::Err(reset.into())
        };
        assert!(kept.run(0, broken).await.is_err());
        assert!(
            retired(&kept),
            "a broken connection is no answer of server 0"
        );
        answered(&kept, 0).await;
        assert!(!retired(&kept), "closed at server 0's first answer");
    }

    /// An error reply is an answer: a call that timed out on a server that answered with an
    /// error since it was sent leaves the link in use.
    #[tokio::test]
    async fn an_error_reply_is_an_answer_of_the_server() {
        let kept = Kept::new(TwoServers, Some(AtomicU64::new(0)));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let sent = Instant::now();
        let refused = |_| async {
            RedisResult::<()>::Err(
                (ErrorKind::Server(ServerErrorKind::ResponseError), "OOM").into(),
            )
        };
        assert!(kept.run(0, refused).await.is_err());
        kept.timed_out(0, sent);
        answered(&kept, 1).await;
        assert_eq!(opened(&kept), 0, "the link was replaced");
    }

    /// Server 0 goes silent on the first link, then never answers on the second, where
    /// server 1 does: the second is closed when it is replaced, and the first, on which
    /// server 0 last answered, stays open.
    #[tokio::test]
    async fn a_link_its_server_never_answered_on_is_closed_and_the_last_it_answered_on_kept() {
        let kept = Kept::new(TwoServers, Some(AtomicU64::new(0)));
        answered(&kept, 0).await;
        for links in [1, 2] {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            kept.timed_out(0, Instant::now());
            answered(&kept, 1).await;
            assert_eq!(opened(&kept), links);
            let retired = kept.0.retired.lock().unwrap();
            assert_eq!(retired.as_ref().map(|r| r.by), Some(1), "the first link");
        }
    }

    /// A link that came into use `silent` ago, no server answered on it, after
    /// `unanswered_before` links replaced for a server never answered on them.
    fn silent_for(silent: Duration, unanswered_before: u32) -> Kept<TwoServers> {
        let epoch = Instant::now()
            .checked_sub(Duration::from_secs(200))
            .unwrap();
        let since = Duration::from_secs(200) - silent;
        Kept(Arc::new(KeptParts {
            current: RwLock::new(Current {
                link: TwoServers,
                generation: 0,
                unanswered_before,
                since: since.as_nanos() as u64,
                answered: unanswered::<TwoServers>(),
            }),
            opener: Some(AtomicU64::new(0)),
            dead: AtomicU64::new(0),
            retired: Mutex::new(None),
            connecting: AtomicBool::new(false),
            epoch,
        }))
    }

    /// The wait before a link is replaced for a server never answered on it doubles for each
    /// such link before it, up to 64 times [`DEAD_AFTER`].
    #[tokio::test]
    async fn the_wait_for_a_server_never_answered_doubles_up_to_64_times() {
        for (silent, before, replaced) in [
            (Duration::from_millis(1_900), 1, false),
            (Duration::from_millis(2_100), 1, true),
            (Duration::from_secs(40), 10, false),
            (Duration::from_secs(63), 10, false),
            (Duration::from_secs(65), 10, true),
        ] {
            let kept = silent_for(silent, before);
            kept.timed_out(0, Instant::now());
            answered(&kept, 1).await;
            assert_eq!(
                opened(&kept),
                u64::from(replaced),
                "{silent:?} after {before}"
            );
        }
    }

    /// A link to two servers that connects before it takes calls, as a cluster client does.
    #[derive(Clone)]
    struct Connects;

    impl Link for Connects {
        type Opener = AtomicU64;
        const SERVERS: usize = 2;

        fn open(opened: &AtomicU64) -> Option<Opening<Self>> {
            opened.fetch_add(1, Ordering::Relaxed);
            Some(Opening::Connecting(Box::pin(async { Ok(Connects) })))
        }

        fn useless_after(_: &redis::RedisError) -> bool {
            false
        }
    }

    /// A link that connects in a task of its own is replaced each time its server goes
    /// silent, not only the first.
    #[tokio::test]
    async fn a_link_that_connects_in_a_task_is_replaced_again_after_its_replacement() {
        let kept = Kept::new(Connects, Some(AtomicU64::new(0)));
        let call = |kept: &Kept<Connects>, server| {
            let kept = kept.clone();
            async move { kept.run(server, |_| async { RedisResult::Ok(()) }).await }
        };
        for links in [1, 2] {
            call(&kept, 0).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1100)).await;
            kept.timed_out(0, Instant::now());
            call(&kept, 1).await.unwrap();
            // The new link connects in its task, then takes the place of the one in use.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                kept.0.opener.as_ref().unwrap().load(Ordering::Relaxed),
                links
            );
            assert_eq!(kept.generation(), links);
        }
    }

    #[test]
    fn a_tls_url_without_the_tls_feature_says_to_enable_it() {
        let error = tls_in_build("rediss://user:secret@host:6380", false).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`tls` feature"), "{message}");
        assert!(message.contains("rediss://***@host:6380"), "{message}");
        assert!(tls_in_build("REDISS://host:6380", false).is_err());
        assert!(tls_in_build("rediss://host:6380", true).is_ok());
        assert!(tls_in_build("redis://host:6379", false).is_ok());
        assert!(tls_in_build("redis+unix:///run/redis.sock", false).is_ok());
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?pass=secret&db=1"),
            "redis+unix:///run/redis.sock?pass=***&db=1"
        );
    }
}
