"""A refused command leaves nothing that blocks the corrected one, for every command that makes a
directory (compare, search, train); compare names the method a refusal is about, refuses a run
changed on disk, and finds a missing dataset once, before any run starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from noisydarts.cli import main
from noisydarts.compare import compare
from noisydarts.errors import UserError

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["epochs=1", "data.limit=32", "batch_size=16", "plots=false", "space.channels=4", "device=cpu"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("noisydarts: error: ") and err.count("\n") == 1, err
    return err


def test_compare_refused_then_corrected_then_changed_on_disk(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", SRC)
    out = tmp_path / "c"
    # A bad seed is refused before anything is written: the corrected command is not blocked.
    assert main(["compare", "nb201-quick", "--seeds", "-1", *sum((["--set", o] for o in TINY), []), "--out", str(out)]) == 2
    assert "seed" in one_line_error(capsys) and not out.exists()
    # A key one method lacks: the refusal names the method.
    with pytest.raises(UserError, match=r"^method quick: .*unknown config key 'space.cells_per_stage'"):
        compare(["nb201-quick", "quick"], [0], [*TINY, "space.cells_per_stage=1"], out=out, progress=False)
    # A dataset that is not there: one line, once, before any run.
    with pytest.raises(UserError, match="does not exist") as missing:
        compare(["nb201-quick"], [0, 1], [*TINY, f"data.name={tmp_path / 'nowhere'}"], out=out, progress=False)
    assert "\n" not in str(missing.value) and not out.exists()
    # The corrected command runs.
    result = compare(["nb201-quick"], [0], TINY, out=out, jobs=1, threads=1, progress=False)
    assert result.complete and [r.status for r in result.runs] == ["finished"]
    # Its run, changed on disk, is refused rather than mixed into the summary.
    cfg_path = out / "nb201-quick-s0" / "config.yaml"
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("epochs: 1\n", "epochs: 3\n", 1))
    with pytest.raises(UserError, match=r"config.yaml was changed since the comparison started it \(epochs: 3 there, "
                                        r"1 planned\)"):
        compare(["nb201-quick"], [0], TINY, out=out, progress=False)
    cfg_path.write_text(text)  # restored: the comparison is whole again
    assert compare(["nb201-quick"], [0], TINY, out=out, progress=False).complete


def broken_folder(root: Path) -> Path:
    for cls in ("cat", "dog"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (12, 12), (40 * i, 100, 20 if cls == "cat" else 200)).save(root / "train" / cls / f"{i}.png")
    (root / "train" / "cat" / "broken.jpg").write_bytes(os.urandom(64))
    return root


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_run_refused_by_a_broken_image_can_be_run_again_once_it_is_fixed(command, tmp_path, capsys):
    """The image is found only when decoded (streamed, imagenet augmentation), after the run
    directory exists: it is left holding no checkpoint, so the same command runs once fixed."""
    data = broken_folder(tmp_path / "data")
    out = tmp_path / "r"
    sets = ["data.in_memory=false", "data.workers=0", "data.augment=imagenet", "data.resolution=8", "batch_size=4",
            "epochs=1", "plots=false", "device=cpu"]
    if command == "search":
        argv = ["search", "--preset", "nb201-quick", "--data", str(data), "--set", "data.limit=null", "--set", "space.channels=4"]
    else:
        argv = ["train", "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|", "--data",
                str(data), "--set", "network.channels=4", "--set", "network.cells_per_stage=1"]
    argv = [*argv, *sum((["--set", s] for s in sets), []), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    assert "broken.jpg" in one_line_error(capsys)
    assert not (out / "checkpoint.pt").exists()
    assert main([command, "--resume", str(out)]) == 2
    assert "start it again with the same command" in one_line_error(capsys)
    (data / "train" / "cat" / "broken.jpg").unlink()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(data / "train" / "cat" / "fixed.png")
    assert main(argv) == 0, capsys.readouterr().err
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("arch", ["", "   "])
def test_an_empty_architecture_is_its_own_error_not_the_working_directory(arch, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["nb201", "lookup", arch], ["info", arch]):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert ("is empty" in err or "is blank" in err) and "genotype.json" in err and ". has no" not in err
