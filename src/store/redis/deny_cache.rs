//! The local deny cache: the last TAT Redis reported for the keys of stacks that a check found
//! without the cells for the same check again (denied, or allowed but leaving fewer cells than
//! its cost).

use super::super::table::{Sharded, Value};

/// Known lower bounds of keys' TATs, in local nanoseconds, bounded in size.
///
/// Redis only ever moves a TAT forward (and lets the key expire once the TAT has passed), so a
/// TAT read from Redis is a lower bound of the key's TAT: a check that these TATs already deny
/// is denied by Redis too (unless Redis has lost the key), and can be answered here. A passed
/// TAT is kept until room is needed: it says the key has its full burst, which lets a stack
/// whose other policy is spent be answered here too.
pub(super) struct DenyCache {
    keys: Sharded<Tat>,
}

/// A TAT lower bound; it may be dropped once it has passed.
struct Tat(u64);

impl Value for Tat {
    fn idle(&self, now: u64) -> bool {
        self.0 <= now
    }
}

impl DenyCache {
    /// A cache holding at most `capacity` keys.
    pub(super) fn new(capacity: usize) -> Self {
        DenyCache {
            keys: Sharded::new(capacity),
        }
    }

    /// The cached TAT of `key`, passed or not.
    pub(super) fn get(&self, key: &[u8]) -> Option<u64> {
        let key = self.keys.key(key);
        let shard = self.keys.shard(&key).read();
        shard.get(&key).map(|tat| tat.0)
    }

    /// Records that `key`'s TAT is at least `tat`. If `cache_new` is false only a key already
    /// cached is updated. A new key goes in if its shard has room, passed TATs being dropped to
    /// make some (a full shard tries at most once per 100 ms); if there is none it is not
    /// cached: a miss only costs a round trip.
    pub(super) fn record(&self, key: &[u8], tat: u64, now: u64, cache_new: bool) {
        let key = self.keys.key(key);
        let shard = self.keys.shard(&key);
        if !cache_new {
            // Most checks are of keys that are not cached and need not be: a shared lock
            // finds that out without making concurrent checks wait on each other.
            match shard.read().get(&key) {
                None => return,
                Some(cached) if cached.0 >= tat => return,
                Some(_) => {}
            }
        }
        let mut table = shard.write();
        if let Some(cached) = table.get_mut(&key) {
            cached.0 = cached.0.max(tat);
        } else if cache_new {
            table.get_or_insert(&key, now, self.keys.hasher(), || Tat(tat));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_tats_passed_or_not_and_only_moves_them_forward() {
        let cache = DenyCache::new(100);
        cache.record(b"k", 50, 10, true);
        assert_eq!(cache.get(b"k"), Some(50));
        cache.record(b"k", 40, 10, true);
        assert_eq!(cache.get(b"k"), Some(50));
        cache.record(b"k", 70, 10, false);
        assert_eq!(cache.get(b"k"), Some(70));
        cache.record(b"other", 70, 10, false);
        assert_eq!(cache.get(b"other"), None);
        // A key of a stack whose other policy is spent is cached with its TAT passed.
        cache.record(b"fresh", 5, 10, true);
        assert_eq!(cache.get(b"fresh"), Some(5));
    }

    #[test]
    fn stays_bounded_and_passed_tats_make_room() {
        let cache = DenyCache::new(64);
        for i in 0..1000u32 {
            cache.record(&i.to_be_bytes(), 100, 0, true);
        }
        assert_eq!(cache.len(), 64);
        // Within the sweep gap of a full shard no new key goes in...
        cache.record(b"late", 300, 200, true);
        assert_eq!(cache.get(b"late"), None);
        // ...after it, the passed TATs make room.
        let (now, tat) = (1_000_000_000, 1_000_000_100);
        for i in 2000..2010u32 {
            cache.record(&i.to_be_bytes(), tat, now, true);
        }
        assert!(cache.len() <= 64);
        assert!((2000..2010u32).all(|i| cache.get(&i.to_be_bytes()) == Some(tat)));
    }
}
