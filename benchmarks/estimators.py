"""Time per search step of each architecture-gradient estimator, relative to first order.

A search step = the estimator's architecture gradient + the weight step (forward, backward,
SGD), as in the search loop. Default: the quick preset's DARTS supernet (C=8, 5 cells, 7 ops,
NoisyDARTS noise), batch 32 at 32x32, random data, on the CPU.

    PYTHONPATH=src python benchmarks/estimators.py [--channels 8 --layers 5 --batch 32 --steps 3 --device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from noisydarts.search import resolve_config
from noisydarts.methods.estimators import StepContext, build_estimator
from noisydarts.search import cross_entropy
from noisydarts.spaces import build_supernet

VARIANTS = [("first_order", []), ("second_order", []), ("second_order", ["estimator.exact=true"]), ("amended", [])]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = [f"space.channels={args.channels}", f"space.layers={args.layers}"]
    model = build_supernet(resolve_config("quick", overrides=base), 10).to(device)
    batch = lambda: (torch.randn(args.batch, 3, 32, 32, device=device), torch.randint(0, 10, (args.batch,), device=device))
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    ctx = StepContext(cross_entropy, w_opt, 0.025)
    rows = []
    for name, extra in VARIANTS:
        est = build_estimator(resolve_config("quick", overrides=base + [f"estimator.name={name}"] + extra))
        arch_t = step_t = 0.0
        for i in range(args.steps + 1):  # the first step warms up
            train, val = batch(), batch()
            sync(device)
            t0 = time.perf_counter()
            est.step(model, train, val, ctx)
            sync(device)
            t1 = time.perf_counter()
            w_opt.zero_grad(set_to_none=True)
            cross_entropy(model, *train).backward(inputs=model.weight_parameters())
            w_opt.step()
            sync(device)
            t2 = time.perf_counter()
            if i:
                arch_t, step_t = arch_t + t1 - t0, step_t + t2 - t0
        label = name + (" (exact)" if extra else "")
        rows.append((label, arch_t / args.steps, step_t / args.steps))
        if len(rows) == 1:
            print(f"device {device}, C={args.channels}, {args.layers} cells, batch {args.batch}, {args.steps} timed steps")
            print(f"{'estimator':<22} {'arch grad s':>11} {'x first':>8} {'search step s':>13} {'x first':>8}")
        a, s = rows[-1][1:]
        print(f"{label:<22} {a:>11.3f} {a / rows[0][1]:>8.2f} {s:>13.3f} {s / rows[0][2]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
