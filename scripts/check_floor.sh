#!/usr/bin/env bash
# Check the dependency floor: install the oldest torch / torchvision releases pyproject.toml allows
# (the newest patch of that minor version) next to whatever numpy pip picks today, in a fresh
# virtual environment, and run the test suite there.
#
#   scripts/check_floor.sh [VENV_DIR]        # default: a new temporary directory
#
# Needs PyPI; on Linux x86_64 PyPI's torch wheels bring the CUDA libraries (about 3 GB).
# CI runs it when NOISYDARTS_CHECK_FLOOR=1 (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
floor() { grep -oE "\"$1>=[0-9.]+\"" pyproject.toml | head -1 | grep -oE "[0-9]+\.[0-9]+"; }
torch_floor=$(floor torch)
vision_floor=$(floor torchvision)
venv="${1:-$(mktemp -d)/floor}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch~=${torch_floor}.0" "torchvision~=${vision_floor}.0"
"$venv/bin/python" -m pip install -q -e ".[test]"
"$venv/bin/python" - <<'PY'
import numpy, torch, torchvision
print(f"floor check: torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")
assert torch.from_numpy(numpy.arange(3.0)).sum().item() == 3.0  # "Numpy is not available" otherwise
PY
"$venv/bin/python" -m pytest -q -n auto --dist loadscope
