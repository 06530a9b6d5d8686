"""Convolution as a matrix product: the compiled ``im2col`` / ``col2im`` pair.

For a batch ``x`` ``(N, C, H, W)`` and a ``kh x kw`` filter (stride ``s``, dilation ``d``,
padding), the columns are::

    cols[(c kh + i) kw + j, n Ho Wo + y Wo + x] = xpad[n, c, y s_h + i d_h, x s_w + j d_w]

so that with ``W2 = W.reshape(C_out, C kh kw)`` and ``g2`` the output gradient as ``(C_out, N Ho
Wo)``, ``W2 @ cols`` is the correlation, ``g2 @ cols^T`` its filter gradient and
``col2im(W2^T @ g2)`` its input gradient: three BLAS products, each one call over the whole batch
(a product per image costs a BLAS call per image). On a few thousand output pixels (a batch of
a classifier's 8x8 or 4x4 planes, or one image) this beats the direct kernels of
:mod:`kernels.conv`, whose blocking pays off on large planes and batches
(:func:`kernels.nn.layers.choose_paths` has the measurements). Both kernels work on the explicitly
zero-padded planes (flat, so the inner loops are plain index arithmetic over short rows, with no
clipping) and run one ``prange`` task per ``(n, c)`` plane, each writing only its own rows
(``im2col``) or plane (``col2im``), in a fixed order: results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import jit
from ..conv.geometry import _pad_flat

__all__ = ["im2col", "col2im"]


# Flat indices are formed as uint64: an index Numba cannot prove non-negative gets a
# wraparound check (negative indices count from the end), which keeps these short copy loops
# from vectorising (5x slower measured on LeNet-5's second layer).


@jit(parallel=True)
def _im2col_kernel(xflat, cols, N, C, Hp, Wp, kh, kw, sh, sw, dh, dw, Ho, Wo):  # pragma: no cover - compiled
    P = Ho * Wo
    NP = N * P
    cflat = cols.reshape(cols.size)
    uwo, usw = np.uint64(Wo), np.uint64(sw)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xbase = (n * C + c) * Hp * Wp
        for i in range(kh):
            for j in range(kw):
                dst0 = ((c * kh + i) * kw + j) * NP + n * P
                for y in range(Ho):
                    src = np.uint64(xbase + (y * sh + i * dh) * Wp + j * dw)
                    dst = np.uint64(dst0 + y * Wo)
                    if sw == 1:  # contiguous: a vectorised copy
                        for xo in range(uwo):
                            cflat[dst + xo] = xflat[src + xo]
                    else:
                        for xo in range(uwo):
                            cflat[dst + xo] = xflat[src + xo * usw]


@jit(parallel=True)
def _col2im_kernel(gcols, gxp, C, kh, kw, sh, sw, dh, dw, Ho, Wo):  # pragma: no cover - compiled
    N, _, Hp, Wp = gxp.shape
    P = Ho * Wo
    NP = N * P
    gflat = gcols.reshape(gcols.size)
    uwo, usw = np.uint64(Wo), np.uint64(sw)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = gxp[n, c].reshape(Hp * Wp)
        plane[:] = 0
        for i in range(kh):
            for j in range(kw):
                src0 = ((c * kh + i) * kw + j) * NP + n * P
                for y in range(Ho):
                    dst = np.uint64((y * sh + i * dh) * Wp + j * dw)
                    src = np.uint64(src0 + y * Wo)
                    if sw == 1:
                        for xo in range(uwo):
                            plane[dst + xo] += gflat[src + xo]
                    else:
                        for xo in range(uwo):
                            plane[dst + xo * usw] += gflat[src + xo]


def _out_hw(H, W, kernel, stride, dilation, pads):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return ((H + pads[0] + pads[1] - dh * (kh - 1) - 1) // sh + 1,
            (W + pads[2] + pads[3] - dw * (kw - 1) - 1) // sw + 1)


def im2col(x, cols, kernel, stride, dilation, pads):
    """Fill ``cols`` ``(C kh kw, N Ho Wo)`` from the C-contiguous ``x`` ``(N, C, H, W)``;
    ``pads`` is (top, bottom, left, right). Shapes are the caller's (checked at build time)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, kernel, stride, dilation, pads)
    if any(pads):
        xflat, (_, _, Hp, Wp) = _pad_flat(x, pads)
    else:
        xflat, Hp, Wp = x.reshape(x.size), H, W
    _im2col_kernel(xflat, cols, N, C, Hp, Wp, kh, kw, sh, sw, dh, dw, Ho, Wo)
    return cols


def col2im(gcols, x_shape, kernel, stride, dilation, pads, dtype):
    """The input gradient ``(N, C, H, W)``: the columns ``gcols`` summed back onto the positions
    they came from (the adjoint of :func:`im2col`), the padding cut off."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    N, C, H, W = x_shape
    pt, pb, pl, pr = pads
    Ho, Wo = _out_hw(H, W, kernel, stride, dilation, pads)
    gxp = np.empty((N, C, H + pt + pb, W + pl + pr), dtype=dtype)
    _col2im_kernel(gcols, gxp, C, kh, kw, sh, sw, dh, dw, Ho, Wo)
    if not any(pads):
        return gxp
    return np.ascontiguousarray(gxp[:, :, pt: pt + H, pl: pl + W])
