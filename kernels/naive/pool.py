"""Naive NumPy references for :mod:`kernels.pool` (same signatures, same results).

The forward pass pads with ``-inf`` and walks the window taps in row-major order, applying
PyTorch's update rule ``if v > m or isnan(v): m, index = v, position`` to all outputs at once
with ``np.where``; the backward pass is one ``np.add.at`` (unbuffered, in index order).
Little validation: these are for tests and benchmarks, called with clean input.
"""

from __future__ import annotations

import numpy as np


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def maxpool2d(x, kernel_size=2, *, stride=None, padding=0, return_indices=False):
    """Reference for :func:`kernels.maxpool2d` (PyTorch ``max_pool2d`` semantics)."""
    x = np.asarray(x)
    kh, kw = _pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    ph, pw = _pair(padding)
    lead = x.shape[:-2]
    H, W = x.shape[-2:]
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    xp = np.full(lead + (H + 2 * ph, W + 2 * pw), -np.inf, dtype=x.dtype)
    xp[..., ph : ph + H, pw : pw + W] = x
    # flat index into the unpadded plane of every padded position (padded ones are never chosen)
    rows = np.arange(-ph, H + ph)[:, None]
    cols = np.arange(-pw, W + pw)[None, :]
    flat = rows * W + cols
    m = np.full(lead + (OH, OW), -np.inf, dtype=x.dtype)
    # the first real element of each window: its index stands when no element beats -inf
    first_row = np.maximum(np.arange(OH) * sh - ph, 0)[:, None]
    first_col = np.maximum(np.arange(OW) * sw - pw, 0)[None, :]
    idx = np.broadcast_to(first_row * W + first_col, lead + (OH, OW)).astype(np.int64)
    for a in range(kh):
        for b in range(kw):
            v = xp[..., a : a + sh * (OH - 1) + 1 : sh, b : b + sw * (OW - 1) + 1 : sw]
            pos = flat[a : a + sh * (OH - 1) + 1 : sh, b : b + sw * (OW - 1) + 1 : sw]
            take = (v > m) | np.isnan(v)
            m = np.where(take, v, m)
            idx = np.where(take, pos, idx)
    if return_indices:
        return m, idx
    return m


def maxpool2d_backward(grad_y, indices, input_shape, *, out=None):
    """Reference for :func:`kernels.maxpool2d_backward`: scatter-add through ``indices`` (into
    ``out`` when given)."""
    grad_y = np.asarray(grad_y)
    indices = np.asarray(indices, dtype=np.int64)
    input_shape = tuple(int(s) for s in input_shape)
    H, W = input_shape[-2:]
    planes = int(np.prod(input_shape[:-2], dtype=np.int64))
    grad_x = np.zeros((planes, H * W), dtype=grad_y.dtype)
    plane = np.repeat(np.arange(planes), indices.size // planes if planes else 0)
    np.add.at(grad_x, (plane, indices.reshape(-1)), grad_y.reshape(-1))
    if out is not None:
        out[...] = grad_x.reshape(input_shape)
        return out
    return grad_x.reshape(input_shape)
