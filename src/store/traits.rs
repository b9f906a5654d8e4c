use std::future::Future;

use crate::{Decision, Quota};

/// A keyed GCRA state store.
///
/// `check` takes `cost` cells from `key` if they conform to `quota` and says what happened;
/// `peek` says what a cost-1 check would answer without taking anything. Both return a
/// nameable future so that a store whose answer is immediate (such as [`MemoryStore`]) costs
/// nothing to await, and the service can tell at once that no waiting is needed.
///
/// Errors are failures to answer (a cost above the burst, a backend that is down and a policy
/// that says to fail), never "limited": a limited key is an `Ok` denied [`Decision`].
///
/// [`MemoryStore`]: crate::MemoryStore
pub trait Store<K: ?Sized> {
    /// Why a check could not be answered.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The answer to a check or a peek.
    type Future: Future<Output = Result<Decision, Self::Error>>;

    /// Takes `cost` cells from `key` if they conform to `quota`.
    fn check(&self, key: &K, quota: &Quota, cost: u32) -> Self::Future;

    /// What a cost-1 check of `key` against `quota` would answer now, taking nothing.
    fn peek(&self, key: &K, quota: &Quota) -> Self::Future;
}
