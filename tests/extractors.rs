//! The key extractors through the whole service, with hostile input: forged and malformed
//! forwarding headers, huge hop lists, odd addresses, header keys and the global key.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_ratelimit::{
    AllowIps, Bypass, ForwardedIp, Global, Header, KeyBytes, KeyExtractor, ManualClock,
    MemoryStore, MissingKey, PeerIp, Policy, Quota, RateLimit, RateLimitLayer, Store,
};

/// One request per hour: a second request on the same key is limited.
fn quota() -> Quota {
    Quota::per_hour(1)
}

/// An inner service that always answers 200.
#[derive(Clone, Copy)]
struct Hello;

impl Service<Request<String>> for Hello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        ready(Ok(Response::new(String::from("hello"))))
    }
}

type Limited<E> = RateLimit<Hello, E, MemoryStore<ManualClock>>;

/// The service keyed by `key`, and its store so that tests can see which keys were charged.
fn rig<E>(key: E) -> (Limited<E>, MemoryStore<ManualClock>) {
    let store = MemoryStore::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder()
        .quota(quota())
        .key(key)
        .store(store.clone())
        .build()
        .unwrap();
    (layer.layer(Hello), store)
}

fn request(peer: &str, headers: &[(&'static str, HeaderValue)]) -> Request<String> {
    let mut req = Request::new(String::new());
    for (name, value) in headers {
        req.headers_mut().append(*name, value.clone());
    }
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().expect("a socket address"));
    req
}

fn xff(value: &str) -> [(&'static str, HeaderValue); 1] {
    [("x-forwarded-for", HeaderValue::from_str(value).unwrap())]
}

async fn status<S, B>(svc: &S, req: Request<String>) -> StatusCode
where
    S: Service<Request<String>, Response = Response<B>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap().status()
}

/// Whether `key` was charged: with a burst of 1, a charged key has nothing left.
fn key_charged(store: &MemoryStore<ManualClock>, key: impl KeyBytes) -> bool {
    // The layer registered this policy; registering it again names the same budget.
    let stack = store
        .register(&[Policy::new("default", quota())])
        .expect("the same policy as the layer's");
    !store
        .peek_now(&stack, key.key_bytes().as_bytes())
        .is_allowed()
}

/// Whether the IP address `ip` was charged.
fn charged(store: &MemoryStore<ManualClock>, ip: &str) -> bool {
    let ip: IpAddr = ip.parse().unwrap();
    assert_eq!(
        ip.key_bytes().as_bytes(),
        ip.to_string().as_bytes(),
        "an IP key is its text"
    );
    key_charged(store, ip)
}

fn behind_proxies() -> ForwardedIp {
    ForwardedIp::new(["10.0.0.0/8", "fd00::/8"]).unwrap()
}

const PROXY: &str = "10.0.0.2:51000";

#[tokio::test]
async fn forwarded_ip_keys_by_the_right_most_untrusted_hop() {
    let (svc, store) = rig(behind_proxies());
    let req = request(PROXY, &xff("6.6.6.6, 203.0.113.9, 10.0.0.7"));
    assert_eq!(status(&svc, req).await, StatusCode::OK);
    assert!(charged(&store, "203.0.113.9"));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_client_cannot_pick_its_key_by_forging_hops() {
    let (svc, store) = rig(behind_proxies());
    let mut statuses = Vec::new();
    for forged in ["1.1.1.1", "2.2.2.2, 3.3.3.3", "10.9.9.9", "garbage", ""] {
        let value = format!("{forged}, 203.0.113.9, 10.0.0.7");
        statuses.push(status(&svc, request(PROXY, &xff(&value))).await);
    }
    assert_eq!(statuses[0], StatusCode::OK);
    assert!(
        statuses[1..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn headers_from_an_untrusted_peer_are_ignored() {
    let (svc, store) = rig(behind_proxies());
    for claimed in ["203.0.113.1", "203.0.113.2", "10.0.0.1"] {
        let req = request("198.51.100.1:4000", &xff(claimed));
        status(&svc, req).await;
    }
    assert!(charged(&store, "198.51.100.1"));
    assert_eq!(store.len(), 1, "the forged addresses made keys");
}

/// Sends one request from [`PROXY`] with `value` as `header`, through `key`, and returns the
/// one key it charged, or `None` when the request got no key: it was answered as a request
/// without one (500 by default) and charged nothing.
async fn key_charged_by(key: ForwardedIp, header: &'static str, value: &[u8]) -> Option<IpAddr> {
    let (svc, store) = rig(key);
    let value = HeaderValue::from_bytes(value).unwrap();
    let req = request(PROXY, &[(header, value)]);
    let status = status(&svc, req).await;
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        assert!(store.is_empty(), "a request without a key was charged");
        return None;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(store.len(), 1);
    let candidates = [
        "10.0.0.2",
        "10.0.0.7",
        "203.0.113.9",
        "6.6.6.6",
        "198.51.100.7",
    ];
    let charged: Vec<&str> = candidates
        .into_iter()
        .filter(|ip| charged(&store, ip))
        .collect();
    assert_eq!(charged.len(), 1, "{charged:?}");
    Some(charged[0].parse().unwrap())
}

/// A byte of obs-text (0x80-0xFF) in an address makes its hop unreadable, exactly like ASCII
/// junk there. Reached from the right through trusted proxies, such a hop leaves the client
/// unknown: no key, nothing charged, and no fallback to the proxy's own address. The other
/// hops of the line are read as usual. In `Forwarded`, obs-text in a parameter other than
/// `for` (a `host` that a proxy copied from the request) is like any other byte there.
#[tokio::test]
async fn obs_text_in_an_address_makes_its_hop_unreadable_and_nothing_else() {
    // A line with one bad hop, the same line with the byte as ASCII, and the client.
    let xff: [(&[u8], &str, Option<&str>); 7] = [
        (b"\xff\xfe\xfd", "unknown", None),
        (b"203.0.113.9\xa0", "203.0.113.9x", None),
        (b"203.0.113.9, \x80\x81", "203.0.113.9, unknown", None),
        (
            b"\xc3\xa9, 203.0.113.9",
            "unknown, 203.0.113.9",
            Some("203.0.113.9"),
        ),
        (
            b"6.6.6.6, 198.51.100.7\xff, 203.0.113.9, 10.0.0.7",
            "6.6.6.6, 198.51.100.7x, 203.0.113.9, 10.0.0.7",
            Some("203.0.113.9"),
        ),
        (
            b"203.0.113.9, 10.0.0.8\x80, 10.0.0.7",
            "203.0.113.9, 10.0.0.8x, 10.0.0.7",
            None,
        ),
        (
            b"203.0.113.9, 10.0.\xe90.8, 10.0.0.7",
            "203.0.113.9, 10.0.x0.8, 10.0.0.7",
            None,
        ),
    ];
    for (raw, ascii, client) in xff {
        let got = key_charged_by(behind_proxies(), "x-forwarded-for", raw).await;
        let same = key_charged_by(behind_proxies(), "x-forwarded-for", ascii.as_bytes()).await;
        assert_eq!(got.map(|ip| ip.to_string()).as_deref(), client, "{raw:?}");
        assert_eq!(got, same, "{raw:?} against {ascii:?}");
    }

    let forwarded: [(&[u8], &str, Option<&str>); 6] = [
        (
            b"for=\"\xff\", for=203.0.113.9;proto=https",
            "for=\"x\", for=203.0.113.9;proto=https",
            Some("203.0.113.9"),
        ),
        (
            b"for=203.0.113.9;proto=h\x80ttp, for=10.0.0.7",
            "for=203.0.113.9;proto=hxttp, for=10.0.0.7",
            Some("203.0.113.9"),
        ),
        (
            b"for=6.6.6.6, for=203.0.113.9, for=10.0.0.7;by=\xff",
            "for=6.6.6.6, for=203.0.113.9, for=10.0.0.7;by=x",
            Some("203.0.113.9"),
        ),
        (
            b"for=203.0.113.9;host=\"ex\xe4mple.com\";proto=https",
            "for=203.0.113.9;host=\"exxmple.com\";proto=https",
            Some("203.0.113.9"),
        ),
        (
            b"for=6.6.6.6\xa0, for=203.0.113.9, for=10.0.0.7",
            "for=6.6.6.6x, for=203.0.113.9, for=10.0.0.7",
            Some("203.0.113.9"),
        ),
        (
            b"for=6.6.6.6, for=203.0.113.9\xa0, for=10.0.0.7",
            "for=6.6.6.6, for=203.0.113.9x, for=10.0.0.7",
            None,
        ),
    ];
    for (raw, ascii, client) in forwarded {
        let got = key_charged_by(behind_proxies().rfc7239(), "forwarded", raw).await;
        let same = key_charged_by(behind_proxies().rfc7239(), "forwarded", ascii.as_bytes()).await;
        assert_eq!(got.map(|ip| ip.to_string()).as_deref(), client, "{raw:?}");
        assert_eq!(got, same, "{raw:?} against {ascii:?}");
    }
}

/// Thirty-two hops, all of trusted proxies, leave the client unknown: the request is not taken
/// for the last proxy's own (a loop between proxies, or a client among them padding the
/// header), and an allow-list behind these proxies does not let it through.
#[tokio::test]
async fn thirty_two_trusted_hops_leave_the_client_unknown() {
    let proxies = |n: u8| (1..=n).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>();
    let value = |n| format!("198.51.100.7, {}", proxies(n).join(", "));
    let got = key_charged_by(behind_proxies(), "x-forwarded-for", value(31).as_bytes()).await;
    assert_eq!(got, Some("198.51.100.7".parse().unwrap()));
    let got = key_charged_by(behind_proxies(), "x-forwarded-for", value(32).as_bytes()).await;
    assert_eq!(got, None);
    // The same in `Forwarded`.
    let elements = |n| {
        let hops = proxies(n)
            .iter()
            .map(|p| format!("for={p}"))
            .collect::<Vec<_>>();
        format!("for=198.51.100.7, {}", hops.join(", "))
    };
    for (hops, key) in [(31, Some("198.51.100.7".parse().unwrap())), (32, None)] {
        let value = elements(hops);
        let got = key_charged_by(behind_proxies().rfc7239(), "forwarded", value.as_bytes()).await;
        assert_eq!(got, key, "{hops} hops");
    }

    let internal = AllowIps::new(["10.0.0.0/8"])
        .unwrap()
        .behind(behind_proxies());
    let from_the_proxies = |n| request(PROXY, &xff(&proxies(n).join(", ")));
    assert!(
        internal.bypass(&from_the_proxies(31)),
        "a proxy's own request"
    );
    assert!(!internal.bypass(&from_the_proxies(32)));
    assert!(!internal.bypass(&request(PROXY, &xff(&value(40)))));
}

/// A client that makes the proxy's own element unreadable, with a `Host` longer than a hop may
/// be (the proxy copies it into its `Forwarded` element), gets no key: it does not become the
/// proxy, whose key it could otherwise drain for every request the proxy makes itself.
#[tokio::test]
async fn a_client_cannot_pass_for_the_proxy_with_an_unreadable_hop() {
    let host = "a".repeat(600);
    let value = format!("for=203.0.113.9;host=\"{host}\";proto=https");
    let got = key_charged_by(behind_proxies().rfc7239(), "forwarded", value.as_bytes()).await;
    assert_eq!(got, None);
    let value = "for=203.0.113.9;host=\"example.com\";proto=https";
    let got = key_charged_by(behind_proxies().rfc7239(), "forwarded", value.as_bytes()).await;
    assert_eq!(got, Some("203.0.113.9".parse().unwrap()));
}

/// Asserts that each `Forwarded` value, behind the test's proxies, is keyed as `client`.
async fn each_forwarded_keys_as(values: &[&[u8]], client: &str) {
    for value in values {
        let got = key_charged_by(behind_proxies().rfc7239(), "forwarded", value).await;
        assert_eq!(
            got.map(|ip| ip.to_string()).as_deref(),
            Some(client),
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

/// A quoted string in a `Forwarded` element may hold commas, semicolons and escaped quotes (a
/// `host` that a proxy copied from the request): they split neither elements nor parameters,
/// so what a client wrote there is never read as a hop.
#[tokio::test]
async fn quoted_forwarded_values_split_neither_elements_nor_parameters() {
    let values: [&[u8]; 5] = [
        b"for=203.0.113.9;host=\"example.com,for=6.6.6.6\"",
        b"host=\"example.com;for=6.6.6.6\";for=203.0.113.9",
        b"for=203.0.113.9;host=\"a\\\",for=6.6.6.6\"",
        b"for=6.6.6.6, for=\"203.0.113.9\";host=\"a,b\", for=10.0.0.7",
        b"for=6.6.6.6, for=\"\\203.0.113.9\";host=\"a\\\\\"",
    ];
    each_forwarded_keys_as(&values, "203.0.113.9").await;
}

/// RFC 7239 lets a proxy hide a port behind an obfuscated identifier (`_` and letters,
/// digits, `.`, `_`, `-`); the address before it is still the client's.
#[tokio::test]
async fn an_obfuscated_port_hides_the_port_not_the_address() {
    let values: [&[u8]; 3] = [
        b"for=\"203.0.113.9:_gazonk\"",
        b"for=6.6.6.6, for=\"203.0.113.9:_p.1-x\";proto=https, for=10.0.0.7",
        b"for=6.6.6.6, for=\"[::ffff:203.0.113.9]:_hidden\"",
    ];
    each_forwarded_keys_as(&values, "203.0.113.9").await;
}

#[tokio::test]
async fn thousands_of_hops_are_answered_quickly_and_keyed_consistently() {
    let (svc, store) = rig(behind_proxies());
    let trusted_hops: Vec<String> = (0..10_000)
        .map(|i| format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256))
        .collect();
    let started = Instant::now();
    for forged in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let value = format!("{forged}, {}", trusted_hops.join(", "));
        assert!(value.len() > 100_000);
        status(&svc, request(PROXY, &xff(&value))).await;
    }
    // Many header lines rather than one long one.
    let lines: Vec<(&'static str, HeaderValue)> = trusted_hops
        .iter()
        .map(|hop| ("x-forwarded-for", HeaderValue::from_str(hop).unwrap()))
        .collect();
    status(&svc, request(PROXY, &lines)).await;
    assert!(
        started.elapsed().as_secs() < 5,
        "four requests took {:?}",
        started.elapsed()
    );
    // Past the 32 hops read, all trusted, the client is unknown: no key.
    assert_eq!(
        store.len(),
        0,
        "the client-written left end of the list must not choose the key"
    );

    let untrusted_hops = vec!["198.51.100.1"; 10_000].join(",");
    let (svc, store) = rig(behind_proxies());
    status(&svc, request(PROXY, &xff(&untrusted_hops))).await;
    assert!(charged(&store, "198.51.100.1"));
}

#[tokio::test]
/// A trusted proxy's hop that holds no address leaves the client unknown: never a panic, never
/// the proxy's own key; the request gets the layer's answer for a request without a key (500
/// by default), or is served unlimited where the layer allows such requests.
async fn garbage_from_a_trusted_proxy_leaves_the_client_unknown() {
    let long_digits = "9".repeat(5_000);
    let garbage = [
        "",
        " ",
        ",",
        ",,,,,,",
        "unknown",
        "_hidden",
        "999.1.1.1",
        "1.2.3",
        "01.02.03.04",
        "0x7f000001",
        "[::1",
        "::1]",
        "[::1]:99999",
        "1.2.3.4:",
        "1.2.3.4:abc",
        "fe80::1%eth0",
        "for=1.2.3.4",
        "\"1.2.3.4\"",
        "1.2.3.4 5.6.7.8",
        "\t",
        &long_digits,
    ];
    for value in garbage {
        let (svc, store) = rig(behind_proxies());
        let response = svc
            .clone()
            .oneshot(request(PROXY, &xff(value)))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{value:?}"
        );
        assert!(store.is_empty(), "{value:?}");
        let allowing = RateLimitLayer::builder()
            .quota(quota())
            .key(behind_proxies())
            .on_missing_key(MissingKey::Allow)
            .store(store.clone())
            .build()
            .unwrap()
            .layer(Hello);
        let response = allowing.oneshot(request(PROXY, &xff(value))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{value:?}");
        assert!(store.is_empty(), "{value:?}");

        if value == "\"1.2.3.4\"" {
            continue; // a quoted address is valid in `Forwarded`
        }
        let (svc, store) = rig(behind_proxies().rfc7239());
        let value = HeaderValue::from_str(&format!("for={value}")).unwrap();
        let response = svc
            .clone()
            .oneshot(request(PROXY, &[("forwarded", value.clone())]))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{value:?}"
        );
        assert!(store.is_empty(), "{value:?}");
    }
}

#[tokio::test]
async fn hops_with_ports_and_brackets_are_read() {
    for (hop, key) in [
        ("203.0.113.9:8080", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::"),
        ("[2001:db8::1]", "2001:db8::"),
        ("2001:db8::1", "2001:db8::"),
        (" 203.0.113.9 ", "203.0.113.9"),
    ] {
        let (svc, store) = rig(behind_proxies());
        status(&svc, request(PROXY, &xff(hop))).await;
        assert!(charged(&store, key), "{hop:?} should key as {key}");
    }
}

#[tokio::test]
async fn rfc7239_forwarded_is_read_through_trusted_proxies_only() {
    let (svc, store) = rig(behind_proxies().rfc7239());
    let value = HeaderValue::from_static(
        "for=198.51.100.77;proto=http, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1, \
         for=10.0.0.9",
    );
    status(&svc, request(PROXY, &[("forwarded", value)])).await;
    assert!(charged(&store, "2001:db8:cafe::"));
    assert_eq!(store.len(), 1);

    // X-Forwarded-For is not read when Forwarded is configured.
    let (svc, store) = rig(behind_proxies().rfc7239());
    status(&svc, request(PROXY, &xff("203.0.113.9"))).await;
    assert!(charged(&store, "10.0.0.2"));
}

#[tokio::test]
async fn ipv6_peers_in_one_64_share_a_budget() {
    let (svc, store) = rig(PeerIp::new());
    let same_64 = [
        "[2001:db8:1:2::1]:1000",
        "[2001:db8:1:2:ffff:ffff:ffff:ffff]:2000",
    ];
    assert_eq!(status(&svc, request(same_64[0], &[])).await, StatusCode::OK);
    assert_eq!(
        status(&svc, request(same_64[1], &[])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&svc, request("[2001:db8:1:3::1]:1000", &[])).await,
        StatusCode::OK,
        "the next /64 is another client"
    );
    assert!(charged(&store, "2001:db8:1:2::"));
    assert_eq!(store.len(), 2);

    let (svc, _) = rig(PeerIp::new().ipv6_prefix(128));
    assert_eq!(status(&svc, request(same_64[0], &[])).await, StatusCode::OK);
    assert_eq!(status(&svc, request(same_64[1], &[])).await, StatusCode::OK);

    let (svc, store) = rig(PeerIp::new().ipv6_prefix(48));
    status(&svc, request("[2001:db8:1:3::1]:1000", &[])).await;
    assert_eq!(
        status(&svc, request("[2001:db8:1:ffff::1]:1000", &[])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(charged(&store, "2001:db8:1::"));
}

#[tokio::test]
async fn ipv4_mapped_peers_count_as_their_ipv4_address() {
    let (svc, store) = rig(PeerIp::new());
    assert_eq!(
        status(&svc, request("[::ffff:192.0.2.7]:1000", &[])).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&svc, request("192.0.2.7:2000", &[])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(charged(&store, "192.0.2.7"));
    assert_eq!(store.len(), 1);

    // A proxy reached over IPv6 with a mapped address is trusted by its IPv4 network.
    let (svc, store) = rig(behind_proxies());
    status(
        &svc,
        request("[::ffff:10.0.0.2]:1000", &xff("::ffff:203.0.113.9")),
    )
    .await;
    assert!(charged(&store, "203.0.113.9"));
}

/// An IPv6-only server behind a stateless translator (SIIT, RFC 7755) sees its IPv4 clients
/// in the well-known NAT64 prefix `64:ff9b::/96`. Each counts as the IPv4 address it carries:
/// grouped by /64, every IPv4 client would share one budget, which one of them could spend.
#[tokio::test]
async fn translated_ipv4_peers_count_as_their_ipv4_address() {
    let (svc, store) = rig(PeerIp::new());
    assert_eq!(
        status(&svc, request("[64:ff9b::192.0.2.7]:1000", &[])).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&svc, request("[64:ff9b::198.51.100.7]:1000", &[])).await,
        StatusCode::OK,
        "another IPv4 client has a budget of its own"
    );
    assert_eq!(
        status(&svc, request("192.0.2.7:2000", &[])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(charged(&store, "192.0.2.7"));
    assert!(charged(&store, "198.51.100.7"));
    assert_eq!(store.len(), 2);

    let (svc, store) = rig(behind_proxies());
    status(&svc, request("10.0.0.2:1000", &xff("64:ff9b::203.0.113.9"))).await;
    assert!(charged(&store, "203.0.113.9"));

    // A 6to4 host (192.0.2.7's /48) cannot rotate through its 65 536 /64s, and the clients of
    // one Teredo server are budgets of their own.
    let (svc, store) = rig(PeerIp::new());
    let statuses = [
        "[2002:c000:207:1::1]:1000",
        "[2002:c000:207:2::1]:1000",
        "[2001:0:4136:e378:8000:63bf:3fff:fdf7]:1000",
        "[2001:0:4136:e378:8000:63bf:3fff:fdf6]:1000",
    ];
    let mut got = Vec::new();
    for peer in statuses {
        got.push(status(&svc, request(peer, &[])).await);
    }
    assert_eq!(
        got,
        [
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK,
            StatusCode::OK
        ]
    );
    for ip in ["192.0.2.7", "192.0.2.8", "192.0.2.9"] {
        assert!(charged(&store, ip), "{ip}");
    }
}

#[tokio::test]
async fn axum_connect_info_is_read_before_a_plain_socket_addr() {
    let (svc, store) = rig(PeerIp::new());
    let mut req = request("192.0.2.1:1", &[]);
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.2:2".parse::<SocketAddr>().unwrap(),
    ));
    status(&svc, req).await;
    assert!(charged(&store, "192.0.2.2"));
    assert!(!charged(&store, "192.0.2.1"));
}

#[tokio::test]
async fn header_keys_separate_clients_and_missing_headers_are_rejected() {
    let (svc, store) = rig(Header::new("x-api-key"));
    let with_key = |key: HeaderValue| request(PROXY, &[("x-api-key", key)]);
    let alice = || with_key(HeaderValue::from_static("alice"));
    assert_eq!(status(&svc, alice()).await, StatusCode::OK);
    assert_eq!(status(&svc, alice()).await, StatusCode::TOO_MANY_REQUESTS);
    let bob = with_key(HeaderValue::from_static("bob"));
    assert_eq!(status(&svc, bob).await, StatusCode::OK);
    let binary = || with_key(HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    assert_eq!(status(&svc, binary()).await, StatusCode::OK);
    assert_eq!(status(&svc, binary()).await, StatusCode::TOO_MANY_REQUESTS);
    let huge = || with_key(HeaderValue::from_str(&"k".repeat(50_000)).unwrap());
    assert_eq!(status(&svc, huge()).await, StatusCode::OK);
    assert_eq!(status(&svc, huge()).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(store.len(), 4);

    let key = Header::new("x-api-key").extract(&alice()).unwrap();
    assert!(key_charged(&store, key));
    assert!(key_charged(&store, "alice"), "a header key is its value");
    assert!(!key_charged(&store, "carol"));

    let keyless = status(&svc, request(PROXY, &[])).await;
    assert_eq!(keyless, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(store.len(), 4);
}

#[tokio::test]
async fn the_global_key_is_one_budget_for_everyone_and_needs_no_peer() {
    let (svc, store) = rig(Global);
    assert_eq!(
        status(&svc, Request::new(String::new())).await,
        StatusCode::OK
    );
    for peer in ["192.0.2.1:1", "[2001:db8::1]:2", "198.51.100.1:3"] {
        assert_eq!(
            status(&svc, request(peer, &[])).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(store.len(), 1);
    assert!(key_charged(&store, ()));
}

#[tokio::test]
async fn a_closure_key_limits_by_whatever_it_returns() {
    let by_path = |req: &Request<String>| Some(req.uri().path().to_owned());
    let (svc, store) = rig(by_path);
    let to = |path: &str| Request::get(path).body(String::new()).unwrap();
    assert_eq!(status(&svc, to("/a")).await, StatusCode::OK);
    assert_eq!(status(&svc, to("/a")).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status(&svc, to("/b")).await, StatusCode::OK);
    assert!(key_charged(&store, "/a"));
    assert!(!key_charged(&store, "/c"));
}

#[test]
fn bad_trusted_networks_are_named_in_the_error() {
    for bad in [
        "banana",
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0.0/-1",
        "10.0.0/8",
        "",
    ] {
        let err = ForwardedIp::new([bad]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{bad:?}")),
            "{bad:?}: {err}"
        );
    }
    assert!(ForwardedIp::new(["10.0.0.1", "::1", "0.0.0.0/0", "::/0"]).is_ok());
    // Trusting no proxy reads no header: every request keyed by its peer, a load balancer's
    // clients on one budget.
    let err = ForwardedIp::new(Vec::<&str>::new()).unwrap_err();
    assert!(err.to_string().contains("trusts no proxy"), "{err}");
}
