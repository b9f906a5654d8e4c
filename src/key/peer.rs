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
/// server with a closure that reads the IPv4 address where the translator puts it.
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

/// The well-known NAT64 prefix, `64:ff9b::/96` (RFC 6052), as the top 96 bits of an address.
const NAT64_PREFIX: u128 = 0x0064_ff9b << 96;

/// `ip` as a key: IPv4 as is (IPv4-mapped IPv6 and IPv4 translated into the NAT64 prefix
/// included), IPv6 cut to its first `prefix` bits.
#[inline]
pub(crate) fn group(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if u128::from(v6) >> 32 == NAT64_PREFIX >> 32 => {
            IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32))
        }
        IpAddr::V6(v6) if prefix < 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_ipv6_by_prefix_and_unmaps_ipv4() {
        let v6: IpAddr = "2001:db8:aaaa:bbbb:1:2:3:4".parse().unwrap();
        assert_eq!(group(v6, 64).to_string(), "2001:db8:aaaa:bbbb::");
        assert_eq!(group(v6, 48).to_string(), "2001:db8:aaaa::");
        assert_eq!(group(v6, 0).to_string(), "::");
        assert_eq!(group(v6, 128), v6);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(group(mapped, 64).to_string(), "192.0.2.7");
    }

    #[test]
    fn finds_no_key_without_a_peer_address() {
        let req = Request::new(());
        assert_eq!(PeerIp::new().extract(&req), None);
        assert!(KeyExtractor::<()>::missing_key_hint(&PeerIp::new())
            .contains("into_make_service_with_connect_info"));
    }
}
