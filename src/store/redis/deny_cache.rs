//! The local deny cache: the last TAT Redis reported for the keys of stacks that were limited.

use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};

use hashbrown::HashTable;

const SHARDS: usize = 16;

/// Known lower bounds of keys' TATs, in local nanoseconds, bounded in size.
///
/// Redis only ever moves a TAT forward (and lets the key expire once the TAT has passed), so a
/// TAT read from Redis is a lower bound of the key's TAT until it passes: a check that this TAT
/// already denies is denied by Redis too, and can be answered here.
pub(super) struct DenyCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: foldhash::fast::RandomState,
}

struct Shard {
    entries: HashTable<Entry>,
    cap: usize,
    /// When full, the earliest time at which another sweep for passed TATs may run, so that a
    /// flood of new limited keys costs one scan per interval, not one per check.
    next_sweep: u64,
}

/// The least time between two sweeps of a full shard, in nanoseconds.
const FULL_SWEEP_GAP_NANOS: u64 = 100_000_000;

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    tat: u64,
}

impl DenyCache {
    /// A cache holding at most about `capacity` keys (at least one per shard).
    pub(super) fn new(capacity: usize) -> Self {
        let cap = capacity.div_ceil(SHARDS).max(1);
        DenyCache {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        entries: HashTable::new(),
                        cap,
                        next_sweep: 0,
                    })
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// The cached TAT of `key`, passed or not: a passed TAT is a key with its full burst.
    pub(super) fn get(&self, key: &[u8]) -> Option<u64> {
        let hash = self.hasher.hash_one(key);
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .entries
            .find(hash, |e| e.hash == hash && *e.key == *key)
            .map(|e| e.tat)
    }

    /// Records that `key`'s TAT is at least `tat`. If `cache_new` is false only a key already
    /// cached is updated. A full shard first drops the TATs that have passed (at most once per 100 ms); if it is still
    /// full, the key is not cached (a miss only costs a round trip).
    pub(super) fn record(&self, key: &[u8], tat: u64, now: u64, cache_new: bool) {
        let hash = self.hasher.hash_one(key);
        if !cache_new {
            // Most checks are of keys that are not cached and need not be: a shared lock
            // finds that out without making concurrent checks wait on each other.
            let shard = self
                .shard(hash)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match shard
                .entries
                .find(hash, |e| e.hash == hash && *e.key == *key)
            {
                None => return,
                Some(entry) if entry.tat >= tat => return,
                Some(_) => {}
            }
        }
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = shard
            .entries
            .find_mut(hash, |e| e.hash == hash && *e.key == *key)
        {
            entry.tat = entry.tat.max(tat);
            return;
        }
        if !cache_new {
            return;
        }
        if shard.entries.len() >= shard.cap {
            if now < shard.next_sweep {
                return;
            }
            shard.next_sweep = now.saturating_add(FULL_SWEEP_GAP_NANOS);
            shard.entries.retain(|e| e.tat > now);
            if shard.entries.len() >= shard.cap {
                return;
            }
        }
        shard.entries.insert_unique(
            hash,
            Entry {
                hash,
                key: key.into(),
                tat,
            },
            |e| e.hash,
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap().entries.len())
            .sum()
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
    fn stays_bounded_by_dropping_passed_tats_first() {
        let cache = DenyCache::new(SHARDS);
        for i in 0..1000u32 {
            cache.record(&i.to_be_bytes(), 100, 0, true);
        }
        assert!(cache.len() <= SHARDS, "{}", cache.len());
        // Within the sweep gap a full shard takes no new keys...
        for i in 1000..2000u32 {
            cache.record(&i.to_be_bytes(), 300, 200, true);
        }
        assert!((1000..2000u32).all(|i| cache.get(&i.to_be_bytes()).is_none()));
        // ...after it, the passed TATs make room.
        let (now, tat) = (FULL_SWEEP_GAP_NANOS, FULL_SWEEP_GAP_NANOS + 100);
        for i in 2000..3000u32 {
            cache.record(&i.to_be_bytes(), tat, now, true);
        }
        assert!(cache.len() <= SHARDS);
        assert!((2000..3000u32).any(|i| cache.get(&i.to_be_bytes()) == Some(tat)));
    }
}
