"""Config parsing (issue 10, class 7): every key of every space, estimator and the training config
gets one clear line for a wrong type, an empty value, a bad list item or a non-finite number; files
that are not UTF-8 YAML mappings are one line; unknown keys and names suggest the closest one."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import yaml

from noisydarts import config
from noisydarts.search import defaults as search_defaults, resolve_config
from noisydarts.cli import main, search_config
from noisydarts.errors import UserError
from noisydarts.methods.estimators import ESTIMATORS
from noisydarts.spaces import SPACES
from noisydarts.train import DEFAULTS as TRAIN_DEFAULTS
from noisydarts.train import resolve_config as train_resolve


def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _search_configs():
    """The resolved config of every space and estimator (each brings its own keys)."""
    for space in SPACES:
        for estimator in ESTIMATORS:
            yield (space, estimator), resolve_config(config_file={"space": {"name": space}, "estimator": {"name": estimator}})


SEARCH_KEYS = sorted({(path, type(value).__name__, tuple(names))
                      for names, cfg in _search_configs() for path, value in _leaves(cfg)
                      if path not in ("space.name", "estimator.name")}, key=str)
TRAIN_KEYS = sorted({(path, type(value).__name__) for path, value in _leaves(train_resolve())}, key=str)


def _layer(path: str, value) -> dict:
    out: dict = {}
    node = out
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def _resolve_search(path, names, value):
    space, estimator = names
    layer = _layer(path, value)
    layer.setdefault("space", {})["name"] = space
    layer.setdefault("estimator", {})["name"] = estimator
    return resolve_config(config_file=layer)


def _declared(path, default):
    return path in config.NULLABLE or default is None


def test_every_null_default_has_a_declared_type():
    defaults = [("", search_defaults()), ("", TRAIN_DEFAULTS)]
    defaults += [("", space.recipe(f)) for space in SPACES.values() for f in space.families]
    defaults += [("network.", space.network_defaults(f)) for space in SPACES.values() for f in space.families]
    defaults += [("space.", m.DEFAULTS) for m in SPACES.values()] + [("estimator.", m.DEFAULTS) for m in ESTIMATORS.values()]
    undeclared = [prefix + path for prefix, d in defaults for path, value in _leaves(d)
                  if value is None and prefix + path not in config.NULLABLE]
    assert undeclared == []


WRONG = {  # a value of another type for each kind of key
    "int": ["ten", 1.5, True, [1], {"a": 1}],
    "float": ["big", True, [0.1], {"a": 1}],
    "bool": ["yes please", 1, 0.0, [True]],
    "str": [5, 1.5, True, ["a"], {"a": 1}],
    "list": ["abc", 5, {"a": 1}],
    "NoneType": [[1], {"a": 1}],
}


@pytest.mark.parametrize("path, kind, names", SEARCH_KEYS, ids=[k[0] + "-" + "-".join(k[2]) for k in SEARCH_KEYS])
def test_every_search_key_refuses_wrong_types_and_empty_values(path, kind, names):
    kind = config.NULLABLE[path].__name__ if path in config.NULLABLE else kind
    # booleans are values of the auto-or-bool keys, and the words on/off of the on-off keys (YAML 1.1)
    takes_bool = path in config.AUTO_OR_BOOL or path in config.ON_OFF_WORDS
    for value in [v for v in WRONG.get(kind, []) if not (takes_bool and isinstance(v, bool))]:
        with pytest.raises(UserError, match=path.replace(".", r"\.")):
            _resolve_search(path, names, value)
    if path in config.NULLABLE:
        assert _leaves_dict(_resolve_search(path, names, None))[path] is None  # an empty value means null
    else:
        with pytest.raises(UserError, match=rf"{path.replace('.', '[.]')} needs a value"):
            _resolve_search(path, names, None)
    if kind == "float":
        for bad in (math.inf, -math.inf, math.nan, "inf", "nan", "1e999"):
            with pytest.raises(UserError, match="must be a finite number"):
                _resolve_search(path, names, bad)


def _leaves_dict(cfg):
    return dict(_leaves(cfg))


@pytest.mark.parametrize("path, kind", TRAIN_KEYS, ids=[k[0] for k in TRAIN_KEYS])
def test_every_train_key_refuses_wrong_types_and_empty_values(path, kind):
    kind = config.NULLABLE[path].__name__ if path in config.NULLABLE else kind
    takes_bool = path in config.AUTO_OR_BOOL or path in config.ON_OFF_WORDS  # as above
    for value in [v for v in WRONG.get(kind, []) if not (takes_bool and isinstance(v, bool))]:
        with pytest.raises(UserError, match=path.replace(".", r"\.")):
            train_resolve(_layer(path, value))
    if path in config.NULLABLE:
        assert _leaves_dict(train_resolve(_layer(path, None)))[path] is None
    else:
        with pytest.raises(UserError, match="needs a value"):
            train_resolve(_layer(path, None))
    if kind == "float":
        for bad in (math.inf, -math.inf, math.nan, "inf", "nan"):
            with pytest.raises(UserError, match="must be a finite number"):
                train_resolve(_layer(path, bad))


@pytest.mark.parametrize("setting, words", [
    ("space.ops=[skip_connect, 3]", "space.ops[1] must be str"),
    ("space.ops=[skip_connect, [a]]", "space.ops[1] must be str"),
    ("space.ops=[]", "space.ops needs at least one operation"),
    ("space.ops=skip_connect", "space.ops must be a list"),
    ("arch.betas=[0.5, a]", "arch.betas[1] must be float"),
    ("arch.betas=[true, 0.9]", "arch.betas[0] must be float"),
    ("arch.betas=[0.5, .inf]", "arch.betas[1] must be a finite number"),
    ("arch.betas=[0.5]", "arch.betas must be two numbers"),
    ("epochs=", "epochs needs a value"),
    ("noise.distribution=", "noise.distribution needs a value"),
    ("noise.lambda=.nan", "noise.lambda must be a finite number"),
    ("weights.lr=inf", "weights.lr must be a finite number"),
    ("data.limit=abc", "data.limit must be int"),
    ("data.limit=1.5", "data.limit must be int"),
    ("data.root=5", "data.root must be str"),
    ("estimator.name=second_order", None),  # a valid switch of section
    ("seed=-1", "seed must be an integer in [0, 2^62)"),
    ("seed=99999999999999999999999", "seed must be an integer in [0, 2^62)"),
    ("noise=1", "noise is a section"),
    ("data={name: 5}", "data.name must be str"),
])
def test_cli_config_values_are_one_line(setting, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--set", setting, "--print-config"])
    out, err = capsys.readouterr()
    if words is None:
        assert code == 0 and yaml.safe_load(out)["estimator"]["name"] == "second_order"
        return
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe\x00e\x00p\x00", "is not UTF-8 text"),
    (b"epochs: 3\x00\x00", "NUL bytes"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
    (b"epochs: [1,\n", "is not valid YAML"),
    (b"- 1\n- 2\n", "must hold a mapping"),
    (b"!!python/object/apply:os.system ['touch pwned']\n", "is not valid YAML"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"epochs: 3\nbogus: 1\n", "unknown config key 'bogus'"),
    (b"epochs:\n", "epochs needs a value"),
], ids=["utf16", "nul", "png", "yaml-syntax", "list", "python-tag", "deep", "unknown-key", "empty-value"])
def test_config_files_that_are_not_configs(content, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    for command in (["search"], ["train", "noisydarts_a"]):
        code = main([*command, "--config", str(path), "--print-config"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "dir.yaml").mkdir()
    assert main(["search", "--config", str(tmp_path / "dir.yaml")]) == 2


def test_a_bom_and_an_empty_file_are_fine(tmp_path):
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfepochs: 3\n")
    (tmp_path / "empty.yaml").write_bytes(b"")
    assert resolve_config(config_file=tmp_path / "bom.yaml")["epochs"] == 3
    assert resolve_config(config_file=tmp_path / "empty.yaml") == resolve_config()


@pytest.mark.parametrize("args, suggestion", [
    (["search", "--set", "noise.lamda=0.1"], "did you mean 'noise.lambda'?"),
    (["search", "--set", "lambda=0.1"], "did you mean 'noise.lambda'?"),
    (["search", "--set", "epoch=3"], "did you mean 'epochs'?"),
    (["search", "--set", "space.chanels=8"], "did you mean 'space.channels'?"),
    (["search", "--set", "weights.lr_mn=0"], "did you mean 'weights.lr_min'?"),
    (["search", "--set", "estimator.eta=0.1"], "did you mean"),  # an amended key with first_order: none close
    (["search", "--preset", "quik"], "did you mean 'quick'?"),
    (["search", "--set", "estimator.name=firstorder"], "did you mean 'first_order'?"),
    (["search", "--set", "space.name=nb210"], "did you mean 'nb201'?"),
    (["search", "--set", "noise.distribution=gausian"], "did you mean 'gaussian'?"),
    (["search", "--set", "edge.weighting=edgenorm"], "did you mean 'edge_norm'?"),
    (["search", "--set", "amp=of"], "did you mean 'off'?"),
    (["search", "--preset", "quick", "--set", "space.ops=[sep_conv3x3,skip_connect]"], "did you mean 'sep_conv_3x3'?"),
    (["train", "noisydarts_a", "--set", "lr_shedule=linear"], "did you mean 'weights.lr_schedule'?"),
    (["train", "noisydarts_a", "--set", "data.cutot=0"], "did you mean 'data.cutout'?"),
    (["presets", "nb201-quik"], "did you mean 'nb201-quick'?"),
    (["export", "nowhere", "--format", "onx"], None),
])
def test_unknown_names_suggest_the_closest(args, suggestion, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main([*args, "--print-config"] if args[0] in ("search", "train") else args)
    except SystemExit as e:  # argparse choices (export --format) answer in one line themselves
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    if suggestion == "did you mean":
        assert "unknown config key 'estimator.eta'" in err
    elif suggestion:
        assert suggestion in err, err


def _args(**kw):
    base = dict(preset=None, config=None, overrides=[], data=None, no_plots=False, tensorboard=False)
    return argparse.Namespace(**{**base, **kw})


def test_config_file_alone_starts_from_the_default_preset(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\n")
    got = search_config(_args(config=str(tmp_path / "c.yaml")))
    assert got == resolve_config(config.DEFAULT_PRESET, overrides=["epochs=3"])
    assert got["space"]["name"] == "nb201" and got["data"]["limit"] == 2000  # the default preset's
    assert search_config(_args(config=str(tmp_path / "c.yaml"), preset="quick"))["space"]["name"] == "darts"


@pytest.mark.parametrize("preset", config.preset_names())
def test_a_later_layer_may_switch_space_and_estimator(preset):
    for space in SPACES:
        overrides = [f"space.name={space}"]
        for _ in range(3):
            try:
                cfg = resolve_config(preset, overrides=overrides)
                break
            except UserError as e:  # a space that cannot honour a method part refuses it by name, with the fix
                refused = re.search(rf"^the {space} space cannot use (\S+)=", str(e))
                if not refused:  # a method's own sizes that do not fit this space (DrNAS' ops kept per edge)
                    assert "\n" not in str(e) and re.match(r"^\w+\.\w+", str(e)), str(e)
                    cfg = None
                    break
                fix = re.search(r": set (\S+=\S+)$", str(e))
                overrides.append(fix[1] if fix else f"{refused[1]}=1")  # K that does not divide: K = 1
        if cfg is None:
            continue
        expected = {"name": space, **SPACES[space].DEFAULTS}
        assert set(cfg["space"]) == set(expected)  # no key of the preset's own space is left over
    cfg = resolve_config(preset, overrides=["estimator.name=second_order", "estimator.xi=0.01"])
    assert cfg["estimator"] == {"name": "second_order", "xi": 0.01, "exact": False, "r": 0.01}


def test_print_config_resolves_back_to_itself(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--preset", "quick", "--set", "epochs=7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == resolve_config("quick", overrides=["epochs=7"]) and not (tmp_path / "runs").exists()
    assert main(["train", "--set", "epochs=5", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == train_resolve(overrides=["epochs=5"])


def test_print_config_of_a_run(search_run, train_run, capsys):
    assert main(["search", "--resume", str(search_run), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed.pop("provenance")["noisydarts"]
    assert printed == resolve_config(config_file=config.load_yaml(search_run / "config.yaml"))
    assert main(["train", "--resume", str(train_run), "--print-config"]) == 0
    assert "provenance" in yaml.safe_load(capsys.readouterr().out)


def test_presets_name_prints_the_preset(capsys):
    for name in config.preset_names():
        assert main(["presets", name]) == 0
        assert yaml.safe_load(capsys.readouterr().out) == config.load_preset(name)
