"""Tile sizes and thresholds of the convolution kernels, in one place.

Each is a fixed size derived from the shape and the cache, never from the thread count, so
results are bit-identical for any number of threads (the banded forward's bands are the one
partition that follows the thread count: no sum crosses a band). The dispatch in
:mod:`.forward` reads the forward ones at call time as attributes of this module
(``tiles._STREAM_MIN_BYTES``), so a test that sets one here changes what the next call does;
the filter-gradient kernels of :mod:`.filter_grad` fold the ``_GRAD_*`` ones in as
compile-time constants.
"""

from __future__ import annotations

# Output elements per parallel task (an output tile holds about this many elements per channel);
# a fixed size, so the partition never depends on the thread count.
_TILE_ELEMENTS = 8192
# Per-channel staging elements of a tile of the blocked kernel over one padded copy (the input
# gradient's phases; four channels of this many: 128 KiB in float32, L2-resident). The
# register-blocked kernel is insensitive to it: 2048, 4356, 8192 and 16384 ran within 3% of
# each other on the 64x64 batch.
_PADDED_TILE_ELEMENTS = 8192
# Bytes of the band of the padded input's phases each task of the banded forward copies for
# itself (kernels.conv.blocked) at most: a bound on the memory a task holds, not a cache size
# (a block of positions reads a few rows of the band at a time, which stay in L2 whatever the
# band's size). Large bands waste less: a task's last block of positions runs past its rows, and
# a band recopies the filter's reach. Measured on the 2-core EPYC (16x32x64x64 float32, stride
# 2): whole images per task (557 KB) 5% faster than bands of 16 rows, 12% faster than 8; the
# copy of the whole batch's phases that this replaced cost 0.5-1 ms of a 4.4 ms forward.
_PHASE_BAND_BYTES = 1 << 23
# Tasks per thread the banded forward cuts a batch into at least (when the rows allow), so a
# batch of one image is still parallel. The one partition here that follows the thread count:
# each output is summed in the same order whatever the band, so the bits do not. Fewer, longer
# bands waste less (1x64x128x128, 128 filters, stride 2, 2 threads: 3.5 ms at 2 tasks a
# thread's worth of bands, 3.65 at 4, 3.76 at 8, 4.14 at 16).
_PHASE_BAND_TASKS_PER_THREAD = 2
# Bytes of input rows a block of positions of the banded forward reads per pass over a range of
# input channels, at most (kernels.conv.blocked._correlate_bands): two thirds of the 48 KiB L1 of
# the Intel Xeon, the rest for the filter and the accumulators. Measured alternating there, the
# 3x3 at stride 2 on 16x32x64x64 float32 (six rows of phases per channel, 1.9 KiB per block
# of positions): 8, 12 or 16 channels a pass 2.8-3.0 ms, 4 channels 3.0, all 32 in one pass
# (every block of output channels over the same block of positions) 3.4, the order of one
# block of output channels at a time 3.5. Filters whose rows for all channels fit (the dilated
# 3x3 and the 5x5 on 16 channels: 15 and 25 KiB) ran 2-4% slower in passes than in that order,
# and keep it.
_BAND_CHANNEL_BYTES = 32 << 10
# Output elements per task of the single-channel 3x3 stencil (memory-bound: long tasks keep
# each thread's streams going; 8192 ran 10-15% slower on 2048x2048 than 131072).
_STENCIL_TILE_ELEMENTS = 131072
# Outputs from this size on are written with non-temporal stores (see kernels._simd).
_STREAM_MIN_BYTES = 16 << 20
# Rows of positions the filter-gradient blocks sum in the working precision before float64
# (8 rows of 64 columns: 32 products per float32 lane), and input channels a filter-gradient
# task takes in turn over each such band of rows, so the band of g is read from L1.
_GRAD_ROWS = 8
# Products per lane the tap blocks sum in the working precision: _GRAD_ROWS rows of 64 columns
# (four float32 vectors); narrower planes take bands of more rows up to the same count.
_GRAD_LANE_PRODUCTS = 32
_GRAD_CHANNEL_GROUP = 4


def phase_band_rows(N, row_bytes, Ho, reach, threads):
    """Output rows per task of the banded forward (a stride, or any filter but the 3x3 at
    stride 1; :mod:`.blocked`): as many as keep a task's band (its rows
    plus ``reach`` more, ``row_bytes`` each) within :data:`_PHASE_BAND_BYTES`, at least one,
    and few enough that the ``N`` images make :data:`_PHASE_BAND_TASKS_PER_THREAD` tasks for
    each of ``threads``. Each output is summed in the same order whatever the band, so results
    never depend on it."""
    rows = max(1, _PHASE_BAND_BYTES // max(1, row_bytes) - reach)
    bands = max(1, -(-_PHASE_BAND_TASKS_PER_THREAD * max(1, threads) // max(1, N)))  # bands per image
    return max(1, min(rows, Ho, -(-Ho // bands)))


def band_channels_per_pass(offsets, Wq, C, position_bytes):
    """Input channels per pass of the banded forward (:mod:`.blocked`), or 0 for the order of
    one block of output channels at a time over all of them. Passes when the rows of input a
    block of positions reads over all ``C`` channels (the distinct rows of the taps at flat
    ``offsets`` on rows ``Wq`` long, each ``position_bytes`` plus a cache line, per channel)
    exceed :data:`_BAND_CHANNEL_BYTES`: then as many channels a pass as keep within it, at
    least one. A single tap (the 1x1 filter) reads each row once and keeps the first order.
    Each output is summed in the same order whatever this is."""
    if len(offsets) <= 1:
        return 0
    rows = len({int(o) // Wq for o in offsets})
    per_pass = max(1, _BAND_CHANNEL_BYTES // (rows * (position_bytes + 64)))
    return per_pass if per_pass < C else 0
