"""The cost of one search step of every method against DARTS, measured in one run.

    python benchmarks/method_step_cost.py --threads 2 --steps 12
    python benchmarks/method_step_cost.py --presets darts-cifar10 fairdarts-cifar10 --steps 6

Every method's DARTS-space preset (its method keys: weighting, noise, partial channels,
estimator, regularizers, perturbations, gradient projection) is put on **the same supernet and
data**: the DARTS space with ``--channels`` (24: a multiple of 2K for every preset's partial
channels K), 8 cells, 4 nodes, the 32 px embedded images, ``--batch`` images per step. The
searchers take turns, one search step (architecture step + weight step, the loop's own
``Searcher.search_step``) of each in turn, so that a drift of a shared machine's speed hits all
alike; the table gives the median wall and process-CPU seconds per step and their ratio to the
first preset (DARTS, first order). Stage hooks (DrNAS' progressive stages) are not run: a
step is timed in the first stage.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: DARTS first order first: the baseline of the ratios.
DEFAULT_PRESETS = [
    "darts-cifar10@first_order", "darts-cifar10", "noisydarts-cifar10", "amended-s1", "pc-darts-cifar10",
    "pc-darts-gp-cifar10", "si-vdnas-cifar10", "fairdarts-cifar10", "darts-minus-cifar10", "beta-darts-cifar10",
    "drnas-cifar10", "sdarts-rs-cifar10", "sdarts-adv-cifar10",
]


def searcher_for(name: str, args):
    """A ready searcher for ``preset[@estimator]`` on the common supernet."""
    from _common import ready_searcher

    from noisydarts.search import resolve_config

    preset, _, estimator = name.partition("@")
    overrides = {"device": args.device, "batch_size": args.batch, "epochs": 50, "warmup_epochs": 0,
                 "data": {"name": "cifar10-mini", "limit": 4 * args.batch, "resolution": 32},
                 "space": {"channels": args.channels, "layers": 8, "nodes": 4}, "plots": False}
    if estimator:
        overrides["estimator"] = {"name": estimator}
    cfg = resolve_config(preset, overrides=overrides)
    return ready_searcher(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS,
                   help="DARTS-space presets (PRESET@ESTIMATOR forces an estimator); the first is the baseline")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=24)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = {name: searcher_for(name, args) for name in args.presets}
    times = {name: [] for name in runs}
    for round_ in range(args.warmup + args.steps):
        for name, (searcher, step_args) in runs.items():
            if searcher.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            loss, _ = searcher.search_step(*step_args)
            float(loss.detach())
            if round_ >= args.warmup:
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    base_wall = statistics.median(w for w, _ in times[args.presets[0]])
    base_cpu = statistics.median(c for _, c in times[args.presets[0]])
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"DARTS supernet C={args.channels}, 8 cells, 32 px, batch {args.batch}; {args.steps} interleaved steps "
          f"after {args.warmup} warm-up; {device}; torch {torch.__version__}\n")
    print("| preset | method keys | s/step | CPU s/step | × first |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        cfg = runs[name][0].cfg
        keys = describe(cfg)
        wall, cpu = statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)
        print(f"| {name} | {keys} | {wall:.3f} | {cpu:.3f} | {wall / base_wall:.2f} (CPU {cpu / base_cpu:.2f}) |")


def describe(cfg: dict) -> str:
    """The method keys of a resolved config that differ from plain first-order DARTS, in one cell."""
    from noisydarts.search import resolve_config

    plain = resolve_config(overrides={"noise": {"enabled": False}})
    parts = [f"estimator {cfg['estimator']['name']}"]
    for section in sorted(cfg):
        if section in ("estimator", "space", "data", "weights", "epochs", "batch_size", "device", "plots", "seed",
                       "warmup_epochs", "train", "description", "train_portion", "channels_last"):
            continue
        if isinstance(cfg[section], dict) and cfg[section] != plain.get(section):
            changed = {k: v for k, v in cfg[section].items() if plain.get(section, {}).get(k) != v}
            parts.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    return "; ".join(parts)


if __name__ == "__main__":
    main()
