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

Keys of an image folder (:mod:`.folder`, :mod:`.cache`):

``val_split`` (null | fraction in (0, 1)), ``split_seed`` (int >= 0)
    the share of a folder without ``test/`` (or ``val/``) held out as its test split (null: 0.1;
    refused for a folder with a test split and for a named dataset), drawn with ``split_seed``.
``resize`` (squash | crop)
    how an image becomes square at the resolution: resized whole, or its centred square.
``cache`` (bool), ``cache_dir`` (null | directory)
    the decoded-image cache (null: ``$NOISYDARTS_CACHE_DIR``, else ``~/.cache/noisydarts/decoded``).
    With ``limit`` set, :func:`open_dataset` decodes only the images :func:`make_batches` is given.

Normalization: cifar augmentation uses the dataset's own statistics (the CIFAR constants; for a
folder, its training split's pixels from 2,000 evenly spaced images, in both paths); imagenet
augmentation uses ImageNet's mean and std.

:func:`describe_data` and :func:`data_summary_line`: what a config reads, for the start line.
"""

from __future__ import annotations

import math
import os

import torch

from .. import config
from ..errors import UserError
from .batching import BatchIterator
from .folder import RESIZES, FolderSplit, folder_split
from .memory import DATASETS, DEFAULT_ROOT, NON_SQUARE, ImageDataset, _load_torchvision, check_folder_name, load_dataset
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
    "val_split": None,       # share of a folder without test/ (or val/) held out as its test split (null: 0.1)
    "split_seed": 0,         # seed of the held-out split (not the run's seed: every command holds out the same images)
    "resize": "squash",      # squash (whole image, aspect ratio not kept) | crop (centred square) to the resolution
    "cache": True,           # decode a folder once into the decoded-image cache (false: in memory, every run)
    "cache_dir": None,       # the decoded-image cache (null: $NOISYDARTS_CACHE_DIR, else ~/.cache/noisydarts/decoded)
}
#: Keys of a data section (search and training alike) that may be null, with their type.
NULLABLE = {"root": str, "limit": int, "memory_budget_gb": float, "workers": int, "val_split": float,
            "cache_dir": str}


#: The keys that pick and tune the data path, with their defaults (a config without them gets these).
DATA_DEFAULTS = {k: SEARCH_DEFAULTS[k] for k in ("in_memory", "memory_budget_gb", "workers", "augment", "color_jitter",
                                                 "val_split", "split_seed", "resize", "cache", "cache_dir")}
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
    cutout, resolution = data.get("cutout") or 0, data.get("resolution")
    # A square of side >= 2R - 1 centred anywhere in an R x R image covers all of it: every image blank.
    check(not (isinstance(resolution, int) and isinstance(cutout, int) and cutout >= 2 * resolution - 1),
          f"data.cutout={cutout} blanks every {resolution} px image (the cutout square covers it wherever it is "
          f"centred): lower it, e.g. data.cutout={max(1, resolution // 2)} (DARTS' 16 is for 32 px), or 0")
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
    val_split = _option(data, "val_split")
    check(val_split is None or (isinstance(val_split, (int, float)) and not isinstance(val_split, bool)
                                and 0 < val_split < 1),
          f"data.val_split must be a fraction between 0 and 1 (e.g. 0.1: hold out 10% of the images as the test "
          f"split) or null (0.1 for a folder without test/), got {val_split!r}")
    check(folder or val_split is None,
          f"data.val_split holds out part of an image folder without a test split; {data['name']} has its own "
          "test split: remove data.val_split (null)")
    split_seed = _option(data, "split_seed")
    check(isinstance(split_seed, int) and not isinstance(split_seed, bool) and split_seed >= 0,
          f"data.split_seed must be a whole number >= 0, got {split_seed!r}")
    resize = _option(data, "resize")
    check(resize in RESIZES, f"data.resize must be squash (the whole image, aspect ratio not kept) or crop "
          f"(the centred square), got {resize!r}")
    check(isinstance(_option(data, "cache"), bool),
          f"data.cache must be true or false (false: decode in memory in every run), got {_option(data, 'cache')!r}")
    cache_dir = _option(data, "cache_dir")
    check(cache_dir is None or (isinstance(cache_dir, str) and cache_dir.strip() != ""),
          f"data.cache_dir must be a directory or null ($NOISYDARTS_CACHE_DIR, else ~/.cache/noisydarts/decoded), "
          f"got {cache_dir!r}")


def folder_options(data: dict) -> dict:
    """The keyword arguments of :func:`.memory.load_image_folder` a data config sets."""
    return {"val_split": _option(data, "val_split"), "split_seed": _option(data, "split_seed"),
            "resize": _option(data, "resize"), "cache": _option(data, "cache"), "cache_dir": _option(data, "cache_dir")}


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


def train_split(data: dict) -> FolderSplit:
    """The training split of the folder ``data`` names (listed, nothing decoded)."""
    return folder_split(data["name"], "train", _option(data, "val_split"), _option(data, "split_seed"))


def decoded_bytes(data: dict, train: FolderSplit | None = None) -> int:
    """Bytes of the training split of a folder decoded as uint8 at ``data.resolution``."""
    part = train if train is not None else train_split(data)
    return len(part.rows) * 3 * data["resolution"] ** 2


def in_memory(data: dict, device: torch.device | str | None = None, *, train: FolderSplit | None = None) -> bool:
    """Whether this data config takes the in-memory path (see ``in_memory`` above); `train`: the
    folder's training split if listed already."""
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
    return decoded_bytes(data, train) <= memory_budget(data, device)


def open_dataset(data: dict, split: str, device: torch.device | str | None = None) -> ImageDataset | ImageFolderSplit:
    """One split of the dataset ``data`` describes: an :class:`ImageDataset` already on `device`,
    or an :class:`ImageFolderSplit` whose batches are decoded as they are needed."""
    validate_data_config(data)
    if not _is_folder(data["name"]):  # a named dataset: always in memory
        dataset = load_dataset(data["name"], split, data["resolution"], data.get("root"))
        return dataset.to(device) if device is not None else dataset
    check_folder_name(data["name"])
    train = train_split(data)  # listed once: the path's choice, the statistics and the train split need it
    if in_memory(data, device, train=train):  # with data.limit, only the images a run batches are decoded
        options = folder_options(data) | {"lazy": data.get("limit") is not None, "train": train}
        dataset = load_dataset(data["name"], split, data["resolution"], data.get("root"), **options)
        return dataset.to(device) if device is not None else dataset
    return stream_image_folder(data["name"], split, data["resolution"],
                               imagenet_stats=augment_style(data) == "imagenet", val_split=_option(data, "val_split"),
                               split_seed=_option(data, "split_seed"), resize=_option(data, "resize"), train=train)


def check_dataset(data: dict, splits: tuple[str, ...] = ("train",)) -> None:
    """That the dataset ``data`` names is there, before a run starts (one line if not): a folder's
    layout and the listing of `splits` (nothing decoded); ``cifar10``/``cifar100`` read, and
    downloaded into ``data.root`` once if absent; ``cifar10-mini`` is embedded."""
    validate_data_config(data)
    name = data["name"]
    if _is_folder(name):
        check_folder_name(name)
        for split in splits:
            folder_split(name, split, _option(data, "val_split"), _option(data, "split_seed"))
    elif name != "cifar10-mini":
        root = os.path.abspath(os.path.expanduser(str(data.get("root") or DEFAULT_ROOT)))
        for split in splits:
            _load_torchvision(name, root, split)


#: Classes and images per split of the named datasets (for :func:`describe_data`, without loading them).
NAMED_SIZES = {"cifar10-mini": (10, 5000, 1000), "cifar10": (10, 50000, 10000), "cifar100": (100, 50000, 10000)}


def describe_data(data: dict, splits: tuple[str, ...] = ("train", "test")) -> dict:
    """What a data config reads, for the start-of-run line and the run's record (lists files,
    decodes nothing): ``name``, ``root`` (the folder's absolute path, None for a named dataset),
    ``layout``, ``classes`` (names; a named dataset's count only), ``num_classes``, ``images``
    per split, ``test_split`` (how the test split was made), ``resolution``, ``resize`` and
    ``non_square`` (``[not square, decoded]`` as this process has seen them, or None). Pass
    ``splits=("train",)`` where the test split must not be read (a search).
    """
    name, r = data["name"], data["resolution"]
    if not _is_folder(name):
        classes, train, test = NAMED_SIZES[name]
        images = {"train": train, **({"test": test} if "test" in splits else {})}
        return {"name": name, "root": None, "layout": "dataset", "classes": None, "num_classes": classes,
                "images": images, "test_split": {"from": "dataset"}, "resolution": r, "resize": "squash",
                "non_square": None}
    check_folder_name(name)
    train = folder_split(name, "train", _option(data, "val_split"), _option(data, "split_seed"))
    layout = train.layout
    images = {"train": len(train.rows)}
    if layout.test is None:
        how = {"from": "held out", "val_split": train.val_split, "split_seed": train.split_seed, "images": train.held_out}
        if "test" in splits:
            images["test"] = train.held_out
    else:
        how = {"from": "folder", "folder": str(layout.test)}
        if "test" in splits:
            images["test"] = len(folder_split(layout, "test").rows)
    seen = NON_SQUARE.get((str(train.source), r))
    return {"name": name, "root": str(layout.root), "layout": layout.kind, "classes": list(layout.classes),
            "num_classes": len(layout.classes), "images": images, "test_split": how, "resolution": r,
            "resize": _option(data, "resize"), "non_square": list(seen) if seen else None}


def data_summary_line(described: dict) -> str:
    """One line from :func:`describe_data`, e.g. ``data /abs/pets (class folders): 2 classes, 96
    images: 86 train, 10 held out (data.val_split 0.1, split seed 0); 32 px``."""
    d = described
    where = d["name"] if d["root"] is None else f"{d['root']} ({d['layout']})"
    images, how = d["images"], d["test_split"]
    counts = f"{images['train']:,} train"
    if "test" in images:
        if how["from"] == "held out":
            counts += f", {images['test']:,} held out (data.val_split {how['val_split']:g}, split seed {how['split_seed']})"
        else:
            counts += f", {images['test']:,} test"
        counts = f"{sum(images.values()):,} images: {counts}"
    else:
        counts += " images"
        if how["from"] == "held out":
            counts += f" ({how['images']:,} held out: data.val_split {how['val_split']:g}, split seed {how['split_seed']})"
    line = f"data {where}: {d['num_classes']} classes, {counts}; {d['resolution']} px"
    if d["resize"] == "crop":
        line += " (centred squares)"
    if d["non_square"] and d["non_square"][0] and d["resize"] == "squash":
        bad, seen = d["non_square"]
        line += (f"; {bad:,} of {seen:,} decoded images not square, squashed to {d['resolution']} x "
                 f"{d['resolution']} (data.resize=crop keeps the aspect ratio)")
    return line


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
