"""The register-blocked many-channel forward kernel: any filter, at any stride, over an
explicitly zero-padded copy of the input.

:func:`_pack_filter` regroups the filter and bias into blocks of
:data:`kernels._simd.CHANNEL_BLOCK` output channels; :func:`_correlate_blocked_kernel` runs the
SIMD blocks of :mod:`kernels._simd.blocked` over each output tile in a private buffer whose rows
are as wide as the padded rows, so there are no border cases.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import _simd
from kernels._config import jit


def _pack_filter(wc, b):
    """The filter (Co, C, kh, kw) and bias (Co,) regrouped for the blocked kernels: blocks of K
    output channels, each laid out (C, kh, kw, K), with zero channels completing the last block."""
    Co, C, kh, kw = wc.shape
    K = _simd.CHANNEL_BLOCK
    ncb = (Co + K - 1) // K
    wfull = np.zeros((ncb * K, C, kh, kw), dtype=wc.dtype)
    wfull[:Co] = wc
    bfull = np.zeros(ncb * K, dtype=wc.dtype)
    bfull[:Co] = b
    return np.ascontiguousarray(wfull.reshape(ncb, K, C, kh, kw).transpose(0, 2, 3, 4, 1)).reshape(-1), bfull


@jit(parallel=True)
def _correlate_blocked_kernel(xflat, N, C, Hp, Wp, wpack, bpack, out, rows_per_task, geom, sh, sw):
    """out = 'valid' correlation of the zero-padded input at stride (sh, sw), plus bias, for the
    filter geometry ``geom = (kh, kw, dh, dw)``.

    ``xflat`` holds the padded batch (N, C, Hp, Wp) flat, followed by zero slack for the last
    block's reads; ``wpack``/``bpack`` the filter and bias packed per block of K output channels
    (see :func:`_pack_filter`). Each task owns a tile (image, K output channels, rows_per_task
    output rows) and runs register-blocked SIMD blocks over it in a private buffer whose rows
    are as wide as the padded input rows, so output (y, x) and its tap (i, j) sit a fixed flat
    distance apart (i*dh*Wp + j*dw): no border cases at all. The extra columns per row it
    computes are dropped when the tile is copied out. A stride sh > 1 computes only the padded
    rows it needs, one span each; a stride sw > 1 computes every position of those rows and keeps
    one in sw (sw times the multiply-adds, still far faster than the per-tap path). 3x3
    undilated filters use
    :func:`kernels._simd.correlate3x3_block` (lane shifts), others
    :func:`kernels._simd.correlate_block` (a load per tap).
    """
    Co, Ho, Wo = out.shape[1], out.shape[2], out.shape[3]
    K = _simd.CHANNEL_BLOCK
    B = _simd.POSITION_VECTORS * (_simd.VECTOR_BYTES // xflat.itemsize)
    ncb = (Co + K - 1) // K
    nrb = (Ho + rows_per_task - 1) // rows_per_task
    plane = Hp * Wp
    # per output row, the stride-1 positions it needs: (Wo - 1)*sw + 1 (sw - 1 of every sw unused)
    Wq = (Wo - 1) * sw + 1
    S = (rows_per_task * Wp + B - 1) // B * B + B
    kh, kw, dh, dw = geom
    taps = kh * kw
    three = geom == (3, 3, 1, 1)
    for t in prange(N * ncb * nrb):
        n = t // (ncb * nrb)
        r = t - n * (ncb * nrb)
        cb = r // nrb
        c0 = cb * K
        y0 = (r % nrb) * rows_per_task
        y1 = min(y0 + rows_per_task, Ho)
        stage = np.empty(K * S, dtype=out.dtype)
        # Spans of stride-1 positions: the whole tile at once when its rows are consecutive
        # padded rows (sh == 1), else each output row's padded row on its own.
        spans = 1 if sh == 1 else y1 - y0
        for q in range(spans):
            if sh == 1:
                L = (y1 - y0 - 1) * Wp + Wq
                base = n * C * plane + y0 * Wp
                soff = 0
            else:
                L = Wq
                base = n * C * plane + (y0 + q) * sh * Wp
                soff = q * Wp
            for p in range(0, L, B):
                if three:
                    _simd.correlate3x3_block(stage, soff + p, S, xflat, base + p, plane, Wp, C, wpack,
                                             cb * C * 9 * K, bpack, cb * K)
                else:
                    _simd.correlate_block(stage, soff + p, S, xflat, base + p, plane, Wp, C, wpack,
                                          cb * C * taps * K, bpack, cb * K, geom)
        for k in range(min(K, Co - c0)):
            for y in range(y0, y1):
                src = stage[k * S + (y - y0) * Wp :]
                dst = out[n, c0 + k, y]
                for xo in range(Wo):
                    dst[xo] = src[xo * sw]
