use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use crate::HeaderKey;

/// A key that can be written as the bytes of a Redis key.
///
/// [`RedisStore`](super::RedisStore) stores the key `k` under `<prefix>:{<bytes of k>}`. The
/// bytes are sent to Redis as a script key, never put into script text, so any bytes are safe.
///
/// Implemented for the keys of this crate's extractors (`IpAddr`, `()` for
/// [`Global`](crate::Global), [`HeaderKey`]), for strings, byte vectors, integers and tuples
/// of these. IP addresses and integers are written as text, so the Redis keys are readable.
/// Two keys of different types with the same bytes (the string `"7"` and the integer `7`)
/// share a budget; a tuple writes each element but the last as `<length>:<bytes>` so that its
/// elements cannot run into each other.
///
/// ```
/// use tower_ratelimit::store::RedisKey;
///
/// struct Tenant(u32);
///
/// impl RedisKey for Tenant {
///     fn write_redis_key(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(b"tenant-");
///         self.0.write_redis_key(out);
///     }
/// }
///
/// let mut out = Vec::new();
/// Tenant(42).write_redis_key(&mut out);
/// assert_eq!(out, b"tenant-42");
/// ```
pub trait RedisKey {
    /// Appends the key's bytes to `out`.
    fn write_redis_key(&self, out: &mut Vec<u8>);
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Box<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Arc<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out);
    }
}

impl RedisKey for () {
    fn write_redis_key(&self, _out: &mut Vec<u8>) {}
}

impl RedisKey for str {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for String {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for [u8] {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl RedisKey for Vec<u8> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl RedisKey for HeaderKey {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for IpAddr {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{self}");
    }
}

macro_rules! integer_keys {
    ($($t:ty)*) => {$(
        impl RedisKey for $t {
            fn write_redis_key(&self, out: &mut Vec<u8>) {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

integer_keys!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

/// Writes one tuple element that is not the last: its length, a colon, its bytes.
fn write_prefixed<T: RedisKey + ?Sized>(element: &T, out: &mut Vec<u8>) {
    let mut bytes = Vec::new();
    element.write_redis_key(&mut bytes);
    let _ = write!(out, "{}:", bytes.len());
    out.extend_from_slice(&bytes);
}

impl<A: RedisKey, B: RedisKey> RedisKey for (A, B) {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_prefixed(&self.0, out);
        self.1.write_redis_key(out);
    }
}

impl<A: RedisKey, B: RedisKey, C: RedisKey> RedisKey for (A, B, C) {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        write_prefixed(&self.0, out);
        write_prefixed(&self.1, out);
        self.2.write_redis_key(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<K: RedisKey + ?Sized>(key: &K) -> Vec<u8> {
        let mut out = Vec::new();
        key.write_redis_key(&mut out);
        out
    }

    #[test]
    fn keys_are_written_as_readable_bytes() {
        assert_eq!(bytes(&"192.0.2.7".parse::<IpAddr>().unwrap()), b"192.0.2.7");
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
    fn tuple_elements_cannot_run_into_each_other() {
        let a = bytes(&("a:b", "c"));
        let b = bytes(&("a", "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, b"3:a:bc");
        assert_eq!(bytes(&(1u8, "x", 2u16)), b"1:11:x2");
    }
}
