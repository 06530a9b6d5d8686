"""The fastest plain NumPy (and PyTorch) a user would write for each job a bar measures.

A bar against a slow baseline says nothing, so these are the forms a careful user writes, not
the textbook ones of ``kernels.naive`` (which are for reading and correctness):

* ``grad``: ``(2/n) * (X.T @ (X @ w - t))``: two BLAS passes over ``X``, the scale applied to
  the d-vector. ``2/n * X.T @ (...)``, the textbook order, first scales a copy of all of ``X``
  (four times slower at (4000, 2000)).
* one SGD epoch: the epoch's permutation gathered once (``X[perm]``, one copy), then every
  batch a contiguous slice (a view), the update in place; the final loss as one pass.
  Gathering ``X[idx]`` per batch, as the reference does, costs more than the arithmetic.
* full-batch RMSProp: the gradient as above, the moments updated in place.

``tests/test_baselines.py`` checks each against ``kernels`` on the same problem.
"""

from __future__ import annotations

import numpy as np


def grad_numpy(X, t, w):
    """``(2/n) X^T (X w - t)``."""
    return (2.0 / X.shape[0]) * (X.T @ (X @ w - t))


def sgd_epoch_numpy(X, t, *, lr, batch_size, seed=0, w0=None):
    """One epoch of mini-batch SGD (homework eq. 2) over ``default_rng(seed).permutation(n)`` in
    consecutive batches, as ``kernels.sgd(..., epochs=1)`` draws them; returns ``(w, loss)``."""
    n, d = X.shape
    perm = np.random.default_rng(seed).permutation(n)
    Xp, tp = X[perm], t[perm]
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64)
    for j in range(0, n, batch_size):
        Xb, tb = Xp[j:j + batch_size], tp[j:j + batch_size]
        w -= (2.0 * lr / Xb.shape[0]) * (Xb.T @ (Xb @ w - tb))
    r = X @ w - t
    return w, float(r @ r) / n


def sgd_epoch_torch(X, t, *, lr, batch_size, seed=0, w0=None):
    """:func:`sgd_epoch_numpy` in PyTorch (CPU tensors sharing the arrays' memory, updates in
    place, no autograd); the same permutation, drawn by NumPy."""
    import torch

    n, d = X.shape
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    Xt, tt = torch.from_numpy(X), torch.from_numpy(t)
    Xp, tp = Xt[perm], tt[perm]
    w = torch.zeros(d, dtype=Xt.dtype) if w0 is None else torch.tensor(w0, dtype=Xt.dtype)
    with torch.no_grad():
        for j in range(0, n, batch_size):
            Xb, tb = Xp[j:j + batch_size], tp[j:j + batch_size]
            w -= (2.0 * lr / Xb.shape[0]) * (Xb.T @ (Xb @ w - tb))
        r = Xt @ w - tt
        return w.numpy(), float(r @ r) / n


def rmsprop_numpy(X, t, *, lr, steps, beta=0.9, eps=1e-8, w0=None):
    """Full-batch RMSProp (homework eqs. 3-4) for ``steps`` steps; returns ``(w, loss)``."""
    n, d = X.shape
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64)
    v = np.zeros(d)
    for _ in range(steps):
        g = (2.0 / n) * (X.T @ (X @ w - t))
        v *= beta
        v += (1.0 - beta) * (g * g)
        w -= lr * g / (np.sqrt(v) + eps)
    r = X @ w - t
    return w, float(r @ r) / n
