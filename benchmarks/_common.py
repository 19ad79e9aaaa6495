"""What the benchmark scripts share: a Searcher ready to take search steps on its first batches."""

from __future__ import annotations


def ready_searcher(cfg: dict):
    """``(searcher, (train_batch, val_batch, ctx, weights, amp))``: a Searcher for a resolved
    config, in training mode, with the arguments :meth:`Searcher.search_step` takes, so that a
    benchmark times the loop's own step (its run directory is a throwaway temporary one)."""
    import tempfile

    from noisydarts.search import Searcher
    from noisydarts.runtime.device import autocast

    s = Searcher(cfg, tempfile.mkdtemp(), progress=False)
    s.model.train()
    train = next(iter(s.train_batches.epoch(0)))
    val = next(iter(s.arch_batches.epoch(0)))
    return s, (train, val, s.step_context(cfg["weights"]["lr"]), s.model.weight_parameters(), autocast(cfg, s.device))
