//! One set of store scenarios, written once for any `S: Store`, run against every store:
//! `MemoryStore` on a manual clock, and (with the `redis` feature) `RedisStore` on a private
//! `redis-server` with its time taken from a manual clock, with and without the deny cache, and
//! `RedisStore` on a three-master Redis Cluster.
//!
//! Every quota here has an interval of whole microseconds, the unit of the Redis store, so the
//! stores must agree to the last field of every decision: the scenarios compare whole
//! [`Decisions`] values, and one replays a long schedule against a reference `MemoryStore` on
//! the same clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tower_ratelimit::{
    Decision, Decisions, KeyBytes, ManualClock, MemoryStack, MemoryStore, Policy, Quota, Store,
};

#[cfg(feature = "redis")]
mod support;

/// A store under test, the manual clock it reads, and a reference `MemoryStore` on that clock.
struct Fixture<S> {
    store: S,
    clock: ManualClock,
    reference: MemoryStore<ManualClock>,
}

impl<S: Store> Fixture<S> {
    fn new(store: S, clock: ManualClock) -> Self {
        let reference = MemoryStore::builder().clock(clock.clone()).build().unwrap();
        Fixture {
            store,
            clock,
            reference,
        }
    }

    fn stack(&self, policies: &[Policy]) -> S::Stack {
        self.store
            .register(policies)
            .unwrap_or_else(|e| panic!("register failed: {e}"))
    }

    async fn check(&self, stack: &S::Stack, key: impl KeyBytes, cost: u32) -> Decisions {
        self.store
            .check(stack, key.key_bytes().as_bytes(), cost)
            .await
            .unwrap_or_else(|e| panic!("check failed: {e}"))
    }

    async fn peek(&self, stack: &S::Stack, key: impl KeyBytes) -> Decisions {
        self.store
            .peek(stack, key.key_bytes().as_bytes())
            .await
            .unwrap_or_else(|e| panic!("peek failed: {e}"))
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sec(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The wait of a cost that can never conform.
const FOREVER: Duration = Duration::from_nanos(u64::MAX);

/// `burst` cells at once, then one every `interval`.
fn quota(interval: Duration, burst: u32) -> Quota {
    Quota::with_period(interval).allow_burst(burst)
}

fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Decision {
    Decision::allowed(limit, remaining, reset_after)
}

fn denied(limit: u32, remaining: u32, retry_after: Duration, reset_after: Duration) -> Decision {
    Decision::denied(limit, remaining, retry_after, reset_after)
}

/// A one-policy answer.
fn one(decision: Decision) -> Decisions {
    Decisions::one(decision)
}

/// An admitted stack.
fn admitted<const N: usize>(each: [Decision; N]) -> Decisions {
    Decisions::new(true, each)
}

/// A refused stack, waiting for the slowest denying policy.
fn refused<const N: usize>(each: [Decision; N]) -> Decisions {
    Decisions::new(false, each)
}

async fn fresh_key_admits_exactly_the_burst_then_one_per_interval<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("six-per-minute", Quota::per_minute(6))]);
    for i in 0..6u32 {
        assert_eq!(
            f.check(&s, "k", 1).await,
            one(allowed(6, 5 - i, sec(10 * u64::from(i + 1))))
        );
    }
    assert_eq!(
        f.check(&s, "k", 1).await,
        one(denied(6, 0, sec(10), sec(60)))
    );
    f.advance(sec(10));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(6, 0, sec(60))));
    assert_eq!(
        f.check(&s, "k", 1).await,
        one(denied(6, 0, sec(10), sec(60)))
    );
}

async fn retry_after_is_exact_and_waiting_it_conforms<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("quarter", quota(ms(250), 40))]);
    for _ in 0..40 {
        assert!(f.check(&s, "k", 1).await.is_allowed());
    }
    f.advance(us(1_234));
    let wait = us(250_000 - 1_234);
    assert_eq!(
        f.check(&s, "k", 1).await,
        one(denied(40, 0, wait, sec(10) - us(1_234)))
    );
    f.advance(wait - us(1));
    let almost = f.check(&s, "k", 1).await;
    assert!(!almost.is_allowed());
    assert_eq!(almost.retry_after(), us(1));
    f.advance(us(1));
    assert!(f.check(&s, "k", 1).await.is_allowed());
}

async fn cost_n_takes_n_cells_and_a_denied_costly_check_takes_nothing<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("five", quota(sec(2), 5))]);
    assert_eq!(f.check(&s, "k", 3).await, one(allowed(5, 2, sec(6))));
    assert_eq!(f.check(&s, "k", 3).await, one(denied(5, 2, sec(2), sec(6))));
    // The denied cost-3 check took nothing: cost 2 still fits.
    assert_eq!(f.check(&s, "k", 2).await, one(allowed(5, 0, sec(10))));
    assert_eq!(
        f.check(&s, "k", 1).await,
        one(denied(5, 0, sec(2), sec(10)))
    );
    f.advance(sec(3));
    // One cell back (and a second after 4 s): cost 1 fits, cost 2 waits another 1 s.
    assert_eq!(f.check(&s, "k", 2).await, one(denied(5, 1, sec(1), sec(7))));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(5, 0, sec(9))));
}

async fn a_cost_above_the_burst_is_denied_with_an_endless_wait<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("six-per-minute", Quota::per_minute(6))]);
    assert_eq!(
        f.check(&s, "k", 7).await,
        one(denied(6, 6, FOREVER, sec(0)))
    );
    // Nothing was taken.
    assert_eq!(f.check(&s, "k", 6).await, one(allowed(6, 0, sec(60))));
    assert_eq!(
        f.check(&s, "k", 7).await,
        one(denied(6, 0, FOREVER, sec(60)))
    );

    // In a stack, the cost fits the larger policy, which takes nothing; a shadow policy it
    // does not fit is denied on its own.
    let s = f.stack(&[
        Policy::new("two", quota(sec(1), 2)),
        Policy::new("ten", quota(sec(1), 10)),
        Policy::new("one-shadow", quota(sec(1), 1)).shadow(true),
    ]);
    let over = f.check(&s, "k", 3).await;
    assert_eq!(
        over,
        refused([
            denied(2, 2, FOREVER, sec(0)),
            allowed(10, 10, sec(0)),
            denied(1, 1, FOREVER, sec(0)),
        ])
    );
    assert_eq!(over.retry_after(), FOREVER);
    assert_eq!(
        f.check(&s, "k", 2).await,
        admitted([
            allowed(2, 0, sec(2)),
            allowed(10, 8, sec(2)),
            denied(1, 1, FOREVER, sec(0)),
        ])
    );
}

async fn denials_write_nothing_however_many<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("hundred", quota(ms(100), 100))]);
    assert!(f.check(&s, "k", 100).await.is_allowed());
    for _ in 0..50 {
        f.advance(us(997));
        assert!(!f.check(&s, "k", 1).await.is_allowed());
    }
    // 49 850 µs passed; a cell comes back at 100 ms whatever the denials did.
    f.advance(us(100_000 - 49_850));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(100, 0, sec(10))));
}

async fn remaining_and_reset_after_follow_the_recovery<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("ten", quota(sec(1), 10))]);
    assert!(f.check(&s, "k", 10).await.is_allowed());
    f.advance(ms(4_500));
    // 4.5 cells back: 4 whole ones; the key is full again in 5.5 s.
    assert_eq!(f.peek(&s, "k").await, one(allowed(10, 4, ms(5_500))));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(10, 3, ms(6_500))));
    f.advance(sec(60));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(10, 9, sec(1))));
}

async fn peek_reports_without_taking<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("two", quota(sec(5), 2))]);
    assert_eq!(f.peek(&s, "k").await, one(allowed(2, 2, sec(0))));
    assert_eq!(f.peek(&s, "k").await, one(allowed(2, 2, sec(0))));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(2, 1, sec(5))));
    assert_eq!(f.peek(&s, "k").await, one(allowed(2, 1, sec(5))));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(2, 0, sec(10))));
    assert_eq!(f.peek(&s, "k").await, one(denied(2, 0, sec(5), sec(10))));
    assert_eq!(f.peek(&s, "k").await, one(denied(2, 0, sec(5), sec(10))));
    f.advance(sec(5));
    assert_eq!(f.peek(&s, "k").await, one(allowed(2, 1, sec(5))));
    assert_eq!(f.check(&s, "k", 1).await, one(allowed(2, 0, sec(10))));
}

async fn keys_are_independent<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("one", Quota::per_minute(1))]);
    assert!(f.check(&s, "a", 1).await.is_allowed());
    assert!(!f.check(&s, "a", 1).await.is_allowed());
    assert!(f.check(&s, "b", 1).await.is_allowed());
    assert!(!f.check(&s, "b", 1).await.is_allowed());
    // Keys are their bytes, whatever their type: the integer 7 is the string "7".
    assert!(f.check(&s, 7u64, 1).await.is_allowed());
    assert!(!f.check(&s, "7", 1).await.is_allowed());
}

async fn idle_keys_return_to_a_full_burst<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[Policy::new("six-per-minute", Quota::per_minute(6))]);
    assert!(f.check(&s, "k", 6).await.is_allowed());
    f.advance(sec(3600));
    assert_eq!(f.check(&s, "k", 6).await, one(allowed(6, 0, sec(60))));
    f.advance(sec(60) + ms(1));
    assert_eq!(f.peek(&s, "k").await, one(allowed(6, 6, sec(0))));
}

async fn a_two_policy_stack_is_all_or_nothing<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[
        Policy::new("per-second", Quota::per_second(2)),
        Policy::new("per-minute", Quota::per_minute(3)),
    ]);
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([allowed(2, 1, ms(500)), allowed(3, 2, sec(20))])
    );
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([allowed(2, 0, sec(1)), allowed(3, 1, sec(40))])
    );
    // The per-second policy denies; the per-minute one would admit but takes nothing.
    assert_eq!(
        f.check(&s, "k", 1).await,
        refused([denied(2, 0, ms(500), sec(1)), allowed(3, 1, sec(40))])
    );
    f.advance(sec(1));
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([allowed(2, 1, ms(500)), allowed(3, 0, sec(59))])
    );
    // Now the per-minute policy denies, and the per-second one keeps its cell.
    let denial = refused([allowed(2, 1, ms(500)), denied(3, 0, sec(19), sec(59))]);
    assert_eq!(f.check(&s, "k", 1).await, denial);
    assert_eq!(f.check(&s, "k", 1).await, denial);
    assert_eq!(f.peek(&s, "k").await, denial);
    assert_eq!(denial.retry_after(), sec(19));
    f.advance(sec(19));
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([allowed(2, 1, ms(500)), allowed(3, 0, sec(60))])
    );
}

async fn a_three_policy_stack_denied_by_one_takes_nothing_from_the_others<S: Store>(
    f: &Fixture<S>,
) {
    let s = f.stack(&[
        Policy::new("a", quota(ms(100), 4)),
        Policy::new("b", quota(sec(1), 6)),
        Policy::new("c", quota(sec(10), 10)),
    ]);
    assert_eq!(
        f.check(&s, "k", 4).await,
        admitted([
            allowed(4, 0, ms(400)),
            allowed(6, 2, sec(4)),
            allowed(10, 6, sec(40)),
        ])
    );
    // Ten denials by `a`: had they taken from `b`, it would be spent by now.
    for i in 0..10 {
        let now = ms(10 * i);
        let denial = refused([
            denied(4, 0, ms(100) - now, ms(400) - now),
            allowed(6, 2, sec(4) - now),
            allowed(10, 6, sec(40) - now),
        ]);
        assert_eq!(f.check(&s, "k", 1).await, denial, "denial {i}");
        assert_eq!(f.peek(&s, "k").await, denial, "peek {i}");
        f.advance(ms(10));
    }
    f.advance(ms(300));
    assert_eq!(
        f.check(&s, "k", 2).await,
        admitted([
            allowed(4, 2, ms(200)),
            allowed(6, 0, ms(5_600)),
            allowed(10, 4, ms(59_600)),
        ])
    );
    // Now `b` alone denies, and `a` and `c` keep their cells.
    let denial = f.check(&s, "k", 1).await;
    assert_eq!(
        denial,
        refused([
            allowed(4, 2, ms(200)),
            denied(6, 0, ms(600), ms(5_600)),
            allowed(10, 4, ms(59_600)),
        ])
    );
    assert_eq!(denial.retry_after(), ms(600));
}

async fn a_stack_waits_for_the_slowest_denying_policy<S: Store>(f: &Fixture<S>) {
    let s = f.stack(&[
        Policy::new("fast", quota(ms(200), 1)),
        Policy::new("slow", quota(sec(3), 1)),
        Policy::new("wide", quota(sec(1), 60)),
    ]);
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([
            allowed(1, 0, ms(200)),
            allowed(1, 0, sec(3)),
            allowed(60, 59, sec(1)),
        ])
    );
    let both = f.check(&s, "k", 1).await;
    assert_eq!(
        both,
        refused([
            denied(1, 0, ms(200), ms(200)),
            denied(1, 0, sec(3), sec(3)),
            allowed(60, 59, sec(1)),
        ])
    );
    assert_eq!(both.retry_after(), sec(3));
    f.advance(ms(200));
    let slow = f.check(&s, "k", 1).await;
    assert_eq!(
        slow,
        refused([
            allowed(1, 1, sec(0)),
            denied(1, 0, ms(2_800), ms(2_800)),
            allowed(60, 59, ms(800)),
        ])
    );
    assert_eq!(slow.retry_after(), ms(2_800));
    f.advance(ms(2_800));
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([
            allowed(1, 0, ms(200)),
            allowed(1, 0, sec(3)),
            allowed(60, 59, sec(1)),
        ])
    );
}

async fn a_shadow_policy_in_a_stack_never_denies_and_takes_only_from_admitted_requests<S: Store>(
    f: &Fixture<S>,
) {
    let s = f.stack(&[
        Policy::new("enforced", quota(sec(1), 2)),
        Policy::new("trial", quota(ms(500), 1)).shadow(true),
    ]);
    assert_eq!(
        f.check(&s, "k", 1).await,
        admitted([allowed(2, 1, sec(1)), allowed(1, 0, ms(500))])
    );
    // The shadow policy denies; the request is admitted and the enforced policy takes a cell.
    let shadow_denied = f.check(&s, "k", 1).await;
    assert_eq!(
        shadow_denied,
        admitted([allowed(2, 0, sec(2)), denied(1, 0, ms(500), ms(500))])
    );
    assert!(shadow_denied.any_denied());
    assert_eq!(shadow_denied.retry_after(), sec(0));
    assert_eq!(
        f.check(&s, "k", 1).await,
        refused([denied(2, 0, sec(1), sec(2)), denied(1, 0, ms(500), ms(500))])
    );
    f.advance(ms(500));
    // The enforced policy denies and the shadow one would conform: as it would take nothing
    // from the shadow policy enforced, the request takes nothing from it, and the wait is the
    // enforced policy's alone.
    let enforced_denied = f.check(&s, "k", 1).await;
    assert_eq!(
        enforced_denied,
        refused([denied(2, 0, ms(500), ms(1_500)), allowed(1, 1, ms(0))])
    );
    assert_eq!(
        f.peek(&s, "k").await,
        refused([denied(2, 0, ms(500), ms(1_500)), allowed(1, 1, ms(0))])
    );

    // A stack of shadow policies only admits everything.
    let trial = f.stack(&[Policy::new("trial-only", Quota::per_minute(1)).shadow(true)]);
    assert_eq!(
        f.check(&trial, "k", 1).await,
        admitted([allowed(1, 0, sec(60))])
    );
    assert_eq!(
        f.check(&trial, "k", 1).await,
        admitted([denied(1, 0, sec(60), sec(60))])
    );
}

async fn two_policies_on_one_key_never_share_state<S: Store>(f: &Fixture<S>) {
    let login = f.stack(&[Policy::new("login", Quota::per_minute(2))]);
    let search = f.stack(&[Policy::new("search", Quota::per_minute(2))]);
    assert!(f.check(&login, "alice", 2).await.is_allowed());
    assert_eq!(
        f.check(&login, "alice", 1).await,
        one(denied(2, 0, sec(30), sec(60)))
    );
    // The same key under another policy has its full burst.
    assert_eq!(
        f.check(&search, "alice", 1).await,
        one(allowed(2, 1, sec(30)))
    );
    assert_eq!(
        f.peek(&login, "alice").await,
        one(denied(2, 0, sec(30), sec(60)))
    );

    // A policy named in two stacks is one budget: the second stack sees the first's cells.
    let both = f.stack(&[
        Policy::new("search", Quota::per_minute(2)),
        Policy::new("login", Quota::per_minute(2)),
    ]);
    assert_eq!(
        f.peek(&both, "alice").await,
        refused([allowed(2, 1, sec(30)), denied(2, 0, sec(30), sec(60))])
    );
    f.advance(sec(30));
    assert_eq!(
        f.check(&both, "alice", 1).await,
        admitted([allowed(2, 1, sec(30)), allowed(2, 0, sec(60))])
    );
    assert_eq!(
        f.check(&search, "alice", 1).await,
        one(allowed(2, 0, sec(60)))
    );
}

async fn one_name_with_two_quotas_is_refused<S: Store>(f: &Fixture<S>) {
    f.stack(&[Policy::new("api", Quota::per_second(10))]);
    // The same name and quota again (shadow or not) is the same budget.
    f.stack(&[Policy::new("api", Quota::per_second(10)).shadow(true)]);
    let error = match f.store.register(&[
        Policy::new("other", Quota::per_second(1)),
        Policy::new("api", Quota::per_second(20)),
    ]) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("one name with two quotas was accepted"),
    };
    assert!(error.contains("\"api\""), "{error}");
    // The refused stack registered nothing: "other" is still free to take any quota.
    f.stack(&[Policy::new("other", Quota::per_second(2))]);
}

/// A fixed schedule of checks and peeks of several stacks (one with a shadow policy) and keys
/// of several types, costs 1 to 3, at instants a whole number of microseconds apart: the store
/// gives exactly the decisions of a `MemoryStore` on the same clock, step by step. Run on the
/// memory store itself, it shows only that decisions depend on the schedule alone (not on the
/// hash seeds, which differ between the two stores); `tests/gcra_properties.rs` holds the
/// memory store to an independent model of the GCRA.
async fn a_long_schedule_gives_the_decisions_of_the_memory_store<S: Store>(f: &Fixture<S>) {
    let policies = [
        Policy::new("burst", quota(ms(250), 4)),
        Policy::new("sustained", quota(sec(3), 10)),
        Policy::new("candidate", quota(sec(1), 2)).shadow(true),
    ];
    let stacks = [
        &policies[..],
        &policies[..2],
        &policies[1..2],
        &policies[2..],
    ];
    let stacks: Vec<(S::Stack, MemoryStack)> = stacks
        .iter()
        .map(|p| (f.stack(p), f.reference.register(p).unwrap()))
        .collect();
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let keys = [
        "alice".key_bytes(),
        42u64.key_bytes(),
        (ip, "GET /search").key_bytes(),
    ];
    // A fixed linear congruential sequence: the same schedule on every store and every run.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for step in 0..400 {
        f.advance(us(next(4) * next(200_000)));
        let (stack, reference) = &stacks[next(stacks.len() as u64) as usize];
        let key = keys[next(keys.len() as u64) as usize].as_bytes();
        let cost = next(4) as u32;
        let (got, expected) = if cost == 0 {
            (
                f.peek(stack, key).await,
                f.reference.peek_now(reference, key),
            )
        } else {
            (
                f.check(stack, key, cost).await,
                f.reference.check_now(reference, key, cost),
            )
        };
        assert_eq!(got, expected, "step {step}, cost {cost}");
    }
}

/// The longest window the Redis store accepts (2^52 µs at a burst of 1), the largest burst at
/// the shortest interval both stores count (1 µs) with costs up to the whole burst, and an
/// hour's interval in a stack with them: decided to the microsecond.
async fn extreme_quotas_are_decided_exactly<S: Store>(f: &Fixture<S>) {
    const LONGEST: u64 = 1 << 52;
    const WIDEST: u64 = u32::MAX as u64;
    let longest = f.stack(&[Policy::new("longest", quota(us(LONGEST), 1))]);
    assert_eq!(
        f.check(&longest, "k", 1).await,
        one(allowed(1, 0, us(LONGEST)))
    );
    assert_eq!(
        f.check(&longest, "k", 1).await,
        one(denied(1, 0, us(LONGEST), us(LONGEST)))
    );
    let widest = f.stack(&[Policy::new("widest", quota(us(1), u32::MAX))]);
    assert_eq!(
        f.check(&widest, "k", u32::MAX).await,
        one(allowed(u32::MAX, 0, us(WIDEST)))
    );
    assert_eq!(
        f.check(&widest, "k", 1).await,
        one(denied(u32::MAX, 0, us(1), us(WIDEST)))
    );
    f.advance(us(1000));
    assert_eq!(
        f.check(&widest, "k", u32::MAX).await,
        one(denied(u32::MAX, 1000, us(WIDEST - 1000), us(WIDEST - 1000)))
    );
    assert_eq!(
        f.check(&widest, "k", 1000).await,
        one(allowed(u32::MAX, 0, us(WIDEST)))
    );
    let hour = sec(3600);
    let stack = f.stack(&[
        Policy::new("hourly", Quota::per_hour(1)),
        Policy::new("longest", quota(us(LONGEST), 1)),
    ]);
    // Still limited by `longest`, less the 1 000 µs since: `hourly` takes nothing.
    assert_eq!(
        f.check(&stack, "k", 1).await,
        refused([
            allowed(1, 1, Duration::ZERO),
            denied(1, 0, us(LONGEST - 1000), us(LONGEST - 1000)),
        ])
    );
    assert_eq!(
        f.check(&stack, "other", 1).await,
        admitted([allowed(1, 0, hour), allowed(1, 0, us(LONGEST))])
    );
    f.advance(sec(1));
    assert_eq!(
        f.check(&stack, "other", 1).await,
        refused([
            denied(1, 0, hour - sec(1), hour - sec(1)),
            denied(1, 0, us(LONGEST) - sec(1), us(LONGEST) - sec(1)),
        ])
    );
}

macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::memory()).await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let redis = super::support::redis_url();
                    super::$scenario(&super::redis(&[redis.url()], false, true).await).await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis_without_deny_cache {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let redis = super::support::redis_url();
                    super::$scenario(&super::redis(&[redis.url()], false, false).await).await;
                }
            )*
        }

        /// Every scenario in turn on one cluster, each with a store and a prefix of its own:
        /// starting a cluster per scenario would take longer than the scenarios.
        #[cfg(feature = "redis")]
        #[tokio::test]
        async fn redis_cluster_every_scenario() {
            let cluster = support::RedisCluster::start();
            $(
                eprintln!("scenario {}", stringify!($scenario));
                $scenario(&redis(&cluster.urls(), true, true).await).await;
            )*
        }
    };
}

scenarios!(
    fresh_key_admits_exactly_the_burst_then_one_per_interval,
    retry_after_is_exact_and_waiting_it_conforms,
    cost_n_takes_n_cells_and_a_denied_costly_check_takes_nothing,
    a_cost_above_the_burst_is_denied_with_an_endless_wait,
    denials_write_nothing_however_many,
    remaining_and_reset_after_follow_the_recovery,
    peek_reports_without_taking,
    keys_are_independent,
    idle_keys_return_to_a_full_burst,
    a_two_policy_stack_is_all_or_nothing,
    a_three_policy_stack_denied_by_one_takes_nothing_from_the_others,
    a_stack_waits_for_the_slowest_denying_policy,
    a_shadow_policy_in_a_stack_never_denies_and_takes_only_from_admitted_requests,
    two_policies_on_one_key_never_share_state,
    one_name_with_two_quotas_is_refused,
    a_long_schedule_gives_the_decisions_of_the_memory_store,
    extreme_quotas_are_decided_exactly,
);

fn memory() -> Fixture<MemoryStore<ManualClock>> {
    let clock = ManualClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    Fixture::new(store, clock)
}

/// A `RedisStore` on `urls` (the nodes of a cluster if `cluster`), on a manual clock, with a
/// prefix of its own.
#[cfg(feature = "redis")]
async fn redis(
    urls: &[String],
    cluster: bool,
    deny_cache: bool,
) -> Fixture<tower_ratelimit::RedisStore> {
    let clock = support::clock_at_unix_time();
    let builder = support::strict_store("conformance");
    let builder = if cluster {
        builder.cluster(urls.to_vec())
    } else {
        builder.url(urls[0].clone())
    };
    let store = builder
        .clock(clock.clone())
        .deny_cache(deny_cache)
        .build()
        .await
        .unwrap();
    Fixture::new(store, clock)
}
