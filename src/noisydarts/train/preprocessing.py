"""The preprocessing a trained network needs, as training runs and exports record it.

A training run records, in its weights files and in every export, what a new image needs to be
classified as the network was trained: the **class names** (the folder names, in label order)
and the **preprocessing**, a data config in the spirit of timm's ``resolve_data_config``::

    {"input_size": [3, R, R], "interpolation": "bilinear", "crop_mode": "squash" | "square" | "center",
     "crop_pct": 1.0 | 0.875, "mean": [...], "std": [...]}

* ``crop_mode: squash`` (``cifar`` augmentation, the default ``data.resize: squash``): the whole
  image resized to R x R, as training decoded it (the aspect ratio is not kept).
* ``crop_mode: square`` (``cifar`` augmentation with ``data.resize: crop``): the centred square
  of side min(width, height), resized to R x R.
* ``crop_mode: center`` (``imagenet`` augmentation): the shorter side resized to R / crop_pct,
  then the centre R x R crop (torchvision's Resize(256) + CenterCrop(224)), as training tested.

Then ``(x / 255 - mean) / std`` per channel, with the training split's statistics. Decoding is
the data package's (:mod:`noisydarts.data.folder`): the same pixels training saw.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from ..data import augment_style, list_images, normalize
from ..data.augment import CROP_FRACTION
from ..data.folder import IMAGE_EXTENSIONS, decode_square, read_file
from ..data.streaming import decode_eval_view
from ..errors import UserError, path_kind

CROP_MODES = ("squash", "square", "center")
#: data.resize (cifar-style decoding) -> crop mode
RESIZE_CROP_MODES = {"squash": "squash", "crop": "square"}


# --- the preprocessing a network was trained with -----------------------------------------------

def data_config(data: dict, dataset) -> dict:
    """The preprocessing of a training run's test view: ``data`` is its data config section,
    ``dataset`` its training split (classes, mean, std, channels)."""
    r = int(data["resolution"])
    center = augment_style(data) == "imagenet"
    mode = "center" if center else RESIZE_CROP_MODES[data.get("resize", "squash")]
    return {"input_size": [int(dataset.channels), r, r], "interpolation": "bilinear",
            "crop_mode": mode, "crop_pct": CROP_FRACTION if center else 1.0,
            "mean": [float(v) for v in dataset.mean], "std": [float(v) for v in dataset.std]}


def check_data_config(cfg, where: str) -> dict:
    """A data config read back from a file, checked (one line naming the file if it is damaged)."""
    def bad(what: str) -> UserError:
        return UserError(f"{where} records a damaged preprocessing ({what}): export the network again")

    if not isinstance(cfg, dict):
        raise bad("not a mapping")
    size = cfg.get("input_size")
    if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise bad(f"input_size {size!r}")
    for key in ("mean", "std"):
        v = cfg.get(key)
        if not (isinstance(v, list) and len(v) == size[0] and all(isinstance(x, (int, float)) for x in v)):
            raise bad(f"{key} {v!r}")
    if any(s <= 0 for s in cfg["std"]):
        raise bad("a std <= 0")
    if cfg.get("crop_mode") not in CROP_MODES:
        raise bad(f"crop_mode {cfg.get('crop_mode')!r}")
    expected = CROP_FRACTION if cfg["crop_mode"] == "center" else 1.0  # the two views training makes
    if not (isinstance(cfg.get("crop_pct"), (int, float)) and abs(cfg["crop_pct"] - expected) < 1e-9):
        raise bad(f"crop_pct {cfg.get('crop_pct')!r} with crop_mode {cfg['crop_mode']}")
    return cfg


def load_image(path: str | os.PathLike, cfg: dict) -> torch.Tensor:
    """One image file as uint8 ``[3, R, R]``, decoded and cropped as ``cfg`` says."""
    r = cfg["input_size"][-1]
    name = str(path)
    blob = read_file(path)
    if cfg["crop_mode"] != "center":
        return decode_square(blob, name, r, "crop" if cfg["crop_mode"] == "square" else "squash")
    return decode_eval_view(blob, name, r)  # exactly as the streaming loader tests


def preprocess(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 ``[N, 3, R, R]`` (from :func:`load_image`) -> the float batch the network takes."""
    return normalize(images, cfg["mean"], cfg["std"])


def transform(cfg: dict) -> Callable[[str | os.PathLike], torch.Tensor]:
    """``path -> float [3, R, R]``: what torchvision calls a transform, for a data config."""
    def apply(path):
        return preprocess(load_image(path, cfg)[None], cfg)[0]

    return apply


def image_files(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Image files named by ``inputs`` (files, or folders searched recursively, in sorted order)."""
    files: list[str] = []
    for item in inputs:
        kind = path_kind(item)
        if kind == "dir":
            found = list_images(item)
            if not found:
                raise UserError(f"{item} holds no images ({', '.join(IMAGE_EXTENSIONS)}): give image files or a folder of them")
            files += found
        elif kind == "file":
            files.append(str(item))
        else:
            raise UserError(f"image {item} not found: give image files or folders of images")
    return files


def export_metadata(payload: dict) -> dict:
    """What an export records beside the network (its metadata entry): classes, preprocessing,
    architecture."""
    from .._version import __version__

    return {"format": 1, "noisydarts": __version__, "classes": list(payload["classes"]),
            "data_config": payload["preprocessing"], "space": payload.get("space"),
            "genotype": payload.get("genotype"), "family": payload.get("family")}


def trained_classes(payload: dict, source) -> tuple[list[str], dict]:
    """``(classes, data_config)`` of a weights payload. Weights written before they were recorded:
    read from the dataset they name (as ``evaluate`` does), when it can still be opened."""
    if "classes" in payload and "preprocessing" in payload:
        return list(payload["classes"]), check_data_config(payload["preprocessing"], str(source))
    from ..data import open_dataset
    from .config import DEFAULTS

    data = {**DEFAULTS["data"], **payload.get("data_config", {}), "name": payload["data"],
            "resolution": payload.get("resolution", 32)}
    try:
        dataset = open_dataset(data, "train")
    except UserError as e:
        raise UserError(f"{source} was trained by an older noisydarts that did not record its class names, and its "
                        f"data cannot be read to recover them ({e})") from e
    return list(dataset.classes), data_config(data, dataset)


