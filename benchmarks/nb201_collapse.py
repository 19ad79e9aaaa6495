"""Does DARTS collapse to skip connections in NAS-Bench-201, and does NoisyDARTS avoid it?

A thin call of ``noisydarts compare`` (:func:`noisydarts.compare.compare`): the NB201 presets of
every method (``nb201-darts``, ``nb201-noisydarts``, ``nb201-pc-darts``, ``nb201-pc-darts-gp``;
``--methods`` picks some) on the same data and budget for each seed, in parallel
processes, resumable (run the same command again), ending with the table of mean ± std over the
seeds (NB201 test accuracies of the derived cell, skip counts, search time) and OUT/report.html.
Equivalent to::

    noisydarts compare nb201-darts nb201-noisydarts nb201-pc-darts nb201-pc-darts-gp --seeds 0 1 2 --set epochs=20 --data DIR --out OUT

Example (the CPU budget of the README; the presets' own sizes are C=16, N=5, 50 epochs)::

    python benchmarks/nb201_collapse.py --seeds 0 1 2 --epochs 20 --data /work/data/cifar10 --out runs/collapse \\
        --set space.channels=8 --set space.cells_per_stage=1 --set data.limit=16000 --set data.resolution=16 --set plots=false
"""

from __future__ import annotations

import argparse
import sys

from noisydarts.compare import compare
from noisydarts.errors import UserError

METHODS = ["nb201-darts", "nb201-noisydarts", "nb201-pc-darts", "nb201-pc-darts-gp"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--data", help="cifar10-mini, cifar10, or an image directory (default: the presets' cifar10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="the comparison's directory (run the same command again to continue)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: one per CPU core)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    args = p.parse_args(argv)
    overrides = [*args.overrides, f"epochs={args.epochs}"] + ([f"data.name={args.data}"] if args.data else [])
    try:
        result = compare(args.methods, args.seeds, overrides, out=args.out, jobs=args.jobs, threads=args.threads)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
