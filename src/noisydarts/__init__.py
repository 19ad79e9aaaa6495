"""noisydarts: differentiable architecture search that does not collapse into skip connections.

Quick use::

    import noisydarts
    result = noisydarts.search("quick")          # a preset name, a YAML file or a config dict
    print(result.genotype, result.run_dir)
    net = noisydarts.create_model(result.run_dir, dataset="cifar10")   # its evaluation network

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
    "Genotype": ("spaces.darts", "Genotype"),
    "load_genotype": ("models", "resolve_genotype"),  # a genotype of any space, from anything naming one
    "resolve_genotype": ("models", "resolve_genotype"),
    "create_model": ("models", "create_model"),
    "info": ("models", "info"),
    "SPACES": ("spaces", "SPACES"),
    "get_space": ("spaces", "get_space"),
    "register_space": ("spaces", "register_space"),
    "space_of": ("spaces", "space_of"),
    "SearchResult": ("search", "SearchResult"),
    "search": ("search", "search"),
}

__all__ = ["SPACES", "Diverged", "Genotype", "SearchResult", "UserError", "create_model", "get_space", "info",
           "load_genotype", "register_space", "resolve_config", "resolve_genotype", "search", "space_of", "__version__"]


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
