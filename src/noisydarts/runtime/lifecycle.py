"""The life of a run directory, the same for every command that writes one (search, train).

:meth:`RunLifecycle.create` (a new run) and :meth:`RunLifecycle.resume` (``--resume DIR``) are
context managers around the command's work; the run's lock is held for their body::

    with RunLifecycle.create("train", cfg, out=out, label="train", files={...}) as run:
        trainer = Trainer(genotype, cfg, run.run_dir)
        run.begin()                       # built: from here on the run is kept, whatever happens
        return trainer.run()

    with RunLifecycle.resume("train", run_dir, resolve, keys=CHECKPOINT_KEYS) as run:
        trainer = Trainer(genotype, run.cfg, run.run_dir)
        run.restore(trainer.load_state_dict)   # the checkpoint; metrics.jsonl cut back to it
        return trainer.run()

Create: the run directory (:func:`runs.new_run_dir`: ``out``, or ``runs/<timestamp>-<label>``),
its lock (:func:`runs.active_run`), then ``config.yaml`` (the resolved config and its
provenance) and the command's other ``files``, each written atomically. A failure before
:meth:`RunLifecycle.begin` (bad data, a missing package, Ctrl-C while the network is built)
leaves nothing behind: once the lock is released, the files written here are removed, and the
directory too when this call created it. After ``begin`` a failure keeps the run as it is (a
divergence keeps its last good checkpoint; an interrupted run says how to resume it).

Starting again: a run killed before its first checkpoint (``kill -9`` during the first epoch)
left files but nothing to resume. The same command with the same ``out`` starts it again: once
the lock is held, the files such a run writes (:data:`BEFORE_FIRST_CHECKPOINT` and the command's
``files``) are removed, with a line on stderr (:func:`runs.clear_stopped_run`). A directory with a
checkpoint, or with anything else, is refused as any non-empty ``out``; a run still in its first
epoch holds the lock and is named.

Resume: the directory must exist; its ``config.yaml`` and ``checkpoint.pt`` are read and checked
(:func:`runs.load_run`, with the command's resolver and checkpoint keys) once the lock is held, so
a refused process reads nothing and changes nothing. A different number of processes than the run
had is a warning. :meth:`RunLifecycle.restore` loads the checkpoint into the freshly built model
(one line if it does not fit the config) and then drops the ``metrics.jsonl`` lines past it (an
epoch logged but not checkpointed before a crash or ``kill -9``).

Under torchrun every process enters the same lifecycle: rank 0 alone creates, locks, writes,
truncates and cleans up; the others are told the run directory (and whether rank 0 could take
it: its error is theirs, :func:`distributed.on_main`) and only compute. To resume, every rank reads
config.yaml and checkpoint.pt (on several nodes: a file system they share).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .. import config as config_lib
from . import distributed, runs
from .runs import CHECKPOINT, CONFIG

METRICS = "metrics.jsonl"
#: What a run of any command may have written before its first checkpoint, besides the command's
#: own files: config.yaml, the epoch record logged just before the checkpoint, the data record
#: (data.json, written with the first checkpoint), TensorBoard's folder (opened at the start).
BEFORE_FIRST_CHECKPOINT = (CONFIG, METRICS, "data.json", "tensorboard")

#: What continues and what does not when a run is resumed with another number of processes
#: (the default; a command may say it in its own words).
WORLD_SIZE_NOTE = ("the data order and weights continue as they were, but the random draws and per-process "
                   "BatchNorm statistics differ")


class RunLifecycle:
    """One run directory, from its creation (or resumption) to the end of the command.

    Attributes: ``command`` (``search``, ``train``), ``run_dir``, ``cfg`` (the resolved config),
    ``state`` (the checkpoint on resume, else None), ``provenance`` (config.yaml's on resume,
    else the one written), ``created`` (whether this call created the directory, as rank 0 found it),
    ``resumed_at`` (the epochs the checkpoint holds, None for a new run).
    """

    def __init__(self, command: str, run_dir: Path, cfg: dict, *, state: dict | None = None,
                 provenance: dict | None = None, created: bool = False):
        self.command, self.run_dir, self.cfg = command, Path(run_dir), cfg
        self.state, self.provenance, self.created = state, provenance or {}, created
        self._begun = state is not None  # a resumed run is never removed

    # --- a new run ---

    @classmethod
    @contextlib.contextmanager
    def create(cls, command: str, cfg: dict, *, out: str | Path | None = None, label: str | None = None,
               preset: str | None = None, files: Mapping[str, str] | None = None) -> Iterator[RunLifecycle]:
        """A new run directory, locked, with ``config.yaml`` (``cfg`` and its provenance, naming
        ``preset``) and ``files`` (name -> text) written atomically, for the body of the ``with``.
        ``out``: the directory (it must hold no files, or only those of a run that stopped before
        its first checkpoint: that run is started again), else ``runs/<timestamp>-<label>``
        (``label`` defaults to ``command``)."""
        files = dict(files or {})
        names = (CONFIG, *files)
        restartable = (*BEFORE_FIRST_CHECKPOINT, *files)
        distributed.setup(cfg)  # under torchrun: checks the launch, joins the others (once per process)
        taken: list[tuple[Path, bool]] = []  # rank 0, once the lock is held: what a failure may remove
        run = None
        try:
            with contextlib.ExitStack() as stack:
                def start() -> tuple[str, bool, dict]:  # rank 0: the directory, locked, with its files
                    run_dir, created = runs.new_run_dir(out, label or command, restartable=restartable)
                    stack.enter_context(runs.active_run(run_dir, command))
                    if not created:  # under the lock: a run killed before its first checkpoint is cleared
                        runs.clear_stopped_run(run_dir, restartable)
                    taken.append((run_dir, created))  # ours now: not before (a refused process removes nothing)
                    provenance = runs.provenance(preset)
                    runs.atomic_write_text(run_dir / CONFIG, config_lib.dump(cfg, provenance))
                    for name, text in files.items():
                        runs.atomic_write_text(run_dir / name, text)
                    return str(run_dir), created, provenance

                run_dir, created, provenance = distributed.on_main(start)
                run = cls(command, Path(run_dir), cfg, provenance=provenance, created=created)
                yield run
        except BaseException:
            # Failed before it began: leave nothing (now that the lock is released).
            if taken and (run is None or not run._begun) and distributed.is_main():
                runs.remove_failed_run(taken[0][0], taken[0][1], names)
            raise

    def begin(self) -> None:
        """The run's model and data are built: from now on a failure keeps the run directory (a
        divergence keeps its last checkpoint, an interruption can be resumed or started again)."""
        self._begun = True

    # --- resuming a run ---

    @staticmethod
    def resumable(run_dir: str | Path) -> bool:
        """Whether ``run_dir`` holds both files a resume reads (if not, :meth:`resume` says what is
        missing); a command that needs more of the run (train: its genotype) reads it only then."""
        return all(runs.path_kind(Path(run_dir) / name) == "file" for name in (CHECKPOINT, CONFIG))

    @classmethod
    @contextlib.contextmanager
    def resume(cls, command: str, run_dir: str | Path, resolve: Callable[[dict], dict], *,
               keys: Mapping[str, type | tuple] | tuple = (), world_size_note: str = WORLD_SIZE_NOTE
               ) -> Iterator[RunLifecycle]:
        """The run in ``run_dir``, locked, with its config (``resolve(raw dict) -> config``, as
        :func:`runs.read_run_config`) and checkpoint (checked to hold ``keys``), for the body of
        the ``with``. ``world_size_note`` says what continues, and what does not, when the run
        is resumed with another number of processes (a warning)."""
        run_dir = runs.resume_dir(run_dir, command)
        if cls.resumable(run_dir):  # else load_run says why, on every rank alike
            distributed.setup(runs.read_run_config(run_dir, command, resolve)[0])
        with contextlib.ExitStack() as stack:
            def lock() -> None:  # rank 0 holds the run; the others hear whether it could
                stack.enter_context(runs.active_run(run_dir, command))

            distributed.on_main(lock)
            run_dir, cfg, state, provenance = runs.load_run(run_dir, command, resolve, keys=keys)
            run = cls(command, run_dir, cfg, state=state, provenance=provenance)
            run._check_world_size(world_size_note)
            yield run

    def restore(self, load_state_dict: Callable[[dict], None], files: str = CONFIG) -> None:
        """Load the checkpoint with ``load_state_dict`` (a checkpoint that does not fit ``files``,
        edited since the run started, is one line), then, on rank 0, drop the metrics.jsonl lines
        past it."""
        if self.state is None:
            raise RuntimeError("restore() is for a resumed run")
        with runs.restoring(self.run_dir, files):
            load_state_dict(self.state)
        self.begin()
        if distributed.is_main():
            truncate_metrics(self.run_dir / METRICS, self.resumed_at)

    def _check_world_size(self, note: str) -> None:
        """Resuming with another number of processes works (the data order does not depend on it)
        but does not continue the run exactly: say so once, on rank 0."""
        before, now = int(self.state.get("world_size", 1)), distributed.world_size()
        if before != now and distributed.is_main():
            warnings.warn(f"{self.run_dir} ran with {before} process(es) and continues with {now}: {note} from a run "
                          f"that kept {before}; resume with {before} to continue it exactly",
                          stacklevel=5)  # _check_world_size, resume, contextlib, the command: its caller

    # --- what every command says and knows ---

    def finished(self, result_file: str) -> str | None:
        """On resume, the line that says the run has nothing left to do (every epoch done, or
        stopped early, and its ``result_file`` written: genotype.json, weights.pt), else None."""
        if self.state is None or runs.path_kind(self.run_dir / result_file) != "file":
            return None
        done, epochs = self.resumed_at, int(self.cfg["epochs"])
        if isinstance(self.state.get("stopped"), dict):
            how = f"stopped early after epoch {done} of {epochs}"
        elif done >= epochs:
            how = f"{done} of {epochs} epochs"
        else:
            return None
        return f"{self.run_dir} is finished ({how}): nothing to resume; its result:"

    @property
    def resumed_at(self) -> int | None:
        """The epochs done before this process started (the checkpoint's), None for a new run."""
        return None if self.state is None else int(self.state["epoch"])

    @property
    def preset(self) -> str | None:
        return self.provenance.get("preset")

    @property
    def main(self) -> bool:
        """Whether this process writes the run (rank 0; always, without torchrun)."""
        return distributed.is_main()

    def start_line(self, device, precision: str, world: int = 1) -> str:
        """The first line a run prints (:func:`runs.start_line`)."""
        return runs.start_line(self.command, device, precision, self.run_dir, self.preset,
                               resumed_at=self.resumed_at, world=world)


def truncate_metrics(path: str | Path, epochs_done: int) -> None:
    """Drop metric lines past the checkpoint (an epoch logged but not checkpointed before a crash)."""
    records = [r for r in runs.read_jsonl(path) if r.get("epoch", 0) <= epochs_done]
    runs.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
