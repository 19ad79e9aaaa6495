"""User-facing errors, and the few helpers that raise them.

Anything the user can fix (a bad flag, a missing directory, a malformed file) is raised as
:class:`UserError`. The CLI prints its message as one line and exits with code 2; ``--debug``
shows the traceback instead. Library users can catch it like any exception.
"""


from __future__ import annotations

import difflib
from pathlib import Path


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""

    exit_code = 2


#: What a command's architecture argument may be (used in help texts and error messages).
ARCH_FORMS = ("a zoo name (see `noisydarts zoo`), a search or training run directory, a genotype.json, "
              "or genotype text (Genotype(...), an NB201 string |op~0|+..., CellwiseGenotype(...), LayerwiseGenotype(...))")


class Diverged(UserError):
    """Non-finite loss, weights or alpha. The CLI prints the message and exits with code 3."""

    exit_code = 3


def suggest(word, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- reading files the user named -------------------------------------------------------------------

def os_reason(e: OSError) -> str:
    """The short reason of an OSError, in words a user acts on."""
    if isinstance(e, NotADirectoryError):
        return "a part of that path is a file, not a directory"
    return e.strerror or type(e).__name__


def path_kind(path: str | Path) -> str | None:
    """``"dir"``, ``"file"`` or None (missing, or not a usable path: too long, a NUL byte)."""
    try:
        p = Path(path)
        return "dir" if p.is_dir() else "file" if p.is_file() else None
    except (OSError, ValueError):
        return None


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of a file the user named; ``what`` says what it should be (e.g. "a YAML
    config file"). A missing, unreadable or binary file is one :class:`UserError` line."""
    path = Path(path)
    kind = path_kind(path)
    if kind is None:
        raise UserError(f"{path} not found: give {what}")
    if kind == "dir":
        raise UserError(f"{path} is a directory: give {what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path} ({os_reason(e)}): give {what}") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (a binary file?): give {what}") from e
    if "\x00" in text:
        raise UserError(f"{path} holds NUL bytes (a binary file?): give {what}")
    return text
