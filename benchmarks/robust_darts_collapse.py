"""Does each method collapse into skip connections in RobustDARTS' spaces S2 and S3?

RobustDARTS (Zela et al., ICLR 2020) built S2 (``skip_connect``, ``sep_conv_3x3``) and S3
(``none`` added) so that DARTS' failure shows fast. This runs every method's DARTS-space CIFAR-10
preset in one of them (``--set space.op_set=s2``; plain DARTS is ``darts-s2`` / ``darts-s3``)
through ``noisydarts compare`` (:func:`noisydarts.compare.compare`), resumable: run the same
command again. Every method gets the same supernet and data (``--set`` applies to all), and its own
recipe otherwise; Amended-DARTS' preset searches its edge-fixed S1 cell, so it is given the dense
cell S2 and S3 are defined on; DrNAS' second stage keeps every op of an edge (:func:`own_overrides`).
A shorter run keeps each recipe's share of α warm-up and of DrNAS'
stages (:func:`nb201_collapse.method_config`).

No table gives these cells' accuracy: the measures are the derived cells' skip connections (normal
and reduction cell, per epoch) and the size of the evaluation network they give (C=36, 20 cells).

Example (the 2026-12-07 table; docs/results/2026-12-07-collapse-benchmark.md)::

    python benchmarks/robust_darts_collapse.py --op-set s2 --seeds 0 1 --epochs 4 --data /work/data/cifar10 \\
        --out runs/robust-s2 --set data.limit=4000 --set data.resolution=8 --set space.channels=12 \\
        --set space.layers=8 --set plots=false --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import sys

from nb201_collapse import comparison_flags, method_config, run_comparison

#: Each method's DARTS-space CIFAR-10 preset ("darts" stands for darts-s2 / darts-s3).
METHODS = ["darts", "noisydarts-cifar10", "noisydarts-cifar10-release", "amended-s1", "pc-darts-cifar10",
           "pc-darts-gp-cifar10", "si-vdnas-cifar10", "fairdarts-cifar10", "darts-minus-cifar10",
           "beta-darts-cifar10", "drnas-cifar10", "sdarts-rs-cifar10", "sdarts-adv-cifar10"]


def own_overrides(preset: str, op_set: str) -> list[str]:
    """DrNAS' second stage keeps the 4 best of 7 ops; an edge of S1, S2 or S4 has 2 and of S3 3, so it
    keeps them all there (its partial channels still change from K=6 to K=4)."""
    if preset == "drnas-cifar10":
        return [f"drnas.stage_keep_ops=[{3 if op_set == 's3' else 2}]"]
    return []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op-set", choices=["s1", "s2", "s3", "s4"], required=True)
    comparison_flags(p, METHODS, [0, 1])
    args = p.parse_args(argv)
    overrides = [f"space.op_set={args.op_set}", "space.edges=dense", *args.overrides, f"epochs={args.epochs}"]
    overrides += [f"data.name={args.data}"] if args.data else []
    presets = [f"darts-{args.op_set}" if m == "darts" else m for m in args.methods]
    return run_comparison(args, lambda: [(m, method_config(m, args.epochs, overrides + own_overrides(m, args.op_set), True))
                                         for m in presets], overrides)


if __name__ == "__main__":
    sys.exit(main())
