"""Multi-channel correlation, register-blocked over output channels and positions: the CNN
layer, bound by multiply-adds.

A block keeps :data:`CHANNEL_BLOCK` output channels x :data:`POSITION_VECTORS` vectors of
positions in registers through the whole loop over input channels (the auto-vectorised loop
loaded and stored its accumulators once per input channel): :func:`correlate3x3_block` for 3x3
undilated filters (lane shifts), :func:`correlate_block` for any other (a load per tap). The
callers that keep them in bounds are the kernels of :mod:`kernels.conv.blocked`.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .target import TARGET
from .vectors import _data, _Lanes, lanes

#: Output channels and vectors of positions a :data:`correlate3x3_block` keeps in registers:
#: 4 x 4 accumulators, 5 loaded rows, 4 shifted ones and a broadcast weight fit the 32 vector
#: registers of AVX-512 and NEON without spilling (4x4 and 4x3 were fastest of 4x4, 8x2, 2x8,
#: 4x3, 6x2 and 8x3 on the 2-core EPYC); with 16 registers (AVX2, SSE2), 4 x 2: 8 accumulators,
#: 3 loaded rows, 2 shifted ones and a broadcast (14).
CHANNEL_BLOCK = 4
POSITION_VECTORS = 4 if TARGET.registers >= 32 else 2
#: Vectors of positions a :func:`correlate_block` / :func:`correlate_block_channels` keeps in
#: registers: it holds no shifted rows (a load per tap), so with 16 registers 4 x 3
#: accumulators, 3 loaded vectors and a broadcast fit (16). Float32 on the 2-core Zen 3 EPYC
#: (AVX2), three pairs of processes, 4 x 3 against 4 x 2: 1x1 16x64x32x32 to 128 channels
#: 6.4-8.1 -> 4.9-6.4 ms, 5x5 18.0 -> 15.3-16.4, dilated 3x3 7.9-8.5 -> 6.6-7.7, 3x3 at stride 2
#: 10.9-11.4 -> 9.9-12.6; 4 x 4 spilled (5x5: 36 ms). The 3x3 lane-shift block at 4 x 3 ran
#: 25-50% slower than at 4 x 2, so it keeps :data:`POSITION_VECTORS`.
TAP_POSITION_VECTORS = 4 if TARGET.registers >= 32 else 3
#: The wider channel block of :func:`correlate_block6` / :func:`correlate_block_channels6`, for
#: correlations with 5 or 6 output channels (the input gradient of LeNet-5's second layer, whose
#: input has 6): 6 x :data:`TAP_POSITION_VECTORS` accumulators, the loaded vectors and a
#: broadcast fit 32 registers (29), where blocks of four computed 8 channels for 6 (that input
#: gradient, (64, 16, 14, 14) 5x5 float32, ran about 16% faster on the 2-core Zen 4 EPYC,
#: alternating in one process). 0 with 16 registers.
WIDE_CHANNEL_BLOCK = 6 if TARGET.registers >= 32 else 0


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


def _tap_loop_codegen(context, builder, sig, args, dtype, channels, K):
    """The body of :func:`correlate_block` (``channels`` False: every input channel, from the
    bias) and of :func:`correlate_block_channels` (``channels`` True: channels ``c0 <= ci <
    c1``, from the bias when ``first`` is nonzero, else from the partial sums in ``stage``),
    over blocks of ``K`` output channels."""
    V = lanes(dtype.bitwidth // 8)
    U = TAP_POSITION_VECTORS
    if channels:
        stage_, s_off_, s_stride_, xf_, x_off_, plane_, c0_, c1_, wp_, w_off_, bp_, b_off_, offsets_, first_ = args
        iw, ib, io = 8, 10, 12
    else:
        stage_, s_off_, s_stride_, xf_, x_off_, plane_, C_, wp_, w_off_, bp_, b_off_, offsets_ = args
        iw, ib, io = 7, 9, 11
    L = _Lanes(context, builder, dtype, V)
    i64 = L.i64
    sdata = _data(context, builder, sig.args[0], stage_)
    xdata = _data(context, builder, sig.args[3], xf_)
    wdata = _data(context, builder, sig.args[iw], wp_)
    bdata = _data(context, builder, sig.args[ib], bp_)
    odata = _data(context, builder, sig.args[io], offsets_)
    taps = cgutils.create_struct_proxy(sig.args[io])(context, builder, value=offsets_).nitems
    if channels:
        acc = [[cgutils.alloca_once(builder, L.ty) for _ in range(U)] for _ in range(K)]
        with builder.if_else(builder.icmp_signed("!=", first_, ir.Constant(first_.type, 0))) as (then, other):
            with then:
                for k, row in enumerate(_bias_accumulators(L, bdata, b_off_, K, U)):
                    for u, a in enumerate(row):
                        builder.store(builder.load(a), acc[k][u])
            with other:
                for k in range(K):
                    obase = L.at(sdata, builder.add(s_off_, builder.mul(s_stride_, ir.Constant(i64, k))))
                    for u in range(U):
                        builder.store(L.load(L.at(obase, u * V)), acc[k][u])
        c0, count = c0_, builder.sub(c1_, c0_)
    else:
        acc = _bias_accumulators(L, bdata, b_off_, K, U)
        c0, count = ir.Constant(i64, 0), C_
    with cgutils.for_range(builder, count) as cloop:
        ci = builder.add(c0, cloop.index)
        xbase = L.at(xdata, builder.add(x_off_, builder.mul(ci, plane_)))
        wci = builder.add(w_off_, builder.mul(builder.mul(ci, taps), ir.Constant(i64, K)))
        with cgutils.for_range(builder, taps) as tloop:
            tbase = L.at(xbase, builder.load(builder.gep(odata, [tloop.index])))
            wt = L.at(wdata, builder.add(wci, builder.mul(tloop.index, ir.Constant(i64, K))))
            xs = [L.load(L.at(tbase, u * V)) for u in range(U)]
            for k in range(K):
                wv = L.splat(builder.load(L.at(wt, k)))
                for u in range(U):
                    builder.store(L.fma(wv, xs[u], builder.load(acc[k][u])), acc[k][u])
    _store_accumulators(L, acc, sdata, s_off_, s_stride_)
    return context.get_dummy_value()


def _correlate_block(K):
    """:func:`correlate_block` over blocks of ``K`` output channels."""

    @intrinsic
    def correlate_block(typingctx, stage, s_off, s_stride, xf, x_off, plane, C, wp, w_off, bp, b_off, offsets):
        dtype = stage.dtype

        def codegen(context, builder, sig, args):
            return _tap_loop_codegen(context, builder, sig, args, dtype, False, K)

        return types.none(stage, s_off, s_stride, xf, x_off, plane, C, wp, w_off, bp, b_off, offsets), codegen

    return correlate_block


def _correlate_block_channels(K):
    """:func:`correlate_block_channels` over blocks of ``K`` output channels."""

    @intrinsic
    def correlate_block_channels(typingctx, stage, s_off, s_stride, xf, x_off, plane, c0, c1, wp, w_off, bp, b_off,
                                 offsets, first):
        dtype = stage.dtype

        def codegen(context, builder, sig, args):
            return _tap_loop_codegen(context, builder, sig, args, dtype, True, K)

        return types.none(stage, s_off, s_stride, xf, x_off, plane, c0, c1, wp, w_off, bp, b_off, offsets,
                          first), codegen

    return correlate_block_channels


correlate_block = _correlate_block(CHANNEL_BLOCK)
correlate_block.__doc__ = """:func:`correlate3x3_block` for any filter, at any stride: tap ``t`` (``i * kw + j``) of
output position ``p`` reads ``xf[x_off + ci*plane + offsets[t] + p]``. On a padded plane
of rows ``row`` long, ``offsets[t] = i*dh*row + j*dw``; on the phases of a strided grid (see
:func:`kernels.conv.phases._phase_band`), the position of tap ``(i, j)`` there, so that
the outputs of a strided row are consecutive positions.

For k < K and the P = ``TAP_POSITION_VECTORS * lanes`` positions p::

    stage[s_off + k*s_stride + p] = bp[b_off + k]
        + sum over ci, then t < len(offsets), of
          wp[w_off + (ci*taps + t)*K + k] * xf[x_off + ci*plane + offsets[t] + p]

with fused multiply-adds in that order. The taps are a runtime loop, so each is a vector
load at its own offset (no lane shifts): K x U multiply-adds per U loads and K broadcasts.
Reads ``xf`` up to ``x_off + (C-1)*plane + max(offsets) + P`` (exclusive).
"""
correlate_block_channels = _correlate_block_channels(CHANNEL_BLOCK)
correlate_block_channels.__doc__ = """:func:`correlate_block` over the input channels ``c0 <= ci < c1`` only, starting from
the bias when ``first`` is nonzero (``c0`` the first channel) and otherwise from the sums
that the call for the channels before ``c0`` left in ``stage``: a pass per range of
channels forms each output's multiply-adds in the same order as one pass over all of them
(a float stored and loaded back is the same float), so the result is the same bits. Lets a
caller run every block of output channels over a few input channels while their rows of
input are in the first-level cache (:func:`kernels.conv.blocked._correlate_bands`)."""
#: :func:`correlate_block` and :func:`correlate_block_channels` over blocks of
#: :data:`WIDE_CHANNEL_BLOCK` channels (filters packed so): each output's multiply-adds in the
#: same order as in blocks of four, so the same bits.
correlate_block6 = _correlate_block(max(1, WIDE_CHANNEL_BLOCK))
correlate_block_channels6 = _correlate_block_channels(max(1, WIDE_CHANNEL_BLOCK))
