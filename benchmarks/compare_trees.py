"""Time the search step of two source trees, step by step interleaved, and print their medians.

    git worktree add --detach /tmp/before <commit>
    python benchmarks/compare_trees.py /tmp/before . --steps 20 --noise on --threads 1

Two worker processes, one per tree (each imports its own ``src/`` and builds its supernet with
its own ``benchmarks/search_step.py``), take turns: one search step of the first, one of the
second, and so on, so that a drift of the machine's speed hits both alike. The table gives the
median wall and process-CPU time per step of each, and the ratio second / first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = """
import argparse, json, sys, time
sys.path.insert(0, {benchmarks!r})
import search_step
args = argparse.Namespace(**json.loads(sys.argv[1]))
_, step = search_step.build(args, False)
print("ready", flush=True)
for line in sys.stdin:
    t0, c0 = time.perf_counter(), time.process_time()
    loss = step()
    float(loss.detach())
    print(json.dumps([time.perf_counter() - t0, time.process_time() - c0]), flush=True)
"""


def start(tree: Path, options: dict) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    code = WORKER.format(benchmarks=str(tree / "benchmarks"))
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(options)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd="/tmp")
    assert proc.stdout.readline().strip() == "ready", f"{tree}: the worker did not start"
    return proc


def step(proc: subprocess.Popen) -> tuple[float, float]:
    proc.stdin.write("step\n")
    proc.stdin.flush()
    wall, cpu = json.loads(proc.stdout.readline())
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--noise", choices=["on", "off"], default="on")
    p.add_argument("--estimator", default="first_order")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    options = {"device": "cpu", "batch": args.batch, "noise": args.noise == "on", "estimator": args.estimator,
               "threads": args.threads, "baseline_run": False, "keep_all": False, "overrides": [], "compile": "off"}
    trees = [args.first.resolve(), args.second.resolve()]
    workers = [start(tree, options) for tree in trees]
    times: list[list[tuple[float, float]]] = [[], []]
    try:
        for i in range(args.warmup + args.steps):
            for k, worker in enumerate(workers):
                t = step(worker)
                if i >= args.warmup:
                    times[k].append(t)
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait()
    medians = [(statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)) for ts in times]
    ratios = sorted(b[0] / a[0] for a, b in zip(*times))
    print(f"search step: DARTS supernet C=16, 8 cells, batch {args.batch}, noise {args.noise}, {args.estimator}, "
          f"{args.threads} thread(s); {args.steps} interleaved steps each after {args.warmup} warm-up "
          f"({time.strftime('%Y-%m-%d')})")
    print("| tree | s/step (median) | CPU s/step (median) |\n| --- | ---: | ---: |")
    for tree, (wall, cpu) in zip(trees, medians):
        print(f"| {tree} | {wall:.3f} | {cpu:.3f} |")
    print(f"| second / first | {medians[1][0] / medians[0][0]:.3f} | {medians[1][1] / medians[0][1]:.3f} |")
    print(f"median of the per-step ratios second / first: {statistics.median(ratios):.3f} "
          f"(interquartile {ratios[len(ratios) // 4]:.3f} .. {ratios[3 * len(ratios) // 4]:.3f})")


if __name__ == "__main__":
    main()
