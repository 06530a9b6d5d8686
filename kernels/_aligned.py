"""Arrays whose data start on a cache-line boundary, for the kernels that read them many times.

NumPy aligns its allocations to 16 bytes only, and arrays that arrive from elsewhere (unpickled
by a Dask worker, sliced out of a buffer) may not even be aligned to their itemsize. A compiled
loop over rows then issues vector loads that straddle cache lines, and the multi-pass kernels,
whose data stay in cache and are read once per step, run slower for it. Measured on the 2-core
EPYC, alternating the same data at two offsets (``X`` 16 bytes past a 64-byte boundary against
on it): ``hypergrad`` on (200, 500) 20% slower (35.8 against 29.8 ms), RMSProp on (4000, 500)
17%, an SGD epoch on (20000, 100) 13%; a pass that streams from memory (``grad`` on (4000,
2000)) does not care. So the optimizers and the hypergradients take a 64-byte-aligned copy of
data that is not aligned, when they will read it often enough to repay the copy.
"""

from __future__ import annotations

import numpy as np

#: Bytes: a cache line, and the widest vector (AVX-512).
ALIGNMENT = 64
#: Data larger than this stream from memory on every pass, where alignment does not count.
CACHED_MAX_BYTES = 32 << 20
#: Passes over the data from which an aligned copy (about two passes' time) pays for itself.
MIN_PASSES = 8


def is_aligned(arr: np.ndarray) -> bool:
    """Whether ``arr``'s data start on an :data:`ALIGNMENT`-byte boundary."""
    return arr.ctypes.data % ALIGNMENT == 0


def empty(shape, dtype=np.float64) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order) whose data start on an :data:`ALIGNMENT`-byte
    boundary."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    buf = np.empty(count * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -buf.ctypes.data % ALIGNMENT
    return buf[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def aligned(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when it is C-contiguous and aligned (:func:`is_aligned`), else an aligned
    C-contiguous copy of it."""
    if arr.flags.c_contiguous and is_aligned(arr):
        return arr
    out = empty(arr.shape, arr.dtype)
    out[...] = arr
    return out


def for_many_passes(arr: np.ndarray) -> np.ndarray:
    """:func:`aligned` for data that a kernel will read many times (at least :data:`MIN_PASSES`)
    and that fit in cache (:data:`CACHED_MAX_BYTES`); larger data as they are."""
    return aligned(arr) if arr.nbytes <= CACHED_MAX_BYTES else arr
