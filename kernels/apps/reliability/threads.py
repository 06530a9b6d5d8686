"""Concurrency: Python threads calling every kernel at once (:func:`concurrency`), and processes
compiling into one empty cache at once (:func:`cold_cache`); every result must equal the serial
one."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings

import numpy as np

from .fingerprint import _collect, _spawn_fingerprints, digest, fingerprints
from .problems import _calls, _problems
from .processes import _subprocess_env

#: Results that come from LAPACK (through NumPy), not from our kernels: OpenBLAS may split its
#: work differently while other threads are inside it, so under concurrency they are compared to
#: 1e-12 relative instead of bit for bit.
LAPACK_BACKED = ("min_norm_solution", "hypergrad[exact]")


def _flat(value):
    if isinstance(value, np.ndarray):
        return [np.asarray(value, dtype=np.float64).ravel()] if value.dtype.kind in "fiub" else []
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [a for k in value.__dataclass_fields__ for a in _flat(getattr(value, k))]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [np.array([float(value)])]
    return []


def _close(a, b, rtol=1e-12) -> bool:
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(x.shape == y.shape and np.allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True)
                                      for x, y in zip(fa, fb))


def concurrency(n_threads=4, rounds=3, seed=0) -> dict:
    """``n_threads`` Python threads call every kernel ``rounds`` times each, in different orders,
    all at once; each result must equal the serial one bit for bit (:data:`LAPACK_BACKED` ones
    to 1e-12)."""
    calls = _calls(_problems(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        serial = {k: f() for k, f in calls.items()}
    expected = {k: digest(v) for k, v in serial.items()}
    names = list(calls)
    mismatches, errors = [], []
    barrier = threading.Barrier(n_threads)

    def worker(i):
        order = names[i % len(names):] + names[: i % len(names)]
        try:
            barrier.wait()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for _ in range(rounds):
                    for k in order:
                        got = calls[k]()
                        same = _close(got, serial[k]) if k in LAPACK_BACKED else digest(got) == expected[k]
                        if not same:
                            mismatches.append((i, k))
        except Exception as exc:  # reported, not swallowed
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {
        "threads": n_threads,
        "calls": n_threads * rounds * len(names),
        "kernels": len(names),
        "mismatches": sorted(set(mismatches)),
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 2),
        "ok": not mismatches and not errors,
    }


#: The kernels two cold processes compile side by side: a parallel one and a serial one keep it
#: to seconds (compiling every kernel twice would take minutes on two cores); and RMSProp's
#: checkpointed hypergradient, whose compiled segment loop once gave other last bits when
#: loaded from the cache than in the process that compiled it (the comment in
#: kernels/hypergrad/optimizer_methods.py's checkpoint_opt says why).
COLD_CACHE_KERNELS = ("maxpool2d[2x2]", "hypergrad[reverse]", "hypergrad[checkpoint rmsprop]")


def cold_cache(n_processes=2, names=COLD_CACHE_KERNELS, timeout=600) -> dict:
    """``n_processes`` started together on one empty ``NUMBA_CACHE_DIR``, each compiling and
    writing the cache at once; then one more that loads what they wrote. All must agree with
    this process's results."""
    expected = fingerprints(list(names))
    with tempfile.TemporaryDirectory(prefix="kernels-cold-cache-") as cache:
        env = _subprocess_env(NUMBA_CACHE_DIR=cache, KERNELS_CACHE="1")
        t0 = time.perf_counter()
        procs = [_spawn_fingerprints(list(names), env) for _ in range(n_processes)]
        results = [_collect(p, timeout) for p in procs]
        together = time.perf_counter() - t0
        files = sum(len(fs) for _, _, fs in os.walk(cache))
        t1 = time.perf_counter()
        warm = _collect(_spawn_fingerprints(list(names), env), timeout)
        warm_s = time.perf_counter() - t1
    ok = [r == expected for r, _ in results]
    return {
        "processes": n_processes,
        "kernels": list(names),
        "each_ok": ok,
        "errors": [e for _, e in results if e],
        "seconds_together": round(together, 1),
        "cache_files_written": files,
        "warm_process_ok": warm[0] == expected,
        "warm_process_seconds": round(warm_s, 1),
        "ok": all(ok) and warm[0] == expected,
    }
