//! [`RateLimitLayer`], its builder, and the state every clone of the service shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;

use crate::log::Throttle;
use crate::response::{self, MakeRejection, RateLimited};
use crate::{ConfigError, Decision, DefaultRejection, MemoryStore, PeerIp, Quota, RateLimit};

/// What to do with a request from which the key extractor got no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Answer with this status (for gRPC requests, the matching gRPC status) and do not call
    /// the inner service. The default is `Reject(500 Internal Server Error)`: a missing peer
    /// address means the server is set up wrong, and failing loudly beats not limiting at all.
    Reject(StatusCode),
    /// Call the inner service without limiting the request.
    Allow,
}

impl Default for MissingKey {
    fn default() -> Self {
        MissingKey::Reject(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Applies [`RateLimit`] to a service: one shared budget, however often the service is cloned.
///
/// `RateLimitLayer::new(quota)` limits each peer IP address with an in-memory store; the
/// [builder](RateLimitLayer::builder) picks the key, the store and the rejection.
///
/// ```
/// use std::net::SocketAddr;
/// use axum::{routing::get, Router};
/// use tower_ratelimit::{Quota, RateLimitLayer};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::new(Quota::per_second(10)));
/// // Serve with `app.into_make_service_with_connect_info::<SocketAddr>()` so that the
/// // peer address reaches the layer.
/// ```
pub struct RateLimitLayer<E = PeerIp, St = MemoryStore, R = DefaultRejection> {
    config: Arc<Config<E, St, R>>,
}

impl RateLimitLayer {
    /// Limits every peer IP address to `quota`, with a fresh [`MemoryStore`].
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::new(tower_ratelimit::Quota::per_second(5));
    /// ```
    pub fn new(quota: Quota) -> Self {
        Self::builder()
            .quota(quota)
            .build()
            .expect("a valid quota with cost 1 is a valid configuration")
    }

    /// A builder with the defaults of [`RateLimitLayer::new`] and no quota yet.
    ///
    /// ```
    /// use tower_ratelimit::{Header, MissingKey, Quota, RateLimitLayer};
    /// use http::StatusCode;
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .quota("100/min; burst=20".parse()?)
    ///     .key(Header::new("x-api-key"))
    ///     .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
    ///     .headers_on_success(true)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            key: PeerIp::new(),
            store: MemoryStore::new(),
            rejection: DefaultRejection,
            settings: Settings {
                quota: None,
                cost: 1,
                headers_on_success: false,
                missing_key: MissingKey::default(),
                grpc_always: false,
                policy_name: "default".into(),
            },
        }
    }
}

impl<E, St, R> RateLimitLayer<E, St, R> {
    /// The quota every key is checked against.
    pub fn quota(&self) -> &Quota {
        &self.config.quota
    }

    /// The store that holds the budget.
    pub fn store(&self) -> &St {
        &self.config.store
    }
}

impl<E, St, R> Clone for RateLimitLayer<E, St, R> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            config: Arc::clone(&self.config),
        }
    }
}

impl<E, St, R> fmt::Debug for RateLimitLayer<E, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.config.quota)
            .field("cost", &self.config.cost)
            .finish_non_exhaustive()
    }
}

impl<S, E, St, R> Layer<S> for RateLimitLayer<E, St, R> {
    type Service = RateLimit<S, E, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_config(inner, Arc::clone(&self.config))
    }
}

/// Builds a [`RateLimitLayer`]; see [`RateLimitLayer::builder`].
///
/// Setting the key, the store or the rejection changes the builder's type; every other
/// setting keeps it. [`build`](RateLimitLayerBuilder::build) checks the whole configuration.
#[must_use]
pub struct RateLimitLayerBuilder<E = PeerIp, St = MemoryStore, R = DefaultRejection> {
    key: E,
    store: St,
    rejection: R,
    settings: Settings,
}

/// The builder's settings that do not change its type.
struct Settings {
    quota: Option<Quota>,
    cost: u32,
    headers_on_success: bool,
    missing_key: MissingKey,
    grpc_always: bool,
    policy_name: String,
}

impl<E, St, R> RateLimitLayerBuilder<E, St, R> {
    /// The quota each key gets (required).
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_minute(60))
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn quota(mut self, quota: Quota) -> Self {
        self.settings.quota = Some(quota);
        self
    }

    /// How requests are keyed (default: [`PeerIp`]). Any [`KeyExtractor`](crate::KeyExtractor),
    /// including a closure `Fn(&Request<B>) -> Option<K>`.
    ///
    /// ```
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// let layer = RateLimitLayer::builder().quota(Quota::per_second(1)).key(Global).build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn key<E2>(self, key: E2) -> RateLimitLayerBuilder<E2, St, R> {
        RateLimitLayerBuilder {
            key,
            store: self.store,
            rejection: self.rejection,
            settings: self.settings,
        }
    }

    /// Where the budget lives (default: a new [`MemoryStore`]). Pass a clone of a store to
    /// share one budget between several layers.
    ///
    /// ```
    /// use tower_ratelimit::{ManualClock, MemoryStore, Quota, RateLimitLayer};
    /// let store = MemoryStore::builder().clock(ManualClock::new()).build()?;
    /// let layer = RateLimitLayer::builder().quota(Quota::per_second(1)).store(store).build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn store<St2>(self, store: St2) -> RateLimitLayerBuilder<E, St2, R> {
        RateLimitLayerBuilder {
            key: self.key,
            store,
            rejection: self.rejection,
            settings: self.settings,
        }
    }

    /// How limited requests are answered (default: [`DefaultRejection`]); any closure
    /// `Fn(&RateLimited) -> Response<T>` works. See [`response`](crate::response) for an
    /// example that answers with `application/problem+json`.
    pub fn rejection<R2>(self, rejection: R2) -> RateLimitLayerBuilder<E, St, R2> {
        RateLimitLayerBuilder {
            key: self.key,
            store: self.store,
            rejection,
            settings: self.settings,
        }
    }

    /// How many cells each request takes (default 1; at most the quota's burst).
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_second(10))
    ///     .cost(5)
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn cost(mut self, cost: u32) -> Self {
        self.settings.cost = cost;
        self
    }

    /// Whether allowed responses carry the `RateLimit-Policy` and `RateLimit` headers too
    /// (default: off; rejections always carry them).
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_second(10))
    ///     .headers_on_success(true)
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn headers_on_success(mut self, enabled: bool) -> Self {
        self.settings.headers_on_success = enabled;
        self
    }

    /// What to do with requests that have no key (default: [`MissingKey::Reject`] with 500,
    /// and a warning that says what to fix).
    ///
    /// ```
    /// use tower_ratelimit::{Header, MissingKey, Quota, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_second(10))
    ///     .key(Header::new("x-api-key"))
    ///     .on_missing_key(MissingKey::Allow)
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn on_missing_key(mut self, missing_key: MissingKey) -> Self {
        self.settings.missing_key = missing_key;
        self
    }

    /// Answers every limited request as a gRPC call, whatever its `content-type`; for layers
    /// that only ever sit in front of gRPC services.
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_second(10))
    ///     .for_grpc()
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn for_grpc(mut self) -> Self {
        self.settings.grpc_always = true;
        self
    }

    /// The policy name in the `RateLimit-Policy` and `RateLimit` headers (default `default`).
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_second(10))
    ///     .policy_name("api")
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        self.settings.policy_name = name.into();
        self
    }
}

impl<E, St, R> RateLimitLayerBuilder<E, St, R> {
    /// The layer, or an error naming what cannot work: no quota, a cost of zero or above the
    /// burst, a policy name that cannot go in a header.
    pub fn build(self) -> Result<RateLimitLayer<E, St, R>, ConfigError> {
        let settings = self.settings;
        let quota = settings.quota.ok_or_else(|| {
            ConfigError::new("RateLimitLayer has no quota: call `.quota(Quota::per_second(n))`")
        })?;
        if settings.cost == 0 || settings.cost > quota.burst() {
            return Err(ConfigError::new(format!(
                "RateLimitLayer cost {} does not fit the quota's burst {}: use a cost from 1 to the burst",
                settings.cost,
                quota.burst()
            )));
        }
        if !response::valid_policy_name(&settings.policy_name) {
            return Err(ConfigError::new(format!(
                "RateLimitLayer policy name {:?} cannot go in a header: use printable ASCII \
                 without quotes or backslashes",
                settings.policy_name
            )));
        }
        let headers = Arc::new(HeaderSpec {
            policy: response::policy_header(&settings.policy_name, &quota),
            name: settings.policy_name.into_boxed_str(),
        });
        Ok(RateLimitLayer {
            config: Arc::new(Config {
                quota,
                key: self.key,
                store: self.store,
                rejection: self.rejection,
                cost: settings.cost,
                headers_on_success: settings.headers_on_success,
                missing_key: settings.missing_key,
                grpc_always: settings.grpc_always,
                headers,
                missing_key_log: Throttle::new(Duration::from_secs(10)),
                store_error_log: Throttle::new(Duration::from_secs(10)),
                rejection_log: Throttle::new(Duration::from_secs(1)),
            }),
        })
    }
}

/// The shared state of one layer: everything a request needs besides the inner service.
pub(crate) struct Config<E, St, R> {
    pub(crate) quota: Quota,
    pub(crate) key: E,
    pub(crate) store: St,
    pub(crate) rejection: R,
    pub(crate) cost: u32,
    pub(crate) headers_on_success: bool,
    pub(crate) missing_key: MissingKey,
    pub(crate) grpc_always: bool,
    pub(crate) headers: Arc<HeaderSpec>,
    pub(crate) missing_key_log: Throttle,
    pub(crate) store_error_log: Throttle,
    pub(crate) rejection_log: Throttle,
}

/// What the `RateLimit` headers need besides a decision.
#[derive(Debug)]
pub(crate) struct HeaderSpec {
    pub(crate) name: Box<str>,
    pub(crate) policy: HeaderValue,
}

impl HeaderSpec {
    pub(crate) fn insert(&self, headers: &mut http::HeaderMap, decision: &Decision) {
        response::insert_headers(headers, &self.policy, &self.name, decision);
    }
}

/// The headers an allowed response gets when the layer adds them on success.
pub(crate) type SuccessHeaders = (Decision, Arc<HeaderSpec>);

/// What the service does with a request once the store has answered.
pub(crate) enum Verdict {
    /// Call the inner service, adding the headers of this decision to its response if set.
    Allow(Option<Box<SuccessHeaders>>),
    /// Answer with this response; the inner service is not called. Boxed, like the headers,
    /// so that the verdict and the response future of an allowed request stay small.
    Respond(Box<Response<Bytes>>),
}

impl<E, St, R: MakeRejection> Config<E, St, R> {
    /// The content type of a gRPC answer to `req`, if it gets one.
    fn grpc<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        response::grpc_content_type(req)
            .or_else(|| self.grpc_always.then_some(response::APPLICATION_GRPC))
    }

    /// The verdict for `req` given the store's answer.
    #[inline]
    pub(crate) fn verdict<B, Err: std::error::Error>(
        &self,
        outcome: Result<Decision, Err>,
        req: &Request<B>,
    ) -> Verdict {
        match outcome {
            Ok(decision) if decision.is_allowed() => Verdict::Allow(
                self.headers_on_success
                    .then(|| Box::new((decision, Arc::clone(&self.headers)))),
            ),
            Ok(decision) => {
                let limited = RateLimited::new(decision, self.quota, self.grpc(req));
                if tracing::enabled!(tracing::Level::DEBUG) {
                    if let Some(suppressed) = self.rejection_log.admit() {
                        tracing::debug!(
                            path = req.uri().path(),
                            retry_after_ms = decision.retry_after().as_millis() as u64,
                            similar_rejections_not_logged = suppressed,
                            "rate limited"
                        );
                    }
                }
                let mut response = self.rejection.make_rejection(&limited);
                self.headers.insert(response.headers_mut(), &decision);
                response.extensions_mut().insert(limited);
                Verdict::Respond(Box::new(response))
            }
            Err(error) => {
                if let Some(suppressed) = self.store_error_log.admit() {
                    tracing::warn!(
                        %error,
                        similar_errors_not_logged = suppressed,
                        "rate limit store failed; answering 503 Service Unavailable"
                    );
                }
                Verdict::Respond(Box::new(response::store_unavailable(self.grpc(req))))
            }
        }
    }

    /// The verdict for a request without a key.
    pub(crate) fn missing_key_verdict<B>(&self, req: &Request<B>, hint: &str) -> Verdict {
        match self.missing_key {
            MissingKey::Allow => Verdict::Allow(None),
            MissingKey::Reject(status) => {
                if let Some(suppressed) = self.missing_key_log.admit() {
                    tracing::warn!(
                        path = req.uri().path(),
                        status = status.as_u16(),
                        similar_requests_not_logged = suppressed,
                        "request rejected because it has no rate-limit key: {hint}"
                    );
                }
                Verdict::Respond(Box::new(response::missing_key(status, self.grpc(req))))
            }
        }
    }
}
