//! Resident memory per tracked key of `MemoryStore`: fills a store to its cap with distinct keys
//! and reads the growth of this process's resident set (`VmRSS`) and of its peak (`VmHWM`) in
//! `/proc/self/status`, divided by the number of keys.
//!
//! ```sh
//! cargo bench --bench key_memory                 # caps of 10 000, 100 000 and 1 000 000 keys
//! cargo bench --bench key_memory -- 5000000      # one cap of your choice
//! ```
//!
//! Each case runs in a fresh process (this program started again with the case as arguments),
//! so that memory freed by one case is not counted by the next. The clock is a manual one that
//! never moves: no key ever becomes idle, so the store ends up holding exactly its cap, the
//! worst case of a flood of fresh keys. Keys are written as the `policies` example writes an API key
//! (`key:` and the header's bytes); `policies` is how many policies have checked each key (2 is
//! the example's free tier). Linux only.

use std::process::Command;

use tower_ratelimit::{ManualClock, MemoryStore, Policy, Quota, Store};

/// The kinds of keys measured: how many policies check each, and how long its API key is.
/// With `key:`, 13, 40, 64 (the longest key kept as it is) and 200 bytes (kept as a digest).
const SHAPES: [(usize, usize); 5] = [(2, 9), (1, 9), (2, 36), (2, 60), (2, 196)];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if let [keys, policies, key_len] = &args[..] {
        let parse = |s: &String| s.parse::<usize>().expect("a whole number");
        measure(parse(keys), parse(policies), parse(key_len));
        return;
    }
    let caps: Vec<usize> = match args.first() {
        Some(cap) => vec![cap.parse().expect("the cap: a whole number of keys")],
        None => vec![10_000, 100_000, 1_000_000],
    };
    let me = std::env::current_exe().expect("the path of this program");
    println!("keys       policies  key bytes  RSS growth/key  peak growth/key");
    for cap in caps {
        for (policies, key_len) in SHAPES {
            let status = Command::new(&me)
                .args([cap, policies, key_len].map(|n| n.to_string()))
                .status()
                .expect("this program, started again");
            assert!(
                status.success(),
                "the case {cap} {policies} {key_len} failed"
            );
        }
    }
}

/// Fills a store capped at `keys` with `keys` keys checked by `policies` policies, with API keys
/// of `key_len` bytes, and prints the memory each key took.
fn measure(keys: usize, policies: usize, key_len: usize) {
    let store = MemoryStore::builder()
        .clock(ManualClock::new())
        .max_keys(keys)
        .build()
        .expect("a valid cap");
    let stack: Vec<Policy> = [("per-second", "2/s; burst=4"), ("per-minute", "10/min")]
        .into_iter()
        .take(policies)
        .map(|(name, quota)| Policy::new(name, quota.parse::<Quota>().expect("a quota")))
        .collect();
    let stack = store.register(&stack).expect("a stack");
    let mut key = Vec::with_capacity(4 + key_len);
    // Writing 5 resets the peak to the resident set now (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs (Linux 4.0+)");
    let rss = status_kib("VmRSS");
    // The cap is shared out between shards, so filling every shard takes a few more keys than
    // the cap; the keys that find their shard full share the overflow budget.
    let mut n = 0u64;
    while store.len() < keys {
        for _ in 0..1024 {
            key.clear();
            key.extend_from_slice(b"key:");
            key.extend_from_slice(format!("{n:0key_len$}").as_bytes());
            store.check_now(&stack, &key, 1);
            n += 1;
        }
    }
    let per_key = |after: u64, before: u64| (after - before) as f64 * 1024.0 / keys as f64;
    println!(
        "{keys:<10} {policies:<9} {:<10} {:>14.1} {:>16.1}",
        4 + key_len,
        per_key(status_kib("VmRSS"), rss),
        per_key(status_kib("VmHWM"), rss),
    );
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}
