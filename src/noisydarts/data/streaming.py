"""ImageFolder data streamed from disk: decoded batch by batch in DataLoader worker processes.

For data that does not fit in memory (ImageNet: 1.28 M images, about 193 GB as uint8 at 224 px).
Nothing is decoded up front; the file list is read once.

* **Order**: each epoch's order is a permutation drawn from a CPU generator seeded by
  ``(seed, epoch)`` (:func:`.batching.epoch_seed`), exactly as the in-memory
  :class:`.batching.BatchIterator` draws it on the CPU. A run resumed at an epoch boundary sees
  the same batches, and the order never depends on the number of workers.
* **Augmentation**, by ``augment``:

  - ``"cifar"``: workers decode each image at the training resolution (as the in-memory path
    stores it); crop/flip/cutout then run batched on the device with a generator seeded by
    ``(seed, epoch)``. On the CPU the batches equal the in-memory path's, bit for bit.
  - ``"imagenet"``: workers crop, flip and colour-jitter each full-size image
    (:func:`.augment.imagenet_train`) with a ``numpy`` generator seeded by
    ``(seed, epoch, index)``, so a sample's view does not depend on which worker made it.
    Test batches are resized and centre-cropped (:func:`.augment.imagenet_eval`).

* **Workers**: persistent (started once, reused every epoch); pinned host memory and
  non-blocking copies when the device is CUDA.
* **Errors**: a file that cannot be read or decoded stops the run with one line naming it
  (a :class:`~noisydarts.errors.UserError`), not a worker traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ..errors import UserError
from .augment import CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD, apply_augment, imagenet_eval, imagenet_train, normalize
from .augment import augment as cifar_augment
from .augment import random_resized_crop_box, sample_augment_params
from .batching import check_shard, epoch_seed, shard_bounds, sharded_batches
from .cache import warn_once
from .folder import FolderSplit, decode_files, decode_image, decode_square, folder_split, read_file, reduction
from .memory import NON_SQUARE, channel_stats, stats_sample

AUGMENTS = ("cifar", "imagenet")


@dataclass(eq=False)
class ImageFolderSplit:
    """One split of an ImageFolder directory, read from disk as batches are needed.

    Has what the loops ask of a dataset (``classes``, ``labels``, ``mean``/``std``, ``len``),
    like :class:`.memory.ImageDataset`, but no images. ``files`` are the image paths relative to
    ``directory``, as bytes in one numpy array (cheap to hand to worker processes).
    """

    directory: str
    files: np.ndarray
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resolution: int
    resize: str = "squash"  # how the cifar view makes an image square (folder.RESIZES)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (f"ImageFolderSplit(n={len(self)}, directory={self.directory}, classes={self.num_classes}, "
                f"resolution={self.resolution})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return 3

    def path(self, index: int) -> str:
        return os.path.join(self.directory, os.fsdecode(self.files[index]))


def stream_image_folder(path: str | os.PathLike, split: str, resolution: int, *, imagenet_stats: bool,
                        val_split: float | None = None, split_seed: int = 0, resize: str = "squash",
                        train: FolderSplit | None = None) -> ImageFolderSplit:
    """`split` of an image folder for streaming: the same layouts, held-out split, classes and file
    order as :func:`.memory.load_image_folder` (:func:`.folder.folder_split`).

    ``mean``/``std``: ImageNet's constants if `imagenet_stats`, else the train split's pixel
    statistics at `resolution` from the :func:`.memory.stats_sample` images, decoded here (not
    through the cache): equal to the in-memory path's.
    """
    part = train if train is not None and split == "train" else folder_split(path, split, val_split, split_seed)
    directory = str(part.source)
    relative = np.array([os.fsencode(os.path.relpath(f, directory)) for f in part.split_files])
    if imagenet_stats:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        train = part if split == "train" else train or folder_split(part.layout, "train", val_split, split_seed)
        sample = tuple(train.files[i] for i in train.rows[stats_sample(len(train.rows))])
        mean, std = sampled_stats(str(train.source), sample, resolution, resize)
    return ImageFolderSplit(directory, relative, torch.tensor(part.split_labels, dtype=torch.int64),
                            list(part.layout.classes), tuple(mean), tuple(std), resolution, resize)


@lru_cache(maxsize=16)
def sampled_stats(source: str, sample: tuple[str, ...], resolution: int,
                  resize: str = "squash") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Channel statistics of the images `sample` (of the folder `source`); warns once when
    squashed images among them are not square."""
    square = np.ones(len(sample), dtype=bool)
    stats = channel_stats(decode_files(sample, resolution, resize_mode=resize, square=square))
    NON_SQUARE[(source, resolution)] = (int((~square).sum()), len(sample))
    if resize == "squash" and not square.all():
        warn_once(("non-square", source, resolution),
                  f"{int((~square).sum()):,} of {len(sample):,} sampled images of {source} are not square: they are "
                  f"resized to {resolution} x {resolution} px without keeping their aspect ratio; set "
                  "data.resize=crop to crop their centred square instead (or data.augment=imagenet)")
    return stats


# ---------------------------------------------------------------------------------------------
# What runs in the workers


def decode_eval_view(blob: bytes, name: str, resolution: int) -> torch.Tensor:
    """The test view of imagenet augmentation as uint8 ``[3, R, R]``: the shorter side resized to
    R / 0.875, the centre crop (a JPEG decoded smaller when that loses nothing). What streamed
    testing and :func:`noisydarts.predict` use."""
    r = resolution
    return imagenet_eval(decode_image(blob, name, lambda w, h: reduction(
        CROP_FRACTION * min(w, h), CROP_FRACTION * min(w, h), r, r)), r)


class LoadFailure:
    """A worker's one-line error, returned instead of a batch (re-raised as a UserError in the main process)."""

    def __init__(self, message: str):
        self.message = message


class _FolderSamples(Dataset):
    """Decodes and transforms the samples of one batch; keys are ``(index, epoch)`` pairs."""

    def __init__(self, split: ImageFolderSplit, *, train: bool, style: str, seed: int, flip: bool, jitter: float):
        self.split, self.train, self.style, self.seed = split, train, style, seed
        self.flip, self.jitter, self.resolution = flip, jitter, split.resolution

    def __len__(self) -> int:
        return len(self.split)

    def load(self, index: int, epoch: int) -> torch.Tensor:
        """Sample `index` as uint8 ``[3, R, R]``; random draws depend on (seed, epoch, index) only."""
        r = self.resolution
        name = self.split.path(index)
        blob = read_file(name)
        if self.style == "cifar":
            return decode_square(blob, name, r, self.split.resize)
        if not self.train:
            return decode_eval_view(blob, name, r)
        rng = np.random.default_rng((epoch_seed(self.seed, epoch), index))
        drawn = {}

        def plan(w: int, h: int) -> int:  # the crop is drawn on the full image, before decoding
            drawn["size"], drawn["box"] = (w, h), random_resized_crop_box(w, h, rng)
            return reduction(drawn["box"][3], drawn["box"][2], r, r)

        x = decode_image(blob, name, plan)
        (w, h), (top, left, ch, cw) = drawn["size"], drawn["box"]
        sy, sx = x.shape[1] / h, x.shape[2] / w  # < 1 when the JPEG was decoded smaller
        return imagenet_train(x, (top * sy, left * sx, ch * sy, cw * sx), r, rng, flip=self.flip, jitter=self.jitter)

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        return self.load(index, epoch), self.split.labels[index]

    def __getitems__(self, keys: list[tuple[int, int]]):
        r = self.resolution
        x = torch.empty((len(keys), 3, r, r), dtype=torch.uint8)
        in_worker = get_worker_info() is not None
        if in_worker:
            x.share_memory_()  # what default_collate does: no copy when the batch crosses processes
        threads = torch.get_num_threads()
        try:
            # Per-image ops are too small to share among threads: several threads only wait on each
            # other (10-100x slower on a busy machine). Workers already run with one.
            if not in_worker:
                torch.set_num_threads(1)
            for k, (index, epoch) in enumerate(keys):
                x[k] = self.load(index, epoch)
        except UserError as e:
            return LoadFailure(str(e))
        finally:
            if not in_worker:
                torch.set_num_threads(threads)
        return x, self.split.labels[[index for index, _ in keys]]


def _as_is(batch):
    return batch


class _EpochBatches(Sampler):
    """The batch sampler: yields the batches of the epoch set last, as lists of (index, epoch)."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        batches, epoch = self.batches, self.epoch
        return ([(i, epoch) for i in b.tolist()] for b in batches)


# ---------------------------------------------------------------------------------------------
# The batch iterator


class StreamingBatches:
    """Yields (x_float, y) batches of an :class:`ImageFolderSplit` restricted to `indices`, on
    `device`; the same interface and the same order as :class:`.batching.BatchIterator`.

    ``train=True``: a fresh (seed, epoch) permutation each epoch and augmentation by `augment`
    (``"cifar"``: `augment_kwargs` are crop_padding / flip / cutout; ``"imagenet"``: flip and
    `color_jitter` strength). ``train=False``: `indices` in order, no augmentation (``"imagenet"``:
    the resize + centre-crop view). `workers` DataLoader processes decode (0: in this process).
    One epoch at a time: starting an epoch ends the previous one's iteration.

    ``shard=(rank, world)``: as :class:`.batching.BatchIterator`, each rank yields its slice of
    every global batch, and its workers read and decode only the files of that slice.
    """

    def __init__(self, dataset: ImageFolderSplit, indices: torch.Tensor, batch_size: int, *, seed: int,
                 train: bool, augment: str = "cifar", augment_kwargs: dict | None = None, color_jitter: float = 0.4,
                 workers: int = 0, device: torch.device | str = "cpu", drop_last: bool = False,
                 channels_last: bool = False, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.augment_kwargs = dict(augment_kwargs or {})
        unknown = set(self.augment_kwargs) - {"crop_padding", "flip", "cutout"}
        if unknown:
            raise ValueError(f"unknown augment_kwargs {sorted(unknown)}: use crop_padding, flip, cutout")
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.int64).cpu()
        self.batch_size, self.seed, self.train, self.augment = batch_size, seed, train, augment
        self.drop_last, self.channels_last = drop_last, channels_last
        self.rank, self.world = check_shard(shard)
        self.device = torch.device(device)
        self.workers = workers
        self._batches = _EpochBatches()
        samples = _FolderSamples(dataset, train=train, style=augment, seed=seed,
                                 flip=self.augment_kwargs.get("flip", True), jitter=color_jitter)
        self.loader = DataLoader(samples, batch_sampler=self._batches, collate_fn=_as_is, num_workers=workers,
                                 pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                 generator=torch.Generator())  # its base seed must not draw from the global RNG
        self._current = None

    def __len__(self) -> int:
        return sharded_batches(len(self.indices), self.batch_size, self.drop_last, self.train, self.world)

    def close(self) -> None:
        """Stop the worker processes now (the next epoch starts new ones). Done on a load error;
        worth doing for a loader that may end in a reference cycle (e.g. held by a traceback):
        when the garbage collector frees a cycle it closes the workers' queues before the
        DataLoader sends its stop messages, and each worker then waits seconds before it is killed."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `epoch`: identical every time it is called with the same epoch."""
        seed = epoch_seed(self.seed, epoch)
        gen = torch.Generator().manual_seed(seed)
        order = self.indices
        if self.train:
            order = order[torch.randperm(len(order), generator=gen)]
        batched_augment = self.train and self.augment == "cifar"
        if batched_augment and self.device.type != "cpu":  # the augmentation's draws live on the device
            gen = torch.Generator(device=self.device).manual_seed(seed)
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]
        sizes = [len(b) for b in batches]  # of the global batches: what the augmentation draws for
        bounds = [shard_bounds(n, self.rank, self.world) for n in sizes]
        kept = [k for k, (lo, hi) in enumerate(bounds) if hi > lo]  # an empty slice of a last test batch is skipped
        self._batches.batches = [batches[k][bounds[k][0]:bounds[k][1]] for k in kept]
        self._batches.epoch = epoch
        self._current = token = object()
        ds, cl, blocking = self.dataset, self.channels_last, self.device.type != "cuda"
        for k, batch in zip(kept, self.loader):
            if self._current is not token:
                raise RuntimeError("another epoch of this StreamingBatches was started: iterate one epoch at a time")
            if isinstance(batch, LoadFailure):
                self.close()
                raise UserError(batch.message) from None
            x, y = batch[0].to(self.device, non_blocking=not blocking), batch[1].to(self.device, non_blocking=not blocking)
            if batched_augment and self.world > 1:  # draws for the global batch, applied to this slice
                kw = self.augment_kwargs
                params = sample_augment_params((sizes[k], 3, ds.resolution, ds.resolution), gen, gen.device, **kw)
                x = apply_augment(x, params.slice(*bounds[k]), mean=ds.mean, std=ds.std, channels_last=cl,
                                  crop_padding=kw.get("crop_padding", 4), cutout=kw.get("cutout", 0))
            elif batched_augment:
                x = cifar_augment(x, gen, mean=ds.mean, std=ds.std, channels_last=cl, **self.augment_kwargs)
            else:
                x = normalize(x, ds.mean, ds.std, channels_last=cl)
            yield x, y
