"""Progress bars: on a terminal or in a notebook, never in a log file."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, enabled: bool):
    """A progress bar on a terminal (or in a notebook); none when stderr is a file or a pipe (a
    cluster job's log): there the per-epoch lines say the same without a redraw per step."""
    if not enabled or not interactive(sys.stderr):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def interactive(stream) -> bool:
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules  # a Jupyter notebook draws the bar as a widget
