"""Explicit SIMD for the convolution (and max-pool) loops that Numba's auto-vectoriser leaves slow.

They are written as LLVM IR through Numba intrinsics: vector types, lane shifts and
non-temporal stores are not expressible in Numba's Python subset. One file per family of
blocks, all re-exported here (``from kernels import _simd; _simd.correlate3x3_block``):

* :mod:`~kernels._simd.target`: the target the code is compiled for (:data:`TARGET`: the host,
  or what ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` say), from which the vector width, the
  register blocks and the multiply-add follow;
* :mod:`~kernels._simd.vectors`: the vector width, the ``_Lanes`` IR helper, :func:`address`
  and :func:`store_fence`;
* :mod:`~kernels._simd.stencil`: the single-channel 3x3 stencil (lane shifts, row groups,
  non-temporal stores), at the speed of a copy of the image;
* :mod:`~kernels._simd.blocked`: the multi-channel correlation, register-blocked over output
  channels and positions, at the machine's multiply-add rate;
* :mod:`~kernels._simd.grad`: the filter gradient, short sums in registers, long ones in
  float64;
* :mod:`~kernels._simd.route`: the 2x2 max-pool backward's streamed float64 rows.

No block carries fast-math flags, so LLVM may not reassociate: each computes its documented
expression in its documented order, and a vector block and its scalar variant give the same
bits, so results never depend on an array's address. The intrinsics trust their caller for
bounds (each docstring says what it reads and writes); the compiled callers in
:mod:`kernels.conv` guarantee them and say how.
"""

from __future__ import annotations

from .blocked import (CHANNEL_BLOCK, POSITION_VECTORS, TAP_POSITION_VECTORS, WIDE_CHANNEL_BLOCK, correlate3x3_block,
                      correlate_block, correlate_block6, correlate_block_channels, correlate_block_channels6)
from .grad import (GRAD_CHANNEL_BLOCK, PAIR_CHANNEL_BLOCK, ROW_TAPS, TAP3_CHANNEL_BLOCK, TAP_CHANNEL_BLOCK, grad3x3_rows,
                   grad3x3_rows_single, grad_pairs, grad_tap_rows, grad_tap_rows3)
from .stencil import (
    GROUP_VECTORS,
    STENCIL_VECTOR_BYTES,
    ROW_VECTORS,
    STENCIL_ROWS,
    stencil3x3_group,
    stencil3x3_group_streaming,
    stencil3x3_row,
    stencil3x3_row_streaming,
    stencil3x3_scalar,
)
from .route import ROUTE_LANES, route2x2_streaming
from .target import TARGET
from .vectors import MULADD, STREAMING_SUPPORTED, VECTOR_BYTES, address, lanes, store_fence

__all__ = [
    "TARGET", "VECTOR_BYTES", "STREAMING_SUPPORTED", "MULADD", "address", "store_fence", "lanes",
    "STENCIL_ROWS", "STENCIL_VECTOR_BYTES", "GROUP_VECTORS", "ROW_VECTORS", "stencil3x3_scalar", "stencil3x3_group",
    "stencil3x3_group_streaming", "stencil3x3_row", "stencil3x3_row_streaming",
    "CHANNEL_BLOCK", "POSITION_VECTORS", "TAP_POSITION_VECTORS", "WIDE_CHANNEL_BLOCK", "correlate3x3_block",
    "correlate_block", "correlate_block6", "correlate_block_channels", "correlate_block_channels6",
    "GRAD_CHANNEL_BLOCK", "PAIR_CHANNEL_BLOCK", "ROW_TAPS", "TAP3_CHANNEL_BLOCK", "TAP_CHANNEL_BLOCK", "grad3x3_rows",
    "grad3x3_rows_single", "grad_pairs", "grad_tap_rows", "grad_tap_rows3", "ROUTE_LANES", "route2x2_streaming",
]
