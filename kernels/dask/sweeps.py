"""``sweep``: many runs of a kernels function on a ``dask.distributed`` cluster (re-exported by
:mod:`kernels.dask`).

:func:`sweep` maps ``fn(**config)`` over configurations with ``client.submit`` and waits with
``distributed.wait``: configurations batched into tasks (the batch chosen from a probe of the
first tasks), large arrays scattered to the workers once, results in input order; an exception
is returned with its configuration (:class:`SweepFailure`); a task whose worker died, that a
restart cancelled or that stalled is resubmitted.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Mapping

import numpy as np

from kernels import _validate as V

from ._workers import _one_numba_thread_in_a_worker

__all__ = ["sweep", "SweepFailure", "SweepResults"]


# --------------------------------------------------------------------------- sweeps

#: The kernels families whose public functions ``sweep`` accepts by name (``"hypergrad"``).
_FAMILIES = ("kernels.conv", "kernels.pool", "kernels.optim", "kernels.hypergrad")
#: Per-task overhead aimed at, as a fraction of the task's compute, when ``batch`` is chosen.
_OVERHEAD_TARGET = 0.02
#: Arrays at least this large are sent to every worker once, not with every task.
_SCATTER_BYTES = 1 << 16
#: Resubmissions of a task whose worker died (or whose futures were cancelled by a restart).
_RESUBMISSIONS = 3
#: Seconds without a finished task, while the cluster runs none of the sweep's, after which its
#: pending tasks count as lost.
_STALL_S = 10.0


@dataclasses.dataclass
class SweepFailure:
    """What :func:`sweep` returns in place of a configuration's result when ``fn`` raised:
    the configuration, the exception and its formatted traceback."""

    config: dict
    exception: BaseException
    traceback: str


class SweepResults(list):
    """The results of :func:`sweep` in the order of its configurations (a plain ``list``), with
    ``stats``: ``batch`` (configurations per task), ``tasks``, ``workers``, ``wall_s`` (the
    sweep, probe included), ``compute_s`` (the sum of the time spent inside ``fn``),
    ``overhead_fraction`` (``1 - compute_s / (wall_s * workers)``: scheduling, transfers and idle
    workers, as a fraction of the workers' time), ``resubmitted`` (tasks run again after a worker
    died) and ``failed`` (configurations whose ``fn`` raised)."""

    stats: dict


def _family_functions():
    from kernels import conv, hypergrad, optim, pool

    out = {}
    for module in (conv, pool, optim, hypergrad):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type):
                out[name] = obj
    return out


def _resolve(fn):
    return _family_functions()[fn] if isinstance(fn, str) else fn


def _run_batch(fn, configs):
    """Run ``fn(**config)`` for each configuration; returns ``(results, seconds in fn)``, each
    result the return value or a :class:`SweepFailure` (the sweep goes on)."""
    _one_numba_thread_in_a_worker()
    fn = _resolve(fn)
    results, seconds = [], 0.0
    for config in configs:
        t0 = time.perf_counter()
        try:
            results.append(fn(**config))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is the configuration's result
            # (a SystemExit, fn calling sys.exit, would otherwise end the worker's process)
            results.append(SweepFailure(dict(config), _picklable(exc), traceback.format_exc()))
        seconds += time.perf_counter() - t0
    return results, seconds


def _picklable(exc):
    """``exc``, or a ``RuntimeError`` with its type and message where it cannot be pickled (it
    holds a lock, a generator...): the worker must send it back to the client."""
    import cloudpickle

    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - pickling raises many kinds
        return RuntimeError(f"{type(exc).__name__}: {exc} (the exception itself could not be pickled)")


def _worker_count(client):
    return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info(n_workers=-1)["workers"].values()))


#: The ``dask.distributed`` settings of the cluster :func:`sweep` starts. Its workers compute and
#: nobody watches a dashboard, so the per-process housekeeping that samples them is slowed or
#: off: with the defaults (the statistical profiler every 10 ms, an event-loop health check
#: every 20 ms, memory and system monitors) an idle 2-worker cluster and its scheduler took 9% of
#: a core on the project's 2-core machine, 1.2% with these; on busy workers that is time taken
#: from the sweep. And the workers keep glibc's adaptive ``malloc``: Dask starts them with
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to the system at once), which
#: also fixes glibc's threshold for serving large blocks by fresh mappings, so every large
#: temporary (a stored trajectory) is mapped, faulted in page by page and unmapped again:
#: ``hypergrad`` on (200, 500), T = 1000, took 33 ms per call in such a process against 29-30.
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def _start_local_cluster(n_workers=None):
    """A ``LocalCluster`` of ``n_workers`` (default: one per core) single-threaded worker
    processes, each task with one Numba thread and one BLAS thread (the cores are the workers'),
    with :data:`QUIET_CLUSTER`'s settings; Numba's on-disk cache is shared, so each worker loads
    the compiled kernels instead of compiling them. Returns ``(client, cluster)``."""
    import os

    import dask
    from distributed import Client, LocalCluster

    n = n_workers or os.cpu_count() or 1
    # a Dask cluster started before in this process left its nannies' MALLOC_TRIM_THRESHOLD_ in
    # os.environ, which these workers would inherit: glibc reads it once, as a process starts
    trim = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with dask.config.set(QUIET_CLUSTER):  # the workers' nannies take the settings when they start
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    finally:
        if trim is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = trim
    return Client(cluster), cluster


def sweep(fn, configs, *, client=None, batch=None):
    """Run ``fn(**config)`` for every configuration on a ``dask.distributed`` cluster; results
    in input order, equal to ``[fn(**c) for c in configs]``.

    Parameters
    ----------
    fn : the name of a public function of the kernels families (``"hypergrad"``, ``"sgd"``,
        ``"correlate2d"``, ...; resolved on the worker) or any picklable callable.
    configs : a sequence of keyword dicts. Large NumPy arrays among the values (``X``, ``t``; 64
        KiB and more) are sent to every worker once (``client.scatter``), not with every task.
    client : a ``distributed.Client`` connected to any scheduler, or ``None``: a ``LocalCluster``
        sized to the machine (one single-threaded worker process per core, one Numba thread per task)
        is started and closed around the sweep.
    batch : configurations per task, or ``None``: chosen from a timing of the first tasks (one
        configuration each, two per worker) so that the per-task overhead measured there is
        about 2% of a task's compute, while leaving at least four tasks per worker.

    Returns
    -------
    :class:`SweepResults`, a list: ``fn``'s result per configuration, or a :class:`SweepFailure`
    (configuration, exception, traceback) where ``fn`` raised: one failing configuration never
    stops the sweep. A task whose worker dies (or that a ``client.restart()`` cancels) is
    submitted again, up to 3 times, and then reported as a :class:`SweepFailure` per
    configuration; the scheduler itself also reassigns the tasks of a dead worker.
    ``results.stats`` holds the batch size chosen and the overhead measured.
    """
    from distributed import Client

    if isinstance(fn, str):
        known = _family_functions()
        if fn not in known:
            raise ValueError(f"fn must name a public kernels function ({', '.join(sorted(known))}) or be a "
                             f"callable, got {fn!r}")
    elif not callable(fn):
        raise TypeError(f"fn must be a kernels function name or a callable, got {type(fn).__name__}")
    if isinstance(configs, Mapping) or isinstance(configs, (str, bytes)):
        raise TypeError(f"configs must be a sequence of keyword dicts, got {type(configs).__name__}")
    configs = list(configs)
    for i, c in enumerate(configs):
        if not isinstance(c, Mapping) or not all(isinstance(k, str) for k in c):
            raise TypeError(f"configs[{i}] must be a dict of keyword arguments, got {type(c).__name__} {c!r:.80}")
    if batch is not None:
        batch = V.positive_int(batch, "batch")
    if client is not None and not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    results = SweepResults([None] * len(configs))
    results.stats = dict(batch=batch, tasks=0, workers=0, wall_s=0.0, compute_s=0.0, overhead_fraction=0.0,
                         resubmitted=0, failed=0)
    if not configs:
        return results
    own = client is None
    if own:
        client, cluster = _start_local_cluster()
    try:
        _sweep(client, fn, configs, batch, results)
    finally:
        if own:
            client.close()
            cluster.close()
    results.stats["failed"] = sum(isinstance(r, SweepFailure) for r in results)
    return results


def _sweep(client, fn, configs, batch, results):
    """Fill ``results`` (and ``results.stats``) with the sweep's results, on ``client``."""
    from distributed import wait

    stats = results.stats
    workers = stats["workers"] = _worker_count(client)
    scattered = {}  # id(array) -> its future on the workers
    pending = {}  # future -> (index of its first configuration, its configurations, submissions)

    def shipped(chunk):
        """The configurations with their large arrays replaced by futures of one scattered copy."""
        if any(f.status != "finished" for f in scattered.values()):
            scattered.clear()  # lost with a dead worker or cancelled by a restart: send them again
        out = []
        for c in chunk:
            c = dict(c)
            for k, v in c.items():
                if isinstance(v, np.ndarray) and v.nbytes >= _SCATTER_BYTES:
                    if id(v) not in scattered:
                        scattered[id(v)] = scatter(v)
                    c[k] = scattered[id(v)]
            out.append(c)
        return out

    def scatter(value):
        """One copy on every worker (it outlives a worker's death); retried while a restart is
        still replacing the workers (a broadcast to a closing worker fails)."""
        for attempt in range(_RESUBMISSIONS + 1):
            try:
                return client.scatter(value, broadcast=True, hash=False)
            except Exception:  # noqa: BLE001 - the comms' errors have no common class
                if attempt == _RESUBMISSIONS:
                    raise
                client.wait_for_workers(1, timeout=60)
                time.sleep(0.5 * (attempt + 1))

    def submit(lo, chunk, tries=0):
        fut = client.submit(_run_batch, fn, shipped(chunk), pure=False)
        pending[fut] = (lo, chunk, tries)
        return fut

    def handle(fut):
        """Store a finished task's results; resubmit one that did not finish (its worker died, a
        restart cancelled it, it stalled), up to ``_RESUBMISSIONS`` times, and each configuration
        of one whose results could not be sent back on its own. Returns the new futures."""
        lo, chunk, tries = pending.pop(fut)
        if fut.status == "finished":
            try:
                out, seconds = fut.result()
            except Exception as exc:  # noqa: BLE001 - a result the worker could not send back
                if len(chunk) > 1:  # find which: each configuration again, in a task of its own
                    return [submit(lo + i, chunk[i : i + 1], tries) for i in range(len(chunk))]
                first = str(exc).splitlines()[0] if str(exc) else ""
                results[lo] = SweepFailure(dict(chunk[0]), _picklable(exc),
                                           f"{type(exc).__name__}: {first} (its result could not be sent back)")
                return []
            results[lo : lo + len(chunk)] = out
            stats["compute_s"] += seconds
            stats["tasks"] += 1
            return []
        if tries < _RESUBMISSIONS:
            stats["resubmitted"] += 1
            scattered.clear()  # the task may have lost them with its worker: send them again
            return [submit(lo, chunk, tries + 1)]
        exc = fut.exception() if fut.status == "error" else RuntimeError(f"the task was {fut.status}")
        results[lo : lo + len(chunk)] = [
            SweepFailure(dict(c), exc, f"{type(exc).__name__}: {exc} (after {tries + 1} submissions)")
            for c in chunk]
        return []

    def collect(futures):
        """Wait for ``futures`` (and their resubmissions). A task that a restart caught between
        its submission and the scheduler can wait forever for data the restart dropped: when for
        ``_STALL_S`` nothing has finished while the cluster runs none of these tasks, they are
        cancelled and resubmitted."""
        live = set(futures)
        while live:
            try:
                wait(list(live), timeout=_STALL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            done = {f for f in live if f.done()}
            if not done:
                running = {k for keys in client.processing().values() for k in keys}
                if running & {f.key for f in live}:
                    continue
                client.cancel(list(live))
                done = set(live)
            for fut in done:
                live.discard(fut)
                live.update(handle(fut))

    start = time.perf_counter()
    n, done = len(configs), 0
    if batch is None:
        # Probe: one configuration per task, two tasks per worker. The per-task overhead is the
        # workers' time not spent inside fn, shared among the probe's tasks; the batch makes it
        # _OVERHEAD_TARGET of a task's compute, unless that would leave under 4 tasks a worker.
        probe = min(n, 2 * workers)
        t0, c0 = time.perf_counter(), stats["compute_s"]
        collect([submit(i, configs[i : i + 1]) for i in range(probe)])
        busy = stats["compute_s"] - c0
        per_config = max(busy / probe, 1e-6)
        overhead = max(((time.perf_counter() - t0) * min(workers, probe) - busy) / probe, 1e-3)
        done = probe
        batch = max(1, min(math.ceil(overhead / (_OVERHEAD_TARGET * per_config)), (n - done) // (4 * workers)))
    stats["batch"] = batch
    collect([submit(lo, configs[lo : lo + batch]) for lo in range(done, n, batch)])
    stats["wall_s"] = time.perf_counter() - start
    stats["overhead_fraction"] = max(0.0, 1.0 - stats["compute_s"] / (stats["wall_s"] * workers))
