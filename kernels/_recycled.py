"""Large output buffers that a process hands on from one call to the next, already in memory.

A call writes its output into a fresh array, and a fresh array of many megabytes can be fresh
pages: glibc serves an allocation of 32 MiB or more (its largest ``mmap`` threshold) with a new
mapping and returns it to the system on ``free``, so every call pays the kernel to fault in and
zero its whole output before the kernel writes a byte. For a memory-bound filter that costs
more than the filter: a 2048x2048 float64 3x3 ``'same'`` correlation took 3.45 ms into a fresh
array and 1.73 ms into one already in memory (2-core Zen 5 EPYC, medians of 30 alternating
calls). Smaller arrays come back from malloc's free lists after the first call, which
glibc's sliding threshold already keeps (the float32 image: 0.69 ms both ways), except in a
:mod:`kernels.dask` worker, whose tasks' outputs of a few MiB interleave with everything else
the worker allocates (one thread of the 2-core Intel Xeon, a 4096x4096 float32 chunk: 17.3 ms
into a fresh array, 7.0 ms into one in memory).

:func:`empty` recycles instead: an array it returns owns a buffer that goes back to this
process's free list when the array and every view of it are gone (a ``weakref.finalize`` on
the array that all views keep alive as their base), and the next call of that size takes it
from there. What a call returns is still a plain NumPy array of its own for as long as anyone
holds it (nothing is reused under it; a loop that rebinds its result, ``y = f(x)``, lets the
previous one go after the call and so alternates two buffers). At most :data:`KEEP_BYTES` of
free buffers stay with a process; past that they are freed as before, and :func:`clear` lets go
of them all.

Used by the public kernels' outputs of :data:`FRESH_PAGES_BYTES` or more (the convolution, the
max-pooling, their backward passes) and by :mod:`kernels.dask`'s chunk tasks from
:data:`MIN_BYTES`. :func:`keep_heap` is for loops whose arrays are each small but together
megabytes, all freed every round (a training step): it lets malloc keep them, not this list.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np

#: Arrays from this size on are recycled by default (a chunk task's output); smaller ones come
#: from malloc's free lists anyway.
MIN_BYTES = 4 << 20
#: glibc's largest ``mmap`` threshold: from this size on an allocation is always fresh pages.
FRESH_PAGES_BYTES = 32 << 20
#: Free buffers a process keeps at most, in bytes (a few chunks' outputs).
KEEP_BYTES = 256 << 20
_ALIGNMENT = 64

# re-entrant: a garbage collection inside _release (its list allocation) may finalise another
# recycled array on the same thread, whose _release then takes the lock again
_lock = threading.RLock()
_free: dict[int, list[np.ndarray]] = {}
_kept = 0
_heap_kept = 0  # the largest block keep_heap has freed


def _release(buf: np.ndarray) -> None:
    global _kept
    with _lock:
        if _kept + buf.nbytes <= KEEP_BYTES:
            _free.setdefault(buf.nbytes, []).append(buf)
            _kept += buf.nbytes


def empty(shape, dtype, min_bytes=None) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order, 64-byte aligned), in a recycled buffer when one of
    its size is free and the array is at least ``min_bytes`` (default :data:`MIN_BYTES`)."""
    global _kept
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints (np.prod took 5 us of a 10 us call)
    if nbytes < (MIN_BYTES if min_bytes is None else min_bytes):
        return np.empty(shape, dtype)
    buf = None
    with _lock:
        stack = _free.get(nbytes)
        if stack:
            buf = stack.pop()
            _kept -= nbytes
    if buf is None:
        raw = np.empty(nbytes + _ALIGNMENT, dtype=np.uint8)
        start = -raw.ctypes.data % _ALIGNMENT
        buf = raw[start : start + nbytes]
    # The flat array's base is a memoryview, not an array, so NumPy makes it the base of every
    # view taken of it: the finalizer runs only when the last of them is gone.
    flat = np.frombuffer(memoryview(buf), dtype=dtype)
    weakref.finalize(flat, _release, buf)
    return flat.reshape(shape)


def free_bytes() -> int:
    """Bytes of free buffers this process holds now."""
    with _lock:
        return _kept


def clear() -> None:
    """Let go of every free buffer."""
    global _kept
    with _lock:
        _free.clear()
        _kept = 0


def output(shape, dtype) -> np.ndarray:
    """A public kernel's output array: :func:`empty` from :data:`FRESH_PAGES_BYTES` on."""
    return empty(shape, dtype, FRESH_PAGES_BYTES)


def keep_heap(nbytes) -> None:
    """Let malloc keep up to about twice ``nbytes`` (at most 32 MiB) of freed memory in its heap
    instead of handing it back to the system, for a loop that allocates and frees that much
    each round (:mod:`kernels.nn`'s training steps): one allocation of ``nbytes``, freed at
    once, and only when it is larger than any before.

    glibc serves an allocation above its ``mmap`` threshold with a mapping of its own; freeing
    such a mapping raises the threshold to its size (up to 32 MiB), and the heap is trimmed only
    when its free top exceeds twice the threshold. Without this, a training step whose arrays
    total a few megabytes, none much larger than 1 MiB, had the heap trimmed at its end and
    faulted the pages in again at the next: LeNet-5's step at batch 64, 819 page faults (3.3 MB)
    a step, 8.4 ms against 5.4 once the threshold had risen (2-core Zen 4 EPYC). That is
    glibc's own sliding rule, fed one mapping: the memory is malloc's, not kept by kernels. No
    effect where the user fixed the threshold (``MALLOC_MMAP_THRESHOLD_`` and the like); else
    one ``mmap``/``munmap`` pair, no page touched."""
    global _heap_kept
    n = min(int(nbytes), FRESH_PAGES_BYTES - (64 << 10))  # glibc slides for mappings up to 32 MiB
    with _lock:
        if n <= _heap_kept:
            return
        _heap_kept = n
    block = np.empty(n, dtype=np.uint8)
    del block
