"""2-D convolution and cross-correlation, forward and backward (issue 2; homework section 3.1).

Two conventions, one kernel
---------------------------
The homework's lecture (CSC413 lecture 4) defines convolution the way signal processing does,
with the filter *flipped*::

    (I * J)[y, x] = sum_{i, j} I[y - i, x - j] J[i, j]                      (true convolution)

Deep-learning frameworks (``torch.nn.functional.conv2d``, ``tf.nn.conv2d``, cuDNN, oneDNN) compute
*cross-correlation* and call it convolution::

    (I ⋆ J)[y, x] = sum_{i, j} I[y + i, x + j] J[i, j]                      (cross-correlation)

Both exist for good reasons. The flipped form is the one with the algebra: it is commutative and
associative, it is what the convolution theorem diagonalises, and it is the response of a linear
shift-invariant system. For a *learned* filter the flip is pointless -- the network learns the
flipped weights just as easily -- so frameworks skip it and save an index reversal. The two differ
only by a 180-degree rotation of the filter: ``convolve2d(x, w) == correlate2d(x, w[..., ::-1, ::-1])``.
For the homework's filter ``J`` with rows ``(-1,-1,-1), (0,0,0), (1,1,1)`` the rotation is exactly
``-J``, so the two conventions give results that differ exactly by sign: one detects edges where
intensity rises downwards, the other where it falls (horizontal edges either way).

:func:`correlate2d` is the deep-learning one (same result as ``torch.nn.functional.conv2d``),
:func:`convolve2d` the textbook one (same result as ``scipy.signal.convolve2d``), and
:func:`correlate2d_backward` the gradients of :func:`correlate2d` (those of :func:`convolve2d` are
the same call with the flipped filter, with ``grad_w`` flipped back; see its docstring).

Implementation notes
--------------------
The forward pass is a direct kernel, parallel over disjoint output tiles (image, block of output
channels, block of output rows; tile sizes fixed by the shape, never by the thread count, so the
result is bit-identical for any number of threads). Four inner paths:

* 3x3, stride 1, dilation 1, several channels (the ubiquitous CNN layer): the input is copied
  once into a zero-padded buffer and each tile computes four output channels in a private
  buffer whose rows are as wide as the padded rows. Output (y, x) and its tap (0, 0) are then
  a fixed flat distance apart, so there are no border cases: explicit SIMD blocks
  (:func:`kernels._simd.correlate3x3_block`) keep 4 channels x 4 vectors of positions in
  registers through all input channels, 144 fused multiply-adds per 15 vector loads, which runs
  at the machine's multiply-add rate;
* any other filter at stride 1 on several channels (5x5, 1x1, dilated, rectangular): the same
  padded layout and register blocking, with one vector load per tap
  (:func:`kernels._simd.correlate_block`);
* 3x3, stride 1, dilation 1, one channel (a single image, memory-bound): no copy. Explicit
  SIMD blocks (:mod:`kernels._simd`) compute four output rows at once from six input rows, each
  loaded once per vector with the shifted taps cut from neighbouring vectors, and write the
  output once, with non-temporal stores once it outgrows the cache; the border pixels get
  their in-bounds taps separately. It runs at about the speed of a copy of the image;
* anything else (strides above 1, one channel with a filter other than 3x3): one vectorised
  loop per filter tap over the valid span of each output row.

Taps that fall in the zero padding are skipped rather than multiplied by zero. That differs from
the zero-padded definition only when the filter holds inf or NaN (``0 * inf = NaN``); such a
filter is sent through an explicitly zero-padded copy of the input so NaN appears exactly where
the definition puts it. The backward pass reuses the forward kernels for ``grad_x`` (a
correlation with the rotated filter; at a stride above 1, of grad_out spread out by the stride),
and computes ``grad_w`` with explicit SIMD blocks (:func:`kernels._simd.grad3x3_rows` for 3x3 at
stride 1, :func:`kernels._simd.grad_tap_rows` one tap at a time otherwise): short sums in the
working precision, everything longer in float64. Only non-finite data at a column stride above 1
(or a non-finite filter with one) keeps the exact scalar float64 reduction and the BLAS +
col2im route, where no product of a padding or spread-out zero is ever formed.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import prange

from kernels import _simd
from kernels import _validate as V
from kernels._config import jit

__all__ = ["correlate2d", "convolve2d", "correlate2d_backward"]

# Output elements per parallel task (an output tile holds about this many elements per channel);
# a fixed size, so the partition never depends on the thread count.
_TILE_ELEMENTS = 8192
# Per-channel staging elements of a tile of the padded multi-channel 3x3 kernel (four channels
# of this many: 128 KiB in float32, L2-resident). The register-blocked kernel is insensitive to
# it: 2048, 4356, 8192 and 16384 ran within 3% of each other on the 64x64 batch.
_PADDED_TILE_ELEMENTS = 8192
# Output elements per task of the single-channel 3x3 stencil (memory-bound: long tasks keep
# each thread's streams going; 8192 ran 10-15% slower on 2048x2048 than 131072).
_STENCIL_TILE_ELEMENTS = 131072
# Outputs from this size on are written with non-temporal stores (see kernels._simd).
_STREAM_MIN_BYTES = 16 << 20
# Rows of positions the filter-gradient blocks sum in the working precision before float64
# (8 rows of 64 columns: 32 products per float32 lane), and input channels a filter-gradient
# task takes in turn over each such band of rows, so the band of g is read from L1.
_GRAD_ROWS = 8
_GRAD_CHANNEL_GROUP = 4


# --------------------------------------------------------------------------------------------
# compiled kernels: they assume clean, C-contiguous input and only compute
# --------------------------------------------------------------------------------------------


@jit()
def _accumulate_tap(orow, xrow, wv, xa, xb, sw, off):
    """orow[xo] += wv * xrow[xo*sw + off] for xo in [xa, xb) where the column is inside xrow."""
    W = xrow.shape[0]
    lo = xa
    if off < 0:
        lo = max(lo, (-off + sw - 1) // sw)
    if W - 1 - off < 0:
        return
    hi = min(xb, (W - 1 - off) // sw + 1)
    if hi <= lo:
        return
    dst = orow[lo:hi]
    if sw == 1:
        src = xrow[lo + off : hi + off]
        for k in range(hi - lo):
            dst[k] += wv * src[k]
    else:
        src = xrow[lo * sw + off :]
        for k in range(hi - lo):
            dst[k] += wv * src[k * sw]


@jit()
def _row_taps(x, w, out, n, co, y, xa, xb, sh, sw, pt, pl, dh, dw):
    """Add every in-bounds tap's contribution to out[n, co, y, xa:xb]."""
    C, H = x.shape[1], x.shape[2]
    kh, kw = w.shape[2], w.shape[3]
    orow = out[n, co, y]
    for ci in range(C):
        for i in range(kh):
            h = y * sh - pt + i * dh
            if h < 0 or h >= H:
                continue
            xrow = x[n, ci, h]
            for j in range(kw):
                _accumulate_tap(orow, xrow, w[co, ci, i, j], xa, xb, sw, j * dw - pl)


@jit()
def _point(x, w, out, n, co, y, xo, pt, pl):
    """out[n, co, y, xo] += its in-bounds 3x3 taps (stride 1, dilation 1); used on borders."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for ci in range(C):
        for i in range(3):
            h = y - pt + i
            if h < 0 or h >= H:
                continue
            for j in range(3):
                c = xo - pl + j
                if c >= 0 and c < W:
                    out[n, co, y, xo] += w[co, ci, i, j] * x[n, ci, h, c]


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
def _fused3x3_x4(o0, o1, o2, o3, r0, r1, r2, w, c, ci, L):
    """o_k[p] += sum_ij w[c+k, ci, i, j] * r_i[p + j] for p < L, four output channels at once.

    Nine loads of input feed 36 fused multiply-adds, and each accumulator is loaded and stored
    once per pass, so the loop is bound by FMA throughput rather than by stores.
    """
    a00 = w[c, ci, 0, 0]; a01 = w[c, ci, 0, 1]; a02 = w[c, ci, 0, 2]  # noqa: E702
    a10 = w[c, ci, 1, 0]; a11 = w[c, ci, 1, 1]; a12 = w[c, ci, 1, 2]  # noqa: E702
    a20 = w[c, ci, 2, 0]; a21 = w[c, ci, 2, 1]; a22 = w[c, ci, 2, 2]  # noqa: E702
    b00 = w[c + 1, ci, 0, 0]; b01 = w[c + 1, ci, 0, 1]; b02 = w[c + 1, ci, 0, 2]  # noqa: E702
    b10 = w[c + 1, ci, 1, 0]; b11 = w[c + 1, ci, 1, 1]; b12 = w[c + 1, ci, 1, 2]  # noqa: E702
    b20 = w[c + 1, ci, 2, 0]; b21 = w[c + 1, ci, 2, 1]; b22 = w[c + 1, ci, 2, 2]  # noqa: E702
    c00 = w[c + 2, ci, 0, 0]; c01 = w[c + 2, ci, 0, 1]; c02 = w[c + 2, ci, 0, 2]  # noqa: E702
    c10 = w[c + 2, ci, 1, 0]; c11 = w[c + 2, ci, 1, 1]; c12 = w[c + 2, ci, 1, 2]  # noqa: E702
    c20 = w[c + 2, ci, 2, 0]; c21 = w[c + 2, ci, 2, 1]; c22 = w[c + 2, ci, 2, 2]  # noqa: E702
    d00 = w[c + 3, ci, 0, 0]; d01 = w[c + 3, ci, 0, 1]; d02 = w[c + 3, ci, 0, 2]  # noqa: E702
    d10 = w[c + 3, ci, 1, 0]; d11 = w[c + 3, ci, 1, 1]; d12 = w[c + 3, ci, 1, 2]  # noqa: E702
    d20 = w[c + 3, ci, 2, 0]; d21 = w[c + 3, ci, 2, 1]; d22 = w[c + 3, ci, 2, 2]  # noqa: E702
    for p in range(L):
        p0 = r0[p]; p1 = r0[p + 1]; p2 = r0[p + 2]  # noqa: E702
        q0 = r1[p]; q1 = r1[p + 1]; q2 = r1[p + 2]  # noqa: E702
        s0 = r2[p]; s1 = r2[p + 1]; s2 = r2[p + 2]  # noqa: E702
        o0[p] += a00 * p0 + a01 * p1 + a02 * p2 + a10 * q0 + a11 * q1 + a12 * q2 + a20 * s0 + a21 * s1 + a22 * s2
        o1[p] += b00 * p0 + b01 * p1 + b02 * p2 + b10 * q0 + b11 * q1 + b12 * q2 + b20 * s0 + b21 * s1 + b22 * s2
        o2[p] += c00 * p0 + c01 * p1 + c02 * p2 + c10 * q0 + c11 * q1 + c12 * q2 + c20 * s0 + c21 * s1 + c22 * s2
        o3[p] += d00 * p0 + d01 * p1 + d02 * p2 + d10 * q0 + d11 * q1 + d12 * q2 + d20 * s0 + d21 * s1 + d22 * s2


@jit()
def _fused3x3_x1(o0, r0, r1, r2, w, c, ci, L):
    """One-channel version of :func:`_fused3x3_x4` (single-channel images, leftover channels)."""
    a00 = w[c, ci, 0, 0]; a01 = w[c, ci, 0, 1]; a02 = w[c, ci, 0, 2]  # noqa: E702
    a10 = w[c, ci, 1, 0]; a11 = w[c, ci, 1, 1]; a12 = w[c, ci, 1, 2]  # noqa: E702
    a20 = w[c, ci, 2, 0]; a21 = w[c, ci, 2, 1]; a22 = w[c, ci, 2, 2]  # noqa: E702
    for p in range(L):
        o0[p] += (
            a00 * r0[p] + a01 * r0[p + 1] + a02 * r0[p + 2]
            + a10 * r1[p] + a11 * r1[p + 1] + a12 * r1[p + 2]
            + a20 * r2[p] + a21 * r2[p + 1] + a22 * r2[p + 2]
        )


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
    lanes = _simd.VECTOR_BYTES // item
    block = (_simd.GROUP_VECTORS if rows > 1 else _simd.ROW_VECTORS) * lanes
    # a block at p reads x[(rows + 1)*xpitch + p : ... + block + lanes]
    last = min(L, x.shape[0] - (rows + 1) * xpitch - lanes) - block  # the last block start allowed
    nt = stream and (rows == 1 or (opitch * item) % _simd.VECTOR_BYTES == 0)
    addr = _simd.address(o)
    head = 0
    if addr % item == 0:
        head = ((-addr) % _simd.VECTOR_BYTES) // item
    else:
        nt = False
    p = 0
    if last >= 0:
        # An unaligned block covers the head and another the tail; the aligned blocks between
        # overlap them, rewriting the same values (every block computes the same expression).
        if head > 0:
            _stencil3x3_block(o, opitch, x, xpitch, rows, 0, taps, bv, False)
        p = head
        while p <= last:
            _stencil3x3_block(o, opitch, x, xpitch, rows, p, taps, bv, nt)
            p += block
        if nt:
            _simd.store_fence()
        if p < L:
            _stencil3x3_block(o, opitch, x, xpitch, rows, last, taps, bv, False)
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


@jit()
def _fused3x3_span(x, w, b, out, n, c0, c1, q0, L, xq0, stream):
    """Fused 3x3 taps over a flat span: out_flat[q0 + p] = b + taps of x_flat[xq0 + i*W + p + j].

    ``out[n, co]`` and ``x[n, ci]`` are flattened C-contiguous planes; ``xq0`` is the flat input
    index that tap (0, 0) reads for output ``q0``. The span is written, not accumulated into.
    """
    C, W = x.shape[1], x.shape[3]
    HW = x.shape[2] * W
    P = out.shape[2] * out.shape[3]
    for ci in range(C):
        xf = x[n, ci].reshape(HW)
        r0 = xf[xq0:]
        r1 = xf[xq0 + W :]
        r2 = xf[xq0 + 2 * W :]
        co = c0
        if ci == 0:
            for co in range(c0, c1):
                _stencil3x3_span(out[n, co].reshape(P)[q0:], 0, r0, W, 1, L, _taps3x3(w, co, 0), b[co], stream)
            continue
        while co + 4 <= c1:
            _fused3x3_x4(
                out[n, co].reshape(P)[q0:], out[n, co + 1].reshape(P)[q0:],
                out[n, co + 2].reshape(P)[q0:], out[n, co + 3].reshape(P)[q0:],
                r0, r1, r2, w, co, ci, L,
            )
            co += 4
        while co < c1:
            _fused3x3_x1(out[n, co].reshape(P)[q0:], r0, r1, r2, w, co, ci, L)
            co += 1


@jit(parallel=True)
def _correlate_kernel(x, w, b, out, sh, sw, pt, pl, dh, dw, rows_per_task, stream):
    """out[n, co, y, xo] = b[co] + sum_{ci,i,j} w[co,ci,i,j] x[n, ci, y*sh-pt+i*dh, xo*sw-pl+j*dw],
    taps outside x skipped (zero padding). x, w, out C-contiguous; out fully overwritten."""
    N, C, H, W = x.shape
    Co, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    Ho, Wo = out.shape[2], out.shape[3]
    fused = kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1
    single = fused and C == 1 and Co == 1  # the path of _fused_tile that writes borders itself
    cob = 4 if fused else 1
    ncb = (Co + cob - 1) // cob
    nrb = (Ho + rows_per_task - 1) // rows_per_task
    # interior output columns/rows: every 3x3 tap in bounds (only used when fused)
    xlo = max(pl, 0)
    xhi = min(W - 2 + pl, Wo)
    ylo = max(pt, 0)
    yhi = min(H - 2 + pt, Ho)
    for t in prange(N * ncb * nrb):
        n = t // (ncb * nrb)
        r = t - n * (ncb * nrb)
        c0 = (r // nrb) * cob
        c1 = min(c0 + cob, Co)
        y0 = (r % nrb) * rows_per_task
        y1 = min(y0 + rows_per_task, Ho)
        ya = max(y0, ylo)
        yb = min(y1, yhi)
        for co in range(c0, c1):
            bv = b[co]
            for y in range(y0, y1):
                orow = out[n, co, y]
                if fused and xhi > xlo and y >= ya and y < yb:
                    # the fused span writes the interior columns itself, and for one channel
                    # _border3x3 writes the border ones (no store here to lines about to be
                    # streamed: a cached line in the way of a non-temporal store costs)
                    if single:
                        continue
                    for xo in range(0, xlo):
                        orow[xo] = bv
                    for xo in range(xhi, Wo):
                        orow[xo] = bv
                else:
                    for xo in range(Wo):
                        orow[xo] = bv
        if not fused or xhi <= xlo:
            for co in range(c0, c1):
                for y in range(y0, y1):
                    _row_taps(x, w, out, n, co, y, 0, Wo, sh, sw, pt, pl, dh, dw)
        else:
            _fused_tile(x, w, b, out, n, c0, c1, y0, y1, pt, pl, xlo, xhi, ya, yb, stream)


@jit()
def _fused_tile(x, w, b, out, n, c0, c1, y0, y1, pt, pl, xlo, xhi, ya, yb, stream):
    """One output tile of a 3x3, stride-1, dilation-1 correlation (out holds the bias outside
    the interior span).

    Rows [ya, yb) and columns [xlo, xhi) are interior (every tap inside x): fused loop. The rest
    of the tile: each in-bounds tap on its own.
    """
    W = x.shape[3]
    Wo = out.shape[3]
    for y in range(y0, y1):
        if y < ya or y >= yb:
            for co in range(c0, c1):
                _row_taps(x, w, out, n, co, y, 0, Wo, 1, 1, pt, pl, 1, 1)
    if yb <= ya:
        return
    if x.shape[1] == 1 and c1 - c0 == 1:
        # One input and one output channel (memory-bound): groups of rows, each row's interior
        # columns only (kernels._simd); the border columns hold the bias and get their taps below.
        H = x.shape[2]
        xf = x[n, 0].reshape(H * W)
        of = out[n, c0].reshape(out.shape[2] * Wo)
        taps = _taps3x3(w, c0, 0)
        y = ya
        while y < yb:
            rows = _simd.STENCIL_ROWS if y + _simd.STENCIL_ROWS <= yb else 1
            L = xhi - xlo
            if Wo == W and y + rows < yb:
                # Rows as wide as the input's: run on through this row's right border into the
                # next row's left border (this tile's; redone below), so every row is written
                # in whole aligned lines rather than with a partial line at each end.
                L = W
            _stencil3x3_span(of[y * Wo + xlo :], Wo, xf[(y - pt) * W + xlo - pl :], W, rows, L,
                             taps, b[c0], stream)
            y += rows
        for y in range(ya, yb):
            for xo in range(0, xlo):
                _border3x3(of, Wo, xf, H, W, y, xo, pt, pl, taps, b[c0])
            for xo in range(xhi, Wo):
                _border3x3(of, Wo, xf, H, W, y, xo, pt, pl, taps, b[c0])
        return
    if Wo == W:
        # Output rows are as wide as input rows, so output (y, xo) and its tap (0, 0) are a
        # fixed flat distance apart: one long loop covers the whole block of interior rows.
        # The border columns it crosses read wrapped neighbours; they are redone below.
        q0 = ya * Wo + xlo
        L = (yb - 1) * Wo + xhi - q0
        _fused3x3_span(x, w, b, out, n, c0, c1, q0, L, (ya - pt) * W + xlo - pl, stream)
        for co in range(c0, c1):
            bv = b[co]
            for y in range(ya, yb):
                for xo in range(0, xlo):
                    out[n, co, y, xo] = bv
                    _point(x, w, out, n, co, y, xo, pt, pl)
                for xo in range(xhi, Wo):
                    out[n, co, y, xo] = bv
                    _point(x, w, out, n, co, y, xo, pt, pl)
    else:
        for y in range(ya, yb):
            _fused3x3_span(x, w, b, out, n, c0, c1, y * Wo + xlo, xhi - xlo, (y - pt) * W + xlo - pl, stream)
            for co in range(c0, c1):
                for xo in range(0, xlo):
                    _point(x, w, out, n, co, y, xo, pt, pl)
                for xo in range(xhi, Wo):
                    _point(x, w, out, n, co, y, xo, pt, pl)


@jit(parallel=True)
def _pad_kernel(x, xp, pt, pl):
    """xp[n, c] = x[n, c] surrounded by zeros (pt rows above, pl columns left), one plane per task."""
    N, C, H, W = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        dst = xp[n, c]
        dst[:, :] = 0
        for h in range(H):
            drow = dst[pt + h, pl : pl + W]
            srow = x[n, c, h]
            for k in range(W):
                drow[k] = srow[k]


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


@jit(parallel=True)
def _grad_w_kernel(g, xp, gw, sh, sw, dh, dw):
    """gw[co, ci, i, j] = sum_{n,y,x} g[n, co, y, x] * xp[n, ci, y*sh + i*dh, x*sw + j*dw].

    ``xp`` is the zero-padded input and ``gw`` float64: each (co, ci) pair is one task that sums
    its N*H_out*W_out products in float64 in a fixed order, so the result does not depend on the
    thread count. (3x3, stride 1, dilation 1 has its own kernel: :func:`_grad_w3x3_kernel`.)
    """
    N, Co, Ho, Wo = g.shape
    C = xp.shape[1]
    kh, kw = gw.shape[2], gw.shape[3]
    for t in prange(Co * C):
        co = t // C
        ci = t - co * C
        for i in range(kh):
            for j in range(kw):
                s = 0.0
                for n in range(N):
                    for y in range(Ho):
                        grow = g[n, co, y]
                        xr = xp[n, ci, y * sh + i * dh, j * dw :]
                        if sw == 1:
                            for x in range(Wo):
                                s += np.float64(grow[x]) * xr[x]
                        else:
                            for x in range(Wo):
                                s += np.float64(grow[x]) * xr[x * sw]
                gw[co, ci, i, j] = s


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
def _grad_w_taps_kernel(g, xflat, C, Hp, Wp, gw, sh, dh, dw):
    """gw[co, ci, i, j] = sum_{n,y,x} g[n, co, y, x] * xpad[n, ci, y*sh + i*dh, x + j*dw] for any
    filter at column stride 1, ``xflat`` the zero-padded input flat.

    One task per (block of output channels, input channel); for each band of
    :data:`_GRAD_ROWS` rows of g (which stays in L1) every tap in turn runs
    :func:`kernels._simd.grad_tap_rows`: sums over the band in the working precision, float64
    beyond, float64 scalars for the columns past the last whole vector. Fixed order throughout.
    """
    N, Co, Ho, Wo = g.shape
    kh, kw = gw.shape[2], gw.shape[3]
    K = _simd.TAP_CHANNEL_BLOCK
    V = _simd.VECTOR_BYTES // g.itemsize
    nvec = Wo // V
    xv = nvec * V
    ncb = (Co + K - 1) // K
    taps = kh * kw
    gflat = g.reshape(g.size)
    plane = Hp * Wp
    HWo = Ho * Wo
    for t in prange(ncb * C):
        cb = t // C
        ci = t - cb * C
        c0 = cb * K
        kk = min(K, Co - c0)
        acc = np.zeros(taps * K * V)
        tail = np.zeros(taps * K)
        for n in range(N):
            goff = (n * Co + c0) * HWo
            xoff = (n * C + ci) * plane
            if nvec > 0:
                for y0 in range(0, Ho, _GRAD_ROWS):
                    rows = min(_GRAD_ROWS, Ho - y0)
                    for tap in range(taps):
                        i = tap // kw
                        j = tap - i * kw
                        _simd.grad_tap_rows(acc[tap * K * V :], gflat, goff + y0 * Wo, HWo, Wo, xflat,
                                            xoff + (y0 * sh + i * dh) * Wp + j * dw, sh * Wp, rows, nvec, kk)
            for k in range(kk):
                for y in range(Ho):
                    for x in range(xv, Wo):
                        gval = np.float64(gflat[goff + k * HWo + y * Wo + x])
                        for tap in range(taps):
                            i = tap // kw
                            j = tap - i * kw
                            tail[tap * K + k] += gval * xflat[xoff + (y * sh + i * dh) * Wp + x + j * dw]
        for k in range(kk):
            for tap in range(taps):
                s = tail[tap * K + k]
                base = (tap * K + k) * V
                for lane in range(V):
                    s += acc[base + lane]
                gw[c0 + k, ci, tap // kw, tap % kw] = s


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


@jit(parallel=True)
def _col2im_kernel(cols, gx, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo):
    """gx[n, ci] = sum over taps of cols scattered back to the input positions they came from.

    Each input channel is one task writing only its own plane, in a fixed tap order.
    """
    C, H = gx.shape[1], gx.shape[2]
    for ci in prange(C):
        plane = gx[n, ci]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                src = cols[(ci * kh + i) * kw + j]
                for y in range(Ho):
                    h = y * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    prow = plane[h]
                    _accumulate_tap_scatter(prow, src[y * Wo : (y + 1) * Wo], sw, j * dw - pl)


@jit()
def _accumulate_tap_scatter(prow, grow, sw, off):
    """prow[xo*sw + off] += grow[xo] wherever the column is inside prow."""
    W = prow.shape[0]
    Wo = grow.shape[0]
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    if W - 1 - off < 0:
        return
    hi = min(Wo, (W - 1 - off) // sw + 1)
    if hi <= lo:
        return
    if sw == 1:
        dst = prow[lo + off : hi + off]
        src = grow[lo:hi]
        for k in range(hi - lo):
            dst[k] += src[k]
    else:
        for xo in range(lo, hi):
            prow[xo * sw + off] += grow[xo]


# --------------------------------------------------------------------------------------------
# validation at the door
# --------------------------------------------------------------------------------------------


def _padding(padding, kh, kw, dh, dw, stride, flipped=False):
    """(top, bottom, left, right) zero padding from the public ``padding`` argument.

    ``flipped``: the filter will be applied rotated by 180 degrees (:func:`convolve2d`). Its
    ``'same'`` output is the centred part of its ``'full'`` output, as ``scipy.signal`` defines
    it, which is the correlation with the odd pixel of padding at the top/left instead.
    """
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)  # dilated kernel extent minus one
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "full":
            return (ekh, ekh, ekw, ekw)
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            # PyTorch's rule: the odd pixel of an even extent goes to the bottom/right (which is
            # also scipy.signal.correlate2d's 'same'); the flipped filter mirrors it.
            top, left = (ekh - ekh // 2, ekw - ekw // 2) if flipped else (ekh // 2, ekw // 2)
            return (top, ekh - top, left, ekw - left)
        raise ValueError(f"padding must be an int, a pair of ints, 'valid', 'same' or 'full', got {padding!r}")
    ph, pw = V.int_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _bias_array(bias, co, dtype, two_d):
    if bias is None:
        return np.zeros(co, dtype=dtype)
    if two_d and isinstance(bias, numbers.Real) and not isinstance(bias, (bool, np.bool_)):
        # a Python (or NumPy) real scalar takes the dtype of x; arrays must already match it
        return np.full(1, float(bias), dtype=dtype)
    if two_d:
        b = V.float_array(bias, "bias", ndim=(0, 1), dtype=dtype, like="x")
        if b.size != 1:
            raise ValueError(f"bias for a 2-D x must be a scalar, shape () or (1,), got shape {b.shape}")
        return np.ascontiguousarray(b.reshape(1))
    b = V.float_array(bias, "bias", ndim=1, dtype=dtype, like="x")
    if b.shape != (co,):
        raise ValueError(f"bias must have shape ({co},) (one per output channel of w), got {b.shape}")
    return np.ascontiguousarray(b)


def _prepare(x, w, stride, padding, dilation, flipped=False):
    """Validate and coerce the common arguments; returns a dict of 4-D operands and geometry.

    A batch of zero images is accepted (its result is empty, as in PyTorch); an empty image or
    filter is not."""
    x = V.float_array(x, "x", ndim=(2, 4), empty_batch=True)
    two_d = x.ndim == 2
    w = V.float_array(w, "w", ndim=2 if two_d else 4)
    if w.dtype != x.dtype:
        raise TypeError(f"w must have dtype {x.dtype} like x, got {w.dtype}")
    sh, sw = V.int_pair(stride, "stride")
    dh, dw = V.int_pair(dilation, "dilation")
    if two_d:
        x4, w4 = x[None, None], w[None, None]
    else:
        x4, w4 = x, w
        if w.shape[1] != x.shape[1]:
            raise ValueError(
                f"w has {w.shape[1]} input channels (shape {w.shape}) but x has {x.shape[1]} (shape {x.shape})"
            )
    kh, kw = w4.shape[2], w4.shape[3]
    pt, pb, pl, pr = _padding(padding, kh, kw, dh, dw, (sh, sw), flipped)
    H, W = x4.shape[2], x4.shape[3]
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if eh > H + pt + pb or ew > W + pl + pr:
        raise ValueError(
            f"w's (dilated) extent {(eh, ew)} is larger than the padded input {(H + pt + pb, W + pl + pr)} "
            f"(x shape {x.shape}, w shape {w.shape}, padding={padding!r}, dilation={(dh, dw)})"
        )
    Ho = (H + pt + pb - eh) // sh + 1
    Wo = (W + pl + pr - ew) // sw + 1
    # A huge padding or dilation implies a huge output: refuse it by name rather than let the
    # allocator fail, or the machine swap. (A forward pass pads a copy of x only where that copy
    # is no larger than the output; the backward pass checks its own padded copy.)
    V.check_allocation(
        x4.shape[0] * w4.shape[0] * Ho * Wo * x.dtype.itemsize,
        f"the output {(x4.shape[0], w4.shape[0], Ho, Wo)} implied by x shape {x.shape}, w shape {w.shape}, "
        f"padding={padding!r}, stride={(sh, sw)} and dilation={(dh, dw)}",
    )
    return dict(x=x, w=w, x4=x4, w4=w4, two_d=two_d, stride=(sh, sw), dilation=(dh, dw),
                pad=(pt, pb, pl, pr), out_hw=(Ho, Wo))


def _pad_flat(xc, pads, slack=0):
    """The C-contiguous batch ``xc`` zero-padded (pads = top, bottom, left, right), flat, followed
    by ``slack`` zeros; returns it and the padded shape."""
    pt, pb, pl, pr = pads
    N, C, H, W = xc.shape
    shape = (N, C, H + pt + pb, W + pl + pr)
    size = int(np.prod(shape, dtype=object))
    V.check_allocation((size + slack) * xc.itemsize,
                       f"the zero-padded copy {shape} of x that padding={pads} (after dilation) implies")
    flat = np.empty(size + slack, dtype=xc.dtype)
    flat[size:] = 0
    _pad_kernel(xc, flat[:size].reshape(shape), pt, pl)
    return flat, shape


def _pad(xc, pads):
    """A zero-padded copy of the C-contiguous batch ``xc`` (pads = top, bottom, left, right)."""
    flat, shape = _pad_flat(xc, pads)
    return flat.reshape(shape)


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


def _run_forward(xc, wc, b, res4, stride, dilation, pads, *, padding_is_data=True):
    """Dispatch a checked, C-contiguous 4-D correlation into the C-contiguous ``res4``.

    ``padding_is_data``: the zeros of the padding take part in products (the forward
    definition). The backward pass's ``grad_x`` sets it False: there the "padding" stands for
    output positions that do not exist, whose products the definition never forms.
    """
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb, pl, pr = pads
    C = xc.shape[1]
    Co, kh, kw = wc.shape[0], wc.shape[2], wc.shape[3]
    Ho, Wo = res4.shape[2], res4.shape[3]
    finite = bool(np.isfinite(wc).all())
    if padding_is_data and (pt or pb or pl or pr) and not finite:
        # 0 * inf = NaN: with a non-finite filter, skipping padded taps would differ from the
        # zero-padded definition, so pad explicitly and let IEEE arithmetic decide.
        xc = _pad(xc, pads)
        pt = pb = pl = pr = 0
    if C * Co > 1 and (finite or padding_is_data):
        # Many channels: one zero-padded copy of x (cheap next to C_in*C_out*kh*kw multiply-adds
        # per pixel) buys a border-free, register-blocked inner loop (3x3 with lane shifts, any
        # other filter or stride with a load per tap). A single-channel image is memory-bound, so
        # it keeps the copy-free kernels below, as does a non-finite filter whose padding
        # products must not be formed. The copy ends in zero slack: the last block of a tile
        # reads whole vectors past its last position.
        slack = 2 * _simd.POSITION_VECTORS * _simd.lanes(xc.itemsize) + _simd.lanes(xc.itemsize)
        xflat, (_, _, Hp, Wp) = _pad_flat(xc, (pt, pb, pl, pr), slack)
        wpack, bpack = _pack_filter(wc, b)
        rows = max(1, min(Ho, _PADDED_TILE_ELEMENTS // Wp))
        _correlate_blocked_kernel(xflat, xc.shape[0], C, Hp, Wp, wpack, bpack, res4, rows, (kh, kw, dh, dw),
                                  sh, sw)
    else:
        single = C == 1 and (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1)
        rows = max(1, min(Ho, (_STENCIL_TILE_ELEMENTS if single else _TILE_ELEMENTS) // Wo))
        # Non-temporal stores only where each output element is written once (one input
        # channel) and the output is too large to stay in cache for whoever reads it next.
        stream = _simd.STREAMING_SUPPORTED and C == 1 and res4.nbytes >= _STREAM_MIN_BYTES
        _correlate_kernel(xc, wc, b, res4, sh, sw, pt, pl, dh, dw, rows, stream)


def _forward(p, bias, out):
    x4, w4, two_d = p["x4"], p["w4"], p["two_d"]
    dtype = x4.dtype
    N, Co = x4.shape[0], w4.shape[0]
    Ho, Wo = p["out_hw"]
    out_shape = (Ho, Wo) if two_d else (N, Co, Ho, Wo)
    b = _bias_array(bias, Co, dtype, two_d)
    if out is not None:
        out = V.out_array(out, "out", out_shape, dtype)
    target = out if out is not None else np.empty(out_shape, dtype=dtype)
    if N == 0:
        return target
    res = target if target.flags.c_contiguous else np.empty(out_shape, dtype=dtype)
    _run_forward(np.ascontiguousarray(x4), np.ascontiguousarray(w4), b, res.reshape(N, Co, Ho, Wo),
                 p["stride"], p["dilation"], p["pad"])
    if res is not target:
        target[...] = res
    return target


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def correlate2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """2-D cross-correlation, what deep-learning frameworks call convolution.

    Formula (batch form; ``s`` stride, ``d`` dilation, ``p_t``/``p_l`` top/left zero padding)::

        out[n, co, y, x] = bias[co] + sum_{ci, i, j} w[co, ci, i, j] * xpad[n, ci, y*s_h + i*d_h, x*s_w + j*d_w]

    where ``xpad`` is ``x`` with zeros around it. Same result as ``torch.nn.functional.conv2d``
    and, for a single channel, as ``scipy.signal.correlate2d``. The homework's lecture (CSC413
    lecture 4) defines convolution with the flipped filter instead: that is :func:`convolve2d`;
    see the module docstring for why both exist (for the homework's filter ``J`` with rows
    (-1,-1,-1), (0,0,0), (1,1,1) the two differ exactly by sign).

    Parameters
    ----------
    x : array (H, W) or (N, C_in, H, W)
        Input, float32 or float64, any strides.
    w : array (kh, kw) or (C_out, C_in, kh, kw)
        Filter, the same dtype as ``x`` (a mismatch is a ``TypeError``, not a silent cast).
    bias : None, or (C_out,) for a batch; for a 2-D ``x`` a real scalar or an array of shape ``()``
        or ``(1,)``. Added to every output pixel of its channel. ``None`` means zero.
    stride, dilation : int or (int, int), each >= 1.
    padding : int >= 0, (ph, pw), ``'valid'`` (0), ``'full'`` (``d*(k-1)`` on each side: every
        overlap of filter and input), or ``'same'`` (output size == input size; stride 1 only,
        else ``ValueError``). For an even dilated extent ``'same'`` pads like PyTorch's
        ``padding='same'``: the odd pixel goes to the bottom/right, which is also the centred
        part of the ``'full'`` output that ``scipy.signal.correlate2d(x, w, 'same')`` returns.
    out : optional preallocated output of exactly the result's shape and dtype; it is filled in
        place and returned (saves the page faults of a fresh large array on every call).

    Returns
    -------
    ``(H_out, W_out)`` or ``(N, C_out, H_out, W_out)``, dtype of ``x`` (``N = 0``, an empty
    batch, gives an empty result, as in PyTorch), with
    ``H_out = (H + p_t + p_b - d_h*(kh-1) - 1) // s_h + 1`` (likewise ``W_out``).

    Accumulation is in the input dtype, as in PyTorch (sums of ``C_in*kh*kw`` terms). NaN and
    inf propagate as IEEE arithmetic says on the zero-padded definition (a non-finite filter
    times padding zeros is NaN). Raises ``TypeError``/``ValueError`` naming the argument for
    wrong dtypes or ndim, channel mismatch, an empty image or filter, a filter larger than the padded input,
    non-positive stride/dilation, negative padding, or a mismatched ``out``.
    """
    p = _prepare(x, w, stride, padding, dilation)
    return _forward(p, bias, out)


def convolve2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """2-D true convolution (filter flipped), as defined in the homework's lecture (CSC413 lecture 4).

    Formula: ``convolve2d(x, w) == correlate2d(x, w[..., ::-1, ::-1])``, i.e. for a single
    channel and padding 0 (``'valid'``) with ``kh x kw`` filter::

        out[y, x] = bias + sum_{i, j} w[i, j] * x[y + kh-1 - i, x + kw-1 - j]

    which is ``scipy.signal.convolve2d(x, w, mode)`` for ``'valid'``, ``'full'`` and ``'same'``
    (for ``'valid'`` with a filter larger than ``x`` SciPy swaps the operands; here it is a
    ``ValueError``). Every argument, shape and dtype rule is that of :func:`correlate2d`; numeric
    padding is applied to ``x`` exactly as there. ``'same'`` is the centred part of the
    ``'full'`` output, as in SciPy: for an even (dilated) filter extent the odd pixel of padding
    goes to the top/left, the mirror of :func:`correlate2d`'s rule, so that
    ``convolve2d(x, w, padding='same') == correlate2d(x, w[..., ::-1, ::-1], padding='same')``
    holds for odd filters only.
    Deep-learning frameworks compute :func:`correlate2d` and call it convolution; for the
    homework's filter ``J`` (rows (-1,-1,-1), (0,0,0), (1,1,1)) flipping is negation, so the two
    results differ exactly by sign.
    """
    p = _prepare(x, w, stride, padding, dilation, flipped=True)
    p["w4"] = p["w4"][:, :, ::-1, ::-1]
    return _forward(p, bias, out)


def correlate2d_backward(grad_out, x, w, *, stride=1, padding=0, dilation=1):
    """Gradients of :func:`correlate2d`: ``(grad_x, grad_w, grad_bias)`` for upstream ``grad_out``.

    Formulas (``L`` a scalar loss, ``g = dL/d out``)::

        grad_x[n, ci, h, c]  = sum_{co, i, j, y, x : y*s_h - p_t + i*d_h = h, x*s_w - p_l + j*d_w = c} g[n, co, y, x] w[co, ci, i, j]
        grad_w[co, ci, i, j] = sum_{n, y, x} g[n, co, y, x] xpad[n, ci, y*s_h + i*d_h, x*s_w + j*d_w]
        grad_bias[co]        = sum_{n, y, x} g[n, co, y, x]

    the same as PyTorch autograd of ``conv2d``. Shapes mirror the inputs: ``grad_x`` like ``x``,
    ``grad_w`` like ``w``, ``grad_bias`` is ``(C_out,)`` for a batch and a 0-d array for a 2-D
    ``x`` (whose bias is a scalar). ``grad_out`` must have the forward output's shape and the
    dtype of ``x`` and ``w``; the arguments otherwise follow :func:`correlate2d`.

    dtype rules: float32 and float64 keep their dtype. ``grad_w`` and ``grad_bias`` are long
    reductions over ``N*H_out*W_out`` terms, so for float32 they accumulate in float64 and round
    once; ``grad_x`` (sums of ``C_out*kh*kw`` terms) accumulates in the input dtype.

    The gradients of :func:`convolve2d` follow from ``convolve2d(x, w) = correlate2d(x, flip(w))``
    with ``flip = w[..., ::-1, ::-1]``: call this function with ``flip(w)``; ``grad_x`` and
    ``grad_bias`` are unchanged and the filter gradient is ``flip(grad_w)``.

    Implementation: ``grad_w`` is a compiled reduction over the zero-padded input, parallel over
    (co, ci) pairs. At stride 1 ``grad_x`` is itself a forward correlation (of ``grad_out`` with
    the filter rotated by 180 degrees, channel axes swapped, padding ``d*(k-1) - p``) and runs on
    the forward kernel; at larger strides its columns come from a NumPy matrix product (BLAS), one
    image at a time, scattered back by a compiled col2im parallel over input channels.
    """
    p = _prepare(x, w, stride, padding, dilation)
    x4, w4, two_d = p["x4"], p["w4"], p["two_d"]
    dtype = x4.dtype
    N, C, H, W = x4.shape
    Co, _, kh, kw = w4.shape
    Ho, Wo = p["out_hw"]
    g_shape = (Ho, Wo) if two_d else (N, Co, Ho, Wo)
    g = V.float_array(grad_out, "grad_out", ndim=len(g_shape), empty_batch=True)
    if g.dtype != dtype:
        raise TypeError(f"grad_out must have dtype {dtype} like x, got {g.dtype}")
    if g.shape != g_shape:
        raise ValueError(f"grad_out must have the forward output's shape {g_shape}, got {g.shape}")
    if N == 0:  # an empty batch: no image, so no gradient flows to w or the bias (PyTorch's zeros)
        return (np.empty((N, C, H, W), dtype=dtype), np.zeros((Co, C, kh, kw), dtype=dtype),
                np.zeros(Co, dtype=dtype))
    g4 = np.ascontiguousarray(g.reshape(N, Co, Ho, Wo))
    xc = np.ascontiguousarray(x4)
    wc = np.ascontiguousarray(w4)
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    pt, pb, pl, pr = p["pad"]
    acc = np.float64
    # grad_w: one float64 reduction per (co, ci) over the zero-padded input.
    grad_w = np.empty((Co, C, kh, kw), dtype=acc)
    lanes = _simd.VECTOR_BYTES // xc.itemsize
    if (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1):
        xflat, (_, _, Hp, Wp) = _pad_flat(xc, p["pad"], lanes)  # the blocks read a vector past a row
        _grad_w3x3_kernel(g4, xflat, C, Hp, Wp, grad_w)
    else:
        # With finite x, grad_out is widened with zero columns: spread out by a column stride
        # sw > 1 (which becomes stride 1, at sw times the multiply-adds) and completed to whole
        # vectors (no scalar tail). Zeros times inf would be NaN, hence finite x only; a column
        # stride over non-finite x keeps the exact scalar reduction.
        x_finite = bool(np.isfinite(xc).all())
        if sw == 1 or x_finite:
            gs = g4
            if x_finite and (sw != 1 or Wo % lanes):
                Ws = (Wo - 1) * sw + 1
                gs = np.zeros((N, Co, Ho, -(-Ws // lanes) * lanes), dtype=dtype)
                gs[..., :Ws:sw] = g4
            xflat, (_, _, Hp, Wp) = _pad_flat(xc, p["pad"], lanes)  # slack: widened rows read past
            _grad_w_taps_kernel(gs, xflat, C, Hp, Wp, grad_w, sh, dh, dw)
        else:
            xpad = xc if not (pt or pb or pl or pr) else _pad(xc, p["pad"])
            _grad_w_kernel(g4, xpad, grad_w, sh, sw, dh, dw)
    # grad_x is itself a correlation: of grad_out with the filter rotated by 180 degrees and its
    # channel axes swapped, padded by the filter extent minus the forward padding; at a stride
    # above 1, of grad_out spread out by the stride with zeros between (the zeros are products
    # the definition does not form, harmless unless the filter holds inf or NaN).
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    Hs, Ws = (Ho - 1) * sh + 1, (Wo - 1) * sw + 1
    bpads = (ekh - pt, H - Hs + pt, ekw - pl, W - Ws + pl)
    grad_x = np.empty((N, C, H, W), dtype=dtype)
    if min(bpads) >= 0 and ((sh, sw) == (1, 1) or np.isfinite(wc).all()):
        wt = np.ascontiguousarray(wc[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gs = g4
        if (sh, sw) != (1, 1):
            gs = np.zeros((N, Co, Hs, Ws), dtype=dtype)
            gs[:, :, ::sh, ::sw] = g4
        _run_forward(gs, wt, np.zeros(C, dtype=dtype), grad_x, (1, 1), (dh, dw), bpads, padding_is_data=False)
    else:
        # strided (or over-padded): columns of grad_x by BLAS, scattered back by col2im
        K, P = C * kh * kw, Ho * Wo
        w2t = np.ascontiguousarray(wc.reshape(Co, K).T)
        gcols = np.empty((K, P), dtype=dtype)
        for n in range(N):
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf propagate, like the kernels
                np.matmul(w2t, g4[n].reshape(Co, P), out=gcols)
            _col2im_kernel(gcols, grad_x, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo)
    grad_b = np.empty(Co, dtype=acc)
    _grad_bias_kernel(g4, grad_b)
    grad_b = grad_b.astype(dtype)
    grad_w = grad_w.astype(dtype).reshape(Co, C, kh, kw)
    if two_d:
        return grad_x[0, 0], grad_w[0, 0], grad_b.reshape(())
    return grad_x, grad_w, grad_b
