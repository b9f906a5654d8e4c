//! The GCRA of a stack of policies as one Lua script, and its reply.

use std::time::Duration;

use smallvec::SmallVec;

use crate::gcra::Cell;
use crate::{Decision, Decisions, Quota};

/// The stack GCRA of [`gcra`](crate::gcra) in microseconds, for a batch of checks decided one
/// after another in one call; one Redis key per policy, all keys of a call in one hash slot.
///
/// KEYS: the keys of every check of the batch, in order, one per policy, each holding its TAT.
/// ARGV: the least expiry in ms (0 but in clock mode, where Redis's own clock, which runs the
/// expiry, is not the clock of the TATs); then for each check: its number of policies, its cost
/// (0 asks what a cost-1 check would answer, writing nothing), its time in µs (an empty string
/// for Redis `TIME`, read once per call), and for each policy its interval (µs), burst and
/// shadow flag (1 or 0).
///
/// Reply, for each check in order: `{admitted (1 or 0), now (µs), wait (µs)}` followed, per
/// policy, by `{allowed (1, 0, or -1 when the cost exceeds the burst), remaining, retry_after
/// (µs), reset_after (µs), TAT (µs)}`. Enforced policies are all-or-nothing: each takes the cost
/// only if all conform; shadow policies are decided one by one. A denial and a peek write
/// nothing; a conforming check writes the new TAT with an expiry at the moment the key is back
/// to a full burst, before the next check of the batch reads it.
pub(super) const GCRA_LUA: &str = r#"
local min_px = tonumber(ARGV[1]) or 0
local clock
local out = {}
local k = 0
local a = 1
while a < #ARGV do
  local n = tonumber(ARGV[a + 1])
  local cost = tonumber(ARGV[a + 2])
  local now = tonumber(ARGV[a + 3])
  if not now then
    if not clock then
      if redis.replicate_commands then redis.replicate_commands() end
      local t = redis.call('TIME')
      clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
    end
    now = clock
  end
  local step = cost
  if step == 0 then step = 1 end
  local head = #out
  out[head + 1] = 1
  out[head + 2] = now
  out[head + 3] = 0
  for i = 1, n do
    local p = a + 3 * i
    local interval = tonumber(ARGV[p + 1])
    local burst = tonumber(ARGV[p + 2])
    local window = interval * burst
    local tat = tonumber(redis.call('GET', KEYS[k + i])) or now
    if tat < now then tat = now end
    local room = window - (tat - now)
    local left = 0
    if room > 0 then left = math.floor(room / interval) end
    local allowed, wait = 1, 0
    if step > burst then
      allowed = -1
    elseif tat + step * interval - now > window then
      allowed, wait = 0, tat + step * interval - now - window
    end
    if allowed ~= 1 and ARGV[p + 3] ~= '1' then
      out[head + 1] = 0
      if wait > out[head + 3] then out[head + 3] = wait end
    end
    local base = #out
    out[base + 1] = allowed
    out[base + 2] = left
    out[base + 3] = wait
    out[base + 4] = tat - now
    out[base + 5] = tat
  end
  if cost > 0 then
    -- Take the cost from each policy that conformed, if every enforced one did; a shadow policy
    -- takes it on its own. The reply so far holds each policy's state as it was.
    for i = 1, n do
      local p = a + 3 * i
      local base = head + 3 + 5 * (i - 1)
      if out[base + 1] == 1 and (out[head + 1] == 1 or ARGV[p + 3] == '1') then
        local interval = tonumber(ARGV[p + 1])
        local window = interval * tonumber(ARGV[p + 2])
        local next = out[base + 5] + step * interval
        local ahead = next - now
        redis.call('SET', KEYS[k + i], string.format('%.0f', next), 'PX', math.max(math.ceil(ahead / 1000), min_px))
        out[base + 2] = math.floor((window - ahead) / interval)
        out[base + 4] = ahead
        out[base + 5] = next
      end
    end
  end
  k = k + n
  a = a + 3 + 3 * n
end
return out
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) decisions: Decisions,
    /// Each policy's TAT after the check, in µs.
    pub(super) tats: SmallVec<[u64; 2]>,
    /// The script's time in µs.
    pub(super) now: u64,
}

impl Reply {
    /// How many values the script answers for one check of a stack of `policies`.
    pub(super) fn width(policies: usize) -> usize {
        3 + 5 * policies
    }

    /// Reads the script's reply for a stack of `cells`; `None` if it is not one.
    pub(super) fn parse(values: &[i64], cells: &[Cell]) -> Option<Reply> {
        let micros = |v: i64| u64::try_from(v).ok();
        let [admitted, now, wait, rest @ ..] = values else {
            return None;
        };
        if rest.len() != 5 * cells.len() {
            return None;
        }
        let (now, wait) = (micros(*now)?, micros(*wait)?);
        let mut each = SmallVec::new();
        let mut tats = SmallVec::new();
        let mut over_burst = false;
        for (part, cell) in rest.chunks_exact(5).zip(cells) {
            let &[allowed, remaining, retry_after, reset_after, tat] = part else {
                return None;
            };
            let burst = cell.quota.burst();
            let remaining = u32::try_from(remaining).ok()?;
            let reset_after = Duration::from_micros(micros(reset_after)?);
            let decision = match allowed {
                1 => Decision::allowed(burst, remaining, reset_after),
                0 => Decision::denied(
                    burst,
                    remaining,
                    Duration::from_micros(micros(retry_after)?),
                    reset_after,
                ),
                -1 => {
                    over_burst |= !cell.shadow;
                    Decision::denied(burst, remaining, Duration::MAX, reset_after)
                }
                _ => return None,
            };
            each.push(decision);
            tats.push(micros(tat)?);
        }
        let admitted = match admitted {
            1 => true,
            0 => false,
            _ => return None,
        };
        // A cost that can never conform waits forever, as in memory.
        let wait = if over_burst {
            u64::MAX
        } else {
            wait.saturating_mul(1000)
        };
        Some(Reply {
            decisions: Decisions::from_parts(admitted, wait, each),
            tats,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(quota: Quota, shadow: bool) -> Cell {
        Cell { quota, shadow }
    }

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
        let cells = [cell(Quota::per_second(2), false)];
        let denied = Reply::parse(&[0, 1500, 500, 0, 1, 500, 1500, 3000], &cells).unwrap();
        assert_eq!(
            denied.decisions,
            Decisions::new(
                false,
                [Decision::denied(
                    2,
                    1,
                    Duration::from_micros(500),
                    Duration::from_micros(1500)
                )]
            )
        );
        assert_eq!((denied.now, &denied.tats[..]), (1500, &[3000][..]));
        let over = Reply::parse(&[0, 9, 0, -1, 0, 0, 0, 9], &cells).unwrap();
        assert_eq!(over.decisions.retry_after(), Duration::from_nanos(u64::MAX));
        assert_eq!(Reply::parse(&[1, 2, 3], &cells), None);
        assert_eq!(Reply::parse(&[1, 0, 0, 1, -2, 0, 0, 0], &cells), None);
        assert_eq!(Reply::parse(&[1, 0, 0, 7, 0, 0, 0, 0], &cells), None);
    }
}
