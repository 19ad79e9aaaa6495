"""Time whole search steps (architecture step + weight step) of the DARTS supernet.

    python benchmarks/search_step.py                      # C=16, 8 cells, 32x32, batch 32 and 64, noise on/off
    python benchmarks/search_step.py --estimator second_order --batch-sizes 32
    python benchmarks/search_step.py --baseline           # also time the unoptimized path

Each configuration runs in a fresh subprocess so that its peak memory (max RSS on CPU,
max allocated on CUDA) is its own. The step is the search loop's own ``Searcher.search_step``.

``--baseline`` times what a straightforward implementation computes (the same numbers, as the
DARTS/NoisyDARTS releases compute them): NCHW tensors, dilated depthwise convs run as dilated
convs, and an architecture step that backpropagates into every weight as ``loss.backward()`` does.

Memory (issue 14): ``--checkpoint off on`` runs every configuration without and with
``space.checkpoint`` (mixed edges recomputed in the backward pass); ``--keep-all`` adds rows where
autograd keeps everything, as before the search loop froze the parameters a step does not
differentiate (α in the weight step, the weights in a first-order architecture step).
"CPU s" is the process CPU time per step (all threads): on a shared machine it is much less
disturbed by the other processes than the wall time.

    python benchmarks/search_step.py --batch-sizes 32 --noise on --checkpoint off on --keep-all
    python benchmarks/search_step.py --batch-sizes 32 --noise on --interleave --steps 5

``--interleave`` times checkpoint off and on in one process, a step of each in turn, and prints
the medians and their ratio (the load of a shared machine then hits both alike; no memory column).

``--compile off default`` also runs every optimized configuration with ``compile`` (torch.compile
of each mixed edge, :mod:`noisydarts.compiling`; ``reduce-overhead`` adds CUDA graphs on a GPU).
"first s" is the first (warm-up) step's time: compiling happens there (eager's first step also sets
up its kernels).

    python benchmarks/search_step.py --batch-sizes 32 --checkpoint off --compile off default
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def build(args, checkpoint: bool):
    """A Searcher for one configuration, and what its steps need."""
    import contextlib
    import tempfile

    import torch

    from noisydarts.nn import recompute as checkpointing
    from noisydarts.search import resolve_config
    from noisydarts.methods.estimators import StepContext
    from noisydarts.nn.ops import DepthwiseConv2d
    from noisydarts.search import Searcher, cross_entropy
    from noisydarts.runtime.device import autocast

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if getattr(args, "keep_all", False):  # what autograd kept before the steps froze parameters
        checkpointing.frozen = lambda params: contextlib.nullcontext()
    cfg = resolve_config(overrides=list(args.overrides), config_file={
        "device": args.device, "batch_size": args.batch, "channels_last": not args.baseline_run,
        "data": {"name": "cifar10-mini", "limit": 4 * args.batch},
        "space": {"name": "darts", "channels": 16, "layers": 8, "nodes": 4, "checkpoint": checkpoint},
        "noise": {"enabled": args.noise}, "estimator": {"name": args.estimator},
        "compile": args.compile,
    })
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

    def step():
        loss, _ = s.search_step(train, val, ctx, weights, amp)
        return loss

    return s, step


def run_one(args) -> dict:
    import torch

    s, step = build(args, args.checkpoint)
    cuda = s.device.type == "cuda"
    first = None
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        first = time.perf_counter() - t0 if first is None else first
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    cpu_seconds = (time.process_time() - c0) / args.steps
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "images_per_s": args.batch / seconds, "peak_mb": peak / 2**20,
            "first_seconds": first}


def run_interleaved(args) -> dict:
    """Median (s/step, CPU s/step) with checkpoint off and on, a step of each in turn."""
    import statistics

    import torch

    steps = {ck: build(args, ck) for ck in (False, True)}
    cuda = next(iter(steps.values()))[0].device.type == "cuda"
    times = {ck: [] for ck in steps}
    for round_ in range(args.warmup + args.steps):
        for ck, (_, step) in steps.items():
            if cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if cuda:
                torch.cuda.synchronize()
            if round_ >= args.warmup:
                times[ck].append((time.perf_counter() - t0, time.process_time() - c0))
    return {ck: tuple(statistics.median(x) for x in zip(*t)) for ck, t in times.items()}


def main():
    from noisydarts.nn.compiling import MODES

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
    p.add_argument("--checkpoint", nargs="+", choices=["off", "on"], default=["off", "on"],
                   help="space.checkpoint values to run (default: both)")
    p.add_argument("--keep-all", action="store_true",
                   help="also run with autograd keeping everything (no parameters frozen: before issue 14)")
    p.add_argument("--compile", nargs="+", choices=MODES,
                   default=["off"], help="compile values to run the optimized path with (default: off)")
    p.add_argument("--interleave", action="store_true",
                   help="time checkpoint off and on in turn in one process (median of --steps rounds)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args()
    if args.one:
        one = argparse.Namespace(**json.loads(args.one))
        print(json.dumps(run_one(one)))
        return
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or torch.get_num_threads()}, "
          f"estimator {args.estimator} {' '.join(args.overrides)}, {args.steps} timed steps after {args.warmup} warm-up",
          flush=True)
    noises = {"off": (False,), "on": (True,), "both": (False, True)}[args.noise]
    if args.interleave:
        print(f"{'device':<6} {'batch':>5} {'noise':>5} {'ckpt':>4} {'s/step':>8} {'CPU s':>7}")
        for device in devices:
            for batch in args.batch_sizes:
                for noise in noises:
                    one = argparse.Namespace(device=device, batch=batch, noise=noise, estimator=args.estimator,
                                             steps=args.steps, warmup=args.warmup, threads=args.threads,
                                             baseline_run=False, overrides=args.overrides, compile="off")
                    med = run_interleaved(one)
                    for ck, (t, c) in med.items():
                        print(f"{device:<6} {batch:>5} {'on' if noise else 'off':>5} {'on' if ck else 'off':>4} "
                              f"{t:>8.2f} {c:>7.2f}", flush=True)
                    print(f"  checkpoint on / off: step time {med[True][0] / med[False][0]:.2f}, "
                          f"CPU time {med[True][1] / med[False][1]:.2f}", flush=True)
        return
    rows = []
    variants = [("optimized", False, False, mode) for mode in args.compile]
    if args.keep_all:
        variants.append(("keep-all", False, True, "off"))
    if args.baseline:
        variants.append(("baseline", True, True, "off"))
    header = (f"{'device':<6} {'path':<9} {'batch':>5} {'noise':>5} {'ckpt':>4} {'compile':>15} {'s/step':>8} "
              f"{'CPU s':>7} {'images/s':>9} {'peak MB':>8} {'first s':>8}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for batch in args.batch_sizes:
            for noise in noises:
                for path, baseline, keep_all, mode in variants:
                    for ck in args.checkpoint:
                        one = {"device": device, "batch": batch, "noise": noise, "estimator": args.estimator,
                               "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
                               "baseline_run": baseline, "keep_all": keep_all, "checkpoint": ck == "on",
                               "overrides": args.overrides, "compile": mode}
                        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(one)],
                                             capture_output=True, text=True)
                        if out.returncode:
                            print(out.stderr[-2000:], file=sys.stderr)
                            raise SystemExit(out.returncode)
                        r = json.loads(out.stdout.strip().splitlines()[-1])
                        rows.append({**one, **r})
                        first = "" if r["first_seconds"] is None else f"{r['first_seconds']:.1f}"
                        print(f"{device:<6} {path:<9} {batch:>5} {'on' if noise else 'off':>5} {ck:>4} {mode:>15} "
                              f"{r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {r['images_per_s']:>9.2f} "
                              f"{r['peak_mb']:>8.0f} {first:>8}", flush=True)
    # The lead over the release-like path, measured in this run (issue 14 part 5).
    for row in rows:
        base = next((b for b in rows if b["baseline_run"] and not row["baseline_run"] and not row["keep_all"]
                     and row["compile"] == "off"
                     and all(b[k] == row[k] for k in ("device", "batch", "noise", "checkpoint"))), None)
        if base is not None:
            print(f"{row['device']} batch {row['batch']} noise {'on' if row['noise'] else 'off'} checkpoint "
                  f"{'on' if row['checkpoint'] else 'off'}: baseline / optimized step time "
                  f"{base['seconds'] / row['seconds']:.2f}x, CPU time {base['cpu_seconds'] / row['cpu_seconds']:.2f}x, "
                  f"peak memory optimized / baseline {row['peak_mb'] / base['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
