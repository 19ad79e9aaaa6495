"""Everything that differs between DARTS variants, each one small module behind one seam.

* weightings (:mod:`.weightings`, :mod:`.sivdnas`, :mod:`.fairdarts`, :mod:`.drnas`): architecture
  parameters -> op and edge weights (and, for some, the cell they select);
* op transforms (:mod:`.noise`): NoisyDARTS' noise and the release's drop-path on skip connections;
  DARTS-' auxiliary skip on every edge (:mod:`.dartsminus`);
* estimators (:mod:`.estimators`): the architecture gradient (first/second order, Amended-DARTS);
* gradient transforms (:mod:`.gradients`): projection between edges;
* architecture-loss regularizers (:mod:`.regularizers`; :mod:`.betadecay`, :mod:`.zero_one`, and the
  KLs the SI-VDNAS and DrNAS weightings bring);
* weight-step perturbations (:mod:`.perturbation`, :mod:`.sdarts`): SDARTS-RS and -ADV;
* callbacks and stage hooks (:mod:`.hessian`, :mod:`.early_stop`, DrNAS' progressive stages):
  the Hessian monitor, the early stops.

Each module owns its config section (defaults and validation) and registers it with
:data:`noisydarts.config.SEARCH` when imported; importing this package imports them all.
"""

from . import (betadecay, dartsminus, drnas, early_stop, estimators, fairdarts, gradients, hessian, noise,
               perturbation, sdarts, sivdnas, weightings, zero_one)

__all__ = ["betadecay", "dartsminus", "drnas", "early_stop", "estimators", "fairdarts", "gradients", "hessian", "noise",
           "perturbation", "sdarts", "sivdnas", "weightings", "zero_one"]
