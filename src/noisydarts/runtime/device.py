"""The device a run computes on and the precision it runs at."""

from __future__ import annotations

import contextlib

import torch

from .distributed import pick_device

__all__ = ["autocast", "pick_device", "precision"]


def autocast(cfg: dict, device: torch.device):
    """bf16 autocast on CUDA (``amp: auto`` or ``on``); full precision on CPU."""
    if device.type == "cuda" and cfg["amp"] in ("auto", "on"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision(cfg: dict, device: torch.device) -> str:
    """What :func:`autocast` runs at, in words (for the start-of-run line), and ``compile``."""
    words = "bf16 autocast" if device.type == "cuda" and cfg["amp"] in ("auto", "on") else "fp32"
    mode = cfg.get("compile", "off")
    return words if mode == "off" else f"{words}, torch.compile ({mode})"
