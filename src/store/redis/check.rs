//! One check: the deny cache, the route by health, the script call (alone, or with the checks
//! queued behind the call in flight), and the failure policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use redis::Cmd;
use smallvec::SmallVec;
use tokio::time::error::Elapsed;

use super::batch::{self, Submitted};
use super::connection::{Connection, Dest};
use super::health::Route;
use super::script::{self, Reply, MAX_CLOCK_MICROS};
use super::store::{Inner, RedisStack, StackParts};
use super::{FailurePolicy, RedisStoreError, RedisStoreFuture};
use crate::gcra;
use crate::key::with_kept_in_hash_tag;
use crate::log::Chain;
use crate::{Clock, Decisions};

/// In clock mode, the least time a written key lives in Redis: Redis expires keys by its own
/// clock, which a manual clock does not drive.
const CLOCK_MODE_MIN_EXPIRY_MS: u64 = 3_600_000;

/// What one check sends to Redis and needs back.
pub(super) struct Ask {
    /// The Redis key of each policy.
    pub(super) keys: Keys,
    stack: RedisStack,
    /// 0 for a peek.
    cost: u32,
    /// The script's time in µs in clock mode; `None` to read Redis `TIME`.
    now_arg: Option<u64>,
    /// The local time (ns) that corresponds to the script's time.
    base: u64,
    /// Set if this check is the one that tests Redis after a back-off.
    probe: Option<Probe>,
}

impl Ask {
    /// The Redis Cluster hash slot of the check's key; `None` for a stack of no policies.
    pub(super) fn slot(&self) -> Option<usize> {
        self.keys.redis_key().map(batch::slot)
    }
}

/// Asks a Redis Cluster which primary serves each slot, for the store's map; the caller found
/// that the map is [due](batch::SlotMap::due) (at most every 100 ms).
async fn refresh_slot_map(mut connection: Connection, timeout: std::time::Duration) {
    let Some(map) = connection.slot_map().cloned() else {
        return;
    };
    if let Ok(Ok(ranges)) = tokio::time::timeout(timeout, connection.cluster_slots()).await {
        map.set(&ranges);
    }
}

impl Inner {
    pub(super) fn start(
        this: &Arc<Self>,
        stack: &RedisStack,
        key: &[u8],
        cost: u32,
    ) -> RedisStoreFuture {
        with_kept_in_hash_tag(key, |key| Self::start_kept(this, stack, key, cost))
    }

    /// [`start`](Self::start) of a key in the form the stores keep it in.
    fn start_kept(this: &Arc<Self>, stack: &RedisStack, key: &[u8], cost: u32) -> RedisStoreFuture {
        let keys = Keys::new(&this.key_head, key, &stack.parts.suffixes);
        let local_now = this.clock.now_nanos();
        // In clock mode the script gets whole microseconds; the local side uses the same
        // instant so that its answers are the script's.
        let (now_arg, base) = if this.clock_time {
            let micros = local_now / 1000;
            (Some(micros), micros * 1000)
        } else {
            (None, local_now)
        };
        if now_arg.is_some_and(|micros| micros >= MAX_CLOCK_MICROS) {
            // Past what the script's doubles count exactly: its decisions would be wrong.
            return RedisStoreFuture::ready(this.by_policy(
                stack,
                key,
                cost,
                RedisStoreError::clock_too_late(local_now),
            ));
        }
        if let Some(decisions) = this.cached_denial(stack, &keys, cost, base) {
            #[cfg(feature = "metrics")]
            this.metrics.deny_cache_hits.increment(1);
            return RedisStoreFuture::ready(Ok(decisions));
        }
        match this.health.route(local_now) {
            Route::Policy => RedisStoreFuture::ready(this.by_policy(
                stack,
                key,
                cost,
                RedisStoreError::backing_off(),
            )),
            Route::Redis { probe } => {
                let ask = Ask {
                    keys,
                    stack: stack.clone(),
                    cost,
                    now_arg,
                    base,
                    probe: probe.then(|| Probe::new(this)),
                };
                Self::submit(this, ask)
            }
        }
    }

    /// Sends `ask` alone or queues it. The ask and the lane's claim are the future's own from
    /// here: dropped with it, polled or not, they give the lane and the probe back.
    pub(super) fn submit(this: &Arc<Self>, ask: Ask) -> RedisStoreFuture {
        match batch::submit(this, ask) {
            Submitted::Queued(answer) => RedisStoreFuture::queued(answer),
            Submitted::Alone(ask, claim) => {
                RedisStoreFuture::pending(Box::pin(Arc::clone(this).alone(ask, claim)))
            }
        }
    }

    /// The denial Redis would give, if the TATs it last reported for the stack's keys already
    /// deny. Only a stack whose every key is cached is answered here: a policy missing from
    /// the cache may hold cells Redis knows of. Stacks with a shadow policy always go to Redis,
    /// which decides those on their own.
    fn cached_denial(
        &self,
        stack: &RedisStack,
        keys: &Keys,
        cost: u32,
        now: u64,
    ) -> Option<Decisions> {
        let cache = self.deny_cache.as_ref()?;
        if stack.parts.shadow {
            return None;
        }
        let mut tats: SmallVec<[u64; 2]> = SmallVec::with_capacity(keys.len());
        for key in keys.iter() {
            tats.push(cache.get(key)?);
        }
        let decisions = gcra::decide_stack(&stack.parts.cells, &mut tats, now, cost);
        (!decisions.is_allowed()).then_some(decisions)
    }

    /// Whether `ask`, made before a back-off began and not yet sent, still goes to Redis: as a
    /// check made now would, only as the probe (which it may become), or while Redis is not
    /// backed off; else the failure policy answers it.
    pub(super) fn still_to_redis(this: &Arc<Self>, ask: &mut Ask) -> bool {
        if ask.probe.is_some() || !this.health.backing_off() {
            return true;
        }
        match this.health.route(this.clock.now_nanos()) {
            Route::Redis { probe } => {
                if probe {
                    ask.probe = Some(Probe::new(this));
                }
                true
            }
            Route::Policy => false,
        }
    }

    /// One check in its own call: its lane's call in flight, if it holds the lane's claim,
    /// which is released when this future ends or is dropped.
    async fn alone(
        self: Arc<Self>,
        mut ask: Ask,
        _claim: Option<batch::Claim>,
    ) -> Result<Decisions, RedisStoreError> {
        // Made before a back-off began, polled since: it skips Redis like any check now.
        if !Self::still_to_redis(&self, &mut ask) {
            return self.ask_by_policy(&ask, RedisStoreError::backing_off());
        }
        let mut answer = None;
        self.call(std::slice::from_ref(&ask), |outcome| answer = Some(outcome))
            .await;
        answer.unwrap_or_else(|| Err(RedisStoreError::lost()))
    }

    /// One script call deciding `asks` in order; `answer` gets each check's outcome, in order,
    /// from Redis or, when the call fails, from the failure policy.
    ///
    /// On a Redis Cluster, checks of several slots of one primary (by the store's map) go in one
    /// call to that primary, which names its keys in its arguments (a call may declare keys of
    /// one slot only). Refused there (the map is out of date: a slot moved; or a key holds
    /// something else than the store's values, which the script cannot read key by key), the
    /// store asks the cluster for its map again and the checks go again by slot, in runs.
    pub(super) async fn call(
        &self,
        asks: &[Ask],
        mut answer: impl FnMut(Result<Decisions, RedisStoreError>),
    ) {
        let Some(first) = self.across_slots(asks) else {
            return self.call_in_slot(asks, answer).await;
        };
        let answered_before = self.health.answered();
        let outcome = self.send(asks, Some(first)).await;
        if !outcome.as_ref().is_err_and(RedisStoreError::is_refused) {
            return self.answer(asks, outcome, answered_before, answer);
        }
        self.refresh_slot_map().await;
        for run in asks.chunk_by(|a, b| a.slot() == b.slot()) {
            self.call_in_slot(run, &mut answer).await;
        }
    }

    /// On a Redis Cluster whose lanes go by primary, the slot of the first of `asks` when they
    /// are of more than one slot.
    fn across_slots(&self, asks: &[Ask]) -> Option<u16> {
        self.lanes.as_ref()?.slot_map()?;
        let mut slots = asks.iter().filter_map(Ask::slot);
        let first = slots.next()?;
        slots.any(|slot| slot != first).then_some(first as u16)
    }

    /// Asks the cluster which primary serves each slot, for the lanes of later checks (at most
    /// every 100 ms).
    async fn refresh_slot_map(&self) {
        if self.connection.slot_map().is_some_and(|map| map.due()) {
            refresh_slot_map(self.connection.clone(), self.timeout).await;
        }
    }

    /// One script call of checks whose keys share a slot, deciding `asks` in order.
    ///
    /// Redis Cluster refuses a call of several keys of a slot that is moving to another
    /// primary (`TRYAGAIN`, for as long as the move lasts), and serves a call of one key from
    /// the primary that holds it: refused so, the call's checks go again as runs of one key,
    /// one call each, in order. One after another: sent at once, the calls that Redis sends on
    /// to the new primary (`ASK`) were refused there (`MOVED`) until the client gave up.
    async fn call_in_slot(
        &self,
        asks: &[Ask],
        mut answer: impl FnMut(Result<Decisions, RedisStoreError>),
    ) {
        let answered_before = self.health.answered();
        let outcome = self.send(asks, None).await;
        let one_key = |a: &Ask, b: &Ask| a.keys.redis_key() == b.keys.redis_key();
        if outcome.as_ref().is_err_and(RedisStoreError::is_slot_moving)
            && !asks.windows(2).all(|pair| one_key(&pair[0], &pair[1]))
        {
            for run in asks.chunk_by(one_key) {
                let answered_before = self.health.answered();
                let outcome = self.send(run, None).await;
                self.answer(run, outcome, answered_before, &mut answer);
            }
            return;
        }
        self.answer(asks, outcome, answered_before, &mut answer);
    }

    /// The script's values for `asks`: the call's time, then each policy's TAT for each check.
    /// With `node`, the call goes to the primary serving that slot and names its keys in its
    /// arguments.
    async fn send(&self, asks: &[Ask], node: Option<u16>) -> Result<Vec<i64>, RedisStoreError> {
        let sent = std::time::Instant::now();
        // The keys' slot only matters on a cluster, whose answers are followed by primary.
        let slot = match self.connection.slot_map() {
            Some(_) => asks.first().and_then(Ask::slot).unwrap_or(0),
            None => 0,
        };
        let dest = Dest {
            slot,
            primary_of: node,
        };
        let invoke = self.invoke(self.command(asks, node.is_some()), dest, sent);
        // Recorded when the call ends, or when its request goes away with it (a call sent
        // alone is its request's future): a slow call is recorded, however long it waits.
        #[cfg(feature = "metrics")]
        let timed = crate::telemetry::redis::Timed::since(&self.metrics.latency, sent);
        let outcome = invoke.await;
        #[cfg(feature = "metrics")]
        drop(timed);
        let expected = 1 + asks.iter().map(|ask| ask.keys.len()).sum::<usize>();
        match outcome.map(|packed| script::unpack(&packed)) {
            Ok(Some(values)) if values.len() == expected => Ok(values),
            Ok(values) => Err(RedisStoreError::reply(values.unwrap_or_default())),
            Err(error) => Err(error),
        }
    }

    /// Gives each of `asks` its answer from `outcome`, the values of their call, or from the
    /// failure policy when the call failed; `answered_before` is the health's count of answers
    /// when the call was made.
    fn answer(
        &self,
        asks: &[Ask],
        outcome: Result<Vec<i64>, RedisStoreError>,
        answered_before: u64,
        mut answer: impl FnMut(Result<Decisions, RedisStoreError>),
    ) {
        let probing = asks.iter().any(|ask| ask.probe.is_some());
        let local_now = self.clock.now_nanos();
        // Redis answered or failed: the probe, if one was carried, has done its work.
        for probe in asks.iter().filter_map(|ask| ask.probe.as_ref()) {
            probe.armed.store(false, Ordering::Relaxed);
        }
        let values = match outcome {
            Ok(values) => {
                self.health.success(local_now, probing);
                values
            }
            Err(error) => {
                self.health
                    .failure(local_now, probing, &error, self.policy, answered_before);
                for ask in asks {
                    answer(self.ask_by_policy(ask, error.clone()));
                }
                return;
            }
        };
        let (&time, mut rest) = values.split_first().unwrap_or((&0, &[]));
        for ask in asks {
            let (found, next) = rest.split_at(ask.keys.len());
            rest = next;
            // In clock mode each check's time is the one it sent (µs: far below `i64::MAX`).
            let now = ask.now_arg.map_or(time, |micros| micros as i64);
            answer(
                match Reply::parse(now, found, &ask.stack.parts.cells, ask.cost) {
                    Some(reply) => {
                        self.remember(ask, &reply);
                        Ok(reply.decisions)
                    }
                    None => {
                        let error = RedisStoreError::reply([&[time], found].concat());
                        if let Some(suppressed) = self.bad_reply_log.admit() {
                            tracing::warn!(
                                error = %Chain(&error),
                                // Quoted and escaped (a quote too): a client may have
                                // chosen the key's bytes, spaces and `=` among them.
                                key = %format_args!("\"{}\"", ask.keys.key().escape_ascii()),
                                similar_checks_not_logged = suppressed,
                                "Redis answered a check with values that are not TATs (has \
                                 something else written to the rate limit's keys?); the check \
                                 is answered by the failure policy"
                            );
                        }
                        self.ask_by_policy(ask, error)
                    }
                },
            );
        }
    }

    /// The `EVALSHA` of `asks`: their keys, the call's stacks (each once), then the checks in
    /// runs of one stack and one cost.
    fn command(&self, asks: &[Ask], by_node: bool) -> Cmd {
        // The batch's stacks, each sent once; checks name theirs by position, from 1.
        let mut stacks: SmallVec<[&Arc<StackParts>; 4]> = SmallVec::new();
        let mut which: SmallVec<[usize; 16]> = SmallVec::with_capacity(asks.len());
        for ask in asks {
            let parts = &ask.stack.parts;
            let at = match stacks.iter().position(|seen| Arc::ptr_eq(seen, parts)) {
                Some(at) => at,
                None => {
                    stacks.push(parts);
                    stacks.len() - 1
                }
            };
            which.push(at + 1);
        }
        let keys = || asks.iter().filter_map(|ask| ask.keys.redis_key());
        let key_bytes: usize = keys().map(<[u8]>::len).sum();
        // The command is written straight into one buffer: no per-argument vectors.
        let mut call = Cmd::with_capacity(
            7 + 5 * asks.len() + 9 * stacks.len(),
            64 + key_bytes + 24 * asks.len() + 100 * stacks.len(),
        );
        call.arg("EVALSHA").arg(self.script.get_hash());
        match by_node {
            true => call.arg(0).arg("node").arg(keys().count()),
            false => call.arg(keys().count()),
        };
        for key in keys() {
            call.arg(key);
        }
        match self.clock_time {
            true => call.arg(CLOCK_MODE_MIN_EXPIRY_MS).arg(1),
            false => call.arg(0).arg(0),
        };
        call.arg(self.expiry_step_us);
        call.arg(stacks.len());
        for parts in &stacks {
            call.arg(parts.micro.len());
            for ((micro, cell), name) in parts.micro.iter().zip(&parts.cells).zip(parts.names()) {
                call.arg(micro.interval)
                    .arg(micro.burst)
                    .arg(if cell.shadow { "1" } else { "0" })
                    .arg(name);
            }
        }
        // Under load a call is mostly one run: checks of one stack at cost 1.
        let mut start = 0;
        while let Some(first) = asks.get(start) {
            let stack = which[start];
            let end = (start + 1..asks.len())
                .find(|&i| which[i] != stack || asks[i].cost != first.cost)
                .unwrap_or(asks.len());
            call.arg(end - start).arg(stack).arg(first.cost);
            for micros in asks[start..end].iter().filter_map(|ask| ask.now_arg) {
                call.arg(micros);
            }
            start = end;
        }
        call
    }

    /// Runs `call` within the store's timeout, on the store's runtime when polled on another:
    /// a reconnection that the call starts, and the retry that waits on it, open a connection
    /// whose task runs on the runtime polling them, which must be the one that keeps running
    /// (a sync caller's current-thread runtime runs only inside its `block_on`). It is timed
    /// here, so that a store's runtime that is blocked (a test joining a thread) does not hold
    /// the check past its timeout; polled outside any runtime (a sync caller's own executor),
    /// where no timer runs, it is timed on the store's runtime too.
    async fn invoke(
        &self,
        call: Cmd,
        dest: Dest,
        sent: std::time::Instant,
    ) -> Result<Vec<u8>, RedisStoreError> {
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        let timed_out = |_: Elapsed| {
            self.connection.timed_out(dest, sent);
            // Answers are followed by primary, as the map says: keep it current (a slot may
            // have moved) without holding up this answer.
            if self.connection.slot_map().is_some_and(|map| map.due()) {
                let connection = self.connection.clone();
                self.runtime.spawn(refresh_slot_map(connection, timeout));
            }
            RedisStoreError::timeout(timeout)
        };
        let store = &self.runtime;
        let here = tokio::runtime::Handle::try_current();
        if here.as_ref().is_ok_and(|here| here.id() == store.id()) {
            let invoke = connection.invoke(&call, &self.script, dest);
            let outcome = within_timeout(timeout, invoke).await;
            return outcome.map_err(timed_out)?.map_err(RedisStoreError::redis);
        }
        let script = self.script.clone();
        let call = async move { connection.invoke(&call, &script, dest).await };
        // A task the store's runtime does not run: that runtime is shutting down or gone.
        let gone = |_: tokio::task::JoinError| RedisStoreError::runtime_gone();
        let outcome = if here.is_ok() {
            let joined = within_timeout(timeout, AbortOnDrop(store.spawn(call))).await;
            joined.map_err(timed_out)?.map_err(gone)?
        } else {
            let joined = AbortOnDrop(store.spawn(within_timeout(timeout, call))).await;
            joined.map_err(gone)?.map_err(timed_out)?
        };
        outcome.map_err(RedisStoreError::redis)
    }

    /// Caches every key of the stack when the same check would now be denied by some policy;
    /// updates the keys that are cached already.
    fn remember(&self, ask: &Ask, reply: &Reply) {
        let Some(cache) = &self.deny_cache else {
            return;
        };
        let exhausted = reply
            .decisions
            .as_slice()
            .iter()
            .any(|d| !d.is_allowed() || d.remaining() < ask.cost.max(1));
        for (key, &tat) in ask.keys.iter().zip(&reply.tats) {
            let local_tat = ask.base.saturating_add(tat.saturating_sub(reply.now));
            cache.record(key, local_tat, ask.base, exhausted);
        }
    }

    /// The failure policy's answer to `ask`, which Redis did not answer (`error` says why).
    pub(super) fn ask_by_policy(
        &self,
        ask: &Ask,
        error: RedisStoreError,
    ) -> Result<Decisions, RedisStoreError> {
        self.by_policy(&ask.stack, ask.keys.key(), ask.cost, error)
    }

    /// The failure policy's answer to a check of `key` (in the form the stores keep it in)
    /// that Redis could not answer.
    fn by_policy(
        &self,
        stack: &RedisStack,
        key: &[u8],
        cost: u32,
        error: RedisStoreError,
    ) -> Result<Decisions, RedisStoreError> {
        self.health.answered_by_policy();
        let decisions = match self.policy {
            // A peek (cost 0) is one on the local store too.
            FailurePolicy::Local => self.fallback.check_kept(&stack.parts.local, key, cost),
            // The answer to a key's first check: headers that agree with each other, and a cost
            // above a burst denied, as it is by Redis.
            FailurePolicy::Allow => {
                let cells = &stack.parts.cells;
                let mut fresh: SmallVec<[u64; 2]> = smallvec::smallvec![0; cells.len()];
                crate::gcra::decide_stack(cells, &mut fresh, 0, cost)
            }
            FailurePolicy::Deny => return Err(error),
        };
        #[cfg(feature = "metrics")]
        let decisions = decisions.by_failure_policy();
        Ok(decisions)
    }
}

/// The keys of one check, `{<prefix>:<key>}:<policy>` for each policy of its stack, in one
/// buffer: the names of the TATs it reads in the deny cache; the Redis key holding them all is
/// `{<prefix>:<key>}`, the hash tag of each.
pub(super) struct Keys {
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`.
    ends: SmallVec<[usize; 2]>,
    /// Where the limited key's own bytes lie in the first Redis key.
    key: (usize, usize),
}

impl Keys {
    /// The keys of `key` under `head` (`{<prefix>:`) with each of `suffixes`.
    pub(super) fn new(head: &[u8], key: &[u8], suffixes: &[Box<[u8]>]) -> Keys {
        let stem = head.len() + key.len();
        let size = suffixes.len() * stem + suffixes.iter().map(|s| s.len()).sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        let mut ends = SmallVec::with_capacity(suffixes.len());
        for suffix in suffixes {
            bytes.extend_from_slice(head);
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(suffix);
            ends.push(bytes.len());
        }
        Keys {
            bytes,
            ends,
            key: (head.len(), stem),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    /// The Redis key holding the TATs of every policy: `{<prefix>:<key>}`, the first key up to
    /// its `}`; `None` for a stack of no policies (no bytes).
    pub(super) fn redis_key(&self) -> Option<&[u8]> {
        self.bytes.get(..self.key.1 + 1)
    }

    /// The limited key's bytes (empty for a stack of no policies).
    fn key(&self) -> &[u8] {
        self.bytes.get(self.key.0..self.key.1).unwrap_or_default()
    }
}

/// Runs `invoke` for at most `timeout`, as Redis and the network take it: when the timer fires
/// late by more than a quarter of the timeout, this process was not running (a starved
/// machine, a blocked runtime) and cannot tell a slow Redis from its own stall, so the call
/// gets one more timeout before it counts as failed.
async fn within_timeout<F: std::future::Future>(
    timeout: std::time::Duration,
    invoke: F,
) -> Result<F::Output, Elapsed> {
    let mut invoke = std::pin::pin!(invoke);
    let Some(deadline) = tokio::time::Instant::now().checked_add(timeout) else {
        // A timeout longer than the clock can count (`Duration::MAX`, say): none.
        return Ok(invoke.await);
    };
    match tokio::time::timeout_at(deadline, invoke.as_mut()).await {
        Ok(outcome) => Ok(outcome),
        Err(_) if deadline.elapsed() > timeout / 4 => tokio::time::timeout(timeout, invoke).await,
        Err(elapsed) => Err(elapsed),
    }
}

/// A call made on the store's runtime for a check polled on another runtime or outside any:
/// dropped with the check, it stops the call.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The mark of the check that tests Redis after a back-off: dropped before a call carrying it
/// has ended (its future dropped, polled or not, or its call's), it lets the next check probe
/// instead. It holds the store weakly: a probe waiting in a lane's queue, which the store
/// holds, must not keep the store alive.
struct Probe {
    inner: Weak<Inner>,
    armed: AtomicBool,
}

impl Probe {
    fn new(inner: &Arc<Inner>) -> Self {
        Probe {
            inner: Arc::downgrade(inner),
            armed: AtomicBool::new(true),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let (true, Some(inner)) = (*self.armed.get_mut(), self.inner.upgrade()) {
            inner.health.probe_abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timer that fires late (the process was not running: here the clock jumps past the
    /// deadline) gives the call one more timeout; one that fires on time fails the call.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_that_fires_late_gives_the_call_one_more_timeout() {
        use std::time::Duration;
        let call = || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            7
        };
        let timeout = Duration::from_millis(100);
        let stall = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tokio::time::advance(Duration::from_millis(200)).await;
        };
        let (late, ()) = tokio::join!(within_timeout(timeout, call()), stall);
        assert_eq!(late.ok(), Some(7));
        assert!(within_timeout(timeout, call()).await.is_err());
    }

    #[test]
    fn the_redis_key_is_the_hash_tag_each_policy_name_shares() {
        let suffixes: [Box<[u8]>; 2] = [(*b"}:per-second").into(), (*b"}:per-minute").into()];
        let keys = Keys::new(b"{ratelimit:", b"alice", &suffixes);
        let names: Vec<&[u8]> = keys.iter().collect();
        assert_eq!(
            names,
            [
                &b"{ratelimit:alice}:per-second"[..],
                b"{ratelimit:alice}:per-minute"
            ]
        );
        assert_eq!(keys.redis_key(), Some(&b"{ratelimit:alice}"[..]));
        assert_eq!(keys.key(), b"alice");
        let none = Keys::new(b"{ratelimit:", b"alice", &[]);
        assert_eq!((none.redis_key(), none.key()), (None, &b""[..]));
    }
}
