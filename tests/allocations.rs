//! The allow and deny paths of the memory store, and of the whole service, allocate nothing for
//! a key already tracked. Counted with a global allocator in this test binary alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, Service};
use tower_ratelimit::{MemoryStore, Quota, RateLimitLayer};

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
    let allowing = Quota::per_second(1_000_000);
    let denying = Quota::per_hour(1);
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let other: IpAddr = "192.0.2.2".parse().unwrap();
    store.check_now(&ip, &allowing, 1).unwrap();
    store.check_now(&other, &denying, 1).unwrap();

    let n = allocations(|| {
        for _ in 0..1000 {
            assert!(store.check_now(&ip, &allowing, 1).unwrap().is_allowed());
            assert!(!store.check_now(&other, &denying, 1).unwrap().is_allowed());
        }
    });
    assert_eq!(n, 0, "allocations in 2000 checks of known keys");
}

/// Polls a future that must be ready at once.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory-store path must not wait"),
    }
}

#[test]
fn the_service_allow_path_allocates_only_what_the_inner_service_does() {
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = RateLimitLayer::new(Quota::per_second(1_000_000)).layer(inner);
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert("192.0.2.1:4000".parse::<SocketAddr>().unwrap());
    let parts = request.into_parts().0;
    let make = || Request::from_parts(parts.clone(), ());

    // Cloning the request's extensions allocates; count that apart from the service.
    let warm = make();
    let response = now(svc.call(warm)).unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let mut requests: Vec<_> = (0..100).map(|_| make()).collect();
    let n = allocations(|| {
        for request in requests.drain(..) {
            now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            let response = now(svc.call(request)).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    });
    assert_eq!(n, 0, "allocations in 100 allowed requests");
}
