//! Redis behind Sentinel: the primary that the sentinels name, asked again whenever the one in
//! use stops answering as a primary, so that checks follow a failover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::sentinel::SentinelClient;
use redis::{Cmd, ErrorKind, RedisError, RedisResult, Role, Script, ServerErrorKind};
use tokio::runtime::Handle;
use tokio::sync::{Mutex, Notify};

use super::connection::{manager_config, not_the_primary, Single};
use crate::ConfigError;

/// How long one question to the sentinels, with the connection to the primary they name, may
/// take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before asking the sentinels again when they name no reachable primary; it
/// doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(250);
/// The least time between two lookups, so that a primary that is merely slow is not asked
/// about on every timed-out check.
const MIN_LOOKUP_INTERVAL: Duration = Duration::from_millis(100);

/// A connection to the primary that a set of sentinels names. Clones share it.
#[derive(Clone)]
pub(super) struct SentinelConnection {
    shared: Arc<Shared>,
}

struct Shared {
    /// The master name and the sentinels, for logs.
    name: String,
    /// Asked only by the lookup, one at a time.
    sentinels: Mutex<SentinelClient>,
    primary: RwLock<Arc<Primary>>,
    /// A lookup is running.
    resolving: AtomicBool,
    /// Wakes the calls that wait for a lookup to end.
    settled: Notify,
    /// When the last lookup ended, in nanoseconds since `epoch`.
    last_lookup: AtomicU64,
    epoch: Instant,
    /// Where lookups run: the runtime the store was built on.
    runtime: Handle,
}

/// The primary in use.
struct Primary {
    /// `host:port`, as the sentinels name it.
    address: String,
    connection: Single,
    /// Counts the primaries adopted, so that a check that failed on one primary can tell
    /// whether another is in use already.
    generation: u64,
}

impl SentinelConnection {
    /// Asks the sentinels for the primary and connects to it; returns the connection and the
    /// primary's address. Lookups run on `runtime`, the store's.
    pub(super) async fn connect(
        mut client: SentinelClient,
        name: String,
        runtime: Handle,
    ) -> Result<(SentinelConnection, String), ConfigError> {
        let primary = lookup(&mut client, 0)
            .await
            .map_err(|failure| failure.into_config_error(&name))?;
        let address = primary.address.clone();
        let connection = SentinelConnection {
            shared: Arc::new(Shared {
                name,
                sentinels: Mutex::new(client),
                primary: RwLock::new(Arc::new(primary)),
                resolving: AtomicBool::new(false),
                settled: Notify::new(),
                last_lookup: AtomicU64::new(0),
                epoch: Instant::now(),
                runtime,
            }),
        };
        Ok((connection, address))
    }

    /// Runs `call` on the primary. An answer that says the primary is gone or is one no more
    /// (a broken connection, `READONLY`, `MASTERDOWN`, `NOREPLICAS`) starts a lookup, as a call that timed
    /// out does ([`timed_out`](Self::timed_out)). A call that failed so waits for the lookup
    /// (within the store's timeout, which bounds the whole call), and is sent once more if the
    /// sentinels named a new primary meanwhile: a process that was idle through a failover
    /// need not lose its next check to the failure policy.
    pub(super) async fn query(&self, call: &Cmd) -> RedisResult<Vec<u8>> {
        let primary = self.shared.current();
        let outcome = primary.connection.query(call).await;
        match outcome {
            Err(error) if primary_lost(&error) => {
                let settled = self.shared.settled.notified();
                let mut settled = std::pin::pin!(settled);
                settled.as_mut().enable();
                self.shared.suspect();
                if self.shared.resolving.load(Ordering::Acquire) {
                    settled.await;
                }
                let now = self.shared.current();
                if now.generation == primary.generation {
                    return Err(error);
                }
                now.connection.query(call).await
            }
            outcome => outcome,
        }
    }

    /// A call sent at `sent` got no answer within the store's timeout: the primary may be
    /// gone, or the connection to it dead without a word (see [`Single`]). A call dropped for
    /// another reason (its request cancelled) tells nothing of the primary.
    pub(super) fn timed_out(&self, sent: Instant) {
        self.shared.current().connection.timed_out(0, sent);
        self.shared.suspect();
    }

    /// Loads `script` into the primary.
    pub(super) async fn load(&self, script: &Script) -> RedisResult<String> {
        let primary = self.shared.current();
        let outcome = script.load_async(&mut primary.connection.manager()).await;
        if let Err(error) = &outcome {
            if primary_lost(error) {
                self.shared.suspect();
            }
        }
        outcome
    }
}

impl Shared {
    /// The primary may have moved: asks the sentinels in the background, unless a lookup is
    /// running or has just ended.
    fn suspect(self: &Arc<Self>) {
        let since = self.epoch.elapsed().as_nanos() as u64;
        let last = self.last_lookup.load(Ordering::Acquire);
        if last != 0 && since.saturating_sub(last) < MIN_LOOKUP_INTERVAL.as_nanos() as u64 {
            return;
        }
        if self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.runtime.spawn(resolve(Arc::downgrade(self)));
    }

    fn current(&self) -> Arc<Primary> {
        // Nothing panics while holding the lock: a poisoned one still holds a primary.
        Arc::clone(&self.primary.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Asks the sentinels once; adopts the primary they name if it is a new one.
    async fn lookup_once(&self) -> Result<(), Failure> {
        let current = self.current();
        let mut sentinels = self.sentinels.lock().await;
        let found = ask(&mut sentinels).await?;
        drop(sentinels);
        let address = found.get_connection_info().addr().to_string();
        if address == current.address {
            // The same primary: its connection reconnects by itself (or, after a refused
            // reconnection, is replaced by its next call).
            return Ok(());
        }
        let primary = open(found, address, current.generation + 1).await?;
        tracing::warn!(
            redis = %self.name,
            from = %current.address,
            to = %primary.address,
            "Redis Sentinel named a new primary; rate limit checks go to it"
        );
        let primary = Arc::new(primary);
        *self.primary.write().unwrap_or_else(PoisonError::into_inner) = primary;
        Ok(())
    }
}

/// Asks the sentinels until they name a primary that answers as one (backing off between
/// attempts), or the store is gone.
async fn resolve(shared: Weak<Shared>) {
    let mut wait = RETRY_FIRST;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let outcome = strong.lookup_once().await;
        if let Err(failure) = &outcome {
            tracing::debug!(
                redis = %strong.name,
                error = %failure,
                "Redis Sentinel lookup found no primary yet; asking again"
            );
        }
        if outcome.is_ok() {
            let since = strong.epoch.elapsed().as_nanos() as u64;
            strong.last_lookup.store(since.max(1), Ordering::Release);
            strong.resolving.store(false, Ordering::Release);
            strong.settled.notify_waiters();
            return;
        }
        drop(strong);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Asks the sentinels for a client of the primary, within [`LOOKUP_TIMEOUT`].
async fn ask(sentinels: &mut SentinelClient) -> Result<redis::Client, Failure> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, sentinels.async_get_client()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) if error.kind() == ErrorKind::MasterNameNotFoundBySentinel => {
            Err(Failure::NoPrimary(error))
        }
        Ok(Err(error)) => Err(Failure::Sentinels(error)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The first lookup, when the store is built.
async fn lookup(sentinels: &mut SentinelClient, generation: u64) -> Result<Primary, Failure> {
    let found = ask(sentinels).await?;
    let address = found.get_connection_info().addr().to_string();
    open(found, address, generation).await
}

/// Connects to a primary the sentinels named and makes sure it is one.
async fn open(client: redis::Client, address: String, generation: u64) -> Result<Primary, Failure> {
    let connect = async {
        let mut connection =
            ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        let role: Role = redis::cmd("ROLE").query_async(&mut connection).await?;
        Ok::<_, RedisError>((Single::new(connection, Some(client)), role))
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, connect).await {
        Ok(Ok((connection, Role::Primary { .. }))) => Ok(Primary {
            address,
            connection,
            generation,
        }),
        Ok(Ok(_)) => Err(Failure::NotPrimary(address)),
        Ok(Err(error)) => Err(Failure::Primary(address, error)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Whether an error says that the primary in use is gone or is a primary no more.
fn primary_lost(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || not_the_primary(error)
        || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
}

/// Why a lookup found no primary.
#[derive(Debug)]
enum Failure {
    /// No sentinel answered.
    Sentinels(RedisError),
    /// The sentinels know no primary of that name that is up.
    NoPrimary(RedisError),
    /// The named primary could not be reached.
    Primary(String, RedisError),
    /// The named server is not a primary (a client built for replicas).
    NotPrimary(String),
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Sentinels(error) => write!(f, "no sentinel answered: {error}"),
            Failure::NoPrimary(error) => write!(f, "no primary that is up: {error}"),
            Failure::Primary(address, error) => {
                write!(f, "the primary at {address} did not answer: {error}")
            }
            Failure::NotPrimary(address) => write!(f, "{address} is not a primary"),
            Failure::Timeout => write!(f, "no answer within {LOOKUP_TIMEOUT:?}"),
        }
    }
}

impl Failure {
    /// The error of a store whose first lookup failed; `name` says which master of which
    /// sentinels.
    fn into_config_error(self, name: &str) -> ConfigError {
        match self {
            Failure::Sentinels(error) => ConfigError::with_source(
                format!(
                    "could not ask the Redis Sentinels for the {name}: check the addresses \
                     (sentinels, usually on port 26379, not Redis servers) and that the \
                     sentinels are running"
                ),
                error,
            ),
            Failure::NoPrimary(error) => ConfigError::with_source(
                format!(
                    "the Redis Sentinels know no primary that is up for the {name}: check the \
                     master name against `sentinel monitor <name> ..` in their configuration"
                ),
                error,
            ),
            Failure::Primary(address, error) => ConfigError::with_source(
                format!(
                    "could not connect to the primary at {address} that the Redis Sentinels \
                     named for the {name}: check that it is reachable from here, and its \
                     password (set through `sentinel_client`)"
                ),
                error,
            ),
            Failure::NotPrimary(address) => ConfigError::new(format!(
                "the {name} led to {address}, which is not a primary: build the client with \
                 `SentinelServerType::Master`"
            )),
            Failure::Timeout => ConfigError::new(format!(
                "the Redis Sentinels did not name a reachable primary for the {name} within \
                 {LOOKUP_TIMEOUT:?}: check the addresses and that they are reachable"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_or_a_demoted_primary_starts_a_lookup() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(primary_lost(&RedisError::from(reset)));
        for kind in [
            ServerErrorKind::ReadOnly,
            ServerErrorKind::MasterDown,
            ServerErrorKind::BusyLoading,
        ] {
            assert!(primary_lost(&RedisError::from((
                ErrorKind::Server(kind),
                "from the server"
            ))));
        }
        let script_error = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "ERR user_script:1: bad argument",
        ));
        assert!(!primary_lost(&script_error));
        let no_script =
            RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(!primary_lost(&no_script));
    }
}
