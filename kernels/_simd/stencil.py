"""Single-channel 3x3: a streaming stencil written as LLVM IR (:func:`_stencil3x3` and the
five blocks made from it).

18 flops per element against 16 bytes (float64) of unavoidable traffic, so its bar is a plain
copy of the image. The auto-vectorised loop missed it three ways:

* **loads.** Nine unaligned vector loads per output vector (three per input row, at offsets 0,
  1 and 2), each straddling two cache lines on AVX-512. Here each input row is loaded once per
  vector and the two shifted operands are cut from that vector and the next with a lane shift
  (``shufflevector``);
* **reuse across rows.** Output rows y and y+1 share two of their three input rows. A block
  computes :data:`STENCIL_ROWS` output rows from STENCIL_ROWS + 2 input rows, each loaded once;
* **write-allocate.** An ordinary store first reads the destination line into the cache, so an
  output that does not fit in cache costs three passes over memory instead of two. On request
  the stores are *non-temporal* (``!nontemporal``): whole aligned 64-byte lines go straight to
  memory, and :func:`~kernels._simd.vectors.store_fence` orders them before the result is read.
  (They also leave the cache to the input.)

Every block computes, per output element and in this order (no fast-math flags, so LLVM may not
reassociate)::

    s_i = fma(w[i,2], x_i[p+2], fma(w[i,1], x_i[p+1], w[i,0] * x_i[p]))     for i = 0, 1, 2
    o[p] = bias + ((s_0 + s_1) + s_2)

and the scalar variant computes the same expression, so an element's value depends neither on
which block wrote it nor on the output buffer's address. The caller that keeps the blocks in
bounds is :func:`kernels.conv.stencil3x3._stencil3x3_span`.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .target import TARGET
from .vectors import VECTOR_BYTES, _data, _Lanes

#: Bytes per vector of the stencil's blocks: the target's register width, except on AVX/AVX2,
#: where a lane shift across a 32-byte register's two halves costs a permute each, and 64-byte
#: vectors (which LLVM splits into register pairs, shifting across the pair's halves instead)
#: ran 2048x2048 in 2.3 ms where 32-byte ones took 5.6 (float32, this machine compiled for AVX2).
STENCIL_VECTOR_BYTES = 64 if TARGET.arch == "x86_64" and TARGET.isa in ("avx", "avx2") else VECTOR_BYTES

#: A row-group block computes this many output rows at once: each input row loaded then serves
#: up to three of them, so loads and lane shifts per output fall from 3 rows' worth to
#: (ROWS + 2) / ROWS. On 2048x2048 float64 (2-core EPYC, side by side): 1 row 1.49 ms, 2 rows
#: 1.14, 3 rows 1.05, 4 rows 1.01, 6 rows 1.00; 4 keeps every row group's registers unspilled.
STENCIL_ROWS = 4
#: Output vectors per row of a row-group block, and per block of a single row (leftover rows):
#: 2 x 4 accumulators for four rows; 4 for one row (measured 1, 2, 4 and 8).
GROUP_VECTORS = 2
ROW_VECTORS = 4


def _stencil3x3(rows: int, blocks: int, vector: bool, streaming: bool):
    """An intrinsic ``f(o, opitch, x, xpitch, p, taps, bias)`` writing, for r < rows and
    q in [p, p + blocks*V)::

        o[r*opitch + q] = bias + taps of x[(r + i)*xpitch + q + j]

    ``taps`` is the 3x3 filter as a 9-tuple in row-major order; ``V`` the lanes of a
    :data:`STENCIL_VECTOR_BYTES` vector (``vector=True``) or 1 (scalar, then rows = blocks = 1). Reads
    ``x[(r + i)*xpitch + p : ... + (blocks + 1)*V]``.
    """

    @intrinsic
    def stencil(typingctx, o, opitch, x, xpitch, p, taps, bias):
        dtype = o.dtype
        lanes = STENCIL_VECTOR_BYTES * 8 // dtype.bitwidth if vector else 1

        def codegen(context, builder, sig, args):
            o_, opitch_, x_, xpitch_, p_, taps_, bias_ = args
            L = _Lanes(context, builder, dtype, lanes)

            def row_base(data, pitch, r):
                return L.at(data, builder.add(p_, builder.mul(pitch, ir.Constant(L.i64, r))))

            w = [L.splat(builder.extract_value(taps_, t)) for t in range(9)]
            sums = [[None] * blocks for _ in range(rows)]
            xdata = _data(context, builder, sig.args[2], x_)
            for xr in range(rows + 2):  # each input row once, for the output rows it feeds
                base = row_base(xdata, xpitch_, xr)
                if vector:
                    vecs = [L.load(L.at(base, k * lanes)) for k in range(blocks + 1)]
                for u in range(blocks):
                    if vector:
                        x0, x1, x2 = vecs[u], L.shifted(vecs[u], vecs[u + 1], 1), L.shifted(vecs[u], vecs[u + 1], 2)
                    else:
                        x0, x1, x2 = (L.load(L.at(base, j)) for j in range(3))
                    for r in range(rows):
                        i = xr - r
                        if not 0 <= i <= 2:
                            continue
                        s = L.fma(w[3 * i + 2], x2, L.fma(w[3 * i + 1], x1, builder.fmul(w[3 * i], x0)))
                        sums[r][u] = s if sums[r][u] is None else builder.fadd(sums[r][u], s)
            b = L.splat(bias_)
            odata = _data(context, builder, sig.args[0], o_)
            for r in range(rows):
                obase = row_base(odata, opitch_, r)
                for u in range(blocks):
                    L.store(builder.fadd(b, sums[r][u]), L.at(obase, u * lanes), streaming)
            return context.get_dummy_value()

        return types.none(o, opitch, x, xpitch, p, taps, bias), codegen

    return stencil


#: One output element (the exact expression of the vector blocks).
stencil3x3_scalar = _stencil3x3(1, 1, vector=False, streaming=False)
#: :data:`STENCIL_ROWS` rows of :data:`GROUP_VECTORS` vectors, ordinary stores (element alignment).
stencil3x3_group = _stencil3x3(STENCIL_ROWS, GROUP_VECTORS, vector=True, streaming=False)
#: The same with non-temporal stores: every row's ``o + r*opitch + p`` must be
#: :data:`STENCIL_VECTOR_BYTES`-aligned, and a :func:`store_fence` must follow before the output is read.
stencil3x3_group_streaming = _stencil3x3(STENCIL_ROWS, GROUP_VECTORS, vector=True, streaming=True)
#: One row of :data:`ROW_VECTORS` vectors (rows left over from the groups), both store kinds.
stencil3x3_row = _stencil3x3(1, ROW_VECTORS, vector=True, streaming=False)
stencil3x3_row_streaming = _stencil3x3(1, ROW_VECTORS, vector=True, streaming=True)
