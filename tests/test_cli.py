"""Bad input: one clear line, exit code 2, no traceback, and existing runs left intact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from noisydarts.cli import main

TINY = ["--preset", "quick", "--set", "epochs=1", "--set", "data.limit=48", "--set", "data.resolution=16", "--set", "space.channels=4",
        "--set", "space.layers=3", "--set", "space.nodes=2", "--set", "batch_size=16", "--no-progress", "--no-plots"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(["search", "--out", str(out), *TINY]) == 0
    return out


def _snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_presets_lists_one_line_each(capsys):
    code, out, _ = run_cli(["presets"], capsys)
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and {"quick", "darts-cifar10", "noisydarts-cifar10"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines())


@pytest.mark.parametrize("args, words", [
    (["search", "--preset", "nope"], "unknown preset 'nope'"),
    (["search", "--set", "noise.lamda=0.1"], "unknown config key 'noise.lamda'"),
    (["search", "--preset", "quick", "--set", "space.ops=[skip_connect,conv_9x9]"], "unknown operation 'conv_9x9'"),
    (["search", "--set", "noise.lambda=-0.1"], "noise.lambda must be >= 0"),
    (["search", "--set", "batch_size=0"], "batch_size must be positive"),
    (["search", "--set", "epochs=0"], "epochs must be at least 1"),
    (["search", "--set", "train_portion=1.0"], "train_portion must be in (0, 1)"),
    (["search", "--set", "epochs=ten"], "epochs must be int"),
    (["search", "--set", "noise.lambda=big"], "noise.lambda must be float"),
    (["search", "--set", "epochs"], "is not KEY=VALUE"),
    (["search", "--config", "/nonexistent.yaml"], "config file /nonexistent.yaml not found"),
    (["search", "--data", "/nonexistent/dir"], "/nonexistent/dir"),
    (["search", "--data", "imagenet"], "unknown dataset"),
    (["search", "--resume", "/nonexistent/run"], "no such directory"),
])
def test_bad_input_is_one_line_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_dir_problems(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "test").mkdir()
    code, _, err = run_cli(["search", "--data", str(empty), *TINY], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    one = tmp_path / "one"
    for split in ("train", "test"):
        (one / split / "cat").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(one / "train" / "cat" / "a.png")
    Image.new("RGB", (8, 8)).save(one / "test" / "cat" / "a.png")
    code, _, err = run_cli(["search", "--data", str(one), *TINY], capsys)
    assert code == 2 and "class" in err
    bad = tmp_path / "bad"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (bad / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(bad / split / cls / "x.png")
    (bad / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = run_cli(["search", "--data", str(bad), *TINY], capsys)
    assert code == 2 and "broken.jpg" in err


def test_existing_run_is_never_overwritten(finished_run, capsys):
    before = _snapshot(finished_run)
    code, _, err = run_cli(["search", "--out", str(finished_run), *TINY], capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["search", "--resume", str(finished_run), "--set", "epochs=3"], capsys)
    assert code == 2 and "drop" in err
    assert _snapshot(finished_run) == before


def test_resume_on_a_corrupt_checkpoint(finished_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((finished_run / "config.yaml").read_bytes())
    (broken / "checkpoint.pt").write_bytes(b"garbage")
    code, _, err = run_cli(["search", "--resume", str(broken)], capsys)
    assert code == 2 and "not a valid search checkpoint" in err
    assert (broken / "checkpoint.pt").read_bytes() == b"garbage"


def test_malformed_genotype_file(tmp_path):
    from noisydarts.errors import UserError
    from noisydarts.models import resolve_genotype as load_genotype

    p = tmp_path / "genotype.json"
    p.write_text(json.dumps({"normal": [["sep_conv_3x3", 7]] * 8, "normal_concat": [2], "reduce": [], "reduce_concat": []}))
    with pytest.raises(UserError, match="takes input 7"):
        load_genotype(p)


def test_debug_shows_the_traceback_and_module_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    r = subprocess.run([sys.executable, "-m", "noisydarts", "search", "--preset", "nope"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = subprocess.run([sys.executable, "-m", "noisydarts", "search", "--preset", "nope", "--debug"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "UserError" in r.stderr


def test_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--bogus"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1


#: The NB201 preset whose method `noisydarts search --data DIR` runs when no preset is named:
#: the collapse benchmark's choice (docs/results/2026-12-07-collapse-benchmark.md).
CHOSEN_DEFAULT = "nb201-si-vdnas"


def test_search_on_your_own_data_starts_from_the_benchmarks_choice(tmp_path, capsys):
    import yaml

    from noisydarts.config import load_preset
    from noisydarts.search import resolve_config

    own, chosen = load_preset("own-data"), load_preset(CHOSEN_DEFAULT)
    assert {k: v for k, v in own.items() if k != "description"} == {k: v for k, v in chosen.items() if k != "description"}
    folder = tmp_path / "pets"
    (folder / "cat").mkdir(parents=True)
    code, out, _ = run_cli(["search", "--data", str(folder), "--print-config"], capsys)
    assert code == 0 and yaml.safe_load(out) == resolve_config("own-data", overrides=[f"data.name={folder}"])
    # the embedded demo data keeps the quick default, and a named preset always wins
    code, out, _ = run_cli(["search", "--print-config"], capsys)
    assert code == 0 and yaml.safe_load(out) == resolve_config("nb201-quick")
    code, out, _ = run_cli(["search", "--data", str(folder), "--preset", "nb201-noisydarts", "--print-config"], capsys)
    assert yaml.safe_load(out)["noise"]["enabled"] is True
