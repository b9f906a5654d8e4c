/// How [`RedisStore`](super::RedisStore) answers when Redis fails or is too slow.
///
/// A check fails when Redis returns an error or does not answer within the store's timeout,
/// when its call is dropped because the runtime the store was built on shuts down, and, after
/// repeated failures, during the back-off in which checks do not wait for Redis.
///
/// ```
/// use tower_ratelimit::store::{FailurePolicy, RedisStore};
///
/// let builder = RedisStore::builder()
///     .url("redis://127.0.0.1:6379")
///     .on_failure(FailurePolicy::Deny);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Limit in this process with an in-memory GCRA of the same quota (the default): each
    /// process admits up to the whole quota on its own until Redis is back.
    #[default]
    Local,
    /// Fail open: allow every check, answered as a key's first check would be (the burst less
    /// the cost remaining, full again once the cost's cells refill), so that the `RateLimit`
    /// headers of these answers agree with each other.
    Allow,
    /// Fail closed: the check is an error, which the layer answers with its rejection's
    /// [`MakeRejection::make_store_failed`](crate::MakeRejection::make_store_failed): by
    /// default `503 Service Unavailable` with `Retry-After: 1` (gRPC: `UNAVAILABLE` with
    /// `grpc-retry-pushback-ms: 1000`). A rejection that makes its own answer gets it sent as
    /// it is: the layer adds no header to it. A request whose policies are all in shadow mode
    /// is served: they never reject.
    Deny,
}
