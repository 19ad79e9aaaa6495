"""DrNAS: the Dirichlet weighting, its regularizers, progressive learning (pruning and widening
mixed edges as a stage hook) and its refusals (``noisydarts.methods.drnas``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.drnas import DirichletRegularizer, DirichletWeighting, concentration
from noisydarts.nn.mixed import MixedEdge
from noisydarts.runtime.callbacks import Callback
from noisydarts.search import search
from noisydarts.spaces import get_space

OPS = ["max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]


def config(drnas=None, edge=None, **run):
    return noisydarts.resolve_config(config_file={
        "space": {"name": "darts", "channels": 8, "layers": 3, "nodes": 2, "ops": OPS},
        "edge": {"weighting": "dirichlet", **(edge or {})}, "drnas": drnas or {}, "noise": {"enabled": False},
        "epochs": 2, "warmup_epochs": 0, "batch_size": 16, "plots": False, "device": "cpu",
        "arch": {"lr": 0.05, "weight_decay": 0.0}, "data": {"name": "cifar10-mini", "limit": 32, "resolution": 8},
        **run})


def weighting_alone(alpha):
    arch = nn.ParameterDict({"alpha_normal": nn.Parameter(torch.as_tensor(alpha, dtype=torch.float32))})
    return arch, DirichletWeighting(arch, ("normal",), [2] * len(arch["alpha_normal"]))


# --- the weights -----------------------------------------------------------------------------------

def test_eval_weights_are_the_dirichlet_mean_of_elu_plus_one_over_the_kept_ops():
    alpha = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [0.3, -0.2, 1.0, -3.0]])
    _, w = weighting_alone(alpha)
    w.eval()
    beta = torch.where(alpha > 0, alpha + 1, alpha.exp())  # ELU(a) + 1 by hand
    torch.testing.assert_close(w("normal"), beta / beta.sum(1, keepdim=True))
    w.set_keep("normal", [[0, 1, 1, 0], [1, 0, 0, 1]])
    kept = beta * torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1.0]])
    torch.testing.assert_close(w("normal"), kept / kept.sum(1, keepdim=True))


def test_training_weights_are_torchs_rsample_from_the_global_generator():
    arch, w = weighting_alone(torch.randn(5, 4))
    torch.manual_seed(7)
    sample = w("normal")
    torch.manual_seed(7)
    expected = Dirichlet(concentration(arch["alpha_normal"].detach())).rsample()
    torch.testing.assert_close(sample.detach(), expected)
    torch.testing.assert_close(sample.sum(1), torch.ones(5))


def test_pathwise_gradient_of_a_linear_loss_matches_the_gradient_of_the_mean():
    """d/dalpha E[c . w] by rsample (20000 rows, one sample each) = d/dalpha c . beta / sum(beta)."""
    base, c, n = torch.tensor([0.4, -0.7, 1.3]), torch.tensor([1.0, -2.0, 0.5]), 20000
    arch, w = weighting_alone(base.expand(n, 3).clone())
    torch.manual_seed(0)
    (w("normal") @ c).mean().backward()
    estimate = arch["alpha_normal"].grad.sum(0)
    a = base.clone().requires_grad_()
    beta = F.elu(a) + 1
    (beta / beta.sum() @ c).backward()
    torch.testing.assert_close(estimate, a.grad, atol=0.01, rtol=0.03)


# --- the regularizers -----------------------------------------------------------------------------

class _Net(nn.Module):
    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting


def test_kl_regularizer_equals_torchs_dirichlet_kl_and_its_gradient():
    alpha = torch.tensor([[0.2, -0.5, 1.5, 0.0], [2.0, 0.1, -1.0, 0.7]])
    arch, w = weighting_alone(alpha)
    reg = DirichletRegularizer("kl", 0.3)
    term = reg(_Net(w))
    term.backward()
    a = alpha.clone().requires_grad_()
    beta = F.elu(a) + 1
    direct = 0.3 * kl_divergence(Dirichlet(beta), Dirichlet(torch.ones_like(beta))).sum()
    direct.backward()
    torch.testing.assert_close(term, direct)
    torch.testing.assert_close(arch["alpha_normal"].grad, a.grad)
    # pruned: the KL of the kept ops' Dirichlet (what the masked, renormalized sample follows)
    w.set_keep("normal", [[1, 0, 1, 0], [0, 1, 1, 0]])
    b = F.elu(alpha) + 1
    kept = torch.stack([b[0, [0, 2]], b[1, [1, 2]]])
    torch.testing.assert_close(reg(_Net(w)), 0.3 * kl_divergence(Dirichlet(kept), Dirichlet(torch.ones(2, 2))).sum())


def test_l2_regularizer_is_the_releases_adam_weight_decay_on_the_searched_alphas():
    alpha = torch.tensor([[0.2, -0.5, 1.5, 0.0]])
    arch, w = weighting_alone(alpha)
    w.set_keep("normal", [[1, 1, 0, 1]])
    term = DirichletRegularizer("l2", 1e-3)(_Net(w))
    term.backward()
    assert term.item() == pytest.approx(0.5e-3 * (0.2**2 + 0.5**2))
    torch.testing.assert_close(arch["alpha_normal"].grad, 1e-3 * alpha * torch.tensor([[1, 1, 0, 1.0]]))


def test_the_weighting_brings_the_configured_regularizer():
    assert [r.reg for r in DirichletWeighting.regularizers_from_config(config())] == ["l2"]
    kl = DirichletWeighting.regularizers_from_config(config({"reg": "kl", "reg_scale": 0.5}))
    assert [(r.reg, r.scale) for r in kl] == [("kl", 0.5)]
    assert DirichletWeighting.regularizers_from_config(config({"reg": "none"})) == []


# --- progressive learning ------------------------------------------------------------------------------

def test_prune_keeps_the_largest_alphas_among_the_kept_ops():
    _, w = weighting_alone([[0.1, 0.9, 0.5, 0.3], [0.2, 0.2, 0.2, -1.0]])
    w.set_keep("normal", [[1, 0, 1, 1], [1, 1, 1, 1]])
    mask = w.prune("normal", 2)  # row 0: op 1 was pruned before; row 1: ties go to the earlier op
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]
    w.eval()
    assert (w("normal")[mask == 0] == 0).all()


def test_widen_copies_channels_and_moves_the_momentum():
    edge = MixedEdge(["sep_conv_3x3", "max_pool_3x3", "skip_connect"], 8, 2, bn_after_pool=True, partial_channels=4)
    old = edge.ops[0][0][1].weight  # first depthwise conv, [2, 1, 3, 3]
    opt = torch.optim.SGD(edge.parameters(), 0.1, momentum=0.9)
    edge(torch.randn(2, 8, 8, 8), torch.full((3,), 1 / 3)).sum().backward()
    opt.step()
    pairs = edge.widen(2, 8, torch.Generator().manual_seed(0))
    new = edge.ops[0][0][1].weight
    assert edge.partial == 2 and new.shape == (4, 1, 3, 3) and edge.ops[1][1].num_features == 4
    torch.testing.assert_close(new[:2], old)
    assert all(any(torch.equal(new[j], old[i]) for i in range(2)) for j in (2, 3))  # copies of old channels
    expand = next(f for o, n, f in pairs if o is old)
    torch.testing.assert_close(expand(old.detach()), new.detach())
    assert edge(torch.randn(2, 8, 8, 8), torch.full((3,), 1 / 3)).shape == (2, 8, 4, 4)
    assert "factorized reduce needs an even channel count" in edge.widen_problem(8, 24)  # 3 channels at stride 2


def stage_cfg():
    return config({"stage_epochs": [1], "stage_partial_channels": [2], "stage_keep_ops": [2]},
                  {"partial_channels": 4}, epochs=3)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """3 epochs, the stage boundary before the second: K 4 -> 2, 4 ops -> 2 per edge."""
    out = tmp_path_factory.mktemp("drnas") / "full"
    return search(stage_cfg(), out=out, progress=False), torch.load(out / "checkpoint.pt", weights_only=False)


def test_stage_hook_prunes_and_widens_at_the_boundary(full_run):
    result, state = full_run
    assert [(m["drnas_partial_channels"], m["drnas_ops_per_edge"]) for m in result.metrics] == [(4, 4), (2, 2), (2, 2)]
    keep = torch.tensor(state["callbacks"]["ProgressiveStages"]["masks"]["1"]["normal"])
    assert keep.sum(1).tolist() == [2.0] * 5
    alpha = torch.tensor(result.metrics[-1]["alpha"]["normal"])
    assert ((alpha > 0) == (keep > 0)).all()  # pruned ops weigh 0 in what derivation ranks
    edges = [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    for (op, source), node in zip(result.genotype.normal, [2, 2, 3, 3]):
        assert keep[edges.index((node, source)), OPS.index(op)] == 1  # a pruned op is never derived
    # the pruned ops are gone from the edges (never computed); the others pass 8 / 2 channels
    ops = {k.split(".ops.")[1].split(".")[0] for k in state["model"] if k.startswith("cells.0.edges.0.ops.")}
    assert ops <= {"0", "1"}
    for cell, channels in (("0", 8), ("1", 16), ("2", 32)):  # the cells' C: 8, then doubled by each reduction
        widths = {t.shape[0] for k, t in state["model"].items()
                  if k.startswith(f"cells.{cell}.edges.") and k.endswith("running_mean")}
        assert widths == {channels // 2}


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_across_the_stage_boundary_is_exact(tmp_path, full_run, stop_after):
    """Boundary at epoch 1: resumed before it (pruned live from the loaded alpha) and after it
    (replayed from the checkpointed masks); everything equals the straight run bit for bit."""
    full, a = full_run
    search(stage_cfg(), out=tmp_path / "part", progress=False, stop_after=stop_after)
    resumed = search(resume=tmp_path / "part", progress=False)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=0, rtol=0, msg=key)
    assert resumed.genotype == full.genotype
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in full.metrics]


def test_alpha_is_frozen_for_warmup_epochs_at_the_start_of_every_stage(tmp_path):
    """The release passes each stage its own epoch, and its architecture step waits for epoch 10 of
    every stage: with warmup_epochs=1 and the boundary at epoch 1, alpha moves in epoch 2 only."""
    seen = []

    class Alphas(Callback):
        def on_record(self, searcher, record):
            seen.append((searcher.freeze_arch, searcher.model.arch["alpha_normal"].detach().clone()))

    cfg = stage_cfg()
    cfg["warmup_epochs"] = 1
    search(cfg, out=tmp_path / "run", progress=False, callbacks=[Alphas()])
    assert [frozen for frozen, _ in seen] == [False, True, False]  # epoch 0 is frozen by warmup_epochs itself
    initial = seen[0][1]
    assert torch.equal(seen[1][1], initial) and not torch.equal(seen[2][1], initial)


# --- refusals and presets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("drnas, edge, message", [
    ({"reg": "kl"}, {"weighting": "softmax"}, "drnas.reg=kl is set, but edge.weighting is softmax"),
    ({"reg": "l1"}, {}, "drnas.reg must be one of l2, kl, none"),
    ({"stage_epochs": [1], "stage_partial_channels": [2]}, {}, "one entry per stage, got 1, 1 and 0"),
    ({"stage_epochs": [2], "stage_partial_channels": [2], "stage_keep_ops": [2]}, {}, "must increase within 1..epochs-1 (epochs=2)"),
    ({"stage_epochs": [1], "stage_partial_channels": [2], "stage_keep_ops": [5]}, {}, "stay within 1..4"),
])
def test_refusals_are_one_line(drnas, edge, message):
    with pytest.raises(UserError) as info:
        config(drnas, edge)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_space_without_partial_channels_refuses_progressive_learning():
    space = {"name": "mbv2", **get_space("mbv2").TINY["space"]}
    with pytest.raises(UserError, match="the mbv2 space cannot use drnas.stage_epochs=\\[1\\]"):
        noisydarts.resolve_config(config_file={"space": space, "edge": {"weighting": "dirichlet"}, "epochs": 2,
                                               "drnas": {"stage_epochs": [1], "stage_partial_channels": [1],
                                                         "stage_keep_ops": [2]}})


def test_presets_resolve_with_the_releases_recipe():
    darts = noisydarts.resolve_config("drnas-cifar10")
    assert (darts["edge"], darts["epochs"], darts["drnas"]["stage_epochs"], darts["drnas"]["stage_partial_channels"],
            darts["drnas"]["stage_keep_ops"]) == ({"weighting": "dirichlet", "partial_channels": 6}, 50, [25], [4], [4])
    nb201 = noisydarts.resolve_config("nb201-drnas")
    assert nb201["edge"]["weighting"] == "dirichlet" and nb201["drnas"]["stage_epochs"] == []
    assert nb201["arch"]["weight_decay"] == darts["arch"]["weight_decay"] == 0.0  # the L2 is drnas.reg
