"""noisydarts: differentiable architecture search that does not collapse into skip connections.

Quick use::

    import noisydarts
    result = noisydarts.search("quick")          # a preset name, a YAML file or a config dict
    print(result.genotype, result.run_dir)

The names below are imported on first use (PEP 562), so ``import noisydarts`` and the CLI's
``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: public name -> (module, attribute)
_LAZY = {
    "resolve_config": ("config", "resolve"),
    "UserError": ("errors", "UserError"),
    "Diverged": ("guard", "Diverged"),
    "Genotype": ("genotype", "Genotype"),
    "load_genotype": ("genotype", "load_genotype"),
    "SearchResult": ("search", "SearchResult"),
    "search": ("search", "search"),
}

__all__ = ["Diverged", "Genotype", "SearchResult", "UserError", "load_genotype", "resolve_config", "search",
           "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """``noisydarts.search`` is the function, also once the submodule of that name is imported
    (the import system then sets the package attribute to the module)."""

    def __setattr__(self, name, value):
        if name == "search" and isinstance(value, types.ModuleType):
            value = value.search
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
