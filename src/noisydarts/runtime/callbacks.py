"""The callback contract of a search: :class:`Callback`, whose hooks the search loop calls
(:meth:`noisydarts.search.Searcher.run`).

Subclass :class:`Callback` and override the hooks you need; every hook of the base class does
nothing. In the order the loop calls them::

    on_epoch_start(searcher, epoch)   # replayed on resume for the epochs already done (below)
    ... load_state_dict(state)        # on resume, this callback's state from the checkpoint
    on_start(searcher)                # once, before the first epoch this process runs
    for every epoch:
        on_epoch_start(searcher, epoch)   # every rank, before the epoch's training (a stage hook)
        ... train, validate ...
        on_record(searcher, record)   # may add measurements to the epoch's record
        check_stop(history)           # rank 0 only; the first Stop ends the search after this epoch
        ... metrics.jsonl and checkpoint.pt written (state_dict() of every callback in it) ...
        on_epoch(record, run_dir)     # rank 0 only
    on_end(result)                    # rank 0 only, also after an early stop or stop_after

**Ranks.** Under torchrun every process builds the same callbacks. On rank 0 all of them run;
on the other ranks only those with ``runs_on_every_rank = True`` (:func:`for_rank`): a callback
that runs forward passes or collectives (the Hessian monitor) or that changes the supernet (a
stage hook) must set it, else the ranks diverge. Rank 0 alone writes the run directory, so
``on_epoch`` and ``on_end`` (file writers, plots, TensorBoard) run there only, and the stop
decision is rank 0's, handed to every rank.

**Stage hooks.** ``on_epoch_start`` may change the supernet between epochs (prune ops, change
partial channels, freeze parameters). When the set of ``searcher.model``'s weight or
architecture parameters changed, the loop rebuilds the optimizers' parameter groups
(:meth:`noisydarts.search.Searcher.refresh_optimizers`): parameters that remain keep their
optimizer state (momentum, Adam moments), new ones start fresh, removed ones are dropped; the
learning-rate schedule goes on. Contract: a hook that changes the supernet must do so as a
deterministic function of ``(epoch, config)``, and must give the same result when called again
for the same epochs in order. ``search --resume`` builds the supernet from the config, calls
``on_epoch_start(searcher, e)`` for every epoch ``e`` already done (``searcher.replaying`` is
True then), and only then loads the checkpoint's tensors, so the replayed supernet is the one the
checkpoint was saved from and the weights a replay creates are overwritten by the saved ones.

**Duck-typed callbacks.** Any object with some of these methods still works: :func:`as_callback`
wraps it in an adapter that calls the methods it has (its ``runs_on_every_rank`` attribute, if
any, is honoured, and its state keeps the key ``type(obj).__name__``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The hooks of the contract (the methods the adapter forwards).
HOOKS = ("on_start", "on_epoch_start", "on_record", "check_stop", "on_epoch", "on_end", "state_dict",
         "load_state_dict")


class Callback:
    """A search callback: override the hooks you need (each one here does nothing)."""

    #: True for a callback that must run on every rank under torchrun: it runs forward passes or
    #: collectives (every rank must take part in them), or it changes the supernet. False: rank 0
    #: only (writers, plots, stopping rules).
    runs_on_every_rank: bool = False

    @property
    def state_key(self) -> str:
        """The key of this callback's state in ``checkpoint.pt`` (``callbacks``): the class name."""
        return type(self).__name__

    @property
    def has_state(self) -> bool:
        """Whether the checkpoint keeps this callback's state (it overrides :meth:`state_dict`)."""
        return type(self).state_dict is not Callback.state_dict

    def on_start(self, searcher) -> None:
        """Once before the first epoch this process runs (after a resume's state is loaded)."""

    def on_epoch_start(self, searcher, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains, on every rank that runs this callback. May change
        ``searcher.model`` (see the module docstring for the resume contract)."""

    def on_record(self, searcher, record: dict) -> None:
        """After the epoch trained and validated, before ``record`` is logged: add measurements to it."""

    def check_stop(self, history: list[dict]) -> Any:
        """With every epoch record so far (the current one last): a ``Stop``
        (:class:`noisydarts.methods.early_stop.Stop`, anything with ``to_dict()``) ends the search
        after this epoch; None goes on. Rank 0 only."""
        return None

    def on_epoch(self, record: dict, run_dir: Path) -> None:
        """Once the epoch is in metrics.jsonl and checkpoint.pt. Rank 0 only."""

    def on_end(self, result) -> None:
        """At the end of the search (also after an early stop or ``stop_after``), with the
        :class:`noisydarts.search.SearchResult`. Rank 0 only."""

    def state_dict(self) -> dict:
        """State to keep in the checkpoint (picklable; see :attr:`has_state`)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """The state :meth:`state_dict` returned, on resume (on every rank that runs this callback)."""


class DuckCallback(Callback):
    """Adapter for an object that has some of the hooks but is no :class:`Callback`: the hooks it
    has are called, the others do nothing."""

    def __init__(self, target):
        self.target = target
        self.runs_on_every_rank = bool(getattr(target, "runs_on_every_rank", False))

    @property
    def state_key(self) -> str:
        return getattr(self.target, "state_key", None) or type(self.target).__name__

    @property
    def has_state(self) -> bool:
        return callable(getattr(self.target, "state_dict", None))

    def _call(self, name: str, *args, default=None):
        method = getattr(self.target, name, None)
        return method(*args) if callable(method) else default

    def on_start(self, searcher) -> None:
        self._call("on_start", searcher)

    def on_epoch_start(self, searcher, epoch: int) -> None:
        self._call("on_epoch_start", searcher, epoch)

    def on_record(self, searcher, record: dict) -> None:
        self._call("on_record", searcher, record)

    def check_stop(self, history: list[dict]) -> Any:
        return self._call("check_stop", history)

    def on_epoch(self, record: dict, run_dir: Path) -> None:
        self._call("on_epoch", record, run_dir)

    def on_end(self, result) -> None:
        self._call("on_end", result)

    def state_dict(self) -> dict:
        return self._call("state_dict", default={})

    def load_state_dict(self, state: dict) -> None:
        self._call("load_state_dict", state)

    def __repr__(self) -> str:
        return f"DuckCallback({self.target!r})"


def as_callback(obj) -> Callback:
    """``obj`` itself if it is a :class:`Callback`, else a :class:`DuckCallback` around it."""
    return obj if isinstance(obj, Callback) else DuckCallback(obj)


def for_rank(callbacks, rank: int) -> tuple[Callback, ...]:
    """The callbacks (as :class:`Callback`, in order) that run on ``rank``: all on rank 0, those with
    ``runs_on_every_rank`` on the others."""
    wrapped = tuple(as_callback(cb) for cb in callbacks)
    return wrapped if rank == 0 else tuple(cb for cb in wrapped if cb.runs_on_every_rank)


#: ``name -> builder(cfg) -> list[Callback]``: callbacks and stage hooks that a method's config keys
#: switch on (DrNAS' progressive learning, ...). A method module registers its builder when imported
#: (:func:`register_method_callbacks`); the search builds them before its own default callbacks
#: (:func:`noisydarts.search.callbacks.default_callbacks`).
METHOD_CALLBACKS: dict = {}


def register_method_callbacks(name: str, builder) -> None:
    """Register ``builder(cfg) -> list[Callback]`` (an empty list when its keys leave it off)."""
    METHOD_CALLBACKS[name] = builder


def method_callbacks(cfg: dict) -> list:
    """Every registered method callback a resolved search config switches on, in registration order."""
    return [cb for builder in METHOD_CALLBACKS.values() for cb in builder(cfg)]
