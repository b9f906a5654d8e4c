//! The answer to a request that is not served: limited, too costly ever to fit, without a key,
//! or when the store failed and its policy is to fail closed.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::grpc;
use super::headers::{member_numbers, number, retry_after_secs, Scratch, StackHeaders, TEXT_PLAIN};
use crate::{Decision, Decisions, Policy, Quota};

/// Why a request was rejected: the decision of each policy of its stack.
///
/// The default rejection and custom ones are built from it, and it is inserted into the
/// extensions of every rejection response.
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimited {
    decisions: Decisions,
    /// The content type of a gRPC answer, for a gRPC request.
    grpc: Option<HeaderValue>,
    /// The stack's policies and headers, rendered when the layer was built.
    headers: Arc<StackHeaders>,
}

impl RateLimited {
    pub(crate) fn new(
        decisions: Decisions,
        grpc: Option<HeaderValue>,
        headers: Arc<StackHeaders>,
    ) -> Self {
        RateLimited {
            decisions,
            grpc,
            headers,
        }
    }

    /// The decision of each policy, in the order of [`policies`](RateLimited::policies).
    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }

    /// The policies the request was checked against.
    pub fn policies(&self) -> &[Policy] {
        self.headers.policies()
    }

    /// The index of the enforced policy that denied with the longest wait.
    fn limiting(&self) -> usize {
        self.decisions
            .as_slice()
            .iter()
            .zip(self.policies())
            .enumerate()
            .filter(|(_, (d, p))| !d.is_allowed() && !p.is_shadow())
            .max_by_key(|(_, (d, _))| d.retry_after())
            .map_or(0, |(i, _)| i)
    }

    /// The policy that limits the request longest.
    pub fn policy(&self) -> &Policy {
        &self.policies()[self.limiting()]
    }

    /// The decision of [`policy`](RateLimited::policy).
    pub fn decision(&self) -> &Decision {
        &self.decisions.as_slice()[self.limiting()]
    }

    /// The quota of [`policy`](RateLimited::policy).
    pub fn quota(&self) -> &Quota {
        self.policy().quota()
    }

    /// The exact time until the request would conform to every enforced policy (a policy in
    /// [shadow mode](crate::Policy::shadow) that would deny it too is left out: it never
    /// rejects).
    pub fn retry_after(&self) -> Duration {
        self.decisions.retry_after()
    }

    /// The wait in whole seconds, rounded up and at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.retry_after())
    }

    /// Whether the request was a gRPC call (or the layer answers every request as one).
    pub fn is_grpc(&self) -> bool {
        self.grpc.is_some()
    }
}

impl fmt::Debug for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("decisions", &self.decisions)
            .field("policies", &self.policies())
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

/// A request whose cost can never fit the burst of one of its enforced policies: it is never
/// admitted, and waiting would not help, so its answer has no `Retry-After`. It displays as
/// `a request of cost 12 can never fit policy "search", whose burst is 10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostTooLarge {
    policy: Policy,
    cost: u32,
    grpc: Option<HeaderValue>,
}

impl CostTooLarge {
    pub(crate) fn new(policy: Policy, cost: u32, grpc: Option<HeaderValue>) -> Self {
        CostTooLarge { policy, cost, grpc }
    }

    /// The policy whose burst the cost exceeds.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The request's cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The policy's burst: the largest cost it can ever admit.
    pub fn burst(&self) -> u32 {
        self.policy.quota().burst()
    }

    /// Whether the request was a gRPC call (or the layer answers every request as one).
    pub fn is_grpc(&self) -> bool {
        self.grpc.is_some()
    }
}

impl fmt::Display for CostTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a request of cost {} can never fit policy {:?}, whose burst is {}",
            self.cost,
            self.policy.name(),
            self.burst()
        )
    }
}

/// A request from which the key extractor got no key, on a layer set to
/// [`MissingKey::Reject`](crate::MissingKey::Reject) such requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingKeyRejected {
    status: StatusCode,
    grpc: Option<HeaderValue>,
}

impl MissingKeyRejected {
    pub(crate) fn new(status: StatusCode, grpc: Option<HeaderValue>) -> Self {
        MissingKeyRejected { status, grpc }
    }

    /// The status the layer is set to answer with: the one of
    /// [`MissingKey::Reject`](crate::MissingKey::Reject).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the request was a gRPC call (or the layer answers every request as one).
    pub fn is_grpc(&self) -> bool {
        self.grpc.is_some()
    }
}

/// A request that the store could not decide: the [`Store`](crate::Store) answered an error,
/// as the Redis store does while Redis fails under `FailurePolicy::Deny`. It is not served.
#[derive(Clone, Debug)]
pub struct StoreFailed<'a> {
    error: &'a (dyn Error + 'static),
    grpc: Option<HeaderValue>,
}

impl<'a> StoreFailed<'a> {
    pub(crate) fn new(error: &'a (dyn Error + 'static), grpc: Option<HeaderValue>) -> Self {
        StoreFailed { error, grpc }
    }

    /// The store's error. Its text is meant for logs (the layer logs it), not for clients;
    /// downcast it to the store's error type to tell failures apart.
    pub fn error(&self) -> &'a (dyn Error + 'static) {
        self.error
    }

    /// Whether the request was a gRPC call (or the layer answers every request as one).
    pub fn is_grpc(&self) -> bool {
        self.grpc.is_some()
    }
}

/// Builds the response for a request that is not served.
///
/// A request is not served when it is limited ([`make_rejection`](Self::make_rejection),
/// described by a [`RateLimited`]), when its cost can never fit
/// ([`make_cost_too_large`](Self::make_cost_too_large), [`CostTooLarge`]), when it has no key
/// and the layer rejects such requests ([`make_missing_key`](Self::make_missing_key),
/// [`MissingKeyRejected`]), and when the store could not decide it
/// ([`make_store_failed`](Self::make_store_failed), [`StoreFailed`]). Only `make_rejection`
/// has no default; the others answer as [`DefaultRejection`] does unless they are overridden.
///
/// The layer adds `Retry-After` and the `RateLimit` headers to the answer of `make_rejection`
/// unless it set them itself, and, to an HTTP answer, the `Content-Length` of its body; it adds
/// no other header to the other answers (the `413` gets its [`CostTooLarge`] in its
/// extensions). A `Content-Length` of any answer is set to its body's length when it differs
/// (one kept from the default answer whose body was replaced, say), and the answer to a `HEAD`
/// request is sent without its body, its `Content-Length` that of the body.
///
/// Implemented by [`DefaultRejection`] and by every closure `Fn(&RateLimited) -> Response<T>`
/// where `T: Into<Bytes>` (`String`, `Vec<u8>`, `&'static str`, `Bytes`). A closure shapes
/// the answer to a limited request only and gets the defaults for the other three; to shape
/// those as well, implement this trait on a type of your own, as below.
///
/// Every description says whether the request is a gRPC call (`is_grpc`). A gRPC client does
/// not read the body of an HTTP error and maps its status to a gRPC code of its own (a `429`
/// becomes `UNAVAILABLE`), so an implementation must answer gRPC calls in gRPC form: hand them
/// to [`DefaultRejection`], as below, or write a trailers-only gRPC answer itself (see
/// [`grpc`]).
///
/// An implementation that answers every HTTP error as `application/problem+json`:
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{header, HeaderValue, Request, Response, StatusCode};
/// use http_body_util::BodyExt;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_ratelimit::{
///     CostTooLarge, DefaultRejection, Header, MakeRejection, ManualClock, MemoryStore,
///     MissingKey, MissingKeyRejected, Quota, RateLimitLayer, RateLimited, StoreFailed,
/// };
/// # use std::future::{ready, Ready};
/// # use tower_ratelimit::{ConfigError, Decisions, Policy, Store};
/// # /// A store whose every check fails.
/// # struct Down;
/// # impl Store for Down {
/// #     type Stack = ();
/// #     type Error = std::io::Error;
/// #     type Future = Ready<Result<Decisions, std::io::Error>>;
/// #     fn register(&self, _: &[Policy]) -> Result<(), ConfigError> {
/// #         Ok(())
/// #     }
/// #     fn check(&self, _: &(), _: &[u8], _: u32) -> Self::Future {
/// #         ready(Err(std::io::Error::other("connection refused")))
/// #     }
/// #     fn peek(&self, _: &(), _: &[u8]) -> Self::Future {
/// #         ready(Err(std::io::Error::other("connection refused")))
/// #     }
/// # }
///
/// /// Problem details (RFC 9457) for HTTP requests, the default answers for gRPC calls.
/// struct Problem;
///
/// fn problem(status: StatusCode, detail: &str) -> Response<Bytes> {
///     let title = status.canonical_reason().unwrap_or("Error");
///     let body = format!(
///         r#"{{"type":"about:blank","title":"{title}","status":{},"detail":"{detail}"}}"#,
///         status.as_u16()
///     );
///     let mut response = Response::new(Bytes::from(body));
///     *response.status_mut() = status;
///     response.headers_mut().insert(
///         header::CONTENT_TYPE,
///         HeaderValue::from_static("application/problem+json"),
///     );
///     response
/// }
///
/// impl MakeRejection for Problem {
///     fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
///         if limited.is_grpc() {
///             return DefaultRejection.make_rejection(limited);
///         }
///         let detail = format!("retry in {} s", limited.retry_after_secs());
///         problem(StatusCode::TOO_MANY_REQUESTS, &detail)
///     }
///
///     fn make_cost_too_large(&self, too_large: &CostTooLarge) -> Response<Bytes> {
///         if too_large.is_grpc() {
///             return DefaultRejection.make_cost_too_large(too_large);
///         }
///         let detail = format!("a cost above {} never fits", too_large.burst());
///         problem(StatusCode::PAYLOAD_TOO_LARGE, &detail)
///     }
///
///     fn make_missing_key(&self, rejected: &MissingKeyRejected) -> Response<Bytes> {
///         if rejected.is_grpc() {
///             return DefaultRejection.make_missing_key(rejected);
///         }
///         problem(rejected.status(), "send your API key in x-api-key")
///     }
///
///     fn make_store_failed(&self, failed: &StoreFailed<'_>) -> Response<Bytes> {
///         if failed.is_grpc() {
///             return DefaultRejection.make_store_failed(failed);
///         }
///         // `failed.error()` is for the logs, where the layer writes it, not for clients.
///         let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
///         response
///             .headers_mut()
///             .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
///         response
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ok = service_fn(|_req: Request<()>| async {
///     Ok::<_, Infallible>(Response::new(String::from("ok")))
/// });
/// let call = |path: &str, api_key: Option<&'static str>| {
///     let mut req = Request::get(path);
///     if let Some(api_key) = api_key {
///         req = req.header("x-api-key", api_key);
///     }
///     req.body(()).unwrap()
/// };
/// let api = RateLimitLayer::builder()
///     .quota(Quota::per_second(2))
///     .key(Header::new("x-api-key"))
///     .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED))
///     .cost_by(|req: &Request<()>| if req.uri().path() == "/batch" { 5 } else { 1 })
///     .store(MemoryStore::builder().clock(ManualClock::new()).build()?)
///     .rejection(Problem)
///     .build()?
///     .layer(ok);
///
/// let keyless = api.clone().oneshot(call("/", None)).await?;
/// assert_eq!(keyless.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(keyless.headers()["content-type"], "application/problem+json");
/// let body = keyless.into_body().collect().await?.to_bytes();
/// assert!(body.ends_with(br#""status":401,"detail":"send your API key in x-api-key"}"#));
///
/// let batch = api.clone().oneshot(call("/batch", Some("alice"))).await?;
/// assert_eq!(batch.status(), StatusCode::PAYLOAD_TOO_LARGE);
/// assert_eq!(batch.headers()["content-type"], "application/problem+json");
///
/// for _ in 0..2 {
///     let admitted = api.clone().oneshot(call("/", Some("alice"))).await?;
///     assert_eq!(admitted.status(), StatusCode::OK);
/// }
/// let limited = api.clone().oneshot(call("/", Some("alice"))).await?;
/// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(limited.headers()["content-type"], "application/problem+json");
/// assert_eq!(limited.headers()["retry-after"], "1", "added by the layer");
///
/// // `Down` is a store whose every check fails, like a backend that is down.
/// let down = RateLimitLayer::builder()
///     .quota(Quota::per_second(2))
///     .key(Header::new("x-api-key"))
///     .store(Down)
///     .rejection(Problem)
///     .build()?
///     .layer(ok);
/// let failed = down.oneshot(call("/", Some("alice"))).await?;
/// assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(failed.headers()["content-type"], "application/problem+json");
/// assert_eq!(failed.headers()["retry-after"], "1");
/// # Ok(())
/// # }
/// ```
pub trait MakeRejection {
    /// The response for the limited request that `limited` describes.
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes>;

    /// The response for a request whose cost can never fit (default: `413 Content Too Large`,
    /// gRPC `INVALID_ARGUMENT`, no `Retry-After`).
    fn make_cost_too_large(&self, too_large: &CostTooLarge) -> Response<Bytes> {
        cost_too_large(too_large)
    }

    /// The response for a request without a key, on a layer set to
    /// [`MissingKey::Reject`](crate::MissingKey::Reject) such requests (default: the status
    /// the layer is set to answer with and a short `text/plain` body; for gRPC, the gRPC status
    /// that means the same, such as `UNAUTHENTICATED` for `401`). Not called on a dry run
    /// (every policy of the layer in shadow mode), which serves such requests.
    fn make_missing_key(&self, rejected: &MissingKeyRejected) -> Response<Bytes> {
        missing_key(rejected)
    }

    /// The response for a request that the store could not decide (default:
    /// `503 Service Unavailable` with `Retry-After: 1` and a short `text/plain` body; gRPC
    /// `UNAVAILABLE` with `grpc-retry-pushback-ms: 1000`).
    fn make_store_failed(&self, failed: &StoreFailed<'_>) -> Response<Bytes> {
        store_failed(failed)
    }
}

impl<F, T> MakeRejection for F
where
    F: Fn(&RateLimited) -> Response<T>,
    T: Into<Bytes>,
{
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        self(limited).map(Into::into)
    }
}

/// `429 Too Many Requests` with a short `text/plain` body for HTTP requests, `RESOURCE_EXHAUSTED`
/// for gRPC ones. The other requests that are not served get the default answers of
/// [`MakeRejection`]'s methods: `413`, the status set for requests without a key, and `503`.
///
/// During a flood, rejections show the same numbers for a second at a time. Each thread
/// remembers the numbers of the last HTTP rejection it answered; when the next one shows the
/// same, it keeps that rejection (a few hundred bytes) and answers the following ones with a copy
/// of it, without rendering anything, while the numbers stay the same.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejection;

impl MakeRejection for DefaultRejection {
    fn make_rejection(&self, limited: &RateLimited) -> Response<Bytes> {
        if let Some(content_type) = &limited.grpc {
            return grpc::resource_exhausted(limited.retry_after(), content_type.clone());
        }
        // A flood of rejections repeats the same numbers for a second at a time: each thread
        // remembers the numbers of its last rejection and, once they repeat, the answer it
        // rendered for them.
        let kept = (limited.decisions.as_slice().len() <= REMEMBERED_POLICIES)
            .then(|| LAST_REJECTION.try_with(|last| last.try_borrow_mut().ok()?.answer(limited)))
            .and_then(|answer| answer.ok().flatten());
        match kept {
            Some(response) => response,
            None => Rendered::new(limited).respond(&limited.headers),
        }
    }
}

thread_local! {
    static LAST_REJECTION: RefCell<LastRejection> = const { RefCell::new(LastRejection::NONE) };
}

/// The longest stack whose rejection a thread remembers, so that its numbers fit inline.
const REMEMBERED_POLICIES: usize = 3;

/// The default HTTP rejection a thread answered last: its stack, the numbers it showed, and
/// the response rendered for them once an answer repeated them.
struct LastRejection {
    /// The address of the stack's headers, which `kept` (when set) keeps alive.
    stack: usize,
    numbers: Numbers,
    kept: Option<(Arc<StackHeaders>, Response<Bytes>)>,
}

impl LastRejection {
    const NONE: LastRejection = LastRejection {
        stack: 0,
        numbers: Numbers([0; 1 + 2 * REMEMBERED_POLICIES]),
        kept: None,
    };

    /// The rejection of `limited` (of a stack of at most [`REMEMBERED_POLICIES`]) when its
    /// numbers repeat the last ones: rendered and kept the first time, then answered from what
    /// was kept. `None` when they differ: they become the last ones, and the caller renders.
    fn answer(&mut self, limited: &RateLimited) -> Option<Response<Bytes>> {
        let stack = Arc::as_ptr(&limited.headers).addr();
        let numbers = Numbers::of(limited);
        if stack == self.stack && numbers == self.numbers {
            let (_, response) = self.kept.get_or_insert_with(|| {
                let response = Rendered::new(limited).respond(&limited.headers);
                (Arc::clone(&limited.headers), response)
            });
            // A copy of the whole answer: its header map and a reference to each value.
            return Some(response.clone());
        }
        self.stack = stack;
        self.numbers = numbers;
        self.kept = None;
        None
    }
}

/// The body and header values of a default HTTP rejection.
struct Rendered {
    body: Bytes,
    retry_after: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
    content_length: HeaderValue,
}

impl Rendered {
    fn new(limited: &RateLimited) -> Self {
        // The body, the Retry-After value and the RateLimit value written into one buffer
        // that the three share: one allocation while they fit in the stack buffer.
        let mut digits = itoa::Buffer::new();
        let secs = digits.format(limited.retry_after_secs());
        let mut text = Scratch::<320>::new();
        text.push(b"Too Many Requests: retry in ");
        let secs_at = text.len();
        text.push(secs.as_bytes());
        text.push(b" s\n");
        let body_len = text.len();
        limited
            .headers
            .write_ratelimit(&limited.decisions, &mut text);
        let text = text.into_bytes();
        // Digits, and names checked when the layer was built: both are valid values.
        let retry_after = HeaderValue::from_maybe_shared(text.slice(secs_at..secs_at + secs.len()));
        let ratelimit = HeaderValue::from_maybe_shared(text.slice(body_len..));
        Rendered {
            body: text.slice(..body_len),
            retry_after: retry_after.ok(),
            ratelimit: ratelimit.ok(),
            content_length: number(body_len as u64),
        }
    }

    fn respond(self, stack: &StackHeaders) -> Response<Bytes> {
        let mut response = Response::new(self.body);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        *response.headers_mut() =
            stack.rejection(self.retry_after, self.ratelimit, self.content_length);
        response
    }
}

/// The numbers a default HTTP rejection shows: the `Retry-After` seconds, then each policy's
/// `RateLimit` member numbers (the ones the rendering writes), zeros after the last.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Numbers([u64; 1 + 2 * REMEMBERED_POLICIES]);

impl Numbers {
    /// The numbers of `limited`, a rejection by a stack of at most [`REMEMBERED_POLICIES`].
    fn of(limited: &RateLimited) -> Self {
        let mut numbers = [0; 1 + 2 * REMEMBERED_POLICIES];
        numbers[0] = limited.retry_after_secs();
        for (pair, d) in numbers[1..]
            .chunks_exact_mut(2)
            .zip(limited.decisions.as_slice())
        {
            pair.copy_from_slice(&member_numbers(d));
        }
        Numbers(numbers)
    }
}

/// The default answer to a request whose cost can never fit.
fn cost_too_large(too_large: &CostTooLarge) -> Response<Bytes> {
    let message = too_large.to_string();
    match &too_large.grpc {
        Some(content_type) => {
            grpc::status(grpc::GRPC_INVALID_ARGUMENT, &message, content_type.clone())
        }
        None => text(StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")),
    }
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    // Room for the rate-limit headers added next, so the map is allocated once; six entries
    // keep the allocation small enough for the allocator's fast paths.
    *response.headers_mut() = HeaderMap::with_capacity(6);
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    response
}

/// The default answer to a request without a key.
fn missing_key(rejected: &MissingKeyRejected) -> Response<Bytes> {
    const MESSAGE: &str = "request has no rate-limit key";
    match &rejected.grpc {
        Some(content_type) => grpc::status(
            grpc::code_for(rejected.status),
            MESSAGE,
            content_type.clone(),
        ),
        None => text(rejected.status, "request has no rate-limit key\n"),
    }
}

/// The default answer to a request that the store could not decide.
fn store_failed(failed: &StoreFailed<'_>) -> Response<Bytes> {
    const MESSAGE: &str = "rate limit store unavailable";
    let mut response = match &failed.grpc {
        Some(content_type) => {
            let mut response = grpc::status(grpc::GRPC_UNAVAILABLE, MESSAGE, content_type.clone());
            response.headers_mut().insert(
                grpc::GRPC_RETRY_PUSHBACK_MS,
                HeaderValue::from_static("1000"),
            );
            response
        }
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limit store unavailable\n",
        ),
    };
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiting_policy_is_the_enforced_one_with_the_longest_wait() {
        let policies: Arc<[Policy]> = Arc::from([
            Policy::new("a", Quota::per_second(1)),
            Policy::new("b", Quota::per_minute(1)),
            Policy::new("c", Quota::per_hour(1)).shadow(true),
        ]);
        let denied = |secs| Decision::denied(1, 0, Duration::from_secs(secs), Duration::ZERO);
        let limited = RateLimited::new(
            Decisions::new(false, [denied(1), denied(30), denied(3000)]),
            None,
            Arc::new(StackHeaders::new(policies)),
        );
        assert_eq!(limited.policy().name(), "b");
        assert_eq!(limited.quota(), &Quota::per_minute(1));
    }

    #[test]
    fn the_default_rejection_of_a_long_stack_is_whole() {
        let policies: Arc<[Policy]> = (0..4)
            .map(|i| Policy::new(format!("{i}{}", "x".repeat(63)), Quota::per_hour(1)))
            .collect();
        let denied = Decision::denied(1, 0, Duration::from_secs(3599), Duration::from_secs(3600));
        let limited = RateLimited::new(
            Decisions::new(false, vec![denied; 4]),
            None,
            Arc::new(StackHeaders::new(Arc::clone(&policies))),
        );
        let response = DefaultRejection.make_rejection(&limited);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.body(), "Too Many Requests: retry in 3599 s\n");
        let headers = response.headers();
        assert_eq!(headers[RETRY_AFTER], "3599");
        assert_eq!(headers[http::header::CONTENT_LENGTH], "35");
        let members: Vec<_> = policies
            .iter()
            .map(|p| format!("\"{}\";r=0;t=3600", p.name()))
            .collect();
        assert_eq!(
            headers[super::super::RATELIMIT],
            members.join(", ").as_str()
        );
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn a_rejection_answered_from_the_last_rendered_one_is_the_one_rendered_anew() {
        let stacks = [
            Arc::new(StackHeaders::new(Arc::from([Policy::new(
                "a",
                Quota::per_second(5),
            )]))),
            Arc::new(StackHeaders::new(Arc::from([
                Policy::new("a", Quota::per_second(5)),
                Policy::new("b", Quota::per_hour(100)),
            ]))),
        ];
        // Every change of stack or of one number at a time, and repeats, on one thread.
        let mut seen = std::collections::HashSet::new();
        let (mut kept, mut previous) = (0, None);
        let mut state = 7u64;
        for _ in 0..2_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let pick = |shift: u32, n: u64| (state >> shift) % n;
            let stack = &stacks[pick(60, 2) as usize];
            let decision = |shift| {
                Decision::denied(
                    1,
                    pick(shift, 3) as u32,
                    Duration::from_millis(1 + pick(shift + 8, 3) * 700),
                    Duration::from_millis(pick(shift + 16, 3) * 900),
                )
            };
            let decisions = match stack.policies().len() {
                1 => Decisions::new(false, [decision(4)]),
                _ => Decisions::new(false, [decision(4), decision(28)]),
            };
            let limited = RateLimited::new(decisions, None, Arc::clone(stack));
            let rendered = Rendered::new(&limited).respond(stack);
            for _ in 0..1 + pick(50, 3) {
                let answered = DefaultRejection.make_rejection(&limited);
                assert_eq!(answered.status(), rendered.status(), "{limited:?}");
                assert_eq!(answered.headers(), rendered.headers(), "{limited:?}");
                assert_eq!(answered.body(), rendered.body(), "{limited:?}");
                // A kept answer's copy shares the body of the answer before it, which is
                // still alive, so that its buffer cannot have been reused.
                kept += usize::from(previous.as_ref().is_some_and(|p: &Response<Bytes>| {
                    p.body().as_ptr() == answered.body().as_ptr()
                }));
                previous = Some(answered);
            }
            seen.insert(rendered.headers()[super::super::RATELIMIT].clone());
        }
        assert!(seen.len() > 50, "only {} distinct answers", seen.len());
        assert!(kept > 300, "only {kept} copies of a kept answer");
    }

    #[test]
    fn a_stack_longer_than_the_remembered_numbers_shows_its_last_policy_each_time() {
        let policies: Arc<[Policy]> = (0..4)
            .map(|i| Policy::new(format!("p{i}"), Quota::per_hour(10)))
            .collect();
        let stack = Arc::new(StackHeaders::new(policies));
        let denied = Decision::denied(10, 0, Duration::from_secs(60), Duration::from_secs(3600));
        // The wait and the first three policies' numbers repeat; the fourth one's change.
        for remaining in [9, 9, 8, 8, 7, 9] {
            let last = Decision::allowed(10, remaining, Duration::from_secs(360));
            let limited = RateLimited::new(
                Decisions::new(false, [denied, denied, denied, last]),
                None,
                Arc::clone(&stack),
            );
            let response = DefaultRejection.make_rejection(&limited);
            let ratelimit = response.headers()[super::super::RATELIMIT]
                .to_str()
                .unwrap();
            assert!(
                ratelimit.ends_with(&format!("\"p3\";r={remaining};t=360")),
                "{ratelimit}"
            );
        }
    }

    #[test]
    fn a_cost_too_large_is_413_without_retry_after() {
        let too_large = CostTooLarge::new(Policy::new("search", Quota::per_second(10)), 12, None);
        let response = cost_too_large(&too_large);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!response.headers().contains_key(RETRY_AFTER));
        assert_eq!(
            response.body(),
            "a request of cost 12 can never fit policy \"search\", whose burst is 10\n"
        );
        let grpc = CostTooLarge::new(
            Policy::new("search", Quota::per_second(10)),
            12,
            Some(grpc::APPLICATION_GRPC),
        );
        assert_eq!(cost_too_large(&grpc).headers()["grpc-status"], "3");
    }
}
