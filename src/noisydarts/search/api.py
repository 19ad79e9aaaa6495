"""``noisydarts.search``: start or resume a search run, and read one back."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .. import config as config_lib
from ..errors import UserError
from ..runtime import distributed, runs
from ..runtime.runs import CHECKPOINT, atomic_write_text, new_run_dir, read_jsonl
from .callbacks import default_callbacks
from .loop import DEFAULT_PRESET, SearchResult, Searcher


# --- the public entry point -------------------------------------------------------------------

def search(config: dict | str | Path | None = None, *, out: str | Path | None = None,
           resume: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
           label: str | None = None, callbacks=()) -> SearchResult:
    """Run a search and return its result.

    ``config``: a preset name, a YAML file, a (partial) config dict, or None for the
    ``nb201-quick`` preset; partial dicts are resolved over the defaults. ``out``: the run directory (default
    ``runs/<timestamp>-<preset>``). ``resume``: continue the run in that directory from its last
    checkpoint (its own config is used). ``stop_after``: stop once that many epochs are done,
    leaving a resumable run (used to interrupt on purpose). ``label`` names the default run
    directory (the preset's name when ``config`` is one). ``callbacks``: objects with optional
    ``on_start``, ``on_record``, ``check_stop``, ``on_epoch`` and ``on_end`` methods (see
    :meth:`Searcher.run`), run after the ones the config asks for.

    Under torchrun (:mod:`noisydarts.distributed`) every process calls this with the same
    arguments; rank 0 creates, locks and writes the run directory and prints, the others only
    compute. To resume, every rank reads the run's config.yaml and checkpoint.pt (on several
    nodes: a file system they share).
    """
    if resume is not None:
        if config is not None or out is not None:
            raise UserError("--resume continues a run with its own config: drop --preset/--config/--set/--out")
        run_dir = runs.resume_dir(resume, "search")
        if all(runs.path_kind(run_dir / n) == "file" for n in (CHECKPOINT, runs.CONFIG)):  # else load_run says why
            distributed.setup(runs.read_run_config(run_dir, "search", lambda raw: config_lib.resolve(config_file=raw))[0])
        with contextlib.ExitStack() as stack:
            def lock() -> None:  # rank 0 holds the run; the others hear whether it could
                stack.enter_context(runs.active_run(run_dir, "search"))

            distributed.on_main(lock)
            run_dir, cfg, state, prov = load_run(run_dir)
            _check_world_size(state, run_dir)
            callbacks = (*default_callbacks(cfg), *callbacks) if distributed.is_main() else ()
            searcher = Searcher(cfg, run_dir, progress)
            with runs.restoring(run_dir):
                searcher.load_state_dict(state)
            if distributed.is_main():
                _truncate_metrics(run_dir / "metrics.jsonl", searcher.start_epoch)
            searcher.preset = prov.get("preset")
            return searcher.run(stop_after, callbacks)

    cfg = resolve_search_config(config)
    distributed.setup(cfg)  # under torchrun: checks the launch (one line on every rank), joins the others
    callbacks = (*default_callbacks(cfg), *callbacks) if distributed.is_main() else ()
    if config is None:
        label = DEFAULT_PRESET
    elif label is None:
        label = str(config) if isinstance(config, str) and config in config_lib.preset_names() else "search"
    preset = label if label in config_lib.preset_names() else None
    started, searcher = None, None
    try:
        with contextlib.ExitStack() as stack:
            def start_run() -> tuple[str, bool]:  # rank 0: the run directory, locked, with its config.yaml
                run_dir, created = new_run_dir(out, label)
                stack.enter_context(runs.active_run(run_dir, "search"))
                atomic_write_text(run_dir / runs.CONFIG, config_lib.dump(cfg, runs.provenance(preset)))
                return str(run_dir), created

            started = distributed.on_main(start_run)
            searcher = Searcher(cfg, Path(started[0]), progress)
            searcher.preset = preset
            return searcher.run(stop_after, callbacks)
    except BaseException:
        # Failed before its first epoch began (bad data, say): leave nothing (once the lock is released).
        if started is not None and searcher is None and distributed.is_main():
            runs.remove_failed_run(Path(started[0]), started[1])
        raise


def _check_world_size(state: dict, run_dir: Path) -> None:
    """Resuming with another number of processes works (data order, α, weights and optimizer
    states do not depend on it) but does not continue the run exactly: say so once."""
    before, now = int(state.get("world_size", 1)), distributed.world_size()
    if before != now and distributed.is_main():
        import warnings

        warnings.warn(f"{run_dir} ran with {before} process(es) and continues with {now}: the data order, α and "
                      "weights continue as they were, but the noise draws and per-process BatchNorm statistics "
                      f"differ from a run that kept {before}; resume with {before} to continue it exactly",
                      stacklevel=3)


def resolve_search_config(config) -> dict:
    if config is None:
        return config_lib.resolve(DEFAULT_PRESET)
    if isinstance(config, dict):
        return config_lib.resolve(config_file=config)
    if isinstance(config, (str, Path)) and str(config) in config_lib.preset_names():
        return config_lib.resolve(str(config))
    return config_lib.resolve(config_file=config)


def load_run(run_dir: str | Path) -> tuple[Path, dict, dict, dict]:
    """``(run_dir, config, checkpoint state, provenance)`` of a search run, each file checked
    (:func:`noisydarts.runs.load_run`)."""
    return runs.load_run(run_dir, "search", lambda raw: config_lib.resolve(config_file=raw),
                         keys={"epoch": int, "model": dict, "w_opt": dict, "a_opt": dict, "scheduler": dict,
                               "rng": dict})


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines past the checkpoint (an epoch logged but not checkpointed before a crash)."""
    records = [r for r in read_jsonl(path) if r.get("epoch", 0) <= epochs_done]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
