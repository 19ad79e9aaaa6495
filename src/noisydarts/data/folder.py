"""ImageFolder directories: the layout, the file listing, and decoding one image into RGB.

Both data paths (in memory and streaming) list and decode through this module, so they see the
same files, the same classes and the same pixels.

**Layouts** (:func:`find_folder_layout`): ``DIR/<class>/`` (class folders alone), ``DIR/train/<class>/``
alone, or ``DIR/train/`` with ``DIR/test/`` or ``DIR/val/`` (``test/`` when both exist). Images may
be nested deeper inside a class folder. A folder holding ``train/``, ``test/`` or ``val/`` is never
read as class folders: those names mark splits.

**The held-out split** (:func:`held_out_rows`, :func:`folder_split`): a folder without a test split
holds out ``data.val_split`` (null: 0.1) of its pool as the test split, stratified per class by
largest remainder (so the total is ``val_split * N`` rounded half up), never a class's last image,
and drawn with ``data.split_seed`` per class (not the run's seed), so search, training and
evaluation agree on it and a class's draw does not depend on the other classes' images. A folder
with a test split refuses ``data.val_split`` (one line) rather than ignoring it. The pool is listed
without reading the test folder.

**File kinds** (decided at listing time, before any image is decoded, unless said otherwise):

* files whose extension is not in :data:`IMAGE_EXTENSIONS`, and hidden entries (``.name``): ignored;
* a symlink to an image or to a directory: followed. Every real directory is read once per class:
  a symlink loop (a link to a directory that contains the class folder) or a second link to an
  already-read directory is skipped, so no image is listed twice;
* a directory named like an image (``x.jpg/``): a directory like any other, searched for images;
* a broken symlink named like an image: refused, one line;
* something named like an image that is neither a file nor a directory (a FIFO, a socket): refused;
* at read time: an unreadable file (permissions) or an empty file: refused, one line;
* a file that is not an image, or a truncated or corrupt one: refused, one line naming the file.
  The content decides the format, not the extension (a PNG named ``.jpg`` loads).

**Image modes** (:func:`to_rgb`): every image becomes 8-bit RGB.

* ``RGB``: as is. ``L`` (grey) and ``1`` (1-bit): grey replicated into R, G, B (1-bit: 0 or 255).
* ``P`` (palette): the palette colours. ``CMYK``: Pillow's conversion (no ICC colour management).
  ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's conversion.
* Transparency (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, or a ``P``/``L``/``RGB`` image with a
  transparent colour): composited over white, as a viewer shows it. Dropping the alpha channel
  instead shows whatever colour the transparent pixels happen to store.
* 16 bits per channel: ``I;16*`` (16-bit grey PNG, TIFF) is scaled to 8 bits (``round(v / 257)``);
  converting it directly, as Pillow does, clips everything above 255 to white. ``I`` (32-bit
  integer, what 16-bit PGM/PPM decode to) is read the same way when its values lie in
  0..65535, refused otherwise. 16-bit RGB PNGs arrive as ``RGB`` (Pillow keeps the high byte).
* ``F`` (32-bit float): refused; the format does not say what range its values have.
* A mode Pillow cannot convert to RGB: refused.
* EXIF orientation: applied, so the image is upright as a camera viewer shows it.
* Animated GIF/WebP, multi-frame TIFF: the first frame.
"""

from __future__ import annotations

import io
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

SPLITS = ("train", "test")
#: How an image is made square at the resolution: resized whole (squash) or centre-cropped first.
RESIZES = ("squash", "crop")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
NAMED_DATASETS = ("cifar10-mini", "cifar10", "cifar100")  # for messages; see memory.DATASETS
EXIF_ORIENTATION = 0x0112

_HINT = ("give a folder with one subfolder per class (DIR/<class>/...), or DIR/train/<class>/... with an "
         "optional DIR/test/<class>/... (or DIR/val/<class>/...)")
#: Subfolder names that mark a split, never a class (``val`` is the test split when there is no ``test``).
SPLIT_FOLDERS = ("train", "test", "val")
#: The held-out share of a folder without a test split when ``data.val_split`` is null.
AUTO_VAL_SPLIT = 0.1


# ---------------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True)
class FolderLayout:
    """Where an image folder's classes and splits are.

    ``kind``: ``"class folders"`` (``DIR/<class>/``: every image is in the pool), ``"train/"``
    (``DIR/train/<class>/`` alone), ``"train/ + test/"`` or ``"train/ + val/"``. ``pool`` is the
    folder whose class subfolders hold the training images (``DIR`` or ``DIR/train``); ``test`` the
    test split's folder, or None when the test split is held out of the pool (``data.val_split``).
    """

    root: Path
    kind: str
    pool: Path
    test: Path | None
    classes: tuple[str, ...]


def _subdirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def find_folder_layout(path: str | os.PathLike) -> FolderLayout:
    """The layout of the image folder `path` (see :class:`FolderLayout`), checked: at least 2
    classes, and a test split with the training split's class folders.

    A directory with no ``train/`` but exactly one subfolder that has it (the unpacked
    ``cifar10-jpeg.tar.gz``, whose root holds ``cifar10/train``) is unwrapped. A folder holding
    ``train/``, ``test/`` or ``val/`` is split by those folders; only a folder without any of
    them is read as class folders.
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise UserError(f"data directory {root} does not exist: {_HINT}, or a dataset name "
                        f"({', '.join(NAMED_DATASETS)})")
    if not root.is_dir():
        raise UserError(f"data path {root} is not a directory: {_HINT}")
    root = root.resolve()
    if not any((root / s).is_dir() for s in SPLIT_FOLDERS):
        inner = [d for d in _subdirs(root) if (d / "train").is_dir()]
        if len(inner) == 1:
            root = inner[0]
    if (root / "train").is_dir():
        pool = root / "train"
        test = root / "test" if (root / "test").is_dir() else root / "val" if (root / "val").is_dir() else None
        kind = f"train/ + {test.name}/" if test is not None else "train/"
    elif (root / "test").is_dir() or (root / "val").is_dir():
        split = "test" if (root / "test").is_dir() else "val"
        raise UserError(f"data directory {root} has a {split}/ subfolder but no train/ subfolder: put the training "
                        f"images in {root / 'train'}/<class>/, or {_HINT}")
    else:
        pool, test, kind = root, None, "class folders"
    classes = tuple(d.name for d in _subdirs(pool))
    if test is not None:
        other = tuple(d.name for d in _subdirs(test))
        if classes != other:
            only_train = ", ".join(sorted(set(classes) - set(other))) or "-"
            only_test = ", ".join(sorted(set(other) - set(classes))) or "-"
            raise UserError(f"class folders differ between train/ and {test.name}/ in {root} (only in train: "
                            f"{only_train}; only in {test.name}: {only_test}): give both the same class subfolders")
    if len(classes) < 2:
        where = "class subfolder" if kind == "class folders" else "class subfolder of train/"
        raise UserError(f"{pool} has {len(classes)} {where}(s), need at least 2: put each class's images in its "
                        f"own subfolder ({_HINT})")
    return FolderLayout(root, kind, pool, test, classes)


def find_folder_root(path: str | os.PathLike) -> Path:
    """The resolved root of the image folder `path` (see :func:`find_folder_layout`)."""
    return find_folder_layout(path).root


def folder_classes(root: Path) -> tuple[str, ...]:
    """Class names of the image folder at `root`: its pool's class subfolders, sorted (at least 2)."""
    return find_folder_layout(root).classes


# ---------------------------------------------------------------------------------------------
# Splits: a folder's test split, or one held out of its pool


def check_val_split(layout: FolderLayout, val_split: float | None) -> float | None:
    """The share of the pool held out as the test split: None when the folder has a test split
    (giving ``data.val_split`` then is refused), else `val_split` or :data:`AUTO_VAL_SPLIT`."""
    if layout.test is None:
        return AUTO_VAL_SPLIT if val_split is None else float(val_split)
    if val_split is not None:
        raise UserError(f"data.val_split={val_split} holds out part of a folder that has no test split, but "
                        f"{layout.root} has {layout.test.name}/, its test split: remove data.val_split (null) to test "
                        f"on {layout.test}, or move {layout.test.name}/ out of the folder to hold out part of train/")
    return None


def held_out_rows(labels: Sequence[int], fraction: float, seed: int) -> np.ndarray:
    """The sorted indices of the images held out of a pool with these labels: ``fraction * N``
    images in all (rounded half up), stratified (each class gives ``fraction`` of its images, the remainders
    rounded by largest remainder), and never a class's last image, so every class keeps at least
    one training image. Which images of a class: a permutation seeded by (`seed`, the class's
    label), so the choice is independent of the run's seed and of the other classes' images."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    want = fraction * counts
    take = np.minimum(np.floor(want).astype(np.int64), np.maximum(counts - 1, 0))
    left = int(math.floor(fraction * len(labels) + 0.5)) - int(take.sum())
    for c in sorted(range(len(counts)), key=lambda c: (-(want[c] - np.floor(want[c])), c)):
        if left <= 0:
            break
        if take[c] < counts[c] - 1:
            take[c] += 1
            left -= 1
    out = []
    for c, k in enumerate(take):
        if k:
            members = np.flatnonzero(labels == c)
            out.append(members[np.random.default_rng([int(seed), c]).permutation(len(members))[:k]])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """One split of an image folder: the files of its source folder (the pool or the test
    folder, what a decoded-image cache entry covers) and which of them the split takes.

    ``rows`` index ``files``; ``files[rows]`` with ``labels[rows]`` is the split, in listing order.
    ``held_out`` is the number of pool images held out as the test split (0 for a test folder).
    """

    layout: FolderLayout
    split: str
    source: Path
    files: tuple[str, ...]
    labels: tuple[int, ...]
    rows: np.ndarray
    val_split: float | None
    split_seed: int
    held_out: int

    @property
    def split_files(self) -> list[str]:
        return [self.files[i] for i in self.rows]

    @property
    def split_labels(self) -> list[int]:
        return [self.labels[i] for i in self.rows]


def folder_split(path: str | os.PathLike | FolderLayout, split: str, val_split: float | None = None,
                 split_seed: int = 0) -> FolderSplit:
    """`split` (``"train"`` or ``"test"``) of an image folder: the test folder, or the images
    :func:`held_out_rows` holds out of the pool (with `val_split`, `split_seed`); "train" is the
    rest of the pool. Listing the pool never touches the test folder."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    layout = path if isinstance(path, FolderLayout) else find_folder_layout(path)
    fraction = check_val_split(layout, val_split)
    if split == "test" and layout.test is not None:
        files, labels = list_classes(layout.test, layout.classes, pool=False)
        return FolderSplit(layout, split, layout.test, files, labels, np.arange(len(files)), None, split_seed, 0)
    files, labels = list_classes(layout.pool, layout.classes, pool=True)
    if fraction is None:
        return FolderSplit(layout, split, layout.pool, files, labels, np.arange(len(files)), None, split_seed, 0)
    held = held_out_rows(labels, fraction, split_seed)
    if split == "test":
        if not len(held):
            raise UserError(f"{layout.root} has no test split, and data.val_split={fraction} holds out none of its "
                            f"{len(files)} images (every class keeps at least one training image): add images, "
                            f"raise data.val_split, or add a test/ folder beside train/")
        rows = held
    else:
        rows = np.setdiff1d(np.arange(len(files)), held)
    return FolderSplit(layout, split, layout.pool, files, labels, rows, fraction, split_seed, len(held))


# ---------------------------------------------------------------------------------------------
# Listing


def _is_inside(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip(os.sep) + os.sep)


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under `folder` (recursively, hidden entries skipped), in sorted order: a
    folder's own files first, then its subfolders one after the other.

    Symlinks are followed, but every real directory is read once: a link to a directory that
    contains `folder` (a loop) or to one already read is skipped. See the module docstring for
    the file kinds that are refused.
    """
    top = os.path.realpath(folder)
    seen = {top}
    files: list[str] = []
    stack = [str(folder)]
    while stack:
        path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise UserError(f"cannot list the image folder {path} ({e.strerror or e}): fix its permissions") from e
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():  # follows symlinks; a directory named like an image is a directory
                real = os.path.realpath(e.path)
                if real in seen or _is_inside(top, real):  # read already, or a loop back up
                    continue
                seen.add(real)
                subdirs.append(e.path)
            elif e.name.lower().endswith(IMAGE_EXTENSIONS):
                if e.is_file():
                    files.append(e.path)
                elif e.is_symlink() and not os.path.exists(e.path):
                    raise UserError(f"image file {e.path} is a broken symbolic link (to {os.readlink(e.path)}): "
                                    "remove it or fix its target")
                else:
                    raise UserError(f"{e.path} is named like an image but is not a regular file: remove or rename it")
        stack.extend(reversed(subdirs))
    return files


def list_classes(directory: str | os.PathLike, classes: Sequence[str], *, pool: bool) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The image files under ``directory/<class>/`` for each of `classes` and their labels (class
    order). Every class of the training pool (`pool`) needs an image; a test folder may lack some."""
    directory = Path(directory)
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = list_images(directory / cls)
        files += found
        labels += [label] * len(found)
    if not files:
        raise UserError(f"{directory} has no images (looked for {', '.join(IMAGE_EXTENSIONS)} files in "
                        f"its class subfolders): put each class's images in {directory}/<class>/")
    if pool:
        counts = Counter(labels)
        empty = [c for i, c in enumerate(classes) if counts[i] == 0]
        if empty:
            raise UserError(f"class folder(s) {', '.join(empty)} in {directory} have no images: "
                            "add training images or remove the folder (from the test split's folder too)")
    return tuple(files), tuple(labels)


@lru_cache(maxsize=8)
def list_split(root: str, split: str, classes: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The image files of ``root/split`` and their labels (class order); kept for callers of the
    earlier ``train/`` + ``test/``-only API (:func:`folder_split` reads every layout)."""
    return list_classes(Path(root, split), classes, pool=split == "train")


# ---------------------------------------------------------------------------------------------
# Decoding


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file; a UserError (one line, naming the file) if unreadable or empty."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as e:
        raise UserError(f"cannot read image file {path} ({e.strerror or e}): fix its permissions or remove it") from e
    if not blob:
        raise UserError(f"image file {path} is empty (0 bytes): remove or replace it")
    return blob


def to_rgb(im, name: str):
    """`im` (a PIL image of any mode) as an 8-bit RGB PIL image; the decisions are in the module docstring."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise UserError(f"image {name} has 32-bit integer pixels outside 0..65535: convert it to 8 or 16 bits")
        a8 = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 16 -> 8 bits, rounded
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "F":
        raise UserError(f"image {name} has 32-bit float pixels (mode F), whose range the format does not "
                        "define: convert it to 8-bit")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGBA", im.size, (255, 255, 255, 255))
        out.alpha_composite(rgba)
        return out.convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise UserError(f"image {name} has the image mode {mode}, which cannot be converted to RGB: "
                        "save it as 8-bit RGB or grey") from e


def reduction(width: int, height: int, need_w: int, need_h: int) -> int:
    """The largest JPEG draft factor (1, 2, 4, 8) that keeps a ``width x height`` region at least
    twice the ``need_w x need_h`` it is resized to (Pillow's ``reducing_gap=2``: no visible loss)."""
    for r in (8, 4, 2):
        if width / r >= 2 * need_w and height / r >= 2 * need_h:
            return r
    return 1


def decode_image(blob: bytes, name: str, plan: Callable[[int, int], int] | None = None) -> torch.Tensor:
    """Decode one encoded image into uint8 RGB ``[3, H, W]`` (upright, first frame).

    `plan(width, height)` is called with the upright size before decoding and returns a factor
    (1, 2, 4 or 8) by which a JPEG may be decoded smaller (DCT scaling: much faster when the
    image is resized down anyway). The returned tensor has channels-last strides. Any failure
    is a UserError naming `name`.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(blob)) as im:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            if plan is not None:
                w, h = (im.height, im.width) if orientation in (5, 6, 7, 8) else im.size
                r = plan(w, h)
                if r > 1:
                    im.draft(None, (math.ceil(im.width / r), math.ceil(im.height / r)))
            im.load()
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                im = ImageOps.exif_transpose(im)
            arr = np.array(to_rgb(im, name))
    except UserError:
        raise
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "BytesIO" in reason:  # "cannot identify image file <_io.BytesIO ...>"
            reason = "not a recognized image format"
        raise UserError(f"cannot decode image {name} ({reason}): remove or replace the corrupt file") from e
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise UserError(f"cannot decode image {name} (unexpected shape {arr.shape}): remove or replace it")
    return torch.from_numpy(arr).permute(2, 0, 1)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> ``[3, height, width]``, bilinear and antialiased (within 1 of Pillow's)."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]


def decode_sized(blob: bytes, name: str, resolution: int, resize_mode: str = "squash") -> tuple[torch.Tensor, bool]:
    """Decode into uint8 ``[3, R, R]`` at `resolution`, and whether the (upright) image was square.

    `resize_mode` ``"squash"``: the whole image resized to R x R (the aspect ratio is not kept);
    ``"crop"``: the centred square of side min(width, height) resized to R x R.
    """
    size: dict = {}

    def plan(w: int, h: int) -> int:
        size["wh"] = (w, h)
        side = min(w, h)
        return reduction(side, side, resolution, resolution) if resize_mode == "crop" else \
            reduction(w, h, resolution, resolution)

    x = decode_image(blob, name, plan)
    w, h = size.get("wh", (x.shape[2], x.shape[1]))
    if resize_mode == "crop" and x.shape[1] != x.shape[2]:
        side = min(x.shape[1], x.shape[2])
        top, left = (x.shape[1] - side) // 2, (x.shape[2] - side) // 2
        x = x[:, top:top + side, left:left + side]
    return resize(x, resolution, resolution), w == h


def decode_square(blob: bytes, name: str, resolution: int | None, resize_mode: str = "squash") -> torch.Tensor:
    """Decode into uint8 ``[3, R, R]`` (see :func:`decode_sized`: the aspect ratio is not kept
    unless `resize_mode` is ``"crop"``), or at its own size if `resolution` is None."""
    if resolution is None:
        return decode_image(blob, name)
    return decode_sized(blob, name, resolution, resize_mode)[0]


def decode_blobs(blobs: Sequence[bytes], names: Sequence[str], resolution: int | None = None) -> torch.Tensor:
    """Decode encoded images into uint8 ``[N, 3, R, R]`` (see :func:`decode_square`). With
    `resolution` None they must all have the same size. `names` are for error messages."""
    if not blobs:
        r = resolution or 0
        return torch.empty((0, 3, r, r), dtype=torch.uint8)
    images = [decode_square(blob, name, resolution) for blob, name in zip(blobs, names)]
    if resolution is None and len({tuple(x.shape) for x in images}) > 1:
        raise ValueError(f"images of different sizes {sorted({tuple(x.shape) for x in images})[:3]}: give a resolution")
    return torch.stack(images).contiguous()


def decode_files(files: Sequence[str | os.PathLike], resolution: int, workers: int | None = None,
                 chunk: int = 256, resize_mode: str = "squash", square: np.ndarray | None = None) -> torch.Tensor:
    """Read and decode image files into uint8 ``[N, 3, resolution, resolution]`` with a thread pool
    (:func:`decode_sized`); `square`, a bool array of N if given, receives whether each was square."""
    workers = workers or min(4, os.cpu_count() or 1)
    out = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + chunk, len(files))):
            out[i], was_square = decode_sized(read_file(files[i]), str(files[i]), resolution, resize_mode)
            if square is not None:
                square[i] = was_square

    run_in_threads(work, range(0, len(files), chunk), workers)
    return out


def run_in_threads(work: Callable, items: Sequence, workers: int) -> None:
    """``work(item)`` for every item, in a pool of `workers` threads (in this thread when one is
    enough); the first error is re-raised. Decoding releases the GIL, so threads run in parallel."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(work, items):  # re-raises the first error
            pass
