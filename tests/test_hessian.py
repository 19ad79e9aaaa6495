"""The Hessian monitor: Lanczos on Hessian-vector products against explicit Hessians, and no trace on the search."""

import copy

import pytest
import torch

import noisydarts
from noisydarts.methods.hessian import dominant_eigenvalue, lanczos_max_eigenvalue
from noisydarts.search import cross_entropy, search
from noisydarts.spaces.darts import DartsSupernet
from noisydarts.spaces.nb201 import NB201Supernet
from noisydarts.methods.noise import SkipNoise


def _tiny(space: str):
    torch.manual_seed(0)
    noise = SkipNoise(0.2)
    if space == "darts":
        # 2 cell types x 5 edges x 3 ops = 30 architecture parameters
        model = DartsSupernet(10, channels=4, layers=3, nodes=2, ops=["skip_connect", "sep_conv_3x3", "max_pool_3x3"],
                              noise=noise)
    else:
        model = NB201Supernet(10, channels=4, cells_per_stage=1, noise=noise)
    model = model.double()
    with torch.no_grad():  # alpha away from uniform, so the Hessian is not trivially small
        for p in model.arch_parameters():
            p.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g))
               for _ in range(2)]
    return model, batches


def explicit_hessian(model, batches, seed):
    """The Hessian of the mean search loss w.r.t. all alpha as one vector, formed entry by entry
    (torch.autograd.functional.hessian), with batch i's noise drawn from seed + i as the monitor does."""
    names = [n for n, p in model.named_parameters() if n.startswith("arch.")]
    params = [dict(model.named_parameters())[n] for n in names]
    sizes = [p.numel() for p in params]

    def loss_of(flat):
        values = {n: t.view_as(p) for n, t, p in zip(names, flat.split(sizes), params)}
        total = 0.0
        with torch.random.fork_rng():
            for i, (x, y) in enumerate(batches):
                torch.manual_seed(seed + i)
                logits = torch.func.functional_call(model, values, (x,))
                total = total + torch.nn.functional.cross_entropy(logits, y) / len(batches)
        return total

    model.train()
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_dominant_eigenvalue_matches_the_explicit_hessian(space):
    model, batches = _tiny(space)
    H = explicit_hessian(model, batches, seed=7)
    assert torch.allclose(H, H.T, atol=1e-10)  # one fixed noise sample: a symmetric operator
    exact = torch.linalg.eigvalsh(H)
    dim = H.shape[0]
    full = dominant_eigenvalue(model, batches, cross_entropy, iterations=dim, tol=1e-12, seed=7)
    assert full.value == pytest.approx(float(exact[-1]), rel=1e-7)
    top = torch.linalg.eigh(H).eigenvectors[:, -1]
    assert abs(float(full.vector @ top)) == pytest.approx(1.0, abs=1e-6)  # the Ritz vector is the eigenvector
    quick = dominant_eigenvalue(model, batches, cross_entropy, seed=7)  # the monitor's defaults
    assert quick.products <= 20 and quick.value == pytest.approx(float(exact[-1]), rel=1e-2)  # tol 1e-2 bounds it
    warm = dominant_eigenvalue(model, batches, cross_entropy, seed=7, start=quick.vector)  # from the previous estimate
    assert warm.products < quick.products and warm.value == pytest.approx(float(exact[-1]), rel=1e-2)


def test_lanczos_returns_the_largest_algebraic_eigenvalue():
    """Power iteration would find -5 (the largest magnitude); RobustDARTS' lambda_max is max(eigvals) = 2."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([-5.0, 2.0, 1.9], dtype=torch.float64), torch.linspace(-1, 1, 37, dtype=torch.float64)])
    A = Q @ torch.diag(spectrum) @ Q.T
    value, used, _ = lanczos_max_eigenvalue(lambda v: A @ v, 40, iterations=40, tol=1e-10)
    assert value == pytest.approx(2.0, abs=1e-8)
    value, used, _ = lanczos_max_eigenvalue(lambda v: A @ v, 40, iterations=40, tol=1e-3)
    assert used < 40 and value == pytest.approx(2.0, rel=2e-3)
    # a start vector that is another eigenvector (an invariant subspace) still finds the top one
    value, _, _ = lanczos_max_eigenvalue(lambda v: A @ v, 40, iterations=40, tol=1e-10, start=Q[:, 0])
    assert value == pytest.approx(2.0, abs=1e-8)


def test_the_measurement_leaves_no_trace():
    model, batches = _tiny("darts")
    model.eval()
    buffers = [b.clone() for b in model.buffers()]
    params = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    first = dominant_eigenvalue(model, batches, cross_entropy, seed=3).value
    assert not model.training and model.noise.training is False  # modes restored (eval everywhere)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))  # BN running statistics
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    again = dominant_eigenvalue(model, batches, cross_entropy, seed=3).value
    assert again == first  # a fixed seed: the same operator, the same number
    quiet = dominant_eigenvalue(model, batches, cross_entropy, seed=3, noise=False).value
    assert quiet != first


def test_monitor_in_a_search_logs_and_does_not_change_it(tiny_config, tmp_path):
    cfg = tiny_config | {"epochs": 4, "monitor": {"hessian_every": 2, "hessian_iterations": 4}}
    plain = search(tiny_config | {"epochs": 4}, out=tmp_path / "plain", progress=False)
    watched = search(cfg, out=tmp_path / "watched", progress=False)
    assert watched.alpha_history == plain.alpha_history
    assert [m["train_loss"] for m in watched.metrics] == [m["train_loss"] for m in plain.metrics]
    logged = {m["epoch"]: m.get("hessian_eig") for m in watched.metrics}
    # as the RobustDARTS release (its 0-based epochs 0, 2, ...): after epochs 1 and 3, and the last one
    assert logged[1] > 0 and logged[2] is None and logged[3] > 0 and logged[4] > 0
    assert all(1 <= m["hessian_products"] <= 4 for m in watched.metrics if "hessian_eig" in m)
    small = search(cfg | {"monitor": cfg["monitor"] | {"hessian_batch_size": 8}}, out=tmp_path / "small", progress=False)
    assert small.alpha_history == plain.alpha_history  # a smaller measured batch: another number, the same search
    assert small.metrics[-1]["hessian_eig"] != watched.metrics[-1]["hessian_eig"]


def test_monitored_search_resumes_exactly(tiny_config, tmp_path):
    """The warm start vector is checkpointed: a resumed search logs the same eigenvalues."""
    cfg = tiny_config | {"epochs": 2, "monitor": {"hessian_every": 1, "hessian_iterations": 5}}
    full = search(cfg, out=tmp_path / "full", progress=False)
    search(cfg, out=tmp_path / "part", progress=False, stop_after=1)
    resumed = search(resume=tmp_path / "part", progress=False)
    assert [m["hessian_eig"] for m in resumed.metrics] == [m["hessian_eig"] for m in full.metrics]
    assert [m["hessian_products"] for m in resumed.metrics] == [m["hessian_products"] for m in full.metrics]


def test_monitor_config_checks():
    with pytest.raises(noisydarts.UserError, match="monitor.hessian_every must be >= 0"):
        noisydarts.resolve_config(overrides=["monitor.hessian_every=-1"])
    with pytest.raises(noisydarts.UserError, match="needs the Hessian monitor"):
        noisydarts.resolve_config(overrides=["early_stop.robustdarts.enabled=true"])
    cfg = noisydarts.resolve_config(overrides=["monitor.hessian_every=2", "early_stop.robustdarts.enabled=true"])
    from noisydarts.search.callbacks import default_callbacks
    from noisydarts.methods.early_stop import RobustDartsStop
    from noisydarts.methods.hessian import HessianMonitor

    kinds = [type(c) for c in default_callbacks(copy.deepcopy(cfg) | {"plots": False})]
    assert kinds == [HessianMonitor, RobustDartsStop]


@pytest.mark.parametrize("stride, padding, dilation, size", [(1, 1, 1, 7), (2, 1, 1, 7), (2, 2, 2, 8), (1, 4, 2, 9)])
def test_grouped_conv_with_a_transposed_conv_gradient_is_the_same_function(stride, padding, dilation, size):
    """The monitor's depthwise conv: same values, gradients and second derivatives as F.conv2d."""
    from noisydarts.methods.hessian import _GroupedConv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def mine(x, w):
        return _GroupedConv2d.apply(x, w, (stride, stride), (padding, padding), (dilation, dilation), 4)

    def reference(x, w):
        return torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, 4)

    assert torch.equal(mine(x, w), reference(x, w))
    assert torch.autograd.gradcheck(mine, (x, w))
    assert torch.autograd.gradgradcheck(mine, (x, w))


def test_lanczos_follows_the_agreed_decision_to_stop():
    """Under torchrun rank 0's decision is every rank's (``agree``): the same number of products,
    hence of collectives, on every rank."""
    A = torch.diag(torch.linspace(-1, 3, 30, dtype=torch.float64))
    alone = lanczos_max_eigenvalue(lambda v: A @ v, 30, iterations=30, tol=1e-3)
    same = lanczos_max_eigenvalue(lambda v: A @ v, 30, iterations=30, tol=1e-3, agree=lambda done: done)
    assert same.products == alone.products and same.value == alone.value
    assert lanczos_max_eigenvalue(lambda v: A @ v, 30, iterations=30, tol=1e-3, agree=lambda done: True).products == 1
    longer = lanczos_max_eigenvalue(lambda v: A @ v, 30, iterations=30, tol=1e-3, agree=lambda done: False)
    assert longer.products == 30 > alone.products and longer.value == pytest.approx(3.0, abs=1e-8)


def test_the_monitor_is_a_callback_that_runs_on_every_rank():
    from noisydarts.methods.hessian import HessianMonitor, slice_shares
    from noisydarts.runtime.callbacks import Callback, for_rank

    cfg = noisydarts.resolve_config(overrides=["monitor.hessian_every=1"])
    monitor = HessianMonitor(cfg)
    assert isinstance(monitor, Callback) and for_rank([monitor], 1) == (monitor,)
    assert monitor.has_state and monitor.state_key == "HessianMonitor"  # the checkpoint's key, as before
    assert slice_shares([8, 4]) == [1.0, 1.0]  # one process: the whole of every batch
