//! The `metrics` handles of layers and stores, with the `metrics` feature: registered once when
//! a layer or a store is built, so that recording is one call on a handle, never a lookup by
//! name. The names and what they count are in the crate docs' Metrics table.

use std::any::TypeId;
use std::convert::Infallible;

use metrics::{counter, describe_counter, describe_gauge, Counter, Gauge, Unit};

use crate::{Decisions, Policy};

/// Requests decided, by policy and outcome.
const DECISIONS: &str = "ratelimit_decisions_total";
/// Keys tracked by memory stores.
const MEMORY_KEYS: &str = "ratelimit_memory_keys";

/// The `policy` label of the outcomes that no policy decided.
const NO_POLICY: &str = "";

/// The decision counter for `policy` and `outcome`.
fn decisions(policy: &str, outcome: &'static str) -> Counter {
    counter!(DECISIONS, "policy" => policy.to_owned(), "outcome" => outcome)
}

/// The counters of a layer's outcomes that concern no policy.
pub(crate) struct LayerMetrics {
    pub(crate) bypassed: Counter,
    pub(crate) missing_key: Counter,
}

impl LayerMetrics {
    pub(crate) fn new() -> Self {
        describe_counter!(
            DECISIONS,
            Unit::Count,
            "Rate limit decisions, per policy of the request's stack and outcome"
        );
        LayerMetrics {
            bypassed: decisions(NO_POLICY, "bypassed"),
            missing_key: decisions(NO_POLICY, "missing_key"),
        }
    }
}

/// The decision counters of each policy of one tier, in stack order.
pub(crate) struct TierMetrics {
    policies: Box<[PolicyCounters]>,
}

/// The decision counters of one policy of a tier. Outcomes that cannot happen to the policy
/// are no-op handles, so that they add no series.
struct PolicyCounters {
    shadow: bool,
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
    cost_too_large: Counter,
    store_error: Counter,
    fallback_allowed: Counter,
    fallback_limited: Counter,
}

impl TierMetrics {
    /// The counters of `policies`, checked on a store whose errors are `Err`; `too_large` is the
    /// enforced policy that refuses costs above its burst, on a layer whose cost is computed per
    /// request (a fixed cost was checked against every enforced burst when the layer was built
    /// and is never too large: such a layer passes `None`, and has no `cost_too_large`
    /// series). A store that cannot fail (such as `MemoryStore`) gets no `store_error` or
    /// `fallback_*` series.
    pub(crate) fn new<Err: 'static>(policies: &[Policy], too_large: Option<usize>) -> Self {
        let can_fail = TypeId::of::<Err>() != TypeId::of::<Infallible>();
        let policies = policies
            .iter()
            .enumerate()
            .map(|(i, policy)| {
                let name = policy.name();
                let shadow = policy.is_shadow();
                let when = |possible: bool, outcome| {
                    if possible {
                        decisions(name, outcome)
                    } else {
                        Counter::noop()
                    }
                };
                PolicyCounters {
                    shadow,
                    allowed: decisions(name, "allowed"),
                    limited: when(!shadow, "limited"),
                    shadow_limited: when(shadow, "shadow_limited"),
                    cost_too_large: when(too_large == Some(i), "cost_too_large"),
                    store_error: when(can_fail, "store_error"),
                    fallback_allowed: when(can_fail, "fallback_allowed"),
                    fallback_limited: when(can_fail && !shadow, "fallback_limited"),
                }
            })
            .collect();
        TierMetrics { policies }
    }

    /// Counts the store's answer for each policy: `allowed` if the policy took the request's
    /// cells, `limited` if it is enforced and refused them, `shadow_limited` if it is in shadow
    /// mode and would have refused a request that went on; the `fallback_` forms when the
    /// Redis store's failure policy answered. A policy, enforced or in shadow mode, that would
    /// have admitted a request another one refused took nothing and is not counted, nor is a
    /// shadow policy that would have refused a request an enforced one refused (as
    /// [`RateLimitLayer::shadow_limited`] and the `shadow-limited` log line count).
    ///
    /// [`RateLimitLayer::shadow_limited`]: crate::RateLimitLayer::shadow_limited
    #[inline]
    pub(crate) fn decided(&self, decisions: &Decisions) {
        let admitted = decisions.is_allowed();
        let fallback = decisions.is_fallback();
        for (policy, decision) in self.policies.iter().zip(decisions.as_slice()) {
            let counter = match (decision.is_allowed(), policy.shadow) {
                (true, _) | (false, true) if !admitted => continue,
                (true, _) if fallback => &policy.fallback_allowed,
                (true, _) => &policy.allowed,
                (false, true) => &policy.shadow_limited,
                (false, false) if fallback => &policy.fallback_limited,
                (false, false) => &policy.limited,
            };
            counter.increment(1);
        }
    }

    /// Counts a request that passed at cost 0 as `allowed` by every policy.
    pub(crate) fn free(&self) {
        for policy in self.policies.iter() {
            policy.allowed.increment(1);
        }
    }

    /// Counts a cost above the burst of the policy at `index`.
    pub(crate) fn cost_too_large(&self, index: usize) {
        self.policies[index].cost_too_large.increment(1);
    }

    /// Counts a store failure against every policy.
    pub(crate) fn store_error(&self) {
        for policy in self.policies.iter() {
            policy.store_error.increment(1);
        }
    }
}

/// The gauge of the keys that memory stores track, changed by each store as its key count
/// changes.
pub(crate) fn memory_keys() -> Gauge {
    describe_gauge!(
        MEMORY_KEYS,
        Unit::Count,
        "Keys tracked by MemoryStores, idle ones not yet dropped included"
    );
    metrics::gauge!(MEMORY_KEYS)
}

/// The handles of one Redis store.
#[cfg(feature = "redis")]
pub(crate) mod redis {
    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
        Gauge, Histogram, Unit,
    };

    const STORE_LATENCY: &str = "ratelimit_store_latency_seconds";
    const QUEUE_WAIT: &str = "ratelimit_store_queue_wait_seconds";
    const DENY_CACHE_HITS: &str = "ratelimit_deny_cache_hits_total";
    const DEGRADED: &str = "ratelimit_redis_degraded";

    /// Checks answered by the deny cache, the time script calls wait on Redis, and the time
    /// checks wait in the store's queues.
    pub(crate) struct RedisMetrics {
        pub(crate) latency: Histogram,
        pub(crate) queue_wait: Histogram,
        pub(crate) deny_cache_hits: Counter,
    }

    impl RedisMetrics {
        pub(crate) fn new() -> Self {
            describe_histogram!(
                STORE_LATENCY,
                Unit::Seconds,
                "Time each script call to Redis took, from sending it to its answer, error or \
                 timeout (or to its request going away, when the call was that request's alone); \
                 one call carries one check or, under load, a batch of them"
            );
            describe_histogram!(
                QUEUE_WAIT,
                Unit::Seconds,
                "Time each check that queued behind a script call in flight waited in the \
                 queue, until the call carrying it was sent or the back-off answered it"
            );
            describe_counter!(
                DENY_CACHE_HITS,
                Unit::Count,
                "Redis checks the local deny cache answered without a round trip"
            );
            RedisMetrics {
                latency: histogram!(STORE_LATENCY, "store" => "redis"),
                queue_wait: histogram!(QUEUE_WAIT, "store" => "redis"),
                deny_cache_hits: counter!(DENY_CACHE_HITS),
            }
        }
    }

    /// Records the time from `since` to its drop in a histogram: a call's latency whether it
    /// is answered, fails, times out or is dropped with the request that sent it (then the
    /// time the request waited on it, the least the call took).
    pub(crate) struct Timed<'a> {
        histogram: &'a Histogram,
        since: std::time::Instant,
    }

    impl<'a> Timed<'a> {
        pub(crate) fn since(histogram: &'a Histogram, since: std::time::Instant) -> Self {
            Timed { histogram, since }
        }
    }

    impl Drop for Timed<'_> {
        fn drop(&mut self) {
            self.histogram.record(self.since.elapsed());
        }
    }

    /// The gauge that is 1 while a Redis store backs off (the number of stores backing off).
    pub(crate) fn degraded() -> Gauge {
        describe_gauge!(
            DEGRADED,
            Unit::Count,
            "RedisStores backing off, 1 for a process with one store (after \
             failures_before_backoff failed calls in a row, or a failed probe): their checks \
             skip Redis, but for one probe per back-off period, and their failure policy \
             answers them"
        );
        gauge!(DEGRADED)
    }
}
