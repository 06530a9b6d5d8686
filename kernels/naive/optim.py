"""NumPy references for :mod:`kernels.optim`: the same functions, signatures and results,
written as the textbook formulas (see :mod:`kernels.optim` for the semantics).

``grad`` is literally ``2/n * X.T @ (X @ w - t)`` (plus ``2 l2 w``) in the dtype of ``X``, the
expression a NumPy user writes. The optimizers work in float64 whatever the dtype, like the
kernels, and draw the same mini-batches: ``numpy.random.default_rng(seed).permutation(n)`` at
the start of each epoch, walked in consecutive batches.
"""

from __future__ import annotations

import numpy as np

from ..optim import OptimResult, _run_checks


def loss(X, t, w, *, l2=0.0) -> float:
    """``(1/n) ||X w - t||^2 + l2 ||w||^2`` in float64."""
    X64, t64 = np.asarray(X, np.float64), np.asarray(t, np.float64)
    w64 = np.asarray(w, np.float64)
    r = X64 @ w64 - t64
    return float(r @ r / X64.shape[0] + l2 * (w64 @ w64))


def grad(X, t, w, *, l2=0.0, out=None) -> np.ndarray:
    """``2/n * X.T @ (X @ w - t) + 2 l2 w`` (two BLAS passes over ``X``)."""
    X = np.asarray(X)
    g = 2 / X.shape[0] * X.T @ (X @ w - t)
    if l2:
        g = g + 2 * l2 * w
    g = g.astype(X.dtype, copy=False)
    if out is not None:
        out[...] = g
        return out
    return g


def min_norm_solution(X, t) -> np.ndarray:
    """``pinv(X) @ t`` in float64, rounded to the dtype of ``X``."""
    X = np.asarray(X)
    return (np.linalg.pinv(X.astype(np.float64)) @ np.asarray(t, np.float64)).astype(X.dtype)


def _optimize(kind, X, t, *, lr, steps, epochs=None, batch_size, seed, w0, l2, weight_decay, record_every,
              beta1=0.0, beta2=0.0, eps=0.0):
    X, t, steps, w = _run_checks(X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed,
                                 w0=w0, l2=l2, weight_decay=weight_decay, record_every=record_every)
    dtype = X.dtype
    wmax = np.finfo(dtype).max  # a weight beyond it would round to inf: a bad iterate
    X, t = X.astype(np.float64, copy=False), t.astype(np.float64, copy=False)  # no copy for float64
    n, d = X.shape
    full = batch_size is None
    b = n if full else batch_size
    nbatches = -(-n // b)
    rng = np.random.default_rng(seed)
    m = np.zeros(d)
    v = np.zeros(d)
    w_prev = w
    losses, traj, rec = [], [], []
    done, diverged_at = 0, -1

    def full_loss(w):
        r = X @ w - t
        return r @ r / n + l2 * (w @ w)

    for s in range(steps):
        if full:
            Xb, tb = X, t
        else:
            e, j = divmod(s, nbatches)
            if j == 0:
                perm = rng.permutation(n)
            idx = perm[j * b:(j + 1) * b]
            Xb, tb = X[idx], t[idx]
        mb = Xb.shape[0]
        r = Xb @ w - tb
        lb = r @ r / mb + l2 * (w @ w)
        if record_every and s % record_every == 0 and np.isfinite(lb):
            lf = lb if full else full_loss(w)
            if np.isfinite(lf):
                losses.append(lf)
                traj.append(w)
                rec.append(s)
            lb = lf
        if not np.isfinite(lb):
            diverged_at = s
            if s > 0:
                w, done = w_prev, s - 1
            break
        g = 2 / mb * (Xb.T @ r) + 2 * l2 * w
        if kind == "gd":
            u = g
        elif kind == "rmsprop":
            v = beta2 * v + (1 - beta2) * g**2
            u = g / (np.sqrt(v) + eps)
        elif kind == "adagrad":
            v = v + g**2
            u = g / (np.sqrt(v) + eps)
        else:
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g**2
            k = s + 1
            u = m / (1 - beta1**k) / (np.sqrt(v) / np.sqrt(1 - beta2**k) + eps)
        w_new = (1 - weight_decay) * w - lr * u
        if not np.all(np.isfinite(w_new)) or np.abs(w_new).max(initial=0.0) > wmax:
            diverged_at, done = s + 1, s
            break
        w_prev, w, done = w, w_new, s + 1

    lf = full_loss(w)
    if diverged_at < 0 and not np.isfinite(lf):
        diverged_at = done
        if done > 0:
            w, done = w_prev, done - 1
            lf = full_loss(w)
    if record_every:
        if not rec or rec[-1] != done:
            losses.append(lf)
            traj.append(w)
            rec.append(done)
        trajectory = np.array(traj, dtype=dtype).reshape(len(traj), d)
    else:
        losses, rec = [lf], [done]
        trajectory = np.empty((0, d), dtype=dtype)
    return OptimResult(
        w=w.astype(dtype),
        losses=np.array(losses, dtype=np.float64),
        trajectory=trajectory,
        recorded_steps=np.array(rec, dtype=np.int64),
        steps=done,
        diverged=diverged_at >= 0,
        diverged_at=diverged_at,
    )


def gd(X, t, *, lr, steps, w0=None, l2=0.0, weight_decay=0.0, record_every=0) -> OptimResult:
    return _optimize("gd", X, t, lr=lr, steps=steps, batch_size=None, seed=0, w0=w0, l2=l2,
                     weight_decay=weight_decay, record_every=record_every)


def sgd(X, t, *, lr, batch_size, steps=None, epochs=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
        record_every=0) -> OptimResult:
    return _optimize("gd", X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed, w0=w0,
                     l2=l2, weight_decay=weight_decay, record_every=record_every)


def rmsprop(X, t, *, lr, beta=0.9, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
            weight_decay=0.0, record_every=0) -> OptimResult:
    return _optimize("rmsprop", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                     weight_decay=weight_decay, record_every=record_every, beta2=beta, eps=eps)


def adagrad(X, t, *, lr, eps=1e-10, steps, batch_size=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
            record_every=0) -> OptimResult:
    return _optimize("adagrad", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                     weight_decay=weight_decay, record_every=record_every, eps=eps)


def adam(X, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
         weight_decay=0.0, record_every=0) -> OptimResult:
    return _optimize("adam", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                     weight_decay=weight_decay, record_every=record_every, beta1=beta1, beta2=beta2, eps=eps)
