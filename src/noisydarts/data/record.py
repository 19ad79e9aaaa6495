"""``RUN_DIR/data.json``: what data a run found, written with its first checkpoint.

A search or training run records the data it used, resolved: the absolute path (or dataset
name), the class names in label order, the number of training images, the resolution and the
normalization statistics. ``noisydarts train SEARCH_RUN`` checks that the folder still holds the
search's classes; ``noisydarts info TRAINING_RUN`` sizes the network for its number of classes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

DATA_RECORD = "data.json"


def data_record(data: dict, dataset) -> dict:
    """The record of ``dataset`` (a training split, in memory or streamed) opened from ``data``."""
    return {"name": str(data["name"]), "classes": list(dataset.classes), "images": len(dataset),
            "resolution": int(data["resolution"]), "channels": int(dataset.channels),
            "mean": [float(v) for v in dataset.mean], "std": [float(v) for v in dataset.std]}


def data_line(data: dict, splits: tuple[str, ...], used: int | None = None) -> str:
    """The line a run prints after its start line: what data it found (path and layout, classes,
    images per split, resolution, non-square images seen) and how many images it uses, when
    ``data.limit`` takes a sample."""
    from .factory import data_summary_line, describe_data

    line = data_summary_line(describe_data(data, splits))
    if data.get("limit") is not None and used is not None:
        line += f"; using {used:,} of the training images (data.limit {data['limit']:,})"
    return line


def read_data_record(run_dir: str | Path) -> dict | None:
    """A run's data record, or None when it has none (a run from before records, or one that
    stopped before its first checkpoint). A damaged file is one line naming it."""
    path = Path(run_dir) / DATA_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}): delete it (it is rewritten by the next "
                        "epoch) or restore it") from e
    if not (isinstance(record, dict) and isinstance(record.get("classes"), list)):
        raise UserError(f"{path} is damaged (no class list): delete it or restore it")
    return record
