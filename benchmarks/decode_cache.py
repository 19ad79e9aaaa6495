"""Time from a fresh process's start until its first batch, with and without the decoded-image cache.

What a search does before its first step (``open_dataset(data, "train")``, the seeded
``data.limit`` sample, ``make_batches`` of its two halves, the first batch), and what
``evaluate`` does (the test split, the first test batch), each in a fresh Python process, so that
the time includes starting Python and importing noisydarts and torch. Rows:

* **before**: the code before the cache (``--before-rev``, exported with ``git archive`` into a
  temporary directory): every process decodes the split, statistics exact over every train pixel;
* **cache off**: this code with ``data.cache=false`` (decoded in memory in every process);
* **cold**: this code, empty cache directory (the first run decodes into it);
* **warm**: the second and later runs;
* **evaluate warm**: the test split, warm;
* **`noisydarts search`**: the whole command (config, run directory, data, supernet, optimizers),
  from its process start to its start line, printed as epoch 1 begins: before, and warm.

Every row: the median (and range) of ``--repeats`` runs; a cold run starts from an empty cache
directory each time.

Each with the whole training split and with ``data.limit`` (``--limit``). Prints one markdown table::

    python benchmarks/decode_cache.py --data /work/data/cifar10 --before-rev 1cee22b
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/work/data/cifar10")
ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")

CHILD = r"""
import json, sys, time
start = float(sys.argv[1])
data, split = json.loads(sys.argv[2]), sys.argv[3]
import torch
from noisydarts.data import make_batches, open_dataset, split_indices
imported = time.time()
dataset = open_dataset(data, split)
if split == "train":  # as the search loop: a seeded data.limit sample, its two halves' batches
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    if data.get("limit") is not None:
        indices = indices[: data["limit"]]
    half, other = split_indices(len(indices), 0.5, 0)
    batches = make_batches(dataset, indices[half], 64, seed=0, train=True, data=data)
    make_batches(dataset, indices[other], 64, seed=1, train=True, data=data)
else:  # as evaluate: every test image in order
    batches = make_batches(dataset, torch.arange(len(dataset)), 64, seed=0, train=False, data=data)
x, y = next(iter(batches.epoch(0)))
print(json.dumps({"import_s": imported - start, "first_batch_s": time.time() - start, "images": len(dataset)}))
"""


def find_data(path: Path) -> Path:
    if path.is_dir():
        return path
    if path == DEFAULT_DATA and ARCHIVE.is_file():
        print(f"unpacking {ARCHIVE} into {path.parent}", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(path.parent, filter="data")
        return path
    sys.exit(f"no folder {path}: give --data")


def run(src: Path, data: dict, split: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, repr(start), json.dumps(data), split], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def search_start(src: Path, data: dict, out: Path) -> dict:
    """Seconds from starting ``noisydarts search`` to its start line (epoch 1 begins); then it is stopped."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    sets = [f"data.{k}={'null' if v is None else v}" for k, v in data.items()]
    argv = [sys.executable, "-m", "noisydarts", "search", "--set", "epochs=1", "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seconds = None
    for line in proc.stdout:
        if line.startswith("search: starting"):
            seconds = time.time() - start
            break
    proc.kill()
    proc.wait()
    shutil.rmtree(out, ignore_errors=True)
    if seconds is None:
        sys.exit(f"noisydarts search printed no start line: {' '.join(argv)}")
    return {"import_s": float("nan"), "first_batch_s": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the image folder (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--limit", type=int, default=2000, help="data.limit of the second set of rows")
    p.add_argument("--repeats", type=int, default=3, help="runs of each warm row (median)")
    p.add_argument("--before-rev", default=None, help="git revision of the code before the cache (row skipped if none)")
    args = p.parse_args()
    folder = find_data(args.data)
    work = Path(tempfile.mkdtemp(prefix="decode-cache-"))
    try:
        before_src = None
        if args.before_rev:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before_rev, "src"], capture_output=True,
                                     check=True).stdout
            (work / "before.tar").write_bytes(archive)
            with tarfile.open(work / "before.tar") as tar:
                tar.extractall(work / "before", filter="data")
            before_src = work / "before" / "src"
        src = REPO / "src"
        rows = []
        n = args.repeats
        for limit in (None, args.limit):
            base = {"name": str(folder), "resolution": args.resolution, "limit": limit}  # in_memory: auto
            label = "all" if limit is None else f"data.limit {limit:,}"

            def cold(k: int, split: str = "train") -> dict:  # a fresh, empty cache directory each time
                return run(src, base | {"cache_dir": str(work / f"cold-{limit}-{split}-{k}")}, split)

            mine = base | {"cache_dir": str(work / f"cache-{limit}")}
            if before_src is not None:
                rows.append((label, f"before ({args.before_rev})", [run(before_src, base, "train") for _ in range(n)]))
            rows.append((label, "cache off (data.cache=false)", [run(src, base | {"cache": False}, "train") for _ in range(n)]))
            rows.append((label, "cold: empty cache", [cold(k) for k in range(n)]))
            run(src, mine, "train")  # fills the cache
            rows.append((label, "warm: cache filled", [run(src, mine, "train") for _ in range(n)]))
            if limit is None:
                if before_src is not None:
                    rows.append((label, f"evaluate, before ({args.before_rev})", [run(before_src, base, "test") for _ in range(n)]))
                run(src, mine, "test")  # fills the test split's entry
                rows.append((label, "evaluate: test split, warm", [run(src, mine, "test") for _ in range(n)]))
                if before_src is not None:
                    rows.append((label, f"`noisydarts search` to epoch 1, before ({args.before_rev})",
                                 [search_start(before_src, base, work / "run") for _ in range(n)]))
                rows.append((label, "`noisydarts search` to epoch 1, warm",
                             [search_start(src, mine, work / "run") for _ in range(n)]))
            size = sum(f.stat().st_size for f in work.glob(f"cache-{limit}/*.u8"))
            print(f"{label}: the cache of one run holds {size / 2**20:.0f} MiB", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{folder} at {args.resolution} px; each run a fresh process; median (min-max) of {args.repeats}\n")
    print("| images | run | import (s) | start to first batch (s) |\n| --- | --- | ---: | ---: |")
    for label, name, results in rows:
        first = [r["first_batch_s"] for r in results]
        imported = statistics.median(r["import_s"] for r in results)
        shown = "-" if imported != imported else f"{imported:.2f}"  # NaN: not measured (the whole command)
        print(f"| {label} | {name} | {shown} | {statistics.median(first):.2f} ({min(first):.2f}-{max(first):.2f}) |")


if __name__ == "__main__":
    main()
