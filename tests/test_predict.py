"""From a folder of images to predictions: the printed commands chain (search -> train -> export
-> predict), runs and exports record class names and preprocessing, and every way of loading the
trained network (run, model.ts, model.onnx, load_model) gives the same answer."""

from __future__ import annotations

import json
import shlex
import sys

import pytest
import torch
from PIL import Image

from noisydarts.cli import main
from noisydarts.errors import UserError

CLASSES = ("blue", "green", "red")  # sorted folder names: the label order
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 200, 30)}
TINY_SEARCH = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "data.limit=null", "--set", "plots=false",
               "--set", "data.resolution=16"]
TINY_TRAIN = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "network.channels=8",
              "--set", "network.cells_per_stage=1", "--set", "plots=false", "--no-progress"]


def make_folder(root, per_class=12, size=(20, 14), splits=("",)):
    """``root/<class>/*.png``: no train/ or test/ (the held-out split comes from data.val_split)."""
    gen = torch.Generator().manual_seed(0)
    for split in splits:
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                jitter = torch.randint(-25, 26, (3,), generator=gen).tolist()
                colour = tuple(max(0, min(255, c + j)) for c, j in zip(COLOURS[name], jitter))
                Image.new("RGB", (size[0] + i % 3, size[1]), colour).save(root / split / name / f"{i}.png")
    return root


def run_cli(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def next_commands(text: str) -> list[list[str]]:
    """The commands of the ``next:`` line a command printed, as argv lists (without ``noisydarts``)."""
    line = next(line for line in text.splitlines() if line.startswith("next: "))
    return [shlex.split(part)[1:] for part in line[len("next: "):].split("   |   ")]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """search -> train -> export (TorchScript, ONNX) on a class-folder tree, each step run as the
    previous one printed it (plus tiny sizes); the run directories are relative to the cwd."""
    import os

    root = tmp_path_factory.mktemp("chain")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        make_folder(root / "pets")
        outputs = {}

        def cli(argv):
            import contextlib
            import io

            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                code = main(argv)
            assert code == 0, argv
            return buffer.getvalue()

        outputs["search"] = cli(["search", "--preset", "nb201-quick", "--data", "pets", "--out", "s", *TINY_SEARCH])
        # The start line is followed by what data the search found.
        lines = outputs["search"].splitlines()
        assert lines[0].startswith("search: starting") and lines[1] == (
            f"data {root / 'pets'} (class folders): 3 classes, 32 train images (4 held out: data.val_split 0.1, "
            "split seed 0); 16 px; 32 of 32 decoded images not square, squashed to 16 x 16 (data.resize=crop keeps "
            "the aspect ratio)")
        train_cmd = next_commands(outputs["search"])[0]
        assert train_cmd == ["train", "s"]  # as printed: no --data needed
        outputs["train"] = cli([*train_cmd, "--out", "t", *TINY_TRAIN])
        commands = next_commands(outputs["train"])
        assert [c[0] for c in commands] == ["predict", "export", "evaluate"]
        outputs["export_ts"] = cli(commands[1])
        if _has("onnxscript") and _has("onnx"):
            outputs["export_onnx"] = cli([*commands[1], "--format", "onnx", "--out", "exports/"])
        yield root, outputs
    finally:
        os.chdir(cwd)


def test_the_printed_commands_chain_to_the_same_prediction_everywhere(chain, capsys, monkeypatch):
    root, outputs = chain
    monkeypatch.chdir(root)
    images = [str(p.relative_to(root)) for p in sorted((root / "pets").rglob("1*.png"))]  # a few of every class
    assert (root / "t" / "model.ts").is_file()
    predict_cmd = next_commands(outputs["export_ts"])[0]
    assert predict_cmd[:2] == ["predict", "t/model.ts"]
    results = {}
    sources = ["t", "t/weights.pt", "t/model.ts"]
    if (root / "exports" / "model.onnx").is_file() and _has("onnxruntime"):
        sources.append("exports/model.onnx")
    for source in sources:
        results[source] = json.loads(run_cli(capsys, ["predict", source, *images, "--json", "--top", "2"]))
    reference = results["t"]
    assert [r["image"] for r in reference] == images
    for r in reference:
        assert {t["class"] for t in r["top"]} <= set(CLASSES) and len(r["top"]) == 2
        assert r["top"][0]["prob"] >= r["top"][1]["prob"]
    for source, got in results.items():
        assert [r["top"][0]["class"] for r in got] == [r["top"][0]["class"] for r in reference], source
        for a, b in zip(got, reference):
            assert a["top"][0]["prob"] == pytest.approx(b["top"][0]["prob"], abs=1e-4), source


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_runs_and_exports_record_classes_and_preprocessing(chain):
    root, _ = chain
    from noisydarts.runtime.runs import load_torch_file

    search_record = json.loads((root / "s" / "data.json").read_text())
    assert search_record["classes"] == list(CLASSES) and search_record["name"] == str(root / "pets")
    payload = load_torch_file(root / "t" / "weights.pt", "weights")
    assert payload["classes"] == list(CLASSES)
    pre = payload["preprocessing"]
    assert pre["input_size"] == [3, 16, 16] and pre["crop_mode"] == "squash"  # the search's 16 px carried on
    assert len(pre["mean"]) == len(pre["std"]) == 3 and all(0 < s < 1 for s in pre["std"])
    extra = {"noisydarts.json": ""}
    torch.jit.load(str(root / "t" / "model.ts"), _extra_files=extra)
    meta = json.loads(extra["noisydarts.json"])
    assert meta["classes"] == list(CLASSES) and meta["data_config"] == pre and meta["space"] == "nb201"
    if _has("onnx") and (root / "exports" / "model.onnx").is_file():
        import onnx

        proto = onnx.load(str(root / "exports" / "model.onnx"))
        onnx.checker.check_model(proto)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["noisydarts"])["classes"] == list(CLASSES)
        assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["logits"]
        assert sorted(p.name for p in (root / "exports").iterdir()) == ["model.onnx"]  # no model.onnx.data
        if _has("onnxruntime"):  # a dynamic batch, the same logits as the network in PyTorch
            import onnxruntime as ort

            import noisydarts

            session, net = ort.InferenceSession(str(root / "exports" / "model.onnx")), noisydarts.load_model(root / "t")
            for batch in (1, 3):
                x = torch.randn(batch, 3, 16, 16)
                with torch.no_grad():
                    expected = net(x)
                torch.testing.assert_close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), expected,
                                           rtol=1e-4, atol=1e-4)


def test_predict_preprocesses_as_training_tested(chain):
    """The float batch predict makes from the held-out image files equals the test batch
    training made of them (the same decoder, resize, statistics)."""
    root, _ = chain
    import noisydarts
    from noisydarts.data import make_batches, open_dataset
    from noisydarts.data.folder import folder_split
    from noisydarts.train.api import load_trained

    net = noisydarts.load_model(root / "t")
    _, payload = load_trained(root / "t")
    data = payload["data_config"]
    held_out = folder_split(data["name"], "test", data["val_split"], data["split_seed"])
    assert held_out.layout.kind == "class folders" and len(held_out.rows) == 4  # 10 % of 36, stratified
    test_set = open_dataset(data, "test")
    batch, labels = next(iter(make_batches(test_set, torch.arange(len(test_set)), len(test_set), seed=0, train=False,
                                           data=data).epoch(0)))
    mine = torch.stack([noisydarts.transform(net.data_config)(f) for f in held_out.split_files])
    torch.testing.assert_close(mine, batch)
    assert labels.tolist() == held_out.split_labels
    assert net.classes == list(CLASSES) and not net.training


def test_info_sizes_the_trained_network_and_create_model_refuses_a_training_run(chain, capsys):
    root, _ = chain
    import noisydarts

    sizes = noisydarts.info(root / "t")
    trained = noisydarts.load_model(root / "t")
    params = sum(p.numel() for n, p in trained.named_parameters() if "auxiliary" not in n) / 1e6
    assert sizes["params_m"] == pytest.approx(params, abs=1e-4)
    assert sizes["trained"]["num_classes"] == 3 and sizes["trained"]["resolution"] == 16
    assert sizes["params_m"] != noisydarts.info(root / "t" / "genotype.json")["params_m"]  # not the default network
    with pytest.raises(UserError, match="load_model"):
        noisydarts.create_model(root / "t")
    out = run_cli(capsys, ["info", str(root / "t")])
    assert "the trained network" in out and "3 classes, 16 px" in out


def test_evaluate_has_no_top5_with_three_classes(chain, capsys):
    root, _ = chain
    import noisydarts

    result = noisydarts.evaluate(root / "t")
    assert result["top5"] is None and 0 <= result["top1"] <= 100
    assert "top-5 n/a" in run_cli(capsys, ["evaluate", str(root / "t")])


def test_export_out_with_a_slash_is_a_directory(train_run, tmp_path, capsys):
    out = run_cli(capsys, ["export", str(train_run), "--out", f"{tmp_path}/new/"])
    assert (tmp_path / "new" / "model.ts").is_file() and "model.ts" in out
    assert main(["export", str(train_run), "--out", f"{tmp_path}/new/"]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_predict_refuses_bad_input_in_one_line(train_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "not.ts").write_bytes(b"PK\x03\x04 not a zip")
    for argv, words in ((["predict", str(train_run), str(tmp_path / "missing.png")], "not found"),
                        (["predict", str(train_run), str(tmp_path / "empty")], "holds no images"),
                        (["predict", str(tmp_path / "nothing"), str(tmp_path)], "not found"),
                        (["predict", str(train_run), str(tmp_path), "--top", "0"], "at least 1")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_a_damaged_export_record_is_refused(train_run, tmp_path):
    from noisydarts.models.export import torchscript_bytes
    from noisydarts.train.api import load_trained
    from noisydarts.train.predict import load_predictor

    model, _ = load_trained(train_run)
    path = tmp_path / "model.ts"
    path.write_bytes(torchscript_bytes(model, torch.randn(2, 3, 32, 32), {"classes": ["a"], "data_config": {}}))
    with pytest.raises(UserError, match="damaged preprocessing"):
        load_predictor(path)
    path.write_bytes(torchscript_bytes(model, torch.randn(2, 3, 32, 32)))
    with pytest.raises(UserError, match="records no class names"):
        load_predictor(path)


def test_training_carries_the_search_data_and_checks_its_classes(chain, tmp_path, capsys):
    root, _ = chain
    from noisydarts.train.api import training_config

    cfg = training_config(root / "s")
    assert cfg["data"]["name"] == str(root / "pets") and cfg["data"]["resolution"] == 16
    assert training_config(root / "s", overrides=["data.resolution=24"])["data"]["resolution"] == 24
    printed = run_cli(capsys, ["train", str(root / "s"), "--print-config"])
    assert f"name: {root / 'pets'}" in printed
    # The search's folder changed since: named, not trained on silently.
    import shutil

    record = json.loads((root / "s" / "data.json").read_text())
    run = tmp_path / "s"
    shutil.copytree(root / "s", run)
    record["classes"] = ["blue", "cyan", "red"]
    (run / "data.json").write_text(json.dumps(record))
    assert main(["train", str(run), "--out", str(tmp_path / "t"), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert "gone: cyan" in err and "new: green" in err and not (tmp_path / "t").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
