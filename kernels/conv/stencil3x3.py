"""Single-channel 3x3 at stride 1: the memory-bound stencil, no copy of the input.

:func:`_stencil3x3_span` runs the explicit-SIMD blocks of :mod:`kernels._simd.stencil` over a
span of output rows (groups of :data:`kernels._simd.STENCIL_ROWS` rows where it can, vector
blocks from the first aligned output address, non-temporal stores for outputs far larger than
the cache) and finishes with the scalar variant, which computes the same expression, so no value
depends on the buffer's address. :func:`_border3x3` gives a border pixel its in-bounds taps.
Called by the 3x3 tile of :mod:`.direct`.
"""

from __future__ import annotations

import numpy as np

from kernels import _simd
from kernels._config import jit


@jit()
def _border3x3(of, Wo, xf, H, W, y, xo, pt, pl, taps, bv):
    """of[y*Wo + xo] = bv + the in-bounds taps (one channel, flat planes; border pixels)."""
    acc = bv
    for i in range(3):
        h = y - pt + i
        if h >= 0 and h < H:
            for j in range(3):
                c = xo - pl + j
                if c >= 0 and c < W:
                    acc += taps[3 * i + j] * xf[h * W + c]
    of[y * Wo + xo] = acc


@jit()
def _taps3x3(w, c, ci):
    """The 3x3 filter w[c, ci] as a 9-tuple, row-major (the form kernels._simd takes)."""
    return (w[c, ci, 0, 0], w[c, ci, 0, 1], w[c, ci, 0, 2],
            w[c, ci, 1, 0], w[c, ci, 1, 1], w[c, ci, 1, 2],
            w[c, ci, 2, 0], w[c, ci, 2, 1], w[c, ci, 2, 2])


@jit()
def _stencil3x3_span(o, opitch, x, xpitch, rows, L, taps, bv, stream):
    """o[r*opitch + p] = bv + the nine taps of x[(r + i)*xpitch + p + j], for r < rows, p < L.

    ``rows`` is :data:`kernels._simd.STENCIL_ROWS` (row-group blocks: each input row loaded
    serves three output rows) or 1. The output is written without being read (the first input
    channel, or the only one). Vector blocks run from the first output address aligned to a
    vector, one unaligned block overlaps the head and one the tail, and scalars finish what no
    block may read far enough for; all compute the same expression, so no value depends on the
    buffer's address or on which block wrote it. ``stream``: non-temporal stores (for outputs
    far larger than the cache, written once), used only where every row of a block is
    vector-aligned.
    """
    item = o.itemsize
    lanes = _simd.STENCIL_VECTOR_BYTES // item
    block = (_simd.GROUP_VECTORS if rows > 1 else _simd.ROW_VECTORS) * lanes
    # a block at p reads x[(rows + 1)*xpitch + p : ... + block + lanes]
    last = min(L, x.shape[0] - (rows + 1) * xpitch - lanes) - block  # the last block start allowed
    nt = stream and (rows == 1 or (opitch * item) % _simd.STENCIL_VECTOR_BYTES == 0)
    addr = _simd.address(o)
    head = 0
    if addr % item == 0:
        head = ((-addr) % _simd.STENCIL_VECTOR_BYTES) // item
    else:
        nt = False
    # run-time values, not the literals 0 and False: calls with a literal compile their own copy
    p = np.int64(0)
    cached = np.bool_(False)
    if last >= 0:
        # An unaligned block covers the head and another the tail; the aligned blocks between
        # overlap them, rewriting the same values (every block computes the same expression).
        if head > 0:
            _stencil3x3_block(o, opitch, x, xpitch, rows, p, taps, bv, cached)
        p = head
        while p <= last:
            _stencil3x3_block(o, opitch, x, xpitch, rows, p, taps, bv, nt)
            p += block
        if nt:
            _simd.store_fence()
        if p < L:
            _stencil3x3_block(o, opitch, x, xpitch, rows, last, taps, bv, cached)
            p = last + block
    for r in range(rows):  # what no block may read far enough for
        orow = o[r * opitch :]
        xrow = x[r * xpitch :]
        for q in range(p, L):
            _simd.stencil3x3_scalar(orow, opitch, xrow, xpitch, q, taps, bv)


@jit()
def _stencil3x3_block(o, opitch, x, xpitch, rows, p, taps, bv, nt):
    """One vector block of :func:`_stencil3x3_span` at p (rows > 1: a row group)."""
    if rows > 1:
        if nt:
            _simd.stencil3x3_group_streaming(o, opitch, x, xpitch, p, taps, bv)
        else:
            _simd.stencil3x3_group(o, opitch, x, xpitch, p, taps, bv)
    elif nt:
        _simd.stencil3x3_row_streaming(o, opitch, x, xpitch, p, taps, bv)
    else:
        _simd.stencil3x3_row(o, opitch, x, xpitch, p, taps, bv)
