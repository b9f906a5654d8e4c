//! Coalescing: while a script call is in flight on a lane, the checks that arrive wait in the
//! lane's queue, and the next call carries them all (up to the batch cap), decided in arrival
//! order inside one script run.
//!
//! A lane is a share of the keys of a single server (`calls_in_flight` lanes, by hash slot), or
//! the keys of one primary of a Redis Cluster (by the store's map of the cluster's slots). A key
//! always takes the same lane (on a cluster, until its slot moves to another primary), so its
//! checks are decided in the order they arrive, however many lanes have a call in flight. No
//! timer is involved: a check that finds its lane idle is sent at once, alone, by its own future
//! (its call run on the store's runtime when the check is polled elsewhere); batches only form
//! behind a call already in flight, and a task on the store's runtime sends them until the lane
//! is idle again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::check::Ask;
use super::store::Inner;
use super::RedisStoreError;
use crate::Decisions;

/// How a queued check's answer comes back.
pub(super) type Answer = oneshot::Receiver<Outcome>;

/// What comes back to a queued check.
pub(super) enum Outcome {
    /// The answer of the call that carried it.
    Decided(Result<Decisions, RedisStoreError>),
    /// The check itself, unsent: its lane's sender went with its runtime before carrying it.
    /// The check's future submits it again, from the runtime polling it.
    Returned(Ask, Arc<Inner>),
}

/// The number of hash slots of a Redis Cluster.
pub(super) const SLOTS: usize = 16_384;

/// The store's lanes: one or a few for a single server, or one per cluster slot, each made when
/// first used.
pub(super) struct Lanes {
    max_batch: usize,
    lanes: LaneSet,
}

enum LaneSet {
    One(Lane),
    /// Lane `slot % len` for a key of hash slot `slot`.
    BySlot(Box<[OnceLock<Box<Lane>>]>),
    /// Redis Cluster: lane `node % len` for a key of a slot that primary `node` serves, as the
    /// map says, so that a call carries checks of every slot of one primary.
    ByNode(Arc<SlotMap>, Box<[OnceLock<Box<Lane>>]>),
}

/// The lanes of a Redis Cluster store: one per primary up to Redis's advised largest cluster
/// (1 000 nodes), each made when first used. Primaries that share a lane past that send calls
/// that a primary refuses, and go again by slot.
pub(super) const NODE_LANES: usize = 1024;

/// Which primary serves each hash slot, by a number of the store's own for each primary: what
/// the cluster answered to `CLUSTER SLOTS`, until it is asked again.
pub(super) struct SlotMap {
    /// Each slot's primary; read by every check without a lock (a slot read while the map is
    /// being written takes its old primary or its new one, either a lane).
    nodes: Box<[AtomicU16]>,
    /// The address of each primary number given so far: a primary keeps its number, and its
    /// keys their lane, when another one's slots change.
    addresses: Mutex<Vec<String>>,
    /// When the cluster was last asked, in ms from `made`.
    asked_at: AtomicU64,
    made: Instant,
}

/// How often at most the store asks a cluster for its map: while a slot moves, the calls that
/// reach its keys keep being refused, and the map changes only once the move is over.
const ASK_AGAIN_AFTER_MS: u64 = 100;

impl SlotMap {
    /// Every slot on one primary, until [`set`](Self::set).
    pub(super) fn new() -> Self {
        SlotMap {
            nodes: (0..SLOTS).map(|_| AtomicU16::new(0)).collect(),
            addresses: Mutex::new(Vec::new()),
            asked_at: AtomicU64::new(0),
            made: Instant::now(),
        }
    }

    /// Whether to ask the cluster for its map now: not within 100 ms of the last time.
    pub(super) fn due(&self) -> bool {
        let now = self.made.elapsed().as_millis() as u64 + ASK_AGAIN_AFTER_MS;
        let last = self.asked_at.load(Ordering::Relaxed);
        now >= last + ASK_AGAIN_AFTER_MS
            && self
                .asked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub(super) fn node(&self, slot: usize) -> usize {
        usize::from(self.nodes[slot % SLOTS].load(Ordering::Relaxed))
    }

    /// Takes the cluster's answer: the first and last slot of each range with the address of
    /// the primary serving it. A primary keeps the number it was first given (the answer
    /// lists ranges by slot, so its order changes as slots move), a new one takes the next;
    /// slots in no range keep the number they had.
    pub(super) fn set(&self, ranges: &[(u16, u16, String)]) {
        let mut addresses = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Numbers are never taken back, so a cluster whose primaries keep being replaced
        // (each failover promotes a new address) would run out of them one day: then, before
        // this answer could pass the last, the numbering starts again from it.
        if addresses.len() + ranges.len() > usize::from(u16::MAX) {
            addresses.clear();
        }
        for (first, last, address) in ranges {
            let node = match addresses.iter().position(|known| known == address) {
                Some(node) => node,
                None => {
                    addresses.push(address.clone());
                    addresses.len() - 1
                }
            };
            let range = usize::from(*first)..=usize::from(*last).min(SLOTS - 1);
            for slot in self.nodes.get(range).unwrap_or_default() {
                slot.store(node as u16, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Default)]
struct Lane {
    queue: Mutex<Queue>,
}

impl Lane {
    /// The lane's queue, locked. Nothing panics while holding it, so a poisoned lock still
    /// guards a consistent queue.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the lane idle, with no call in flight and none coming (the sender's runtime is
    /// shutting down), and returns the checks waiting to their futures, which submit them again
    /// from wherever they are polled. A check whose future is gone is dropped with its channel:
    /// a probe among those hands over to the next check.
    fn idle(&self, inner: &Arc<Inner>) {
        let waiting = {
            let mut queue = self.queue();
            queue.running = false;
            std::mem::take(&mut queue.waiting)
        };
        for Waiting { ask, answer, .. } in waiting {
            let _ = answer.send(Outcome::Returned(ask, Arc::clone(inner)));
        }
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Whether a call is in flight on the lane: a check's own, or the sender task's, which
    /// takes the queue each time its call returns. Never false with checks waiting: whatever
    /// ends the lane's call hands those to a sender, or back to their futures.
    running: bool,
}

/// A check waiting for its call.
struct Waiting {
    ask: Ask,
    answer: oneshot::Sender<Outcome>,
    /// When it joined the queue.
    #[cfg(feature = "metrics")]
    queued_at: Instant,
}

impl Lanes {
    /// `count` lanes (at least one, at most one per hash slot) carrying at most `max_batch`
    /// checks per call: a key of hash slot `slot` takes lane `slot % count`.
    pub(super) fn new(max_batch: usize, count: usize) -> Self {
        let lanes = match count.clamp(1, SLOTS) {
            1 => LaneSet::One(Lane::default()),
            count => LaneSet::BySlot(unmade(count)),
        };
        Lanes { max_batch, lanes }
    }

    /// The lanes of a Redis Cluster, one for the slots of each primary, as `map` says.
    pub(super) fn by_node(max_batch: usize, map: Arc<SlotMap>) -> Self {
        Lanes {
            max_batch,
            lanes: LaneSet::ByNode(map, unmade(NODE_LANES)),
        }
    }

    /// The map of a Redis Cluster's slots, by which its lanes are chosen.
    pub(super) fn slot_map(&self) -> Option<&SlotMap> {
        match &self.lanes {
            LaneSet::ByNode(map, _) => Some(map),
            LaneSet::One(_) | LaneSet::BySlot(_) => None,
        }
    }

    pub(super) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// How many lanes there are.
    pub(super) fn count(&self) -> usize {
        match &self.lanes {
            LaneSet::One(_) => 1,
            LaneSet::BySlot(lanes) | LaneSet::ByNode(_, lanes) => lanes.len(),
        }
    }

    fn lane(&self, slot: usize) -> &Lane {
        match &self.lanes {
            LaneSet::One(lane) => lane,
            LaneSet::BySlot(lanes) | LaneSet::ByNode(_, lanes) => {
                lanes[slot % lanes.len()].get_or_init(Box::default)
            }
        }
    }

    /// The lane of a check, before the modulo: the hash slot of the Redis key it is sent with,
    /// or on a Redis Cluster the primary serving that slot.
    fn slot_of(&self, ask: &Ask) -> usize {
        match &self.lanes {
            LaneSet::One(_) => 0,
            LaneSet::BySlot(_) => ask.slot().unwrap_or(0),
            LaneSet::ByNode(map, _) => map.node(ask.slot().unwrap_or(0)),
        }
    }
}

fn unmade(count: usize) -> Box<[OnceLock<Box<Lane>>]> {
    (0..count).map(|_| OnceLock::new()).collect()
}

/// Where a check goes.
pub(super) enum Submitted {
    /// Queued behind the call in flight; the answer comes from a later call.
    Queued(Answer),
    /// Sent alone by the check's own future: its lane was idle (with the lane's [`Claim`]),
    /// or there are no lanes (no claim).
    Alone(Ask, Option<Claim>),
}

/// A lane's call in flight, held by the check sent alone with it: however that check's future
/// ends (answered, dropped, or dropped before it was ever polled), the claim's drop hands the
/// checks that queued meanwhile to a sender, or marks the lane idle and returns them.
pub(super) struct Claim {
    inner: Arc<Inner>,
    slot: usize,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let Some(lanes) = &self.inner.lanes else {
            return;
        };
        let lane = lanes.lane(self.slot);
        {
            let mut queue = lane.queue();
            if queue.waiting.is_empty() {
                queue.running = false;
                return;
            }
        }
        spawn_sender(&self.inner, self.slot);
    }
}

/// Sends `ask` alone if its lane is idle; else queues it behind the call in flight, whose end
/// hands it to the lane's sender.
pub(super) fn submit(inner: &Arc<Inner>, ask: Ask) -> Submitted {
    let Some(lanes) = &inner.lanes else {
        return Submitted::Alone(ask, None);
    };
    let slot = lanes.slot_of(&ask);
    let mut queue = lanes.lane(slot).queue();
    if !queue.running {
        queue.running = true;
        let claim = Claim {
            inner: Arc::clone(inner),
            slot,
        };
        return Submitted::Alone(ask, Some(claim));
    }
    let (sender, answer) = oneshot::channel();
    queue.waiting.push_back(Waiting {
        ask,
        answer: sender,
        #[cfg(feature = "metrics")]
        queued_at: Instant::now(),
    });
    Submitted::Queued(answer)
}

/// Spawns the sender of a lane marked running, outside the lane's lock, on the store's own
/// runtime, which runs its connection and is driven for as long as the store is used (a
/// current-thread runtime of a sync caller is only driven inside its `block_on`): a runtime
/// that is shutting down drops the task at once, and its [`LaneSender`] then marks the lane
/// idle.
fn spawn_sender(inner: &Arc<Inner>, slot: usize) {
    let sender = LaneSender {
        inner: Arc::clone(inner),
        slot,
        running: true,
        asks: Vec::new(),
        answers: VecDeque::new(),
        #[cfg(feature = "metrics")]
        waited: Vec::new(),
    };
    inner.runtime.spawn(send(sender));
}

/// A lane's sender: one call at a time, each carrying what queued while the last was in flight;
/// ends when its lane is empty. `sender` is an argument, not made inside, so that its drop
/// runs however the task ends, even dropped unpolled: no check is left queued behind a sender
/// that is gone, nor carried by a call that is.
async fn send(mut sender: LaneSender) {
    let inner = Arc::clone(&sender.inner);
    let Some(lanes) = &inner.lanes else {
        return;
    };
    let lane = lanes.lane(sender.slot);
    loop {
        let mut skipped = Vec::new();
        let idle = {
            let mut queue = lane.queue();
            // A check whose future is gone (its request cancelled) is not sent: it takes
            // nothing from its budget.
            queue.waiting.retain(|waiting| !waiting.answer.is_closed());
            // Checks queued before a back-off began skip Redis as the checks made during it
            // do: only the probe goes. The policy answers the others, out of the lock.
            if inner.health.backing_off() {
                let mut kept = VecDeque::with_capacity(queue.waiting.len());
                for mut waiting in queue.waiting.drain(..) {
                    match Inner::still_to_redis(&inner, &mut waiting.ask) {
                        true => kept.push_back(waiting),
                        false => skipped.push(waiting),
                    }
                }
                queue.waiting = kept;
            }
            let idle = queue.waiting.is_empty();
            if idle {
                queue.running = false;
                sender.running = false;
            }
            let take = queue.waiting.len().min(lanes.max_batch);
            #[cfg(feature = "metrics")]
            let left_at = Instant::now();
            for waiting in queue.waiting.drain(..take) {
                #[cfg(feature = "metrics")]
                sender
                    .waited
                    .push(left_at.saturating_duration_since(waiting.queued_at));
                sender.asks.push(waiting.ask);
                sender.answers.push_back(waiting.answer);
            }
            #[cfg(feature = "metrics")]
            sender.waited.extend(
                skipped
                    .iter()
                    .map(|waiting| left_at.saturating_duration_since(waiting.queued_at)),
            );
            idle
        };
        // Recorded out of the lock, which checks joining the queue wait for.
        #[cfg(feature = "metrics")]
        for waited in sender.waited.drain(..) {
            inner.metrics.queue_wait.record(waited);
        }
        for Waiting { ask, answer, .. } in skipped {
            let outcome = inner.ask_by_policy(&ask, RedisStoreError::backing_off());
            let _ = answer.send(Outcome::Decided(outcome));
        }
        if idle {
            return;
        }
        let LaneSender { asks, answers, .. } = &mut sender;
        inner
            .call(asks, |outcome| {
                if let Some(answer) = answers.pop_front() {
                    // The check may have been dropped meanwhile; its answer goes nowhere.
                    let _ = answer.send(Outcome::Decided(outcome));
                }
            })
            .await;
        sender.answers.clear();
        sender.asks.clear();
    }
}

/// A lane's sender's hold on the lane and on the call it has in flight. Dropped before it has
/// emptied the lane (its runtime is shutting down), it answers the checks of that call which
/// are still owed by the failure policy, as a failed call would (they are not sent again:
/// Redis may have run the call), then marks the lane idle and returns the checks waiting to
/// their futures.
struct LaneSender {
    inner: Arc<Inner>,
    slot: usize,
    /// Whether the lane still counts this sender as its call in flight.
    running: bool,
    /// The checks of the call in flight.
    asks: Vec<Ask>,
    /// The answers still owed, in the order of the last `answers.len()` asks.
    answers: VecDeque<oneshot::Sender<Outcome>>,
    /// How long the checks taken from the queue last waited there, to record.
    #[cfg(feature = "metrics")]
    waited: Vec<std::time::Duration>,
}

impl Drop for LaneSender {
    fn drop(&mut self) {
        let answered = self.asks.len() - self.answers.len();
        for (ask, answer) in self.asks[answered..].iter().zip(self.answers.drain(..)) {
            if !answer.is_closed() {
                let outcome = self.inner.ask_by_policy(ask, RedisStoreError::lost());
                let _ = answer.send(Outcome::Decided(outcome));
            }
        }
        if let (true, Some(lanes)) = (self.running, &self.inner.lanes) {
            lanes.lane(self.slot).idle(&self.inner);
        }
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16 384.
pub(super) fn slot(key: &[u8]) -> usize {
    let tag = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    usize::from(crc16_xmodem(tag)) % SLOTS
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// CRC16/XMODEM of each byte value: the remainder of `byte << 8` under the polynomial 0x1021,
/// so that a key takes one lookup per byte.
static CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn primaries_keep_their_numbers_when_the_slots_of_another_move() {
        let map = SlotMap::new();
        map.set(&[
            (0, 5460, "a:1".into()),
            (5461, 10922, "b:1".into()),
            (10923, 16383, "c:1".into()),
        ]);
        assert_eq!((map.node(0), map.node(5461), map.node(10923)), (0, 1, 2));
        // Slot 0 moved to the third primary, which the answer now lists first: the others'
        // slots keep their numbers, and so their keys their lanes.
        map.set(&[
            (0, 0, "c:1".into()),
            (1, 5460, "a:1".into()),
            (5461, 10922, "b:1".into()),
            (10923, 16383, "c:1".into()),
        ]);
        assert_eq!(map.node(0), 2);
        assert_eq!((map.node(1), map.node(5460)), (0, 0));
        assert_eq!((map.node(5461), map.node(10923)), (1, 2));
        // A replica promoted in place of the second takes a new number.
        map.set(&[
            (0, 0, "c:1".into()),
            (1, 5460, "a:1".into()),
            (5461, 10922, "b-replica:1".into()),
            (10923, 16383, "c:1".into()),
        ]);
        assert_eq!((map.node(1), map.node(5461), map.node(16_383)), (0, 3, 2));
    }

    #[test]
    fn a_slot_map_numbers_primaries_by_address_and_is_asked_again_at_most_every_100_ms() {
        let map = SlotMap::new();
        assert_eq!(map.node(16_383), 0);
        map.set(&[
            (0, 5460, "10.0.0.1:6379".into()),
            (5461, 10922, "10.0.0.2:6379".into()),
            (10923, 16383, "10.0.0.1:6379".into()),
        ]);
        assert_eq!((map.node(0), map.node(5460)), (0, 0));
        assert_eq!((map.node(5461), map.node(10922)), (1, 1));
        assert_eq!(map.node(16_383), 0);
        // A slot in no range keeps its number; a range past the last slot stops there, and one
        // wholly past it is left out.
        map.set(&[
            (0, 99, "10.0.0.3:6379".into()),
            (16_000, 20_000, "x:1".into()),
            (17_000, 18_000, "y:1".into()),
        ]);
        assert_eq!((map.node(99), map.node(100), map.node(16_383)), (2, 0, 3));
        assert!(map.due());
        assert!(!map.due());
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        // The published check value of CRC16/XMODEM.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        for key in [
            &b"{ratelimit:alice}:per-second"[..],
            b"{ratelimit:10.0.0.1}:a",
            b"no tag",
            b"{}:empty tag",
            b"{unclosed",
            b"",
        ] {
            let ours = Slot::new(slot(key) as u16);
            assert_eq!(ours, Some(Slot::for_key(key)), "{key:?}");
        }
        // Every byte value, at every place of the running remainder; without `{`, so that no
        // key has a hash tag and each is hashed whole (`{unclosed` above hashes a `{`).
        let every_byte: Vec<u8> = (0..=255)
            .chain((0..=255).rev())
            .filter(|&byte| byte != b'{')
            .collect();
        for end in 0..every_byte.len() {
            let key = &every_byte[..end];
            assert_eq!(Slot::new(slot(key) as u16), Some(Slot::for_key(key)));
        }
    }
}
