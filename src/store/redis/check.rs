//! One check: the deny cache, the route by health, the script call, and the failure policy.

use std::sync::Arc;
use std::time::Duration;

use redis::Cmd;
use smallvec::SmallVec;

use super::health::{Health, Route};
use super::script::Reply;
use super::store::{Inner, RedisStack};
use super::{FailurePolicy, RedisStoreError, RedisStoreFuture};
use crate::gcra;
use crate::{Clock, Decision, Decisions};

/// In clock mode, the least time a written key lives in Redis: Redis expires keys by its own
/// clock, which a manual clock does not drive.
const CLOCK_MODE_MIN_EXPIRY_MS: u64 = 3_600_000;

/// What one check sends to Redis and needs back.
struct Ask {
    /// The Redis key of each policy.
    keys: SmallVec<[Vec<u8>; 2]>,
    stack: RedisStack,
    /// The key's bytes, for the failure policy.
    key: Vec<u8>,
    /// 0 for a peek.
    cost: u32,
    /// The script's time in µs in clock mode; `None` to read Redis `TIME`.
    now_arg: Option<u64>,
    /// The local time (ns) that corresponds to the script's time.
    base: u64,
    probe: bool,
}

impl Inner {
    pub(super) fn start(
        this: &Arc<Self>,
        stack: &RedisStack,
        key: &[u8],
        cost: u32,
    ) -> RedisStoreFuture {
        let keys: SmallVec<[Vec<u8>; 2]> = stack
            .parts
            .suffixes
            .iter()
            .map(|suffix| this.redis_key(key, suffix))
            .collect();
        let local_now = this.clock.now_nanos();
        // In clock mode the script gets whole microseconds; the local side uses the same
        // instant so that its answers are the script's.
        let (now_arg, base) = if this.clock_time {
            let micros = local_now / 1000;
            (Some(micros), micros * 1000)
        } else {
            (None, local_now)
        };
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
                    key: key.to_vec(),
                    cost,
                    now_arg,
                    base,
                    probe,
                };
                RedisStoreFuture::pending(Box::pin(Arc::clone(this).ask(ask)))
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
        keys: &[Vec<u8>],
        cost: u32,
        now: u64,
    ) -> Option<Decisions> {
        let cache = self.deny_cache.as_ref()?;
        if stack.parts.shadow {
            return None;
        }
        let mut tats: SmallVec<[u64; 2]> = SmallVec::with_capacity(keys.len());
        for key in keys {
            tats.push(cache.get(key)?);
        }
        let decisions = if cost == 0 {
            gcra::peek_stack(&stack.parts.cells, &tats, now)
        } else {
            gcra::check_stack(&stack.parts.cells, &mut tats, now, cost)
        };
        (!decisions.is_allowed()).then_some(decisions)
    }

    async fn ask(self: Arc<Self>, ask: Ask) -> Result<Decisions, RedisStoreError> {
        let mut probe = ProbeGuard {
            health: &self.health,
            armed: ask.probe,
        };
        let n = ask.keys.len();
        // The command is written straight into one buffer: no per-argument vectors.
        let key_bytes: usize = ask.keys.iter().map(Vec::len).sum();
        let mut call = Cmd::with_capacity(6 + 4 * n, 64 + key_bytes + 24 * n);
        call.arg("EVALSHA").arg(self.script.get_hash()).arg(n);
        for key in &ask.keys {
            call.arg(&key[..]);
        }
        call.arg(ask.cost);
        match ask.now_arg {
            Some(micros) => call.arg(micros).arg(CLOCK_MODE_MIN_EXPIRY_MS),
            None => call.arg("").arg(0),
        };
        for (micro, cell) in ask.stack.parts.micro.iter().zip(&ask.stack.parts.cells) {
            call.arg(micro.interval)
                .arg(micro.burst)
                .arg(if cell.shadow { "1" } else { "0" });
        }
        let mut connection = self.connection.clone();
        let invoke = connection.invoke(&call, &self.script);
        #[cfg(feature = "metrics")]
        let sent = std::time::Instant::now();
        let answer = tokio::time::timeout(self.timeout, invoke).await;
        #[cfg(feature = "metrics")]
        self.metrics.latency.record(sent.elapsed());
        let outcome = match answer {
            Ok(Ok(values)) => match Reply::parse(&values, &ask.stack.parts.cells) {
                Some(reply) => Ok(reply),
                None => Err(RedisStoreError::reply(values)),
            },
            Ok(Err(error)) => Err(RedisStoreError::redis(error)),
            Err(_) => Err(RedisStoreError::timeout(self.timeout)),
        };
        probe.armed = false;
        let local_now = self.clock.now_nanos();
        match outcome {
            Ok(reply) => {
                self.health.success(local_now, ask.probe);
                if let Some(cache) = &self.deny_cache {
                    // Cache every key of the stack when the same check would now be denied by
                    // some policy; update the keys that are cached already.
                    let exhausted = reply
                        .decisions
                        .as_slice()
                        .iter()
                        .any(|d| !d.is_allowed() || d.remaining() < ask.cost.max(1));
                    for (key, tat) in ask.keys.iter().zip(&reply.tats) {
                        let local_tat = ask
                            .base
                            .saturating_add(tat.saturating_sub(reply.now).saturating_mul(1000));
                        cache.record(key, local_tat, ask.base, exhausted);
                    }
                }
                Ok(reply.decisions)
            }
            Err(error) => {
                self.health
                    .failure(local_now, ask.probe, &error, self.policy);
                self.by_policy(&ask.stack, &ask.key, ask.cost, error)
            }
        }
    }

    /// The failure policy's answer to a check that Redis could not answer.
    fn by_policy(
        &self,
        stack: &RedisStack,
        key: &[u8],
        cost: u32,
        error: RedisStoreError,
    ) -> Result<Decisions, RedisStoreError> {
        self.health.answered_by_policy();
        let decisions = match self.policy {
            FailurePolicy::Local if cost == 0 => self.fallback.peek_now(&stack.parts.local, key),
            FailurePolicy::Local => self.fallback.check_now(&stack.parts.local, key, cost),
            FailurePolicy::Allow => Decisions::new(
                true,
                stack.parts.cells.iter().map(|cell| {
                    let burst = cell.quota.burst();
                    Decision::allowed(burst, burst.saturating_sub(cost), Duration::ZERO)
                }),
            ),
            FailurePolicy::Deny => return Err(error),
        };
        #[cfg(feature = "metrics")]
        let decisions = decisions.by_failure_policy();
        Ok(decisions)
    }
}

/// Marks a probe abandoned if its check is dropped before Redis answers.
struct ProbeGuard<'a> {
    health: &'a Health,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.probe_abandoned();
        }
    }
}
