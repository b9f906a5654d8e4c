#!/usr/bin/env bash
# A flood of distinct API keys through the policies example (examples/policies.rs, in memory),
# run as a real process and driven by wrk: every request carries an `x-api-key` that no request
# carried before, so every request is a fresh key for the store. Checks that the server's peak
# resident set (VmHWM in /proc/<pid>/status) stays within the documented bound,
#
#     PER_KEY_BYTES x max keys + 32 MiB
#
# and that every request was answered: no socket error or timeout in wrk (2 s timeout), and no
# answer other than 200 or 429. Exits non-zero if either fails. The example is built with the
# `metrics` feature so that the store's key gauge can be read from /metrics once a second; the
# highest reading is printed as the peak of tracked keys.
#
# usage: benches/flood.sh        (KEYS=5000000 MAX_KEYS= PER_KEY_BYTES=320 THREADS=1
#                                 CONNECTIONS=32 CHUNK=30 PORT=3012 KEY_BYTES=)
#
# KEY_BYTES pads every API key to that many bytes (the store keeps a key longer than 64 bytes
# as a 39-byte digest, so the bound is the same).
# MAX_KEYS empty means the example's default, the store's default cap of 1 000 000 keys.
# wrk runs in chunks of at most CHUNK seconds, each with keys of its own, until KEYS requests
# have been answered; the last chunk is sized from the rate of the ones before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS=${KEYS:-5000000}
MAX_KEYS=${MAX_KEYS:-}
PER_KEY_BYTES=${PER_KEY_BYTES:-320}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
CHUNK=${CHUNK:-30}
PORT=${PORT:-3012}
SLACK=$((32 << 20))

source benches/preflight.sh
need wrk wrk
need curl curl
free_ports PORT
cargo build --release --features metrics --example policies >&2
server=${CARGO_TARGET_DIR:-target}/release/examples/policies

work=$(mktemp -d)
pid=
poller=
cleanup() {
    [ -n "$poller" ] && kill "$poller" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

PORT=$PORT MAX_KEYS=$MAX_KEYS "$server" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 0.05
done
kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
max_keys=${MAX_KEYS:-1000000}
bound=$((PER_KEY_BYTES * max_keys + SLACK))

kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
start_rss=$(kib "$pid" VmRSS)

# The store's key gauge, once a second; the highest reading is kept.
(
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
        keys=$(curl -s "http://127.0.0.1:$PORT/metrics" |
            awk '$1 == "ratelimit_memory_keys" {printf "%d", $2}')
        if [ -n "$keys" ] && [ "$keys" -gt "$peak" ]; then
            peak=$keys
            echo "$peak" >"$work/peak_keys"
        fi
        sleep 1
    done
) &
poller=$!

answered=0 sent=0 ok=0 limited=0 other=0 errors=0 timeouts=0 chunk=0 seconds=0
duration=$CHUNK
while [ "$answered" -lt "$KEYS" ]; do
    # A key per request: the chunk, the thread and a counter.
    out=$(KEY_PREFIX="c$chunk" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${duration}s" \
        -s benches/fresh_keys.lua "http://127.0.0.1:$PORT/")
    line=$(echo "$out" | grep '^fresh_keys ')
    field() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
    answered=$((answered + $(field requests)))
    sent=$((sent + $(field sent)))
    ok=$((ok + $(field ok)))
    limited=$((limited + $(field limited)))
    other=$((other + $(field other)))
    errors=$((errors + $(field socket_errors)))
    timeouts=$((timeouts + $(field timeouts)))
    seconds=$((seconds + duration))
    chunk=$((chunk + 1))
    echo "chunk $chunk: ${duration}s, $answered of $KEYS answered, server RSS" \
        "$(kib "$pid" VmRSS) KiB, peak $(kib "$pid" VmHWM) KiB" >&2
    kill -0 "$pid" 2>/dev/null || { echo "the server died" >&2; cat "$work/server.log" >&2; exit 1; }
    rate=$((answered / seconds + 1))
    duration=$(((KEYS - answered) / rate + 1))
    [ "$duration" -gt "$CHUNK" ] && duration=$CHUNK
done

peak_kib=$(kib "$pid" VmHWM)
end_kib=$(kib "$pid" VmRSS)
peak_keys=$(cat "$work/peak_keys" 2>/dev/null || echo "?")
peak=$((peak_kib * 1024))

echo "keys sent:        $sent (distinct), in $chunk wrk runs of -t$THREADS -c$CONNECTIONS, ${seconds}s"
echo "requests:         $answered answered: $ok 200, $limited 429, $other other"
echo "unanswered:       $errors socket errors, $timeouts timeouts"
echo "tracked keys:     peak $peak_keys (gauge read once a second), cap $max_keys"
echo "server RSS:       start $start_rss KiB, end $end_kib KiB, peak (VmHWM) $peak_kib KiB = $peak bytes"
echo "bound:            $PER_KEY_BYTES x $max_keys + 32 MiB = $bound bytes"
status=0
if [ "$peak" -gt "$bound" ]; then
    echo "FAIL: the peak resident set is above the bound" >&2
    status=1
fi
if [ "$errors" -ne 0 ] || [ "$timeouts" -ne 0 ] || [ "$other" -ne 0 ]; then
    echo "FAIL: requests went unanswered or were answered other than 200 or 429" >&2
    status=1
fi
[ "$status" -eq 0 ] && echo "ok: within the bound, every request answered"
exit "$status"
