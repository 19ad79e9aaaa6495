"""noisydarts: differentiable architecture search that does not collapse into skip connections.

Quick use::

    import noisydarts
    result = noisydarts.search("quick")          # a preset name, a YAML file or a config dict
    print(result.genotype, result.run_dir)
    net = noisydarts.create_model(result.run_dir, dataset="cifar10")   # its evaluation network
"""

__version__ = "0.1.0"

from .config import resolve as resolve_config  # noqa: E402
from .errors import UserError  # noqa: E402
from .models import create_model, info, resolve_genotype  # noqa: E402
from .search import SearchResult, search  # noqa: E402
from .spaces import SPACES, get_space, register_space, space_of  # noqa: E402
from .spaces.darts import Genotype  # noqa: E402

#: Read a genotype of any space from a run directory, a genotype.json, a zoo name or its text.
load_genotype = resolve_genotype

__all__ = ["SPACES", "Genotype", "SearchResult", "UserError", "create_model", "get_space", "info", "load_genotype",
           "register_space", "resolve_config", "resolve_genotype", "search", "space_of", "__version__"]
