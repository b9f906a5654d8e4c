//! Coalescing: while a script call is in flight on a lane, the checks that arrive wait in the
//! lane's queue, and the next call carries them all (up to the batch cap), decided in arrival
//! order inside one script run.
//!
//! A lane is a share of the keys of a single server (`calls_in_flight` lanes, by hash slot), or
//! one hash slot of a Redis Cluster (a script call may only touch keys of one slot). A key
//! always takes the same lane, so its checks are decided in the order they arrive, however many
//! lanes have a call in flight. No timer is involved: a check that finds its lane idle is sent
//! at once, alone, by its own future; batches only form behind a call already in flight, and a
//! task sends them until the lane is idle again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::oneshot;

use super::check::Ask;
use super::store::Inner;
use super::RedisStoreError;
use crate::Decisions;

/// How a check's answer comes back from the call that carried it.
pub(super) type Answer = oneshot::Receiver<Result<Decisions, RedisStoreError>>;

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
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Whether a call is in flight on the lane: a check's own, or the sender task's, which
    /// takes the queue each time its call returns.
    running: bool,
}

/// A check waiting for its call.
struct Waiting {
    ask: Ask,
    answer: oneshot::Sender<Result<Decisions, RedisStoreError>>,
}

impl Lanes {
    /// `count` lanes (at least one, at most one per hash slot) carrying at most `max_batch`
    /// checks per call: a key of hash slot `slot` takes lane `slot % count`.
    pub(super) fn new(max_batch: usize, count: usize) -> Self {
        let lanes = match count.clamp(1, SLOTS) {
            1 => LaneSet::One(Lane::default()),
            count => LaneSet::BySlot((0..count).map(|_| OnceLock::new()).collect()),
        };
        Lanes { max_batch, lanes }
    }

    pub(super) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// How many lanes there are.
    pub(super) fn count(&self) -> usize {
        match &self.lanes {
            LaneSet::One(_) => 1,
            LaneSet::BySlot(lanes) => lanes.len(),
        }
    }

    fn lane(&self, slot: usize) -> &Lane {
        match &self.lanes {
            LaneSet::One(lane) => lane,
            LaneSet::BySlot(lanes) => lanes[slot % lanes.len()].get_or_init(Box::default),
        }
    }

    /// The lane of a check's keys: all of them share the hash tag, so the first one tells.
    fn slot_of(&self, ask: &Ask) -> usize {
        match &self.lanes {
            LaneSet::One(_) => 0,
            LaneSet::BySlot(_) => ask.keys.iter().next().map_or(0, slot),
        }
    }
}

/// Where a check goes.
pub(super) enum Submitted {
    /// Queued behind the call in flight; the answer comes from a later call.
    Queued(Answer),
    /// Sent alone by the check's own future: its lane was idle (`Some(slot)`: the lane counts
    /// the call as its call in flight until [`release`]), or there are no lanes, or no Tokio
    /// runtime here to run a sender on (`None`).
    Alone(Ask, Option<usize>),
}

/// Sends `ask` alone if its lane is idle; else queues it, and starts the lane's sender if
/// checks wait with no call in flight.
pub(super) fn submit(inner: &Arc<Inner>, ask: Ask) -> Submitted {
    let Some(lanes) = &inner.lanes else {
        return Submitted::Alone(ask, None);
    };
    let slot = lanes.slot_of(&ask);
    let mut queue = lanes.lane(slot).queue();
    if !queue.running {
        if queue.waiting.is_empty() {
            queue.running = true;
            return Submitted::Alone(ask, Some(slot));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Submitted::Alone(ask, None);
        };
        queue.running = true;
        runtime.spawn(send(Arc::clone(inner), slot));
    }
    let (sender, answer) = oneshot::channel();
    queue.waiting.push_back(Waiting {
        ask,
        answer: sender,
    });
    Submitted::Queued(answer)
}

/// The lane's call sent alone has ended, answered or dropped: a sender takes the checks that
/// queued meanwhile, or the lane is idle again.
pub(super) fn release(inner: &Arc<Inner>, slot: usize) {
    let Some(lanes) = &inner.lanes else {
        return;
    };
    let mut queue = lanes.lane(slot).queue();
    if !queue.waiting.is_empty() {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(send(Arc::clone(inner), slot));
            return;
        }
    }
    // With no runtime here, the next check to arrive starts a sender for what waits.
    queue.running = false;
}

/// A lane's sender: one call at a time, each carrying what queued while the last was in flight;
/// ends when its lane is empty.
async fn send(inner: Arc<Inner>, slot: usize) {
    let Some(lanes) = &inner.lanes else {
        return;
    };
    let lane = lanes.lane(slot);
    // Should the task be dropped mid-call (its runtime shutting down), the next check restarts
    // the lane instead of queueing behind a sender that is gone.
    let mut stopped = Stopped(Some(lane));
    let mut asks = Vec::new();
    let mut answers = Vec::new();
    loop {
        {
            let mut queue = lane.queue();
            if queue.waiting.is_empty() {
                queue.running = false;
                stopped.0 = None;
                return;
            }
            let take = queue.waiting.len().min(lanes.max_batch);
            for waiting in queue.waiting.drain(..take) {
                asks.push(waiting.ask);
                answers.push(waiting.answer);
            }
        }
        let mut answers = answers.drain(..);
        inner
            .call(&asks, |outcome| {
                if let Some(answer) = answers.next() {
                    // The check may have been dropped meanwhile; its answer goes nowhere.
                    let _ = answer.send(outcome);
                }
            })
            .await;
        drop(answers);
        asks.clear();
    }
}

/// Marks its lane idle if the sender ends before it has emptied the lane.
struct Stopped<'a>(Option<&'a Lane>);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some(lane) = self.0 {
            lane.queue().running = false;
        }
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16 384.
fn slot(key: &[u8]) -> usize {
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
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

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
    }
}
