#!/usr/bin/env python3
"""Where a variant of examples/hello_server.rs spends its instructions against another, function
by function: each variant serves REQUESTS and then 3 x REQUESTS requests over the in-memory
pipe under `valgrind --tool=callgrind`, counting only inside hyper's HTTP/1 dispatcher (what
benches/instructions.sh counts: everything the server does for a request, nothing of the client
or of start-up); a function's cost per request is the difference of its own (exclusive) cost
between the two runs divided by the difference in requests. Prints the functions whose cost
per request differs most between the two variants.

A variant is written as benches/instructions.sh names them: "LIMITER OUTCOME LAYER [CLIENTS]".

usage: benches/function_diff.py ["none allow route"] ["ours allow router"] [--rows 40]
       (REQUESTS=1000)
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
    "release", "examples", "hello_server",
)
LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+(.*)")


def own_costs(profile):
    """Each function's exclusive instruction count in a callgrind profile."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", profile],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        match = LINE.match(line)
        if match and "PROGRAM TOTALS" not in match.group(2):
            # "file:function [object]" -> "function"
            name = re.sub(r"\s*\[[^\]]*\]$", "", match.group(2)).split(":", 1)[-1]
            costs[name] += int(match.group(1).replace(",", ""))
    return costs


def per_request(variant, requests, work):
    """Each function's instructions per request for one variant."""
    limiter, outcome, layer, *rest = variant.split()
    clients = rest[0] if rest else "1"
    runs = {}
    for count in (requests, 3 * requests):
        profile = os.path.join(work, f"{limiter}-{outcome}-{layer}-{clients}-{count}")
        env = dict(os.environ, LIMITER=limiter, OUTCOME=outcome, LAYER=layer,
                   CLIENTS=clients, REQUESTS=str(count))
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}",
             "--toggle-collect=hyper::proto::h1::dispatch::Dispatcher*poll_catch*", SERVER],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )
        runs[count] = own_costs(profile)
    low, high = runs[requests], runs[3 * requests]
    return {name: (high[name] - low.get(name, 0)) / (2 * requests) for name in high}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="none allow route")
    parser.add_argument("other", nargs="?", default="ours allow router")
    parser.add_argument("--rows", type=int, default=40)
    args = parser.parse_args()
    requests = int(os.environ.get("REQUESTS", "1000"))

    subprocess.run(["cargo", "build", "--release", "--example", "hello_server"],
                   cwd=ROOT, stdout=sys.stderr, check=True)
    with tempfile.TemporaryDirectory() as work:
        base = per_request(args.base, requests, work)
        other = per_request(args.other, requests, work)
    names = set(base) | set(other)
    rows = sorted(names, key=lambda n: -abs(other.get(n, 0) - base.get(n, 0)))
    print(f"instructions per request (own cost, inside the dispatcher): {args.base!r}, "
          f"{args.other!r}, difference, function")
    total_a, total_b = sum(base.values()), sum(other.values())
    print(f"{total_a:9.0f} {total_b:9.0f} {total_b - total_a:+8.0f}  all functions")
    for name in rows[: args.rows]:
        a, b = base.get(name, 0), other.get(name, 0)
        print(f"{a:9.0f} {b:9.0f} {b - a:+8.0f}  {name[:140]}")


if __name__ == "__main__":
    main()
