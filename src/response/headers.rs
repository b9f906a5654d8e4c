//! The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers),
//! one list member per policy of the request.
//!
//! Both fields are structured-field Lists. Each member is the policy name as a String with
//! parameters: `q` (the quota: the burst) and `w` (the window in seconds: the time a spent
//! burst takes to refill) in `RateLimit-Policy`; `r` (how many more cost-1 requests conform
//! now) and `t` (seconds until the quota is full again) in `RateLimit`. A stack of two
//! policies gives
//!
//! ```text
//! RateLimit-Policy: "per-second";q=4;w=2, "per-minute";q=10;w=60
//! RateLimit: "per-second";r=3;t=1, "per-minute";r=9;t=6
//! ```
//!
//! A limited request also gets `Retry-After`: the wait until every denying policy conforms,
//! in whole seconds rounded up, never `0`.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue};

use crate::{Decisions, Policy};

/// The `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The rate-limit headers of one stack: `RateLimit-Policy` made once, the names for
/// `RateLimit`.
#[derive(Debug)]
pub(crate) struct StackHeaders {
    policy: HeaderValue,
    names: Box<[Box<str>]>,
}

impl StackHeaders {
    /// The headers of `policies`, whose names were checked to fit in a String.
    pub(crate) fn new(policies: &[Policy]) -> Self {
        let mut policy = String::new();
        for (i, p) in policies.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
            }
            let _ = write!(
                policy,
                "\"{}\";q={};w={}",
                p.name(),
                p.quota().burst(),
                ceil_secs(p.quota().window()).max(1)
            );
        }
        StackHeaders {
            policy: HeaderValue::try_from(policy)
                .expect("policy names are checked when the layer is built"),
            names: policies.iter().map(|p| p.name().into()).collect(),
        }
    }

    /// Adds `RateLimit-Policy` and `RateLimit` (and `Retry-After` when denied), keeping any the
    /// response already has.
    pub(crate) fn insert(&self, headers: &mut HeaderMap, decisions: &Decisions) {
        if !decisions.is_allowed() {
            headers
                .entry(RETRY_AFTER)
                .or_insert_with(|| HeaderValue::from(retry_after_secs(decisions.retry_after())));
        }
        headers
            .entry(RATELIMIT_POLICY)
            .or_insert_with(|| self.policy.clone());
        if let http::header::Entry::Vacant(entry) = headers.entry(RATELIMIT) {
            let mut value = BytesMut::with_capacity(self.names.len() * 40);
            for (i, (name, d)) in self.names.iter().zip(decisions.as_slice()).enumerate() {
                let _ = write!(
                    value,
                    "{}\"{name}\";r={};t={}",
                    if i > 0 { ", " } else { "" },
                    d.remaining(),
                    ceil_secs(d.reset_after())
                );
            }
            // The names were checked when the layer was built, so this always succeeds.
            if let Ok(value) = HeaderValue::from_maybe_shared(value.freeze()) {
                entry.insert(value);
            }
        }
    }
}

/// The `Retry-After` value of a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// `d` in whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decision, Quota};

    #[test]
    fn one_policy_follows_the_draft_syntax() {
        let policies = [Policy::new(
            "default",
            Quota::per_minute(10).allow_burst(20),
        )];
        let spec = StackHeaders::new(&policies);
        assert_eq!(spec.policy, "\"default\";q=20;w=120");
        let mut headers = HeaderMap::new();
        let decision = Decision::denied(
            20,
            0,
            Duration::from_millis(5_500),
            Duration::from_millis(119_500),
        );
        spec.insert(&mut headers, &Decisions::one(decision));
        assert_eq!(headers[RETRY_AFTER], "6");
        assert_eq!(headers[RATELIMIT], "\"default\";r=0;t=120");
    }

    #[test]
    fn several_policies_are_list_members_in_stack_order() {
        let policies = [
            Policy::new("per-second", Quota::per_second(2).allow_burst(4)),
            Policy::new("per-minute", Quota::per_minute(10)),
        ];
        let spec = StackHeaders::new(&policies);
        assert_eq!(
            spec.policy,
            "\"per-second\";q=4;w=2, \"per-minute\";q=10;w=60"
        );
        let decisions = Decisions::new(
            true,
            [
                Decision::allowed(4, 3, Duration::from_millis(500)),
                Decision::allowed(10, 9, Duration::from_secs(6)),
            ],
        );
        let mut headers = HeaderMap::new();
        spec.insert(&mut headers, &decisions);
        assert!(!headers.contains_key(RETRY_AFTER));
        assert_eq!(
            headers[RATELIMIT],
            "\"per-second\";r=3;t=1, \"per-minute\";r=9;t=6"
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        for (nanos, secs) in [
            (0, 1),
            (1, 1),
            (999_999_999, 1),
            (1_000_000_000, 1),
            (1_000_000_001, 2),
        ] {
            assert_eq!(retry_after_secs(Duration::from_nanos(nanos)), secs);
        }
    }
}
