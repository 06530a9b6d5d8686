"""The phases of a stride: compiled copies between a batch and its strided subgrids.

At stride ``s`` the positions ``q, q + s, q + 2s, ...`` of an axis form phase ``q``. Both
passes work phase by phase so that each product they form is one of the definition's: the
strided forward reads bands of the padded input's planes cut into their phases
(:data:`PHASE_BAND`, copied by each task of :func:`kernels.conv.blocked._correlate_bands` right
before it reads them; the tap offsets by :func:`phase_offsets`), the filter gradient
reads the input's column phases side by side (:func:`column_phases`), the input gradient is
computed one phase at a time and interleaved into it (:func:`interleave_phases`). NumPy does
these copies with strided loops at a fraction of the memory's speed (2.4 ms for the column
phases of a 9 MB float32 batch). Here both column phases of a row are cut in one pass over its
pairs at stride 2 (16x32x64x64 float32: the whole batch's phases in about 0.5 ms, a plain copy
of it 0.4 ms); the column phases run in parallel over the planes, and the phases of the input
gradient are interleaved back the same way.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import _validate as V
from kernels._config import jit, specialise


@jit(inline="always")
def _row_pairs(of, o, spacing, Wq, xr, W, pl):  # pragma: no cover - compiled
    """Both column phases of stride 2 of one padded row, ``Wq`` long each and ``spacing``
    apart: ``of[o + q*spacing + v] = xpad[q + 2v]`` for ``q`` 0 and 1, where ``xpad`` is the
    row ``xr`` (``W`` long) with ``pl`` zeros on its left and zeros past its end. One loop over
    the pairs of columns inside the row (a load and a shuffle, where a loop per phase reads every
    other element: a gather), then the borders."""
    v0 = min(Wq, (pl + 1) // 2)  # pairs v whose columns 2v - pl and 2v + 1 - pl are in the row
    v1 = min(Wq, max(v0, (W + pl) // 2))
    src = xr[2 * v0 - pl : 2 * v1 - pl]
    d0 = of[o + v0 : o + v1]
    d1 = of[o + spacing + v0 : o + spacing + v1]
    for m in range(v1 - v0):
        d0[m] = src[2 * m]
        d1[m] = src[2 * m + 1]
    for q in range(2):  # the borders: zeros and the odd column of a pair cut by the edge
        dst = of[o + q * spacing : o + q * spacing + Wq]
        for v in range(v0):
            c = q + 2 * v - pl
            dst[v] = xr[c] if 0 <= c < W else 0
        for v in range(v1, Wq):
            c = q + 2 * v - pl
            dst[v] = xr[c] if 0 <= c < W else 0


@jit(inline="always")
def _row_phases(of, o, spacing, Wq, xr, W, pl, sw, cols):  # pragma: no cover - compiled
    """The column phases ``cols`` (each in ``[0, sw)``) of one padded row, as
    :func:`_row_pairs` (which the callers take for both phases of stride 2): ``of[o +
    q*spacing + v] = xpad[cols[q] + v*sw]``; the columns inside the row strided, then the
    borders. Two functions, not one with a branch: the pairs loop in a function that also held
    this one ran at half the speed (16x32x64x64 float32: 1.3 against 0.85 ms for the phases)."""
    for q in range(cols.shape[0]):
        b = cols[q]
        dst = of[o + q * spacing : o + q * spacing + Wq]
        v0 = min(Wq, max(0, -((b - pl) // sw)))  # the columns v with 0 <= b + v*sw - pl < W
        v1 = min(Wq, max(v0, -((b - pl - W) // sw)))
        src = xr[b + v0 * sw - pl : b + v1 * sw - pl]
        for m in range(v1 - v0):
            dst[v0 + m] = src[m * sw]
        for v in range(v0):
            c = b + v * sw - pl
            dst[v] = xr[c] if 0 <= c < W else 0
        for v in range(v1, Wq):
            c = b + v * sw - pl
            dst[v] = xr[c] if 0 <= c < W else 0


@jit(inline="always")
def _row_padded(of, o, Wq, xr, W, pl):  # pragma: no cover - compiled
    """One padded row at stride 1 (its one column phase): ``of[o + v] = xpad[v]`` for ``v <
    Wq``, ``xpad`` the row ``xr`` (``W`` long) with ``pl`` zeros on its left and zeros past its
    end. A contiguous copy that vectorises, where :func:`_row_phases` steps by a stride known
    only at run time (16x16x64x64 float32, dilation 2: the bands' copies cost 0.75 ms of a
    3.0 ms forward that way)."""
    dst = of[o : o + Wq]
    m = max(0, min(W, Wq - pl))
    for v in range(min(pl, Wq)):
        dst[v] = 0
    inner = dst[pl : pl + m]
    for v in range(m):
        inner[v] = xr[v]
    for v in range(pl + m, Wq):
        dst[v] = 0


def _phase_band(x, n, u0, band, band_rows, Wq, pt, pl, sh, sw, rows, cols):  # pragma: no cover - compiled
    """Rows ``u0 <= u < u0 + band_rows`` of the phases ``rows`` x ``cols`` of image ``n``'s
    zero-padded planes, into ``band`` (1-D, C-contiguous ``(C, len(rows), len(cols), band_rows,
    Wq)`` at its start)::

        band[c, p, q, u - u0, v] = xpad[n, c, rows[p] + u*sh, cols[q] + v*sw]

    with ``xpad`` the batch ``x`` zero-padded by ``pt`` rows on top and ``pl`` columns on the
    left, and zeros wherever that is outside ``x`` (the bottom and right padding, and rows
    past the plane). On it the outputs of a strided row are consecutive positions and each tap
    a fixed distance away (:func:`phase_offsets` with the shape ``(band_rows, Wq)``).

    One build per way of copying a row (:data:`ROW_COPIES`, :data:`PHASE_BAND`), each holding
    that way alone (``_ROW_COPY``, a constant of the build): the ways in one function took
    1.4 s to compile, and LLVM compiles a caller's copy of it again."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    nr, nc = rows.shape[0], cols.shape[0]
    span = band_rows * Wq
    xf = x.reshape(x.size)
    for c in range(C):
        for p in range(nr):
            for u in range(band_rows):
                o = ((c * nr + p) * nc * band_rows + u) * Wq  # row u of phase (p, 0); (p, q) is q*span on
                hh = rows[p] + (u0 + u) * sh - pt
                if hh < 0 or hh >= H:
                    for q in range(nc):
                        zeros = band[o + q * span : o + q * span + Wq]
                        for v in range(Wq):
                            zeros[v] = 0
                else:
                    s = ((n * C + c) * H + hh) * W
                    if _ROW_COPY == PAIRS:
                        _row_pairs(band, o, span, Wq, xf[s : s + W], W, pl)
                    elif _ROW_COPY == PADDED:
                        _row_padded(band, o, Wq, xf[s : s + W], W, pl)
                    else:
                        _row_phases(band, o, span, Wq, xf[s : s + W], W, pl, sw, cols)


#: The ways :func:`_phase_band` copies a row: any column stride (:func:`_row_phases`), both
#: column phases of stride 2 (:func:`_row_pairs`), column stride 1 (:func:`_row_padded`).
ROW_COPIES = (STRIDED, PAIRS, PADDED) = range(3)
#: :func:`_phase_band` built for each of :data:`ROW_COPIES`.
PHASE_BAND = tuple(specialise(_phase_band, f"phase_band_{name}", _ROW_COPY=k)
                   for k, name in zip(ROW_COPIES, ("strided", "pairs", "padded")))


def row_copy(sw, phases):
    """The :data:`ROW_COPIES` entry for a column stride ``sw`` holding ``phases`` column phases."""
    if sw == 1:
        return PADDED
    return PAIRS if (sw, phases) == (2, 2) else STRIDED


@jit(parallel=True)
def _column_phases_kernel(x, out, pt, pl, sw, cols):  # pragma: no cover - compiled
    """out[n, c, h, q, u] = xpad[n, c, h, q + u*sw] with ``xpad`` the batch ``x`` zero-padded
    by ``pt`` rows on top and ``pl`` columns on the left (and zeros wherever that is outside
    ``x``); ``out`` is ``(N, C, Hp, len(cols), Wq)``, both C-contiguous, ``cols`` the first
    phases. Parallel over the planes."""
    N, C, H, W = x.shape
    Hp, nc, Wq = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(N * C * H * W)
    of = out.reshape(N * C * Hp * nc * Wq)
    pairs = sw == 2 and nc == 2
    for t in prange(N * C):
        for h in range(Hp):
            o = (t * Hp + h) * nc * Wq
            hh = h - pt
            if hh < 0 or hh >= H:
                of[o : o + nc * Wq] = 0
            elif pairs:
                _row_pairs(of, o, Wq, Wq, xf[(t * H + hh) * W : (t * H + hh + 1) * W], W, pl)
            else:
                _row_phases(of, o, Wq, Wq, xf[(t * H + hh) * W : (t * H + hh + 1) * W], W, pl, sw, cols)


@jit(parallel=True)
def _interleave_phases_kernel(store, starts, shapes, dst, sh, sw):  # pragma: no cover - compiled
    """dst[n, c, a + m*sh, b + l*sw] = phase (a, b) at [n, c, m, l] for every phase ``(a, b)``
    with ``a < min(sh, H)`` and ``b < nb = min(sw, W)`` (the others hold no position): phase
    ``k = a*nb + b`` is C-contiguous ``(N, C) + shapes[k]`` at ``store[starts[k]:]``. Parallel
    over the planes, one pass over each row of ``dst``; at column stride 2 the row's two phases
    in one loop over pairs (a shuffle, where a strided store per phase is a scatter)."""
    N, C, H, W = dst.shape
    nb = min(sw, W)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for h in range(H):
            a = h % sh
            m = h // sh
            drow = dst[n, c, h]
            b0 = 0
            if sw == 2 and nb == 2:
                k = a * 2
                M0, M1 = shapes[k, 1], shapes[k + 1, 1]  # phase 1 is never longer than phase 0
                s0 = store[starts[k] + ((n * C + c) * shapes[k, 0] + m) * M0 :]
                s1 = store[starts[k + 1] + ((n * C + c) * shapes[k + 1, 0] + m) * M1 :]
                out = drow[: 2 * M1]
                for l in range(M1):
                    out[2 * l] = s0[l]
                    out[2 * l + 1] = s1[l]
                if M0 > M1:
                    drow[2 * M1] = s0[M1]
                b0 = 2
            for b in range(b0, nb):
                k = a * nb + b
                Mk = shapes[k, 1]
                src = store[starts[k] + ((n * C + c) * shapes[k, 0] + m) * Mk :]
                for l in range(Mk):
                    drow[b + l * sw] = src[l]


def column_phases(xc, pads, sw, slack, phases=None):
    """The C-contiguous batch ``xc`` zero-padded by ``pads`` (top, bottom, left, right), each
    row's first ``phases`` column phases (all ``sw`` when None) side by side (phase ``q``:
    columns ``q, q + sw, ...`` of the padded row, zero-filled to ``ceil(Wp / sw)``), flat, with
    ``slack`` zeros after it. A filter ``kw`` wide at dilation ``dw`` reads only the phases
    below ``(kw - 1) dw + 1``: a stride wider than that needs no more. Returns it, the padded
    rows, their length and the phases' spacing."""
    pt, pb, pl, pr = pads
    N, C, H, W = xc.shape
    held = sw if phases is None else min(sw, phases)
    Hp, Wq = H + pt + pb, -(-(W + pl + pr) // sw)
    size = N * C * Hp * held * Wq
    V.check_allocation((size + slack) * xc.itemsize,
                       f"the column phases {(N, C, Hp, held * Wq)} of the padded input")
    flat = np.empty(size + slack, dtype=xc.dtype)
    flat[size:] = 0
    _column_phases_kernel(xc, flat[:size].reshape(N, C, Hp, held, Wq), pt, pl, sw, np.arange(held, dtype=np.int64))
    return flat, Hp, held * Wq, Wq


def phases_used(k, d, s):
    """The phases ``(i d) % s`` that the taps ``i < k`` of dilation ``d`` read at stride ``s``
    (a stride larger than the filter leaves the others unread, and they are not copied)."""
    return np.array(sorted({i * d % s for i in range(k)}), dtype=np.int64)


def phase_offsets(kh, kw, dilation, stride, phase_shape, phases=None):
    """The flat offset of each tap ``(i, j)`` (row-major) from its output on a band of :func:`_phase_band`
    of that ``stride``, its phases ``phase_shape = (band_rows, Wq)`` (holding the row and column
    phases ``phases``; all of them when None): tap row ``i dh`` lies in row phase ``i dh % sh``,
    ``i dh // sh`` rows down, and likewise for columns."""
    (dh, dw), (sh, sw), (Hq, Wq) = dilation, stride, phase_shape
    rows, cols = phases if phases is not None else (np.arange(sh), np.arange(sw))
    ih = np.arange(kh, dtype=np.int64)[:, None] * dh
    jw = np.arange(kw, dtype=np.int64)[None, :] * dw
    p = np.searchsorted(rows, ih % sh)
    q = np.searchsorted(cols, jw % sw)
    return ((p * len(cols) + q) * (Hq * Wq) + ih // sh * Wq + jw // sw).reshape(-1)


def interleave_phases(store, starts, shapes, dst, stride):
    """Write the phases of ``stride = (sh, sw)`` held in ``store`` into ``dst`` (C-contiguous):
    the inverse of cutting ``dst`` into them. Phase ``(a, b)``, for ``a < min(sh, H)`` and
    ``b < nb = min(sw, W)`` (a stride past the array's edge has no more phases), is the
    C-contiguous ``dst[:, :, a::sh, b::sw]``-shaped array at ``store[starts[k]:]``, ``k = a*nb
    + b``, of ``shapes[k]`` rows and columns. One buffer, not a tuple of arrays: Numba would
    compile the kernel once per number of phases."""
    _interleave_phases_kernel(store, starts, shapes, dst, stride[0], stride[1])
