"""The spectrum of the Hessian ``H = (2/n) X^T X + 2 l2 I``: the Gram matrix of ``X`` (a
compiled kernel), its eigendecomposition (LAPACK, one thread), the critical learning rate
``2 / lambda_max(H)`` and the divergence report that names it.

Divergence. Gradient descent on this quadratic is stable iff ``lr < 2 / lambda_max(H)``
(:func:`critical_lr`), and then the training loss never increases. The kernels track the
training loss at every iterate (it comes free from the gradient sweep) and call the run
*diverged* at the first step ``k`` where ``L~(w_k) > 2 L~(w_0)`` (plus a 1e-20 noise floor on
the scale of the data) or where it is not finite -- which can only happen when
``lr >= 2 / lambda_max``. Nothing raises: the result has ``diverged=True``,
``diverged_at=k``, ``w = w_k``, ``loss = inf``, ``d_lr = d_l2 = nan`` (undefined, and flagged,
never silent), ``lr_critical = 2 / lambda_max(H)``, and a :class:`RuntimeWarning` names the
critical learning rate. Without divergence ``diverged_at = -1`` (as in :mod:`kernels.optim`).
An unstable ``lr`` whose blow-up stays under the 2x threshold within ``T`` steps yields the
finite, exact finite-horizon values.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np

from .._config import jit
from .._validate import finite_float, float_array
from ._problem import HypergradResult, _finite


@jit()
def _gram_kernel(X, G):  # pragma: no cover - compiled
    """``G = X X^T`` (``n <= d``) or ``X^T X`` (``n > d``), serial and deterministic.

    Compiled rather than BLAS: on a busy two-core machine a threaded OpenBLAS level-3 call of
    this size was measured taking 40 ms instead of 0.4 ms (spinning worker threads), and the
    exact method is meant to be the fast path."""
    n, d = X.shape
    if n <= d:
        for i in range(n):
            for j in range(i, n):
                acc = 0.0
                for k in range(d):
                    acc += X[i, k] * X[j, k]
                G[i, j] = acc
                G[j, i] = acc
    else:
        for a in range(d):
            for b in range(d):
                G[a, b] = 0.0
        for i in range(n):
            for a in range(d):
                xa = X[i, a]
                for b in range(a, d):
                    G[a, b] += xa * X[i, b]
        for a in range(d):
            for b in range(a):
                G[a, b] = G[b, a]


_BLAS_CONTROLLER = []


def _eigh_serial(G, values_only=False):
    """``numpy.linalg.eigh`` with LAPACK's BLAS limited to one thread when threadpoolctl is
    installed (an optional dependency; without it, plain ``eigh``). For these few-hundred-square
    matrices threads gain nothing, and on a busy two-core machine OpenBLAS's spinning workers
    were measured making ``eigh`` several times slower. The limit is process-wide for the
    duration of the call."""
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER.append(ThreadpoolController())
        except Exception:  # not installed, or it cannot inspect this process
            _BLAS_CONTROLLER.append(None)
    ctl = _BLAS_CONTROLLER[0]
    fn = np.linalg.eigvalsh if values_only else np.linalg.eigh
    if ctl is None:
        return fn(G)
    with ctl.limit(limits=1, user_api="blas"):
        return fn(G)


def critical_lr(X, l2=0.0) -> float:
    """``2 / lambda_max(H)`` with ``H = (2/n) X^T X + 2 l2 I``: gradient descent on ``L~`` is
    stable iff ``lr`` is below it (``inf`` when ``H = 0``, or when ``2 / lambda_max`` is past
    float64's range). Exact, from the largest eigenvalue of the smaller Gram matrix (LAPACK
    through NumPy), and accurate whenever ``2 / lambda_max`` is representable."""
    X = float_array(X, "X", ndim=2)
    l2 = finite_float(l2, "l2", low=0.0)
    X = _finite(X, "X")
    # lambda_max(X^T X) = s^2 lambda_max((X/s)^T (X/s)): with s a power of two near max |X|
    # (an exact division) the Gram matrix of data near 1e308 cannot overflow inside LAPACK.
    peak = float(np.max(np.abs(X))) if X.size else 0.0
    s = 1.0 if peak == 0.0 or 1e-100 < peak < 1e100 else math.ldexp(1.0, math.frexp(peak)[1] - 1)
    gram = np.empty((min(X.shape),) * 2)
    _gram_kernel(X if s == 1.0 else X / s, gram)
    top = max(float(_eigh_serial(gram, values_only=True)[-1]), 0.0)
    # 2 / lambda_max = 1 / (s^2 top / n + l2): the 2 is cancelled rather than multiplied in, and
    # s^2 multiplies top / n, not top (2 s^2 top overflowed for 1e153 * ones((1000, 1))).
    m = top / X.shape[0]
    half = m * s * s + l2
    if 2.0**-1000 <= half < math.inf:
        return 1.0 / half
    # past float64's range (1e154 * ones((4, 1)): lambda_max = 2e308, yet 2 / lambda_max = 1e-308
    # is representable) or subnormal: redo it scaled by k^2 = 2^-600 or 2^600
    k = 2.0**300 if half < 1.0 else 2.0**-300
    half = m * (s * k) * (s * k) + l2 * k * k
    return math.inf if half == 0.0 else (1.0 / half) * k * k


def _outside_stacklevel():
    """The ``stacklevel`` that makes a warning name the first caller outside this package."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


def _diverged(X, l2, lr, steps, method, k, w, nbytes):
    crit = critical_lr(X, l2)
    warnings.warn(
        f"unrolled gradient descent diverged at step {k} of {steps}: lr={lr!r} is at or above the "
        f"critical learning rate 2/lambda_max(H) = {crit!r}",
        RuntimeWarning,
        stacklevel=_outside_stacklevel(),
    )
    return HypergradResult(
        loss=math.inf, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=nbytes, method=method,
        steps=steps, diverged=True, diverged_at=int(k), lr_critical=crit,
    )
