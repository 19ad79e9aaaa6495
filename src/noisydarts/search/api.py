"""``noisydarts.search``: start or resume a search run, and read one back."""

from __future__ import annotations

from pathlib import Path

from .. import config as config_lib
from ..errors import UserError
from ..runtime import distributed, runs
from ..runtime.lifecycle import RunLifecycle
from .callbacks import default_callbacks
from .config import resolve_config
from .loop import DEFAULT_PRESET, SearchResult, Searcher


# --- the public entry point -------------------------------------------------------------------

def search(config: dict | str | Path | None = None, *, out: str | Path | None = None,
           resume: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
           label: str | None = None, callbacks=()) -> SearchResult:
    """Run a search and return its result.

    ``config``: a preset name, a YAML file, a (partial) config dict, or None for the
    ``nb201-quick`` preset; partial dicts are resolved over the defaults. ``out``: the run directory (default
    ``runs/<timestamp>-<preset>``). ``resume``: continue the run in that directory from its last
    checkpoint (its own config is used; a finished run says so in one line on stdout, then gives
    its result). ``stop_after``: stop once that many epochs are done,
    leaving a resumable run (used to interrupt on purpose). ``label`` names the default run
    directory (the preset's name when ``config`` is one). ``callbacks``:
    :class:`noisydarts.runtime.callbacks.Callback` objects (or objects with some of its
    ``on_start``, ``on_epoch_start``, ``on_record``, ``check_stop``, ``on_epoch``, ``on_end``,
    ``state_dict``/``load_state_dict`` methods; see :meth:`Searcher.run`), run after the ones the
    config asks for.

    Under torchrun (:mod:`noisydarts.runtime.distributed`) every process calls this with the same
    arguments; rank 0 creates, locks and writes the run directory and prints, the others only
    compute (and run the callbacks with ``runs_on_every_rank``, such as the Hessian monitor). To
    resume, every rank reads the run's config.yaml and checkpoint.pt (on several nodes: a file
    system they share).
    """
    if resume is not None:
        if config is not None or out is not None:
            raise UserError("--resume continues a run with its own config: drop --preset/--config/--set/--out")
        with RunLifecycle.resume("search", resume, _resolve_saved, keys=CHECKPOINT_KEYS,
                                 world_size_note=WORLD_SIZE_NOTE) as run:
            callbacks = (*default_callbacks(run.cfg), *callbacks)  # on every rank: the loop picks what runs where
            finished = run.finished("genotype.json")  # nothing to resume: said, then its result as always
            searcher = Searcher(run.cfg, run.run_dir, progress and finished is None)
            run.restore(searcher.load_state_dict)
            searcher.preset = run.preset
            if finished and run.main:
                print(finished, flush=True)
            return searcher.run(stop_after, callbacks)

    cfg = resolve_search_config(config)
    distributed.setup(cfg)  # under torchrun: checks the launch (one line on every rank), joins the others
    callbacks = (*default_callbacks(cfg), *callbacks)  # on every rank: the loop picks what runs where
    if config is None:
        label = DEFAULT_PRESET
    elif label is None:
        label = str(config) if isinstance(config, str) and config in config_lib.preset_names() else "search"
    preset = label if label in config_lib.preset_names() else None
    with RunLifecycle.create("search", cfg, out=out, label=label, preset=preset) as run:
        searcher = Searcher(cfg, run.run_dir, progress)
        run.begin()
        searcher.preset = preset
        return searcher.run(stop_after, callbacks)


#: What a search checkpoint must hold (:func:`load_run`).
CHECKPOINT_KEYS = {"epoch": int, "model": dict, "w_opt": dict, "a_opt": dict, "scheduler": dict, "rng": dict}
#: What continues, and what does not, when a search is resumed with another number of processes.
WORLD_SIZE_NOTE = ("the data order, α and weights continue as they were, but the noise draws and per-process "
                   "BatchNorm statistics differ")


def resolve_search_config(config) -> dict:
    if config is None:
        return resolve_config(DEFAULT_PRESET)
    if isinstance(config, dict):
        return resolve_config(config_file=config)
    if isinstance(config, (str, Path)) and str(config) in config_lib.preset_names():
        return resolve_config(str(config))
    return resolve_config(config_file=config)


def _resolve_saved(raw: dict) -> dict:
    """A search run's config.yaml, checked like any config."""
    return resolve_config(config_file=raw)


def load_run(run_dir: str | Path) -> tuple[Path, dict, dict, dict]:
    """``(run_dir, config, checkpoint state, provenance)`` of a search run, each file checked
    (:func:`noisydarts.runtime.runs.load_run`)."""
    return runs.load_run(run_dir, "search", _resolve_saved, keys=CHECKPOINT_KEYS)
