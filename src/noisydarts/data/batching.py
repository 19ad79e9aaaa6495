"""Batches from an in-memory dataset: splits, per-epoch seeds and :class:`BatchIterator`.

The order of every epoch comes from a generator seeded by (seed, epoch) only
(:func:`epoch_seed`), so a run resumed at an epoch boundary sees exactly the batches an
uninterrupted run sees; the streaming path (:mod:`.streaming`) draws its order the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UserError
from .augment import augment, normalize
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
