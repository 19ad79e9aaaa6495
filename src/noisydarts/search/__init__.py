"""The bilevel search: :func:`search` runs one, :class:`Searcher` is its loop.

Each iteration takes an architecture step (the method's estimator, gradient transforms and
regularizers) and a weight step; everything that differs between methods is inside the supernet
and the method's parts, so the loop is the same for every method and space.
"""

from .api import load_run, resolve_search_config, search
from .config import defaults, resolve_config
from .loop import SearchResult, Searcher, cross_entropy, summary_line

__all__ = ["SearchResult", "Searcher", "cross_entropy", "defaults", "load_run", "resolve_config",
           "resolve_search_config", "search", "summary_line"]
