"""Time whole search steps (architecture step + weight step) of the DARTS supernet.

    python benchmarks/search_step.py                      # C=16, 8 cells, 32x32, batch 32 and 64, noise on/off
    python benchmarks/search_step.py --estimator second_order --batch-sizes 32
    python benchmarks/search_step.py --baseline           # also time the unoptimized path

Each configuration runs in a fresh subprocess so that its peak memory (max RSS on CPU,
max allocated on CUDA) is its own. The step is the search loop's own ``Searcher.search_step``.

``--baseline`` times what a straightforward implementation computes (the same numbers, as the
DARTS/NoisyDARTS releases compute them): NCHW tensors, dilated depthwise convs run as dilated
convs, and an architecture step that backpropagates into every weight as ``loss.backward()`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_one(args) -> dict:
    import torch

    from noisydarts import config
    from noisydarts.estimators import StepContext
    from noisydarts.ops import DepthwiseConv2d
    from noisydarts.search import Searcher, autocast, cross_entropy

    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = config.resolve(overrides=list(args.overrides), config_file={
        "device": args.device, "batch_size": args.batch, "channels_last": not args.baseline_run,
        "data": {"name": "cifar10-mini", "limit": 4 * args.batch},
        "space": {"name": "darts", "channels": 16, "layers": 8, "nodes": 4},
        "noise": {"enabled": args.noise}, "estimator": {"name": args.estimator},
    })
    import tempfile

    s = Searcher(cfg, tempfile.mkdtemp(), progress=False)
    if args.baseline_run:
        for m in s.model.modules():
            if isinstance(m, DepthwiseConv2d):
                m.by_phase = False

        class FullBackward:  # the releases' architecture step: loss.backward() into everything
            def step(self, model, train_batch, val_batch, ctx):
                loss = ctx.loss_fn(model, *val_batch)
                loss.backward()
                return loss.detach()

        s.estimator = FullBackward()
    s.model.train()
    train = next(iter(s.train_batches.epoch(0)))
    val = next(iter(s.arch_batches.epoch(0)))
    ctx = StepContext(loss_fn=cross_entropy,
                      weight_optimizer=s.w_opt, weight_lr=cfg["weights"]["lr"])
    weights = s.model.weight_parameters()
    amp = autocast(cfg, s.device)
    cuda = s.device.type == "cuda"

    def step():
        loss, _ = s.search_step(train, val, ctx, weights, amp)
        return loss

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "images_per_s": args.batch / seconds, "peak_mb": peak / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    p.add_argument("--estimator", default="first_order")
    p.add_argument("--baseline", action="store_true", help="also time the unoptimized path")
    p.add_argument("--noise", choices=["off", "on", "both"], default="both")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config values, e.g. --set estimator.exact=true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args()
    if args.one:
        one = argparse.Namespace(**json.loads(args.one))
        print(json.dumps(run_one(one)))
        return
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    variants = [False, True] if args.baseline else [False]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, estimator {args.estimator} {' '.join(args.overrides)}, "
          f"{args.steps} timed steps after {args.warmup} warm-up", flush=True)
    header = f"{'device':<6} {'path':<9} {'batch':>5} {'noise':>5} {'s/step':>8} {'images/s':>9} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for batch in args.batch_sizes:
            for noise in {"off": (False,), "on": (True,), "both": (False, True)}[args.noise]:
                for baseline in variants:
                    one = {"device": device, "batch": batch, "noise": noise, "estimator": args.estimator,
                           "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
                           "baseline_run": baseline, "overrides": args.overrides}
                    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(one)],
                                         capture_output=True, text=True)
                    if out.returncode:
                        print(out.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(out.returncode)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append({**one, **r})
                    path = "baseline" if baseline else "optimized"
                    print(f"{device:<6} {path:<9} {batch:>5} {'on' if noise else 'off':>5} {r['seconds']:>8.2f} "
                          f"{r['images_per_s']:>9.2f} {r['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
