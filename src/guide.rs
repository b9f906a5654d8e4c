//! Which key, store and policies a service needs, how to read limits from a config file, how
//! far one Redis goes, and what a failover costs.
//!
//! # Which key
//!
//! | your service | key |
//! |---|---|
//! | clients reach it directly | [`PeerIp`](crate::PeerIp) (the default; IPv6 grouped by /64) |
//! | behind a load balancer or reverse proxy | [`ForwardedIp`](crate::ForwardedIp) with the proxies' networks |
//! | authenticated API | [`Header`](crate::Header) (`x-api-key`), or a closure reading what your auth layer put in the extensions |
//! | a shared resource as a whole | [`Global`](crate::Global) |
//! | gRPC, per caller and method | `(PeerIp::new(), GrpcMethod)` or `(Header::new("x-api-key"), GrpcMethod)` ([`GrpcMethod`](crate::GrpcMethod) says how to keep made-up methods from making keys) |
//!
//! A key is bytes ([`KeyBytes`](crate::KeyBytes)); any closure returning a `String`, bytes, an
//! integer or a tuple of those works. A key longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)
//! bytes (a bearer token, say) is kept as a SHA-256 digest of its bytes, so clients who choose
//! their key cannot make it cost more memory by making it longer.
//!
//! # Which store
//!
//! - **One process**: [`MemoryStore`](crate::MemoryStore), the default. Nothing to run, bounded
//!   memory, decisions in about a hundred nanoseconds.
//! - **Several processes that must share budgets** (more than one replica, or limits that must
//!   survive a restart): `RedisStore` with the `redis` feature, on one Redis, behind Redis
//!   Sentinel or on a Redis Cluster. One script decides the checks, many to a call under
//!   load; checks of a key that Redis reported spent (a check denied, or allowed but leaving
//!   fewer cells than its cost) are answered locally by the deny cache while that report
//!   still denies them; if Redis goes away the `FailurePolicy` answers (by default each
//!   process limits on its own, which `RedisStore::is_degraded` reports).
//!
//! The two stores decide the same history identically, so moving from one to the other changes
//! nothing a client sees, but for one unit: the Redis store counts whole microseconds, so it
//! rounds a quota's interval up to the next one (`3/s` is one cell per 333 334 µs there) and
//! refuses, when the layer is built, a quota that rounding would slow by more than 1 % (such
//! as `30000/s`; `1000000/s` is 1 µs, exact).
//!
//! # Which policies
//!
//! | you need | write |
//! |---|---|
//! | one limit | `.quota(Quota::per_second(10))` |
//! | a burst limit and a long-term one ("10/s and 1000/h") | two `.policy(..)` calls: a stack, all-or-nothing |
//! | free and paying customers | `.tier("pro", [..])` and `.select_tier(|req| ..)` |
//! | expensive requests count more | `.cost_by(|req| ..)` (batch size, body size, query complexity) |
//! | try a new limit on live traffic first | `Policy::new(..).shadow(true)`, then read [`shadow_limited`](crate::RateLimitLayer::shadow_limited) or the `shadow-limited` events |
//! | health checks and internal callers never limited | `.bypass(|req| ..)` or [`AllowIps`](crate::AllowIps) (behind proxies, with [`behind`](crate::AllowIps::behind)) |
//! | several routes, one Redis connection | one store, one layer per route (`.route_layer`), each with its own policy names |
//! | limits that operators set in a config file | the `serde` feature; see [below](#limits-in-a-config-file) |
//!
//! See [`policy`](crate::policy) for the semantics and an example of each.
//!
//! # Limits in a config file
//!
//! With the `serde` feature, a [`Quota`](crate::Quota) reads from TOML, JSON, YAML or any
//! self-describing format as the string it parses (`"10/s; burst=20"`, units `s`, `min`, `h`
//! and `d`) or as `{ rate, per, burst }`, and a [`Policy`](crate::Policy) as
//! `{ name, quota, shadow }`. Read the file into a struct of your own and give its policies to
//! the builder: a value that is not a quota, an unknown field or a name that no layer can use
//! is an error of the deserializer, which quotes it (and, with the format's position or
//! `serde_path_to_error`, says where it is); a stack that cannot work is a `ConfigError` from
//! `build`. `examples/policies.rs` reads a whole app's policies this way (`POLICIES=path`).
//!
//! ```
//! # #[cfg(feature = "serde")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::extract::Request;
//! use serde::Deserialize;
//! use tower_ratelimit::{Policy, Quota, RateLimitLayer};
//!
//! #[derive(Debug, Deserialize)]
//! struct Limits {
//!     free: Vec<Policy>,
//!     pro: Vec<Policy>,
//! }
//!
//! let limits: Limits = toml::from_str(r#"
//!     [[free]]
//!     name = "per-second"
//!     quota = "10/s; burst=20"
//!
//!     [[free]]
//!     name = "per-hour"
//!     quota = { rate = 1000, per = "h" }
//!
//!     [[pro]]
//!     name = "pro"
//!     quota = "100/s"
//!     shadow = true
//! "#)?;
//!
//! // The free stack is the default tier; the pro one is chosen per request.
//! let layer = limits
//!     .free
//!     .into_iter()
//!     .fold(RateLimitLayer::builder(), |builder, policy| builder.policy(policy))
//!     .tier("pro", limits.pro)
//!     .select_tier(|req: &Request| req.headers().contains_key("x-pro").then_some("pro"))
//!     .build()?;
//! assert_eq!(layer.policies()[1].quota(), &Quota::per_hour(1000));
//!
//! let typo = toml::from_str::<Limits>(r#"
//!     free = [{ name = "per-second", quota = "10/sec; burst=0" }]
//!     pro = []
//! "#).unwrap_err();
//! assert!(typo.to_string().contains(r#"invalid quota "10/sec; burst=0": the burst is 0"#));
//! # Ok(()) }
//! # #[cfg(not(feature = "serde"))]
//! # fn main() {}
//! ```
//!
//! # How far one Redis goes
//!
//! Redis runs one script at a time, so one Redis primary bounds the checks per second of the
//! whole fleet, however many application servers share it. `RedisStore` coalesces: while one
//! script call is in flight on a queue, the checks that arrive wait and the next call carries
//! them all (up to `max_batch`, default 128), so under load Redis pays its per-call cost once
//! for many checks, and what remains is the work of each check inside the script (its share of
//! one `MGET` per call and, when it is allowed, one write of its key, which the call's other
//! checks of the same key share). A single server's keys are shared among `calls_in_flight`
//! queues (default 2), so that Redis runs one call while the next is on its way; a key always
//! takes the same queue. The figures of `BENCHES.md`
//! ("Redis: coalesced checks") compare, in one run on a 2-vCPU machine with the application and
//! Redis on the same two cores, one raw `EVALSHA` per check against the coalescing store; measure
//! with `cargo bench --features redis --bench redis` on your own machines. As a rule of thumb:
//! application servers × checks per second each must stay well below that figure, and the
//! deny cache takes the checks of keys already limited (the bulk of an attack) off Redis.
//!
//! Redis keeps one key per client key, holding the TAT of each of its policies: about 160
//! bytes for a short key under one policy and 180 under two (measured on Redis 7.0; `cargo
//! bench --features redis --bench redis_key_memory`), until the moment its last policy is
//! full again: a flood of new clients costs Redis their request rate × the longest time its
//! policies take to refill one request × those bytes.
//!
//! Give Redis the memory for them. Under `maxmemory`, a full Redis with `noeviction` refuses
//! the writes of admitted checks (`OOM`): those calls fail and the failure policy answers
//! them, while denials, which write nothing, still come from Redis. Any other eviction policy
//! may evict these keys to make room (`volatile-*` as well as `allkeys-*`: every one has an
//! expiry), and an evicted key starts again with a full burst; the deny cache keeps denying
//! it only for the wait it last saw. A Redis shared with a cache that evicts should be sized so
//! that it never has to.
//!
//! Past one primary, a **Redis Cluster** spreads keys over its primaries by hash slot: every policy
//! of one key shares a slot (`{prefix:key}`), so a stack is still one call, and the capacity grows
//! with the number of primaries as long as no single key is hot enough to saturate one of them. The
//! store coalesces checks by primary: one call carries the checks of all the slots a primary serves
//! (`BENCHES.md` measured 0.029 calls per check on three primaries, 0.013 on one server). Primaries
//! are added by moving slots to them (`redis-cli --cluster reshard`, or `CLUSTER SETSLOT` and
//! `MIGRATE`) while the fleet runs: a key keeps its budget through the move, and its checks are
//! answered by Redis throughout. While a slot moves, Redis refuses a call carrying several of its
//! keys (`TRYAGAIN`); the store sends those checks again one key per call, to whichever primary
//! holds the key.
//!
//! # When the primary fails
//!
//! Building a `RedisStore` needs Redis: `build()` is a `ConfigError` when Redis cannot be
//! reached, so a process that starts during an outage should retry building the store until
//! Redis answers; once built, the store rides out outages on its failure policy.
//!
//! With one primary and its replicas under **Redis Sentinel**, build the store with
//! `RedisStore::builder().sentinel([..], "mymaster")` (the sentinels' addresses and the master
//! name): after a failover, checks go to the promoted replica by themselves. While no primary
//! exists the failure policy answers; the default `Local` lets each process admit up to one
//! burst per key of its own. What the old primary had not yet passed to the replica is lost
//! with it, at most one burst per key: nothing in `BENCHES.md`'s trials with the replica in
//! sync, a whole burst when its link had been cut. Budgets that must hold through a failover
//! need `FailurePolicy::Deny`, and Redis's `min-replicas-to-write` and `min-replicas-max-lag`
//! to keep the replica close behind.
//!
//! A **Redis Cluster** with a replica for each primary fails over by itself, and the store
//! built with `.cluster([..])` follows: once the cluster has promoted the replica, the dead
//! primary's keys are checked there, with the cells they had spent that reached it. Until then the
//! failure policy answers those keys, each check within the store's timeout; the cluster's
//! `cluster-node-timeout` sets most of that time (about 2–3 s after a primary was killed, with a
//! node timeout of 1 s, in the tests). What the old primary had not passed on is lost as under
//! Sentinel.
