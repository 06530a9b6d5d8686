"""The kernels on Dask (issue 16): images larger than memory, and sweeps of many trainings.

Requires the optional extra ``dask`` (``dask[distributed]``); ``import kernels`` never imports
this module or Dask.

::

    import kernels.dask as kd
    y = kd.correlate2d(x, w, bias=None, *, stride=1, padding=0, dilation=1)   # x: dask (H, W) or (N, C, H, W)
    y = kd.convolve2d(x, w, ...)                                               # true convolution
    p = kd.maxpool2d(x, kernel_size=2, *, stride=None, padding=0)              # x: dask (..., H, W)
    results = kd.sweep(fn, configs, *, client=None, batch=None)

The chunked filters live in :mod:`.filters` (how halos are exchanged, why the results are
bit-identical to the in-memory kernels), the sweeps in :mod:`.sweeps`.
"""

from .filters import convolve2d, correlate2d, maxpool2d
from .sweeps import SweepFailure, SweepResults, sweep

__all__ = ["correlate2d", "convolve2d", "maxpool2d", "sweep", "SweepFailure", "SweepResults"]
