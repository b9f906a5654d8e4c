//! Checks per second through `RedisStore` with 1, 16 and 256 concurrent callers, for one
//! policy and for a stack of two, against the raw ceiling of the same `EVALSHA` on one
//! multiplexed connection (and `redis-benchmark` pipelining it), and against the two-key float
//! token bucket script of naive limiters.
//!
//! ```sh
//! cargo bench --features redis --bench redis
//! ```
//!
//! Runs on a private `redis-server` (or `REDIS_URL`). Keys are spread over 10 000 names and
//! the quota is wide, so every check runs the script: the deny cache is not what is measured.
//!
//! Every contender gets the same callers, the same key sequence, the same runtime and one
//! multiplexed connection, and waits on one timer per call: the raw calls on the `redis`
//! crate's default response timeout, the store on its own per-check timeout (its connection
//! has no response timeout). Criterion measures the contenders one after another, so on a
//! busy machine a burst of other work can land on one of them; the bench therefore ends with
//! a second table from interleaved rounds of a fixed length (every caller busy until the round
//! ends): the median round of each contender, and the median over rounds of the store's rate
//! over the raw rate of the same round.

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis::aio::MultiplexedConnection;
use tower_ratelimit::store::RedisStack;
use tower_ratelimit::{FailurePolicy, KeyBytes, Policy, Quota, RedisStore, Store};

const KEYS: u64 = 10_000;
const CONCURRENCY: [usize; 3] = [1, 16, 256];
/// Interleaved rounds per contender and concurrency, and the length of one round.
const ROUNDS: usize = 9;
const ROUND: Duration = Duration::from_millis(400);

/// A token bucket as naive limiters write it: two keys, float tokens and a float timestamp.
const TOKEN_BUCKET_LUA: &str = r#"
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = tonumber(redis.call('GET', KEYS[1])) or capacity
local last = tonumber(redis.call('GET', KEYS[2])) or now
tokens = math.min(capacity, tokens + (now - last) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local ttl = math.ceil(capacity / rate) + 1
redis.call('SET', KEYS[1], tokens, 'EX', ttl)
redis.call('SET', KEYS[2], now, 'EX', ttl)
return {allowed, math.floor(tokens)}
"#;

/// One check of a contender for the `i`th call.
type Op = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs `iters` calls of `op` spread over `callers` concurrent tasks; returns the wall time.
async fn drive(iters: u64, callers: usize, op: Op) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let op = Arc::clone(&op);
            let share = iters / callers as u64 + u64::from(caller < iters % callers as u64);
            tokio::spawn(async move {
                for i in 0..share {
                    op(caller * 7919 + i * 31).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Runs `op` on `callers` concurrent tasks for `length`; returns calls per second.
async fn drive_for(length: Duration, callers: usize, op: Op) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let (op, stop, done) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(caller * 7919 + i * 31).await;
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The script's arguments for one policy that admits every check of the bench: interval 1 µs,
/// burst 1 000 000, enforced.
const WIDE: [&str; 3] = ["1", "1000000", "0"];

fn bench(c: &mut Criterion) {
    let redis = support::redis_url();
    let url = redis.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wide = Quota::with_period(Duration::from_micros(1)).allow_burst(1_000_000);
    let (store, raw) = rt.block_on(async {
        let store = RedisStore::builder()
            .url(&url)
            .prefix("bench")
            .on_failure(FailurePolicy::Deny)
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap();
        let raw: MultiplexedConnection = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        (store, raw)
    });
    let one = Arc::new(store.register(&[Policy::new("a", wide)]).unwrap());
    let two = Arc::new(
        store
            .register(&[Policy::new("a", wide), Policy::new("b", wide)])
            .unwrap(),
    );
    let gcra = redis::Script::new(RedisStore::SCRIPT);
    let bucket = redis::Script::new(TOKEN_BUCKET_LUA);
    rt.block_on(async {
        let mut conn = raw.clone();
        gcra.prepare_invoke().load_async(&mut conn).await.unwrap();
        bucket.prepare_invoke().load_async(&mut conn).await.unwrap();
    });
    let gcra_sha = gcra.get_hash().to_owned();
    let bucket_sha = bucket.get_hash().to_owned();

    let store_op = |store: RedisStore, stack: Arc<RedisStack>| -> Op {
        Arc::new(move |i: u64| {
            let (store, stack) = (store.clone(), Arc::clone(&stack));
            Box::pin(async move {
                let key = (i % KEYS).key_bytes();
                let decisions = store.check(&stack, key.as_bytes(), 1).await.unwrap();
                assert!(decisions.is_allowed());
            })
        })
    };
    // The store's call by hand: the same keys, arguments and reply, nothing around it.
    let raw_op = |conn: MultiplexedConnection, sha: Arc<str>, policies: &'static [&str]| -> Op {
        Arc::new(move |i: u64| {
            let (mut conn, sha) = (conn.clone(), Arc::clone(&sha));
            Box::pin(async move {
                let k = i % KEYS;
                let mut call = redis::cmd("EVALSHA");
                call.arg(&*sha).arg(policies.len());
                for policy in policies {
                    call.arg(format!("{{raw:{k}}}:{policy}"));
                }
                call.arg(1).arg("").arg(0);
                for _ in policies {
                    call.arg(&WIDE[..]);
                }
                let reply: Vec<i64> = call.query_async(&mut conn).await.unwrap();
                assert_eq!(reply[0], 1);
            })
        })
    };
    let bucket_op = |conn: MultiplexedConnection, sha: Arc<str>| -> Op {
        Arc::new(move |i: u64| {
            let (mut conn, sha) = (conn.clone(), Arc::clone(&sha));
            Box::pin(async move {
                let k = i % KEYS;
                let reply: Vec<i64> = redis::cmd("EVALSHA")
                    .arg(&*sha)
                    .arg(2)
                    .arg(format!("tb:{{{k}}}:tokens"))
                    .arg(format!("tb:{{{k}}}:ts"))
                    .arg(1_000_000)
                    .arg(1_000_000)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(reply[0], 1);
            })
        })
    };
    let gcra_sha: Arc<str> = gcra_sha.as_str().into();
    let contenders: [(&str, Op); 5] = [
        ("RedisStore", store_op(store.clone(), Arc::clone(&one))),
        (
            "raw EVALSHA",
            raw_op(raw.clone(), Arc::clone(&gcra_sha), &["a"]),
        ),
        ("RedisStore 2-policy stack", store_op(store.clone(), two)),
        (
            "raw EVALSHA 2 keys",
            raw_op(raw.clone(), Arc::clone(&gcra_sha), &["a", "b"]),
        ),
        (
            "float token bucket",
            bucket_op(raw.clone(), bucket_sha.as_str().into()),
        ),
    ];

    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for callers in CONCURRENCY {
        for (name, op) in &contenders {
            group.bench_function(format!("{name}/{callers}"), |b| {
                b.iter_custom(|iters| rt.block_on(drive(iters, callers, Arc::clone(op))))
            });
        }
    }
    group.finish();

    // The same contenders again in interleaved rounds, so that other load on the machine falls
    // on all of them alike.
    println!(
        "\ninterleaved: median of {ROUNDS} rounds of {} ms, thousand checks/s; each store \
         against its raw call, as the median over rounds of the ratio within a round",
        ROUND.as_millis()
    );
    print!("{:>7}", "callers");
    for (name, _) in &contenders {
        print!(" | {name:>w$}", w = name.len().max(8));
    }
    println!(" | store / raw | stack / raw");
    for callers in CONCURRENCY {
        let rounds: Vec<Vec<f64>> = (0..ROUNDS)
            .map(|round| {
                let mut rates = vec![0.0; contenders.len()];
                // Each round starts with another contender, so none always runs first.
                for n in 0..contenders.len() {
                    let which = (round + n) % contenders.len();
                    let op = Arc::clone(&contenders[which].1);
                    rates[which] = rt.block_on(drive_for(ROUND, callers, op));
                }
                rates
            })
            .collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // Each store against its raw call within each round, where both met the same load.
        let ratio =
            |store: usize, raw: usize| median(rounds.iter().map(|r| r[store] / r[raw]).collect());
        print!("{callers:>7}");
        for (which, (name, _)) in contenders.iter().enumerate() {
            let rate = median(rounds.iter().map(|r| r[which]).collect());
            print!(" | {:>w$.1}", rate / 1e3, w = name.len().max(8));
        }
        println!(
            " | {:>10.0}% | {:>10.0}%",
            100.0 * ratio(0, 1),
            100.0 * ratio(2, 3)
        );
    }

    // The server's own ceiling for the same script: redis-benchmark, 256 commands in flight.
    if let support::TestRedis::Own(server) = &redis {
        let port = server.port().to_string();
        for keys in [1, 2] {
            let mut command = Command::new("redis-benchmark");
            command
                .args(["-p", &port, "-n", "300000", "-c", "16", "-P", "16", "-q"])
                .args(["-r", "10000", "EVALSHA", &gcra_sha, &keys.to_string()]);
            for policy in &["a", "b"][..keys] {
                command.arg(format!("{{rb:__rand_int__}}:{policy}"));
            }
            command.args(["1", "", "0"]);
            for _ in 0..keys {
                command.args(WIDE);
            }
            match command.output() {
                Ok(out) => {
                    // Progress lines end in '\r'; the summary is the last one.
                    let text = String::from_utf8_lossy(&out.stdout);
                    let summary = text.rsplit('\r').next().unwrap_or_default().trim();
                    let summary = summary.rsplit(": ").next().unwrap_or(summary);
                    println!(
                        "redis-benchmark, same EVALSHA with {keys} key(s), 16 clients x 16 \
                         pipelined: {summary}"
                    );
                }
                Err(e) => println!("redis-benchmark not run: {e}"),
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
