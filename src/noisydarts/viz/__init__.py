"""Pictures and reports of runs: plots, cell drawings, multi-run overlays, the Markdown/HTML report."""

from .run import plot_run, up_to_date_plots

__all__ = ["plot_run", "up_to_date_plots"]
