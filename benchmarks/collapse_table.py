"""The collapse benchmark's tables, from finished ``noisydarts compare`` directories.

``python benchmarks/collapse_table.py runs/collapse`` (an NB201 comparison: benchmarks/nb201_collapse.py)
prints, per method, mean ± std over the seeds of the derived cell's NAS-Bench-201 test accuracies,
the final skip count, how many seeds collapsed (5 or 6 of the 6 edges on skip_connect), the best
seed's CIFAR-10 accuracy and how many seeds found the best cell (94.37 % on CIFAR-10, the table's
own best), the skip count after every epoch seed by seed, the supernet's final training accuracy, and the search time per run.

``python benchmarks/collapse_table.py runs/robust-s2`` (a DARTS-space comparison:
benchmarks/robust_darts_collapse.py) prints the skip connections of the normal and reduction
cells (final mean ± std, per epoch seed by seed), how many seeds ended with a normal cell of 6 or
more of its 8 edges on skip_connect (a cell that keeps any number of ops, SI-VDNAS': 3/4 of them), and the size of the evaluation network the cell gives (DARTS'
CIFAR network: C=36, 20 cells, without the auxiliary head).

Times are the sum of the epochs' times (the search itself, without the process start, the data and
the supernet's construction), on the machine and with the threads the comparison ran with.
``--figures DIR`` also copies the comparison's overlay plots there, prefixed by ``--prefix``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

NB201_BEST = 94.37  # CIFAR-10 test accuracy of the table's best cell (the papers round it to 94.36/94.37)
COLUMNS = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}


def mean_std(values, digits: int = 2) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def load(compare_dir: Path) -> list[tuple[str, list[tuple[int, list[dict]]]]]:
    """``[(method, [(seed, epoch records), ...]), ...]`` in the comparison's order."""
    plan = json.loads((compare_dir / "compare.json").read_text())
    methods = [m["name"] for m in plan["methods"]]
    out = []
    for m in methods:
        runs = []
        for seed in plan["seeds"]:
            path = compare_dir / f"{m}-s{seed}" / "metrics.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
            runs.append((seed, records))
        out.append((m, runs))
    return out


def nb201_table(methods) -> list[str]:
    head = ["method", *COLUMNS.values(), "final skips", "collapsed", "best seed (C10)", "seeds at the best cell",
            "skips per epoch (seed by seed)",
            "supernet train acc", "s/run"]
    rows = []
    for name, runs in methods:
        done = [r for _, r in runs if r]
        finals = [r[-1] for r in done]
        accs = [mean_std([f[k] for f in finals]) for k in COLUMNS]
        skips = [f["skip_count"] for f in finals]
        per_epoch = " / ".join("".join(str(e["skip_count"]) for e in r) for r in done)
        best = sum(f["cifar10_test"] >= NB201_BEST - 0.01 for f in finals)
        rows.append([name, *accs, mean_std(skips), f"{sum(s >= 5 for s in skips)} / {len(finals)}",
                     f"{max(f['cifar10_test'] for f in finals):.2f}" if finals else "-", f"{best} / {len(finals)}", per_epoch, f"{mean_std([f['train_acc'] for f in finals], 1)} %",
                     f"{statistics.mean(sum(e['epoch_time'] for e in r) for r in done):.0f}" if done else "-"])
    return markdown(head, rows)


def darts_table(methods) -> list[str]:
    from noisydarts.spaces import get_space

    space = get_space("darts")
    head = ["method", "normal-cell skips", "reduction-cell skips", "collapsed", "normal skips per epoch (seed by seed)",
            "reduction skips per epoch", "eval. network (M params)", "supernet train acc", "s/run"]
    rows = []
    for name, runs in methods:
        done = [r for _, r in runs if r]
        finals = [r[-1] for r in done]
        normal = [f["skip_normal"] for f in finals]
        kept = [f.get("ops_normal", 8) for f in finals]  # a VariableGenotype (SI-VDNAS) keeps any number
        params = [space.info(space.parse(f["genotype"]), "cifar10")["params_m"] for f in finals]
        of = f" (of {mean_std(kept, 1)} kept)" if any(k != 8 for k in kept) else ""
        of_reduce = f" (of {mean_std([f.get('ops_reduce', 8) for f in finals], 1)} kept)" if of else ""
        rows.append([name, mean_std(normal) + of, mean_std([f["skip_reduce"] for f in finals]) + of_reduce,
                     f"{sum(n >= 0.75 * k for n, k in zip(normal, kept))} / {len(finals)}",
                     " / ".join("".join(str(e["skip_normal"]) for e in r) for r in done),
                     " / ".join("".join(str(e["skip_reduce"]) for e in r) for r in done),
                     mean_std(params, 2), f"{mean_std([f['train_acc'] for f in finals], 1)} %",
                     f"{statistics.mean(sum(e['epoch_time'] for e in r) for r in done):.0f}" if done else "-"])
    return markdown(head, rows)


def markdown(head, rows) -> list[str]:
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
            *["| " + " | ".join(map(str, r)) + " |" for r in rows]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--figures", type=Path, help="copy each comparison's overlay plots into this directory")
    p.add_argument("--prefix", default="", help="file-name prefix of the copied plots")
    args = p.parse_args(argv)
    for d in args.dirs:
        methods = load(d)
        first = next((r[-1] for _, runs in methods for _, r in runs if r), None)
        if first is None:
            print(f"{d}: no finished epoch yet", file=sys.stderr)
            continue
        print(f"## {d}\n")
        print("\n".join(nb201_table(methods) if "cifar10_test" in first else darts_table(methods)))
        print()
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            for png in sorted((d / "plots").glob("*.png")):
                shutil.copyfile(png, args.figures / f"{args.prefix}{d.name}-{png.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
