//! What a budget is: named [`Policy`]s, stacked, chosen per request, with a cost per request.
//!
//! A policy is a name and a [`Quota`]. A budget is (store, policy name, key): two policies never
//! share state, and two layers that name the same policy on the same store share one budget on
//! purpose. Naming one policy with two different quotas on one store is a
//! [`ConfigError`] when the second layer is built. That check covers one store and its clones:
//! `RedisStore`s of other processes (or other applications) with the same Redis and prefix
//! share each name's keys whatever quota they give it, and each decides the shared state by
//! its own quota (a check under `1/s` spends a second of a `10/s` budget). Give a name one
//! quota everywhere, and a new name to a changed quota that must not mix with the old one
//! while a fleet is being switched.
//!
//! A layer checks each request against a **stack** of policies, all-or-nothing: the request is
//! admitted only if every enforced policy admits it, and a request that an enforced policy
//! denies takes nothing from any (a [shadow](Policy::shadow) policy never denies, and counts
//! the admitted requests as it would enforced). "10 per second and 1000 per hour" is a stack
//! of two policies:
//!
//! ```
//! use tower_ratelimit::{Policy, Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::builder()
//!     .policy(Policy::new("per-second", Quota::per_second(10)))
//!     .policy(Policy::new("per-hour", Quota::per_hour(1000)))
//!     .build()?;
//! assert_eq!(layer.policies().len(), 2);
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```
//!
//! **Tiers** choose the stack per request: a closure over the request names a tier (a
//! `&'static str`, or a `String` or `Arc<str>` for names known at run time; see
//! [`SelectTier`]), and a request whose tier is `None` (or not one of the layer's) gets the
//! default stack.
//! **Cost**: a request takes a fixed number of cells, or as many as a closure over the request
//! says; cost 0 passes without touching the store. **Shadow mode** decides and counts as usual
//! but never rejects. **Bypass** lets requests through before their key is read or any budget
//! is touched (with the `metrics` feature they are counted as `bypassed`).
//!
//! The closures run inside the service's `call`, in that order: bypass, then (after the key)
//! tier, then cost. The layer does not catch a panic in one: it unwinds out of `call` as a
//! panic of the inner service would.
//!
//! ```
//! use axum::extract::Request;
//! use tower_ratelimit::{IpNet, Policy, Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::builder()
//!     .key(|req: &Request| req.headers().get("x-api-key").map(|v| v.as_bytes().to_vec()))
//!     .policy(Policy::new("free", Quota::per_minute(10)))
//!     .tier("pro", [Policy::new("pro", Quota::per_minute(1000))])
//!     .select_tier(|req: &Request| {
//!         let key = req.headers().get("x-api-key")?.as_bytes();
//!         key.starts_with(b"pro-").then_some("pro")
//!     })
//!     .cost_by(|req: &Request| if req.uri().path() == "/batch" { 10 } else { 1 })
//!     .bypass(|req: &Request| req.uri().path() == "/health")
//!     .build()?;
//! # Ok::<(), tower_ratelimit::ConfigError>(())
//! ```
//!
//! With the `serde` feature a [`Policy`] reads from a config file as
//! `{ name = "search", quota = "10/s", shadow = false }`; see its `Deserialize` implementation.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::Request;

use crate::key::{group, peer_addr};
use crate::{ConfigError, ForwardedIp, IpNet, Quota};

/// A named quota: the unit of a budget and of the `RateLimit` headers.
///
/// ```
/// use tower_ratelimit::{Policy, Quota};
///
/// let policy = Policy::new("search", "10/s".parse()?).shadow(true);
/// assert_eq!(policy.name(), "search");
/// assert_eq!(policy.quota(), &Quota::per_second(10));
/// assert!(policy.is_shadow());
/// # Ok::<(), tower_ratelimit::QuotaError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    name: Arc<str>,
    quota: Quota,
    shadow: bool,
}

impl Policy {
    /// The policy `name` with `quota`, enforced. The name is checked when a layer is built:
    /// 1 to 64 printable ASCII characters without `"`, `\`, `{` or `}`.
    #[must_use]
    pub fn new(name: impl Into<Arc<str>>, quota: Quota) -> Self {
        Policy {
            name: name.into(),
            quota,
            shadow: false,
        }
    }

    /// Shadow (dry-run) mode: the policy decides and takes cells as usual, and what it would
    /// have limited is logged and counted, but it never rejects a request. As usual means as
    /// it would enforced: in a stack, a request that an enforced policy denies takes nothing
    /// from the shadow policy either, so a client retrying while it is limited does not spend
    /// the trial's budget, and the count is what enforcing it would limit.
    ///
    /// The cells it takes are its budget's, which is (store, name, key) whether or not the
    /// policy is a shadow: a shadow policy that names an enforced one on the same store (same
    /// name, same quota) spends that policy's cells, and its traffic can get the enforced
    /// layer's requests limited. Give a trial a name of its own.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// use http::{Request, Response, StatusCode};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_ratelimit::{Global, Policy, Quota, RateLimitLayer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RateLimitLayer::builder()
    ///     .policy(Policy::new("trial", Quota::per_minute(1)).shadow(true))
    ///     .key(Global)
    ///     .build()?;
    /// let inner = service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// });
    /// let svc = layer.clone().layer(inner);
    ///
    /// for _ in 0..3 {
    ///     assert_eq!(svc.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
    /// }
    /// // All three passed; the policy would have limited the last two.
    /// assert_eq!(layer.shadow_limited("trial"), 2);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The policy's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's quota.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Whether the policy is in shadow mode.
    #[must_use]
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The name, or an error saying why it cannot be used.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        validate_name("policy", &self.name)
    }
}

/// Whether `name` can name a policy (or a tier: `what`), or an error saying why not.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && !matches!(b, b'"' | b'\\' | b'{' | b'}'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{what} name {name:?} cannot be used: use 1 to 64 printable ASCII characters \
             without `\"`, `\\`, `{{` or `}}`"
        )))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Policy");
        s.field("name", &self.name).field("quota", &self.quota);
        if self.shadow {
            s.field("shadow", &true);
        }
        s.finish()
    }
}

impl fmt::Display for Policy {
    /// `name (quota)`, such as `search (10/s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.quota)?;
        if self.shadow {
            f.write_str(", shadow")?;
        }
        Ok(())
    }
}

/// `Deserialize` for [`Policy`], with the `serde` feature.
#[cfg(feature = "serde")]
mod serde_impls {
    use std::fmt;

    use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::{validate_name, Policy};
    use crate::Quota;

    /// Reads a policy from a config file: a `name`, a `quota` in either form that [`Quota`]
    /// reads, and `shadow` (default `false`). Any other field is an error, and so is a name that
    /// no layer could use.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tower_ratelimit::{Policy, Quota};
    ///
    /// #[derive(Deserialize)]
    /// struct Config {
    ///     api: Vec<Policy>,
    /// }
    ///
    /// let config: Config = toml::from_str(r#"
    ///     [[api]]
    ///     name = "per-second"
    ///     quota = "10/s; burst=20"
    ///
    ///     [[api]]
    ///     name = "per-hour"
    ///     quota = { rate = 1000, per = "h" }
    ///     shadow = true
    /// "#)?;
    /// assert_eq!(config.api, [
    ///     Policy::new("per-second", Quota::per_second(10).allow_burst(20)),
    ///     Policy::new("per-hour", Quota::per_hour(1000)).shadow(true),
    /// ]);
    /// # Ok::<(), toml::de::Error>(())
    /// ```
    impl<'de> Deserialize<'de> for Policy {
        fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
        where
            D: Deserializer<'de>,
        {
            // A map only: a derived struct would also read a list of its fields in order.
            deserializer.deserialize_map(PolicyVisitor)
        }
    }

    /// Reads the table of a policy.
    struct PolicyVisitor;

    /// The fields of a policy.
    #[derive(Deserialize)]
    #[serde(rename = "Policy", deny_unknown_fields)]
    struct Fields {
        #[serde(deserialize_with = "name")]
        name: String,
        quota: Quota,
        #[serde(default)]
        shadow: bool,
    }

    impl<'de> Visitor<'de> for PolicyVisitor {
        type Value = Policy;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a policy: a table such as { name = \"search\", quota = \"10/s\" }")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Policy, A::Error> {
            let Fields {
                name,
                quota,
                shadow,
            } = Fields::deserialize(MapAccessDeserializer::new(map))?;
            Ok(Policy::new(name, quota).shadow(shadow))
        }
    }

    /// A policy name that a layer can use.
    fn name<'de, D>(deserializer: D) -> Result<String, D::Error>
    where
        D: Deserializer<'de>,
    {
        let name = String::deserialize(deserializer)?;
        validate_name("policy", &name).map_err(de::Error::custom)?;
        Ok(name)
    }
}

/// Checks a stack of policies: non-empty, valid names, no name twice.
pub(crate) fn validate_stack(tier: &str, policies: &[Policy]) -> Result<(), ConfigError> {
    validate_name("tier", tier)?;
    if policies.is_empty() {
        return Err(ConfigError::new(format!(
            "RateLimitLayer tier {tier:?} has no policy: call `.policy(Policy::new(name, quota))` \
             (or `.quota(..)`) for the default tier, or give `.tier(name, [..])` at least one"
        )));
    }
    for (i, policy) in policies.iter().enumerate() {
        policy.validate()?;
        if policies[..i].iter().any(|p| p.name == policy.name) {
            return Err(ConfigError::new(format!(
                "RateLimitLayer tier {tier:?} names policy {:?} twice: give each policy of a \
                 stack its own name",
                policy.name()
            )));
        }
    }
    Ok(())
}

/// How many cells a request takes: a fixed number (`u32`) or a closure over the request.
///
/// A cost of 0 admits the request without touching the store. A cost above the burst of an
/// enforced policy can never be admitted: the request is answered without a `Retry-After` (by
/// default `413 Content Too Large`; see [`MakeRejection`](crate::MakeRejection)).
///
/// ```
/// use http::Request;
/// use tower_ratelimit::Cost;
///
/// let by_batch = |req: &Request<()>| {
///     req.headers().get("x-batch-size")
///         .and_then(|v| v.to_str().ok()?.parse().ok())
///         .unwrap_or(1)
/// };
/// let req = Request::builder().header("x-batch-size", "7").body(()).unwrap();
/// assert_eq!(by_batch.cost(&req), 7);
/// assert_eq!(Cost::<()>::cost(&3u32, &req), 3);
/// ```
pub trait Cost<B> {
    /// The number of cells `req` takes.
    fn cost(&self, req: &Request<B>) -> u32;
}

impl<B> Cost<B> for u32 {
    #[inline]
    fn cost(&self, _: &Request<B>) -> u32 {
        *self
    }
}

impl<B, F> Cost<B> for F
where
    F: Fn(&Request<B>) -> u32,
{
    #[inline]
    fn cost(&self, req: &Request<B>) -> u32 {
        self(req)
    }
}

/// Which tier a request belongs to: a closure `Fn(&Request<B>) -> Option<N>` naming one of
/// the layer's [`tier`](crate::RateLimitLayerBuilder::tier)s, where the name `N` is a
/// `&'static str` or any owned `AsRef<str>` (an `Arc<str>` or `String` for names read from a
/// configuration; a name cannot borrow from the request), or [`DefaultTier`].
///
/// `None`, `"default"` (the name of the tier of `.quota` and `.policy`), or a name the layer has
/// no tier for (which is logged), means the default tier.
///
/// ```
/// use std::sync::Arc;
/// use axum::extract::Request;
/// use tower_ratelimit::{Policy, Quota, RateLimitLayer, SelectTier};
///
/// /// The plan an authentication layer put in the request's extensions.
/// #[derive(Clone)]
/// struct Plan(Arc<str>);
///
/// // Tier names as a configuration file would give them.
/// let plans = [("pro", 1000), ("partner", 5000)];
/// let mut builder = RateLimitLayer::builder().policy(Policy::new("free", Quota::per_minute(10)));
/// for (plan, per_minute) in plans {
///     builder = builder.tier(plan, [Policy::new(plan, Quota::per_minute(per_minute))]);
/// }
/// let plan_of = |req: &Request| req.extensions().get::<Plan>().map(|plan| plan.0.clone());
///
/// let mut req = Request::new(axum::body::Body::empty());
/// req.extensions_mut().insert(Plan("partner".into()));
/// assert_eq!(plan_of.select_tier(&req).as_deref(), Some("partner"));
///
/// let layer = builder.select_tier(plan_of).build()?;
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
pub trait SelectTier<B> {
    /// The name of a tier.
    type Name: AsRef<str>;

    /// The tier of `req`, or `None` for the default.
    fn select_tier(&self, req: &Request<B>) -> Option<Self::Name>;
}

/// Every request is in the default tier.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultTier;

impl<B> SelectTier<B> for DefaultTier {
    type Name = &'static str;

    #[inline]
    fn select_tier(&self, _: &Request<B>) -> Option<&'static str> {
        None
    }
}

impl<B, F, N> SelectTier<B> for F
where
    F: Fn(&Request<B>) -> Option<N>,
    N: AsRef<str>,
{
    type Name = N;

    #[inline]
    fn select_tier(&self, req: &Request<B>) -> Option<N> {
        self(req)
    }
}

/// Requests that skip the limit: a predicate `Fn(&Request<B>) -> bool`, an [`AllowIps`] list,
/// or [`NoBypass`]. A bypassed request is passed on before its key is read; it takes nothing
/// and gets no rate-limit headers.
pub trait Bypass<B> {
    /// Whether `req` skips the limit.
    fn bypass(&self, req: &Request<B>) -> bool;
}

/// No request skips the limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBypass;

impl<B> Bypass<B> for NoBypass {
    #[inline]
    fn bypass(&self, _: &Request<B>) -> bool {
        false
    }
}

impl<B, F> Bypass<B> for F
where
    F: Fn(&Request<B>) -> bool,
{
    #[inline]
    fn bypass(&self, req: &Request<B>) -> bool {
        self(req)
    }
}

/// Lets requests from peers in the given networks through unlimited: health checkers,
/// internal services, the office.
///
/// The peer address is the one [`PeerIp`](crate::PeerIp) reads; a request without one is not
/// bypassed. Behind a load balancer or reverse proxy the peer of every request is a proxy: a
/// list that holds a proxy's address (a private network such as `10.0.0.0/8` often does) lets
/// every request through that proxy bypass the limit. There, give the list the proxies with
/// [`behind`](AllowIps::behind), so that it reads the client address they forwarded.
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tower_ratelimit::{AllowIps, Bypass};
///
/// let internal = AllowIps::new(["10.0.0.0/8", "127.0.0.1"])?;
/// let mut req = Request::new(());
/// req.extensions_mut().insert("10.1.2.3:5000".parse::<SocketAddr>().unwrap());
/// assert!(internal.bypass(&req));
/// req.extensions_mut().insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
/// assert!(!internal.bypass(&req));
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct AllowIps {
    networks: Arc<[IpNet]>,
    /// The trusted proxies, if the list reads the client address they forwarded.
    proxies: Option<ForwardedIp>,
}

impl AllowIps {
    /// An allow-list of networks in CIDR form (`10.0.0.0/8`, `2001:db8::/32`) or single
    /// addresses; an error names the first entry that is neither.
    pub fn new<I>(networks: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .map(|net| net.as_ref().parse::<IpNet>())
            .collect::<Result<_, _>>()?;
        Ok(AllowIps {
            networks,
            proxies: None,
        })
    }

    /// Reads the client address as `proxies` does (the address that trusted proxies forwarded,
    /// IPv6 not grouped) instead of the peer's: a request is bypassed if its client is in the
    /// list, whichever proxy it came through, and a client cannot get in by writing a listed
    /// address into the forwarding header itself. A request whose client the proxies leave
    /// unknown (a hop of theirs that holds no readable address) is not bypassed, even where the
    /// list holds the proxies' own network.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use http::Request;
    /// use tower_ratelimit::{AllowIps, Bypass, ForwardedIp};
    ///
    /// let proxies = ForwardedIp::new(["10.0.0.0/8"])?;
    /// let internal = AllowIps::new(["10.0.0.0/8", "192.0.2.7"])?.behind(proxies);
    /// let from_lb = |forwarded: &str| {
    ///     let mut req = Request::builder()
    ///         .header("x-forwarded-for", forwarded)
    ///         .body(())
    ///         .unwrap();
    ///     req.extensions_mut().insert("10.0.0.2:51000".parse::<SocketAddr>().unwrap());
    ///     req
    /// };
    /// assert!(internal.bypass(&from_lb("192.0.2.7")), "the monitor");
    /// assert!(!internal.bypass(&from_lb("203.0.113.9")), "a client through the proxy");
    /// assert!(!internal.bypass(&from_lb("192.0.2.7, 203.0.113.9")), "a forged hop");
    /// assert!(!internal.bypass(&from_lb("unknown")), "no client address");
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn behind(mut self, proxies: ForwardedIp) -> Self {
        self.proxies = Some(proxies);
        self
    }

    /// Whether `ip` is in one of the networks. An IPv4 address that reaches the server as
    /// IPv6 (IPv4-mapped, or a public one through a NAT64 translator's `64:ff9b::/96` or a
    /// 6to4 or Teredo tunnel) is the IPv4 address, as [`PeerIp`](crate::PeerIp) keys it; such
    /// an IPv6 address also matches a network written in IPv6.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        // The address as `PeerIp` keys it; it differs only for an IPv6 address made from an
        // IPv4 one.
        let keyed = group(ip, 128);
        self.networks
            .iter()
            .any(|net| net.contains(keyed) || (keyed != ip && net.contains(ip)))
    }
}

impl FromIterator<IpNet> for AllowIps {
    /// An allow-list of networks parsed already, such as from a configuration file.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_ratelimit::{AllowIps, IpNet};
    ///
    /// let monitor: IpAddr = "192.0.2.7".parse()?;
    /// let allow: AllowIps = [IpNet::from(monitor), "10.0.0.0/8".parse()?].into_iter().collect();
    /// assert!(allow.contains(monitor));
    /// assert!(!allow.contains("192.0.2.8".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn from_iter<I: IntoIterator<Item = IpNet>>(networks: I) -> Self {
        AllowIps {
            networks: networks.into_iter().collect(),
            proxies: None,
        }
    }
}

impl<B> Bypass<B> for AllowIps {
    fn bypass(&self, req: &Request<B>) -> bool {
        let client = match &self.proxies {
            Some(proxies) => proxies.client_ip(req),
            None => peer_addr(req.extensions()).map(|addr| addr.ip()),
        };
        client.is_some_and(|ip| self.contains(ip))
    }
}

/// The per-request rules of a layer besides its key: cost, tier choice and bypass. Built by
/// [`RateLimitLayerBuilder`](crate::RateLimitLayerBuilder); it only appears in type signatures.
#[derive(Clone, Debug)]
pub struct Rules<C = u32, T = DefaultTier, P = NoBypass> {
    pub(crate) cost: C,
    pub(crate) tier: T,
    pub(crate) bypass: P,
}

impl Default for Rules {
    /// One cell per request, one tier, no bypass.
    fn default() -> Self {
        Rules {
            cost: 1,
            tier: DefaultTier,
            bypass: NoBypass,
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    fn read(toml: &str) -> Result<Policy, String> {
        toml::from_str(toml).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    #[test]
    fn deserializes_name_quota_in_either_form_and_shadow() {
        assert_eq!(
            read("name = \"search\"\nquota = \"10/s\""),
            Ok(Policy::new("search", Quota::per_second(10)))
        );
        assert_eq!(
            read(
                "name = \"search\"\nquota = { rate = 10, per = \"s\", burst = 20 }\nshadow = true"
            ),
            Ok(Policy::new("search", Quota::per_second(10).allow_burst(20)).shadow(true))
        );
    }

    #[test]
    fn deserialize_reads_a_table_not_a_list_of_its_fields() {
        #[derive(Debug, serde::Deserialize)]
        struct Config {
            #[allow(dead_code)]
            search: Policy,
        }
        for toml in [
            "search = [\"search\", \"10/s\", true]",
            "[[search]]\nname = \"search\"\nquota = \"10/s\"",
        ] {
            let error = toml::from_str::<Config>(toml).unwrap_err();
            assert!(
                error
                    .message()
                    .starts_with("invalid type: sequence, expected a policy"),
                "{toml}: {error}"
            );
        }
    }

    #[test]
    fn deserialize_rejects_unknown_fields_and_unusable_names() {
        for (toml, message) in [
            (
                "name = \"search\"\nquota = \"10/s\"\nshadown = true",
                "unknown field `shadown`",
            ),
            ("name = \"search\"", "missing field `quota`"),
            (
                "name = \"search\"\nquota = \"10/s\"\nshadow = \"yes\"",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "name = \"search\"\nquota = \"0/s\"",
                "invalid quota \"0/s\": the rate is 0",
            ),
            (
                "name = \"a{b}\"\nquota = \"10/s\"",
                "policy name \"a{b}\" cannot be used",
            ),
        ] {
            let error = read(toml).unwrap_err();
            assert!(error.contains(message), "{toml}: {error}");
        }
    }
}
