//! scratch
use http::{Request, Response};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use tower::{Layer, ServiceExt};
use tower_ratelimit::*;

#[test]
fn probe_std() {
    for s in [
        "[fe80::1%2]:80",
        "[fe80::1%eth0]:80",
        "fe80::1%2",
        "[fe80::1%2]",
        "[::ffff:1.2.3.4]:1",
        "+1.2.3.4",
        "1.2.3.4:+80",
        "1.2.3.4:080",
    ] {
        println!(
            "{s:?}: ip={:?} sa={:?}",
            s.parse::<IpAddr>().ok(),
            s.parse::<SocketAddr>().ok()
        );
    }
    for p in [
        &b"/\xc3\xa9"[..],
        b"/\xff",
        b"/a b",
        b"/a\"b",
        b"/{x}",
        b"/a|b^`",
    ] {
        let u = http::Uri::try_from(p);
        println!(
            "{:?} -> {:?}",
            String::from_utf8_lossy(p),
            u.map(|u| u.path().to_owned())
        );
    }
    println!("{:?}", "+5/s".parse::<Quota>());
}

#[test]
fn probe_quota_display() {
    let q: Result<Quota, _> = "2000000000/s".parse();
    println!("{:?}", q);
    let q = q.unwrap();
    println!("interval {}", q.interval_nanos());
    let r = std::panic::catch_unwind(|| q.to_string());
    println!("display: {r:?}");
}

#[tokio::test]
async fn probe_layer() {
    let q = Quota::try_per_second(2_000_000_000).unwrap();
    let layer = RateLimitLayer::builder().quota(q).build().unwrap();
    let svc = layer.layer(tower::service_fn(|_r: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let mut req = Request::new(());
    req.extensions_mut()
        .insert("192.0.2.1:1".parse::<SocketAddr>().unwrap());
    let r = svc.oneshot(req).await;
    println!("{:?}", r.map(|r| r.status()));
}
