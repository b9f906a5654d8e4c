//! Where the stores read the time: a monotonic default and a manual clock for tests.
//!
//! ```
//! use std::time::Duration;
//! use tower_ratelimit::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let shared = clock.clone();
//! clock.advance(Duration::from_millis(5));
//! assert_eq!(shared.now_nanos(), 5_000_000);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A source of monotonic time in nanoseconds since an arbitrary origin.
///
/// The origin is the clock's own; stores only compare readings of one clock.
///
/// A clock of one's own must be monotonic: a wall clock (`SystemTime`) steps back when it is
/// set. Nothing breaks when a reading goes back, but a key that spent its burst at the later
/// reading waits for the step on top of its wait (its `Retry-After` grows by the step), a
/// [`MemoryStore`](crate::MemoryStore) at its cap sends every new key to the overflow budget
/// for the step's length (its sweeps wait for the time they last ran at), and readings within
/// the longest window of `u64::MAX` stop limiting, as times saturate there (`u64::MAX`
/// nanoseconds is 584 years from the origin).
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since the clock's origin. Never decreases.
    fn now_nanos(&self) -> u64;
}

/// The default clock: the CPU's monotonic counter, read through `quanta` (a few nanoseconds a
/// reading where a stable TSC is available, `clock_gettime(CLOCK_MONOTONIC)` elsewhere).
#[derive(Clone)]
pub struct MonotonicClock {
    // The raw counter is read and scaled here rather than through `quanta::Instant::now()`,
    // which looks up a global clock and converts through `Duration` on every reading.
    clock: quanta::Clock,
    origin: u64,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        MonotonicClock { clock, origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MonotonicClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonotonicClock").finish_non_exhaustive()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        // Zero for a reading at or before the origin; u64 nanoseconds last 584 years.
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// ```
/// use std::time::Duration;
/// use tower_ratelimit::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// assert_eq!(clock.now_nanos(), 0);
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.now_nanos(), 1_000_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// The time since the clock was made, as the sum of every `advance`.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::new();
        let mut last = clock.now_nanos();
        for _ in 0..1000 {
            let now = clock.now_nanos();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_clones_share_time_and_saturate() {
        let clock = ManualClock::new();
        let other = clock.clone();
        other.advance(Duration::from_nanos(7));
        assert_eq!(clock.elapsed(), Duration::from_nanos(7));
        clock.advance(Duration::MAX);
        assert_eq!(other.now_nanos(), u64::MAX);
    }
}
