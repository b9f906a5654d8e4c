use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::InsufficientCapacity;

/// Why [`RedisStore`](super::RedisStore) could not answer a check.
///
/// With the default [`FailurePolicy::Local`](super::FailurePolicy::Local) or with
/// [`FailurePolicy::Allow`](super::FailurePolicy::Allow) the only error a check returns is a
/// cost above the burst; Redis failures become errors under
/// [`FailurePolicy::Deny`](super::FailurePolicy::Deny), and the layer answers them with
/// `503 Service Unavailable` and `Retry-After`.
#[derive(Debug)]
pub struct RedisStoreError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    OverBurst(InsufficientCapacity),
    QuotaTooLong,
    Redis(redis::RedisError),
    Timeout(Duration),
    BackingOff,
    Reply(Vec<i64>),
}

impl RedisStoreError {
    pub(super) fn over_burst(cost: u32, burst: u32) -> Self {
        Self::from(InsufficientCapacity { cost, burst })
    }

    pub(super) fn quota_too_long() -> Self {
        RedisStoreError {
            kind: Kind::QuotaTooLong,
        }
    }

    pub(super) fn redis(error: redis::RedisError) -> Self {
        RedisStoreError {
            kind: Kind::Redis(error),
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

    pub(super) fn reply(values: Vec<i64>) -> Self {
        RedisStoreError {
            kind: Kind::Reply(values),
        }
    }

    /// The cost and burst, if the check asked for more cells than the quota's burst.
    pub fn insufficient_capacity(&self) -> Option<InsufficientCapacity> {
        match self.kind {
            Kind::OverBurst(e) => Some(e),
            _ => None,
        }
    }

    /// Whether Redis did not answer within the store's timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// Whether the check was not sent because the store is backing off after repeated failures.
    pub fn is_backing_off(&self) -> bool {
        matches!(self.kind, Kind::BackingOff)
    }
}

impl From<InsufficientCapacity> for RedisStoreError {
    fn from(e: InsufficientCapacity) -> Self {
        RedisStoreError {
            kind: Kind::OverBurst(e),
        }
    }
}

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::OverBurst(e) => e.fmt(f),
            Kind::QuotaTooLong => f.write_str(
                "the quota's window (burst × interval) is longer than the Redis store can \
                 count exactly (2^52 µs, about 142 years); use a shorter interval or burst",
            ),
            Kind::Redis(e) => write!(
                f,
                "Redis failed to run the rate limit script: {e}; check that Redis is up and \
                 reachable"
            ),
            Kind::Timeout(after) => write!(
                f,
                "Redis did not answer the rate limit check within {after:?}; check Redis load \
                 and latency, or raise the store's timeout"
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
        }
    }
}

impl Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::OverBurst(e) => Some(e),
            Kind::Redis(e) => Some(e),
            _ => None,
        }
    }
}
