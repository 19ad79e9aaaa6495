"""Does DARTS collapse to skip connections in NAS-Bench-201, and does NoisyDARTS avoid it?

Runs the ``nb201-darts`` and ``nb201-noisydarts`` presets on the same data and budget for each
seed, through the Python API, and prints per run the derived cell, its CIFAR-10 test accuracy
from the benchmark table, its number of skip_connect edges and the search time, then mean ± std
per method. Example (a CPU budget; the presets' own sizes are C=16, N=5, 50 epochs)::

    python benchmarks/nb201_collapse.py --seeds 0 1 2 --epochs 20 --data /tmp/cifar10-jpeg/cifar10 \\
        --set space.channels=8 --set space.cells_per_stage=1 --set data.limit=2000 --set data.resolution=16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import noisydarts
from noisydarts import config as config_lib
from noisydarts import nb201

METHODS = {"DARTS": "nb201-darts", "NoisyDARTS": "nb201-noisydarts"}


def run_one(preset: str, seed: int, epochs: int, data: str | None, overrides: list[str], out: Path) -> dict:
    sets = [*overrides, f"seed={seed}", f"epochs={epochs}"] + ([f"data.name={data}"] if data else [])
    cfg = config_lib.resolve(preset, None, sets)
    t0 = time.perf_counter()
    result = noisydarts.search(cfg, out=out / f"{preset}-seed{seed}", progress=False)
    seconds = time.perf_counter() - t0
    arch = result.genotype
    return {"arch": str(arch), "cifar10": nb201.lookup(arch).cifar10_test,
            "skips": arch.count("skip_connect"), "seconds": seconds}


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--data", help="cifar10-mini, cifar10, or an image directory (default: the presets' cifar10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="where the run directories go (default: a temporary directory)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a contended machine)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="run only these (e.g. one method per process, in parallel on a 2-core machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        print(f"{'method':<11} {'seed':>4} {'C10 test':>8} {'skips':>5} {'time s':>7}  arch", flush=True)
        rows = {m: [] for m in args.methods}
        for seed in args.seeds:
            for method in args.methods:
                preset = METHODS[method]
                r = run_one(preset, seed, args.epochs, args.data, args.overrides, out)
                rows[method].append(r)
                print(f"{method:<11} {seed:>4} {r['cifar10']:>8.2f} {r['skips']:>5} {r['seconds']:>7.0f}  {r['arch']}",
                      flush=True)
        print()
        print(f"{'method':<11} {'C10 test (mean ± std)':>22} {'skips':>12} {'time s':>8}")
        for method, rs in rows.items():
            print(f"{method:<11} {mean_std([r['cifar10'] for r in rs]):>22} "
                  f"{mean_std([r['skips'] for r in rs]):>12} {statistics.mean(r['seconds'] for r in rs):>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
