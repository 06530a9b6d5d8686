"""Memory leaks: RSS and Numba's NRT allocation count around many calls of every kernel on tiny
inputs, after warm-up, in a fresh process (:func:`leak`)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

import numpy as np

from .processes import ROOT, _subprocess_env

#: 10,000 calls of one kernel may grow the process's RSS by at most this much after warm-up
#: (a leak of 100 bytes per call would show as 1 MB); Numba's NRT must end with as many frees as
#: allocations.
LEAK_CALLS = 10_000
LEAK_TOLERANCE_BYTES = 512 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tiny_calls():
    """Every kernel on inputs of a few elements (the call overhead is what leaks, if anything)."""
    import kernels
    from kernels import arch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 7))
    xb = rng.standard_normal((1, 2, 5, 5))
    wb = rng.standard_normal((2, 2, 3, 3))
    k3 = rng.standard_normal((3, 3))
    X = rng.standard_normal((8, 3))
    t = rng.standard_normal(8)
    w = np.ones(3)
    y, idx = kernels.maxpool2d(xb, 2, return_indices=True)
    lr = 0.5 * kernels.critical_lr(X)
    return {
        "correlate2d": lambda: kernels.correlate2d(x, k3, padding="same"),
        "correlate2d[batch]": lambda: kernels.correlate2d(xb, wb, padding=1),
        "convolve2d": lambda: kernels.convolve2d(x, k3),
        "correlate2d_backward": lambda: kernels.correlate2d_backward(np.ones((1, 2, 3, 3)), xb, wb),
        "correlate2d_backward[stride 2]": lambda: kernels.correlate2d_backward(np.ones((1, 2, 2, 2)), xb, wb, stride=2),
        "maxpool2d": lambda: kernels.maxpool2d(xb, 2, return_indices=True),
        "maxpool2d[3x3]": lambda: kernels.maxpool2d(xb, 3, stride=1, padding=1),
        "maxpool2d_backward": lambda: kernels.maxpool2d_backward(y, idx, xb.shape),
        "loss": lambda: kernels.loss(X, t, w),
        "grad": lambda: kernels.grad(X, t, w),
        "min_norm_solution": lambda: kernels.min_norm_solution(X, t),
        "gd": lambda: kernels.gd(X, t, lr=0.01, steps=3, record_every=1),
        "sgd": lambda: kernels.sgd(X, t, lr=0.01, batch_size=3, steps=3),
        "rmsprop": lambda: kernels.rmsprop(X, t, lr=0.01, steps=3),
        "adagrad": lambda: kernels.adagrad(X, t, lr=0.01, steps=3),
        "adam": lambda: kernels.adam(X, t, lr=0.01, steps=3, batch_size=4),
        "hypergrad[reverse]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3),
        "hypergrad[checkpoint]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="checkpoint"),
        "hypergrad[forward]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="forward"),
        "hypergrad[exact]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="exact"),
        "optimal_lr_one_step": lambda: kernels.optimal_lr_one_step(X, t),
        "tune_lr": lambda: kernels.tune_lr(X, t, lr0=lr / 4, steps=2, meta_steps=2, meta_lr=0.1),
        "unroll_graph": lambda: kernels.unroll_graph(2),
        "arch.analyze": lambda: arch.analyze("in8x8x1 conv3 pool2"),
        "arch.to_dense": lambda: arch.to_dense("in8x8x1 conv3 pool2"),
    }


def _nrt_net():
    from numba.core.runtime import rtsys

    try:
        s = rtsys.get_allocation_stats()
    except Exception:  # stats off (NUMBA_NRT_STATS unset)
        return None
    return int(s.alloc - s.free)


def leak_measure(calls=LEAK_CALLS, warmup=1000) -> dict:
    """In this process: per kernel, RSS and NRT net allocations before and after ``calls``
    calls (after ``warmup`` calls and a garbage collection)."""
    out = {}
    fns = _tiny_calls()
    for name, f in fns.items():
        for _ in range(warmup):
            f()
        gc.collect()
        rss0, nrt0 = _rss(), _nrt_net()
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        gc.collect()
        rss1, nrt1 = _rss(), _nrt_net()
        out[name] = {"calls": calls, "rss_growth_bytes": rss1 - rss0,
                     "nrt_net_allocations": None if nrt0 is None else nrt1 - nrt0,
                     "us_per_call": round((time.perf_counter() - t0) / calls * 1e6, 1)}
    return out


def leak(calls=LEAK_CALLS, warmup=1000, timeout=600) -> dict:
    """:func:`leak_measure` in a fresh process with Numba's NRT statistics on."""
    code = (f"import json; from kernels.apps.reliability.leaks import leak_measure; "
            f"print(json.dumps(leak_measure({int(calls)}, {int(warmup)})))")
    # One Numba thread: the parallel code paths still run, but a busy machine cannot turn every
    # launch into a wait for spinning OpenMP workers (measured 1.7 ms instead of 15 us per call
    # with two such processes on two cores), which is what the call count would then measure.
    env = _subprocess_env(NUMBA_NRT_STATS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"leak subprocess failed: {proc.stderr.strip()[-500:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = all(r["rss_growth_bytes"] <= LEAK_TOLERANCE_BYTES and r["nrt_net_allocations"] in (0, None)
             for r in rows.values())
    return {"calls": calls, "warmup": warmup, "tolerance_bytes": LEAK_TOLERANCE_BYTES, "kernels": rows, "ok": ok}
