use std::future::Future;

use crate::{ConfigError, Decisions, Policy};

/// Where budgets live: a GCRA state per (policy, key), decided a stack at a time.
///
/// A layer [`register`](Store::register)s each stack of policies it may check when it is built,
/// and keeps what the store returns; on the request path it asks the store to
/// [`check`](Store::check) the stack for a key. Keys are bytes (see
/// [`KeyBytes`](crate::KeyBytes)), the same for every store.
///
/// The answer is a nameable, `Unpin` future, so that a store whose answer is immediate (such as
/// [`MemoryStore`](crate::MemoryStore)) costs nothing to await and the service can tell at once
/// that no waiting is needed.
///
/// Errors are failures to answer (a backend that is down and a policy that says to fail), never
/// "limited": a limited key is an `Ok` [`Decisions`] that is not allowed. The layer answers a
/// request whose check failed with
/// [`MakeRejection::make_store_failed`](crate::MakeRejection::make_store_failed), or serves it
/// when every policy of its stack is in shadow mode (which never rejects).
///
/// # Implementing a store
///
/// - An answer has one [`Decision`](crate::Decision) per policy of the stack, in stack order
///   (build it with [`Decisions::new`]). The layer takes an answer of another length for a
///   failure of the store: it logs it and answers with `make_store_failed`.
/// - A denied policy's [`Decision`](crate::Decision) carries the time until the request would
///   conform to it. The layer answers the largest of these over the enforced policies (not the
///   shadow ones), rounded up to whole seconds for `Retry-After`, never below 1.
/// - The key is the bytes the extractor's key wrote, of any length, the empty key included; a
///   store that keeps keys bounds their memory itself (the stores of this crate keep a key
///   longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) as a digest).
/// - The layer polls the future once inside `call` with a waker that does nothing, and, if it
///   is pending, again from the response future with the task's waker, as the `Future`
///   contract allows. It puts no deadline on the answer: a future that never completes holds
///   its request for as long as the client waits, so a store that waits on I/O bounds its own
///   wait and answers an error (or a fallback decision) when that runs out, as the
///   Redis store does. A future dropped before it completes means that the
///   client went away.
/// - A panic in `check` or in its future is not caught: it unwinds out of the service's `call`
///   or its response future, as a panic of the inner service would.
/// - With axum or tonic, whose services must be `Send`, the future must be `Send` too.
///
/// ```
/// use tower_ratelimit::{MemoryStore, Policy, Quota, Store};
///
/// let store = MemoryStore::new();
/// let stack = store.register(&[
///     Policy::new("per-second", Quota::per_second(2)),
///     Policy::new("per-minute", Quota::per_minute(3)),
/// ])?;
/// let mut admitted = 0;
/// for _ in 0..5 {
///     admitted += usize::from(store.check_now(&stack, b"alice", 1).is_allowed());
/// }
/// assert_eq!(admitted, 2, "the per-second policy stops the third");
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
pub trait Store {
    /// What the store keeps of a registered stack, passed back with every check.
    type Stack: Send + Sync + 'static;

    /// Why a check could not be answered.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The answer to a check or a peek.
    type Future: Future<Output = Result<Decisions, Self::Error>> + Unpin;

    /// Prepares the stack `policies` (in order) for checks, or says why it cannot be: no
    /// policy, a name twice in the stack, a name a layer would refuse (the crate's stores
    /// take 1 to 64 printable ASCII characters without `"`, `\`, `{` or `}`, as a layer
    /// does), a policy name registered before with another quota, or a quota the store
    /// cannot count.
    fn register(&self, policies: &[Policy]) -> Result<Self::Stack, ConfigError>;

    /// Takes `cost` cells for `key` from every policy of `stack` if all enforced ones admit it
    /// (a shadow policy never denies, and takes nothing it does not conform to), and answers a
    /// decision per policy. A denied check takes nothing from any policy. The cost is at least
    /// 1 and fits the burst
    /// of every enforced policy; the layer answers other costs without asking the store.
    fn check(&self, stack: &Self::Stack, key: &[u8], cost: u32) -> Self::Future;

    /// What a cost-1 check of `key` would answer now, taking nothing. The layer does not call
    /// it; it is there for the application (say, to show a user what is left).
    fn peek(&self, stack: &Self::Stack, key: &[u8]) -> Self::Future;
}
