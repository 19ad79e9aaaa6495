"""Summarize NAS-Bench-201 search runs: when they sat in the all-skip cell and how they ended.

Reads ``metrics.jsonl`` of each run directory and prints, per run: the epochs whose derived cell
was the all-skip cell (``|skip_connect~0|+|skip_connect~0|skip_connect~1|+...``, 54.30 % on
CIFAR-10), the first epoch after the last all-skip epoch (``left``: when it escaped for good;
``-`` if it ends there), the skip_connect count at the end and averaged over the last five epochs,
and the final cell's benchmark accuracies. Groups (``--group LABEL=GLOB``) get mean ± std rows.

    python experiments/summarize.py --group DARTS='/work/exp16/runs/darts-s*' \\
        --group NoisyDARTS='/work/exp16/runs/noisy-s*' [--markdown] [--upto 25]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from pathlib import Path


def read(run: Path, upto: int | None) -> list[dict]:
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s.strip()]
    return [r for r in lines if upto is None or r["epoch"] <= upto]


def summary(run: Path, upto: int | None) -> dict:
    rs = read(run, upto)
    all_skip = [r["epoch"] for r in rs if r["skip_count"] == 6]
    last = rs[-1]
    left = (all_skip[-1] + 1 if all_skip and all_skip[-1] < last["epoch"] else None) if all_skip else 0
    tail = rs[-5:]
    return {"run": run.name, "epochs": last["epoch"], "all_skip": all_skip, "left": left,
            "skips": last["skip_count"], "skips_last5": statistics.mean(r["skip_count"] for r in tail),
            "c10": last["cifar10_test"], "c100": last["cifar100_test"], "in16": last["imagenet16_test"],
            "skip_trace": "".join(str(r["skip_count"]) for r in rs), "arch": last["genotype"]}


def fmt_epochs(epochs: list[int]) -> str:
    if not epochs:
        return "none"
    spans, start = [], epochs[0]
    for a, b in zip(epochs, epochs[1:] + [None]):
        if b != a + 1:
            spans.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(spans)


def mean_sd(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", action="append", required=True, metavar="LABEL=GLOB")
    p.add_argument("--upto", type=int, default=None, help="only the first N epochs of each run")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    groups = {}
    for spec in args.group:
        label, _, pattern = spec.partition("=")
        runs = sorted(Path(d) for d in glob.glob(pattern) if (Path(d) / "metrics.jsonl").is_file())
        groups[label] = [summary(r, args.upto) for r in runs]
    sep = " | " if args.markdown else "  "
    head = ["method", "run", "ep", "all-skip epochs", "left", "skips", "last5", "C10", "C100", "IN16", "skips per epoch"]
    rows = []
    for label, items in groups.items():
        for s in items:
            rows.append([label, s["run"], str(s["epochs"]), fmt_epochs(s["all_skip"]),
                         "-" if s["left"] is None else str(s["left"]), str(s["skips"]), f"{s['skips_last5']:.1f}",
                         f"{s['c10']:.2f}", f"{s['c100']:.2f}", f"{s['in16']:.2f}", s["skip_trace"]])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = (lambda r: "| " + sep.join(c.ljust(w) for c, w in zip(r, widths)) + " |") if args.markdown else \
        (lambda r: sep.join(c.ljust(w) for c, w in zip(r, widths)))
    print(line(head))
    if args.markdown:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
    agg_head = ["method", "runs", "stuck at end", "left (mean)", "skips", "last5", "C10", "C100", "IN16"]
    print(("| " + " | ".join(agg_head) + " |") if args.markdown else "  ".join(agg_head))
    if args.markdown:
        print("|" + "|".join("---" for _ in agg_head) + "|")
    for label, items in groups.items():
        if not items:
            continue
        stuck = sum(s["left"] is None for s in items)
        lefts = [s["left"] for s in items if s["left"] is not None]
        cells = [label, str(len(items)), f"{stuck}/{len(items)}",
                 f"{statistics.mean(lefts):.1f}" if lefts else "-",
                 mean_sd(s["skips"] for s in items), mean_sd(s["skips_last5"] for s in items),
                 mean_sd(s["c10"] for s in items), mean_sd(s["c100"] for s in items), mean_sd(s["in16"] for s in items)]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
