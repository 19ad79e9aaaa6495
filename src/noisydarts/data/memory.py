"""Datasets held entirely in memory as uint8 tensors.

The search and training loops never touch the disk after loading: a dataset is one uint8
tensor ``[N, 3, H, W]`` plus int64 labels; batches are gathered from it by index
(:mod:`.batching`) and augmented batched on the device the batch lives on (:mod:`.augment`).
This is the path for CIFAR-sized data; ImageNet-sized folders stream from disk (:mod:`.streaming`).

Datasets (``load_dataset``):

* ``cifar10-mini``: 5,000 train / 1,000 test CIFAR-10 images (500 / 100 per class) shipped
  inside the package as the original JPEG files (``assets/cifar10_mini.npz``, built by
  ``scripts/build_mini_dataset.py``). Works offline; meant for tests and smoke runs.
* ``cifar10`` / ``cifar100``: the standard binary releases via torchvision (downloaded once).
* a directory: class folders, ``train/`` alone, or ``train/`` with ``test/`` or ``val/``
  (:mod:`.folder`), its pixels read from the decoded-image cache (:mod:`.cache`).

A folder's normalization statistics come from :data:`STATS_SAMPLE` evenly spaced training images
(all of them when it has fewer), in both data paths: the in-memory path used to compute them
exactly over every training pixel, which needs every image decoded before the first batch (and
made ``data.limit`` runs decode everything). On the CIFAR-10 JPEG folder the sample's estimate is
within 0.004 of the exact mean and 0.002 of the exact std per channel (a stem convolution and
batch norm follow, so training does not notice); it is kept in the cache's header.
With ``data.limit`` (``lazy``), only the images a run batches are decoded (:class:`LazyRows`, asked
by :meth:`ImageDataset.ensure`, which :class:`.batching.BatchIterator` calls), plus the sample.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import urllib.error
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .cache import MISSING, NOT_SQUARE, DecodedImages, open_decoded, warn_once
from .folder import SPLITS, FolderSplit, decode_blobs, folder_split

DATASETS = ("cifar10-mini", "cifar10", "cifar100")  # names accepted besides a directory path

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

DEFAULT_ROOT = "~/.cache/noisydarts/data"
#: Train images whose pixels give a folder's channel statistics (all of them if fewer).
STATS_SAMPLE = 2000
#: (source folder, resolution) -> (images not square, images decoded) as last seen in this process
#: (:func:`noisydarts.data.factory.describe_data` reports it).
NON_SQUARE: dict[tuple[str, int], tuple[int, int]] = {}
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
    #: Fills rows on demand (a folder opened with ``data.limit``: only the images a run uses are
    #: decoded); None: every row is there. :meth:`ensure` asks it for the rows a run batches.
    source: LazyRows | None = dataclasses.field(default=None, repr=False)

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
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """Return a copy whose images and labels live on `device` (no copy if already there)."""
        source = self.source.copy() if self.source is not None else None
        return dataclasses.replace(self, images=self.images.to(device), labels=self.labels.to(device), source=source)

    def ensure(self, indices: torch.Tensor | np.ndarray | list[int]) -> None:
        """Make the images at `indices` present (decode them if this dataset fills lazily)."""
        if self.source is not None:
            self.source.fill(self.images, indices)


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(name: str | os.PathLike, split: str, resolution: int = 32,
                 root: str | os.PathLike | None = None, **folder_options) -> ImageDataset:
    """Load one split (``"train"`` or ``"test"``) of a dataset into memory.

    `name` is one of :data:`DATASETS` or a directory path (see :func:`load_image_folder`).
    `resolution` is the square side of the returned images; the CIFAR datasets are 32x32 and are
    resized (bilinear, antialiased) only if another resolution is asked for. `root` is where
    ``cifar10``/``cifar100`` are stored (default ``~/.cache/noisydarts/data``); if it already
    holds the dataset nothing is downloaded. `folder_options` are :func:`load_image_folder`'s
    (``val_split``, ``split_seed``, ``resize``, ``cache``, ``cache_dir``, ``lazy``); a named dataset
    refuses ``val_split``. Raises :class:`UserError` for anything the user can fix.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UserError(f"image resolution must be a positive integer, got {resolution!r}")

    if isinstance(name, str) and name in DATASETS:
        if folder_options.get("val_split") is not None:
            raise UserError(f"data.val_split holds out part of an image folder without a test split; {name} has "
                            "its own test split: remove data.val_split (null)")
        if name == "cifar10-mini":
            images, labels, classes = _load_mini(split)
            mean, std = CIFAR10_MEAN, CIFAR10_STD
        else:
            root = os.path.expanduser(str(root if root is not None else DEFAULT_ROOT))
            images, labels, classes = _load_torchvision(name, os.path.abspath(root), split)
            mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        images = resize_images(images, resolution)
        return ImageDataset(images, labels, list(classes), mean, std)

    check_folder_name(name)
    return load_image_folder(name, split, resolution, **folder_options)


def check_folder_name(name: str | os.PathLike) -> None:
    """A bare word such as ``imagenet`` is taken as a (misspelled) dataset name, not a folder."""
    if isinstance(name, str) and not (os.path.exists(name) or any(s in name for s in ("/", os.sep, ".", "~"))):
        raise UserError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, "
                        "or give a directory path (./NAME, ~/NAME) of class subfolders, or with train/ (and test/) class subfolders")


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
    path = resources.files("noisydarts") / "assets" / MINI_ASSET
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
            images = decode_blobs(blobs, names=[f"cifar10-mini {split} #{i}" for i in range(len(blobs))])
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


def load_image_folder(path: str | os.PathLike, split: str, resolution: int = 32, *, val_split: float | None = None,
                      split_seed: int = 0, resize: str = "squash", cache: bool = True,
                      cache_dir: str | os.PathLike | None = None, lazy: bool = False,
                      train: FolderSplit | None = None) -> ImageDataset:
    """Load `split` of an image folder into memory (:func:`.folder.find_folder_layout`: class
    folders, ``train/`` alone, or ``train/`` with ``test/`` or ``val/``).

    Class names are the subfolder names, sorted. The test split of a folder without one is held
    out of the pool (`val_split`, `split_seed`: :func:`.folder.held_out_rows`). Images may be nested
    deeper inside a class folder and have any size and mode (:mod:`.folder`); they are converted to
    RGB and resized to `resolution` x `resolution` (`resize`: squash, the aspect ratio not kept, or
    crop, the centred square). Decoded pixels come from the decoded-image cache (:mod:`.cache`;
    `cache`, `cache_dir`). `lazy`: decode only the rows :meth:`ImageDataset.ensure` asks for.
    `train`: the folder's training split, if the caller listed it already (it is not listed again).

    ``mean``/``std``: the training split's pixel statistics from :data:`STATS_SAMPLE` evenly spaced
    images (exact when it has no more), the same for both splits and both data paths.
    """
    part = train if train is not None and split == "train" else folder_split(path, split, val_split, split_seed)
    decoded = open_decoded(part.source, part.files, resolution, resize, cache=cache, cache_dir=cache_dir)
    labels = torch.tensor(part.split_labels, dtype=torch.int64)
    classes = list(part.layout.classes)
    rows = part.rows.astype(np.int64)
    images = None if lazy else torch.from_numpy(decoded.get(rows))  # first: the statistics' sample is among them
    mean, std = folder_stats(part if split == "train" or train is None else train, resolution, resize, cache=cache,
                             cache_dir=cache_dir, decoded=decoded if split == "train" else None)
    if images is None:
        images = torch.zeros((len(rows), 3, resolution, resolution), dtype=torch.uint8)
        return ImageDataset(images, labels, classes, mean, std, source=LazyRows(decoded, rows, resize))
    warn_non_square(decoded, rows, resize)
    return ImageDataset(images, labels, classes, mean, std)


class LazyRows:
    """Decodes an :class:`ImageDataset`'s rows when they are first batched (``data.limit``)."""

    def __init__(self, decoded: DecodedImages, rows: np.ndarray, resize: str, filled: np.ndarray | None = None):
        self.decoded, self.rows, self.resize = decoded, rows, resize
        self.filled = np.zeros(len(rows), dtype=bool) if filled is None else filled

    def copy(self) -> LazyRows:
        return LazyRows(self.decoded, self.rows, self.resize, self.filled.copy())

    def fill(self, images: torch.Tensor, indices) -> None:
        idx = np.unique(torch.as_tensor(indices).cpu().numpy().astype(np.int64))
        idx = idx[~self.filled[idx]]
        if not len(idx):
            return
        pixels = torch.from_numpy(self.decoded.get(self.rows[idx]))
        images[torch.from_numpy(idx).to(images.device)] = pixels.to(images.device)
        self.filled[idx] = True
        warn_non_square(self.decoded, self.rows[self.filled], self.resize, partial=not self.filled.all())


def warn_non_square(decoded: DecodedImages, rows: np.ndarray, resize: str, partial: bool = False) -> None:
    """One line per folder and process when images that are not square were squashed to square."""
    if resize != "squash":
        return
    states = decoded.states(rows)
    count = int((states == NOT_SQUARE).sum())
    seen = int((states != MISSING).sum())
    NON_SQUARE[(str(decoded.source), decoded.resolution)] = (count, seen)
    if count:
        r = decoded.resolution
        warn_once(("non-square", str(decoded.source), r),
                  f"{count:,} of the {seen:,} images of {decoded.source}{' used so far' if partial else ''} are not "
                  f"square: they are resized "
                  f"to {r} x {r} px without keeping their aspect ratio; set data.resize=crop to crop their centred "
                  "square instead (or data.augment=imagenet to train on random crops of the full images)")


def _valid_stats(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in v)
                    for v in value)
            and all(x > 0 for x in value[1]))


def stats_sample(n: int) -> np.ndarray:
    """The positions of :data:`STATS_SAMPLE` evenly spaced images of `n` (all of them if fewer)."""
    return np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(np.int64))


def folder_stats(part: FolderSplit, resolution: int, resize: str = "squash", *, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None,
                 decoded: DecodedImages | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training split of `part`'s folder, from the images
    :func:`stats_sample` picks (decoded through the cache, and recorded in its header)."""
    if part.split != "train":
        part = folder_split(part.layout, "train", part.val_split, part.split_seed)
        decoded = None
    if decoded is None:
        decoded = open_decoded(part.source, part.files, resolution, resize, cache=cache, cache_dir=cache_dir)
    rows = part.rows[stats_sample(len(part.rows))].astype(np.int64)
    tag = hashlib.sha256(rows.tobytes()).hexdigest()[:16]
    known = decoded.cached_stats(tag)
    if _valid_stats(known):  # else (absent, or a damaged header) computed again
        return tuple(float(v) for v in known[0]), tuple(float(v) for v in known[1])
    mean, std = channel_stats(torch.from_numpy(decoded.get(rows)))
    decoded.store_stats(tag, [list(mean), list(std)])
    return mean, std


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
