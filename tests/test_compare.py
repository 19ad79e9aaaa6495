"""noisydarts compare: the plan, parallel runs in their own processes, resuming a comparison as a
whole (interrupted on purpose and killed), failed runs, and the summary's numbers."""

import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SEARCH
from noisydarts import cli
from noisydarts.compare import child_env, final_metrics, method_stats, plan_methods, plan_workers, Run, summary_table, CompareResult
from noisydarts.errors import UserError
from noisydarts.search import search

SRC = str(Path(__file__).parents[1] / "src")


def tiny_file(path: Path, **changes) -> Path:
    cfg = copy.deepcopy(TINY_SEARCH)
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def broken_data(path: Path) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(path / split / cls / "x.png")
    (path / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    return path


# --- the plan (no runs) ----------------------------------------------------------------------------

def test_method_names_sources_and_bad_methods(tmp_path):
    a = tiny_file(tmp_path / "one" / "darts.yaml")
    b = tiny_file(tmp_path / "two" / "darts.yaml", noise__enabled=False)
    methods = plan_methods(["quick", str(a), str(b)], ["epochs=3"])
    assert [m.name for m in methods] == ["quick", "darts", "darts-2"]
    assert methods[1].source == str(a.resolve()) and methods[2].config["noise"]["enabled"] is False
    assert all(m.config["epochs"] == 3 for m in methods)
    with pytest.raises(UserError, match="neither a preset"):
        plan_methods(["nope"], [])
    with pytest.raises(UserError, match="listed twice"):
        plan_methods(["quick", "quick"], [])
    with pytest.raises(UserError, match="conflicts with --seeds"):
        plan_methods(["quick"], ["seed=3"])
    with pytest.raises(UserError, match="unknown config key"):
        plan_methods(["quick"], ["epoch=3"])


def test_a_method_given_as_a_name_and_a_config_dict():
    variant = copy.deepcopy(TINY_SEARCH) | {"warmup_epochs": 1}
    methods = plan_methods(["quick", ("pc 1/3", variant), ("quick", TINY_SEARCH)], ["epochs=3"])
    assert [m.name for m in methods] == ["quick", "pc_1_3", "quick-2"]
    assert methods[1].source == "python:pc 1/3"
    assert (methods[1].config["warmup_epochs"], methods[1].config["epochs"]) == (1, 3)
    assert methods[2].config["warmup_epochs"] == 0
    with pytest.raises(UserError, match="listed twice"):
        plan_methods([("a", TINY_SEARCH), ("a", variant)], [])
    with pytest.raises(UserError, match=r"\(name, config dict\) pair"):
        plan_methods([("a", "quick")], [])
    with pytest.raises(UserError, match=r"warmup_epochs \(1\) must be below epochs \(1\)"):
        plan_methods([("a", variant)], ["epochs=1"])


def test_workers_per_core_and_per_gpu():
    assert plan_workers(6, None, 2, []) == (2, 1, [None, None])        # a process per core
    assert plan_workers(4, None, 16, []) == (4, 4, [None] * 4)          # fewer runs than cores: more threads each
    assert plan_workers(6, 3, 16, []) == (3, 5, [None] * 3)
    assert plan_workers(6, None, 16, ["0", "1"]) == (2, 8, ["0", "1"])  # a process per GPU
    assert plan_workers(6, 3, 16, ["4", "7"]) == (3, 5, ["4", "7", "4"])  # more jobs than GPUs: shared round robin
    env = child_env(3, "7")
    assert env["CUDA_VISIBLE_DEVICES"] == "7" and env["OMP_NUM_THREADS"] == "3"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(SRC).resolve())
    assert "CUDA_VISIBLE_DEVICES" not in child_env(1, None) or os.environ.get("CUDA_VISIBLE_DEVICES")


def test_final_metrics_and_statistics():
    records = [{"epoch": 1, "val_acc": 10.0, "epoch_time": 2.0, "lr": 0.1, "nb201_index": 5, "hessian_eig": 0.5,
                "hessian_time": 0.5, "hessian_products": 7, "alpha": {}, "genotype": "g"},
               {"epoch": 2, "val_acc": 20.0, "epoch_time": 3.0, "skip_count": 2, "cifar10_test": 90.0}]
    m = final_metrics(records)
    assert m == {"val_acc": 20.0, "hessian_eig": 0.5, "skip_count": 2, "cifar10_test": 90.0, "epochs": 2,
                 "search_time": 5.5}
    runs = [Run("m", s, Path(f"m-s{s}"), {}, status="finished", metrics={"cifar10_test": v, "epochs": 2})
            for s, v in enumerate([90.0, 92.0, 94.0])]
    runs.append(Run("m", 3, Path("m-s3"), {}, status="failed", metrics={"cifar10_test": 10.0}))
    stats = method_stats(runs)["cifar10_test"]
    assert stats == {"n": 3, "mean": 92.0, "std": pytest.approx(2.0), "min": 90.0, "max": 94.0}  # sample std
    result = CompareResult(Path("."), ["m"], runs, {"m": method_stats(runs)})
    header, rows = summary_table(result)
    assert rows[0] == ["runs done", "3/4"]
    assert ["NB201 CIFAR-10 test (%)", "92.00 \u00b1 2.00"] in rows
    one = method_stats(runs[:1])["cifar10_test"]
    assert one["std"] is None


# --- runs ------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie is dead


def _pid(log: Path) -> int:
    return int(re.findall(r"^pid (\d+)$", log.read_text(), re.M)[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_parallel_runs_killed_failed_and_continued_as_a_whole(tmp_path, capsys):
    noisy = tiny_file(tmp_path / "cfg" / "noisy.yaml", epochs=4)
    plain = tiny_file(tmp_path / "cfg" / "plain.yaml", epochs=4, noise__enabled=False)
    bad = tiny_file(tmp_path / "cfg" / "bad.yaml", data__name=str(broken_data(tmp_path / "broken")))
    out = tmp_path / "cmp"
    args = [str(noisy), str(plain), str(bad), "--seeds", "0", "--jobs", "3", "--threads", "1", "--out", str(out)]

    # 1. three runs at once, in their own processes; kill -9 the comparison (alone, not its process group)
    parent = subprocess.Popen([sys.executable, "-m", "noisydarts", "compare", *args, "--no-progress"],
                              env=dict(os.environ, PYTHONPATH=SRC), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, checkpoint = out / "noisy-s0" / "metrics.jsonl", out / "noisy-s0" / "checkpoint.pt"
    deadline = time.time() + 180
    while time.time() < deadline and not checkpoint.is_file():  # an epoch done
        time.sleep(0.05)
    children = [_pid(out / "logs" / f"{m}-s0.log") for m in ("noisy", "plain")]
    assert all(map(_alive, children))  # both runs at the same time
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while any(map(_alive, children)) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, children))  # the runs died with it: nothing keeps writing into the comparison
    assert not (out / "noisy-s0" / "genotype.json").exists()

    # 2. the same command again continues it; the failed run is reported, the others finish; exit code 1
    assert cli.main(["compare", *args]) == 1
    printed = capsys.readouterr().out
    # (3 of 3, or 2 of 3 when the plain run ended its 4 epochs just before the kill)
    assert re.search(r"[23] of 3 runs to do", printed) and "noisy-s0: resumed" in printed and "FAILED bad-s0" in printed
    assert "runs done" in printed and "search-val acc (%)" in printed
    summary = json.loads((out / "summary.json").read_text())
    status = {r["run_dir"]: r["status"] for r in summary["runs"]}
    assert status == {"noisy-s0": "finished", "plain-s0": "finished", "bad-s0": "failed"}
    failed = summary["runs"][2]["message"]
    assert "exit code 2" in failed and "broken.jpg" in failed
    log = (out / "logs" / "noisy-s0.log").read_text()
    assert "start (threads 1)" in log and "resume (threads 1)" in log
    # resumed exactly: the same alpha as one uninterrupted search of that config and seed
    from noisydarts import config as config_lib
    from noisydarts.search import resolve_config

    cfg = resolve_config(config_lib.DEFAULT_PRESET, noisy)  # as `search --config FILE` and compare resolve it
    straight = search(cfg, out=tmp_path / "straight", progress=False)
    resumed = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["alpha"] for r in resumed] == straight.alpha_history
    assert summary["runs"][0]["genotype"] == str(straight.genotype)

    # the summary: csv/json/md/html, overlay plots inlined
    names = {p.name for p in out.iterdir()}
    assert {"summary.md", "summary.csv", "runs.csv", "summary.json", "report.html", "compare.json", "plots"} <= names
    rows = list(csv.DictReader((out / "summary.csv").open()))
    val = {r["method"]: r for r in rows if r["metric"] == "val_acc"}
    assert set(val) == {"noisy", "plain"} and val["noisy"]["n"] == "1" and val["noisy"]["std"] == ""
    assert float(val["noisy"]["mean"]) == pytest.approx(resumed[-1]["val_acc"])
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "min-max over seeds" in page and "broken.jpg" in page
    assert "http" not in page and "<script" not in page
    assert "| noisy | plain | bad |" in (out / "summary.md").read_text()

    # 3. another plan in the same directory is refused in one line, before anything runs
    for other in (["--seeds", "0", "1"], ["--seeds", "0", "--set", "epochs=3"]):
        code = cli.main(["compare", str(noisy), str(plain), str(bad), *other, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "holds a comparison with" in err and len(err.strip().splitlines()) == 1
    code = cli.main(["compare", str(noisy), "--seeds", "0", "--out", str(out / "noisy-s0")])
    assert code == 2 and "not a comparison directory" in capsys.readouterr().err


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    from noisydarts.compare import _clear_unstarted, run_state

    run = tmp_path / "m-s0"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 1\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # logged, but killed before the checkpoint
    (run / ".checkpoint.pt.x.tmp").write_bytes(b"half")
    (run / ".lock").write_text("")  # a run lock left behind: not ours to remove
    assert run_state(run) == "empty"
    assert _clear_unstarted(run) is None and [p.name for p in run.iterdir()] == [".lock"]
    (run / ".lock").unlink()
    (run / "mine.txt").write_text("not a run's")
    assert "mine.txt" in _clear_unstarted(run) and (run / "mine.txt").is_file()  # never deleted
    (run / "mine.txt").unlink()
    (run / "checkpoint.pt").write_bytes(b"")
    assert run_state(run) == "interrupted"
    (run / "genotype.json").write_text(json.dumps({"text": "g", "stopped": {"rule": "dartsplus"}}))
    assert run_state(run) == "stopped"
