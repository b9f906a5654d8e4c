//! The allow and deny paths of the memory store, and the allow path of the whole service,
//! allocate nothing for a key already tracked. Counted with a global allocator in this test binary alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use tower::util::ServiceFn;
use tower::{service_fn, Layer, Service};
use tower_ratelimit::{KeyBytes, ManualClock, MemoryStore, Policy, Quota, RateLimitLayer, Store};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` made on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    assert_eq!(
        allocations(|| drop(std::hint::black_box(Box::new(7u64)))),
        1
    );
}

#[test]
fn checking_a_known_ip_key_allocates_nothing() {
    let store = MemoryStore::new();
    let allowing = store
        .register(&[Policy::new("allowing", Quota::per_second(1_000_000))])
        .unwrap();
    let denying = store
        .register(&[Policy::new("denying", Quota::per_hour(1))])
        .unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let other: IpAddr = "2001:db8:aaaa:bbbb::".parse().unwrap();
    store.check_now(&allowing, ip.key_bytes().as_bytes(), 1);
    store.check_now(&denying, other.key_bytes().as_bytes(), 1);

    let n = allocations(|| {
        for _ in 0..1000 {
            // Writing the key is part of every check the layer makes.
            let key = ip.key_bytes();
            assert!(store.check_now(&allowing, key.as_bytes(), 1).is_allowed());
            let key = other.key_bytes();
            assert!(!store.check_now(&denying, key.as_bytes(), 1).is_allowed());
        }
    });
    assert_eq!(n, 0, "allocations in 2000 checks of known keys");
}

#[test]
fn checking_a_stack_of_two_policies_for_a_known_key_allocates_nothing() {
    let store = MemoryStore::new();
    let stack = store
        .register(&[
            Policy::new("per-second", Quota::per_second(1_000_000)),
            Policy::new("per-hour", Quota::per_hour(1_000_000_000)),
        ])
        .unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    store.check_now(&stack, ip.key_bytes().as_bytes(), 1);

    let n = allocations(|| {
        for _ in 0..1000 {
            let decisions = store.check_now(&stack, ip.key_bytes().as_bytes(), 1);
            assert!(decisions.is_allowed());
            assert_eq!(decisions.len(), 2);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 stack checks of a known key");
}

/// A store whose clock stands still, so that the cells taken can be counted afterwards.
fn manual_store() -> MemoryStore<ManualClock> {
    MemoryStore::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap()
}

/// Polls a future that must be ready at once.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory-store path must not wait"),
    }
}

/// The inner service of the service tests: an empty response, ready at once.
type Inner = ServiceFn<fn(Request<()>) -> Answer>;
type Answer = Ready<Result<Response<String>, Infallible>>;

/// Sends 100 requests from one peer through `layer` and returns the allocations the service
/// made (the first request, which inserts the key, is not counted).
fn allocations_of_100_allowed_requests<L, S>(layer: &L) -> usize
where
    L: Layer<Inner, Service = S>,
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let inner: fn(Request<()>) -> Answer = |_| ready(Ok(Response::new(String::new())));
    let mut svc = layer.layer(service_fn(inner));
    let mut request = Request::get("/search?q=rust").body(()).unwrap();
    request
        .extensions_mut()
        .insert("192.0.2.1:4000".parse::<SocketAddr>().unwrap());
    let parts = request.into_parts().0;
    allocations_of_100_served(&mut svc, || Request::from_parts(parts.clone(), ()))
}

/// Sends a request from `make` to `svc`, then 100 more, and returns the allocations the 100
/// made in the service (making the requests is not counted: cloning extensions allocates).
fn allocations_of_100_served<S, ReqB, ResB>(svc: &mut S, make: impl Fn() -> Request<ReqB>) -> usize
where
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = Infallible>,
{
    let response = now(svc.call(make())).unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let mut requests: Vec<_> = (0..100).map(|_| make()).collect();
    allocations(|| {
        for request in requests.drain(..) {
            now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            let response = now(svc.call(request)).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    })
}

#[test]
fn the_service_allow_path_allocates_only_what_the_inner_service_does() {
    let quota = Quota::per_second(1_000_000);
    let layer = RateLimitLayer::builder()
        .quota(quota)
        .store(manual_store())
        .build()
        .unwrap();
    let n = allocations_of_100_allowed_requests(&layer);
    assert_eq!(n, 0, "allocations in 100 allowed requests");

    // The requests were checked: 101 cells are gone.
    let stack = layer
        .store()
        .register(&[Policy::new("default", quota)])
        .unwrap();
    let peeked = layer.store().peek_now(&stack, b"192.0.2.1");
    assert_eq!(peeked.as_slice()[0].remaining(), 1_000_000 - 101);
}

#[test]
fn the_allow_path_with_a_stack_tiers_a_cost_and_a_bypass_allocates_nothing() {
    let per_second = Policy::new("per-second", Quota::per_second(1_000_000));
    let per_hour = Policy::new("per-hour", Quota::per_hour(1_000_000_000));
    let pro = [
        Policy::new("pro-per-second", Quota::per_second(1_000_000)),
        Policy::new("pro-per-hour", Quota::per_hour(1_000_000_000)),
    ];
    // The requests (`/search?q=rust`) are of the tier named by the selector, found by name.
    let layer = RateLimitLayer::builder()
        .policy(per_second.clone())
        .policy(per_hour.clone())
        .tier("pro", pro.clone())
        .select_tier(|req: &Request<()>| req.uri().path().starts_with("/search").then_some("pro"))
        .cost_by(|req: &Request<()>| if req.uri().query().is_some() { 2 } else { 1 })
        .bypass(|req: &Request<()>| req.uri().path() == "/health")
        .store(manual_store())
        .build()
        .unwrap();
    let n = allocations_of_100_allowed_requests(&layer);
    assert_eq!(n, 0, "allocations in 100 allowed requests");

    let stack = layer.store().register(&pro).unwrap();
    let peeked = layer.store().peek_now(&stack, b"192.0.2.1");
    assert_eq!(peeked.as_slice()[0].remaining(), 1_000_000 - 202);
    assert_eq!(peeked.as_slice()[1].remaining(), 1_000_000_000 - 202);
    let default = layer.store().register(&[per_second, per_hour]).unwrap();
    let untouched = layer.store().peek_now(&default, b"192.0.2.1");
    assert_eq!(untouched.as_slice()[0].remaining(), 1_000_000);
}

/// The layer answers in axum's own body type, so axum does not box an allowed response's body a
/// second time: around a `Router`, a limited request allocates what a bare one does; in a route,
/// what one through a layer that does nothing does (axum boxes a layered route's service and
/// its future, whatever the layer).
#[cfg(feature = "axum")]
#[test]
fn an_allowed_axum_response_allocates_what_the_bare_router_does() {
    use axum::{routing::get, Router};
    use tower::layer::util::Identity;

    /// Sends 100 requests from one peer to an axum service and returns the allocations they made.
    fn allocations_of_100_axum_requests<S>(svc: &mut S) -> usize
    where
        S: Service<
            Request<axum::body::Body>,
            Response = axum::response::Response,
            Error = Infallible,
        >,
    {
        allocations_of_100_served(svc, || {
            let mut request = Request::get("/").body(axum::body::Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert("192.0.2.1:4000".parse::<SocketAddr>().unwrap());
            request
        })
    }

    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1_000_000))
        .store(manual_store())
        .build()
        .unwrap();
    let router = || Router::new().route("/", get(|| async { "hello" }));

    let bare = allocations_of_100_axum_requests(&mut router().with_state(()));
    assert!(bare > 0, "the router itself allocates ({bare})");
    let around = allocations_of_100_axum_requests(&mut layer.layer(router().with_state(())));
    assert_eq!(
        around, bare,
        "allocations in 100 requests around the Router"
    );

    let identity =
        allocations_of_100_axum_requests(&mut router().layer(Identity::new()).with_state(()));
    let in_route =
        allocations_of_100_axum_requests(&mut router().layer(layer.clone()).with_state(()));
    assert_eq!(
        in_route, identity,
        "allocations in 100 requests, layered in the route"
    );
}
