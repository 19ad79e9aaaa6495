"""Seeding and the RNG state a checkpoint keeps, per rank under torchrun.

Every generator a run draws from (Python's, NumPy's, torch's CPU and CUDA generators) is seeded
from the config's ``seed`` and saved in the checkpoint as tensors and plain values only, so a
resume continues the same random stream and checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from . import distributed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state, as tensors and plain values only: checkpoints load with ``weights_only=True``
    (numpy's key array is stored as an int64 tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                    int(has_gauss), float(cached)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, seed: int) -> None:
    """This rank's RNG state from a checkpoint: its own (``rng_ranks``; ``rng`` is rank 0's); a
    rank the run did not have (resumed with more processes) starts from ``rank_seed``."""
    ranks = state.get("rng_ranks") or [state["rng"]]
    rank = distributed.rank()
    if rank < len(ranks):
        set_rng_state(ranks[rank])
    else:
        seed_everything(distributed.rank_seed(seed + int(state["epoch"]), rank))


def checkpoint_rng() -> dict:
    """The ``rng`` entries of a checkpoint: rank 0's state (as a single process writes it) and,
    in a data-parallel run, every rank's (gathered to all ranks; rank 0 writes them)."""
    states = distributed.all_gather_object(rng_state())
    out = {"rng": states[0]}
    if len(states) > 1:
        out["rng_ranks"] = states
    return out


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
