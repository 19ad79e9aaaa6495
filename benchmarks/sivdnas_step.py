"""SI-VDNAS search steps against first-order DARTS on the standard DARTS supernet.

    python benchmarks/sivdnas_step.py                  # C=16, 8 cells, 7 ops, 32x32, batch 32 and 64
    python benchmarks/sivdnas_step.py --steps 5 --batch-sizes 64

A step is the search loop's own ``Searcher.search_step`` (first-order architecture step, then the
weight step), NoisyDARTS noise off in both. SI-VDNAS adds, per step, the Bernoulli masks
(``begin_step``), the per-sample Gaussian weights ``[edges, ops, B, 1, 1, 1]`` and the KL;
``granularity=batch`` is the same with one noise draw per forward. Each configuration runs in a
fresh subprocess of ``benchmarks/search_step.py`` so that its peak memory (max RSS on CPU, max
allocated on CUDA) is its own. The target of issue 12: SI-VDNAS at most 1.2x the DARTS time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

METHODS = [
    ("DARTS (softmax)", []),
    ("SI-VDNAS", ["edge.weighting=si_vdnas"]),
    ("SI-VDNAS, batch noise", ["edge.weighting=si_vdnas", "vdnas.granularity=batch"]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1,
                   help="run the methods in turn this many times and keep each one's fastest (a shared machine)")
    args = p.parse_args()
    import torch

    script = Path(__file__).with_name("search_step.py")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, "
          f"{args.steps} timed steps after {args.warmup} warm-up", flush=True)
    header = f"{'method':<22} {'batch':>5} {'s/step':>8} {'vs DARTS':>8} {'images/s':>9} {'peak MB':>8} {'vs DARTS':>8}"
    print(header)
    print("-" * len(header))
    for batch in args.batch_sizes:
        best: dict[str, dict] = {}
        for _ in range(args.repeat):  # interleaved, so that a busy spell hits every method alike
            for name, overrides in METHODS:
                one = {"device": args.device, "batch": batch, "noise": False, "estimator": "first_order",
                       "steps": args.steps, "warmup": args.warmup, "threads": args.threads, "baseline_run": False,
                       "overrides": overrides}
                out = subprocess.run([sys.executable, str(script), "--one", json.dumps(one)], capture_output=True,
                                     text=True)
                if out.returncode:  # e.g. killed for memory on a shared machine: say so, go on
                    print(f"{name} at batch {batch} failed (exit code {out.returncode}): {out.stderr[-500:]}",
                          file=sys.stderr, flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = {**r, "peak_mb": max(r["peak_mb"], best.get(name, r)["peak_mb"])}
        base = best.get(METHODS[0][0])
        for name, _ in METHODS:
            if name not in best or base is None:
                continue
            r = best[name]
            print(f"{name:<22} {batch:>5} {r['seconds']:>8.2f} {r['seconds'] / base['seconds']:>7.2f}x "
                  f"{r['images_per_s']:>9.2f} {r['peak_mb']:>8.0f} {r['peak_mb'] / base['peak_mb']:>7.2f}x", flush=True)

if __name__ == "__main__":
    main()
