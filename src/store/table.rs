//! The sharded, bounded table of keys that [`MemoryStore`](crate::MemoryStore) and the Redis
//! store's deny cache keep their state in.
//!
//! Keys are bytes, hashed with a per-table random seed so that clients cannot choose keys that
//! collide; short keys are stored inline. Each shard has a lock and a cap; entries that are
//! idle (in the state of a key never seen) are swept when a shard grows, and a full shard
//! sweeps at most once per [`FULL_SWEEP_GAP`] so that a flood of new keys cannot make every
//! insert scan a shard.

use std::hash::{BuildHasher, Hasher as _};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;

/// A shard is swept for idle keys when it grows to this many keys, and then at twice the number
/// of keys that survived the last sweep.
const MIN_SWEEP_AT: usize = 64;
/// A shard at its cap sweeps at most once per this interval.
const FULL_SWEEP_GAP: Duration = Duration::from_millis(100);
/// Keys up to this many bytes are stored inside the table; longer ones are boxed.
const INLINE_KEY: usize = 22;

pub(crate) type Hasher = foldhash::fast::RandomState;

/// What a table holds per key: it knows when it is idle.
pub(crate) trait Value {
    /// Whether the entry is in the state of a key never seen at `now`, and can be dropped.
    fn idle(&self, now: u64) -> bool;
}

/// Shards of keys, with a cap on keys in all.
pub(crate) struct Sharded<V> {
    shards: Box<[Shard<V>]>,
    /// `(hash >> 32) & mask` picks the shard.
    mask: u64,
    hasher: Hasher,
}

/// One lock and one table; padded so that two shards' locks never share a cache line.
#[repr(align(128))]
pub(crate) struct Shard<V> {
    table: RwLock<Table<V>>,
}

pub(crate) struct Table<V> {
    entries: HashTable<Entry<V>>,
    /// At most this many keys in this shard.
    cap: usize,
    /// Sweep idle keys when an insert finds this many.
    sweep_at: usize,
    /// When full, the earliest time at which another sweep may run.
    next_full_sweep: u64,
}

pub(crate) struct Entry<V> {
    key: StoredKey,
    pub(crate) value: V,
}

/// A key's bytes: inline when short, boxed otherwise.
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Boxed(Box<[u8]>),
}

impl StoredKey {
    fn new(key: &[u8]) -> Self {
        match Probe::new(key) {
            Probe::Inline { len, bytes } => StoredKey::Inline { len, bytes },
            Probe::Boxed(key) => StoredKey::Boxed(key.into()),
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredKey::Boxed(bytes) => bytes,
        }
    }

    /// Whether this is the key `probe` looks for.
    #[inline]
    fn is(&self, probe: &Probe<'_>) -> bool {
        match (self, probe) {
            // Two fixed-size arrays: compared inline, without a call to `memcmp`.
            (StoredKey::Inline { len, bytes }, Probe::Inline { len: l, bytes: b }) => {
                len == l && bytes == b
            }
            (StoredKey::Boxed(bytes), Probe::Boxed(key)) => **bytes == **key,
            _ => false,
        }
    }
}

/// A key being looked for, in the form it is stored in: short keys zero-padded like the
/// stored ones.
enum Probe<'a> {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Boxed(&'a [u8]),
}

impl<'a> Probe<'a> {
    #[inline]
    fn new(key: &'a [u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            // Byte by byte: a short loop the compiler keeps inline, where `copy_from_slice` of
            // a length it cannot see would call `memcpy`.
            for (to, from) in bytes.iter_mut().zip(key) {
                *to = *from;
            }
            Probe::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Probe::Boxed(key)
        }
    }
}

impl<V: Value> Sharded<V> {
    /// A table for at most `max_keys` keys (at least one), in as many shards as keep threads
    /// apart while each shard holds a useful share of the cap.
    pub(crate) fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        let wanted = (parallelism * 8).next_power_of_two().clamp(8, 256);
        let fitting = (max_keys / MIN_SWEEP_AT).max(1);
        let shards = wanted.min(prev_power_of_two(fitting));
        let base = max_keys / shards;
        let extra = max_keys % shards;
        let shards: Box<[Shard<V>]> = (0..shards)
            .map(|i| Shard::new(base + usize::from(i < extra)))
            .collect();
        Sharded {
            mask: shards.len() as u64 - 1,
            shards,
            hasher: Hasher::default(),
        }
    }

    /// The hash of a key's bytes (without the length prefix of `Hash for [u8]`: keys are
    /// compared whole, so the prefix buys nothing).
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        hash_key(&self.hasher, key)
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &Shard<V> {
        // The table uses the low bits for the bucket and the top seven for its tag; take the
        // shard from bits in between so the three stay independent.
        &self.shards[((hash >> 32) & self.mask) as usize]
    }

    pub(crate) fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// How many keys are held, idle ones not yet dropped included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().entries.len()).sum()
    }

    /// The most keys held at once.
    pub(crate) fn cap(&self) -> usize {
        self.shards.iter().map(|s| s.read().cap).sum()
    }

    /// Drops every idle key and returns how many remain and how many were dropped.
    pub(crate) fn sweep(&self, now: u64) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(kept, dropped), shard| {
            let mut table = shard.write();
            let before = table.entries.len();
            table.sweep(now, &self.hasher);
            let after = table.entries.len();
            (kept + after, dropped + (before - after))
        })
    }
}

impl<V> Shard<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Shard {
            table: RwLock::new(Table {
                entries: HashTable::new(),
                cap,
                sweep_at: MIN_SWEEP_AT.min(cap),
                next_full_sweep: 0,
            }),
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Table<V>> {
        // Nothing panics while holding the lock, and the table is consistent at every step.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Table<V>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V: Value> Table<V> {
    #[inline]
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<&V> {
        let probe = Probe::new(key);
        self.entries
            .find(hash, |e| e.key.is(&probe))
            .map(|e| &e.value)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let probe = Probe::new(key);
        self.entries
            .find_mut(hash, |e| e.key.is(&probe))
            .map(|e| &mut e.value)
    }

    /// How many keys the shard holds.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the shard holds as many keys as it may.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.cap
    }

    /// The value of `key`, inserted with `make` if it is new and the shard has room for it
    /// (after sweeping idle keys when the shard has grown enough); `None` if it has not.
    pub(crate) fn get_or_insert(
        &mut self,
        hash: u64,
        key: &[u8],
        now: u64,
        hasher: &Hasher,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        if self.get(hash, key).is_none() {
            if !self.make_room(now, hasher) {
                return None;
            }
            self.entries.insert_unique(
                hash,
                Entry {
                    key: StoredKey::new(key),
                    value: make(),
                },
                |e| hash_key(hasher, e.key.as_bytes()),
            );
        }
        self.get_mut(hash, key)
    }

    /// Makes room for one more key if the shard allows it. Returns whether a key may be
    /// inserted.
    fn make_room(&mut self, now: u64, hasher: &Hasher) -> bool {
        let len = self.entries.len();
        if len < self.sweep_at {
            return true;
        }
        let full = len >= self.cap;
        if full && now < self.next_full_sweep {
            return false;
        }
        self.sweep(now, hasher);
        if full {
            self.next_full_sweep = now.saturating_add(FULL_SWEEP_GAP.as_nanos() as u64);
        }
        self.entries.len() < self.cap
    }

    /// Drops every idle key, and gives memory back when most of the table is empty.
    fn sweep(&mut self, now: u64, hasher: &Hasher) {
        self.entries.retain(|e| !e.value.idle(now));
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(MIN_SWEEP_AT) {
            self.entries
                .shrink_to(2 * len, |e| hash_key(hasher, e.key.as_bytes()));
        }
        self.sweep_at = (2 * len).max(MIN_SWEEP_AT).min(self.cap);
    }
}

/// The hash of a key's bytes; see [`Sharded::hash`].
#[inline]
fn hash_key(hasher: &Hasher, key: &[u8]) -> u64 {
    let mut hasher = hasher.build_hasher();
    hasher.write(key);
    hasher.finish()
}

fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value idle once `now` reaches it.
    struct Until(u64);

    impl Value for Until {
        fn idle(&self, now: u64) -> bool {
            self.0 <= now
        }
    }

    fn insert(table: &Sharded<Until>, key: &[u8], until: u64, now: u64) -> bool {
        let hash = table.hash(key);
        let mut shard = table.shard(hash).write();
        shard
            .get_or_insert(hash, key, now, table.hasher(), || Until(until))
            .is_some()
    }

    #[test]
    fn caps_are_exact_and_short_and_long_keys_are_found() {
        for max in [1, 7, 64, 1000, 12_345] {
            assert_eq!(Sharded::<Until>::new(max).cap(), max);
        }
        let table = Sharded::new(1000);
        let long = vec![7u8; 100];
        assert!(insert(&table, b"short", 10, 0));
        assert!(insert(&table, &long, 10, 0));
        let found = |key: &[u8]| {
            let hash = table.hash(key);
            table.shard(hash).read().get(hash, key).map(|v| v.0)
        };
        assert_eq!(found(b"short"), Some(10));
        assert_eq!(found(&long), Some(10));
        assert_eq!(found(b"other"), None);
    }

    #[test]
    fn a_full_table_takes_no_new_key_until_idle_ones_are_swept() {
        let table = Sharded::new(64);
        for i in 0..64u32 {
            assert!(insert(&table, &i.to_be_bytes(), 100, 0));
        }
        assert_eq!(table.len(), 64);
        assert!(!insert(&table, b"new", 100, 50), "full, nothing idle");
        let gap = FULL_SWEEP_GAP.as_nanos() as u64;
        assert!(!insert(&table, b"new", 100, 101), "within the sweep gap");
        assert!(insert(&table, b"new", gap + 500, gap + 101));
        assert_eq!(table.len(), 1, "the idle keys made room");
    }
}
