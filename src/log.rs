//! Log lines that an attack cannot turn into a flood, and errors written with their causes.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};

/// An error and each of its sources, `: `-separated, for a log field: a log line should show
/// the cause (Redis's own error text, an I/O error) next to the advice.
///
/// A source whose text the line already ends with is not written again: some errors (redis-rs's
/// among them) write their source's text in their own message and also return that source, and
/// the line would read `broken pipe: broken pipe`. Only the end of the line counts, so a cause
/// that the line merely mentions earlier is still written.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&line)
    }
}

/// Lets one line through per interval and counts the ones it held back.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Read by [`admit`](Self::admit) on every call, lines held back included: the CPU's
    /// counter, cheaper than `Instant::now()`, which a flood of held-back lines would pay on
    /// every request. A caller that has just read a clock passes its time to
    /// [`admit_at`](Self::admit_at) instead.
    clock: MonotonicClock,
    interval_nanos: u64,
    /// Nanoseconds on the throttle's time before which nothing is let through.
    next_nanos: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Self {
        Throttle {
            clock: MonotonicClock::new(),
            interval_nanos: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            next_nanos: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` if a line may be logged now.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(self.clock.now_nanos())
    }

    /// Lets the next line through at once, as if the interval had passed.
    #[cfg(all(test, feature = "redis"))]
    pub(crate) fn expire(&self) {
        self.next_nanos.store(0, Ordering::Relaxed);
    }

    /// [`admit`](Self::admit) at `now`, in nanoseconds on a clock that starts at or after 0 and
    /// never goes back: the throttle's own, or, for every call to a throttle, one other clock.
    pub(crate) fn admit_at(&self, now: u64) -> Option<u64> {
        let next = self.next_nanos.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_nanos
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_nanos),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with this message and this source.
    #[derive(Debug)]
    struct Caused(&'static str, Box<dyn Error + 'static>);

    impl fmt::Display for Caused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Caused {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.1)
        }
    }

    fn io(text: &str) -> Box<dyn Error + 'static> {
        Box::new(std::io::Error::other(text.to_owned()))
    }

    #[test]
    fn a_chain_writes_a_cause_once_when_an_error_repeats_its_source() {
        // As redis-rs's errors do: the source's text as the error's own message.
        let echo = Caused("broken pipe", io("broken pipe"));
        assert_eq!(Chain(&echo).to_string(), "broken pipe");
        let wrapped = Caused(
            "the store failed",
            Box::new(Caused("broken pipe", io("broken pipe"))),
        );
        assert_eq!(Chain(&wrapped).to_string(), "the store failed: broken pipe");
    }

    #[test]
    fn a_chain_writes_a_cause_that_the_line_only_mentions_before_its_end() {
        let mention = Caused("gave up after broken pipe, twice", io("broken pipe"));
        assert_eq!(
            Chain(&mention).to_string(),
            "gave up after broken pipe, twice: broken pipe"
        );
    }

    #[test]
    fn a_chain_writes_each_cause_after_the_error() {
        let outer = Caused("could not connect", io("connection refused"));
        assert_eq!(
            Chain(&outer).to_string(),
            "could not connect: connection refused"
        );
        assert_eq!(Chain(&fmt::Error).to_string(), fmt::Error.to_string());
        let nested = Caused(
            "the store failed",
            Box::new(Caused("could not connect", io("connection refused"))),
        );
        assert_eq!(
            Chain(&nested).to_string(),
            "the store failed: could not connect: connection refused"
        );
    }

    #[test]
    fn admits_one_line_per_interval_and_counts_the_rest() {
        const MS: u64 = 1_000_000;
        let throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.admit_at(0), Some(0));
        for now in [1, 500, 999, 999, 999] {
            assert_eq!(throttle.admit_at(now * MS), None, "{now} ms");
        }
        assert_eq!(throttle.admit_at(1_000 * MS - 1), None);
        // The interval is over: the next line goes, with the count of the lines held back.
        assert_eq!(throttle.admit_at(1_000 * MS), Some(6));
        assert_eq!(throttle.admit_at(1_999 * MS), None);
        // After a quiet spell longer than the interval, the next line goes at once, and the
        // interval runs from it.
        assert_eq!(throttle.admit_at(5_000 * MS), Some(1));
        assert_eq!(throttle.admit_at(5_999 * MS), None);
        assert_eq!(throttle.admit_at(6_000 * MS), Some(1));
        // A time near the end of the clock's range lets a line through and holds back the rest.
        assert_eq!(throttle.admit_at(u64::MAX - MS), Some(0));
        assert_eq!(throttle.admit_at(u64::MAX - 1), None);
    }

    #[test]
    fn admit_reads_the_time_since_the_throttle_was_made() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 1);
    }
}
