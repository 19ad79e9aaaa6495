"""A trained network as one file another runtime loads: TorchScript or ONNX.

Both take the network in eval mode (logits only) and an example batch, and return the file's
bytes, which the caller writes atomically: there is never a half-written or second file.

ONNX uses PyTorch's ``torch.export``-based exporter (``dynamo=True``, which needs the ``onnx`` and
``onnxscript`` packages: ``pip install 'noisydarts[onnx]'``) with the weights inside the model
(``external_data=False``: one self-contained ``.onnx``, no ``.onnx.data`` beside it) and a
dynamic batch dimension. Input ``images`` [batch, C, H, W] (normalized as in training), output
``logits`` [batch, classes].

Both carry the network's metadata (class names, preprocessing, architecture: what
:func:`noisydarts.predict` needs) as JSON: a TorchScript extra file ``noisydarts.json``, an ONNX
``metadata_props`` entry ``noisydarts``.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import warnings

import torch
import torch.nn as nn

from ..errors import UserError

#: format -> the suffix of its default file name
FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}


def check_format(fmt: str) -> None:
    """A known format whose packages are installed, before anything is loaded or written."""
    if fmt not in FORMATS:
        from ..errors import suggest

        raise UserError(f"unknown export format {fmt!r}{suggest(fmt, FORMATS)}: use {' or '.join(FORMATS)}")
    if fmt == "onnx":
        missing = []
        for name in ("onnx", "onnxscript"):
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
        if missing:
            raise UserError(f"ONNX export needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}: "
                            "pip install 'noisydarts[onnx]' (or pip install onnx onnxscript), or use --format torchscript")
        if "external_data" not in inspect.signature(torch.onnx.export).parameters:
            raise UserError(f"ONNX export needs torch >= 2.6 (this is {torch.__version__}): pip install -U torch, "
                            "or use --format torchscript")


#: Where the metadata goes: a TorchScript extra file of this name; an ONNX metadata_props key.
TORCHSCRIPT_EXTRA, ONNX_METADATA_KEY = "noisydarts.json", "noisydarts"


def torchscript_bytes(model: nn.Module, example: torch.Tensor, metadata: dict | None = None) -> bytes:
    """A traced TorchScript archive; ``metadata`` (JSON) as its ``noisydarts.json`` extra file
    (``torch.jit.load(path, _extra_files={"noisydarts.json": ""})`` reads it back)."""
    extra = {TORCHSCRIPT_EXTRA: json.dumps(metadata)} if metadata is not None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape checks, and TorchScript's own deprecation
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=extra)
    return buffer.getvalue()


def onnx_bytes(model: nn.Module, example: torch.Tensor, metadata: dict | None = None) -> bytes:
    """One self-contained ONNX model (weights inside) with a dynamic batch dimension; ``metadata``
    (JSON) under the model's ``noisydarts`` metadata key (onnxruntime:
    ``session.get_modelmeta().custom_metadata_map["noisydarts"]``)."""
    if example.shape[0] < 2:  # torch.export specializes a size-1 dimension: the example needs 2+
        example = example.expand(2, *example.shape[1:]).contiguous()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's advice about its own internals
            program = torch.onnx.export(model, (example,), None, input_names=["images"], output_names=["logits"],
                                        dynamo=True, external_data=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        proto = program.model_proto
        if metadata is not None:
            entry = proto.metadata_props.add()
            entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(metadata)
        return proto.SerializeToString()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - an exporter failure is one line; --debug shows the traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"ONNX export failed ({type(e).__name__}: {first}); --format torchscript exports every "
                        "network") from e


def export_bytes(fmt: str, model: nn.Module, example: torch.Tensor, metadata: dict | None = None) -> bytes:
    check_format(fmt)
    return (torchscript_bytes if fmt == "torchscript" else onnx_bytes)(model, example, metadata)
