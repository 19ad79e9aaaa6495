"""Issue 14's GPU measurements in one call, printed as one table each.

1. **Steps**: s/step and peak memory of whole search steps (the loop's own
   ``Searcher.search_step``: architecture step + weight step) for DARTS, NoisyDARTS, PC-DARTS and
   NB201 (their presets), at batch 64 and 256, eager and with ``space.checkpoint`` and
   ``compile``. Each configuration runs in a fresh subprocess (its peak memory is its own: max
   allocated on CUDA, max RSS on CPU); a configuration that runs out of memory is reported as
   such. The images are the embedded cifar10-mini (a step's time does not depend on which
   images it sees).
2. **Whole searches**: the wall time of the full ``nb201-noisydarts`` search and of the first
   epochs of ``noisydarts-cifar10`` (``--epochs-of-long``), extrapolated to its 50 epochs, on
   CIFAR-10 from ``--data`` (a folder of class subfolders, or a name torchvision knows). Both
   run through ``noisydarts.search`` as a user's search does (run directories under ``--out``);
   a long search can also go in pieces with ``noisydarts search --resume``.

    python benchmarks/gpu_engine.py --data /path/to/cifar10 --out runs/gpu       # on a GPU machine
    python benchmarks/gpu_engine.py --quick                                      # a tiny version (CPU)

``--quick`` shrinks everything (batch 8, a 3-cell supernet, one epoch of 64 images) so that the
script itself can be checked on a CPU in about a minute; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = {  # the step table's rows: a name and its preset
    "DARTS": "darts-cifar10",
    "NoisyDARTS": "noisydarts-cifar10",
    "PC-DARTS": "pc-darts-cifar10",
    "NB201": "nb201-noisydarts",
}
# (name, overrides): eager; recomputation; compiled edges (CUDA graphs too on a GPU)
VARIANTS = {
    "eager": ["space.checkpoint=false"],
    "checkpoint": ["space.checkpoint=true"],
    "compile": ["space.checkpoint=false", "compile=default"],
    "compile+graphs": ["space.checkpoint=false", "compile=reduce-overhead"],
}


def quick_overrides(preset: str) -> list[str]:
    """``--quick``: a narrow, shallow supernet on 16x16 images."""
    shallow = ["space.cells_per_stage=1"] if preset.startswith("nb201") else ["space.layers=3", "space.nodes=2"]
    return ["space.channels=8", "data.resolution=16"] + shallow  # 8: PC-DARTS needs 2K channels


def step_overrides(preset: str, batch: int, quick: bool) -> list[str]:
    """Overrides for timing steps of ``preset`` at ``batch`` on the embedded data."""
    out = ["data.name=cifar10-mini", f"data.limit={4 * batch}", f"batch_size={batch}", "warmup_epochs=0", "plots=false"]
    return out + (quick_overrides(preset) if quick else [])


def time_steps(preset: str, overrides: list[str], steps: int, warmup: int) -> dict:
    """In this process: s/step and peak memory of ``steps`` search steps after ``warmup``."""
    import torch

    import noisydarts
    from _common import ready_searcher

    cfg = noisydarts.resolve_config(preset, None, overrides)
    s, args = ready_searcher(cfg)
    cuda = s.device.type == "cuda"

    def timed(n: int) -> float:
        """Mean seconds per step of ``n`` steps."""
        t0 = time.perf_counter()
        for _ in range(n):
            s.search_step(*args)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / max(n, 1)

    first = timed(1)  # compiling happens here (a compiled step's backward finishes in the next)
    timed(warmup - 1)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(steps)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_mb": peak / 2**20, "first_seconds": first, "device": str(s.device)}


def run_child(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        return {"error": "out of memory" if "out of memory" in out.stderr.lower() else tail[:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_table(args) -> None:
    print(f"{'method':<11} {'batch':>5} {'variant':<15} {'s/step':>8} {'images/s':>9} {'peak MB':>9} {'first s':>8}")
    for method, preset in METHODS.items():
        for batch in args.batch_sizes:
            for variant in args.variants:
                job = {"preset": preset, "overrides": step_overrides(preset, batch, args.quick) + VARIANTS[variant],
                       "steps": args.steps, "warmup": args.warmup}
                r = run_child(job)
                if "error" in r:
                    print(f"{method:<11} {batch:>5} {variant:<15} {r['error']}", flush=True)
                    continue
                print(f"{method:<11} {batch:>5} {variant:<15} {r['seconds']:>8.3f} {batch / r['seconds']:>9.0f} "
                      f"{r['peak_mb']:>9.0f} {r['first_seconds']:>8.1f}", flush=True)


def whole_searches(args) -> None:
    import noisydarts

    out = Path(args.out)
    data = ["data.name=" + (args.data or "cifar10-mini")]  # main() asks for --data unless --quick
    quick = ["epochs=1", "data.limit=64", "batch_size=8"] if args.quick else []
    print(f"\n{'search':<22} {'epochs run':>10} {'wall s':>8} {'s/epoch':>8} {'full search (est.)':>19}")
    for preset, epochs in (("nb201-noisydarts", None), ("noisydarts-cifar10", args.epochs_of_long)):
        overrides = data + quick + (quick_overrides(preset) if args.quick else [])
        cfg = noisydarts.resolve_config(preset, None, overrides + ["plots=false"])
        run_dir = out / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        t0 = time.perf_counter()
        result = noisydarts.search(cfg, out=run_dir, progress=False, stop_after=epochs)
        wall = time.perf_counter() - t0
        done = len(result.metrics)
        total = cfg["epochs"]
        estimate = wall if done == total else wall / done * total
        note = "measured" if done == total else f"extrapolated from {done}"
        print(f"{preset:<22} {done:>10} {wall:>8.0f} {wall / done:>8.1f} {estimate / 60:>9.1f} min ({note})",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                   help="default: all (with --quick: eager and checkpoint; compiling takes minutes on a CPU)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiling happens in the first two)")
    p.add_argument("--data", help="CIFAR-10 for the whole searches: a folder of class subfolders, or cifar10")
    p.add_argument("--out", default="runs/gpu-engine", help="where the whole searches' run directories go")
    p.add_argument("--epochs-of-long", type=int, default=2, help="epochs of noisydarts-cifar10 to time (of 50)")
    p.add_argument("--only", choices=["steps", "searches"], help="one of the two parts")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: time one configuration, print JSON
    args = p.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(time_steps(job["preset"], job["overrides"], job["steps"], job["warmup"])))
        return
    if not (args.data or args.quick or args.only == "steps"):
        p.error("the whole searches need CIFAR-10: --data DIR (or --only steps)")
    if args.quick:
        # two warm-up steps: a compiled step's backward graphs finish compiling in the second
        args.batch_sizes, args.steps, args.warmup, args.epochs_of_long = [8], 1, 2, 1
    args.variants = args.variants or (["eager", "checkpoint"] if args.quick else list(VARIANTS))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"torch {torch.__version__}, {device}")
    if args.only != "searches":
        step_table(args)
    if args.only != "steps":
        whole_searches(args)


if __name__ == "__main__":
    main()
