"""Does the NoisyDARTS noise leave the architecture gradient unbiased on the real supernets?

For one supernet state (initialization, or a checkpoint saved by ``search_run.py --keep``) and
each noise variant, with the weights and alpha fixed and the BNs in training mode (batch
statistics, as in every search step), this measures per architecture parameter:

* ``g_off``: the gradient of the search loss w.r.t. alpha with the noise off, on a fixed batch;
* ``g_on``: its mean over ``--draws`` noise samples on the same batch, with the standard error
  (std over draws / sqrt(draws)); Eq. 4 of NoisyDARTS says ``E[g_on] = g_off``;
* ``sd_noise``: the std of ``g_on`` over the draws (the noise's own gradient variance), and
  ``sd_batch``: the std of ``g_off`` over ``--adam-steps`` different batches (DARTS' variance);
* ``adam_off`` / ``adam_on``: what Adam (betas 0.5, 0.999, as in search) makes of these
  gradients: its normalized step ``m_hat / sqrt(v_hat)`` averaged over a sequence of
  ``--adam-steps`` batches (one noise draw per batch for ``adam_on``, like a real search), in
  units of the architecture learning rate; negative = the op's alpha grows.

Rows are per cell type and op, averaged over the edges (``--per-edge`` prints every edge), and
every number goes to ``--csv``. Variants (``--variant NAME``, repeatable; default all that apply):
see ``VARIANTS``. Example (the NB201 supernet at reduced width, at initialization and at two
checkpoints of a search)::

    OMP_NUM_THREADS=1 python experiments/noise_bias.py --space nb201 --channels 8 --cells 5 \\
        --data /work/data/cifar10 --state init --state RUN/ckpt-epoch3.pt --state RUN/ckpt-epoch10.pt
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # search_run's hacks

import torch
import yaml

from noisydarts.search import resolve_config
from noisydarts.data import load_dataset, normalize
from noisydarts.spaces import build_supernet

#: name -> (``--set`` overrides of the ``noise`` section, what it is). ``paper`` is the
#: reference: Gaussian, additive, lambda = 0.2, sigma from the whole batch tensor, on the skip
#: op's output, no drop-path (the paper's Eq. 6 as the release computes it).
VARIANTS = {
    "paper": ([], "lambda 0.2, sigma of the whole batch tensor, on the skip output (release semantics)"),
    "lambda0.1": (["noise.lambda=0.1"], "lambda 0.1"),
    "lambda0.4": (["noise.lambda=0.4"], "lambda 0.4"),
    "lambda0.8": (["noise.lambda=0.8"], "lambda 0.8"),
    "sigma-sample": (["noise.sigma=sample"], "sigma = lambda * std per sample"),
    "input": (["noise.position=input"], "noise on the skip op's input, o(x + x~) (differs for stride-2 skips)"),
    "release": (["noise.skip_drop_path=0.3"], "the release: noise, then drop-path p=0.3 on the skip branch"),
    "droppath-only": (["noise.enabled=false", "noise.skip_drop_path=0.3"], "drop-path p=0.3 on the skip, no noise"),
    "grad-only": ([], "noise only in the skip op's own alpha-gradient (search_run.py --hack noise-grad-only)"),
}
#: variants that also swap the mixed edge's forward (experiments/search_run.py hacks)
PATCHED = {"grad-only": "_hack_noise_grad_only"}
NOISE_OFF = ["noise.enabled=false", "noise.skip_drop_path=0.0"]


@contextlib.contextmanager
def patched(variant: str):
    """Swap in search_run.py's forward hack for the variants that need one."""
    if variant not in PATCHED:
        yield
        return
    import search_run

    from noisydarts.nn import mixed

    original = mixed.MixedEdge.forward
    getattr(search_run, PATCHED[variant])()
    try:
        yield
    finally:
        mixed.MixedEdge.forward = original


def base_config(args, state: str) -> dict:
    """The run's own config for a checkpoint; the space's NoisyDARTS preset at init."""
    if state != "init":
        run_cfg = yaml.safe_load((Path(state).parent / "config.yaml").read_text())
        return resolve_config(config_file=run_cfg, overrides=["device=cpu"])
    if args.space == "nb201":
        sets = [f"space.channels={args.channels}", f"space.cells_per_stage={args.cells}"]
        preset = "nb201-noisydarts"
    else:
        sets = [f"space.channels={args.channels}", f"space.layers={args.cells}"]
        preset = "noisydarts-cifar10"
    return resolve_config(preset, overrides=[*sets, f"seed={args.seed}", "device=cpu"])


def with_noise(cfg: dict, overrides: list[str]) -> dict:
    return resolve_config(config_file=cfg, overrides=overrides)


def build(cfg: dict, state_dict: dict | None):
    torch.manual_seed(cfg["seed"])
    model = build_supernet(cfg, 10).to(memory_format=torch.channels_last)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.train()


def alpha_grad(model, x, y) -> torch.Tensor:
    """d(search loss)/d(alpha) of every cell type, stacked ``[kinds, edges, ops]``."""
    params = [model.arch[f"alpha_{k}"] for k in model.kinds]
    grads = torch.autograd.grad(model.training_loss(x, y)[0], params)
    return torch.stack([g.detach() for g in grads])


def adam_steps(grads: torch.Tensor, betas=(0.5, 0.999), eps=1e-8) -> torch.Tensor:
    """Adam's normalized step ``m_hat / (sqrt(v_hat) + eps)`` along a gradient sequence
    ``[T, ...]`` (alpha held fixed), averaged over the sequence."""
    m = torch.zeros_like(grads[0])
    v = torch.zeros_like(grads[0])
    total = torch.zeros_like(grads[0])
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        total += (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    return total / len(grads)


def batches(cfg: dict, batch: int, count: int, seed: int):
    data = cfg["data"]
    ds = load_dataset(data["name"], "train", data["resolution"], data["root"])
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    for i in range(count):
        idx = order[i * batch:(i + 1) * batch]
        yield normalize(ds.images[idx], ds.mean, ds.std, channels_last=True), ds.labels[idx]


def measure(args, state: str, writer, out=print) -> None:
    cfg = base_config(args, state)
    if args.data:
        cfg = resolve_config(config_file=cfg, overrides=[f"data.name={args.data}"])
    ckpt = None
    if state != "init":
        ckpt = torch.load(state, map_location="cpu", weights_only=False)["model"]
    reference = build(with_noise(cfg, NOISE_OFF), ckpt)
    weights = reference.state_dict()
    kinds, ops = reference.kinds, reference.op_names
    data = list(batches(cfg, args.batch, args.adam_steps + 1, args.seed))
    (x0, y0), seq = data[0], data[1:]
    t0 = time.perf_counter()
    g_off = alpha_grad(reference, x0, y0)
    g_off_seq = torch.stack([alpha_grad(reference, x, y) for x, y in seq])
    sec_per_pass = (time.perf_counter() - t0) / (1 + len(seq))
    adam_off = adam_steps(g_off_seq)
    sd_batch = g_off_seq.std(0)
    weights_off = reference.arch_weights()
    space = cfg["space"]
    size = f"C={space['channels']} " + (f"N={space['cells_per_stage']}" if "cells_per_stage" in space else f"layers={space['layers']}")
    out(f"\n## state {state}  ({cfg['space']['name']} {size}, batch {args.batch}, {args.draws} draws, "
        f"{args.adam_steps} Adam batches, {sec_per_pass:.2f} s per pass)")
    for kind in kinds:
        w = weights_off[kind].mean(0)
        out(f"   mean softmax weight ({kind}): " + ", ".join(f"{o} {v:.3f}" for o, v in zip(ops, w.tolist())))
    out(f"{'variant':<14} {'cell':<6} {'op':<13} {'g_off':>8} {'g_on':>8} {'± se':>7} {'on/off':>6} "
        f"{'sd_noise':>8} {'sd_batch':>8} {'adam_off':>8} {'adam_on':>8}")
    torch.manual_seed(args.seed + 1)
    for name in args.variants:
        overrides, _ = VARIANTS[name]
        model = build(with_noise(cfg, overrides), weights)
        with patched(name):
            draws = torch.stack([alpha_grad(model, x0, y0) for _ in range(args.draws)])
            adam_on = adam_steps(torch.stack([alpha_grad(model, x, y) for x, y in seq]))
        mean, sd = draws.mean(0), draws.std(0)
        se = sd / math.sqrt(args.draws)
        # How E[g_on] relates to g_off over all alpha entries (none excluded): the least-squares
        # slope (1 = unbiased, < 1 = damped), the cosine, and the part the slope leaves unexplained.
        keep = [i for i, op in enumerate(ops) if op != "none"]
        a, b = g_off[..., keep].flatten(), mean[..., keep].flatten()
        slope = (a @ b / (a @ a)).item()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        resid = ((b - slope * a).norm() / b.norm()).item()
        slope_se = (draws[..., keep].flatten(1) @ a / (a @ a)).std().item() / math.sqrt(args.draws)
        out(f"{name:<14} summary: slope E[g_on] on g_off {slope:.3f} ± {slope_se:.3f}, cosine {cos:.3f}, "
            f"unexplained {resid:.3f}, sd_noise/sd_batch {(sd[..., keep].mean() / sd_batch[..., keep].mean()).item():.2f}")
        # Edge-averaged rows: the standard error of an edge-mean comes from the draws of it.
        edge_mean_se = draws.mean(2).std(0) / math.sqrt(args.draws)
        for ki, kind in enumerate(kinds):
            for oi, op in enumerate(ops):
                if op == "none" and not args.with_none:
                    continue
                off, on = g_off[ki, :, oi].mean().item(), mean[ki, :, oi].mean().item()
                ratio = on / off if abs(off) > 1e-12 else float("nan")
                out(f"{name:<14} {kind:<6} {op:<13} {off:>+8.4f} {on:>+8.4f} {edge_mean_se[ki, oi].item():>7.4f} "
                    f"{ratio:>6.2f} {sd[ki, :, oi].mean().item():>8.4f} {sd_batch[ki, :, oi].mean().item():>8.4f} "
                    f"{adam_off[ki, :, oi].mean().item():>+8.3f} {adam_on[ki, :, oi].mean().item():>+8.3f}")
                for e in range(g_off.shape[1]):
                    row = {"state": state, "variant": name, "kind": kind, "edge": e, "op": op,
                           "weight": round(weights_off[kind][e, oi].item(), 5),
                           "g_off": g_off[ki, e, oi].item(), "g_on": mean[ki, e, oi].item(),
                           "g_on_se": se[ki, e, oi].item(), "sd_noise": sd[ki, e, oi].item(),
                           "sd_batch": sd_batch[ki, e, oi].item(), "adam_off": adam_off[ki, e, oi].item(),
                           "adam_on": adam_on[ki, e, oi].item()}
                    if writer is not None:
                        writer.writerow(row)
                    if args.per_edge:
                        out(f"{'':<14} {kind:<6} {'  edge ' + str(e):<13} {row['g_off']:>+8.4f} {row['g_on']:>+8.4f} "
                            f"{row['g_on_se']:>7.4f} {'':>6} {row['sd_noise']:>8.4f} {row['sd_batch']:>8.4f} "
                            f"{row['adam_off']:>+8.3f} {row['adam_on']:>+8.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", choices=["nb201", "darts"], default="nb201")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--cells", type=int, default=5, help="NB201 cells per stage, or DARTS layers")
    p.add_argument("--data", default=None, help="dataset (default: the preset's; e.g. /work/data/cifar10)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--draws", type=int, default=48)
    p.add_argument("--adam-steps", type=int, default=48)
    p.add_argument("--state", action="append", default=None, help="'init' or a checkpoint file (repeatable)")
    p.add_argument("--variant", dest="variants", action="append", choices=list(VARIANTS), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-none", action="store_true", help="also print the none op's rows")
    p.add_argument("--per-edge", action="store_true")
    p.add_argument("--csv", default=None, help="append every per-edge number to this CSV file")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.variants = args.variants or list(VARIANTS)
    writer, fh = None, None
    if args.csv:
        new = not Path(args.csv).exists()
        fh = open(args.csv, "a", newline="")
        writer = csv.DictWriter(fh, ["state", "variant", "kind", "edge", "op", "weight", "g_off", "g_on", "g_on_se",
                                     "sd_noise", "sd_batch", "adam_off", "adam_on"])
        if new:
            writer.writeheader()
    try:
        for state in args.state or ["init"]:
            measure(args, state, writer, out=lambda s: print(s, flush=True))
    finally:
        if fh is not None:
            fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
