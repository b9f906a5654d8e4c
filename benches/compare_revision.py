#!/usr/bin/env python3
"""Compares this tree's criterion benchmarks with an earlier revision's, in one run.

Both bench binaries are built once (the revision in a git worktree under
target/compare/<rev>), then run in alternation, ROUNDS times each, with the same filter and
criterion settings, so that load on a shared machine falls on both alike. For every benchmark id
that both report, it prints the median over rounds of criterion's point estimate for each side,
the spread (lowest and highest round), and the ratio of the medians (this tree / revision).

REV `.` is this tree itself: with `--base-features`, the same code built with two feature
sets (the revision side gets the base features, this tree `--features`).

usage: benches/compare_revision.py REV BENCH [FILTER] [--rounds N] [--measurement-time S]
       [--features F] [--base-features F]

examples: benches/compare_revision.py 81649dc memory 'tower-ratelimit/' --rounds 3
          benches/compare_revision.py . layer 'layer/allow/' --features metrics --base-features ''
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def bench_binary(tree, bench, features, target_dir=None):
    """Builds the bench in `tree` (into `target_dir` if given) and returns the path of its
    executable."""
    cmd = ["cargo", "bench", "--bench", bench, "--no-run"]
    if features:
        cmd += ["--features", features]
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir) if target_dir else None
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"building {bench} in {tree} failed:\n{out.stderr}")
    found = re.findall(r"Executable .*\((.+)\)", out.stderr)
    if not found:
        sys.exit(f"no executable for {bench} in the output of cargo in {tree}")
    return os.path.join(tree, found[-1])


def run(binary, tree, filt, measurement_time):
    """Runs one bench binary and returns {benchmark id: nanoseconds (point estimate)}."""
    cmd = [binary, "--bench", "--noplot", "--warm-up-time", "1",
           "--measurement-time", str(measurement_time)]
    if filt:
        cmd.append(filt)
    out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} failed:\n{out.stderr}")
    results, name = {}, None
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            name = line.split("time:")[0].strip()
        time = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if time and name:
            results[name] = float(time.group(1)) * UNITS[time.group(2)]
            name = None
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev")
    parser.add_argument("bench")
    parser.add_argument("filter", nargs="?", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measurement-time", type=float, default=2)
    parser.add_argument("--features", default="")
    parser.add_argument("--base-features", default=None,
                        help="features of the revision side (default: --features)")
    args = parser.parse_args()
    base_features = args.features if args.base_features is None else args.base_features

    here = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if args.rev == ".":
        old_tree = here
    else:
        old_tree = os.path.join(here, "target", "compare", args.rev)
        if not os.path.isdir(old_tree):
            subprocess.run(["git", "worktree", "add", "--detach", "-f", old_tree, args.rev],
                           cwd=here, check=True, capture_output=True)
    trees = {"revision": old_tree, "this tree": here}
    features = {"revision": base_features, "this tree": args.features}
    # A revision builds into its own worktree's target/, even when CARGO_TARGET_DIR is set:
    # cargo names a crate's artifacts alike in every checkout of it, so in one shared target
    # directory the second build would replace the first's bench binary.
    target_dirs = {"revision": None if args.rev == "." else os.path.join(old_tree, "target"),
                   "this tree": None}
    binaries = {side: bench_binary(tree, args.bench, features[side], target_dirs[side])
                for side, tree in trees.items()}

    rounds = {side: [] for side in trees}
    for i in range(args.rounds):
        # Alternate which side goes first, so neither always runs on a warmer machine.
        order = list(trees) if i % 2 == 0 else list(reversed(list(trees)))
        for side in order:
            rounds[side].append(run(binaries[side], trees[side], args.filter,
                                    args.measurement_time))
            print(f"round {i + 1}: {side} done", file=sys.stderr)

    ids = sorted(set.intersection(*(set(r) for side in rounds for r in rounds[side])))
    print(f"{args.bench}: median of {args.rounds} rounds (lowest-highest), ns; "
          f"revision {args.rev} (features {base_features!r}) against this tree "
          f"(features {args.features!r})")
    print(f"{'benchmark':<55} {'revision':>22} {'this tree':>22} {'ratio':>6}")
    for bench_id in ids:
        cells, medians = [], []
        for side in trees:
            values = [r[bench_id] for r in rounds[side]]
            median = statistics.median(values)
            medians.append(median)
            cells.append(f"{median:.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"{bench_id:<55} {cells[0]:>22} {cells[1]:>22} {medians[1] / medians[0]:>6.2f}")


if __name__ == "__main__":
    main()
