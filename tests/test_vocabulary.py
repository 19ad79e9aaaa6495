"""One vocabulary across commands (issue 24): the training config's ``weights`` section with the
old top-level names still read, ``space.*`` in training and ``network.*`` in a search, ``--seed``,
``info --data``, ``compare --seed``, the zoo's MobileNetV2 names, and data paths stored absolute
so that a run resumes (and is evaluated) from another directory."""

import copy
import itertools

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY_SEARCH
from noisydarts.cli import build_parser, main
from noisydarts.config import Schema, apply_aliases
from noisydarts.errors import UserError
from noisydarts.models import resolve_genotype, zoo
from noisydarts.search import resolve_config as resolve_search
from noisydarts.train import resolve_config as resolve_train

OLD_NAMES = {"lr": 0.1, "lr_schedule": "linear", "momentum": 0.8, "nesterov": True, "weight_decay": 1e-4,
             "grad_clip": None}


# --- the optimizer keys: weights.* in both configs, the old names still read --------------------------

def test_training_optimizer_keys_live_in_weights_and_the_old_names_map_onto_them(tmp_path):
    cfg = resolve_train()
    assert cfg["weights"] == {"lr": 0.025, "lr_schedule": "cosine", "momentum": 0.9, "nesterov": False,
                              "weight_decay": 3e-4, "grad_clip": 5.0}
    assert not set(OLD_NAMES) & set(cfg)  # config.yaml and --print-config show the new names only
    # the old names, in each layer: a config dict, a YAML file, --set pairs
    expected = {**cfg["weights"], **OLD_NAMES}
    assert resolve_train(dict(OLD_NAMES))["weights"] == expected
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(OLD_NAMES))
    assert resolve_train(tmp_path / "old.yaml")["weights"] == expected
    pairs = [f"{k}={'null' if v is None else v}" for k, v in OLD_NAMES.items()]
    assert resolve_train(overrides=pairs)["weights"] == expected
    # a later layer's new name wins over an earlier layer's old one, and the other way round
    assert resolve_train({"lr": 0.3}, ["weights.lr=0.2"])["weights"]["lr"] == 0.2
    assert resolve_train({"weights": {"lr": 0.3}}, ["lr=0.2"])["weights"]["lr"] == 0.2
    # both names in one layer: the same value is one setting; different values are refused
    assert resolve_train(overrides=["lr=0.2", "weights.lr=0.2"])["weights"]["lr"] == 0.2
    with pytest.raises(UserError, match=r"^--set: lr \(read as weights.lr\) is 0.2 but weights.lr is 0.3: "
                                        r"give only weights.lr$"):
        resolve_train(overrides=["lr=0.2", "weights.lr=0.3"])
    # unknown keys still point at the right one; ranges name the new key
    with pytest.raises(UserError, match="did you mean 'weights.momentum'"):
        resolve_train(overrides=["momentun=0.5"])
    with pytest.raises(UserError, match="weights.lr must be > 0"):
        resolve_train(overrides=["lr=-1"])


def test_space_recipes_use_the_new_names_and_an_old_training_run_reads_back():
    nb201 = resolve_train(arch=resolve_genotype("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                                                 "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"))
    assert nb201["weights"] == {"lr": 0.1, "lr_schedule": "cosine", "momentum": 0.9, "nesterov": True,
                                "weight_decay": 5e-4, "grad_clip": None}
    assert resolve_train({"family": "imagenet"})["weights"]["lr_schedule"] == "linear"
    # a search run's train section, or an old run's config.yaml, may carry the old names
    assert resolve_train(None, arch=zoo.get("noisydarts_a"), search={"lr": 0.07})["weights"]["lr"] == 0.07


def test_alias_moves_keys_without_touching_the_input():
    layer = {"space": {"channels": 36}, "lr": 0.1}
    moved = apply_aliases(layer, {"space.channels": "network.channels", "lr": "weights.lr"}, "here")
    assert moved == {"network": {"channels": 36}, "weights": {"lr": 0.1}}
    assert layer == {"space": {"channels": 36}, "lr": 0.1}
    # a Schema's aliases apply to each layer before it is merged
    schema = Schema("test")
    schema.register("opt", {"rate": 1.0, "decay": 0.0}, owner="test")
    schema.register_alias("rate", "opt.rate")
    assert schema.resolve([("preset", {"rate": 2.0}), ("--set", {"opt": {"decay": 0.5}})]) == \
        {"opt": {"rate": 2.0, "decay": 0.5}}
    with pytest.raises(UserError, match="unknown config key 'rat' .did you mean 'opt.rate'"):
        schema.resolve([("--set", {"rat": 2.0})])


# --- network sizes: space.* sizes a supernet, network.* a trained network ----------------------------

def test_training_reads_space_keys_as_the_network_keys():
    cfg = resolve_train(overrides=["space.channels=16", "space.layers=8"])
    assert (cfg["network"]["channels"], cfg["network"]["layers"]) == (16, 8)
    assert "space" not in cfg
    with pytest.raises(UserError, match=r"space.channels \(read as network.channels\) is 16 but network.channels is 20"):
        resolve_train(overrides=["space.channels=16", "network.channels=20"])
    with pytest.raises(UserError, match=r"space.nodes is a search key; the trained network's size is network.\* "
                                        r"\(channels, layers, auxiliary for the darts space\)"):
        resolve_train(overrides=["space.nodes=2"])


def test_a_search_refuses_network_keys_naming_the_supernet_key(capsys):
    with pytest.raises(UserError, match=r"^--set: network.channels sizes the trained network \(noisydarts train "
                                        r"--set network.channels=...\); the supernet this search trains is sized by "
                                        r"space.channels: write --set space.channels=...$"):
        resolve_search(overrides=["network.channels=36"])
    assert main(["search", "--set", "network.layers=8", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "space.layers" in err


# --- flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, arch", [("search", []), ("train", ["noisydarts_a"])])
def test_seed_flag_is_set_seed(command, arch, capsys):
    assert main([command, *arch, "--seed", "7", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 7
    assert main([command, *arch, "--seed", "7", "--set", "seed=7", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 7
    assert main([command, *arch, "--seed", "7", "--set", "seed=8", "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == ("noisydarts: error: --seed 7 and --set seed=8 disagree: "
                                               "give the seed once")
    assert main([command, "--resume", "anywhere", "--seed", "7"]) == 2
    assert "--resume continues a run with its own" in capsys.readouterr().err


def test_info_takes_data_like_the_other_commands_and_compare_takes_seed():
    parser = build_parser()
    assert parser.parse_args(["info", "noisydarts_a", "--data", "imagenet"]).dataset == "imagenet"
    assert parser.parse_args(["info", "noisydarts_a", "--dataset", "cifar100"]).dataset == "cifar100"  # the old name
    info_help = parser._subparsers._group_actions[0].choices["info"].format_help()
    assert "--data DATASET" in info_help and "the old name of --data" in info_help
    assert parser.parse_args(["compare", "nb201-quick", "--seed", "4", "5", "--out", "x"]).seeds == [4, 5]
    assert parser.parse_args(["compare", "nb201-quick", "--seeds", "4", "--out", "x"]).seeds == [4]


# --- zoo names ------------------------------------------------------------------------------------

def test_zoo_names_differ_by_more_than_case_and_the_old_names_still_resolve():
    names = list(zoo.ZOO)
    for a, b in itertools.combinations(names, 2):
        assert a.lower() != b.lower(), (a, b)
    assert "noisydarts_mbv2_a" in names and "noisydarts_mbv2_a_plain" in names
    assert "noisydarts_A" not in names and "noisydarts_A_plain" not in names  # listed under the new names only
    for old, new in zoo.OLD_NAMES.items():
        assert zoo.canonical(old) == new and zoo.entry(old) is zoo.entry(new)
        assert str(resolve_genotype(old)) == str(zoo.get(new))
    assert str(resolve_genotype("noisydarts_a")) != str(resolve_genotype("noisydarts_A"))  # the DARTS cell
    with pytest.raises(UserError, match="did you mean 'noisydarts_mbv2_a'"):
        zoo.entry("noisydarts_mbv2_b")


# --- absolute data paths: resume and evaluate from another directory ---------------------------------

def _folder(root, classes=("red", "blue"), per_class=(8, 3)):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for c, base in zip(classes, (200, 40)):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(base + rng.integers(-30, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_a_relative_data_folder_is_stored_absolute(tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    _folder(a / "imgs")
    monkeypatch.chdir(a)
    assert resolve_search(overrides=["data.name=imgs", "data.root=roots"])["data"]["name"] == str(a / "imgs")
    assert resolve_search(overrides=["data.root=roots"])["data"]["root"] == str(a / "roots")
    assert resolve_search(overrides=["data.name=cifar10"])["data"]["name"] == "cifar10"  # a name stays a name
    assert resolve_train(overrides=["data.name=./imgs"])["data"]["name"] == str(a / "imgs")
    # a search from a, interrupted; resumed from b
    cfg = copy.deepcopy(TINY_SEARCH)
    cfg["data"] = {"name": "imgs", "resolution": 8}
    cfg.update(epochs=2, batch_size=4)
    from noisydarts.search import search

    search(cfg, out=a / "s", progress=False, stop_after=1)
    assert yaml.safe_load((a / "s" / "config.yaml").read_text())["data"]["name"] == str(a / "imgs")
    # a training run from a (relative --data)
    args = ["train", "noisydarts_a", "--data", "imgs", "--out", "t", "--no-progress", "--set", "epochs=1",
            "--set", "batch_size=4", "--set", "network.channels=4", "--set", "network.layers=3", "--set", "network.auxiliary=false",
            "--set", "data.resolution=8", "--set", "data.cutout=0", "--set", "device=cpu"]
    assert main(args) == 0
    monkeypatch.chdir(b)
    result = search(resume=a / "s", progress=False)
    assert [m["epoch"] for m in result.metrics] == [1, 2]
    capsys.readouterr()
    assert main(["evaluate", str(a / "t"), "--json"]) == 0
    assert yaml.safe_load(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 6
