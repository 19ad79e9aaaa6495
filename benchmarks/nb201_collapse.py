"""Does DARTS collapse to skip connections in NAS-Bench-201, and do the remedies avoid it?

A thin call of ``noisydarts compare`` (:func:`noisydarts.compare.compare`): the NB201 presets of
every method (the 13 in ``METHODS``; ``--methods`` picks some) on the same data and budget for
each seed, in parallel processes, resumable (run the same command again), ending with the table of
mean ± std over the seeds (NB201 test accuracies of the derived cell, skip counts, search time) and
OUT/report.html with the overlay plots.

A shorter run keeps each recipe's share of α warm-up: PC-DARTS and SI-VDNAS freeze α for 15 of
their 50 epochs, so ``--epochs 10`` freezes it for round(15 * 10 / 50) = 3 (``--keep-warmup off``:
the presets' warm-up as it is, which must then be below ``--epochs``). The methods go to compare as
(name, config) pairs, so their names stay the preset names.

Example (the 2026-12-07 table: every method x 4 seeds, the full-depth supernet at 8x8 on 4,000 +
4,000 images, 5 epochs; docs/results/2026-12-07-collapse-benchmark.md)::

    python benchmarks/nb201_collapse.py --seeds 0 1 2 3 --epochs 5 --data /work/data/cifar10 --out runs/collapse \\
        --set data.limit=8000 --set data.resolution=8 --set plots=false --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import sys

from noisydarts import config as config_lib
from noisydarts.search import resolve_config
from noisydarts.compare import compare
from noisydarts.errors import UserError

METHODS = ["nb201-darts", "nb201-noisydarts", "nb201-noisydarts-release", "nb201-amended", "nb201-pc-darts",
           "nb201-pc-darts-gp", "nb201-si-vdnas", "nb201-fairdarts", "nb201-darts-minus", "nb201-beta-darts",
           "nb201-drnas", "nb201-sdarts-rs", "nb201-sdarts-adv"]


def method_config(preset: str, epochs: int, overrides: list[str], keep_warmup: bool) -> dict:
    """The preset with the overrides (``epochs=...`` among them); with ``keep_warmup``, its α warm-up
    and DrNAS' stage boundaries scaled to the same share of ``epochs`` as of the preset's own epochs,
    and its cutout to the same share of a ``data.resolution=`` override as of 32 px."""
    if not keep_warmup:
        return resolve_config(preset, None, overrides)
    own = config_lib.load_preset(preset)
    share = epochs / own.get("epochs", epochs)
    scaled = [f"warmup_epochs={round(own.get('warmup_epochs', 0) * share)}"]
    stages = own.get("drnas", {}).get("stage_epochs")
    if stages:
        scaled.append(f"drnas.stage_epochs=[{','.join(str(max(1, round(e * share))) for e in stages)}]")
    # Smaller images keep the cutout's share of the image (amended-s1's 16 px square is for 32 px;
    # at 8 px it would blank every image, which the config refuses).
    resolution = next((int(o.split("=", 1)[1]) for o in reversed(overrides) if o.startswith("data.resolution=")), None)
    cutout = own.get("data", {}).get("cutout", 0)
    if resolution and cutout:
        scaled.append(f"data.cutout={max(1, round(cutout * resolution / 32))}")
    return resolve_config(preset, None, [*scaled, *overrides])


def comparison_flags(p: argparse.ArgumentParser, methods: list[str], seeds: list[int]) -> None:
    """The flags every collapse comparison takes (this script's and robust_darts_collapse.py's)."""
    p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--data", help="cifar10-mini, cifar10, or an image directory (default: the presets' cifar10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="the comparison's directory (run the same command again to continue)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: one per CPU core)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    p.add_argument("--methods", nargs="+", choices=methods, default=methods)


def run_comparison(args, methods, overrides: list[str]) -> int:
    """``noisydarts compare`` of ``methods`` (``(name, config)`` pairs, or a callable giving them, so
    that a refused config is the same one-line error); exit code 0, 1 (a run failed) or 2."""
    try:
        methods = methods() if callable(methods) else methods
        result = compare(methods, args.seeds, overrides, out=args.out, jobs=args.jobs, threads=args.threads)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    comparison_flags(p, METHODS, [0, 1, 2, 3])
    p.add_argument("--keep-warmup", choices=["share", "off"], default="share",
                   help="share: scale each preset's alpha warm-up to the same share of --epochs (default); "
                        "off: keep it as it is")
    args = p.parse_args(argv)
    overrides = [*args.overrides, f"epochs={args.epochs}"] + ([f"data.name={args.data}"] if args.data else [])

    def methods():
        planned = [(m, method_config(m, args.epochs, overrides, args.keep_warmup == "share")) for m in args.methods]
        for name, cfg in planned:
            if cfg["warmup_epochs"]:
                print(f"{name}: alpha frozen for the first {cfg['warmup_epochs']} of {args.epochs} epochs")
        return planned

    return run_comparison(args, methods, overrides)


if __name__ == "__main__":
    sys.exit(main())
