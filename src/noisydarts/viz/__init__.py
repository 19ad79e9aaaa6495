"""Pictures and reports of runs: plots, cell drawings, multi-run overlays, the Markdown/HTML report,
for search runs and training runs (:mod:`noisydarts.viz.curves`).

Nothing is imported here at import time: :mod:`noisydarts.viz.callbacks`, which both loops import,
must not pull matplotlib into a run that draws nothing.
"""

__all__ = ["plot_run", "up_to_date_plots"]


def __getattr__(name: str):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
