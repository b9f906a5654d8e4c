use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::header::{HeaderName, FORWARDED};
use http::{HeaderMap, Request};

use super::peer::{group, peer_addr};
use super::KeyExtractor;
use crate::ConfigError;

/// How many hops, counted from the right, are read before giving up on a forwarding header.
const MAX_HOPS: usize = 32;
/// The longest hop that is read, in bytes: a longer one is unreadable, and the search for its
/// start stops here, so that no hop costs more to read than this many bytes, whatever a client
/// wrote. An address with its port is at most 64 bytes; a `Forwarded` element with a `by`, a
/// `proto` and a `host` of a full-length domain name fits with room to spare.
const MAX_HOP_LEN: usize = 512;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address as reported by trusted proxies, for servers behind a load balancer.
///
/// Each proxy appends the address it received the request from to `X-Forwarded-For` (or, with
/// [`ForwardedIp::rfc7239`], to `Forwarded`). Reading from the right, starting at the peer,
/// every hop written by a trusted proxy is believed; the first address that is not a trusted
/// proxy is the client. Anything further left was written by the client and is ignored, so a
/// client cannot pick its own key. A peer that is not a trusted proxy is itself the client and
/// its headers are not read at all. A request that a trusted peer sends with no forwarding
/// header is its own: its key is the peer's address.
///
/// A hop that a trusted proxy wrote but that holds no readable address (junk, `unknown`, an
/// obfuscated identifier, a byte outside ASCII in the address, or a hop of more than 512
/// bytes) leaves the client unknown: the request gets no key, and the layer answers it as it
/// answers a request without one ([`MissingKey`](crate::MissingKey): 500 and a warning by
/// default, which suits a server that lost its peer addresses; behind proxies that pass such
/// hops on, `MissingKey::Reject(StatusCode::BAD_REQUEST)` answers them as the client's doing);
/// an [`AllowIps`](crate::AllowIps) list behind these proxies lets it through on no account.
/// Taking it for the proxy's own request instead would let a client pass for the proxy, with a
/// long or odd `Host` that the proxy copies into its `Forwarded` element. Other hops of the
/// header line are read as usual, and in `Forwarded`, bytes outside ASCII in other parameters
/// (a quoted `host`) do not matter. The walk reads at most 32 hops: however long the headers,
/// reading them costs a bounded amount. Thirty-two hops all written by trusted proxies leave the
/// client unknown too (a loop between proxies, or a client among them padding the header): the
/// request is answered as one without a key, not taken for the last proxy's own.
///
/// Read the header your proxies really write: a header they pass through untouched is the
/// client's to forge.
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tower_ratelimit::{ForwardedIp, KeyExtractor};
///
/// let key = ForwardedIp::new(["10.0.0.0/8"])?;
///
/// let mut req = Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert("10.0.0.2:51000".parse::<SocketAddr>().unwrap());
/// assert_eq!(key.extract(&req).unwrap().to_string(), "203.0.113.9");
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ForwardedIp {
    trusted: Arc<[IpNet]>,
    header: HeaderName,
    ipv6_prefix: u8,
}

impl ForwardedIp {
    /// Trusts proxies in the given networks (`"10.0.0.0/8"`, `"fd00::/8"`, or single addresses
    /// such as `"127.0.0.1"`) and reads `X-Forwarded-For`. Fails on a network that does not
    /// parse, naming it, and on an empty list (trusting no proxy is [`PeerIp`](crate::PeerIp)).
    pub fn new<I>(trusted: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let trusted = trusted
            .into_iter()
            .map(|net| net.as_ref().parse::<IpNet>())
            .collect::<Result<Arc<[IpNet]>, _>>()?;
        if trusted.is_empty() {
            return Err(ConfigError::new(
                "ForwardedIp trusts no proxy, so it would read no forwarding header and key \
                 every request by its peer, as `PeerIp` does (behind a load balancer, one budget \
                 for all its clients): give the networks of your proxies, or use `PeerIp`",
            ));
        }
        Ok(ForwardedIp {
            trusted,
            header: X_FORWARDED_FOR,
            ipv6_prefix: 64,
        })
    }

    /// Reads the standard `Forwarded` header (RFC 7239, its `for=` parameters) instead of
    /// `X-Forwarded-For`. Commas and semicolons inside quoted strings (a `host` that a proxy
    /// copied from the request) split nothing, and escapes in them are undone.
    ///
    /// ```
    /// let key = tower_ratelimit::ForwardedIp::new(["192.0.2.0/24"])?.rfc7239();
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn rfc7239(mut self) -> Self {
        self.header = FORWARDED;
        self
    }

    /// Groups IPv6 client addresses by their first `bits` bits (default 64; values above 128
    /// mean 128).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use http::Request;
    /// use tower_ratelimit::{ForwardedIp, KeyExtractor};
    ///
    /// let mut req = Request::builder()
    ///     .header("x-forwarded-for", "2001:db8:1:2:3:4:5:6")
    ///     .body(())
    ///     .unwrap();
    /// req.extensions_mut().insert("10.0.0.2:51000".parse::<SocketAddr>().unwrap());
    /// let by_64 = ForwardedIp::new(["10.0.0.0/8"])?;
    /// assert_eq!(by_64.extract(&req).unwrap().to_string(), "2001:db8:1:2::");
    /// let by_48 = ForwardedIp::new(["10.0.0.0/8"])?.ipv6_prefix(48);
    /// assert_eq!(by_48.extract(&req).unwrap().to_string(), "2001:db8:1::");
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address of `req`, IPv6 not grouped: the right-most address that no trusted
    /// proxy accounts for; `None` without a peer address, or when a trusted proxy's hop cannot
    /// be read.
    pub(crate) fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = peer_addr(req.extensions())?;
        self.client(peer.ip(), req.headers())
    }

    /// The right-most address that no trusted proxy accounts for; `None` when a hop that a
    /// trusted proxy wrote cannot be read, or when every one of the [`MAX_HOPS`] hops read is
    /// a trusted proxy's.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let mut last = peer.to_canonical();
        if !self.is_trusted(last) {
            return Some(last);
        }
        let rfc7239 = self.header == FORWARDED;
        // Split as bytes: a byte of obs-text (0x80-0xFF) makes its own hop unreadable, not
        // the other hops of its line.
        let hops = headers
            .get_all(&self.header)
            .iter()
            .rev()
            .flat_map(|value| Hops {
                rest: Some(value.as_bytes()),
                quoting: rfc7239,
            })
            .take(MAX_HOPS);
        let mut read = 0;
        for hop in hops {
            read += 1;
            let ip = if hop.len() > MAX_HOP_LEN {
                None
            } else if rfc7239 {
                forwarded_for(hop)
            } else {
                address(hop).and_then(parse_hop)
            };
            match ip.map(|ip| ip.to_canonical()) {
                Some(ip) if self.is_trusted(ip) => last = ip,
                Some(ip) => return Some(ip),
                // The proxy that wrote this hop did not say whom it forwarded.
                None => return None,
            }
        }
        // Out of hops to read while still among proxies: the client is further left.
        (read < MAX_HOPS).then_some(last)
    }
}

impl<B> KeyExtractor<B> for ForwardedIp {
    type Key = IpAddr;

    fn extract(&self, req: &Request<B>) -> Option<IpAddr> {
        Some(group(self.client_ip(req)?, self.ipv6_prefix))
    }

    fn missing_key_hint(&self) -> &'static str {
        FORWARDED_HINT
    }
}

const FORWARDED_HINT: &str = "no client address: either a trusted proxy forwarded a hop \
     that holds no readable address (junk, `unknown`, an obfuscated identifier, bytes outside \
     ASCII, or more than 512 bytes), so the client is unknown, or the request has no peer \
     address at all. For the latter: serve the axum router with \
     `into_make_service_with_connect_info::<SocketAddr>()`, or insert a `SocketAddr` extension \
     before the rate limit layer";

/// The hops of one header line, from the right: split at commas, in `Forwarded` only at those
/// outside quoted strings (a quoted value, such as a `host` copied from the request, may hold
/// commas). Read from the right, the hops that proxies wrote are split as they wrote them,
/// whatever a client put further left.
struct Hops<'a> {
    rest: Option<&'a [u8]>,
    quoting: bool,
}

impl<'a> Iterator for Hops<'a> {
    type Item = &'a [u8];

    /// A hop of more than [`MAX_HOP_LEN`] bytes comes out as its last `MAX_HOP_LEN + 1`
    /// bytes, and is the line's last: whatever it is, it is unreadable.
    fn next(&mut self) -> Option<&'a [u8]> {
        let line = self.rest?;
        // The hop starts after the first delimiter from the right, or it is too long.
        let window = &line[line.len().saturating_sub(MAX_HOP_LEN + 1)..];
        let start = line.len() - window.len();
        let mut quoted = false;
        for (i, &byte) in window.iter().enumerate().rev() {
            match byte {
                b',' if !quoted => {
                    self.rest = Some(&line[..start + i]);
                    return Some(&window[i + 1..]);
                }
                // From the right, a quote begins a quoted string, and inside one, a quote
                // that a backslash does not escape ends it. (A run of backslashes that
                // reaches the window's start belongs to a hop too long to read.)
                b'"' if self.quoting && !(quoted && escaped(&window[..i])) => quoted = !quoted,
                _ => {}
            }
        }
        self.rest = None;
        Some(window)
    }
}

/// Whether the byte that follows `before` in a quoted string is escaped: whether `before` ends
/// in an odd number of backslashes.
fn escaped(before: &[u8]) -> bool {
    before.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The text of an address as bytes, if they are all ASCII: a byte of obs-text makes an address
/// unreadable.
fn address(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The address in one `Forwarded` element: its `for=` parameter, quoted or not. Only that
/// parameter needs to be ASCII.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let value = for_value(element)?;
    match value.strip_prefix(b"\"") {
        Some(quoted) => node(unquote(quoted, &mut [0; 64])?),
        None => node(address(value)?),
    }
}

/// A node (RFC 7239, section 6): an address with an optional port, which may be obfuscated
/// (`192.0.2.43:_abc`, `"[2001:db8::1]:_abc"`); an obfuscated port hides the port only.
fn node(node: &str) -> Option<IpAddr> {
    match node.trim().rsplit_once(':') {
        Some((addr, port)) if port.starts_with('_') => parse_hop(addr),
        _ => parse_hop(node),
    }
}

/// The value of the first `for` parameter of a `Forwarded` element, as written and trimmed of
/// spaces: parameters are split at semicolons outside quoted strings.
fn for_value(element: &[u8]) -> Option<&[u8]> {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    // A semicolon after the last parameter ends it like the others.
    for (i, &byte) in element.iter().chain(b";").enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                let pair = &element[start..i];
                if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                    if pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
                        return Some(pair[eq + 1..].trim_ascii());
                    }
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// The text of a quoted string whose opening quote is gone, its backslash escapes undone, if
/// it ends at its closing quote, fits in `buf` (no hop longer than 64 bytes is read) and is
/// ASCII.
fn unquote<'b>(quoted: &[u8], buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let mut bytes = quoted.iter().copied();
    let mut len = 0;
    loop {
        let byte = match bytes.next()? {
            b'"' => break,
            b'\\' => bytes.next()?,
            byte => byte,
        };
        *buf.get_mut(len)? = byte;
        len += 1;
    }
    if bytes.next().is_some() {
        return None;
    }
    address(&buf[..len])
}

/// One hop: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:8080` or `[2001:db8::1]:8080`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if hop.len() > 64 {
        return None;
    }
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

/// A network of trusted proxies: an address and a prefix length, such as `10.0.0.0/8`.
///
/// ```
/// use tower_ratelimit::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl From<IpAddr> for IpNet {
    /// The network of `addr` alone (`/32` or `/128`), as the string `"10.0.0.1"` parses.
    fn from(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }
}

impl FromStr for IpNet {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            ConfigError::new(format!(
                "invalid network {s:?}: {why}; expected an address such as \
                 \"10.0.0.1\" or a network such as \"10.0.0.0/8\" or \"fd00::/8\""
            ))
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let written: IpAddr = addr
            .parse()
            .map_err(|_| invalid("the address does not parse"))?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| invalid("the prefix length is out of range"))?,
            None => max,
        };
        // Peers are compared in IPv4 form when they are IPv4-mapped, so a mapped network
        // (`::ffff:10.0.0.0/104`) is the IPv4 network of its last 32 bits (`10.0.0.0/8`).
        let addr = written.to_canonical();
        let prefix = if addr.is_ipv4() && written.is_ipv6() {
            prefix.checked_sub(96).ok_or_else(|| {
                invalid("an IPv4-mapped network needs a prefix length from 96 to 128")
            })?
        } else {
            prefix
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_quote_is_escaped_by_an_odd_run_of_backslashes_only() {
        assert!(!escaped(b"by="));
        assert!(escaped(b"by=\\"));
        assert!(!escaped(b"by=\\\\"));
        assert!(escaped(b"by=\\\\\\"));
    }

    fn request(peer: &str, headers: &[(&str, &[u8])]) -> Request<()> {
        let mut req = Request::new(());
        for (name, value) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        req
    }

    /// The key of a request from `peer`, or `"no key"`.
    fn key(extractor: &ForwardedIp, peer: &str, headers: &[(&str, &[u8])]) -> String {
        extractor
            .extract(&request(peer, headers))
            .map_or_else(|| "no key".to_owned(), |ip| ip.to_string())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap();
        let got = key(&ex, "198.51.100.4:1", &[("x-forwarded-for", b"1.1.1.1")]);
        assert_eq!(got, "198.51.100.4");
    }

    #[test]
    fn takes_the_right_most_untrusted_hop_across_header_lines() {
        let ex = ForwardedIp::new(["10.0.0.0/8", "192.168.0.1"]).unwrap();
        let headers: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"9.9.9.9, 203.0.113.5"),
            ("x-forwarded-for", b"192.168.0.1 , 10.1.1.1"),
        ];
        assert_eq!(key(&ex, "10.0.0.1:80", headers), "203.0.113.5");
    }

    #[test]
    fn all_hops_trusted_gives_the_left_most() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap();
        let got = key(
            &ex,
            "10.0.0.1:80",
            &[("x-forwarded-for", b"10.9.9.9, 10.0.0.3")],
        );
        assert_eq!(got, "10.9.9.9");
        assert_eq!(key(&ex, "10.0.0.1:80", &[]), "10.0.0.1");
    }

    #[test]
    fn reads_rfc7239_for_parameters_with_quotes_ports_and_brackets() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap().rfc7239();
        let value: &[u8] =
            b"for=192.0.2.60;proto=http, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.9, for=10.0.0.5";
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", value)]),
            "2001:db8:cafe::"
        );
        let ex = ex.ipv6_prefix(128);
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", value)]),
            "2001:db8:cafe::17"
        );
    }

    #[test]
    fn a_trusted_hop_that_holds_no_address_leaves_the_client_unknown() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap();
        let long = format!("{}10.0.0.2", "10.0.0.3,".repeat(10_000));
        let cases: Vec<(&[u8], &str)> = vec![
            (b"not-an-ip", "no key"),
            (b"unknown", "no key"),
            (b"1.2.3.4, garbage, 10.0.0.9", "no key"),
            (b"garbage, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
            (b"\xff\xfe, 1.2.3.4", "1.2.3.4"),
            (b"1.2.3.4, \xff\xfe", "no key"),
            (b"1.2.3.4, 10.0.0.8\x80, 10.0.0.9", "no key"),
            (b"1.2.3.4, 10.0.\xa00.8, 10.0.0.9", "no key"),
            (b",,,,", "no key"),
            (b"_hidden", "no key"),
            (b"[::1", "no key"),
            (b"999.1.1.1", "no key"),
            // Thirty-two trusted hops read, and still no client.
            (long.as_bytes(), "no key"),
        ];
        for (value, want) in cases {
            assert_eq!(
                key(&ex, "10.0.0.1:80", &[("x-forwarded-for", value)]),
                want,
                "{:?}",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            );
        }
        let ex = ex.rfc7239();
        for value in [
            &b"for"[..],
            b"for=",
            b"for=\"",
            b"proto=https",
            b";;;=;",
            b"for=unknown",
            b"for=_hidden",
            b"for=\"_hidden:80\"",
        ] {
            assert_eq!(key(&ex, "10.0.0.1:80", &[("forwarded", value)]), "no key");
        }
        let cases: [(&[u8], &str); 5] = [
            (b"for=\xff, for=1.2.3.4", "1.2.3.4"),
            (b"for=1.2.3.4\xe9", "no key"),
            (b"for=\"1.2.3.4\xe9\"", "no key"),
            (
                b"for=1.2.3.4, for=10.0.0.8\xa0;proto=http, for=10.0.0.9",
                "no key",
            ),
            // Bytes outside ASCII elsewhere in the element leave its address readable.
            (
                b"for=1.2.3.4, for=10.0.0.8;proto=\xe9, for=203.0.113.9;host=\"ex\xe4mple.com\"",
                "203.0.113.9",
            ),
        ];
        for (value, want) in cases {
            assert_eq!(key(&ex, "10.0.0.1:80", &[("forwarded", value)]), want);
        }
        // Bytes outside ASCII in a trusted proxy's own element do not end the walk either.
        let value: &[u8] = b"for=198.51.100.4, for=10.0.0.8;proto=\xe9, for=10.0.0.9";
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", value)]),
            "198.51.100.4"
        );
    }

    #[test]
    fn a_hop_longer_than_the_limit_is_unreadable() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap();
        let padded = |len: usize, ip: &str| format!("{}{ip}", " ".repeat(len - ip.len()));
        for (len, want) in [(MAX_HOP_LEN, "1.2.3.4"), (MAX_HOP_LEN + 1, "no key")] {
            let value = format!("5.6.7.8,{}, 10.0.0.9", padded(len, "1.2.3.4"));
            assert_eq!(
                key(&ex, "10.0.0.1:80", &[("x-forwarded-for", value.as_bytes())]),
                want,
                "a hop of {len} bytes"
            );
        }
        // A hop too long as the line's only one, with no comma anywhere.
        let value = padded(100_000, "1.2.3.4");
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("x-forwarded-for", value.as_bytes())]),
            "no key"
        );

        let ex = ex.rfc7239();
        // An element of exactly the limit, its length made up by a quoted host with commas.
        let element = |len: usize| {
            let start = "for=1.2.3.4;host=\"";
            let host = "a,".repeat((len - start.len() - 1) / 2);
            let element = format!("{start}{host}\"");
            format!("{element:<len$}")
        };
        for (len, want) in [(MAX_HOP_LEN, "1.2.3.4"), (MAX_HOP_LEN + 1, "no key")] {
            let value = format!("for=5.6.7.8,{}, for=10.0.0.9", element(len));
            assert_eq!(
                key(&ex, "10.0.0.1:80", &[("forwarded", value.as_bytes())]),
                want,
                "an element of {len} bytes"
            );
        }
        // Escaped quotes and commas in a quoted string of 8 000 bytes, and a run of
        // backslashes longer than the limit before a quote.
        let escapes = format!("for=\"{}\"", "\\\"\\,".repeat(2_000));
        let backslashes = format!("for=1.2.3.4;host=\"{}\"", "\\".repeat(1_001));
        for value in [escapes, backslashes] {
            let value = format!("for=5.6.7.8, {value}, for=10.0.0.9");
            assert_eq!(
                key(&ex, "10.0.0.1:80", &[("forwarded", value.as_bytes())]),
                "no key"
            );
        }
    }

    #[test]
    fn an_escaped_quote_in_a_quoted_host_neither_splits_elements_nor_parameters() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap().rfc7239();
        // The comma is inside the quoted host: the element is one hop.
        let comma: &[u8] = b"for=203.0.113.9;host=\"a,\\\"b\", for=10.0.0.9";
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", comma)]),
            "203.0.113.9"
        );
        // The semicolon and `for` are inside the quoted host, which a client chose.
        let semi: &[u8] = b"host=\"a\\\";for=6.6.6.6;x=\\\"\";for=203.0.113.9";
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", semi)]),
            "203.0.113.9"
        );
    }

    #[test]
    fn a_quoted_node_followed_by_anything_is_unreadable() {
        let ex = ForwardedIp::new(["10.0.0.0/8"]).unwrap().rfc7239();
        for value in [
            &b"for=\"203.0.113.5\"x"[..],
            b"for=\"203.0.113.5\"\"\"",
            b"for=\"[2001:db8::1]\":80",
            b"for=1.2.3.4, for=\"203.0.113.5\"junk",
        ] {
            assert_eq!(
                key(&ex, "10.0.0.1:80", &[("forwarded", value)]),
                "no key",
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let quoted: &[u8] = b"for=\"203.0.113.5\"";
        assert_eq!(
            key(&ex, "10.0.0.1:80", &[("forwarded", quoted)]),
            "203.0.113.5"
        );
    }

    #[test]
    fn a_network_of_prefix_length_zero_holds_its_whole_family() {
        let every_v6: IpNet = "::/0".parse().unwrap();
        assert!(every_v6.contains("2001:db8::1".parse().unwrap()));
        assert!(every_v6.contains("fe80::1".parse().unwrap()));
        assert!(!every_v6.contains("192.0.2.1".parse().unwrap()));
        let every_v4: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(every_v4.contains("198.51.100.200".parse().unwrap()));
        assert!(!every_v4.contains("2001:db8::1".parse().unwrap()));
        // Trusting every IPv6 address walks past each IPv6 hop to the first IPv4 one.
        let ex = ForwardedIp::new(["::/0"]).unwrap();
        let hops: &[u8] = b"192.0.2.44, 2001:db8::7";
        assert_eq!(
            key(&ex, "[2001:db8::1]:443", &[("x-forwarded-for", hops)]),
            "192.0.2.44"
        );
    }

    #[test]
    fn an_ipv4_mapped_network_is_its_ipv4_network() {
        let net: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(net, "10.0.0.0/8".parse().unwrap());
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let host: IpNet = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(host, "192.0.2.1/32".parse().unwrap());
        for bad in ["::ffff:10.0.0.0/95", "::ffff:10.0.0.0/129"] {
            let err = bad.parse::<IpNet>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = "::ffff:10.0.0.0/64".parse::<IpNet>().unwrap_err();
        assert!(err.to_string().contains("from 96 to 128"), "{err}");
    }

    #[test]
    fn networks_parse_and_bad_ones_are_named() {
        let net: IpNet = "fd00::/8".parse().unwrap();
        assert!(net.contains("fd12::1".parse().unwrap()));
        assert!(!net.contains("10.0.0.1".parse().unwrap()));
        let mapped: IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(mapped.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<IpNet>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "nonsense", "10.0.0.0/x", ""] {
            let err = ForwardedIp::new([bad]).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
