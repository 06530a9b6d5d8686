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

import dataclasses
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


def hypergrad(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse", checkpoints=None,
              optimizer="gd", batch_size=None, seed=0, weight_decay=0.0, beta=None, beta1=None, beta2=None, eps=None):
    if optimizer != "gd" or weight_decay != 0.0:
        return _optimizer_hypergrad(X, t, lr=lr, l2=l2, steps=steps, w0=w0, X_val=X_val, t_val=t_val, method=method,
                                    optimizer=optimizer, batch_size=batch_size, seed=seed, weight_decay=weight_decay,
                                    beta=beta, beta1=beta1, beta2=beta2, eps=eps)
    res = _gd_hypergrad(X, t, lr=lr, l2=l2, steps=steps, w0=w0, X_val=X_val, t_val=t_val, method=method)
    direct = float(res.w @ res.w) if X_val is None else 0.0
    # d/d weight_decay: w_{k+1} moves by -w_k, where d/dl2 moves it by -2 lr w_k
    grads = dict(lr=res.d_lr, l2=res.d_l2, weight_decay=(res.d_l2 - direct) / (2.0 * lr))
    return dataclasses.replace(res, grads=grads)


def _gd_hypergrad(X, t, *, lr, l2, steps, w0, X_val, t_val, method):
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
    """eta* = n a^T X X^T a / (2 ||X X^T a||^2), a = X w0 - t (question 2.2.3), evaluated on
    X / 2^ex and a / 2^ea (exact) as eta*(X, a) = eta*(X / 2^ex, a / 2^ea) / 2^(2 ex), so that
    ||X X^T a||^2 neither overflows nor underflows."""
    X, t, w0, _, _ = _prep(X, t, w0, None, None)
    a = X @ w0 - t
    ex = int(np.frexp(np.abs(X).max())[1])
    ea = int(np.frexp(np.abs(a).max())[1])
    X, a = np.ldexp(X, -ex), np.ldexp(a, -ea)
    XXa = X @ X.T @ a
    return math.ldexp(X.shape[0] * float(a @ XXa) / (2.0 * float(XXa @ XXa)), -2 * ex)


# --- the other optimizers (kernels.hypergrad.unroll) -------------------------------------------


def _batches(n, steps, batch_size, seed):
    """The row indices of each step, drawn as kernels.sgd draws them."""
    if batch_size is None:
        return [np.arange(n)] * steps
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        j = k % -(-n // batch_size)
        if j == 0:
            perm = rng.permutation(n)
        out.append(perm[j * batch_size:(j + 1) * batch_size])
    return out


def _optimizer_hypergrad(X, t, *, lr, l2, steps, w0, X_val, t_val, method, optimizer, batch_size, seed, weight_decay,
                         beta, beta1, beta2, eps):
    """Reverse mode through SGD / RMSProp / Adam, textbook style: the forward loop keeps every
    ``(w_k, m_{k-1}, v_{k-1})`` in a list, the reverse loop recomputes each step's quantities with
    NumPy and applies the chain rule to them, vector by vector. ``grads`` as the kernel's."""
    X, t, w0, X_val, t_val = _prep(X, t, w0, X_val, t_val)
    n, d = X.shape
    if optimizer == "rmsprop":
        b1, b2, e = 0.0, 0.9 if beta is None else beta, 1e-8 if eps is None else eps
    elif optimizer == "adam":
        b1, b2, e = 0.9 if beta1 is None else beta1, 0.999 if beta2 is None else beta2, 1e-8 if eps is None else eps
    else:
        b1 = b2 = e = 0.0
    keep = 1.0 - weight_decay
    batches = _batches(n, steps, batch_size, seed)

    def step(k, w, m, v):
        idx = batches[k]
        Xb, tb = X[idx], t[idx]
        G = (2.0 / len(idx)) * (Xb.T @ (Xb @ w - tb)) + 2.0 * l2 * w
        m1 = b1 * m + (1 - b1) * G
        v1 = b2 * v + (1 - b2) * G**2
        if optimizer in ("gd", "sgd"):
            u, step_size = G, lr
        elif optimizer == "rmsprop":
            u, step_size = G / (np.sqrt(v1) + e), lr
        else:
            u, step_size = m1 / (np.sqrt(v1) / np.sqrt(1 - b2 ** (k + 1)) + e), lr / (1 - b1 ** (k + 1))
        return G, m1, v1, u, step_size, Xb

    w, m, v = w0.copy(), np.zeros(d), np.zeros(d)
    stored = []
    for k in range(steps):
        stored.append((w, m, v))
        G, m, v, u, step_size, _ = step(k, w, m, v)
        w = keep * w - step_size * u
    obj, a, direct = _objective(X, t, w, l2, X_val, t_val)
    g = dict(lr=0.0, l2=direct, weight_decay=0.0, b1=0.0, b2=0.0, eps=0.0)
    am, av = np.zeros(d), np.zeros(d)
    for k in range(steps - 1, -1, -1):
        wk, mp, vp = stored[k]
        G, m1, v1, u, step_size, Xb = step(k, wk, mp, vp)
        g["weight_decay"] -= a @ wk
        with np.errstate(divide="ignore", invalid="ignore"):
            half = np.where(v1 > 0, 0.5 / np.sqrt(v1), 0.0)  # the one-sided d sqrt(v) / dv at 0
        if optimizer in ("gd", "sgd"):
            g["lr"] -= a @ u
            Gb = -lr * a
        elif optimizer == "rmsprop":
            den = np.sqrt(v1) + e
            g["lr"] -= a @ u
            ub = -lr * a
            dden = -ub * G / den**2
            g["eps"] += dden.sum()
            vb = av + dden * half
            g["b2"] += vb @ (vp - G**2)
            Gb = ub / den + 2 * (1 - b2) * G * vb
            av = b2 * vb
        else:
            r2 = np.sqrt(1 - b2 ** (k + 1))
            bc1 = 1 - b1 ** (k + 1)
            den = np.sqrt(v1) / r2 + e
            g["lr"] -= a @ u / bc1
            g["b1"] -= (a @ u) * lr * (k + 1) * b1**k / bc1**2
            qb = -step_size * a
            mb = am + qb / den
            dden = -qb * m1 / den**2
            g["eps"] += dden.sum()
            g["b2"] += (dden * np.sqrt(v1)).sum() * (k + 1) * b2**k / (2 * r2**3)
            vb = av + dden * half / r2
            g["b1"] += mb @ (mp - G)
            g["b2"] += vb @ (vp - G**2)
            Gb = (1 - b1) * mb + 2 * (1 - b2) * G * vb
            am, av = b1 * mb, b2 * vb
        g["l2"] += 2.0 * (Gb @ wk)
        a = keep * a + 2.0 * l2 * Gb + (2.0 / Xb.shape[0]) * (Xb.T @ (Xb @ Gb))
    names = dict(gd=("lr", "l2", "weight_decay"), sgd=("lr", "l2", "weight_decay"),
                 rmsprop=("lr", "l2", "weight_decay", "beta", "eps"),
                 adam=("lr", "l2", "weight_decay", "beta1", "beta2", "eps"))[optimizer]
    alias = dict(beta="b2", beta1="b1", beta2="b2")
    grads = {name: float(g[alias.get(name, name)]) for name in names}
    nbytes = sum(x.nbytes for s in stored for x in s)
    return HypergradResult(obj, grads["lr"], grads["l2"], w, nbytes, method, steps, grads=grads, optimizer=optimizer)
