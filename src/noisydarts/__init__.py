"""noisydarts: differentiable architecture search that does not collapse into skip connections.

Quick use::

    import noisydarts
    result = noisydarts.search("quick")          # a preset name, a YAML file or a config dict
    print(result.genotype, result.run_dir)
"""

__version__ = "0.1.0"

from .config import resolve as resolve_config  # noqa: E402
from .errors import UserError  # noqa: E402
from .genotype import Genotype, load_genotype  # noqa: E402
from .search import SearchResult, search  # noqa: E402

__all__ = ["Genotype", "SearchResult", "UserError", "load_genotype", "resolve_config", "search", "__version__"]
