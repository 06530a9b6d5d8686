"""Filter gradient: ``grad_w[co, ci, i, j] = sum over positions of g * shifted x``, short sums in
registers in the working precision, added to float64 accumulators per lane.

:func:`grad3x3_rows` (and ``grad3x3_rows_single``) form all nine 3x3 taps of a position vector
from three loads and lane shifts; :func:`grad_tap_rows` a run of taps of one row of any filter;
:func:`grad_pairs` a block of (output, input) channel pairs of a 1x1 filter. The
callers that keep them in bounds are the filter-gradient kernels of
:mod:`kernels.conv.filter_grad`.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .target import TARGET
from .vectors import VECTOR_BYTES, _data, _Lanes

#: Output channels per :func:`grad3x3_rows` block: 2 x 9 accumulator vectors plus two gradient
#: vectors and the input rows fit in 32 registers (the last odd channel uses a block of 1); in
#: 16, one channel's 9.
GRAD_CHANNEL_BLOCK = 2 if TARGET.registers >= 32 else 1
#: Output channels per :func:`grad_tap_rows` block (any filter: one tap at a time, so four
#: gradient vectors share each input vector).
TAP_CHANNEL_BLOCK = 4
#: Taps of one filter row per :func:`grad_tap_rows` call: 4 x 5 accumulators, four gradient
#: vectors and an input vector fit in 32 registers; 4 x 2 in 16.
ROW_TAPS = 5 if TARGET.registers >= 32 else 2
#: The block of :func:`grad_tap_rows3`, for filter rows of three taps (3x3 strided or dilated,
#: the commonest filters after the stride-1 3x3) with 32 registers: 8 channels x 3 taps, 24
#: accumulators, the three input vectors and one gradient vector at a time. Every product is
#: used, where the 4 x 5 block spends 8 of its 20 multiply-adds on taps a 3-wide row does not
#: have, and each position takes 11 loads for 24 multiply-adds (9 for 12 used ones). 0 with 16
#: registers, where the callers keep :func:`grad_tap_rows`.
TAP3_CHANNEL_BLOCK = 8 if TARGET.registers >= 32 else 0
#: Input channels per :func:`grad_pairs` block, beside its :data:`TAP_CHANNEL_BLOCK` output
#: channels: 4 x 4 accumulators and 4 + 4 operand vectors fit in 32 registers; 4 x 2 and 4 + 2 in 16.
PAIR_CHANNEL_BLOCK = 4 if TARGET.registers >= 32 else 2


def _operands(context, builder, sig, args, dtype, V):
    """The lanes helper and the data pointers of ``g`` (argument 1), ``xf`` (5) and ``acc64`` (0),
    the operands both gradient intrinsics share, emitted in that order."""
    L = _Lanes(context, builder, dtype, V)
    return (L, _data(context, builder, sig.args[1], args[1]), _data(context, builder, sig.args[5], args[5]),
            _data(context, builder, sig.args[0], args[0]))


def _zero_accumulators(L, n):
    """n accumulator slots (promoted to registers by LLVM), zero in every lane."""
    acc = [cgutils.alloca_once(L.builder, L.ty) for _ in range(n)]
    for a in acc:
        L.builder.store(ir.Constant(L.ty, [0.0] * L.lanes), a)
    return acc


def _for_positions(L, gdata, xdata, g_off, g_rstride, x_off, x_rstride, rows, nvec, body):
    """Emit ``body(gbase, xbase, off)`` for each row ``r < rows`` and vector ``u < nvec`` of
    positions, in that order: ``gbase``/``xbase`` point at row ``r`` of ``g`` and ``xf``
    (``g_off + r*g_rstride``, ``x_off + r*x_rstride``), ``off`` is ``u * lanes``."""
    b = L.builder
    with cgutils.for_range(b, rows) as rloop:
        r = rloop.index
        gbase = L.at(gdata, b.add(g_off, b.mul(r, g_rstride)))
        xbase = L.at(xdata, b.add(x_off, b.mul(r, x_rstride)))
        with cgutils.for_range(b, nvec) as uloop:
            body(gbase, xbase, b.mul(uloop.index, ir.Constant(L.i64, L.lanes)))


def _add_widened(L, adata, t, slot):
    """``adata[t*lanes :][:lanes] += slot`` with adata float64 (the slot widened first)."""
    b = L.builder
    v64 = ir.VectorType(ir.DoubleType(), L.lanes)
    a = b.load(slot)
    if a.type != v64:
        a = b.fpext(a, v64)
    ptr = b.bitcast(L.at(adata, t * L.lanes), v64.as_pointer())
    b.store(b.fadd(b.load(ptr, align=8), a), ptr, align=8)


def _add_block_widened(L, adata, acc, outer, inner, outer_count, inner_count):
    """:func:`_add_widened` for the slots ``o*inner + i`` of a block with ``o < outer_count`` and
    ``i < inner_count`` (run-time counts: the block's channels or taps that exist)."""
    b = L.builder
    for o in range(outer):
        for i in range(inner):
            inside = b.and_(b.icmp_signed("<", ir.Constant(L.i64, o), outer_count),
                            b.icmp_signed("<", ir.Constant(L.i64, i), inner_count))
            with b.if_then(inside):
                _add_widened(L, adata, o * inner + i, acc[o * inner + i])


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
            L, gdata, xdata, adata = _operands(context, builder, sig, args, dtype, V)
            i64 = L.i64
            acc = _zero_accumulators(L, K * 9)

            def body(gbase, xbase, off):
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

            _for_positions(L, gdata, xdata, g_off_, g_rs_, x_off_, x_rs_, rows_, nvec_, body)
            for t in range(K * 9):
                _add_widened(L, adata, t, acc[t])
            return context.get_dummy_value()

        return types.none(acc64, g, g_off, g_cstride, g_rstride, xf, x_off, x_rstride, rows, nvec), codegen

    return grad


def _grad_taps(KB: int, JB: int):
    """An intrinsic ``f(acc64, g, g_off, g_cstride, g_rstride, g_cols, xf, x_off, x_rstride, rows,
    nvec, K, J, j0, dw, sw, phase_stride)``: :func:`grad_tap_rows` with a block of ``KB``
    channels by ``JB`` taps."""

    @intrinsic
    def grad(typingctx, acc64, g, g_off, g_cstride, g_rstride, g_cols, xf, x_off, x_rstride, rows, nvec, K, J, j0,
             dw, sw, phase_stride):
        dtype = g.dtype
        V = VECTOR_BYTES * 8 // dtype.bitwidth

        def codegen(context, builder, sig, args):
            acc64_, g_, g_off_, g_cs_, g_rs_, g_cols_, xf_, x_off_, x_rs_, rows_, nvec_, K_, J_, j0_, dw_, sw_, ps_ = args
            L = _Lanes(context, builder, dtype, V)
            gdata = _data(context, builder, sig.args[1], g_)
            xdata = _data(context, builder, sig.args[6], xf_)
            adata = _data(context, builder, sig.args[0], acc64_)
            i64 = L.i64

            def clamp(c, count):  # channels and taps past the count compute on the first's data, unused
                return builder.select(builder.icmp_signed("<", ir.Constant(i64, c), count),
                                      ir.Constant(i64, c), ir.Constant(i64, 0))

            def tap_offset(j):
                d = builder.mul(builder.add(j0_, clamp(j, J_)), dw_)
                return builder.add(builder.mul(builder.srem(d, sw_), ps_), builder.sdiv(d, sw_))

            # the taps' column offsets, without the two divisions per tap at stride 1 (the
            # commonest case, where they cost a tenth of the call on LeNet-5's second layer)
            slots = [cgutils.alloca_once(builder, i64) for _ in range(JB)]
            with builder.if_else(builder.icmp_signed("==", sw_, ir.Constant(sw_.type, 1))) as (unit, strided):
                with unit:
                    for j, s in enumerate(slots):
                        builder.store(builder.mul(builder.add(j0_, clamp(j, J_)), dw_), s)
                with strided:
                    for j, s in enumerate(slots):
                        builder.store(tap_offset(j), s)
            g_offs = [builder.mul(g_cs_, clamp(k, K_)) for k in range(KB)]
            x_offs = [builder.load(s) for s in slots]
            acc = _zero_accumulators(L, KB * JB)

            i32v = ir.VectorType(L.i32, V)
            lane = ir.Constant(i32v, list(range(V)))
            zero = ir.Constant(L.ty, [0.0] * V)

            def splat32(s):
                v = builder.insert_element(ir.Constant(i32v, ir.Undefined), builder.trunc(s, L.i32), ir.Constant(L.i32, 0))
                return builder.shuffle_vector(v, ir.Constant(i32v, ir.Undefined), ir.Constant(i32v, [0] * V))

            def body(gbase, xbase, off):
                cur = [builder.load(a) for a in acc]
                xv = [L.load(L.at(xbase, builder.add(off, x_offs[j]))) for j in range(JB)]
                # the lanes at or past column g_cols of the row read as zeros (what follows the
                # row in g is another row: in bounds, not this row's data)
                inside = builder.icmp_signed("<", lane, splat32(builder.sub(g_cols_, off)))
                for k in range(KB):  # one gradient vector at a time feeds the JB taps
                    gv = builder.select(inside, L.load(L.at(gbase, builder.add(off, g_offs[k]))), zero)
                    for j in range(JB):
                        cur[j * KB + k] = L.fma(gv, xv[j], cur[j * KB + k])
                for a, c in zip(acc, cur):
                    builder.store(c, a)

            _for_positions(L, gdata, xdata, g_off_, g_rs_, x_off_, x_rs_, rows_, nvec_, body)
            whole = builder.and_(builder.icmp_signed("==", K_, ir.Constant(K_.type, KB)),
                                 builder.icmp_signed("==", J_, ir.Constant(J_.type, JB)))
            with builder.if_else(whole) as (full, part):
                with full:  # a whole block, the common case: no branch per slot
                    for t, a in enumerate(acc):
                        _add_widened(L, adata, t, a)
                with part:
                    _add_block_widened(L, adata, acc, JB, KB, J_, K_)
            return context.get_dummy_value()

        sig = types.none(acc64, g, g_off, g_cstride, g_rstride, g_cols, xf, x_off, x_rstride, rows, nvec, K, J, j0,
                         dw, sw, phase_stride)
        return sig, codegen

    return grad


grad_tap_rows = _grad_taps(TAP_CHANNEL_BLOCK, ROW_TAPS)
grad_tap_rows.__doc__ = """Up to :data:`ROW_TAPS` taps of one filter row of the gradient, for any filter: for
k < ``K`` (at most :data:`TAP_CHANNEL_BLOCK`), j < ``J`` (at most :data:`ROW_TAPS`) and
the V lanes::

    a[k, j] = sum_{r < rows, u < nvec}  g'[g_off + k*g_cstride + r*g_rstride + u*V + lane]
                                       * xf[x_off + r*x_rstride + u*V + lane + o(j0 + j)]

where ``g'`` is ``g`` at the columns ``u*V + lane < g_cols`` of a row and zero past them
(read, then replaced by zeros: the caller keeps each row's vectors within ``g``), and
``o(t) = ((t dw) % sw) * phase_stride + (t dw) // sw``: the column offset of tap ``t``
of the row at dilation ``dw`` (``sw = 1``), or, at a column stride ``sw``, in an input whose
rows hold its ``sw`` column phases side by side, ``phase_stride`` apart (tap ``t`` reads
phase ``(t dw) % sw``). Sums in ``g``'s dtype (fused multiply-adds, order r then u), each
lane then added, widened to float64, to ``acc64[(j*TAP_CHANNEL_BLOCK + k)*V + lane]``. Each
gradient vector feeds the ``J`` taps and each input vector the ``K`` channels. Reads ``xf``
up to ``x_off + (rows - 1)*x_rstride + nvec*V + max_j o(j0 + j)`` (exclusive).
"""
#: :func:`grad_tap_rows` for three taps and :data:`TAP3_CHANNEL_BLOCK` channels (``J`` at most
#: 3, ``K`` at most 8; ``acc64[(j*TAP3_CHANNEL_BLOCK + k)*V + lane]``): each accumulator sums
#: the same products in the same order as there, so the two give the same bits.
grad_tap_rows3 = _grad_taps(max(1, TAP3_CHANNEL_BLOCK), 3)


@intrinsic
def grad_pairs(typingctx, acc64, g, g_off, g_cstride, x, x_off, x_cstride, nvec, K, J):
    """The 1x1 filter gradient over contiguous positions, a block of channel pairs: for
    k < ``K`` (at most :data:`TAP_CHANNEL_BLOCK`), j < ``J`` (at most :data:`PAIR_CHANNEL_BLOCK`)
    and the V lanes::

        a[k, j] = sum_{u < nvec}  g[g_off + k*g_cstride + u*V + lane] * x[x_off + j*x_cstride + u*V + lane]

    in ``g``'s dtype (fused multiply-adds in the order u), each lane then added, widened to
    float64, to ``acc64[(k*PAIR_CHANNEL_BLOCK + j)*V + lane]``. Each loaded vector feeds K or J
    multiply-adds (the tap blocks' one input channel feeds four): a matrix product's register
    block. Reads ``nvec*V`` elements from each channel's offset.
    """
    dtype = g.dtype
    V = VECTOR_BYTES * 8 // dtype.bitwidth
    KB, JB = TAP_CHANNEL_BLOCK, PAIR_CHANNEL_BLOCK

    def codegen(context, builder, sig, args):
        acc64_, g_, g_off_, g_cs_, x_, x_off_, x_cs_, nvec_, K_, J_ = args
        L = _Lanes(context, builder, dtype, V)
        gdata = _data(context, builder, sig.args[1], args[1])
        xdata = _data(context, builder, sig.args[4], args[4])
        adata = _data(context, builder, sig.args[0], args[0])
        i64 = L.i64

        def channel(c, count):  # channels past the count compute on channel 0's data, unused
            return builder.select(builder.icmp_signed("<", ir.Constant(i64, c), count),
                                  ir.Constant(i64, c), ir.Constant(i64, 0))

        gbases = [L.at(gdata, builder.add(g_off_, builder.mul(g_cs_, channel(k, K_)))) for k in range(KB)]
        xbases = [L.at(xdata, builder.add(x_off_, builder.mul(x_cs_, channel(j, J_)))) for j in range(JB)]
        acc = _zero_accumulators(L, KB * JB)
        with cgutils.for_range(builder, nvec_) as uloop:
            off = builder.mul(uloop.index, ir.Constant(i64, V))
            gv = [L.load(L.at(b, off)) for b in gbases]
            xv = [L.load(L.at(b, off)) for b in xbases]
            for k in range(KB):
                for j in range(JB):
                    a = acc[k * JB + j]
                    builder.store(L.fma(gv[k], xv[j], builder.load(a)), a)
        _add_block_widened(L, adata, acc, KB, JB, K_, J_)
        return context.get_dummy_value()

    return types.none(acc64, g, g_off, g_cstride, x, x_off, x_cstride, nvec, K, J), codegen


grad3x3_rows = _grad3x3(GRAD_CHANNEL_BLOCK)
grad3x3_rows_single = _grad3x3(1)
