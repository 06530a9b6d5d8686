"""Convolution as a matrix product: the compiled ``im2col`` / ``col2im`` pair.

For a batch ``x`` ``(N, C, H, W)`` and a ``kh x kw`` filter (stride ``s``, dilation ``d``,
padding), the columns hold one patch element against one output pixel ``q = n Ho Wo + y Wo +
x``, in one of two layouts::

    cols[q, (i kw + j) C + c] = xpad[n, c, y s_h + i d_h, x s_w + j d_w]   (rows: one row per
                                                                            pixel, channels last)
    cols[(c kh + i) kw + j, q] = the same                                  (columns: PyTorch's
                                                                            unfold)

so that with ``W2 = W.transpose(0, 2, 3, 1).reshape(C_out, kh kw C)`` (rows; columns:
``W.reshape(C_out, C kh kw)``) and the output gradient ``gr`` as ``(N Ho Wo, C_out)`` (or ``g2
= gr^T``), the correlation is ``cols @ W2^T`` (or ``W2 @ cols``), its filter gradient ``(cols^T
@ gr)^T`` (or ``(cols @ g2^T)^T``) and its input gradient ``col2im(gr @ W2)`` (or
``col2im(W2^T @ g2)``): three BLAS products, each one call over the whole batch (a
product per image costs a BLAS call per image). The layout that OpenBLAS runs faster depends on
the layer (:data:`kernels.nn.layers.ROWS_MIN_FAN_IN`). On a
few thousand output pixels (a batch of a classifier's 8x8 or 4x4 planes, or one image) this
beats the direct kernels of :mod:`kernels.conv`, whose blocking pays off on large planes and
batches (:func:`kernels.nn.layers.choose_paths` has the measurements). The kernels work on
zero-padded planes (flat, so the inner loops are plain index arithmetic, with no clipping), each
padded in a scratch buffer by the task that uses it; a ``prange`` task covers one image (rows)
or :data:`_PLANES` ``(n, c)`` planes (columns, and the gradient), each writing only its own
entries (``im2col``) or planes (``col2im``), in a fixed order: results do not depend on the
thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import jit

__all__ = ["im2col", "col2im", "to_planes", "from_planes"]


# Flat indices are formed as uint64: an index Numba cannot prove non-negative gets a
# wraparound check (negative indices count from the end), which keeps these short copy loops
# from vectorising (5x slower measured on LeNet-5's second layer).
#
# Each task pads its own plane in a scratch buffer (in cache, right before use) rather than
# reading a zero-padded copy of the batch: NumPy's strided copies for that padding, and for
# cutting the padding off the input gradient, ran a loop per 4-element row of a classifier's
# small planes (44 us of the digits network's second layer, (64, 16, 4, 4), for 147 KB).
# A plane's Ho*Wo output positions are walked in one flat loop through an offset table.


#: planes per parallel task, which allocates one scratch plane for them all (an allocation per
#: plane serialised the threads on the allocator)
_PLANES = 16


@jit(inline="always")
def _pad_plane(plane, xpad, pt, pl, Wp):  # pragma: no cover - compiled
    """``xpad`` (flat, ``Wp`` wide) = the 2-D ``plane`` with ``pt`` zero rows above, ``pl``
    zero columns left, and zeros to the end."""
    xpad[:] = 0
    for h in range(plane.shape[0]):
        row = plane[h]
        o = (h + pt) * Wp + pl
        for w in range(plane.shape[1]):
            xpad[o + w] = row[w]


@jit(inline="always")
def _offsets(Ho, Wo, sh, sw, Wp):  # pragma: no cover - compiled
    """``offsets[y Wo + x] = y sh Wp + x sw``: where output position (y, x) reads tap (0, 0)
    in a padded plane ``Wp`` wide."""
    offsets = np.empty(Ho * Wo, dtype=np.uint64)
    for y in range(Ho):
        for x in range(Wo):
            offsets[y * Wo + x] = np.uint64(y * sh * Wp + x * sw)
    return offsets


@jit(parallel=True)
def _im2col_kernel(x, cols, kh, kw, sh, sw, dh, dw, pt, pl, Hp, Wp, Ho, Wo):  # pragma: no cover - compiled
    """The columns layout, ``cols[k, q]``, one plane per step of a task."""
    N, C, H, W = x.shape
    P = Ho * Wo
    NP = N * P
    cflat = cols.reshape(cols.size)
    offsets = _offsets(Ho, Wo, sh, sw, Wp)
    up = np.uint64(P)
    for b in prange((N * C + _PLANES - 1) // _PLANES):
        xpad = np.empty(Hp * Wp, dtype=cols.dtype)  # one plane at a time, zero-padded
        for t in range(b * _PLANES, min(b * _PLANES + _PLANES, N * C)):
            n = t // C
            c = t - n * C
            _pad_plane(x[n, c], xpad, pt, pl, Wp)
            for i in range(kh):
                for j in range(kw):
                    dst = np.uint64(((c * kh + i) * kw + j) * NP + n * P)
                    src = np.uint64(i * dh * Wp + j * dw)
                    for p in range(up):
                        cflat[dst + p] = xpad[src + offsets[p]]


@jit(inline="always")
def _pad_image_last(x, n, xpad, pt, pl, Wp):  # pragma: no cover - compiled
    """``xpad`` (flat ``(Hp, Wp, C)``, channels last) = image ``n`` of ``x`` zero-padded (``pt``
    rows above, ``pl`` columns left, zeros to the end)."""
    N, C, H, W = x.shape
    xpad[:] = 0
    xf = x.reshape(x.size)
    uC = np.uint64(C)
    for c in range(C):
        for h in range(H):
            src = np.uint64(((n * C + c) * H + h) * W)
            dst = np.uint64((h + pt) * Wp + pl) * uC + np.uint64(c)
            for w in range(np.uint64(W)):
                xpad[dst + w * uC] = xf[src + w]


@jit(inline="always")
def _runs_last(kh, kw, dh, dw, Wp, C):  # pragma: no cover - compiled
    """``(runs, L)``: where each contiguous run of a pixel's patch starts in a channels-last
    padded image, from tap (0, 0), and the runs' length. Undilated rows (``dw = 1``) make one
    run of ``kw C`` values per filter row ``i`` (its taps side by side), else one run of ``C``
    per tap; either way run ``r`` is at ``r L`` in the pixel's row of columns."""
    if dw == 1:
        runs = np.empty(kh, dtype=np.uint64)
        for i in range(kh):
            runs[i] = np.uint64(i * dh * Wp * C)
        return runs, np.uint64(kw * C)
    runs = np.empty(kh * kw, dtype=np.uint64)
    for i in range(kh):
        for j in range(kw):
            runs[i * kw + j] = np.uint64((i * dh * Wp + j * dw) * C)
    return runs, np.uint64(C)


@jit(parallel=True)
def _im2row_kernel(x, cols, kh, kw, sh, sw, dh, dw, pt, pl, Hp, Wp, Ho, Wo):  # pragma: no cover - compiled
    """The rows layout, ``cols[q, (i kw + j) C + c]``, one image per task: the image padded
    channels last in a scratch buffer, so that each filter row of each output pixel is one
    contiguous copy of ``kw C`` values (:func:`_runs_last`). With the patch ordered ``(c, i,
    j)`` every element was a gather through a table: 72 us against 27 on the digits network's
    second layer ((64, 16, 4, 4), one thread), 31 with a copy per tap."""
    N, C, H, W = x.shape
    P = Ho * Wo
    K = C * kh * kw
    cflat = cols.reshape(cols.size)
    offsets = _offsets(Ho, Wo, sh, sw, Wp)
    runs, L = _runs_last(kh, kw, dh, dw, Wp, C)
    uC, uK = np.uint64(C), np.uint64(K)
    for n in prange(N):
        xpad = np.empty(Hp * Wp * C, dtype=cols.dtype)
        _pad_image_last(x, n, xpad, pt, pl, Wp)
        for p in range(P):
            dst = np.uint64(n * P + p) * uK
            base = offsets[p] * uC
            for r in range(runs.shape[0]):
                src = base + runs[r]
                d = dst + np.uint64(r) * L
                for c in range(L):
                    cflat[d + c] = xpad[src + c]


@jit(parallel=True)
def _row2im_kernel(gcols, gx, kh, kw, sh, sw, dh, dw, pt, pl, Hp, Wp, Ho, Wo):  # pragma: no cover - compiled
    """The adjoint of :func:`_im2row_kernel`, one image per task: its gradient padded channels
    last in a scratch buffer, each run of each pixel (:func:`_runs_last`) added contiguously,
    the pixels in descending order, so that every element sums its taps in the order ``(i,
    j)`` as :func:`_col2im_kernel` does (a pixel's taps land on distinct elements, and for one
    element a later tap is an earlier pixel); then cut out of the padding into ``gx``."""
    N, C, H, W = gx.shape
    P = Ho * Wo
    K = C * kh * kw
    gflat = gcols.reshape(gcols.size)
    gxf = gx.reshape(gx.size)
    offsets = _offsets(Ho, Wo, sh, sw, Wp)
    runs, L = _runs_last(kh, kw, dh, dw, Wp, C)
    uC, uK = np.uint64(C), np.uint64(K)
    for n in prange(N):
        gpad = np.zeros(Hp * Wp * C, dtype=gx.dtype)
        for p in range(P - 1, -1, -1):
            src = np.uint64(n * P + p) * uK
            base = offsets[p] * uC
            for r in range(runs.shape[0]):
                d = base + runs[r]
                s = src + np.uint64(r) * L
                for c in range(L):
                    gpad[d + c] += gflat[s + c]
        for c in range(C):
            for h in range(H):
                dst = np.uint64(((n * C + c) * H + h) * W)
                src = np.uint64((h + pt) * Wp + pl) * uC + np.uint64(c)
                for w in range(np.uint64(W)):
                    gxf[dst + w] = gpad[src + w * uC]


@jit(parallel=True)
def _col2im_kernel(gcols, gx, kh, kw, sh, sw, dh, dw, pt, pl, Hp, Wp, Ho, Wo):  # pragma: no cover - compiled
    """The adjoint of :func:`_im2col_kernel`: ``gcols[k, q]`` (patch element ``k``, output
    pixel ``q``, the columns layout) summed back onto the positions they came from."""
    N, C, H, W = gx.shape
    P = Ho * Wo
    gflat = gcols.reshape(gcols.size)
    offsets = _offsets(Ho, Wo, sh, sw, Wp)
    up = np.uint64(P)
    for b in prange((N * C + _PLANES - 1) // _PLANES):
        gpad = np.empty(Hp * Wp, dtype=gx.dtype)  # one plane's gradient at a time, padding included
        for t in range(b * _PLANES, min(b * _PLANES + _PLANES, N * C)):
            n = t // C
            c = t - n * C
            gpad[:] = 0
            for i in range(kh):
                for j in range(kw):
                    src = np.uint64((((c * kh + i) * kw + j) * N + n) * P)
                    dst = np.uint64(i * dh * Wp + j * dw)
                    # tap by tap: each element sums its taps in the order (i, j)
                    for p in range(up):
                        gpad[dst + offsets[p]] += gflat[src + p]
            plane = gx[n, c]
            for h in range(H):
                row = plane[h]
                o = (h + pt) * Wp + pl
                for w in range(W):
                    row[w] = gpad[o + w]


@jit(inline="always")
def _product_run(n, co, N, P, Co, rows):  # pragma: no cover - compiled
    """Where channel ``co`` of image ``n`` lies in a product's ``(N P, C_out)`` (``rows``) or
    ``(C_out, N P)`` layout: ``(start, step)`` of its ``P`` pixels, unsigned."""
    if rows:
        return np.uint64(n * P) * np.uint64(Co) + np.uint64(co), np.uint64(Co)
    return np.uint64(co) * np.uint64(N * P) + np.uint64(n * P), np.uint64(1)


@jit(parallel=True)
def _to_planes_kernel(y2, b, bias, rows, y):  # pragma: no cover - compiled
    """``y[n, co] = y2's output channel co of image n (+ b[co] if bias)``, from the product's
    ``(N Ho Wo, C_out)`` with ``rows``, else ``(C_out, N Ho Wo)``: the transpose and the bias
    in one pass (NumPy's ``y2 += b`` and strided copy made two, 20 us of the digits network's
    second layer at batch 64). One task per image; unsigned offsets (no wraparound checks)."""
    N, Co, Ho, Wo = y.shape
    P = Ho * Wo
    yf = y.reshape(y.size)
    y2f = y2.reshape(y2.size)
    uP, uCo = np.uint64(P), np.uint64(Co)
    for n in prange(N):
        for co in range(Co):
            d = (np.uint64(n) * uCo + np.uint64(co)) * uP
            src, step = _product_run(n, co, N, P, Co, rows)
            if bias:
                bc = b[co]
                for q in range(uP):
                    yf[d + q] = y2f[src + q * step] + bc
            else:
                for q in range(uP):
                    yf[d + q] = y2f[src + q * step]


@jit(parallel=True)
def _from_planes_kernel(gy, rows, g, gb):  # pragma: no cover - compiled
    """The output gradient ``gy`` ``(N, C_out, Ho, Wo)`` laid out as the products take it (``g``:
    ``(N Ho Wo, C_out)`` with ``rows``, else ``(C_out, N Ho Wo)``) and, when ``gb`` has entries,
    the bias gradient: ``gb[co]`` the float64 sum of channel ``co`` over the pixels in order
    (image by image). One pass instead of NumPy's strided copy and a second pass; one task per
    :data:`_PLANES` channels."""
    N, Co, Ho, Wo = gy.shape
    P = Ho * Wo
    gyf = gy.reshape(gy.size)
    gf = g.reshape(g.size)
    uP, uCo = np.uint64(P), np.uint64(Co)
    sums = gb.shape[0] > 0
    for blk in prange((Co + _PLANES - 1) // _PLANES):
        c0 = blk * _PLANES
        c1 = min(c0 + _PLANES, Co)
        acc = np.zeros(_PLANES)
        for n in range(N):
            for co in range(c0, c1):
                s = (np.uint64(n) * uCo + np.uint64(co)) * uP
                d, step = _product_run(n, co, N, P, Co, rows)
                a = acc[co - c0]
                for q in range(uP):
                    v = gyf[s + q]
                    gf[d + q * step] = v
                    if sums:
                        a += np.float64(v)
                acc[co - c0] = a
        if sums:
            for co in range(c0, c1):
                gb[co] = acc[co - c0]


def to_planes(y2, b, bias, rows, y):
    """Fill ``y`` ``(N, C_out, Ho, Wo)`` from a forward product's output ``y2`` (laid out for
    ``rows``) plus, with ``bias``, ``b`` ``(C_out,)``, by :func:`_to_planes_kernel`."""
    _to_planes_kernel(y2, b, bias, rows, y)
    return y


def from_planes(gy, rows, bias):
    """``(g, gb)``: the output gradient as the products take it and, with ``bias``, the bias
    gradient (float64, ``(C_out,)``; None without), by :func:`_from_planes_kernel`."""
    gy = np.ascontiguousarray(gy)
    N, Co, Ho, Wo = gy.shape
    g = np.empty((N * Ho * Wo, Co) if rows else (Co, N * Ho * Wo), dtype=gy.dtype)
    gb = np.empty(Co if bias else 0)
    _from_planes_kernel(gy, rows, g, gb)
    return g, (gb if bias else None)


def _out_hw(H, W, kernel, stride, dilation, pads):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return ((H + pads[0] + pads[1] - dh * (kh - 1) - 1) // sh + 1,
            (W + pads[2] + pads[3] - dw * (kw - 1) - 1) // sw + 1)


def im2col(x, cols, kernel, stride, dilation, pads, rows=True):
    """Fill ``cols`` from ``x`` ``(N, C, H, W)``: ``(N Ho Wo, kh kw C)`` with ``rows``, else
    ``(C kh kw, N Ho Wo)`` (both C-contiguous; the module docstring has the layouts); ``pads``
    is (top, bottom, left, right). Shapes are the caller's (checked at build time)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    N, C, H, W = x.shape
    pt, pb, pl, pr = pads
    Ho, Wo = _out_hw(H, W, kernel, stride, dilation, pads)
    fill = _im2row_kernel if rows else _im2col_kernel
    if rows:
        x = np.ascontiguousarray(x)  # read flat
    fill(x, cols, kh, kw, sh, sw, dh, dw, pt, pl, H + pt + pb, W + pl + pr, Ho, Wo)
    return cols


def col2im(gcols, x_shape, kernel, stride, dilation, pads, dtype, rows=True):
    """The input gradient ``(N, C, H, W)``: the C-contiguous columns ``gcols`` (laid out as
    :func:`im2col` lays them out for ``rows``) summed back onto the positions they came from
    (the adjoint of :func:`im2col`), the padding cut off."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    N, C, H, W = x_shape
    pt, pb, pl, pr = pads
    Ho, Wo = _out_hw(H, W, kernel, stride, dilation, pads)
    gx = np.empty((N, C, H, W), dtype=dtype)
    if rows:
        _row2im_kernel(gcols, gx, kh, kw, sh, sw, dh, dw, pt, pl, H + pt + pb, W + pl + pr, Ho, Wo)
    else:
        _col2im_kernel(gcols, gx, kh, kw, sh, sw, dh, dw, pt, pl, H + pt + pb, W + pl + pr, Ho, Wo)
    return gx
