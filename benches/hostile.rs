//! What a hostile request costs the limiter against a well-formed one, key extractor by key
//! extractor: `ForwardedIp` reading `X-Forwarded-For` and `Forwarded`, and `Header` keying on
//! an API key. Each case times one request through the bare service and through
//! `RateLimitLayer` (allow path, in memory), so that the difference is what the limiter spent on
//! that request; the bare service pays what every server pays for a large request (dropping
//! its headers).
//!
//! The hostile forwarding headers are written as a client can write them: thousands of hops
//! that look like trusted proxies (the walk reads at most 32 hops), kilobytes of bytes outside
//! ASCII, a hundred header lines, quoted strings full of escapes. The hostile API key is 8 KiB,
//! which the stores keep as its digest.
//!
//! ```text
//! cargo bench --features axum --bench hostile -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_ratelimit::{ForwardedIp, Header, MissingKey, Quota, RateLimitLayer};

mod service;
use service::{drive, inner};

/// The address of the proxy in front of the server, in the trusted network.
const PROXY: ([u8; 4], u16) = ([10, 0, 0, 2], 40000);

/// One request shape: its name and its headers, sent by [`PROXY`].
struct Case {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
}

impl Case {
    fn new(name: &'static str, headers: Vec<(&'static str, Vec<u8>)>) -> Self {
        Case { name, headers }
    }

    fn request(&self) -> Request<()> {
        let mut req = Request::new(());
        for (name, value) in &self.headers {
            let value = HeaderValue::from_bytes(value).expect("a valid header value");
            req.headers_mut()
                .append(HeaderName::from_static(name), value);
        }
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(PROXY)));
        req
    }
}

/// `n` bytes outside ASCII (valid in a header value as obs-text).
fn non_ascii(n: u32) -> Vec<u8> {
    (0..n).map(|i| 0x80 | (i % 127) as u8).collect()
}

/// `n` copies of `hop` joined by `, `, then `last`.
fn hops(hop: &str, n: usize, last: &str) -> Vec<u8> {
    let mut value = vec![hop; n].join(", ");
    value.push_str(", ");
    value.push_str(last);
    value.into_bytes()
}

fn forwarded_cases() -> Vec<Case> {
    let xff = "x-forwarded-for";
    // Bytes outside ASCII with commas among them.
    let mut junk = non_ascii(8_192);
    junk.iter_mut().step_by(97).for_each(|byte| *byte = b',');
    let mut junk_then_client = junk.clone();
    junk_then_client.extend_from_slice(b", 203.0.113.9");
    vec![
        Case::new("xff/well-formed", vec![(xff, b"203.0.113.9".to_vec())]),
        // A client inside the trusted network forging 4 000 more trusted hops (~40 KB).
        Case::new(
            "xff/4000-trusted-hops",
            vec![(xff, hops("10.0.0.1", 4_000, "10.0.0.7"))],
        ),
        // 8 KiB outside ASCII written by the client, then the address the proxy appended.
        Case::new("xff/8KiB-non-ascii", vec![(xff, junk_then_client)]),
        // 8 KiB outside ASCII as the last hop: the client is unknown.
        Case::new("xff/8KiB-non-ascii-last", vec![(xff, junk)]),
        // A hundred header lines of trusted-looking hops.
        Case::new(
            "xff/100-lines",
            (0..100)
                .map(|_| (xff, b"10.0.0.1, 10.0.0.3".to_vec()))
                .collect(),
        ),
    ]
}

fn rfc7239_cases() -> Vec<Case> {
    let fwd = "forwarded";
    // A quoted node of escapes, as long as a header line may be in practice.
    let escapes = format!("for=\"{}\"", "\\\"\\,".repeat(2_000)).into_bytes();
    vec![
        Case::new(
            "forwarded/well-formed",
            vec![(fwd, b"for=203.0.113.9;proto=https".to_vec())],
        ),
        Case::new(
            "forwarded/4000-trusted-hops",
            vec![(fwd, hops("for=\"10.0.0.1:80\";by=x", 4_000, "for=10.0.0.7"))],
        ),
        Case::new("forwarded/8KB-escapes", vec![(fwd, escapes)]),
    ]
}

fn header_cases() -> Vec<Case> {
    let key = "x-api-key";
    vec![
        Case::new("api-key/32-bytes", vec![(key, vec![b'k'; 32])]),
        Case::new("api-key/8KiB", vec![(key, vec![b'k'; 8_192])]),
        Case::new("api-key/8KiB-non-ascii", vec![(key, non_ascii(8_192))]),
    ]
}

/// Times every case through the bare service and through `svc`, each answered 200.
fn run<S, B>(c: &mut Criterion, group: &str, cases: &[Case], mut svc: S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut bare = inner();
    let mut group = c.benchmark_group(group);
    for case in cases {
        // Every case is a request the layer admits: a hostile header costs time, not a 5xx.
        assert_eq!(
            drive(&mut svc, case.request()),
            StatusCode::OK,
            "{}",
            case.name
        );
        group.bench_function(format!("{}/bare", case.name), |b| {
            b.iter_batched(
                || case.request(),
                |req| black_box(drive(&mut bare, req)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{}/tower-ratelimit", case.name), |b| {
            b.iter_batched(
                || case.request(),
                |req| black_box(drive(&mut svc, req)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The layer keying requests by `key`, with a quota no run can spend: every request is
/// allowed, a request whose key is unknown (the cases that end in an unreadable hop) too.
fn limited<E>(key: E) -> RateLimitLayer<E> {
    RateLimitLayer::builder()
        .key(key)
        .quota(Quota::per_second(1_000_000_000))
        .on_missing_key(MissingKey::Allow)
        .build()
        .expect("a valid layer")
}

fn bench(c: &mut Criterion) {
    let forwarded = ForwardedIp::new(["10.0.0.0/8"]).expect("a valid network");
    let layer = limited(forwarded.clone());
    run(c, "hostile", &forwarded_cases(), layer.layer(inner()));
    let layer = limited(forwarded.rfc7239());
    run(c, "hostile", &rfc7239_cases(), layer.layer(inner()));
    let layer = limited(Header::new("x-api-key"));
    run(c, "hostile", &header_cases(), layer.layer(inner()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
