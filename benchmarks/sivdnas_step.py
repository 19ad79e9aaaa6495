"""SI-VDNAS search steps against first-order DARTS on the standard DARTS supernet.

    python benchmarks/sivdnas_step.py                   # C=16, 8 cells, 7 ops, 32x32, batch 32 and 64
    python benchmarks/sivdnas_step.py --rounds 8 --batch-sizes 64
    python benchmarks/sivdnas_step.py --memory          # also peak memory, one process per method

A step is the search loop's own ``Searcher.search_step`` (first-order architecture step, then the
weight step), NoisyDARTS noise off. SI-VDNAS adds per step the Bernoulli masks (``begin_step``),
per-sample Gaussian weights ``[edges, ops, B, 1, 1, 1]`` and the KL; ``batch noise`` is
``vdnas.granularity=batch`` (one noise draw per forward, ``[edges, ops]`` weights).

Timing is **paired**: one supernet per batch size (in a subprocess of its own), whose weighting is
swapped between the DARTS softmax and SI-VDNAS step by step, round after round, so that a busy spell
of a shared machine hits every method alike; the table gives each method's median and the median of
the per-round ratios to DARTS. (The DARTS rounds carry SI-VDNAS' unused log-variances in the
architecture optimizer: four small tensors without gradients, which Adam skips.) ``--memory``
measures peak memory (max RSS on CPU, max allocated on CUDA) with a fresh process per method via
``benchmarks/search_step.py``. The target of issue 12: SI-VDNAS at most 1.2x the DARTS time.
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

METHODS = ("DARTS (softmax)", "SI-VDNAS", "SI-VDNAS, batch noise")


def run_paired(args) -> dict:
    import tempfile

    import torch

    from noisydarts.search import resolve_config
    from noisydarts.methods.estimators import StepContext
    from noisydarts.methods.weightings import SoftmaxWeighting
    from noisydarts.search import Searcher, cross_entropy
    from noisydarts.runtime.device import autocast

    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = resolve_config(config_file={
        "device": args.device, "batch_size": args.batch, "data": {"name": "cifar10-mini", "limit": 4 * args.batch},
        "space": {"name": "darts", "channels": 16, "layers": 8, "nodes": 4}, "noise": {"enabled": False},
        "edge": {"weighting": "si_vdnas"}})
    s = Searcher(cfg, tempfile.mkdtemp(), progress=False)
    model = s.model
    si = model.weighting
    softmax = SoftmaxWeighting(model.arch, model.kinds, [t for t, _ in model.edge_list])
    setups = {METHODS[0]: (softmax, True), METHODS[1]: (si, True), METHODS[2]: (si, False)}
    model.train()
    train, val = next(iter(s.train_batches.epoch(0))), next(iter(s.arch_batches.epoch(0)))
    ctx = StepContext(loss_fn=cross_entropy, weight_optimizer=s.w_opt, weight_lr=cfg["weights"]["lr"])
    weights = model.weight_parameters()
    amp = autocast(cfg, s.device)
    cuda = s.device.type == "cuda"
    times = {name: [] for name in METHODS}
    for round_ in range(args.warmup + args.rounds):
        order = METHODS if round_ % 2 == 0 else METHODS[::-1]
        for name in order:
            weighting, per_sample = setups[name]
            model.weighting = weighting
            si.per_sample = per_sample
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            s.search_step(train, val, ctx, weights, amp)
            if cuda:
                torch.cuda.synchronize()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (one step of every method each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="also measure peak memory, one process per method")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one batch size, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_paired(argparse.Namespace(**json.loads(args.one)))))
        return
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, threads {args.threads or 'default'}, "
          f"{args.rounds} timed rounds after {args.warmup}", flush=True)
    header = (f"{'method':<22} {'batch':>5} {'median s/step':>13} {'min s/step':>10} {'vs DARTS (paired)':>18}"
              + (f" {'peak MB':>8}" if args.memory else ""))
    print(header)
    print("-" * len(header))
    for batch in args.batch_sizes:
        one = {"device": args.device, "batch": batch, "rounds": args.rounds, "warmup": args.warmup,
               "threads": args.threads}
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(one)], capture_output=True, text=True)
        if out.returncode:  # e.g. killed for memory on a shared machine: say so, go on
            print(f"batch {batch} failed (exit code {out.returncode}): {out.stderr[-500:]}", file=sys.stderr, flush=True)
            continue
        times = json.loads(out.stdout.strip().splitlines()[-1])
        peaks = memory(args, batch) if args.memory else {}
        base = times[METHODS[0]]
        for name in METHODS:
            ratio = statistics.median(t / b for t, b in zip(times[name], base))
            print(f"{name:<22} {batch:>5} {statistics.median(times[name]):>13.2f} {min(times[name]):>10.2f} "
                  f"{ratio:>17.2f}x" + (f" {peaks.get(name, float('nan')):>8.0f}" if args.memory else ""), flush=True)


def memory(args, batch) -> dict:
    """Peak memory per method, each in a fresh process of benchmarks/search_step.py."""
    overrides = {METHODS[0]: [], METHODS[1]: ["edge.weighting=si_vdnas"],
                 METHODS[2]: ["edge.weighting=si_vdnas", "vdnas.granularity=batch"]}
    script = Path(__file__).with_name("search_step.py")
    out = {}
    for name in METHODS:
        one = {"device": args.device, "batch": batch, "noise": False, "estimator": "first_order", "steps": 1,
               "warmup": 1, "threads": args.threads, "baseline_run": False, "keep_all": False,
               "checkpoint": False, "overrides": overrides[name]}
        r = subprocess.run([sys.executable, str(script), "--one", json.dumps(one)], capture_output=True, text=True)
        if r.returncode == 0:
            out[name] = json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"]
    return out


if __name__ == "__main__":
    main()
