"""The unrolled gradient descent that every iterative method differentiates, its adjoint
step, and the plain forward pass :func:`unrolled_loss`.

Setting (homework section 2, with ``k = 0 ... T-1`` and ``T = steps``)::

    L~(w) = (1/n) ||X w - t||^2 + l2 ||w||^2                       (training loss)
    w_{k+1} = w_k - lr * g_k,   g_k = grad L~(w_k) = H w_k - b
    H = (2/n) X^T X + 2 l2 I,   b = (2/n) X^T t                    (constant Hessian)

Every pass over ``X`` is a row sweep of :mod:`kernels._rows` (four rows per group, the
coefficient ``2/n`` applied per row): the gradient of a step, the Hessian-vector product of an
adjoint step, or both at once. No parallelism: a step of the (200, 500) benchmark problem is
~10 microseconds, less than the cost of starting a parallel region, and the time-stepping loop
itself must stay serial; the sweeps are register-blocked instead.
"""

from __future__ import annotations

import math

import numpy as np

from .._config import jit
from .._rows import copy, sweep, zero
from .._validate import positive_int
from ._problem import HypergradResult, _hyper, _noise, _objective_grad, _problem
from .spectrum import _diverged


@jit(inline="always")
def _grad_sweep(X, t, w, g, coef):  # pragma: no cover - compiled
    """``g = coef X^T (X w - t)`` in one pass over the rows; returns ``sum r_i^2``."""
    zero(g, None)
    return sweep(X, t, w, None, None, 0, X.shape[0], g, None, None, coef)


@jit(inline="always")
def _hess_sweep(X, a, s, h):  # pragma: no cover - compiled
    """``s = X a`` and ``h = X^T s`` in one pass over the rows."""
    zero(None, h)
    sweep(X, None, None, a, None, 0, X.shape[0], None, s, h, None)


@jit(inline="always")
def _fused_sweep(X, t, w, v, g, s, h, coef):  # pragma: no cover - compiled
    """One pass over the rows for two vectors: ``g = coef X^T (X w - t)``, ``s = X v``,
    ``h = X^T s``; returns ``sum r_i^2``. Each row is loaded once for both dot products and
    once for both accumulations, which is what makes a tangent (or an adjoint step overlapped
    with a recomputed forward step) cost much less than a second sweep."""
    zero(g, h)
    return sweep(X, t, w, v, None, 0, X.shape[0], g, s, h, coef)


@jit(inline="always")
def _finish_grad(w, g, l2):  # pragma: no cover - compiled
    """Add the penalty's gradient ``2 l2 w`` to ``g``; returns ``||w||^2``."""
    ww = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        ww += wj * wj
        g[j] += 2.0 * l2 * wj
    return ww


@jit(inline="always")
def _watch(k, loss, thr, noise):  # pragma: no cover - compiled
    """The divergence test at step ``k``, ``(thr, bad)``: step 0 sets the threshold ``thr =
    DIVERGENCE_FACTOR L~(w_0) + noise``; a later step is bad when its loss is above it or not
    finite (``not loss <= thr`` holds for NaN)."""
    if k == 0:
        return 2.0 * loss + noise, False  # DIVERGENCE_FACTOR
    return thr, not (loss <= thr)


@jit()
def _descend_kernel(X, t, w, g, lr, l2, steps, noise, ckpt, stride, buf):  # pragma: no cover
    """``steps`` steps of gradient descent from ``w`` (updated in place).

    Stores ``w_k`` into ``ckpt[k // stride]`` when ``stride`` divides ``k`` (and ``w_T`` too
    when there is a row for it), and the states inside the last segment (offsets ``m >= 1``
    from its checkpoint) into ``buf[m - 1]``. ``ckpt`` with no rows stores nothing (the plain
    forward pass). Returns ``(diverged_at, loss)``: ``(-1, L~(w_T))`` with ``g = grad L~(w_T)``,
    or the first step ``k`` whose loss breaks the divergence test, with ``w = w_k``.
    """
    n, d = X.shape
    coef = 2.0 / n
    inv_n = 1.0 / n
    J = ckpt.shape[0]
    last = (J - 1) * stride if J > 0 else steps + 1
    thr = 0.0
    for k in range(steps + 1):
        ss = _grad_sweep(X, t, w, g, coef)
        loss = ss * inv_n + l2 * _finish_grad(w, g, l2)
        thr, bad = _watch(k, loss, thr, noise)
        if bad:
            return k, loss
        if k == steps:
            if steps % stride == 0 and steps // stride < J:
                copy(ckpt[steps // stride], w)
            return -1, loss
        if k % stride == 0 and k // stride < J:
            copy(ckpt[k // stride], w)
        elif k > last and k - last - 1 < buf.shape[0]:
            copy(buf[k - last - 1], w)
        for j in range(d):
            w[j] -= lr * g[j]
    return -1, 0.0  # not reached


@jit(inline="always")
def _adjoint_step(t, wk, a, s, h, lr, l2, coef):  # pragma: no cover - compiled
    """One reverse step at ``w_k`` given ``s = X a``, ``h = X^T s``: updates ``a`` to ``a_k``
    in place and returns the step's contributions to ``(d_lr, d_l2)``."""
    st = 0.0
    for i in range(s.shape[0]):
        st += s[i] * t[i]
    return _adjoint_update(st, wk, a, h, lr, l2, coef)


@jit(inline="always")
def _adjoint_update(st, wk, a, h, lr, l2, coef):  # pragma: no cover - compiled
    """:func:`_adjoint_step` given ``st = (X a) . t`` (however it was formed)."""
    hw = 0.0
    aw = 0.0
    for j in range(a.shape[0]):
        hw += h[j] * wk[j]
        aw += a[j] * wk[j]
    ag = coef * (hw - st) + 2.0 * l2 * aw  # a_{k+1} . g_k
    for j in range(a.shape[0]):
        a[j] -= lr * (coef * h[j] + 2.0 * l2 * a[j])
    return -ag, -2.0 * lr * aw


def _reverse_mode(X, t, w0, X_val, t_val, lr, l2, steps, method, nbytes, ckpt, stride, buf, backward):
    """The reverse-mode methods' frame: the forward pass storing states (:func:`_descend_kernel`
    with ``ckpt``, ``stride``, ``buf``), the objective and ``a_T = dObj/dw_T``, then
    ``backward(a_T) -> (d_lr, d_l2)``, the method's adjoint sweep; or the divergence report."""
    w = w0.copy()
    g = np.empty_like(w)
    k, loss = _descend_kernel(X, t, w, g, lr, l2, steps, _noise(X, t, w0, l2), ckpt, stride, buf)
    if k >= 0:
        return _diverged(X, l2, lr, steps, method, k, w, nbytes)
    obj, a, direct = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
    d_lr, d_l2 = backward(a)
    return HypergradResult(loss=obj, d_lr=float(d_lr), d_l2=float(d_l2) + direct, w=w, bytes_stored=nbytes,
                           method=method, steps=steps)


def unrolled_loss(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None) -> HypergradResult:
    """The plain forward pass: ``steps`` steps of gradient descent and the objective at
    ``w_T``, with no derivative (``d_lr = d_l2 = nan``, ``method="forward_pass"``,
    ``bytes_stored = 0``). The time baseline of the hypergradient methods and the function
    their finite-difference tests differentiate. Divergence as in :func:`hypergrad`."""
    X, t, w0, X_val, t_val = _problem(X, t, w0, X_val, t_val)
    lr, l2 = _hyper(lr, l2)
    steps = positive_int(steps, "steps")
    w = w0.copy()
    g = np.empty_like(w)
    none = np.empty((0, w.shape[0]))  # stores nothing
    k, loss = _descend_kernel(X, t, w, g, lr, l2, steps, _noise(X, t, w0, l2), none, 1, none)
    if k >= 0:
        return _diverged(X, l2, lr, steps, "forward_pass", k, w, 0)
    obj, _, _ = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
    return HypergradResult(loss=obj, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=0, method="forward_pass",
                           steps=steps)
