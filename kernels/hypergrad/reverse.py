"""``method="reverse"``: reverse mode over a stored trajectory; memory Theta(T d).

The forward pass stores ``w_0 ... w_T`` in one ``(T+1, d)`` float64 array that the Python
wrapper allocates (so profilers see it); ``bytes_stored = (T+1) d 8`` exactly. The reverse
pass runs the adjoint ``a_k = dObj/dw_k`` backwards from ``a_T = dObj/dw_T``::

    d_lr += -a_{k+1} . g_k
    d_l2 += -lr a_{k+1} . (2 w_k)
    a_k   = a_{k+1} - lr H a_{k+1}

plus, for the default objective, the direct partial ``dL~/dl2 = ||w_T||^2``. One pass over
the rows of ``X`` per step gives both the Hessian-vector product and the recomputed
gradient term: ``h = X^T (X a)`` is accumulated row by row, and then
``a . g_k = (2/n) (h . w_k - a . X^T t) + 2 l2 a . w_k`` (``X^T t`` formed once) -- the same
number as ``(2/n) (X a) . (X w_k - t) + 2 l2 a . w_k`` (``h . w_k = (X a) . (X w_k)``)
without a second product ``X w_k``, so a reverse step costs what a forward step costs. (The
price: ``h . w_k - a . X^T t`` cancels when the residual ``X w_k - t`` is much smaller than
``t``; a residual 1e-4 of ``t`` costs about 4 of the 16 digits of that one term.)
"""

from __future__ import annotations

import numpy as np

from .._config import jit
from ._problem import _check_memory
from .._rows import zero
from .descent import _adjoint_update, _grad_sweep, _reverse_mode


@jit()
def _reverse_kernel(X, t, traj, a, lr, l2, steps, zeros, xt, h):  # pragma: no cover - compiled
    """The adjoint sweep over a stored trajectory ``traj[k] = w_k``; ``a`` enters as
    ``dObj/dw_T`` and leaves as ``dObj/dw_0``. Returns ``(d_lr, d_l2)`` without the direct
    partial of the objective. ``zeros`` (n,) holds zeros; ``xt`` and ``h`` (d,) are scratch
    space (allocated by the caller: an ``np.empty`` here would compile NumPy's allocator on a
    cold first call).

    Every pass is the forward pass's own gradient sweep (:func:`_grad_sweep`, the same
    compiled function and signature), so a first call compiles the sweep once: ``X^T t``
    once, as the gradient at ``w = 0`` scaled by -1, then per step ``h = X^T X a``, the
    gradient at ``w = a`` of zero targets (``r_i = x_i . a`` exactly), and ``(X a) . t =
    a . X^T t``. A sweep of its own for ``s = X a, h = X^T s`` cost a cold first call 0.3-0.4 s
    more to compile; the products are the same, summed in another order."""
    n = X.shape[0]
    coef = 2.0 / n
    zero(h, None)
    _grad_sweep(X, t, h, xt, -1.0)
    d_lr = 0.0
    d_l2 = 0.0
    for k in range(steps - 1, -1, -1):
        _grad_sweep(X, zeros, a, h, 1.0)
        st = 0.0
        for j in range(a.shape[0]):
            st += a[j] * xt[j]
        dl, dq = _adjoint_update(st, traj[k], a, h, lr, l2, coef)
        d_lr += dl
        d_l2 += dq
    return d_lr, d_l2


def reverse(X, t, w0, X_val, t_val, lr, l2, steps):
    """The hypergradient by reverse mode over the stored trajectory (checked input, see
    :func:`kernels.hypergrad.hypergrad`)."""
    d = X.shape[1]
    _check_memory("reverse", steps, d, steps + 1)
    traj = np.empty((steps + 1, d))  # the whole trajectory, visible to profilers
    return _reverse_mode(X, t, w0, X_val, t_val, lr, l2, steps, "reverse", traj.nbytes, traj, 1, np.empty((0, d)),
                         lambda a: _reverse_kernel(X, t, traj, a, lr, l2, steps, np.zeros(X.shape[0]), np.empty(d),
                                                          np.empty(d)))
