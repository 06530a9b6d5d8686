"""Shared set-up for the benchmarks.

Thread counts are fixed before anything is timed, so that Numba, the BLAS behind NumPy and
PyTorch each use the same number of threads (all cores of the machine by default, or
``KERNELS_BENCH_THREADS``), and recorded in every benchmark's ``extra_info``.
"""

from __future__ import annotations

import os

import pytest

THREADS = int(os.environ.get("KERNELS_BENCH_THREADS", os.cpu_count() or 1))


def pytest_configure(config):
    # `pytest bench --benchmark-only` must time, although setup.cfg disables timing by default
    # (so the plain test command runs each benchmark once, as a smoke test).
    if config.getoption("benchmark_only", False):
        config.option.benchmark_disable = False


@pytest.fixture(scope="session", autouse=True)
def fixed_threads():
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=THREADS)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    yield THREADS
    if limiter is not None:
        limiter.restore_original_limits()
