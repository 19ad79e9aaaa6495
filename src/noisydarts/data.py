"""Datasets held entirely in memory as uint8 tensors, and batched GPU-friendly augmentation.

The search and training loops never touch the disk after loading: a dataset is one uint8
tensor ``[N, 3, H, W]`` plus int64 labels, batches are gathered from it by index, and the
augmentation (random crop, flip, cutout, normalization) runs batched on the device the batch
lives on. Everything random takes an explicit ``torch.Generator`` so runs are reproducible
and a resumed run sees exactly the same batches.

Datasets (``load_dataset``):

* ``cifar10-mini``: 5,000 train / 1,000 test CIFAR-10 images (500 / 100 per class) shipped
  inside the package as the original JPEG files (``assets/cifar10_mini.npz``, built by
  ``scripts/build_mini_dataset.py``). Works offline; meant for tests and smoke runs.
* ``cifar10`` / ``cifar100``: the standard binary releases via torchvision (downloaded once).
* a directory: ImageFolder layout ``DIR/{train,test}/<class>/<image>``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import urllib.error
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError

DATASETS = ("cifar10-mini", "cifar10", "cifar100")  # names accepted besides a directory path
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

DEFAULT_ROOT = "~/.cache/noisydarts/data"
MINI_ASSET = "cifar10_mini.npz"


# ---------------------------------------------------------------------------------------------
# The dataset container


@dataclass(eq=False)
class ImageDataset:
    """An image classification split held in memory.

    ``images`` is uint8 ``[N, 3, H, W]`` (contiguous), ``labels`` int64 ``[N]`` with values in
    ``[0, len(classes))``. ``mean``/``std`` are the per-channel normalization statistics in [0, 1]
    units, to be used by :func:`normalize` / :func:`augment`. Tensors may be shared with a
    per-process cache: treat them as read-only.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 [N={self.images.shape[0]}], "
                             f"got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        _, c, h, w = self.images.shape
        return (f"ImageDataset(n={len(self)}, image=({c}, {h}, {w}), classes={self.num_classes}, "
                f"device={self.device})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """Return a copy whose images and labels live on `device` (no copy if already there)."""
        return dataclasses.replace(self, images=self.images.to(device), labels=self.labels.to(device))


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(name: str | os.PathLike, split: str, resolution: int = 32,
                 root: str | os.PathLike | None = None) -> ImageDataset:
    """Load one split (``"train"`` or ``"test"``) of a dataset into memory.

    `name` is one of :data:`DATASETS` or a directory path (see :func:`load_image_folder`).
    `resolution` is the square side of the returned images; the CIFAR datasets are 32x32 and are
    resized (bilinear, antialiased) only if another resolution is asked for. `root` is where
    ``cifar10``/``cifar100`` are stored (default ``~/.cache/noisydarts/data``); if it already
    holds the dataset nothing is downloaded. Raises :class:`UserError` for anything the user can fix.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UserError(f"image resolution must be a positive integer, got {resolution!r}")

    if isinstance(name, str) and name in DATASETS:
        if name == "cifar10-mini":
            images, labels, classes = _load_mini(split)
            mean, std = CIFAR10_MEAN, CIFAR10_STD
        else:
            root = os.path.expanduser(str(root if root is not None else DEFAULT_ROOT))
            images, labels, classes = _load_torchvision(name, os.path.abspath(root), split)
            mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        images = resize_images(images, resolution)
        return ImageDataset(images, labels, list(classes), mean, std)

    if not _looks_like_path(name):
        raise UserError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, "
                        "or give a directory path with train/ and test/ class subfolders")
    return load_image_folder(name, split, resolution)


def _looks_like_path(name: str | os.PathLike) -> bool:
    """A bare word such as ``imagenet`` is taken as a (misspelled) dataset name, not a folder."""
    if not isinstance(name, str):
        return True
    return os.path.exists(name) or any(s in name for s in ("/", os.sep, ".", "~"))


def resize_images(images: torch.Tensor, resolution: int, chunk: int = 1024) -> torch.Tensor:
    """Resize uint8 ``[N, 3, H, W]`` to ``resolution`` x ``resolution`` (bilinear, antialiased).

    Returns `images` itself when it already has that size.
    """
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty((images.shape[0], 3, resolution, resolution), dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):  # chunked: float copies of a whole dataset are big
        x = F.interpolate(images[i:i + chunk].float(), size=(resolution, resolution),
                          mode="bilinear", align_corners=False, antialias=True)
        out[i:i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


# ---- cifar10-mini (embedded) ----------------------------------------------------------------


def mini_metadata() -> dict:
    """Provenance of the embedded ``cifar10-mini`` (source file and hash, seed, counts)."""
    with _open_mini() as npz:
        return json.loads(str(npz["meta"]))


def _open_mini():
    path = resources.files(__package__) / "assets" / MINI_ASSET
    try:
        return np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"the embedded dataset file assets/{MINI_ASSET} is missing from the installed "
                        "noisydarts package: reinstall noisydarts") from None


@functools.lru_cache(maxsize=1)
def _decoded_mini() -> dict[str, tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]]:
    """Decode both splits of the embedded JPEGs once per process."""
    out = {}
    with _open_mini() as npz:
        classes = tuple(str(c) for c in npz["classes"])
        for split in SPLITS:
            data, offsets = npz[f"{split}_bytes"], npz[f"{split}_offsets"]
            blobs = [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
            images = _decode_blobs(blobs, names=[f"cifar10-mini {split} #{i}" for i in range(len(blobs))])
            out[split] = (images, torch.from_numpy(npz[f"{split}_labels"]).long(), classes)
    return out


def _load_mini(split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    return _decoded_mini()[split]


# ---- cifar10 / cifar100 via torchvision -----------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_torchvision(name: str, root: str, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Read the binary CIFAR release with torchvision, downloading it into `root` only if absent."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    train = split == "train"
    try:
        ds = cls(root, train=train, download=False)  # no network access when already there
    except RuntimeError:  # "Dataset not found or corrupted"
        try:
            os.makedirs(root, exist_ok=True)
            ds = cls(root, train=train, download=True)
        except (OSError, urllib.error.URLError, RuntimeError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"could not download {name} into {root} ({reason}): are you offline? Use "
                            "--data DIR with a local copy (train/ and test/ class folders), "
                            f"put the torchvision {name} files in {root}, or use cifar10-mini") from e
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return images, labels, tuple(ds.classes)


# ---- ImageFolder directories ----------------------------------------------------------------


def load_image_folder(path: str | os.PathLike, split: str, resolution: int = 32) -> ImageDataset:
    """Load `split` of an ImageFolder directory ``DIR/{train,test}/<class>/<images>``.

    Class names are the subfolder names, sorted; train and test must have the same ones (at
    least 2). Images may be nested deeper inside a class folder and have any size; they are
    converted to RGB and resized to `resolution` x `resolution` (bilinear, antialiased; the aspect
    ratio is not kept). A directory that has no ``train/`` but exactly one subfolder that does
    (e.g. the unpacked ``cifar10-jpeg.tar.gz``, whose root holds ``cifar10/train``) is accepted.

    ``mean``/``std`` are computed from the train split's pixels (after resizing), and the test
    split gets the same train statistics. Decoded splits are cached per process.
    """
    root = _find_folder_root(path)
    classes = _folder_classes(root)
    images, labels = _load_folder_split(str(root), split, resolution, classes)
    mean, std = _folder_stats(str(root), resolution, classes)
    return ImageDataset(images, labels, list(classes), mean, std)


def _find_folder_root(path: str | os.PathLike) -> Path:
    root = Path(path).expanduser().absolute()
    hint = "give a folder with train/ and test/ subfolders that each hold one subfolder per class"
    if not root.exists():
        raise UserError(f"data directory {root} does not exist: {hint}, or a dataset name "
                        f"({', '.join(DATASETS)})")
    if not root.is_dir():
        raise UserError(f"data path {root} is not a directory: {hint}")
    root = root.resolve()
    if not (root / "train").is_dir():
        inner = [d for d in root.iterdir() if d.is_dir() and (d / "train").is_dir()]
        if len(inner) == 1:  # e.g. the unpacked cifar10-jpeg.tar.gz: DIR/cifar10/train
            root = inner[0]
    for split in SPLITS:
        if not (root / split).is_dir():
            raise UserError(f"data directory {root} has no {split}/ subfolder: {hint}")
    return root


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _folder_classes(root: Path) -> tuple[str, ...]:
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


def _list_images(folder: str) -> list[str]:
    """Image files under `folder` (recursively, hidden entries skipped), in sorted order."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                     if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    return files


@functools.lru_cache(maxsize=4)
def _load_folder_split(root: str, split: str, resolution: int,
                       classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    split_dir = Path(root, split)
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = _list_images(os.path.join(split_dir, cls))
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
    images = decode_files(files, resolution)
    return images, torch.tensor(labels, dtype=torch.int64)


@functools.lru_cache(maxsize=16)
def _folder_stats(root: str, resolution: int, classes: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    images, _ = _load_folder_split(root, "train", resolution, classes)
    return channel_stats(images)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (population) std over all pixels of uint8 ``[N, 3, H, W]``, in [0, 1] units.

    Computed exactly from a 256-bin histogram per channel (fast, and no float copy of the data).
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for c in range(3):
        hist = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).to(torch.float64)
        p = hist / hist.sum()
        m = (p * values).sum()
        mean.append(m.item())
        std.append(((p * (values - m).square()).sum()).sqrt().item())
    return tuple(mean), tuple(std)


def decode_files(files: Sequence[str | os.PathLike], resolution: int, workers: int | None = None,
                 chunk: int = 512) -> torch.Tensor:
    """Read and decode image files into uint8 ``[N, 3, resolution, resolution]`` with a thread pool."""
    workers = workers or min(4, os.cpu_count() or 1)
    out = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)

    def work(start: int) -> None:
        names = files[start:start + chunk]
        blobs = []
        for f in names:
            try:
                with open(f, "rb") as fh:
                    blobs.append(fh.read())
            except OSError as e:
                raise UserError(f"cannot read image file {f} ({e.strerror or e}): fix its permissions or remove it") from e
        out[start:start + len(names)] = _decode_blobs(blobs, [str(f) for f in names], resolution)

    starts = range(0, len(files), chunk)
    if workers <= 1 or len(starts) <= 1:
        for s in starts:
            work(s)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(work, starts):  # re-raises the first error
                pass
    return out


def _decode_blobs(blobs: Sequence[bytes], names: Sequence[str], resolution: int | None = None) -> torch.Tensor:
    """Decode encoded images (any format PIL reads) into uint8 ``[N, 3, R, R]``.

    Images are converted to RGB and, if `resolution` is given and they differ from it, resized
    to `resolution` x `resolution` with PIL's bilinear filter (antialiased when shrinking). If
    `resolution` is None they must all have the same size. `names` are for error messages.
    """
    if not blobs:
        r = resolution or 0
        return torch.empty((0, 3, r, r), dtype=torch.uint8)
    arrays = [_decode_one(blob, name, resolution) for blob, name in zip(blobs, names)]
    if resolution is None and len({a.shape for a in arrays}) > 1:
        raise ValueError(f"images of different sizes {sorted({a.shape for a in arrays})[:3]}: give a resolution")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW


def _decode_one(blob: bytes, name: str, resolution: int | None = None) -> np.ndarray:
    """Decode one image with PIL into a uint8 ``[H, W, 3]`` array."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im if im.mode == "RGB" else im.convert("RGB")
            if resolution is not None and im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(im.height, im.width, 3)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "BytesIO" in reason:  # "cannot identify image file <_io.BytesIO ...>"
            reason = "not a recognized image format"
        raise UserError(f"cannot decode image {name} ({reason}): remove or replace the corrupt file") from e


# ---------------------------------------------------------------------------------------------
# Splits


def split_indices(n: int, portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly split ``range(n)`` into two disjoint index tensors covering everything.

    The first has ``round(portion * n)`` indices (e.g. the DARTS 50/50 search-train/search-val
    split with ``portion=0.5``). Deterministic given `seed`. Both parts are returned sorted.
    """
    if not 0.0 <= portion <= 1.0:
        raise UserError(f"split portion must be between 0 and 1, got {portion}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    k = round(portion * n)
    return perm[:k].sort().values, perm[k:].sort().values


# ---------------------------------------------------------------------------------------------
# Normalization and augmentation


@functools.lru_cache(maxsize=16)
def _stats_tensors(mean: tuple[float, ...], std: tuple[float, ...],
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as ``[1, 3, 1, 1]`` float32 tensors on `device`, made once per (stats, device)."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return m, s


def normalize(images_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              channels_last: bool = False) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``(x / 255 - mean) / std`` (channels_last memory format if asked)."""
    if images_u8.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images_u8.dtype}")
    if channels_last:
        images_u8 = images_u8.contiguous(memory_format=torch.channels_last)  # convert while still 1 byte
    m, s = _stats_tensors(tuple(map(float, mean)), tuple(map(float, std)), images_u8.device)
    return images_u8.float().div_(255).sub_(m).div_(s)


@dataclass
class AugmentParams:
    """The random draws of one :func:`augment` call, one entry per sample (all on the batch's device).

    ``dy, dx``: top-left corner of the crop window in the zero-padded image (in ``[0, 2 * pad]``);
    ``flip``: bool, mirror horizontally; ``cy, cx``: cutout square centre (in ``[0, H)``, ``[0, W)``).
    Fields of disabled transforms are None.
    """

    dy: torch.Tensor | None = None
    dx: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    cy: torch.Tensor | None = None
    cx: torch.Tensor | None = None


def sample_augment_params(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str,
                          *, crop_padding: int = 4, flip: bool = True, cutout: int = 0) -> AugmentParams:
    """Draw the per-sample randomness of :func:`augment` for a batch of `shape` ``[B, C, H, W]``.

    Draw order (crop dy, crop dx, flip, cutout cy, cutout cx) is part of the reproducibility contract.
    """
    b, _, h, w = shape
    p = AugmentParams()
    kw = dict(generator=generator, device=device)
    if crop_padding > 0:
        p.dy = torch.randint(0, 2 * crop_padding + 1, (b,), **kw)
        p.dx = torch.randint(0, 2 * crop_padding + 1, (b,), **kw)
    if flip:
        p.flip = torch.randint(0, 2, (b,), **kw).bool()
    if cutout > 0:
        p.cy = torch.randint(0, h, (b,), **kw)
        p.cx = torch.randint(0, w, (b,), **kw)
    return p


def apply_augment(images_u8: torch.Tensor, params: AugmentParams, *, mean: Sequence[float], std: Sequence[float],
                  crop_padding: int = 4, cutout: int = 0, channels_last: bool = False) -> torch.Tensor:
    """Apply crop+flip (one gather), normalization and cutout with the given random draws."""
    b, c, h, w = images_u8.shape
    x = images_u8
    if params.dy is not None or params.flip is not None:
        rows = torch.arange(h, device=x.device).expand(b, h)
        cols = torch.arange(w, device=x.device).expand(b, w)
        if params.flip is not None:  # mirrored columns: out[..., j] = in[..., w - 1 - j]
            cols = torch.where(params.flip[:, None], (w - 1) - cols, cols)
        if params.dy is not None:  # window of the zero-padded image starting at (dy, dx)
            x = F.pad(x, (crop_padding,) * 4)
            rows = rows + params.dy[:, None]
            cols = cols + params.dx[:, None]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
    out = normalize(x, mean, std, channels_last=channels_last)
    if params.cy is not None:
        # DARTS/DeVries cutout: zero a cutout x cutout square (clipped at the borders) of the
        # *normalized* image, i.e. the region becomes the dataset mean colour.
        y0 = (params.cy - cutout // 2)[:, None]
        x0 = (params.cx - cutout // 2)[:, None]
        r = torch.arange(h, device=x.device)[None]
        k = torch.arange(w, device=x.device)[None]
        in_rows = (r >= y0) & (r < y0 + cutout)  # [B, H]
        in_cols = (k >= x0) & (k < x0 + cutout)  # [B, W]
        out.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
    return out


def augment(images_u8: torch.Tensor, generator: torch.Generator | None, *, mean: Sequence[float],
            std: Sequence[float], crop_padding: int = 4, flip: bool = True, cutout: int = 0,
            channels_last: bool = False) -> torch.Tensor:
    """Standard CIFAR augmentation of a uint8 batch ``[B, 3, H, W]``, batched on its own device.

    Per sample: random crop with `crop_padding` pixels of zero padding (a random translation by
    up to ±crop_padding), random horizontal flip, and if ``cutout > 0`` a ``cutout x cutout``
    square with a uniformly drawn centre (clipped at the borders) set to 0 after normalization,
    as in DARTS / DeVries & Taylor. Then ``(x / 255 - mean) / std`` in float32.

    Random draws come from `generator` (which must live on the batch's device; None means the
    global RNG). With ``crop_padding=0, flip=False, cutout=0`` this equals :func:`normalize`.
    """
    params = sample_augment_params(images_u8.shape, generator, images_u8.device,
                                   crop_padding=crop_padding, flip=flip, cutout=cutout)
    return apply_augment(images_u8, params, mean=mean, std=std, crop_padding=crop_padding,
                         cutout=cutout, channels_last=channels_last)


# ---------------------------------------------------------------------------------------------
# Batching


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: a function of (seed, epoch) only, so resuming is exact."""
    return (seed * 100003 + epoch) % (2**63)


class BatchIterator:
    """Yields (x_float, y) batches from an in-memory ImageDataset restricted to `indices`, in an order
    shuffled by a generator seeded with (seed, epoch) so that a resumed run sees exactly the same batches.

    With ``train=True`` each epoch is a fresh permutation of `indices` and every batch goes
    through :func:`augment` (`augment_kwargs` are its crop_padding / flip / cutout, defaults
    otherwise); with ``train=False`` the order is `indices` as given and batches are only
    normalized. Permutation and augmentation draw from one ``torch.Generator`` on the dataset's
    device seeded with :func:`epoch_seed`. Batches are gathered from the uint8 tensor by index.
    """

    def __init__(self, dataset: ImageDataset, indices: torch.Tensor, batch_size: int, *, seed: int,
                 train: bool, augment_kwargs: dict | None = None, drop_last: bool = False,
                 channels_last: bool = False):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.int64).to(dataset.device)
        self.batch_size = batch_size
        self.seed = seed
        self.train = train
        self.augment_kwargs = dict(augment_kwargs or {})
        self.drop_last = drop_last
        self.channels_last = channels_last
        unknown = set(self.augment_kwargs) - {"crop_padding", "flip", "cutout"}
        if unknown:
            raise ValueError(f"unknown augment_kwargs {sorted(unknown)}: use crop_padding, flip, cutout")

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def generator(self, epoch: int) -> torch.Generator:
        gen = torch.Generator(device=self.dataset.device)
        return gen.manual_seed(epoch_seed(self.seed, epoch))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `epoch`: identical every time it is called with the same epoch."""
        ds = self.dataset
        gen = self.generator(epoch)
        order = self.indices
        if self.train:
            order = order[torch.randperm(len(order), generator=gen, device=order.device)]
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = ds.images[idx], ds.labels[idx]
            if self.train:
                x = augment(x, gen, mean=ds.mean, std=ds.std, channels_last=self.channels_last,
                            **self.augment_kwargs)
            else:
                x = normalize(x, ds.mean, ds.std, channels_last=self.channels_last)
            yield x, y
