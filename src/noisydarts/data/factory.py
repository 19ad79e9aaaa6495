"""One interface over both data paths; the search and training loops call only this::

    dataset = open_dataset(cfg["data"], "train", device)   # in memory, or streamed from disk
    batches = make_batches(dataset, indices, batch_size, seed=..., train=True, data=cfg["data"],
                           channels_last=True, device=device)
    len(batches); for x, y in batches.epoch(e): ...          # float32 x and int64 y on `device`

Keys of the ``data`` config section that pick and tune the path (:data:`DATA_DEFAULTS`):

``in_memory`` (auto | true | false)
    true: decode the split once into a uint8 tensor (:mod:`.memory`, :class:`.batching.BatchIterator`);
    false: stream an ImageFolder directory from disk (:mod:`.streaming`). auto: CIFAR datasets
    in memory; a folder streams when ``augment`` is imagenet (it crops the full-size images) or
    when its decoded training split (images x 3 x resolution²) would exceed the memory budget.
``memory_budget_gb`` (null | number)
    the budget for auto; null: half the available RAM, and on CUDA at most a quarter of the
    GPU's memory (the in-memory path keeps the dataset on the training device).
``workers`` (null | int)
    DataLoader worker processes of the streaming path; null: one per CPU core, at most 8.
``augment`` (auto | cifar | imagenet)
    cifar: padded random crop + flip + cutout on images decoded at the resolution;
    imagenet: RandomResizedCrop + flip + ColorJitter, resize + centre crop for testing (streaming
    only). auto: imagenet for an ImageFolder directory at a resolution above 64 px, else cifar
    (downsampled ImageNet such as ImageNet16-120 is trained like CIFAR, as NAS-Bench-201 does).
``color_jitter`` (number)
    the ColorJitter brightness/contrast/saturation strength of imagenet augmentation (0: off).

Normalization: cifar augmentation uses the dataset's own statistics (the CIFAR constants; for a
folder, its train split's pixels: exact in memory, from 2,000 evenly spaced images when streamed);
imagenet augmentation uses ImageNet's mean and std.
"""

from __future__ import annotations

import math
import os

import torch

from .. import config
from ..errors import UserError
from .batching import BatchIterator
from .folder import find_folder_root, folder_classes, list_split
from .memory import DATASETS, ImageDataset, check_folder_name, load_dataset
from .streaming import AUGMENTS, ImageFolderSplit, StreamingBatches, stream_image_folder

#: The ``data`` section of a search config (a training config has its own, in noisydarts.train).
SEARCH_DEFAULTS: dict = {
    "name": "cifar10-mini",  # cifar10-mini | cifar10 | cifar100 | a directory
    "root": None,            # where torchvision datasets are (or get downloaded)
    "resolution": 32,        # images are resized to this side length (square)
    "limit": None,           # use only the first N training images (after shuffling by seed)
    "crop_padding": 4,       # cifar augmentation: zero padding before the random crop
    "flip": True,            # random horizontal flips
    "cutout": 0,             # side of the cutout square (0 = none)
    "in_memory": "auto",     # auto | true | false: decode into memory, or stream a folder from disk
    "memory_budget_gb": None,  # auto streams above this decoded size (null: half the free RAM)
    "workers": None,         # streaming DataLoader processes (null: one per core, at most 8)
    "augment": "auto",       # auto | cifar (pad-crop, flip, cutout) | imagenet (random-resized crop, flip, jitter)
    "color_jitter": 0.4,     # imagenet augmentation's brightness/contrast/saturation strength
}
#: Keys of a data section (search and training alike) that may be null, with their type.
NULLABLE = {"root": str, "limit": int, "memory_budget_gb": float, "workers": int}


#: The keys that pick and tune the data path, with their defaults (a config without them gets these).
DATA_DEFAULTS = {k: SEARCH_DEFAULTS[k] for k in ("in_memory", "memory_budget_gb", "workers", "augment", "color_jitter")}
#: ``augment: auto`` picks imagenet for folders above this resolution (ImageNet 8/16/32/64 are CIFAR-like).
AUTO_IMAGENET_ABOVE = 64
MAX_AUTO_WORKERS = 8


def _option(data: dict, key: str):
    return data.get(key, DATA_DEFAULTS[key])


def _is_folder(name) -> bool:
    return not (isinstance(name, str) and name in DATASETS)


def augment_style(data: dict) -> str:
    """``cifar`` or ``imagenet``: what ``data.augment`` resolves to."""
    style = _option(data, "augment")
    if style != "auto":
        return style
    return "imagenet" if _is_folder(data["name"]) and data["resolution"] > AUTO_IMAGENET_ABOVE else "cifar"


def validate_data_config(data: dict) -> None:
    """Checks of the keys above (each failure one line naming the key and the fix)."""
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    in_memory, style = _option(data, "in_memory"), _option(data, "augment")
    check(in_memory in ("auto", True, False), f"data.in_memory must be auto, true or false, got {in_memory!r}")
    budget = _option(data, "memory_budget_gb")
    check(budget is None or (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                             and math.isfinite(budget) and budget > 0),
          f"data.memory_budget_gb must be a positive number of GB or null (half the available RAM), got {budget!r}")
    workers = _option(data, "workers")
    check(workers is None or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0),
          f"data.workers must be a whole number >= 0 (0: decode in the main process) or null (one per core), got {workers!r}")
    check(style in ("auto", *AUGMENTS), f"data.augment must be auto, cifar or imagenet, got {style!r}")
    jitter = _option(data, "color_jitter")
    check(isinstance(jitter, (int, float)) and not isinstance(jitter, bool) and 0 <= jitter < math.inf,
          f"data.color_jitter must be a number >= 0 (0: off), got {jitter!r}")
    folder = _is_folder(data["name"])
    check(folder or in_memory is not False,
          f"data.in_memory=false streams an ImageFolder directory, but {data['name']} is loaded into memory: "
          "set data.in_memory=auto, or give a directory")
    check(folder or style != "imagenet",
          f"data.augment=imagenet crops full-size images streamed from an ImageFolder directory; {data['name']} "
          "has none: use data.augment=cifar, or give a directory")
    check(not (in_memory is True and augment_style(data) == "imagenet"),
          "imagenet augmentation crops the full-size images, which the in-memory path does not keep: "
          "set data.in_memory=auto (or false), or data.augment=cifar")


def available_memory() -> int:
    """Bytes of RAM available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_budget(data: dict, device: torch.device | str | None = None) -> float:
    """Bytes a decoded dataset may take for ``in_memory: auto`` to keep it in memory."""
    if _option(data, "memory_budget_gb") is not None:
        return float(_option(data, "memory_budget_gb")) * 2**30
    budget = 0.5 * available_memory()
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        budget = min(budget, 0.25 * torch.cuda.get_device_properties(device).total_memory)
    return budget


def decoded_bytes(data: dict) -> int:
    """Bytes of the training split of a folder decoded as uint8 at ``data.resolution``."""
    root = find_folder_root(data["name"])
    files, _ = list_split(str(root), "train", folder_classes(root))
    return len(files) * 3 * data["resolution"] ** 2


def in_memory(data: dict, device: torch.device | str | None = None) -> bool:
    """Whether this data config takes the in-memory path (see ``in_memory`` above)."""
    validate_data_config(data)
    if _is_folder(data["name"]):
        check_folder_name(data["name"])
    choice = _option(data, "in_memory")
    if choice != "auto":
        return choice
    if not _is_folder(data["name"]):
        return True
    if augment_style(data) == "imagenet":
        return False
    return decoded_bytes(data) <= memory_budget(data, device)


def open_dataset(data: dict, split: str, device: torch.device | str | None = None) -> ImageDataset | ImageFolderSplit:
    """One split of the dataset ``data`` describes: an :class:`ImageDataset` already on `device`,
    or an :class:`ImageFolderSplit` whose batches are decoded as they are needed."""
    if in_memory(data, device):
        dataset = load_dataset(data["name"], split, data["resolution"], data.get("root"))
        return dataset.to(device) if device is not None else dataset
    return stream_image_folder(data["name"], split, data["resolution"],
                               imagenet_stats=augment_style(data) == "imagenet")


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores))


def make_batches(dataset: ImageDataset | ImageFolderSplit, indices: torch.Tensor, batch_size: int, *, seed: int,
                 train: bool, data: dict, channels_last: bool = False, drop_last: bool = False,
                 device: torch.device | str | None = None,
                 shard: tuple[int, int] = (0, 1)) -> BatchIterator | StreamingBatches:
    """The batches of `dataset` restricted to `indices`: ``len()`` and ``.epoch(e)`` yielding
    ``(x, y)`` on the device, shuffled and augmented if `train`, in an order fixed by (seed, epoch).
    ``shard=(rank, world)``: this rank's slice of every global batch of `batch_size` (data-parallel
    runs, :mod:`noisydarts.runtime.distributed`); a streamed folder decodes only that slice."""
    crop_flip_cutout = {k: data[k] for k in ("crop_padding", "flip", "cutout") if k in data}
    if isinstance(dataset, ImageDataset):
        return BatchIterator(dataset, indices, batch_size, seed=seed, train=train, augment_kwargs=crop_flip_cutout,
                             drop_last=drop_last, channels_last=channels_last, shard=shard)
    workers = _option(data, "workers")
    return StreamingBatches(dataset, indices, batch_size, seed=seed, train=train, augment=augment_style(data),
                            augment_kwargs=crop_flip_cutout, color_jitter=float(_option(data, "color_jitter")),
                            workers=default_workers() if workers is None else workers,
                            device=device if device is not None else "cpu", drop_last=drop_last,
                            channels_last=channels_last, shard=shard)


# --- the search config's data section ------------------------------------------------------------

def validate_search_data(cfg: dict) -> None:
    d = cfg["data"]
    config.check(bool(d["name"]), "data.name must name a dataset (cifar10-mini, cifar10, cifar100) or a directory")
    config.check(d["resolution"] >= 8, f"data.resolution must be at least 8, got {d['resolution']}")
    config.check(d["limit"] is None or d["limit"] >= 2, "data.limit must be null or at least 2 images")
    config.check(d["crop_padding"] >= 0 and d["cutout"] >= 0, "data.crop_padding and data.cutout must be >= 0")
    validate_data_config(d)


config.SEARCH.register("data", SEARCH_DEFAULTS, validate=validate_search_data, nullable=NULLABLE,
                       auto_or_bool=("in_memory",), owner=__name__)
