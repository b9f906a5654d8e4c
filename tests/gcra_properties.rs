//! Property tests of the GCRA as the memory store runs it, on a manual clock: its invariants, a
//! decision-by-decision comparison with `governor`, and stacks of policies against a plain
//! all-or-nothing model.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::middleware::StateInformationMiddleware;
use proptest::prelude::*;
use tower_ratelimit::{
    Clock as _, Decision, Decisions, ManualClock, MemoryStack, MemoryStore, Policy, Quota, Store,
};

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

/// One policy on a fresh store whose clock the test moves, checked for one key.
struct Rig {
    store: MemoryStore<ManualClock>,
    clock: ManualClock,
    stack: MemoryStack,
}

impl Rig {
    fn new(quota: Quota) -> Self {
        let (store, clock) = manual_store();
        let stack = store.register(&[Policy::new("p", quota)]).unwrap();
        Rig {
            store,
            clock,
            stack,
        }
    }

    /// A check of `cost` for the key; the decision of the one policy.
    fn check(&self, cost: u32) -> Decision {
        only(self.store.check_now(&self.stack, KEY, cost))
    }

    /// What a cost-1 check of the key would answer now.
    fn peek(&self) -> Decision {
        only(self.store.peek_now(&self.stack, KEY))
    }

    /// Runs the schedule and returns `(time, cost, decision)` for every check.
    fn replay(&self, checks: &[(u64, u32)]) -> Vec<(u64, u32, Decision)> {
        checks
            .iter()
            .map(|&(step, cost)| {
                self.clock.advance(Duration::from_nanos(step));
                (self.clock.now_nanos(), cost, self.check(cost))
            })
            .collect()
    }
}

const KEY: &[u8] = b"key";

/// The decision of a one-policy stack, which admits exactly when its policy does.
fn only(decisions: Decisions) -> Decision {
    assert_eq!(decisions.len(), 1);
    let decision = decisions.as_slice()[0];
    assert_eq!(decisions.is_allowed(), decision.is_allowed());
    assert_eq!(decisions.retry_after(), decision.retry_after());
    decision
}

/// Runs the schedule on one key of a fresh store and returns `(time, cost, decision)` for
/// every check.
fn run(quota: Quota, checks: &[(u64, u32)]) -> Vec<(u64, u32, Decision)> {
    Rig::new(quota).replay(checks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// In every window `[t_i, t_j]` at most `b + ⌊(t_j − t_i)/T⌋` cells are admitted.
    #[test]
    fn no_window_admits_more_than_the_burst_plus_the_elapsed_intervals(
        (quota, checks) in quota_and_schedule(120)
    ) {
        let log = run(quota, &checks);
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
        let rig = Rig::new(quota);
        let admitted = (0..=quota.burst())
            .take_while(|_| rig.check(1).is_allowed())
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
        let rig = Rig::new(quota);
        rig.replay(&checks);
        let cost = cost_pick.index(quota.burst() as usize) as u32 + 1;
        let denied = loop {
            let decision = rig.check(cost);
            if !decision.is_allowed() {
                break decision;
            }
        };
        let wait = denied.retry_after();
        prop_assert!(wait > Duration::ZERO);
        rig.clock.advance(wait - Duration::from_nanos(1));
        let early = rig.check(cost);
        prop_assert!(!early.is_allowed(), "admitted 1 ns before retry_after");
        prop_assert_eq!(early.retry_after(), Duration::from_nanos(1));
        rig.clock.advance(Duration::from_nanos(1));
        prop_assert!(rig.check(cost).is_allowed());
    }

    /// A denied check changes nothing: a second store that never saw the denials is in the same
    /// state after every step.
    #[test]
    fn a_denial_changes_nothing((quota, checks) in quota_and_schedule(120)) {
        let clock = ManualClock::new();
        let build = || {
            let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
            let stack = store.register(&[Policy::new("p", quota)]).unwrap();
            (store, stack)
        };
        let ((all, all_stack), (admitted_only, mirror_stack)) = (build(), build());
        for &(step, cost) in &checks {
            clock.advance(Duration::from_nanos(step));
            let decision = all.check_now(&all_stack, KEY, cost);
            if decision.is_allowed() {
                let mirror = admitted_only.check_now(&mirror_stack, KEY, cost);
                prop_assert_eq!(mirror, decision);
            }
            prop_assert_eq!(
                all.peek_now(&all_stack, KEY),
                admitted_only.peek_now(&mirror_stack, KEY)
            );
        }
    }

    /// `remaining` is the number of cost-1 checks that conform right after, at the same instant;
    /// a peek agrees and takes nothing.
    #[test]
    fn remaining_counts_the_cost_1_checks_that_conform_next(
        (quota, checks) in quota_and_schedule(60)
    ) {
        let rig = Rig::new(quota);
        let last = rig.replay(&checks).last().map(|&(_, _, d)| d);
        let last = last.unwrap();
        let peeked = rig.peek();
        prop_assert_eq!(peeked.remaining(), last.remaining());
        prop_assert_eq!(rig.peek(), peeked, "a peek took something");
        let mut conforming = 0;
        while rig.check(1).is_allowed() {
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
        let rig = Rig::new(quota);
        let last = rig.replay(&checks).last().map(|&(_, _, d)| d);
        let reset = last.unwrap().reset_after();
        if reset > Duration::ZERO {
            rig.clock.advance(reset - Duration::from_nanos(1));
            prop_assert!(rig.peek().remaining() < quota.burst());
            rig.clock.advance(Duration::from_nanos(1));
        }
        prop_assert_eq!(rig.peek().remaining(), quota.burst());
        prop_assert!(rig.check(quota.burst()).is_allowed());
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
    let rig = Rig::new(quota);
    let fake = FakeRelativeClock::default();
    let limiter = governor::RateLimiter::direct_with_clock(governor_quota, fake.clone())
        .with_middleware::<StateInformationMiddleware>();
    for (i, &(step, cost)) in checks.iter().enumerate() {
        rig.clock.advance(Duration::from_nanos(step));
        fake.advance(Duration::from_nanos(step));
        let ours = rig.check(cost);
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

/// One policy of a stack as the model sees it.
#[derive(Clone, Copy, Debug)]
struct ModelPolicy {
    interval: u64,
    burst: u32,
    shadow: bool,
}

impl ModelPolicy {
    fn window(&self) -> u64 {
        self.interval * u64::from(self.burst)
    }

    /// A check of `cost` at `now` against `tat`: the new TAT if it conforms, else the wait
    /// (forever when the cost exceeds the burst).
    fn step(&self, tat: u64, now: u64, cost: u32) -> Result<u64, u64> {
        if cost > self.burst {
            return Err(u64::MAX);
        }
        let next = tat.max(now) + u64::from(cost) * self.interval;
        let ahead = next - now;
        if ahead <= self.window() {
            Ok(next)
        } else {
            Err(ahead - self.window())
        }
    }

    /// Cost-1 checks that conform at `now` against `tat`.
    fn remaining(&self, tat: u64, now: u64) -> u32 {
        let ahead = tat.saturating_sub(now).min(self.window());
        ((self.window() - ahead) / self.interval) as u32
    }

    fn decision(&self, tat: u64, now: u64, outcome: Result<u64, u64>) -> Decision {
        let remaining = self.remaining(tat, now);
        let reset = Duration::from_nanos(tat.saturating_sub(now));
        match outcome {
            Ok(_) => Decision::allowed(self.burst, remaining, reset),
            Err(wait) => Decision::denied(self.burst, remaining, Duration::from_nanos(wait), reset),
        }
    }
}

/// A stack written the plain way: one TAT per policy; a check is admitted iff every enforced
/// policy conforms, and then every policy that conforms takes the cost (a shadow policy that
/// denies takes nothing); a denied check changes nothing; the wait is the longest of the
/// enforced policies that deny.
struct ModelStack {
    policies: Vec<ModelPolicy>,
    tats: Vec<u64>,
}

/// What the model expects of a check: admitted, the wait, each policy's decision.
type Expected = (bool, Duration, Vec<Decision>);

impl ModelStack {
    fn new(policies: Vec<ModelPolicy>) -> Self {
        let tats = vec![0; policies.len()];
        ModelStack { policies, tats }
    }

    fn check(&mut self, now: u64, cost: u32) -> Expected {
        let outcomes: Vec<_> = self
            .policies
            .iter()
            .zip(&self.tats)
            .map(|(p, &tat)| p.step(tat, now, cost))
            .collect();
        let wait = self
            .policies
            .iter()
            .zip(&outcomes)
            .filter_map(|(p, o)| o.err().filter(|_| !p.shadow))
            .max();
        let admitted = wait.is_none();
        if admitted {
            for (tat, outcome) in self.tats.iter_mut().zip(&outcomes) {
                if let Ok(next) = outcome {
                    *tat = *next;
                }
            }
        }
        // Every decision reports the state after the check.
        let each = self
            .policies
            .iter()
            .zip(&self.tats)
            .zip(outcomes)
            .map(|((p, &tat), outcome)| p.decision(tat, now, outcome))
            .collect();
        (admitted, Duration::from_nanos(wait.unwrap_or(0)), each)
    }

    /// What a cost-1 check would answer at `now`, changing nothing.
    fn peek(&self, now: u64) -> Expected {
        let each: Vec<Decision> = self
            .policies
            .iter()
            .zip(&self.tats)
            .map(|(p, &tat)| p.decision(tat, now, p.step(tat, now, 1)))
            .collect();
        let wait = self
            .policies
            .iter()
            .zip(&each)
            .filter(|(p, d)| !p.shadow && !d.is_allowed())
            .map(|(_, d)| d.retry_after())
            .max();
        (wait.is_none(), wait.unwrap_or_default(), each)
    }
}

/// How the clock moves before a check of a stack.
#[derive(Clone, Copy, Debug)]
enum Advance {
    By(u64),
    /// By the wait of the last denial, exactly.
    RetryAfter,
    /// By the wait of the last denial less 1 ns.
    JustBeforeRetryAfter,
}

/// Two or three policies, the first enforced, the others in shadow mode one time in four:
/// intervals of 1 ms to 400 ms, bursts of 1 to 6.
fn model_stacks() -> impl Strategy<Value = Vec<ModelPolicy>> {
    let policy = |shadow| {
        (1_000_000u64..=400_000_000, 1u32..=6, shadow).prop_map(|(interval, burst, shadow)| {
            ModelPolicy {
                interval,
                burst,
                shadow,
            }
        })
    };
    (
        policy(Just(false).boxed()),
        proptest::collection::vec(policy(proptest::bool::weighted(0.25).boxed()), 1..=2),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

fn stack_schedules() -> impl Strategy<Value = Vec<(Advance, u32)>> {
    let advance = prop_oneof![
        3 => Just(Advance::By(0)),
        3 => (0u64..=500_000_000).prop_map(Advance::By),
        1 => (0u64..=3_000_000_000).prop_map(Advance::By),
        1 => Just(Advance::RetryAfter),
        1 => Just(Advance::JustBeforeRetryAfter),
    ];
    proptest::collection::vec((advance, 1u32..=3), 1..100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A stack on the memory store decides every check as the model does: admitted or not,
    /// the wait, and each policy's decision; a peek between checks agrees too.
    #[test]
    fn stacks_decide_as_the_all_or_nothing_model(
        policies in model_stacks(),
        schedule in stack_schedules(),
    ) {
        let (store, clock) = manual_store();
        let stack = store
            .register(
                &policies
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let quota = Quota::with_period(Duration::from_nanos(p.interval))
                            .allow_burst(p.burst);
                        Policy::new(format!("p{i}"), quota).shadow(p.shadow)
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let mut model = ModelStack::new(policies);
        let mut last_wait = Duration::ZERO;
        for (i, &(advance, cost)) in schedule.iter().enumerate() {
            let by = match advance {
                Advance::By(nanos) => Duration::from_nanos(nanos),
                // A wait of "forever" (a cost above a burst) is not waited.
                _ if last_wait > Duration::from_secs(3600) => Duration::ZERO,
                Advance::RetryAfter => last_wait,
                Advance::JustBeforeRetryAfter => last_wait.saturating_sub(Duration::from_nanos(1)),
            };
            clock.advance(by);
            let now = clock.now_nanos();

            let (admitted, wait, each) = model.peek(now);
            let peeked = store.peek_now(&stack, KEY);
            prop_assert_eq!(peeked.is_allowed(), admitted, "peek {}", i);
            prop_assert_eq!(peeked.retry_after(), wait, "peek {}", i);
            prop_assert_eq!(peeked.as_slice(), &each[..], "peek {}", i);

            let (admitted, wait, each) = model.check(now, cost);
            let decisions = store.check_now(&stack, KEY, cost);
            prop_assert_eq!(decisions.is_allowed(), admitted, "check {} of cost {}", i, cost);
            prop_assert_eq!(decisions.retry_after(), wait, "check {} of cost {}", i, cost);
            prop_assert_eq!(decisions.as_slice(), &each[..], "check {} of cost {}", i, cost);
            if !admitted {
                last_wait = wait;
            }
        }
    }
}
