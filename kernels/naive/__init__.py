"""Naive NumPy references, one submodule per algorithm family, re-exported here.

They are written for clarity, not speed: plain loops or textbook NumPy expressions that a
reader can check against the formula. ``tests/`` and ``bench/`` compare each kernel with the
reference of the same name (see :mod:`kernels.catalog`).
"""

# --- convolution (kernels/naive/conv.py) ---
from .conv import convolve2d, correlate2d, correlate2d_backward  # noqa: E402,F401
# --- max-pooling (kernels/naive/pool.py) ---
from .pool import maxpool2d, maxpool2d_backward  # noqa: E402
# --- linear regression and optimizers (kernels/naive/optim.py) ---
from .optim import adagrad, adam, gd, grad, loss, min_norm_solution, rmsprop, sgd  # noqa: E402,F401
# --- hypergradients (kernels/naive/hypergrad.py) ---
from .hypergrad import hypergrad, optimal_lr_one_step, unrolled_loss  # noqa: E402,F401
