"""Augmentation and normalization.

Two families, picked by ``data.augment``:

* ``cifar`` (:func:`augment`): padded random crop, horizontal flip and cutout, batched on the
  device the uint8 batch lives on, with draws from one ``torch.Generator`` (the in-memory path,
  and the streaming path with images decoded at the training resolution).
* ``imagenet`` (:func:`imagenet_train`, :func:`imagenet_eval`): per image, in the streaming
  loader's worker processes, on the decoded full-size image: RandomResizedCrop (area 0.08-1,
  aspect 3/4-4/3), horizontal flip and ColorJitter for training; resize to
  ``resolution / 0.875`` (256 for 224) and a centre crop for testing. Draws come from a
  ``numpy`` generator seeded per image by the caller, so results do not depend on which worker
  runs which image.

Both end with ``(x / 255 - mean) / std`` in float32 (:func:`normalize`), on the device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: ImageNet's per-channel pixel statistics (the torchvision / timm constants), in [0, 1] units.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Test-time crop: resize the shorter side to resolution / CROP_FRACTION, then centre-crop (224 of 256).
CROP_FRACTION = 0.875
#: RandomResizedCrop ranges (Szegedy et al. 2015, as in torchvision and every ImageNet recipe).
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)


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

    def slice(self, lo: int, hi: int) -> "AugmentParams":
        """The draws of samples ``lo..hi-1`` (one rank's slice of a global batch)."""
        return AugmentParams(*(None if t is None else t[lo:hi] for t in (self.dy, self.dx, self.flip, self.cy, self.cx)))


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
# ImageNet-style, per image (uint8 [3, H, W] in, uint8 [3, R, R] out)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            area: tuple[float, float] = CROP_AREA,
                            aspect: tuple[float, float] = CROP_ASPECT) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop window, as torchvision draws it: up to
    10 tries of a random area fraction and log-uniform aspect ratio that fit, else the whole
    image cropped to the nearest allowed aspect ratio."""
    total = width * height
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    for _ in range(10):
        target = total * rng.uniform(*area)
        ratio = math.exp(rng.uniform(*log_aspect))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height
    if ratio < aspect[0]:
        w, h = width, int(round(width / aspect[0]))
    elif ratio > aspect[1]:
        w, h = int(round(height * aspect[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(x: torch.Tensor, box: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """Crop ``(top, left, height, width)`` (rounded to whole pixels) of uint8 ``[3, H, W]`` and
    resize it to `size` (bilinear, antialiased)."""
    top, left, h, w = box
    t, l = int(round(top)), int(round(left))
    b, r = max(int(round(top + h)), t + 1), max(int(round(left + w)), l + 1)
    crop = x[:, t:b, l:r]
    if crop.shape[-2:] == size:
        return crop.contiguous()
    return F.interpolate(crop[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of float ``[3, H, W]``, as ``[1, H, W]`` (what torchvision's rgb_to_grayscale uses)."""
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


def color_jitter(x: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """torchvision's ``ColorJitter(brightness=s, contrast=s, saturation=s)`` on uint8 ``[3, H, W]``:
    factors drawn uniformly from ``[1 - s, 1 + s]``, the three adjustments applied in a random
    order, each clipped to [0, 255]; computed in float and rounded once at the end."""
    order = rng.permutation(3)
    factors = rng.uniform(max(0.0, 1 - strength), 1 + strength, size=3)
    y = x.float()
    for k in order:
        f = float(factors[k])
        if k == 0:    # brightness: blend with black
            y = y * f
        elif k == 1:  # contrast: blend with the mean grey level
            m = _grey(y).mean()
            y = m + f * (y - m)
        else:         # saturation: blend with the grey image
            g = _grey(y)
            y = g + f * (y - g)
        y = y.clamp_(0, 255)
    return y.round_().to(torch.uint8)


def imagenet_train(x: torch.Tensor, box: tuple[float, float, float, float], resolution: int,
                   rng: np.random.Generator, *, flip: bool = True, jitter: float = 0.4) -> torch.Tensor:
    """The training view of one image: the RandomResizedCrop window `box` (drawn with
    :func:`random_resized_crop_box`, in `x`'s pixels) resized to `resolution`, then a horizontal
    flip with probability 1/2 and ColorJitter(`jitter`) (0: off), drawn from `rng` in that order."""
    out = resized_crop(x, box, (resolution, resolution))
    if flip and rng.random() < 0.5:
        out = out.flip(-1)
    if jitter > 0:
        out = color_jitter(out, rng, jitter)
    return out.contiguous()


def eval_resize_side(resolution: int) -> int:
    """The shorter side an image is resized to before the test-time centre crop (256 for 224)."""
    return int(round(resolution / CROP_FRACTION))


def imagenet_eval(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """The test view: shorter side resized to ``resolution / 0.875`` (bilinear, antialiased), then
    the centre ``resolution`` square: torchvision's ``Resize(256)`` + ``CenterCrop(224)``."""
    _, h, w = x.shape
    short = eval_resize_side(resolution)
    size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    if (h, w) != size:
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = int(round((size[0] - resolution) / 2)), int(round((size[1] - resolution) / 2))
    return x[:, top:top + resolution, left:left + resolution].contiguous()
