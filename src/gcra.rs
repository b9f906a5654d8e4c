//! The generic cell rate algorithm: pure arithmetic on one integer per key, and its [`Decision`].
//!
//! State per key is the theoretical arrival time `TAT`. A check of cost `n` at time `t` with
//! burst `b` and interval `T` conforms iff `max(TAT, t) + n·T − t ≤ b·T`, and then sets
//! `TAT := max(TAT, t) + n·T`. A denial changes nothing. No clock and no I/O here: the stores
//! read the time and keep the state.

use std::fmt;
use std::time::Duration;

use crate::Quota;

/// The answer to one check: allowed or not, and what the key has left.
///
/// Every store produces the same `Decision` for the same history, so the headers and the
/// rejection never depend on the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    retry_after_nanos: u64,
    reset_after_nanos: u64,
}

impl Decision {
    /// A conforming check: `remaining` more cost-1 checks would conform right now, and the key
    /// is back to a full burst after `reset_after` (saturating at `u64::MAX` nanoseconds).
    pub fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Self {
        Self::allowed_nanos(limit, remaining, nanos(reset_after))
    }

    /// A non-conforming check that would conform after `retry_after` (durations saturate at
    /// `u64::MAX` nanoseconds).
    pub fn denied(
        limit: u32,
        remaining: u32,
        retry_after: Duration,
        reset_after: Duration,
    ) -> Self {
        Self::denied_nanos(limit, remaining, nanos(retry_after), nanos(reset_after))
    }

    pub(crate) fn allowed_nanos(limit: u32, remaining: u32, reset_after: u64) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining,
            retry_after_nanos: 0,
            reset_after_nanos: reset_after,
        }
    }

    pub(crate) fn denied_nanos(
        limit: u32,
        remaining: u32,
        retry_after: u64,
        reset_after: u64,
    ) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining,
            retry_after_nanos: retry_after,
            reset_after_nanos: reset_after,
        }
    }

    /// Whether the check conformed and its cells were taken.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The burst of the quota the check ran against.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How many more cost-1 checks would conform right now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the same check would conform; zero when it was allowed.
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after_nanos)
    }

    /// How long until the key is back to a full burst.
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A check whose cost exceeds the burst: it can never conform, however long the caller waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsufficientCapacity {
    /// The cost that was asked for.
    pub cost: u32,
    /// The burst of the quota: the largest cost that can ever conform.
    pub burst: u32,
}

impl fmt::Display for InsufficientCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a check of cost {} can never conform to a quota with burst {}; \
             lower the cost or raise the burst",
            self.cost, self.burst
        )
    }
}

impl std::error::Error for InsufficientCapacity {}

/// The outcome of one step of the algorithm: the decision, and the new `TAT` to store when the
/// check conformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) decision: Decision,
    pub(crate) new_tat: Option<u64>,
}

/// Checks `cost` cells at `now` against a key whose theoretical arrival time is `tat`, all in
/// nanoseconds on one clock. A fresh key has `tat = 0` (or any time in the past).
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
    let interval = quota.interval_nanos();
    let window = quota.window_nanos();
    let start = tat.max(now);
    let next = start.saturating_add(u64::from(cost) * interval);
    let ahead = next - now;
    if ahead <= window {
        Ok(Step {
            decision: Decision::allowed_nanos(quota.burst(), remaining(quota, next, now), ahead),
            new_tat: Some(next),
        })
    } else {
        Ok(Step {
            decision: Decision::denied_nanos(
                quota.burst(),
                remaining(quota, tat, now),
                ahead - window,
                tat.saturating_sub(now),
            ),
            new_tat: None,
        })
    }
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

/// How many cost-1 checks conform at `now` against `tat`: `⌊(b·T − max(tat − now, 0)) / T⌋`.
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
