"""Explicit SIMD for the two 3x3 loops that Numba's auto-vectoriser leaves slow.

Both are written here as LLVM IR through Numba intrinsics: vector types, lane shifts and
non-temporal stores are not expressible in Numba's Python subset.

**Single-channel 3x3** (:func:`_stencil3x3`): a streaming stencil, 18 flops per element against
16 bytes (float64) of unavoidable traffic, so its bar is a plain copy of the image. The
auto-vectorised loop missed it three ways:

* **loads.** Nine unaligned vector loads per output vector (three per input row, at offsets 0,
  1 and 2), each straddling two cache lines on AVX-512. Here each input row is loaded once per
  vector and the two shifted operands are cut from that vector and the next with a lane shift
  (``shufflevector``);
* **reuse across rows.** Output rows y and y+1 share two of their three input rows. A block
  computes :data:`STENCIL_ROWS` output rows from STENCIL_ROWS + 2 input rows, each loaded once;
* **write-allocate.** An ordinary store first reads the destination line into the cache, so an
  output that does not fit in cache costs three passes over memory instead of two. On request
  the stores are *non-temporal* (``!nontemporal``): whole aligned 64-byte lines go straight to
  memory, and :func:`store_fence` orders them before the result is read. (They also leave the
  cache to the input.)

Every block computes, per output element and in this order (no fast-math flags, so LLVM may not
reassociate)::

    s_i = fma(w[i,2], x_i[p+2], fma(w[i,1], x_i[p+1], w[i,0] * x_i[p]))     for i = 0, 1, 2
    o[p] = bias + ((s_0 + s_1) + s_2)

and the scalar variant computes the same expression, so an element's value depends neither on
which block wrote it nor on the output buffer's address.

**Multi-channel 3x3** (:func:`correlate3x3_block`): the CNN layer, bound by multiply-adds. A
block keeps :data:`CHANNEL_BLOCK` output channels x :data:`POSITION_VECTORS` vectors of
positions in registers through the whole loop over input channels (the auto-vectorised loop
loaded and stored its accumulators once per input channel).

The intrinsics trust their caller for bounds (each docstring says what it reads and writes);
:func:`kernels.conv._stencil3x3_span` and :func:`kernels.conv._correlate_blocked_kernel`
guarantee them.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Bytes per vector register the blocks are written for (AVX-512; LLVM splits them on narrower
#: hardware, correctly if less profitably).
VECTOR_BYTES = 64
#: A row-group block computes this many output rows at once: each input row loaded then serves
#: up to three of them, so loads and lane shifts per output fall from 3 rows' worth to
#: (ROWS + 2) / ROWS. On 2048x2048 float64 (2-core EPYC, side by side): 1 row 1.49 ms, 2 rows
#: 1.14, 3 rows 1.05, 4 rows 1.01, 6 rows 1.00; 4 keeps every row group's registers unspilled.
STENCIL_ROWS = 4
#: Output vectors per row of a row-group block, and per block of a single row (leftover rows):
#: 2 x 4 accumulators for four rows; 4 for one row (measured 1, 2, 4 and 8).
GROUP_VECTORS = 2
ROW_VECTORS = 4
#: Non-temporal stores need a store fence that only x86 spells ``sfence``; elsewhere the
#: streaming path is simply never taken.
STREAMING_SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")


def _data(context, builder, arrty, value):
    return cgutils.create_struct_proxy(arrty)(context, builder, value=value).data


class _Lanes:
    """IR helpers shared by the intrinsics: values of ``lanes`` elements of ``dtype`` (a vector,
    or the scalar itself when ``lanes`` is 1), in the function ``builder`` is writing."""

    def __init__(self, context, builder, dtype, lanes):
        self.builder, self.lanes = builder, lanes
        self.i32, self.i64 = ir.IntType(32), ir.IntType(64)
        scalar = context.get_value_type(dtype)
        self.ty = ir.VectorType(scalar, lanes) if lanes > 1 else scalar
        self.align = dtype.bitwidth // 8
        suffix = "f64" if dtype.bitwidth == 64 else "f32"
        name = f"llvm.fma.v{lanes}{suffix}" if lanes > 1 else f"llvm.fma.{suffix}"
        self._fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(self.ty, [self.ty] * 3), name)

    def _mask(self, indices):
        return ir.Constant(ir.VectorType(self.i32, self.lanes), list(indices))

    def splat(self, s):
        """``s`` in every lane."""
        if self.lanes == 1:
            return s
        undef = ir.Constant(self.ty, ir.Undefined)
        v = self.builder.insert_element(undef, s, ir.Constant(self.i32, 0))
        return self.builder.shuffle_vector(v, undef, self._mask([0] * self.lanes))

    def shifted(self, a, b, k):
        """Lanes k .. k + lanes - 1 of the concatenation a|b (a lane shift, no memory access)."""
        return self.builder.shuffle_vector(a, b, self._mask(range(k, k + self.lanes)))

    def fma(self, a, b, c):
        """a * b + c, rounded once."""
        return self.builder.call(self._fma, [a, b, c])

    def at(self, base, offset):
        """``base + offset`` elements (offset an IR value or a Python int)."""
        if not isinstance(offset, ir.Value):
            offset = ir.Constant(self.i64, offset)
        return self.builder.gep(base, [offset])

    def load(self, ptr):
        return self.builder.load(self.builder.bitcast(ptr, self.ty.as_pointer()), align=self.align)

    def store(self, value, ptr, streaming=False):
        """An ordinary store, or a non-temporal one (``ptr`` then VECTOR_BYTES-aligned)."""
        st = self.builder.store(value, self.builder.bitcast(ptr, self.ty.as_pointer()),
                                align=VECTOR_BYTES if streaming else self.align)
        if streaming:
            st.set_metadata("nontemporal", self.builder.module.add_metadata([ir.Constant(self.i32, 1)]))


@intrinsic
def address(typingctx, a):
    """The address of ``a``'s first element, as an int64 (for alignment arithmetic)."""
    def codegen(context, builder, sig, args):
        return builder.ptrtoint(_data(context, builder, sig.args[0], args[0]), ir.IntType(64))
    return types.int64(a), codegen


@intrinsic
def store_fence(typingctx):
    """``sfence``: every earlier non-temporal store is globally visible before any later store."""
    def codegen(context, builder, sig, args):
        if STREAMING_SUPPORTED:
            fty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fty, "llvm.x86.sse.sfence"), [])
        else:  # never reached through conv (streaming is off), but keep the ordering promise
            builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


def _stencil3x3(rows: int, blocks: int, vector: bool, streaming: bool):
    """An intrinsic ``f(o, opitch, x, xpitch, p, taps, bias)`` writing, for r < rows and
    q in [p, p + blocks*V)::

        o[r*opitch + q] = bias + taps of x[(r + i)*xpitch + q + j]

    ``taps`` is the 3x3 filter as a 9-tuple in row-major order; ``V`` the lanes of a
    :data:`VECTOR_BYTES` vector (``vector=True``) or 1 (scalar, then rows = blocks = 1). Reads
    ``x[(r + i)*xpitch + p : ... + (blocks + 1)*V]``.
    """

    @intrinsic
    def stencil(typingctx, o, opitch, x, xpitch, p, taps, bias):
        dtype = o.dtype
        lanes = VECTOR_BYTES * 8 // dtype.bitwidth if vector else 1

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
#: :data:`VECTOR_BYTES`-aligned, and a :func:`store_fence` must follow before the output is read.
stencil3x3_group_streaming = _stencil3x3(STENCIL_ROWS, GROUP_VECTORS, vector=True, streaming=True)
#: One row of :data:`ROW_VECTORS` vectors (rows left over from the groups), both store kinds.
stencil3x3_row = _stencil3x3(1, ROW_VECTORS, vector=True, streaming=False)
stencil3x3_row_streaming = _stencil3x3(1, ROW_VECTORS, vector=True, streaming=True)


# --------------------------------------------------------------------------------------------
# multi-channel 3x3: register-blocked over output channels and positions
# --------------------------------------------------------------------------------------------

#: Output channels and vectors of positions a :data:`correlate3x3_block` keeps in registers:
#: 4 x 4 accumulators, 5 loaded rows, 4 shifted ones and a broadcast weight fit the 32 vector
#: registers of AVX-512 without spilling (4x4 and 4x3 were fastest of 4x4, 8x2, 2x8, 4x3, 6x2
#: and 8x3 on the 2-core EPYC).
CHANNEL_BLOCK = 4
POSITION_VECTORS = 4


def lanes(itemsize: int) -> int:
    """Elements of one :data:`VECTOR_BYTES` vector."""
    return VECTOR_BYTES // itemsize


def _bias_accumulators(L, bdata, b_off, K, U):
    """K x U accumulator slots (promoted to registers by LLVM), each starting at its channel's
    bias ``bdata[b_off + k]`` in every lane."""
    b = L.builder
    acc = [[cgutils.alloca_once(b, L.ty) for _ in range(U)] for _ in range(K)]
    for k in range(K):
        bk = L.splat(b.load(L.at(bdata, b.add(b_off, ir.Constant(L.i64, k)))))
        for u in range(U):
            b.store(bk, acc[k][u])
    return acc


def _store_accumulators(L, acc, sdata, s_off, s_stride):
    """``sdata[s_off + k*s_stride + u*lanes :][:lanes] = acc[k][u]``."""
    b = L.builder
    for k, row in enumerate(acc):
        obase = L.at(sdata, b.add(s_off, b.mul(s_stride, ir.Constant(L.i64, k))))
        for u, a in enumerate(row):
            L.store(b.load(a), L.at(obase, u * L.lanes))


@intrinsic
def correlate3x3_block(typingctx, stage, s_off, s_stride, xf, x_off, plane, row, C, wp, w_off, bp, b_off):
    """Accumulate a block of :data:`CHANNEL_BLOCK` output channels at
    ``POSITION_VECTORS * lanes`` consecutive flat positions, over all ``C`` input channels.

    For k < K, p < P (P = positions), with ``x = xf[x_off + ci*plane :]`` for each channel::

        stage[s_off + k*s_stride + p] = bp[b_off + k]
            + sum over ci, then i, then j, of  wp[w_off + ((ci*3 + i)*3 + j)*K + k] * x[i*row + p + j]

    accumulated in exactly that order with fused multiply-adds, whatever the block's position.
    ``wp`` is the filter packed as (C, 3, 3, K) for this channel block, ``xf`` a flat zero-padded
    input whose rows are ``row`` elements wide (so output p's taps sit at p + i*row + j). Reads
    ``xf[x_off + ci*plane + i*row : ... + (POSITION_VECTORS + 1) * lanes]``: the caller provides
    that much input (slack after the last plane).
    """
    dtype = stage.dtype
    V = lanes(dtype.bitwidth // 8)
    K, U = CHANNEL_BLOCK, POSITION_VECTORS

    def codegen(context, builder, sig, args):
        stage_, s_off_, s_stride_, xf_, x_off_, plane_, row_, C_, wp_, w_off_, bp_, b_off_ = args
        L = _Lanes(context, builder, dtype, V)
        i64 = L.i64
        sdata = _data(context, builder, sig.args[0], stage_)
        xdata = _data(context, builder, sig.args[3], xf_)
        wdata = _data(context, builder, sig.args[8], wp_)
        bdata = _data(context, builder, sig.args[10], bp_)
        acc = _bias_accumulators(L, bdata, b_off_, K, U)
        with cgutils.for_range(builder, C_) as loop:
            ci = loop.index
            xbase = L.at(xdata, builder.add(x_off_, builder.mul(ci, plane_)))
            wbase = L.at(wdata, builder.add(w_off_, builder.mul(ci, ir.Constant(i64, 9 * K))))
            cur = [[builder.load(acc[k][u]) for u in range(U)] for k in range(K)]
            for i in range(3):
                rbase = L.at(xbase, builder.mul(row_, ir.Constant(i64, i)))
                vecs = [L.load(L.at(rbase, m * V)) for m in range(U + 1)]
                for j in range(3):
                    xs = [vecs[u] if j == 0 else L.shifted(vecs[u], vecs[u + 1], j) for u in range(U)]
                    for k in range(K):
                        wv = L.splat(builder.load(L.at(wbase, (i * 3 + j) * K + k)))
                        for u in range(U):
                            cur[k][u] = L.fma(wv, xs[u], cur[k][u])
            for k in range(K):
                for u in range(U):
                    builder.store(cur[k][u], acc[k][u])
        _store_accumulators(L, acc, sdata, s_off_, s_stride_)
        return context.get_dummy_value()

    return types.none(stage, s_off, s_stride, xf, x_off, plane, row, C, wp, w_off, bp, b_off), codegen


@intrinsic
def correlate_block(typingctx, stage, s_off, s_stride, xf, x_off, plane, row, C, wp, w_off, bp, b_off, geom):
    """:func:`correlate3x3_block` for any filter at stride 1: ``geom = (kh, kw, dh, dw)``.

    For k < K and the P = ``POSITION_VECTORS * lanes`` positions p::

        stage[s_off + k*s_stride + p] = bp[b_off + k]
            + sum over ci, then i < kh, then j < kw, of
              wp[w_off + ((ci*kh + i)*kw + j)*K + k] * xf[x_off + ci*plane + i*dh*row + j*dw + p]

    with fused multiply-adds in that order. The taps are runtime loops, so each is a vector load
    at its own offset (no lane shifts): 16 multiply-adds per 4 loads and 4 broadcasts. Reads
    ``xf`` up to ``x_off + (C-1)*plane + (kh-1)*dh*row + (kw-1)*dw + P`` (exclusive).
    """
    dtype = stage.dtype
    V = lanes(dtype.bitwidth // 8)
    K, U = CHANNEL_BLOCK, POSITION_VECTORS

    def codegen(context, builder, sig, args):
        stage_, s_off_, s_stride_, xf_, x_off_, plane_, row_, C_, wp_, w_off_, bp_, b_off_, geom_ = args
        L = _Lanes(context, builder, dtype, V)
        i64 = L.i64
        kh_, kw_, dh_, dw_ = (builder.extract_value(geom_, q) for q in range(4))
        sdata = _data(context, builder, sig.args[0], stage_)
        xdata = _data(context, builder, sig.args[3], xf_)
        wdata = _data(context, builder, sig.args[8], wp_)
        bdata = _data(context, builder, sig.args[10], bp_)
        acc = _bias_accumulators(L, bdata, b_off_, K, U)
        taps = builder.mul(kh_, kw_)
        with cgutils.for_range(builder, C_) as cloop:
            ci = cloop.index
            xbase = L.at(xdata, builder.add(x_off_, builder.mul(ci, plane_)))
            wci = builder.add(w_off_, builder.mul(builder.mul(ci, taps), ir.Constant(i64, K)))
            with cgutils.for_range(builder, kh_) as iloop:
                rbase = L.at(xbase, builder.mul(builder.mul(iloop.index, dh_), row_))
                wi = builder.add(wci, builder.mul(builder.mul(iloop.index, kw_), ir.Constant(i64, K)))
                with cgutils.for_range(builder, kw_) as jloop:
                    tbase = L.at(rbase, builder.mul(jloop.index, dw_))
                    wt = L.at(wdata, builder.add(wi, builder.mul(jloop.index, ir.Constant(i64, K))))
                    xs = [L.load(L.at(tbase, u * V)) for u in range(U)]
                    for k in range(K):
                        wv = L.splat(builder.load(L.at(wt, k)))
                        for u in range(U):
                            builder.store(L.fma(wv, xs[u], builder.load(acc[k][u])), acc[k][u])
        _store_accumulators(L, acc, sdata, s_off_, s_stride_)
        return context.get_dummy_value()

    return types.none(stage, s_off, s_stride, xf, x_off, plane, row, C, wp, w_off, bp, b_off, geom), codegen


# --------------------------------------------------------------------------------------------
# 3x3 filter gradient: grad_w[co, ci, i, j] = sum over positions of g * shifted x
# --------------------------------------------------------------------------------------------

#: Output channels per :func:`grad3x3_rows` block: 2 x 9 accumulator vectors plus two gradient
#: vectors and the input rows fit in the 32 registers; the last odd channel uses a block of 1.
GRAD_CHANNEL_BLOCK = 2
#: Output channels per :func:`grad_tap_rows` block (any filter: one tap at a time, so four
#: gradient vectors share each input vector).
TAP_CHANNEL_BLOCK = 4


def _zero_accumulators(L, n):
    """n accumulator slots (promoted to registers by LLVM), zero in every lane."""
    acc = [cgutils.alloca_once(L.builder, L.ty) for _ in range(n)]
    for a in acc:
        L.builder.store(ir.Constant(L.ty, [0.0] * L.lanes), a)
    return acc


def _add_widened(L, adata, t, slot):
    """``adata[t*lanes :][:lanes] += slot`` with adata float64 (the slot widened first)."""
    b = L.builder
    v64 = ir.VectorType(ir.DoubleType(), L.lanes)
    a = b.load(slot)
    if a.type != v64:
        a = b.fpext(a, v64)
    ptr = b.bitcast(L.at(adata, t * L.lanes), v64.as_pointer())
    b.store(b.fadd(b.load(ptr, align=8), a), ptr, align=8)


def _grad3x3(K: int):
    """An intrinsic ``f(acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec)``.

    With ``V`` lanes, for k < K and taps (i, j), it forms in registers, in ``g``'s dtype::

        a[k, i, j] = sum_{r < rows, u < nvec}  g[g_off + k*g_cstride + r*g_rstride + u*V + lane]
                                              * xf[x_off + (r + i)*x_rstride + u*V + lane + j]

    lane by lane (fused multiply-adds in the order r, then u), then adds each lane, widened to
    float64, to ``acc64[((k*3 + i)*3 + j)*V + lane]``: short sums in the working precision,
    the long one in float64. Reads ``xf`` up to ``(rows + 1)*x_rstride + (nvec + 1)*V`` past
    ``x_off`` (the vector after each span feeds its last lanes' shifted taps).
    """

    @intrinsic
    def grad(typingctx, acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec):
        dtype = g.dtype
        V = VECTOR_BYTES * 8 // dtype.bitwidth

        def codegen(context, builder, sig, args):
            acc64_, g_, g_off_, g_cs_, g_rs_, xf_, x_off_, x_rs_, rows_, nvec_ = args
            L = _Lanes(context, builder, dtype, V)
            i64 = L.i64
            gdata = _data(context, builder, sig.args[1], g_)
            xdata = _data(context, builder, sig.args[5], xf_)
            adata = _data(context, builder, sig.args[0], acc64_)
            acc = _zero_accumulators(L, K * 9)
            with cgutils.for_range(builder, rows_) as rloop:
                r = rloop.index
                gbase = L.at(gdata, builder.add(g_off_, builder.mul(r, g_rs_)))
                xbase = L.at(xdata, builder.add(x_off_, builder.mul(r, x_rs_)))
                with cgutils.for_range(builder, nvec_) as uloop:
                    off = builder.mul(uloop.index, ir.Constant(i64, V))
                    gv = [L.load(L.at(gbase, builder.add(off, builder.mul(g_cs_, ir.Constant(i64, k)))))
                          for k in range(K)]
                    cur = [builder.load(a) for a in acc]
                    for i in range(3):
                        rb = L.at(xbase, builder.add(off, builder.mul(x_rs_, ir.Constant(i64, i))))
                        lo, hi = L.load(rb), L.load(L.at(rb, V))
                        for j in range(3):
                            xs = lo if j == 0 else L.shifted(lo, hi, j)
                            for k in range(K):
                                t = (k * 3 + i) * 3 + j
                                cur[t] = L.fma(gv[k], xs, cur[t])
                    for a, c in zip(acc, cur):
                        builder.store(c, a)
            for t in range(K * 9):
                _add_widened(L, adata, t, acc[t])
            return context.get_dummy_value()

        return types.none(acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec), codegen

    return grad


@intrinsic
def grad_tap_rows(typingctx, acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec, K):
    """One filter tap of the gradient for any filter: for k < ``K`` (at most
    :data:`TAP_CHANNEL_BLOCK`) and the V lanes::

        a[k] = sum_{r < rows, u < nvec}  g[g_off + k*g_cstride + r*g_rstride + u*V + lane]
                                        * xf[x_off + r*x_rstride + u*V + lane]

    in ``g``'s dtype (fused multiply-adds, order r then u), each lane then added, widened to
    float64, to ``acc64[k*V + lane]``. The tap's offset is folded into ``x_off`` by the caller.
    Reads ``xf`` up to ``x_off + (rows - 1)*x_rstride + nvec*V`` (exclusive).
    """
    dtype = g.dtype
    V = VECTOR_BYTES * 8 // dtype.bitwidth
    KB = TAP_CHANNEL_BLOCK

    def codegen(context, builder, sig, args):
        acc64_, g_, g_off_, g_cs_, g_rs_, xf_, x_off_, x_rs_, rows_, nvec_, K_ = args
        L = _Lanes(context, builder, dtype, V)
        i64 = L.i64
        gdata = _data(context, builder, sig.args[1], g_)
        xdata = _data(context, builder, sig.args[5], xf_)
        adata = _data(context, builder, sig.args[0], acc64_)
        acc = _zero_accumulators(L, KB)
        with cgutils.for_range(builder, rows_) as rloop:
            r = rloop.index
            gbase = L.at(gdata, builder.add(g_off_, builder.mul(r, g_rs_)))
            xbase = L.at(xdata, builder.add(x_off_, builder.mul(r, x_rs_)))
            with cgutils.for_range(builder, nvec_) as uloop:
                off = builder.mul(uloop.index, ir.Constant(i64, V))
                xv = L.load(L.at(xbase, off))
                for k in range(KB):  # channels past K compute on channel 0's data, unused
                    kk = builder.select(builder.icmp_signed("<", ir.Constant(i64, k), K_),
                                        ir.Constant(i64, k), ir.Constant(i64, 0))
                    gv = L.load(L.at(gbase, builder.add(off, builder.mul(g_cs_, kk))))
                    builder.store(L.fma(gv, xv, builder.load(acc[k])), acc[k])
        for k in range(KB):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, k), K_)):
                _add_widened(L, adata, k, acc[k])
        return context.get_dummy_value()

    return types.none(acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec, K), codegen


grad3x3_rows = _grad3x3(GRAD_CHANNEL_BLOCK)
grad3x3_rows_single = _grad3x3(1)
