"""Mean softmax cross-entropy and its gradient with respect to the logits, in one compiled pass.

For logits ``z`` of shape ``(N, K)`` and integer labels ``y`` in ``[0, K)``::

    L = (1/N) sum_n [ log sum_k exp(z[n, k]) - z[n, y_n] ]
    dL/dz[n, k] = (softmax(z[n])_k - [k == y_n]) / N

which is ``torch.nn.functional.cross_entropy(z, y)`` (``reduction='mean'``) and its autograd.
Each row is shifted by its maximum before exponentiating (no overflow), and the row's
log-sum-exp and the loss are accumulated in float64 whatever the dtype of ``z``; the gradient is
written in ``z``'s dtype. NaN or inf logits give a non-finite loss, which the caller reports.
"""

from __future__ import annotations

import numpy as np

from .._config import jit

__all__ = ["softmax_cross_entropy"]


@jit()
def _softmax_xent_kernel(z, labels, grad):  # pragma: no cover - compiled
    """Mean cross-entropy of ``z`` (N, K) against ``labels`` (N,) int64, gradient into ``grad`` (N, K)."""
    N, K = z.shape
    inv_n = 1.0 / N
    total = 0.0
    for n in range(N):
        row = z[n]
        m = np.float64(row[0])
        for k in range(1, K):
            v = np.float64(row[k])
            if v > m or v != v:
                m = v
        s = 0.0
        for k in range(K):
            s += np.exp(np.float64(row[k]) - m)
        lse = m + np.log(s)
        total += lse - np.float64(row[labels[n]])
        gr = grad[n]
        scale = inv_n / s
        for k in range(K):
            gr[k] = np.exp(np.float64(row[k]) - m) * scale
        gr[labels[n]] -= inv_n
    return total * inv_n


def softmax_cross_entropy(z, labels, grad=None):
    """``(loss, grad)``: the mean softmax cross-entropy of logits ``z`` (N, K) against
    ``labels`` (N,) int64, and its gradient (N, K) in ``z``'s dtype (into ``grad`` if given).

    No validation: the caller (:class:`kernels.nn.Model`) has checked that ``z`` is a
    C-contiguous float array and every label lies in ``[0, K)``.
    """
    if grad is None:
        grad = np.empty_like(z)
    return float(_softmax_xent_kernel(z, labels, grad)), grad
