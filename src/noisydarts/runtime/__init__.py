"""What every run needs, whatever it computes: the run directory and its lifecycle (lock, config,
provenance, atomic writes, metrics, cleanup), RNG, device and precision, progress bars,
data-parallel processes under torchrun, the divergence guard and the callback contract.

Nothing here knows a search space or a method.
"""
