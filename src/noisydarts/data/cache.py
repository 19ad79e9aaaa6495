"""The decoded-image cache: an image folder decoded once, then memory-mapped by every later run.

Decoding a folder is the slow part of starting a run on it (50,000 CIFAR-10 JPEGs: about 20 s on
two cores); the decoded uint8 pixels of a 32-px CIFAR-sized folder are small (150 MB). So the
first run decodes into a cache entry on disk, and later runs (``search``, ``train``, ``evaluate``)
copy the pixels from it.

**An entry** covers one *source folder* at one resolution and resize mode: the pool a training
split is drawn from (``DIR`` or ``DIR/train``) or a test folder (``DIR/test`` or ``DIR/val``). The
held-out split (``data.val_split``) is a set of rows of the pool's entry, so changing
``val_split`` or ``split_seed`` decodes nothing again. Its key is the sha256 of (format version,
the source folder's resolved path, resolution, resize mode, and every file's path, size and
``mtime_ns`` in listing order): a file changed, added or removed gives a new key. A new entry takes
over the rows of the files that did not change from the folder's previous entry (same source,
resolution and resize mode), which is then deleted: touching one file decodes one image, and the
cache holds one entry per folder and resolution.

**Files** of an entry ``NAME`` (the key's first 32 hex digits) in the cache directory:

* ``NAME.u8``: the pixels, uint8 ``[N, 3, R, R]``, raw (``np.memmap``), preallocated;
* ``NAME.index``: per image a CRC-32 of its pixels and a state byte (0: not decoded yet, 1:
  decoded from a square image, 2: decoded from a non-square one), so an entry fills lazily:
  ``data.limit`` decodes only the images a run uses (and the statistics' sample);
* ``NAME.files``: the listing (path, size, mtime_ns per image), JSON, to carry rows over to the
  next entry of the folder;
* ``NAME.json``: the header (format, key, source, N, R, resize mode, and the channel statistics
  once computed), written last and atomically: an entry without it is unfinished and recreated;
* ``NAME.lock``: ``fcntl.flock`` lock, held while an entry is created, checked, filled or read, so
  two processes never decode the same image twice or read a row being written.

**Never trusted**: an entry whose header does not parse or match, whose files have the wrong size,
or whose index holds an unknown state is deleted and rebuilt, with a one-line warning. Every row a
run reads is checked against its CRC-32 after it is copied out (0.1 s for 50,000 images at 32 px);
a row that fails is decoded again, with a warning. Rows are written before their state byte, so a
process killed mid-decode (``kill -9``) leaves rows that are simply not decoded yet (the pages it
wrote are in the kernel's page cache, which outlives the process). No ``msync`` after decoding (it
cost 10 % of a cold start): after a power cut, a row whose pixels did not reach the disk fails its
checksum. Nothing is read with pickle: JSON and raw bytes only.

**Where**: ``data.cache_dir``; null: ``$NOISYDARTS_CACHE_DIR`` if set, else
``~/.cache/noisydarts/decoded``. Deleting the directory clears the cache; moving it needs the
setting or the variable. ``data.cache: false`` decodes in memory and writes nothing; so does a cache
directory that cannot be written (with a one-line warning), and a disk too full for the entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from .folder import decode_sized, read_file, run_in_threads

try:
    import fcntl
except ImportError:  # not on Windows: no locking between processes there
    fcntl = None

FORMAT = 1
CACHE_ENV = "NOISYDARTS_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/noisydarts/decoded"
MISSING, SQUARE, NOT_SQUARE = 0, 1, 2
INDEX_DTYPE = np.dtype([("crc", "<u4"), ("state", "u1"), ("pad", "u1", (3,))])
#: Decoding more images than this announces itself with one line on stderr (else only the bar).
ANNOUNCE_ABOVE = 2000
CHUNK = 256

_WARNED: set = set()          # one warning per (kind, place) per process
_IN_MEMORY: dict = {}         # key -> DecodedImages decoded in memory (no cache), the last few kept
_UNWRITABLE: set = set()      # cache directories found unwritable in this process
KEEP_IN_MEMORY = 4
_OPEN_LOCK = threading.Lock()


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` (the runtime layer's
    ``atomic_write_text``, which this layer may not import); a UserError if it cannot."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e


def progress_bar(total: int, desc: str):
    """A tqdm bar on a terminal or in a notebook, none in a log file (as noisydarts.runtime.progress)."""
    try:
        shown = sys.stderr.isatty() or "ipykernel" in sys.modules
    except (AttributeError, ValueError):
        shown = False
    if not shown:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def warn_once(tag, message: str) -> None:
    if tag not in _WARNED:
        _WARNED.add(tag)
        warnings.warn(message, stacklevel=3)


def cache_directory(setting: str | os.PathLike | None) -> Path:
    """The cache directory: `setting` (``data.cache_dir``), else ``$NOISYDARTS_CACHE_DIR``, else the default."""
    chosen = setting or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().absolute()


def listing(source: Path, files: Sequence[str]) -> list[list]:
    """``[relative path, size, mtime_ns]`` of every file: what the key is made of."""
    out = []
    prefix = str(source).rstrip(os.sep) + os.sep
    for f in files:
        try:
            st = os.stat(f)
        except OSError as e:
            raise UserError(f"cannot read image file {f} ({e.strerror or e}): fix its permissions or remove it") from e
        f = str(f)
        out.append([f[len(prefix):] if f.startswith(prefix) else os.path.relpath(f, source), st.st_size, st.st_mtime_ns])
    return out


def entry_key(source: Path, records: list[list], resolution: int, resize_mode: str) -> str:
    blob = json.dumps([FORMAT, str(source), resolution, resize_mode, records], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class DecodedImages:
    """The decoded pixels of one source folder's files: in a cache entry (memory-mapped) or, with
    no cache directory, in memory. :meth:`get` decodes the rows not decoded yet and returns them."""

    def __init__(self, source: Path, files: Sequence[str], records: list[list], resolution: int,
                 resize_mode: str, key: str, directory: Path | None):
        self.source, self.files, self.records = source, list(files), records
        self.resolution, self.resize_mode, self.key = resolution, resize_mode, key
        self.directory = directory
        self.name = key[:32]
        self.stats: dict = {}
        self._thread_lock = threading.RLock()
        n, r = len(files), resolution
        if directory is None:
            self.images = np.zeros((n, 3, r, r), dtype=np.uint8)
            self.index = np.zeros(n, dtype=INDEX_DTYPE)
        else:
            self._open_entry()

    # --- the entry's files ---
    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.name}{suffix}"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.resolution, self.resolution)

    def _header(self) -> dict:
        return {"format": FORMAT, "key": self.key, "source": str(self.source), "count": len(self.files),
                "resolution": self.resolution, "resize": self.resize_mode, "stats": self.stats}

    def _damage(self) -> str | None:
        """Why the entry on disk cannot be used (None: it can); no header at all is "missing"."""
        try:
            header = json.loads(self.path(".json").read_text())
        except FileNotFoundError:
            return "missing"
        except (OSError, ValueError) as e:
            return f"its header does not read ({type(e).__name__})"
        expected = self._header()
        if not isinstance(header, dict) or any(header.get(k) != expected[k] for k in expected if k != "stats"):
            return "its header does not match the folder"
        try:
            sizes = self.path(".u8").stat().st_size, self.path(".index").stat().st_size
        except OSError:
            return "a file of it is missing"
        n = len(self.files)
        if sizes != (n * 3 * self.resolution ** 2, n * INDEX_DTYPE.itemsize):
            return "a file of it has the wrong size"
        stats = header.get("stats")
        self.stats = stats if isinstance(stats, dict) else {}
        return None

    def _map(self) -> None:
        mode = "r+"
        self.images = np.memmap(self.path(".u8"), np.uint8, mode, shape=self.shape) if len(self.files) else \
            np.zeros(self.shape, np.uint8)
        self.index = np.memmap(self.path(".index"), INDEX_DTYPE, mode, shape=(len(self.files),)) if len(self.files) \
            else np.zeros(0, INDEX_DTYPE)

    def _open_entry(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.locked():
            why = self._damage()
            if why is None:
                self._map()
                states = np.asarray(self.index["state"])
                if states.size and states.max(initial=0) > NOT_SQUARE:
                    why = "its index holds unknown values"
            if why is not None:
                if why != "missing":
                    warnings.warn(f"the decoded-image cache entry {self.path('.u8')} of {self.source} is damaged "
                                  f"({why}): decoding again", stacklevel=4)
                self._create()

    def _remove_files(self, name: str) -> None:
        for suffix in (".json", ".u8", ".index", ".files"):
            (self.directory / f"{name}{suffix}").unlink(missing_ok=True)

    def _create(self) -> None:
        """A fresh entry, with the rows of unchanged files taken over from the folder's previous one."""
        self._remove_files(self.name)
        try:
            self._write_entry()
        except BaseException:  # a full disk, say: no half-made entry is left behind
            self._remove_files(self.name)
            raise

    def _write_entry(self) -> None:
        n = len(self.files)
        atomic_write_text(self.path(".files"), json.dumps(self.records, separators=(",", ":")))
        for suffix, size in ((".u8", n * 3 * self.resolution ** 2), (".index", n * INDEX_DTYPE.itemsize)):
            with open(self.path(suffix), "wb") as fh:
                try:  # reserve the space: a write to a mapped page of a full disk would kill the process
                    if size:
                        os.posix_fallocate(fh.fileno(), 0, size)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
                    fh.truncate(size)
                except AttributeError:  # no posix_fallocate (macOS)
                    fh.truncate(size)
        self._map()
        self.stats = {}
        for old in self._previous_entries():
            self._take_over(old)
            self._remove_files(old)
            (self.directory / f"{old}.lock").unlink(missing_ok=True)
        atomic_write_text(self.path(".json"), json.dumps(self._header()))

    def _previous_entries(self) -> list[str]:
        out = []
        for header_path in self.directory.glob("*.json"):
            name = header_path.name[:-len(".json")]
            if name == self.name:
                continue
            try:
                header = json.loads(header_path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(header, dict) and header.get("source") == str(self.source) and \
                    header.get("resolution") == self.resolution and header.get("resize") == self.resize_mode:
                out.append(name)
        return out

    def _take_over(self, old: str) -> None:
        """Copy the decoded rows of files unchanged since entry `old` (checked against their CRC)."""
        try:
            records = json.loads((self.directory / f"{old}.files").read_text())
            count = len(records)
            r = self.resolution
            images = np.memmap(self.directory / f"{old}.u8", np.uint8, "r", shape=(count, 3, r, r))
            index = np.memmap(self.directory / f"{old}.index", INDEX_DTYPE, "r", shape=(count,))
        except (OSError, ValueError, TypeError):
            return
        where = {tuple(rec): i for i, rec in enumerate(records) if isinstance(rec, list)}
        for row, rec in enumerate(self.records):
            i = where.get(tuple(rec))
            if i is None or index[i]["state"] not in (SQUARE, NOT_SQUARE):
                continue
            pixels = np.array(images[i])
            if zlib.crc32(pixels) == int(index[i]["crc"]):
                self.images[row] = pixels
                self.index[row] = index[i]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """This entry to this process alone (threads and, through flock, other processes)."""
        with self._thread_lock:
            if self.directory is None or fcntl is None:
                yield
                return
            with open(self.path(".lock"), "a+") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # --- decoding and reading ---
    def get(self, rows: np.ndarray) -> np.ndarray:
        """The pixels of `rows` (uint8 ``[len(rows), 3, R, R]``), decoding those not decoded yet: a
        copy, or, in memory and for a range of rows, a view (treat it as read-only)."""
        rows = np.asarray(rows, dtype=np.int64)
        with self.locked():
            self._decode(np.unique(rows[self.index["state"][rows] == MISSING]))
            if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
                # a range: one read (a view in memory), no gather. read() into a fresh array is ~8x
                # faster than copying out of the memory map (no page fault per 4 KB page).
                out = self._read_range(int(rows[0]), len(rows)) if self.directory is not None else \
                    self.images[rows[0]:rows[-1] + 1]
            else:
                out = np.array(self.images[rows])
            crcs, states = np.asarray(self.index["crc"][rows]), np.asarray(self.index["state"][rows])
            bad = [k for k in range(len(rows)) if states[k] == MISSING or zlib.crc32(out[k]) != int(crcs[k])]
            if bad:
                warnings.warn(f"{len(bad)} image(s) in the decoded-image cache {self.path('.u8')} fail their "
                              f"checksum: decoding them again", stacklevel=3)
                again = np.unique(rows[bad])
                self.index["state"][again] = MISSING
                self._decode(again)
                out[bad] = self.images[rows[bad]]
        return out

    def _read_range(self, start: int, count: int) -> np.ndarray:
        """Rows ``start .. start + count`` of the pixel file, read into a new array."""
        out = np.empty((count, *self.shape[1:]), np.uint8)
        row_bytes = out[0].nbytes if count else 0
        with open(self.path(".u8"), "rb") as fh:
            fh.seek(start * row_bytes)
            if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise OSError(f"{self.path('.u8')} is shorter than its header says")
        return out

    def states(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.index["state"][np.asarray(rows, dtype=np.int64)])

    def _decode(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        r = self.resolution
        if len(rows) > ANNOUNCE_ABOVE:
            where = f"into the cache {self.directory} (once; later runs start at once)" if self.directory else \
                "in memory (no cache: every run decodes them again)"
            print(f"decoding {len(rows):,} images of {self.source} at {r} px {where}", file=sys.stderr, flush=True)
        bar = progress_bar(len(rows), "decoding")
        bar_lock = threading.Lock()
        # plain ndarray views, taken once: a memmap's per-item indexing is several times slower
        images, crcs, states = (np.asarray(a) for a in (self.images, self.index["crc"], self.index["state"]))

        def work(chunk: np.ndarray) -> None:
            for row in chunk.tolist():
                name = self.files[row]
                x, square = decode_sized(read_file(name), name, r, self.resize_mode)
                pixels = np.ascontiguousarray(x.numpy())
                images[row] = pixels  # the pixels, then the checksum, then the state: a kill leaves "missing"
                crcs[row] = zlib.crc32(pixels)
                states[row] = SQUARE if square else NOT_SQUARE
            if bar is not None:
                with bar_lock:
                    bar.update(len(chunk))

        chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
        workers = min(4, os.cpu_count() or 1, len(chunks))
        try:
            run_in_threads(work, chunks, workers)
        finally:  # no msync: the kernel writes the pages back; a process killed now loses nothing, and a
            # power cut's torn rows fail their checksum
            if bar is not None:
                bar.close()

    # --- the statistics, kept in the header ---
    def cached_stats(self, tag: str):
        return self.stats.get(tag)

    def store_stats(self, tag: str, value) -> None:
        with self.locked():
            self.stats[tag] = value
            if self.directory is not None:
                try:
                    atomic_write_text(self.path(".json"), json.dumps(self._header()))
                except UserError as e:
                    warn_once(("stats", str(self.directory)), f"could not record the statistics in the cache ({e})")


def open_decoded(source: Path, files: Sequence[str], resolution: int, resize_mode: str, *, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> DecodedImages:
    """The decoded pixels of `files` (a source folder's listing) at `resolution`: the cache entry,
    created if needed, or in memory when `cache` is off or the cache directory is not writable.

    A cache entry is opened afresh every time (its header and sizes checked again: another process
    may have rebuilt it); pixels decoded in memory are kept for the process's next call."""
    records = listing(source, files)
    key = entry_key(source, records, resolution, resize_mode)
    directory = cache_directory(cache_dir) if cache else None
    with _OPEN_LOCK:
        if directory is not None and directory not in _UNWRITABLE:
            try:
                return DecodedImages(source, files, records, resolution, resize_mode, key, directory)
            except (OSError, UserError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                _UNWRITABLE.add(directory)
                warn_once(("unwritable", str(directory)),
                          f"cannot use the decoded-image cache {directory} ({reason}): decoding in memory, again "
                          "in every run; set data.cache_dir (or $NOISYDARTS_CACHE_DIR) to a writable folder, or "
                          "data.cache=false")
        decoded = _IN_MEMORY.pop(key, None) or DecodedImages(source, files, records, resolution, resize_mode, key, None)
        _IN_MEMORY[key] = decoded  # most recent last
        while len(_IN_MEMORY) > KEEP_IN_MEMORY:
            del _IN_MEMORY[next(iter(_IN_MEMORY))]
        return decoded
