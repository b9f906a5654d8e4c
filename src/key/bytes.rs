//! Keys as bytes: the one form every store keeps them in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use smallvec::SmallVec;

use super::{HeaderKey, MethodKey};

/// A key written as bytes, the same bytes for every store.
///
/// Both [`MemoryStore`](crate::MemoryStore) and the Redis store keep a key as the bytes this
/// trait writes, so a key means the same budget on both. Implemented for the keys of this
/// crate's extractors (`IpAddr`, `()` for [`Global`](crate::Global), [`HeaderKey`],
/// [`MethodKey`]), for strings, byte vectors, integers, and tuples of two or three of these.
///
/// IP addresses and integers are written as text (`192.0.2.7`, `42`), so Redis keys are
/// readable. Two keys of different types with the same bytes (the string `"7"` and the integer
/// `7`) are the same key. A tuple writes each element but the last as `<length>:<bytes>`, so
/// its elements cannot run into each other.
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
pub trait KeyBytes {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut KeyBuf);

    /// The key's bytes in a buffer of their own.
    fn key_bytes(&self) -> KeyBuf {
        let mut out = KeyBuf::new();
        self.write_key(&mut out);
        out
    }
}

/// The bytes of a key, on the stack up to 64 bytes: writing a key allocates nothing unless it
/// is longer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyBuf(SmallVec<[u8; 64]>);

impl KeyBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        KeyBuf(SmallVec::new())
    }

    /// Appends `bytes`.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// The bytes written so far.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        write!(f, "KeyBuf({} bytes)", self.0.len())
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

impl KeyBytes for IpAddr {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        match self {
            IpAddr::V4(v4) => write_ipv4(*v4, out),
            IpAddr::V6(v6) => {
                // Writing to a KeyBuf cannot fail.
                let _ = fmt::Write::write_fmt(out, format_args!("{v6}"));
            }
        }
    }
}

/// Dotted decimal without the formatting machinery: this runs on every request keyed by IP.
#[inline]
fn write_ipv4(ip: Ipv4Addr, out: &mut KeyBuf) {
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    out.extend(&buf[..len]);
}

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
    fn tuple_elements_cannot_run_into_each_other() {
        let a = bytes(&("a:b", "c"));
        let b = bytes(&("a", "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, b"3:a:bc");
        assert_eq!(bytes(&(1u8, "x", 2u16)), b"1:11:x2");
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let long = "k".repeat(1000);
        assert_eq!(bytes(&long), long.as_bytes());
    }
}
