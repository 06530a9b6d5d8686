"""Naive NumPy references, one submodule per algorithm family, re-exported here.

They are written for clarity, not speed: plain loops or textbook NumPy expressions that a
reader can check against the formula. ``tests/`` and ``bench/`` compare each kernel with the
reference of the same name (see :mod:`kernels.catalog`).
"""

# --- convolution (kernels/naive/conv.py) ---
# --- max-pooling (kernels/naive/pool.py) ---
# --- linear regression and optimizers (kernels/naive/optim.py) ---
# --- hypergradients (kernels/naive/hypergrad.py) ---
