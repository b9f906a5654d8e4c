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
//! between the threads and nothing else.
//!
//! ```text
//! cargo bench --bench memory -- --warm-up-time 1 --measurement-time 3
//! MEMORY_ROUNDS=9 cargo bench --bench memory -- --warm-up-time 1 --measurement-time 3
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

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use tower_ratelimit::{KeyBuf, KeyBytes, MemoryStack, MemoryStore, Policy, Quota, Store};

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
    /// Writes the key's bytes and checks them, as the layer does for every request.
    #[inline]
    fn check(&self, key: &IpAddr) -> bool {
        let mut bytes = KeyBuf::new();
        key.write_key(&mut bytes);
        self.store
            .check_now(&self.stack, bytes.as_bytes(), 1)
            .is_allowed()
    }
}

struct Governor(DefaultKeyedRateLimiter<IpAddr>);

/// One word that every check moves forward with a compare-and-swap, whatever the key.
struct AtomicCas(AtomicU64);

impl Limiter for AtomicCas {
    #[inline]
    fn check(&self, _key: &IpAddr) -> bool {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            match self.0.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
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
                }
                group.finish();
                if let Some(rounds) = rounds() {
                    let cas = AtomicCas(AtomicU64::new(0));
                    let mut contenders: Vec<(&str, &dyn Limiter)> = vec![
                        ("tower-ratelimit", &ours),
                        ("governor", &governor),
                        ("tower-ratelimit-2-policies", &stacked),
                    ];
                    if n == 1 && expect {
                        contenders.push(("atomic-cas", &cas));
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

criterion_group!(benches, bench);
criterion_main!(benches);
