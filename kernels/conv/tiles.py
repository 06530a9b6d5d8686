"""Tile sizes and thresholds of the convolution kernels, in one place.

Each is a fixed size derived from the shape and the cache, never from the thread count, so
results are bit-identical for any number of threads. The dispatch in :mod:`.forward` reads the
forward ones at call time as attributes of this module (``tiles._STREAM_MIN_BYTES``), so a test
that sets one here changes what the next call does; the filter-gradient kernels of
:mod:`.filter_grad` fold the ``_GRAD_*`` ones in as compile-time constants.
"""

from __future__ import annotations

# Output elements per parallel task (an output tile holds about this many elements per channel);
# a fixed size, so the partition never depends on the thread count.
_TILE_ELEMENTS = 8192
# Per-channel staging elements of a tile of the padded multi-channel 3x3 kernel (four channels
# of this many: 128 KiB in float32, L2-resident). The register-blocked kernel is insensitive to
# it: 2048, 4356, 8192 and 16384 ran within 3% of each other on the 64x64 batch.
_PADDED_TILE_ELEMENTS = 8192
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
