"""The contenders of the head-to-head and the reference they are measured against.

Every contender minimises the same function: the validation error ``(1/n_v) ||X_val w_T -
t_val||^2`` after ``steps`` steps of the optimizer from ``w_0 = 0`` on the training split, over
``(lr, l2)`` in a fixed log box (:func:`box`). Each reports the validation error it reached, the
inner training runs it made, the wall time until it first came within ``tol`` (1%) of the
reference optimum, and the test error at the point it chose.

* ``hypergrad``: :func:`kernels.tune` from its default start, in the same box (``bounds``), with
  its ``lr`` scan (times from its own per-evaluation clock).
* ``optuna``: Optuna's TPE sampler (seeded) over the box, stopped at the first trial within
  ``tol`` (or after ``max_trials``); each trial one :func:`kernels.gd` / :func:`kernels.rmsprop`
  run.
* ``grid``: ``k x k`` log grids over the box for growing ``k``; the time of the smallest grid
  whose best point is within ``tol``, timed alone (the kindest reading of a grid search).
* ``ridge`` (``l2`` alone, gradient descent at large ``T``): scikit-learn's ``Ridge``
  (``alpha = n l2``, no intercept: the data are standardised) over a fine ``l2`` grid, against
  :func:`kernels.tune` with ``hyper=("l2",)`` and ``method="exact"``.

The reference optimum is a dense ``100 x 100`` grid over the box (:func:`reference_grid`):
for gradient descent evaluated by the closed form of the unrolled recursion (the function
``method="exact"`` differentiates) for all points at once; for RMSProp by the recursion itself,
all grid points advanced together with NumPy.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

import kernels

OPTIMIZERS = {"gd": kernels.gd, "rmsprop": kernels.rmsprop}
L2_BOX = (1e-5, 10.0)


def box(problem, optimizer):
    """``((lr_lo, lr_hi), (l2_lo, l2_hi))``: for GD up to the critical learning rate of the
    unpenalised problem, for RMSProp ``[1e-4, 1]``."""
    if optimizer == "gd":
        crit = kernels.critical_lr(problem.X)
        return (1e-3 * crit, 0.999 * crit), L2_BOX
    return (1e-4, 1.0), L2_BOX


def error(X, t, w):
    r = X @ w - t
    return float(r @ r) / X.shape[0]


def inner_run(problem, optimizer, steps, lr, l2):
    """One training run; ``(validation error, test error)``, ``inf`` where it diverged."""
    res = OPTIMIZERS[optimizer](problem.X, problem.t, lr=lr, l2=l2, steps=steps)
    if res.diverged:
        return math.inf, math.inf
    w = res.w
    val = error(problem.X_val, problem.t_val, w)
    return (val if math.isfinite(val) else math.inf), error(problem.X_test, problem.t_test, w)


# --------------------------------------------------------------------------- the reference


def _gd_grid(problem, steps, lrs, l2s):
    X, t = problem.X, problem.t
    n = X.shape[0]
    # X = U S V^T from the eigendecomposition of the smaller Gram matrix
    if n <= X.shape[1]:
        lam, U = np.linalg.eigh(X @ X.T)
        keep = lam > lam[-1] * 1e-13
        sig = np.sqrt(lam[keep])
        V = (X.T @ U[:, keep]) / sig
    else:
        lam, V = np.linalg.eigh(X.T @ X)
        keep = lam > lam[-1] * 1e-13
        sig = np.sqrt(lam[keep])
        V = V[:, keep]
    beta = V.T @ ((2.0 / n) * (X.T @ t))
    A_val, A_test = problem.X_val @ V, problem.X_test @ V
    LR, L2 = np.meshgrid(lrs, l2s, indexing="ij")
    mu = (2.0 / n) * sig**2 + 2.0 * L2[..., None]  # (k_lr, k_l2, r)
    x = LR[..., None] * mu
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mT = np.where(x < 1.0, np.exp(steps * np.log1p(-np.minimum(x, 1.0 - 1e-300))), np.power(1.0 - x, steps))
        Z = (1.0 - mT) / mu * beta
        stable = np.all(x < 2.0, axis=-1)
        val = ((Z @ A_val.T - problem.t_val) ** 2).mean(axis=-1)
        test = ((Z @ A_test.T - problem.t_test) ** 2).mean(axis=-1)
    val = np.where(stable & np.isfinite(val), val, np.inf)
    return val, np.where(np.isfinite(val), test, np.inf)


def _rmsprop_grid(problem, steps, lrs, l2s, beta=0.9, eps=1e-8, chunk=2500):
    X, t = problem.X, problem.t
    n, d = X.shape
    LR, L2 = np.meshgrid(lrs, l2s, indexing="ij")
    lr_all, l2_all = LR.ravel(), L2.ravel()
    val = np.empty(lr_all.size)
    test = np.empty(lr_all.size)
    for lo in range(0, lr_all.size, chunk):
        lr = lr_all[lo:lo + chunk, None]
        l2 = l2_all[lo:lo + chunk, None]
        W = np.zeros((lr.shape[0], d))
        Vs = np.zeros_like(W)
        with np.errstate(all="ignore"):
            for _ in range(steps):
                G = (2.0 / n) * ((W @ X.T - t) @ X) + 2.0 * l2 * W
                Vs = beta * Vs + (1.0 - beta) * G * G
                W = W - lr * G / (np.sqrt(Vs) + eps)
            ok = np.all(np.isfinite(W), axis=1)
            v = ((W @ problem.X_val.T - problem.t_val) ** 2).mean(axis=1)
            te = ((W @ problem.X_test.T - problem.t_test) ** 2).mean(axis=1)
        val[lo:lo + chunk] = np.where(ok & np.isfinite(v), v, np.inf)
        test[lo:lo + chunk] = np.where(ok, te, np.inf)
    return val.reshape(LR.shape), test.reshape(LR.shape)


def reference_grid(problem, optimizer, steps, k=100):
    """The dense ``k x k`` reference: ``dict(lrs, l2s, val (k, k), test (k, k), best, lr, l2,
    seconds)`` (rows: ``lr``, columns: ``l2``)."""
    (a, b), (c, d) = box(problem, optimizer)
    lrs, l2s = np.geomspace(a, b, k), np.geomspace(c, d, k)
    t0 = time.perf_counter()
    if optimizer == "gd":
        val, test = _gd_grid(problem, steps, lrs, l2s)
    else:
        val, test = _rmsprop_grid(problem, steps, lrs, l2s)
    i, j = np.unravel_index(np.argmin(val), val.shape)
    return dict(lrs=lrs, l2s=l2s, val=val, test=test, best=float(val[i, j]), lr=float(lrs[i]), l2=float(l2s[j]),
                test_at_best=float(test[i, j]), seconds=time.perf_counter() - t0, k=k)


# --------------------------------------------------------------------------- the contenders


def _first_hit(vals, stamps, target):
    hit = np.nonzero(np.asarray(vals, dtype=float) <= target)[0]
    return (int(hit[0]) + 1, float(stamps[hit[0]])) if hit.size else (None, None)


def _summary(name, target, vals, stamps, points, tests, runs, seconds, tight=None, **extra):
    """The contender's report; ``tight`` (a second, smaller target) adds ``runs_to_tight`` and
    ``seconds_to_tight`` from the same trace."""
    vals = np.asarray(vals, dtype=float)
    best = int(np.argmin(vals)) if vals.size else -1
    r1, s1 = _first_hit(vals, stamps, target)
    out = dict(method=name, val=float(vals[best]) if best >= 0 else math.inf,
               lr=points[best][0] if best >= 0 else math.nan, l2=points[best][1] if best >= 0 else math.nan,
               test=float(tests[best]) if best >= 0 else math.inf, runs=int(runs), seconds=float(seconds),
               runs_to_target=r1, seconds_to_target=s1, path=[tuple(p) for p in points],
               values=[float(v) for v in vals], **extra)
    if tight is not None:
        out["runs_to_tight"], out["seconds_to_tight"] = _first_hit(vals, stamps, tight)
    return out


def run_hypergrad(problem, optimizer, steps, target, tight=None, **kw):
    (a, b), (c, d) = box(problem, optimizer)
    res = kernels.tune(problem.X, problem.t, problem.X_val, problem.t_val, optimizer=optimizer, steps=steps,
                       bounds={"lr": (a, b), "l2": (c, d)}, **kw)
    points = list(zip(res.history["lr"], res.history["l2"]))
    # the test error at each evaluated point (outside the timing: the tuner never sees the test set)
    tests = [inner_run(problem, optimizer, steps, lr, l2)[1] if math.isfinite(v) else math.inf
             for (lr, l2), v in zip(points, res.objective_history)]
    return _summary("hypergrad", target, res.objective_history, res.seconds_history, points, tests, res.inner_runs,
                    res.seconds, tight=tight, stopped=res.stopped)


def run_optuna(problem, optimizer, steps, target, max_trials=300, seed=0, tight=None):
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (a, b), (c, d) = box(problem, optimizer)
    vals, stamps, points, tests = [], [], [], []
    t0 = time.perf_counter()

    def objective(trial):
        lr = trial.suggest_float("lr", a, b, log=True)
        l2 = trial.suggest_float("l2", c, d, log=True)
        v, te = inner_run(problem, optimizer, steps, lr, l2)
        vals.append(v)
        stamps.append(time.perf_counter() - t0)
        points.append((lr, l2))
        tests.append(te)
        return v if math.isfinite(v) else 1e300

    def stop(study, trial):
        if vals and vals[-1] <= (target if tight is None else tight):
            study.stop()

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=max_trials, callbacks=[stop])
    return _summary("optuna", target, vals, stamps, points, tests, len(vals), time.perf_counter() - t0, tight=tight)


def run_grid(problem, optimizer, steps, target, ks=(3, 5, 7, 10, 15, 20, 30, 50, 70, 100), tight=None):
    """Grids of growing ``k`` until one's best is within ``tight`` (or ``target``); the time to
    a target is the time of the smallest grid that reaches it, timed alone."""
    (a, b), (c, d) = box(problem, optimizer)
    hit = {}
    for k in ks:
        vals, points, tests = [], [], []
        t0 = time.perf_counter()
        for lr in np.geomspace(a, b, k):
            for l2 in np.geomspace(c, d, k):
                v, te = inner_run(problem, optimizer, steps, float(lr), float(l2))
                vals.append(v)
                points.append((float(lr), float(l2)))
                tests.append(te)
        seconds = time.perf_counter() - t0
        for key, tgt in (("target", target), ("tight", tight)):
            if tgt is not None and key not in hit and min(vals) <= tgt:
                hit[key] = (len(vals), seconds, k)
        if ("tight" in hit if tight is not None else "target" in hit) or k == ks[-1]:
            out = _summary("grid", target, vals, [seconds] * len(vals), points, tests, len(vals), seconds, k=k)
            out["runs_to_target"], out["seconds_to_target"] = hit.get("target", (None, None))[:2]
            out["k_to_target"] = hit.get("target", (None, None, None))[2]
            if tight is not None:
                out["runs_to_tight"], out["seconds_to_tight"] = hit.get("tight", (None, None))[:2]
            return out
    return None  # pragma: no cover - ks is never empty


def run_ridge_l2(problem, steps, lr=None, k=1000):
    """``l2`` alone at large ``T``: the ridge grid (scikit-learn) against :func:`kernels.tune`
    with ``method="exact"``; returns both, and the grid's resolution in log10(l2)."""
    from sklearn.linear_model import Ridge

    X, t = problem.X, problem.t
    n = X.shape[0]
    lr = 0.5 * kernels.critical_lr(X) if lr is None else lr
    l2s = np.geomspace(*L2_BOX, k)
    t0 = time.perf_counter()
    vals = []
    for l2 in l2s:
        m = Ridge(alpha=n * l2, fit_intercept=False).fit(X, t)
        vals.append(error(problem.X_val, problem.t_val, m.coef_))
    ridge_s = time.perf_counter() - t0
    i = int(np.argmin(vals))
    res = kernels.tune(X, t, problem.X_val, problem.t_val, optimizer="gd", steps=steps, hyper=("l2",), lr=lr,
                       method="exact", init={"l2": 1e-2})
    step = math.log10(l2s[1] / l2s[0])
    return dict(lr=lr, steps=steps, ridge_l2=float(l2s[i]), ridge_val=float(vals[i]), ridge_seconds=ridge_s,
                ridge_fits=k, resolution_log10=step, tune_l2=res.l2, tune_val=res.objective, tune_seconds=res.seconds,
                tune_runs=res.inner_runs, match=abs(math.log10(res.l2 / l2s[i])) <= step)


def warm_up(problem):
    """Compile (or load from the disk cache) every kernel the contenders call, on a slice of
    ``problem``, so that no timing includes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, t = problem.X[:20], problem.t[:20]
        for opt in ("gd", "rmsprop"):
            kernels.tune(X, t, problem.X_val, problem.t_val, optimizer=opt, steps=3, meta_steps=3)
            OPTIMIZERS[opt](X, t, lr=1e-3, l2=1e-3, steps=3)
        kernels.tune(X, t, problem.X_val, problem.t_val, optimizer="gd", steps=3, hyper=("l2",), lr=1e-3,
                     method="exact", meta_steps=3)
