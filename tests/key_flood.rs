//! A flood of fresh API keys through the app of `examples/policies.rs` on a real socket: every
//! request is answered (200 or 429, nothing else), the store tracks no more than its cap, and
//! the resident memory of this process grows by no more than the cap's worth of keys.
//!
//! The store's clock is a manual one that never moves, so no key ever becomes idle: the table
//! fills to its cap and stays there, the worst case. The keys are short, as API keys are, or
//! 4 KiB long, as a client that chooses its key can make them: the bound is the same. Requests are pipelined on raw keep-alive
//! connections so that a debug build gets through them in seconds. The long run, with a real
//! clock and 5 000 000 keys against the example's binary, is `benches/flood.sh`.
#![cfg(target_os = "linux")]

mod common;
#[path = "../examples/policies.rs"]
#[allow(dead_code)]
mod policies;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ratelimit::{ManualClock, MemoryStore};

/// The store's cap in this test.
const MAX_KEYS: usize = 10_000;
/// Distinct API keys sent: sixteen times the cap. A table that kept them all would take about
/// `FLOOD * PER_KEY_BYTES`, far above the bound.
const FLOOD: usize = 160_000;
/// Resident bytes per tracked key of the example's free tier (two policies, a key of up to 24
/// bytes), rounded up from what `cargo bench --bench key_memory` measures (BENCHES.md).
const PER_KEY_BYTES: u64 = 320;
/// What the process may grow by besides the keys: connection buffers, the allocator's slack.
const SLACK: u64 = 8 << 20;
/// Keep-alive connections, and requests written at once on each (fewer when they are long,
/// so that the requests in flight stay small next to the bound).
const CONNECTIONS: usize = 4;
const BATCH: usize = 256;
const BATCH_BYTES: usize = 256 * 1024;

/// How the answers came out.
#[derive(Debug, Default, PartialEq)]
struct Answers {
    ok: usize,
    limited: usize,
    other: usize,
}

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The length of the response at the start of `buf` and its status, once it is all there.
fn parse_response(buf: &[u8]) -> Option<(usize, u16)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).expect("a response head in ASCII");
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let body = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    (buf.len() >= head_end + body).then_some((head_end + body, status))
}

/// The API keys of a flood.
#[derive(Clone, Copy)]
enum Keys {
    /// `flood-<number>`.
    Short,
    /// `flood-<number>` padded to this many bytes.
    Long(usize),
}

/// Sends `GET path` on one connection, a batch of requests at a time, one request for each
/// number of `keys` (with that number's API key, if any), and counts the answers.
async fn send(addr: SocketAddr, path: &str, keys: std::ops::Range<usize>, key: Keys) -> Answers {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut answers = Answers::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let request_len = match key {
        Keys::Long(len) => len + 64,
        Keys::Short => 80,
    };
    let batch_len = (BATCH_BYTES / request_len).clamp(1, BATCH);
    let mut requests = Vec::with_capacity(batch_len * request_len);
    let mut next = keys.start;
    while next < keys.end {
        let batch = batch_len.min(keys.end - next);
        requests.clear();
        for n in next..next + batch {
            requests
                .extend_from_slice(format!("GET {path} HTTP/1.1\r\nhost: flood\r\n").as_bytes());
            match key {
                Keys::Short => {
                    requests.extend_from_slice(format!("x-api-key: flood-{n}\r\n").as_bytes())
                }
                Keys::Long(len) => {
                    requests.extend_from_slice(format!("x-api-key: {n:x<len$}\r\n").as_bytes())
                }
            }
            requests.extend_from_slice(b"\r\n");
        }
        next += batch;
        conn.write_all(&requests).await.unwrap();
        let mut pending = batch;
        while pending > 0 {
            while let Some((len, status)) = parse_response(&buf) {
                buf.drain(..len);
                pending -= 1;
                match status {
                    200 => answers.ok += 1,
                    429 => answers.limited += 1,
                    _ => answers.other += 1,
                }
                if pending == 0 {
                    break;
                }
            }
            if pending > 0 {
                let mut chunk = [0; 16 * 1024];
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "the server closed the connection with {pending} requests unanswered"
                );
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    assert!(buf.is_empty(), "answers to requests never sent");
    answers
}

/// Sends `count` requests for `path` over `CONNECTIONS` connections at once, each with an API
/// key of its own, numbered from 0.
async fn flood(addr: SocketAddr, path: &str, count: usize, key: Keys) -> Answers {
    let share = count.div_ceil(CONNECTIONS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let path = path.to_owned();
            let keys = i * share..((i + 1) * share).min(count);
            tokio::spawn(async move { send(addr, &path, keys, key).await })
        })
        .collect();
    let mut all = Answers::default();
    for task in tasks {
        let answers = task.await.unwrap();
        all.ok += answers.ok;
        all.limited += answers.limited;
        all.other += answers.other;
    }
    all
}

/// Floods the example's app, on a store capped at `MAX_KEYS`, with `count` requests of fresh
/// API keys; checks that every request is answered as the cap allows and that the peak resident
/// set grows by no more than the cap's worth of keys.
async fn flood_within_the_cap(count: usize, key: Keys) {
    // The memory measured is the whole process's: one flood at a time.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = ONE_AT_A_TIME.lock().await;
    let store = MemoryStore::builder()
        .clock(ManualClock::new())
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    let policies = policies::Policies::new(false).unwrap();
    let app = policies::app(store.clone(), policies).unwrap();
    let (addr, server) = common::serve(app).await;

    // Warm up the connections and the server's buffers with requests of the same size on the
    // bypassed health check, which tracks no key; then take the resident set as the base and
    // reset the peak to it (writing 5 to clear_refs, Linux 4.0 and later).
    let warm_up = flood(addr, "/health", 4 * CONNECTIONS * BATCH, key).await;
    assert_eq!(warm_up.ok, 4 * CONNECTIONS * BATCH);
    assert!(store.is_empty());
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs (Linux 4.0+)");
    let base = status_bytes("VmRSS");

    let answers = flood(addr, "/", count, key).await;
    let peak = status_bytes("VmHWM");
    server.abort();

    // Each tracked key got its first request; past the cap, the fresh keys shared one overflow
    // budget of the free tier's burst of 4 (the clock never moves), and got 429 after that.
    assert_eq!(
        answers,
        Answers {
            ok: MAX_KEYS + 4,
            limited: count - MAX_KEYS - 4,
            other: 0,
        }
    );
    assert_eq!(store.len(), MAX_KEYS);
    let growth = peak.saturating_sub(base);
    let bound = PER_KEY_BYTES * MAX_KEYS as u64 + SLACK;
    assert!(
        growth <= bound,
        "the peak resident set grew by {growth} bytes over {base} during a flood of {count} keys; \
         the bound for {MAX_KEYS} keys is {bound} ({PER_KEY_BYTES} bytes a key + {SLACK})"
    );
    eprintln!(
        "{count} keys, cap {MAX_KEYS}: peak resident set {base} + {growth} bytes (bound +{bound})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_api_keys_is_answered_within_the_memory_of_the_cap() {
    // A table that kept every key would take about `FLOOD * PER_KEY_BYTES`, far above the bound.
    flood_within_the_cap(FLOOD, Keys::Short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_long_api_keys_takes_no_more_memory_than_short_ones() {
    // Kept as they are, the cap's worth of 4 KiB keys would take 40 MiB, four times the bound:
    // the store keeps a digest of each instead.
    flood_within_the_cap(2 * MAX_KEYS, Keys::Long(4096)).await;
}
