"""Batches from an in-memory dataset: splits, per-epoch seeds and :class:`BatchIterator`.

The order of every epoch comes from a generator seeded by (seed, epoch) only
(:func:`epoch_seed`), so a run resumed at an epoch boundary sees exactly the batches an
uninterrupted run sees; the streaming path (:mod:`.streaming`) draws its order the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UserError
from .augment import apply_augment, augment, normalize, sample_augment_params
from .memory import ImageDataset


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
# Batching


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: a function of (seed, epoch) only, so resuming is exact."""
    return (seed * 100003 + epoch) % (2**63)


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    rank, world = (int(v) for v in shard)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
    return rank, world


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s slice of a global batch of ``n``: contiguous, balanced."""
    return n * rank // world, n * (rank + 1) // world


def sharded_batches(n: int, batch_size: int, drop_last: bool, train: bool, world: int) -> int:
    """The number of global batches every rank iterates. With several ranks a last training batch
    smaller than the number of ranks is dropped (a rank cannot take an empty slice through
    BatchNorm), on every rank alike."""
    full, rest = divmod(n, batch_size)
    if rest and not drop_last and not (train and world > 1 and rest < world):
        full += 1
    return full


class BatchIterator:
    """Yields (x_float, y) batches from an in-memory ImageDataset restricted to `indices`, in an order
    shuffled by a generator seeded with (seed, epoch) so that a resumed run sees exactly the same batches.

    With ``train=True`` each epoch is a fresh permutation of `indices` and every batch goes
    through :func:`augment` (`augment_kwargs` are its crop_padding / flip / cutout, defaults
    otherwise); with ``train=False`` the order is `indices` as given and batches are only
    normalized. Permutation and augmentation draw from one ``torch.Generator`` on the dataset's
    device seeded with :func:`epoch_seed`. Batches are gathered from the uint8 tensor by index.

    ``shard=(rank, world)``: every rank draws the same global batches of ``batch_size`` (the same
    order and augmentation draws) and yields only its slice (:func:`shard_bounds`), gathering and
    augmenting only those images: ``world`` ranks together see exactly what one process sees.
    """

    def __init__(self, dataset: ImageDataset, indices: torch.Tensor, batch_size: int, *, seed: int,
                 train: bool, augment_kwargs: dict | None = None, drop_last: bool = False,
                 channels_last: bool = False, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.int64).to(dataset.device)
        dataset.ensure(self.indices)  # a dataset opened with data.limit decodes the images it batches now
        self.batch_size = batch_size
        self.seed = seed
        self.train = train
        self.augment_kwargs = dict(augment_kwargs or {})
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.rank, self.world = check_shard(shard)
        unknown = set(self.augment_kwargs) - {"crop_padding", "flip", "cutout"}
        if unknown:
            raise ValueError(f"unknown augment_kwargs {sorted(unknown)}: use crop_padding, flip, cutout")

    def __len__(self) -> int:
        return sharded_batches(len(self.indices), self.batch_size, self.drop_last, self.train, self.world)

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
            if self.world > 1:
                yield from self._slice(idx, gen)
                continue
            x, y = ds.images[idx], ds.labels[idx]
            if self.train:
                x = augment(x, gen, mean=ds.mean, std=ds.std, channels_last=self.channels_last,
                            **self.augment_kwargs)
            else:
                x = normalize(x, ds.mean, ds.std, channels_last=self.channels_last)
            yield x, y

    def _slice(self, idx: torch.Tensor, gen: torch.Generator):
        """This rank's slice of the global batch ``idx``: the draws are made for the whole batch
        (so the generator advances as in one process), the images gathered for the slice only.
        An empty slice (a small last test batch) is skipped."""
        ds = self.dataset
        lo, hi = shard_bounds(len(idx), self.rank, self.world)
        x, y = ds.images[idx[lo:hi]], ds.labels[idx[lo:hi]]
        if self.train:
            kw = self.augment_kwargs
            params = sample_augment_params((len(idx), *ds.images.shape[1:]), gen, ds.images.device, **kw)
            x = apply_augment(x, params.slice(lo, hi), mean=ds.mean, std=ds.std, channels_last=self.channels_last,
                              crop_padding=kw.get("crop_padding", 4), cutout=kw.get("cutout", 0))
        else:
            x = normalize(x, ds.mean, ds.std, channels_last=self.channels_last)
        if hi > lo:
            yield x, y
