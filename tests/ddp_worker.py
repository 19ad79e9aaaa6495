"""Scenarios for tests/test_distributed.py, run by every rank of ``torchrun --nproc_per_node=2``
(and, for the single-process references, called directly by the test).

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py OUT_DIR SCENARIO [SCENARIO ...]

Each scenario writes what the test compares into OUT_DIR, one file per rank
(``NAME.rank{r}.pt``); rank 0 also leaves its run directories there.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from conftest import TINY_SEARCH  # noqa: E402  (tests/ is on the workers' path)

#: The suite's tiny DARTS supernet, on the CPU; batches of 16 (8 per rank under two ranks).
TINY = {**TINY_SEARCH, "device": "cpu"}
#: Estimators whose DDP steps must equal a single process's at the global batch. Second order with
#: xi = 0.01, not the weight lr 0.05: at 0.05 this tiny supernet's first unrolled step is so badly
#: conditioned that a 1e-6 relative change of the weights moves the alpha-gradient by 1.2e-3 in a
#: single process (measured), far above float rounding; at 0.01 the DDP and single-process
#: gradients agree to 1e-5 while the Hessian term is still 10-30 % of the gradient.
ESTIMATORS = {
    "first_order": {"name": "first_order"},
    "second_order": {"name": "second_order", "xi": 0.01},
    "second_order_exact": {"name": "second_order", "exact": True, "xi": 0.01},
    "amended": {"name": "amended", "eta": 0.5},
}


def rank() -> int:
    from noisydarts.runtime import distributed

    return distributed.rank()


def save(out: Path, name: str, obj) -> None:
    torch.save(obj, out / f"{name}.rank{rank()}.pt")


def merged(base: dict, extra: dict) -> dict:
    cfg = copy.deepcopy(base)
    for key, value in extra.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def tensors_of(model) -> dict:
    # (a weighting's extra state, e.g. SI-VDNAS' generator and counters, is not a tensor)
    return {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in model.state_dict().items()}


def scenario_search(out: Path) -> None:
    """A 2-epoch search with NoisyDARTS noise (each rank its own draws), and the same search
    stopped after epoch 1 and resumed: every rank's final α and weights, and rank 0's runs."""
    from noisydarts.search import search

    full = search(copy.deepcopy(TINY), out=out / "full", progress=False)
    save(out, "search_full", {"genotype": str(full.genotype), "model": tensors_of(_LAST["model"])})
    search(copy.deepcopy(TINY), out=out / "part", progress=False, stop_after=1)
    resumed = search(resume=out / "part", progress=False)
    save(out, "search_resumed", {"genotype": str(resumed.genotype), "model": tensors_of(_LAST["model"])})


_LAST: dict = {}  # the model of the last Searcher built in this process (this rank's α and weights)


#: Fewer BatchNorm layers (each is a collective per pass under SyncBatchNorm).
SMALLER = merged(TINY, {"space": {"nodes": 1, "ops": ["skip_connect", "sep_conv_3x3", "avg_pool_3x3"]}})


def scenario_steps(out: Path, steps: int = 2) -> None:
    """Two bilevel steps of each estimator, SyncBatchNorm, no noise: α and weights after them."""
    from noisydarts import resolve_config
    from noisydarts.search import Searcher
    from noisydarts.runtime.device import autocast

    for name, estimator in ESTIMATORS.items():
        cfg = resolve_config(config_file=merged(SMALLER, {"noise": {"enabled": False}, "estimator": estimator,
                                                          "distributed": {"sync_bn": True}}))
        s = Searcher(cfg, out, progress=False)
        s.model.train()
        ctx = s.step_context(cfg["weights"]["lr"])
        weights = s.model.weight_parameters()
        batches = zip(s.train_batches.epoch(0), s.arch_batches.epoch(0))
        grads = []
        for _ in range(steps):
            train, val = next(batches)
            s.search_step(train, val, ctx, weights, autocast(cfg, s.device))
            grads.append({f"step{len(grads)}.{n}": p.grad.clone() for n, p in s.model.named_parameters()
                          if n.startswith("arch.")})  # the estimator's (reduced) gradient, before Adam
        save(out, f"steps_{name}", {**tensors_of(s.model), **{k: v for g in grads for k, v in g.items()}})


#: Methods with state or randomness of their own that must stay the same on every rank: gradient
#: projection (its generator orders the edges), SI-VDNAS (Bernoulli masks from its own generator;
#: Gaussian noise per rank), PC-DARTS partial channels, and recomputation in the backward pass.
METHODS = {
    "projection": {"edge": {"weighting": "edge_norm"}, "arch": {"projection": {"groups": "edge_in"}}},
    "si_vdnas": {"edge": {"weighting": "si_vdnas"}, "noise": {"enabled": False}},
    "partial_channels": {"edge": {"weighting": "edge_norm", "partial_channels": 2}},
    "checkpoint": {"space": {"checkpoint": True}},
    # the remedies composed: DrNAS' Dirichlet samples (each rank its own draws) with DARTS-' skip and
    # beta decay; FairDARTS' sigmoid and zero-one loss with SDARTS-ADV (each rank attacks its slice)
    # and partial channels; SDARTS-RS (each rank its own uniform draws)
    "dirichlet_aux_skip_beta_decay": {"edge": {"weighting": "dirichlet"}, "drnas": {"reg": "kl"},
                                      "aux_skip": {"enabled": True}, "beta_decay": {"weight": 25.0}},
    "sigmoid_zero_one_adversarial": {"edge": {"weighting": "sigmoid", "partial_channels": 2}, "zero_one": {"weight": 10.0},
                                     "perturb": {"kind": "adversarial", "steps": 2}},
    "random_smoothing": {"perturb": {"kind": "random"}},
}


def scenario_methods(out: Path, steps: int = 3) -> None:
    """A few search steps of each method (NoisyDARTS noise on unless a method turns it off, each
    rank its own draws): every rank's α and weights after them."""
    from noisydarts import resolve_config
    from noisydarts.search import Searcher
    from noisydarts.runtime.device import autocast

    for name, extra in METHODS.items():
        cfg = resolve_config(config_file=merged(TINY, extra))
        s = Searcher(cfg, out, progress=False)
        s.model.train()
        ctx = s.step_context(cfg["weights"]["lr"])
        weights = s.model.weight_parameters()
        batches = zip(s.train_batches.epoch(0), s.arch_batches.epoch(0))
        for _ in range(steps):
            train, val = next(batches)
            s.search_step(train, val, ctx, weights, autocast(cfg, s.device))
        save(out, f"method_{name}", tensors_of(s.model))


def scenario_train(out: Path) -> None:
    """One epoch of `noisydarts train` (SyncBatchNorm, no drop-path): the weights after it."""
    from noisydarts.train import resolve_config, train

    cfg = resolve_config({"epochs": 1, "batch_size": 16, "network": {"channels": 4, "layers": 3, "auxiliary": False},
                          "lr": 0.05,
                          "device": "cpu", "drop_path_prob": 0.0, "distributed": {"sync_bn": True}, "plots": False,
                          "data": {"name": "cifar10-mini", "limit": 48, "resolution": 16, "cutout": 4}})
    result = train("noisydarts_a", cfg, out=out / "train", progress=False)
    save(out, "train", {"model": tensors_of(result.model), "test_acc": result.test_acc})


#: The Hessian monitor under torchrun: a search measuring after every epoch, with SyncBatchNorm,
#: then with σ over all ranks (noise on); a collective that one rank skips fails in a minute.
HESSIAN = merged(SMALLER, {"epochs": 2, "data": {"limit": 64},
                           "monitor": {"hessian_every": 1, "hessian_iterations": 4},
                           "distributed": {"timeout_min": 1.0}})
HESSIAN_SEARCHES = {"sync_bn": {"distributed": {"sync_bn": True}},
                    "global_noise": {"distributed": {"noise_std": "global"}}}


def scenario_hessian_measure(out: Path) -> None:
    """The monitor's eigenvalue of the supernet as built (SyncBatchNorm, no noise), Lanczos run to
    convergence: two ranks at 8 images measure the Hessian one process measures at 16."""
    from noisydarts import resolve_config
    from noisydarts.methods.hessian import HessianMonitor
    from noisydarts.search import Searcher

    cfg = resolve_config(config_file=merged(HESSIAN, {"noise": {"enabled": False}, "distributed": {"sync_bn": True},
                                                      "monitor": {"hessian_iterations": 12, "hessian_tol": 1e-9}}))
    s = Searcher(cfg, out, progress=False)
    monitor = HessianMonitor(cfg)
    monitor.on_start(s)
    record = {"epoch": 1}
    monitor.on_record(s, record)
    save(out, "hessian_measure", {"eig": record["hessian_eig"], "vector": monitor.vector})


class Eigenvalues:
    """Every rank's measured eigenvalues (the monitor runs first: it is a config callback)."""

    runs_on_every_rank = True  # an old-style callback: wrapped, its flag honoured

    def __init__(self):
        self.values = []

    def on_record(self, searcher, record):
        self.values.append((record["epoch"], record.get("hessian_eig"), record.get("hessian_products")))


def scenario_hessian(out: Path) -> None:
    from noisydarts.search import search

    for name, extra in HESSIAN_SEARCHES.items():
        seen = Eigenvalues()
        search(merged(HESSIAN, extra), out=out / f"hessian_{name}", progress=False, callbacks=[seen])
        save(out, f"hessian_{name}", seen.values)


SCENARIOS = {"search": scenario_search, "steps": scenario_steps, "methods": scenario_methods,
             "train": scenario_train, "hessian": scenario_hessian, "hessian_measure": scenario_hessian_measure}


def _remember_searchers() -> None:
    """Keep the last Searcher built (its model holds this rank's α and weights)."""
    import importlib

    search_module = importlib.import_module("noisydarts.search")
    init = search_module.Searcher.__init__

    def remembering(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _LAST["model"] = self.model

    search_module.Searcher.__init__ = remembering


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    _remember_searchers()
    for name in argv[1:]:
        SCENARIOS[name](out)
    from noisydarts.runtime import distributed

    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
