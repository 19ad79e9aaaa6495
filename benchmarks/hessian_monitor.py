"""Overhead of the Hessian monitor (``monitor.hessian_every: 1``) against a search epoch.

    python benchmarks/hessian_monitor.py                       # standard supernet, batch 64
    python benchmarks/hessian_monitor.py --set monitor.hessian_batches=2

The standard DARTS supernet (C=16, 8 cells, 4 nodes, 7 ops, 32x32, NoisyDARTS noise on) at
batch 64: ``--steps`` whole search steps (architecture + weight step, the loop's own
``Searcher.search_step``) are timed after ``--warmup`` and scaled to one epoch of
``--epoch-images`` search-train images (25,000 = CIFAR-10's half, 391 steps at batch 64); then
the monitor's measurement (:func:`noisydarts.hessian.dominant_eigenvalue` with the config's
``monitor.*`` values, as the callback calls it) is timed twice: *cold* (Lanczos from a random
vector, as the first measurement of a search) and *warm* (from the Ritz vector of a measurement
taken before the timed search steps, as the monitor does from one measurement to the next; in a
real search a whole epoch lies between them, so the warm figure is a best case). One untimed
measurement comes first (first-call allocations). With ``hessian_every: 1`` the overhead is one
measurement per epoch: measurement / epoch.
Everything runs in one fresh subprocess, so the peak memory (max RSS on CPU, max allocated on
CUDA) is this benchmark's own. The epoch time is an extrapolation from a few steps, not a
measured epoch.
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
    from _common import ready_searcher

    from noisydarts.search import resolve_config
    from noisydarts.methods.hessian import dominant_eigenvalue
    from noisydarts.search import cross_entropy

    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = resolve_config(overrides=list(args.overrides), config_file={
        "device": args.device, "batch_size": args.batch,
        "data": {"name": "cifar10-mini", "limit": 4 * args.batch},
        "space": {"name": "darts", "channels": 16, "layers": 8, "nodes": 4},
        "noise": {"enabled": True}, "monitor": {"hessian_every": 1},
    })
    s, (train, val, ctx, weights, amp) = ready_searcher(cfg)
    cuda = s.device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    m = cfg["monitor"]
    batches = []
    for x, y in s.val_batches.epoch(0):  # as HessianMonitor.on_start takes them
        n = m["hessian_batch_size"] or len(y)
        batches.append((x[:n], y[:n]))
        if len(batches) == m["hessian_batches"]:
            break

    def measure(start=None):
        sync()
        t0 = time.perf_counter()
        estimate = dominant_eigenvalue(s.model, batches, cross_entropy, iterations=m["hessian_iterations"],
                                       tol=m["hessian_tol"], seed=cfg["seed"], noise=m["hessian_noise"], start=start)
        sync()
        return estimate, time.perf_counter() - t0

    for _ in range(args.warmup):
        s.search_step(train, val, ctx, weights, amp)
    before, _ = measure()  # untimed: first-call allocations; its vector starts the warm measurement
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        s.search_step(train, val, ctx, weights, amp)
    sync()
    step = (time.perf_counter() - t0) / args.steps
    cold, cold_s = measure()
    warm, warm_s = measure(start=before.vector)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steps_per_epoch = -(-args.epoch_images // args.batch)
    return {"step_s": step, "steps_per_epoch": steps_per_epoch, "epoch_s": step * steps_per_epoch,
            "cold_s": cold_s, "cold_products": cold.products, "warm_s": warm_s, "warm_products": warm.products,
            "eigenvalue": cold.value, "warm_eigenvalue": warm.value, "peak_mb": peak / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="timed search steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--epoch-images", type=int, default=25_000, help="search-train images per epoch (CIFAR-10: 25,000)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config values, e.g. --set monitor.hessian_tol=1e-2")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run in this process, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(argparse.Namespace(**json.loads(args.one)))))
        return
    import torch

    one = {k: getattr(args, k) for k in ("batch", "steps", "warmup", "epoch_images", "device", "threads", "overrides")}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or torch.get_num_threads()}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, device {args.device}, batch {args.batch}, "
          f"{' '.join(args.overrides)}", flush=True)
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(one)], capture_output=True, text=True)
    if out.returncode:
        print(out.stderr[-3000:], file=sys.stderr)
        raise SystemExit(out.returncode)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"search step {r['step_s']:.2f} s x {r['steps_per_epoch']} steps = {r['epoch_s']:.0f} s per epoch (scaled); "
          f"peak {r['peak_mb']:.0f} MB")
    header = f"{'start':<5} {'HVPs':>4} {'monitor s':>9} {'s/HVP':>6} {'overhead':>8} {'lambda_max':>10}"
    print(header)
    print("-" * len(header))
    for kind in ("cold", "warm"):
        seconds, products = r[f"{kind}_s"], r[f"{kind}_products"]
        value = r["eigenvalue" if kind == "cold" else "warm_eigenvalue"]
        print(f"{kind:<5} {products:>4} {seconds:>9.1f} {seconds / products:>6.2f} {100 * seconds / r['epoch_s']:>7.2f}% "
              f"{value:>10.5g}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
