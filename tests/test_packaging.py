"""Packaging (issue 10, class 9): every third-party import is a declared dependency or extra, the
extras and the license exist, and the torch floor is one that works with NumPy 2."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
tomllib = pytest.importorskip("tomllib")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: import name -> distribution name
DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "PIL": "Pillow", "yaml": "PyYAML",
                 "tqdm": "tqdm", "matplotlib": "matplotlib", "onnx": "onnx", "onnxscript": "onnxscript",
                 "tensorboard": "tensorboard"}


def _names(requirements):
    return {re.split(r"[<>=~!; \[]", r, maxsplit=1)[0].lower() for r in requirements}


def _imports():
    found = set()
    for path in (ROOT / "src" / "noisydarts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"noisydarts"}


def test_every_third_party_import_is_declared():
    required = _names(PROJECT["dependencies"])
    optional = set().union(*(_names(v) for v in PROJECT["optional-dependencies"].values()))
    undeclared = {m for m in _imports() if DISTRIBUTIONS.get(m, m).lower() not in required | optional}
    assert undeclared == set()
    assert "pillow" in required


def test_extras_and_license():
    extras = PROJECT["optional-dependencies"]
    assert {"onnx", "onnxscript"} <= _names(extras["onnx"]) and "tensorboard" in _names(extras["tensorboard"])
    assert extras["all"] == ["noisydarts[onnx,onnxruntime,tensorboard]"] and "onnxruntime" in _names(extras["onnxruntime"])
    assert PROJECT["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_torch_floor_supports_numpy_2():
    floor = next(r for r in PROJECT["dependencies"] if r.startswith("torch>="))
    major, minor = map(int, floor.split(">=")[1].split(".")[:2])
    assert (major, minor) >= (2, 4)  # older wheels were built against NumPy 1 ("Numpy is not available")
    assert f"torch ≥ {major}.{minor}" in (ROOT / "README.md").read_text()
    assert (ROOT / "scripts" / "check_floor.sh").is_file()
