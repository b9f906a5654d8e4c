//! Where a request is decided: request → bypass? → key → tier → cost → store answer → verdict.
//!
//! [`Config`] is what one layer shares between every clone of its service; the builder in
//! `layer` makes it, the service and its future call [`Config::start`] and [`Config::verdict`],
//! and the `response` modules render what is decided here.
//!
//! Every outcome is a `tracing` event with an `outcome` field (`allowed`, `bypassed`,
//! `limited`, `shadow-limited`, `cost-too-large`, `missing-key`, `store-error`) and, where one
//! policy decided it, a `policy` field: `trace` for requests let through, `debug` for
//! rejections (a request without a key answered with a 4xx or 3xx status among them, the
//! client's doing), `info` for shadow policies, `warn` for setup and store problems (a request
//! without a key answered with a 5xx status, by default 500: a server set up wrong). All but the
//! `trace` events are throttled so that an attack cannot flood the log (the `shadow-limited`
//! line once a second for each shadow policy of each tier, with a `tier` field, so that every
//! one of them shows); a disabled level costs one cached check.
//!
//! With the `metrics` feature each outcome also increments a counter whose handle the tier or
//! the layer registered when it was built (see the crate docs' Metrics table).

use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::log::{Chain, Throttle};
use crate::policy::{Bypass, Cost, Rules, SelectTier};
use crate::response::headers::{set_length, StackHeaders};
use crate::response::{
    grpc, CostTooLarge, MakeRejection, MissingKeyRejected, RateLimited, StoreFailed,
};
use crate::{ConfigError, Decisions, KeyBuf, KeyBytes, KeyExtractor, Policy, Store};

/// What to do with a request from which the key extractor got no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MissingKey {
    /// Answer with this status, an error (4xx, 5xx) or a redirect (3xx; for gRPC requests, the
    /// gRPC status that means the same), and do not call the inner service;
    /// [`MakeRejection::make_missing_key`] makes the answer (for a redirect, one that sets
    /// `Location`: the layer's build refuses a redirect answered without one). Any other status
    /// (1xx, 2xx, 304 Not Modified, or 600 and above) is refused when the layer is built. A dry
    /// run (a layer whose every policy is in [shadow mode](crate::Policy::shadow)) rejects
    /// nothing: it serves the request. The default is `Reject(500 Internal Server Error)`: a
    /// missing peer address means the server is set up wrong, and failing loudly beats not
    /// limiting at all.
    Reject(StatusCode),
    /// Call the inner service without limiting the request.
    Allow,
}

impl Default for MissingKey {
    fn default() -> Self {
        MissingKey::Reject(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The shared state of one layer: everything a request needs besides the inner service.
pub(crate) struct Config<E, St: Store, R, X> {
    pub(crate) key: E,
    pub(crate) store: St,
    pub(crate) rejection: R,
    pub(crate) rules: X,
    /// The default tier first, then the named ones.
    pub(crate) tiers: Box<[Tier<St::Stack>]>,
    pub(crate) headers_on_success: bool,
    pub(crate) missing_key: MissingKey,
    /// Whether every policy of every tier is in shadow mode: the layer then rejects nothing.
    pub(crate) dry_run: bool,
    pub(crate) grpc_always: bool,
    pub(crate) logs: Logs,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::telemetry::LayerMetrics,
}

/// A stack of policies as one layer checks it.
pub(crate) struct Tier<S> {
    pub(crate) name: Box<str>,
    /// What the store keeps of the stack.
    pub(crate) stack: S,
    /// The stack's policies and headers.
    pub(crate) headers: Arc<StackHeaders>,
    /// Requests each policy would have limited, for policies in shadow mode.
    pub(crate) shadow_limited: Box<[AtomicU64]>,
    /// The `shadow-limited` log line of each policy: one per policy, so that a policy whose
    /// line comes first in the stack cannot hold back the lines of the others.
    shadow_logs: Box<[Throttle]>,
    /// Whether a policy of the stack is in shadow mode: only such a policy can deny a request
    /// that is admitted.
    has_shadow: bool,
    /// The enforced policy with the smallest burst: a larger cost can never be admitted.
    pub(crate) tightest: Option<usize>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::telemetry::TierMetrics,
}

impl<S> Tier<S> {
    /// The tier's policies, in stack order.
    pub(crate) fn policies(&self) -> &[Policy] {
        self.headers.policies()
    }

    /// The tier `name` of `policies`, registered with `store`; `cost_by_request` if the layer
    /// computes each request's cost (only such a cost can exceed a burst: a fixed one was
    /// checked when the layer was built).
    pub(crate) fn new<St>(
        store: &St,
        name: &str,
        policies: Vec<Policy>,
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))] cost_by_request: bool,
    ) -> Result<Self, ConfigError>
    where
        St: Store<Stack = S>,
    {
        let stack = store.register(&policies)?;
        let tightest = policies
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_shadow())
            .min_by_key(|(_, p)| p.quota().burst())
            .map(|(i, _)| i);
        Ok(Tier {
            #[cfg(feature = "metrics")]
            metrics: crate::telemetry::TierMetrics::new::<St::Error>(
                &policies,
                tightest.filter(|_| cost_by_request),
            ),
            name: name.into(),
            shadow_limited: policies.iter().map(|_| AtomicU64::new(0)).collect(),
            shadow_logs: policies
                .iter()
                .map(|_| Throttle::new(Duration::from_secs(1)))
                .collect(),
            has_shadow: policies.iter().any(Policy::is_shadow),
            headers: Arc::new(StackHeaders::new(policies.into())),
            stack,
            tightest,
        })
    }
}

/// The throttled log lines of one layer.
pub(crate) struct Logs {
    missing_key: Throttle,
    store_error: Throttle,
    rejection: Throttle,
    unknown_tier: Throttle,
}

impl Logs {
    pub(crate) fn new() -> Self {
        Logs {
            missing_key: Throttle::new(Duration::from_secs(10)),
            store_error: Throttle::new(Duration::from_secs(10)),
            rejection: Throttle::new(Duration::from_secs(1)),
            unknown_tier: Throttle::new(Duration::from_secs(10)),
        }
    }
}

/// A store's answer with another number of decisions than its stack has policies: a bug of
/// the store, answered as its failure.
#[derive(Debug)]
struct MisshapenAnswer {
    policies: usize,
    decisions: usize,
}

impl std::fmt::Display for MisshapenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store answered {} decisions for a stack of {} policies: a `Store` must answer \
             one decision per policy of the stack, in stack order",
            self.decisions, self.policies
        )
    }
}

impl std::error::Error for MisshapenAnswer {}

/// The headers an allowed response gets when the layer adds them on success.
pub(crate) type SuccessHeaders = (Decisions, Arc<StackHeaders>);

/// What the service does with a request.
pub(crate) enum Verdict {
    /// Call the inner service, adding the headers of this decision to its response if set.
    Allow(Option<Box<SuccessHeaders>>),
    /// Answer with this response; the inner service is not called.
    Respond(Response<Bytes>),
}

/// The verdict that answers `req` with `response`, a rejection, made ready to send: its
/// `Content-Length`, if it has one, is its body's ([`set_length`]; `length_set` says it was
/// set already), and the answer to a `HEAD` request has no body, its `Content-Length` that of
/// the body a `GET` would get (hyper leaves the body out on HTTP/1 but sends it on HTTP/2,
/// where the client takes it for a protocol error).
#[inline]
fn rejection<B>(req: &Request<B>, mut response: Response<Bytes>, length_set: bool) -> Verdict {
    let head = req.method() == Method::HEAD;
    if !length_set {
        // A length that is missing is written by the server from the body, but for `HEAD`.
        let len = response.body().len();
        set_length(response.headers_mut(), len, head);
    }
    if head {
        *response.body_mut() = Bytes::new();
    }
    Verdict::Respond(response)
}

/// How far [`Config::start`] got without the store.
pub(crate) enum Start<F> {
    /// Decided without the store.
    Decided(Verdict),
    /// The store is checking the request's stack: the tier's index and the store's answer.
    Checking(usize, F),
}

impl<E, St, R, C, T, P> Config<E, St, R, Rules<C, T, P>>
where
    St: Store,
    R: MakeRejection,
{
    /// Decides `req` as far as it can be decided without the store, and asks the store.
    #[inline]
    pub(crate) fn start<B>(&self, req: &Request<B>) -> Start<St::Future>
    where
        E: KeyExtractor<B>,
        E::Key: KeyBytes,
        C: Cost<B>,
        T: SelectTier<B>,
        P: Bypass<B>,
    {
        if self.rules.bypass.bypass(req) {
            #[cfg(feature = "metrics")]
            self.metrics.bypassed.increment(1);
            tracing::trace!(outcome = "bypassed", path = req.uri().path());
            return Start::Decided(Verdict::Allow(None));
        }
        let Some(key) = self.key.extract(req) else {
            return Start::Decided(self.missing_key(req, self.key.missing_key_hint()));
        };
        let index = self.tier_of(req);
        let tier = &self.tiers[index];
        let cost = self.rules.cost.cost(req);
        if cost == 0 {
            #[cfg(feature = "metrics")]
            tier.metrics.free();
            tracing::trace!(outcome = "allowed", tier = &*tier.name, cost);
            return Start::Decided(Verdict::Allow(None));
        }
        if let Some(tightest) = tier.tightest {
            let policy = &tier.policies()[tightest];
            if cost > policy.quota().burst() {
                #[cfg(feature = "metrics")]
                tier.metrics.cost_too_large(tightest);
                if tracing::enabled!(tracing::Level::DEBUG) {
                    if let Some(suppressed) = self.logs.rejection.admit() {
                        tracing::debug!(
                            outcome = "cost-too-large",
                            policy = policy.name(),
                            cost,
                            burst = policy.quota().burst(),
                            path = req.uri().path(),
                            similar_rejections_not_logged = suppressed,
                            "cost above the burst: never admitted"
                        );
                    }
                }
                let too_large = CostTooLarge::new(policy.clone(), cost, self.grpc(req));
                let mut response = self.rejection.make_cost_too_large(&too_large);
                response.extensions_mut().insert(too_large);
                return Start::Decided(rejection(req, response, false));
            }
        }
        let mut bytes = KeyBuf::new();
        key.write_key(&mut bytes);
        Start::Checking(index, self.store.check(&tier.stack, bytes.as_bytes(), cost))
    }

    /// The index of the tier of `req`.
    #[inline]
    fn tier_of<B>(&self, req: &Request<B>) -> usize
    where
        T: SelectTier<B>,
    {
        let Some(name) = self.rules.tier.select_tier(req) else {
            return 0;
        };
        let name = name.as_ref();
        // The default tier is first, under its name: a selector may name it too.
        match self.tiers.iter().position(|tier| *tier.name == *name) {
            Some(i) => i,
            None => {
                if let Some(suppressed) = self.logs.unknown_tier.admit() {
                    tracing::warn!(
                        tier = name,
                        similar_requests_not_logged = suppressed,
                        "the tier selector named a tier the layer does not have; the request \
                         gets the default tier: add it with `.tier(name, policies)`"
                    );
                }
                0
            }
        }
    }

    /// The verdict for `req` of tier `tier` given the store's answer. A request answered here
    /// gives its extension map, emptied, to the answer.
    // Always inlined: called on its own, the store's answer was moved once more to reach it.
    #[inline(always)]
    pub(crate) fn verdict<B, Err: std::error::Error + 'static>(
        &self,
        tier: usize,
        mut outcome: Result<Decisions, Err>,
        req: &mut Request<B>,
    ) -> Verdict {
        let tier = &self.tiers[tier];
        if let Ok(decisions) = &mut outcome {
            if decisions.len() != tier.policies().len() {
                let error = MisshapenAnswer {
                    policies: tier.policies().len(),
                    decisions: decisions.len(),
                };
                return self.store_failed(tier, &error, req);
            }
            // A store of one's own may count the waits of shadow policies in a denial's wait.
            if tier.has_shadow && !decisions.is_allowed() {
                decisions.wait_of_enforced(tier.policies().iter().map(Policy::is_shadow));
            }
        }
        #[cfg(feature = "metrics")]
        if let Ok(decisions) = &outcome {
            tier.metrics.decided(decisions);
        }
        match outcome {
            Ok(decisions) if decisions.is_allowed() => {
                if tier.has_shadow && decisions.any_denied() {
                    self.shadow_limited(tier, &decisions, req);
                }
                tracing::trace!(outcome = "allowed", tier = &*tier.name);
                Verdict::Allow(
                    self.headers_on_success
                        .then(|| Box::new((decisions, Arc::clone(&tier.headers)))),
                )
            }
            Ok(decisions) => {
                let limited =
                    RateLimited::new(decisions, self.grpc(req), Arc::clone(&tier.headers));
                if tracing::enabled!(tracing::Level::DEBUG) {
                    if let Some(suppressed) = self.logs.rejection.admit() {
                        tracing::debug!(
                            outcome = "limited",
                            policy = limited.policy().name(),
                            tier = &*tier.name,
                            path = req.uri().path(),
                            retry_after_ms = grpc::pushback_millis(limited.retry_after()),
                            similar_rejections_not_logged = suppressed,
                            "rate limited"
                        );
                    }
                }
                let mut response = self.rejection.make_rejection(&limited);
                // An HTTP answer gets its exact length here, as a server would add it.
                let content_length = (!limited.is_grpc()).then(|| response.body().len());
                tier.headers
                    .insert(response.headers_mut(), limited.decisions(), content_length);
                // The request ends here: its extension map, emptied, carries the answer's, so
                // that a rejection allocates no map of its own.
                let mut extensions = mem::take(req.extensions_mut());
                extensions.clear();
                extensions.extend(mem::take(response.extensions_mut()));
                extensions.insert(limited);
                *response.extensions_mut() = extensions;
                rejection(req, response, content_length.is_some())
            }
            Err(error) => self.store_failed(tier, &error, req),
        }
    }

    /// The verdict for `req` when the store failed to decide it: not served, unless every
    /// policy of its tier is in shadow mode, which never rejects.
    fn store_failed<B>(
        &self,
        tier: &Tier<St::Stack>,
        error: &(dyn std::error::Error + 'static),
        req: &Request<B>,
    ) -> Verdict {
        #[cfg(feature = "metrics")]
        tier.metrics.store_error();
        // Only an enforced policy has a smallest burst.
        let shadow_only = tier.tightest.is_none();
        if let Some(suppressed) = self.logs.store_error.admit() {
            let answer = match shadow_only {
                true => "the request is served, as every policy of its tier is in shadow mode",
                false => "the request is not served",
            };
            tracing::warn!(
                outcome = "store-error",
                tier = &*tier.name,
                error = %Chain(error),
                similar_errors_not_logged = suppressed,
                "rate limit store failed; {answer}"
            );
        }
        if shadow_only {
            return Verdict::Allow(None);
        }
        let failed = StoreFailed::new(error, self.grpc(req));
        rejection(req, self.rejection.make_store_failed(&failed), false)
    }

    /// Counts and logs what the shadow policies of an admitted request would have limited.
    fn shadow_limited<B>(&self, tier: &Tier<St::Stack>, decisions: &Decisions, req: &Request<B>) {
        for (((policy, decision), count), log) in tier
            .policies()
            .iter()
            .zip(decisions.as_slice())
            .zip(tier.shadow_limited.iter())
            .zip(tier.shadow_logs.iter())
        {
            if policy.is_shadow() && !decision.is_allowed() {
                count.fetch_add(1, Ordering::Relaxed);
                let Some(suppressed) = log.admit() else {
                    continue;
                };
                if decision.never_conforms() {
                    tracing::info!(
                        outcome = "shadow-limited",
                        path = req.uri().path(),
                        policy = policy.name(),
                        tier = &*tier.name,
                        burst = decision.limit(),
                        similar_requests_not_logged = suppressed,
                        "shadow policy would never admit this request, whose cost is above its \
                         burst; let through"
                    );
                } else {
                    tracing::info!(
                        outcome = "shadow-limited",
                        path = req.uri().path(),
                        policy = policy.name(),
                        tier = &*tier.name,
                        retry_after_ms = grpc::pushback_millis(decision.retry_after()),
                        similar_requests_not_logged = suppressed,
                        "shadow policy would have limited this request; let through"
                    );
                }
            }
        }
    }

    /// The verdict for a request without a key.
    fn missing_key<B>(&self, req: &Request<B>, hint: &str) -> Verdict {
        #[cfg(feature = "metrics")]
        self.metrics.missing_key.increment(1);
        match self.missing_key {
            MissingKey::Allow => {
                tracing::trace!(outcome = "missing-key", path = req.uri().path());
                Verdict::Allow(None)
            }
            MissingKey::Reject(status) => {
                // A server error says the server is set up wrong: a warning with what to fix.
                // Any other answer (401, a redirect to a login page) is the client's doing: a
                // rejection. A dry run limits nothing: it serves what it cannot key, as it
                // serves what its store could not decide.
                if status.is_server_error() {
                    if let Some(suppressed) = self.logs.missing_key.admit() {
                        let answer = match self.dry_run {
                            true => "it is served, as every policy of the layer is in shadow mode",
                            false => "it is rejected",
                        };
                        tracing::warn!(
                            outcome = "missing-key",
                            path = req.uri().path(),
                            status = status.as_u16(),
                            similar_requests_not_logged = suppressed,
                            "request has no rate-limit key; {answer}: {hint}"
                        );
                    }
                } else if self.dry_run {
                    tracing::trace!(outcome = "missing-key", path = req.uri().path());
                } else if tracing::enabled!(tracing::Level::DEBUG) {
                    if let Some(suppressed) = self.logs.rejection.admit() {
                        tracing::debug!(
                            outcome = "missing-key",
                            path = req.uri().path(),
                            status = status.as_u16(),
                            similar_rejections_not_logged = suppressed,
                            "request rejected because it has no rate-limit key"
                        );
                    }
                }
                if self.dry_run {
                    return Verdict::Allow(None);
                }
                let rejected = MissingKeyRejected::new(status, self.grpc(req));
                rejection(req, self.rejection.make_missing_key(&rejected), false)
            }
        }
    }

    /// The content type of a gRPC answer to `req`, if it gets one.
    fn grpc<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        grpc::content_type(req).or_else(|| self.grpc_always.then_some(grpc::APPLICATION_GRPC))
    }
}

impl<E, St: Store, R, X> Config<E, St, R, X> {
    /// Each tier's name and policies, for the `Debug` output of the layer and its service.
    pub(crate) fn debug_tiers(&self) -> Vec<(&str, &[Policy])> {
        self.tiers
            .iter()
            .map(|tier| (&*tier.name, tier.policies()))
            .collect()
    }

    /// Requests the shadow policy `name` would have limited, over every tier of the layer.
    pub(crate) fn shadow_limited_count(&self, name: &str) -> u64 {
        self.tiers
            .iter()
            .flat_map(|tier| tier.policies().iter().zip(tier.shadow_limited.iter()))
            .filter(|(policy, _)| policy.name() == name)
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .sum()
    }
}
