"""PC-DARTS (K=4) against DARTS on the standard supernet: step time, peak memory, what autograd
keeps, and the cost of gradient projection (GP).

    python benchmarks/pc_darts.py                                   # batch 64 and 256; cpu, and cuda when present
    python benchmarks/pc_darts.py --batch-sizes 64 --steps 2 --methods pc-darts pc-darts-gp
    python benchmarks/pc_darts.py --saved-only                      # only the autograd column (instant)
    python benchmarks/pc_darts.py --interleave --batch-sizes 32     # step-time ratios on a busy machine

The supernet is the standard one (C=16, 8 cells, 4 nodes, 14 edges, the 8 DARTS ops with
``none``, 32x32 images of the embedded cifar10-mini, no noise). Methods are the presets:

* ``darts``: ``darts-cifar10`` (K=1, softmax);
* ``pc-darts``: ``pc-darts-cifar10`` (K=4 partial channels, edge normalization);
* ``pc-darts-gp``: ``pc-darts-gp-cifar10`` (the same with edge-in random gradient projection).

A step is the search loop's own ``Searcher.search_step`` (first-order architecture step, then
weight step), at the batch size given (not the preset's). Each configuration runs in a fresh
subprocess, so that its peak memory is its own: max RSS on CPU (the whole process: libraries,
data and model included; "step MB" is the growth over the RSS after setup), max allocated on
CUDA. "saved MB" is exact and machine-independent: the bytes of the tensors autograd keeps for
the backward pass of one forward of the search loss (parameters excluded, shared storages
counted once), computed on the meta device (no memory, no arithmetic), so it is given for every
batch size, also where a configuration does not fit in memory. "GP ms" times the projection
alone (the transform call, many repetitions). "CPU s" is the process CPU time per step (all
threads): with ``--threads 1`` on a shared machine it is the work done, much less disturbed by
the other processes than the wall time.

``--interleave`` times the methods in one process, a step of each in turn for ``--steps``
rounds, and reports the median: on a shared machine the load then hits every method alike, so
the ratios hold even where the absolute times do not (no memory column: the process is shared).

On CPU a configuration whose estimated peak (1.3 x saved + 1 GB) exceeds the available memory
(MemAvailable, or ``--memory-limit-mb``) is skipped rather than run into the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = {"darts": "darts-cifar10", "pc-darts": "pc-darts-cifar10", "pc-darts-gp": "pc-darts-gp-cifar10"}


def resolve(method: str, batch: int, device: str, overrides=()) -> dict:
    from noisydarts.search import resolve_config

    return resolve_config(METHODS[method], overrides=[
        f"device={device}", f"batch_size={batch}", "data.name=cifar10-mini", f"data.limit={min(5000, 4 * batch)}",
        "warmup_epochs=0", "plots=false", *overrides])


def saved_mb(method: str, batch: int) -> float:
    """Bytes autograd saves for one forward of the search loss, on the meta device."""
    import torch

    from noisydarts.spaces import build_supernet

    cfg = resolve(method, batch, "cpu")
    with torch.device("meta"):
        net = build_supernet(cfg, 10).to(memory_format=torch.channels_last)
        x = torch.empty(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.zeros(batch, dtype=torch.long)
    net.train()
    params = {p.untyped_storage()._cdata for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s._cdata not in params:
            saved.setdefault(s._cdata, s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net.training_loss(x, y)
    return sum(saved.values()) / 2**20


def run_one(args) -> dict:
    import torch
    from _common import ready_searcher

    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = resolve(args.method, args.batch, args.device, args.overrides)
    s, (train, val, ctx, weights, amp) = ready_searcher(cfg)
    cuda = s.device.type == "cuda"
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    for _ in range(args.warmup):
        s.search_step(train, val, ctx, weights, amp)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        s.search_step(train, val, ctx, weights, amp)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    cpu_seconds = (time.process_time() - c0) / args.steps
    if cuda:
        peak, setup = torch.cuda.max_memory_allocated(), 0
    else:
        peak, setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss_setup
    gp_ms = None
    if s.grad_transform.transforms:  # the alpha gradients of the last step are still there
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            s.grad_transform(s.model)
        if cuda:
            torch.cuda.synchronize()
        gp_ms = 1000 * (time.perf_counter() - t0) / reps
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "images_per_s": args.batch / seconds, "peak_mb": peak / 2**20,
            "step_mb": (peak - setup) / 2**20 if not cuda else None, "gp_ms": gp_ms}


def run_interleaved(args, batch: int) -> dict:
    """Median s/step of every method, timed in turn in this process (see the module docstring)."""
    import statistics

    import torch
    from _common import ready_searcher

    if args.threads:
        torch.set_num_threads(args.threads)
    device = (args.devices or ["cuda" if torch.cuda.is_available() else "cpu"])[0]
    runs = {}
    for method in args.methods:
        cfg = resolve(method, batch, device, args.overrides)
        runs[method] = ready_searcher(cfg)
    times = {m: [] for m in runs}
    for round_ in range(args.warmup + args.steps):
        for method, (s, (train, val, ctx, weights, amp)) in runs.items():
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            s.search_step(train, val, ctx, weights, amp)
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            if round_ >= args.warmup:
                times[method].append((time.perf_counter() - t0, time.process_time() - c0))
    return {m: tuple(statistics.median(x) for x in zip(*t)) for m, t in times.items()}


def mem_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--memory-limit-mb", type=float, default=None,
                   help="CPU: skip configurations estimated to need more (default: MemAvailable)")
    p.add_argument("--saved-only", action="store_true", help="only the autograd-saved column (meta device, instant)")
    p.add_argument("--interleave", action="store_true",
                   help="time the methods in turn in one process (median of --steps rounds): ratios on a busy machine")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(argparse.Namespace(**json.loads(args.one)))))
        return
    import torch

    saved = {(m, b): saved_mb(m, b) for b in args.batch_sizes for m in args.methods}
    if args.saved_only:
        print(f"{'method':<12} {'batch':>5} {'saved MB':>9}")
        for (m, b), mb in saved.items():
            print(f"{m:<12} {b:>5} {mb:>9.0f}")
        _ratios(saved, {}, args)
        return

    if args.interleave:
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or torch.get_num_threads()}, "
              f"interleaved: median of {args.steps} rounds after {args.warmup} warm-up", flush=True)
        print(f"{'method':<12} {'batch':>5} {'s/step':>8} {'CPU s':>8} {'CPU vs darts':>13}")
        for batch in args.batch_sizes:
            med = run_interleaved(args, batch)
            for m, (t, c) in med.items():
                rel = f"{c / med['darts'][1]:.2f}" if "darts" in med else "-"
                print(f"{m:<12} {batch:>5} {t:>8.2f} {c:>8.2f} {rel:>13}", flush=True)
            if "pc-darts" in med and "pc-darts-gp" in med:
                print(f"batch {batch}: GP vs PC-DARTS: step time {100 * (med['pc-darts-gp'][0] / med['pc-darts'][0] - 1):+.1f} %, "
                      f"CPU time {100 * (med['pc-darts-gp'][1] / med['pc-darts'][1] - 1):+.1f} %")
        return

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads or torch.get_num_threads()}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; supernet C=16, 8 cells, 8 ops", flush=True)
    header = (f"{'device':<6} {'method':<12} {'batch':>5} {'s/step':>8} {'CPU s':>7} {'images/s':>9} {'peak MB':>8} {'step MB':>8} "
              f"{'saved MB':>9} {'GP ms':>7}")
    print(header)
    print("-" * len(header))
    results = {}
    for device in devices:
        for batch in args.batch_sizes:
            for method in args.methods:
                prefix = f"{device:<6} {method:<12} {batch:>5}"
                need = 1.3 * saved[(method, batch)] + 1000
                limit = args.memory_limit_mb if args.memory_limit_mb is not None else mem_available_mb()
                if device == "cpu" and limit is not None and need > limit:
                    print(f"{prefix}  skipped: needs ~{need / 1024:.1f} GB, {limit / 1024:.1f} GB available "
                          f"{'':>1}{saved[(method, batch)]:>9.0f}", flush=True)
                    continue
                one = {"device": device, "batch": batch, "method": method, "steps": args.steps, "warmup": args.warmup,
                       "threads": args.threads, "overrides": args.overrides}
                out = subprocess.run([sys.executable, __file__, "--one", json.dumps(one)], capture_output=True, text=True)
                if out.returncode:
                    last = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
                    print(f"{prefix}  failed ({last[:80]})", flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results[(device, method, batch)] = r
                step_mb = "-" if r["step_mb"] is None else f"{r['step_mb']:.0f}"
                gp = "-" if r["gp_ms"] is None else f"{r['gp_ms']:.2f}"
                print(f"{prefix} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {r['images_per_s']:>9.2f} {r['peak_mb']:>8.0f} {step_mb:>8} "
                      f"{saved[(method, batch)]:>9.0f} {gp:>7}", flush=True)
    _ratios(saved, results, args)


def _ratios(saved, results, args):
    print()
    for b in args.batch_sizes:
        if ("darts", b) in saved and ("pc-darts", b) in saved:
            line = f"batch {b}: K=4 / DARTS  autograd-saved {saved[('pc-darts', b)] / saved[('darts', b)]:.2f}"
            for device in ("cpu", "cuda"):
                d, pc = results.get((device, "darts", b)), results.get((device, "pc-darts", b))
                if d and pc:
                    line += f", {device} peak {pc['peak_mb'] / d['peak_mb']:.2f}"
                    if d["step_mb"] and pc["step_mb"]:
                        line += f" (step growth {pc['step_mb'] / d['step_mb']:.2f})"
                    line += f", {device} time {pc['seconds'] / d['seconds']:.2f}"
                    if device == "cpu":
                        line += f", CPU time {pc['cpu_seconds'] / d['cpu_seconds']:.2f}"
            print(line)
        for device in ("cpu", "cuda"):
            pc, gp = results.get((device, "pc-darts", b)), results.get((device, "pc-darts-gp", b))
            if pc and gp:
                print(f"batch {b} {device}: GP overhead: projection {gp['gp_ms']:.2f} ms = "
                      f"{100 * gp['gp_ms'] / 1000 / pc['seconds']:.2g} % of a PC-DARTS step; "
                      f"measured step time {100 * (gp['seconds'] / pc['seconds'] - 1):+.1f} %"
                      + (f", CPU time {100 * (gp['cpu_seconds'] / pc['cpu_seconds'] - 1):+.1f} %" if device == "cpu" else "")
                      + " (run-to-run noise included)")


if __name__ == "__main__":
    main()
