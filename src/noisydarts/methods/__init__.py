"""Everything that differs between DARTS variants, each one small module behind one seam.

* weightings (:mod:`.weightings`, :mod:`.sivdnas`): architecture parameters -> op and edge weights;
* op transforms (:mod:`.noise`): NoisyDARTS' noise and the release's drop-path on skip connections;
* estimators (:mod:`.estimators`): the architecture gradient (first/second order, Amended-DARTS);
* gradient transforms (:mod:`.gradients`): projection between edges;
* callbacks (:mod:`.hessian`, :mod:`.early_stop`): the Hessian monitor and the early stops.

Each module owns its config section (defaults and validation) and registers it with
:data:`noisydarts.config.SEARCH` when imported; importing this package imports them all.
"""

from . import betadecay, dartsminus, drnas, early_stop, estimators, fairdarts, gradients, hessian, noise, perturbation, sdarts, sivdnas, weightings

__all__ = ["betadecay", "dartsminus", "drnas", "early_stop", "estimators", "fairdarts", "gradients", "hessian", "noise", "perturbation", "sdarts", "sivdnas", "weightings"]
