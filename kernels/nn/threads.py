"""One thread for small passes: Numba's and OpenBLAS's thread counts, lowered together.

A training step on a small batch launches two or three dozen parallel kernels and a few BLAS
products that each do microseconds of work; waking and joining the other threads costs more
than they save, and on a busy machine far more: the digits network's BLAS products (32 x 1024 x
144) ran 4-5x slower on two OpenBLAS threads than on one while the 2-core machine was shared,
the homework's 32x32 network's step 2x slower on two Numba threads, every network at batch 1
4-8x. :func:`single_threaded` runs a pass with both pools at one thread (OpenBLAS's on every
pass) and restores them.

OpenBLAS's count is set through its exported ``openblas_set_num_threads`` (the library NumPy
loaded, found as :mod:`kernels._threads` finds it); without it (another BLAS, or not Linux)
only Numba's count changes. Results do not depend on either count (the kernels use fixed
blocks; a BLAS product splits its output, not its sums, between threads).
"""

from __future__ import annotations

import contextlib
import ctypes

import numba

from .._threads import _loaded_libraries, _symbol

__all__ = ["single_threaded"]

_BLAS: list = []  # [(get, set)] of the loaded OpenBLAS libraries, found on first use


def _blas():
    if not _BLAS:
        found = []
        for path in _loaded_libraries("openblas"):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            get_n = _symbol(lib, "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                            "openblas_get_num_threads")
            set_n = _symbol(lib, "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                            "openblas_set_num_threads")
            if get_n is not None and set_n is not None:
                found.append((get_n, set_n))
        _BLAS.append(found)
    return _BLAS[0]


@contextlib.contextmanager
def single_threaded(enabled=True):
    """OpenBLAS at one thread inside the block, and Numba too when ``enabled`` (a small pass).

    BLAS always runs on one thread here: the products of a classifier this size (LeNet-5's
    largest is 64 x 784 x 120 at batch 64) gain little from a second thread on a quiet machine
    and lose most when the machine is busy (a BLAS thread waiting at a barrier for a descheduled
    sibling: LeNet-5's first dense layer took 36 ms instead of 0.5 ms so, on the shared 2-core
    machine)."""
    numba_before = numba.get_num_threads()
    blas_before = [(get_n(), set_n) for get_n, set_n in _blas()]
    if enabled:
        numba.set_num_threads(1)
    for n, set_n in blas_before:
        if n != 1:
            set_n(ctypes.c_int(1))
    try:
        yield
    finally:
        if enabled:
            numba.set_num_threads(numba_before)
        for n, set_n in blas_before:
            if n != 1:
                set_n(ctypes.c_int(n))
