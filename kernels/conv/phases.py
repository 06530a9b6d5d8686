"""The phases of a stride: compiled copies between a batch and its strided subgrids.

At stride ``s`` the positions ``q, q + s, q + 2s, ...`` of an axis form phase ``q``. The
backward pass works phase by phase so that each product it forms is one of the definition's:
the filter gradient reads the input's column phases side by side (:func:`column_phases`), the
input gradient is computed one phase at a time and written into its strided subgrid
(:func:`scatter_phase`). NumPy does both copies with strided loops at a fraction of the memory's
speed (2.4 ms for the column phases of a 9 MB float32 batch); these run at about 1 ms, on one thread,
which also keeps their compilation short (a parallel build cost 0.7 s more for each on a first
call).
"""

from __future__ import annotations

import numpy as np

from kernels import _validate as V
from kernels._config import jit


@jit()
def _column_phases_kernel(x, out, pt, pl, sw):  # pragma: no cover - compiled
    """out[n, c, h, q, u] = xpad[n, c, h, q + u*sw] with ``xpad`` the batch ``x`` zero-padded
    by ``pt`` rows on top and ``pl`` columns on the left (and zeros wherever that is outside
    ``x``); ``out`` is ``(N, C, Hp, sw, Wq)``."""
    N, C, H, W = x.shape
    Hp, Wq = out.shape[2], out.shape[4]
    for t in range(N * C):
        n = t // C
        c = t - n * C
        for h in range(Hp):
            hh = h - pt
            inside = 0 <= hh < H
            for q in range(sw):
                orow = out[n, c, h, q]
                if not inside:
                    orow[:] = 0
                    continue
                xrow = x[n, c, hh]
                for u in range(Wq):
                    col = q + u * sw - pl
                    orow[u] = xrow[col] if 0 <= col < W else 0


@jit()
def _scatter_phase_kernel(src, dst, a, b, sh, sw):  # pragma: no cover - compiled
    """dst[n, c, a + m*sh, b + l*sw] = src[n, c, m, l] for the whole of ``src``."""
    N, C, M, L = src.shape
    for t in range(N * C):
        n = t // C
        c = t - n * C
        for m in range(M):
            srow = src[n, c, m]
            drow = dst[n, c, a + m * sh]
            for l in range(L):
                drow[b + l * sw] = srow[l]


def column_phases(xc, pads, sw, slack):
    """The C-contiguous batch ``xc`` zero-padded by ``pads`` (top, bottom, left, right), each
    row's ``sw`` column phases side by side (phase ``q``: columns ``q, q + sw, ...`` of the padded
    row, zero-filled to ``ceil(Wp / sw)``), flat, with ``slack`` zeros after it. Returns it, the
    padded rows, their length (``sw`` phases) and the phases' spacing."""
    pt, pb, pl, pr = pads
    N, C, H, W = xc.shape
    Hp, Wq = H + pt + pb, -(-(W + pl + pr) // sw)
    size = N * C * Hp * sw * Wq
    V.check_allocation((size + slack) * xc.itemsize, f"the column phases {(N, C, Hp, sw * Wq)} of the padded input")
    flat = np.empty(size + slack, dtype=xc.dtype)
    flat[size:] = 0
    _column_phases_kernel(xc, flat[:size].reshape(N, C, Hp, sw, Wq), pt, pl, sw)
    return flat, Hp, sw * Wq, Wq


def scatter_phase(src, dst, a, b, sh, sw):
    """Write the C-contiguous ``src`` ``(N, C, M, L)`` into ``dst[:, :, a::sh, b::sw]``, whose
    shape it must have."""
    _scatter_phase_kernel(src, dst, a, b, sh, sw)
