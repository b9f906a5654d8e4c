#!/usr/bin/env bash
# Server instructions per request of the hello-world axum server (examples/hello_server.rs),
# counted by valgrind's callgrind: bare, behind tower-ratelimit and behind tower_governor, on
# the allow and the reject path, with the limiter inside the route (`Router::layer`) and around
# the whole Router. Unlike time, the count does not move with the machine's load.
#
# "2 clients" rejects requests from two clients in turn whose waits differ by a second, so that
# no rejection shows the numbers of the one before it (the default rejection then renders every
# answer anew instead of reusing the last one's).
#
# "noop" is a layer that does nothing (`tower::layer::util::Identity`) in the same place: inside
# the route it is what axum's `Router::layer` costs any layer before the layer does anything, so
# the route variants are also given as a ratio to it ("/ no-op layer").
#
# "fresh clients" sends every request from an address never seen before, as a client rotating
# its address does: each request is a new key for the limiter, which tracks it (and sweeps
# those gone idle) where a known client's request finds its key.
#
# Each variant serves REQUESTS and then 3×REQUESTS requests over an in-memory pipe (one
# connection, one request at a time); the figure is the difference of the two runs' inclusive
# cost of hyper's HTTP/1 dispatcher (reading, parsing, the service, writing: everything the
# server does for a request, nothing of the client or of start-up) divided by the difference
# in requests.
#
# usage: benches/instructions.sh          (REQUESTS=1000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS=${REQUESTS:-1000}
source benches/preflight.sh
need valgrind valgrind
cargo build --release --example hello_server >&2
# Where cargo put it: under CARGO_TARGET_DIR when that is set.
server=${CARGO_TARGET_DIR:-target}/release/examples/hello_server
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

variants=(
    "none allow route" "noop allow route"
    "ours allow route" "ours allow router" "tower_governor allow route" "tower_governor allow router"
    "ours reject route" "ours reject router" "tower_governor reject route" "tower_governor reject router"
    "ours reject router 2"
    "ours allow router fresh" "tower_governor allow router fresh"
)

dispatcher() { # dispatcher LIMITER OUTCOME LAYER CLIENTS REQUESTS: the dispatcher's inclusive count
    LIMITER=$1 OUTCOME=$2 LAYER=$3 CLIENTS=$4 REQUESTS=$5 valgrind --tool=callgrind \
        --callgrind-out-file="$work/out" "$server" >/dev/null 2>"$work/log" ||
        { cat "$work/log" >&2; exit 1; }
    callgrind_annotate --inclusive=yes "$work/out" |
        awk '/Dispatcher<.*>::poll_catch/ && !n++ { gsub(",", "", $1); print $1 }'
}

printf "%-46s %14s %10s %14s\n" variant "instr/request" "/ bare" "/ no-op layer"
bare=
noop=
for variant in "${variants[@]}"; do
    # shellcheck disable=SC2086
    set -- $variant
    clients=${4:-1}
    low=$(dispatcher "$1" "$2" "$3" "$clients" "$REQUESTS")
    high=$(dispatcher "$1" "$2" "$3" "$clients" $((3 * REQUESTS)))
    per=$(((high - low) / (2 * REQUESTS)))
    bare=${bare:-$per}
    [ "$1" = noop ] && noop=$per
    name="$1 $2"
    [ "$clients" = 1 ] || name="$name, $clients clients"
    case $1 in
    none) name="bare" ;;
    noop) name="no-op layer ($3)" ;;
    *) name="$name ($3)" ;;
    esac
    # In the route, also against the layer that does nothing there.
    against=${noop:-0}
    [ "$3" = route ] && [ "$1" != none ] || against=0
    awk -v n="$name" -v p="$per" -v b="$bare" -v o="$against" 'BEGIN {
        printf "%-46s %14d %10.3f", n, p, p / b
        if (o > 0) printf " %14.3f", p / o
        printf "\n"
    }'
done
