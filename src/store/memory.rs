use std::fmt;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use smallvec::SmallVec;

use super::registry::Registry;
use super::table::{Key, Shard, Sharded, Value};
use crate::gcra::{self, Cell};
use crate::key::with_kept;
use crate::log::Throttle;
use crate::{Clock, ConfigError, Decisions, MonotonicClock, Policy, Store};

/// The default cap on tracked keys.
const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// An in-process store: one atomic theoretical arrival time per (policy, key) in a sharded hash
/// map.
///
/// - A key is its bytes (see [`KeyBytes`](crate::KeyBytes)); each tracked key holds one state
///   per policy that has seen it, so the policies of a stack are decided together, and two
///   policies never share a state.
/// - A check of a key already present takes the read lock of one shard, striped by thread (eight
///   stripes) so that readers on different threads seldom write to one cache line. A one-policy
///   check then runs one compare-and-swap on the key's state; a denial only reads. A key that holds
///   states for several policies is decided under a lock of its own, so a stack is all-or-nothing.
///   Neither allocates for a stack of one or two policies (a longer stack's check allocates its
///   working lists). Keys of up to 24 bytes (every IPv4 address and IPv6 /64 prefix, short API
///   keys) are stored inline, so tracking them allocates nothing either; a new key takes the
///   shard's exclusive lock, unless the shard is full and may not sweep yet: then the shared lock
///   tells so, and the key goes to the overflow budget (below). A key longer than
///   [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) is kept as a digest of its bytes, 39 bytes whatever its
///   length (as is a key that begins as a digest does, `sha256:`).
/// - Keys are hashed with per-store random seeds, so a client cannot choose keys that collide.
/// - Memory is bounded: a key whose theoretical arrival times have all passed is idle, in
///   exactly the state of a key never seen, and is dropped when its shard grows. No background
///   task is needed.
/// - At most `max_keys` keys are tracked (default 1 000 000), as a share of the cap per shard of
///   the map. Keys fall into shards at random, so the first shard fills before the whole map holds
///   `max_keys`: with 1 000 000 at about 99 % of it on a machine of a few cores (16 shards) and
///   95 % on one of 32 or more (256 shards); with a small cap sooner (about 82 % of 1 000 keys,
///   in 8 shards). A new key whose shard is full sweeps the shard for idle keys if it has not
///   swept in the last 100 ms, so that a flood cannot make every new key scan it. If the sweep
///   frees room, the key is tracked; otherwise, and until the shard's next sweep, keys not yet
///   tracked share one overflow budget per policy: a client rotating through fresh keys gets no
///   more than one key's quota, and memory stays bounded. Keys that go idle between sweeps make
///   room at the next one, not at once.
///
/// Clones share the same map and the same policies. Registering a policy name twice with
/// different quotas is an error.
///
/// ```
/// use std::time::Duration;
/// use tower_ratelimit::{ManualClock, MemoryStore, Policy, Quota, Store};
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::builder()
///     .clock(clock.clone())
///     .max_keys(10_000)
///     .build()?;
/// let login = store.register(&[Policy::new("login", Quota::per_second(1))])?;
///
/// assert!(store.check_now(&login, b"alice", 1).is_allowed());
/// assert!(!store.check_now(&login, b"alice", 1).is_allowed());
/// clock.advance(Duration::from_secs(1));
/// assert!(store.check_now(&login, b"alice", 1).is_allowed());
///
/// let other = store.register(&[Policy::new("login", Quota::per_second(5))]);
/// assert!(other.is_err(), "one name, one quota");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MemoryStore<C = MonotonicClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    keys: Sharded<Slots>,
    clock: C,
    /// Holds the one key shared by every key that arrives while its shard is full.
    overflow: Shard<Slots>,
    /// [`OVERFLOW_KEY`] in the form the tables look keys up in: hashed once.
    overflow_key: Key<'static>,
    /// The log line of a key that went to the overflow budget.
    overflow_log: Throttle,
    /// The setting that raises `max_keys`, as that line names it.
    cap_setting: &'static str,
    policies: Registry,
    /// The `ratelimit_memory_keys` gauge, moved by as many keys as `keys` gains or drops;
    /// registered with the first stack or the first key (a stack registered on another store
    /// may be checked here), so that a store no layer uses (the one a layer builder starts
    /// with) adds no series.
    #[cfg(feature = "metrics")]
    keys_gauge: std::sync::OnceLock<metrics::Gauge>,
}

/// A tracked key's state under each policy that has checked it: the first inline, where a
/// one-policy check finds it with one comparison, the others boxed.
///
/// A key with one state is decided with a compare-and-swap on it. Once a key has more, every
/// check of it takes the key's own lock (in [`More`]) and decides with plain loads and stores:
/// a stack reads and writes its states as one, and no compare-and-swap can slip in between.
struct Slots {
    first: Slot,
    more: Option<Box<More>>,
}

/// The states of a key beyond its first, and the lock of a key that has them: one allocation
/// for a key of two policies.
struct More {
    lock: Mutex<()>,
    slots: SmallVec<[Slot; 1]>,
}

/// The theoretical arrival time of one key under one policy.
struct Slot {
    policy: u32,
    tat: AtomicU64,
}

/// The policy id of a slot that holds nothing yet.
const NO_POLICY: u32 = u32::MAX;

impl Default for Slots {
    fn default() -> Self {
        Slots {
            first: Slot {
                policy: NO_POLICY,
                tat: AtomicU64::new(0),
            },
            more: None,
        }
    }
}

impl Slots {
    #[inline]
    fn get(&self, policy: u32) -> Option<&AtomicU64> {
        if self.first.policy == policy {
            return Some(&self.first.tat);
        }
        self.more
            .as_deref()?
            .slots
            .iter()
            .find(|slot| slot.policy == policy)
            .map(|slot| &slot.tat)
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        std::iter::once(&self.first)
            .filter(|slot| slot.policy != NO_POLICY)
            .chain(self.more.iter().flat_map(|more| more.slots.iter()))
    }

    /// The lock of a key with several states, taken.
    fn lock(&self) -> Option<MutexGuard<'_, ()>> {
        let more = self.more.as_deref()?;
        // Nothing panics while holding the lock.
        Some(more.lock.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds a state for `policy`, at a full burst.
    fn add(&mut self, policy: u32) {
        let slot = Slot {
            policy,
            tat: AtomicU64::new(0),
        };
        if self.first.policy == NO_POLICY {
            self.first = slot;
        } else {
            self.more
                .get_or_insert_with(|| {
                    Box::new(More {
                        lock: Mutex::new(()),
                        slots: SmallVec::new(),
                    })
                })
                .slots
                .push(slot);
        }
    }
}

impl Value for Slots {
    /// Every state of the key is back to a full burst.
    fn idle(&self, now: u64) -> bool {
        self.iter()
            .all(|slot| slot.tat.load(Ordering::Acquire) <= now)
    }
}

/// A stack registered with a [`MemoryStore`]: the policies' ids and quotas.
///
/// It belongs to that store and its clones. Used on another store, its policies count there
/// apart from that store's own, even one of the same name: register the stack with the store
/// that checks it.
#[derive(Clone, Debug)]
pub struct MemoryStack {
    ids: SmallVec<[u32; 2]>,
    cells: SmallVec<[Cell; 2]>,
    /// The id and quota of a one-policy stack, the common case, read without a look at the
    /// stack's length.
    one: Option<(u32, Cell)>,
}

impl MemoryStore {
    /// A store on the monotonic clock with the default cap of 1 000 000 keys.
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::new();
    /// assert!(store.is_empty());
    /// assert_eq!(store.max_keys(), 1_000_000);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        MemoryStore::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to choose the clock and the cap; [`MemoryStore`] shows a store on a
    /// [`ManualClock`](crate::ManualClock).
    ///
    /// ```
    /// let store = tower_ratelimit::MemoryStore::builder().max_keys(1_000).build()?;
    /// assert_eq!(store.max_keys(), 1_000);
    /// assert!(store.is_empty());
    /// # Ok::<(), tower_ratelimit::ConfigError>(())
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: MonotonicClock::new(),
            max_keys: DEFAULT_MAX_KEYS,
            cap_setting: "max_keys",
            #[cfg(feature = "metrics")]
            counted: true,
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
            .field("len", &self.len())
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

impl<C> MemoryStore<C> {
    /// How many keys are tracked now, idle ones not yet dropped included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.keys.len()
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store tracks at once: the cap it was built with (default
    /// 1 000 000), shared out among the shards of its map.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.inner.keys.cap()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// Takes `cost` cells for `key` from `stack`, answering at once: [`Store::check`] without
    /// the future.
    ///
    /// A cost above the burst of an enforced policy is denied with a wait of `u64::MAX`
    /// nanoseconds: it can never conform, as that policy's
    /// [`Decision::never_conforms`](crate::Decision::never_conforms) tells. A cost of zero
    /// is a [`peek_now`](Self::peek_now): it takes nothing and tracks no key.
    #[inline]
    pub fn check_now(&self, stack: &MemoryStack, key: &[u8], cost: u32) -> Decisions {
        with_kept(key, |key| self.check_kept(stack, key, cost))
    }

    /// [`check_now`](Self::check_now) of a key in the form the stores keep it in.
    pub(crate) fn check_kept(&self, stack: &MemoryStack, key: &[u8], cost: u32) -> Decisions {
        if cost == 0 {
            // As on Redis: nothing taken is a look.
            return self.peek_kept(stack, key);
        }
        let inner = &*self.inner;
        let key = inner.keys.key(key);
        let now = inner.clock.now_nanos();
        let shard = inner.keys.shard(&key);
        take_shared(shard, &key, stack, now, cost, |refused| {
            if refused {
                inner.decide_overflow(stack, now, cost)
            } else {
                inner.decide_exclusive(shard, &key, stack, now, cost)
            }
        })
    }

    /// What a cost-1 check of `key` would answer now, taking nothing: [`Store::peek`] without
    /// the future.
    ///
    /// A key not tracked reads as a fresh key, or, if its shard is full and a check would find
    /// no room for it, as the overflow budget. At a full shard that a check would sweep, a peek
    /// looks for an idle key to tell which; finding none, it counts as that sweep, so that the
    /// shard is not scanned again, by a peek or a check, for the next 100 ms. Finding one, it
    /// stands for the peeks of the next 100 ms or until the shard is swept: peeks of new keys
    /// scan a full shard once per 100 ms, as checks do, however many there are.
    #[inline]
    #[must_use]
    pub fn peek_now(&self, stack: &MemoryStack, key: &[u8]) -> Decisions {
        with_kept(key, |key| self.peek_kept(stack, key))
    }

    /// [`peek_now`](Self::peek_now) of a key in the form the stores keep it in.
    pub(crate) fn peek_kept(&self, stack: &MemoryStack, key: &[u8]) -> Decisions {
        let inner = &*self.inner;
        let key = inner.keys.key(key);
        let now = inner.clock.now_nanos();
        let mut tats: SmallVec<[u64; 2]> = SmallVec::from_elem(0, stack.ids.len());
        {
            let table = inner.keys.shard(&key).read();
            match table.get(&key) {
                Some(slots) => {
                    read_tats(slots, stack, &mut tats);
                    return gcra::peek_stack(&stack.cells, &tats, now);
                }
                None if table.has_room(now) => return gcra::peek_stack(&stack.cells, &tats, now),
                None => {}
            }
        }
        if let Some(slots) = inner.overflow.read().get(&inner.overflow_key) {
            read_tats(slots, stack, &mut tats);
        }
        gcra::peek_stack(&stack.cells, &tats, now)
    }

    /// Drops every idle key now and returns how many keys remain.
    ///
    /// Never needed for bounded memory (inserts do it as the map grows); useful after a burst of
    /// one-off keys to give memory back at a moment of the caller's choosing.
    pub fn sweep(&self) -> usize {
        let (kept, _dropped) = self.inner.keys.sweep(self.inner.clock.now_nanos());
        #[cfg(feature = "metrics")]
        if let Some(gauge) = self.inner.keys_gauge.get() {
            gauge.decrement(_dropped as f64);
        }
        kept
    }
}

/// The key every key shares while its shard is full; it lives in a table of its own, so it
/// cannot meet a real key.
const OVERFLOW_KEY: &[u8] = b"";

fn read_tats(slots: &Slots, stack: &MemoryStack, tats: &mut [u64]) {
    // A stack's states as one: not halfway through another check's writes.
    let _key = slots.lock();
    for (tat, &id) in tats.iter_mut().zip(&stack.ids) {
        *tat = slots.get(id).map_or(0, |t| t.load(Ordering::Acquire));
    }
}

impl<C: Clock> Store for MemoryStore<C> {
    type Stack = MemoryStack;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Decisions, Self::Error>>;

    fn register(&self, policies: &[Policy]) -> Result<MemoryStack, ConfigError> {
        #[cfg(feature = "metrics")]
        self.inner
            .keys_gauge
            .get_or_init(crate::telemetry::memory_keys);
        let ids = self.inner.policies.register(policies)?;
        let cells: SmallVec<[Cell; 2]> = policies
            .iter()
            .map(|policy| Cell {
                quota: *policy.quota(),
                shadow: policy.is_shadow(),
            })
            .collect();
        let one = match (&ids[..], &cells[..]) {
            ([id], [cell]) => Some((*id, *cell)),
            _ => None,
        };
        Ok(MemoryStack { ids, cells, one })
    }

    #[inline]
    fn check(&self, stack: &MemoryStack, key: &[u8], cost: u32) -> Self::Future {
        ready(Ok(self.check_now(stack, key, cost)))
    }

    fn peek(&self, stack: &MemoryStack, key: &[u8]) -> Self::Future {
        ready(Ok(self.peek_now(stack, key)))
    }
}

/// Decides a check of a key `shard` already tracks, with a state for every policy of the stack,
/// under this thread's read lock; `otherwise(refused)` once that lock is let go if it cannot,
/// where `refused` says that the key is new and the shard, full, takes no new key now (as its
/// exclusive lock would find: nothing under the read lock changes that).
///
/// The decision of the common case is returned as it is, not wrapped in an `Option` that the
/// caller unwraps: that moved it twice more.
#[inline(always)]
fn take_shared(
    shard: &Shard<Slots>,
    key: &Key<'_>,
    stack: &MemoryStack,
    now: u64,
    cost: u32,
    otherwise: impl FnOnce(bool) -> Decisions,
) -> Decisions {
    let refused = {
        let table = shard.read();
        let Some(slots) = table.get(key) else {
            let refused = table.refuses_new_key(now);
            drop(table);
            return otherwise(refused);
        };
        // As under the exclusive lock: a sweep that ran after `now` was read may have dropped
        // the key, idle then, and a check that took nothing tracked it again in the state of a
        // key never seen; decided at `now`, this check would get back the cells spent before
        // the sweep.
        let now = now.max(table.swept_at());
        match (&stack.one, &slots.more) {
            // One policy on a key with one state: a compare-and-swap.
            (Some((id, cell)), None) if slots.first.policy == *id => {
                return take(&slots.first.tat, cell, now, cost);
            }
            (_, Some(_)) => {
                if let Some(decisions) = decide_key_locked(slots, stack, now, cost) {
                    return decisions;
                }
            }
            _ => {}
        }
        false
    };
    otherwise(refused)
}

/// Decides a check of a key with several states under the key's lock; `None` if a policy of
/// the stack has no state yet.
#[inline(never)]
fn decide_key_locked(slots: &Slots, stack: &MemoryStack, now: u64, cost: u32) -> Option<Decisions> {
    let _key = slots.lock();
    let mut tats: SmallVec<[u64; 2]> = SmallVec::with_capacity(stack.ids.len());
    for &id in &stack.ids {
        tats.push(slots.get(id)?.load(Ordering::Acquire));
    }
    Some(decide_tats(slots, stack, tats, now, cost))
}

impl<C> Inner<C> {
    /// Decides what [`take_shared`] does not: under the exclusive lock of the key's shard, or,
    /// if the key is new and its shard has no room, as the overflow key.
    #[inline(never)]
    fn decide_exclusive(
        &self,
        shard: &Shard<Slots>,
        key: &Key<'_>,
        stack: &MemoryStack,
        now: u64,
        cost: u32,
    ) -> Decisions {
        match self.decide_locked(shard, key, stack, now, cost) {
            Some(decisions) => decisions,
            None => self.decide_overflow(stack, now, cost),
        }
    }

    /// Decides a check of a new key that its shard has no room for, as the overflow key.
    #[inline(never)]
    fn decide_overflow(&self, stack: &MemoryStack, now: u64, cost: u32) -> Decisions {
        // On the store's time, read once for the check: a flood of new keys at a full store
        // comes here on every request, and a second clock read was most of its extra cost.
        if let Some(suppressed) = self.overflow_log.admit_at(now) {
            tracing::warn!(
                max_keys = self.keys.cap(),
                new_keys_not_logged = suppressed,
                "rate limit store is full of keys that were not idle at its last sweep: new keys \
                 share one overflow budget per policy until a sweep (at most one per 100 ms) \
                 frees room, so new clients may be limited on their first request; raise {} if \
                 these are real clients",
                self.cap_setting
            );
        }
        let key = &self.overflow_key;
        take_shared(&self.overflow, key, stack, now, cost, |_| {
            self.decide_locked(&self.overflow, key, stack, now, cost)
                .expect("the overflow table has room for its one key")
        })
    }

    /// Decides a check in `shard` under its exclusive lock; `None` if the key is new and the
    /// shard has no room for it.
    ///
    /// A sweep that ran while this check waited for the lock may have dropped the key as idle
    /// at a later time than `now`: the check is decided no earlier than the shard's last
    /// sweep, a time at which the key, inserted afresh, was idle. Decided at `now`, it would
    /// get back the cells it had spent between `now` and the sweep.
    fn decide_locked(
        &self,
        shard: &Shard<Slots>,
        key: &Key<'_>,
        stack: &MemoryStack,
        now: u64,
        cost: u32,
    ) -> Option<Decisions> {
        let mut table = shard.write();
        let now = now.max(table.swept_at());
        #[cfg(feature = "metrics")]
        let before = table.len();
        let decisions = table
            .get_or_insert(key, now, self.keys.hasher(), Slots::default)
            .map(|slots| decide_stack(slots, stack, now, cost));
        #[cfg(feature = "metrics")]
        self.count_keys(shard, before, table.len());
        decisions
    }

    /// Moves the key gauge by what an insert into `shard` (and the sweep it may have run)
    /// changed; the overflow key is not a tracked key.
    #[cfg(feature = "metrics")]
    #[inline]
    fn count_keys(&self, shard: &Shard<Slots>, before: usize, after: usize) {
        if before != after && !std::ptr::eq(shard, &self.overflow) {
            let gauge = self.keys_gauge.get_or_init(crate::telemetry::memory_keys);
            gauge.increment(after as f64 - before as f64);
        }
    }
}

/// A dropped store's keys leave the gauge.
#[cfg(feature = "metrics")]
impl<C> Drop for Inner<C> {
    fn drop(&mut self) {
        if let Some(gauge) = self.keys_gauge.get() {
            gauge.decrement(self.keys.len() as f64);
        }
    }
}

/// Decides a stack for one key while holding its shard exclusively, adding the states it lacks.
fn decide_stack(slots: &mut Slots, stack: &MemoryStack, now: u64, cost: u32) -> Decisions {
    // A key just inserted, for one policy: the compare-and-swap of a known key decides it, as
    // it will decide every later check of it.
    if let (Some((id, cell)), NO_POLICY, None) = (&stack.one, slots.first.policy, &slots.more) {
        slots.add(*id);
        return take(&slots.first.tat, cell, now, cost);
    }
    let mut tats: SmallVec<[u64; 2]> = SmallVec::with_capacity(stack.ids.len());
    for &id in &stack.ids {
        let tat = match slots.get(id) {
            Some(tat) => tat.load(Ordering::Acquire),
            None => {
                slots.add(id);
                0
            }
        };
        tats.push(tat);
    }
    decide_tats(slots, stack, tats, now, cost)
}

/// Decides a stack on the states `tats` read from `slots` and writes the new ones back; the
/// caller makes sure that no other check of the key runs meanwhile, so the states are read,
/// decided together and written as one.
fn decide_tats(
    slots: &Slots,
    stack: &MemoryStack,
    mut tats: SmallVec<[u64; 2]>,
    now: u64,
    cost: u32,
) -> Decisions {
    let decisions = gcra::check_stack(&stack.cells, &mut tats, now, cost);
    for (&id, &tat) in stack.ids.iter().zip(&tats) {
        if let Some(slot) = slots.get(id) {
            slot.store(tat, Ordering::Release);
        }
    }
    decisions
}

/// Runs the GCRA of one policy on its atomic state: a denial only reads; a conforming check
/// swaps the new TAT in, retrying if another thread got there first.
#[inline(always)]
fn take(state: &AtomicU64, cell: &Cell, now: u64, cost: u32) -> Decisions {
    let quota = &cell.quota;
    if cost > quota.burst() {
        let mut tats = [state.load(Ordering::Acquire)];
        return gcra::check_stack(std::slice::from_ref(cell), &mut tats, now, cost);
    }
    let mut tat = state.load(Ordering::Acquire);
    loop {
        // Nothing but the test between the load and the swap: the shorter that window, the
        // rarer a retry when threads share a key. The decision is built after.
        let Some(next) = gcra::conforming_tat(quota, tat, now, cost) else {
            return Decisions::one_cell(gcra::denied(quota, tat, now, cost), cell.shadow);
        };
        match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Decisions::one_cell(gcra::allowed(quota, next, now), cell.shadow),
            Err(current) => tat = current,
        }
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
/// assert_eq!(store.max_keys(), 50_000);
/// # Ok::<(), tower_ratelimit::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct MemoryStoreBuilder<C = MonotonicClock> {
    clock: C,
    max_keys: usize,
    /// The setting that raises `max_keys`, as the log line of a full store names it.
    cap_setting: &'static str,
    /// Whether the store's keys count in the `ratelimit_memory_keys` gauge.
    #[cfg(feature = "metrics")]
    counted: bool,
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// The clock to read the time from (default: [`MonotonicClock`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_ratelimit::{ManualClock, MemoryStore, Policy, Quota, Store};
    ///
    /// let clock = ManualClock::new();
    /// let store = MemoryStore::builder().clock(clock.clone()).build()?;
    /// let api = store.register(&[Policy::new("api", Quota::per_minute(1))])?;
    /// assert!(store.check_now(&api, b"alice", 1).is_allowed());
    /// assert!(!store.check_now(&api, b"alice", 1).is_allowed());
    /// // The cell comes back when this clock says a minute has passed, and not before.
    /// clock.advance(Duration::from_secs(59));
    /// assert!(!store.check_now(&api, b"alice", 1).is_allowed());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(store.check_now(&api, b"alice", 1).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryStoreBuilder<C2> {
        MemoryStoreBuilder {
            clock,
            max_keys: self.max_keys,
            cap_setting: self.cap_setting,
            #[cfg(feature = "metrics")]
            counted: self.counted,
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

    /// Names `setting` as the one that raises the cap in the log line of a full store: for the
    /// Redis store's local fallback, whose cap is another store's setting.
    #[cfg(feature = "redis")]
    pub(crate) fn cap_setting(mut self, setting: &'static str) -> Self {
        self.cap_setting = setting;
        self
    }

    /// Keeps the store's keys out of the `ratelimit_memory_keys` gauge: for the Redis store's
    /// local fallback, which is no store of the application's.
    #[cfg(all(feature = "metrics", feature = "redis"))]
    pub(crate) fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }

    /// The store, or an error if `max_keys` is zero.
    pub fn build(self) -> Result<MemoryStore<C>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "MemoryStore max_keys is 0; it must track at least one key",
            ));
        }
        let keys = Sharded::new(self.max_keys);
        let overflow_key = keys.key(OVERFLOW_KEY);
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                keys,
                clock: self.clock,
                // One key, which is never dropped while in use: a shard that is never full.
                overflow: Shard::new(usize::MAX),
                overflow_key,
                overflow_log: Throttle::new(std::time::Duration::from_secs(10)),
                cap_setting: self.cap_setting,
                policies: Registry::default(),
                #[cfg(feature = "metrics")]
                keys_gauge: if self.counted {
                    std::sync::OnceLock::new()
                } else {
                    std::sync::OnceLock::from(metrics::Gauge::noop())
                },
            }),
        })
    }
}
