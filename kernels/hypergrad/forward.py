"""``method="forward"``: forward mode; memory O(d), independent of T.

Carries the tangent ``v_k = dw_k/dl2`` with ``v_{k+1} = v_k - lr (H v_k + 2 w_k)``, its
Hessian-vector product fused into the forward row sweep (``X w`` and ``X v`` together,
then ``X^T r`` and ``X^T X v`` together). The tangent ``u_k = dw_k/dlr`` obeys
``u_{k+1} = (I - lr H) u_k - g_k``, ``u_0 = 0``; because the Hessian is constant,
``g_{k+1} = (I - lr H) g_k``, so ``u_k = -k g_{k-1}`` exactly, and it is carried in that
form (the last gradient) at no extra cost. ``bytes_stored = 2 d 8`` (the two tangents).
"""

from __future__ import annotations

import numpy as np

from .._config import jit
from ._problem import HypergradResult, _noise, _objective_grad
from .descent import _finish_grad, _fused_sweep, _grad_sweep, _watch
from .spectrum import _diverged


@jit()
def _forward_mode_kernel(X, t, w, g, gprev, v, lr, l2, steps, noise):  # pragma: no cover
    """Gradient descent carrying ``v = dw/dl2`` (fused sweep) and ``gprev = g_{k-1}`` (so
    ``dw_k/dlr = -k gprev``). Returns ``(diverged_at, loss)`` like :func:`_descend_kernel`;
    on success ``w = w_T``, ``g = grad L~(w_T)``, ``gprev = g_{T-1}``, ``v = v_T``."""
    n, d = X.shape
    coef = 2.0 / n
    inv_n = 1.0 / n
    s = np.empty(n)
    h = np.empty(d)
    thr = 0.0
    for k in range(steps + 1):
        if k == steps:
            ss = _grad_sweep(X, t, w, g, coef)
        else:
            ss = _fused_sweep(X, t, w, v, g, s, h, coef)
        loss = ss * inv_n + l2 * _finish_grad(w, g, l2)
        thr, bad = _watch(k, loss, thr, noise)
        if bad:
            return k, loss
        if k == steps:
            return -1, loss
        for j in range(d):
            gj = g[j]
            v[j] -= lr * (coef * h[j] + 2.0 * l2 * v[j] + 2.0 * w[j])
            w[j] -= lr * gj
            gprev[j] = gj
    return -1, 0.0  # not reached


def forward(X, t, w0, X_val, t_val, lr, l2, steps):
    """The hypergradient by forward mode (checked input, see :func:`kernels.hypergrad.hypergrad`)."""
    d = X.shape[1]
    w = w0.copy()
    g = np.empty(d)
    gprev = np.zeros(d)
    v = np.zeros(d)
    nbytes = gprev.nbytes + v.nbytes
    k, loss = _forward_mode_kernel(X, t, w, g, gprev, v, lr, l2, steps, _noise(X, t, w0, l2))
    if k >= 0:
        return _diverged(X, l2, lr, steps, "forward", k, w, nbytes)
    obj, a, direct = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
    d_lr = -steps * float(a @ gprev)
    d_l2 = float(a @ v) + direct
    return HypergradResult(loss=obj, d_lr=d_lr, d_l2=d_l2, w=w, bytes_stored=nbytes, method="forward", steps=steps)
