#!/usr/bin/env bash
# Server CPU time per request of a hello-world axum server (examples/hello_server.rs): bare,
# behind tower-ratelimit and behind tower_governor, on the allow and the reject path, with the
# limiter inside the route (`Router::layer`) and around the whole Router, all in one run. Each
# round runs every variant once, in a rotated order, with wrk on loopback; the figure is the
# server's user + system CPU time over the measured run divided by the requests wrk
# completed, a steadier measure than requests per second on a shared machine. Prints the
# median over rounds with the lowest and highest. "noop" is a layer that does nothing, in the
# route: what axum's `Router::layer` costs any layer before it does anything.
#
# VARIANTS picks some of them ("none allow route;ours reject router"); BASE=<revision> also
# measures each limited variant with the server built at that revision (in a git worktree
# under target/compare/), in the same rounds, to compare two versions side by side.
#
# usage: benches/wrk_cpu.sh            (ROUNDS=3 DURATION=3 CONNECTIONS=16 THREADS=1)
#        BASE=f003d0c VARIANTS="none allow route;ours reject router" ROUNDS=10 benches/wrk_cpu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
PORT=${PORT:-3011}

source benches/preflight.sh
need wrk wrk
need curl curl
need python3 python3
free_ports PORT
cargo build --release --example hello_server >&2
# Where cargo put it: under CARGO_TARGET_DIR when that is set.
server=${CARGO_TARGET_DIR:-target}/release/examples/hello_server
ticks=$(getconf CLK_TCK)
results=$(mktemp)
trap 'rm -f "$results"' EXIT

if [ -n "${VARIANTS:-}" ]; then
    IFS=';' read -ra variants <<<"$VARIANTS"
else
    variants=(
        "none allow route" "noop allow route"
        "ours allow route" "ours allow router" "tower_governor allow route" "tower_governor allow router"
        "ours reject route" "ours reject router" "tower_governor reject route" "tower_governor reject router"
    )
fi
# Each run: the server to start, then the variant.
runs=()
for variant in "${variants[@]}"; do
    runs+=("$server $variant")
done
if [ -n "${BASE:-}" ]; then
    build_at "$BASE" --release --example hello_server
    for variant in "${variants[@]}"; do
        [[ $variant == none* || $variant == noop* ]] || runs+=("$base_tree/target/release/examples/hello_server $variant")
    done
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # measure SERVER LIMITER OUTCOME LAYER
    local binary=$1
    shift
    local label=""
    [ "$binary" = "$server" ] || label="@$BASE"
    LIMITER=$1 OUTCOME=$2 LAYER=$3 PORT=$PORT "$binary" >/dev/null &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.05
    done
    wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "http://127.0.0.1:$PORT/" >/dev/null # warm-up
    local before after out requests
    before=$(cpu_ticks "$pid")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$PORT/")
    after=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    local rps
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    # CPU µs per request, and requests per second.
    awk -v t=$((after - before)) -v hz="$ticks" -v n="$requests" -v rps="$rps" \
        -v name="$1 $2 $3 $label" 'BEGIN { printf "%s %.2f %.0f\n", name, t / hz * 1e6 / n, rps }' >>"$results"
}

for round in $(seq "$ROUNDS"); do
    for i in "${!runs[@]}"; do
        j=$(((i + round) % ${#runs[@]}))
        # shellcheck disable=SC2086
        measure ${runs[$j]}
    done
    echo "round $round done" >&2
done

echo "server CPU per request (µs) and requests/s: median of $ROUNDS rounds (lowest-highest);"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on loopback, $(nproc) CPUs"
printf "%-32s %-24s %-28s %s\n" variant "CPU µs/request" "requests/s" "CPU / bare"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    limiter, outcome, layer, *label, cpu, rps = line.split()
    name = {"none": "bare", "noop": f"no-op layer ({layer})"}.get(limiter, f"{limiter} {outcome} ({layer})")
    name = " ".join([name, *label])
    rows.setdefault(name, []).append((float(cpu), float(rps)))
bare = statistics.median(c for c, _ in rows["bare"]) if "bare" in rows else None
for name, values in sorted(rows.items(), key=lambda row: row[0] != "bare"):
    cpu = [c for c, _ in values]
    rps = [r for _, r in values]
    print(f"{name:<32} {statistics.median(cpu):>6.2f} ({min(cpu):.2f}-{max(cpu):.2f})"
          f"{'':<6} {statistics.median(rps):>8.0f} ({min(rps):.0f}-{max(rps):.0f})"
          f"{'':<4} {statistics.median(cpu) / bare if bare else float('nan'):>5.2f}")
PY
