"""Optimizer update rules, one small compiled function each (homework sections 1.2 and 2.3).

Every rule updates a parameter vector ``w`` in place from its gradient and its state. The
gradient comes in as a summed data gradient ``g`` and its scale ``c``, and the rule folds in the
penalty ``l2 ||w||^2`` of section 2.3 weight by weight (:func:`l2_gradient`): it uses
``c g + 2 l2 w``. Every rule ends with the decoupled weight decay of equation (5)
(:func:`decay_step`)::

    w <- (1 - weight_decay) w - lr u

=========  ================================================================  ===================
rule       ``u`` (``k`` is the step, from 0)                                 same as (PyTorch)
=========  ================================================================  ===================
sgd        ``g`` (equation (2) on a mini-batch, GD on the full batch)        ``SGD(lr)``
rmsprop    ``v <- beta v + (1 - beta) g^2;  u = g / (sqrt(v) + eps)``        ``RMSprop(lr,
           (equations (3)-(4): ``v`` includes the current gradient,          alpha=beta, eps)``
           ``v_{-1} = 0``, ``eps`` outside the square root)
adagrad    ``s <- s + g^2;  u = g / (sqrt(s) + eps)``                        ``Adagrad(lr, eps)``
adam       ``m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2``;            ``Adam(lr, betas,
           ``u = (m / (1 - b1^(k+1))) / (sqrt(v) / sqrt(1 - b2^(k+1)) + eps)``  eps)``
           (bias-corrected, ``eps`` outside the square root)
=========  ================================================================  ===================

One signature for all, so that a loop can take any of them::

    rule(w, g, c, tl2, state, k, lr, hyper, keep, w_prev) -> bad

``c`` is the scale of ``g`` and ``tl2 = 2 l2``. A rule computes in the dtype of ``w``
(:func:`working`): float64 for the optimizers and hypergradients, float32 for a float32 network
(:mod:`kernels.nn`). ``state`` is a ``(2, d)`` array of the dtype of ``w``, zero
before the first step: row 0 is Adam's first moment ``m``, row 1 the second moment ``v``
(RMSProp, Adam) or the sum of squares ``s`` (Adagrad); SGD has none. ``hyper = (b1, b2, eps)``
(RMSProp's ``beta`` is ``b2``), ``keep = 1 - weight_decay``. ``w_prev`` receives the weights
before the update, and the result ``bad`` is 0.0 when every updated weight is finite and NaN
otherwise (``x * 0`` is 0 for finite ``x`` and NaN for inf or NaN: a check that costs no branch
in the loop).

Python can call the rules on NumPy arrays, either directly (float64, C-contiguous) or through
:func:`apply`, which checks its arguments::

    state = rules.init(d)
    for k in range(steps):
        g = kernels.grad(X, t, w)
        rules.apply("adam", w, g, state, k=k, lr=1e-2)

A compiled loop calls them through :func:`update` with the rule's id (:data:`SGD`, ...), as the
optimizers' loop in :mod:`kernels.optim.drivers` does: everything here is inlined by Numba
(``inline="always"``), so the loop compiles to the code it would have with the formulas written
in it. Why this way, and not a loop compiled once per rule or a rule passed as a function:

* the rules run under fast-math, which lets LLVM reassociate and fuse ``keep w_j - lr (c g_j +
  2 l2 w_j)``; the last bit of the result then depends on the code around the loop. Inlined into
  the one loop, next to the other rules, the rules give the bits the optimizers always gave (a
  loop compiled per rule rounds GD differently in the last bit);
* a rule left to LLVM's inliner (a plain ``@jit`` callee) gave different bits in a process that
  compiled the loop (which ran the rule's own machine code) and in one that loaded the loop from
  the on-disk cache (which ran the loop's copy of the rule, optimised again with the loop):
  inlining by Numba is what makes the results independent of the cache;
* a jitted function passed as an argument compiles, but its type names the function object, so
  the loop would never load from the on-disk cache;
* one compiled loop for all rules also keeps compile time where it was.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .. import _validate
from .._config import jit

__all__ = ["working", "working_scalars", "decay_step", "save_previous", "l2_gradient", "sgd", "rmsprop", "adagrad", "adam", "RULES", "SGD", "RMSPROP", "ADAGRAD",
           "ADAM", "update", "init", "apply", "adjoint", "tangent", "sgd_adjoint", "rmsprop_adjoint", "adam_adjoint",
           "sgd_tangent", "rmsprop_tangent", "adam_tangent", "H_LR", "H_L2", "H_WD", "H_B1", "H_B2", "H_EPS", "N_HYPER"]


def working(x, w):
    """``x`` in the precision a rule computes in when it updates ``w``: the dtype of ``w``'s
    elements. That is float64 everywhere (the optimizers and the hypergradients update float64
    working copies) but for a float32 network's weights, which are updated in float32 arithmetic
    as PyTorch's optimizers update them (see :func:`_working`)."""
    return w.dtype.type(x)


@overload(working, inline="always")
def _working(x, w):
    """Compiled :func:`working`: ``x`` itself for float64 weights (the rules then compile to the
    very code they had before this existed: the same bits), else ``x`` rounded to the weights'
    dtype. Why float32 for float32 weights: Adam and RMSProp spend their time in a square root
    and a division per weight, and float64 vectors hold half as many lanes. LeNet-5's 108k
    float32 weights, one Adam update on one thread of the 2-core Zen 4 EPYC: 110 us computing in
    float64 (115 for float64 weights: the arithmetic, not the bytes, is the cost), 61 us in
    float32."""
    if w.dtype == types.float64:
        return lambda x, w: x
    cast = as_dtype(w.dtype).type
    return lambda x, w: cast(x)


@jit(inline="always")
def working_scalars(c, tl2, keep, lr, w):  # pragma: no cover - compiled
    """The scalars every rule shares (``c``, ``tl2``, ``keep``, ``lr``) in its working
    precision (:func:`working`)."""
    return working(c, w), working(tl2, w), working(keep, w), working(lr, w)


# The penalty and the decay are composed with each rule weight by weight, inside its one loop,
# not as passes of their own over w (fast-math fuses across them: for SGD ``keep w_j - lr (c g_j
# + 2 l2 w_j)`` is one expression). Each rule loads w_j first and hands it to both helpers: the
# order of the loads ranks the operands LLVM reassociates, so it is the order the bits need.


@jit(inline="always")
def l2_gradient(gj, wj, c, tl2):  # pragma: no cover - compiled
    """The gradient of one weight with the penalty ``l2 ||w||^2`` of section 2.3 folded in:
    ``c g_j + 2 l2 w_j``, from the summed data gradient ``g_j``, its scale ``c`` (``2 / b``
    for a batch of ``b`` rows) and ``tl2 = 2 l2`` (PyTorch's coupled ``weight_decay``)."""
    return c * gj + tl2 * wj


@jit(inline="always")
def save_previous(w, w_prev):  # pragma: no cover - compiled
    """``w_prev = w``, the weights before an update, in a pass of its own: with the store to
    ``w_prev`` inside a rule's loop, Adam's loop touched five arrays, more than LLVM checks for
    overlap at run time, and it ran scalar (108k float32 weights: 0.41 ms, 0.1 ms vectorised)."""
    for j in range(w.shape[0]):
        w_prev[j] = w[j]


@jit(inline="always")
def decay_step(w, j, wj, keep, lr, u):  # pragma: no cover - compiled
    """Decoupled weight decay, equation (5), on weight ``j`` (whose value is ``wj``):
    ``w_j <- keep w_j - lr u`` with ``keep = 1 - weight_decay``. Returns ``new w_j * 0`` (0.0,
    or NaN for a non-finite weight)."""
    nw = keep * wj - lr * u
    w[j] = nw
    return nw * 0.0


@jit(inline="always")
def sgd(w, g, c, tl2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """Gradient descent, equation (2): ``u = g``. No state."""
    c, tl2, keep, lr = working_scalars(c, tl2, keep, lr, w)
    save_previous(w, w_prev)
    bad = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        bad += decay_step(w, j, wj, keep, lr, l2_gradient(g[j], wj, c, tl2))
    return bad


@jit(inline="always")
def rmsprop(w, g, c, tl2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """RMSProp, equations (3)-(4): ``v <- b2 v + (1 - b2) g^2`` (``state[1]``),
    ``u = g / (sqrt(v) + eps)``."""
    beta, beta_c, eps = working(hyper[1], w), working(1.0 - hyper[1], w), working(hyper[2], w)
    c, tl2, keep, lr = working_scalars(c, tl2, keep, lr, w)
    v = state[1]
    save_previous(w, w_prev)
    bad = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        gj = l2_gradient(g[j], wj, c, tl2)
        vj = beta * v[j] + beta_c * (gj * gj)
        v[j] = vj
        bad += decay_step(w, j, wj, keep, lr, gj / (np.sqrt(vj) + eps))
    return bad


@jit(inline="always")
def adagrad(w, g, c, tl2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """Adagrad: ``s <- s + g^2`` (``state[1]``), ``u = g / (sqrt(s) + eps)``."""
    eps = working(hyper[2], w)
    c, tl2, keep, lr = working_scalars(c, tl2, keep, lr, w)
    s = state[1]
    save_previous(w, w_prev)
    bad = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        gj = l2_gradient(g[j], wj, c, tl2)
        sj = s[j] + gj * gj
        s[j] = sj
        bad += decay_step(w, j, wj, keep, lr, gj / (np.sqrt(sj) + eps))
    return bad


@jit(inline="always")
def adam(w, g, c, tl2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """Adam (Kingma and Ba, arXiv:1412.6980): ``m <- b1 m + (1 - b1) g`` (``state[0]``),
    ``v <- b2 v + (1 - b2) g^2`` (``state[1]``), and the bias-corrected step
    ``(lr / (1 - b1^(k+1))) m / (sqrt(v) / sqrt(1 - b2^(k+1)) + eps)``."""
    b1, b2 = hyper[0], hyper[1]
    k1 = k + 1
    step_size = working(lr / (1.0 - b1**k1), w)
    bc2_sqrt = working(np.sqrt(1.0 - b2**k1), w)
    b1_c, b2_c, eps = working(1.0 - b1, w), working(1.0 - b2, w), working(hyper[2], w)
    b1, b2 = working(b1, w), working(b2, w)
    c, tl2, keep, _ = working_scalars(c, tl2, keep, lr, w)  # Adam's step size is its own
    m = state[0]
    v = state[1]
    save_previous(w, w_prev)
    bad = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        gj = l2_gradient(g[j], wj, c, tl2)
        mj = b1 * m[j] + b1_c * gj
        vj = b2 * v[j] + b2_c * (gj * gj)
        m[j] = mj
        v[j] = vj
        bad += decay_step(w, j, wj, keep, step_size, mj / (np.sqrt(vj) / bc2_sqrt + eps))
    return bad


RULES = {"sgd": sgd, "rmsprop": rmsprop, "adagrad": adagrad, "adam": adam}
SGD, RMSPROP, ADAGRAD, ADAM = range(4)  #: rule ids for :func:`update`, in the order of RULES


@jit(inline="always")
def update(rule, w, g, c, l2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """Apply the rule with id ``rule`` (:data:`SGD`, :data:`RMSPROP`, :data:`ADAGRAD`,
    :data:`ADAM`), the others' signature otherwise: how a compiled loop takes its rule as data."""
    tl2 = 2.0 * l2
    if rule == SGD:
        return sgd(w, g, c, tl2, state, k, lr, hyper, keep, w_prev)
    if rule == RMSPROP:
        return rmsprop(w, g, c, tl2, state, k, lr, hyper, keep, w_prev)
    if rule == ADAGRAD:
        return adagrad(w, g, c, tl2, state, k, lr, hyper, keep, w_prev)
    return adam(w, g, c, tl2, state, k, lr, hyper, keep, w_prev)


def init(d) -> np.ndarray:
    """The state every rule starts from: zeros, float64, shape ``(2, d)``."""
    return np.zeros((2, _validate.positive_int(d, "d")))


def apply(rule, w, g, state, *, k=0, lr, b1=0.9, b2=0.999, eps=1e-8, l2=0.0, weight_decay=0.0) -> bool:
    """One update of ``w`` (and ``state``) in place by the rule named ``rule`` (a key of
    :data:`RULES`) at step ``k``; returns whether every updated weight is finite.

    ``w``, ``g``: float64 ``(d,)``; ``state``: float64 ``(2, d)`` from :func:`init`, carried
    from step to step. ``b1``/``b2``/``eps`` as in the table above (RMSProp reads ``b2`` as
    its ``beta``); ``g`` is the gradient of the data term, ``l2`` the penalty added to it.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    for arr, name, shape in ((w, "w", None), (g, "g", np.shape(w)), (state, "state", (2,) + np.shape(w))):
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.flags.c_contiguous
                and arr.flags.writeable and arr.ndim == (1 if shape is None else len(shape))):
            ndim = 1 if shape is None else len(shape)
            raise TypeError(f"{name} must be a writeable C-contiguous {ndim}-d float64 array, got "
                            f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {np.shape(arr)}")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match w, got {arr.shape}")
    k = _validate.positive_int(k, "k", minimum=0)
    lr = _validate.finite_float(lr, "lr", low=0.0, low_open=True)
    hyper = tuple(_validate.finite_float(x, name, low=0.0, high=hi, high_open=hi is not None)
                  for x, name, hi in ((b1, "b1", 1.0), (b2, "b2", 1.0), (eps, "eps", None)))
    l2 = _validate.finite_float(l2, "l2", low=0.0)
    keep = 1.0 - _validate.finite_float(weight_decay, "weight_decay", low=0.0, high=1.0, high_open=True)
    return RULES[rule](w, g, 1.0, 2.0 * l2, state, k, lr, hyper, keep, np.empty_like(w)) == 0.0


# --------------------------------------------------------------------------- adjoints and tangents
# The derivative of each rule, for the hypergradients of :mod:`kernels.hypergrad` (reverse mode:
# the adjoint; forward mode: the tangent), beside the rule it differentiates. They recompute the
# rule's intermediate values from the state *before* the step (``state_prev``), the weights
# ``w = w_k`` and the data gradient ``g`` of step ``k`` (with its scale ``c``), exactly as the
# rule computes them: ``G = c g + 2 l2 w`` and, for the adaptive rules, the new moments.
#
# The hyper-parameters are indexed in the derivative arrays by :data:`H_LR` ... :data:`H_EPS`:
# ``lr``, ``l2``, ``weight_decay`` (``keep = 1 - weight_decay``), ``b1``, ``b2`` (RMSProp's
# ``beta``) and ``eps``.
#
# The square root at zero. ``u = G / (sqrt(v) + eps)`` needs ``d sqrt(v)/dv = 1 / (2 sqrt(v))``,
# infinite at ``v = 0``. A new moment ``v_j`` is 0 only when ``G_j = 0`` and the old moment is 0
# (e.g. a weight whose gradient is exactly zero on the first step, ``v_{-1} = 0``); there the
# factor is taken as 0, the one-sided limit of the product with every quantity it multiplies
# (``d u/dv * dv/dG = -(1 - b) G^2 / (sqrt(v) (sqrt(v) + eps)^2) -> 0`` as ``G -> 0``), so the
# step's derivative in ``G`` is ``1 / eps``, the limit from either side. (PyTorch's autograd gives
# NaN there: ``inf * 0``.)

H_LR, H_L2, H_WD, H_B1, H_B2, H_EPS = range(6)  #: indices of the hyper-parameter derivatives
N_HYPER = 6


@jit(inline="always")
def _half_rsqrt(v):  # pragma: no cover - compiled
    """``1 / (2 sqrt(v))``, and 0 at ``v = 0`` (the one-sided convention above)."""
    if v > 0.0:
        return 0.5 / np.sqrt(v)
    return 0.0


@jit(inline="always")
def sgd_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh):  # pragma: no cover
    """The adjoint of :func:`sgd` at step ``k``: ``aw`` enters as ``dObj/dw_{k+1}`` and leaves as
    the part of ``dObj/dw_k`` through the rule's explicit ``w`` (``keep aw + 2 l2 Gbar``);
    ``gbar`` receives ``dObj/dg`` (the caller adds ``(dg/dw)^T gbar``, its Hessian-vector
    product); ``dh`` accumulates the partials in the hyper-parameters. No state. (The partials
    are summed in local scalars and added to ``dh`` once: accumulating into ``dh[i]`` inside the
    loop kept the loop from vectorising.)"""
    d_wd = 0.0
    d_lr = 0.0
    d_l2 = 0.0
    for j in range(aw.shape[0]):
        wj = w[j]
        a = aw[j]
        G = c * g[j] + tl2 * wj
        d_wd -= a * wj
        d_lr -= a * G
        Gb = -lr * a
        d_l2 += 2.0 * wj * Gb
        aw[j] = keep * a + tl2 * Gb
        gbar[j] = c * Gb
    dh[H_WD] += d_wd
    dh[H_LR] += d_lr
    dh[H_L2] += d_l2


@jit(inline="always")
def rmsprop_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh):  # pragma: no cover
    """The adjoint of :func:`rmsprop` (see :func:`sgd_adjoint`): ``astate[1]`` enters as
    ``dObj/dv_k`` and leaves as ``dObj/dv_{k-1}``. With ``v = b v_prev + (1 - b) G^2``,
    ``s = sqrt(v)``, ``u = G / (s + eps)``::

        vbar = astate + ubar (-G / (s + eps)^2) / (2 s),   ubar = -lr abar
        Gbar = ubar / (s + eps) + 2 (1 - b) G vbar,        astate <- b vbar
        d_beta += vbar (v_prev - G^2),   d_eps += ubar (-G / (s + eps)^2)
    """
    b, eps = hyper[1], hyper[2]
    av = astate[1]
    vprev = state_prev[1]
    d_wd = 0.0
    d_lr = 0.0
    d_l2 = 0.0
    d_b = 0.0
    d_eps = 0.0
    for j in range(aw.shape[0]):
        wj = w[j]
        a = aw[j]
        G = c * g[j] + tl2 * wj
        vp = vprev[j]
        v = b * vp + (1.0 - b) * (G * G)
        den = np.sqrt(v) + eps
        u = G / den
        d_wd -= a * wj
        d_lr -= a * u
        ub = -lr * a
        dden = -ub * G / (den * den)  # dObj/d(den)
        d_eps += dden
        vb = av[j] + dden * _half_rsqrt(v)
        d_b += vb * (vp - G * G)
        Gb = ub / den + 2.0 * (1.0 - b) * G * vb
        av[j] = b * vb
        d_l2 += 2.0 * wj * Gb
        aw[j] = keep * a + tl2 * Gb
        gbar[j] = c * Gb
    dh[H_WD] += d_wd
    dh[H_LR] += d_lr
    dh[H_L2] += d_l2
    dh[H_B2] += d_b
    dh[H_EPS] += d_eps


@jit(inline="always")
def adam_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh):  # pragma: no cover
    """The adjoint of :func:`adam` (see :func:`sgd_adjoint`), bias corrections included: with
    ``bc1 = 1 - b1^(k+1)``, ``r2 = sqrt(1 - b2^(k+1))``, ``den = sqrt(v) / r2 + eps``,
    ``q = m / den``, the step is ``-(lr / bc1) q``; ``d(1/bc1)/db1 = (k+1) b1^k / bc1^2`` and
    ``d den/db2 = sqrt(v) (k+1) b2^k / (2 r2^3)`` are differentiated exactly, as is ``eps``.
    ``astate[0]``, ``astate[1]`` carry ``dObj/dm``, ``dObj/dv`` backwards."""
    b1, b2, eps = hyper[0], hyper[1], hyper[2]
    k1 = k + 1
    bc1 = 1.0 - b1**k1
    r2 = np.sqrt(1.0 - b2**k1)
    step = lr / bc1
    dstep_db1 = lr * k1 * b1**k / (bc1 * bc1)
    dr2_term = k1 * b2**k / (2.0 * r2 * r2 * r2)  # d den/db2 = sqrt(v) * this
    am = astate[0]
    av = astate[1]
    mprev = state_prev[0]
    vprev = state_prev[1]
    d_wd = 0.0
    d_lr = 0.0
    d_l2 = 0.0
    d_b1 = 0.0
    d_b2 = 0.0
    d_eps = 0.0
    for j in range(aw.shape[0]):
        wj = w[j]
        a = aw[j]
        G = c * g[j] + tl2 * wj
        mp = mprev[j]
        vp = vprev[j]
        m = b1 * mp + (1.0 - b1) * G
        v = b2 * vp + (1.0 - b2) * (G * G)
        s = np.sqrt(v)
        den = s / r2 + eps
        q = m / den
        d_wd -= a * wj
        d_lr -= a * q / bc1
        d_b1 -= a * q * dstep_db1
        qb = -step * a
        mb = am[j] + qb / den
        dden = -qb * m / (den * den)
        d_eps += dden
        d_b2 += dden * s * dr2_term
        vb = av[j] + dden * _half_rsqrt(v) / r2
        d_b1 += mb * (mp - G)
        d_b2 += vb * (vp - G * G)
        Gb = (1.0 - b1) * mb + 2.0 * (1.0 - b2) * G * vb
        am[j] = b1 * mb
        av[j] = b2 * vb
        d_l2 += 2.0 * wj * Gb
        aw[j] = keep * a + tl2 * Gb
        gbar[j] = c * Gb
    dh[H_WD] += d_wd
    dh[H_LR] += d_lr
    dh[H_L2] += d_l2
    dh[H_B1] += d_b1
    dh[H_B2] += d_b2
    dh[H_EPS] += d_eps


@jit(inline="always")
def adjoint(rule, aw, astate, gbar, w, g, c, l2, state_prev, k, lr, hyper, keep, dh):  # pragma: no cover
    """The adjoint of the rule with id ``rule`` (:data:`SGD`, :data:`RMSPROP`, :data:`ADAM`;
    Adagrad has none: :mod:`kernels.hypergrad` does not offer it), as :func:`update` dispatches."""
    tl2 = 2.0 * l2
    if rule == SGD:
        sgd_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh)
    elif rule == RMSPROP:
        rmsprop_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh)
    elif rule == ADAM:
        adam_adjoint(aw, astate, gbar, w, g, c, tl2, state_prev, k, lr, hyper, keep, dh)


@jit(inline="always")
def sgd_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q):  # pragma: no cover
    """The tangent of :func:`sgd` at step ``k`` in the direction of hyper-parameter ``q``
    (:data:`H_LR` ...): ``tw`` enters as ``dw_k/dq`` and leaves as ``dw_{k+1}/dq``; ``tg`` is
    ``dg/dq`` (the caller's Hessian-vector product ``(dg/dw) tw``). Call before :func:`sgd`."""
    for j in range(tw.shape[0]):
        wj = w[j]
        G = c * g[j] + tl2 * wj
        Gd = c * tg[j] + tl2 * tw[j]
        if q == H_L2:
            Gd += 2.0 * wj
        nt = keep * tw[j] - lr * Gd
        if q == H_WD:
            nt -= wj
        elif q == H_LR:
            nt -= G
        tw[j] = nt


@jit(inline="always")
def rmsprop_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q):  # pragma: no cover
    """The tangent of :func:`rmsprop` (see :func:`sgd_tangent`); ``tstate[1]`` carries ``dv/dq``."""
    b, eps = hyper[1], hyper[2]
    tv = tstate[1]
    vprev = state_prev[1]
    for j in range(tw.shape[0]):
        wj = w[j]
        G = c * g[j] + tl2 * wj
        Gd = c * tg[j] + tl2 * tw[j]
        if q == H_L2:
            Gd += 2.0 * wj
        vp = vprev[j]
        v = b * vp + (1.0 - b) * (G * G)
        vd = b * tv[j] + 2.0 * (1.0 - b) * G * Gd
        if q == H_B2:
            vd += vp - G * G
        den = np.sqrt(v) + eps
        dend = vd * _half_rsqrt(v)
        if q == H_EPS:
            dend += 1.0
        ud = Gd / den - G * dend / (den * den)
        nt = keep * tw[j] - lr * ud
        if q == H_WD:
            nt -= wj
        elif q == H_LR:
            nt -= G / den
        tv[j] = vd
        tw[j] = nt


@jit(inline="always")
def adam_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q):  # pragma: no cover
    """The tangent of :func:`adam` (see :func:`sgd_tangent` and :func:`adam_adjoint`);
    ``tstate[0]``, ``tstate[1]`` carry ``dm/dq``, ``dv/dq``."""
    b1, b2, eps = hyper[0], hyper[1], hyper[2]
    k1 = k + 1
    bc1 = 1.0 - b1**k1
    r2 = np.sqrt(1.0 - b2**k1)
    step = lr / bc1
    dstep = 0.0
    if q == H_LR:
        dstep = 1.0 / bc1
    elif q == H_B1:
        dstep = lr * k1 * b1**k / (bc1 * bc1)
    dr2_term = k1 * b2**k / (2.0 * r2 * r2 * r2)
    tm = tstate[0]
    tv = tstate[1]
    mprev = state_prev[0]
    vprev = state_prev[1]
    for j in range(tw.shape[0]):
        wj = w[j]
        G = c * g[j] + tl2 * wj
        Gd = c * tg[j] + tl2 * tw[j]
        if q == H_L2:
            Gd += 2.0 * wj
        mp = mprev[j]
        vp = vprev[j]
        m = b1 * mp + (1.0 - b1) * G
        v = b2 * vp + (1.0 - b2) * (G * G)
        md = b1 * tm[j] + (1.0 - b1) * Gd
        vd = b2 * tv[j] + 2.0 * (1.0 - b2) * G * Gd
        if q == H_B1:
            md += mp - G
        elif q == H_B2:
            vd += vp - G * G
        s = np.sqrt(v)
        den = s / r2 + eps
        dend = vd * _half_rsqrt(v) / r2
        if q == H_B2:
            dend += s * dr2_term
        elif q == H_EPS:
            dend += 1.0
        qv = m / den
        qd = md / den - m * dend / (den * den)
        nt = keep * tw[j] - step * qd - dstep * qv
        if q == H_WD:
            nt -= wj
        tm[j] = md
        tv[j] = vd
        tw[j] = nt


@jit(inline="always")
def tangent(rule, tw, tstate, tg, w, g, c, l2, state_prev, k, lr, hyper, keep, q):  # pragma: no cover
    """The tangent of the rule with id ``rule`` in the direction ``q`` (see :func:`adjoint`)."""
    tl2 = 2.0 * l2
    if rule == SGD:
        sgd_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q)
    elif rule == RMSPROP:
        rmsprop_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q)
    elif rule == ADAM:
        adam_tangent(tw, tstate, tg, w, g, c, tl2, state_prev, k, lr, hyper, keep, q)
