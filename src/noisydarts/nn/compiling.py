"""``torch.compile`` for the supernets (the ``compile`` key): regional compilation, eager fallback.

An eager DARTS step launches tens of thousands of small kernels (every BN, ReLU, conv and
weighted sum of 8 ops on 14 edges of 8 cells, forward and backward), so on a GPU the launch
overhead, not the FLOPs, bounds it. Compiling fuses the elementwise work of an edge (BN, ReLU,
the weighted sum) into fewer kernels; ``reduce-overhead`` also replays them as CUDA graphs.

* **Regional.** What is compiled is the space's *compile regions*
  (:meth:`noisydarts.nn.supernet.Supernet.compile_regions`: every mixed edge; an mbv2 layer), not
  the whole supernet: edges of the same shape share one compiled graph, so a DARTS supernet
  compiles a dozen small graphs (about 20 s on 2 CPU cores from a warm cache, 2 min cold)
  where the whole-supernet graph did not finish in 17 minutes.
* **Eager fallback.** If compiling fails (no C++ compiler, an op the backend cannot handle),
  the run says so in one line and goes on eagerly, with the same numbers.
* **Double backward** (second order's exact Hessian-vector products, Amended-DARTS, the Hessian
  monitor) is not supported by compiled graphs; those computations run under :func:`eager`.
* **Random numbers.** The compiled graphs draw NoisyDARTS' noise with the compiler's own
  generator (seeded from torch's): a compiled run is reproducible, but its noise is not the eager
  run's. ``torch._inductor.config.fallback_random = True`` draws it as eager does.

It does not pay everywhere: on the 2-core CPU the compiled step was measured at about the eager
step's time without noise and slower with it (README, Performance), so ``compile`` is ``off``
unless asked for.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
import torch.nn as nn

#: the ``compile`` key: ``off`` (eager) or a ``torch.compile`` mode
MODES = ("off", "default", "reduce-overhead", "max-autotune")

#: the ``torch.compile`` backend (the tests swap in ``aot_eager``: the same tracing and autograd,
#: no code generation, so they run in seconds)
BACKEND = "inductor"

# Graphs per compiled function: a DARTS supernet has about 10 distinct edge shapes, each traced
# for the architecture step, the weight step and evaluation (torch's default is 8).
_RECOMPILE_LIMIT = 64


def compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which compiling (not the computation) fails."""
    errors: list[type[BaseException]] = [torch._dynamo.exc.TorchDynamoException]
    try:
        from torch._inductor.exc import InductorError
        errors.append(InductorError)
    except ImportError:  # older torch: wrapped in BackendCompilerFailed
        pass
    return tuple(errors)


class _Fallback:
    """Shared by the regions of one model: after the first failure, every region runs eagerly."""

    def __init__(self):
        self.failed: str | None = None

    def call(self, compiled, eager, *args, **kwargs):
        if self.failed is None:
            try:
                return compiled(*args, **kwargs)
            except compile_errors() as error:
                self.failed = _reason(error)
                warnings.warn(f"compile: torch.compile failed ({self.failed}); this run goes on eagerly "
                              f"(same numbers, eager speed); --set compile=off skips compiling", stacklevel=2)
        return eager(*args, **kwargs)


def _reason(error: BaseException) -> str:
    """One line on why compiling failed: the backend's own error, not its wrapper's."""
    inner = getattr(error, "inner_exception", None) or error.__cause__ or error
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


def compile_regions(model: nn.Module, mode: str, backend: str | None = None) -> list[nn.Module]:
    """Compile ``model.compile_regions()`` in place with ``torch.compile(mode=mode)``; ``off``
    does nothing. Returns the compiled modules. Each region's ``forward`` becomes the compiled
    one (an instance attribute: parameter names and ``state_dict`` stay as they were)."""
    if mode == "off":
        return []
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
    fallback = _Fallback()
    regions = list(model.compile_regions())
    for region in regions:
        eager = region.forward
        compiled = torch.compile(eager, mode=None if mode == "default" else mode, backend=backend or BACKEND)
        region.forward = functools.partial(fallback.call, compiled, eager)
    return regions


def eager():
    """A context in which compiled regions run eagerly: around computations that differentiate
    twice (``create_graph``), which compiled graphs do not support."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
