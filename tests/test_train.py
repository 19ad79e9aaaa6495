"""Training a found architecture: loss goes down, exact resume, evaluate, export, bad inputs."""


import pytest
import torch

from noisydarts.cli import main
from noisydarts.errors import UserError
from noisydarts.train import evaluate, export, load_trained, resolve_config, train

# Augmentation off on 32 images: the loss must go down within 2 epochs (drop-path and the
# auxiliary head stay on, as in the protocol).
TINY = {"epochs": 2, "batch_size": 16, "network": {"channels": 8, "layers": 3}, "lr": 0.01, "device": "cpu",
        "data": {"name": "cifar10-mini", "limit": 32, "resolution": 32, "cutout": 0, "crop_padding": 0, "flip": False}}
TINY["plots"] = False  # the curves and report are tested in tests/test_train_curves.py


def _weights(run_dir, name="weights.pt"):
    return torch.load(run_dir / name, weights_only=False)["model"]


def _strip_time(metrics):
    return [{k: v for k, v in m.items() if k != "epoch_time"} for m in metrics]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "full"
    return train("noisydarts_a", resolve_config(TINY), out=out, progress=False)


def test_defaults_are_the_darts_protocol():
    cfg = resolve_config()
    w = cfg["weights"]
    assert (cfg["epochs"], cfg["batch_size"], w["lr"], w["weight_decay"], w["grad_clip"]) == (600, 96, 0.025, 3e-4, 5.0)
    assert (cfg["auxiliary_weight"], cfg["drop_path_prob"], cfg["data"]["cutout"]) == (0.4, 0.2, 16)
    assert cfg["network"] == {"channels": 36, "layers": 20, "auxiliary": True} and cfg["selection"] == "none"
    im = resolve_config({"family": "imagenet"})
    assert (im["epochs"], im["label_smoothing"], im["weights"]["lr"], im["weights"]["lr_schedule"],
            im["weights"]["weight_decay"]) == \
        (250, 0.1, 0.5, "linear", 3e-5)
    assert im["network"] == {"channels": 48, "layers": 14, "auxiliary": True}
    with pytest.raises(UserError, match="unknown config key 'lr_max'"):
        resolve_config(overrides=["lr_max=1"])


def test_training_lowers_the_loss_and_writes_the_run(full_run):
    m = full_run.metrics
    assert [r["epoch"] for r in m] == [1, 2]
    assert m[1]["train_loss"] < m[0]["train_loss"]
    assert m[0]["lr"] == 0.01 and m[1]["lr"] == pytest.approx(0.005)  # cosine over 2 epochs
    for name in ("config.yaml", "genotype.json", "metrics.jsonl", "checkpoint.pt", "weights.pt"):
        assert (full_run.run_dir / name).is_file()
    assert not (full_run.run_dir / "best.pt").exists()  # no selection asked for: the final weights are the result
    assert full_run.test_acc == m[-1]["test_acc"] and full_run.best_acc is None


@pytest.mark.parametrize("selection", ["holdout", "test"])
def test_best_weights_are_selected_on_the_split_asked_for(tmp_path, selection):
    cfg = {**TINY, "epochs": 3, "selection": selection, "data": {**TINY["data"], "limit": 48, "holdout": 16}}
    result = train("noisydarts_a", cfg, out=tmp_path / selection, progress=False)
    key = {"holdout": "holdout_acc", "test": "test_acc"}[selection]
    accs = [r[key] for r in result.metrics]
    assert all("holdout_acc" in r for r in result.metrics)  # a holdout is evaluated whenever there is one
    best = max(range(3), key=lambda i: (accs[i], -i))  # the first epoch with the best accuracy
    payload = torch.load(result.run_dir / "best.pt", weights_only=False)
    assert payload["selected_on"] == selection and result.best_acc == accs[best] and result.selected_on == selection
    with pytest.raises(UserError, match="data.holdout >= 1"):
        resolve_config({"selection": "holdout"})
    with pytest.raises(UserError, match="leaves no training images"):
        train("noisydarts_a", {**TINY, "data": {**TINY["data"], "holdout": 32}}, out=tmp_path / "all-held-out", progress=False)


def test_resume_is_exact(full_run, tmp_path):
    out = tmp_path / "split"
    first = train("noisydarts_a", resolve_config(TINY), out=out, progress=False, stop_after=1)
    assert not (out / "weights.pt").exists() and len(first.metrics) == 1
    resumed = train(None, resume=out, progress=False)
    assert _strip_time(resumed.metrics) == _strip_time(full_run.metrics)
    a, b = _weights(full_run.run_dir), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_matches_direct_computation(full_run):
    from noisydarts.data import load_dataset, normalize

    r = evaluate(full_run.run_dir)
    model, _ = load_trained(full_run.run_dir)
    test = load_dataset("cifar10-mini", "test", 32)
    with torch.no_grad():
        logits = torch.cat([model(normalize(test.images[i:i + 250], test.mean, test.std)) for i in range(0, len(test), 250)])
    assert r["images"] == len(test)
    assert r["top1"] == pytest.approx(100.0 * (logits.argmax(1) == test.labels).float().mean().item())
    assert r["top5"] >= r["top1"]


def test_torchscript_export_matches_eager(full_run, tmp_path):
    path = export(full_run.run_dir, "torchscript", tmp_path / "net.ts")
    scripted = torch.jit.load(str(path))
    model, _ = load_trained(full_run.run_dir)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="already exists"):
        export(full_run.run_dir, "torchscript", path)


def test_onnx_needs_the_package(full_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(UserError, match="pip install"):
        export(full_run.run_dir, "onnx", tmp_path / "net.onnx")


def test_bad_weights(full_run, tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_trained(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="no weights.pt"):
        load_trained(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a valid noisydarts weights file"):
        load_trained(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="classify 10 classes but the data has 100"):
        load_trained(full_run.run_dir, num_classes=100)
    payload = torch.load(full_run.run_dir / "weights.pt", weights_only=False)
    from noisydarts.models import zoo

    payload["genotype"] = zoo.get("darts_v2").to_dict()  # weights of another architecture
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(UserError, match="do not fit"):
        load_trained(tmp_path / "mismatch.pt")


def test_cli_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert main(["train", "Genotype(normal=[('conv_9x9', 0), ('skip_connect', 1)], normal_concat=[2], "
                 "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"]) == 2
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "unknown operation 'conv_9x9'" in err and "Traceback" not in err
