"""kernels: fast, verified, Numba-compiled CPU kernels for a deep-learning optimisation course.

Every public function validates its input in Python, then calls a compiled kernel; every
kernel has a naive NumPy reference in :mod:`kernels.naive`, and :mod:`kernels.catalog` maps
each kernel to its reference and to the peer libraries (SciPy, PyTorch, JAX) it is compared
with in ``tests/`` and ``bench/``.

The convolution and pooling are imported with the package; the optimizers, the hypergradients
and the architecture analysis on first use (``kernels.sgd``, ``kernels.hypergrad``, ...): a
program that only convolves does not pay for importing the rest (70-150 ms of a cold start,
measured with ``python -X importtime`` on the 2-core Zen 5 EPYC).
"""

__version__ = "0.1.0"

# --- convolution (kernels/conv/) ---
from .conv import convolve2d, correlate2d, correlate2d_backward  # noqa: E402,F401
# --- max-pooling (kernels/pool.py) ---
from .pool import maxpool2d, maxpool2d_backward  # noqa: E402,F401

_OPTIM = frozenset(("OptimResult", "adagrad", "adam", "gd", "grad", "loss", "min_norm_solution", "rmsprop", "sgd"))
_HYPERGRAD = frozenset(("HypergradResult", "TuneResult", "TuningResult", "critical_lr", "optimal_lr_one_step", "tune",
                        "tune_lr", "unroll_graph", "unrolled_loss"))


def __getattr__(name):
    # Import statements, so that kernels._config.import_closure("kernels") still sees every
    # submodule the package reaches; absolute ones: ``from . import hypergrad`` would look the
    # name up on this module first, that is call this function again.
    if name in _OPTIM:  # --- linear regression and optimizers (kernels/optim/) ---
        import kernels.optim as module
    elif name in _HYPERGRAD or name == "hypergrad":  # --- hypergradients (kernels/hypergrad/) ---
        import kernels.hypergrad as module
    elif name == "arch":  # --- architecture analysis (kernels/arch/, used as kernels.arch) ---
        import kernels.arch as module
    else:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    # kernels.hypergrad and kernels.arch are the modules (calling kernels.hypergrad runs
    # kernels.hypergrad.hypergrad); the other names are taken from theirs
    value = module if name in ("hypergrad", "arch") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | _OPTIM | _HYPERGRAD | {"hypergrad", "arch"})
