//! Hostile input: whatever a client sends, the layer answers it, never panics, and does no more
//! work for it than for a normal request.
//!
//! Property tests feed generated input to every part a client controls: forwarding headers
//! through [`ForwardedIp`], header keys, gRPC paths, the bytes of tuple keys, and whole requests
//! through three layers at once; quota strings get the same treatment, since they come from
//! config files. A real server on a real socket then gets malformed HTTP written byte by byte.
//! Work is bounded by structure, never by timing: only the last 32 hops of a forwarding header
//! are read, whatever precedes them, and a hop longer than 64 bytes is never parsed.
//!
//! Each property runs a few hundred cases by default, which takes seconds. Proptest's own
//! `PROPTEST_CASES` sets the number for every property; the long run is
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test --release --test hostile
//! ```
//!
//! which passed at 8c3c5a2 in 1 247 s on 2 vCPUs (peak RSS 428 MiB).

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::header::{HeaderName, CONTENT_TYPE, FORWARDED, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{service_fn, Layer, ServiceExt};
use tower_ratelimit::response::{RATELIMIT, RATELIMIT_POLICY};
use tower_ratelimit::{
    ForwardedIp, GrpcMethod, Header, HeaderKey, KeyBytes, KeyExtractor, ManualClock, MemoryStore,
    MethodKey, Policy, Quota, QuotaError, RateLimitLayer,
};

mod common;
use common::manual_store;

/// The settings of a property: `PROPTEST_CASES` cases when it is set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Runs `future` to completion on a runtime of its own.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(future)
}

// ---------------------------------------------------------------------------------------------
// Forwarding headers
// ---------------------------------------------------------------------------------------------

/// The networks of the proxies the tests trust.
const TRUSTED: [&str; 2] = ["10.0.0.0/8", "fd00::/8"];

/// Whether `ip` lies in [`TRUSTED`], IPv4-mapped addresses counting as IPv4.
fn is_trusted(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

/// How many hops, counted from the right, `ForwardedIp` reads at most.
const MAX_HOPS: usize = 32;

/// One hop of a forwarding header as a proxy, or a client, wrote it.
#[derive(Clone, Debug)]
struct Hop {
    kind: HopKind,
    /// The hop as `X-Forwarded-For` has it; `Forwarded` wraps it in a `for=` parameter.
    text: String,
    /// How `Forwarded` wraps it.
    element: Element,
}

#[derive(Clone, Copy, Debug)]
enum HopKind {
    /// An address in one of the forms proxies write.
    Addr(IpAddr),
    /// An IPv6 address with a zone: read as the address, or not at all.
    Zoned(IpAddr),
    /// Text that no reading makes an address of.
    Junk,
}

/// The decoration of a hop in a `Forwarded` element.
#[derive(Clone, Debug)]
struct Element {
    name: &'static str,
    quoted: bool,
    before: Option<&'static str>,
    after: Option<&'static str>,
    /// For junk only: no `for=` parameter at all.
    no_for: bool,
}

impl Hop {
    /// What `ForwardedIp` may read this hop as: `None` is an unreadable hop.
    fn readings(&self) -> Vec<Option<IpAddr>> {
        match self.kind {
            HopKind::Addr(ip) => vec![Some(ip.to_canonical())],
            HopKind::Zoned(ip) => vec![Some(ip.to_canonical()), None],
            HopKind::Junk => vec![None],
        }
    }

    /// Where the `for` parameter lies in [`Hop::forwarded`]: from its first byte to just past
    /// its last, so that a byte inserted at either end, or anywhere between, lands in it.
    fn for_span(&self) -> Option<(usize, usize)> {
        let e = &self.element;
        if e.no_for && matches!(self.kind, HopKind::Junk) {
            return None;
        }
        let start = e.before.map_or(0, |before| before.len() + 1);
        let quotes = if e.quoted { 2 } else { 0 };
        Some((start, start + e.name.len() + 1 + self.text.len() + quotes))
    }

    /// The hop as one element of a `Forwarded` header.
    fn forwarded(&self) -> String {
        let e = &self.element;
        let quote = if e.quoted { "\"" } else { "" };
        let for_param = (!(e.no_for && matches!(self.kind, HopKind::Junk)))
            .then(|| format!("{}={quote}{}{quote}", e.name, self.text));
        [
            e.before.map(str::to_owned),
            for_param,
            e.after.map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(";")
    }
}

/// One header line: hops separated by commas, one of which may hold a byte of obs-text.
#[derive(Clone, Debug)]
struct Line {
    hops: Vec<Hop>,
    /// A byte of obs-text (0x80-0xFF) written into one hop: which hop, where in its text, and
    /// the byte. That hop is unreadable if the byte lands in its address (anywhere in an
    /// `X-Forwarded-For` hop, in the `for` parameter of a `Forwarded` element); the others are
    /// read as usual.
    obs: Option<(Index, Index, u8)>,
}

impl Line {
    /// A line of `hops`, all of them visible ASCII.
    fn clean(hops: Vec<Hop>) -> Line {
        Line { hops, obs: None }
    }

    /// The hop that holds the byte of obs-text, if any.
    fn tainted(&self) -> Option<usize> {
        self.obs.map(|(hop, _, _)| hop.index(self.hops.len()))
    }

    fn value(&self, rfc7239: bool) -> HeaderValue {
        let tainted = self.tainted();
        let hops: Vec<Vec<u8>> = self
            .hops
            .iter()
            .enumerate()
            .map(|(i, hop)| {
                let text = if rfc7239 {
                    hop.forwarded()
                } else {
                    hop.text.clone()
                };
                let mut bytes = text.into_bytes();
                if let (Some(t), Some((_, at, byte))) = (tainted, self.obs) {
                    if t == i {
                        bytes.insert(at.index(bytes.len() + 1), byte);
                    }
                }
                bytes
            })
            .collect();
        HeaderValue::from_bytes(&hops.join(&b","[..])).expect("header value bytes")
    }

    fn readings(&self, rfc7239: bool) -> Vec<Vec<Option<IpAddr>>> {
        self.hops
            .iter()
            .enumerate()
            .map(|(i, hop)| match self.obs {
                // Where `value` puts the byte: in the address, the hop is unreadable.
                Some((which, at, _)) if which.index(self.hops.len()) == i => {
                    let in_address = !rfc7239 || {
                        let at = at.index(hop.forwarded().len() + 1);
                        hop.for_span()
                            .is_none_or(|(start, end)| (start..=end).contains(&at))
                    };
                    if in_address {
                        vec![None]
                    } else {
                        hop.readings()
                    }
                }
                _ => hop.readings(),
            })
            .collect()
    }
}

/// The key of the client address `ip` with IPv6 kept whole: the IPv4 address of an
/// IPv4-mapped address, or the public IPv4 address that a NAT64, 6to4 or Teredo address
/// carries, else `ip`.
fn key_of(ip: IpAddr) -> IpAddr {
    // A public IPv4 address, carried in two segments (flipped for Teredo).
    let ipv4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let local = matches!(
            (a, b),
            (0 | 10 | 127, _) | (169, 254) | (192, 168) | (224..=255, _)
        ) || (a == 172 && (16..32).contains(&b))
            || (a == 100 && (64..128).contains(&b));
        (!local).then(|| IpAddr::V4(Ipv4Addr::new(a, b, (low >> 8) as u8, low as u8)))
    };
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let carried = match v6.segments() {
                // NAT64, 6to4, Teredo (the client's address with every bit flipped).
                [0x64, 0xff9b, 0, 0, 0, 0, high, low] => ipv4(high, low),
                [0x2002, high, low, ..] => ipv4(high, low),
                [0x2001, 0, .., high, low] => ipv4(!high, !low),
                _ => None,
            };
            carried.unwrap_or(IpAddr::V6(v6))
        }
        ip => ip,
    }
}

/// The keys `ForwardedIp` (with IPv6 kept whole) may give a request from `peer` with `lines`:
/// the first untrusted address from the right, through at most [`MAX_HOPS`] hops, or the last
/// trusted one when the header's hops end before; no key (`None`) when the walk reaches an
/// unreadable hop, or reads [`MAX_HOPS`] trusted ones.
/// One answer unless a zone is involved.
fn expected_keys(peer: SocketAddr, lines: &[Line], rfc7239: bool) -> BTreeSet<Option<IpAddr>> {
    let peer = peer.ip().to_canonical();
    if !is_trusted(peer) {
        return BTreeSet::from([Some(key_of(peer))]);
    }
    let hops: Vec<Vec<Option<IpAddr>>> = lines
        .iter()
        .rev()
        .flat_map(|line| line.readings(rfc7239).into_iter().rev())
        .take(MAX_HOPS)
        .collect();
    let read = hops.len();
    let mut walking = BTreeSet::from([peer]);
    let mut done = BTreeSet::new();
    for readings in hops {
        // Every walk still going reads this hop: where it goes next does not depend on where
        // it came from.
        if walking.is_empty() {
            break;
        }
        let mut next = BTreeSet::new();
        for reading in readings {
            match reading {
                Some(ip) if is_trusted(ip) => {
                    next.insert(ip);
                }
                Some(ip) => {
                    done.insert(Some(key_of(ip)));
                }
                None => {
                    done.insert(None);
                }
            }
        }
        walking = next;
    }
    if read == MAX_HOPS && !walking.is_empty() {
        done.insert(None);
    } else {
        done.extend(walking.into_iter().map(|ip| Some(key_of(ip))));
    }
    done
}

fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from((n >> 8) | (0xfd << 120)))),
        any::<[u8; 3]>()
            .prop_map(|[a, b, c]| IpAddr::V6(Ipv4Addr::new(10, a, b, c).to_ipv6_mapped())),
    ]
}

fn client_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(n.into())),
        any::<u128>().prop_map(|n| IpAddr::V6(n.into())),
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        // An IPv4 client seen through a translator.
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(0x64_ff9b_u128 << 96 | u128::from(n)))),
        // IPv4 clients through 6to4 and Teredo tunnels.
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(0x2002_u128 << 112 | n >> 16))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(0x2001_0000_u128 << 96 | n >> 32))),
        // The same three carrying addresses of the local ranges half the time, which arbitrary
        // ones seldom hit.
        (local_or_any_ipv4(), any::<u64>(), 0..3u8).prop_map(|(v4, rest, form)| {
            let (v4, rest) = (u128::from(v4), u128::from(rest));
            IpAddr::V6(Ipv6Addr::from(match form {
                0 => 0x64_ff9b_u128 << 96 | v4,
                1 => 0x2002_u128 << 112 | v4 << 80 | rest,
                _ => 0x2001_0000_u128 << 96 | rest << 32 | u128::from(!(v4 as u32)),
            }))
        }),
    ]
    .prop_filter("an untrusted address", |ip| !is_trusted(*ip))
}

/// An IPv4 address as a number: in one of the local ranges that tunnels may not carry, or any.
fn local_or_any_ipv4() -> impl Strategy<Value = u32> {
    let local: [u16; 11] = [
        0x0000, 0x0a00, 0x7f00, 0xa9fe, 0xc0a8, 0xac10, 0xac1f, 0x6440, 0x647f, 0xe000, 0xffff,
    ];
    prop_oneof![
        (select(local.to_vec()), any::<u16>())
            .prop_map(|(high, low)| u32::from(high) << 16 | u32::from(low)),
        any::<u32>(),
    ]
}

/// Optional whitespace around a hop.
fn pad() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", " ", "  ", "\t"])
}

/// `ip` as proxies write it: bare, with a port, bracketed, expanded in capitals.
fn written(ip: IpAddr) -> impl Strategy<Value = String> {
    (0..4u8, any::<u16>(), pad(), pad()).prop_map(move |(form, port, left, right)| {
        let text = match (ip, form) {
            (IpAddr::V4(v4), 0 | 1) => v4.to_string(),
            (IpAddr::V4(v4), _) => format!("{v4}:{port}"),
            (IpAddr::V6(v6), 0) => v6.to_string(),
            (IpAddr::V6(v6), 1) => v6.segments().map(|s| format!("{s:X}")).join(":"),
            (IpAddr::V6(v6), 2) => format!("[{v6}]"),
            (IpAddr::V6(v6), _) => format!("[{v6}]:{port}"),
        };
        format!("{left}{text}{right}")
    })
}

/// An IPv6 address with a zone, in brackets or not, with a port or not.
fn zoned() -> impl Strategy<Value = (IpAddr, String)> {
    let zone = prop_oneof!["[0-9]{1,3}", "[a-z]{1,5}[0-9]?"];
    (
        prop_oneof![trusted_ip(), client_ip()],
        zone,
        0..3u8,
        any::<u16>(),
    )
        .prop_map(|(ip, zone, form, port)| {
            let v6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let text = match form {
                0 => format!("{v6}%{zone}"),
                1 => format!("[{v6}%{zone}]"),
                _ => format!("[{v6}%{zone}]:{port}"),
            };
            (IpAddr::V6(v6), text)
        })
}

/// Text that is no address: near misses, obfuscated identifiers, words, and hops too long to
/// be read even where they would parse. Never a comma, semicolon, equals sign or quote, which
/// would change how the header splits.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "unknown",
            "_hidden",
            "999.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "[::1",
            "::1]",
            "[[::1]]",
            "[::1]:99999",
            "1.2.3.4:",
            "1.2.3.4:x",
            "1.2.3.4:99999",
            "0x7f000001",
            "01.02.03.04",
            ":::",
            "1.2.3.4 5.6.7.8",
            "fe80::1%",
            "1.2.3.4%1",
            "[1.2.3.4]:80",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
        (65usize..5_000).prop_map(|n| "9".repeat(n)),
        // A real address whose port has enough leading zeros to pass 64 bytes.
        (client_ip(), 60usize..200).prop_map(|(ip, zeros)| match ip {
            IpAddr::V4(v4) => format!("{v4}:{}80", "0".repeat(zeros)),
            IpAddr::V6(v6) => format!("[{v6}]:{}80", "0".repeat(zeros)),
        }),
    ]
}

fn element() -> impl Strategy<Value = Element> {
    let param = prop::option::of(select(vec![
        "proto=https",
        "by=10.0.0.1",
        "host=example.com",
        "by=\"[fd00::1]:80\"",
        "proto=http;by=_x",
    ]));
    (
        select(vec!["for", "For", "FOR", " for "]),
        any::<bool>(),
        param.clone(),
        param,
        prop::bool::weighted(0.3),
    )
        .prop_map(|(name, quoted, before, after, no_for)| Element {
            name,
            quoted,
            before,
            after,
            no_for,
        })
}

fn hop_of(kind: impl Strategy<Value = (HopKind, String)>) -> impl Strategy<Value = Hop> {
    (kind, element()).prop_map(|((kind, text), element)| Hop {
        kind,
        text,
        element,
    })
}

fn trusted_hop() -> impl Strategy<Value = Hop> {
    hop_of(trusted_ip().prop_flat_map(|ip| (Just(HopKind::Addr(ip)), written(ip))))
}

fn client_hop() -> impl Strategy<Value = Hop> {
    hop_of(client_ip().prop_flat_map(|ip| (Just(HopKind::Addr(ip)), written(ip))))
}

fn hop() -> impl Strategy<Value = Hop> {
    prop_oneof![
        6 => trusted_hop(),
        2 => client_hop(),
        1 => hop_of(zoned().prop_map(|(ip, text)| (HopKind::Zoned(ip), text))),
        2 => hop_of(junk().prop_map(|text| (HopKind::Junk, text))),
    ]
}

/// Which hop of a line gets a byte of obs-text, where in the hop, and which byte.
fn obs() -> impl Strategy<Value = (Index, Index, u8)> {
    (any::<Index>(), any::<Index>(), 0x80u8..=0xff)
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => vec(hop(), 1..12).prop_map(Line::clean),
        // Long runs of trusted hops, so that walks often reach the cap.
        3 => vec(trusted_hop(), 1..24).prop_map(Line::clean),
        // One unreadable hop among readable ones, often among trusted ones that lead to it.
        1 => (vec(hop(), 1..12), obs()).prop_map(|(hops, obs)| Line { hops, obs: Some(obs) }),
        1 => (vec(prop_oneof![4 => trusted_hop(), 1 => client_hop()], 1..24), obs())
            .prop_map(|(hops, obs)| Line { hops, obs: Some(obs) }),
    ]
}

fn peer() -> impl Strategy<Value = SocketAddr> {
    (
        prop_oneof![3 => trusted_ip(), 1 => client_ip()],
        any::<u16>(),
    )
        .prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Any byte a header value may hold: visible ASCII, space, tab and obs-text.
fn value_byte() -> impl Strategy<Value = u8> {
    any::<u8>().prop_map(|b| match b {
        b'\t' | 0x20..=0x7e | 0x80..=0xff => b,
        control => control | 0x80,
    })
}

/// Header value bytes: short ones, and huge ones made of a repeated piece.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(value_byte(), 0..64),
        1 => (vec(value_byte(), 1..8), 1usize..20_000).prop_map(|(piece, n)| piece.repeat(n)),
    ]
}

fn forwarded_ip(rfc7239: bool) -> ForwardedIp {
    let extractor = ForwardedIp::new(TRUSTED).unwrap().ipv6_prefix(128);
    if rfc7239 {
        extractor.rfc7239()
    } else {
        extractor
    }
}

fn forwarding_header(rfc7239: bool) -> HeaderName {
    if rfc7239 {
        FORWARDED
    } else {
        HeaderName::from_static("x-forwarded-for")
    }
}

/// A request from `peer` with `values` as lines of header `name`.
fn request_from(peer: SocketAddr, name: &HeaderName, values: &[HeaderValue]) -> Request<()> {
    let mut req = Request::new(());
    for value in values {
        req.headers_mut().append(name, value.clone());
    }
    req.extensions_mut().insert(peer);
    req
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn forwarding_headers_are_read_right_to_left_through_trusted_proxies_only(
        peer in peer(),
        lines in vec(line(), 0..6),
        rfc7239 in any::<bool>(),
    ) {
        let values: Vec<HeaderValue> = lines.iter().map(|line| line.value(rfc7239)).collect();
        let req = request_from(peer, &forwarding_header(rfc7239), &values);
        let key = forwarded_ip(rfc7239).extract(&req);
        let expected = expected_keys(peer, &lines, rfc7239);
        prop_assert!(expected.contains(&key), "got {key:?}, expected one of {expected:?}");
    }

    #[test]
    fn nothing_left_of_the_last_32_hops_is_read(
        peer in trusted_ip().prop_map(|ip| SocketAddr::new(ip, 443)),
        unread in vec(
            prop_oneof![
                value_bytes(),
                vec(client_hop(), 1..8).prop_map(|hops| {
                    Line::clean(hops).value(false).as_bytes().to_vec()
                }),
            ],
            1..4,
        ),
        read in vec(prop_oneof![8 => trusted_hop(), 1 => hop()], MAX_HOPS..64),
        rfc7239 in any::<bool>(),
    ) {
        let name = forwarding_header(rfc7239);
        let read = Line::clean(read).value(rfc7239);
        let mut values: Vec<HeaderValue> = unread
            .iter()
            .map(|bytes| HeaderValue::from_bytes(bytes).expect("header value bytes"))
            .collect();
        values.push(read.clone());
        let extractor = forwarded_ip(rfc7239);
        let with_more = extractor.extract(&request_from(peer, &name, &values));
        let alone = extractor.extract(&request_from(peer, &name, &[read]));
        prop_assert_eq!(with_more, alone);
    }

    #[test]
    fn arbitrary_forwarding_bytes_never_panic_and_untrusted_peers_are_their_own_key(
        peer in peer(),
        xff in vec(value_bytes(), 0..6),
        forwarded in vec(value_bytes(), 0..6),
    ) {
        let mut req = Request::new(());
        for (name, lines) in [(forwarding_header(false), &xff), (FORWARDED, &forwarded)] {
            for bytes in lines {
                let value = HeaderValue::from_bytes(bytes).expect("header value bytes");
                req.headers_mut().append(&name, value);
            }
        }
        req.extensions_mut().insert(peer);
        for rfc7239 in [false, true] {
            let key = forwarded_ip(rfc7239).extract(&req);
            if !is_trusted(peer.ip()) {
                prop_assert_eq!(key, Some(key_of(peer.ip())));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quota strings
// ---------------------------------------------------------------------------------------------

type Per = fn(u32) -> Result<Quota, QuotaError>;

/// A unit in one of its spellings, with its constructor and the largest rate tested with it.
/// Rates per second stop at 10⁹: above that the interval rounds down to 0 ns, which the
/// constructors accept today and against which no request can be checked.
fn unit() -> impl Strategy<Value = (String, Per, u32)> {
    let units: Vec<(&str, Per, u32)> = vec![
        ("s", Quota::try_per_second, 1_000_000_000),
        ("sec", Quota::try_per_second, 1_000_000_000),
        ("secs", Quota::try_per_second, 1_000_000_000),
        ("second", Quota::try_per_second, 1_000_000_000),
        ("seconds", Quota::try_per_second, 1_000_000_000),
        ("m", Quota::try_per_minute, u32::MAX),
        ("min", Quota::try_per_minute, u32::MAX),
        ("mins", Quota::try_per_minute, u32::MAX),
        ("minute", Quota::try_per_minute, u32::MAX),
        ("minutes", Quota::try_per_minute, u32::MAX),
        ("h", Quota::try_per_hour, u32::MAX),
        ("hr", Quota::try_per_hour, u32::MAX),
        ("hrs", Quota::try_per_hour, u32::MAX),
        ("hour", Quota::try_per_hour, u32::MAX),
        ("hours", Quota::try_per_hour, u32::MAX),
    ];
    (select(units), any::<u64>()).prop_map(|((unit, per, max), case)| {
        let unit = unit
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if (case >> i) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        (unit, per, max)
    })
}

/// A number as it may be written: with a plus sign or leading zeros.
fn number(n: u32, style: u8) -> String {
    match style {
        0 => format!("+{n}"),
        1 => format!("00{n}"),
        _ => n.to_string(),
    }
}

fn count(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), 1..=10u32, 1..=max, Just(max)]
}

/// A well-formed quota string and what it spells: the rate, its constructor, and the burst.
fn quota_string() -> impl Strategy<Value = (String, Per, u32, Option<u32>)> {
    unit().prop_flat_map(|(unit, per, max)| {
        (
            count(max),
            prop::option::of(prop_oneof![count(max), Just(u32::MAX)]),
            (0..4u8, 0..4u8),
            select(vec![";", ","]),
            vec(pad(), 8),
        )
            .prop_map(move |(n, burst, (n_style, b_style), sep, ws)| {
                let mut s = format!(
                    "{}{}{}/{}{unit}{}",
                    ws[0],
                    number(n, n_style),
                    ws[1],
                    ws[2],
                    ws[3]
                );
                if let Some(b) = burst {
                    s += &format!(
                        "{sep}{}burst{}={}{}{}",
                        ws[4],
                        ws[5],
                        ws[6],
                        number(b, b_style),
                        ws[7]
                    );
                }
                (s, per, n, burst)
            })
    })
}

/// A string one edit away from a valid quota with a rate of at least 1, which the edit breaks.
fn broken_quota_string() -> impl Strategy<Value = String> {
    let valid = (1..=1_000_000u32, select(vec!["s", "min", "h"]));
    let bad_unit = select(vec![
        "",
        "ms",
        "w",
        "week",
        "fortnight",
        "ss",
        "mins_",
        "sec s",
        "µs",
        "秒",
        "s/s",
    ]);
    let bad_number = select(vec![
        "",
        "-1",
        "1.5",
        "1e3",
        "0x10",
        "4294967296",
        "99999999999999999999",
        "١٠",
        "1 0",
        "+-1",
    ]);
    let bad_burst = select(vec![
        "burst",
        "burst=",
        "burst=-1",
        "burst=1.5",
        "burst=4294967296",
        "rate=4",
        "burst==2",
        "=2",
        "",
        "burst=2; burst=2",
        "burst=2;",
    ]);
    prop_oneof![
        (valid.clone(), bad_unit).prop_map(|((n, _), unit)| format!("{n}/{unit}")),
        (bad_number, select(vec!["s", "min", "h"])).prop_map(|(n, unit)| format!("{n}/{unit}")),
        valid.clone().prop_map(|(n, unit)| format!("{n} {unit}")),
        valid.clone().prop_map(|(n, unit)| format!("{n}{unit}")),
        (valid, bad_burst, select(vec![";", ","]))
            .prop_map(|((n, unit), burst, sep)| format!("{n}/{unit}{sep} {burst}")),
        // Too many digits for a u32.
        (11usize..20_000).prop_map(|n| format!("{}/s", "1".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn quota_strings_never_panic_errors_quote_them_and_quotas_round_trip(
        s in prop_oneof![
            any::<String>(),
            // Near the syntax; nine digits at most, so never a rate above 10⁹ per second.
            "[ +]?[0-9]{0,9} ?/ ?(s|sec|Min|m|h|hr|HOURS|[a-zA-Z]{0,3}) ?\
             ([;,] ?(burst|Burst|b|[a-z]{0,5}) ?=? ?[+0-9]{0,9}){0,2}",
        ],
    ) {
        match s.parse::<Quota>() {
            Ok(quota) => prop_assert_eq!(quota.to_string().parse::<Quota>(), Ok(quota)),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.contains(&format!("{s:?}")), "{}", message);
            }
        }
    }

    #[test]
    fn well_formed_quota_strings_mean_what_the_constructors_mean(
        (s, per, n, burst) in quota_string(),
    ) {
        let expected = per(n).and_then(|quota| match burst {
            Some(b) => quota.try_allow_burst(b),
            None => Ok(quota),
        });
        match (s.parse::<Quota>(), expected) {
            (Ok(quota), Ok(expected)) => {
                prop_assert_eq!(quota, expected);
                prop_assert_eq!(quota.to_string().parse::<Quota>(), Ok(quota));
            }
            (Err(error), Err(expected)) => {
                // The same reason as the constructor's, with the string quoted.
                let message = error.to_string();
                let expected = expected.to_string();
                let (_, reason) = expected.split_once(": ").expect("a reason");
                prop_assert!(message.contains(&format!("{s:?}")), "{}", message);
                prop_assert!(message.ends_with(reason), "{} / {}", message, expected);
            }
            (got, expected) => prop_assert!(false, "{s:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn near_valid_quota_strings_are_refused_with_the_string_quoted(
        s in broken_quota_string(),
    ) {
        let error = s.parse::<Quota>().expect_err("a broken quota string");
        let message = error.to_string();
        prop_assert!(message.contains(&format!("{s:?}")), "{}", message);
    }
}

// ---------------------------------------------------------------------------------------------
// Header keys, gRPC paths, tuple keys
// ---------------------------------------------------------------------------------------------

fn hash_of<T: std::hash::Hash>(hasher: &RandomState, value: &T) -> u64 {
    hasher.hash_one(value)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn header_keys_are_the_header_bytes_and_each_value_has_its_own_budget(
        pool in vec(value_bytes(), 1..4),
        picks in vec(prop::option::of(any::<Index>()), 1..12),
    ) {
        let sent: Vec<Option<&Vec<u8>>> =
            picks.iter().map(|pick| pick.map(|i| i.get(&pool))).collect();
        let extractor = Header::new("x-api-key");
        let hasher = RandomState::new();
        let request = |value: Option<&Vec<u8>>| {
            let mut req = Request::new(String::new());
            if let Some(bytes) = value {
                let value = HeaderValue::from_bytes(bytes).expect("header value bytes");
                req.headers_mut().insert("x-api-key", value);
                // A second value never counts.
                req.headers_mut()
                    .append("x-api-key", HeaderValue::from_static("second"));
            }
            req
        };
        for value in &sent {
            let key = extractor.extract(&request(*value));
            match value {
                Some(bytes) if !bytes.is_empty() => {
                    let key = key.expect("a key");
                    prop_assert_eq!(key.as_bytes(), bytes.as_slice());
                    prop_assert_eq!(bytes_of(&key), bytes.to_vec());
                    let copy = key.clone();
                    prop_assert!(copy == key);
                    prop_assert_eq!(hash_of(&hasher, &copy), hash_of(&hasher, &key));
                    prop_assert_eq!(format!("{key:?}"), "HeaderKey(..)");
                }
                _ => prop_assert!(key.is_none()),
            }
        }

        let (store, clock) = manual_store();
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .key(Header::new("x-api-key"))
            .store(store.clone())
            .build()
            .unwrap();
        let svc = layer.layer(inner());
        let mut seen = HashSet::new();
        block_on(async {
            for value in &sent {
                clock.advance(Duration::from_secs(1));
                let status = svc.clone().oneshot(request(*value)).await.unwrap().status();
                let expected = match value {
                    Some(bytes) if !bytes.is_empty() => {
                        if seen.insert(*bytes) {
                            StatusCode::OK
                        } else {
                            StatusCode::TOO_MANY_REQUESTS
                        }
                    }
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                prop_assert_eq!(status, expected);
            }
            Ok::<(), TestCaseError>(())
        })?;
        prop_assert_eq!(store.len(), seen.len());
    }

    #[test]
    fn grpc_method_keys_are_the_path_whatever_it_is(
        path in prop_oneof![
            // Paths of the characters http accepts, slashes often.
            "/[a-zA-Z0-9._~!$&'()*+;=:@%/é\"{}-]{0,40}",
            // Service and method, either possibly empty or holding a slash.
            ("[a-zA-Z0-9._/]{0,12}", "[a-zA-Z0-9._/]{0,12}")
                .prop_map(|(service, method)| format!("/{service}/{method}")),
            // Long ones, up to past what a URI may hold.
            ("[a-z./]{1,8}", 1usize..20_000)
                .prop_map(|(piece, n)| format!("/{}", piece.repeat(n))),
            // Anything at all.
            vec(any::<u8>(), 0..40).prop_map(|bytes| {
                format!("/{}", String::from_utf8_lossy(&bytes))
            }),
        ],
        query in prop::option::of("[a-z=&]{0,10}"),
    ) {
        let full = match &query {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        let Ok(uri) = Uri::try_from(full.as_str()) else {
            // http refuses it: no such request can reach the layer.
            return Ok(());
        };
        let key = GrpcMethod
            .extract(&Request::post(uri.clone()).body(()).unwrap())
            .expect("a request with a path has a key");
        prop_assert_eq!(key.as_str(), uri.path());
        prop_assert_eq!(key.to_string(), uri.path());
        prop_assert_eq!(bytes_of(&key), uri.path().as_bytes().to_vec());
        let without_query = Uri::try_from(uri.path()).unwrap();
        let same = GrpcMethod.extract(&Request::post(without_query).body(()).unwrap()).unwrap();
        prop_assert!(same == key, "the query changed the key");

        let parts = uri
            .path()
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'));
        prop_assert_eq!(key.service(), parts.map(|(s, _)| s));
        prop_assert_eq!(key.method(), parts.map(|(_, m)| m));

        let copy = key.clone();
        let hasher = RandomState::new();
        prop_assert!(copy == key);
        prop_assert_eq!(hash_of(&hasher, &copy), hash_of(&hasher, &key));
        prop_assert_eq!(copy.as_str(), key.as_str());
    }
}

/// The bytes of each element of a tuple key, read back from the key's bytes: every element but
/// the last is `<length>:<bytes>`. A tuple whose bytes read back as its elements' bytes cannot
/// share its bytes with a tuple of other elements.
fn split_tuple(mut bytes: &[u8], arity: usize) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::with_capacity(arity);
    for _ in 1..arity {
        let colon = bytes.iter().position(|&b| b == b':')?;
        let digits = std::str::from_utf8(&bytes[..colon]).ok()?;
        // The length in canonical decimal, so that no two prefixes say the same length.
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        let len: usize = digits.parse().ok()?;
        let rest = &bytes[colon + 1..];
        parts.push(rest.get(..len)?.to_vec());
        bytes = &rest[len..];
    }
    parts.push(bytes.to_vec());
    Some(parts)
}

fn bytes_of(key: &impl KeyBytes) -> Vec<u8> {
    key.key_bytes().as_bytes().to_vec()
}

fn header_key(bytes: &[u8]) -> Option<HeaderKey> {
    let value = HeaderValue::from_bytes(bytes).ok()?;
    let req = Request::builder().header("k", value).body(()).unwrap();
    Header::new("k").extract(&req)
}

fn method_key(path: &str) -> Option<MethodKey> {
    let uri = Uri::try_from(format!("/{path}")).ok()?;
    GrpcMethod.extract(&Request::post(uri).body(()).unwrap())
}

/// Strings over a few characters, digits and colons among them, so that two tuples often have
/// the same elements run together.
fn tiny() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[1:a]{0,4}",
        1 => ("[0-9:]{0,3}", 1usize..40).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![trusted_ip(), client_ip()]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn tuple_keys_read_back_as_their_elements(
        pair in (tiny(), tiny()),
        triple in (vec(any::<u8>(), 0..100), vec(any::<u8>(), 0..100), vec(any::<u8>(), 0..100)),
        typed in (ip(), any::<u64>(), any::<i32>()),
        nested in ((tiny(), tiny()), tiny()),
        header in value_bytes(),
        method in "[a-zA-Z0-9./]{0,30}",
    ) {
        let cases: Vec<(Vec<u8>, Vec<Vec<u8>>)> = vec![
            (bytes_of(&pair), vec![bytes_of(&pair.0), bytes_of(&pair.1)]),
            (
                bytes_of(&triple),
                vec![triple.0.clone(), triple.1.clone(), triple.2.clone()],
            ),
            (
                bytes_of(&typed),
                vec![bytes_of(&typed.0), bytes_of(&typed.1), bytes_of(&typed.2)],
            ),
            (bytes_of(&nested), vec![bytes_of(&nested.0), bytes_of(&nested.1)]),
        ];
        for (bytes, elements) in cases {
            prop_assert_eq!(split_tuple(&bytes, elements.len()), Some(elements));
        }
        // Integers and addresses read back as themselves.
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("text");
        // An IPv4-mapped address reads back as the IPv4 address it carries.
        prop_assert_eq!(text(bytes_of(&typed.0)).parse::<IpAddr>(), Ok(typed.0.to_canonical()));
        prop_assert_eq!(text(bytes_of(&typed.1)).parse::<u64>(), Ok(typed.1));
        prop_assert_eq!(text(bytes_of(&typed.2)).parse::<i32>(), Ok(typed.2));

        if let (Some(header), Some(method)) = (header_key(&header), method_key(&method)) {
            let key = (header, method, typed.0);
            let elements = vec![bytes_of(&key.0), bytes_of(&key.1), bytes_of(&key.2)];
            prop_assert_eq!(split_tuple(&bytes_of(&key), 3), Some(elements));
        }
    }

    #[test]
    fn different_tuples_never_have_the_same_bytes(
        a in (tiny(), tiny(), tiny()),
        b in (tiny(), tiny(), tiny()),
    ) {
        prop_assert_eq!(bytes_of(&a) == bytes_of(&b), a == b);
        let (a2, b2) = ((&a.0, &a.1), (&b.0, &b.1));
        prop_assert_eq!(bytes_of(&a2) == bytes_of(&b2), a2 == b2);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole layer
// ---------------------------------------------------------------------------------------------

/// The header the inner service puts on every response, so that a test sees it was called.
const X_INNER: &str = "x-inner";

/// The inner service: 200 with [`X_INNER`].
fn inner(
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(|_req: Request<String>| async {
        let mut response = Response::new(String::from("ok"));
        response
            .headers_mut()
            .insert(X_INNER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    })
}

/// A request's cost for the layer that reads one: `x-cost` as a number, else 1.
fn cost_of<B>(req: &Request<B>) -> u32 {
    req.headers()
        .get("x-cost")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .unwrap_or(1)
}

/// The tier a request names in `x-tier`: `pro`, or `ghost`, which the layer does not have.
fn tier_of<B>(req: &Request<B>) -> Option<&'static str> {
    match req.headers().get("x-tier").map(HeaderValue::as_bytes) {
        Some(b"pro") => Some("pro"),
        Some(b"ghost") => Some("ghost"),
        _ => None,
    }
}

/// Checks every rate-limit header `headers` has: `Retry-After` a whole number of seconds, at
/// least 1; `RateLimit-Policy` and `RateLimit` structured-field Lists of `policies` members
/// with their non-negative Integer parameters; `grpc-retry-pushback-ms` at least 1.
fn check_rate_limit_headers(headers: &HeaderMap, policies: &[&str]) {
    let text = |name: &HeaderName| {
        headers.get(name).map(|value| {
            value
                .to_str()
                .unwrap_or_else(|_| panic!("{name}: {value:?} is not visible ASCII"))
        })
    };
    if let Some(secs) = text(&RETRY_AFTER) {
        let secs: u64 = secs
            .parse()
            .unwrap_or_else(|_| panic!("retry-after: {secs:?}"));
        assert!(secs >= 1, "retry-after: {secs}");
    }
    let pushback = HeaderName::from_static("grpc-retry-pushback-ms");
    if let Some(ms) = text(&pushback) {
        let ms: u64 = ms.parse().unwrap_or_else(|_| panic!("pushback: {ms:?}"));
        assert!(ms >= 1, "pushback: {ms}");
    }
    for (name, params) in [(RATELIMIT_POLICY, ["q", "w"]), (RATELIMIT, ["r", "t"])] {
        let Some(value) = text(&name) else { continue };
        let list: sfv::List = sfv::Parser::new(value)
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {value:?} is not a List: {e}"));
        let mut names = Vec::new();
        for member in list {
            let sfv::ListEntry::Item(item) = member else {
                panic!("{name}: an inner list in {value:?}");
            };
            let policy = item.bare_item.as_string().expect("a String").as_str();
            names.push(policy.to_owned());
            let keys: Vec<&str> = item.params.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, params, "{name}: {value:?}");
            for (key, value) in &item.params {
                let n = value.as_integer().expect("an Integer");
                assert!(i64::from(n) >= 0, "{name}: {key:?} is negative");
            }
        }
        assert_eq!(names, policies, "{name}: {value:?}");
    }
}

/// A request as a hostile client might send it.
#[derive(Clone, Debug)]
struct Hostile {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    peer: Option<SocketAddr>,
    /// How far the clock moves before the request.
    wait_ms: u64,
}

impl Hostile {
    fn request(&self) -> Request<String> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(String::new())
            .unwrap();
        for (name, value) in &self.headers {
            req.headers_mut().append(name, value.clone());
        }
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        req
    }

    /// The request's content type, if it is a gRPC call: a `POST` that claims a gRPC content
    /// type (media types are case-insensitive).
    fn grpc_content_type(&self) -> Option<HeaderValue> {
        if self.method != Method::POST {
            return None;
        }
        let value = self
            .headers
            .iter()
            .find(|(name, _)| name == CONTENT_TYPE)
            .map(|(_, value)| value)?;
        // The media type, up to a subtype (`+`) or parameters (`;`).
        let bytes = value.as_bytes().to_ascii_lowercase();
        let media_type = bytes
            .split(|&b| b == b'+' || b == b';')
            .next()
            .unwrap_or_default();
        match media_type {
            b"application/grpc-web" | b"application/grpc-web-text" => Some(value.clone()),
            b"application/grpc" => Some(HeaderValue::from_static("application/grpc")),
            _ => None,
        }
    }

    fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    value_bytes().prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("header value bytes"))
}

fn text_value(values: Vec<&'static str>) -> impl Strategy<Value = HeaderValue> {
    select(values).prop_map(HeaderValue::from_static)
}

fn request_header() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let name = |name: &'static str| Just(HeaderName::from_static(name));
    let hops =
        |rfc7239: bool| vec(hop(), 1..40).prop_map(move |hops| Line::clean(hops).value(rfc7239));
    let content_type = prop_oneof![
        text_value(vec![
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web",
            "application/grpc-web-text",
            "application/grpc-web+json",
            "application/grpcfoo",
            "application/grpc-webfoo",
            "application/grpc;charset=utf-8",
            "application/grpc-web-text+proto",
            "APPLICATION/GRPC",
            " application/grpc",
            "application/json",
            "",
        ]),
        ("application/grpc(-web(-text)?)?[+;]?", value_bytes()).prop_map(|(prefix, rest)| {
            let mut bytes = prefix.into_bytes();
            bytes.extend(rest);
            HeaderValue::from_bytes(&bytes).expect("header value bytes")
        }),
    ];
    let cost = prop_oneof![
        text_value(vec![
            "0",
            "1",
            "2",
            "3",
            " 2 ",
            "-1",
            "4294967295",
            "4294967296",
            "x"
        ]),
        Just(HeaderValue::from_static("0")),
        any::<u32>().prop_map(HeaderValue::from),
    ];
    let any_name = "[a-z0-9!#$%&'*+.^_`|~-]{1,20}"
        .prop_map(|name| HeaderName::from_bytes(name.as_bytes()).expect("a token"));
    prop_oneof![
        3 => (name("x-forwarded-for"), prop_oneof![hops(false), header_value()]),
        3 => (Just(FORWARDED), prop_oneof![hops(true), header_value()]),
        3 => (name("x-api-key"), header_value()),
        3 => (Just(CONTENT_TYPE), content_type),
        2 => (name("x-cost"), cost),
        1 => (name("x-tier"), text_value(vec!["pro", "ghost", "default", "PRO", ""])),
        1 => (
            select(vec![
                "retry-after",
                "ratelimit",
                "ratelimit-policy",
                "grpc-status",
                "grpc-timeout",
                "te",
                "host",
                "content-length",
                X_INNER,
            ])
            .prop_map(HeaderName::from_static),
            header_value(),
        ),
        2 => (any_name, header_value()),
    ]
}

fn request_path() -> impl Strategy<Value = Uri> {
    let path = prop_oneof![
        select(vec![
            "/",
            "/helloworld.Greeter/SayHello",
            "/grpc.health.v1.Health/Check",
            "/a.B/C?x=1",
            "//",
            "/a/b/c",
            "*",
        ])
        .prop_map(str::to_owned),
        "/[a-zA-Z0-9._~!$&'()*+;=:@%/é-]{0,60}(\\?[a-z=&]{0,10})?",
        ("[a-z./]{1,8}", 1usize..10_000).prop_map(|(piece, n)| format!("/{}", piece.repeat(n))),
    ];
    path.prop_filter_map("a URI http accepts", |path| Uri::try_from(path).ok())
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        select(vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::OPTIONS,
        ]),
        request_path(),
        vec(request_header(), 0..10),
        prop_oneof![1 => Just(None), 6 => peer().prop_map(Some)],
        prop_oneof![3 => Just(0u64), 1 => 0..3_000u64],
    )
        .prop_map(|(method, uri, headers, peer, wait_ms)| Hostile {
            method,
            uri,
            headers,
            peer,
            wait_ms,
        })
}

/// Requests drawn again and again from a few, so that budgets run out.
fn hostile_requests() -> impl Strategy<Value = Vec<Hostile>> {
    (vec(hostile(), 1..4), vec(any::<Index>(), 1..12))
        .prop_map(|(pool, picks)| picks.iter().map(|i| i.get(&pool).clone()).collect())
}

/// What a layer may do with a request, from what the request holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// No key: 500, or gRPC `INTERNAL`.
    Missing,
    /// Cost 0: the inner service, without rate-limit headers.
    Free,
    /// A cost above the tightest burst: 413, or gRPC `INVALID_ARGUMENT`.
    TooLarge,
    /// The inner service, or 429 (gRPC `RESOURCE_EXHAUSTED`).
    Counted,
}

/// Checks `response` to a request expected to go as `expect`; `grpc` is the content type of a
/// gRPC answer if the request gets one. Returns whether the inner service answered.
fn check_response<B>(
    response: &Response<B>,
    expect: Expect,
    grpc: Option<&HeaderValue>,
    policies: &[&str],
    headers_on_success: bool,
) -> bool {
    let headers = response.headers();
    let status = response.status();
    check_rate_limit_headers(headers, policies);
    let called = headers.contains_key(X_INNER);
    let grpc_status = headers
        .get("grpc-status")
        .map(|code| code.to_str().unwrap().parse::<u8>().unwrap());
    if called {
        assert_eq!(status, StatusCode::OK);
        assert!(
            matches!(expect, Expect::Free | Expect::Counted),
            "{expect:?}"
        );
        assert_eq!(grpc_status, None);
        assert!(!headers.contains_key(RETRY_AFTER));
        let counted = expect == Expect::Counted && headers_on_success;
        assert_eq!(headers.contains_key(RATELIMIT), counted, "{expect:?}");
        return true;
    }
    if let Some(content_type) = grpc {
        assert_eq!(status, StatusCode::OK, "a gRPC answer is trailers-only");
        assert_eq!(&headers[CONTENT_TYPE], content_type);
        assert!(headers.contains_key("grpc-message"));
        let code = grpc_status.expect("grpc-status");
        match expect {
            Expect::Missing => assert_eq!(code, 13),
            Expect::TooLarge => assert_eq!(code, 3),
            Expect::Counted => {
                assert_eq!(code, 8);
                assert!(headers.contains_key("grpc-retry-pushback-ms"));
                assert!(headers.contains_key("grpc-status-details-bin"));
            }
            Expect::Free => panic!("a free request was not served"),
        }
    } else {
        assert_eq!(grpc_status, None);
        let expected = match expect {
            Expect::Missing => StatusCode::INTERNAL_SERVER_ERROR,
            Expect::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Expect::Counted => StatusCode::TOO_MANY_REQUESTS,
            Expect::Free => panic!("a free request was not served"),
        };
        assert_eq!(status, expected);
    }
    assert_eq!(
        headers.contains_key(RETRY_AFTER),
        expect == Expect::Counted,
        "{expect:?}"
    );
    false
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn the_layer_answers_every_hostile_request(requests in hostile_requests()) {
        let (store, clock) = manual_store();
        // Forwarded client addresses, a cost per request, a stack with a shadow policy.
        let by_address = RateLimitLayer::builder()
            .policy(Policy::new("per-second", Quota::per_second(2)))
            .policy(Policy::new("per-minute", Quota::per_minute(10)))
            // In shadow mode, with a burst that a cost of 2 never fits.
            .policy(Policy::new("shadow", Quota::per_hour(1)).shadow(true))
            .key(ForwardedIp::new(TRUSTED).unwrap())
            .cost_by(cost_of::<String>)
            .headers_on_success(true)
            .store(store.clone())
            .build()
            .unwrap()
            .layer(inner());
        // An API key and the method, in tiers.
        let by_api_key = RateLimitLayer::builder()
            .policy(Policy::new("free", Quota::per_minute(3)))
            .tier("pro", [Policy::new("pro", Quota::per_second(5))])
            .select_tier(tier_of::<String>)
            .key((Header::new("x-api-key"), GrpcMethod))
            .store(store.clone())
            .build()
            .unwrap()
            .layer(inner());
        // RFC 7239 addresses and the method, answered as gRPC whatever the request says.
        let grpc_only = RateLimitLayer::builder()
            .policy(Policy::new("calls", Quota::per_second(1)))
            .key((ForwardedIp::new(TRUSTED).unwrap().rfc7239(), GrpcMethod))
            .for_grpc()
            .store(store.clone())
            .build()
            .unwrap()
            .layer(inner());

        block_on(async {
            for hostile in &requests {
                clock.advance(Duration::from_millis(hostile.wait_ms));
                let grpc = hostile.grpc_content_type();
                let always_grpc =
                    grpc.clone().unwrap_or(HeaderValue::from_static("application/grpc"));

                let cost = cost_of(&hostile.request());
                // No key without a peer address, or when a trusted proxy's hop holds none.
                let client = ForwardedIp::new(TRUSTED).unwrap().extract(&hostile.request());
                let expect = match (client, cost) {
                    (None, _) => Expect::Missing,
                    (Some(_), 0) => Expect::Free,
                    (Some(_), cost) if cost > 2 => Expect::TooLarge,
                    _ => Expect::Counted,
                };
                let response = by_address.clone().oneshot(hostile.request()).await.unwrap();
                let policies = if expect == Expect::Free {
                    &[][..]
                } else {
                    &["per-second", "per-minute", "shadow"][..]
                };
                check_response(&response, expect, grpc.as_ref(), policies, true);

                let api_key = hostile.header("x-api-key").filter(|v| !v.is_empty());
                let expect = if api_key.is_some() { Expect::Counted } else { Expect::Missing };
                let response = by_api_key.clone().oneshot(hostile.request()).await.unwrap();
                let policies = match (expect, tier_of(&hostile.request())) {
                    (Expect::Missing, _) => &[][..],
                    (_, Some("pro")) => &["pro"][..],
                    _ => &["free"][..],
                };
                check_response(&response, expect, grpc.as_ref(), policies, false);

                let rfc7239 = ForwardedIp::new(TRUSTED).unwrap().rfc7239();
                let keyed = rfc7239.extract(&hostile.request()).is_some();
                let expect = if keyed { Expect::Counted } else { Expect::Missing };
                let response = grpc_only.clone().oneshot(hostile.request()).await.unwrap();
                let policies = if expect == Expect::Missing { &[][..] } else { &["calls"][..] };
                check_response(&response, expect, Some(&always_grpc), policies, false);
            }
        });
        // Each request is at most one key in each layer, whatever it holds.
        prop_assert!(store.len() <= 3 * requests.len(), "{} keys", store.len());
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn a_flood_of_fresh_keys_stays_within_the_cap_and_one_spare_budget(
        max_keys in 1usize..300,
        flood in 1usize..800,
        padding in 0usize..100,
    ) {
        let store = MemoryStore::builder()
            .clock(ManualClock::new())
            .max_keys(max_keys)
            .build()
            .unwrap();
        let svc = RateLimitLayer::builder()
            .quota(Quota::per_hour(1))
            .key(Header::new("x-api-key"))
            .store(store.clone())
            .build()
            .unwrap()
            .layer(inner());
        let mut admitted = 0;
        block_on(async {
            for i in 0..flood {
                let key = format!("{i}-{}", "k".repeat(padding));
                let mut req = Request::new(String::new());
                req.headers_mut().insert("x-api-key", HeaderValue::from_str(&key).unwrap());
                match svc.clone().oneshot(req).await.unwrap().status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => {}
                    other => panic!("{other} for fresh key {i}"),
                }
                assert!(store.len() <= store.max_keys(), "{} keys", store.len());
            }
        });
        // Every admitted key is tracked, or took the one budget that untracked keys share.
        prop_assert!(admitted <= store.max_keys() + 1, "{} admitted", admitted);
    }
}

// ---------------------------------------------------------------------------------------------
// A real server
// ---------------------------------------------------------------------------------------------

/// A response as read off the socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: HeaderMap,
}

/// Parses one well-formed HTTP/1.1 response from the front of `bytes`, and returns it with the
/// bytes after it. Panics, naming `case`, on anything malformed.
fn parse_response<'a>(case: &str, bytes: &'a [u8]) -> (RawResponse, &'a [u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{case}: no complete response head in {} bytes", bytes.len()));
    let head = &bytes[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = std::str::from_utf8(lines.next().unwrap())
        .unwrap_or_else(|_| panic!("{case}: a status line that is not ASCII"));
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{case}: {status_line:?}");
    let status: u16 = parts
        .next()
        .and_then(|code| (code.len() == 3).then(|| code.parse().ok()).flatten())
        .unwrap_or_else(|| panic!("{case}: {status_line:?}"));
    assert!((100..600).contains(&status), "{case}: {status_line:?}");
    let mut headers = HeaderMap::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .unwrap_or_else(|| panic!("{case}: a header line without a colon"));
        let name = HeaderName::from_bytes(&line[..colon])
            .unwrap_or_else(|_| panic!("{case}: a malformed header name"));
        let value = line[colon + 1..].trim_ascii();
        let value = HeaderValue::from_bytes(value)
            .unwrap_or_else(|_| panic!("{case}: a malformed value of {name}"));
        headers.append(name, value);
    }
    let rest = &bytes[end + 4..];
    let body_len = match headers.get(http::header::CONTENT_LENGTH) {
        Some(len) => len.to_str().unwrap().parse::<usize>().unwrap(),
        None => {
            let chunked = headers
                .get(http::header::TRANSFER_ENCODING)
                .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"chunked"));
            assert!(chunked, "{case}: a body without a length");
            chunked_len(rest).unwrap_or_else(|| panic!("{case}: a malformed chunked body"))
        }
    };
    assert!(rest.len() >= body_len, "{case}: a body cut short");
    (RawResponse { status, headers }, &rest[body_len..])
}

/// The length of the chunked body at the front of `bytes`, up to its last chunk and its empty
/// trailer section.
fn chunked_len(bytes: &[u8]) -> Option<usize> {
    let line_end = |from: usize| {
        let at = bytes.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        Some(from + at)
    };
    let mut at = 0;
    loop {
        let end = line_end(at)?;
        let size = std::str::from_utf8(&bytes[at..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at = end + 2;
        if size == 0 {
            // No trailers: the empty line that ends the body.
            return (line_end(at)? == at).then_some(at + 2);
        }
        at += size;
        (bytes.get(at..at + 2)? == b"\r\n").then_some(())?;
        at += 2;
    }
}

/// Sends `request` on a new connection to `addr`, reads until the server closes it, and
/// returns every response read. A reset is accepted only after a complete response.
async fn exchange(case: &str, addr: SocketAddr, request: Vec<u8>) -> Vec<RawResponse> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Written alongside the read: the server may answer, and close, before it has read all.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    let read = async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset && !received.is_empty() => break,
                Err(e) => panic!("{case}: {e} before any response"),
            }
        }
    };
    // A guard against a hang, not a measure: every exchange takes milliseconds.
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("{case}: no answer"));
    // The write half closes only now: closing it sooner could end the exchange early.
    drop(write.await);
    let mut responses = Vec::new();
    let mut rest = &received[..];
    while !rest.is_empty() {
        let (response, after) = parse_response(case, rest);
        responses.push(response);
        rest = after;
    }
    assert!(!responses.is_empty(), "{case}: no response");
    responses
}

/// `GET path` with `headers` (raw lines without their CRLF), closing the connection after.
fn get_with(path: &[u8], headers: &[Vec<u8>]) -> Vec<u8> {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(path);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n");
    for header in headers {
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request
}

/// `POST path` with `content_type` and an empty body, closing the connection after.
fn post_with(path: &str, content_type: &[u8]) -> Vec<u8> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ").into_bytes();
    request.extend_from_slice(content_type);
    request.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    request
}

fn header_line(name: &str, value: &[u8]) -> Vec<u8> {
    let mut line = format!("{name}: ").into_bytes();
    line.extend_from_slice(value);
    line
}

#[tokio::test]
async fn a_real_server_answers_every_hostile_request_with_a_well_formed_response() {
    let (store, _clock) = manual_store();
    let hello = get(|| async { "hello" }).post(|| async { "posted" });
    let app = Router::new()
        .route("/hello", hello.clone())
        .route("/helloworld.Greeter/SayHello", hello)
        .layer(
            RateLimitLayer::builder()
                .policy(Policy::new("xff", Quota::per_minute(3)))
                .key(ForwardedIp::new(["127.0.0.0/8"]).unwrap())
                .headers_on_success(true)
                .store(store.clone())
                .build()
                .unwrap(),
        )
        .layer(
            RateLimitLayer::builder()
                .policy(Policy::new("forwarded", Quota::per_minute(1_000)))
                .key((
                    ForwardedIp::new(["127.0.0.0/8"]).unwrap().rfc7239(),
                    GrpcMethod,
                ))
                .store(store)
                .build()
                .unwrap(),
        );
    let (addr, server) = common::serve(app).await;

    const METHOD: &str = "/helloworld.Greeter/SayHello";
    const SERVED: &[u16] = &[200, 429];
    // The test's client is on 127.0.0.1, a trusted proxy to both layers: a hop of its that
    // holds no address, or 32 hops of trusted proxies, leave the client unknown, and the
    // request gets the answer for one without a key (500).
    const UNKNOWN: &[u16] = &[500];
    let mut cases: Vec<(String, Vec<u8>, &[u16])> = vec![
        (
            "a header larger than the server reads".into(),
            get_with(b"/hello", &[header_line("X-Big", &vec![b'a'; 600_000])]),
            &[431],
        ),
        (
            "more header lines than the server takes".into(),
            get_with(
                b"/hello",
                &vec![header_line("X-Forwarded-For", b"1.2.3.4"); 150],
            ),
            &[431],
        ),
        (
            "90 lines of 40 trusted hops".into(),
            get_with(
                b"/hello",
                &vec![header_line("X-Forwarded-For", [" 127.0.0.9"; 40].join(",").as_bytes()); 90],
            ),
            // Thirty-two trusted hops read, and still no client.
            UNKNOWN,
        ),
        (
            "20,000 hops on one line".into(),
            get_with(
                b"/hello",
                &[header_line(
                    "X-Forwarded-For",
                    vec!["203.0.113.7,127.0.0.1"; 10_000].join(",").as_bytes(),
                )],
            ),
            SERVED,
        ),
        (
            "a non-UTF-8 X-Forwarded-For".into(),
            get_with(
                b"/hello",
                &[header_line("X-Forwarded-For", b"\xff\xfe, 203.0.113.7")],
            ),
            SERVED,
        ),
        (
            "a non-UTF-8 Forwarded".into(),
            get_with(
                b"/hello",
                &[header_line("Forwarded", b"for=\"\xc3\x28\";proto=\x80")],
            ),
            UNKNOWN,
        ),
        (
            "a non-UTF-8 host beside the address in Forwarded".into(),
            get_with(
                b"/hello",
                &[header_line(
                    "Forwarded",
                    b"for=203.0.113.7;host=\"ex\xe4mple\"",
                )],
            ),
            SERVED,
        ),
        (
            "a host too long for a Forwarded element".into(),
            get_with(
                b"/hello",
                &[header_line(
                    "Forwarded",
                    format!("for=203.0.113.7;host=\"{}\"", "a".repeat(600)).as_bytes(),
                )],
            ),
            UNKNOWN,
        ),
        (
            "a non-UTF-8 header name".into(),
            get_with(b"/hello", &[b"X-\xffBad: 1".to_vec()]),
            &[400],
        ),
        (
            "a non-UTF-8 path".into(),
            get_with(b"/hello\xff", &[]),
            &[400],
        ),
        (
            "a path of 60,000 bytes".into(),
            get_with(format!("/hello{}", "/a".repeat(30_000)).as_bytes(), &[]),
            &[404, 429],
        ),
        (
            "a path longer than a URI may be".into(),
            get_with(format!("/{}", "a".repeat(100_000)).as_bytes(), &[]),
            &[414],
        ),
        (
            "a gRPC call over HTTP/1.1".into(),
            post_with(METHOD, b"application/grpc"),
            &[200],
        ),
        (
            "a gRPC-Web content type with bytes that are not UTF-8".into(),
            post_with(METHOD, b"application/grpc-web+\xff\xfe"),
            &[200],
        ),
        (
            "a gRPC-Web content type of 100,000 bytes".into(),
            post_with(
                METHOD,
                format!("application/grpc-web+{}", "x".repeat(100_000)).as_bytes(),
            ),
            &[200],
        ),
        (
            "a content type that only starts like gRPC".into(),
            post_with(METHOD, b"application/grpcfoo; charset=\x80"),
            &[200, 429],
        ),
        (
            "a gRPC content type on a path that is no method".into(),
            post_with("/", b"application/grpc+proto"),
            &[200, 404],
        ),
    ];
    // A header, values of it, and the statuses each may get.
    type Forwarding<'a> = (&'a str, &'a [&'a [u8]], &'a [u16]);
    let forwarding: [Forwarding; 4] = [
        (
            "X-Forwarded-For",
            &[
                b"[::1",
                b",,,",
                b"unknown",
                b"999.1.1.1",
                b"1.2.3.4:99999",
                b"fe80::1%eth0",
                b"\"1.2.3.4\"",
                b"\t",
                b"203.0.113.7, _hidden",
            ],
            UNKNOWN,
        ),
        (
            "Forwarded",
            &[
                b"for",
                b"for=",
                b"for=\"",
                b";;;=;",
                b"for=\"[::1]:80",
                b"by=127.0.0.1",
                b"for=\"_gazonk\"",
            ],
            UNKNOWN,
        ),
        // A socket address's zone is its own: the address is read.
        ("X-Forwarded-For", &[b"[fe80::1%25]:80"], SERVED),
        // The first `for` parameter is the element's address.
        ("Forwarded", &[b"for=203.0.113.7;for="], SERVED),
    ];
    for (header, values, statuses) in forwarding {
        for value in values {
            let name = format!("{header}: {}", String::from_utf8_lossy(value));
            cases.push((
                name,
                get_with(b"/hello", &[header_line(header, value)]),
                statuses,
            ));
        }
    }

    for (case, request, allowed) in &cases {
        let responses = exchange(case, addr, request.clone()).await;
        assert_eq!(responses.len(), 1, "{case}: {responses:?}");
        let response = &responses[0];
        assert!(
            allowed.contains(&response.status),
            "{case}: {} is none of {allowed:?}",
            response.status
        );
        // Only the inner layer adds headers to what it lets through, and the outer one never
        // limits: any rate-limit header here is the inner layer's.
        check_rate_limit_headers(&response.headers, &["xff"]);
        if response.status == 429 {
            assert!(response.headers.contains_key(RETRY_AFTER), "{case}");
        }
    }

    // A hostile request leaves its connection usable for the next one.
    let mut pipelined = get_with(b"/hello", &[header_line("X-Forwarded-For", b"\xff, [::1")]);
    let keep_alive = pipelined.len() - b"Connection: close\r\n\r\n".len();
    pipelined.truncate(keep_alive);
    pipelined.extend_from_slice(b"\r\n");
    pipelined.extend(get_with(b"/hello", &[]));
    let responses = exchange("two requests on one connection", addr, pipelined).await;
    assert_eq!(responses.len(), 2, "{responses:?}");
    for (response, statuses) in responses.iter().zip([UNKNOWN, SERVED]) {
        assert!(statuses.contains(&response.status), "{responses:?}");
        check_rate_limit_headers(&response.headers, &["xff"]);
    }

    server.abort();
}
