use std::any::Any;
use std::fmt;
use std::future::{ready, Ready};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;

use crate::gcra::{self, InsufficientCapacity};
use crate::{Clock, ConfigError, Decision, MonotonicClock, Quota, Store};

/// The default cap on tracked keys.
const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// A shard is swept for idle keys when it grows to this many keys, and then at twice the number
/// of keys that survived the last sweep.
const MIN_SWEEP_AT: usize = 64;
/// A shard at its cap sweeps at most once per this interval, so that a flood of new keys costs
/// one scan per interval, not one per request.
const CAP_SWEEP_GAP: Duration = Duration::from_millis(100);

/// An in-process store: one atomic theoretical arrival time per key in a sharded hash map.
///
/// - A check of a key already present takes a shared lock on one shard and one atomic
///   compare-and-swap; it allocates nothing. A denial only reads. IP addresses and `u64`s are
///   stored inline, so tracking a new key of those types allocates nothing either.
/// - Keys are hashed with a per-store random seed (`foldhash`), so a client cannot choose keys
///   that collide.
/// - Memory is bounded: a key whose theoretical arrival time has passed is idle, in exactly the
///   state of a key never seen, and is dropped when its shard grows. No background task is
///   needed.
/// - At most `max_keys` keys are tracked (default 1 000 000). When the map is full and no idle
///   key can be dropped, keys not yet tracked share one overflow budget of the same quota until
///   room frees up: a client rotating through fresh keys gets no more than one key's quota, and
///   memory stays bounded.
///
/// Clones share the same map. One store can serve keys of several types; two layers with
/// different quotas should not share a store for the same keys, since a key has one state.
///
/// ```
/// use std::time::Duration;
/// use tower_ratelimit::{ManualClock, MemoryStore, Quota};
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::builder()
///     .clock(clock.clone())
///     .max_keys(10_000)
///     .build()?;
/// let quota = Quota::per_second(1);
///
/// assert!(store.check_now(&42u64, &quota, 1)?.is_allowed());
/// assert!(!store.check_now(&42u64, &quota, 1)?.is_allowed());
/// clock.advance(Duration::from_secs(1));
/// assert!(store.check_now(&42u64, &quota, 1)?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MemoryStore<C = MonotonicClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    shards: Box<[Shard]>,
    /// `hash >> shard_shift` picks the shard; see `shard_index`.
    shard_mask: u64,
    hasher: Hasher,
    clock: C,
    /// Shared by every key that arrives while its shard is full.
    overflow: AtomicU64,
}

/// One lock and one table; padded so that two shards' locks never share a cache line.
#[repr(align(128))]
struct Shard {
    table: RwLock<Table>,
}

struct Table {
    entries: HashTable<Entry>,
    /// At most this many keys in this shard.
    cap: usize,
    /// Sweep idle keys when an insert finds this many.
    sweep_at: usize,
    /// When full, the earliest clock reading at which another sweep may run.
    next_full_sweep: u64,
}

/// 32 bytes: two entries to a cache line, none split across two.
struct Entry {
    tat: AtomicU64,
    key: StoredKey,
}

type Hasher = foldhash::fast::RandomState;

/// A tracked key. IP addresses (the key of the IP extractors) and `u64`s are kept inline, so
/// that finding them reads no memory outside the table and tracking them allocates nothing;
/// keys of any other type are boxed with their hash. The variant records the key's type: a
/// `u64` and a `u32` of equal value are different keys.
enum StoredKey {
    Ip(IpAddr),
    U64(u64),
    Other(Box<OtherKey<dyn Any + Send + Sync>>),
}

struct OtherKey<T: ?Sized> {
    hash: u64,
    key: T,
}

impl StoredKey {
    fn new<K: Clone + Send + Sync + 'static>(key: &K, hash: u64) -> Self {
        let any: &dyn Any = key;
        if let Some(ip) = any.downcast_ref::<IpAddr>() {
            StoredKey::Ip(*ip)
        } else if let Some(n) = any.downcast_ref::<u64>() {
            StoredKey::U64(*n)
        } else {
            StoredKey::Other(Box::new(OtherKey {
                hash,
                key: key.clone(),
            }))
        }
    }

    /// The hash the key was found by; the table needs it again only when it resizes.
    fn hash(&self, hasher: &Hasher) -> u64 {
        match self {
            StoredKey::Ip(ip) => hasher.hash_one(ip),
            StoredKey::U64(n) => hasher.hash_one(n),
            StoredKey::Other(other) => other.hash,
        }
    }

    /// Whether this is `key`, of the same type. The type tests fold away for a known `K`.
    #[inline]
    fn is<K: Eq + 'static>(&self, key: &K) -> bool {
        let any: &dyn Any = key;
        match self {
            StoredKey::Ip(ip) => any.downcast_ref::<IpAddr>() == Some(ip),
            StoredKey::U64(n) => any.downcast_ref::<u64>() == Some(n),
            StoredKey::Other(other) => other.key.downcast_ref::<K>().is_some_and(|k| k == key),
        }
    }
}

impl MemoryStore {
    /// A store on the monotonic clock with the default cap of 1 000 000 keys.
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::new();
    /// assert!(store.is_empty());
    /// ```
    pub fn new() -> Self {
        MemoryStore::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to choose the clock and the cap.
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::builder().max_keys(100).build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: MonotonicClock::new(),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Clone for MemoryStore<C> {
    fn clone(&self) -> Self {
        MemoryStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<C> MemoryStore<C> {
    /// How many keys are tracked now, idle ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.read().entries.len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store tracks at once.
    pub fn max_keys(&self) -> usize {
        self.inner.shards.iter().map(|shard| shard.read().cap).sum()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// Takes `cost` cells from `key` if they conform to `quota`, answering at once.
    ///
    /// This is [`Store::check`] without the future.
    pub fn check_now<K>(
        &self,
        key: &K,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, InsufficientCapacity>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        if cost > quota.burst() {
            return Err(InsufficientCapacity {
                cost,
                burst: quota.burst(),
            });
        }
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.inner.shard(hash);
        let now = self.inner.clock.now_nanos();
        {
            let table = shard.read();
            if let Some(entry) = table.find(hash, key) {
                return take(&entry.tat, quota, now, cost);
            }
        }
        let mut table = shard.write();
        if let Some(entry) = table.find(hash, key) {
            return take(&entry.tat, quota, now, cost);
        }
        if !table.make_room(now, &self.inner.hasher) {
            return take(&self.inner.overflow, quota, now, cost);
        }
        let step = gcra::check(quota, 0, now, cost)?;
        let tat = step
            .new_tat
            .expect("a fresh key admits any cost up to the burst");
        table.entries.insert_unique(
            hash,
            Entry {
                tat: AtomicU64::new(tat),
                key: StoredKey::new(key, hash),
            },
            |e| e.key.hash(&self.inner.hasher),
        );
        Ok(step.decision)
    }

    /// What a cost-1 check of `key` would answer now, taking nothing.
    ///
    /// This is [`Store::peek`] without the future.
    pub fn peek_now<K>(&self, key: &K, quota: &Quota) -> Decision
    where
        K: Hash + Eq + Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(key);
        let now = self.inner.clock.now_nanos();
        let table = self.inner.shard(hash).read();
        let tat = match table.find(hash, key) {
            Some(entry) => entry.tat.load(Ordering::Acquire),
            None if table.entries.len() >= table.cap => self.inner.overflow.load(Ordering::Acquire),
            None => 0,
        };
        gcra::peek(quota, tat, now)
    }

    /// Drops every idle key now and returns how many keys remain.
    ///
    /// Never needed for bounded memory (inserts do it as the map grows); useful after a burst of
    /// one-off keys to give memory back at a moment of the caller's choosing.
    pub fn sweep(&self) -> usize {
        let now = self.inner.clock.now_nanos();
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let mut table = shard.write();
                table.sweep(now, &self.inner.hasher);
                table.entries.len()
            })
            .sum()
    }
}

impl<K, C> Store<K> for MemoryStore<C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clock,
{
    type Error = InsufficientCapacity;
    type Future = Ready<Result<Decision, InsufficientCapacity>>;

    #[inline]
    fn check(&self, key: &K, quota: &Quota, cost: u32) -> Self::Future {
        ready(self.check_now(key, quota, cost))
    }

    fn peek(&self, key: &K, quota: &Quota) -> Self::Future {
        ready(Ok(self.peek_now(key, quota)))
    }
}

/// Runs the GCRA on one atomic cell: a denial only reads; a conforming check swaps the new TAT
/// in, retrying if another thread got there first.
#[inline]
fn take(
    cell: &AtomicU64,
    quota: &Quota,
    now: u64,
    cost: u32,
) -> Result<Decision, InsufficientCapacity> {
    let mut tat = cell.load(Ordering::Acquire);
    loop {
        let step = gcra::check(quota, tat, now, cost)?;
        let Some(next) = step.new_tat else {
            return Ok(step.decision);
        };
        match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(step.decision),
            Err(current) => tat = current,
        }
    }
}

impl<C> Inner<C> {
    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // The table uses the low bits for the bucket and the top seven for its tag; take the
        // shard from bits in between so the three stay independent.
        &self.shards[((hash >> 32) & self.shard_mask) as usize]
    }
}

impl Shard {
    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        // Nothing panics while holding the lock, and the table is consistent at every step.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    #[inline]
    fn find<K: Eq + 'static>(&self, hash: u64, key: &K) -> Option<&Entry> {
        self.entries.find(hash, |e| e.key.is(key))
    }

    /// Makes room for one more key if the shard allows it, sweeping idle keys first when the
    /// shard has grown enough. Returns whether a key may be inserted.
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
            self.next_full_sweep = now.saturating_add(CAP_SWEEP_GAP.as_nanos() as u64);
        }
        self.entries.len() < self.cap
    }

    /// Drops every key whose theoretical arrival time has passed: such a key is at a full burst,
    /// exactly like a key never seen.
    fn sweep(&mut self, now: u64, hasher: &Hasher) {
        self.entries.retain(|e| e.tat.load(Ordering::Acquire) > now);
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(MIN_SWEEP_AT) {
            self.entries.shrink_to(2 * len, |e| e.key.hash(hasher));
        }
        self.sweep_at = (2 * len).max(MIN_SWEEP_AT).min(self.cap);
    }
}

/// Builds a [`MemoryStore`] with a chosen clock and cap.
///
/// ```
/// use tower_ratelimit::{ManualClock, MemoryStore};
///
/// let store = MemoryStore::builder()
///     .clock(ManualClock::new())
///     .max_keys(50_000)
///     .build()?;
/// assert!(store.max_keys() <= 50_000);
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct MemoryStoreBuilder<C = MonotonicClock> {
    clock: C,
    max_keys: usize,
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// The clock to read the time from (default: [`MonotonicClock`]).
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::builder()
    ///     .clock(tower_ratelimit::ManualClock::new())
    ///     .build()?;
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryStoreBuilder<C2> {
        MemoryStoreBuilder {
            clock,
            max_keys: self.max_keys,
        }
    }

    /// The most keys to track at once (default 1 000 000). See [`MemoryStore`] for what
    /// happens at the cap.
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::builder().max_keys(1_000).build()?;
    /// assert_eq!(store.max_keys(), 1_000);
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The store, or an error if `max_keys` is zero.
    pub fn build(self) -> Result<MemoryStore<C>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "MemoryStore max_keys is 0; it must track at least one key",
            ));
        }
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        // Enough shards that threads rarely meet on one lock, few enough that each holds a
        // useful share of the cap.
        let wanted = (parallelism * 8).next_power_of_two().clamp(8, 256);
        let fitting = (self.max_keys / MIN_SWEEP_AT).max(1);
        let shards = wanted.min(prev_power_of_two(fitting));
        let base = self.max_keys / shards;
        let extra = self.max_keys % shards;
        let shards: Box<[Shard]> = (0..shards)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                Shard {
                    table: RwLock::new(Table {
                        entries: HashTable::new(),
                        cap,
                        sweep_at: MIN_SWEEP_AT.min(cap),
                        next_full_sweep: 0,
                    }),
                }
            })
            .collect();
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                shard_mask: shards.len() as u64 - 1,
                shards,
                hasher: Hasher::default(),
                clock: self.clock,
                overflow: AtomicU64::new(0),
            }),
        })
    }
}

fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn store(max_keys: usize) -> (MemoryStore<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .max_keys(max_keys)
            .build()
            .unwrap();
        (store, clock)
    }

    #[test]
    fn keys_of_different_types_with_equal_values_are_separate() {
        let (store, _) = store(100);
        let quota = Quota::per_second(1);
        assert!(store.check_now(&1u32, &quota, 1).unwrap().is_allowed());
        assert!(store.check_now(&1u64, &quota, 1).unwrap().is_allowed());
        assert!(!store.check_now(&1u32, &quota, 1).unwrap().is_allowed());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn inline_ip_and_u64_keys_are_separate_from_other_types() {
        let (store, _) = store(100);
        let quota = Quota::per_second(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let v4: std::net::Ipv4Addr = "192.0.2.1".parse().unwrap();
        let other_ip: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(store.check_now(&ip, &quota, 1).unwrap().is_allowed());
        assert!(store.check_now(&v4, &quota, 1).unwrap().is_allowed());
        assert!(store.check_now(&other_ip, &quota, 1).unwrap().is_allowed());
        assert!(store.check_now(&7u64, &quota, 1).unwrap().is_allowed());
        assert!(store.check_now(&7i64, &quota, 1).unwrap().is_allowed());
        assert!(!store.check_now(&ip, &quota, 1).unwrap().is_allowed());
        assert!(!store.check_now(&7u64, &quota, 1).unwrap().is_allowed());
        assert!(!store.peek_now(&v4, &quota).is_allowed());
        assert_eq!(store.len(), 5);
    }

    #[test]
    fn inline_keys_are_found_after_the_table_grows() {
        let (store, _) = store(100_000);
        let quota = Quota::per_hour(1);
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(i));
        for i in 0..5_000u32 {
            assert!(store.check_now(&ip(i), &quota, 1).unwrap().is_allowed());
            assert!(store
                .check_now(&u64::from(i), &quota, 1)
                .unwrap()
                .is_allowed());
        }
        for i in 0..5_000u32 {
            assert!(!store.check_now(&ip(i), &quota, 1).unwrap().is_allowed());
            assert!(!store
                .check_now(&u64::from(i), &quota, 1)
                .unwrap()
                .is_allowed());
        }
        assert_eq!(store.len(), 10_000);
    }

    #[test]
    fn an_entry_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn a_denial_writes_nothing() {
        let (store, clock) = store(100);
        let quota = Quota::per_second(2);
        store.check_now(&"k", &quota, 2).unwrap();
        for _ in 0..10 {
            assert!(!store.check_now(&"k", &quota, 1).unwrap().is_allowed());
        }
        clock.advance(Duration::from_millis(500));
        assert!(store.check_now(&"k", &quota, 1).unwrap().is_allowed());
    }

    #[test]
    fn a_cost_above_the_burst_fails_without_tracking_the_key() {
        let (store, _) = store(100);
        let err = store.check_now(&"k", &Quota::per_second(3), 4).unwrap_err();
        assert_eq!(err, InsufficientCapacity { cost: 4, burst: 3 });
        assert!(store.is_empty());
    }

    #[test]
    fn idle_keys_are_dropped_as_the_map_grows() {
        let (store, clock) = store(1_000_000);
        let quota = Quota::per_second(10);
        for key in 0..10_000u32 {
            store.check_now(&key, &quota, 1).unwrap();
        }
        assert_eq!(store.len(), 10_000, "nothing is idle yet");
        clock.advance(Duration::from_secs(1));
        for key in 10_000..20_000u32 {
            store.check_now(&key, &quota, 1).unwrap();
        }
        assert!(
            store.len() < 15_000,
            "idle keys should have been swept, {} tracked",
            store.len()
        );
    }

    #[test]
    fn at_the_cap_new_keys_share_one_overflow_budget() {
        let (store, clock) = store(64);
        let quota = Quota::per_minute(3);
        for key in 0..64u32 {
            assert!(store.check_now(&key, &quota, 1).unwrap().is_allowed());
        }
        assert_eq!(store.len(), 64);
        let overflow: Vec<bool> = (1000..1010u32)
            .map(|key| store.check_now(&key, &quota, 1).unwrap().is_allowed())
            .collect();
        assert_eq!(overflow.iter().filter(|a| **a).count(), 3, "{overflow:?}");
        assert_eq!(store.len(), 64, "the cap holds");
        assert!(!store.peek_now(&2000u32, &quota).is_allowed());

        clock.advance(Duration::from_secs(60));
        assert!(store.check_now(&5000u32, &quota, 1).unwrap().is_allowed());
        assert_eq!(store.len(), 1, "once idle, the tracked keys made room");
    }

    #[test]
    fn max_keys_is_exact_and_zero_is_rejected() {
        for max in [1, 7, 64, 1000, 12_345] {
            assert_eq!(store(max).0.max_keys(), max);
        }
        let err = MemoryStore::builder().max_keys(0).build().unwrap_err();
        assert!(err.to_string().contains("max_keys is 0"), "{err}");
    }
}
