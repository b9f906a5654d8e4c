#!/usr/bin/env bash
# Requests per second of examples/policies.rs in memory and on Redis, through HTTP, in one run:
# two copies of the example (one in memory, one with REDIS_URL on a private redis-server), each
# flooded in turn by wrk with a distinct `x-api-key` per request, so that every request is a
# check of a key no request used before (a two-policy stack: the free tier). Rounds alternate
# which copy goes first. Prints, per copy, the median requests/s with the lowest and highest,
# the server's CPU time per request (utime + stime from /proc), and the median over rounds of
# the Redis copy's rate over the memory copy's rate in the same round; for the Redis copy also
# redis-server's own CPU time per request (`INFO cpu`) and the requests per `EVALSHA` call.
# BASE=<revision> adds a third copy on the same redis-server, the example built at that
# revision (in a git worktree under target/compare/), in the same rounds: two versions of the
# Redis store side by side.
#
# usage: benches/redis_http.sh      (ROUNDS=5 DURATION=5 CONNECTIONS=64 THREADS=1)
#        BASE=bf68a54 ROUNDS=5 benches/redis_http.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
MEMORY_PORT=${MEMORY_PORT:-3021}
REDIS_HTTP_PORT=${REDIS_HTTP_PORT:-3022}
REDIS_PORT=${REDIS_PORT:-6391}
BASE_HTTP_PORT=${BASE_HTTP_PORT:-3023}

source benches/preflight.sh
need wrk wrk
need curl curl
need redis-server redis-server
free_ports MEMORY_PORT REDIS_HTTP_PORT REDIS_PORT BASE_HTTP_PORT
cargo build --release --features redis --example policies >&2
server=${CARGO_TARGET_DIR:-target}/release/examples/policies
if [ -n "${BASE:-}" ]; then
    build_at "$BASE" --release --features redis --example policies
fi
ticks=$(getconf CLK_TCK)

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

PORT=$MEMORY_PORT "$server" >"$work/memory.log" 2>&1 &
memory_pid=$!
pids+=("$memory_pid")
PORT=$REDIS_HTTP_PORT REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "$server" >"$work/redis-http.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
# Each copy: its name, process and port; rounds rotate which goes first.
copies=("memory $memory_pid $MEMORY_PORT" "redis $redis_pid $REDIS_HTTP_PORT")
if [ -n "${BASE:-}" ]; then
    PORT=$BASE_HTTP_PORT REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        "$base_tree/target/release/examples/policies" >"$work/base-http.log" 2>&1 &
    pids+=($!)
    copies+=("redis@$BASE $! $BASE_HTTP_PORT")
fi
for copy in "${copies[@]}"; do
    port=${copy##* }
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# redis-server's CPU seconds and EVALSHA calls so far: "seconds calls".
redis_usage() {
    local cpu calls
    cpu=$(redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' |
        awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" { s += $2 } END { printf "%.6f", s }')
    calls=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
        awk -F'[=,:]' '$1 == "cmdstat_evalsha" { print $3 }')
    echo "$cpu ${calls:-0}"
}

results="$work/results"
measure() { # measure NAME PID PORT ROUND
    local before after out usage_before usage_after
    before=$(cpu_ticks "$2")
    usage_before=$(redis_usage)
    # A key per request: the round, the copy, the thread and a counter.
    out=$(KEY_PREFIX="r$4-$1-" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
        -s benches/fresh_keys.lua "http://127.0.0.1:$3/")
    after=$(cpu_ticks "$2")
    usage_after=$(redis_usage)
    local line requests seconds errors others p99
    line=$(grep '^fresh_keys ' <<<"$out")
    field() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k {print $2}'; }
    requests=$(field requests)
    seconds=$(field seconds)
    errors=$(($(field socket_errors) + $(field timeouts)))
    others=$(($(field limited) + $(field other)))
    p99=$(field p99_us)
    if [ "$errors" != 0 ] || [ "$others" != 0 ]; then
        echo "$1: $errors socket errors or timeouts, $others answers other than 200" >&2
        exit 1
    fi
    awk -v name="$1" -v round="$4" -v r="$requests" -v s="$seconds" -v b="$before" \
        -v a="$after" -v t="$ticks" -v p="$p99" -v ub="$usage_before" -v ua="$usage_after" \
        'BEGIN {
            split(ub, u0, " "); split(ua, u1, " "); calls = u1[2] - u0[2]
            printf "%s %s %.1f %.2f %.0f %.2f %.1f\n", name, round, r / s, (a - b) / t / r * 1e6, p,
                (u1[1] - u0[1]) / r * 1e6, (calls > 0 ? r / calls : 0)
        }' >>"$results"
}

for round in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((${#copies[@]} - 1))); do
        # shellcheck disable=SC2086 # the copy's three words are measure's arguments
        measure ${copies[$(((round - 1 + i) % ${#copies[@]}))]} "$round"
    done
done
names=()
for copy in "${copies[@]}"; do names+=("${copy%% *}"); done

# Medians with plain awk and sort (no gawk-only `asort`: Debian and Ubuntu install mawk).
# stats NAME FIELD: the median, lowest and highest of FIELD over the rounds of copy NAME.
stats() {
    awk -v name="$1" -v field="$2" '$1 == name { print $field }' "$results" | sort -g |
        awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[1], v[NR] }'
}

echo "examples/policies, free tier, a new x-api-key per request; wrk -t$THREADS -c$CONNECTIONS, \
$ROUNDS rounds of ${DURATION}s; median (lowest-highest)"
for name in "${names[@]}"; do
    awk -v name="$name" -v rate="$(stats "$name" 3)" -v cpu="$(stats "$name" 4)" \
        -v p99="$(stats "$name" 5)" 'BEGIN {
            split(rate, r, " "); split(cpu, c, " "); split(p99, q, " ")
            printf "%-14s %9.0f req/s (%.0f-%.0f)   server CPU %6.2f us/req   wrk p99 %.0f us\n",
                name, r[1], r[2], r[3], c[1], q[1]
        }'
done
for name in "${names[@]:1}"; do
    awk -v name="$name" '
        $1 == "memory" { m[$2] = $3 }
        $1 == name { r[$2] = $3 }
        END { for (k in m) print r[k] / m[k] }' "$results" | sort -g | awk -v name="$name" '
        { ratio[NR] = $1 }
        END {
            printf "%s / memory, median over rounds of the ratio within a round: %.0f%% (%.0f%%-%.0f%%)\n",
                name, 100 * ratio[int((NR + 1) / 2)], 100 * ratio[1], 100 * ratio[NR]
        }'
    awk -v name="$name" -v cpu="$(stats "$name" 6)" -v per="$(stats "$name" 7)" 'BEGIN {
        split(cpu, c, " "); split(per, q, " ")
        printf "redis-server CPU %.2f us per request of %s (%.2f-%.2f), %.1f requests per EVALSHA\n",
            c[1], name, c[2], c[3], q[1]
    }'
done
