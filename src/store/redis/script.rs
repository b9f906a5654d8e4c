//! The GCRA as one Lua script, and its reply.

use std::time::Duration;

use crate::{Decision, Quota};

/// The GCRA of [`gcra`](crate::gcra) in microseconds, on one key holding the TAT.
///
/// KEYS[1]: the key. ARGV: interval (µs), burst, cost (0 asks what a cost-1 check would answer,
/// writing nothing), the time in µs or an empty string to read Redis `TIME`, and the least
/// expiry in ms (0 but in clock mode, where Redis's own clock, which runs the expiry, is not
/// the clock of the TATs).
/// Reply: {allowed (1, 0, or -1 when cost > burst), remaining, retry_after (µs),
/// reset_after (µs), TAT (µs), now (µs)}. A denial and a peek write nothing; a conforming check
/// writes the new TAT with an expiry at the moment the key is back to a full burst.
pub(super) const GCRA_LUA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local min_px = tonumber(ARGV[5]) or 0
if not now then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if cost > burst then
  return {-1, 0, 0, 0, 0, now}
end
local window = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local function remaining(t)
  local room = window - (t - now)
  if room <= 0 then return 0 end
  return math.floor(room / interval)
end
local step = cost
if step == 0 then step = 1 end
local next = tat + step * interval
local ahead = next - now
if ahead > window then
  return {0, remaining(tat), ahead - window, tat - now, tat, now}
end
if cost == 0 then
  return {1, remaining(tat), 0, tat - now, tat, now}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(math.ceil(ahead / 1000), min_px))
return {1, remaining(next), 0, ahead, next, now}
"#;

/// The largest window the script accepts: Lua numbers are doubles, and Unix time in µs plus the
/// window must stay exact (below 2^53).
pub(super) const MAX_WINDOW_MICROS: u64 = 1 << 52;

/// A quota in the script's unit: the interval rounded up to whole microseconds, so the coarser
/// unit never admits more than the quota.
#[derive(Clone, Copy, Debug)]
pub(super) struct MicroQuota {
    pub(super) interval: u64,
    pub(super) burst: u32,
}

impl MicroQuota {
    /// `None` if the window is too long for the script.
    pub(super) fn new(quota: &Quota) -> Option<Self> {
        let interval = quota.interval_nanos().div_ceil(1000);
        let window = interval.checked_mul(u64::from(quota.burst()))?;
        (window <= MAX_WINDOW_MICROS).then_some(MicroQuota {
            interval,
            burst: quota.burst(),
        })
    }

    /// The same quota in nanoseconds, for the arithmetic in [`gcra`](crate::gcra).
    pub(super) fn to_quota(self) -> Quota {
        Quota::with_period(Duration::from_micros(self.interval)).allow_burst(self.burst)
    }
}

/// What the script answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// The decision, the key's TAT after the check and the script's time, both in µs.
    Decided {
        decision: Decision,
        tat: u64,
        now: u64,
    },
    /// The cost exceeded the burst.
    OverBurst,
}

impl Reply {
    /// Reads the script's reply; `None` if it is not one.
    pub(super) fn parse(values: &[i64], burst: u32) -> Option<Reply> {
        let &[allowed, remaining, retry_after, reset_after, tat, now] = values else {
            return None;
        };
        let micros = |v: i64| u64::try_from(v).ok();
        let (retry_after, reset_after) = (micros(retry_after)?, micros(reset_after)?);
        let (tat, now) = (micros(tat)?, micros(now)?);
        let remaining = u32::try_from(remaining).ok()?;
        let decision = match allowed {
            1 => Decision::allowed(burst, remaining, Duration::from_micros(reset_after)),
            0 => Decision::denied(
                burst,
                remaining,
                Duration::from_micros(retry_after),
                Duration::from_micros(reset_after),
            ),
            -1 => return Some(Reply::OverBurst),
            _ => return None,
        };
        Some(Reply::Decided { decision, tat, now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_up_to_whole_microseconds() {
        let q = MicroQuota::new(&Quota::per_second(3)).unwrap();
        assert_eq!(q.interval, 333_334);
        assert_eq!(q.burst, 3);
        assert_eq!(q.to_quota().interval_nanos(), 333_334_000);
        let exact = MicroQuota::new(&Quota::per_second(100)).unwrap();
        assert_eq!(exact.interval, 10_000);
    }

    #[test]
    fn windows_beyond_exact_doubles_are_refused() {
        let long = Quota::with_period(Duration::from_secs(3600 * 24 * 365)).allow_burst(200);
        assert!(MicroQuota::new(&long).is_none());
    }

    #[test]
    fn replies_are_read_or_refused() {
        let denied = Reply::parse(&[0, 1, 500, 1500, 3000, 1500], 2).unwrap();
        assert_eq!(
            denied,
            Reply::Decided {
                decision: Decision::denied(
                    2,
                    1,
                    Duration::from_micros(500),
                    Duration::from_micros(1500)
                ),
                tat: 3000,
                now: 1500,
            }
        );
        assert_eq!(
            Reply::parse(&[-1, 0, 0, 0, 0, 9], 2),
            Some(Reply::OverBurst)
        );
        assert_eq!(Reply::parse(&[1, 2, 3], 2), None);
        assert_eq!(Reply::parse(&[1, -2, 0, 0, 0, 0], 2), None);
        assert_eq!(Reply::parse(&[7, 0, 0, 0, 0, 0], 2), None);
    }
}
