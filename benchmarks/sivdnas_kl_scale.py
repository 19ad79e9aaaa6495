"""How hard does the SI-VDNAS KL push the dropout rates, against the data term?

    python benchmarks/sivdnas_kl_scale.py                       # C=8, 5 cells, cifar10-mini
    python benchmarks/sivdnas_kl_scale.py --data /path/to/cifar10-jpeg --channels 16 --layers 8

The KL's scale is a reading of ours (``vdnas.kl_weight``: null = KL / N_val, the paper has no 1/N).
This measures, on the log-variances ``log delta`` of the ops, the gradient of the validation cross
entropy (through the reparameterized Gaussian noise, per architecture batch) and of the KL, after
``--warmup`` epochs of weight training with alpha frozen (as the presets' first 15 epochs). Adam
moves a parameter by about ``lr * E[g] / sqrt(E[g^2])`` per step, so the table gives that ratio for
the total gradient at several KL weights, and what it adds up to over the arch steps of the base
search (35 epochs x 391 steps at lr 3e-4): the distance ``log delta`` would drift if the gradients
stayed as they are now. ``log delta`` starts at -2.2 (p = 0.1) and an op is dropped by the
deterministic derivation at 0 (p = 1/2).
"""

from __future__ import annotations

import argparse
import tempfile

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10-mini")
    p.add_argument("--limit", type=int, default=4000)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3, help="epochs of weight training before measuring")
    p.add_argument("--batches", type=int, default=30, help="architecture batches to measure on")
    p.add_argument("--n-val", type=int, default=25_000, help="search-val examples of the real search (the KL's N)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from noisydarts.search import resolve_config
    from noisydarts.search import Searcher

    cfg = resolve_config("si-vdnas-cifar10", overrides={
        "data": {"name": args.data, "limit": args.limit}, "batch_size": args.batch, "device": "cpu",
        "space": {"channels": args.channels, "layers": args.layers}, "epochs": args.warmup + 1,
        "warmup_epochs": args.warmup, "plots": False})  # the epochs run below keep alpha frozen
    s = Searcher(cfg, tempfile.mkdtemp(), progress=False)
    for epoch in range(args.warmup):
        print(f"warm-up epoch {epoch + 1}: {s.train_epoch(epoch)}", flush=True)
    model, weighting = s.model, s.model.weighting
    model.train()
    params = [model.arch[f"log_delta_{k}"] for k in model.kinds]
    ce_grads, kl_grads = [], []
    batches = iter(s.arch_batches.epoch(0))
    for _ in range(args.batches):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(s.arch_batches.epoch(1))
            x, y = next(batches)
        model.begin_step()
        loss = model.training_loss(x, y)[0]
        ce_grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        kl_grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(weighting.kl(), params)]))
    ce, kl = torch.stack(ce_grads), torch.stack(kl_grads)  # [batches, entries]
    steps = 35 * 391 * 3e-4
    print(f"\nlog delta gradients over {args.batches} architecture batches (median over the {ce.shape[1]} ops of both cells)")
    print(f"  CE:  |mean| {ce.mean(0).abs().median():.2e}   std {ce.std(0).median():.2e}")
    print(f"  KL (unscaled, masked by Phi): mean {kl.mean(0).median():.2e}")
    print(f"\n{'KL weight':>12} {'E[g]/rms(g)':>12} {'drift over the base search':>27} {'ops drifting up':>16}")
    for name, weight in [("0", 0.0), (f"1/{args.n_val}", 1.0 / args.n_val), ("1e-3", 1e-3), ("1e-2", 1e-2), ("1", 1.0)]:
        g = ce + weight * kl
        ratio = g.mean(0) / g.pow(2).mean(0).sqrt()
        # the gradient points downhill: a negative gradient on log delta raises it (drops the op)
        drift = -ratio * steps
        print(f"{name:>12} {(-ratio).median():>12.3f} {drift.median():>27.2f} {(drift > 0).float().mean():>15.0%}")


if __name__ == "__main__":
    main()
