#!/usr/bin/env python3
"""Draws the criterion results as SVG bar charts in benches/plots/.

The results are read where criterion writes them: $CRITERION_HOME, else criterion/ in
$CARGO_TARGET_DIR, else target/criterion.

One chart per benchmark group (check_allow_1t, layer_allow, redis, ...): a bar per benchmark,
the point estimate of its mean time, with its 95 % confidence interval as a whisker, contenders
of one parameter side by side. Plain SVG written by hand: no plotting library needed.

usage: cargo bench --bench memory && benches/plot.py   (then look at benches/plots/*.svg)
"""

import html
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# Relative paths are relative to the crate's root, where `cargo bench` runs the benches.
CRITERION = os.path.join(ROOT, os.environ.get("CRITERION_HOME") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or "target", "criterion"))
OUT = os.path.join(ROOT, "benches", "plots")
COLORS = ["#3b6ea8", "#d08c2b", "#5a9b5a", "#a0468c", "#8c8c8c"]


def results():
    """{group: {benchmark id: (mean ns, low ns, high ns)}} from criterion's estimates."""
    found = {}
    for dirpath, _, files in os.walk(CRITERION):
        if "estimates.json" not in files or os.path.basename(dirpath) != "new":
            continue
        bench = os.path.relpath(os.path.dirname(dirpath), CRITERION).split(os.sep)
        if bench[0] == "report" or "report" in bench:
            continue
        with open(os.path.join(dirpath, "estimates.json")) as f:
            mean = json.load(f)["mean"]
        interval = mean["confidence_interval"]
        group, name = bench[0], "/".join(bench[1:])
        found.setdefault(group, {})[name] = (
            mean["point_estimate"], interval["lower_bound"], interval["upper_bound"])
    return found


def chart(group, rows):
    """An SVG document: one horizontal bar per benchmark, sorted by parameter then contender."""
    def key(name):
        contender, _, parameter = name.partition("/")
        return (int(parameter) if parameter.isdigit() else 0, parameter, contender)

    names = sorted(rows, key=key)
    contenders = sorted({name.partition("/")[0] for name in names})
    scale_max = max(high for _, _, high in rows.values())
    unit, div = ("µs", 1e3) if scale_max > 1e4 else ("ns", 1)
    bar, gap, left, width = 18, 6, 330, 420
    height = 60 + len(names) * (bar + gap)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" '
           f'height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(group)}'
           f' — mean time per iteration ({unit}), 95 % interval</text>']
    for i, name in enumerate(names):
        mean, low, high = (v / div for v in rows[name])
        y = 40 + i * (bar + gap)
        color = COLORS[contenders.index(name.partition("/")[0]) % len(COLORS)]
        w = mean / (scale_max / div) * width
        out.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{color}"/>')
        x_low = left + low / (scale_max / div) * width
        x_high = left + high / (scale_max / div) * width
        out.append(f'<line x1="{x_low:.1f}" x2="{x_high:.1f}" y1="{y + bar / 2}" '
                   f'y2="{y + bar / 2}" stroke="black"/>')
        out.append(f'<text x="{left + max(w, x_high - left) + 6:.1f}" y="{y + bar - 5}">'
                   f'{mean:.1f}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    found = results()
    if not found:
        sys.exit(f"no criterion results under {CRITERION}: run `cargo bench` first")
    os.makedirs(OUT, exist_ok=True)
    for group, rows in sorted(found.items()):
        path = os.path.join(OUT, f"{group}.svg")
        with open(path, "w") as f:
            f.write(chart(group, rows))
        print(path)


if __name__ == "__main__":
    main()
