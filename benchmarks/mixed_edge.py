"""The mixed edge's weighted sum: fused multiply-adds (``torch.addcmul``, what MixedEdge does)
against the unfused ``out + y * w`` it replaced.

One DARTS-space mixed edge (the 8 DARTS ops, softmax weights), forward + backward to the weights
and the input, interleaved (fused, unfused, fused, ...) so that a shared machine's load falls on
both alike. Prints wall and CPU seconds per pass, the ratio, and on CUDA the kernels launched
per pass (``torch.profiler``), which bound an eager GPU step.

    PYTHONPATH=src python benchmarks/mixed_edge.py [--batch 64] [--channels 16] [--size 32] [--rounds 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from noisydarts.nn.mixed import MixedEdge
from noisydarts.nn.ops import DARTS_OPS


def unfused(edge: MixedEdge, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The sum as it was written before: ``out = out + y * w_k``."""
    out = None
    for k, op in zip(edge.active, edge.ops):
        y = op(x)
        out = y * weights[k] if out is None else out + y * weights[k]
    return out


def kernels_per_pass(step) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type.name == "CUDA")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    edge = MixedEdge(DARTS_OPS, args.channels, 1, bn_after_pool=True).to(dev).train()
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=dev, requires_grad=True)
    alpha = torch.zeros(len(DARTS_OPS), device=dev, requires_grad=True)

    def make_step(forward):
        def step():
            out = forward(x, torch.softmax(alpha, 0))
            out.square().mean().backward()
        return step

    steps = {"fused (addcmul)": make_step(edge), "unfused (out + y * w)": make_step(lambda x, w: unfused(edge, x, w))}
    wall = {name: 0.0 for name in steps}
    cpu = dict(wall)
    for step in steps.values():
        step()  # warm-up
    for _ in range(args.rounds):
        for name, step in steps.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
    kernels = {name: kernels_per_pass(step) for name, step in steps.items()} if dev.type == "cuda" else {}
    print(f"mixed edge, {len(DARTS_OPS)} ops, batch {args.batch}, C={args.channels}, {args.size}x{args.size}, "
          f"{dev.type}, {args.threads} thread(s), {args.rounds} interleaved rounds")
    print(f"{'weighted sum':24} {'ms/pass':>9} {'CPU ms/pass':>12}" + (f" {'kernels':>8}" if kernels else ""))
    for name in steps:
        line = f"{name:24} {1e3 * wall[name] / args.rounds:9.2f} {1e3 * cpu[name] / args.rounds:12.2f}"
        print(line + (f" {kernels[name]:8d}" if kernels else ""))
    a, b = steps
    print(f"fused / unfused: {wall[a] / wall[b]:.3f} wall, {cpu[a] / cpu[b]:.3f} CPU")


if __name__ == "__main__":
    main()
