"""``compile``: torch.compile of each mixed edge gives the eager numbers; failures fall back to eager.

The tests compile with the ``aot_eager`` backend (:data:`noisydarts.compiling.BACKEND`): the same
graph capture (Dynamo) and compiled autograd (AOTAutograd) as ``inductor``, without generating C++
(inductor takes about 3 minutes for the tiny supernet on 2 cores; its parity, relative 5e-5
after two steps, was measured once that way). The compiled graphs decompose BatchNorm and the like into
other kernels, so results agree to float rounding, not bit for bit: relative 1e-4 after two
search steps (measured: 1e-5).
"""

import warnings

import pytest
import torch

import noisydarts
from noisydarts.nn import compiling
from noisydarts.errors import UserError

from test_checkpointing import ESTIMATORS, NOISY, TINY_SEARCH, _search_state, merge


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    # Graphs are cached per backend (Dynamo guards on it): the tests share the aot_eager ones.
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")


def _close(eager: dict, compiled: dict, rtol: float = 1e-4):
    assert eager.keys() == compiled.keys()
    for k in eager:
        a, b = eager[k], compiled[k]
        if not a.is_floating_point():
            assert torch.equal(a, b), k
            continue
        scale = a.abs().max().clamp_min(1e-12)
        assert (a - b).abs().max() <= rtol * scale, (k, ((a - b).abs().max() / scale).item())


def _some_differ(eager: dict, compiled: dict) -> bool:
    return any(not torch.equal(eager[k], compiled[k]) for k in eager)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_compiled_edges_give_the_eager_search_steps(tmp_path, checkpoint):
    """Noise on, first order; with ``space.checkpoint`` the compiled edges are recomputed in the
    backward pass (the replayed RNG state gives the same noise there too)."""
    cfg = merge(TINY_SEARCH, merge(NOISY, ESTIMATORS["first_order"]))
    eager, _ = _search_state(tmp_path / "eager", cfg, checkpoint)
    compiled, recomputed = _search_state(tmp_path / "compiled", merge(cfg, {"compile": "default"}), checkpoint)
    assert (recomputed > 0) == checkpoint
    _close(eager, compiled)
    # the steps really ran compiled: its kernels round differently somewhere
    assert _some_differ(eager, compiled)


@pytest.mark.parametrize("name", ["second_order_exact", "amended"])
def test_double_backward_runs_eagerly_under_compile(tmp_path, name):
    """Compiled graphs do not support double backward (create_graph): those estimators run their
    steps under :func:`noisydarts.compiling.eager`, with the eager step's numbers."""
    cfg = merge(TINY_SEARCH, merge(NOISY, ESTIMATORS[name]))
    eager, _ = _search_state(tmp_path / "eager", cfg, False)
    compiled, _ = _search_state(tmp_path / "compiled", merge(cfg, {"compile": "default"}), False)
    _close(eager, compiled)


def test_double_backward_through_a_compiled_edge_is_what_eager_avoids():
    """The reason for :func:`compiling.eager`, checked: without it, double backward fails."""
    from noisydarts.nn.mixed import MixedEdge

    edge = MixedEdge(["skip_connect", "sep_conv_3x3"], 4, 1).train()
    compiling.compile_regions(_Regions(edge), "default")
    x, alpha = torch.randn(2, 4, 8, 8), torch.zeros(2, requires_grad=True)

    def alpha_hessian_trace():
        loss = edge(x, torch.softmax(alpha, 0)).square().mean()
        (g,) = torch.autograd.grad(loss, alpha, create_graph=True)
        return torch.autograd.grad(g.sum(), alpha)[0]

    with pytest.raises(RuntimeError, match="double backward|create_graph"):
        alpha_hessian_trace()
    with compiling.eager():
        assert torch.isfinite(alpha_hessian_trace()).all()


class _Regions(torch.nn.Module):
    def __init__(self, *regions):
        super().__init__()
        self.regions = torch.nn.ModuleList(regions)

    def compile_regions(self):
        return list(self.regions)


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler found")


def test_a_failed_compile_goes_on_eagerly_with_the_eager_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", _failing_backend)
    cfg = merge(TINY_SEARCH, merge(NOISY, ESTIMATORS["first_order"]))
    eager, _ = _search_state(tmp_path / "eager", cfg, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fell_back, _ = _search_state(tmp_path / "compiled", merge(cfg, {"compile": "default"}), False)
    messages = [str(w.message) for w in caught if "compile" in str(w.message)]
    assert len(messages) == 1, messages  # said once, not once per edge
    assert "no C++ compiler found" in messages[0] and "goes on eagerly" in messages[0]
    for k in eager:  # the eager kernels themselves: bit for bit
        assert torch.equal(eager[k], fell_back[k]), k


def test_regions_are_each_spaces_mixed_parts():
    from noisydarts.nn.mixed import MixedEdge
    from noisydarts.spaces import build_supernet
    from noisydarts.spaces.mbv2.supernet import MixedLayer

    darts = build_supernet(noisydarts.resolve_config(None, TINY_SEARCH, []), 10)
    assert len(darts.compile_regions()) == 3 * 5 and all(isinstance(m, MixedEdge) for m in darts.compile_regions())
    nb201 = build_supernet(noisydarts.resolve_config("nb201-quick", {"device": "cpu"}, []), 10)
    # cells_per_stage 1: 3 cells of 6 edges (the two ResNet reductions are not searched)
    assert len(nb201.compile_regions()) == 3 * 6 and all(isinstance(m, MixedEdge) for m in nb201.compile_regions())
    mbv2 = build_supernet(noisydarts.resolve_config("mbv2-quick", {"device": "cpu"}, []), 10)
    assert len(mbv2.compile_regions()) == 19 and all(isinstance(m, MixedLayer) for m in mbv2.compile_regions())
    # compiling leaves parameter names (and so checkpoints) as they were
    names = list(darts.state_dict())
    compiling.compile_regions(darts, "default")
    assert list(darts.state_dict()) == names


def test_compile_values_are_checked_and_on_off_words_survive_yaml():
    with pytest.raises(UserError, match="compile must be one of off, default, reduce-overhead, max-autotune"):
        noisydarts.resolve_config(None, {}, ["compile=fast"])
    # YAML 1.1 reads off as False: the word comes back (amp=off failed on this before)
    cfg = noisydarts.resolve_config(None, {}, ["compile=off", "amp=off"])
    assert cfg["compile"] == "off" and cfg["amp"] == "off"
    assert noisydarts.resolve_config(None, {}, ["amp=on"])["amp"] == "on"
