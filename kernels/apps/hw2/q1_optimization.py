"""Part 1 of the homework: optimization of linear regression (questions 1.1.1 and 1.2).

Mini-batch SGD from zero against the minimum-norm solution, and the adaptive methods (RMSProp,
Adagrad, Adam) that leave the row space; each ``q*`` function returns plain data for the report.
"""

from __future__ import annotations

import math

import numpy as np

import kernels as K

from ._common import SIZES, _f


# ============================================================================ 1.1.1


def q1_1_1(quick=False):
    """Mini-batch SGD from ``w0 = 0`` converges to the minimum-norm solution (question 1.1.1).

    Random ``X`` (``n < d``, rows scaled to norm about 1) and ``t``; for several seeds (of the
    data and of the batch order) and batch sizes, run :func:`kernels.sgd` and measure the
    residual ``||X w - t||``, the distance to ``w* = min_norm_solution(X, t)`` and the part of
    ``w`` outside the row space of ``X``. One more run starts from a random ``w0``: it converges
    to ``w* + (I - P) w0`` (``P`` the projector on the row space), so the distance to ``w*`` is
    ``||(I - P) w0||``, not 0 -- the updates never leave ``w0 + rowspace(X)``.

    ``lr = 0.5 / max_i ||x_i||^2`` is stable for every batch: the batch Hessian
    ``(2/b) X_B^T X_B`` has ``lambda_max <= 2 max_i ||x_i||^2``.
    """
    S = SIZES[bool(quick)]
    n, d, steps = S["sgd_n"], S["sgd_d"], S["sgd_steps"]
    runs = []
    off = None
    for seed in S["sgd_seeds"]:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d)) / math.sqrt(d)
        t = rng.standard_normal(n)
        w_star = K.min_norm_solution(X, t)
        # row-space projector from the SVD (the report's own check of "stays in the span")
        _, s, Vt = np.linalg.svd(X, full_matrices=False)
        Vr = Vt[s > s[0] * 1e-12]
        lr = 0.5 / float(np.max(np.sum(X * X, axis=1)))
        for b in S["sgd_batches"]:
            r = K.sgd(X, t, lr=lr, batch_size=b, steps=steps, seed=seed)
            w = r.w
            runs.append(dict(
                seed=seed, batch_size=b, steps=r.steps, lr=lr, diverged=bool(r.diverged),
                residual=_f(np.linalg.norm(X @ w - t)),
                dist_to_min_norm=_f(np.linalg.norm(w - w_star)),
                outside_row_space=_f(np.linalg.norm(w - Vr.T @ (Vr @ w))),
                norm_w=_f(np.linalg.norm(w)), norm_min_norm=_f(np.linalg.norm(w_star)),
                w=[_f(v) for v in w],
            ))
        if off is None:
            w0 = rng.standard_normal(d)
            b = S["sgd_batches"][0]
            r = K.sgd(X, t, lr=lr, batch_size=b, steps=steps, seed=seed, w0=w0)
            null_part = w0 - Vr.T @ (Vr @ w0)
            off = dict(seed=seed, batch_size=b, steps=r.steps,
                       residual=_f(np.linalg.norm(X @ r.w - t)),
                       dist_to_min_norm=_f(np.linalg.norm(r.w - w_star)),
                       predicted_dist=_f(np.linalg.norm(null_part)),
                       dist_to_predicted=_f(np.linalg.norm(r.w - (w_star + null_part))),
                       w0=[_f(v) for v in w0], w=[_f(v) for v in r.w])
    worst = max(r["dist_to_min_norm"] for r in runs)
    return dict(n=n, d=d, runs=runs, off_row_space=off, max_dist_to_min_norm=worst,
                max_residual=max(r["residual"] for r in runs))


# ============================================================================ 1.2


def q1_2(quick=False):
    """Adaptive methods on ``x1 = [2, 1]``, ``t = [2]``, ``w0 = 0`` (questions 1.2.1 and 1.2.2).

    Runs GD and the three adaptive methods to convergence, recording the 2-D trajectory. The
    minimum-norm solution is ``x1 t / ||x1||^2 = [0.8, 0.4]``, in the row space ``span(x1)``.
    Every gradient is ``(2/n)(x1 . w - t) x1``, a multiple of ``x1``; GD adds multiples of
    ``x1`` to ``w0 = 0`` and stays in the row space. RMSProp, Adagrad and Adam divide each
    coordinate of that gradient by the root of its own running mean square, which is the same
    multiple of ``|x1_i|``: the update is the same number in both coordinates, so they move along
    ``[1, 1]`` and land on ``2 w1 + w2 = 2`` at ``[2/3, 2/3]`` -- not the minimum-norm point.
    The report measures all of this: the first step's direction, the final ``w``, its norm, its
    distance to ``[0.8, 0.4]``, and its component along the null-space direction ``[1, -2]``.
    """
    S = SIZES[bool(quick)]
    X = np.array([[2.0, 1.0]])
    t = np.array([2.0])
    w_star = K.min_norm_solution(X, t)
    null_dir = np.array([1.0, -2.0]) / math.sqrt(5.0)
    steps, rec = S["adaptive_steps"], S["adaptive_record"]
    configs = [
        ("GD", K.gd, dict(lr=0.05)),
        ("RMSProp", K.rmsprop, dict(lr=0.01, beta=0.9, eps=1e-8)),
        ("Adagrad", K.adagrad, dict(lr=0.1, eps=1e-10)),
        ("Adam", K.adam, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)),
    ]
    methods = []
    for name, fn, kw in configs:
        r = fn(X, t, steps=steps, record_every=rec, **kw)
        first = fn(X, t, steps=1, **kw).w  # w_1 - w_0 with w_0 = 0
        w = r.w.astype(float)
        methods.append(dict(
            name=name, params={k: float(v) for k, v in kw.items()}, steps=r.steps, diverged=bool(r.diverged),
            w=[_f(v) for v in w], norm=_f(np.linalg.norm(w)), residual=_f(abs((X @ w - t)[0])),
            dist_to_min_norm=_f(np.linalg.norm(w - w_star)), null_component=_f(null_dir @ w),
            first_step=[_f(v) for v in first], first_step_ratio=_f(first[1] / first[0]),
            trajectory=[[_f(a), _f(b)] for a, b in r.trajectory],
        ))
    return dict(x1=[2.0, 1.0], t=[2.0], w_min_norm=[_f(v) for v in w_star],
                norm_min_norm=_f(np.linalg.norm(w_star)), null_direction=[_f(v) for v in null_dir],
                methods=methods, scaling=_badly_scaled(quick))


def _badly_scaled(quick):
    """Why per-dimension rates help (1.2.2): a diagonal problem whose two curvatures differ by
    10^4. GD's stable rate is set by the steep direction and crawls along the flat one; the
    adaptive methods normalise each coordinate. Reported: the first step at which the loss falls
    below ``tol``, within a budget of steps."""
    X = np.diag([10.0, 0.1])
    t = np.array([1.0, 1.0])
    budget = 2000 if quick else 5000
    tol = 1e-6
    curvatures = np.linalg.eigvalsh(2.0 / X.shape[0] * X.T @ X)[::-1]  # of the Hessian (2/n) X^T X
    crit = K.critical_lr(X)  # 2 / lambda_max: GD's stability limit
    configs = [
        ("GD (lr = 0.9 x critical)", K.gd, dict(lr=0.9 * crit)),
        ("RMSProp", K.rmsprop, dict(lr=0.01)),
        ("Adagrad", K.adagrad, dict(lr=1.0)),
        ("Adam", K.adam, dict(lr=0.05)),
    ]
    rows = []
    for name, fn, kw in configs:
        r = fn(X, t, steps=budget, record_every=1, **kw)
        below = np.nonzero(r.losses < tol)[0]
        rows.append(dict(name=name, lr=float(kw["lr"]), final_loss=_f(r.losses[-1]),
                         steps_to_tol=int(r.recorded_steps[below[0]]) if below.size else None))
    return dict(curvatures=[_f(c) for c in curvatures], critical_lr=_f(crit), budget=budget, tol=tol, rows=rows)
