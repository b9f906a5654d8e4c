//! The sharded, bounded table of keys that [`MemoryStore`](crate::MemoryStore) and the Redis
//! store's deny cache keep their state in.
//!
//! - Keys are bytes. A key of up to [`INLINE_KEY`] bytes is read once into three words and its
//!   length, which are hashed with a folded multiply and compared word by word; longer keys are
//!   boxed and hashed with `foldhash`. Both hashes take per-table random seeds, so clients
//!   cannot choose keys that collide.
//! - Each shard has a cap; entries that are idle (in the state of a key never seen) are swept
//!   when a shard grows, and a full shard sweeps at most once per [`FULL_SWEEP_GAP`] so that a
//!   flood of new keys cannot make every insert scan a shard.
//! - Each shard's lock is striped by thread (`crossbeam_utils`'s `ShardedLock`, eight stripes): a
//!   reader takes the read lock of its thread's stripe only, so readers on different threads seldom
//!   write to one cache line (never, with eight threads or fewer), and a writer takes every stripe.
//!   Reads are the common case (a known key); writes only insert and sweep.
//! - Entries are aligned to a cache line: a key and its state are one line, and no two keys
//!   share one.

use std::hash::{BuildHasher, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::Duration;

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use hashbrown::HashTable;

/// A shard is swept for idle keys when it grows to this many keys, and then at twice the number
/// of keys that survived the last sweep.
const MIN_SWEEP_AT: usize = 64;
/// A shard at its cap sweeps at most once per this interval.
const FULL_SWEEP_GAP: Duration = Duration::from_millis(100);
/// Keys up to this many bytes are stored inside the table as words; longer ones are boxed.
const INLINE_KEY: usize = 24;

/// Hashes keys with the seeds of one table.
pub(crate) struct Hasher {
    /// For keys of up to [`INLINE_KEY`] bytes.
    seeds: [u64; 6],
    /// For longer keys.
    long: foldhash::fast::RandomState,
}

impl Hasher {
    fn new() -> Self {
        let long = foldhash::fast::RandomState::default();
        // Random per table: the seeds are hashes of constants under a randomly seeded hasher.
        let seeds = [1u64, 2, 3, 4, 5, 6].map(|n| long.hash_one(n));
        Hasher { seeds, long }
    }

    /// The form and hash of a key's bytes.
    #[inline]
    pub(crate) fn key<'a>(&self, bytes: &'a [u8]) -> Key<'a> {
        match Short::new(bytes) {
            Some(short) => Key {
                hash: self.short(&short),
                form: Form::Short(short),
            },
            None => Key {
                hash: self.long(bytes),
                form: Form::Long(bytes),
            },
        }
    }

    #[inline]
    fn short(&self, key: &Short) -> u64 {
        let [a, b, c] = key.words;
        let s = &self.seeds;
        let x = folded_multiply(a ^ s[0], b ^ s[1]);
        let y = folded_multiply(c ^ s[2], u64::from(key.len.get()) ^ s[3]);
        folded_multiply(x ^ s[4], y ^ s[5])
    }

    fn long(&self, bytes: &[u8]) -> u64 {
        let mut hasher = self.long.build_hasher();
        hasher.write(bytes);
        hasher.finish()
    }

    fn stored(&self, key: &StoredKey) -> u64 {
        match key {
            StoredKey::Short(short) => self.short(short),
            StoredKey::Long(bytes) => self.long(bytes),
        }
    }
}

/// The high and low halves of the 128-bit product, folded together.
#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A key of up to [`INLINE_KEY`] bytes as three little-endian words read from overlapping
/// windows that together cover every byte, and its length plus one. For one length, equal words
/// mean equal bytes, so the words and the length are the key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Short {
    words: [u64; 3],
    /// The length plus one: never zero, which leaves [`StoredKey`] the size of a `Short`.
    len: std::num::NonZeroU8,
}

impl Short {
    #[inline]
    fn new(bytes: &[u8]) -> Option<Short> {
        let len = bytes.len();
        let words = if len >= 16 {
            if len > INLINE_KEY {
                return None;
            }
            [word(bytes, 0), word(bytes, 8), word(bytes, len - 8)]
        } else if len >= 8 {
            [word(bytes, 0), word(bytes, len - 8), 0]
        } else if len >= 4 {
            let first = bytes.first_chunk().map_or(0, |w| u32::from_le_bytes(*w));
            let last = bytes.last_chunk().map_or(0, |w| u32::from_le_bytes(*w));
            [u64::from(first) | u64::from(last) << 32, 0, 0]
        } else if let Some((&first, _)) = bytes.split_first() {
            let middle = bytes.get(len / 2).copied().unwrap_or(first);
            let last = bytes.last().copied().unwrap_or(first);
            [
                u64::from(first) | u64::from(middle) << 8 | u64::from(last) << 16,
                0,
                0,
            ]
        } else {
            [0; 3]
        };
        Some(Short {
            words,
            len: std::num::NonZeroU8::MIN.saturating_add(len as u8),
        })
    }
}

/// The eight bytes of `bytes` at `at`, as a little-endian word (zero if there are fewer; the
/// callers check the length first).
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk())
        .map_or(0, |w| u64::from_le_bytes(*w))
}

/// A key being looked up: its hash and the form it is stored in.
pub(crate) struct Key<'a> {
    hash: u64,
    form: Form<'a>,
}

enum Form<'a> {
    Short(Short),
    Long(&'a [u8]),
}

/// A stored key.
enum StoredKey {
    Short(Short),
    Long(Box<[u8]>),
}

impl StoredKey {
    fn new(key: &Key<'_>) -> Self {
        match key.form {
            Form::Short(short) => StoredKey::Short(short),
            Form::Long(bytes) => StoredKey::Long(bytes.into()),
        }
    }

    /// Whether this is the key looked up.
    #[inline(always)]
    fn is(&self, key: &Key<'_>) -> bool {
        match (self, &key.form) {
            (StoredKey::Short(stored), Form::Short(short)) => stored == short,
            (StoredKey::Long(stored), Form::Long(bytes)) => **stored == **bytes,
            _ => false,
        }
    }
}

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

/// One table behind a lock striped by thread; padded so that two shards never share a cache
/// line.
#[repr(align(128))]
pub(crate) struct Shard<V> {
    table: ShardedLock<Table<V>>,
}

pub(crate) struct Table<V> {
    entries: HashTable<Entry<V>>,
    /// At most this many keys in this shard.
    cap: usize,
    /// Sweep idle keys when an insert finds this many.
    sweep_at: usize,
    /// When full, the earliest time at which another sweep may run; a peek that looks for an
    /// idle key in vain moves it as a sweep would, under the read lock.
    next_full_sweep: AtomicU64,
    /// When full, until when a look that found an idle key stands: later looks take its word
    /// instead of scanning the shard again, until the next sweep.
    room_seen_until: AtomicU64,
    /// The latest time a sweep ran at: a key it dropped was idle then.
    swept_at: u64,
}

/// A key and its value, in a cache line of their own.
#[repr(align(64))]
pub(crate) struct Entry<V> {
    key: StoredKey,
    pub(crate) value: V,
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
            hasher: Hasher::new(),
        }
    }

    /// The form and hash of a key's bytes, to look it up with.
    #[inline]
    pub(crate) fn key<'a>(&self, bytes: &'a [u8]) -> Key<'a> {
        self.hasher.key(bytes)
    }

    #[inline]
    pub(crate) fn shard(&self, key: &Key<'_>) -> &Shard<V> {
        // The table uses the low bits for the bucket and the top seven for its tag; take the
        // shard from bits in between so the three stay independent. The mask keeps the index
        // below the number of shards.
        &self.shards[((key.hash >> 32) & self.mask) as usize]
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
            table: ShardedLock::new(Table {
                entries: HashTable::new(),
                cap,
                sweep_at: MIN_SWEEP_AT.min(cap),
                next_full_sweep: AtomicU64::new(0),
                room_seen_until: AtomicU64::new(0),
                swept_at: 0,
            }),
        }
    }

    /// Shared access: the read lock of this thread's stripe.
    #[inline]
    pub(crate) fn read(&self) -> ShardedLockReadGuard<'_, Table<V>> {
        // Nothing panics while holding the lock, and the table is consistent at every step.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access: the write lock of every stripe.
    pub(crate) fn write(&self) -> ShardedLockWriteGuard<'_, Table<V>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V: Value> Table<V> {
    #[inline(always)]
    pub(crate) fn get(&self, key: &Key<'_>) -> Option<&V> {
        // One search per form: the short one, which almost every lookup takes, stays small
        // enough to be inlined.
        match &key.form {
            Form::Short(short) => self.entries.find(
                key.hash,
                |e| matches!(&e.key, StoredKey::Short(s) if s == short),
            ),
            Form::Long(bytes) => self.entries.find(
                key.hash,
                |e| matches!(&e.key, StoredKey::Long(b) if **b == **bytes),
            ),
        }
        .map(|e| &e.value)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: &Key<'_>) -> Option<&mut V> {
        self.entries
            .find_mut(key.hash, |e| e.key.is(key))
            .map(|e| &mut e.value)
    }

    /// How many keys the shard holds.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The latest time a sweep ran at (0 before the first): a key that a sweep dropped and
    /// that is inserted again must be decided no earlier, when it was idle.
    pub(crate) fn swept_at(&self) -> u64 {
        self.swept_at
    }

    /// Whether an insert at `now` is sure to find no room for a new key, exactly as
    /// [`get_or_insert`] would decide under the exclusive lock at a time no earlier than
    /// [`swept_at`]: the shard is full and may not sweep before its next full sweep. It reads
    /// under the shared lock, so that a flood of new keys at a full shard never takes it
    /// exclusively.
    ///
    /// [`get_or_insert`]: Self::get_or_insert
    /// [`swept_at`]: Self::swept_at
    #[inline]
    pub(crate) fn refuses_new_key(&self, now: u64) -> bool {
        self.entries.len() >= self.cap
            && now.max(self.swept_at) < self.next_full_sweep.load(Ordering::Relaxed)
    }

    /// Whether an insert at `now` would find room for a new key, as [`get_or_insert`]
    /// would: at a full shard that may sweep, whether a key is idle. A look that finds none
    /// counts as the sweep that would have found none, so that no look or sweep scans the
    /// shard again before [`FULL_SWEEP_GAP`] has passed; a look that finds one stands for as
    /// long, or until the next sweep, so that a flood of looks at new keys scans the shard once
    /// per gap, as a flood of inserts sweeps it.
    ///
    /// [`get_or_insert`]: Self::get_or_insert
    pub(crate) fn has_room(&self, now: u64) -> bool {
        if self.entries.len() < self.cap {
            return true;
        }
        if now < self.next_full_sweep.load(Ordering::Relaxed) {
            return false;
        }
        if now < self.room_seen_until.load(Ordering::Relaxed) {
            return true;
        }
        if self.entries.iter().any(|e| e.value.idle(now)) {
            self.room_seen_until
                .fetch_max(next_full_sweep(now), Ordering::Relaxed);
            return true;
        }
        self.next_full_sweep
            .fetch_max(next_full_sweep(now), Ordering::Relaxed);
        false
    }

    /// The value of `key`, inserted with `make` if it is new and the shard has room for it
    /// (after sweeping idle keys when the shard has grown enough); `None` if it has not.
    pub(crate) fn get_or_insert(
        &mut self,
        key: &Key<'_>,
        now: u64,
        hasher: &Hasher,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        if self.get(key).is_some() {
            return self.get_mut(key);
        }
        if !self.make_room(now, hasher) {
            return None;
        }
        let entry = Entry {
            key: StoredKey::new(key),
            value: make(),
        };
        let inserted = self
            .entries
            .insert_unique(key.hash, entry, |e| hasher.stored(&e.key));
        Some(&mut inserted.into_mut().value)
    }

    /// Makes room for one more key if the shard allows it. Returns whether a key may be
    /// inserted.
    fn make_room(&mut self, now: u64, hasher: &Hasher) -> bool {
        let len = self.entries.len();
        if len < self.sweep_at {
            return true;
        }
        if self.refuses_new_key(now) {
            return false;
        }
        let full = len >= self.cap;
        self.sweep(now, hasher);
        if full {
            *self.next_full_sweep.get_mut() = next_full_sweep(now);
        }
        self.entries.len() < self.cap
    }

    /// Drops every idle key, and gives memory back when most of the table is empty.
    fn sweep(&mut self, now: u64, hasher: &Hasher) {
        // What a look found idle may be gone now.
        *self.room_seen_until.get_mut() = 0;
        self.entries.retain(|e| !e.value.idle(now));
        self.swept_at = self.swept_at.max(now);
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(MIN_SWEEP_AT) {
            self.entries.shrink_to(2 * len, |e| hasher.stored(&e.key));
        }
        self.sweep_at = (2 * len).max(MIN_SWEEP_AT).min(self.cap);
    }
}

/// The earliest time after a sweep of a full table at `now` at which another may run.
fn next_full_sweep(now: u64) -> u64 {
    now.saturating_add(FULL_SWEEP_GAP.as_nanos() as u64)
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
        let key = table.key(key);
        let mut shard = table.shard(&key).write();
        shard
            .get_or_insert(&key, now, table.hasher(), || Until(until))
            .is_some()
    }

    fn found(table: &Sharded<Until>, key: &[u8]) -> Option<u64> {
        let key = table.key(key);
        let shard = table.shard(&key).read();
        shard.get(&key).map(|v| v.0)
    }

    /// How many times a `Counted` state was asked whether it is idle.
    static LOOKED_AT: AtomicU64 = AtomicU64::new(0);

    /// A value idle once `now` reaches it, counting the looks at it.
    struct Counted(u64);

    impl Value for Counted {
        fn idle(&self, now: u64) -> bool {
            LOOKED_AT.fetch_add(1, Ordering::Relaxed);
            self.0 <= now
        }
    }

    /// A flood of looks at new keys on a full shard that holds one idle key scans the shard
    /// once per sweep gap, not once per look; a sweep ends what the look found.
    #[test]
    fn looks_at_a_full_shard_with_an_idle_key_scan_it_once_per_gap() {
        let table = Sharded::<Counted>::new(64);
        assert_eq!(table.shards.len(), 1);
        let mut shard = table.shards[0].write();
        for i in 0..64u64 {
            let bytes = i.to_le_bytes();
            let key = table.key(&bytes);
            // Key 0 is idle from time 0, the others at the end of time.
            let until = if i == 0 { 0 } else { u64::MAX };
            let made = shard.get_or_insert(&key, 0, table.hasher(), || Counted(until));
            assert!(made.is_some());
        }
        drop(shard);
        let shard = table.shards[0].read();
        LOOKED_AT.store(0, Ordering::Relaxed);
        for _ in 0..100 {
            assert!(shard.has_room(1));
        }
        let looked = LOOKED_AT.load(Ordering::Relaxed);
        assert!(looked <= 64, "100 looks read {looked} states");
        // After the gap, the next look scans again.
        let later = 1 + FULL_SWEEP_GAP.as_nanos() as u64;
        assert!(shard.has_room(later));
        assert!(LOOKED_AT.load(Ordering::Relaxed) > looked);
        drop(shard);
        // A sweep drops the idle key, and with it what the look found: room by the count.
        let mut shard = table.shards[0].write();
        shard.sweep(later, table.hasher());
        assert_eq!(*shard.room_seen_until.get_mut(), 0);
        assert_eq!(shard.entries.len(), 63);
    }

    /// How many times a `Looked` state was asked whether it is idle (its own counter: tests
    /// run in parallel).
    static LOOKED_AT_GROWING: AtomicU64 = AtomicU64::new(0);

    /// A value that is never idle, counting the looks at it.
    struct Looked;

    impl Value for Looked {
        fn idle(&self, _now: u64) -> bool {
            LOOKED_AT_GROWING.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// A shard that grows with live keys sweeps at doubling sizes: the scans of its sweeps cost
    /// a bounded amount per insert, not one scan of the shard per new key.
    #[test]
    fn a_growing_shard_of_live_keys_sweeps_at_doubling_sizes() {
        let hasher = Hasher::new();
        let shard = Shard::<Looked>::new(10_000);
        let mut table = shard.write();
        for i in 0..1_000u64 {
            let bytes = i.to_le_bytes();
            let key = hasher.key(&bytes);
            assert!(table.get_or_insert(&key, 0, &hasher, || Looked).is_some());
        }
        assert_eq!(table.entries.len(), 1_000);
        let looked = LOOKED_AT_GROWING.load(Ordering::Relaxed);
        // Sweeps at 64, 128, 256 and 512 keys: 960 looks.
        assert!(looked <= 2 * 1_000, "1000 inserts read {looked} states");
    }

    /// A sweep that leaves most of a shard empty gives the memory back.
    #[test]
    fn a_sweep_that_empties_a_shard_gives_its_memory_back() {
        let hasher = Hasher::new();
        let shard = Shard::<Until>::new(100_000);
        let mut table = shard.write();
        for i in 0..10_000u64 {
            let bytes = i.to_le_bytes();
            let key = hasher.key(&bytes);
            assert!(table.get_or_insert(&key, 0, &hasher, || Until(5)).is_some());
        }
        assert!(table.entries.capacity() >= 10_000);
        table.sweep(5, &hasher);
        assert_eq!(table.entries.len(), 0);
        assert!(
            table.entries.capacity() <= 4 * MIN_SWEEP_AT,
            "{} buckets kept for no key",
            table.entries.capacity()
        );
    }

    /// Keys whose words are equal but whose lengths differ are different keys, for the
    /// exclusive lookup as for the shared one.
    #[test]
    fn a_stored_key_is_not_a_key_of_the_same_words_and_another_length() {
        let hasher = Hasher::new();
        for (a, b) in [
            (&b""[..], &b"\0"[..]),
            (b"\0\0", b"\0\0\0"),
            (b"aaaa", b"aaaaaaa"),
            (b"aaaaaaaa", b"aaaaaaaaa"),
            (b"abababababababab", b"abababababababababab"),
        ] {
            let stored = StoredKey::new(&hasher.key(a));
            assert!(stored.is(&hasher.key(a)), "{a:?}");
            assert!(!stored.is(&hasher.key(b)), "{a:?} is not {b:?}");
        }
    }

    /// The time of the latest sweep never goes back, even when a sweep that read the clock
    /// earlier takes the lock later: a key the later sweep dropped was idle only then, and a
    /// check that tracks it again must be decided no earlier.
    #[test]
    fn the_latest_sweep_time_never_goes_back() {
        let hasher = Hasher::new();
        let shard = Shard::<Until>::new(100);
        let mut table = shard.write();
        table.sweep(2_000, &hasher);
        table.sweep(600, &hasher);
        assert_eq!(table.swept_at(), 2_000);
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
        assert_eq!(found(&table, b"short"), Some(10));
        assert_eq!(found(&table, &long), Some(10));
        assert_eq!(found(&table, b"other"), None);
    }

    #[test]
    fn keys_of_every_inline_length_are_told_apart() {
        let table = Sharded::new(100_000);
        // Every length up to past the inline limit, and for each, keys that differ in one
        // byte at every position, or only in length.
        let mut keys = Vec::new();
        for len in 0..=INLINE_KEY + 2 {
            let base: Vec<u8> = (0..len as u8).map(|i| b'a' + i % 7).collect();
            keys.push(base.clone());
            for at in 0..len {
                let mut other = base.clone();
                other[at] ^= 0x5a;
                keys.push(other);
            }
            keys.push([base.as_slice(), &[0]].concat());
        }
        keys.sort();
        keys.dedup();
        for (i, key) in keys.iter().enumerate() {
            assert!(insert(&table, key, i as u64 + 1_000, 0));
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(found(&table, key), Some(i as u64 + 1_000), "{key:?}");
        }
        assert_eq!(table.len(), keys.len());
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<StoredKey>(), 32);
        assert_eq!(std::mem::size_of::<Entry<Until>>(), 64);
    }

    #[test]
    fn readers_on_many_threads_see_what_a_writer_inserts() {
        let table = Sharded::new(10_000);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let table = &table;
                s.spawn(move || {
                    for i in 0..500u64 {
                        let key = (t * 1_000 + i).to_le_bytes();
                        assert!(insert(table, &key, i + 1, 0));
                        assert_eq!(found(table, &key), Some(i + 1));
                    }
                });
            }
        });
        assert_eq!(table.len(), 2_000);
    }

    #[test]
    fn a_full_table_takes_no_new_key_until_idle_ones_are_swept() {
        let table = Sharded::new(64);
        for i in 0..64u32 {
            assert!(insert(&table, &i.to_be_bytes(), 100, 0));
        }
        assert_eq!(table.len(), 64);
        let refuses = |now| {
            let key = table.key(b"new");
            table.shard(&key).read().refuses_new_key(now)
        };
        assert!(
            !refuses(50),
            "a full table that has not swept yet may sweep"
        );
        assert!(!insert(&table, b"new", 100, 50), "full, nothing idle");
        let gap = FULL_SWEEP_GAP.as_nanos() as u64;
        assert!(refuses(101), "the read lock tells what the insert finds");
        assert!(!insert(&table, b"new", 100, 101), "within the sweep gap");
        assert!(!refuses(gap + 101), "the gap has passed");
        assert!(insert(&table, b"new", gap + 500, gap + 101));
        assert_eq!(table.len(), 1, "the idle keys made room");
    }
}
