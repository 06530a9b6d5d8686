"""The copy-free forward kernel (:func:`_correlate`, built as ``_CORRELATE``): parallel over
disjoint output tiles, taps that fall in the zero padding skipped rather than multiplied by zero.

Two inner paths. One vectorised loop per filter tap over the valid span of each output row
(:func:`_row_taps`): strides above 1, filters other than 3x3, and the border rows of a 3x3 tile.
For 3x3 at stride 1 and dilation 1, the fused tile :func:`_fused_tile`, whose interior is one
long span per block of rows: the single-channel stencil of :mod:`.stencil3x3` (border columns by
:func:`~.stencil3x3._border3x3`), or several channels four output channels at a time
(:func:`_fused3x3_x4`, border columns by :func:`_point`). The many-channel forward normally
takes :mod:`.blocked`; this path serves a non-finite filter in ``grad_x``, whose padding
products must not be formed.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import _simd
from kernels._config import jit, specialise

from .stencil3x3 import _border3x3, _stencil3x3_span, _taps3x3


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


def _correlate(x, w, b, out, sh, sw, pt, pl, dh, dw, rows_per_task, stream):  # pragma: no cover - compiled
    """out[n, co, y, xo] = b[co] + sum_{ci,i,j} w[co,ci,i,j] x[n, ci, y*sh-pt+i*dh, xo*sw-pl+j*dw],
    taps outside x skipped (zero padding). x, w, out C-contiguous; out fully overwritten. The
    build for one input and one output channel (``_ONE_CHANNEL``) takes nothing else."""
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


def _fused_tile(x, w, b, out, n, c0, c1, y0, y1, pt, pl, xlo, xhi, ya, yb, stream):  # pragma: no cover - compiled
    """One output tile of a 3x3, stride-1, dilation-1 correlation (out holds the bias outside
    the interior span).

    Rows [ya, yb) and columns [xlo, xhi) are interior (every tap inside x): fused loop. The rest
    of the tile: each in-bounds tap on its own.
    """
    W = x.shape[3]
    Wo = out.shape[3]
    one = np.int64(1)  # not the literal 1: the signature _correlate compiles _row_taps for
    for y in range(y0, y1):
        if y < ya or y >= yb:
            for co in range(c0, c1):
                _row_taps(x, w, out, n, co, y, 0, Wo, one, one, pt, pl, one, one)
    if yb <= ya:
        return
    if _ONE_CHANNEL or (x.shape[1] == 1 and c1 - c0 == 1):
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


# Builds of the kernel (kernels._config.specialise). One input and one output channel: tiles
# that take only the one-channel path of _fused_tile (the stencil); a single-channel image
# compiled all of the several-channel code with it, about 5 s of a cold process's first call.
# Of that build, a serial one for an image that is one tile (a thread pool buys nothing there,
# and the parfor lowering is most of the compile time) beside the parallel one. Any other
# channels (a non-finite filter in grad_x): the parallel build of the general kernel.
_FUSED_TILE = {one: specialise(_fused_tile, f"_fused_tile_{'one' if one else 'many'}", _ONE_CHANNEL=one)
               for one in (True, False)}
#: ``_CORRELATE[one_channel, parallel]``: the kernel for ``C_in == C_out == 1`` (True) or any
#: other, parallel over tiles or serial (one channel only).
_CORRELATE = {
    (one, par): specialise(_correlate, f"_correlate_{'one' if one else 'many'}{'' if par else '_serial'}",
                           parallel=par, _ONE_CHANNEL=one, _fused_tile=_FUSED_TILE[one])
    for one, par in ((True, True), (True, False), (False, True))
}
