//! Property tests of the GCRA as the memory store runs it, on a manual clock, and a
//! decision-by-decision comparison with `governor`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::middleware::StateInformationMiddleware;
use proptest::prelude::*;
use tower_ratelimit::{Clock as _, Decision, ManualClock, MemoryStore, Quota};

mod common;
use common::manual_store;

/// A quota with an interval of 1 ns to 1 s and a burst of 1 to 20.
fn quotas() -> impl Strategy<Value = Quota> {
    (1u64..=1_000_000_000, 1u32..=20)
        .prop_map(|(t, b)| Quota::with_period(Duration::from_nanos(t)).allow_burst(b))
}

/// Checks against `quota`: before each, the clock moves on by up to three intervals (often not
/// at all, so that bursts happen); each costs 1 to the burst.
fn schedule(quota: Quota, len: usize) -> impl Strategy<Value = Vec<(u64, u32)>> {
    let t = quota.interval_nanos();
    let step = prop_oneof![
        3 => Just(0u64),
        2 => 0..=t,
        1 => 0..=3 * t,
        1 => Just(t),
        1 => Just(t - 1),
    ];
    let cost = prop_oneof![3 => Just(1u32), 1 => 1..=quota.burst()];
    proptest::collection::vec((step, cost), 1..len)
}

fn quota_and_schedule(len: usize) -> impl Strategy<Value = (Quota, Vec<(u64, u32)>)> {
    quotas().prop_flat_map(move |q| (Just(q), schedule(q, len)))
}

/// Runs the schedule on one key of a fresh store and returns `(time, cost, decision)` for
/// every check.
fn run(quota: &Quota, checks: &[(u64, u32)]) -> Vec<(u64, u32, Decision)> {
    let (store, clock) = manual_store();
    replay(&store, &clock, quota, checks)
}

/// Runs the schedule on one key of `store`, moving `clock`, and returns `(time, cost,
/// decision)` for every check.
fn replay(
    store: &MemoryStore<ManualClock>,
    clock: &ManualClock,
    quota: &Quota,
    checks: &[(u64, u32)],
) -> Vec<(u64, u32, Decision)> {
    checks
        .iter()
        .map(|&(step, cost)| {
            clock.advance(Duration::from_nanos(step));
            let decision = store.check_now(&"key", quota, cost).unwrap();
            (clock.now_nanos(), cost, decision)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// In every window `[t_i, t_j]` at most `b + ⌊(t_j − t_i)/T⌋` cells are admitted.
    #[test]
    fn no_window_admits_more_than_the_burst_plus_the_elapsed_intervals(
        (quota, checks) in quota_and_schedule(120)
    ) {
        let log = run(&quota, &checks);
        let t = quota.interval_nanos();
        let b = u64::from(quota.burst());
        for i in 0..log.len() {
            let mut admitted = 0u64;
            for j in i..log.len() {
                if log[j].2.is_allowed() {
                    admitted += u64::from(log[j].1);
                }
                let elapsed = log[j].0 - log[i].0;
                prop_assert!(
                    admitted <= b + elapsed / t,
                    "{admitted} cells in {elapsed} ns with b = {b}, T = {t}"
                );
            }
        }
    }

    /// A fresh key admits exactly its burst at one instant.
    #[test]
    fn a_fresh_key_admits_exactly_the_burst_at_one_instant(quota in quotas()) {
        let (store, _clock) = manual_store();
        let admitted = (0..=quota.burst())
            .take_while(|_| store.check_now(&1u8, &quota, 1).unwrap().is_allowed())
            .count();
        prop_assert_eq!(admitted, quota.burst() as usize);
    }

    /// After any history, a denied check conforms after exactly `retry_after`, and not 1 ns
    /// sooner.
    #[test]
    fn waiting_retry_after_conforms_and_one_nanosecond_less_does_not(
        (quota, checks) in quota_and_schedule(60),
        cost_pick in any::<prop::sample::Index>(),
    ) {
        let (store, clock) = manual_store();
        replay(&store, &clock, &quota, &checks);
        let cost = cost_pick.index(quota.burst() as usize) as u32 + 1;
        let denied = loop {
            let decision = store.check_now(&"key", &quota, cost).unwrap();
            if !decision.is_allowed() {
                break decision;
            }
        };
        let wait = denied.retry_after();
        prop_assert!(wait > Duration::ZERO);
        clock.advance(wait - Duration::from_nanos(1));
        let early = store.check_now(&"key", &quota, cost).unwrap();
        prop_assert!(!early.is_allowed(), "admitted 1 ns before retry_after");
        prop_assert_eq!(early.retry_after(), Duration::from_nanos(1));
        clock.advance(Duration::from_nanos(1));
        prop_assert!(store.check_now(&"key", &quota, cost).unwrap().is_allowed());
    }

    /// A denied check changes nothing: a second store that never saw the denials is in the same
    /// state after every step.
    #[test]
    fn a_denial_changes_nothing((quota, checks) in quota_and_schedule(120)) {
        let clock = ManualClock::new();
        let build = || MemoryStore::builder().clock(clock.clone()).build().unwrap();
        let (all, admitted_only) = (build(), build());
        for &(step, cost) in &checks {
            clock.advance(Duration::from_nanos(step));
            let decision = all.check_now(&"key", &quota, cost).unwrap();
            if decision.is_allowed() {
                let mirror = admitted_only.check_now(&"key", &quota, cost).unwrap();
                prop_assert_eq!(mirror, decision);
            }
            prop_assert_eq!(
                all.peek_now(&"key", &quota),
                admitted_only.peek_now(&"key", &quota)
            );
        }
    }

    /// `remaining` is the number of cost-1 checks that conform right after, at the same instant;
    /// a peek agrees and takes nothing.
    #[test]
    fn remaining_counts_the_cost_1_checks_that_conform_next(
        (quota, checks) in quota_and_schedule(60)
    ) {
        let (store, clock) = manual_store();
        let last = replay(&store, &clock, &quota, &checks).last().map(|&(_, _, d)| d);
        let last = last.unwrap();
        let peeked = store.peek_now(&"key", &quota);
        prop_assert_eq!(peeked.remaining(), last.remaining());
        prop_assert_eq!(store.peek_now(&"key", &quota), peeked, "a peek took something");
        let mut conforming = 0;
        while store.check_now(&"key", &quota, 1).unwrap().is_allowed() {
            conforming += 1;
            prop_assert!(conforming <= quota.burst());
        }
        prop_assert_eq!(conforming, last.remaining());
    }

    /// `reset_after` is the time until a full burst conforms again.
    #[test]
    fn after_reset_after_the_full_burst_conforms(
        (quota, checks) in quota_and_schedule(60)
    ) {
        let (store, clock) = manual_store();
        let last = replay(&store, &clock, &quota, &checks).last().map(|&(_, _, d)| d);
        let reset = last.unwrap().reset_after();
        if reset > Duration::ZERO {
            clock.advance(reset - Duration::from_nanos(1));
            prop_assert!(store.peek_now(&"key", &quota).remaining() < quota.burst());
            clock.advance(Duration::from_nanos(1));
        }
        prop_assert_eq!(store.peek_now(&"key", &quota).remaining(), quota.burst());
        prop_assert!(store.check_now(&"key", &quota, quota.burst()).unwrap().is_allowed());
    }

    /// Every decision matches governor's on the same quota and history: allowed or not, the
    /// remaining burst when allowed, the exact wait when denied.
    #[test]
    fn decisions_match_governor_cell_for_cell((quota, checks) in quota_and_schedule(150)) {
        let governor_quota = governor::Quota::with_period(quota.interval())
            .unwrap()
            .allow_burst(NonZeroU32::new(quota.burst()).unwrap());
        compare_with_governor(quota, governor_quota, &checks)?;
    }

    /// The per-unit constructors compute the same interval as governor's.
    #[test]
    fn per_unit_quotas_match_governor(
        n in 1u32..=5000,
        unit in 0..3usize,
        steps in proptest::collection::vec(0u64..=2_000_000_000, 1..100),
    ) {
        let n_nz = NonZeroU32::new(n).unwrap();
        let (quota, governor_quota) = match unit {
            0 => (Quota::per_second(n), governor::Quota::per_second(n_nz)),
            1 => (Quota::per_minute(n), governor::Quota::per_minute(n_nz)),
            _ => (Quota::per_hour(n), governor::Quota::per_hour(n_nz)),
        };
        prop_assert_eq!(quota.interval(), governor_quota.replenish_interval());
        let checks: Vec<(u64, u32)> = steps.iter().map(|&s| (s % (3 * quota.interval_nanos()).max(1), 1)).collect();
        compare_with_governor(quota, governor_quota, &checks)?;
    }
}

fn compare_with_governor(
    quota: Quota,
    governor_quota: governor::Quota,
    checks: &[(u64, u32)],
) -> Result<(), TestCaseError> {
    let (store, clock) = manual_store();
    let fake = FakeRelativeClock::default();
    let limiter = governor::RateLimiter::direct_with_clock(governor_quota, fake.clone())
        .with_middleware::<StateInformationMiddleware>();
    for (i, &(step, cost)) in checks.iter().enumerate() {
        clock.advance(Duration::from_nanos(step));
        fake.advance(Duration::from_nanos(step));
        let ours = store.check_now(&"key", &quota, cost).unwrap();
        let theirs = limiter
            .check_n(NonZeroU32::new(cost).unwrap())
            .expect("cost within the burst");
        match theirs {
            Ok(snapshot) => {
                prop_assert!(ours.is_allowed(), "check {i}: governor allowed, we denied");
                prop_assert_eq!(
                    ours.remaining(),
                    snapshot.remaining_burst_capacity(),
                    "check {}",
                    i
                );
            }
            Err(not_until) => {
                prop_assert!(!ours.is_allowed(), "check {i}: governor denied, we allowed");
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&fake));
                prop_assert_eq!(ours.retry_after(), wait, "check {}", i);
            }
        }
    }
    Ok(())
}
