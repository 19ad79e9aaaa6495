"""The building blocks of a supernet: operations and their registry, the mixed edge, the weighting
contract, the :class:`Supernet` base, activation recomputation and ``torch.compile`` regions.

Everything here takes arguments, never a config: what a method changes reaches it as objects
(a weighting factory, op transforms, a partial-channel count) built by :mod:`noisydarts.methods`.
"""

from .mixed import MixedEdge, Weighting, apply_op, channel_shuffle
from .ops import OPS, build_op
from .supernet import Supernet, is_arch_parameter

__all__ = ["OPS", "MixedEdge", "Supernet", "Weighting", "apply_op", "build_op", "channel_shuffle", "is_arch_parameter"]
