"""A new weighting is a ``Weighting`` subclass and one registry entry: every space that leaves
``Support.weightings`` open takes it without a change, a search runs with it end to end, and a
space that lists its weightings refuses it in one line."""

from __future__ import annotations

import pytest
import torch

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.parts import Support, check_support
from noisydarts.methods.weightings import WEIGHTINGS
from noisydarts.nn.mixed import Weighting
from noisydarts.spaces import get_space


class SigmoidWeighting(Weighting):
    """``sigmoid(alpha)``: each op weighted on its own (FairDARTS' Eq. 3), no edge weights."""

    def __init__(self, arch, kinds, edge_targets):
        super().__init__()
        self.arch = [arch]

    def forward(self, kind: str) -> torch.Tensor:
        return torch.sigmoid(self.arch[0][f"alpha_{kind}"])


@pytest.fixture
def sigmoid(monkeypatch):
    monkeypatch.setitem(WEIGHTINGS, "my_sigmoid", SigmoidWeighting)
    return "my_sigmoid"


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_a_registered_weighting_runs_in_a_space_that_never_heard_of_it(tmp_path, sigmoid, space):
    sizes = get_space(space).TINY["space"]
    cfg = noisydarts.resolve_config(config_file={
        "space": {"name": space, **sizes}, "edge": {"weighting": sigmoid}, "epochs": 1, "batch_size": 8,
        "device": "cpu", "plots": False, "data": {"name": "cifar10-mini", "limit": 32, "resolution": 16}})
    result = noisydarts.search(cfg, out=tmp_path / "run", progress=False)
    model = get_space(space).build_supernet(cfg, 10)
    assert isinstance(model.weighting, SigmoidWeighting)
    kind = model.kinds[0]
    assert torch.equal(model.arch_weights()[kind], torch.sigmoid(model.arch[f"alpha_{kind}"]).detach())
    alpha = result.alpha_history[-1][kind]
    assert all(0.0 < w < 1.0 for row in alpha for w in row)  # sigmoid weights, not a distribution
    assert any(abs(sum(row) - 1.0) > 1e-3 for row in alpha)


def test_a_space_that_lists_its_weightings_refuses_a_new_one(sigmoid):
    space = get_space("nb201")
    cfg = noisydarts.resolve_config("nb201-quick", overrides=[f"edge.weighting={sigmoid}"])
    closed = type("Closed", (), {"name": "closed", "supports": Support(weightings=("softmax",))})()
    with pytest.raises(UserError, match=r"^the closed space cannot use edge.weighting=my_sigmoid .*choose edge.weighting "
                                        r"from softmax$"):
        check_support(closed, cfg)
    check_support(space, cfg)  # nb201 leaves its weightings open
