use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why [`RedisStore`](super::RedisStore) could not answer a check.
///
/// With the default [`FailurePolicy::Local`](super::FailurePolicy::Local) or with
/// [`FailurePolicy::Allow`](super::FailurePolicy::Allow) a check never fails; Redis failures
/// become errors under [`FailurePolicy::Deny`](super::FailurePolicy::Deny), and the layer
/// answers them with its rejection's
/// [`MakeRejection::make_store_failed`](crate::MakeRejection::make_store_failed), which finds
/// this error in [`StoreFailed::error`](crate::StoreFailed::error): by default
/// `503 Service Unavailable` with `Retry-After: 1` (gRPC: `UNAVAILABLE`); with a rejection type
/// that overrides `make_store_failed`, the response it makes, to which the layer adds no header.
#[derive(Clone, Debug)]
pub struct RedisStoreError {
    kind: Kind,
}

/// Cloned for every check of a batch that one failed call answers.
#[derive(Clone, Debug)]
enum Kind {
    Redis(Arc<redis::RedisError>),
    Timeout(Duration),
    BackingOff,
    Reply(Vec<i64>),
    Lost,
    /// The runtime the store was built on is shutting down or gone: no call can be made.
    RuntimeGone,
    /// The store's clock, in ns, past the times the script counts exactly.
    ClockTooLate(u64),
}

impl RedisStoreError {
    pub(super) fn redis(error: redis::RedisError) -> Self {
        RedisStoreError {
            kind: Kind::Redis(Arc::new(error)),
        }
    }

    pub(super) fn timeout(after: Duration) -> Self {
        RedisStoreError {
            kind: Kind::Timeout(after),
        }
    }

    pub(super) fn backing_off() -> Self {
        RedisStoreError {
            kind: Kind::BackingOff,
        }
    }

    pub(super) fn lost() -> Self {
        RedisStoreError { kind: Kind::Lost }
    }

    pub(super) fn runtime_gone() -> Self {
        RedisStoreError {
            kind: Kind::RuntimeGone,
        }
    }

    pub(super) fn clock_too_late(nanos: u64) -> Self {
        RedisStoreError {
            kind: Kind::ClockTooLate(nanos),
        }
    }

    pub(super) fn reply(values: Vec<i64>) -> Self {
        RedisStoreError {
            kind: Kind::Reply(values),
        }
    }

    /// Whether Redis did not answer within the store's timeout.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// Whether Redis Cluster refused the call because its keys' slot is moving between
    /// primaries and they are not all on one of them (`TRYAGAIN`).
    pub(super) fn is_slot_moving(&self) -> bool {
        matches!(&self.kind, Kind::Redis(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain))
    }

    /// Whether Redis refused the call itself, with an error of the script's (`ERR`, such as a
    /// key not served by the primary that ran it) or a key holding another type (`WRONGTYPE`),
    /// rather than failing to run it.
    pub(super) fn is_refused(&self) -> bool {
        matches!(&self.kind, Kind::Redis(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                || e.code() == Some("WRONGTYPE"))
    }

    /// Whether the check was not sent because the store is backing off after repeated failures.
    #[must_use]
    pub fn is_backing_off(&self) -> bool {
        matches!(self.kind, Kind::BackingOff)
    }
}

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Redis(_) => f.write_str(
                "Redis could not be reached, refused the connection (a wrong password among \
                 the causes; a Redis Cluster client reports it as no connection found) or \
                 refused the rate limit script (its own error is the source of this one)",
            ),
            Kind::Timeout(after) => write!(
                f,
                "Redis did not answer the rate limit check within {after:?}; check that Redis is \
                 up and reachable, its load and latency, or raise the store's timeout"
            ),
            Kind::BackingOff => f.write_str(
                "Redis failed repeatedly and the store is backing off; checks resume when a \
                 probe succeeds",
            ),
            Kind::Reply(values) => write!(
                f,
                "Redis answered the rate limit script with {values:?}, not a decision; another \
                 script may be loaded under the same SHA or the key holds foreign data"
            ),
            Kind::ClockTooLate(nanos) => write!(
                f,
                "the store's clock reads {nanos} ns, at or past 2^52 µs (about 142 years from \
                 its origin), where the rate limit script's numbers (doubles) are no longer \
                 exact; use a clock that counts from a recent origin, such as Unix time"
            ),
            Kind::RuntimeGone => f.write_str(
                "the Tokio runtime the store was built on, which runs its connection, is \
                 shutting down or gone: build the store on the runtime that serves its checks \
                 and keep that runtime running (in tests, a store per `#[tokio::test]`, each of \
                 which has a runtime of its own)",
            ),
            Kind::Lost => f.write_str(
                "the call carrying this rate limit check was dropped before Redis answered \
                 (its Tokio runtime is shutting down)",
            ),
        }
    }
}

impl Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::Redis(e) => Some(&**e),
            _ => None,
        }
    }
}
