use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{Extensions, Request};

use super::KeyExtractor;

/// The peer's IP address, the default key.
///
/// The address comes from the request extensions, where servers put it:
/// - axum's `ConnectInfo<SocketAddr>`, when the app is served with
///   `into_make_service_with_connect_info::<SocketAddr>()` (and axum's `MockConnectInfo` in
///   tests) — with the `axum` feature;
/// - tonic's `TcpConnectInfo` — with the `tonic` feature (a tonic server that terminates TLS
///   itself sets it too, next to its `TlsConnectInfo`; one given TLS streams accepted by the
///   application, through `serve_with_incoming`, sets `TlsConnectInfo` alone: key such a
///   server with a closure that reads the peer address from it);
/// - a plain [`SocketAddr`], for any other server that inserts one.
///
/// These are the types of axum 0.8 and tonic 0.14, the versions the features build against:
/// an app on another major version of either puts a type of that version in the extensions,
/// which is not read here; key its requests with a closure that reads it.
///
/// A server on a Unix socket (tonic's `UdsConnectInfo`) has no peer IP address: key its
/// requests by something else, such as [`Global`](crate::Global) or a
/// [`Header`](crate::Header).
///
/// IPv6 clients usually own a whole /64, so IPv6 addresses are grouped by their /64 prefix by
/// default; IPv4-mapped IPv6 addresses count as the IPv4 address they carry, and so do
/// addresses in the well-known NAT64 prefix `64:ff9b::/96`, which a stateless translator in
/// front of an IPv6-only server gives its IPv4 clients (grouped by /64, those would all share
/// one budget). A translator's own network-specific prefix is not known here: key such a
/// server with a closure that reads the IPv4 address where the translator puts it. The
/// addresses of the transition tunnels count as the public IPv4 address they are made from
/// too: 6to4 (`2002::/16`, a /48 for each IPv4 address, which grouped by /64 would give one
/// host 65 536 budgets) and Teredo (`2001::/32`, whose /64 names the Teredo server, which
/// would give all of its clients one budget). An address of these forms that carries a local
/// IPv4 address (private, loopback, link-local, carrier NAT), which none may, stays IPv6.
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tower_ratelimit::{KeyExtractor, PeerIp};
///
/// let mut req = Request::new(());
/// req.extensions_mut().insert("[2001:db8::1:2:3:4]:443".parse::<SocketAddr>().unwrap());
/// let key = PeerIp::new().extract(&req).unwrap();
/// assert_eq!(key.to_string(), "2001:db8::");
///
/// let per_address = PeerIp::new().ipv6_prefix(128).extract(&req).unwrap();
/// assert_eq!(per_address.to_string(), "2001:db8::1:2:3:4");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PeerIp {
    ipv6_prefix: u8,
}

impl PeerIp {
    /// The peer IP, IPv6 grouped by /64.
    #[must_use]
    pub fn new() -> Self {
        PeerIp { ipv6_prefix: 64 }
    }

    /// Groups IPv6 addresses by their first `bits` bits (values above 128 mean 128: one key per
    /// address).
    ///
    /// ```
    /// let by_56 = tower_ratelimit::PeerIp::new().ipv6_prefix(56);
    /// ```
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> KeyExtractor<B> for PeerIp {
    type Key = IpAddr;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<IpAddr> {
        peer_addr(req.extensions()).map(|addr| group(addr.ip(), self.ipv6_prefix))
    }

    fn missing_key_hint(&self) -> &'static str {
        PEER_HINT
    }
}

const PEER_HINT: &str = "no peer address in request extensions: serve the axum router with \
     `into_make_service_with_connect_info::<SocketAddr>()`, serve tonic with the `tonic` feature \
     of tower-ratelimit enabled (a tonic server given TLS streams accepted by the application \
     sets only `TlsConnectInfo`, which a key closure can read), or insert a `SocketAddr` \
     extension before the rate limit layer; a server on a Unix socket (tonic's \
     `UdsConnectInfo`) has no peer IP address: key it by something else, such as `Global` or a \
     `Header`";

/// The peer address that the server put in the request extensions, if any.
#[inline]
pub(crate) fn peer_addr(ext: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    if let Some(addr) = ext.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "tonic")]
    if let Some(addr) = ext
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
    {
        return Some(addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    None
}

/// `ip` as a key: IPv4 as is (and the IPv4 address an IPv6 one carries: IPv4-mapped, NAT64,
/// 6to4, Teredo), IPv6 cut to its first `prefix` bits.
#[inline]
pub(crate) fn group(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if let Some(v4) = carried_ipv4(bits) {
                IpAddr::V4(v4)
            } else if prefix < 128 {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            } else {
                IpAddr::V6(v6)
            }
        }
        ip => ip,
    }
}

/// The public IPv4 address behind an IPv6 address that is made from one: the well-known NAT64
/// prefix `64:ff9b::/96` (RFC 6052) with the address in its last 32 bits, 6to4 `2002::/16`
/// (RFC 3056) with it in the 32 bits after the prefix, and Teredo `2001::/32` (RFC 4380) with
/// the client's address, every bit flipped, in its last 32 bits. Each carries public addresses
/// only: one that carries a private, loopback, link-local or other local address is no such
/// client (its sender would pass for a local one), and stays an IPv6 address.
#[inline]
fn carried_ipv4(bits: u128) -> Option<Ipv4Addr> {
    let carried = if bits >> 32 == 0x0064_ff9b << 64 {
        Ipv4Addr::from(bits as u32)
    } else if bits >> 112 == 0x2002 {
        Ipv4Addr::from((bits >> 80) as u32)
    } else if bits >> 96 == 0x2001_0000 {
        Ipv4Addr::from(!(bits as u32))
    } else {
        return None;
    };
    let [first, second, ..] = carried.octets();
    let local = carried.is_private()
        || carried.is_loopback()
        || carried.is_link_local()
        // Multicast, reserved and broadcast: 224.0.0.0 and above.
        || first >= 224
        // "This network" 0.0.0.0/8, and shared address space 100.64.0.0/10 (carrier NAT).
        || first == 0
        || (first == 100 && second & 0xc0 == 64);
    (!local).then_some(carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tunnel address that carries a multicast or reserved IPv4 address (224.0.0.0 and
    /// above) stays IPv6, from the first such address on; the last unicast one is carried.
    #[test]
    fn a_tunnel_carrying_an_address_from_224_on_stays_ipv6() {
        let nat64 = |v4: &str| -> IpAddr { format!("64:ff9b::{v4}").parse().unwrap() };
        assert!(group(nat64("224.0.0.0"), 64).is_ipv6());
        assert_eq!(
            group(nat64("223.255.255.255"), 64).to_string(),
            "223.255.255.255"
        );
    }

    #[test]
    fn groups_ipv6_by_prefix_and_unmaps_ipv4() {
        let v6: IpAddr = "2001:db8:aaaa:bbbb:1:2:3:4".parse().unwrap();
        assert_eq!(group(v6, 64).to_string(), "2001:db8:aaaa:bbbb::");
        assert_eq!(group(v6, 48).to_string(), "2001:db8:aaaa::");
        assert_eq!(group(v6, 0).to_string(), "::");
        assert_eq!(group(v6, 128), v6);
        // The last bit too: two addresses one bit apart share a /127.
        let next: IpAddr = "2001:db8:aaaa:bbbb:1:2:3:5".parse().unwrap();
        assert_eq!(group(v6, 127), group(next, 127));
        assert_ne!(group(v6, 128), group(next, 128));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(group(mapped, 64).to_string(), "192.0.2.7");
    }

    #[test]
    fn tunnelled_and_translated_ipv4_count_as_the_ipv4_address() {
        for (ip, key) in [
            ("64:ff9b::192.0.2.7", "192.0.2.7"),
            // 6to4: 192.0.2.7 is c000:0207; any subnet and host of its /48.
            ("2002:c000:207::1", "192.0.2.7"),
            ("2002:c000:207:ffff:1:2:3:4", "192.0.2.7"),
            // Teredo: server 65.54.227.120, client 192.0.2.7 flipped (3fff:fdf8).
            ("2001:0:4136:e378:8000:63bf:3fff:fdf8", "192.0.2.7"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdf7", "192.0.2.8"),
            // Local IPv4 addresses are carried by no such client: plain IPv6.
            ("2002:7f00:1::1", "2002:7f00:1::"),
            ("2002:a00:1:ffff::5", "2002:a00:1:ffff::"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:4136:e378::"),
            ("64:ff9b::10.1.2.3", "64:ff9b::"),
            ("64:ff9b::100.64.0.1", "64:ff9b::"),
            ("2002:6440:1::1", "2002:6440:1::"),
            // 169.254.1.1, link-local.
            ("2002:a9fe:101::1", "2002:a9fe:101::"),
            ("64:ff9b::100.128.0.1", "100.128.0.1"),
            // Neighbours of those prefixes are plain IPv6.
            ("2003:c000:207::1", "2003:c000:207::"),
            ("2001:1:4136:e378:8000:63bf:3fff:fdf8", "2001:1:4136:e378::"),
            ("64:ff9c::192.0.2.7", "64:ff9c::"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(group(ip, 64).to_string(), key, "{ip}");
            if key.contains('.') {
                assert_eq!(group(ip, 128).to_string(), key, "{ip}, per address");
            }
        }
    }

    #[test]
    fn finds_no_key_without_a_peer_address() {
        let req = Request::new(());
        assert_eq!(PeerIp::new().extract(&req), None);
        assert!(KeyExtractor::<()>::missing_key_hint(&PeerIp::new())
            .contains("into_make_service_with_connect_info"));
    }
}
