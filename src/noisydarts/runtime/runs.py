"""Run directories: created fresh, written atomically, never overwritten, one writer at a time.

Everything that reads or writes a run goes through here, so that every command behaves the same:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_torch_save`: a reader (or
  a crash) never sees a half-written file; files get the mode the umask asks for; a location that
  cannot be written is one :class:`UserError` line naming it.
* :func:`load_torch_file`: the one way a checkpoint or weights file is loaded, with
  ``weights_only=True`` (a crafted file cannot run code); anything else is one line naming the
  file and what it should be.
* :func:`read_text`: a text file the user gave (config, genotype), or one line saying why not.
* :func:`active_run`: the lock that makes a process the only writer of a run directory.
* :func:`load_run`: the files ``--resume`` needs (config.yaml, checkpoint.pt), each checked.

A run killed before its first checkpoint (``kill -9`` while the first epoch ran) has nothing to
resume, so its ``--out`` may be given again: :func:`new_run_dir` accepts a directory that holds no
checkpoint and only files such a run writes (:func:`stopped_before_checkpoint`), and
:func:`clear_stopped_run`, under the run's lock (so a run still in its first epoch, which holds
the lock, is never touched), removes them and says so. Anything else in the directory, or a
checkpoint, keeps it refused as before.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ..errors import UserError, os_reason, path_kind, read_text

CHECKPOINT, CONFIG, LOCK = "checkpoint.pt", "config.yaml", ".lock"
#: A key that only one kind of run's config.yaml has, to tell a search run from a training run.
RUN_MARKERS = {"search": "space", "train": "network"}


def peek_run_config(run_dir: str | Path) -> dict | None:
    """A run directory's config.yaml as a mapping, or None when there is none or it does not read
    (for telling kinds of runs apart; the commands that use a run read it with :func:`read_run_config`,
    which says what is wrong)."""
    import yaml

    try:
        raw = yaml.safe_load((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def run_kind(run_dir: str | Path) -> str | None:
    """``"search"`` or ``"train"``: which kind of run ``run_dir`` holds (:data:`RUN_MARKERS`), else None."""
    raw = peek_run_config(run_dir) if path_kind(run_dir) == "dir" else None
    if raw is None:
        return None
    kinds = [kind for kind, marker in RUN_MARKERS.items() if marker in raw]
    return kinds[0] if len(kinds) == 1 else None


# --- reading and writing files --------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``: a reader
    (or a crash) never sees a half-written file. The file gets ``0o666 & ~umask`` like any file
    ``open()`` creates (``mkstemp`` alone would leave it 0600)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path}: {os_reason(e)}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path}: {os_reason(e)}") from e
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def append_jsonl(path: str | Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {path}: {os_reason(e)}") from e


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file; a line cut by a crash (or anything that is not a JSON
    object) ends the readable part."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {os_reason(e)}") from e
    records = []
    for line in data.splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records


def _load_error_reason(e: Exception) -> str:
    text = str(e)
    if "GLOBAL" in text:  # the weights-only unpickler refused to import something
        if "numpy" in text:
            return ("it holds numpy objects, as older noisydarts checkpoints did; objects are not loaded, "
                    "since loading them could run code")
        return "it holds Python objects besides tensors and plain values; loading those could run code, so it is not loaded"
    import pickle
    import zipfile

    if isinstance(e, (EOFError, pickle.UnpicklingError, zipfile.BadZipFile)) or "zip" in text.lower():
        return "truncated or not a PyTorch file"
    return f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else type(e).__name__


def load_torch_file(path: str | Path, kind: str, keys=(), hint: str = "") -> dict:
    """Load a checkpoint or weights file with ``weights_only=True`` and check it is a dict with
    ``keys`` (a dict of key -> type checks the types too). ``kind`` names what it should be ("search checkpoint"); ``hint`` says what to do.
    Every failure is one :class:`UserError` line naming the file."""
    import torch

    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if path_kind(path) != "file":
        raise UserError(f"{path} not found{tail}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the unpickler's note on a pickle protocol it reads anyway
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to load is the same answer: not such a file
        raise UserError(f"{path} is not a valid {kind} ({_load_error_reason(e)}){tail}") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a valid {kind} (it holds a {type(obj).__name__}, not a dict){tail}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UserError(f"{path} is not a valid {kind} (no {', '.join(map(repr, missing))} entry){tail}")
    for key, kinds in (keys.items() if isinstance(keys, dict) else ()):
        if not isinstance(obj[key], kinds) or isinstance(obj[key], bool) and bool not in _as_tuple(kinds):
            raise UserError(f"{path} is not a valid {kind} (its {key!r} entry is a {type(obj[key]).__name__}){tail}")
    return obj


def _as_tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


# --- run directories ------------------------------------------------------------------------------

def _written_before_checkpoint(name: str, restartable) -> bool:
    """Whether ``name`` is one a run writes before its first checkpoint: one of ``restartable``,
    the lock, or the temporary file of an atomic write cut short (``.NAME.XXXX.tmp``; of the first
    checkpoint too)."""
    if name in restartable or name == LOCK:
        return True
    return name.startswith(".") and name.endswith(".tmp") and any(
        name.startswith(f".{n}.") for n in (*restartable, CHECKPOINT))


def stopped_before_checkpoint(path: str | Path, restartable) -> bool:
    """Whether the directory ``path`` holds a run that stopped before its first checkpoint: no
    checkpoint.pt, something besides the lock, and nothing but the files (or folders) named in
    ``restartable`` that a run writes before then."""
    try:
        names = [p.name for p in Path(path).iterdir()]
    except OSError:
        return False
    return (bool(restartable) and CHECKPOINT not in names and any(n != LOCK for n in names)
            and all(_written_before_checkpoint(n, restartable) for n in names))


def _not_empty(path: Path) -> UserError:
    return UserError(f"{path} already exists and is not empty: choose another --out, or --resume {path} to continue it")


def clear_stopped_run(run_dir: str | Path, restartable) -> bool:
    """Under the run's lock: if ``run_dir`` holds a run that stopped before its first checkpoint,
    remove its files (one line on stderr says so) and return True; an empty directory: False;
    anything else (a checkpoint written since :func:`new_run_dir` looked): refused."""
    run_dir = Path(run_dir)
    if not any(p.name != LOCK for p in run_dir.iterdir()):
        return False
    if not stopped_before_checkpoint(run_dir, restartable):
        raise _not_empty(run_dir)
    for p in run_dir.iterdir():
        if p.name == LOCK:
            continue  # ours now
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as e:
            raise UserError(f"cannot remove {p} ({os_reason(e)}) to start the run in {run_dir} again: "
                            "remove it, or choose another --out") from e
    print(f"{run_dir} held a run that stopped before its first checkpoint; starting it again", file=sys.stderr,
          flush=True)
    return True


def new_run_dir(out: str | Path | None, label: str, root: str | Path = "runs",
                restartable=()) -> tuple[Path, bool]:
    """Create the run directory; return it and whether it was created here. An explicit ``out``
    must not hold files already, unless it holds a run that stopped before its first checkpoint
    (only names in ``restartable``: see :func:`stopped_before_checkpoint`; the caller clears it
    with :func:`clear_stopped_run` once it holds the lock); the default
    ``runs/<timestamp>-<label>`` gets a numeric suffix rather than reuse an existing one."""
    if out is not None:
        path = Path(out)
        try:
            exists = path.exists()
            # (a lone .lock is no content: its holder, if alive, is named when the lock is taken)
            if exists and (not path.is_dir() or any(p.name != LOCK for p in path.iterdir())) \
                    and not (path.is_dir() and stopped_before_checkpoint(path, restartable)):
                raise _not_empty(path)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the run directory {path} ({os_reason(e)}): give another --out") from e
        return path, not exists
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{label}"
    for n in range(1000):
        path = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path, True
        except FileExistsError:
            if not Path(root).is_dir():
                raise UserError(f"cannot create a run directory under {root}: it is a file; give one with --out") from None
            continue
        except OSError as e:
            raise UserError(f"cannot create a run directory under {root} ({os_reason(e)}): give one with --out") from e
    raise UserError(f"cannot create a new run directory under {root}: give one with --out")


def remove_failed_run(run_dir: Path, created: bool, names=(CONFIG,)) -> None:
    """A run that failed before its first epoch (bad data, say) leaves no directory behind;
    only what this run wrote is removed."""
    for name in names:
        (run_dir / name).unlink(missing_ok=True)
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()


# --- one writer per run ---------------------------------------------------------------------------

def _process_start(pid: int) -> str | None:
    """The start time of a process (Linux), to tell it from a later process with the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, owned by someone else
    return start is None or _process_start(pid) in (None, start)


class RunLock:
    """``RUN_DIR/.lock``: held by the one process that writes the run.

    On POSIX the lock is an ``flock`` on that file: the kernel releases it when its holder exits
    in any way, ``kill -9`` included, so a lock is never stale. Elsewhere the file is created with
    ``O_EXCL`` and is stale when its pid no longer runs on this host. Either way the file holds
    the holder's pid, host, command and start time, for the message of a process that is refused.
    """

    def __init__(self, run_dir: str | Path, command: str):
        self.path, self.command, self._fd, self._flock = Path(run_dir) / LOCK, command, None, True

    def _identity(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "pid_start": _process_start(os.getpid())}).encode()

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: dict) -> UserError:
        run_dir = self.path.parent
        who = (f"{holder.get('command', 'noisydarts')} process {holder.get('pid', '?')} on {holder.get('host', '?')}"
               f" (since {holder.get('started', '?')})") if holder else "another process"
        return UserError(f"{run_dir} is in use by {who}: one process writes a run at a time; wait for it to end "
                         f"or stop it (if it is gone for good, delete {self.path})")

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:
            fcntl = None
        for _ in range(10):
            fd = self._try_flock(fcntl) if fcntl is not None else None
            if fd is None:
                fd = self._try_exclusive()
            if fd is not None:
                os.write(fd, self._identity())
                self._fd = fd
                return self
        raise UserError(f"could not lock {self.path}: other processes keep taking it; try again")

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags, 0o666)
        except FileExistsError:
            raise
        except OSError as e:
            raise UserError(f"cannot write {self.path} ({os_reason(e)}): the run directory must be writable") from e

    def _try_flock(self, fcntl) -> int | None:
        """An fd holding the flock; None to retry (the file was replaced) or, when the file system
        has no locks, to use :meth:`_try_exclusive` (``self._flock`` is then False)."""
        if not self._flock:
            return None
        fd = self._open(os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self._refuse(self._holder()) from None
            self._flock = False  # e.g. ENOLCK on a file system without locks: the O_EXCL file instead
            with contextlib.suppress(OSError):
                if self.path.stat().st_size == 0:
                    self.path.unlink()  # the empty file just opened here
            return None
        try:  # the holder we waited on may have removed the file: lock the one at the path
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        return fd

    def _try_exclusive(self) -> int | None:
        """Create the file with O_EXCL; a file left by a process gone from this host is stale."""
        try:
            return self._open(os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = self._holder()
            same_host = holder.get("host") == socket.gethostname()
            try:
                pid = int(holder.get("pid", -1))
            except (TypeError, ValueError):
                pid = -1
            if holder and same_host and pid > 0 and not _pid_alive(pid, holder.get("pid_start")):
                self.path.unlink(missing_ok=True)
                return None
            raise self._refuse(holder) from None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: the next process locks a fresh file
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def active_run(run_dir: str | Path, command: str):
    """Hold ``run_dir``'s lock for the body. A Ctrl-C inside gets the run directory and command
    attached (``run_dir``, ``command``), so the CLI can say exactly how to resume."""
    lock = RunLock(run_dir, command).acquire()
    try:
        yield
    except KeyboardInterrupt as e:
        e.run_dir, e.command = Path(run_dir), command
        raise
    finally:
        lock.release()


# --- resume -----------------------------------------------------------------------------------------

def resume_dir(run_dir: str | Path, command: str) -> Path:
    """``run_dir`` if it is a directory (checked before its lock is taken), else one line."""
    if path_kind(run_dir) != "dir":
        raise UserError(f"--resume {run_dir}: no such directory; give the directory of a {command} run")
    return Path(run_dir)


def read_run_config(run_dir: str | Path, command: str, resolve) -> tuple[dict, dict]:
    """``(config, provenance)`` from a run's config.yaml; ``resolve(dict) -> config`` checks it
    like any config. A damaged file, or one of the other kind of run, is one line blaming it."""
    import yaml

    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG
    text = read_text(cfg_path, f"the config.yaml this {command} run was started with")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path} is not valid YAML ({str(e).splitlines()[0]}): restore the file this run "
                        "was started with") from e
    except RecursionError as e:
        raise UserError(f"{cfg_path} is nested too deeply to be a config: restore the file this run was started with") from e
    if not isinstance(raw, dict):
        raise UserError(f"{cfg_path} does not hold a config mapping: restore the file this run was started with")
    provenance = raw.pop("provenance", None)
    marker = RUN_MARKERS.get(command)
    for other, other_marker in RUN_MARKERS.items():
        if other != command and marker not in raw and other_marker in raw:
            raise UserError(f"{run_dir} is a {other} run: continue it with `noisydarts {other} --resume {run_dir}`")
    try:
        cfg = resolve(raw)
    except UserError as e:
        raise UserError(f"{cfg_path}: {e} (restore the file this run was started with)") from e
    return cfg, provenance if isinstance(provenance, dict) else {}


def load_run(run_dir: str | Path, command: str, resolve, keys=()) -> tuple[Path, dict, dict, dict]:
    """What ``noisydarts COMMAND --resume RUN_DIR`` needs: ``(run_dir, config, checkpoint state,
    provenance)``, each file checked: a directory that is not a run (or is the other kind of run),
    a damaged config.yaml (:func:`read_run_config`), a checkpoint that is not one
    (:func:`load_torch_file` with ``keys``)."""
    run_dir = resume_dir(run_dir, command)
    flag = f"--resume {run_dir}"
    ckpt, cfg_path = run_dir / CHECKPOINT, run_dir / CONFIG
    if path_kind(cfg_path) != "file" or path_kind(ckpt) != "file":
        missing = " and ".join(n for n, p in ((CHECKPOINT, ckpt), (CONFIG, cfg_path)) if path_kind(p) != "file")
        why = (f" (it stopped before its first checkpoint: start it again with the same command (--out "
               f"{shlex.quote(str(run_dir))}))" if missing == CHECKPOINT else "")
        raise UserError(f"{flag}: no {missing} there{why}; give the directory of a {command} run")
    cfg, provenance = read_run_config(run_dir, command, resolve)
    state = load_torch_file(ckpt, f"{command} checkpoint", keys,
                            f"it cannot be resumed; start a new run (noisydarts {command} --out NEW_DIR)")
    return run_dir, cfg, state, provenance


@contextlib.contextmanager
def restoring(run_dir: str | Path, files: str = CONFIG):
    """Around loading a checkpoint's state into a freshly built model and optimizers: a
    checkpoint that does not fit the config (``files`` edited after the run started) is one
    line instead of a size-mismatch traceback."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"--resume {run_dir}: checkpoint.pt does not fit {files} ({first}); was {files} "
                        "edited? restore it, or start a new run") from e


# --- provenance and the start line --------------------------------------------------------------------

def git_commit() -> str | None:
    """The commit of the noisydarts source this runs from (``+dirty`` when tracked files are
    modified), or None when it is not a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)

    try:
        if git("ls-files", "--error-unmatch", Path(__file__).name).returncode != 0:
            return None  # not tracked here: an install inside somebody else's repository
        commit = git("rev-parse", "HEAD").stdout.strip()
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", ".").stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    argv = list(sys.argv) or ["python"]
    prog = Path(argv[0]).name
    if prog == "__main__.py":
        prog = "python -m noisydarts"
    return " ".join([prog, *map(shlex.quote, argv[1:])])


def provenance(preset: str | None = None) -> dict:
    """What a run's config.yaml records about how it was made (key ``provenance``)."""
    import torch

    from .._version import __version__

    return {"noisydarts": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "git": git_commit(), "command": command_line(), "preset": preset,
            "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def start_line(command: str, device, precision: str, run_dir: Path, preset: str | None = None,
               resumed_at: int | None = None, world: int = 1) -> str:
    what = f"resuming after epoch {resumed_at}" if resumed_at is not None else "starting"
    where = f"device {device}" if world == 1 else f"{world} processes (rank 0 on {device})"
    parts = [where, f"precision {precision}", f"run directory {run_dir}"]
    if preset:
        parts.append(f"preset {preset}")
    return f"{command}: {what}: " + ", ".join(parts)
