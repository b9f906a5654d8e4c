//! The generic cell rate algorithm: pure arithmetic on one integer per key, and its [`Decision`].
//!
//! State per key is the theoretical arrival time `TAT`. A check of cost `n` at time `t` with
//! burst `b` and interval `T` conforms iff `max(TAT, t) + n·T − t ≤ b·T`, and then sets
//! `TAT := max(TAT, t) + n·T`. A denial changes nothing. No clock and no I/O here: the stores
//! read the time and keep the state.

use std::time::Duration;

use smallvec::SmallVec;

use crate::Quota;

/// The answer to one check: allowed or not, and what the key has left.
///
/// Every store produces the same `Decision` for the same history, so the headers and the
/// rejection never depend on the backend.
///
/// A denial always waits at least one nanosecond: 24 bytes, with the wait saying whether the
/// check was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    limit: u32,
    remaining: u32,
    /// Zero exactly when allowed.
    retry_after_nanos: u64,
    reset_after_nanos: u64,
}

impl Decision {
    /// A conforming check: `remaining` more cost-1 checks would conform right now, and the key
    /// is back to a full burst after `reset_after` (saturating at `u64::MAX` nanoseconds).
    #[must_use]
    pub fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Self {
        Self::allowed_nanos(limit, remaining, nanos(reset_after))
    }

    /// A non-conforming check that would conform after `retry_after` (at least 1 ns; durations
    /// saturate at `u64::MAX` nanoseconds).
    #[must_use]
    pub fn denied(
        limit: u32,
        remaining: u32,
        retry_after: Duration,
        reset_after: Duration,
    ) -> Self {
        Self::denied_nanos(limit, remaining, nanos(retry_after), nanos(reset_after))
    }

    #[inline]
    pub(crate) fn allowed_nanos(limit: u32, remaining: u32, reset_after: u64) -> Self {
        Decision {
            limit,
            remaining,
            retry_after_nanos: 0,
            reset_after_nanos: reset_after,
        }
    }

    #[inline]
    pub(crate) fn denied_nanos(
        limit: u32,
        remaining: u32,
        retry_after: u64,
        reset_after: u64,
    ) -> Self {
        Decision {
            limit,
            remaining,
            retry_after_nanos: retry_after.max(1),
            reset_after_nanos: reset_after,
        }
    }

    /// Whether the check conformed and its cells were taken.
    #[inline]
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.retry_after_nanos == 0
    }

    /// The burst of the quota the check ran against.
    #[inline]
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How many more cost-1 checks would conform right now.
    #[inline]
    #[must_use]
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the same check would conform; zero when it was allowed.
    #[inline]
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after_nanos)
    }

    /// How long until the key is back to a full burst.
    #[inline]
    #[must_use]
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }

    /// Whether the check was denied because its cost exceeds the burst: no wait would let it
    /// conform (its [`retry_after`](Self::retry_after) is the longest there is, and means no
    /// time to wait). The layer answers such costs itself; a store called directly answers
    /// them so.
    ///
    /// ```
    /// use tower_ratelimit::{MemoryStore, Policy, Quota, Store};
    ///
    /// let store = MemoryStore::new();
    /// let stack = store.register(&[Policy::new("upload", Quota::per_second(2))])?;
    /// let decisions = store.check_now(&stack, b"alice", 3);
    /// assert!(!decisions.is_allowed());
    /// assert!(decisions.as_slice()[0].never_conforms());
    /// assert!(!store.check_now(&stack, b"alice", 2).as_slice()[0].never_conforms());
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn never_conforms(&self) -> bool {
        self.retry_after_nanos == u64::MAX
    }
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A check whose cost exceeds the burst: it can never conform, however long the caller waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsufficientCapacity {
    /// The cost that was asked for.
    pub(crate) cost: u32,
    /// The burst of the quota: the largest cost that can ever conform.
    pub(crate) burst: u32,
}

/// The answer to one check of a stack of policies: one [`Decision`] per policy, in the order of
/// the stack, and whether the request is admitted.
///
/// Enforced policies are all-or-nothing: the request is admitted only if each of them admits
/// it, and a request that any of them denies takes nothing from any. A policy in shadow mode
/// never denies the request; it takes the cost of an admitted request that it conforms to, and
/// nothing from a denied one, as it would enforced.
///
/// ```
/// use std::time::Duration;
/// use tower_ratelimit::{Decision, Decisions};
///
/// let per_second = Decision::denied(2, 0, Duration::from_millis(300), Duration::from_secs(1));
/// let per_minute = Decision::allowed(10, 4, Duration::from_secs(36));
/// let decisions = Decisions::new(false, [per_second, per_minute]);
/// assert!(!decisions.is_allowed());
/// assert_eq!(decisions.retry_after(), Duration::from_millis(300));
/// assert_eq!(decisions.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Decisions {
    admitted: bool,
    /// Whether the Redis store's failure policy answered, not Redis: the `fallback_*`
    /// outcomes of the decision counter. Not part of equality.
    #[cfg(feature = "metrics")]
    fallback: bool,
    /// The largest wait of the enforced policies that denied, in nanoseconds.
    wait: u64,
    each: SmallVec<[Decision; 2]>,
}

impl PartialEq for Decisions {
    fn eq(&self, other: &Self) -> bool {
        self.admitted == other.admitted && self.wait == other.wait && self.each == other.each
    }
}

impl Eq for Decisions {}

impl Decisions {
    /// The one place a `Decisions` is put together.
    #[inline]
    fn with(admitted: bool, wait: u64, each: SmallVec<[Decision; 2]>) -> Self {
        Decisions {
            admitted,
            #[cfg(feature = "metrics")]
            fallback: false,
            wait,
            each,
        }
    }

    /// The same decisions, marked as the answer of the Redis store's failure policy.
    #[cfg(all(feature = "metrics", feature = "redis"))]
    pub(crate) fn by_failure_policy(mut self) -> Self {
        self.fallback = true;
        self
    }

    /// Whether the Redis store's failure policy answered rather than Redis.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Decisions of a stack, `admitted` or not, one per policy in stack order.
    ///
    /// When denied, the wait is the largest of the denied decisions' waits: this constructor
    /// does not know which policies are in shadow mode. A layer that gets these decisions from
    /// a [`Store`](crate::Store) of one's own leaves the waits of its shadow policies out, so
    /// such a store builds its answers with this constructor, shadow policies or not.
    #[must_use]
    pub fn new(admitted: bool, each: impl IntoIterator<Item = Decision>) -> Self {
        let each: SmallVec<[Decision; 2]> = each.into_iter().collect();
        let wait = if admitted {
            0
        } else {
            each.iter().map(|d| d.retry_after_nanos).max().unwrap_or(0)
        };
        Self::with(admitted, wait, each)
    }

    /// The decision of a one-policy stack.
    #[inline]
    #[must_use]
    pub fn one(decision: Decision) -> Self {
        let each = SmallVec::from_buf_and_len([decision; 2], 1);
        Self::with(decision.is_allowed(), decision.retry_after_nanos, each)
    }

    /// The decision of one policy, admitted anyway if the policy is in shadow mode.
    #[inline]
    pub(crate) fn one_cell(decision: Decision, shadow: bool) -> Self {
        let admitted = shadow || decision.is_allowed();
        let wait = if admitted {
            0
        } else {
            decision.retry_after_nanos
        };
        Self::with(admitted, wait, SmallVec::from_buf_and_len([decision; 2], 1))
    }

    /// Leaves the waits of the policies that `shadow` marks out of the wait of a denied stack:
    /// the largest wait of the enforced policies that denied.
    pub(crate) fn wait_of_enforced(&mut self, shadow: impl IntoIterator<Item = bool>) {
        self.wait = self
            .each
            .iter()
            .zip(shadow)
            .filter(|(d, shadow)| !shadow && !d.is_allowed())
            .map(|(d, _)| d.retry_after_nanos)
            .max()
            .unwrap_or(0);
    }

    /// Whether the request is admitted: every enforced policy admitted it.
    #[inline]
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.admitted
    }

    /// The decision of each policy, in the order of the stack.
    #[inline]
    #[must_use]
    pub fn as_slice(&self) -> &[Decision] {
        &self.each
    }

    /// How many policies were decided.
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.each.len()
    }

    /// Whether no policy was decided (a stack is never empty, so never for a store's answer).
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// How long until the same request would conform to every policy that denied it: the
    /// largest of their waits; zero when admitted.
    #[inline]
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.wait)
    }

    /// Whether some policy denied the request, including shadow policies that did not stop it.
    #[inline]
    #[must_use]
    pub fn any_denied(&self) -> bool {
        self.each.iter().any(|d| !d.is_allowed())
    }
}

/// The outcome of one step of the algorithm: the decision, and the new `TAT` to store when the
/// check conformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) decision: Decision,
    pub(crate) new_tat: Option<u64>,
}

/// Checks `cost` cells at `now` against a key whose theoretical arrival time is `tat`, all in
/// nanoseconds on one clock. A fresh key has `tat = 0` (or any time in the past).
#[inline]
pub(crate) fn check(
    quota: &Quota,
    tat: u64,
    now: u64,
    cost: u32,
) -> Result<Step, InsufficientCapacity> {
    if cost > quota.burst() {
        return Err(InsufficientCapacity {
            cost,
            burst: quota.burst(),
        });
    }
    Ok(match conforming_tat(quota, tat, now, cost) {
        Some(next) => Step {
            decision: allowed(quota, next, now),
            new_tat: Some(next),
        },
        None => Step {
            decision: denied(quota, tat, now, cost),
            new_tat: None,
        },
    })
}

/// The new `TAT` if `cost` cells conform at `now` against `tat`, and `None` if they do not: the
/// test alone, which a store runs between reading a state and swapping the new one in, before
/// it builds the [`Decision`]. The cost must fit the burst.
#[inline(always)]
pub(crate) fn conforming_tat(quota: &Quota, tat: u64, now: u64, cost: u32) -> Option<u64> {
    let next = tat
        .max(now)
        .saturating_add(u64::from(cost) * quota.interval_nanos());
    (next - now <= quota.window_nanos()).then_some(next)
}

/// The decision of a conforming check that moved the `TAT` to `next`.
#[inline]
pub(crate) fn allowed(quota: &Quota, next: u64, now: u64) -> Decision {
    Decision::allowed_nanos(quota.burst(), remaining(quota, next, now), next - now)
}

/// The decision of a check of `cost` cells that does not conform at `now` against `tat`.
#[inline]
pub(crate) fn denied(quota: &Quota, tat: u64, now: u64, cost: u32) -> Decision {
    let next = tat
        .max(now)
        .saturating_add(u64::from(cost) * quota.interval_nanos());
    Decision::denied_nanos(
        quota.burst(),
        remaining(quota, tat, now),
        (next - now).saturating_sub(quota.window_nanos()),
        tat.saturating_sub(now),
    )
}

/// What a cost-1 check would answer at `now`, without taking anything.
pub(crate) fn peek(quota: &Quota, tat: u64, now: u64) -> Decision {
    let reset_after = tat.saturating_sub(now);
    let remaining = remaining(quota, tat, now);
    // The same test as a cost-1 `check`: `max(tat, now) + T − now ≤ b·T`.
    let ahead = tat.max(now).saturating_add(quota.interval_nanos()) - now;
    match ahead.checked_sub(quota.window_nanos()) {
        Some(late) if late > 0 => {
            Decision::denied_nanos(quota.burst(), remaining, late, reset_after)
        }
        _ => Decision::allowed_nanos(quota.burst(), remaining, reset_after),
    }
}

/// One policy of a stack as the arithmetic sees it: its quota and whether it is in shadow mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) quota: Quota,
    pub(crate) shadow: bool,
}

/// Checks `cost` cells at `now` against a stack whose theoretical arrival times are `tats`
/// (one per cell, in order), writing the new ones back into `tats`. The cost must fit every
/// enforced cell's burst (checked before); a shadow cell it does not fit is simply denied.
///
/// Enforced cells are all-or-nothing: each takes the cost only if all of them conform. A
/// shadow cell never denies the stack; it takes the cost when it conforms and the stack is
/// admitted. A cell that conformed but took nothing because another denied reports its
/// unchanged state.
pub(crate) fn check_stack(cells: &[Cell], tats: &mut [u64], now: u64, cost: u32) -> Decisions {
    let mut each: SmallVec<[Decision; 2]> = SmallVec::with_capacity(cells.len());
    let mut next: SmallVec<[Option<u64>; 2]> = SmallVec::with_capacity(cells.len());
    let mut admitted = true;
    let mut wait = 0;
    for (cell, &tat) in cells.iter().zip(tats.iter()) {
        match check(&cell.quota, tat, now, cost) {
            Ok(step) => {
                if !cell.shadow && step.new_tat.is_none() {
                    admitted = false;
                    wait = wait.max(step.decision.retry_after_nanos);
                }
                each.push(step.decision);
                next.push(step.new_tat);
            }
            Err(_) => {
                // The cost can never conform to this cell (the layer keeps such costs from
                // enforced cells; a store used directly may not).
                if !cell.shadow {
                    admitted = false;
                    wait = u64::MAX;
                }
                each.push(Decision::denied_nanos(
                    cell.quota.burst(),
                    remaining(&cell.quota, tat, now),
                    u64::MAX,
                    tat.saturating_sub(now),
                ));
                next.push(None);
            }
        }
    }
    for (i, cell) in cells.iter().enumerate() {
        match next[i] {
            Some(tat) if admitted => tats[i] = tat,
            Some(_) => each[i] = unchanged(&cell.quota, tats[i], now),
            None => {}
        }
    }
    Decisions::with(admitted, wait, each)
}

/// A conforming decision that took nothing: the key's state as it is.
fn unchanged(quota: &Quota, tat: u64, now: u64) -> Decision {
    Decision::allowed_nanos(
        quota.burst(),
        remaining(quota, tat, now),
        tat.saturating_sub(now),
    )
}

/// What a cost-1 check of each cell would answer at `now`, without taking anything.
pub(crate) fn peek_stack(cells: &[Cell], tats: &[u64], now: u64) -> Decisions {
    let each: SmallVec<[Decision; 2]> = cells
        .iter()
        .zip(tats)
        .map(|(cell, &tat)| peek(&cell.quota, tat, now))
        .collect();
    let wait = cells
        .iter()
        .zip(&each)
        .filter(|(cell, d)| !cell.shadow && !d.is_allowed())
        .map(|(_, d)| d.retry_after_nanos)
        .max();
    Decisions::with(wait.is_none(), wait.unwrap_or(0), each)
}

/// A check of `cost` cells ([`check_stack`], writing the new TATs into `tats`), or, for a cost
/// of 0, what a cost-1 check would answer, taking nothing ([`peek_stack`]): how the Redis store
/// decides from the states its script reports.
#[cfg(feature = "redis")]
pub(crate) fn decide_stack(cells: &[Cell], tats: &mut [u64], now: u64, cost: u32) -> Decisions {
    if cost == 0 {
        peek_stack(cells, tats, now)
    } else {
        check_stack(cells, tats, now, cost)
    }
}

/// How many cost-1 checks conform at `now` against `tat`: `⌊(b·T − max(tat − now, 0)) / T⌋`.
#[inline]
fn remaining(quota: &Quota, tat: u64, now: u64) -> u32 {
    let ahead = tat.saturating_sub(now);
    let room = quota.window_nanos().saturating_sub(ahead);
    // room ≤ b·T, so the quotient is at most b and fits in u32.
    (room / quota.interval_nanos()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    /// Runs checks of cost `n` at the given instants on one key and returns the decisions.
    fn run(quota: &Quota, checks: &[(u64, u32)]) -> Vec<Decision> {
        let mut tat = 0;
        checks
            .iter()
            .map(|&(now, cost)| {
                let step = check(quota, tat, now, cost).unwrap();
                if let Some(next) = step.new_tat {
                    tat = next;
                }
                step.decision
            })
            .collect()
    }

    #[test]
    fn a_decision_is_24_bytes_and_a_denial_waits_at_least_a_nanosecond() {
        assert_eq!(std::mem::size_of::<Decision>(), 24);
        let denied = Decision::denied(1, 0, Duration::ZERO, Duration::ZERO);
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Duration::from_nanos(1));
    }

    #[test]
    fn a_fresh_key_admits_exactly_the_burst_then_one_per_interval() {
        let quota = Quota::per_second(10);
        let decisions = run(&quota, &[(0, 1); 11]);
        let allowed: Vec<_> = decisions.iter().map(Decision::is_allowed).collect();
        assert_eq!(allowed, [[true; 10].as_slice(), &[false]].concat());
        assert_eq!(
            decisions
                .iter()
                .map(Decision::remaining)
                .collect::<Vec<_>>(),
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
        );
        assert_eq!(decisions[10].retry_after(), Duration::from_millis(100));
        assert_eq!(decisions[9].reset_after(), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_the_exact_wait_and_waiting_it_conforms() {
        let quota = Quota::per_second(2);
        let mut checks = vec![(0, 1), (0, 1), (30 * MS, 1)];
        let wait = run(&quota, &checks)[2].retry_after();
        assert_eq!(wait, Duration::from_millis(470));
        checks.push((30 * MS + wait.as_nanos() as u64 - 1, 1));
        checks.push((30 * MS + wait.as_nanos() as u64, 1));
        let decisions = run(&quota, &checks);
        assert!(!decisions[3].is_allowed());
        assert_eq!(decisions[3].retry_after(), Duration::from_nanos(1));
        assert!(decisions[4].is_allowed());
    }

    #[test]
    fn a_denied_costly_check_takes_nothing_and_reports_the_cost_1_room() {
        let quota = Quota::per_second(5);
        let decisions = run(&quota, &[(0, 3), (0, 3), (0, 2)]);
        assert!(decisions[0].is_allowed());
        assert!(!decisions[1].is_allowed());
        assert_eq!(decisions[1].remaining(), 2);
        assert_eq!(decisions[1].retry_after(), Duration::from_millis(200));
        assert!(
            decisions[2].is_allowed(),
            "the denial must not have taken cells"
        );
        assert_eq!(decisions[2].remaining(), 0);
    }

    #[test]
    fn a_cost_above_the_burst_is_an_error_not_a_wait() {
        let quota = Quota::per_second(5);
        assert_eq!(
            check(&quota, 0, 0, 6),
            Err(InsufficientCapacity { cost: 6, burst: 5 })
        );
    }

    fn cells(quotas: &[(Quota, bool)]) -> Vec<Cell> {
        quotas
            .iter()
            .map(|&(quota, shadow)| Cell { quota, shadow })
            .collect()
    }

    #[test]
    fn a_stack_is_all_or_nothing_and_waits_for_the_slowest_denial() {
        let stack = cells(&[
            (Quota::per_second(2).allow_burst(4), false),
            (Quota::per_minute(10), false),
        ]);
        let mut tats = [0, 0];
        for _ in 0..4 {
            assert!(check_stack(&stack, &mut tats, 0, 1).is_allowed());
        }
        let after_four = tats;
        let denied = check_stack(&stack, &mut tats, 0, 1);
        assert!(!denied.is_allowed());
        assert_eq!(tats, after_four, "a denial writes nothing");
        assert_eq!(denied.retry_after(), Duration::from_millis(500));
        // The per-minute policy conformed but took nothing: it reports its state as it is.
        assert!(denied.as_slice()[1].is_allowed());
        assert_eq!(denied.as_slice()[1].remaining(), 6);

        // Past the per-second limit, the per-minute one denies with the longer wait.
        let mut tats = [0, 60 * SEC];
        let denied = check_stack(&stack, &mut tats, 0, 1);
        assert_eq!(denied.retry_after(), Duration::from_secs(6));
        assert_eq!(tats, [0, 60 * SEC]);
    }

    #[test]
    fn shadow_cells_never_deny_and_take_only_from_admitted_requests() {
        let stack = cells(&[(Quota::per_second(1), false), (Quota::per_hour(1), true)]);
        let mut tats = [0, 0];
        assert!(check_stack(&stack, &mut tats, 0, 1).is_allowed());
        let second = check_stack(&stack, &mut tats, SEC, 1);
        assert!(
            second.is_allowed(),
            "the shadow cell denies, the request passes"
        );
        assert!(second.any_denied());
        assert_eq!(second.retry_after(), Duration::ZERO);
        // A request that an enforced cell denies takes nothing from a shadow cell either, as
        // it would take nothing from that cell enforced: the shadow counts what it would limit.
        let stack = cells(&[(Quota::per_hour(1), false), (Quota::per_second(5), true)]);
        let mut tats = [3600 * SEC, 0];
        let denied = check_stack(&stack, &mut tats, 0, 1);
        assert!(!denied.is_allowed());
        assert_eq!(tats, [3600 * SEC, 0]);
        assert_eq!(denied.as_slice()[1].remaining(), 5);
        assert!(denied.as_slice()[1].is_allowed());
        // So does a cost that can never fit the enforced cell, though it fits the shadow one.
        let stack = cells(&[(Quota::per_second(1), false), (Quota::per_second(2), true)]);
        let mut tats = [0, 0];
        let never = check_stack(&stack, &mut tats, 0, 2);
        assert!(!never.is_allowed() && never.as_slice()[0].never_conforms());
        assert_eq!(tats, [0, 0]);
        assert_eq!(never.as_slice()[1].remaining(), 2);
        // An enforced cell that the cost can never fit denies for ever.
        let over = check_stack(&cells(&[(Quota::per_second(2), false)]), &mut [0], 0, 3);
        assert_eq!(over.retry_after(), Duration::from_nanos(u64::MAX));
    }

    /// At the last readings of a clock (within a window of `u64::MAX` ns) times saturate, as
    /// `Clock` documents: the arithmetic never overflows.
    #[test]
    fn times_at_the_end_of_the_clock_saturate_instead_of_overflowing() {
        let quota = Quota::per_second(2);
        let now = u64::MAX - 1;
        assert_eq!(conforming_tat(&quota, 0, now, 2), Some(u64::MAX));
        assert_eq!(conforming_tat(&quota, u64::MAX, now, 1), Some(u64::MAX));
        assert!(check(&quota, u64::MAX, u64::MAX, 2)
            .unwrap()
            .decision
            .is_allowed());
    }

    #[test]
    fn peek_reports_without_taking() {
        let quota = Quota::per_second(2);
        let after_two = run(&quota, &[(0, 1), (0, 1)]);
        let tat = 1000 * MS;
        assert_eq!(after_two[1].reset_after(), Duration::from_nanos(tat));
        let peeked = peek(&quota, tat, 0);
        assert!(!peeked.is_allowed());
        assert_eq!(peeked.retry_after(), Duration::from_millis(500));
        let later = peek(&quota, tat, 600 * MS);
        assert!(later.is_allowed());
        assert_eq!(later.remaining(), 1);
        assert_eq!(later.reset_after(), Duration::from_millis(400));
        assert_eq!(peek(&quota, 0, 5).remaining(), 2);
    }
}
