"""Choosing the learning rate: the one-step optimum of question 2.2.3 and hypergradient
descent on ``log(lr)`` (and ``log(l2)``)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._validate import finite_float, positive_int
from ..optim.linreg import _pow2_exponent
from ._api import hypergrad
from ._problem import TuneResult, _problem


def optimal_lr_one_step(X, t, w0=None) -> float:
    """The learning rate that minimises the unregularised loss after one step (question 2.2.3)::

        eta* = n a^T X X^T a / (2 ||X X^T a||^2),    a = X w0 - t

    (``L_1(eta) = (1/n) ||a - (2 eta / n) X X^T a||^2`` is a convex quadratic in ``eta``,
    question 2.2.2). Computed in float64 as ``n ||g||^2 / (2 ||X g||^2)`` with ``g = X^T a``,
    the vectors rescaled by powers of two (exact), so that the result is accurate at any scale
    of data the checks accept. ``ValueError`` when ``X^T a = 0`` (``w0`` already minimises the
    loss, so every ``eta`` is optimal) or when ``eta*`` overflows float64.
    """
    X, t, w0, _, _ = _problem(X, t, w0, None, None)
    # eta* is invariant under a -> c a and g -> c g. Unscaled, ||X X^T a||^2 ~ |X|^4 |a|^2 leaves
    # float64 for |X| = 1e80 (overflow: eta = 0) or 1e-80 (subnormal: digits lost; at 1e-100 it
    # is 0 and the gradient looks zero). X itself needs no scaling: where it is small enough for
    # X g to underflow, eta* ~ 1 / |X|^2 overflows anyway.
    ew = _pow2_exponent(w0)
    p = X @ np.ldexp(w0, -ew)  # X w0 = 2^ew p, with no underflow for a tiny w0
    scales = ([ew + _pow2_exponent(p)] if p.any() else []) + ([_pow2_exponent(t)] if t.any() else [])
    ea = max(scales, default=0)  # an all-zero part must not set the scale
    a = np.ldexp(p, ew - ea) - np.ldexp(t, -ea)  # (X w0 - t) / 2^ea
    g = X.T @ a
    if not g.any():
        raise ValueError("the gradient X^T (X w0 - t) is zero: w0 already minimises the loss and every eta is optimal")
    g = np.ldexp(g, -_pow2_exponent(g))
    q = X @ g
    eq = _pow2_exponent(q)
    q = np.ldexp(q, -eq)
    try:
        eta = math.ldexp(X.shape[0] * float(g @ g) / (2.0 * float(q @ q)), -2 * eq)
    except (OverflowError, ZeroDivisionError):
        eta = math.inf
    if eta == math.inf:
        raise ValueError(f"X is too small: the optimal learning rate overflows float64 (max |X| = "
                         f"{float(np.max(np.abs(X))):.3g})")
    return eta


def tune_lr(X, t, *, lr0, l2=0.0, steps, meta_steps, meta_lr, X_val=None, t_val=None, method="reverse",
            tune_l2=False, w0=None) -> TuneResult:
    """Hypergradient descent on ``log(lr)`` (and on ``log(l2)`` with ``tune_l2=True``, which
    needs ``l2 > 0``): ``meta_steps`` times, compute the objective and its hypergradient with
    :func:`hypergrad` (``method``), then ``log lr <- log lr - meta_lr * lr * d_lr`` (the
    chain rule for ``d/dlog lr``; likewise ``l2``). Working in logs keeps ``lr`` positive
    and makes ``meta_lr`` scale-free in ``lr``. A run that diverges (see :func:`hypergrad`)
    records ``inf`` and halves ``lr`` instead of stepping. Returns a :class:`TuneResult` whose
    histories hold, for each meta-step, the ``lr``/``l2`` used and the objective obtained.
    """
    lr = finite_float(lr0, "lr0", low=0.0, low_open=True)
    l2 = finite_float(l2, "l2", low=0.0)
    meta_steps = positive_int(meta_steps, "meta_steps")
    meta_lr = finite_float(meta_lr, "meta_lr", low=0.0, low_open=True)
    if not isinstance(tune_l2, (bool, np.bool_)):
        raise TypeError(f"tune_l2 must be a bool, got {type(tune_l2).__name__} {tune_l2!r}")
    if tune_l2 and l2 <= 0.0:
        raise ValueError(f"tune_l2=True descends on log(l2), so l2 must be > 0, got {l2}")
    lrs, l2s, objs = [], [], []
    for _ in range(meta_steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = hypergrad(X, t, lr=lr, l2=l2, steps=steps, w0=w0, X_val=X_val, t_val=t_val, method=method)
        lrs.append(lr)
        l2s.append(l2)
        objs.append(res.loss)
        if res.diverged:
            lr *= 0.5
            continue
        lr = _log_step(lr, meta_lr * lr * res.d_lr, "lr", meta_lr)
        if tune_l2:
            l2 = _log_step(l2, meta_lr * l2 * res.d_l2, "l2", meta_lr)
    return TuneResult(lr=lr, l2=l2, lr_history=np.array(lrs), l2_history=np.array(l2s),
                      objective_history=np.array(objs), method=method)


def _log_step(value, step, name, meta_lr):
    """``value * exp(-step)``, or a ValueError naming ``meta_lr`` when the step leaves the
    floating-point range (``value`` would become 0 or inf, and the next run would refuse it)."""
    try:
        new = value * math.exp(-step)
    except OverflowError:
        new = math.inf
    if not 0.0 < new < math.inf:
        raise ValueError(f"meta_lr={meta_lr!r} is too large: a hypergradient step of {-step:.3g} on log({name}) "
                         f"took {name} from {value!r} to {new!r}")
    return new
