"""One search run for the NoisyDARTS noise study (issue 16), with checkpoints kept along the way.

Runs ``noisydarts.search`` on a preset with ``--set`` overrides, prints one line per epoch (skip
count, NAS-Bench-201 accuracies, derived cell) and copies ``checkpoint.pt`` to
``ckpt-epochN.pt`` after the epochs named in ``--keep`` (for ``noise_bias.py``).

``--hack`` switches on variants that are measured here but are not library options (they did
not earn one; see experiments/results/noise16.md):

* ``shared-sample``: one noise sample per search step, the same tensor in the architecture
  step and in the weight step (the library, like the release, draws a fresh one per forward).
* ``bn-affine``: affine BatchNorm in the NB201 search cells (the space has ``affine=False``).
* ``bn-running``: NB201 search-cell BNs keep running statistics (used only in validation).
* ``noise-weights-only``: the noise in the weight step only; the architecture step sees none
  (the mirror image of ``noise.weight_step: false``).
* ``noise-grad-only``: the noise enters only the skip op's own architecture gradient,
  ``d L / d w_skip = <dL/dy, o_skip(x) + x~>`` with ``dL/dy`` at the noise-free forward: Eq. 3-4's
  approximation made exact (unbiased by construction); forward values and the weight step are
  plain DARTS.

Example (the issue's probe, one core)::

    OMP_NUM_THREADS=1 nice -n 10 python experiments/search_run.py --preset nb201-noisydarts \\
        --out /work/exp16/runs/noisy-s0 --keep 1 3 6 10 --set seed=0 --set epochs=25 \\
        --set data.name=/work/data/cifar10 --set data.limit=8000
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from pathlib import Path

import torch

import noisydarts
from noisydarts import config as config_lib
from noisydarts.search import resolve_config

HACKS = ("shared-sample", "bn-affine", "bn-running", "noise-weights-only", "noise-grad-only")


def _hack_shared_sample() -> None:
    """Reuse the architecture step's noise samples, in call order, in the weight step."""
    from noisydarts.methods import noise as noise_lib

    original = noise_lib.SkipNoise._unit_noise
    state = {"phase": None, "bank": [], "i": 0}

    def set_phase(self, phase):
        self.phase = phase
        if phase == "arch":
            state["bank"], state["i"] = [], 0
        state["phase"], state["i"] = phase, 0

    def unit_noise(self, like):
        if state["phase"] == "weights" and state["i"] < len(state["bank"]) \
                and state["bank"][state["i"]].shape == like.shape:
            eps = state["bank"][state["i"]].clone()
            state["i"] += 1
            return eps
        eps = original(self, like)
        if state["phase"] == "arch":
            state["bank"].append(eps.clone())
        return eps

    noise_lib.SkipNoise.set_phase = set_phase
    noise_lib.SkipNoise._unit_noise = unit_noise


def _hack_noise_weights_only() -> None:
    from noisydarts.methods import noise as noise_lib

    original = noise_lib.SkipNoise.forward

    def forward(self, y):
        return y if self.phase == "arch" else original(self, y)

    noise_lib.SkipNoise.forward = forward


def _hack_noise_grad_only() -> None:
    from noisydarts.nn import mixed

    def forward(self, x, weights):
        w = weights.unbind(0)
        out = None
        for k, op, transform in zip(self.active, self.ops, self.transforms):
            y = op(x)
            term = y * w[k]
            if transform is not None and transform.training:
                noise = (transform(y) - y).detach()
                term = term + (w[k] - w[k].detach()) * noise  # value 0, d/dw = noise
            out = term if out is None else out + term
        return out

    mixed.MixedEdge.forward = forward


def _hack_nb201_bn(**bn) -> None:
    from noisydarts.spaces import nb201

    original = nb201.MixedEdge

    @functools.wraps(original)
    def edge(*args, **kwargs):
        kwargs.update(bn)
        return original(*args, **kwargs)

    nb201.MixedEdge = edge


def fork(ckpt: Path, out: Path, overrides: list[str]) -> Path:
    """A new run directory that resumes from ``ckpt`` with the source run's config changed by
    ``overrides``: same weights, alpha, optimizer and RNG states, so two forks of one checkpoint
    differ only in what the overrides change."""
    import json

    import yaml

    from noisydarts.runtime.runs import atomic_write_text

    source = ckpt.parent
    cfg = resolve_config(config_file=yaml.safe_load((source / "config.yaml").read_text()), overrides=overrides)
    out.mkdir(parents=True, exist_ok=False)
    epoch = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]
    atomic_write_text(out / "config.yaml", config_lib.dump(cfg))
    lines = [s for s in (source / "metrics.jsonl").read_text().splitlines() if s.strip() and json.loads(s)["epoch"] <= epoch]
    atomic_write_text(out / "metrics.jsonl", "".join(s + "\n" for s in lines))
    shutil.copyfile(ckpt, out / "checkpoint.pt")
    print(f"fork of {ckpt} (after epoch {epoch}) with {' '.join(overrides)}", flush=True)
    return out


class KeepCheckpoints:
    def __init__(self, epochs, t0):
        self.epochs, self.t0 = set(epochs), t0

    def on_epoch(self, r, run_dir):
        if r["epoch"] in self.epochs:
            shutil.copyfile(Path(run_dir) / "checkpoint.pt", Path(run_dir) / f"ckpt-epoch{r['epoch']}.pt")
        bench = "".join(f" {r[k]:6.2f}" for k in ("cifar10_test", "cifar100_test", "imagenet16_test") if k in r)
        skips = r.get("skip_count", r.get("skip_normal"))
        print(f"epoch {r['epoch']:3d} skips {skips} {bench} train {r['train_acc']:5.1f} val {r['val_acc']:5.1f} "
              f"{r['epoch_time']:6.0f}s total {time.perf_counter() - self.t0:6.0f}s  {r['genotype']}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", help="the preset (not with --resume)")
    p.add_argument("--out", help="the run directory (not with --resume)")
    p.add_argument("--resume", help="continue this run directory (its own config; --hack must be given again)")
    p.add_argument("--fork", metavar="CKPT", help="continue from a kept checkpoint (RUN/ckpt-epochN.pt) of another run "
                   "in a new run directory --out, with that run's config and --set changes (e.g. the noise)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many epochs (resumable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--keep", type=int, nargs="*", default=[], help="epochs after which to keep a checkpoint copy")
    p.add_argument("--hack", action="append", default=[], choices=HACKS)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if "shared-sample" in args.hack:
        _hack_shared_sample()
    if "noise-grad-only" in args.hack:
        _hack_noise_grad_only()
    if "noise-weights-only" in args.hack:
        _hack_noise_weights_only()
    bn = {}
    if "bn-affine" in args.hack:
        bn["affine"] = True
    if "bn-running" in args.hack:
        bn["track_stats"] = True
    if bn:
        _hack_nb201_bn(**bn)
    t0 = time.perf_counter()
    keep = (KeepCheckpoints(args.keep, t0),)
    if args.fork:
        args.resume = fork(Path(args.fork), Path(args.out), args.overrides)
    if args.resume:
        print(f"resume {args.resume} hacks={args.hack}", flush=True)
        result = noisydarts.search(resume=args.resume, progress=False, stop_after=args.stop_after, callbacks=keep)
    else:
        cfg = resolve_config(args.preset, None, ["plots=false", *args.overrides])
        print(f"{args.preset} {' '.join(args.overrides)} hacks={args.hack}", flush=True)
        result = noisydarts.search(cfg, out=args.out, progress=False, stop_after=args.stop_after, callbacks=keep)
    print(f"done in {time.perf_counter() - t0:.0f}s: {result.genotype}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
