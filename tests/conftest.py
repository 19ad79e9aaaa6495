import pytest
import torch

# Tiny models: one thread is as fast as two, and never thrashes when the machine is shared.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TINY_SEARCH = {
    "epochs": 2,
    "batch_size": 16,
    "data": {"name": "cifar10-mini", "limit": 96, "resolution": 16},
    "space": {"name": "darts", "channels": 4, "layers": 3, "nodes": 2},
    "weights": {"lr": 0.05},
    "arch": {"lr": 3.0e-3},
    "plots": False,  # tests of the plots switch them on themselves (tests/test_plots.py)
}


@pytest.fixture
def tiny_config():
    import copy

    return copy.deepcopy(TINY_SEARCH)
