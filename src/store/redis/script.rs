//! The GCRA of a stack of policies as one Lua script, and its reply.

use std::time::Duration;

use smallvec::SmallVec;

use crate::gcra::{self, Cell};
use crate::{Decisions, Quota};

/// The stack GCRA of [`gcra`](crate::gcra) in microseconds, for a batch of checks decided one
/// after another in one call; one Redis key per limited key, holding the TAT of each policy
/// that limits it, all keys of a call on one Redis Cluster primary (declared, in one hash slot;
/// or named in the arguments).
/// [`RedisStore::SCRIPT`](super::RedisStore::SCRIPT) describes its keys, arguments and reply.
///
/// A key's value is its policies' records, one after another: the policy's name, a zero byte,
/// and its TAT as a little-endian double. A record whose TAT has passed (in clock mode, by more
/// than the least expiry) says no more than no record, a full burst, and is left out when the
/// key is written; a value that is not such records counts as none (as a missing key).
///
/// The least expiry is 0 but in clock mode, where Redis's own clock, which runs the expiry, is
/// not the clock of the TATs. The caller decides each check from the TATs the script found, as
/// the script did: enforced policies are all-or-nothing, each taking the cost only if all
/// conform; a shadow policy never denies, and takes the cost of an admitted check that it
/// conforms to. A denial and a peek write nothing; a conforming check moves the TAT, which
/// the next check of the batch reads, and each key is written once, after the last check, with
/// its records and an expiry at the moment its last policy is back to a full burst rounded up
/// to a multiple of the expiry step (1 µs unless the store has one), the expiry left as it is
/// (`KEEPTTL`) when the rounded moment is the one the key had: a conforming check always moves
/// a TAT, so with a step of 1 µs every write moves it.
///
/// Checks are sent in runs of one stack and one cost, and the call's time is answered once: a
/// batch of like checks, the common case under load, costs Redis one key per check and no
/// argument or answer of its own.
pub(super) const GCRA_LUA: &str = r#"
-- A call to one Redis Cluster primary for keys of several of its slots declares no key (the
-- keys a call declares must share a slot) and names them first: `node`, their number, the
-- keys; the other arguments follow.
local by_node = ARGV[1] == 'node'
local named = 0
if by_node then named = tonumber(ARGV[2]) + 2 end
-- Redis's time, read first: Redis 7.2 and later add a written key's expiry to the time the
-- call began, so the checks' time must be as close to that as can be.
local timed = ARGV[named + 2] == '1'
local clock = 0
if not timed then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local keys, args = KEYS, ARGV
if by_node then
  keys, args = {}, {}
  for i = 3, named do keys[i - 2] = ARGV[i] end
  for i = named + 1, #ARGV do args[#args + 1] = ARGV[i] end
end
local min_px = tonumber(args[1]) or 0
local step_us = tonumber(args[3]) or 1
local count = tonumber(args[4])
-- Policy names by id and ids by name: the stacks' policies first, then the names met in the
-- keys' values.
local names, ids = {}, {}
local function id_of(name)
  local id = ids[name]
  if not id then
    id = #names + 1
    names[id] = name
    ids[name] = id
  end
  return id
end
local stacks = {}
local a = 5
for s = 1, count do
  local n = tonumber(args[a])
  local stack = {}
  for i = 1, n do
    local b = a + 4 * i - 3
    local interval = tonumber(args[b])
    local burst = tonumber(args[b + 1])
    stack[i] = {interval, burst, interval * burst, args[b + 2] == '1', id_of(args[b + 3])}
  end
  stacks[s] = stack
  a = a + 1 + 4 * n
end
-- Every key is read once, up front (in parts of 4000: Lua unpacks at most about 8000 values).
local stored
if by_node then
  -- A command in a script reaches one slot: a read per key.
  stored = {}
  for i = 1, #keys do stored[i] = redis.call('GET', keys[i]) end
elseif #keys <= 4000 then
  stored = redis.call('MGET', unpack(keys))
else
  stored = {}
  for from = 1, #keys, 4000 do
    local part = redis.call('MGET', unpack(keys, from, math.min(from + 3999, #keys)))
    for i = 1, #part do stored[from + i - 1] = part[i] end
  end
end
-- Per key, once a check comes to it: its records, the TAT of each policy id or false (where
-- the checks after a conforming one read the TAT it took), the latest TAT it had, whether a
-- check took from it and, in clock mode, the time of the check that took last. A key's
-- records are an array made with room for four policies: no table grows for a common stack.
local records = {}
local latest_had = {}
local written = {}
local taken_at = {}
local unpack_tat = struct.unpack
local find, sub = string.find, string.sub
local function read(key, value)
  local found = {false, false, false, false}
  local latest
  if type(value) == 'string' then
    local at, size = 1, #value
    while at <= size do
      local nul = find(value, '\0', at, true)
      -- Not records: as no value.
      if not nul or nul + 8 > size then return read(key, nil) end
      local tat = unpack_tat('<d', value, nul + 1)
      found[id_of(sub(value, at, nul - 1))] = tat
      if not latest or tat > latest then latest = tat end
      at = nul + 9
    end
  end
  records[key] = found
  if latest then latest_had[key] = latest end
  return found
end
local out = {clock}
local o = 1
local tats = {}
local k = 0
-- The checks come in runs of one stack and one cost: the run's length, its stack and its
-- cost, then in clock mode the time of each of its checks.
while a <= #args do
  local run = tonumber(args[a])
  local stack = stacks[tonumber(args[a + 1])]
  local cost = tonumber(args[a + 2])
  a = a + 3
  local step = cost
  if step == 0 then step = 1 end
  for _ = 1, run do
    local now = clock
    if timed then
      now = tonumber(args[a])
      a = a + 1
    end
    if #stack > 0 then
      k = k + 1
      local key = keys[k]
      local found = records[key] or read(key, stored[k])
      local admit = true
      for i = 1, #stack do
        local p = stack[i]
        local tat = found[p[5]] or now
        if tat < now then tat = now end
        tats[i] = tat
        o = o + 1
        out[o] = tat
        if not p[4] and (step > p[2] or tat + step * p[1] - now > p[3]) then admit = false end
      end
      if cost > 0 then
        for i = 1, #stack do
          local p = stack[i]
          local next = tats[i] + step * p[1]
          if admit and step <= p[2] and next - now <= p[3] then
            found[p[5]] = next
            written[key] = true
            if timed then taken_at[key] = now end
          end
        end
      end
    end
  end
end
-- Each key taken from once, with the records that have not passed. Its expiry is the moment
-- its latest TAT passes rounded up to the step (1 µs: not rounded), left as it is when the
-- latest TAT it had rounds to the same (never without a step: a conforming check moves a TAT
-- past the one it had).
local ceil, max = math.ceil, math.max
local pack = struct.pack
for key in pairs(written) do
  local now = taken_at[key] or clock
  local kept_after = now - min_px * 1000
  local found = records[key]
  local value = ''
  local latest = now
  for id = 1, #names do
    local tat = found[id]
    if tat and tat > kept_after then
      value = value .. pack('<sd', names[id], tat)
      if tat > latest then latest = tat end
    end
  end
  local had = latest_had[key]
  if step_us > 1 and had and latest <= ceil(had / step_us) * step_us then
    redis.call('SET', key, value, 'KEEPTTL')
  else
    local px = max(ceil((ceil(latest / step_us) * step_us - now) / 1000), min_px)
    redis.call('PSETEX', key, string.format('%d', px), value)
  end
end
-- One string of little-endian doubles (exact: every value is an integer below 2^53), in parts
-- of 4000 as above: one bulk string costs Redis and the client less than an integer each.
local packed = {}
for from = 1, #out, 4000 do
  local to = math.min(from + 3999, #out)
  packed[#packed + 1] = pack('<' .. string.rep('d', to - from + 1), unpack(out, from, to))
end
return table.concat(packed)
"#;

/// The values of the script's answer, one string of little-endian doubles, as Redis would have
/// answered them as integers (a Lua number to a Redis integer: truncated toward zero, and
/// `i64::MIN` for what no `i64` holds, which no check takes for a TAT); `None` if `packed` is
/// not whole doubles.
pub(super) fn unpack(packed: &[u8]) -> Option<Vec<i64>> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    let (values, []) = packed.as_chunks::<8>() else {
        return None;
    };
    let values = values.iter().map(|&bytes| {
        let value = f64::from_le_bytes(bytes);
        match value > -LIMIT && value < LIMIT {
            true => value as i64,
            false => i64::MIN,
        }
    });
    Some(values.collect())
}

/// The largest window the script accepts: Lua numbers are doubles, and Unix time in µs plus the
/// window must stay exact (below 2^53).
pub(super) const MAX_WINDOW_MICROS: u64 = 1 << 52;

/// In clock mode, the times before which the script counts exactly: a time below 2^52 µs plus a
/// window of at most [`MAX_WINDOW_MICROS`] stays below 2^53, as does every TAT and sum the
/// script compares (Redis `TIME`, Unix time, is far below).
pub(super) const MAX_CLOCK_MICROS: u64 = 1 << 52;

/// A quota in the script's unit: the interval rounded up to whole microseconds, so the coarser
/// unit never admits more than the quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MicroQuota {
    pub(super) interval: u64,
    pub(super) burst: u32,
}

/// Why a quota cannot be counted in the script's microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NotMicro {
    /// The window is too long for the script's doubles.
    Window,
    /// Rounded up to whole microseconds, the interval would be this many, more than 1 % above
    /// the quota's: the rate counted would be that much lower.
    Coarse(u64),
}

impl MicroQuota {
    /// The quota with its interval rounded up to whole microseconds, if that moves it by at
    /// most 1 % and the window fits the script.
    pub(super) fn new(quota: &Quota) -> Result<Self, NotMicro> {
        let nanos = quota.interval_nanos();
        let interval = nanos.div_ceil(1000);
        if interval * 1000 - nanos > nanos / 100 {
            return Err(NotMicro::Coarse(interval));
        }
        interval
            .checked_mul(u64::from(quota.burst()))
            .filter(|&window| window <= MAX_WINDOW_MICROS)
            .ok_or(NotMicro::Window)?;
        Ok(MicroQuota {
            interval,
            burst: quota.burst(),
        })
    }

    /// The same quota in nanoseconds, for the arithmetic in [`gcra`](crate::gcra).
    pub(super) fn to_quota(self) -> Quota {
        Quota::with_period(Duration::from_micros(self.interval)).allow_burst(self.burst)
    }
}

/// What the script answered for one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) decisions: Decisions,
    /// Each policy's TAT after the check, in ns of the script's clock.
    pub(super) tats: SmallVec<[u64; 2]>,
    /// The script's time in ns.
    pub(super) now: u64,
}

impl Reply {
    /// Decides a check of `cost` on a stack of `cells` from the script's answer for it, as the
    /// script did: its time `now` and the TAT it `found` for each policy, in µs; `None` if the
    /// answer is not one.
    pub(super) fn parse(now: i64, found: &[i64], cells: &[Cell], cost: u32) -> Option<Reply> {
        let nanos = |v: i64| u64::try_from(v).ok()?.checked_mul(1000);
        if found.len() != cells.len() {
            return None;
        }
        let now = nanos(now)?;
        let mut tats = found
            .iter()
            .map(|&tat| nanos(tat))
            .collect::<Option<SmallVec<[u64; 2]>>>()?;
        let decisions = gcra::decide_stack(cells, &mut tats, now, cost);
        Some(Reply {
            decisions,
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
        // Whole microseconds however fast, or within 1 %: 90 909 ns is counted as 91 µs.
        assert_eq!(
            MicroQuota::new(&Quota::per_second(1_000_000))
                .unwrap()
                .interval,
            1
        );
        assert_eq!(
            MicroQuota::new(&Quota::per_second(11_000))
                .unwrap()
                .interval,
            91
        );
    }

    #[test]
    fn intervals_that_rounding_would_move_by_more_than_one_percent_are_refused() {
        // 333 ns counted as 1 µs would be a third of the rate; 29 411 ns as 30 µs, 2 % less.
        assert_eq!(
            MicroQuota::new(&Quota::per_second(3_000_000)),
            Err(NotMicro::Coarse(1))
        );
        assert_eq!(
            MicroQuota::new(&Quota::per_second(34_000)),
            Err(NotMicro::Coarse(30))
        );
        assert_eq!(
            MicroQuota::new(&Quota::per_second(1_000_000_000)),
            Err(NotMicro::Coarse(1))
        );
    }

    #[test]
    fn windows_beyond_exact_doubles_are_refused() {
        // 144 years: within a quota's longest window (2^62 ns), past the script's (2^52 µs).
        let long = Quota::with_period(Duration::from_secs(3600 * 24 * 365)).allow_burst(144);
        assert_eq!(MicroQuota::new(&long), Err(NotMicro::Window));
        let kept = Quota::with_period(Duration::from_secs(3600 * 24 * 365)).allow_burst(142);
        assert!(MicroQuota::new(&kept).is_ok());
    }

    #[test]
    fn replies_are_decided_as_the_script_decided_or_refused() {
        let cells = [cell(Quota::per_second(2), false)];
        // At 1 000 µs with the TAT at 1 500 µs: one cell of two is used.
        let reply = Reply::parse(1_000, &[1_500], &cells, 1).unwrap();
        assert!(reply.decisions.is_allowed());
        assert_eq!(reply.decisions.as_slice()[0].remaining(), 0);
        assert_eq!(
            (reply.now, &reply.tats[..]),
            (1_000_000, &[501_500_000][..])
        );
        let denied = Reply::parse(1_000, &[1_000_001_000], &cells, 1).unwrap();
        assert!(!denied.decisions.is_allowed());
        assert_eq!(denied.tats[0], 1_000_001_000_000, "a denial moves nothing");
        let over = Reply::parse(9, &[9], &cells, 3).unwrap();
        assert_eq!(over.decisions.retry_after(), Duration::from_nanos(u64::MAX));
        assert_eq!(Reply::parse(1, &[2, 3], &cells, 1), None);
        assert_eq!(Reply::parse(1, &[], &cells, 1), None);
        assert_eq!(Reply::parse(1, &[-2], &cells, 1), None);
        assert_eq!(Reply::parse(-1, &[2], &cells, 1), None);
    }
}
