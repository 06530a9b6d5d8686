"""Naive NumPy references for :mod:`kernels.hypergrad`: textbook loops a reader can check
against the formulas of homework section 2, with the same signatures and results.

``hypergrad`` here runs gradient descent keeping every ``w_k`` in a Python list and then the
plain reverse-mode recursion, recomputing each gradient ``g_k`` from scratch with two NumPy
matrix-vector products (no fusion, no algebraic shortcut)::

    d_lr += -a_{k+1} . g_k;   d_l2 += -lr a_{k+1} . (2 w_k);   a_k = a_{k+1} - lr H a_{k+1}

``method="forward"`` instead carries both tangents by their textbook recursions,
``u' = u - g - lr H u`` and ``v' = v - lr (H v + 2 w)`` (no closed form for ``u``), an
independent check of the compiled forward mode. ``"checkpoint"`` and ``"exact"`` are the same
numbers as ``"reverse"`` (checkpointing is a memory schedule, the eigendecomposition an
evaluation of the same function), so they run the reverse pass. ``bytes_stored`` is the memory
of the stored list of weights (reverse) or of the two tangents (forward). Divergence is
reported as in :mod:`kernels.hypergrad` (training loss above twice its start, or non-finite).
Everything is float64.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.hypergrad import HypergradResult


def _loss(X, t, w, l2):
    r = X @ w - t
    return float(r @ r) / X.shape[0] + l2 * float(w @ w)


def _grad(X, t, w, l2):
    return (2.0 / X.shape[0]) * (X.T @ (X @ w - t)) + 2.0 * l2 * w


def _hvp(X, v, l2):
    return (2.0 / X.shape[0]) * (X.T @ (X @ v)) + 2.0 * l2 * v


def _objective(X, t, w, l2, X_val, t_val):
    """Objective, its gradient in ``w`` and its direct partial in ``l2``."""
    if X_val is None:
        return _loss(X, t, w, l2), _grad(X, t, w, l2), float(w @ w)
    r = X_val @ w - t_val
    return float(r @ r) / X_val.shape[0], (2.0 / X_val.shape[0]) * (X_val.T @ r), 0.0


def _prep(X, t, w0, X_val, t_val):
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    w0 = np.zeros(X.shape[1]) if w0 is None else np.asarray(w0, dtype=np.float64)
    if X_val is not None:
        X_val = np.asarray(X_val, dtype=np.float64)
        t_val = np.asarray(t_val, dtype=np.float64)
    return X, t, w0, X_val, t_val


def unrolled_loss(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None):
    X, t, w0, X_val, t_val = _prep(X, t, w0, X_val, t_val)
    w = w0.copy()
    for _ in range(steps):
        w = w - lr * _grad(X, t, w, l2)
    obj, _, _ = _objective(X, t, w, l2, X_val, t_val)
    return HypergradResult(loss=obj, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=0,
                           method="forward_pass", steps=steps)


def hypergrad(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse", checkpoints=None):
    X, t, w0, X_val, t_val = _prep(X, t, w0, X_val, t_val)
    loss0 = _loss(X, t, w0, l2)
    thr = 2.0 * loss0
    w = w0.copy()
    if method == "forward":
        u = np.zeros_like(w)
        v = np.zeros_like(w)
        for k in range(steps):
            g = _grad(X, t, w, l2)
            u, v = u - g - lr * _hvp(X, u, l2), v - lr * (_hvp(X, v, l2) + 2.0 * w)
            w = w - lr * g
            if not _loss(X, t, w, l2) <= thr:
                return HypergradResult(math.inf, math.nan, math.nan, w, 2 * w.nbytes, method, steps, True, k + 1)
        obj, a, direct = _objective(X, t, w, l2, X_val, t_val)
        return HypergradResult(obj, float(a @ u), float(a @ v) + direct, w, u.nbytes + v.nbytes, method, steps)

    traj = [w.copy()]
    for k in range(steps):
        w = w - lr * _grad(X, t, w, l2)
        traj.append(w.copy())
        if not _loss(X, t, w, l2) <= thr:
            return HypergradResult(math.inf, math.nan, math.nan, w, sum(x.nbytes for x in traj), method, steps,
                                   True, k + 1)
    obj, a, direct = _objective(X, t, w, l2, X_val, t_val)
    d_lr = 0.0
    d_l2 = direct
    for k in range(steps - 1, -1, -1):
        g = _grad(X, t, traj[k], l2)
        d_lr += -float(a @ g)
        d_l2 += -lr * float(a @ (2.0 * traj[k]))
        a = a - lr * _hvp(X, a, l2)
    return HypergradResult(obj, d_lr, d_l2, w, sum(x.nbytes for x in traj), method, steps)


def optimal_lr_one_step(X, t, w0=None):
    """eta* = n a^T X X^T a / (2 ||X X^T a||^2), a = X w0 - t (question 2.2.3)."""
    X, t, w0, _, _ = _prep(X, t, w0, None, None)
    a = X @ w0 - t
    XXa = X @ X.T @ a
    return X.shape[0] * float(a @ XXa) / (2.0 * float(XXa @ XXa))
