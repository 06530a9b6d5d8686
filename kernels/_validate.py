"""Checks run at the door of every public function, before any compiled code.

Each failure raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, bad
value) with a message that names the argument and what it got. Kernels behind these checks
assume clean input and only compute.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Sizes, strides, step counts and the like reach compiled code as int64; a larger Python int
#: would fail there with a Numba typing error, so it is refused here.
MAX_INT = int(np.iinfo(np.int64).max)


def float_array(x, name: str, *, ndim=None, dtype=None, like: str = "the other operands",
                allow_empty: bool = False, empty_batch: bool = False) -> np.ndarray:
    """Return ``x`` as a native-endian float32/float64 ndarray, or raise naming ``name``.

    ``ndim`` is an int or a tuple of allowed ints. ``dtype`` forces a dtype (used to make a
    second operand agree with the first, named by ``like`` in the message; byte order aside:
    a big-endian float32 is float32); otherwise float32 and float64 keep theirs and every
    other dtype (int, bool, complex, float16, object) is a ``TypeError``: silently upcasting
    integers would hide a caller's mistake about precision. Non-contiguous and read-only
    arrays are accepted; kernels index them through their strides. An array whose data are not
    aligned to its itemsize is copied.

    ``empty_batch``: a 4-D array may have a batch (first) axis of length 0, as PyTorch's
    convolution and pooling accept (an empty batch is a normal event in a data pipeline); its
    other axes must still be non-empty.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}: {exc}") from None
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    if dtype is not None and arr.dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} like {like}, got {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must be {want}-dimensional, got shape {arr.shape}")
    batch_only = empty_batch and arr.ndim == 4 and arr.shape[0] == 0 and all(arr.shape[1:])
    if not allow_empty and arr.size == 0 and not batch_only:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.aligned:
        # data not on an itemsize boundary (a buffer unpickled at an odd offset): Numba would
        # compile every kernel once more for such arrays, and their loads straddle lines
        arr = arr.copy()
    return arr


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools are refused: ``True`` is not a size)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > MAX_INT:
        raise ValueError(f"{name} must be <= {MAX_INT} (it is passed to compiled code as int64), got {value}")
    return value


def int_pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, returned as a pair. A 0-d array is a
    scalar, like the NumPy scalar it holds."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (positive_int(value[0], name, minimum=minimum), positive_int(value[1], name, minimum=minimum))
    v = positive_int(value, name, minimum=minimum)
    return (v, v)


def finite_float(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real scalar within [low, high] (open ends where asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def out_array(out, name: str, shape: tuple, dtype) -> np.ndarray:
    """Check a preallocated ``out=`` array: exact shape and dtype, writeable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if not out.dtype.isnative:
        raise TypeError(f"{name} must be native-endian, got {out.dtype}")
    return out


#: Functions that allocate large buffers refuse, before allocating, to use more than this
#: fraction of the memory available (:func:`available_memory`); the rest is left to the data,
#: temporaries and the other processes on the machine.
MEMORY_MARGIN = 0.8
#: Buffers below this size are not checked against :func:`available_memory` (reading
#: /proc/meminfo costs ~17 us a call, 2% of a 1 ms convolution); numpy's own MemoryError
#: still stands behind them.
CHECKED_ALLOCATION_BYTES = 64 << 20


class AllocationError(MemoryError, ValueError):
    """The arguments imply a buffer larger than the memory available.

    Both a :class:`MemoryError` (what it is) and a :class:`ValueError` (the arguments named in
    the message are too large on this machine), raised before anything is allocated."""


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo``
    (Linux), else free physical pages times the page size (``os.sysconf``), else ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: int, what: str, *, available=None) -> None:
    """Raise :class:`AllocationError` if ``nbytes`` exceeds ``MEMORY_MARGIN`` of the memory
    available; ``what`` says which arguments imply the buffer. Buffers under
    :data:`CHECKED_ALLOCATION_BYTES` pass unchecked unless ``available`` is given."""
    if available is None and nbytes < CHECKED_ALLOCATION_BYTES:
        return
    avail = available_memory() if available is None else available
    if avail is not None and nbytes > MEMORY_MARGIN * avail:
        raise AllocationError(
            f"{what} needs {nbytes} bytes ({nbytes / 2**30:.3g} GiB), but only {avail} bytes "
            f"({avail / 2**30:.3g} GiB) are available (at most {MEMORY_MARGIN:.0%} of that is used)"
        )
