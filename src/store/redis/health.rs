//! Whether checks go to Redis: failures counted, a back-off after repeated ones, one probe at a
//! time to find out when Redis is back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::{FailurePolicy, RedisStoreError};
use crate::log::{Chain, Throttle};

/// At most one outage's lines per interval: a Redis that fails every other call (out of memory,
/// where admitted checks fail and denials pass; one cluster node down) would otherwise log two
/// lines per call. And at most one back-off per interval of an outage whose first failure was
/// not logged (another outage had just been): a back-off means Redis keeps failing, which must
/// not go unseen because a blip came just before it.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where a check goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// To Redis; `probe` if it is the one check that tests Redis after a back-off.
    Redis { probe: bool },
    /// Straight to the failure policy: Redis is backed off.
    Policy,
}

/// The failure state shared by every check of one store. Times are local nanoseconds.
#[derive(Debug)]
pub(super) struct Health {
    /// Failures since the last success.
    failures: AtomicU32,
    /// Calls Redis has answered: a call that fails after a call sent with it or after it was
    /// answered failed alone, not with Redis. Written by every call Redis answers, so on a
    /// cache line of its own: the fields every check reads stay in the readers' caches.
    answered: CachePadded<AtomicU64>,
    /// While non-zero, checks skip Redis until this time, then one probe goes.
    backoff_until: AtomicU64,
    /// A probe is in flight.
    probing: AtomicBool,
    /// When the current outage began (non-zero during one), for the recovery log line, its
    /// lowest bit set if its lines are logged.
    outage_since: AtomicU64,
    /// Which outages are logged.
    outage_log: Throttle,
    /// Which back-offs of outages not logged from their start are logged.
    backoff_log: Throttle,
    /// Checks answered by the policy during the current outage.
    policy_answers: AtomicU64,
    failures_before_backoff: u32,
    backoff: Duration,
    /// `ratelimit_redis_degraded`: raised by one when a back-off begins, lowered when it ends.
    #[cfg(feature = "metrics")]
    degraded: metrics::Gauge,
}

impl Health {
    pub(super) fn new(failures_before_backoff: u32, backoff: Duration) -> Self {
        Health {
            failures: AtomicU32::new(0),
            answered: CachePadded::new(AtomicU64::new(0)),
            backoff_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            outage_since: AtomicU64::new(0),
            outage_log: Throttle::new(LOG_INTERVAL),
            backoff_log: Throttle::new(LOG_INTERVAL),
            policy_answers: AtomicU64::new(0),
            failures_before_backoff,
            backoff,
            #[cfg(feature = "metrics")]
            degraded: crate::telemetry::redis::degraded(),
        }
    }

    pub(super) fn route(&self, now: u64) -> Route {
        let until = self.backoff_until.load(Ordering::Acquire);
        if until == 0 {
            return Route::Redis { probe: false };
        }
        if now >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Route::Redis { probe: true };
        }
        Route::Policy
    }

    pub(super) fn backing_off(&self) -> bool {
        self.backoff_until.load(Ordering::Acquire) != 0
    }

    /// A check was answered by the failure policy: counted for the outage's end, if it came
    /// during one (a check whose key holds something else than a TAT belongs to none).
    pub(super) fn answered_by_policy(&self) {
        if self.outage_since.load(Ordering::Acquire) != 0 {
            self.policy_answers.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the store is answering by its failure policy: the last call failed, or checks
    /// skip Redis during a back-off.
    pub(super) fn degraded(&self) -> bool {
        self.failures.load(Ordering::Acquire) != 0 || self.backing_off()
    }

    /// How many calls Redis has answered so far: read as a call is sent, for
    /// [`failure`](Self::failure) to tell whether another call succeeded meanwhile.
    pub(super) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Redis answered a call.
    pub(super) fn success(&self, now: u64, probe: bool) {
        // Sequentially consistent with the back-off a failure begins, which looks at this
        // count again once it has begun (see there).
        self.answered.fetch_add(1, Ordering::SeqCst);
        // Then a plain load: while Redis is healthy, calls only read the rest of the state.
        if !probe && self.failures.load(Ordering::Acquire) == 0 {
            return;
        }
        let failed_calls = self.failures.swap(0, Ordering::AcqRel);
        if self.backoff_until.swap(0, Ordering::SeqCst) != 0 {
            #[cfg(feature = "metrics")]
            self.degraded.decrement(1.0);
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        // One line per logged outage, from whichever call ends it.
        let since = self.outage_since.swap(0, Ordering::AcqRel);
        if since != 0 {
            let answered = self.policy_answers.swap(0, Ordering::AcqRel);
            if since & 1 == 0 {
                return;
            }
            tracing::warn!(
                outage_ms = Duration::from_nanos(now.saturating_sub(since & !1)).as_millis() as u64,
                failed_calls,
                checks_answered_by_policy = answered,
                "Redis rate limit store answering again; checks go to Redis"
            );
        }
    }

    /// A call failed (an error or a timeout); `sent` is what [`answered`](Self::answered) read
    /// when it was sent. If Redis answered another call since, the failure is this call's (on
    /// a Redis Cluster, a node down while the others answer) and starts no back-off, which
    /// would send the checks of every node to the failure policy.
    pub(super) fn failure(
        &self,
        now: u64,
        probe: bool,
        error: &RedisStoreError,
        policy: FailurePolicy,
        sent: u64,
    ) {
        let overtaken = self.answered() != sent;
        // The outage first, then the failure: a call that succeeds in between and sees the
        // failure also sees the outage, and ends it.
        let began = self.begin_outage(now);
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let backoff = u64::try_from(self.backoff.as_nanos()).unwrap_or(u64::MAX);
        let until = now.saturating_add(backoff).max(1);
        if probe {
            let was = self.backoff_until.swap(until, Ordering::AcqRel);
            self.probing.store(false, Ordering::Release);
            if was == 0 {
                // A call in flight before the back-off answered meanwhile and ended the
                // outage (its line said so): this back-off belongs to another outage.
                #[cfg(feature = "metrics")]
                self.degraded.increment(1.0);
            }
            if let Some(Some(suppressed)) = began {
                tracing::warn!(
                    error = %Chain(error),
                    failure_policy = ?policy,
                    backoff_ms = self.backoff_ms(),
                    similar_outages_not_logged = suppressed,
                    "Redis rate limit store failed again; backing off: checks skip Redis and \
                     are answered by the failure policy, one probe per back-off period"
                );
                return;
            }
            // A back-off that begins here is logged; so is one of an outage held back so far,
            // from the first failed probe the back-off lines' interval lets through: Redis
            // that keeps failing must not go unseen for as long as it fails.
            let held_back = self.outage_since.load(Ordering::Acquire) & 1 == 0;
            if !((was == 0 || held_back) && self.log_backoff(error, policy, failures)) {
                tracing::debug!(
                    error = %Chain(error),
                    "Redis rate limit store still failing; backing off again"
                );
            }
            return;
        }
        if let Some(Some(suppressed)) = began {
            tracing::warn!(
                error = %Chain(error),
                failure_policy = ?policy,
                similar_outages_not_logged = suppressed,
                "Redis rate limit store failed; answering by the failure policy"
            );
        }
        if !overtaken
            && failures >= self.failures_before_backoff
            && self
                .backoff_until
                .compare_exchange(0, until, Ordering::SeqCst, Ordering::Acquire)
                .is_ok()
        {
            #[cfg(feature = "metrics")]
            self.degraded.increment(1.0);
            // A call that Redis answered after `overtaken` was read may have looked for a
            // back-off to end before this one began: the back-off is not kept then. The count
            // is read again after the back-off began and a success counts before it ends a
            // back-off, all sequentially consistent: either this read sees that success, or
            // the success comes after the back-off began and ends it itself.
            if self.answered.load(Ordering::SeqCst) != sent {
                if self
                    .backoff_until
                    .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    #[cfg(feature = "metrics")]
                    self.degraded.decrement(1.0);
                }
                return;
            }
            self.log_backoff(error, policy, failures);
        }
    }

    /// Marks an outage begun at `now`, unless one is already: `None` if it was not begun here,
    /// else whether its lines are logged, with the number of outages since the last logged one
    /// that were not.
    fn begin_outage(&self, now: u64) -> Option<Option<u64>> {
        let began = now.max(2) & !1;
        self.outage_since
            .compare_exchange(0, began, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let suppressed = self.outage_log.admit();
        // Logged only if no call has ended it meanwhile (which logged no end for it).
        let logged = suppressed.is_some()
            && self
                .outage_since
                .compare_exchange(began, began | 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        Some(suppressed.filter(|_| logged))
    }

    /// The line of a back-off that begins: in an outage already logged, or in one whose first
    /// failure was not logged (another outage's lines had just been), which is logged from here
    /// on, its end included, unless another such back-off was logged within the interval (a
    /// probe of that outage that fails later tries again). Whether it was logged.
    fn log_backoff(&self, error: &RedisStoreError, policy: FailurePolicy, failures: u32) -> bool {
        let since = self.outage_since.load(Ordering::Acquire);
        if since == 0 {
            return false;
        }
        // An outage whose first failure was not logged is, from its back-off on.
        let suppressed = if since & 1 == 0 {
            let Some(suppressed) = self.backoff_log.admit() else {
                return false;
            };
            // Logged only if no call has ended the outage meanwhile.
            if self
                .outage_since
                .compare_exchange(since, since | 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
            suppressed
        } else {
            0
        };
        tracing::warn!(
            error = %Chain(error),
            failure_policy = ?policy,
            failures,
            backoff_ms = self.backoff_ms(),
            similar_backoffs_not_logged = suppressed,
            "Redis rate limit store keeps failing; backing off: checks skip Redis and are \
             answered by the failure policy, one probe per back-off period"
        );
        true
    }

    fn backoff_ms(&self) -> u64 {
        u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX)
    }

    /// A probe was dropped before Redis answered: let the next check probe instead.
    pub(super) fn probe_abandoned(&self) {
        self.probing.store(false, Ordering::Release);
    }
}

/// A store dropped while backing off leaves the gauge.
#[cfg(feature = "metrics")]
impl Drop for Health {
    fn drop(&mut self) {
        if self.backing_off() {
            self.degraded.decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> RedisStoreError {
        RedisStoreError::timeout(Duration::from_millis(5))
    }

    /// A call failed at `now`, a probe or not, that no other call overtook.
    fn failed(health: &Health, now: u64, probe: bool) {
        let sent = health.answered();
        health.failure(now, probe, &error(), FailurePolicy::Local, sent);
    }

    /// `calls` failed calls at `now`, none of them a probe.
    fn fail(health: &Health, now: u64, calls: usize) {
        for _ in 0..calls {
            failed(health, now, false);
        }
    }

    #[test]
    fn failures_overtaken_by_a_success_start_no_back_off() {
        let health = Health::new(3, Duration::from_nanos(100));
        // Calls sent together; one succeeds, the others fail after it.
        let sent = health.answered();
        health.success(5, false);
        for _ in 0..5 {
            health.failure(10, false, &error(), FailurePolicy::Local, sent);
        }
        assert!(
            health.degraded(),
            "the failures still count until a success"
        );
        assert!(!health.backing_off());
        // Calls sent after the last success, all failing: Redis answers nothing.
        let sent = health.answered();
        for _ in 0..3 {
            health.failure(20, false, &error(), FailurePolicy::Local, sent);
        }
        assert!(health.backing_off());
    }

    #[test]
    fn backs_off_after_repeated_failures_then_probes_once() {
        let health = Health::new(3, Duration::from_nanos(100));
        for _ in 0..2 {
            failed(&health, 10, false);
            assert_eq!(health.route(10), Route::Redis { probe: false });
        }
        failed(&health, 10, false);
        assert!(health.backing_off());
        assert_eq!(health.route(50), Route::Policy);
        assert_eq!(health.route(110), Route::Redis { probe: true });
        assert_eq!(health.route(110), Route::Policy, "one probe at a time");
        failed(&health, 120, true);
        assert_eq!(health.route(150), Route::Policy);
        assert_eq!(health.route(220), Route::Redis { probe: true });
        health.success(230, true);
        assert!(!health.backing_off());
        assert_eq!(health.route(230), Route::Redis { probe: false });
    }

    #[test]
    fn a_backoff_too_long_to_count_in_nanoseconds_lasts_to_the_end_of_the_clock() {
        let health = Health::new(1, Duration::MAX);
        failed(&health, 10, false);
        assert!(health.backing_off());
        assert_eq!(health.route(u64::MAX - 1), Route::Policy);
    }

    #[test]
    fn a_probe_failing_after_another_call_ended_the_outage_begins_a_new_one() {
        let health = Health::new(1, Duration::from_nanos(100));
        failed(&health, 0, false);
        assert_eq!(health.route(100), Route::Redis { probe: true });
        // A call sent before the back-off answers: the outage is over, and said so.
        health.success(105, false);
        assert!(!health.backing_off());
        assert_eq!(health.outage_since.load(Ordering::Acquire), 0);
        // Then the probe fails: a new outage, whose end is reported in its turn.
        failed(&health, 110, true);
        assert!(health.backing_off());
        assert_eq!(health.outage_since.load(Ordering::Acquire) & !1, 110);
        assert_eq!(health.route(210), Route::Redis { probe: true });
        health.answered_by_policy();
        health.success(220, true);
        assert!(!health.backing_off());
        assert_eq!(health.outage_since.load(Ordering::Acquire), 0);
        assert_eq!(
            health.policy_answers.load(Ordering::Acquire),
            0,
            "counted, then reported"
        );
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn the_degraded_gauge_is_one_for_every_back_off_and_zero_once_it_ends() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let gauge = || {
            let text = recorder.handle().render();
            text.lines()
                .find_map(|line| line.strip_prefix("ratelimit_redis_degraded "))
                .unwrap_or_else(|| panic!("no gauge in {text}"))
                .parse::<f64>()
                .unwrap()
        };
        let health =
            metrics::with_local_recorder(&recorder, || Health::new(3, Duration::from_nanos(100)));
        fail(&health, 0, 3);
        assert_eq!(gauge(), 1.0);
        // A call sent before the back-off answers and ends it; the probe then fails: a new
        // back-off, of a new outage.
        assert_eq!(health.route(100), Route::Redis { probe: true });
        health.success(105, false);
        assert_eq!(gauge(), 0.0);
        failed(&health, 110, true);
        assert!(health.backing_off());
        assert_eq!(gauge(), 1.0);
        // A probe that fails within a back-off keeps it, counted once.
        assert_eq!(health.route(210), Route::Redis { probe: true });
        failed(&health, 215, true);
        assert_eq!(gauge(), 1.0);
        assert_eq!(health.route(315), Route::Redis { probe: true });
        health.success(320, true);
        assert_eq!(gauge(), 0.0);
        // A store dropped while it backs off takes its part of the gauge along.
        fail(&health, 400, 3);
        assert_eq!(gauge(), 1.0);
        drop(health);
        assert_eq!(gauge(), 0.0);
    }

    #[test]
    fn a_failed_probe_keeps_the_start_of_an_outage_a_call_began_after_the_last_ended() {
        let health = Health::new(3, Duration::from_nanos(100));
        fail(&health, 0, 3);
        assert_eq!(health.route(100), Route::Redis { probe: true });
        health.success(105, false);
        // Past the interval of the outage lines: this outage is logged.
        health.outage_log.expire();
        failed(&health, 107, false);
        assert_eq!(health.outage_since.load(Ordering::Acquire) & !1, 106);
        let lines = logged(|| failed(&health, 110, true));
        assert!(health.backing_off());
        assert_eq!(
            health.outage_since.load(Ordering::Acquire) & !1,
            106,
            "begun at 107 (kept to the even nanosecond below)"
        );
        assert!(lines.contains("keeps failing; backing off"), "{lines}");
        assert!(!lines.contains("failed again"), "{lines}");
    }

    #[test]
    fn a_store_failing_every_other_call_logs_one_outage_per_interval() {
        let health = Health::new(5, Duration::from_secs(1));
        let lines = logged(|| {
            for i in 0..10 {
                failed(&health, 100 * i + 1, false);
                health.answered_by_policy();
                health.success(100 * i + 50, false);
            }
        });
        assert_eq!(
            lines
                .matches("failed; answering by the failure policy")
                .count(),
            1,
            "{lines}"
        );
        assert_eq!(lines.matches("answering again").count(), 1, "{lines}");
        assert!(lines.contains("similar_outages_not_logged=0"), "{lines}");
        assert!(!health.degraded());
        assert_eq!(health.outage_since.load(Ordering::Acquire), 0);
        assert_eq!(health.policy_answers.load(Ordering::Acquire), 0);
        // A back-off of an outage whose start is not logged is, with its end: Redis keeps
        // failing.
        let lines = logged(|| {
            fail(&health, 2_000, 5);
            assert!(health.backing_off());
            health.success(3_000, false);
        });
        assert!(!lines.contains("failed; answering"), "{lines}");
        assert_eq!(lines.matches("keeps failing").count(), 1, "{lines}");
        assert_eq!(lines.matches("answering again").count(), 1, "{lines}");
        // The next outage logged says how many were not.
        health.outage_log.expire();
        let lines = logged(|| failed(&health, 4_000, false));
        assert!(lines.contains("similar_outages_not_logged=10"), "{lines}");
    }

    #[test]
    fn no_outage_stays_open_once_a_call_succeeds_after_the_last_failure() {
        // A call fails on one thread as another succeeds, many times over: whatever the
        // interleaving, a success after the failure ends the outage, so the next one gets its
        // own first line and its own length.
        let health = std::sync::Arc::new(Health::new(u32::MAX, Duration::from_secs(1)));
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let failing = {
            let (health, start) = (health.clone(), start.clone());
            std::thread::spawn(move || {
                let mut stuck = 0;
                for i in 1..=50_000 {
                    start.wait();
                    failed(&health, i, false);
                    start.wait();
                    health.success(i, false);
                    stuck += usize::from(health.outage_since.load(Ordering::Acquire) != 0);
                    start.wait();
                }
                stuck
            })
        };
        for i in 1..=50_000 {
            start.wait();
            health.success(i, false);
            start.wait();
            start.wait();
        }
        assert_eq!(failing.join().unwrap(), 0, "outages left open");
    }

    /// What `f` logs at `warn` and above, on this thread.
    ///
    /// One global subscriber, whose lines go to the thread that logs them, rather than one per
    /// call: with a scoped subscriber, a thread without one (another test's) that meets a
    /// callsite first caches that no one listens to it, and this thread's lines were lost.
    fn logged(f: impl FnOnce()) -> String {
        use std::cell::RefCell;

        thread_local! {
            static LINES: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
        }
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                LINES.with(|lines| {
                    if let Some(lines) = &mut *lines.borrow_mut() {
                        lines.extend_from_slice(bytes);
                    }
                });
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(|| Capture)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test sets a subscriber");
        });
        LINES.with(|lines| *lines.borrow_mut() = Some(Vec::new()));
        f();
        let bytes = LINES
            .with(|lines| lines.borrow_mut().take())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_backoff_right_after_a_logged_blip_is_logged_with_its_end() {
        let health = Health::new(3, Duration::from_nanos(1_000));
        // A blip: one failed call, answered again at once; both logged.
        let lines = logged(|| {
            failed(&health, 10, false);
            health.success(20, false);
        });
        assert_eq!(lines.lines().count(), 2, "{lines}");
        // Within the interval of the outage lines, Redis stops answering: its first failure is
        // not logged, but its back-off is, and so is its end, with the checks of the outage.
        let lines = logged(|| {
            for _ in 0..3 {
                failed(&health, 100, false);
                health.answered_by_policy();
            }
            assert!(health.backing_off());
            assert_eq!(health.route(500), Route::Policy);
            health.answered_by_policy();
            assert_eq!(health.route(1_100), Route::Redis { probe: true });
            health.success(1_200, true);
        });
        assert!(!lines.contains("failed; answering"), "{lines}");
        assert_eq!(lines.matches("keeps failing").count(), 1, "{lines}");
        assert!(lines.contains("similar_backoffs_not_logged=0"), "{lines}");
        assert_eq!(lines.matches("answering again").count(), 1, "{lines}");
        assert!(lines.contains("checks_answered_by_policy=4"), "{lines}");
        assert!(lines.contains("failed_calls=3"), "{lines}");
        // Another one within the interval of the back-off lines: not logged, and counted.
        let lines = logged(|| {
            fail(&health, 2_000, 3);
            health.success(3_100, true);
        });
        assert_eq!(lines, "");
        health.outage_log.expire();
        health.backoff_log.expire();
        let lines = logged(|| {
            failed(&health, 4_000, false);
            health.success(4_100, false);
        });
        assert!(lines.contains("similar_outages_not_logged=2"), "{lines}");
        health.backoff_log.expire();
        let lines = logged(|| {
            fail(&health, 5_000, 3);
        });
        assert!(lines.contains("similar_backoffs_not_logged=1"), "{lines}");
    }

    #[test]
    fn an_outage_whose_backoff_was_held_back_is_logged_at_a_later_failed_probe() {
        let health = Health::new(3, Duration::from_nanos(1_000));
        // A blip, then a back-off: both logged, and both throttles used.
        let lines = logged(|| {
            failed(&health, 10, false);
            health.success(20, false);
            fail(&health, 100, 3);
            health.success(1_200, true);
        });
        assert_eq!(lines.matches("answering again").count(), 2, "{lines}");
        // Within both intervals Redis stops answering for good: neither its first failure nor
        // its back-off is logged.
        let lines = logged(|| {
            fail(&health, 2_000, 3);
            assert_eq!(health.route(3_000), Route::Redis { probe: true });
            failed(&health, 3_000, true);
        });
        assert_eq!(lines, "");
        // Once the interval of the back-off lines is over, the next failed probe logs the
        // outage, and its end follows.
        health.backoff_log.expire();
        let lines = logged(|| {
            assert_eq!(health.route(4_000), Route::Redis { probe: true });
            failed(&health, 4_000, true);
            assert_eq!(health.route(5_000), Route::Redis { probe: true });
            health.success(5_000, true);
        });
        assert_eq!(lines.matches("keeps failing").count(), 1, "{lines}");
        assert!(lines.contains("similar_backoffs_not_logged=2"), "{lines}");
        assert_eq!(lines.matches("answering again").count(), 1, "{lines}");
        assert!(lines.contains("failed_calls=5"), "{lines}");
    }

    #[test]
    fn outage_lines_name_the_failure_policy_apart_from_the_layer_policies() {
        let health = Health::new(1, Duration::from_nanos(100));
        let lines = logged(|| {
            health.failure(10, false, &error(), FailurePolicy::Deny, health.answered());
            assert_eq!(health.route(110), Route::Redis { probe: true });
            health.success(120, true);
            health.failure(130, false, &error(), FailurePolicy::Deny, health.answered());
            assert_eq!(health.route(230), Route::Redis { probe: true });
            health.outage_log.expire();
            health.success(235, false);
            health.failure(240, true, &error(), FailurePolicy::Deny, health.answered());
        });
        assert!(lines.contains("failed; answering"), "{lines}");
        assert!(lines.contains("keeps failing"), "{lines}");
        assert!(lines.contains("failed again"), "{lines}");
        // Every line of a failure names the failure policy.
        let failures = lines.matches("error=").count();
        assert_eq!(failures, 4, "{lines}");
        assert_eq!(
            lines.matches("failure_policy=Deny").count(),
            failures,
            "{lines}"
        );
        // A `policy` field is the name of a layer's policy, in the layer's lines.
        assert!(!lines.contains(" policy="), "{lines}");
    }

    /// A probe that succeeds after another call had already ended the outage still hands the
    /// probing over: the next back-off gets its own probe.
    #[test]
    fn a_probe_answered_after_another_call_ended_the_outage_lets_the_next_backoff_probe() {
        let health = Health::new(1, Duration::from_nanos(100));
        failed(&health, 0, false);
        assert_eq!(health.route(100), Route::Redis { probe: true });
        health.success(105, false);
        health.success(110, true);
        failed(&health, 200, false);
        assert!(health.backing_off());
        assert_eq!(health.route(300), Route::Redis { probe: true });
    }

    #[test]
    fn an_abandoned_probe_hands_over_to_the_next_check() {
        let health = Health::new(1, Duration::from_nanos(100));
        health.failure(0, false, &error(), FailurePolicy::Deny, health.answered());
        assert_eq!(health.route(100), Route::Redis { probe: true });
        health.probe_abandoned();
        assert_eq!(health.route(100), Route::Redis { probe: true });
    }

    /// A call fails while another, sent after the first was, succeeds: in whatever order the
    /// two threads interleave, the failure was overtaken and no back-off is left in place.
    #[test]
    fn a_success_racing_a_failure_sent_before_it_leaves_no_back_off() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        const ROUNDS: usize = 20_000;
        // Spins, so that both threads run at once, and yields now and then, so that a busy
        // machine still runs the other thread.
        fn wait_until(ready: impl Fn() -> bool) {
            let mut spins = 0u32;
            while !ready() {
                spins += 1;
                if spins.is_multiple_of(1024) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        // A fresh store's health per round.
        let healths: Arc<[Health]> = (0..ROUNDS)
            .map(|_| Health::new(1, Duration::from_secs(1)))
            .collect();
        // Each round: the failing call is sent (its count read), then both threads go.
        let go = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let succeeding = {
            let (healths, go, done) = (Arc::clone(&healths), Arc::clone(&go), Arc::clone(&done));
            std::thread::spawn(move || {
                for (round, health) in (1..).zip(healths.iter()) {
                    wait_until(|| go.load(Ordering::Acquire) >= round);
                    health.success(10, false);
                    done.fetch_add(1, Ordering::AcqRel);
                }
            })
        };
        let mut left_backing_off = 0;
        for (round, health) in (1..).zip(healths.iter()) {
            let sent = health.answered();
            go.store(round, Ordering::Release);
            health.failure(10, false, &error(), FailurePolicy::Local, sent);
            wait_until(|| done.load(Ordering::Acquire) >= round);
            left_backing_off += usize::from(health.backing_off());
        }
        succeeding.join().unwrap();
        assert_eq!(left_backing_off, 0, "of {ROUNDS} rounds");
    }
}
