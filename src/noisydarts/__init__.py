"""noisydarts: differentiable architecture search that does not collapse into skip connections.

Quick use::

    import noisydarts
    result = noisydarts.search("quick")          # a preset name, a YAML file or a config dict
    print(result.genotype, result.run_dir)
    run = noisydarts.train(result.run_dir, {"epochs": 1}, out="runs/trained")
    net = noisydarts.create_model(result.run_dir, dataset="cifar10")   # its evaluation network

The names below are imported on first use (PEP 562), so ``import noisydarts`` and the CLI's
``--help`` do not pay for importing torch. The package's layers are described in docs/design.md;
module paths of earlier releases (``noisydarts.mixed``, ``noisydarts.noise``, ...) still import,
with a FutureWarning, for one release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

from ._version import __version__

#: public name -> (module, attribute)
_LAZY = {
    "resolve_config": ("search", "resolve_config"),
    "UserError": ("errors", "UserError"),
    "Diverged": ("errors", "Diverged"),
    "Genotype": ("spaces.darts", "Genotype"),
    "load_genotype": ("models", "resolve_genotype"),  # a genotype of any space, from anything naming one
    "resolve_genotype": ("models", "resolve_genotype"),
    "create_model": ("models", "create_model"),
    "info": ("models", "info"),
    "SPACES": ("spaces", "SPACES"),
    "get_space": ("spaces", "get_space"),
    "register_space": ("spaces", "register_space"),
    "space_of": ("spaces", "space_of"),
    "WEIGHTINGS": ("methods.weightings", "WEIGHTINGS"),
    "ESTIMATORS": ("methods.estimators", "ESTIMATORS"),
    "GRADIENT_TRANSFORMS": ("methods.gradients", "GRADIENT_TRANSFORMS"),
    "SearchResult": ("search", "SearchResult"),
    "search": ("search", "search"),
    "TrainResult": ("train", "TrainResult"),
    "train": ("train", "train"),
    "evaluate": ("train", "evaluate"),
    "export": ("train", "export"),
    "load_model": ("train", "load_model"),
    "predict": ("train", "predict"),
    "transform": ("train", "transform"),
}

__all__ = ["ESTIMATORS", "GRADIENT_TRANSFORMS", "SPACES", "WEIGHTINGS", "Diverged", "Genotype", "SearchResult",
           "TrainResult", "UserError", "create_model", "evaluate", "export", "get_space", "info", "load_genotype", "load_model", "predict",
           "register_space", "resolve_config", "resolve_genotype", "search", "space_of", "train", "transform", "__version__"]

#: The flat module paths of earlier releases -> where the module lives now. They keep importing
#: (the same module object, with a FutureWarning) for one release.
MOVED = {
    "mixed": "nn.mixed", "noise": "methods.noise", "ops": "nn.ops", "supernet": "nn.supernet",
    "checkpointing": "nn.recompute", "compiling": "nn.compiling", "heads": "nn.heads",
    "sivdnas": "methods.sivdnas", "estimators": "methods.estimators", "gradients": "methods.gradients",
    "early_stop": "methods.early_stop", "hessian": "methods.hessian", "callbacks": "search.callbacks",
    "nb201": "benchmark.nb201", "literals": "spaces.literals", "zoo": "models.zoo", "exporting": "models.export",
    "plots": "viz.plots", "overlay": "viz.overlay", "report": "viz.report", "runs": "runtime.runs",
    "distributed": "runtime.distributed", "guard": "runtime.guard", "cli_train": "cli.train",
}
#: Names once importable from a flat module that now live in another one.
_MOVED_NAMES = {
    "nn.mixed": {"SoftmaxWeighting": "methods.weightings", "EdgeNormWeighting": "methods.weightings",
                 "WEIGHTINGS": "methods.weightings", "weighting_factory": "methods.weightings",
                 "build_weighting": "methods.weightings"},
    "runtime.runs": {"os_reason": "errors", "path_kind": "errors", "read_text": "errors"},
    "runtime.guard": {"Diverged": "errors"},
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """``noisydarts.search`` and ``noisydarts.train`` are the functions, also once the subpackages
    of those names are imported (the import system then sets the package attribute to the module)."""

    def __setattr__(self, name, value):
        if name in ("search", "train") and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


class _OldPath(types.ModuleType):
    """An old flat module path: every attribute comes from the module's new home."""

    def __init__(self, old: str, new: types.ModuleType, extra: dict):
        super().__init__(old)
        self.__dict__["_new"], self.__dict__["_extra"] = new, extra
        self.__path__ = getattr(new, "__path__", [])  # a package (estimators) keeps its submodules

    def __getattr__(self, name):
        if name in self._extra:
            return getattr(importlib.import_module(f"{__name__}.{self._extra[name]}"), name)
        return getattr(self._new, name)

    def __dir__(self):
        return sorted(set(dir(self._new)) | set(self._extra))


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``noisydarts.<old>`` (and its submodules) and answers with the module's new home."""

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) >= 2 and parts[0] == __name__ and parts[1] in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=len(parts) == 2)
        return None

    def create_module(self, spec):
        parts = spec.name.split(".")
        new = ".".join([__name__, MOVED[parts[1]], *parts[2:]])
        if len(parts) == 2:
            warnings.warn(f"{spec.name} moved to {new}; the old path works until the next release",
                          FutureWarning, stacklevel=4)
        module = importlib.import_module(new)
        return _OldPath(spec.name, module, _MOVED_NAMES.get(MOVED[parts[1]], {}) if len(parts) == 2 else {})

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _OldPathFinder())


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
