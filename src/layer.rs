//! [`RateLimitLayer`] and its builder: validation and registration, nothing on the request path.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::decide::{Config, Logs, MissingKey, Tier};
use crate::policy::{validate_stack, DefaultTier, NoBypass, Rules};
use crate::response::{MakeRejection, MissingKeyRejected};
use crate::{ConfigError, DefaultRejection, MemoryStore, PeerIp, Policy, Quota, RateLimit, Store};

/// The name of the tier that requests get unless the tier selector names another.
const DEFAULT_TIER: &str = "default";

/// Applies [`RateLimit`] to a service: one shared budget, however often the service is cloned.
///
/// `RateLimitLayer::new(quota)` limits each peer IP address with an in-memory store; the
/// [builder](RateLimitLayer::builder) picks the key, the store, the policies and the
/// rejection.
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
pub struct RateLimitLayer<E = PeerIp, St: Store = MemoryStore, R = DefaultRejection, X = Rules> {
    config: Arc<Config<E, St, R, X>>,
}

impl RateLimitLayer {
    /// Limits every peer IP address to `quota` (a policy named `default`), with a fresh
    /// [`MemoryStore`].
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::new(tower_ratelimit::Quota::per_second(5));
    /// assert_eq!(layer.policies()[0].name(), "default");
    /// ```
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::builder()
            .quota(quota)
            .build()
            .expect("one valid quota on a fresh store is a valid configuration")
    }

    /// A builder with the defaults of [`RateLimitLayer::new`] and no policy yet.
    ///
    /// ```
    /// use tower_ratelimit::{Header, MissingKey, Policy, RateLimitLayer};
    /// use http::StatusCode;
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("api", "100/min; burst=20".parse()?))
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
            rules: Rules::default(),
            settings: Settings {
                policies: Vec::new(),
                tiers: Vec::new(),
                fixed_cost: Some(1),
                headers_on_success: false,
                missing_key: MissingKey::default(),
                grpc_always: false,
                selects_tier: false,
            },
        }
    }
}

impl<E, St: Store, R, X> RateLimitLayer<E, St, R, X> {
    /// The policies of the default tier, in stack order.
    #[must_use]
    pub fn policies(&self) -> &[Policy] {
        self.config.tiers[0].policies()
    }

    /// The store that holds the budgets.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.config.store
    }

    /// How many requests the shadow policy `name` would have limited so far (0 for a policy
    /// the layer does not have or that is enforced).
    ///
    /// ```
    /// use tower_ratelimit::{Policy, Quota, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("trial", Quota::per_second(1)).shadow(true))
    ///     .build()?;
    /// assert_eq!(layer.shadow_limited("trial"), 0);
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn shadow_limited(&self, name: &str) -> u64 {
        self.config.shadow_limited_count(name)
    }
}

impl<E, St: Store, R, X> Clone for RateLimitLayer<E, St, R, X> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            config: Arc::clone(&self.config),
        }
    }
}

impl<E, St: Store, R, X> fmt::Debug for RateLimitLayer<E, St, R, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("tiers", &self.config.debug_tiers())
            .finish_non_exhaustive()
    }
}

impl<S, E, St: Store, R, X> Layer<S> for RateLimitLayer<E, St, R, X> {
    type Service = RateLimit<S, E, St, R, X>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_config(inner, Arc::clone(&self.config))
    }
}

/// Builds a [`RateLimitLayer`]; see [`RateLimitLayer::builder`].
///
/// Setting the key, the store, the rejection, a cost closure, the tier selector or the bypass
/// changes the builder's type; every other setting keeps it. [`policy`](Self::policy),
/// [`quota`](Self::quota) and [`tier`](Self::tier) add to what earlier calls gave; every other
/// setting replaces it (two [`bypass`](Self::bypass) calls keep the second predicate only).
/// [`build`](RateLimitLayerBuilder::build) checks the whole configuration and registers every
/// stack with the store.
#[must_use]
pub struct RateLimitLayerBuilder<
    E = PeerIp,
    St = MemoryStore,
    R = DefaultRejection,
    C = u32,
    T = DefaultTier,
    P = NoBypass,
> {
    key: E,
    store: St,
    rejection: R,
    rules: Rules<C, T, P>,
    settings: Settings,
}

/// The builder's settings that do not change its type.
#[derive(Debug)]
struct Settings {
    policies: Vec<Policy>,
    tiers: Vec<(String, Vec<Policy>)>,
    /// The cost of every request, unless a cost closure is set.
    fixed_cost: Option<u32>,
    headers_on_success: bool,
    missing_key: MissingKey,
    grpc_always: bool,
    /// Whether a tier selector was given.
    selects_tier: bool,
}

impl<E, St, R, C, T, P> fmt::Debug for RateLimitLayerBuilder<E, St, R, C, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<E, St, R, C, T, P> RateLimitLayerBuilder<E, St, R, C, T, P> {
    /// Adds a policy named `default` with `quota` to the default tier; the short form of
    /// [`policy`](RateLimitLayerBuilder::policy). Call it once: a second call adds a second
    /// policy named `default`, which [`build`](RateLimitLayerBuilder::build) refuses; stack
    /// more limits with named policies.
    ///
    /// ```
    /// let layer = tower_ratelimit::RateLimitLayer::builder()
    ///     .quota(tower_ratelimit::Quota::per_minute(60))
    ///     .build()?;
    /// assert_eq!(layer.policies()[0].name(), "default");
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn quota(self, quota: Quota) -> Self {
        self.policy(Policy::new(DEFAULT_TIER, quota))
    }

    /// Adds `policy` to the stack of the default tier. Call it again to stack more: a request
    /// is admitted only if every policy admits it.
    ///
    /// ```
    /// use tower_ratelimit::{Policy, Quota, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("per-second", Quota::per_second(10)))
    ///     .policy(Policy::new("per-hour", Quota::per_hour(1000)))
    ///     .build()?;
    /// assert_eq!(layer.policies().len(), 2);
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn policy(mut self, policy: Policy) -> Self {
        self.settings.policies.push(policy);
        self
    }

    /// Adds the tier `name` with its stack of policies, for the requests that the
    /// [tier selector](RateLimitLayerBuilder::select_tier) puts in it (tiers without a
    /// selector are a build error: no request could get them). A tier's name follows the rule
    /// of a policy's: 1 to 64 printable ASCII characters without `"`, `\`, `{` or `}`.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Policy, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("free", Quota::per_minute(10)))
    ///     .tier("pro", [Policy::new("pro", Quota::per_minute(1000))])
    ///     .select_tier(|req: &Request<()>| req.headers().contains_key("x-pro").then_some("pro"))
    ///     .key(Global)
    ///     .headers_on_success(true)
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    ///
    /// let free = svc.clone().oneshot(Request::new(())).await?;
    /// assert_eq!(free.headers()["ratelimit-policy"], r#""free";q=10;w=60"#);
    /// let pro = Request::builder().header("x-pro", "1").body(())?;
    /// let pro = svc.clone().oneshot(pro).await?;
    /// assert_eq!(pro.headers()["ratelimit-policy"], r#""pro";q=1000;w=60"#);
    /// # Ok(()) }
    /// ```
    pub fn tier(
        mut self,
        name: impl Into<String>,
        policies: impl IntoIterator<Item = Policy>,
    ) -> Self {
        self.settings
            .tiers
            .push((name.into(), policies.into_iter().collect()));
        self
    }

    /// Chooses each request's tier: a closure `Fn(&Request<B>) -> Option<N>` that names one of
    /// the [tiers](RateLimitLayerBuilder::tier), the name being a `&'static str` or any owned
    /// `AsRef<str>` (see [`SelectTier`](crate::SelectTier)); `None`, `"default"` (the default
    /// tier's name) or an unknown name (which is logged) means the default tier.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Policy, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("free", Quota::per_minute(1)))
    ///     .tier("pro", [Policy::new("pro", Quota::per_minute(1000))])
    ///     .select_tier(|req: &Request<()>| req.headers().contains_key("x-pro").then_some("pro"))
    ///     .key(Global)
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    /// let pro = || Request::builder().header("x-pro", "1").body(()).unwrap();
    ///
    /// assert_eq!(svc.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
    /// let limited = svc.clone().oneshot(Request::new(())).await?;
    /// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    /// // The free budget is spent; pro requests draw on the pro one.
    /// assert_eq!(svc.clone().oneshot(pro()).await?.status(), StatusCode::OK);
    /// assert_eq!(svc.clone().oneshot(pro()).await?.status(), StatusCode::OK);
    /// # Ok(()) }
    /// ```
    pub fn select_tier<T2>(mut self, select: T2) -> RateLimitLayerBuilder<E, St, R, C, T2, P> {
        self.settings.selects_tier = true;
        self.map_rules(|rules| Rules {
            cost: rules.cost,
            tier: select,
            bypass: rules.bypass,
        })
    }

    /// How many cells each request takes, from the request: a closure
    /// `Fn(&Request<B>) -> u32` (batch size, body size, query complexity). Cost 0 passes
    /// without touching the store; a cost above an enforced policy's burst is answered
    /// `413 Content Too Large`.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(10))
    ///     .key(Global)
    ///     .cost_by(|req: &Request<()>| {
    ///         req.headers().get("x-batch").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1)
    ///     })
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    /// let batch = |n: u32| Request::builder().header("x-batch", n).body(()).unwrap();
    ///
    /// assert_eq!(svc.clone().oneshot(batch(8)).await?.status(), StatusCode::OK);
    /// // Two cells left: a batch of 3 is limited, a single request passes.
    /// assert_eq!(svc.clone().oneshot(batch(3)).await?.status(), StatusCode::TOO_MANY_REQUESTS);
    /// assert_eq!(svc.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
    /// // A batch above the burst could never pass.
    /// assert_eq!(svc.clone().oneshot(batch(11)).await?.status(), StatusCode::PAYLOAD_TOO_LARGE);
    /// # Ok(()) }
    /// ```
    pub fn cost_by<C2>(mut self, cost: C2) -> RateLimitLayerBuilder<E, St, R, C2, T, P> {
        self.settings.fixed_cost = None;
        self.map_rules(|rules| Rules {
            cost,
            tier: rules.tier,
            bypass: rules.bypass,
        })
    }

    /// Lets some requests through without limiting them, before their key is read: a predicate
    /// `Fn(&Request<B>) -> bool` or an [`AllowIps`](crate::AllowIps) list.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(1))
    ///     .key(Global)
    ///     .bypass(|req: &Request<()>| req.uri().path() == "/health")
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    /// let get = |path| Request::get(path).body(()).unwrap();
    ///
    /// assert_eq!(svc.clone().oneshot(get("/")).await?.status(), StatusCode::OK);
    /// assert_eq!(svc.clone().oneshot(get("/")).await?.status(), StatusCode::TOO_MANY_REQUESTS);
    /// // The budget is spent, and health checks still pass.
    /// assert_eq!(svc.clone().oneshot(get("/health")).await?.status(), StatusCode::OK);
    /// # Ok(()) }
    /// ```
    pub fn bypass<P2>(self, bypass: P2) -> RateLimitLayerBuilder<E, St, R, C, T, P2> {
        self.map_rules(|rules| Rules {
            cost: rules.cost,
            tier: rules.tier,
            bypass,
        })
    }

    /// The same builder with its rules replaced by `f` of them.
    fn map_rules<C2, T2, P2>(
        self,
        f: impl FnOnce(Rules<C, T, P>) -> Rules<C2, T2, P2>,
    ) -> RateLimitLayerBuilder<E, St, R, C2, T2, P2> {
        RateLimitLayerBuilder {
            key: self.key,
            store: self.store,
            rejection: self.rejection,
            rules: f(self.rules),
            settings: self.settings,
        }
    }

    /// How requests are keyed (default: [`PeerIp`]). Any [`KeyExtractor`](crate::KeyExtractor)
    /// whose key is [`KeyBytes`](crate::KeyBytes), including a closure
    /// `Fn(&Request<B>) -> Option<K>`.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Header, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(1))
    ///     .key(Header::new("x-api-key"))
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    /// let from = |key| Request::builder().header("x-api-key", key).body(()).unwrap();
    ///
    /// assert_eq!(svc.clone().oneshot(from("alice")).await?.status(), StatusCode::OK);
    /// let limited = svc.clone().oneshot(from("alice")).await?;
    /// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    /// // Each key has a budget of its own.
    /// assert_eq!(svc.clone().oneshot(from("bob")).await?.status(), StatusCode::OK);
    /// # Ok(()) }
    /// ```
    pub fn key<E2>(self, key: E2) -> RateLimitLayerBuilder<E2, St, R, C, T, P> {
        RateLimitLayerBuilder {
            key,
            store: self.store,
            rejection: self.rejection,
            rules: self.rules,
            settings: self.settings,
        }
    }

    /// Where the budgets live (default: a new [`MemoryStore`]). Pass clones of one store to
    /// several layers: each policy has its own budget, and layers that name the same policy
    /// share it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, ManualClock, MemoryStore, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::builder().clock(clock.clone()).build()?;
    /// let limit = || {
    ///     RateLimitLayer::builder()
    ///         .quota(Quota::per_second(1))
    ///         .key(Global)
    ///         .store(store.clone())
    ///         .build()
    /// };
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let (a, b) = (limit()?.layer(inner), limit()?.layer(inner));
    ///
    /// assert_eq!(a.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
    /// // Both layers name the policy `default` in one store: they share its budget.
    /// let limited = b.clone().oneshot(Request::new(())).await?;
    /// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    /// // The store's clock decides when the budget comes back.
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(b.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
    /// # Ok(()) }
    /// ```
    pub fn store<St2>(self, store: St2) -> RateLimitLayerBuilder<E, St2, R, C, T, P> {
        RateLimitLayerBuilder {
            key: self.key,
            store,
            rejection: self.rejection,
            rules: self.rules,
            settings: self.settings,
        }
    }

    /// How requests that are not served are answered (default: [`DefaultRejection`]): any
    /// [`MakeRejection`](crate::MakeRejection). A closure `Fn(&RateLimited) -> Response<T>`
    /// answers limited requests and leaves the other answers (a cost that can never fit, no
    /// key, a failed store) to the defaults; a type that implements the trait answers them all.
    /// The answer is made on the spot, so its body is bytes (`T: Into<Bytes>`): with axum, build
    /// an `http::Response<String>` rather than calling `into_response()`, whose body is a stream.
    /// [`response`](crate::response) shows a closure and [`MakeRejection`](crate::MakeRejection)
    /// a type, both answering with `application/problem+json`.
    pub fn rejection<R2>(self, rejection: R2) -> RateLimitLayerBuilder<E, St, R2, C, T, P> {
        RateLimitLayerBuilder {
            key: self.key,
            store: self.store,
            rejection,
            rules: self.rules,
            settings: self.settings,
        }
    }

    /// Whether allowed responses carry the `RateLimit-Policy` and `RateLimit` headers too
    /// (default: off; rejections always carry them). A request served without a decision gets
    /// none, as there are no figures to report: one that passes at cost 0, one without a key
    /// that is let through ([`MissingKey::Allow`](crate::MissingKey::Allow), or a dry run),
    /// and one whose store failed under shadow policies alone. When the inner service's
    /// response has these fields already (a limiter further in, an upstream's), the layer's
    /// members follow the ones it has, so that both fields list every policy that checked the
    /// request; give nested layers distinct policy names, so that clients can tell their
    /// members apart.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// // Off by default: an allowed response is the inner service's as it is.
    /// let plain = RateLimitLayer::builder().quota(Quota::per_minute(10)).key(Global).build()?;
    /// let res = plain.layer(inner).oneshot(Request::new(())).await?;
    /// assert!(!res.headers().contains_key("ratelimit"));
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(10))
    ///     .key(Global)
    ///     .headers_on_success(true)
    ///     .build()?;
    ///
    /// let res = layer.layer(inner).oneshot(Request::new(())).await?;
    /// assert_eq!(res.status(), StatusCode::OK);
    /// assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=10;w=60"#);
    /// // 9 requests left, and the full budget back in 6 seconds.
    /// assert_eq!(res.headers()["ratelimit"], r#""default";r=9;t=6"#);
    /// # Ok(()) }
    /// ```
    pub fn headers_on_success(mut self, enabled: bool) -> Self {
        self.settings.headers_on_success = enabled;
        self
    }

    /// What to do with requests that have no key (default: [`MissingKey::Reject`] with 500,
    /// and a warning that says what to fix; a 4xx or 3xx answer is the client's doing, logged at
    /// `debug` as the other rejections are). The rejection's
    /// [`make_missing_key`](crate::MakeRejection::make_missing_key) makes the answer; for a
    /// redirect it must set `Location`, which the default's cannot know and the build checks.
    /// A dry run, whose every policy is in [shadow mode](crate::Policy::shadow), rejects
    /// nothing: it serves such requests (with the warning, for a 5xx status).
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Header, MissingKey, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// // By default a request without a key is a server set up wrong: 500.
    /// let default = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(10))
    ///     .key(Header::new("x-api-key"))
    ///     .build()?;
    /// let anonymous = default.layer(inner).oneshot(Request::new(())).await?;
    /// assert_eq!(anonymous.status(), StatusCode::INTERNAL_SERVER_ERROR);
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(10))
    ///     .key(Header::new("x-api-key"))
    ///     .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
    ///     .build()?;
    /// let svc = layer.layer(inner);
    ///
    /// let anonymous = svc.clone().oneshot(Request::new(())).await?;
    /// assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    /// let keyed = Request::builder().header("x-api-key", "k-123").body(())?;
    /// assert_eq!(svc.clone().oneshot(keyed).await?.status(), StatusCode::OK);
    /// # Ok(()) }
    /// ```
    pub fn on_missing_key(mut self, missing_key: MissingKey) -> Self {
        self.settings.missing_key = missing_key;
        self
    }

    /// Answers every request the layer answers itself (limited, a cost too large, no key, a
    /// failed store) as a gRPC call, whatever its `content-type`; for layers that only ever
    /// sit in front of gRPC services.
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(1))
    ///     .key(Global)
    ///     .for_grpc()
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    ///
    /// svc.clone().oneshot(Request::new(())).await?;
    /// // No gRPC `content-type`, and still a gRPC answer: RESOURCE_EXHAUSTED (8).
    /// let limited = svc.clone().oneshot(Request::new(())).await?;
    /// assert_eq!(limited.status(), StatusCode::OK);
    /// assert_eq!(limited.headers()["grpc-status"], "8");
    /// # Ok(()) }
    /// ```
    pub fn for_grpc(mut self) -> Self {
        self.settings.grpc_always = true;
        self
    }
}

impl<E, St, R, T, P> RateLimitLayerBuilder<E, St, R, u32, T, P> {
    /// How many cells each request takes (default 1). 0 lets every request through without
    /// touching the store; a cost above an enforced policy's burst is refused when the layer
    /// is built. For a cost that depends on the request, see
    /// [`cost_by`](RateLimitLayerBuilder::cost_by).
    ///
    /// ```
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Quota, RateLimitLayer};
    /// # use std::convert::Infallible;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(10))
    ///     .key(Global)
    ///     .cost(5)
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.layer(inner);
    ///
    /// let mut statuses = Vec::new();
    /// for _ in 0..3 {
    ///     statuses.push(svc.clone().oneshot(Request::new(())).await?.status());
    /// }
    /// // A burst of 10 at 5 cells a request: two requests pass, the third is limited.
    /// assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    /// # Ok(()) }
    /// ```
    pub fn cost(mut self, cost: u32) -> Self {
        self.rules.cost = cost;
        self.settings.fixed_cost = Some(cost);
        self
    }
}

impl<E, St: Store, R, C, T, P> RateLimitLayerBuilder<E, St, R, C, T, P> {
    /// The layer, or an error naming what cannot work: no policy (for the default tier too,
    /// with other tiers, since requests in no tier get it), a policy name that cannot go
    /// in a header or is used twice in a stack, a tier without a policy, named twice or named
    /// `default` (the name of the tier of `.quota` and `.policy`), a fixed cost above an
    /// enforced policy's burst, tiers without a [tier selector](Self::select_tier), one policy
    /// name given two quotas by two tiers, a missing-key status that is not 3xx, 4xx or 5xx
    /// (or is 304 Not Modified), a redirect whose answer has no `Location` (the default
    /// rejection's has none), or a policy the store refuses (a name registered before with
    /// another quota).
    ///
    /// ```
    /// use http::{Request, StatusCode};
    /// use tower_ratelimit::{MissingKey, Policy, Quota, RateLimitLayer};
    ///
    /// let q = Quota::per_second(10);
    /// let select = |_: &Request<()>| None::<&str>;
    /// assert!(RateLimitLayer::builder().build().is_err());
    /// assert!(RateLimitLayer::builder().policy(Policy::new("a{b}", q)).build().is_err());
    /// assert!(RateLimitLayer::builder().quota(q).quota(q).build().is_err());
    /// let tier = |name: &'static str, policies: Vec<Policy>| {
    ///     RateLimitLayer::builder().quota(q).tier(name, policies).select_tier(select).build()
    /// };
    /// assert!(tier("pro", vec![]).is_err());
    /// assert!(tier("default", vec![Policy::new("pro", q)]).is_err());
    /// assert!(tier("pro", vec![Policy::new("pro", q)]).is_ok());
    /// let twice = RateLimitLayer::builder()
    ///     .quota(q)
    ///     .tier("pro", [Policy::new("pro", q)])
    ///     .tier("pro", [Policy::new("pro", q)])
    ///     .select_tier(select)
    ///     .build();
    /// assert!(twice.is_err());
    /// assert!(RateLimitLayer::builder().quota(q).cost(11).build().is_err());
    /// let shadow = Policy::new("trial", q).shadow(true);
    /// assert!(RateLimitLayer::builder().policy(shadow).cost(11).build().is_ok());
    /// let no_selector = RateLimitLayer::builder().quota(q).tier("pro", [Policy::new("pro", q)]);
    /// assert!(no_selector.build().is_err());
    /// let two_quotas = RateLimitLayer::builder()
    ///     .policy(Policy::new("api", q))
    ///     .tier("pro", [Policy::new("api", Quota::per_second(100))])
    ///     .select_tier(select)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(two_quotas.to_string().contains(r#"tier "default" and 100/s in tier "pro""#));
    /// let ok = MissingKey::Reject(StatusCode::OK);
    /// assert!(RateLimitLayer::builder().quota(q).on_missing_key(ok).build().is_err());
    /// let nowhere = MissingKey::Reject(StatusCode::FOUND);
    /// assert!(RateLimitLayer::builder().quota(q).on_missing_key(nowhere).build().is_err());
    /// let store = tower_ratelimit::MemoryStore::new();
    /// assert!(RateLimitLayer::builder().quota(q).store(store.clone()).build().is_ok());
    /// let other = Quota::per_second(5);
    /// assert!(RateLimitLayer::builder().quota(other).store(store).build().is_err());
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn build(self) -> Result<RateLimitLayer<E, St, R, Rules<C, T, P>>, ConfigError>
    where
        R: MakeRejection,
    {
        let settings = self.settings;
        let mut stacks = Vec::with_capacity(1 + settings.tiers.len());
        stacks.push((DEFAULT_TIER.to_owned(), settings.policies));
        stacks.extend(settings.tiers);
        if let MissingKey::Reject(status) = settings.missing_key {
            // 304 Not Modified tells the client to use its cached copy: served, as well.
            let why = if status.is_informational()
                || status.is_success()
                || status == http::StatusCode::NOT_MODIFIED
            {
                Some("would tell the client it was served")
            } else if status.as_u16() >= 600 {
                Some("is in no class of HTTP status (1xx to 5xx)")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::new(format!(
                    "RateLimitLayer rejects requests without a key with {status}, which {why}: \
                     use an error status, 4xx or 5xx (such as 401), a redirect (3xx, with a \
                     `make_missing_key` that sets its Location), or `MissingKey::Allow` to let \
                     them through unlimited"
                )));
            }
            // A redirect to nowhere: the answer is made once here to see that it says where.
            if status.is_redirection() {
                let answer = self
                    .rejection
                    .make_missing_key(&MissingKeyRejected::new(status, None));
                if !answer.headers().contains_key(http::header::LOCATION) {
                    return Err(ConfigError::new(format!(
                        "RateLimitLayer rejects requests without a key with {status}, a \
                         redirect, but the rejection's `make_missing_key` answers it without a \
                         Location to go to: implement `MakeRejection::make_missing_key` to set \
                         one, or use an error status (such as 401)"
                    )));
                }
            }
        }
        if stacks[0].1.is_empty() && stacks.len() > 1 {
            let names: Vec<&str> = stacks[1..].iter().map(|(name, _)| &name[..]).collect();
            return Err(ConfigError::new(format!(
                "RateLimitLayer has tiers {names:?} but no policy for the default tier, which a \
                 request gets when the tier selector names no tier of the layer: call \
                 `.policy(Policy::new(name, quota))` (or `.quota(..)`) for it"
            )));
        }
        if stacks[0].1.is_empty() {
            return Err(ConfigError::new(
                "RateLimitLayer has no policy: call `.quota(Quota::per_second(n))` or \
                 `.policy(Policy::new(name, quota))`",
            ));
        }
        for (i, (name, policies)) in stacks.iter().enumerate() {
            validate_stack(name, policies)?;
            if i > 0 && name == DEFAULT_TIER {
                return Err(ConfigError::new(format!(
                    "RateLimitLayer has a tier named {DEFAULT_TIER:?}, the name of the tier made \
                     of the policies given by `.quota` and `.policy`: give the tier another name"
                )));
            }
            if stacks[..i].iter().any(|(other, _)| other == name) {
                return Err(ConfigError::new(format!(
                    "RateLimitLayer has two tiers named {name:?}: give each tier its own name"
                )));
            }
            if let Some(cost) = settings.fixed_cost {
                if let Some(p) = policies
                    .iter()
                    .find(|p| !p.is_shadow() && cost > p.quota().burst())
                {
                    return Err(ConfigError::new(format!(
                        "RateLimitLayer cost {cost} does not fit the burst {} of policy {:?}: \
                         no request could ever be admitted; use a cost from 0 to the burst",
                        p.quota().burst(),
                        p.name()
                    )));
                }
            }
        }
        if stacks.len() > 1 && !settings.selects_tier {
            let names: Vec<&str> = stacks[1..].iter().map(|(name, _)| &name[..]).collect();
            return Err(ConfigError::new(format!(
                "RateLimitLayer has tiers {names:?} but no tier selector, so every request \
                 would get the default tier: add `.select_tier(..)` to choose a request's tier"
            )));
        }
        // Every policy of every tier at once first, so that a layer the store refuses
        // registers nothing; then each tier, which can no longer be refused. A policy that two
        // tiers share (one budget, as across layers) goes once; one name that two tiers give
        // two quotas is named here with both tiers, which the store could not tell.
        let mut all: Vec<(&str, Policy)> = Vec::new();
        for (tier, policies) in &stacks {
            for policy in policies {
                match all.iter().find(|(_, p)| p.name() == policy.name()) {
                    None => all.push((tier, policy.clone())),
                    Some((_, p)) if p.quota() == policy.quota() => {}
                    Some((other, p)) => {
                        return Err(ConfigError::new(format!(
                            "RateLimitLayer gives policy {:?} two quotas, {} in tier {other:?} \
                             and {} in tier {tier:?}: one name is one budget with one quota; \
                             give the policies different names",
                            policy.name(),
                            p.quota(),
                            policy.quota()
                        )))
                    }
                }
            }
        }
        let all: Vec<Policy> = all.into_iter().map(|(_, policy)| policy).collect();
        self.store.register(&all)?;
        let mut tiers = Vec::with_capacity(stacks.len());
        for (name, policies) in stacks {
            let cost_by_request = settings.fixed_cost.is_none();
            tiers.push(Tier::new(&self.store, &name, policies, cost_by_request)?);
        }
        Ok(RateLimitLayer {
            config: Arc::new(Config {
                key: self.key,
                store: self.store,
                rejection: self.rejection,
                rules: self.rules,
                // Only an enforced policy has a smallest burst.
                dry_run: tiers.iter().all(|tier| tier.tightest.is_none()),
                tiers: tiers.into(),
                headers_on_success: settings.headers_on_success,
                missing_key: settings.missing_key,
                grpc_always: settings.grpc_always,
                logs: Logs::new(),
                #[cfg(feature = "metrics")]
                metrics: crate::telemetry::LayerMetrics::new(),
            }),
        })
    }
}
