"""Images/s and peak memory of training steps of the CIFAR network of NoisyDARTS-a.

One step = forward + backward + SGD step, auxiliary head on, drop-path 0.2, batch 96 (DARTS
protocol). CPU always; CUDA too when present (bf16 autocast, channels_last).

    PYTHONPATH=src python benchmarks/train_step.py [--steps 3] [--batch 96] [--channels 36 --layers 20]
"""

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from noisydarts.models import zoo
from noisydarts.spaces.darts import NetworkCIFAR


def bench(device: str, batch: int, steps: int, channels: int, layers: int) -> tuple[float, float]:
    model = NetworkCIFAR(zoo.get("noisydarts_a"), 10, channels, layers, auxiliary=True, drop_path_prob=0.2).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def step():
        opt.zero_grad(set_to_none=True)
        with amp:
            logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, MiB
    return batch * steps / (time.perf_counter() - t0), peak


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"NoisyDARTS-a CIFAR network C={args.channels}, {args.layers} cells, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'device':<8}{'images/s':>10}{'peak MiB':>10}")
    for dev in devices:
        ips, peak = bench(dev, args.batch, args.steps, args.channels, args.layers)
        print(f"{dev:<8}{ips:>10.1f}{peak:>10.0f}")


if __name__ == "__main__":
    main()
