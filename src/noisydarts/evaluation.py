"""Size of an evaluation network: parameters and multiply-adds (``noisydarts info``).

Conventions follow the DARTS / NoisyDARTS tables: parameters in millions *without* the
auxiliary head (it is dropped at test time), mult-adds in millions for one image at the
dataset's resolution (32x32 for CIFAR, 224x224 for ImageNet), network in eval mode.

Mult-adds are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the
matrix work only: convolutions (``aten.convolution``) and matrix products (``mm``/``addmm``/
``bmm``, i.e. the linear classifier). FLOPs / 2 = mult-adds. BatchNorm, ReLU, pooling, the
additions that join edges, and the drop-path masks are not counted; the NoisyDARTS release's
counter includes some of these, so its figures come out 2-4 % higher (see README).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import UserError

#: dataset -> (number of classes, input resolution, evaluation-network family)
DATASETS = {
    "cifar10": (10, 32, "cifar"),
    "cifar100": (100, 32, "cifar"),
    "imagenet": (1000, 224, "imagenet"),
}


def count_params(model: nn.Module) -> float:
    """Parameters in millions, excluding the auxiliary head (as the papers report them)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6


@torch.no_grad()
def count_multadds(model: nn.Module, input_size=(1, 3, 32, 32)) -> float:
    """Multiply-adds in millions of one forward pass in eval mode, per image of ``input_size``.
    A model on the ``meta`` device is counted without computing anything."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(*input_size, device=next(model.parameters()).device)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / input_size[0] / 1e6


def load_arch(source):
    """An architecture from the command line: a zoo name, an NB201 string (``|op~0|+|...|``),
    a genotype.json, a search run directory, or ``Genotype(...)`` text."""
    from .genotype import Genotype, load_genotype
    from .zoo import ZOO, get

    if isinstance(source, Genotype):
        return source
    text = str(source).strip()
    if text in ZOO:
        return get(text)
    if text.startswith("|"):
        from .nb201 import NB201Arch

        return NB201Arch.parse(text)
    if text.startswith("Genotype"):
        return Genotype.parse(text)  # not a path (a long text would overflow a file name)
    try:
        return load_genotype(source)
    except UserError as e:
        if "not found" in str(e):
            raise UserError(f"{e}, or a zoo name ({', '.join(ZOO)})") from e
        raise


def build_network(arch, dataset: str = "cifar10", *, num_classes: int | None = None, channels: int | None = None,
                  layers: int | None = None, auxiliary: bool = True, drop_path_prob: float | None = None,
                  in_channels: int = 3) -> nn.Module:
    """The evaluation network of ``arch`` (a DARTS ``Genotype`` or an NB201 arch) for ``dataset``'s
    family, with the papers' sizes unless given: CIFAR C=36, 20 cells; ImageNet C=48, 14 cells;
    NB201 C=16, 5 cells per stage (its own macro skeleton, no auxiliary head)."""
    from .genotype import Genotype

    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} for the network size: choose from {', '.join(DATASETS)}")
    default_classes, _, family = DATASETS[dataset]
    num_classes = num_classes or default_classes
    if not isinstance(arch, Genotype):
        # NB201 networks live in spaces/nb201.py (imported lazily: that space is optional).
        try:
            from .spaces.nb201 import NB201Network
        except ImportError as e:
            raise UserError("NB201 evaluation networks need noisydarts.spaces.nb201, which this install lacks") from e
        return NB201Network(str(arch), num_classes, channels=channels or 16, cells_per_stage=layers or 5)
    from .spaces.darts import NetworkCIFAR, NetworkImageNet

    if family == "imagenet":
        return NetworkImageNet(arch, num_classes, channels or 48, layers or 14, auxiliary,
                               0.0 if drop_path_prob is None else drop_path_prob, in_channels)
    return NetworkCIFAR(arch, num_classes, channels or 36, layers or 20, auxiliary,
                        0.2 if drop_path_prob is None else drop_path_prob, in_channels)


def info(arch, dataset: str = "cifar10") -> dict:
    """``{"params_m", "multadds_m"}`` of the evaluation network of ``arch`` on ``dataset``."""
    # Built on the meta device: shapes only, no memory and no arithmetic, so counting is instant.
    with torch.device("meta"):
        model = build_network(arch, dataset)
    resolution = DATASETS[dataset][1]
    return {"params_m": round(count_params(model), 4),
            "multadds_m": round(count_multadds(model, (1, 3, resolution, resolution)), 2)}
