//! Checks per second on one `redis-server`: the raw ceiling of one `EVALSHA` per check, the
//! store sending each check in its own call (`max_batch(1)`), and the coalescing store with one
//! call in flight, two (the default) and four (`calls_in_flight`), and the default with an
//! `expiry_step` of a second, over 10 000 keys and over one hot key, with 1, 16 and 256 checks
//! in flight.
//!
//! ```sh
//! cargo bench --features redis --bench redis -- --noplot
//! ```
//!
//! Runs on a private `redis-server` (or `REDIS_URL`, where the round trips per check are not
//! counted). The quota is wide, so every check runs the script and is allowed: neither the deny
//! cache nor a denial is what is measured.
//!
//! Every contender gets the same callers, the same key sequence, the same runtime and one
//! multiplexed connection. Criterion measures the contenders one after another; on a busy
//! machine a burst of other work can land on one of them, so the bench then prints a table from
//! interleaved rounds of a fixed length (every caller busy until the round ends, each round
//! starting with another contender): the median round's rate with the lowest and highest, the
//! latency of one check (median over rounds of each round's p50 and p99), the `EVALSHA` calls
//! Redis ran per check (`INFO commandstats`), and the CPU time per check of this process (the
//! client: every thread, from `/proc/self/stat`) and of Redis (`INFO cpu`) over all rounds:
//! steadier figures than the rate on a busy machine.
//!
//! With the `metrics` feature a Prometheus recorder is installed before the stores are built,
//! so that every call and every queued check is recorded as in an application that exports
//! them; the same bench without the feature is the baseline:
//!
//! ```sh
//! benches/compare_revision.py . redis 'RedisStore \(2 in flight\)' --features redis,metrics --base-features redis
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis::aio::MultiplexedConnection;
use tower_ratelimit::{FailurePolicy, KeyBytes, Policy, Quota, RedisStore, Store};

const CONCURRENCY: [usize; 3] = [1, 16, 256];
/// Interleaved rounds per contender, key set and concurrency, and the length of one round.
const ROUNDS: usize = 7;
const ROUND: Duration = Duration::from_millis(300);

/// The key sets: 10 000 keys, or one.
const KEY_SETS: [(&str, u64); 2] = [("10k keys", 10_000), ("hot key", 1)];

/// One check of a contender for the `i`th call over `keys` keys.
type Op = Arc<dyn Fn(u64, u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs `iters` calls of `op` spread over `callers` concurrent tasks; returns the wall time.
async fn drive(iters: u64, callers: usize, keys: u64, op: Op) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let op = Arc::clone(&op);
            let share = iters / callers as u64 + u64::from(caller < iters % callers as u64);
            tokio::spawn(async move {
                for i in 0..share {
                    op(caller * 7919 + i * 31, keys).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// What one round measured.
struct Round {
    /// Checks per second.
    rate: f64,
    p50: Duration,
    p99: Duration,
    checks: u64,
}

/// Runs `op` on `callers` concurrent tasks for `length`, timing every check.
async fn drive_for(length: Duration, callers: usize, keys: u64, op: Op) -> Round {
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut i = 0;
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    op(caller * 7919 + i * 31, keys).await;
                    times.push(sent.elapsed());
                    i += 1;
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Round {
        rate: times.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        checks: times.len() as u64,
    }
}

/// The script's arguments after the key for one check of one policy that admits every check
/// of the bench: least expiry 0; Redis `TIME`; no expiry step (1 µs); one stack of one policy
/// (interval 1 µs, burst 1 000 000, enforced, named `a`); one run of one check of that stack
/// at cost 1.
const WIDE_CHECK: [&str; 12] = [
    "0", "0", "1", "1", "1", "1", "1000000", "0", "a", "1", "1", "1",
];

/// CPU time (user and system) of every thread of this process, from `/proc/self/stat` in clock
/// ticks of `tick` seconds; `None` where there is no such file.
fn process_cpu(tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses: utime and stime are the
    // 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * tick)
}

/// The length of a clock tick of `/proc/self/stat`, in seconds (`getconf CLK_TCK`; 1/100 if
/// that cannot be asked).
fn clock_tick() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8(out.stdout)
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.01, |hz| 1.0 / hz)
}

/// CPU time (user and system) Redis has used, in seconds (`INFO cpu`).
fn redis_cpu(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).unwrap();
    info.lines()
        .filter_map(|line| {
            let value = line
                .strip_prefix("used_cpu_user:")
                .or_else(|| line.strip_prefix("used_cpu_sys:"))?;
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    // Before any store is built: a store registers its handles when it is built.
    #[cfg(feature = "metrics")]
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder is installed");
    let redis = support::redis_url();
    let url = redis.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wide = Quota::with_period(Duration::from_micros(1)).allow_burst(1_000_000);
    let raw: MultiplexedConnection = rt.block_on(async {
        redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    });
    let sha: Arc<str> = redis::Script::new(RedisStore::SCRIPT).get_hash().into();

    // A store with these settings, checking one policy whose quota admits every check.
    let store_op = |max_batch: usize, calls_in_flight: usize, expiry_step: Duration| -> Op {
        let store = rt
            .block_on(
                RedisStore::builder()
                    .url(&url)
                    .prefix("bench")
                    .on_failure(FailurePolicy::Deny)
                    .timeout(Duration::from_secs(5))
                    .max_batch(max_batch)
                    .calls_in_flight(calls_in_flight)
                    .expiry_step(expiry_step)
                    .build(),
            )
            .unwrap();
        let stack = Arc::new(store.register(&[Policy::new("a", wide)]).unwrap());
        Arc::new(move |i: u64, keys: u64| {
            let (store, stack) = (store.clone(), Arc::clone(&stack));
            Box::pin(async move {
                let key = (i % keys).key_bytes();
                let decisions = store.check(&stack, key.as_bytes(), 1).await.unwrap();
                assert!(decisions.is_allowed());
            })
        })
    };
    // The store's call for one check by hand: the same key, arguments and reply, nothing
    // around it.
    let raw_op = |conn: MultiplexedConnection, sha: Arc<str>| -> Op {
        Arc::new(move |i: u64, keys: u64| {
            let (mut conn, sha) = (conn.clone(), Arc::clone(&sha));
            Box::pin(async move {
                let reply: Vec<u8> = redis::cmd("EVALSHA")
                    .arg(&*sha)
                    .arg(1)
                    .arg(format!("{{raw:{}}}", i % keys))
                    .arg(&WIDE_CHECK[..])
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(reply.len(), 16, "the time and the TAT, 8 bytes each");
            })
        })
    };
    let exact = Duration::ZERO;
    let contenders: [(&str, Op); 6] = [
        ("raw EVALSHA", raw_op(raw.clone(), Arc::clone(&sha))),
        ("RedisStore max_batch(1)", store_op(1, 1, exact)),
        ("coalescing, 1 in flight", store_op(128, 1, exact)),
        ("RedisStore (2 in flight)", store_op(128, 2, exact)),
        ("coalescing, 4 in flight", store_op(128, 4, exact)),
        (
            "default, expiry_step 1 s",
            store_op(128, 2, Duration::from_secs(1)),
        ),
    ];
    // Loads the script for the raw calls.
    rt.block_on(async {
        let mut conn = raw.clone();
        let _: String = redis::Script::new(RedisStore::SCRIPT)
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (set, keys) in KEY_SETS {
        for callers in CONCURRENCY {
            for (name, op) in &contenders {
                group.bench_function(format!("{name}/{set}/{callers}"), |b| {
                    b.iter_custom(|iters| rt.block_on(drive(iters, callers, keys, Arc::clone(op))))
                });
            }
        }
    }
    group.finish();

    let own = match &redis {
        support::TestRedis::Own(server) => Some(server),
        support::TestRedis::External(_) => None,
    };
    let evalsha = || own.map(|server| support::command_calls(&mut server.connection(), "evalsha"));
    let redis_cpu = || own.map(|server| redis_cpu(&mut server.connection()));
    let tick = clock_tick();
    println!(
        "\ninterleaved: {ROUNDS} rounds of {} ms per row; thousand checks/s as median \
         (lowest-highest), latency of one check as the median over rounds of p50 / p99 in µs, \
         EVALSHA calls per check, CPU µs per check of this process and of Redis over all rounds",
        ROUND.as_millis()
    );
    println!(
        "{:<9} {:>7} | {:<24} | {:>22} | {:>16} | {:>9} | {:>15}",
        "keys", "callers", "contender", "k checks/s", "p50 / p99 µs", "calls", "client / Redis"
    );
    for (set, keys) in KEY_SETS {
        for callers in CONCURRENCY {
            let mut rounds: Vec<Vec<(Round, Option<u64>)>> =
                (0..contenders.len()).map(|_| Vec::new()).collect();
            // CPU seconds of the client and of Redis per contender, over its rounds.
            let mut cpu = vec![(Some(0.0), Some(0.0)); contenders.len()];
            for round in 0..ROUNDS {
                for n in 0..contenders.len() {
                    let which = (round + n) % contenders.len();
                    let op = Arc::clone(&contenders[which].1);
                    let before = (evalsha(), process_cpu(tick), redis_cpu());
                    let measured = rt.block_on(drive_for(ROUND, callers, keys, op));
                    let calls = evalsha()
                        .zip(before.0)
                        .map(|(after, before)| after - before);
                    let spent = |after: Option<f64>, before: Option<f64>, sum: Option<f64>| {
                        Some(sum? + after? - before?)
                    };
                    let (client, redis) = cpu[which];
                    cpu[which] = (
                        spent(process_cpu(tick), before.1, client),
                        spent(redis_cpu(), before.2, redis),
                    );
                    rounds[which].push((measured, calls));
                }
            }
            for (((name, _), rounds), (client, redis)) in contenders.iter().zip(&rounds).zip(&cpu) {
                let checks: u64 = rounds.iter().map(|(r, _)| r.checks).sum();
                let per_check = |seconds: &Option<f64>| match seconds {
                    Some(s) => format!("{:.2}", s * 1e6 / checks as f64),
                    None => "-".to_owned(),
                };
                let cpu = format!("{} / {}", per_check(client), per_check(redis));
                let rates: Vec<f64> = rounds.iter().map(|(r, _)| r.rate / 1e3).collect();
                let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let high = rates.iter().copied().fold(0.0, f64::max);
                let p50 = median(rounds.iter().map(|(r, _)| r.p50).collect());
                let p99 = median(rounds.iter().map(|(r, _)| r.p99).collect());
                let calls: Option<(u64, u64)> = rounds
                    .iter()
                    .map(|(r, calls)| calls.map(|c| (c, r.checks)))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.iter().fold((0, 0), |(c, n), (dc, dn)| (c + dc, n + dn)));
                let calls = match calls {
                    Some((calls, checks)) => format!("{:.3}", calls as f64 / checks as f64),
                    None => "-".to_owned(),
                };
                println!(
                    "{set:<9} {callers:>7} | {name:<24} | {:>8.1} ({:>5.1}-{:>5.1}) | {:>7.0} / {:>6.0} | {calls:>9} | {cpu:>15}",
                    median(rates.clone()),
                    low,
                    high,
                    p50.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6,
                );
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
