"""The MobileNetV2 layer-wise space: skeleton, supernet, derivation, genotype, NoisyDARTS-A, presets.

The tiny search end to end (search, genotype.json, info, training, evaluate, plots, export) is
the parametrized all-spaces test in test_spaces.py (``mbv2`` is registered).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import noisydarts
from noisydarts.models import zoo
from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.models import create_model, info, resolve_genotype
from noisydarts.methods.noise import SkipNoise
from noisydarts.spaces import count_params, genotype_payload, get_space, parse_genotype
from noisydarts.spaces.mbv2 import CHOICES, IDENTITY_LAYERS, LayerwiseGenotype, MBV2Network, MBV2Supernet, MixedLayer, derive, restrict
from noisydarts.spaces.mbv2.blocks import INPUTS, STRIDES, WIDTHS, Identity, MBConv
from noisydarts.train import resolve_config

SPACE = get_space("mbv2")
SKIP = "skip_connect"
# NoisyDARTS-A as the release's verify_se.py defines it: (expansion, kernel) of the 19 layers.
NOISYDARTS_A = [(6, 3), (3, 3), (6, 5), (6, 3), (6, 3), (6, 3), (6, 5), (6, 7), (6, 3), (6, 3),
                (6, 3), (6, 3), (6, 3), (6, 3), (6, 3), (6, 7), (6, 7), (6, 7), (6, 7)]


def tiny_supernet(noise=None, **kw) -> MBV2Supernet:
    return MBV2Supernet(10, width_mult=0.1, stem_stride=1, noise=noise, **kw)


# --- skeleton and supernet ------------------------------------------------------------------------

def test_skeleton_is_the_19_layer_supernet_with_13_identity_layers():
    assert WIDTHS == (32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320)
    assert STRIDES == (2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
    # stride 1 and in = out: not 0, 2, 6, 14 (stride 2) and not 10 (80 -> 96), 18 (192 -> 320)
    assert IDENTITY_LAYERS == (1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17)
    assert CHOICES == ("mb3_k3", "mb3_k5", "mb3_k7", "mb6_k3", "mb6_k5", "mb6_k7", SKIP)


def test_supernet_shapes_and_choices_per_layer():
    net = tiny_supernet()
    assert net.arch["alpha_layer"].shape == (19, 7)
    for i, layer in enumerate(net.layers):
        names = [layer.op_names[k] for k in layer.active]
        assert names == list(CHOICES if i in IDENTITY_LAYERS else CHOICES[:6]), i
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # at 224 px with the stride-2 stem the last layer sees 7x7 maps (shapes only, on the meta device)
    with torch.device("meta"):
        big = MBV2Supernet(1000)
        seen = {}
        big.head.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].shape))
        assert big(torch.empty(2, 3, 224, 224)).shape == (2, 1000)
    assert tuple(seen["x"]) == (2, 320, 7, 7)


def test_identity_only_where_allowed():
    net = tiny_supernet()
    with torch.no_grad():
        net.arch["alpha_layer"][:, CHOICES.index(SKIP)] = 50.0  # the identity dominates every row it is in
    w = net.arch_weights()["layer"]
    assert torch.allclose(w.sum(1), torch.ones(19))
    for i in range(19):
        assert (w[i, 6] > 0.99) if i in IDENTITY_LAYERS else (w[i, 6] == 0), i
    g = net.genotype()
    assert [i for i, c in enumerate(g.layers) if c == SKIP] == list(IDENTITY_LAYERS)
    # the masked alpha entries get no gradient (exactly: float rounding would leave ~1e-7 of the others')
    with torch.no_grad():
        net.arch["alpha_layer"].normal_(0, 1e-3)
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    grad = net.arch["alpha_layer"].grad
    masked = [i for i in range(19) if i not in IDENTITY_LAYERS]
    assert torch.all(grad[masked, 6] == 0) and torch.all(grad[IDENTITY_LAYERS, 6] != 0)
    with pytest.raises(UserError, match="layer 0 cannot be skip_connect"):
        LayerwiseGenotype([SKIP] + ["mb3_k3"] * 18)


def test_restricted_weights_are_the_softmax_over_the_allowed_choices():
    alpha = torch.randn(19, 7, dtype=torch.float64)
    allowed = torch.ones(19, 7, dtype=torch.bool)
    allowed[[0, 2, 6, 10, 14, 18], 6] = False
    w = restrict(torch.softmax(alpha, 1), allowed)
    for i in range(19):
        k = allowed[i]
        torch.testing.assert_close(w[i, k], torch.softmax(alpha[i, k], 0))
        assert torch.all(w[i, ~k] == 0)


def test_derivation_is_the_per_layer_argmax_on_hand_made_weights():
    w = torch.full((19, 7), 0.1)
    expected = []
    for i in range(19):
        k = (i * 5) % 6                              # some MBConv wins ...
        w[i, k] = 0.3
        if i in (3, 11):                             # ... except where the identity wins (allowed there)
            w[i, 6] = 0.4
        if i in (0, 10, 18):                         # the identity's column is ignored where it is not a choice
            w[i, 6] = 0.9
        expected.append(SKIP if i in (3, 11) else CHOICES[k])
    assert derive(w, CHOICES).layers == tuple(expected)
    # ties go to the earlier choice; a subset of choices is derived over its own columns
    assert derive(torch.ones(19, 7), CHOICES).layers == ("mb3_k3",) * 19
    ops = ["mb6_k5", SKIP]
    g = derive(torch.tensor([[0.2, 0.8]] * 19), ops)
    assert g.layers == tuple(SKIP if i in IDENTITY_LAYERS else "mb6_k5" for i in range(19))
    with pytest.raises(UserError, match=r"must be \[19, 7\]"):
        derive(torch.ones(18, 7), CHOICES)


def test_noise_goes_on_the_identity_output_only():
    noise = SkipNoise(lam=0.5)
    layer = MixedLayer(CHOICES, 8, 8, 1, True, residual=True, op_transforms={SKIP: noise})
    assert [t is noise for t in layer.transforms] == [False] * 6 + [True]
    only_identity = torch.zeros(7)
    only_identity[6] = 1.0
    x = torch.randn(64, 8, 8, 8)
    layer.train()
    noise.train()
    delta = layer(x, only_identity) - x
    assert abs(delta.mean().item()) < 0.01 and delta.std().item() == pytest.approx(0.5 * x.std().item(), rel=0.02)
    noise.eval()
    torch.testing.assert_close(layer(x, only_identity), x)
    # a supernet registers the one noise module and hands it to the 13 identity choices only
    net = tiny_supernet(noise=SkipNoise())
    users = [i for i, layer in enumerate(net.layers) if any(t is net.noise for t in layer.transforms)]
    assert users == list(IDENTITY_LAYERS)


def test_checkpointing_gives_the_same_gradients_noise_included():
    grads = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        net = tiny_supernet(noise=SkipNoise(lam=0.5), checkpoint=checkpoint)
        x = torch.randn(4, 3, 16, 16)
        torch.manual_seed(1)  # the same noise draws
        net(x).square().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_search_config_checks():
    base = {"space": {"name": "mbv2"}}
    cfg = noisydarts.resolve_config(None, base)
    assert cfg["space"] == {"name": "mbv2", "width_mult": 1.0, "stem_stride": 2, "ops": list(CHOICES), "affine": False,
                            "checkpoint": "auto"}
    for override, message in [("space.ops=[skip_connect]", "at least one MBConv"),
                              ("space.ops=[mb3_k3,sep_conv_3x3]", "unknown operation 'sep_conv_3x3'"),
                              ("space.stem_stride=4", "stem_stride must be 1"),
                              ("space.width_mult=0", "width_mult must be in"),
                              ("edge.partial_channels=2", "the mbv2 space cannot use edge.partial_channels=2 .PC-DARTS"),
                              ("space.checkpoint=sometimes", "true, false or auto")]:
        with pytest.raises(UserError, match=message):
            noisydarts.resolve_config(None, base, [override])


# --- genotype ---------------------------------------------------------------------------------------

def test_genotype_text_and_json_round_trip(tmp_path):
    a = zoo.get("noisydarts_mbv2_a")
    assert str(a).startswith("LayerwiseGenotype(layers=['mb6_k3', 'mb3_k3', 'mb6_k5'")
    assert str(a).endswith("'mb6_k7'], se=0.25, activation='swish')")
    for g in (a, zoo.get("noisydarts_mbv2_a_plain"), LayerwiseGenotype(["mb3_k5"] + [SKIP, "mb6_k7"] * 9)):
        assert LayerwiseGenotype.parse(str(g)) == g == parse_genotype(str(g))
        assert SPACE.from_json(json.loads(json.dumps(SPACE.to_json(g)))) == g
        (tmp_path / "genotype.json").write_text(json.dumps(genotype_payload(g)))
        assert resolve_genotype(tmp_path) == g
    assert "se=" not in str(zoo.get("noisydarts_mbv2_a_plain"))
    assert SPACE.from_json(["mb3_k3"] * 19) == LayerwiseGenotype(["mb3_k3"] * 19)
    for text, message in [("LayerwiseGenotype(layers=['mb3_k3'])", "has 19 layers"),
                          ("LayerwiseGenotype(layers=['mb9_k3'] * 19)", "not a literal"),
                          ("LayerwiseGenotype(layers=['mb9_k3', " + "'mb3_k3', " * 18 + "])", "unknown layer choice"),
                          ("LayerwiseGenotype(layers=" + str(["mb3_k3"] * 19) + ", se=2)", "se must be a ratio"),
                          ("LayerwiseGenotype(layers=" + str(["mb3_k3"] * 19) + ", activation='tanh')", "activation")]:
        with pytest.raises(UserError, match=message):
            parse_genotype(text)


# --- the stand-alone network and NoisyDARTS-A --------------------------------------------------------

def noisydarts_a_params_by_hand(se: float, num_classes: int = 1000) -> int:
    """Parameters of NoisyDARTS-A counted from the widths, expansions and kernels alone."""
    def bn(c):
        return 2 * c

    total = 3 * 32 * 9 + bn(32)                      # stem: 3x3 conv 3 -> 32, BN
    total += 32 * 9 + bn(32) + 32 * 16 + bn(16)      # DS: 3x3 depthwise, BN, 1x1 conv 32 -> 16, BN
    for (e, k), c_in, c_out in zip(NOISYDARTS_A, INPUTS, WIDTHS):
        mid = c_in * e
        block = c_in * mid + bn(mid)                 # 1x1 expansion
        block += mid * k * k + bn(mid)               # k x k depthwise
        block += mid * c_out + bn(c_out)             # 1x1 projection
        if se:
            r = round(c_in * se)                     # timm: se_ratio of the block's input channels
            block += (mid * r + r) + (r * mid + mid)  # 1x1 reduce and expand, with biases
        total += block
    total += 320 * 1280 + bn(1280)                   # 1x1 conv to 1280, BN
    return total + 1280 * num_classes + num_classes  # classifier


def test_noisydarts_a_parameters_counted_by_hand():
    with_se = create_model("noisydarts_mbv2_a", "imagenet")
    plain = create_model("noisydarts_mbv2_a_plain", "imagenet")
    assert sum(p.numel() for p in with_se.parameters()) == noisydarts_a_params_by_hand(0.25) == 5_547_124
    assert sum(p.numel() for p in plain.parameters()) == noisydarts_a_params_by_hand(0.0) == 4_882_184
    # the published 5.5 M (SE + Swish) and 4.9 M (without), to the digit they print, and within 2 %
    assert round(count_params(with_se), 1) == 5.5 and round(count_params(plain), 1) == 4.9
    assert abs(count_params(with_se) / 5.5 - 1) < 0.02 and abs(count_params(plain) / 4.9 - 1) < 0.02
    assert isinstance(with_se.layers[5].expand[2], nn.SiLU) and isinstance(plain.layers[5].expand[2], nn.ReLU)
    assert isinstance(with_se.stem[2], nn.ReLU)  # stem, DS block and head keep ReLU (act_layer=nn.ReLU)
    # the CIFAR-10 network of the same genotype: 10 classes, the transferred NoisyDARTS-A-t's 4.3 M
    assert count_params(create_model("noisydarts_mbv2_a", "cifar10")) == pytest.approx(
        noisydarts_a_params_by_hand(0.25, 10) / 1e6) == pytest.approx(4.3, rel=0.01)


def test_noisydarts_a_multadds_against_the_published_449m():
    """Conv + linear mult-adds at 224 px: 446.7 M, 0.5 % below the published 449 M. The release
    counts with thop, which also counts global average pooling as one op per input element: the
    SE blocks' pooling (2.33 M) and the head's (0.06 M) close the gap."""
    size = info("noisydarts_mbv2_a", "imagenet")
    assert size["params_m"] == pytest.approx(5.5471, abs=1e-4)
    assert abs(size["multadds_m"] / 449 - 1) < 0.02
    net = create_model("noisydarts_mbv2_a", "imagenet").eval()
    pooled = []
    hooks = [m.register_forward_hook(lambda m, i, o: pooled.append(i[0][0].numel()))
             for m in net.modules() if type(m).__name__ == "SqueezeExcite" or isinstance(m, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert size["multadds_m"] + sum(pooled) / 1e6 == pytest.approx(449, abs=0.2)


def test_info_command_sizes_noisydarts_a_at_224(capsys):
    assert main(["info", "noisydarts_mbv2_a", "--data", "imagenet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"params_m": 5.5471, "multadds_m": 446.67}
    assert main(["info", "noisydarts_mbv2_a_plain", "--data", "imagenet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_m"] == pytest.approx(4.8822)
    # Without --data, a MobileNetV2-space architecture is sized as its paper reports it: on ImageNet at
    # 224 px (not the CIFAR transfer network), under its old name too; a DARTS cell on CIFAR-10.
    for name in ("noisydarts_mbv2_a", "noisydarts_A"):
        assert main(["info", name]) == 0
        out = capsys.readouterr().out
        assert "5.547 M" in out and "446.7 M (imagenet, one image)" in out
    assert info("noisydarts_a") == info("noisydarts_a", "cifar10")


def test_network_keys_override_the_genotype():
    a = zoo.get("noisydarts_mbv2_a")
    plain = SPACE.build_network(a, "imagenet", 1000, {"se": 0, "activation": "relu"})
    assert sum(p.numel() for p in plain.parameters()) == noisydarts_a_params_by_hand(0.0)
    assert isinstance(plain.layers[0].expand[2], nn.ReLU)
    enhanced = SPACE.build_network(zoo.get("noisydarts_mbv2_a_plain"), "imagenet", 1000, {"se": 0.25, "activation": "swish"})
    assert sum(p.numel() for p in enhanced.parameters()) == noisydarts_a_params_by_hand(0.25)
    for network, message in [({"se": True}, "network.se must be a ratio"), ({"activation": "gelu"}, "network.activation"),
                             ({"dropout": 1.0}, "network.dropout"), ({"stem_stride": 3}, "network.stem_stride"),
                             ({"channels": 8}, "unknown network key 'channels'")]:
        with pytest.raises(UserError, match=message):
            SPACE.build_network(a, "cifar", 10, network)


def test_network_shapes_identity_layers_and_drop_connect():
    g = LayerwiseGenotype(["mb3_k3"] + [SKIP, "mb6_k5"] * 9)
    net = MBV2Network(g, 10, width_mult=0.1, stem_stride=1, dropout=0.1)
    assert sum(isinstance(m, Identity) for m in net.layers) == 9 and sum(isinstance(m, MBConv) for m in net.layers) == 10
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    assert net(x).shape == (4, 10)
    torch.testing.assert_close(net(x), net(x))
    net.train()
    net.drop_path_prob = 0.5
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x))  # dropout and drop-connect sample in training mode


# --- presets and recipes ----------------------------------------------------------------------------------

def test_imagenet_search_presets_follow_the_paper(tmp_path):
    cfg = noisydarts.resolve_config("noisydarts-mbv2-imagenet")
    assert cfg["space"]["name"] == "mbv2" and cfg["space"]["width_mult"] == 1.0 and cfg["space"]["stem_stride"] == 2
    assert (cfg["epochs"], cfg["batch_size"], cfg["train_portion"]) == (30, 768, 0.5)
    assert (cfg["weights"]["lr"], cfg["weights"]["lr_min"], cfg["weights"]["momentum"]) == (0.045, 0.0, 0.9)
    assert (cfg["arch"]["lr"], cfg["arch"]["betas"]) == (1e-3, [0.5, 0.999])
    assert cfg["noise"]["enabled"] and cfg["noise"]["lambda"] == 0.2 and cfg["noise"]["mean"] == 0.0
    assert cfg["data"]["resolution"] == 224 and cfg["space"]["checkpoint"]
    twin = noisydarts.resolve_config("darts-mbv2-imagenet")
    assert not twin["noise"]["enabled"]
    same = lambda c: {k: v for k, v in c.items() if k not in ("noise", "description")}  # noqa: E731
    assert same(twin) == same(cfg)
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        noisydarts.search(cfg, out=tmp_path / "run", progress=False)  # ImageNet is given with --data DIR
    quick = noisydarts.resolve_config("mbv2-quick")
    assert quick["data"]["name"] == "cifar10-mini" and quick["space"]["width_mult"] < 1


def test_training_recipes():
    a = zoo.get("noisydarts_mbv2_a")
    cfg = resolve_config({"family": "imagenet"}, arch=a)
    w = cfg["weights"]
    assert (cfg["epochs"], cfg["batch_size"], w["lr"], w["nesterov"], w["weight_decay"]) == (300, 256, 0.05, True, 4e-5)
    assert (cfg["label_smoothing"], cfg["drop_path_prob"], w["grad_clip"], cfg["data"]["resolution"]) == (0.1, 0.2, None, 224)
    assert cfg["network"] == {"width_mult": 1.0, "se": None, "activation": None, "dropout": 0.2, "stem_stride": 2}
    cifar = resolve_config(None, arch=a)
    assert (cifar["epochs"], cifar["batch_size"], cifar["weights"]["lr"], cifar["weights"]["weight_decay"],
            cifar["drop_path_prob"]) == \
        (200, 256, 0.05, 0.0, 0.1)
    assert cifar["network"]["dropout"] == 0.1 and cifar["network"]["stem_stride"] == 1


def test_end_of_search_summary_names_the_genotype_and_its_imagenet_size():
    text = SPACE.describe(zoo.get("noisydarts_mbv2_a_plain"))
    assert text.splitlines()[0] == f"genotype: {zoo.get('noisydarts_mbv2_a_plain')}"
    assert "0 of the 13 layers" in text and "4.88 M params, 446 M mult-adds" in text
