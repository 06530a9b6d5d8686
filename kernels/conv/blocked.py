"""The register-blocked many-channel forward kernels: any filter, at any stride, over an
explicitly zero-padded copy of the input (at a stride, of its phases).

:func:`_pack_filter` regroups the filter and bias into blocks of
:data:`kernels._simd.CHANNEL_BLOCK` output channels. :func:`_correlate_blocked_kernel` runs the
SIMD blocks of :mod:`kernels._simd.blocked` over each output tile of a padded copy made
beforehand (the 3x3 at stride 1, and the input gradient's phases, which all read one copy of
``grad_out``), in a private buffer whose rows are as wide as the padded rows, so there are no
border cases; :func:`_correlate_bands` (any other filter, and any stride) does the same over
bands of the padded input's phases that each task copies for itself (at stride 1, the one
phase: the padded plane).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import _simd
from kernels._config import jit, specialise

from .phases import PHASE_BAND, ROW_COPIES


def _pack_filter(wc, b, K=_simd.CHANNEL_BLOCK):
    """The filter (Co, C, kh, kw) and bias (Co,) regrouped for the blocked kernels: blocks of K
    output channels, each laid out (C, kh, kw, K), with zero channels completing the last block."""
    Co, C, kh, kw = wc.shape
    ncb = (Co + K - 1) // K
    wfull = np.zeros((ncb * K, C, kh, kw), dtype=wc.dtype)
    wfull[:Co] = wc
    bfull = np.zeros(ncb * K, dtype=wc.dtype)
    bfull[:Co] = b
    return np.ascontiguousarray(wfull.reshape(ncb, K, C, kh, kw).transpose(0, 2, 3, 4, 1)).reshape(-1), bfull


def _read_slack(itemsize):
    """The zeros a padded copy for the blocked kernels needs after its last plane: the last
    block of a tile reads whole vectors past its last position."""
    return 2 * max(_simd.POSITION_VECTORS, _simd.TAP_POSITION_VECTORS) * _simd.lanes(itemsize) + _simd.lanes(itemsize)


@jit(inline="always")
def _tiling(out, rows_per_task, row, three, K):  # pragma: no cover - compiled
    """``(B, ncb, nrb, S)``: positions per SIMD block (of the 3x3 lane-shift block when
    ``three``, else of the load-per-tap one), blocks of ``K`` channels, bands of
    ``rows_per_task`` output rows, and the elements per channel of a tile's private buffer
    (whole SIMD blocks over its rows of ``row`` positions, plus one)."""
    vectors = _simd.POSITION_VECTORS if three else _simd.TAP_POSITION_VECTORS
    B = vectors * (_simd.VECTOR_BYTES // out.itemsize)
    S = (rows_per_task * row + B - 1) // B * B + B
    return B, (out.shape[1] + K - 1) // K, (out.shape[2] + rows_per_task - 1) // rows_per_task, S


@jit(inline="always")
def _write_tile(stage, S, row, out, n, c0, y0, y1, K):  # pragma: no cover - compiled
    """Copy a tile's outputs out of its private buffer: channel ``k`` of the block of ``K``
    (``c0 + k`` of ``out``) is ``S`` elements of ``stage`` from ``k * S``, output row ``y`` of
    it ``row`` elements from ``(y - y0) * row``, whose first ``Wo`` are the outputs (the rest
    dropped)."""
    Co, Wo = out.shape[1], out.shape[3]
    for k in range(min(K, Co - c0)):
        for y in range(y0, y1):
            src = stage[k * S + (y - y0) * row :]
            dst = out[n, c0 + k, y]
            for xo in range(Wo):
                dst[xo] = src[xo]


@jit(parallel=True)
def _correlate_blocked_kernel(xflat, N, C, plane, row, wpack, bpack, out, rows_per_task, offsets, three):
    """out = the correlation of the zero-padded input, plus bias, with the taps at flat
    offsets ``offsets`` from each output position.

    ``xflat`` holds the padded batch flat, planes of ``plane`` elements in rows of ``row``
    elements, followed by zero slack for the last block's reads; ``wpack``/``bpack`` the
    filter and bias packed per block of K output channels (see :func:`_pack_filter`). Output
    (y, x) is position ``y * row + x`` of its plane, and its tap ``t`` sits ``offsets[t]``
    after it. Each task owns a tile (image, K output channels,
    rows_per_task output rows) and runs register-blocked SIMD blocks over the tile's positions
    at once, into a private buffer whose rows are ``row`` long: no border cases at all. The
    positions past a row's outputs are computed and dropped when the tile is copied out.
    ``three`` (a 3x3 undilated filter at stride 1) takes :func:`kernels._simd.correlate3x3_block`
    (lane shifts), the rest :func:`kernels._simd.correlate_block` (a load per tap).
    """
    Ho, Wo = out.shape[2], out.shape[3]
    K = _simd.CHANNEL_BLOCK
    B, ncb, nrb, S = _tiling(out, rows_per_task, row, three, K)
    taps = offsets.shape[0]
    for t in prange(N * ncb * nrb):
        n = t // (ncb * nrb)
        r = t - n * (ncb * nrb)
        cb = r // nrb
        c0 = cb * K
        y0 = (r % nrb) * rows_per_task
        y1 = min(y0 + rows_per_task, Ho)
        stage = np.empty(K * S, dtype=out.dtype)
        L = (y1 - y0 - 1) * row + Wo
        base = n * C * plane + y0 * row
        for p in range(0, L, B):
            if three:
                _simd.correlate3x3_block(stage, p, S, xflat, base + p, plane, row, C, wpack, cb * C * 9 * K, bpack,
                                         cb * K)
            else:
                _simd.correlate_block(stage, p, S, xflat, base + p, plane, C, wpack, cb * C * taps * K, bpack,
                                      cb * K, offsets)
        _write_tile(stage, S, row, out, n, c0, y0, y1, K)


def _correlate_bands(x, pt, pl, sh, sw, prow, pcol, Wq, band_rows, wpack, bpack, out, rows_per_task, offsets,
                     scratch, channels_per_pass):  # pragma: no cover - compiled
    """out = the correlation of ``x`` zero-padded by ``pt`` rows on top and ``pl`` columns on
    the left (and zeros past its other edges), plus bias, with taps at flat ``offsets`` on the
    phases ``prow`` x ``pcol`` of the stride ``(sh, sw)`` (see
    :func:`kernels.conv.phases.phase_offsets`, shape ``(band_rows, Wq)``), on
    :func:`kernels._simd.correlate_block` (a load per tap). One build per way of copying a row
    (:data:`BANDS`): ``_phase_band`` is the :data:`kernels.conv.phases.PHASE_BAND` build for
    the stride (one kernel holding every way took 4.8 s to compile, one build about 2).

    Each task owns ``rows_per_task`` output rows of one image, all output channels: it copies
    the band of phase rows they read (``band_rows`` = ``rows_per_task`` plus the filter's
    reach, :func:`kernels.conv.phases._phase_band`) into its part of ``scratch`` (``N * bands``
    equal parts, each ending in zero slack for the reads of its last block) and runs every
    block of output channels over it while it is in cache. Measured on the 2-core EPYC against
    a copy of the whole batch made first, on 16-image batches: 16x32x64x64 float32 stride 2
    about 0.4 ms faster (of 4.4), float64 10.4 -> 8.4 ms. Each output is summed in the same
    order whatever the band, so the partition does not change a bit. At stride 1 (any filter
    but the 3x3, which keeps :func:`_correlate_blocked_kernel`), against the padded copy of
    the whole batch on the 2-core Intel Xeon, alternating, float32: 16x16x64x64 dilated 3x3
    3.1 -> 2.7 ms, 5x5 7.3 -> 6.8 ms, 16x64x32x32 1x1 2.6 -> 2.1 ms.

    In which order (``channels_per_pass``, from :func:`kernels.conv.tiles.band_channels_per_pass`):
    0 runs each block of output channels over the whole band in turn; otherwise each block of
    positions runs every block of output channels over ``channels_per_pass`` input channels at a
    time (:func:`kernels._simd.correlate_block_channels`), few enough that the rows of input
    they read stay in the first-level cache while all the output channels use them. A block of
    positions of the 3x3 at stride 2 reads six rows of phases per input channel: over 32
    channels more than the L1 holds, so in the first order every block of output channels
    streamed them from the L2 again. Measured alternating on the 2-core Intel Xeon, against the
    first order: 16x32x64x64 float32 stride 2 3.6 -> 3.1 ms (float64 9.1 -> 6.6), 8x64x32x32 to
    128 channels stride 2 2.0 -> 1.7. Filters whose rows over all channels fit in the L1 (and
    the 1x1, a row read once) keep the first order, which ran 2-10% faster for them. Each
    output's multiply-adds run in the same order either way: the same bits.
    """
    N, C = x.shape[0], x.shape[1]
    Ho, Wo = out.shape[2], out.shape[3]
    K = _BAND_K
    B, ncb, nrb, S = _tiling(out, rows_per_task, Wq, False, K)
    bplane = prow.shape[0] * pcol.shape[0] * band_rows * Wq  # one input channel's band
    taps = offsets.shape[0]
    for t in prange(N * nrb):
        n = t // nrb
        y0 = (t - n * nrb) * rows_per_task
        y1 = min(y0 + rows_per_task, Ho)
        size = scratch.shape[0] // (N * nrb)
        band = scratch[t * size : (t + 1) * size]
        for i in range(C * bplane, size):
            band[i] = 0  # the last block reads whole vectors past its last position
        _phase_band(x, n, y0, band, band_rows, Wq, pt, pl, sh, sw, prow, pcol)
        L = (y1 - y0 - 1) * Wq + Wo
        if channels_per_pass == 0:  # each block of output channels over the whole band in turn
            stage = np.empty(K * S, dtype=out.dtype)
            for cb in range(ncb):
                for p in range(0, L, B):
                    _band_block(stage, p, S, band, p, bplane, C, wpack, cb * C * taps * K, bpack, cb * K, offsets)
                _write_tile(stage, S, Wq, out, n, cb * K, y0, y1, K)
        else:  # each block of positions: every block of output channels, a few input channels at a time
            stage = np.empty(ncb * K * S, dtype=out.dtype)
            for p in range(0, L, B):
                for c0 in range(0, C, channels_per_pass):
                    c1 = min(c0 + channels_per_pass, C)
                    for cb in range(ncb):
                        _band_block_channels(stage, cb * K * S + p, S, band, p, bplane, c0, c1, wpack,
                                             cb * C * taps * K, bpack, cb * K, offsets, c0 == 0)
            for cb in range(ncb):
                _write_tile(stage[cb * K * S :], S, Wq, out, n, cb * K, y0, y1, K)


#: The block of output channels :func:`_correlate_bands` runs (:data:`BANDS`), and its SIMD
#: blocks; :data:`BANDS6` overrides all three.
_BAND_K = _simd.CHANNEL_BLOCK
_band_block = _simd.correlate_block
_band_block_channels = _simd.correlate_block_channels

#: :func:`_correlate_bands` built for each way of copying a row
#: (:data:`kernels.conv.phases.ROW_COPIES`), each compiled on its first call.
BANDS = tuple(specialise(_correlate_bands, f"_correlate_bands_{k}", parallel=True, _phase_band=PHASE_BAND[k])
              for k in ROW_COPIES)
#: The same over blocks of :data:`kernels._simd.WIDE_CHANNEL_BLOCK` output channels (None
#: without the registers for them): for 5 or 6 output channels, one block where blocks of four
#: compute 8 (:func:`band_channel_block`).
BANDS6 = tuple(specialise(_correlate_bands, f"_correlate_bands6_{k}", parallel=True, _phase_band=PHASE_BAND[k],
                          _BAND_K=_simd.WIDE_CHANNEL_BLOCK, _band_block=_simd.correlate_block6,
                          _band_block_channels=_simd.correlate_block_channels6)
               for k in ROW_COPIES) if _simd.WIDE_CHANNEL_BLOCK else None


def band_channel_block(Co):
    """The block of output channels the banded forward runs ``Co`` of them in: the wide block
    where it computes fewer channels than blocks of four (5 or 6 channels: 6 against 8; also
    17-18, 29-30, ...), else four."""
    K, W = _simd.CHANNEL_BLOCK, _simd.WIDE_CHANNEL_BLOCK
    if W and -(-Co // W) * W < -(-Co // K) * K:
        return W
    return K
