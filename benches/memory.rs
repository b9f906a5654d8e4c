//! `MemoryStore::check_now` against `governor`'s keyed limiter with the same quota, and a
//! two-policy stack (both policies with that quota) against the one-policy check.
//!
//! Both limiters are filled with 1, 1 000 or 1 000 000 keys before timing, and every timed
//! check takes the next key in turn; ours writes the key's bytes (the address as text) on each
//! check, as the layer does. "allow" uses a quota that admits every check of the run;
//! "reject" uses a quota whose burst every key has already spent. The two-thread cases time
//! both threads together: the figure is wall time divided by the checks of both threads.
//!
//! With one key, "atomic-cas" is the floor of any limiter that writes a key's state on every
//! allowed check: a bare compare-and-swap loop on one `AtomicU64`, the key's cache line moving
//! between the threads and nothing else. "clock-cas" reads the store's default clock first and
//! moves the word to at least that time: the floor of an exact GCRA check, which needs the time
//! of every check (both limiters here read the CPU's time stamp counter through `quanta`).
//!
//! ```text
//! cargo bench --bench memory -- --warm-up-time 1 --measurement-time 3
//! MEMORY_ROUNDS=9 cargo bench --bench memory -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The "flood" group times what a client rotating keys costs: a check of a key never seen
//! against a check of a known one, with room for the new key (the cap far off, keys going idle
//! a microsecond after their check, as a flood of one-off keys leaves them) and at the cap
//! (every tracked key busy for an hour: each new key is decided on the overflow budget, spent
//! before timing starts). `MEMORY_FLOOD=<case>:<checks>` runs only `<checks>` checks of one
//! case on one thread and exits, for an instruction count:
//!
//! ```text
//! cargo bench --bench memory -- flood --warm-up-time 1 --measurement-time 3
//! MEMORY_FLOOD_ROUNDS=15 cargo bench --bench memory     # interleaved rounds only
//! MEMORY_FLOOD=new-at-cap:1000000 valgrind --tool=callgrind target/release/deps/memory-<hash>
//! ```
//!
//! With `MEMORY_ROUNDS=n`, each case is also timed in `n` interleaved rounds after criterion's
//! group (every contender in turn, `ROUND_CHECKS` checks each) and the median round of each
//! contender is printed in a `rounds:` line: on a shared machine whose load drifts, contenders
//! timed side by side in every round compare better than criterion's runs of one after another.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use tower_ratelimit::{
    Clock, KeyBuf, KeyBytes, MemoryStack, MemoryStore, MonotonicClock, Policy, Quota, Store,
};

const KEY_COUNTS: [usize; 3] = [1, 1_000, 1_000_000];
/// A burst so deep that no run of the benchmark can spend it.
const DEEP_BURST: u32 = 1_000_000_000;
/// Cells each key takes when filled in for the allow path: enough to keep the key's
/// theoretical arrival time ahead of the clock for the whole run, so that no key goes idle.
const FILL_COST: u32 = 1_000_000;

#[derive(Clone, Copy)]
enum Path {
    Allow,
    Reject,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Allow => "allow",
            Path::Reject => "reject",
        }
    }

    /// The quota as (interval, burst), and the cost each key takes before timing starts.
    fn setup(self) -> (Duration, u32, u32) {
        match self {
            // Window of 1 000 000 s; each key starts 1 000 s ahead and each check moves it 1 ms.
            Path::Allow => (Duration::from_millis(1), DEEP_BURST, FILL_COST),
            // One cell an hour, spent before timing starts.
            Path::Reject => (Duration::from_secs(3600), 1, 1),
        }
    }
}

fn keys(n: usize) -> Vec<IpAddr> {
    (0..n as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect()
}

trait Limiter: Sync {
    fn check(&self, key: &IpAddr) -> bool;
}

struct Ours {
    store: MemoryStore,
    stack: MemoryStack,
}

impl Limiter for Ours {
    #[inline]
    fn check(&self, key: &IpAddr) -> bool {
        check_ip(&self.store, &self.stack, key)
    }
}

/// Writes the key's bytes and checks them, as the layer does for every request.
#[inline]
fn check_ip(store: &MemoryStore, stack: &MemoryStack, key: &IpAddr) -> bool {
    let mut bytes = KeyBuf::new();
    key.write_key(&mut bytes);
    store.check_now(stack, bytes.as_bytes(), 1).is_allowed()
}

struct Governor(DefaultKeyedRateLimiter<IpAddr>);

/// One word that every check moves forward with a compare-and-swap, whatever the key.
struct AtomicCas(AtomicU64);

impl Limiter for AtomicCas {
    #[inline]
    fn check(&self, _key: &IpAddr) -> bool {
        advance(&self.0, |current| current + 1);
        true
    }
}

/// Moves `word` to `next` of its value with a compare-and-swap loop.
#[inline]
fn advance(word: &AtomicU64, next: impl Fn(u64) -> u64) {
    let mut current = word.load(Ordering::Relaxed);
    loop {
        match word.compare_exchange_weak(
            current,
            next(current),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// The floor of an exact GCRA check: read the clock, then move one word to at least that time
/// with a compare-and-swap, whatever the key; no lookup, no lock.
struct ClockCas {
    clock: MonotonicClock,
    tat: AtomicU64,
}

impl Limiter for ClockCas {
    #[inline]
    fn check(&self, _key: &IpAddr) -> bool {
        let now = self.clock.now_nanos();
        advance(&self.tat, |tat| tat.max(now) + 1);
        true
    }
}

impl ClockCas {
    fn new() -> Self {
        ClockCas {
            clock: MonotonicClock::new(),
            tat: AtomicU64::new(0),
        }
    }
}

impl Limiter for Governor {
    #[inline]
    fn check(&self, key: &IpAddr) -> bool {
        self.0.check_key(key).is_ok()
    }
}

fn ours(path: Path, keys: &[IpAddr], policies: usize) -> Ours {
    let (interval, burst, fill) = path.setup();
    let quota = Quota::with_period(interval).allow_burst(burst);
    let stack: Vec<Policy> = (0..policies)
        .map(|i| Policy::new(format!("bench-{i}"), quota))
        .collect();
    // Room for every key: at the cap, new keys would share one overflow budget instead.
    let store = MemoryStore::builder()
        .max_keys(4 * keys.len().max(1_000))
        .build()
        .expect("a valid store");
    let stack = store.register(&stack).expect("a fresh store");
    for key in keys {
        let decisions = store.check_now(&stack, key.key_bytes().as_bytes(), fill);
        assert!(decisions.is_allowed(), "the fill fits the burst");
    }
    assert_eq!(store.len(), keys.len());
    Ours { store, stack }
}

/// Two policies with the path's quota, stacked.
fn ours_stacked(path: Path, keys: &[IpAddr]) -> Ours {
    ours(path, keys, 2)
}

fn governor(path: Path, keys: &[IpAddr]) -> Governor {
    let (interval, burst, fill) = path.setup();
    let quota = governor::Quota::with_period(interval)
        .expect("nonzero interval")
        .allow_burst(NonZeroU32::new(burst).expect("nonzero burst"));
    let limiter = RateLimiter::keyed(quota);
    let fill = NonZeroU32::new(fill).expect("nonzero fill");
    for key in keys {
        assert!(matches!(limiter.check_key_n(key, fill), Ok(Ok(()))));
    }
    Governor(limiter)
}

/// Runs `iters` checks split across `threads` threads, each cycling through all keys from its
/// own starting point, and returns the wall time.
fn run<L: Limiter + ?Sized>(
    limiter: &L,
    keys: &[IpAddr],
    expect: bool,
    threads: usize,
    iters: u64,
) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let work = |t: usize| {
        let mut i = t * keys.len() / threads;
        for _ in 0..per_thread {
            let allowed = limiter.check(black_box(&keys[i]));
            debug_assert_eq!(allowed, expect);
            black_box(allowed);
            i += 1;
            if i == keys.len() {
                i = 0;
            }
        }
    };
    if threads == 1 {
        let start = Instant::now();
        work(0);
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let work = &work;
                s.spawn(move || {
                    barrier.wait();
                    work(t);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().expect("bench thread");
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    for path in [Path::Allow, Path::Reject] {
        let expect = matches!(path, Path::Allow);
        for &n in &KEY_COUNTS {
            let keys = keys(n);
            let ours = ours(path, &keys, 1);
            let stacked = ours_stacked(path, &keys);
            let governor = governor(path, &keys);
            // Sanity: the limiters answer as the path says before anything is timed.
            assert_eq!(ours.check(&keys[0]), expect);
            assert_eq!(stacked.check(&keys[0]), expect);
            assert_eq!(governor.check(&keys[0]), expect);
            for threads in [1, 2] {
                let mut group = c.benchmark_group(format!("check/{}/{threads}t", path.name()));
                group.throughput(Throughput::Elements(1));
                group.bench_function(BenchmarkId::new("tower-ratelimit", n), |b| {
                    b.iter_custom(|iters| run(&ours, &keys, expect, threads, iters))
                });
                group.bench_function(BenchmarkId::new("governor", n), |b| {
                    b.iter_custom(|iters| run(&governor, &keys, expect, threads, iters))
                });
                group.bench_function(BenchmarkId::new("tower-ratelimit-2-policies", n), |b| {
                    b.iter_custom(|iters| run(&stacked, &keys, expect, threads, iters))
                });
                if n == 1 && expect {
                    let cas = AtomicCas(AtomicU64::new(0));
                    group.bench_function(BenchmarkId::new("atomic-cas", n), |b| {
                        b.iter_custom(|iters| run(&cas, &keys, expect, threads, iters))
                    });
                    let clock_cas = ClockCas::new();
                    group.bench_function(BenchmarkId::new("clock-cas", n), |b| {
                        b.iter_custom(|iters| run(&clock_cas, &keys, expect, threads, iters))
                    });
                }
                group.finish();
                if let Some(rounds) = rounds() {
                    let cas = AtomicCas(AtomicU64::new(0));
                    let clock_cas = ClockCas::new();
                    let mut contenders: Vec<(&str, &dyn Limiter)> = vec![
                        ("tower-ratelimit", &ours),
                        ("governor", &governor),
                        ("tower-ratelimit-2-policies", &stacked),
                    ];
                    if n == 1 && expect {
                        contenders.push(("atomic-cas", &cas));
                        contenders.push(("clock-cas", &clock_cas));
                    }
                    let medians = interleaved(&contenders, &keys, expect, threads, rounds);
                    let line: Vec<String> = contenders
                        .iter()
                        .zip(&medians)
                        .map(|((name, _), ns)| format!("{name} {ns:.1}"))
                        .collect();
                    println!(
                        "rounds: {}/{threads}t/{n}: {} ns (median of {rounds})",
                        path.name(),
                        line.join(", ")
                    );
                }
            }
            // The timed checks must all have taken the path they are named after.
            assert_eq!(ours.check(&keys[0]), expect, "quota spent during the run");
            assert_eq!(
                governor.check(&keys[0]),
                expect,
                "quota spent during the run"
            );
        }
    }
}

/// Checks per contender and round of the interleaved rounds.
const ROUND_CHECKS: u64 = 400_000;

/// How many interleaved rounds `MEMORY_ROUNDS` asks for, if any.
fn rounds() -> Option<usize> {
    std::env::var("MEMORY_ROUNDS").ok()?.parse().ok()
}

/// Times every contender in turn, `rounds` times, and returns each one's median round in ns per
/// check.
fn interleaved(
    contenders: &[(&str, &dyn Limiter)],
    keys: &[IpAddr],
    expect: bool,
    threads: usize,
    rounds: usize,
) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(rounds); contenders.len()];
    for _ in 0..rounds {
        for ((_, limiter), times) in contenders.iter().zip(&mut times) {
            let elapsed = run(*limiter, keys, expect, threads, ROUND_CHECKS);
            times.push(elapsed.as_nanos() as f64 / ROUND_CHECKS as f64);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// A case of the flood group: a store, its stack, the keys its checks take, and the answer
/// every check gets.
struct FloodCase {
    name: &'static str,
    store: MemoryStore,
    stack: MemoryStack,
    /// Known keys cycled through, or `None` for a key never seen on every check.
    known: Option<Vec<IpAddr>>,
    /// The first address not yet handed out as a new key.
    next_new: AtomicU64,
    expect: bool,
}

const FLOOD_CASES: [&str; 4] = ["known-allow", "known-reject", "new-below-cap", "new-at-cap"];
/// Tracked keys of the known cases, and the cap of the full store.
const FLOOD_KEYS: usize = 1_000;

impl FloodCase {
    fn new(name: &'static str) -> FloodCase {
        let known = keys(FLOOD_KEYS);
        let (quota, max_keys, fill, expect) = match name {
            "known-allow" => (
                Quota::with_period(Duration::from_millis(1)).allow_burst(DEEP_BURST),
                4 * FLOOD_KEYS,
                FILL_COST,
                true,
            ),
            "known-reject" => (Quota::per_hour(1), 4 * FLOOD_KEYS, 1, false),
            // Every new key is admitted and idle a microsecond later.
            "new-below-cap" => (
                Quota::with_period(Duration::from_micros(1)).allow_burst(1),
                1_000_000,
                0,
                true,
            ),
            "new-at-cap" => (Quota::per_hour(1), FLOOD_KEYS, 1, false),
            _ => panic!("no flood case {name}: one of {FLOOD_CASES:?}"),
        };
        let store = MemoryStore::builder()
            .max_keys(max_keys)
            .build()
            .expect("a valid store");
        let stack = store
            .register(&[Policy::new("flood", quota)])
            .expect("a fresh store");
        let case = FloodCase {
            name,
            store,
            stack,
            known: None,
            next_new: AtomicU64::new(0x4000_0000),
            expect,
        };
        if fill == 0 {
            return case;
        }
        // Tracks keys until the store is full or holds every known key; at the cap, the keys
        // that found their shard full spend the overflow budget.
        let mut tracked = 0u32;
        while case.store.len() < FLOOD_KEYS.min(max_keys) {
            let key = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + tracked));
            let _ = case
                .store
                .check_now(&case.stack, key.key_bytes().as_bytes(), fill);
            tracked += 1;
            assert!(tracked < 1_000_000, "the store never filled");
        }
        FloodCase {
            known: (max_keys > FLOOD_KEYS).then_some(known),
            ..case
        }
    }

    #[inline]
    fn check(&self, key: &IpAddr) -> bool {
        check_ip(&self.store, &self.stack, key)
    }

    /// Runs `iters` checks split across `threads` threads and returns the wall time.
    fn run(&self, threads: usize, iters: u64) -> Duration {
        if let Some(known) = &self.known {
            return run(self, known, self.expect, threads, iters);
        }
        let per_thread = iters.div_ceil(threads as u64);
        let work = |first: u64| {
            for i in first..first + per_thread {
                let key = IpAddr::V4(Ipv4Addr::from(i as u32));
                let allowed = self.check(black_box(&key));
                debug_assert_eq!(allowed, self.expect);
                black_box(allowed);
            }
        };
        let firsts: Vec<u64> = (0..threads)
            .map(|_| self.next_new.fetch_add(per_thread, Ordering::Relaxed))
            .collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            for &first in &firsts[1..] {
                let work = &work;
                s.spawn(move || work(first));
            }
            work(firsts[0]);
        });
        start.elapsed()
    }
}

impl Limiter for FloodCase {
    #[inline]
    fn check(&self, key: &IpAddr) -> bool {
        FloodCase::check(self, key)
    }
}

fn flood(c: &mut Criterion) {
    let cases: Vec<FloodCase> = FLOOD_CASES.into_iter().map(FloodCase::new).collect();
    for case in &cases {
        // Sanity: every case answers as it says before anything is timed.
        case.run(1, 10);
        let probe = IpAddr::V4(Ipv4Addr::from(0x0a00_0000));
        if case.known.is_some() {
            assert_eq!(case.check(&probe), case.expect, "{}", case.name);
        }
    }
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("flood/{threads}t"));
        group.throughput(Throughput::Elements(1));
        for case in &cases {
            group.bench_function(case.name, |b| {
                b.iter_custom(|iters| case.run(threads, iters))
            });
        }
        group.finish();
        if let Some(rounds) = rounds() {
            flood_rounds(&cases, threads, rounds);
        }
    }
    for case in &cases {
        let probe = IpAddr::V4(Ipv4Addr::from(0x0a00_0000));
        if case.known.is_some() {
            assert_eq!(case.check(&probe), case.expect, "{}", case.name);
        }
    }
}

/// Times every flood case in turn, `rounds` times, and prints each one's median round with
/// the lowest and highest, in ns per check.
fn flood_rounds(cases: &[FloodCase], threads: usize, rounds: usize) {
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (case, times) in cases.iter().zip(&mut times) {
            let elapsed = case.run(threads, ROUND_CHECKS);
            times.push(elapsed.as_nanos() as f64 / ROUND_CHECKS as f64);
        }
    }
    let line: Vec<String> = cases
        .iter()
        .zip(times)
        .map(|(case, mut t)| {
            t.sort_by(f64::total_cmp);
            format!(
                "{} {:.1} ({:.1}-{:.1})",
                case.name,
                t[t.len() / 2],
                t[0],
                t[t.len() - 1]
            )
        })
        .collect();
    println!(
        "rounds: flood/{threads}t: {} ns (median, lowest-highest of {rounds})",
        line.join(", ")
    );
}

/// `MEMORY_FLOOD=<case>:<checks>`: that many checks of one flood case on one thread, nothing
/// else.
fn flood_count() -> Option<(&'static str, u64)> {
    let spec = std::env::var("MEMORY_FLOOD").ok()?;
    let (name, checks) = spec.split_once(':')?;
    let name = FLOOD_CASES.into_iter().find(|case| *case == name)?;
    Some((name, checks.parse().ok()?))
}

fn main() {
    if let Ok(rounds) = std::env::var("MEMORY_FLOOD_ROUNDS") {
        let rounds = rounds
            .parse()
            .expect("MEMORY_FLOOD_ROUNDS is a number of rounds");
        let cases: Vec<FloodCase> = FLOOD_CASES.into_iter().map(FloodCase::new).collect();
        for case in &cases {
            // At the cap, spends what may be left of the overflow budget.
            case.run(1, 10);
        }
        for threads in [1, 2] {
            flood_rounds(&cases, threads, rounds);
        }
        return;
    }
    if let Some((name, checks)) = flood_count() {
        let case = FloodCase::new(name);
        case.run(1, checks);
        println!("{name}: {checks} checks");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    flood(&mut c);
    c.final_summary();
}
