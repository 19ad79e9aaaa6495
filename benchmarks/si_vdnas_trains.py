"""Does the SI-VDNAS supernet train? Training accuracy over N search steps against plain DARTS.

    python benchmarks/si_vdnas_trains.py --space darts --data /work/data/cifar10 --threads 1
    python benchmarks/si_vdnas_trains.py --space nb201 --resolution 16 --data /work/data/cifar10 --threads 1
    python benchmarks/si_vdnas_trains.py --space darts --variants darts cell batch --steps 150

Each variant is a fresh supernet from the same seed (same initial weights, the same batches in the
same order) run through the search loop's own ``Searcher.search_step``: an architecture step
(first order, from step 0: no warm-up) and a weight step, ``--steps`` times, at the search preset's
optimizers (SGD 0.025, momentum 0.9, Adam 3e-4) with the learning rate held at its first-epoch
value. DARTS space: the SI-VDNAS preset's supernet (C=16, 8 cells, 7 ops without ``none``);
NB201: its preset's (C=16, N=5, 17 cells). Printed per variant: the training accuracy (the weight
step's own logits, i.e. with the variant's noise, as a search log reports it) over all steps and
over the last third, the eval-mode accuracy of the final supernet on 1,024 held-out search-val
images, and the mean op keep probability at the end.

Variants (``--variants``): ``darts`` (the softmax weighting, the same ops), ``cell`` (the
default), ``sample``, ``batch`` (``vdnas.granularity``), ``p0.01`` (``sample`` with ``init_p``
0.01), ``cell-p0.01``/``cell-p0.03`` (``cell`` with ``init_p`` 0.01 / 0.03), ``kl/n`` (``cell`` with the KL / N_val), ``h``/``v`` (H-/V-VDNAS with ``cell`` noise); the
rest of ``vdnas`` is the preset's. The data: ``--data`` an ImageFolder (``train/``) or a dataset name;
``--limit`` images before the 50/50 split (batches cycle over them).
"""

from __future__ import annotations

import argparse
import tempfile
import time

VARIANTS = {
    "darts": {"edge": {"weighting": "softmax"}},
    "cell": {"vdnas": {"granularity": "cell"}},
    "sample": {"vdnas": {"granularity": "sample"}},
    "batch": {"vdnas": {"granularity": "batch"}},
    "p0.01": {"vdnas": {"granularity": "sample", "init_p": 0.01}},
    "cell-p0.01": {"vdnas": {"granularity": "cell", "init_p": 0.01}},
    "cell-p0.03": {"vdnas": {"granularity": "cell", "init_p": 0.03}},
    "kl/n": {"vdnas": {"granularity": "cell", "kl_weight": None}},
    "h": {"vdnas": {"granularity": "cell", "variant": "h"}},
    "v": {"vdnas": {"granularity": "cell", "variant": "v"}},
}
PRESETS = {"darts": "si-vdnas-cifar10", "nb201": "nb201-si-vdnas"}


def run(variant: str, args) -> dict:
    import torch

    from noisydarts.search import Searcher, resolve_config

    overrides = [f"data.name={args.data}", f"data.resolution={args.resolution}", f"data.limit={args.limit}",
                 f"seed={args.seed}", "warmup_epochs=0", "plots=false", "device=cpu"]
    cfg = resolve_config(PRESETS[args.space], None, overrides)
    for section, values in VARIANTS[variant].items():
        if section == "edge":  # plain DARTS: no vdnas section in play
            cfg["edge"].update(values)
        else:
            cfg[section].update(values)
    if variant == "darts":  # the vdnas keys at their defaults: they configure SI-VDNAS only
        from noisydarts.methods.sivdnas import DEFAULTS

        cfg["vdnas"] = dict(DEFAULTS)
    s = Searcher(resolve_config(None, cfg, []), tempfile.mkdtemp(prefix="sivdnas_trains_"), progress=False)
    model = s.model
    model.train()
    model.set_epoch(0, cfg["epochs"])
    ctx = s.step_context(cfg["weights"]["lr"])
    weights = model.weight_parameters()
    from noisydarts.runtime.device import autocast

    amp = autocast(cfg, s.device)
    train_iter = _cycle(s.train_batches)
    val_iter = _cycle(s.arch_batches)
    accs = []
    t0 = time.perf_counter()
    for _ in range(args.steps):
        x, y = next(train_iter)
        _, logits = s.search_step((x, y), next(val_iter), ctx, weights, amp)
        accs.append(100.0 * (logits.detach().argmax(1) == y).float().mean().item())
    seconds = time.perf_counter() - t0
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in s.val_batches.epoch(0):
            correct += (model(x).argmax(1) == y).sum().item()
            seen += len(y)
            if seen >= 1024:
                break
    keep = None
    if hasattr(model.weighting, "op_keep"):
        keep = torch.cat([model.weighting.op_keep(k).flatten() for k in model.kinds]).mean().item()
    third = max(len(accs) // 3, 1)
    return {"variant": variant, "train_acc": sum(accs) / len(accs), "train_acc_last": sum(accs[-third:]) / third,
            "eval_acc": 100.0 * correct / max(seen, 1), "keep": keep, "seconds": seconds}


def _cycle(batches):
    epoch = 0
    while True:
        yield from batches.epoch(epoch)
        epoch += 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=sorted(PRESETS), default="darts")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["darts", "cell", "sample", "batch"])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--data", default="cifar10-mini")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--limit", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, space {args.space} ({PRESETS[args.space]}), {args.steps} steps, batch 64, "
          f"{args.resolution} px, data {args.data} (limit {args.limit}), seed {args.seed}", flush=True)
    print(f"{'variant':<8} {'train acc %':>11} {'last third %':>12} {'eval acc %':>10} {'mean keep':>9} {'s':>6}", flush=True)
    for variant in args.variants:
        r = run(variant, args)
        keep = f"{r['keep']:.3f}" if r["keep"] is not None else "-"
        print(f"{variant:<8} {r['train_acc']:>11.1f} {r['train_acc_last']:>12.1f} {r['eval_acc']:>10.1f} {keep:>9} "
              f"{r['seconds']:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
