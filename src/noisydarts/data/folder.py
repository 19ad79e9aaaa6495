"""ImageFolder directories: the layout, the file listing, and decoding one image into RGB.

Both data paths (in memory and streaming) list and decode through this module, so they see the
same files, the same classes and the same pixels.

Layout: ``DIR/{train,test}/<class>/<images>``; images may be nested deeper inside a class folder.

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
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
NAMED_DATASETS = ("cifar10-mini", "cifar10", "cifar100")  # for messages; see memory.DATASETS
EXIF_ORIENTATION = 0x0112

_HINT = "give a folder with train/ and test/ subfolders that each hold one subfolder per class"


# ---------------------------------------------------------------------------------------------
# Layout


def find_folder_root(path: str | os.PathLike) -> Path:
    """The resolved ImageFolder root: `path`, or its only subfolder holding ``train/`` (like the
    unpacked ``cifar10-jpeg.tar.gz``, whose root holds ``cifar10/train``)."""
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise UserError(f"data directory {root} does not exist: {_HINT}, or a dataset name "
                        f"({', '.join(NAMED_DATASETS)})")
    if not root.is_dir():
        raise UserError(f"data path {root} is not a directory: {_HINT}")
    root = root.resolve()
    if not (root / "train").is_dir():
        inner = [d for d in root.iterdir() if d.is_dir() and (d / "train").is_dir()]
        if len(inner) == 1:
            root = inner[0]
    for split in SPLITS:
        if not (root / split).is_dir():
            raise UserError(f"data directory {root} has no {split}/ subfolder: {_HINT}")
    return root


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def folder_classes(root: Path) -> tuple[str, ...]:
    """Class names: the subfolders of ``train/``, sorted; ``test/`` must have the same (at least 2)."""
    train, test = _class_dirs(root / "train"), _class_dirs(root / "test")
    if train != test:
        only_train = ", ".join(sorted(set(train) - set(test))) or "-"
        only_test = ", ".join(sorted(set(test) - set(train))) or "-"
        raise UserError(f"class folders differ between train/ and test/ in {root} (only in train: "
                        f"{only_train}; only in test: {only_test}): give both the same class subfolders")
    if len(train) < 2:
        raise UserError(f"{root / 'train'} has {len(train)} class subfolder(s), need at least 2: "
                        "put each class's images in its own subfolder")
    return tuple(train)


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


@lru_cache(maxsize=8)
def list_split(root: str, split: str, classes: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The image files of one split of an ImageFolder root and their labels (class order)."""
    split_dir = Path(root, split)
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = list_images(split_dir / cls)
        files += found
        labels += [label] * len(found)
    if not files:
        raise UserError(f"{split_dir} has no images (looked for {', '.join(IMAGE_EXTENSIONS)} files in "
                        "its class subfolders): put the images in train/<class>/ and test/<class>/")
    if split == "train":
        counts = Counter(labels)
        empty = [c for i, c in enumerate(classes) if counts[i] == 0]
        if empty:
            raise UserError(f"class folder(s) {', '.join(empty)} in {split_dir} have no images: "
                            "add training images or remove the folder from train/ and test/")
    return tuple(files), tuple(labels)


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


def decode_square(blob: bytes, name: str, resolution: int | None) -> torch.Tensor:
    """Decode into uint8 ``[3, R, R]``: resized to `resolution` x `resolution` (the aspect ratio is not
    kept; the in-memory path and ``data.augment: cifar``), or at its own size if None."""
    if resolution is None:
        return decode_image(blob, name)
    x = decode_image(blob, name, lambda w, h: reduction(w, h, resolution, resolution))
    return resize(x, resolution, resolution)


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
                 chunk: int = 256) -> torch.Tensor:
    """Read and decode image files into uint8 ``[N, 3, resolution, resolution]`` with a thread pool."""
    workers = workers or min(4, os.cpu_count() or 1)
    out = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + chunk, len(files))):
            out[i] = decode_square(read_file(files[i]), str(files[i]), resolution)

    starts = range(0, len(files), chunk)
    if workers <= 1 or len(starts) <= 1:
        for s in starts:
            work(s)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(work, starts):  # re-raises the first error
                pass
    return out
