"""Run directories: created fresh, written atomically, never overwritten."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from .errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``: a reader
    (or a crash) never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def append_jsonl(path: str | Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the readable part
    return records


def new_run_dir(out: str | Path | None, label: str, root: str | Path = "runs") -> tuple[Path, bool]:
    """Create the run directory; return it and whether it was created here. An explicit ``out``
    must not hold files already; the default ``runs/<timestamp>-<label>`` gets a numeric suffix
    rather than reuse an existing one."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"{path} already exists and is not empty: choose another --out, or --resume {path} to continue it")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return path, created
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{label}"
    for n in range(1000):
        path = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path, True
        except FileExistsError:
            continue
    raise UserError(f"cannot create a new run directory under {root}: give one with --out")
