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
* a directory: ImageFolder layout ``DIR/{train,test}/<class>/<image>`` (:mod:`.folder`).
"""

from __future__ import annotations

import dataclasses
import functools
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
from .folder import SPLITS, decode_blobs, decode_files, find_folder_root, folder_classes, list_split

DATASETS = ("cifar10-mini", "cifar10", "cifar100")  # names accepted besides a directory path

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
    def channels(self) -> int:
        return self.images.shape[1]

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

    check_folder_name(name)
    return load_image_folder(name, split, resolution)


def check_folder_name(name: str | os.PathLike) -> None:
    """A bare word such as ``imagenet`` is taken as a (misspelled) dataset name, not a folder."""
    if isinstance(name, str) and not (os.path.exists(name) or any(s in name for s in ("/", os.sep, ".", "~"))):
        raise UserError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, "
                        "or give a directory path with train/ and test/ class subfolders")


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


def load_image_folder(path: str | os.PathLike, split: str, resolution: int = 32) -> ImageDataset:
    """Load `split` of an ImageFolder directory ``DIR/{train,test}/<class>/<images>`` into memory.

    Class names are the subfolder names, sorted; train and test must have the same ones (at
    least 2). Images may be nested deeper inside a class folder and have any size and mode
    (:mod:`.folder` says how each is read); they are converted to RGB and resized to
    `resolution` x `resolution` (bilinear, antialiased; the aspect ratio is not kept). A
    directory that has no ``train/`` but exactly one subfolder that does (e.g. the unpacked
    ``cifar10-jpeg.tar.gz``, whose root holds ``cifar10/train``) is accepted.

    ``mean``/``std`` are computed from the train split's pixels (after resizing), and the test
    split gets the same train statistics. Decoded splits are cached per process.
    """
    root = find_folder_root(path)
    classes = folder_classes(root)
    images, labels = _load_folder_split(str(root), split, resolution, classes)
    mean, std = _folder_stats(str(root), resolution, classes)
    return ImageDataset(images, labels, list(classes), mean, std)


@functools.lru_cache(maxsize=4)
def _load_folder_split(root: str, split: str, resolution: int,
                       classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    files, labels = list_split(root, split, classes)
    return decode_files(files, resolution), torch.tensor(labels, dtype=torch.int64)


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
