//! Keys as bytes: the one form every store keeps them in.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{HeaderKey, MethodKey};

/// A key written as bytes, the same bytes for every store.
///
/// Both [`MemoryStore`](crate::MemoryStore) and the Redis store keep a key as the bytes this
/// trait writes, so a key means the same budget on both. Implemented for the keys of this
/// crate's extractors (`IpAddr`, `()` for [`Global`](crate::Global), [`HeaderKey`],
/// [`MethodKey`]), for `Ipv4Addr`, `Ipv6Addr` (the same bytes as their `IpAddr`), header values,
/// strings, byte vectors, integers, and tuples of two or three of these.
///
/// IP addresses and integers are written as text (`192.0.2.7`, `42`), so Redis keys are
/// readable; an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) as the IPv4 address it
/// carries. Two keys of different types with the same bytes (the string `"7"` and the integer
/// `7`) are the same key. A tuple writes each element but the last as `<length>:<bytes>`, so
/// its elements cannot run into each other.
///
/// A key of more than [`MAX_KEY_LEN`] bytes (64) is kept by the stores as a digest of its bytes,
/// so a key's memory is bounded whatever its length.
///
/// ```
/// use tower_ratelimit::{KeyBuf, KeyBytes};
///
/// struct Tenant(u32);
///
/// impl KeyBytes for Tenant {
///     fn write_key(&self, out: &mut KeyBuf) {
///         out.extend(b"tenant-");
///         self.0.write_key(out);
///     }
/// }
///
/// assert_eq!(Tenant(42).key_bytes().as_bytes(), b"tenant-42");
/// assert_eq!(("a:b", "c").key_bytes().as_bytes(), b"3:a:bc");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a rate limit key",
    note = "a key is written as bytes: return a `String`, a `Vec<u8>`, an integer, an `IpAddr`, \
            or a type of your own that implements `KeyBytes`"
)]
pub trait KeyBytes {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut KeyBuf);

    /// The key's bytes in a buffer of their own.
    #[must_use]
    fn key_bytes(&self) -> KeyBuf {
        let mut out = KeyBuf::new();
        self.write_key(&mut out);
        out
    }
}

/// The bytes of a key, on the stack up to 64 bytes: writing a key allocates nothing unless it
/// is longer.
#[derive(Clone)]
pub struct KeyBuf {
    len: usize,
    inline: [u8; INLINE],
    /// The bytes once they outgrow `inline`.
    spilled: Vec<u8>,
}

/// How many bytes a key may have before it moves to the heap.
const INLINE: usize = 64;

/// The longest key the stores keep as it is.
///
/// [`MemoryStore`](crate::MemoryStore) and the Redis store keep a longer key, and a key that
/// begins with `sha256:`, as `sha256:` followed by the first 16 bytes of the SHA-256 digest of
/// its bytes, in hex: 39 bytes, whatever the key's length. So a tracked key costs a bounded
/// amount of memory (in the process and in Redis) even when clients choose the key, as with a
/// header's value, and both stores still agree on which keys are the same. No key is kept as
/// it is in the form of a digest, so two distinct keys meet in one only by a collision of
/// SHA-256, which no one can produce on purpose. The digest costs time in proportion to the
/// key's length, as reading the header that carried it does (see `BENCHES.md`: about 80 ns
/// for a key just over the limit and 0.5 ns per further byte on a CPU with SHA extensions).
///
/// ```
/// use tower_ratelimit::{MemoryStore, Policy, Quota, Store, MAX_KEY_LEN};
///
/// let store = MemoryStore::new();
/// let stack = store.register(&[Policy::new("api", Quota::per_second(1))])?;
/// let token = "t".repeat(800); // say, a bearer token used as the key
/// assert!(token.len() > MAX_KEY_LEN);
/// assert!(store.check_now(&stack, token.as_bytes(), 1).is_allowed());
/// assert!(!store.check_now(&stack, token.as_bytes(), 1).is_allowed());
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
pub const MAX_KEY_LEN: usize = 64;

/// The length of a key's digest form.
const DIGEST_KEY_LEN: usize = DIGEST_PREFIX.len() + 32;

const DIGEST_PREFIX: &[u8] = b"sha256:";

const _: () = assert!(DIGEST_KEY_LEN <= MAX_KEY_LEN);

/// `f` of the bytes the stores keep for `key`: the key itself when it is no longer than
/// [`MAX_KEY_LEN`] and does not begin as a digest does, else its [`digest_key`], which no key
/// kept as it is can equal.
#[inline(always)]
pub(crate) fn with_kept<R>(key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if key.len() <= MAX_KEY_LEN && !key.starts_with(DIGEST_PREFIX) {
        f(key)
    } else {
        f(&digest_key(key))
    }
}

/// [`with_kept`] for a store that writes the key inside a Redis Cluster hash tag
/// (`{<prefix>:<key>}`): a key with a `}`, which would close the tag early (every key that
/// begins with `}` would hash to one slot, and so to one node, whatever follows), is kept as
/// its digest too. A key is the same budget on every store that keeps it so.
#[cfg(feature = "redis")]
#[inline(always)]
pub(crate) fn with_kept_in_hash_tag<R>(key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if key.contains(&b'}') {
        f(&digest_key(key))
    } else {
        with_kept(key, f)
    }
}

/// `sha256:` and the first 16 bytes of the key's SHA-256 digest in hex.
#[cold]
#[inline(never)]
fn digest_key(key: &[u8]) -> [u8; DIGEST_KEY_LEN] {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key);
    let mut out = [0; DIGEST_KEY_LEN];
    let (prefix, hex) = out.split_at_mut(DIGEST_PREFIX.len());
    prefix.copy_from_slice(DIGEST_PREFIX);
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

impl KeyBuf {
    /// An empty buffer.
    #[inline]
    #[must_use]
    pub fn new() -> Self {
        KeyBuf {
            len: 0,
            inline: [0; INLINE],
            spilled: Vec::new(),
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= INLINE {
            self.inline[self.len..end].copy_from_slice(bytes);
        } else {
            if self.len <= INLINE {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.extend_from_slice(bytes);
        }
        self.len = end;
    }

    /// Room for `N` more bytes inline, to write in place and then [`commit`](Self::commit):
    /// fixed-size writes without a call to `memcpy` on the request path.
    #[inline]
    fn room<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        self.inline
            .get_mut(self.len..self.len + N)
            .and_then(|room| room.try_into().ok())
    }

    /// Takes `n` bytes written through [`room`](Self::room) as part of the key.
    #[inline]
    fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// The bytes written so far.
    #[inline]
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        if self.len <= INLINE {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    /// How many bytes were written.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for KeyBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for KeyBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyBuf {}

impl Hash for KeyBuf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.extend(s.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys can be credentials: say how long, not what.
        write!(f, "KeyBuf({} bytes)", self.len)
    }
}

impl<T: KeyBytes + ?Sized> KeyBytes for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyBytes + ?Sized> KeyBytes for Box<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyBytes + ?Sized> KeyBytes for Arc<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl KeyBytes for () {
    #[inline]
    fn write_key(&self, _out: &mut KeyBuf) {}
}

impl KeyBytes for str {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self.as_bytes());
    }
}

impl KeyBytes for String {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self.as_bytes());
    }
}

impl KeyBytes for [u8] {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self);
    }
}

impl KeyBytes for Vec<u8> {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self);
    }
}

impl KeyBytes for bytes::Bytes {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self);
    }
}

impl KeyBytes for HeaderKey {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self.as_bytes());
    }
}

impl KeyBytes for MethodKey {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self.as_str().as_bytes());
    }
}

impl KeyBytes for http::HeaderValue {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        out.extend(self.as_bytes());
    }
}

impl KeyBytes for Ipv4Addr {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        write_ipv4(*self, out);
    }
}

impl KeyBytes for Ipv6Addr {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        write_ipv6(self, out);
    }
}

impl KeyBytes for IpAddr {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        match self {
            IpAddr::V4(v4) => write_ipv4(*v4, out),
            IpAddr::V6(v6) => write_ipv6(v6, out),
        }
    }
}

/// Kept out of line, so that the IPv4 path inlines into the caller. An IPv4-mapped address
/// (`::ffff:192.0.2.7`, as a dual-stack socket reports an IPv4 client) is written as the IPv4
/// address it carries: one client, one key, whichever socket it came through.
#[inline(never)]
fn write_ipv6(ip: &Ipv6Addr, out: &mut KeyBuf) {
    match ip.to_ipv4_mapped() {
        Some(v4) => write_ipv4(v4, out),
        // Writing to a KeyBuf cannot fail.
        None => {
            let _ = fmt::Write::write_fmt(out, format_args!("{ip}"));
        }
    }
}

/// Dotted decimal without the formatting machinery: this runs on every request keyed by IP.
#[inline]
fn write_ipv4(ip: Ipv4Addr, out: &mut KeyBuf) {
    // Each octet as up to three digits and a dot, from a table, shifted into place in a word:
    // no division and no store at a computed offset per request.
    let [a, b, c, d] = ip.octets().map(|octet| OCTETS[usize::from(octet)]);
    let (first, first_bits) = join(a, b);
    let (second, second_bits) = join(c, d);
    // `first` holds 4 to 8 bytes, so the shift is below 128.
    let text = u128::from(first) | u128::from(second) << first_bits;
    let len = ((first_bits + second_bits) / 8) as usize;
    // The last octet's dot is not part of the address.
    match out.room::<16>() {
        Some(room) => {
            *room = text.to_le_bytes();
            out.commit(len - 1);
        }
        None => extend_cold(out, &text.to_le_bytes()[..len - 1]),
    }
}

/// [`KeyBuf::extend`] out of line: for a buffer that is nearly full, which a key rarely is.
#[cold]
#[inline(never)]
fn extend_cold(out: &mut KeyBuf, bytes: &[u8]) {
    out.extend(bytes);
}

/// Two octets' table entries as one word of text and its length in bits (at most 64).
#[inline(always)]
fn join(first: u64, second: u64) -> (u64, u32) {
    let first_bits = (first >> 32) as u32;
    let second_bits = (second >> 32) as u32;
    // At most 32 bits of text each: the shift is at most 32.
    let text = (first & 0xffff_ffff) | (second & 0xffff_ffff) << first_bits;
    (text, first_bits + second_bits)
}

/// Every octet's decimal digits followed by a dot, as little-endian text in the low 32 bits and
/// its length in bits above.
const OCTETS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut n = 0;
    while n < 256 {
        let (d0, d1, d2) = ((n / 100) as u64, (n / 10 % 10) as u64, (n % 10) as u64);
        let dot = b'.' as u64;
        let zero = b'0' as u64;
        table[n] = if n >= 100 {
            (zero + d0) | (zero + d1) << 8 | (zero + d2) << 16 | dot << 24 | 32 << 32
        } else if n >= 10 {
            (zero + d1) | (zero + d2) << 8 | dot << 16 | 24 << 32
        } else {
            (zero + d2) | dot << 8 | 16 << 32
        };
        n += 1;
    }
    table
};

macro_rules! integer_keys {
    ($($t:ty)*) => {$(
        impl KeyBytes for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyBuf) {
                // Writing to a KeyBuf cannot fail.
                let _ = fmt::Write::write_fmt(out, format_args!("{self}"));
            }
        }
    )*};
}

integer_keys!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

/// Writes one tuple element that is not the last: its length, a colon, its bytes.
fn write_prefixed<T: KeyBytes + ?Sized>(element: &T, out: &mut KeyBuf) {
    let bytes = element.key_bytes();
    let _ = fmt::Write::write_fmt(out, format_args!("{}:", bytes.len()));
    out.extend(bytes.as_bytes());
}

impl<A: KeyBytes, B: KeyBytes> KeyBytes for (A, B) {
    fn write_key(&self, out: &mut KeyBuf) {
        write_prefixed(&self.0, out);
        self.1.write_key(out);
    }
}

impl<A: KeyBytes, B: KeyBytes, C: KeyBytes> KeyBytes for (A, B, C) {
    fn write_key(&self, out: &mut KeyBuf) {
        write_prefixed(&self.0, out);
        write_prefixed(&self.1, out);
        self.2.write_key(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<K: KeyBytes + ?Sized>(key: &K) -> Vec<u8> {
        let mut out = KeyBuf::new();
        key.write_key(&mut out);
        out.as_bytes().to_vec()
    }

    #[test]
    fn long_keys_and_keys_that_look_like_digests_are_kept_as_the_hex_of_their_sha256() {
        let kept = |key: &[u8]| with_kept(key, <[u8]>::to_vec);
        // The first 16 bytes of SHA-256("a" × 65) and of SHA-256(""), from `sha256sum`.
        let long = kept(&[b'a'; 65]);
        assert_eq!(long, b"sha256:635361c48bb9eab14198e76ea8ab7f1a");
        assert_eq!(&digest_key(b""), b"sha256:e3b0c44298fc1c149afbf4c8996fb924");
        // A key that spells another key's digest is not that key.
        assert_ne!(kept(&long), long);
        assert_eq!(kept(&long).len(), DIGEST_KEY_LEN);
        assert_ne!(kept(b"sha256:"), b"sha256:");
        // Keys up to the limit are kept as they are.
        assert_eq!(kept(&[b'a'; MAX_KEY_LEN]), [b'a'; MAX_KEY_LEN]);
        assert_eq!(kept(b"sha256"), b"sha256");
        let (many, other) = ([7u8; 4096], [[7u8; 4095].as_slice(), &[8]].concat());
        assert_ne!(kept(&many), kept(&other));
        assert!(kept(&many).len() <= MAX_KEY_LEN);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn keys_with_a_closing_brace_are_kept_as_digests_inside_a_hash_tag() {
        let kept = |key: &[u8]| with_kept_in_hash_tag(key, <[u8]>::to_vec);
        assert_eq!(kept(b"}"), digest_key(b"}"));
        assert_eq!(kept(b"a}b"), digest_key(b"a}b"));
        assert_ne!(kept(b"}a"), kept(b"}b"));
        // Other keys are kept as `with_kept` keeps them, an opening brace included.
        for key in [&b"alice"[..], b"{a", b"sha256:", &[b'a'; 65]] {
            assert_eq!(kept(key), with_kept(key, <[u8]>::to_vec));
        }
        assert_eq!(kept(b"{a"), b"{a");
    }

    #[test]
    fn keys_are_written_as_readable_bytes() {
        for ip in ["192.0.2.7", "0.0.0.0", "255.255.255.255", "10.100.1.99"] {
            assert_eq!(bytes(&ip.parse::<IpAddr>().unwrap()), ip.as_bytes());
        }
        assert_eq!(
            bytes(&"2001:db8::".parse::<IpAddr>().unwrap()),
            b"2001:db8::"
        );
        assert_eq!(bytes(&()), b"");
        assert_eq!(bytes(&-12i64), b"-12");
        assert_eq!(bytes(&"alice"), b"alice");
        assert_eq!(bytes(&vec![0u8, 255]), [0, 255]);
    }

    #[test]
    fn every_ipv4_address_is_written_as_display_writes_it() {
        for n in (0..=u32::MAX).step_by(65_537) {
            let ip = IpAddr::V4(Ipv4Addr::from(n));
            assert_eq!(bytes(&ip), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn ipv4_ipv6_and_header_values_are_the_keys_they_read_as() {
        let v4: Ipv4Addr = "192.0.2.7".parse().unwrap();
        assert_eq!(bytes(&v4), bytes(&IpAddr::V4(v4)));
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(bytes(&v6), bytes(&IpAddr::V6(v6)));
        assert_eq!(bytes(&v6), b"2001:db8::1");
        let value = http::HeaderValue::from_bytes(b"key-\xff").unwrap();
        assert_eq!(bytes(&value), b"key-\xff");
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_key_of_its_ipv4_address() {
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(bytes(&mapped), b"192.0.2.7");
        assert_eq!(bytes(&IpAddr::V6(mapped)), b"192.0.2.7");
        // Not mapped: written as IPv6.
        let compatible: Ipv6Addr = "::192.0.2.7".parse().unwrap();
        assert_eq!(bytes(&compatible), b"::c000:207");
    }

    #[test]
    fn tuple_elements_cannot_run_into_each_other() {
        let a = bytes(&("a:b", "c"));
        let b = bytes(&("a", "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, b"3:a:bc");
        assert_eq!(bytes(&(1u8, "x", 2u16)), b"1:11:x2");
    }

    #[test]
    fn keys_written_in_parts_are_whole_on_either_side_of_the_inline_limit() {
        let whole: Vec<u8> = (0..150).collect();
        for split in 0..=whole.len() {
            let mut out = KeyBuf::new();
            out.extend(&whole[..split]);
            out.extend(&whole[split..]);
            assert_eq!(out.as_bytes(), whole.as_slice(), "split at {split}");
            assert_eq!(out.len(), whole.len());
        }
        // An address after a part that leaves it no room inline is written as it reads.
        for before in 0..=INLINE + 8 {
            let name = "k".repeat(before);
            let ip: IpAddr = "192.0.2.17".parse().unwrap();
            let mut out = KeyBuf::new();
            out.extend(name.as_bytes());
            ip.write_key(&mut out);
            assert_eq!(out.as_bytes(), format!("{name}192.0.2.17").as_bytes());
        }
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let long = "k".repeat(1000);
        assert_eq!(bytes(&long), long.as_bytes());
    }
}
