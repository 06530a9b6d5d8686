"""The homework's max-pool (2x2 window, stride 2, no padding), unrolled: the kernels
:func:`kernels.maxpool2d`, :func:`kernels.maxpool2d_backward` and the network layers run for
that case.

They give what the general kernels of :mod:`kernels.pool` give (the same rule: a later tap
replaces the running maximum when it is greater or NaN, so the first maximum wins and the last
NaN), and read their input in memory order: an output row is built from its first input row in
one loop, then finished from the second in another. Interleaving the two rows in one loop (four
taps per output) made two short streams that the hardware prefetcher kept losing: on (16, 32,
128, 128) float64, 24 GB/s against 36 (the machine's triad bandwidth) this way, 3.5 ms against
2.3 for the values and 3.5 against 1.8 with the indices. The running row lives in ``out`` (and
``idx``), in the first-level cache between the two loops.
"""

from __future__ import annotations

import time

import numpy as np
from numba import prange

from ._config import jit
from ._simd import ROUTE_LANES, STREAMING_SUPPORTED, address, route2x2_streaming, store_fence
from ._simd.vectors import lanes


@jit(inline="always")
def _later_wins(m, v):  # pragma: no cover - compiled
    """Whether tap ``v``, coming after the running maximum ``m``, replaces it."""
    return (v > m) | (v != v)


@jit(inline="always")
def _window2x2(a, b, v, u, W):  # pragma: no cover - compiled
    """The maximum of the 2x2 window ``a b / v u`` (``W`` apart) and its offset from ``a``.

    The window's four taps are taken as two pairs and then the pairs' winners, which picks the
    same tap as the scan ``a, b, v, u`` of the general kernel (a later tap replaces the
    running one when it is greater or NaN: the last NaN if there is one, else the first
    maximum), with two compares in sequence instead of three: 8-20% faster on the 2-core EPYC
    (LeNet-5's and the digits network's pools, batch 64, and (16, 32, 128, 128))."""
    tb = _later_wins(a, b)
    top = b if tb else a
    tu = _later_wins(v, u)
    bottom = u if tu else v
    t = _later_wins(top, bottom)
    return (bottom if t else top), ((W + np.int64(tu)) if t else np.int64(tb))


@jit(parallel=True)
def _maxpool2x2_kernel(x, out, idx):  # pragma: no cover - compiled
    """Window maxima of ``x`` into ``out`` (both (N, C, H, W)) and, unless ``idx`` is None, the
    flat index of each into ``idx``, by :func:`_window2x2`'s pairs: the first row's winners
    (with their indices) into ``out`` and ``idx``, then the second row's, each replacing the
    first's where it wins. Numba compiles the values-only build without the index code (``idx``
    None is pruned before typing). With indices, 7x faster than the general scan.

    Every element is addressed through the four indices, with no view of a row: a row's views
    (three per output row) cost about 50 ns each time, and with indices they kept the loops
    from vectorising. Measured on the 2-core EPYC, with indices, float32: LeNet-5's first pool
    (64, 6, 28, 28) 142 us against 310 with the views, (64, 32, 32, 32) 276 against 2065."""
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            b0 = 2 * oh * W
            for ow in range(OW):
                a = x[n, c, 2 * oh, 2 * ow]
                b = x[n, c, 2 * oh, 2 * ow + 1]
                tb = _later_wins(a, b)
                out[n, c, oh, ow] = b if tb else a
                if idx is not None:
                    idx[n, c, oh, ow] = b0 + 2 * ow + np.int64(tb)
            for ow in range(OW):
                v = x[n, c, 2 * oh + 1, 2 * ow]
                u = x[n, c, 2 * oh + 1, 2 * ow + 1]
                tu = _later_wins(v, u)
                bottom = u if tu else v
                m = out[n, c, oh, ow]
                if idx is None:
                    out[n, c, oh, ow] = bottom if _later_wins(m, bottom) else m
                elif _later_wins(m, bottom):
                    out[n, c, oh, ow] = bottom
                    idx[n, c, oh, ow] = b0 + W + 2 * ow + np.int64(tu)


#: input rows at least this wide pool float64 values through :func:`_maxpool2x2_wide_kernel`
#: by default (and, on large inputs, whichever of the two values kernels ran faster: below)
ONE_LOOP_MIN_WIDTH = 64
#: inputs of at least this many bytes, with rows of ONE_LOOP_MIN_WIDTH or more, choose between
#: the two values kernels by their time: the first CALIBRATION_CALLS such calls of a dtype
#: alternate between them, and later ones run the one whose fastest call was faster
CALIBRATE_MIN_BYTES = 4 << 20
CALIBRATION_CALLS = 6
#: per itemsize: the seconds each values kernel took on the calibrating calls ("wide", "rows"),
#: and the one chosen once they are done
CALIBRATION: dict = {}
CHOSEN: dict = {}


@jit(parallel=True)
def _maxpool2x2_wide_kernel(x, out):  # pragma: no cover - compiled
    """The values of :func:`_maxpool2x2_kernel` with each window taken whole in one loop over the
    output row (:func:`_window2x2`, the same winner). Which of the two is faster depends on the
    core: on (16, 32, 128, 128), alternating, on the 2-core Zen 5 EPYC float64 1.9-2.8 ms here
    against 2.4-3.8 in the two loops (float32 the other way: 2.1-2.4 against 1.5-1.8); on the
    2-core Zen 4 EPYC float64 4.7 ms here against 2.6 (float32 1.7 against 2.0). Hence the
    choice by time in :func:`maxpool2x2`. A kernel of its own, so that a first small call does
    not compile it."""
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            for ow in range(OW):
                m, _ = _window2x2(x[n, c, 2 * oh, 2 * ow], x[n, c, 2 * oh, 2 * ow + 1], x[n, c, 2 * oh + 1, 2 * ow],
                                  x[n, c, 2 * oh + 1, 2 * ow + 1], W)
                out[n, c, oh, ow] = m


def _run_values(kind, x4, y4):
    if kind == "wide":
        _maxpool2x2_wide_kernel(x4, y4)
    else:
        _maxpool2x2_kernel(x4, y4, None)


def maxpool2x2(x4, y4):
    """The 2x2 stride-2 pool's values of the 4-D ``x4`` into ``y4``, by the kernel that suits them.

    Rows narrower than :data:`ONE_LOOP_MIN_WIDTH`: the two-loop row kernel. Wider rows: by
    default the one-loop kernel for float64 and the row kernel for float32 (the faster ones on
    the Zen 5 EPYC); on inputs of :data:`CALIBRATE_MIN_BYTES` or more, the first
    :data:`CALIBRATION_CALLS` calls of a dtype alternate between the two (each call's result is
    complete either way: both give the same bits) and the process goes on with the one whose
    fastest call was faster (:data:`CHOSEN`). The fastest call, not the median: the first call
    of each may include its compilation, and a busy machine only adds time."""
    if x4.shape[3] < ONE_LOOP_MIN_WIDTH:
        _run_values("rows", x4, y4)
        return
    if x4.nbytes < CALIBRATE_MIN_BYTES:
        _run_values("wide" if x4.itemsize == 8 else "rows", x4, y4)
        return
    chosen = CHOSEN.get(x4.itemsize)
    if chosen is not None:
        _run_values(chosen, x4, y4)
        return
    times = CALIBRATION.setdefault(x4.itemsize, {"wide": [], "rows": []})
    kind = "wide" if len(times["wide"]) <= len(times["rows"]) else "rows"
    start = time.perf_counter()
    _run_values(kind, x4, y4)
    times[kind].append(time.perf_counter() - start)
    if min(len(v) for v in times.values()) * 2 >= CALIBRATION_CALLS:
        CHOSEN[x4.itemsize] = min(times, key=lambda k: min(times[k]))


@jit(parallel=True)
def _maxpool2x2_indices_flat_kernel(x, out, idx):  # pragma: no cover - compiled
    """:func:`_maxpool2x2_kernel` with indices for planes of short rows (C-contiguous arrays),
    each window taken whole by :func:`_window2x2` (the same winner, chosen by selects, not
    branches), every element addressed flat at an unsigned offset from its plane's start (a
    signed index gets Numba's wraparound check on each access), tasks of 64 planes.

    On rows shorter than a vector the row kernel's loops do not vectorise, and its branch on
    whether the second row's pair wins is as unpredictable as the data: measured alternating
    on the 2-core Zen 5 EPYC, float32, a different input each call (the same input called again
    and again lets the branch predictor learn its outcomes), one thread / two, in us:
    (64, 16, 8, 8) 51 / 42 against 162 / 82 for the row kernel and 66 / 46 for the
    offset-table kernel this replaced; (64, 32, 4, 4) 27 / 14 against 84 / 42 and 28 / 15;
    (64, 6, 28, 28) 122 / 75 against 270 / 140 for the row kernel. From rows of one vector on
    the row kernel's vectorised loops win ((16, 32, 32, 32): 36 against 46 us on two threads).
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    NC = N * C
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    idf = idx.reshape(idx.size)
    # the constants written in place below: held in variables, they cost 1.7x
    uW, uOW, uHW, uQ = np.uint64(W), np.uint64(OW), np.uint64(H * W), np.uint64(OH * OW)
    T = 64
    for t in prange((NC + T - 1) // T):
        for p in range(t * T, min(NC, t * T + T)):
            xb = np.uint64(p) * uHW
            ob = np.uint64(p) * uQ
            for oh in range(OH):
                r = np.uint64(2 * oh) * uW  # the window's first row, from the plane's start
                o = ob + np.uint64(oh) * uOW
                for ow in range(uOW):
                    i = xb + r + np.uint64(2) * ow
                    m, k = _window2x2(xf[i], xf[i + np.uint64(1)], xf[i + uW], xf[i + uW + np.uint64(1)], W)
                    of[o + ow] = m
                    idf[o + ow] = np.int64(r + np.uint64(2) * ow) + k


def maxpool2x2_indices(x4, y4, idx4):
    """The 2x2 stride-2 pool of the 4-D ``x4`` with indices, into ``y4`` and ``idx4``, by the
    kernel that suits its planes: output rows shorter than a vector by the flat kernel."""
    if y4.shape[3] < lanes(x4.itemsize) and x4.flags.c_contiguous and y4.flags.c_contiguous and idx4.flags.c_contiguous:
        _maxpool2x2_indices_flat_kernel(x4, y4, idx4)
    else:
        _maxpool2x2_kernel(x4, y4, idx4)


@jit(fastmath=False)  # fastmath's no-signed-zeros would fold 0.0 + g into g
def route_plane2x2(gy, ip, g, W):  # pragma: no cover - compiled
    """One plane's input gradient ``g`` (flat, ``H*W``, overwritten) of the 2x2 stride-2 pool
    from its ``gy`` and indices ``ip`` (both (OH, OW)), written once in memory order: each
    element of an input row is its window's gradient where the window's index points at it and
    zero elsewhere (``0.0 + g``, as the general kernel's addition into zero gives: -0.0
    becomes 0.0); a last odd row or column, in no window, is zero. Returns whether every index
    lay in its own window (else the plane is wrong, for the caller to redo by scattering).

    The general kernel zeroes a plane and then scatters into it; this writes each row once, in
    order. On (16, 32, 128, 128) into ``out``, on the 2-core Intel Xeon: float32 1.37-1.39 ms
    against 1.88-1.99; float64 3.4-3.7 ms either way (its 67 MB of gradient, each line read
    for ownership before it is written, bound both: see the streaming kernel below). Called
    from the general kernel's loop over planes (:func:`kernels.pool._maxpool2d_backward_kernel`),
    it adds 0.45 s to that kernel's cold compile; a parallel kernel of its own took 1.45 s. The
    row is a slice: indexed flat into ``g``, float32 ran at 3.7 ms."""
    OH = gy.shape[0]
    OW = gy.shape[1]
    hits = 0
    for q in range(2 * OH):
        gyr = gy[q // 2]
        ipr = ip[q // 2]
        first = q * W
        row = g[first:first + W]
        for ow in range(OW):
            k = ipr[ow]
            v = 0.0 + gyr[ow]
            left = k == first + 2 * ow
            right = k == first + 2 * ow + 1
            row[2 * ow] = v if left else 0.0
            row[2 * ow + 1] = v if right else 0.0
            hits += left + right
        for col in range(2 * OW, W):
            row[col] = 0.0
    for k in range(2 * OH * W, g.shape[0]):
        g[k] = 0.0
    return hits == OH * OW


#: float64 input gradients of at least this many bytes are written with non-temporal stores
#: (:func:`_maxpool2x2_backward_streaming_kernel`); a test may lower it to run that path on
#: small shapes.
_STREAM_MIN_BYTES = 16 << 20


@jit(inline="always")
def _route_pairs(row, gy, irow, first, lo, hi):  # pragma: no cover - compiled
    """Columns ``2 lo .. 2 hi - 1`` of an input row whose first flat index is ``first``: each
    its window's gradient (``0.0 + g``) where the window's index points at it, else zero."""
    for ow in range(lo, hi):
        k = irow[ow]
        v = 0.0 + gy[ow]
        t = first + 2 * ow
        row[2 * ow] = v if k == t else 0.0
        row[2 * ow + 1] = v if k == t + 1 else 0.0


@jit(parallel=True, fastmath=False)
def _maxpool2x2_backward_streaming_kernel(grad_y, idx, grad_x, bad):  # pragma: no cover - compiled
    """:func:`route_plane2x2` over every plane, for float64 with non-temporal stores (x86): each
    row's aligned run of eight-element lines goes out through :func:`route2x2_streaming`, its
    ends through :func:`_route_pairs`, and the indices are checked against their windows in a
    loop of their own. On (16, 32, 128, 128) into ``out``, calls alternating with the
    ordinary kernel's on the 2-core Intel Xeon: 3.0-3.8 ms against 4.6-4.9 (medians of 100)."""
    N, C, OH, OW = grad_y.shape
    H = grad_x.shape[2]
    W = grad_x.shape[3]
    V = ROUTE_LANES
    line = V * grad_x.itemsize
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        g = grad_x[n, c]
        hits = 0
        for oh in range(OH):
            gy = grad_y[n, c, oh]
            irow = idx[n, c, oh]
            top = 2 * oh * W
            for ow in range(OW):
                k = irow[ow]
                t = top + 2 * ow
                hits += (k == t) | (k == t + 1) | (k == t + W) | (k == t + W + 1)
            for r in range(2):
                row = g[2 * oh + r]
                first = (2 * oh + r) * W
                done = 0  # columns written so far, an even number
                peel = (line - address(row) % line) % line // grad_x.itemsize
                if peel % 2 == 0 and peel + V <= 2 * OW:
                    _route_pairs(row, gy, irow, first, 0, peel // 2)
                    done = peel
                    while done + V <= 2 * OW:
                        route2x2_streaming(row, done, gy, irow, done // 2, first + done)
                        done += V
                _route_pairs(row, gy, irow, first, done // 2, OW)
                for col in range(2 * OW, W):
                    row[col] = 0.0
        for rr in range(2 * OH, H):
            for col in range(W):
                g[rr, col] = 0.0
        bad[p] = OH * OW - hits
        store_fence()  # this thread's streamed lines are visible before anyone reads them


def streams(gx4) -> bool:
    """Whether the 2x2 backward into ``gx4`` goes through the streaming kernel (large float64
    gradients on x86)."""
    return STREAMING_SUPPORTED and gx4.itemsize == 8 and gx4.nbytes >= _STREAM_MIN_BYTES
