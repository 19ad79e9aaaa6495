"""Gradient projection between the edges of a cell (PC-DARTS + GP): the sanity checks of the spec
(specs/gradient-projection.md 4.5), the six modes against a reference written out here, the seam
in the search loop, and exact resume."""

import itertools

import pytest
import torch

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.gradients import build_gradient_transform
from noisydarts.methods.gradients.projection import EdgeProjection, edge_groups, edge_lengths
from noisydarts.search import Searcher, search
from noisydarts.spaces.darts import dense_edges, fixed_edges
from noisydarts.nn.supernet import Supernet

DARTS = dense_edges(4)
NB201 = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
MODES = list(itertools.product(("edge_in", "edge_out"), ("random", "short_to_long", "long_to_short")))


class Cells(Supernet):
    """Just architecture parameters over a cell graph: what the transform sees of a supernet."""

    def __init__(self, edges, ops=5, kinds=("normal", "reduce"), beta=False):
        super().__init__()
        self.kinds, self.edge_list = kinds, edges
        for kind in kinds:
            self.arch[f"alpha_{kind}"] = torch.nn.Parameter(torch.zeros(len(edges), ops, dtype=torch.float64))
            if beta:
                self.arch[f"beta_{kind}"] = torch.nn.Parameter(torch.zeros(len(edges), dtype=torch.float64))

    def arch_edges(self):
        return {kind: list(self.edge_list) for kind in self.kinds}

    def set_grads(self, grads: dict):
        for name, g in grads.items():
            self.arch[name].grad = g.clone()

    def grads(self):
        return {n: p.grad.clone() for n, p in self.arch.items()}


def softmax_like_grads(rows, ops=5, seed=0):
    """Rows that sum to zero over the ops, as every alpha gradient under softmax does."""
    g = torch.randn(rows, ops, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g - g.mean(1, keepdim=True)


def reference_project(g_e, partners):
    """PCGrad for one edge, written out: against each original g_f in turn, where they conflict."""
    out = g_e.clone()
    for g_f in partners:
        dot = float(out @ g_f)
        if dot < 0:
            out = out - dot / float(g_f @ g_f) * g_f
    return out


def allowed_orders(e, group, lengths, order):
    """Every partner order a mode may use for edge e (ties in L are random: each tie order is allowed)."""
    others = [f for f in group if f != e]
    out = []
    for perm in itertools.permutations(others):
        if order == "random":
            out.append(list(perm))
            continue
        # any strict ranking consistent with L, ties broken either way
        for tie in itertools.permutations(group):
            rank = {k: (lengths[k], tie.index(k)) for k in group}
            if order == "short_to_long":
                seq = sorted((f for f in others if rank[f] > rank[e]), key=lambda f: rank[f], reverse=True)
            else:
                seq = sorted((f for f in others if rank[f] < rank[e]), key=lambda f: rank[f])
            out.append(seq)
        break
    return {tuple(seq) for seq in out}


def transform(edges, groups, order, include_beta=False, seed=0, length="through"):
    return EdgeProjection({"normal": edges, "reduce": edges}, groups, order, include_beta, length, seed)


# --- the cell graph: groups and lengths ---------------------------------------------------------

def test_darts_edge_lengths_are_depth_plus_one_plus_height():
    depth = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4}      # spec: depth(c_{k-2}) = depth(c_{k-1}) = 0, node m: m - 1
    height = {j: 5 - j for j in range(2, 6)}           # spec: height(j) = 5 - j
    assert edge_lengths(DARTS) == [depth[s] + 1 + height[t] for t, s in DARTS]
    assert edge_lengths(DARTS, "downstream") == [1 + height[t] for t, _ in DARTS]
    # NB201: node 0 input, node 3 output: L(i -> j) = i + 1 + 3 - j
    assert edge_lengths(NB201) == [i + 1 + 3 - j for j, i in NB201] == [3, 2, 3, 1, 2, 3]
    # Amended-DARTS S1 (fixed edges): a chain 0/1 -> 2 -> 3 -> 4 -> 5 plus edges from c_{k-2}
    assert edge_lengths(fixed_edges(4)) == [4, 4, 3, 4, 2, 4, 1, 4]


def test_groups():
    assert [len(g) for g in edge_groups(DARTS, "edge_in")] == [2, 3, 4, 5]
    assert [[DARTS[k][1] for k in g] for g in edge_groups(DARTS, "edge_out")] == [[0] * 4, [1] * 4, [2] * 3, [3] * 2]
    assert edge_groups(NB201, "edge_in") == [[1, 2], [3, 4, 5]]
    assert edge_groups(NB201, "edge_out") == [[0, 1, 3], [2, 4]]


# --- the projection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("groups, order", MODES)
def test_hand_made_rows_still_sum_to_zero(groups, order):
    model = Cells(DARTS, beta=True)
    grads = {"alpha_normal": softmax_like_grads(14, seed=7), "alpha_reduce": softmax_like_grads(14, seed=8),
             "beta_normal": torch.randn(14, dtype=torch.float64), "beta_reduce": torch.randn(14, dtype=torch.float64)}
    for include_beta in (False, True):
        model.set_grads(grads)
        transform(DARTS, groups, order, include_beta)(model)
        for kind in ("normal", "reduce"):
            g = model.arch[f"alpha_{kind}"].grad
            assert not torch.equal(g, grads[f"alpha_{kind}"]) and g.sum(1).abs().max() < 1e-14


@pytest.mark.parametrize("groups, order", MODES)
def test_no_conflict_leaves_the_gradient_unchanged(groups, order):
    """All rows of a cell type are positive multiples of one zero-sum vector: no dot product < 0."""
    model = Cells(DARTS)
    base = softmax_like_grads(1)
    scales = torch.rand(len(DARTS), 1, dtype=torch.float64) + 0.1
    grads = {"alpha_normal": scales * base, "alpha_reduce": -scales * base}
    model.set_grads(grads)
    transform(DARTS, groups, order)(model)
    for name, g in grads.items():
        assert torch.equal(model.arch[name].grad, g)


@pytest.mark.parametrize("order", ["random", "short_to_long", "long_to_short"])
def test_a_two_edge_group_is_non_conflicting_after_projection(order):
    """Node 2 of a DARTS cell (edges from c_{k-2} and c_{k-1}) with conflicting gradients."""
    model = Cells(DARTS)
    g = softmax_like_grads(len(DARTS))
    g[1] = -g[0] + 0.3 * softmax_like_grads(1, seed=1)[0]   # conflicts with g[0]
    assert g[0] @ g[1] < 0
    model.set_grads({"alpha_normal": g, "alpha_reduce": g})
    transform(DARTS, "edge_in", order)(model)
    out = model.arch["alpha_normal"].grad
    assert out[0] @ out[1] >= -1e-12
    changed = [not torch.equal(out[k], g[k]) for k in (0, 1)]
    if order == "random":
        assert changed == [True, True]                      # PCGrad: both projected, each onto the other's normal plane
        assert abs(out[0] @ g[1]) < 1e-12 and abs(out[1] @ g[0]) < 1e-12
    else:
        assert sorted(changed) == [False, True]             # a tie in L: one of the two (at random) is projected


@pytest.mark.parametrize("groups, order", MODES)
def test_modes_differ_only_in_order(groups, order):
    """Every mode's result is the written-out PCGrad projection for one of the partner orders the
    mode allows (random: any permutation; by length: longest / shortest first, ties either way)."""
    for edges in (DARTS, NB201):
        model = Cells(edges)
        grads = {"alpha_normal": softmax_like_grads(len(edges), seed=2), "alpha_reduce": softmax_like_grads(len(edges), seed=3)}
        model.set_grads(grads)
        transform(edges, groups, order, seed=5)(model)
        lengths = edge_lengths(edges)
        projected_somewhere = False
        for name, g in grads.items():
            out = model.arch[name].grad
            grouped = set()
            for group in edge_groups(edges, groups):
                for e in group:
                    grouped.add(e)
                    candidates = [reference_project(g[e], [g[f] for f in seq])
                                  for seq in allowed_orders(e, group, lengths, order)]
                    assert any(torch.allclose(out[e], c, atol=1e-12, rtol=0) for c in candidates), (name, e)
                    projected_somewhere |= not torch.equal(out[e], g[e])
            for e in set(range(len(edges))) - grouped:
                assert torch.equal(out[e], g[e])
        assert projected_somewhere


def test_short_to_long_changes_only_the_shorter_edge():
    """NB201 edge_out group of node 0 (edges to 1, 2, 3: L = 3, 2, 1): against longer edges only."""
    model = Cells(NB201, kinds=("cell",))
    g = softmax_like_grads(6, seed=4)
    g[3] = -(g[0] + g[1])  # L=1 conflicts with both longer ones
    model.set_grads({"alpha_cell": g})
    EdgeProjection({"cell": NB201}, "edge_out", "short_to_long")(model)
    out = model.arch["alpha_cell"].grad
    assert torch.equal(out[0], g[0])  # the longest edge is never changed
    assert torch.allclose(out[3], reference_project(g[3], [g[0], g[1]]), atol=1e-12)  # longest first
    model.set_grads({"alpha_cell": g})
    EdgeProjection({"cell": NB201}, "edge_out", "long_to_short")(model)
    out = model.arch["alpha_cell"].grad
    assert torch.equal(out[3], g[3])  # the shortest edge is never changed
    assert torch.allclose(out[0], reference_project(g[0], [g[3], g[1]]), atol=1e-12)  # shortest first


def test_include_beta_projects_alpha_and_beta_as_one_vector():
    model = Cells(NB201, kinds=("cell",), beta=True)
    g, b = softmax_like_grads(6, seed=6), torch.randn(6, dtype=torch.float64)
    model.set_grads({"alpha_cell": g, "beta_cell": b})
    EdgeProjection({"cell": NB201}, "edge_in", "short_to_long", include_beta=True)(model)
    joint = torch.cat([g, b[:, None]], 1)
    out = torch.cat([model.arch["alpha_cell"].grad, model.arch["beta_cell"].grad[:, None]], 1)
    # node 2: edges 1 (from 0, L=2) and 2 (from 1, L=3): edge 1 against edge 2
    assert torch.allclose(out[1], reference_project(joint[1], [joint[2]]), atol=1e-12)
    model.set_grads({"alpha_cell": g, "beta_cell": b})
    EdgeProjection({"cell": NB201}, "edge_in", "short_to_long", include_beta=False)(model)
    assert torch.equal(model.arch["beta_cell"].grad, b)


# --- on a real supernet, with every estimator ------------------------------------------------------

def _searcher(tiny_config, tmp_path, **overrides):
    cfg = noisydarts.resolve_config(config_file=tiny_config | overrides)
    return Searcher(cfg, tmp_path, progress=False)


@pytest.mark.parametrize("estimator", ["first_order", "second_order", "amended"])
@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_rows_still_sum_to_zero_with_every_estimator_and_space(tiny_config, tmp_path, estimator, space):
    sp = {"darts": {"name": "darts", "channels": 4, "layers": 3, "nodes": 3},
          "nb201": {"name": "nb201", "channels": 4, "cells_per_stage": 1}}[space]
    s = _searcher(tiny_config, tmp_path, space=sp, estimator={"name": estimator},
                  edge={"weighting": "edge_norm", "partial_channels": 2},
                  arch=tiny_config["arch"] | {"projection": {"groups": "edge_in", "order": "random"}})
    from noisydarts.methods.estimators import StepContext
    from noisydarts.search import cross_entropy

    batch = next(iter(s.train_batches.epoch(0)))
    val = next(iter(s.arch_batches.epoch(0)))
    s.estimator.step(s.model, batch, val, StepContext(cross_entropy, s.w_opt, 0.05))
    before = {n: p.grad.clone() for n, p in s.model.arch.items()}
    s.grad_transform(s.model)
    after = {n: p.grad for n, p in s.model.arch.items()}
    changed = False
    for name, g in after.items():
        if name.startswith("alpha_"):
            # float32: the estimator's own row sums are ~1e-7 relative, and the projection adds only rounding
            assert g.sum(1).abs().max() <= before[name].sum(1).abs().max() + 1e-6 * g.abs().max()
            changed |= not torch.equal(g, before[name])
        else:
            assert torch.equal(g, before[name])  # beta untouched by default
    assert changed


def test_a_space_without_edges_rejects_projection(tiny_config, tmp_path):
    class Layers(Supernet):
        kinds = ("layer",)

    cfg = noisydarts.resolve_config(config_file=tiny_config | {"arch": {"projection": {"groups": "edge_out"}}})
    assert build_gradient_transform(noisydarts.resolve_config(config_file=tiny_config), Layers()).transforms == {}
    with pytest.raises(UserError, match="not cell edges: set arch.projection.groups=none") as e:
        build_gradient_transform(cfg, Layers())
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="include_beta=true needs edge weights"):
        _searcher(tiny_config, tmp_path, arch={"projection": {"groups": "edge_in", "include_beta": True}})
    with pytest.raises(UserError, match="arch.projection.order must be one of"):
        noisydarts.resolve_config(config_file=tiny_config | {"arch": {"projection": {"order": "sideways"}}})


# --- the search loop --------------------------------------------------------------------------------

PC = {"edge": {"weighting": "edge_norm", "partial_channels": 2}}


def _gp(tiny_config, **projection):
    return tiny_config | PC | {"arch": tiny_config["arch"] | {"projection": projection}}


def test_gp_off_is_pc_darts_bit_for_bit(tiny_config, tmp_path, monkeypatch):
    """With groups=none the seam does nothing: the same alpha and metrics, to the bit, as the
    PC-DARTS step without a gradient-transform seam (written out below); and the same run with
    projection on differs (the seam is live)."""
    tiny_config["epochs"] = 1
    off = search(_gp(tiny_config, groups="none"), out=tmp_path / "off", progress=False)
    monkeypatch.setattr(Searcher, "search_step", _step_without_transform)
    plain = search(tiny_config | PC, out=tmp_path / "plain", progress=False)
    monkeypatch.undo()
    assert _alphas(tmp_path / "off") == _alphas(tmp_path / "plain")
    assert [_strip(m) for m in off.metrics] == [_strip(m) for m in plain.metrics]
    on = search(_gp(tiny_config, groups="edge_in"), out=tmp_path / "on", progress=False)
    assert on.alpha_history != off.alpha_history


def _step_without_transform(self, train_batch, val_batch, ctx, weights, amp):
    """The search step before gradient transforms existed: estimator, Adam; then the weight step."""
    if val_batch is not None:
        self.a_opt.zero_grad(set_to_none=True)
        with amp:
            self.estimator.step(self.model, train_batch, val_batch, ctx)
        self.a_opt.step()
    x, y = train_batch
    self.w_opt.zero_grad(set_to_none=True)
    with amp:
        loss, logits = self.model.training_loss(x, y)
    torch.autograd.backward(loss, inputs=weights)
    torch.nn.utils.clip_grad_norm_(weights, self.cfg["weights"]["grad_clip"])
    self.w_opt.step()
    return loss, logits


def _alphas(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]
    return {k: v.tolist() for k, v in state.items() if k.startswith("arch.")}


def _strip(record):
    return {k: v for k, v in record.items() if k != "epoch_time"}


def test_resume_is_exact_with_projection_on(tiny_config, tmp_path):
    """Search 2 epochs vs 1 + resume, random order (drawn from the transform's generator): identical."""
    cfg = _gp(tiny_config, groups="edge_in", order="random")
    full = search(cfg, out=tmp_path / "full", progress=False)
    search(cfg, out=tmp_path / "part", progress=False, stop_after=1)
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert set(state["grad_transform"]["projection"]) == {"generator"}
    resumed = search(resume=tmp_path / "part", progress=False)
    assert _alphas(tmp_path / "full") == _alphas(tmp_path / "part")
    assert [_strip(m) for m in resumed.metrics] == [_strip(m) for m in full.metrics]
    # the checkpoint holds the generator's state after an epoch of draws, not a fresh generator's
    assert not torch.equal(state["grad_transform"]["projection"]["generator"], torch.Generator().manual_seed(0).get_state())
