"""``kernels.tune``: choose an optimizer's hyper-parameters on a validation set by hypergradient
descent, with defaults that need no tuning of the tuner.

Each meta-step runs the optimizer for ``steps`` steps on the training data and differentiates
the validation error at ``w_T`` in every tuned hyper-parameter (:func:`kernels.hypergrad`, any
method). The descent works in a log space where every value stays legal and a step means the
same thing at any scale: ``log h`` for ``lr``, ``l2``, ``weight_decay`` and ``eps``;
``log(1 - beta)`` for ``beta``, ``beta1``, ``beta2`` (so beta stays below 1). The meta-descent is
BFGS in that space (Nocedal and Wright, *Numerical Optimization*, 2nd ed., algorithm 6.1): the
first step is ``0.5`` in log units along the hypergradient (a factor ``e^0.5``), no step is
longer than 2 log units, and each step must pass Armijo's sufficient-decrease test. The
safeguard: a step whose inner run diverges, or that does not lower the objective enough, is
taken back and shrunk by 4 (a backtracking line search from the best point so far); when even
short steps fail, the curvature estimate is dropped and the search retries once along the
hypergradient. The quasi-Newton curvature makes the step independent of the hypergradient's
scale, which spans orders of magnitude between ``lr`` and ``l2`` and along the way.

Stopping rule: an accepted step shorter than ``tol`` (1e-3 in log units: the hyper-parameters
are pinned to 0.1%) or a line search that cannot find a decrease with steps down to ``tol``
("converged"); ``patience`` (8) accepted steps in a row that lowered the objective by less than
``rtol`` (1e-6) relative ("stalled"); a zero hypergradient ("stationary"); or ``meta_steps``
evaluations (default 100).

Limits: the descent finds a local minimum of the validation error. Where the inner run is
chaotic in its hyper-parameters -- an adaptive method at a learning rate large enough to reach
its noise floor, where its steps are about ``lr sign(g)`` -- the validation error is rough on a
scale far below any useful step, the hypergradient (exact for the finite run) is large and
uninformative, and the line search stops early; a global search (a grid, Optuna) does better
there.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validate import finite_float, positive_int
from ._api import OPTIMIZER_DEFAULTS, _check_method, _hypergrad
from ._problem import _problem
from .spectrum import critical_lr
from .unroll import OPTIMIZERS

_BETAS = ("beta", "beta1", "beta2")
#: What ``**optimizer_kwargs`` may name (``w0`` aside): the keywords of hypergrad that tune
#: does not set itself.
_OPTIMIZER_KWARGS = {name for name, p in inspect.signature(_hypergrad).parameters.items()
                     if p.kind is p.KEYWORD_ONLY} - {"steps", "method", "optimizer"}
#: The first step in log space (a factor e^0.5 ~ 1.65), the longest step (a factor e^2 ~ 7.4)
#: and the backtracking factor of the line search.
_DELTA0, _MAX_STEP, _BACKTRACK = 0.5, 2.0, 0.25


@dataclass(frozen=True, eq=False)
class TuningResult:
    """What :func:`tune` returns. ``lr``, ``l2``: the chosen values (or the fixed ones when not
    tuned); ``hyper``: every tuned value; ``objective``: the validation objective at the returned
    point (an evaluated one, never extrapolated); ``inner_runs``: inner training runs made (one
    per evaluation, each with its hypergradient); ``seconds``: wall time. Per evaluation, in
    order: ``history[name]`` the values tried, ``objective_history`` the objective they gave
    (``inf`` where the run diverged), ``accepted`` whether the step was kept and
    ``seconds_history`` the wall time since the call when it finished. ``stopped`` says which
    rule ended the search: "converged", "stalled", "stationary" or "meta_steps"."""

    lr: float
    l2: float
    hyper: dict
    objective: float
    inner_runs: int
    seconds: float
    history: dict = field(repr=False)
    objective_history: np.ndarray = field(repr=False)
    accepted: np.ndarray = field(repr=False)
    stopped: str = ""
    seconds_history: np.ndarray = field(default=None, repr=False)
    optimizer: str = "gd"
    method: str = "reverse"
    fixed: dict = field(default_factory=dict, repr=False)


def _to_log(name, value):
    return math.log1p(-value) if name in _BETAS else math.log(value)


def _from_log(name, z):
    return -math.expm1(z) if name in _BETAS else math.exp(z)


def _default_start(name, X, optimizer, values):
    """The start of a tuned hyper-parameter no one gave: half the critical learning rate of
    gradient descent (``1e-3`` for the adaptive rules), a penalty of 1e-3 of the mean Hessian
    eigenvalue, a decay of 1e-4, and the optimizer's own defaults."""
    if name == "lr":
        if optimizer in ("gd", "sgd"):
            return 0.5 * critical_lr(X, values.get("l2", 0.0))
        return 1e-3
    if name == "l2":
        return 1e-3 * float(np.einsum("ij,ij->", X, X)) / X.size
    if name == "weight_decay":
        return 1e-4
    return OPTIMIZER_DEFAULTS[optimizer][name]


def tune(X, t, X_val, t_val, *, optimizer="gd", steps, hyper=("lr", "l2"), method="reverse", meta_steps=None,
         init=None, bounds=None, scan=True, tol=1e-3, rtol=1e-6, patience=8, **optimizer_kwargs) -> TuningResult:
    """Tune ``hyper`` (names among the optimizer's hyper-parameters: ``lr``, ``l2``,
    ``weight_decay``, and ``beta`` / ``beta1``, ``beta2``, ``eps``) to minimise the validation
    error ``(1/n_v) ||X_val w_T - t_val||^2`` after ``steps`` steps of ``optimizer`` on
    ``(X, t)``. See the module docstring for the meta-descent, its safeguard and its stopping
    rule.

    ``init`` maps tuned names to their starting values (default: :func:`_default_start`); the
    optimizer's other arguments (``lr``, ``l2``, ``weight_decay``, ``beta`` ..., ``batch_size``,
    ``seed``, ``w0``, ``checkpoints``) go in ``optimizer_kwargs``: fixed values for the names not
    tuned, starting values for the tuned ones. ``meta_steps`` caps the evaluations (default
    100). Each evaluation is one :func:`kernels.hypergrad` call with ``method``.
    """
    start_time = time.perf_counter()
    # the data are checked here once; each evaluation calls the checked body of hypergrad
    X, t, w0, X_val, t_val = _problem(X, t, optimizer_kwargs.pop("w0", None), X_val, t_val)
    if X_val is None:
        raise ValueError("X_val and t_val are required: tune minimises the validation error")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    names = tuple(name for name, _ in OPTIMIZERS[optimizer][2])
    if isinstance(hyper, str):
        hyper = (hyper,)
    hyper = tuple(hyper)
    if not hyper:
        raise ValueError("hyper must name at least one hyper-parameter to tune, got ()")
    for name in hyper:
        if name not in names:
            raise ValueError(f"hyper: {name!r} is not a hyper-parameter of optimizer={optimizer!r} "
                             f"(it has {', '.join(names)})")
    if len(set(hyper)) != len(hyper):
        raise ValueError(f"hyper names a hyper-parameter twice: {hyper}")
    steps = positive_int(steps, "steps")
    meta_steps = 100 if meta_steps is None else positive_int(meta_steps, "meta_steps")
    tol = finite_float(tol, "tol", low=0.0, low_open=True)
    rtol = finite_float(rtol, "rtol", low=0.0)
    patience = positive_int(patience, "patience")
    init = {} if init is None else dict(init)
    for name in init:
        if name not in hyper:
            raise ValueError(f"init: {name!r} is not among the tuned hyper-parameters {hyper}")
    if "lr" not in hyper and "lr" not in optimizer_kwargs:
        raise ValueError("lr is neither tuned (hyper) nor given: pass lr=... or tune it")
    fixed = {k: v for k, v in optimizer_kwargs.items() if k not in hyper}
    values = {}
    for name in hyper:
        v = init.get(name, optimizer_kwargs.get(name))
        if v is None:
            v = _default_start(name, X, optimizer, {**fixed, **values})
        high = 1.0 if name in _BETAS else None
        v = finite_float(v, f"init[{name!r}]", low=0.0, low_open=name not in _BETAS, high=high, high_open=True)
        if name in ("l2", "weight_decay", "eps") and v == 0.0:
            raise ValueError(f"init[{name!r}] must be > 0: the descent is on log({name})")
        values[name] = v

    # Full-batch GD on a tall X (4 d <= n) runs as full-batch "sgd": the same update rule and
    # divergence test, by the unroller of :mod:`.unroll`, whose Gram form steps in O(d^2) instead
    # of gradient descent's own row sweeps, O(n d) (4x faster per evaluation on the diabetes set)
    inner = optimizer
    if optimizer == "gd" and method in ("reverse", "forward") and 4 * X.shape[1] <= X.shape[0]:
        inner = "sgd"

    _check_method(method)
    unknown = set(fixed) - _OPTIMIZER_KWARGS
    if unknown:
        raise TypeError(f"tune got unexpected keyword argument(s) {sorted(unknown)}")

    setups = {}  # the evaluations differ only in the tuned values: one Setup for all

    def evaluate(vals):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return _hypergrad(X, t, w0, X_val, t_val, steps=steps, method=method, optimizer=inner, _setups=setups,
                              **fixed, **vals)

    box = {}
    for name, pair in (bounds or {}).items():
        if name not in hyper:
            raise ValueError(f"bounds: {name!r} is not among the tuned hyper-parameters {hyper}")
        lo, hi = (finite_float(v, f"bounds[{name!r}]", low=0.0, low_open=name not in _BETAS) for v in pair)
        if not lo < hi or (name in _BETAS and hi >= 1.0):
            raise ValueError(f"bounds[{name!r}] must be (low, high) with low < high" +
                             (" < 1" if name in _BETAS else "") + f", got {pair!r}")
        values[name] = min(max(values[name], lo), hi)
        za, zb = _to_log(name, lo), _to_log(name, hi)
        box[name] = (min(za, zb), max(za, zb))
    zlo = np.array([box.get(n, (-np.inf, np.inf))[0] for n in hyper])
    zhi = np.array([box.get(n, (-np.inf, np.inf))[1] for n in hyper])

    hist = {name: [] for name in hyper}
    objs, acc, stamps = [], [], []

    def record(vals, res, ok):
        for name in hyper:
            hist[name].append(vals[name])
        objs.append(res.loss if not res.diverged else math.inf)
        acc.append(ok)
        stamps.append(time.perf_counter() - start_time)

    # a start that diverges: shrink lr (tuned or not, the user's own lr is then reported as such)
    res = evaluate(values)
    record(values, res, not res.diverged)
    while res.diverged and len(objs) < meta_steps:
        if "lr" not in hyper:
            raise ValueError(f"the inner run diverges at the fixed lr={fixed['lr']!r}: lower it or tune it")
        values["lr"] *= 0.1
        res = evaluate(values)
        record(values, res, not res.diverged)
    if res.diverged:
        raise ValueError(f"the inner run diverged at every lr tried, down to {values['lr']!r}")
    if scan:
        for i, name in enumerate(hyper):
            if name in _BETAS:
                continue  # (0, 1): the default is the scale; a scan by factors of 10 would leave it
            base = values[name]
            tried = {_to_log(name, base)}
            for factor in (0.01, 0.1, 10.0, 100.0):
                z_try = min(max(_to_log(name, base * factor), zlo[i]), zhi[i])
                vals = dict(values, **{name: _from_log(name, z_try)})
                if z_try in tried or vals[name] == values[name] or len(objs) >= meta_steps:
                    continue  # two factors clipped to one bound of the box: evaluated once
                tried.add(z_try)
                trial = evaluate(vals)
                better = (not trial.diverged) and trial.loss < res.loss
                record(vals, trial, better)
                if better:
                    res, values = trial, vals
    z = np.array([_to_log(name, values[name]) for name in hyper])
    f, g = res.loss, _log_grads(hyper, values, res.grads)
    best_vals = dict(values)
    m = len(hyper)
    Hinv = None  # the inverse-Hessian estimate in log space; None: restart from a scaled identity
    stalled = 0
    stopped = "meta_steps"
    active = np.zeros(m, dtype=bool)
    while len(objs) < meta_steps:
        # coordinates pressed against their bound by the hypergradient are held there
        now = ((z >= zhi) & (g < 0)) | ((z <= zlo) & (g > 0))
        if Hinv is not None and np.any(now != active):
            Hinv = None
        active = now
        ge = np.where(active, 0.0, g)
        gn = float(np.max(np.abs(ge)))
        if gn == 0.0:
            stopped = "stationary"
            break
        if Hinv is None:
            Hinv = np.eye(m) * (_DELTA0 / gn)  # a first step of _DELTA0 in log space
        p = -Hinv @ ge
        if not float(p @ ge) < 0.0:
            Hinv = np.eye(m) * (_DELTA0 / gn)
            p = -Hinv @ ge
        p[active] = 0.0
        longest = float(np.max(np.abs(p)))
        if longest > _MAX_STEP:
            p *= _MAX_STEP / longest
        p = np.clip(z + p, zlo, zhi) - z  # stay in the box
        alpha, accepted = 1.0, False
        while len(objs) < meta_steps:
            z_new = z + alpha * p
            vals = dict(best_vals)
            for i, name in enumerate(hyper):
                vals[name] = _from_log(name, z_new[i])
            legal = all(0.0 < vals[n] < math.inf and (n not in _BETAS or vals[n] < 1.0) for n in hyper)
            if legal:
                res = evaluate(vals)
                # Armijo's sufficient decrease; a diverged run (loss inf) is the safeguard's case
                accepted = (not res.diverged) and res.loss <= f + 1e-4 * alpha * float(ge @ p)
                record(vals, res, accepted)
                if accepted:
                    break
            alpha *= _BACKTRACK  # step back towards the best point and shrink
            if alpha * float(np.max(np.abs(p))) < tol:
                break
        if not accepted:
            if Hinv is not None and not np.allclose(Hinv, np.eye(m) * Hinv[0, 0]):
                Hinv = None  # the curvature model failed: retry once along the gradient
                continue
            stopped = "converged" if len(objs) < meta_steps else "meta_steps"
            break
        g_new = _log_grads(hyper, vals, res.grads)
        s_k, y_k = z_new - z, g_new - g
        sy = float(s_k @ y_k)
        if sy > 1e-12 * float(np.linalg.norm(s_k) * np.linalg.norm(y_k)):
            rho = 1.0 / sy
            V = np.eye(m) - rho * np.outer(s_k, y_k)
            Hinv = V @ Hinv @ V.T + rho * np.outer(s_k, s_k)
        stalled = stalled + 1 if f - res.loss < rtol * abs(f) else 0
        z, f, g, best_vals = z_new, res.loss, g_new, vals
        if float(np.max(np.abs(s_k))) < tol:
            stopped = "converged"
            break
        if stalled >= patience:
            stopped = "stalled"
            break
    best_f = f
    chosen = {name: best_vals[name] for name in hyper}
    merged = {**fixed, **chosen}
    return TuningResult(
        lr=float(merged["lr"]), l2=float(merged.get("l2", 0.0)), hyper=chosen, objective=float(best_f),
        inner_runs=len(objs), seconds=time.perf_counter() - start_time,
        history={name: np.array(v) for name, v in hist.items()}, objective_history=np.array(objs),
        accepted=np.array(acc, dtype=bool), stopped=stopped, seconds_history=np.array(stamps), optimizer=optimizer,
        method=method, fixed=fixed,
    )


def _log_grads(hyper, values, grads):
    """d objective / d z for z = log h (or log(1 - beta))."""
    out = np.empty(len(hyper))
    for i, name in enumerate(hyper):
        h = values[name]
        out[i] = grads[name] * (-(1.0 - h) if name in _BETAS else h)
    if not np.all(np.isfinite(out)):
        out[~np.isfinite(out)] = 0.0
    return out
