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


# --- finished runs shared by the hardening tests (never modified: copy one to change it) -----------

TINY_TRAIN = {"epochs": 1, "batch_size": 16, "network": {"channels": 8, "layers": 3}, "weights": {"lr": 0.01}, "selection": "test", "device": "cpu",
              "data": {"name": "cifar10-mini", "limit": 32, "resolution": 32, "cutout": 0, "crop_padding": 0,
                       "flip": False}}
TINY_TRAIN["plots"] = False  # tests of the curves and the report switch them on themselves (tests/test_train_curves.py)


@pytest.fixture(scope="session")
def search_run(tmp_path_factory):
    """A finished 2-epoch DARTS search run (tiny supernet)."""
    import copy

    from noisydarts.search import search

    out = tmp_path_factory.mktemp("hardening") / "search"
    search(copy.deepcopy(TINY_SEARCH), out=out, progress=False)
    return out


@pytest.fixture(scope="session")
def train_run(tmp_path_factory):
    """A finished 1-epoch training run of noisydarts_a (C=8, 3 cells)."""
    import copy

    from noisydarts.train import resolve_config, train

    out = tmp_path_factory.mktemp("hardening") / "train"
    train("noisydarts_a", resolve_config(copy.deepcopy(TINY_TRAIN)), out=out, progress=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def _decoded_image_cache(tmp_path_factory):
    """The decoded-image cache of image folders (noisydarts.data.cache) in a temporary directory of
    this session, never in ~/.cache (a test that needs its own sets data.cache_dir)."""
    import os

    old = os.environ.get("NOISYDARTS_CACHE_DIR")
    os.environ["NOISYDARTS_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded-cache"))
    yield
    if old is None:
        os.environ.pop("NOISYDARTS_CACHE_DIR", None)
    else:
        os.environ["NOISYDARTS_CACHE_DIR"] = old


@pytest.fixture
def no_tensorboard(monkeypatch):
    """Imports of the tensorboard package fail, as where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def blocked(name, *a, **kw):
        if name.startswith("tensorboard") or name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", blocked)
