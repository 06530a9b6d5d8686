"""Threads and processes (issue 7): several Python threads calling the kernels at once get the
serial results bit for bit, and processes started together on one empty compile cache all work.

Both checks are :mod:`kernels.apps.reliability` functions (``concurrency``, ``cold_cache``), which
``python -m kernels reliability`` reports. The kernels release the GIL (``nogil=True``), so the
threads really overlap inside compiled code, including parallel regions launched from several
threads at once (Numba's threading layer must support that: OpenMP and TBB do, ``workqueue``
does not).
"""

from __future__ import annotations

import numba

from kernels.apps import reliability as R


def test_threads_calling_every_kernel_at_once_get_the_serial_results():
    res = R.concurrency(n_threads=4, rounds=2)
    assert res["errors"] == []
    assert res["mismatches"] == []
    assert res["calls"] == 4 * 2 * res["kernels"]


def test_threading_layer_supports_concurrent_launches():
    R.fingerprints(["grad"])  # a parallel kernel has run, so the layer is chosen
    assert numba.threading_layer() in ("omp", "tbb")


def test_processes_started_together_on_an_empty_cache_both_work():
    res = R.cold_cache(n_processes=2)
    assert res["errors"] == []
    assert res["each_ok"] == [True, True]
    assert res["cache_files_written"] > 0  # they did compile and write the cache...
    assert res["warm_process_ok"]  # ...and what they wrote loads and gives the same results
