"""The flat module paths of earlier releases keep importing for one release, with a FutureWarning
that names the new home, and give the very objects of the new modules."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import noisydarts

#: the paths the docs told space authors to import, and a name each must still provide
DOCUMENTED = {
    "noisydarts.mixed": ("noisydarts.nn.mixed", "MixedEdge"),
    "noisydarts.noise": ("noisydarts.methods.noise", "SkipNoise"),
    "noisydarts.ops": ("noisydarts.nn.ops", "OPS"),
    "noisydarts.supernet": ("noisydarts.nn.supernet", "Supernet"),
}


def _fresh_import(name: str):
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, [w for w in caught if issubclass(w.category, FutureWarning)]


@pytest.mark.parametrize("old", sorted(DOCUMENTED))
def test_documented_old_paths_import_with_a_future_warning(old):
    new, name = DOCUMENTED[old]
    module, warned = _fresh_import(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert len(warned) == 1 and new in str(warned[0].message) and old in str(warned[0].message)


@pytest.mark.parametrize("old", sorted(noisydarts.MOVED))
def test_every_moved_module_still_imports(old):
    module, warned = _fresh_import(f"noisydarts.{old}")
    new = importlib.import_module(f"noisydarts.{noisydarts.MOVED[old]}")
    assert warned and set(dir(new)) <= set(dir(module))


def test_names_that_moved_out_of_a_module_are_still_found_there():
    from noisydarts.methods.weightings import WEIGHTINGS, SoftmaxWeighting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from noisydarts.mixed import WEIGHTINGS as old_weightings
        from noisydarts.mixed import SoftmaxWeighting as old_softmax
        from noisydarts.runs import path_kind
    assert old_weightings is WEIGHTINGS and old_softmax is SoftmaxWeighting and callable(path_kind)


def test_submodules_of_a_moved_package_import():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from noisydarts.estimators.second_order import SecondOrder
    from noisydarts.methods.estimators.second_order import SecondOrder as new

    assert SecondOrder is new


def test_an_unknown_old_path_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("noisydarts.no_such_module")


def test_the_public_api_is_importable_from_the_package_root():
    r = subprocess.run([sys.executable, "-c", "import noisydarts; noisydarts.train; noisydarts.search; "
                        "print(sorted(n for n in noisydarts.__all__ if not callable(getattr(noisydarts, n)) "
                        "and not isinstance(getattr(noisydarts, n), (dict, str))))"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    for name in ("search", "train", "evaluate", "export", "load_genotype", "create_model", "info", "resolve_config",
                 "SPACES", "WEIGHTINGS", "ESTIMATORS", "GRADIENT_TRANSFORMS", "register_space", "UserError", "Diverged"):
        assert name in noisydarts.__all__ and getattr(noisydarts, name) is not None
