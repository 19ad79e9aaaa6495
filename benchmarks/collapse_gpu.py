"""The collapse benchmark at the papers' full budget on a GPU, in pieces that resume.

The same comparisons as the CPU table (docs/results/2026-12-07-collapse-benchmark.md), at the
papers' budget: every method's NB201 preset x 4 seeds for 50 epochs on the 25,000 + 25,000 split
of CIFAR-10 at 32x32 (benchmarks/nb201_collapse.py), then every method's DARTS-space preset in
RobustDARTS' S2 and S3 x 2 seeds at its own full budget (benchmarks/robust_darts_collapse.py).
Each is a ``noisydarts compare`` directory under ``--out``; run the same command again to go on
where it stopped (finished runs are kept, a stopped run resumes from its last epoch exactly).

``--budget SECONDS`` stops after that long: the comparison's whole process group is killed
(kill -9: what resume is tested against), so a machine lent for a few minutes at a time runs the
benchmark in pieces. At the end of every piece the tables of what has finished are printed
(benchmarks/collapse_table.py).

    python benchmarks/collapse_gpu.py --data /path/to/cifar10 --out runs/collapse-gpu --budget 540
    python benchmarks/collapse_gpu.py --data /path/to/cifar10 --out runs/collapse-gpu --budget 540   # again: continues

``--jobs`` searches share the GPU at a time (default 4; each NB201 search uses about 1 GiB),
``--threads`` CPU threads each. ``--stages nb201 s2 s3`` picks what to run (in that order).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def commands(args) -> dict[str, list[str]]:
    common = ["--data", args.data, "--jobs", str(args.jobs), "--threads", str(args.threads), "--set", "plots=false",
              "--set", f"device={args.device}"]
    out = Path(args.out)
    cmds = {"nb201": [sys.executable, str(HERE / "nb201_collapse.py"), "--seeds", "0", "1", "2", "3", "--epochs", "50",
                      "--out", str(out / "nb201"), *common]}
    for s in ("s2", "s3"):
        cmds[s] = [sys.executable, str(HERE / "robust_darts_collapse.py"), "--op-set", s, "--seeds", "0", "1",
                   "--epochs", "50", "--out", str(out / f"robust-{s}"), *common]
    return cmds


def run_piece(cmd: list[str], deadline: float) -> str:
    """Run ``cmd`` in its own process group until it ends or ``deadline``: "done", "failed" or "stopped"."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)  # the comparison and every search it started
            proc.wait()
            return "stopped"
        time.sleep(2)
    return "done" if proc.returncode == 0 else "failed"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 folder (train/, test/) or cifar10")
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=None, help="seconds to run before stopping (default: to the end)")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--device", default="cuda")
    p.add_argument("--stages", nargs="+", choices=["nb201", "s2", "s3"], default=["nb201", "s2", "s3"])
    args = p.parse_args(argv)
    deadline = time.monotonic() + (args.budget if args.budget else float("inf"))
    cmds = commands(args)
    status = "done"
    for stage in args.stages:
        print(f"== {stage}: {' '.join(cmds[stage])}", flush=True)
        status = run_piece(cmds[stage], deadline)
        print(f"== {stage}: {status}", flush=True)
        if status != "done":
            break
    dirs = [str(Path(args.out) / d) for d in ("nb201", "robust-s2", "robust-s3") if (Path(args.out) / d / "compare.json").exists()]
    if dirs:
        subprocess.run([sys.executable, str(HERE / "collapse_table.py"), *dirs])
    if status == "stopped":
        print("stopped at the budget: run the same command again to continue", flush=True)
    return 0 if status in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
