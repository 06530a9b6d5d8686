"""kernels: fast, verified, Numba-compiled CPU kernels for a deep-learning optimisation course.

Every public function validates its input in Python, then calls a compiled kernel; every
kernel has a naive NumPy reference in :mod:`kernels.naive`, and :mod:`kernels.catalog` maps
each kernel to its reference and to the peer libraries (SciPy, PyTorch, JAX) it is compared
with in ``tests/`` and ``bench/``.
"""

__version__ = "0.1.0"

# --- convolution (kernels/conv/) ---
from .conv import convolve2d, correlate2d, correlate2d_backward  # noqa: E402,F401
# --- max-pooling (kernels/pool.py) ---
from .pool import maxpool2d, maxpool2d_backward  # noqa: E402
# --- linear regression and optimizers (kernels/optim/) ---
from .optim import OptimResult, adagrad, adam, gd, grad, loss, min_norm_solution, rmsprop, sgd  # noqa: E402,F401
# --- hypergradients (kernels/hypergrad/); kernels.hypergrad is the module, and calling it runs
# the function kernels.hypergrad.hypergrad ---
from .hypergrad import (  # noqa: E402,F401
    HypergradResult, TuneResult, TuningResult, critical_lr, optimal_lr_one_step, tune, tune_lr, unroll_graph,
    unrolled_loss,
)
from . import hypergrad  # noqa: E402,F401
# --- architecture analysis (kernels/arch/, used as kernels.arch) ---
from . import arch  # noqa: E402
