"""What a task of :mod:`kernels.dask` does first inside a ``dask.distributed`` worker."""

from __future__ import annotations


def _one_numba_thread_in_a_worker():
    """Inside a ``dask.distributed`` worker, the calling thread's parallel kernels use one Numba
    thread: the cluster's parallelism is its workers' threads, and a kernel that also spread over
    every core would oversubscribe them (two workers x two Numba threads on two cores). Numba's
    setting is per calling thread, so this is set in each task (it costs a few microseconds).
    Elsewhere (the local threaded scheduler) the kernels keep their threads."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    import numba

    numba.set_num_threads(1)
