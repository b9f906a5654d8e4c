//! The connection to Redis: one server through a multiplexed, reconnecting connection, the
//! primary that Redis Sentinel names, or a Redis Cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

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
    Cluster(ClusterConnection),
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
    /// On a Redis Cluster, `node` sends the call to the primary serving that slot instead of the
    /// slot of the call's keys (a call that names its keys in its arguments).
    pub(super) async fn invoke(
        &mut self,
        call: &Cmd,
        script: &Script,
        node: Option<u16>,
    ) -> RedisResult<Vec<u8>> {
        let outcome = match self.query(call, node).await {
            Err(e) if e.is_io_error() || e.is_unrecoverable_error() => self.query(call, node).await,
            outcome => outcome,
        };
        match outcome {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(script).await?;
                self.query(call, node).await
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

    /// A call sent at `sent` got no answer within the store's timeout: the connection may be
    /// dead without a word (a peer or a middlebox that dropped it silently), and behind
    /// Sentinel the primary may have moved.
    pub(super) fn timed_out(&self, sent: Instant) {
        match self {
            Connection::Single(c) => c.timed_out(sent),
            Connection::Sentinel(c) => c.timed_out(sent),
            Connection::Cluster(_) => {}
        }
    }

    async fn query(&mut self, call: &Cmd, node: Option<u16>) -> RedisResult<Vec<u8>> {
        match (self, node) {
            (Connection::Single(c), _) => c.query(call).await,
            (Connection::Sentinel(c), _) => c.query(call).await,
            (Connection::Cluster(c), None) => call.query_async(c).await,
            (Connection::Cluster(c), Some(slot)) => {
                let primary = Route::new(slot, SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary));
                // An error reply comes back as a value.
                let answer = c.route_command(call.clone(), to).await?.extract_error()?;
                Ok(FromRedisValue::from_redis_value(answer)?)
            }
        }
    }

    pub(super) async fn load(&mut self, script: &Script) -> RedisResult<String> {
        match self {
            Connection::Single(c) => script.load_async(&mut c.manager()).await,
            Connection::Sentinel(c) => c.load(script).await,
            Connection::Cluster(c) => script.load_async(c).await,
        }
    }
}

/// Whether `error` is the answer of a server that is a replica, not the primary it was:
/// `READONLY` to a write, or `MASTERDOWN`.
pub(super) fn from_a_replica(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
    )
}

/// One server's connection manager (a single server's, or the primary's behind Sentinel),
/// shared by every clone of the store.
///
/// A manager opens a new connection by itself after an I/O error, but not when its connection
/// stays open and useless, which it would for as long as the process runs:
///
/// - after a connection attempt that Redis refused (authentication failed, as after a
///   restart with another password), every later call gets that attempt's error again;
/// - a server that became a replica (a failover that moved a DNS name to the new primary, or
///   `REPLICAOF` on the old one) answers every write `READONLY`;
/// - a connection dropped without a word (by a load balancer or NAT that forgot it, or a host
///   that vanished) takes calls and answers none until the kernel gives up on it, many
///   minutes on.
///
/// A call failing so replaces the manager with a new one, which connects (looking the host's
/// name up again) on its first call; so does the call after one that timed out on a manager
/// that has answered nothing since the call was sent, nor for [`DEAD_AFTER`] (a Redis that is
/// slow but answers, or stalls for less, keeps its connection). A manager never answered counts
/// from when it came into use (a connection can go silent before its first answer too), and
/// waits twice as long as the one it replaced if that one was never answered either (up to
/// [`DEAD_AFTER`] × 64): a Redis whose every answer comes after the timeout, which the store
/// never sees, costs a handful of new connections, not one a second. The last manager that
/// Redis answered stays open until a manager after it is answered: a Redis
/// that was only stalled (paused for a failover, busy with a slow command) still runs the calls
/// sent on it before the stall, as it would had the connection been kept. A manager the caller
/// passed in ([`Target::Manager`]) is kept as it is.
#[derive(Clone)]
pub(super) struct Single(Arc<SingleParts>);

struct SingleParts {
    current: RwLock<Current>,
    /// Where a new manager connects; `None` for a manager passed in.
    client: Option<redis::Client>,
    /// The generation of a manager that a timed-out call took for dead, plus one (zero for
    /// none): the next call replaces it. Not the call that timed out, which may have been
    /// polled where no runtime runs to take the new manager's task.
    dead: AtomicU64,
    /// The last manager that Redis answered, if it was replaced, with the generation that
    /// replaced it, until a manager of that generation or a later one is answered.
    retired: Mutex<Option<(u64, ConnectionManager)>>,
    epoch: Instant,
}

/// How long a connection must have answered nothing, a call timing out on it meanwhile, to be
/// taken for dead.
const DEAD_AFTER: Duration = Duration::from_secs(1);

/// The manager in use, how many were replaced before it, how many of those in a row, just
/// before it, were never answered, when it came into use and when Redis last answered a call on
/// it (a value or an error), in nanoseconds since the parts' `epoch` (`answered` zero if never).
#[derive(Clone)]
struct Current {
    manager: ConnectionManager,
    generation: u64,
    unanswered_before: u32,
    since: u64,
    answered: Arc<AtomicU64>,
}

impl Single {
    /// `manager`, replaced when needed by a new one connecting with `client`.
    pub(super) fn new(manager: ConnectionManager, client: Option<redis::Client>) -> Self {
        Single(Arc::new(SingleParts {
            current: RwLock::new(Current {
                manager,
                generation: 0,
                unanswered_before: 0,
                since: 1,
                answered: Arc::default(),
            }),
            client,
            dead: AtomicU64::new(0),
            retired: Mutex::new(None),
            epoch: Instant::now(),
        }))
    }

    /// Nanoseconds from the parts' epoch to `at`, at least one.
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// The manager in use.
    pub(super) fn manager(&self) -> ConnectionManager {
        self.current().manager
    }

    fn current(&self) -> Current {
        // Nothing panics while holding the lock: a poisoned one still holds a manager.
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `call`; replaces the manager if the way it failed leaves the manager failed. Runs
    /// on the store's runtime, where a new manager's task goes.
    pub(super) async fn query(&self, call: &Cmd) -> RedisResult<Vec<u8>> {
        let dead = self.0.dead.swap(0, Ordering::Relaxed);
        if let Some(generation) = dead.checked_sub(1) {
            self.replace(generation);
        }
        let Current {
            mut manager,
            generation,
            answered,
            ..
        } = self.current();
        let outcome = call.query_async(&mut manager).await;
        let Err(e) = &outcome else {
            self.answered(generation, &answered);
            return outcome;
        };
        if e.is_io_error() || e.is_connection_dropped() {
            // The manager reconnects by itself.
            return outcome;
        }
        self.answered(generation, &answered);
        // An answer after which a connection must be opened again: a refused connection
        // attempt, or a server that is a replica now.
        if from_a_replica(e) || e.is_unrecoverable_error() {
            self.replace(generation);
        }
        outcome
    }

    /// Redis answered a call on the manager of `generation`: at its first answer, the manager
    /// it replaced, if still open, is closed.
    fn answered(&self, generation: u64, answered: &AtomicU64) {
        if answered.fetch_max(self.nanos(Instant::now()), Ordering::Relaxed) != 0 {
            return;
        }
        let mut retired = self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if retired.as_ref().is_some_and(|(by, _)| *by <= generation) {
            *retired = None;
        }
    }

    /// A call sent at `sent` timed out: if the manager in use was answered before the call was
    /// sent but neither since nor for [`DEAD_AFTER`], or was never answered since it came into
    /// use, [`DEAD_AFTER`] ago or longer (doubled for each manager never answered in a row
    /// before it), its connection is taken for dead, and the next call replaces it. (A manager
    /// never answered may not have carried the call, made before it came into use: then it had
    /// no call to answer, and connects again lazily, at no cost.)
    pub(super) fn timed_out(&self, sent: Instant) {
        let now = self.nanos(Instant::now());
        let sent = self.nanos(sent);
        let current = self.current();
        let dead_after = DEAD_AFTER.as_nanos() as u64;
        // Silent since when, and for how long before it is taken for dead.
        let (silent_since, dead_after) = match current.answered.load(Ordering::Relaxed) {
            0 => (
                current.since,
                dead_after << current.unanswered_before.min(6),
            ),
            answered if answered >= sent => return,
            answered => (answered, dead_after),
        };
        if now.saturating_sub(silent_since) >= dead_after {
            self.0.dead.store(current.generation + 1, Ordering::Relaxed);
        }
    }

    /// Replaces the manager of `generation` by a new one, unless another call did already.
    /// Must run inside a Tokio runtime: the new manager spawns its task at once.
    fn replace(&self, generation: u64) {
        let Some(client) = &self.0.client else {
            return;
        };
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation {
            return;
        }
        // Refuses only settings the first manager was built with.
        let Ok(manager) = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
        else {
            return;
        };
        let never_answered = current.answered.load(Ordering::Relaxed) == 0;
        let next = Current {
            manager,
            generation: generation + 1,
            unanswered_before: match never_answered {
                true => current.unanswered_before.saturating_add(1),
                false => 0,
            },
            since: self.nanos(Instant::now()),
            answered: Arc::default(),
        };
        let old = std::mem::replace(&mut *current, next);
        // A manager never answered has no calls that a stalled Redis would still run: the
        // last one answered, if still open, stays instead.
        if never_answered {
            return;
        }
        // Under the write lock, so that no answer of the new manager comes before it.
        let mut retired = self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *retired = Some((generation + 1, old.manager));
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
            let mut client = ClusterClient::builder(urls)
                .retries(3)
                .min_retry_wait(1)
                .max_retry_wait(RETRY_WAIT_MS)
                .retry_wait_formula(1, 2)
                .connection_timeout(CONNECT_TIMEOUT);
            if let Some(within) = node_answer_within {
                client = client.response_timeout(within);
            }
            let client = client.build().map_err(|e| {
                ConfigError::with_source(format!("invalid Redis Cluster node list {name}"), e)
            })?;
            match client.get_async_connection().await {
                Ok(connection) => Ok((Connection::Cluster(connection), name)),
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
            Ok((Connection::Cluster(connection), "cluster connection".into()))
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
