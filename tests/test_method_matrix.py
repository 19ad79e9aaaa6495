"""Every registered space x every method part: refused in one line, or really built.

For each space (the example chain space included) x weighting x partial channels x skip
transform (noise on/off, the release's drop-path 0/0.3), either ``check_support`` refuses the
combination with one UserError line that names the space and the key, or the supernet the space
builds has exactly that part (the weighting's class and options, ``partial == K`` on every mixed
edge, the transform on every skip op) and one search step on it gives finite numbers.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import sys
from pathlib import Path

import pytest
import torch

import noisydarts
from noisydarts.errors import UserError
from noisydarts.methods.noise import SkipDropPath, SkipNoise, SkipTransforms
from noisydarts.methods.parts import Support, build_parts, check_support
from noisydarts.methods.sivdnas import SIVDNASKL
from noisydarts.methods.weightings import WEIGHTINGS
from noisydarts.search.config import validate as validate_search_config
from noisydarts.spaces import SPACES, get_space

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import examples.chain_space  # noqa: E402,F401  (registers the "chain" space)

WEIGHTING_NAMES = tuple(WEIGHTINGS)  # every registered weighting: softmax, edge_norm, si_vdnas, sigmoid, dirichlet
PARTIAL = (1, 2)
TRANSFORMS = [(noise, p) for noise in (False, True) for p in (0.0, 0.3)]


def base_config(space) -> dict:
    """The space's tiny search config with every method part off (what any space supports)."""
    return noisydarts.resolve_config(config_file={
        "space": {"name": space.name, **space.TINY["space"]}, "noise": {"enabled": False}, "device": "cpu",
        "batch_size": 2, "plots": False})


def combination(cfg: dict, weighting: str, k: int, noise: bool, p: float) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["edge"].update(weighting=weighting, partial_channels=k)
    cfg["noise"].update(enabled=noise, skip_drop_path=p)
    if weighting == "si_vdnas":  # options away from the defaults, so a space that drops them shows
        cfg["vdnas"].update(variant="v" if k == 2 else "h", init_p=0.3)
    if weighting == "dirichlet":
        cfg["drnas"].update(reg="kl", reg_scale=0.01)
    return cfg


def mixed_units(model):
    """The modules that mix ops (MixedEdge, the mbv2 MixedLayer): they have op_names and transforms."""
    return [m for m in model.modules() if hasattr(m, "transforms") and hasattr(m, "active") and hasattr(m, "op_names")]


def check_built(model, cfg, weighting, k, noise, p):
    assert type(model.weighting) is WEIGHTINGS[weighting]
    if weighting == "si_vdnas":
        w = model.weighting
        assert w.variant == cfg["vdnas"]["variant"]
        for kind in model.kinds:
            torch.testing.assert_close(model.arch[f"log_delta_{kind}"].detach(),
                                       torch.full_like(model.arch[f"log_delta_{kind}"], math.log(0.3 / 0.7)))
    # the regularizers the config asks for, those the weighting brings included (SI-VDNAS' KL, DrNAS')
    expected = build_parts(cfg).regularizers
    assert [type(r) for r in model.regularizers] == [type(r) for r in expected]
    assert [r.extra_repr() for r in model.regularizers] == [r.extra_repr() for r in expected]
    if weighting == "si_vdnas":
        assert [type(r) for r in model.regularizers] == [SIVDNASKL]
    elif weighting in ("softmax", "edge_norm", "sigmoid"):
        assert len(model.regularizers) == 0
    units = mixed_units(model)
    assert units
    partial = [getattr(u, "partial", 1) for u in units]
    assert partial == [k] * len(units)
    skips = [(u, t) for u in units for idx, t in zip(u.active, u.transforms) if u.op_names[idx] == "skip_connect"]
    assert skips, "every space here has skip ops"
    for unit, t in skips:
        if not noise and not p:
            assert t is None
        elif not p:
            assert isinstance(t, SkipNoise)
        else:
            assert isinstance(t, SkipTransforms) and isinstance(t.drop_path, SkipDropPath) and t.drop_path.p == p
            assert isinstance(t.noise, SkipNoise) if noise else t.noise is None
        assert t is model.noise  # one shared module, registered once


def search_step(model, resolution: int):
    """One architecture step and one weight step by hand: finite loss, gradients and alpha."""
    model.train()
    model.set_search_data(8, 8)
    model.set_epoch(0, 1)
    model.begin_step()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, resolution, resolution, generator=g), torch.randint(0, 10, (2,), generator=g)
    arch = model.arch_parameters()
    loss = model.training_loss(x, y)[0]
    reg = model.arch_regularizer()
    total = loss if reg is None else loss + reg
    grads = torch.autograd.grad(total, arch, allow_unused=True)
    assert torch.isfinite(total), float(total)
    with torch.no_grad():
        for a, gr in zip(arch, grads):
            if gr is not None:
                assert torch.isfinite(gr).all()
                a.sub_(0.1 * gr)
            assert torch.isfinite(a).all()
    model.training_loss(x, y)[0].backward()  # the weight step's gradient
    assert all(torch.isfinite(q.grad).all() for q in model.weight_parameters() if q.grad is not None)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_honours_or_refuses_every_method_part(name):
    space = get_space(name)
    assert isinstance(space.supports, Support)
    base = base_config(space)
    honoured = 0
    for weighting, k, (noise, p) in itertools.product(WEIGHTING_NAMES, PARTIAL, TRANSFORMS):
        cfg = combination(base, weighting, k, noise, p)
        try:
            check_support(space, cfg)
        except UserError as e:
            message = str(e)
            assert "\n" not in message and message.startswith(f"the {name} space cannot use ")
            assert re.search(r"(edge\.weighting|edge\.partial_channels|noise\.enabled|noise\.skip_drop_path)=", message)
            with pytest.raises(UserError, match=re.escape(message)):  # building refuses it the same way
                space.build_supernet(cfg, 10)
            continue
        torch.manual_seed(0)
        model = space.build_supernet(cfg, 10)
        check_built(model, cfg, weighting, k, noise, p)
        # the search step is the slow part: once per weighting and K, with every transform on
        if noise and p:
            search_step(model, 8)
        honoured += 1
    assert honoured >= 1


#: The parts switched on by keys of their own (over a softmax search unless a weighting is named):
#: architecture-loss regularizers, DARTS-' auxiliary skip, SDARTS' weight-step perturbation.
EXTRAS = {
    "zero_one": {"edge": {"weighting": "sigmoid"}, "zero_one": {"weight": 10.0}},
    "beta_decay": {"beta_decay": {"weight": 25.0}},
    "aux_skip": {"aux_skip": {"enabled": True}},
    "perturb_random": {"perturb": {"kind": "random"}},
    "perturb_adversarial": {"perturb": {"kind": "adversarial", "steps": 1}},
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_honours_or_refuses_every_part_switched_on_by_its_own_keys(name):
    """Each extra part: refused in one line naming the space and the key, or really there: the
    regularizer in the supernet's architecture loss (a finite term with a gradient for alpha), the
    auxiliary skip on every mixed edge, the perturbation changing the weight step's op weights."""
    from noisydarts.methods.perturbation import build_weight_perturbation

    space = get_space(name)
    honoured = []
    for extra, overrides in EXTRAS.items():
        cfg = copy.deepcopy(base_config(space))
        for section, values in overrides.items():
            cfg[section].update(values)
        try:
            validate_search_config(cfg)
            check_support(space, cfg)
        except UserError as e:
            message = str(e)
            assert "\n" not in message and re.search(r"(aux_skip|zero_one|beta_decay|perturb|edge)\.", message), message
            continue
        torch.manual_seed(0)
        model = space.build_supernet(cfg, 10)
        model.set_search_data(8, 8)
        model.set_epoch(1, 2)
        model.train()
        x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))
        if extra in ("zero_one", "beta_decay"):
            term = model.arch_regularizer()
            grads = torch.autograd.grad(term, model.arch_parameters(), allow_unused=True)
            assert torch.isfinite(term) and any(g is not None and g.abs().sum() > 0 for g in grads)
        elif extra == "aux_skip":
            units = mixed_units(model)
            assert units and all(getattr(u, "aux_op", None) is not None for u in units)
        else:
            perturbation = build_weight_perturbation(cfg)
            perturbation.set_epoch(1, 2)
            clean = {k: w.detach() for k, (w, _) in model.mixing_weights(2).items()}
            with perturbation.weight_step(model, x, y):
                perturbed = {k: w.detach() for k, (w, _) in model.mixing_weights(2).items()}
            assert any(not torch.equal(clean[k], perturbed[k]) for k in clean) or extra == "perturb_adversarial"
            assert all(torch.isfinite(w).all() for w in perturbed.values())
        search_step(model, 8)
        honoured.append(extra)
    if name in ("darts", "nb201", "amended"):  # the cell spaces honour every one of them
        assert honoured == list(EXTRAS)


def test_what_each_space_supports():
    """The declarations themselves (a change here is a change of what users can run)."""
    assert SPACES["mbv2"].supports == Support(partial_channels=False)
    assert SPACES["darts"].supports == Support(auxiliary_skip=True, weighting_derivation=True)
    assert SPACES["nb201"].supports == SPACES["amended"].supports == Support(auxiliary_skip=True)
    assert SPACES["chain"].supports == Support()
    cfg = combination(base_config(SPACES["mbv2"]), "softmax", 4, False, 0.0)
    with pytest.raises(UserError, match=re.escape("the mbv2 space cannot use edge.partial_channels=4 (PC-DARTS partial "
                                                  "channels): set edge.partial_channels=1")):
        check_support(SPACES["mbv2"], cfg)
    cfg = combination(base_config(SPACES["darts"]), "softmax", 3, False, 0.0)
    with pytest.raises(UserError, match="the darts space cannot use edge.partial_channels=3 .*multiple of edge.partial_channels"):
        check_support(SPACES["darts"], cfg)


def test_a_space_that_cannot_honour_a_part_refuses_it_by_name():
    space = copy.copy(SPACES["chain"])
    space.supports = Support(weightings=("softmax",), partial_channels=False, skip_transform=False, skip_drop_path=False)
    base = base_config(SPACES["chain"])
    for args, key in [(("edge_norm", 1, False, 0.0), "edge.weighting=edge_norm"),
                      (("softmax", 2, False, 0.0), "edge.partial_channels=2"),
                      (("softmax", 1, True, 0.0), "noise.enabled=true"),
                      (("softmax", 1, False, 0.3), "noise.skip_drop_path=0.3")]:
        with pytest.raises(UserError, match=f"the chain space cannot use {re.escape(key)} "):
            check_support(space, combination(base, *args))


def test_mbv2_builds_the_si_vdnas_options_it_is_given():
    """The CLI's ``--preset mbv2-quick --set edge.weighting=si_vdnas --set vdnas.variant=v
    --set vdnas.init_p=0.3`` builds V-VDNAS at p = 0.3 (the mbv2 supernet once took the weighting's
    name and dropped the vdnas section: SI-VDNAS at p = 0.1, and NaN from the layer restriction)."""
    cfg = noisydarts.resolve_config("mbv2-quick", overrides=[
        "edge.weighting=si_vdnas", "vdnas.variant=v", "vdnas.init_p=0.3", "space.width_mult=0.1", "space.stem_stride=1",
        "device=cpu"])
    model = get_space(cfg).build_supernet(cfg, 10)
    assert model.weighting.variant == "v" and not model.weighting.hierarchical
    assert torch.allclose(model.arch["log_delta_layer"], torch.tensor(math.log(0.3 / 0.7)))
    for _ in range(3):  # sampled masks that drop every allowed choice of a layer must not give 0 / 0
        search_step(model, 8)
    weights = model.layer_weights(4)
    assert weights.shape[:3] == (19, len(model.op_names), 4) and torch.isfinite(weights).all()
    assert (weights[~model.allowed] == 0).all()


def test_the_parts_come_from_one_place():
    cfg = combination(base_config(SPACES["darts"]), "si_vdnas", 2, True, 0.3)
    cfg["vdnas"]["kl_weight"] = 0.5
    parts = build_parts(cfg)
    assert (parts.weighting_name, parts.partial_channels, parts.skip_transform_on_reduction) == ("si_vdnas", 2, True)
    assert parts.weighting.keywords["variant"] == "v" and parts.weighting.keywords["init_p"] == 0.3
    assert [type(r) for r in parts.regularizers] == [SIVDNASKL] and parts.regularizers[0].kl_weight == 0.5
    assert parts.op_transforms(1) == {"skip_connect": parts.skip_transform}
    cfg["noise"]["reduction_skips"] = False  # the noise leaves stride-2 skips, the release's drop-path stays
    parts = build_parts(cfg)
    reduction = parts.op_transforms(2)["skip_connect"]
    assert reduction.noise is None and reduction.drop_path is parts.skip_transform.drop_path
    assert reduction.drop_path.p == 0.3 and parts.op_transforms(2)["skip_connect"] is reduction
    cfg["noise"]["skip_drop_path"] = 0.0
    assert build_parts(cfg).op_transforms(2) is None


def test_reduction_skips_false_keeps_the_drop_path_on_the_stride_2_skips_of_the_darts_supernet():
    cfg = combination(base_config(SPACES["darts"]), "softmax", 1, True, 0.3)
    cfg["noise"]["reduction_skips"] = False
    model = get_space(cfg).build_supernet(cfg, 10)
    strides = {}
    for edge in mixed_units(model):
        transform = edge.transforms[edge.op_names.index("skip_connect") - edge.op_names.count("none")] \
            if "skip_connect" in edge.op_names else None
        strides.setdefault(edge.stride, set()).add((getattr(transform, "noise", None) is not None,
                                                    getattr(transform, "drop_path", None) is not None))
    assert strides == {1: {(True, True)}, 2: {(False, True)}}


SOURCES = sorted((ROOT / "src" / "noisydarts" / "spaces").rglob("*.py")) + [ROOT / "examples" / "chain_space.py"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_spaces_never_read_the_method_sections(path):
    """A space gets the method as MethodParts (build_parts): reading cfg["noise"], cfg["edge"] or
    cfg["vdnas"] itself is how a space silently drops an option."""
    text = path.read_text()
    found = re.findall(r"""\[\s*["'](noise|edge|vdnas)["']\s*\]""", text)
    assert not found, f"{path.name} reads the method's config sections {sorted(set(found))}: use build_parts(cfg)"
