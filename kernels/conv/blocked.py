"""The register-blocked many-channel forward kernel: any filter, at any stride, over an
explicitly zero-padded copy of the input (at a stride, of its phases).

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


def _read_slack(itemsize):
    """The zeros a padded copy for :func:`_correlate_blocked_kernel` needs after its last plane:
    the last block of a tile reads whole vectors past its last position."""
    return 2 * _simd.POSITION_VECTORS * _simd.lanes(itemsize) + _simd.lanes(itemsize)


@jit(parallel=True)
def _correlate_blocked_kernel(xflat, N, C, plane, row, wpack, bpack, out, rows_per_task, offsets, three):
    """out = the correlation of the zero-padded input, plus bias, with the taps at flat
    offsets ``offsets`` from each output position.

    ``xflat`` holds the padded batch flat, planes of ``plane`` elements in rows of ``row``
    elements: the padded planes themselves at stride 1, or at a stride their phases (see
    :func:`kernels.conv.phases.phase_planes`), followed by zero slack for the last block's
    reads; ``wpack``/``bpack`` the filter and bias packed per block of K output channels (see
    :func:`_pack_filter`). Output (y, x) is position ``y * row + x`` of its plane, and its tap
    ``t`` sits ``offsets[t]`` after it. Each task owns a tile (image, K output channels,
    rows_per_task output rows) and runs register-blocked SIMD blocks over the tile's positions
    at once, into a private buffer whose rows are ``row`` long: no border cases at all. The
    positions past a row's outputs are computed and dropped when the tile is copied out.
    ``three`` (a 3x3 undilated filter at stride 1) takes :func:`kernels._simd.correlate3x3_block`
    (lane shifts), the rest :func:`kernels._simd.correlate_block` (a load per tap).
    """
    Co, Ho, Wo = out.shape[1], out.shape[2], out.shape[3]
    K = _simd.CHANNEL_BLOCK
    B = _simd.POSITION_VECTORS * (_simd.VECTOR_BYTES // xflat.itemsize)
    ncb = (Co + K - 1) // K
    nrb = (Ho + rows_per_task - 1) // rows_per_task
    S = (rows_per_task * row + B - 1) // B * B + B
    taps = offsets.shape[0]
    for t in prange(N * ncb * nrb):
        n = t // (ncb * nrb)
        r = t - n * (ncb * nrb)
        cb = r // nrb
        c0 = cb * K
        y0 = (r % nrb) * rows_per_task
        y1 = min(y0 + rows_per_task, Ho)
        stage = np.empty(K * S, dtype=out.dtype)
        L = (y1 - y0 - 1) * row + Wo
        base = n * C * plane + y0 * row
        for p in range(0, L, B):
            if three:
                _simd.correlate3x3_block(stage, p, S, xflat, base + p, plane, row, C, wpack, cb * C * 9 * K, bpack,
                                         cb * K)
            else:
                _simd.correlate_block(stage, p, S, xflat, base + p, plane, C, wpack, cb * C * taps * K, bpack,
                                      cb * K, offsets)
        for k in range(min(K, Co - c0)):
            for y in range(y0, y1):
                src = stage[k * S + (y - y0) * row :]
                dst = out[n, c0 + k, y]
                for xo in range(Wo):
                    dst[xo] = src[xo]
