"""Methods x seeds in one command: ``noisydarts compare``.

``compare(["nb201-darts", "nb201-noisydarts"], seeds=[0, 1, 2], overrides=["epochs=20"], out="runs/cmp")``
runs every method (a preset name, a YAML config file or a ``(name, config dict)`` pair) with every seed, the overrides applied to
all, each in its own run directory ``OUT/<method>-s<seed>``, and ends with a summary over the
seeds: ``summary.md``, ``summary.csv`` (one row per method and metric), ``runs.csv`` (one row per
run), ``summary.json`` and a self-contained ``report.html`` with overlay figures
(:mod:`noisydarts.viz.overlay`: a line per method, the mean over its seeds, and a min-max band).

* **Parallel**: each run is its own process (``python -c`` calling :func:`noisydarts.search`),
  at most ``jobs`` at a time. On CPU each gets ``cores // jobs`` torch threads; by default
  ``jobs`` = as many runs as there are cores. With CUDA (device ``auto``/``cuda``) the default is
  one process per visible GPU, each pinned to its GPU with ``CUDA_VISIBLE_DEVICES``; a larger
  ``jobs`` shares the GPUs round robin. A run's output goes to ``OUT/logs/<run>.log``.
* **Resumable as a whole**: ``OUT/compare.json`` records the plan (methods with their resolved
  configs, seeds, overrides). The same command again skips finished runs, resumes interrupted
  ones from their checkpoint, restarts runs that never finished an epoch and starts the missing
  ones; a different plan in the same ``OUT`` is refused. A child process dies with the comparison
  (``PR_SET_PDEATHSIG`` on Linux), so a killed comparison leaves no run behind still writing.
* **A failed run** (an error, a crash) is reported in the summary and the others go on; the
  command then exits with code 1, and the same command again retries it.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config as config_lib
from .errors import UserError
from .runtime.runs import atomic_write_text

PLAN_FILE = "compare.json"
PLAN_VERSION = 1
#: Per-epoch keys that are not results (bookkeeping) and stay out of the summary.
NOT_RESULTS = {"epoch", "lr", "nb201_index", "epoch_time", "hessian_time", "hessian_products"}
#: Summary rows in this order, then any other numeric key; labels for the tables.
METRIC_LABELS = {
    "val_acc": "search-val acc (%)", "val_loss": "search-val loss", "train_acc": "train acc (%)",
    "train_loss": "train loss", "cifar10_test": "NB201 CIFAR-10 test (%)", "cifar100_test": "NB201 CIFAR-100 test (%)",
    "imagenet16_test": "NB201 ImageNet16-120 test (%)", "skip_normal": "skips, normal cell",
    "skip_reduce": "skips, reduction cell", "skip_count": "skips, NB201 cell", "hessian_eig": "Hessian eigenvalue",
    "epochs": "epochs", "search_time": "search time (s)",
}
WORKER = "import sys; from noisydarts.compare import _worker_main; sys.exit(_worker_main(sys.argv[1]))"


# --- the plan ------------------------------------------------------------------------------------

@dataclass
class Method:
    name: str       # the preset name or the config file's stem, made unique
    source: str     # the preset name, or the config file's absolute path
    config: dict    # resolved, with the overrides (each run then sets its seed)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"


def plan_methods(specs: list, overrides: list[str]) -> list[Method]:
    """Resolve each preset, config file or (name, config dict) pair with the overrides (a bad one
    is a UserError before anything runs) and name it; names are made unique with -2, -3, ..."""
    from .search import resolve_config

    if not specs:
        raise UserError("name at least one method: a preset (see `noisydarts presets`) or a YAML config file")
    if any(o.partition("=")[0].strip() == "seed" for o in overrides):
        raise UserError("--set seed=... conflicts with --seeds: give the seeds with --seeds")
    methods, names, sources = [], set(), set()
    for spec in specs:
        if isinstance(spec, tuple):  # (name, config mapping): a variant built in Python
            if len(spec) != 2 or not isinstance(spec[0], str) or not isinstance(spec[1], dict):
                raise UserError(f"a method given in Python is a (name, config dict) pair, got {spec!r:.80}")
            source, name = f"python:{spec[0]}", _safe(spec[0])
            cfg = _resolve_method(spec[0], lambda: resolve_config(config_lib.DEFAULT_PRESET, spec[1], overrides))
        elif spec in config_lib.preset_names():
            source, name, cfg = spec, spec, _resolve_method(spec, lambda: resolve_config(spec, None, overrides))
        elif Path(spec).is_file():
            source, name = str(Path(spec).resolve()), _safe(Path(spec).stem)
            # over the default preset, as `noisydarts search --config FILE` resolves it
            cfg = _resolve_method(spec, lambda: resolve_config(config_lib.DEFAULT_PRESET, spec, overrides))
        else:
            raise UserError(f"{spec!r} is neither a preset ({', '.join(config_lib.preset_names())}) nor a config file")
        if source in sources:
            raise UserError(f"{spec} is listed twice: name each method once")
        sources.add(source)
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}-{n}", n + 1
        names.add(unique)
        methods.append(Method(unique, source, cfg))
    return methods


def _resolve_method(name: str, resolve):
    """A method's resolved config; a refusal names the method (with several methods, which one
    lacks a key or refuses a value is the whole answer)."""
    try:
        return resolve()
    except UserError as e:
        raise UserError(f"method {name}: {e}") from e


def _plan(methods: list[Method], seeds: list[int], overrides: list[str]) -> dict:
    return {"version": PLAN_VERSION, "methods": [{"name": m.name, "source": m.source, "config": m.config} for m in methods],
            "seeds": seeds, "overrides": list(overrides)}


def _plan_difference(old: dict, new: dict) -> str | None:
    if old.get("version") != new["version"]:
        return "it was planned by another version of noisydarts"
    if [(m["name"], m["source"]) for m in old.get("methods", [])] != [(m["name"], m["source"]) for m in new["methods"]]:
        return "methods " + " ".join(m["name"] for m in old.get("methods", []))
    if old.get("seeds") != new["seeds"]:
        return f"seeds {' '.join(map(str, old.get('seeds', [])))}"
    if old.get("overrides") != new["overrides"]:
        return f"overrides {' '.join(old.get('overrides', [])) or '(none)'}"
    for a, b in zip(old["methods"], new["methods"]):
        if a.get("config") != b["config"]:
            return f"another config for {a['name']} (its file or a preset changed since)"
    return None


def _claim(out: Path, plan: dict, runs: list) -> None:
    """Make ``out`` this comparison's directory, or check that it already is (the same plan, and
    its runs on disk still the runs it planned); nothing is written unless every check passes."""
    _check_claim(out, plan)
    _check_runs_on_disk(runs)
    if not (out / PLAN_FILE).is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / PLAN_FILE, json.dumps(plan, indent=1) + "\n")


def _check_claim(out: Path, plan: dict) -> None:
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        try:
            old = json.loads(plan_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{plan_path} is damaged ({type(e).__name__}): give another --out") from e
        diff = _plan_difference(old, plan)
        if diff is not None:
            raise UserError(f"{out} holds a comparison with {diff}: rerun it with the same methods, --seeds and --set "
                            f"to continue it, or give another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not a comparison directory (no {PLAN_FILE}): give a new or empty one")


# --- what is checked before the comparison's directory is written ------------------------------

def _run_config(method: Method, seed: int) -> dict:
    from .search import resolve_config

    try:
        return resolve_config(config_file=method.config, overrides=[f"seed={seed}"])
    except UserError as e:
        raise UserError(f"--seeds {seed} (method {method.name}): {e}") from e


def check_data(data_sections) -> None:
    """Every dataset the runs read is there, checked once here rather than once per run: a missing
    folder or an unreadable layout is one line before any run starts. The CIFAR releases are read
    (downloaded, if need be) once here, so that the runs find them."""
    from .data import check_dataset

    seen = set()
    for data in data_sections:
        key = (str(data["name"]), str(data.get("root")))
        if key not in seen:
            seen.add(key)
            check_dataset(data)


def _check_runs_on_disk(runs: list) -> None:
    """A run already on disk must be the run this comparison plans: a config.yaml edited since
    (``epochs: 3`` where the plan says 2) is refused, not mixed into the summary. Runs with no
    checkpoint are started again anyway, so only those with one are compared."""
    from .search import resolve_config

    for run in runs:
        cfg_path = run.run_dir / "config.yaml"
        if not ((run.run_dir / "checkpoint.pt").is_file() and cfg_path.is_file()):
            continue
        try:
            on_disk = resolve_config(config_file=cfg_path)
        except UserError as e:
            raise UserError(f"{cfg_path} is not the config this comparison wrote ({e}): restore it, or delete "
                            f"{run.run_dir} to run it again") from e
        diff = _first_difference(on_disk, run.config)
        if diff is not None:
            key, here, planned = diff
            raise UserError(f"{cfg_path} was changed since the comparison started it ({key}: {here!r} there, "
                            f"{planned!r} planned): restore it, or delete {run.run_dir} to run it again")


def _first_difference(a, b, prefix: str = ""):
    """The first ``(dotted key, a's value, b's value)`` where two configs differ, else None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


# --- the runs ------------------------------------------------------------------------------------

@dataclass
class Run:
    method: str
    seed: int
    run_dir: Path
    config: dict
    status: str = "missing"   # missing | empty | interrupted | finished | stopped | failed
    message: str = ""
    seconds: float | None = None
    metrics: dict = field(default_factory=dict)
    genotype: str | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped")


def run_state(run_dir: Path) -> str:
    """What is on disk: missing, empty (started, no epoch checkpointed), interrupted, finished or stopped."""
    if not run_dir.exists():
        return "missing"
    genotype = run_dir / "genotype.json"
    if genotype.is_file():
        try:
            return "stopped" if json.loads(genotype.read_text()).get("stopped") else "finished"
        except (ValueError, UnicodeDecodeError, AttributeError):
            return "finished"
    if (run_dir / "checkpoint.pt").is_file():
        return "interrupted"
    return "empty"


def _clear_unstarted(run_dir: Path) -> str | None:
    """A run killed before its first checkpoint holds only its config (and maybe an uncheckpointed
    metrics line and its data record): remove those to start it again. Anything else there is not ours: say so."""
    for name in ("config.yaml", "metrics.jsonl", "data.json"):  # data.json: written just before the checkpoint
        (run_dir / name).unlink(missing_ok=True)
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink()
    plots = run_dir / "plots"
    if plots.is_dir() and not any(plots.iterdir()):
        plots.rmdir()
    # A run's lock file (".lock", held while a process writes the run) is left alone: if its holder
    # still runs, the new search refuses with its name; if not, the search takes it over.
    left = sorted(p.name for p in run_dir.iterdir() if p.name != ".lock")
    if left:
        return f"{run_dir} holds {', '.join(left)}, which no search run writes before its first epoch: move them away"
    return None


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def plan_workers(n_runs: int, jobs: int | None, cores: int, gpus: list[str]) -> tuple[int, int, list[str | None]]:
    """``(jobs, torch threads per run, device slots)``: on GPUs one process per GPU unless ``jobs``
    says otherwise (then the GPUs are shared round robin); on CPU as many processes as cores, or
    ``jobs``, each with ``cores // jobs`` threads."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if gpus:
        jobs = jobs or len(gpus)
        return jobs, max(1, cores // jobs), [gpus[i % len(gpus)] for i in range(jobs)]
    jobs = jobs or max(1, min(n_runs, cores))
    return jobs, max(1, cores // jobs), [None] * jobs


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def child_env(threads: int, gpu: str | None) -> dict:
    """The environment of a run's process: its torch threads, its GPU, and this noisydarts first
    on the path (so a run imports the same code as the comparison, installed or not)."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _uses_cuda(cfg: dict) -> bool:
    return cfg["device"] in ("auto", "cuda")


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _start(run: Run, resume: bool, threads: int, gpu: str | None, logs: Path, stop_after: int | None):
    task = {"run_dir": str(run.run_dir), "resume": resume, "config": None if resume else run.config,
            "threads": threads, "stop_after": stop_after, "parent": os.getpid()}
    log = open(logs / f"{run.name}.log", "a")
    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'} "
              f"(threads {threads}{'' if gpu is None else ', GPU ' + gpu})\n")
    log.flush()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(task)], stdout=log, stderr=subprocess.STDOUT,
                            env=child_env(threads, gpu), stdin=subprocess.DEVNULL)
    log.write(f"pid {proc.pid}\n")
    log.flush()
    return proc, log


def _execute(runs: list[Run], out: Path, jobs: int | None, threads: int | None, stop_after: int | None, say) -> None:
    """Run every unfinished run, ``jobs`` at a time; set each run's status."""
    todo = []
    for run in runs:
        if run.run_dir.exists() and not run.run_dir.is_dir():
            run.status, run.message = "failed", f"{run.run_dir} is a file, not a run directory: move it away"
            continue
        run.status = run_state(run.run_dir)
        if run.status == "empty":
            problem = _clear_unstarted(run.run_dir)
            if problem:
                run.status, run.message = "failed", problem
                continue
        if not run.done:
            todo.append(run)
    if not todo:
        return
    gpus = _visible_gpus() if any(_uses_cuda(r.config) for r in todo) else []
    jobs, auto_threads, slots = plan_workers(len(todo), jobs, _cores(), gpus)
    threads = threads or auto_threads
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    where = f"GPUs {','.join(gpus)}" if gpus else f"{threads} CPU thread{'s' * (threads > 1)} each"
    say(f"{len(todo)} of {len(runs)} runs to do, {jobs} at a time ({where}); logs in {logs}")
    pending, running, free = list(todo), {}, list(range(jobs))
    done = len(runs) - len(todo)
    try:
        while pending or running:
            while pending and free:
                run, slot = pending.pop(0), free.pop(0)
                resume = run.status == "interrupted"
                proc, log = _start(run, resume, threads, slots[slot], logs, stop_after)
                running[proc] = (run, slot, time.perf_counter(), log)
                say(f"  {run.name}: {'resumed' if resume else 'started'}")
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                run, slot, t0, log = running.pop(proc)
                log.close()
                free.append(slot)
                done += 1
                run.seconds = time.perf_counter() - t0
                if proc.returncode == 0:
                    run.status = run_state(run.run_dir)
                    run.message = "" if run.done else f"interrupted after the requested {stop_after} epochs"
                else:
                    run.status = "failed"
                    run.message = f"exit code {proc.returncode}: {_last_line(logs / f'{run.name}.log')}"
                say(f"[{done}/{len(runs)}] {run.name}: {run.status} in {run.seconds:.0f} s"
                    + (f" ({run.message})" if run.message else ""))
    except BaseException:
        for proc, (run, _, _, log) in running.items():  # take the runs down with the comparison
            proc.terminate()
        for proc, (run, _, _, log) in running.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        raise


def _worker_main(task_json: str) -> int:
    """One run, in its own process (see :func:`_start`)."""
    task = json.loads(task_json)
    _die_with_parent(task["parent"])
    import torch

    from .search import search, summary_line

    torch.set_num_threads(task["threads"])

    class EpochLines:
        def on_epoch(self, record, run_dir):
            print(summary_line(record), flush=True)

    try:
        if task["resume"]:
            result = search(resume=task["run_dir"], progress=False, stop_after=task["stop_after"], callbacks=[EpochLines()])
        else:
            result = search(task["config"], out=task["run_dir"], progress=False, stop_after=task["stop_after"],
                            callbacks=[EpochLines()])
    except UserError as e:
        print(f"noisydarts: error: {e}", flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    if result.stopped:
        print(f"stopped early after epoch {result.stopped['epoch']}: {result.stopped['reason']}")
    print(f"genotype: {result.genotype}", flush=True)
    return 0


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the comparison's process dies (a killed comparison leaves no run
    behind still writing); if it is already gone, stop here."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


# --- the summary ---------------------------------------------------------------------------------

def final_metrics(records: list[dict]) -> dict:
    """Each numeric result's last logged value (the Hessian's last measurement, for one), the
    epochs done and the search time (epochs plus the monitor's measurements)."""
    values = {}
    for r in records:
        for k, v in r.items():
            if k not in NOT_RESULTS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                values[k] = v
    values["epochs"] = len(records)
    values["search_time"] = round(sum(float(r.get("epoch_time", 0)) + float(r.get("hessian_time", 0)) for r in records), 1)
    return values


def _collect(runs: list[Run]) -> None:
    from .viz.plots import load_run_data

    for run in runs:
        if run.status in ("finished", "stopped", "interrupted", "failed") and (run.run_dir / "metrics.jsonl").is_file():
            try:
                data = load_run_data(run.run_dir)
            except UserError:
                continue
            run.metrics, run.genotype = final_metrics(data.records), data.genotype_text


def metric_order(keys) -> list[str]:
    keys = set(keys)
    return [k for k in METRIC_LABELS if k in keys] + sorted(keys - set(METRIC_LABELS))


def method_stats(runs: list[Run]) -> dict:
    """Per metric over the method's finished runs: n, mean, sample std (None for one run), min, max."""
    done = [r for r in runs if r.done]
    stats = {}
    for key in metric_order(k for r in done for k in r.metrics):
        values = [float(r.metrics[key]) for r in done if key in r.metrics]
        stats[key] = {"n": len(values), "mean": statistics.fmean(values),
                      "std": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}
    return stats


def _number(key: str, value: float) -> str:
    if key == "search_time":
        return f"{value:.0f}"
    if "loss" in key:
        return f"{value:.3f}"
    if key == "hessian_eig":
        return f"{value:.3g}"
    return f"{value:.2f}"


def _run_number(key: str, value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else _number(key, value)


def mean_std(key: str, s: dict) -> str:
    text = _number(key, s["mean"])
    return text if s["std"] is None else f"{text} \u00b1 {_number(key, s['std'])}"


@dataclass
class CompareResult:
    out: Path
    methods: list[str]
    runs: list[Run]
    stats: dict                      # method -> metric -> {n, mean, std, min, max}
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def complete(self) -> bool:
        return all(r.done for r in self.runs)


def summary_table(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Rows: the metrics (and runs done); columns: the methods; cells: mean +- std over the seeds."""
    header = ["", *result.methods]
    rows = [["runs done", *[f"{sum(r.done for r in result.runs if r.method == m)}/"
                            f"{sum(r.method == m for r in result.runs)}" for m in result.methods]]]
    for key in metric_order(k for s in result.stats.values() for k in s):
        rows.append([METRIC_LABELS.get(key, key),
                     *[mean_std(key, result.stats[m][key]) if key in result.stats[m] else "" for m in result.methods]])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


RUN_COLUMNS = ("val_acc", "cifar10_test", "cifar100_test", "imagenet16_test", "skip_normal", "skip_reduce", "skip_count",
               "hessian_eig", "epochs", "search_time")


def _runs_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    keys = [k for k in RUN_COLUMNS if any(k in r.metrics for r in result.runs)]
    header = ["method", "seed", "status", *[METRIC_LABELS[k] for k in keys], "genotype"]
    rows = [[r.method, str(r.seed), r.status + (f": {r.message}" if r.message else ""),
             *[_run_number(k, r.metrics.get(k)) for k in keys], r.genotype or ""] for r in result.runs]
    return header, rows


def _overlays(result: CompareResult) -> list[Path]:
    from .viz.overlay import Group, write_overlays
    from .viz.plots import load_run_data

    groups = [Group(m, [load_run_data(r.run_dir) for r in result.runs if r.method == m and r.done]) for m in result.methods]
    if not any(g.runs for g in groups):
        return []
    return write_overlays(groups, result.out / "plots")


def write_summary(result: CompareResult, plan: dict) -> list[Path]:
    """summary.md, summary.csv, runs.csv, summary.json and report.html in the comparison's directory."""
    from .viz.overlay import BAND_NOTE, CAPTIONS
    from .viz.report import CSS, _data_uri, _html_table, _md_table

    out = result.out
    pngs = _overlays(result)
    header, rows = summary_table(result)
    run_header, run_rows = _runs_rows(result)
    methods = [f"{m['name']}" + ("" if m["name"] == m["source"] else f" (`{m['source']}`)") for m in plan["methods"]]
    setup = [f"Methods: {', '.join(methods)}", f"Seeds: {' '.join(map(str, plan['seeds']))}",
             f"Overrides: {' '.join(plan['overrides']) or '(none)'}"]
    note = ("Mean \u00b1 sample standard deviation over the seeds of each run's final value "
            "(the Hessian eigenvalue: its last measurement); only finished runs count.")
    captions = {p: f"{CAPTIONS[p.stem]}, one line per method ({BAND_NOTE})." for p in pngs}

    md = ["# noisydarts comparison", "", *[f"- {line}" for line in setup], "", "## Summary", "", note, "",
          _md_table(header, rows), ""]
    for png in pngs:
        md += [f"![{png.stem}]({png.relative_to(out).as_posix()})", "", f"*{captions[png]}*", ""]
    md += ["## Runs", "", _md_table(run_header, run_rows), ""]
    e = html.escape
    body = ["<h1>noisydarts comparison</h1>", "<ul>" + "".join(f"<li>{e(line.replace('`', ''))}</li>" for line in setup) + "</ul>",
            "<h2>Summary</h2>", f"<p>{e(note)}</p>", _html_table(header, rows, left_cols=1)]
    body += [f'<figure><img src="{_data_uri(p)}" alt="{e(p.stem)}"><figcaption>{e(captions[p])}</figcaption></figure>'
             for p in pngs]
    body += ["<h2>Runs</h2>", _html_table(run_header, run_rows, left_cols=3)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>noisydarts comparison</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    stats_csv = io.StringIO()
    w = csv.writer(stats_csv)
    w.writerow(["method", "metric", "n", "mean", "std", "min", "max"])
    for m in result.methods:
        for key, s in result.stats[m].items():
            w.writerow([m, key, s["n"], s["mean"], "" if s["std"] is None else s["std"], s["min"], s["max"]])
    runs_csv = io.StringIO()
    keys = metric_order(k for r in result.runs for k in r.metrics)
    w = csv.writer(runs_csv)
    w.writerow(["method", "seed", "status", "message", "run_dir", *keys, "genotype"])
    for r in result.runs:
        w.writerow([r.method, r.seed, r.status, r.message, r.run_dir.name, *[r.metrics.get(k, "") for k in keys],
                    r.genotype or ""])
    payload = {"plan": {k: plan[k] for k in ("seeds", "overrides")} | {"methods": [
                   {"name": m["name"], "source": m["source"]} for m in plan["methods"]]},
               "methods": {m: result.stats[m] for m in result.methods},
               "runs": [{"method": r.method, "seed": r.seed, "status": r.status, "message": r.message,
                         "run_dir": r.run_dir.name, "metrics": r.metrics, "genotype": r.genotype} for r in result.runs]}
    files = {"summary.md": "\n".join(md), "summary.csv": stats_csv.getvalue(), "runs.csv": runs_csv.getvalue(),
             "summary.json": json.dumps(payload, indent=1) + "\n", "report.html": page}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files] + pngs


# --- the entry point -----------------------------------------------------------------------------

def compare(methods: list, seeds: list[int] = (0, 1, 2), overrides: list[str] = (), *, out: str | Path,
            jobs: int | None = None, threads: int | None = None, progress: bool = True,
            stop_after: int | None = None) -> CompareResult:
    """Run every method (a preset name, a YAML config file, or a ``(name, config dict)`` pair, resolved
    over the default preset as a config file is) with every seed, ``overrides``
    (``KEY=VALUE``) applied to all, in ``out``; return the summary (also written to ``out``).
    ``jobs``: runs at a time; ``threads``: torch threads per run (defaults: see the module
    docstring; a run's results depend on its thread count in the last bits). ``stop_after``: each run stops
    once that many epochs are done, leaving it resumable (to interrupt on purpose). Calling it
    again with the same arguments continues the comparison."""
    say = print if progress else (lambda *a, **k: None)
    overrides = [str(o) for o in overrides]
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise UserError("give at least one seed with --seeds")
    for flag, value in (("--jobs", jobs), ("--threads", threads)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    planned = plan_methods(list(methods), overrides)
    plan = _plan(planned, seeds, overrides)
    out = Path(out)
    # Everything is checked before anything is written: a refused command leaves nothing that
    # would block the corrected one (each run's config with its seed, the data every run reads).
    runs = [Run(m.name, seed, out / f"{m.name}-s{seed}", _run_config(m, seed)) for m in planned for seed in seeds]
    check_data(run.config["data"] for run in runs)
    _claim(out, plan, runs)
    _execute(runs, out, jobs, threads, stop_after, say)
    _collect(runs)
    names = [m.name for m in planned]
    result = CompareResult(out, names, runs, {m: method_stats([r for r in runs if r.method == m]) for m in names})
    result.files = write_summary(result, plan)
    if progress:
        say("")
        say(text_table(*summary_table(result)))
        for r in result.failed:
            say(f"FAILED {r.name}: {r.message}")
        unfinished = [r.name for r in runs if not r.done and r.status != "failed"]
        if unfinished:
            say(f"not finished: {', '.join(unfinished)}; run the same command again to continue")
        say(f"summary: {out / 'summary.md'}, {out / 'report.html'}")
    return result
