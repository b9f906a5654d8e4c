//! A flood of fresh API keys through the app of `examples/policies.rs` on a real socket: every
//! request is answered (200 or 429, nothing else), the store tracks no more than its cap, and
//! the resident memory of this process grows by no more than the cap's worth of keys.
//!
//! The store's clock is a manual one that never moves, so no key ever becomes idle: the table
//! fills to its cap and stays there, the worst case. Requests are pipelined on raw keep-alive
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
/// Keep-alive connections, and requests written at once on each.
const CONNECTIONS: usize = 4;
const BATCH: usize = 256;

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

/// Sends `GET path` on one connection, `BATCH` requests at a time, one request for each number
/// of `keys` (with the API key `flood-<number>` when `with_key`), and counts the answers.
async fn send(
    addr: SocketAddr,
    path: &str,
    keys: std::ops::Range<usize>,
    with_key: bool,
) -> Answers {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut answers = Answers::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut requests = Vec::with_capacity(BATCH * 80);
    let mut next = keys.start;
    while next < keys.end {
        let batch = BATCH.min(keys.end - next);
        requests.clear();
        for n in next..next + batch {
            requests
                .extend_from_slice(format!("GET {path} HTTP/1.1\r\nhost: flood\r\n").as_bytes());
            if with_key {
                requests.extend_from_slice(format!("x-api-key: flood-{n}\r\n").as_bytes());
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
/// key of its own when `with_key`, numbered from 0.
async fn flood(addr: SocketAddr, path: &str, count: usize, with_key: bool) -> Answers {
    let share = count.div_ceil(CONNECTIONS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let path = path.to_owned();
            let keys = i * share..((i + 1) * share).min(count);
            tokio::spawn(async move { send(addr, &path, keys, with_key).await })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_api_keys_is_answered_within_the_memory_of_the_cap() {
    let store = MemoryStore::builder()
        .clock(ManualClock::new())
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    let policies = policies::Policies::new(false).unwrap();
    let app = policies::app(store.clone(), policies).unwrap();
    let (addr, server) = common::serve(app).await;

    // Warm up the connections and the server's buffers on the bypassed health check, which
    // tracks no key; then take the resident set as the base and reset the peak to it (writing
    // 5 to clear_refs, Linux 4.0 and later).
    let warm_up = flood(addr, "/health", 4 * CONNECTIONS * BATCH, false).await;
    assert_eq!(warm_up.ok, 4 * CONNECTIONS * BATCH);
    assert!(store.is_empty());
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs (Linux 4.0+)");
    let base = status_bytes("VmRSS");

    let answers = flood(addr, "/", FLOOD, true).await;
    let peak = status_bytes("VmHWM");
    server.abort();

    // Each tracked key got its first request; past the cap, the fresh keys shared one overflow
    // budget of the free tier's burst of 4 (the clock never moves), and got 429 after that.
    assert_eq!(
        answers,
        Answers {
            ok: MAX_KEYS + 4,
            limited: FLOOD - MAX_KEYS - 4,
            other: 0,
        }
    );
    assert_eq!(store.len(), MAX_KEYS);
    let growth = peak.saturating_sub(base);
    let bound = PER_KEY_BYTES * MAX_KEYS as u64 + SLACK;
    assert!(
        growth <= bound,
        "the peak resident set grew by {growth} bytes over {base} during a flood of {FLOOD} keys; \
         the bound for {MAX_KEYS} keys is {bound} ({PER_KEY_BYTES} bytes a key + {SLACK}), and \
         a table that kept every key would take about {} bytes",
        PER_KEY_BYTES * FLOOD as u64
    );
    eprintln!(
        "{FLOOD} keys, cap {MAX_KEYS}: peak resident set {base} + {growth} bytes (bound +{bound})"
    );
}
