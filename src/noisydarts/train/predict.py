"""Using a trained network: load it with its preprocessing, and classify new images.

What a network needs besides its weights (class names, preprocessing) is recorded by training
and carried by exports: :mod:`.preprocessing`.

Sources :func:`load_predictor` takes: a training run directory (``weights.pt``, else ``best.pt``),
a weights file, a TorchScript export (``.ts``: its ``noisydarts.json`` extra file) or an ONNX
export (``.onnx``: its ``noisydarts`` metadata entry; run with onnxruntime). A TorchScript file is
a program that ``torch.jit.load`` runs: give only exports you made or trust.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UserError, path_kind
from ..models.export import ONNX_METADATA_KEY, TORCHSCRIPT_EXTRA
from .api import load_trained
from .preprocessing import check_data_config, image_files, load_image, preprocess, trained_classes



# --- loading a trained network, from a run or an export ------------------------------------------

@dataclass
class Predictor:
    """A trained network ready to classify images: ``forward(float batch) -> logits``, its
    ``classes`` and its preprocessing ``data_config``; ``source`` names where it came from."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    classes: list[str]
    data_config: dict
    source: str

    def predict(self, images: Sequence[str | os.PathLike], top: int = 5, batch_size: int = 64) -> list[dict]:
        """The ``top`` classes of each image: ``[{"image", "top": [{"class", "index", "prob"}]}]``,
        probabilities (softmax) in [0, 1], best first."""
        if top < 1:
            raise UserError(f"--top must be at least 1, got {top}")
        files = image_files(images)
        k = min(top, len(self.classes))
        out = []
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            x = preprocess(torch.stack([load_image(f, self.data_config) for f in chunk]), self.data_config)
            logits = self.forward(x)
            if logits.shape[-1] != len(self.classes):
                raise UserError(f"{self.source} outputs {logits.shape[-1]} classes but records {len(self.classes)} "
                                "class names: export the network again")
            probs, idx = logits.float().softmax(-1).topk(k, dim=-1)
            for f, p, i in zip(chunk, probs.tolist(), idx.tolist()):
                out.append({"image": f, "top": [{"class": self.classes[c], "index": c, "prob": q} for q, c in zip(p, i)]})
        return out


def _check_metadata(meta, where: str) -> tuple[list[str], dict]:
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list) or not all(
            isinstance(c, str) for c in meta["classes"]):
        raise UserError(f"{where} records no class names (was it exported by an older noisydarts?): export the "
                        "training run again with `noisydarts export RUN`")
    return meta["classes"], check_data_config(meta.get("data_config"), where)


def _torchscript(path: Path) -> Predictor:
    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's own deprecation notice
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # noqa: BLE001 - any failure is the same answer: not a TorchScript file
        raise UserError(f"{path} is not a TorchScript file ({type(e).__name__}): give a run directory, "
                        "a weights file, model.ts or model.onnx") from e
    try:
        meta = json.loads(extra[TORCHSCRIPT_EXTRA] or "null")
    except (ValueError, UnicodeDecodeError):
        meta = None
    classes, cfg = _check_metadata(meta, str(path))
    module.eval()

    def forward(x):
        with torch.no_grad():
            return module(x)

    return Predictor(forward, classes, cfg, str(path))


def _onnx(path: Path) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError("predicting with an ONNX file needs onnxruntime: pip install 'noisydarts[onnxruntime]' "
                        "(or predict from the training run directory or model.ts)") from e
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path} is not a valid ONNX model ({type(e).__name__}): export it again") from e
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    classes, cfg = _check_metadata(meta, str(path))
    name = session.get_inputs()[0].name

    def forward(x):
        return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])

    return Predictor(forward, classes, cfg, str(path))


def load_model(source: str | os.PathLike) -> nn.Module:
    """The trained network of a training run (or weights file), in eval mode, with its
    ``classes`` and ``data_config`` (the preprocessing) as attributes: as timm pairs a model
    with its data config::

        net = noisydarts.load_model("runs/pets-train")
        x = noisydarts.transform(net.data_config)("cat.jpg")   # float [3, R, R]
        print(net.classes[net(x[None]).argmax()])
    """
    model, payload = load_trained(source)
    model.classes, model.data_config = trained_classes(payload, source)
    return model


def load_predictor(source: str | os.PathLike) -> Predictor:
    """A :class:`Predictor` from a training run, a weights file, ``model.ts`` or ``model.onnx``."""
    path = Path(source)
    kind = path_kind(path)
    if kind is None:
        raise UserError(f"{source} not found: give a training run directory, a weights file, model.ts or model.onnx")
    if kind == "file" and path.suffix == ".onnx":
        return _onnx(path)
    if kind == "file" and path.suffix in (".ts", ".pt") and _is_torchscript(path):
        return _torchscript(path)
    model = load_model(path)

    def forward(x):
        with torch.no_grad():
            out = model(x)
        return out[0] if isinstance(out, tuple) else out

    return Predictor(forward, model.classes, model.data_config, str(source))


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds ``<name>/code/``; a weights file (torch.save) does not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def predict(source, images: Sequence[str | os.PathLike] | str | os.PathLike, top: int = 5) -> list[dict]:
    """The ``top`` classes of each image (files, or folders of images) by the network ``source``
    names (see :func:`load_predictor`), or a :class:`Predictor`."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    predictor = source if isinstance(source, Predictor) else load_predictor(source)
    return predictor.predict(list(images), top)


def format_predictions(results: list[dict]) -> str:
    """One line per image: ``path: class 97.1 %, class 2.9 %``."""
    return "\n".join(f"{r['image']}: " + ", ".join(f"{t['class']} {100 * t['prob']:.1f} %" for t in r["top"])
                     for r in results)
