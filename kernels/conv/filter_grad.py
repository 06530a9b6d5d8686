"""The parameter gradients of a correlation: ``grad_w`` and ``grad_bias``, long reductions summed
in float64 in a fixed order (the result does not depend on the thread count).

:func:`_grad_w3x3_kernel` (3x3, stride 1, dilation 1), :func:`_grad_w_taps_kernel` (any
other filter; at a column stride, over the input's column phases) and
:func:`_grad_w_pairs_kernel` (1x1 without padding) run the explicit-SIMD blocks of
:mod:`kernels._simd.grad`: short sums in the working precision, everything longer in float64.
Each forms exactly the products of the definition, NaN and inf included.
:func:`_grad_bias_kernel` sums ``grad_out`` per output channel.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import _simd
from kernels._config import jit

from .tiles import _GRAD_CHANNEL_GROUP, _GRAD_LANE_PRODUCTS, _GRAD_ROWS


@jit(parallel=True)
def _grad_w3x3_kernel(g, xflat, C, Hp, Wp, gw):
    """gw[co, ci, i, j] = sum_{n,y,x} g[n, co, y, x] * xpad[n, ci, y + i, x + j] (3x3, stride 1,
    dilation 1), ``xflat`` the zero-padded input flat with a vector of zero slack after it.

    One task per (block of output channels, group of input channels). Explicit SIMD blocks
    (:func:`kernels._simd.grad3x3_rows`) form the nine products of each position vector from
    three loads and lane shifts and sum :data:`_GRAD_ROWS` rows of them per lane in the working
    precision; everything longer is summed in float64 (per lane, then the lanes in order), so
    float32 gradients keep float64-grade sums over the N*H*W positions. The columns past the last
    whole vector of each row are summed in float64 directly. Fixed order throughout: the result
    does not depend on the thread count.
    """
    N, Co, Ho, Wo = g.shape
    K = _simd.GRAD_CHANNEL_BLOCK
    G = _GRAD_CHANNEL_GROUP
    V = _simd.VECTOR_BYTES // g.itemsize
    nvec = Wo // V
    xv = nvec * V
    ncb = (Co + K - 1) // K
    ngr = (C + G - 1) // G
    gflat = g.reshape(g.size)
    plane = Hp * Wp
    HWo = Ho * Wo
    T = K * 9 * V  # accumulator lanes per input channel
    for t in prange(ncb * ngr):
        cb = t // ngr
        c0 = cb * K
        kk = min(K, Co - c0)
        ci0 = (t - cb * ngr) * G
        ci1 = min(ci0 + G, C)
        acc = np.zeros((ci1 - ci0) * T)
        tail = np.zeros((ci1 - ci0) * K * 9)
        for n in range(N):
            goff = (n * Co + c0) * HWo
            if nvec > 0:
                for y0 in range(0, Ho, _GRAD_ROWS):
                    rows = min(_GRAD_ROWS, Ho - y0)
                    # the group's input channels in turn, while these rows of g stay in L1
                    for ci in range(ci0, ci1):
                        a = acc[(ci - ci0) * T :]
                        xoff = (n * C + ci) * plane + y0 * Wp
                        if kk == K:
                            _simd.grad3x3_rows(a, gflat, goff + y0 * Wo, HWo, Wo, xflat, xoff, Wp, rows, nvec)
                        else:
                            _simd.grad3x3_rows_single(a, gflat, goff + y0 * Wo, HWo, Wo, xflat, xoff, Wp, rows, nvec)
            if xv < Wo:
                for ci in range(ci0, ci1):
                    xoff = (n * C + ci) * plane
                    for k in range(kk):
                        tk = ((ci - ci0) * K + k) * 9
                        for y in range(Ho):
                            for x in range(xv, Wo):
                                gv = np.float64(gflat[goff + k * HWo + y * Wo + x])
                                for i in range(3):
                                    xr = xoff + (y + i) * Wp + x
                                    for j in range(3):
                                        tail[tk + i * 3 + j] += gv * xflat[xr + j]
        for ci in range(ci0, ci1):
            for k in range(kk):
                for tap in range(9):
                    s = tail[((ci - ci0) * K + k) * 9 + tap]
                    base = (ci - ci0) * T + (k * 9 + tap) * V
                    for lane in range(V):
                        s += acc[base + lane]
                    gw[c0 + k, ci, tap // 3, tap % 3] = s


@jit(parallel=True)
def _grad_w_taps_kernel(g, xflat, C, Hp, Wp, gw, sh, dh, dw, sw, phase_stride, widen):
    """gw[co, ci, i, j] = sum_{n,y,x} g[n, co, y, x] * xpad[n, ci, y*sh + i*dh, x*sw + j*dw] for any
    filter, ``xflat`` the zero-padded input flat (``Hp`` rows of ``Wp`` elements per plane). At
    ``sw = 1`` a row is the padded row; at ``sw > 1`` it holds the padded row's ``sw`` column
    phases side by side, ``phase_stride`` apart (phase ``q``: columns ``q, q + sw, ...``), so
    that tap ``j`` reads phase ``(j dw) % sw`` from column ``x + (j dw) // sw``, at stride 1.

    One task per (block of output channels, group of :data:`_GRAD_CHANNEL_GROUP` input
    channels); for each band of :data:`_GRAD_ROWS` rows of g (more on narrow planes; the band
    stays in L1 across the group) every filter row of every channel of the group in turn runs
    :func:`kernels._simd.grad_tap_rows` on runs of its taps (``grad_tap_rows3``, eight
    channels by three taps, on rows of a multiple of three): sums over the band in the working
    precision, float64 beyond, float64 scalars for the columns past the last whole vector. Fixed
    order throughout.

    ``widen``: the sums run over whole vectors only, each row of g read in place with the lanes
    past its ``Wo`` columns as zeros (the caller passes it for finite x alone: a zero of the
    padding times an inf would be NaN); the last image's rows are copied into a buffer whose
    rows are zero-padded to whole vectors, where the last vector of the last row would read past
    the end of g. The same sums as over a widened copy of g made beforehand, without that copy
    (NumPy's row-by-row copy of LeNet-5's 14- and 28-wide planes took as long as this kernel),
    and without a copy per task and image (a fifth of this kernel on LeNet-5's second layer).
    """
    N, Co, Ho, Wo = g.shape
    kh, kw = gw.shape[2], gw.shape[3]
    # rows of three taps (a 3x3 filter at a stride or dilation) take the 8 x 3 block, every
    # product used; other rows the 4 x 5 one (the same sums either way, see kernels._simd.grad)
    three = _simd.TAP3_CHANNEL_BLOCK > 0 and kw % 3 == 0
    K = _simd.TAP3_CHANNEL_BLOCK if three else _simd.TAP_CHANNEL_BLOCK
    J = 3 if three else _simd.ROW_TAPS
    V = _simd.VECTOR_BYTES // g.itemsize
    Wg = (Wo + V - 1) // V * V if widen else Wo  # the row length the sums run over
    nvec = Wg // V
    xv = nvec * V
    # rows of a band: _GRAD_ROWS, or more on planes narrower than four vectors, so that a call's
    # sums keep their 32 products per float32 lane (a call costs its flush to float64)
    band = max(_GRAD_ROWS, _GRAD_LANE_PRODUCTS // max(1, nvec))
    ncb = (Co + K - 1) // K
    G = _GRAD_CHANNEL_GROUP
    ngr = (C + G - 1) // G
    taps = kh * kw
    gflat = g.reshape(g.size)
    plane = Hp * Wp
    HWo = Ho * Wo
    HWg = Ho * Wg
    for t in prange(ncb * ngr):
        cb = t // ngr
        c0 = cb * K
        kk = min(K, Co - c0)
        ci0 = (t - cb * ngr) * G
        gg = min(G, C - ci0)
        acc = np.zeros(gg * taps * K * V)
        tail = np.zeros(gg * taps * K)
        g_rows = np.zeros(K * HWg if widen else 0, dtype=g.dtype)  # zero past Wo, for good
        for n in range(N):
            goff = (n * Co + c0) * HWo
            gsrc, gbase, grow, gplane = gflat, goff, Wo, HWo
            if widen and n == N - 1:  # the last row's last vector would read past the end of g
                for k in range(kk):
                    for y in range(Ho):
                        src = goff + k * HWo + y * Wo
                        dst = k * HWg + y * Wg
                        g_rows[dst: dst + Wo] = gflat[src: src + Wo]
                gsrc, gbase, grow, gplane = g_rows, 0, Wg, HWg
            if nvec > 0:
                for y0 in range(0, Ho, band):
                    rows = min(band, Ho - y0)
                    for c in range(gg):  # the band of g stays in L1 across the group's channels
                        xoff = (n * C + ci0 + c) * plane
                        for i in range(kh):
                            for j in range(0, kw, J):
                                a = acc[((c * taps) + i * kw + j) * K * V :]
                                xo = xoff + (y0 * sh + i * dh) * Wp
                                if three:
                                    _simd.grad_tap_rows3(a, gsrc, gbase + y0 * grow, gplane, grow, Wo, xflat, xo,
                                                         sh * Wp, rows, nvec, kk, 3, j, dw, sw, phase_stride)
                                else:
                                    _simd.grad_tap_rows(a, gsrc, gbase + y0 * grow, gplane, grow, Wo, xflat, xo,
                                                        sh * Wp, rows, nvec, kk, min(J, kw - j), j, dw, sw,
                                                        phase_stride)
            for c in range(gg):
                xoff = (n * C + ci0 + c) * plane
                for k in range(kk):
                    for y in range(Ho):
                        for x in range(xv, Wo):
                            gval = np.float64(gflat[goff + k * HWo + y * Wo + x])
                            for tap in range(taps):
                                i = tap // kw
                                d = (tap - i * kw) * dw
                                col = (d % sw) * phase_stride + d // sw
                                tail[(c * taps + tap) * K + k] += gval * xflat[xoff + (y * sh + i * dh) * Wp + x + col]
        for c in range(gg):
            for k in range(kk):
                for tap in range(taps):
                    s = tail[(c * taps + tap) * K + k]
                    base = ((c * taps + tap) * K + k) * V
                    for lane in range(V):
                        s += acc[base + lane]
                    gw[c0 + k, ci0 + c, tap // kw, tap % kw] = s


@jit(parallel=True)
def _grad_w_pairs_kernel(g, x, gw, task_channels):
    """gw[co, ci] = sum_{n,p} g[n, co, p] * x[n, ci, p]: the gradient of a 1x1 filter at stride 1
    without padding, whose positions ``p`` run flat over each plane (``g`` ``(N, Co, P)``, ``x``
    ``(N, C, P)``, ``gw`` float64 ``(Co, C)``), a matrix product summed over the images.

    One task per ``task_channels`` output channels (a multiple of the block's four). Per image
    and chunk of :data:`_GRAD_ROWS` * 4 position vectors (32 products per float32 lane, as the
    tap blocks sum), every (output, input) block of channel pairs runs
    :func:`kernels._simd.grad_pairs`: the chunk of ``x`` stays in L1 across the output blocks,
    the task's ``g`` in L2 across the input blocks. Positions past the last whole vector are
    summed in float64 directly. Fixed order throughout: the result does not depend on the thread
    count, nor on ``task_channels``.
    """
    N, Co, P = g.shape
    C = x.shape[1]
    KB, JB = _simd.TAP_CHANNEL_BLOCK, _simd.PAIR_CHANNEL_BLOCK
    V = _simd.VECTOR_BYTES // g.itemsize
    nvec = P // V
    xv = nvec * V
    chunk = _GRAD_ROWS * 4
    njb = (C + JB - 1) // JB
    gflat = g.reshape(g.size)
    xflat = x.reshape(x.size)
    for t in prange((Co + task_channels - 1) // task_channels):
        c0 = t * task_channels
        c1 = min(Co, c0 + task_channels)
        nkb = (c1 - c0 + KB - 1) // KB
        acc = np.zeros(nkb * njb * KB * JB * V)
        tail = np.zeros((c1 - c0) * C)
        for n in range(N):
            for u0 in range(0, nvec, chunk):
                m = min(chunk, nvec - u0)
                for jb in range(njb):
                    ci = jb * JB
                    for kb in range(nkb):
                        co = c0 + kb * KB
                        _simd.grad_pairs(acc[(kb * njb + jb) * KB * JB * V :], gflat, (n * Co + co) * P + u0 * V, P,
                                         xflat, (n * C + ci) * P + u0 * V, P, m, min(KB, c1 - co), min(JB, C - ci))
            for k in range(c1 - c0):
                gbase = (n * Co + c0 + k) * P
                for ci in range(C):
                    xbase = (n * C + ci) * P
                    s = 0.0
                    for p in range(xv, P):
                        s += np.float64(gflat[gbase + p]) * xflat[xbase + p]
                    tail[k * C + ci] += s
        for k in range(c1 - c0):
            kb = k // KB
            for ci in range(C):
                jb = ci // JB
                s = tail[k * C + ci]
                base = ((kb * njb + jb) * KB * JB + (k - kb * KB) * JB + ci - jb * JB) * V
                for lane in range(V):
                    s += acc[base + lane]
                gw[c0 + k, ci] = s


@jit(parallel=True)
def _grad_bias_kernel(g, gb):
    """gb[co] = sum_{n,y,x} g[n, co, y, x], in float64, one task per output channel (numpy's
    ``g.sum(axis=(0, 2, 3), dtype=float64)`` took 0.6 ms of a 6 ms float32 backward pass)."""
    N, Co = g.shape[0], g.shape[1]
    P = g.shape[2] * g.shape[3]
    for co in prange(Co):
        s = 0.0
        for n in range(N):
            plane = g[n, co].reshape(P)
            for p in range(P):
                s += np.float64(plane[p])
        gb[co] = s
