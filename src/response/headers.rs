//! The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers),
//! one list member per policy of the request.
//!
//! Both fields are structured-field Lists. Each member is the policy name as a String with
//! parameters: `q` (the quota) and `w` (the window in seconds) in `RateLimit-Policy`, where `w`
//! is the time a spent burst takes to refill, rounded up to whole seconds, and `q` is what the
//! policy admits over `w`: the burst, or for a window that is not whole seconds, the cells that
//! refill in `w` (`100/s; burst=10` is `q=100;w=1`, not ten a second); `r` (how many more cost-1 requests conform
//! now) and `t` (seconds until the quota is full again) in `RateLimit`. A stack of two
//! policies gives
//!
//! ```text
//! RateLimit-Policy: "per-second";q=4;w=2, "per-minute";q=10;w=60
//! RateLimit: "per-second";r=3;t=1, "per-minute";r=9;t=6
//! ```
//!
//! A limited request also gets `Retry-After`: the wait until every denying policy conforms
//! (shadow policies left out), in whole seconds rounded up, never `0`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue};

use crate::{Decision, Decisions, Policy};

/// The `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One stack's policies and its rate-limit headers, rendered as far as they can be when the
/// layer is built: `RateLimit-Policy`, the fixed part of each `RateLimit` member, and the
/// header map of the default rejection, so that a request only writes its numbers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StackHeaders {
    policies: Arc<[Policy]>,
    policy: HeaderValue,
    /// `"<name>";r=` for each policy, the ones after the first led by `, `.
    members: Box<[Box<[u8]>]>,
    /// The headers of the default rejection in their order, the numbers still to be set.
    rejection: HeaderMap,
}

/// The content type of the layer's own HTTP answers.
pub(crate) const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

impl StackHeaders {
    /// The headers of `policies`, whose names were checked to fit in a String.
    pub(crate) fn new(policies: Arc<[Policy]>) -> Self {
        let mut policy = String::new();
        for (i, p) in policies.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
            }
            let quota = p.quota();
            // The window in whole seconds, and what the policy admits over it: its burst, or
            // more when the window is shorter (cells go on refilling until `w` is over).
            let w = ceil_secs(quota.window()).max(1);
            let refilled = u128::from(w) * 1_000_000_000 / u128::from(quota.interval_nanos());
            let q = refilled.max(u128::from(quota.burst()));
            let _ = write!(policy, "\"{}\";q={q};w={w}", p.name());
        }
        let policy = HeaderValue::try_from(policy)
            .expect("policy names are checked when the layer is built");
        // `rejection` sets the values by their place in this order.
        let mut rejection = HeaderMap::with_capacity(6);
        rejection.insert(CONTENT_TYPE, TEXT_PLAIN);
        rejection.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        rejection.insert(RATELIMIT_POLICY, policy.clone());
        rejection.insert(RATELIMIT, HeaderValue::from_static(""));
        rejection.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        StackHeaders {
            policy,
            members: policies
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let separator = if i > 0 { ", " } else { "" };
                    format!("{separator}\"{}\";r=", p.name())
                        .into_bytes()
                        .into_boxed_slice()
                })
                .collect(),
            rejection,
            policies,
        }
    }

    /// The stack's policies, in order.
    pub(crate) fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The headers of the default HTTP rejection: `Content-Type`, `Retry-After`,
    /// `RateLimit-Policy`, `RateLimit` and `Content-Length`, with the values given. A copy of a
    /// map made when the layer was built, its values set in the order they were inserted in:
    /// no header name is hashed or compared.
    pub(crate) fn rejection(
        &self,
        retry_after: Option<HeaderValue>,
        ratelimit: Option<HeaderValue>,
        content_length: HeaderValue,
    ) -> HeaderMap {
        let mut headers = self.rejection.clone();
        let (no_retry_after, no_ratelimit) = (retry_after.is_none(), ratelimit.is_none());
        // In the order of `new`: Content-Type and RateLimit-Policy keep theirs.
        let set = [None, retry_after, None, ratelimit, Some(content_length)];
        for (value, set) in headers.values_mut().zip(set) {
            if let Some(set) = set {
                *value = set;
            }
        }
        if no_retry_after {
            headers.remove(RETRY_AFTER);
        }
        if no_ratelimit {
            headers.remove(RATELIMIT);
        }
        headers
    }

    /// Adds `RateLimit-Policy` and `RateLimit` (and `Retry-After` when denied), keeping any the
    /// response already has, and sets `Content-Length` to `content_length` when given (see
    /// [`set_length`]).
    pub(crate) fn insert(
        &self,
        headers: &mut HeaderMap,
        decisions: &Decisions,
        content_length: Option<usize>,
    ) {
        // One pass over the names the response has; a map that has them all, like the
        // default rejection's, is left as it is without hashing a name.
        let (mut retry_after, mut policy, mut ratelimit) = (decisions.is_allowed(), false, false);
        for name in headers.keys() {
            retry_after |= name == RETRY_AFTER;
            policy |= name == RATELIMIT_POLICY;
            ratelimit |= name == RATELIMIT;
        }
        if !retry_after {
            headers.insert(
                RETRY_AFTER,
                number(retry_after_secs(decisions.retry_after())),
            );
        }
        if !policy {
            headers.insert(RATELIMIT_POLICY, self.policy.clone());
        }
        if !ratelimit {
            if let Some(value) = self.ratelimit(decisions) {
                headers.insert(RATELIMIT, value);
            }
        }
        if let Some(len) = content_length {
            set_length(headers, len, true);
        }
    }

    /// Adds this stack's members to `RateLimit-Policy` and `RateLimit` of an allowed response.
    /// A field the inner service wrote already (an upstream's, or a limiter's further in)
    /// keeps its members, and this stack's follow them on the same line: both fields list
    /// every policy that checked the request.
    pub(crate) fn add_to_allowed(&self, headers: &mut HeaderMap, decisions: &Decisions) {
        if headers.contains_key(RATELIMIT_POLICY) {
            extend_list(headers, RATELIMIT_POLICY, &self.policy);
        } else {
            headers.insert(RATELIMIT_POLICY, self.policy.clone());
        }
        if let Some(value) = self.ratelimit(decisions) {
            if headers.contains_key(RATELIMIT) {
                extend_list(headers, RATELIMIT, &value);
            } else {
                headers.insert(RATELIMIT, value);
            }
        }
    }

    /// The `RateLimit` value of `decisions`.
    fn ratelimit(&self, decisions: &Decisions) -> Option<HeaderValue> {
        // Two members of the longest names fit on the stack.
        let mut value = Scratch::<256>::new();
        self.write_ratelimit(decisions, &mut value);
        // The names were checked when the layer was built, so this always succeeds.
        HeaderValue::from_bytes(value.as_bytes()).ok()
    }

    /// Writes the `RateLimit` value of `decisions` to `out`.
    pub(crate) fn write_ratelimit<const N: usize>(
        &self,
        decisions: &Decisions,
        out: &mut Scratch<N>,
    ) {
        let mut digits = itoa::Buffer::new();
        for (member, d) in self.members.iter().zip(decisions.as_slice()) {
            let [remaining, reset] = member_numbers(d);
            out.push(member);
            out.push(digits.format(remaining).as_bytes());
            out.push(b";t=");
            out.push(digits.format(reset).as_bytes());
        }
    }
}

/// Replaces the `name` lines of `headers` with one line: their list members, then `ours`.
fn extend_list(headers: &mut HeaderMap, name: HeaderName, ours: &HeaderValue) {
    let mut joined = Vec::new();
    for value in headers.get_all(&name) {
        let members = value.as_bytes().trim_ascii();
        if !members.is_empty() {
            joined.extend_from_slice(members);
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(ours.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, value);
    }
}

/// The `Retry-After` value of a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// The numbers of a policy's `RateLimit` member: `r`, then `t`.
pub(crate) fn member_numbers(d: &Decision) -> [u64; 2] {
    [u64::from(d.remaining()), ceil_secs(d.reset_after())]
}

/// `d` in whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Bytes written on the stack, up to `N`, to be copied once into a buffer of the exact size; a
/// `Vec` takes over the rare value longer than that (a stack of three or more policies with
/// long names).
pub(crate) struct Scratch<const N: usize> {
    stack: [u8; N],
    len: usize,
    heap: Vec<u8>,
}

impl<const N: usize> Scratch<N> {
    pub(crate) fn new() -> Self {
        Scratch {
            stack: [0; N],
            len: 0,
            heap: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if self.heap.is_empty() && end <= self.stack.len() {
            self.stack[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// The bytes in one allocation, which slices of them share.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl<const N: usize> AsRef<[u8]> for Scratch<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The numbers below this are header values without an allocation.
const SMALL: usize = 1000;

/// "0123456789101112...999": every number below [`SMALL`], one after the other.
static SMALL_DIGITS: [u8; small_digits_len()] = small_digits();

/// How many digits `n` below [`SMALL`] has.
const fn width(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else {
        3
    }
}

const fn small_digits_len() -> usize {
    let (mut len, mut n) = (0, 0);
    while n < SMALL {
        len += width(n);
        n += 1;
    }
    len
}

const fn small_digits() -> [u8; small_digits_len()] {
    let mut out = [0; small_digits_len()];
    let (mut at, mut n) = (0, 0);
    while n < SMALL {
        let (mut i, mut rest) = (width(n), n);
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += width(n);
        n += 1;
    }
    out
}

/// Makes the `Content-Length` of `headers` that of a body of `len` bytes: replaced if it has
/// another (one kept from a body that was replaced would break the connection), added if it
/// has none and `needed`. Found by a pass over the names, as a rejection's few fields are read
/// faster so than by hashing one.
pub(crate) fn set_length(headers: &mut HeaderMap, len: usize, needed: bool) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(len).as_bytes();
    let (mut found, mut wrong) = (false, false);
    for (name, value) in headers.iter() {
        if name == CONTENT_LENGTH {
            found = true;
            wrong |= value.as_bytes() != digits;
        }
    }
    if wrong || (needed && !found) {
        headers.insert(CONTENT_LENGTH, number(len as u64));
    }
}

/// `n` as a header value: a slice of a static table below [`SMALL`], so that the usual
/// `Retry-After` and `Content-Length` values allocate nothing.
pub(crate) fn number(n: u64) -> HeaderValue {
    if let Ok(small) = usize::try_from(n) {
        if small < SMALL {
            let start = match small {
                0..=9 => small,
                10..=99 => 10 + 2 * (small - 10),
                _ => 190 + 3 * (small - 100),
            };
            let digits = Bytes::from_static(&SMALL_DIGITS[start..start + width(small)]);
            if let Ok(value) = HeaderValue::from_maybe_shared(digits) {
                return value;
            }
        }
    }
    HeaderValue::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quota;

    #[test]
    fn one_policy_follows_the_draft_syntax() {
        let policies = [Policy::new(
            "default",
            Quota::per_minute(10).allow_burst(20),
        )];
        let spec = StackHeaders::new(Arc::from(policies));
        assert_eq!(spec.policy, "\"default\";q=20;w=120");
        let mut headers = HeaderMap::new();
        let decision = Decision::denied(
            20,
            0,
            Duration::from_millis(5_500),
            Duration::from_millis(119_500),
        );
        spec.insert(&mut headers, &Decisions::one(decision), None);
        assert_eq!(headers[RETRY_AFTER], "6");
        assert_eq!(headers[RATELIMIT], "\"default\";r=0;t=120");
    }

    #[test]
    fn the_default_rejection_sets_each_value_under_its_name() {
        let spec = StackHeaders::new(Arc::from([Policy::new("p", Quota::per_minute(10))]));
        let headers = spec.rejection(
            Some(HeaderValue::from_static("7")),
            Some(HeaderValue::from_static("\"p\";r=0;t=60")),
            HeaderValue::from_static("42"),
        );
        let names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "retry-after",
                "ratelimit-policy",
                "ratelimit",
                "content-length"
            ]
        );
        assert_eq!(headers[CONTENT_TYPE], TEXT_PLAIN);
        assert_eq!(headers[RETRY_AFTER], "7");
        assert_eq!(headers[RATELIMIT_POLICY], "\"p\";q=10;w=60");
        assert_eq!(headers[RATELIMIT], "\"p\";r=0;t=60");
        assert_eq!(headers[CONTENT_LENGTH], "42");
        assert_eq!(headers.len(), 5);

        let without = spec.rejection(None, None, HeaderValue::from_static("3"));
        assert!(!without.contains_key(RETRY_AFTER) && !without.contains_key(RATELIMIT));
        assert_eq!(without[CONTENT_TYPE], TEXT_PLAIN);
        assert_eq!(without[RATELIMIT_POLICY], "\"p\";q=10;w=60");
        assert_eq!(without[CONTENT_LENGTH], "3");
        assert_eq!(without.len(), 3);
    }

    #[test]
    fn a_window_of_part_of_a_second_states_the_rate_over_a_whole_one() {
        let policy = |quota: Quota| StackHeaders::new(Arc::from([Policy::new("p", quota)])).policy;
        assert_eq!(
            policy(Quota::per_second(100).allow_burst(10)),
            "\"p\";q=100;w=1"
        );
        assert_eq!(
            policy(Quota::per_second(1000).allow_burst(1)),
            "\"p\";q=1000;w=1"
        );
        // 2 a second with a burst of 3: refilled in 1.5 s, stated over 2 s.
        assert_eq!(policy(Quota::per_second(2).allow_burst(3)), "\"p\";q=4;w=2");
        // Whole-second windows state the burst.
        assert_eq!(policy(Quota::per_second(2).allow_burst(4)), "\"p\";q=4;w=2");
        assert_eq!(policy(Quota::per_minute(10)), "\"p\";q=10;w=60");
        assert_eq!(policy(Quota::per_second(3)), "\"p\";q=3;w=1");
    }

    #[test]
    fn several_policies_are_list_members_in_stack_order() {
        let policies = [
            Policy::new("per-second", Quota::per_second(2).allow_burst(4)),
            Policy::new("per-minute", Quota::per_minute(10)),
        ];
        let spec = StackHeaders::new(Arc::from(policies));
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
        spec.insert(&mut headers, &decisions, None);
        assert!(!headers.contains_key(RETRY_AFTER));
        assert_eq!(
            headers[RATELIMIT],
            "\"per-second\";r=3;t=1, \"per-minute\";r=9;t=6"
        );
    }

    #[test]
    fn an_allowed_response_gets_its_members_after_the_ones_it_has() {
        let spec = StackHeaders::new(Arc::from([Policy::new("app", Quota::per_minute(10))]));
        let decisions = Decisions::one(Decision::allowed(10, 9, Duration::from_secs(6)));
        let mut headers = HeaderMap::new();
        headers.append(RATELIMIT, HeaderValue::from_static("\"a\";r=1"));
        headers.append(RATELIMIT, HeaderValue::from_static(" "));
        headers.append(RATELIMIT, HeaderValue::from_static("\"b\";r=2;t=3"));
        spec.add_to_allowed(&mut headers, &decisions);
        assert_eq!(
            headers.get_all(RATELIMIT).iter().collect::<Vec<_>>(),
            ["\"a\";r=1, \"b\";r=2;t=3, \"app\";r=9;t=6"]
        );
        assert_eq!(headers[RATELIMIT_POLICY], "\"app\";q=10;w=60");
        assert!(!headers.contains_key(RETRY_AFTER));
    }

    #[test]
    fn numbers_are_their_decimal_digits() {
        for n in (0..2_000).chain([9_999, 10_000, u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(number(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn scratch_keeps_what_outgrows_the_stack() {
        let mut scratch = Scratch::<64>::new();
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let piece = [b'a' + i % 26; 7];
            scratch.push(&piece);
            expected.extend_from_slice(&piece);
            assert_eq!(scratch.as_bytes(), expected.as_slice());
        }
    }

    #[test]
    fn a_stack_of_long_names_renders_in_full() {
        let policies: Vec<_> = (0..4)
            .map(|i| Policy::new(format!("{i}{}", "x".repeat(63)), Quota::per_hour(1)))
            .collect();
        let spec = StackHeaders::new(Arc::from(policies));
        let denied = Decision::denied(1, 0, Duration::from_secs(3600), Duration::from_secs(3600));
        let decisions = Decisions::new(false, vec![denied; 4]);
        let mut headers = HeaderMap::new();
        spec.insert(&mut headers, &decisions, Some(35));
        let expected: Vec<_> = spec
            .policies()
            .iter()
            .map(|p| format!("\"{}\";r=0;t=3600", p.name()))
            .collect();
        assert_eq!(headers[RATELIMIT], expected.join(", ").as_str());
        assert_eq!(headers[RETRY_AFTER], "3600");
        assert_eq!(headers[CONTENT_LENGTH], "35");
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
