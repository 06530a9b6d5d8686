"""Numerical and resource limits (issue 7), stated as constants and tested.

* float32 accuracy of the convolution and of the gradient against float64, within the bounds
  documented in :mod:`kernels.apps.reliability` (``(m + 3) u`` and ``4 u`` of the magnitude scale,
  ``u = 2**-24``), and not vacuously (the float32 error is really there);
* the reverse hypergradient refuses, before allocating, a trajectory larger than the memory
  available (``kernels.hypergrad.MEMORY_MARGIN``), with a message naming steps, d and the bytes;
* every optimizer reports divergence at its first non-finite iterate; every hypergradient
  method reports the same divergence step;
* 10,000 calls of every kernel do not grow the process's memory (RSS within
  ``LEAK_TOLERANCE_BYTES``, Numba's NRT frees every allocation), in a fresh process;
* the fuzz suite passes under ``NUMBA_BOUNDSCHECK=1`` with an empty compile cache and one Numba
  thread: no kernel indexes out of range (caching is off in that build: Numba's cache does not
  key on the flag; one thread because an exception in a worker thread of a ``prange`` is lost).
"""

from __future__ import annotations

import importlib
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import kernels
from kernels import naive
from kernels.apps import reliability as R

hg = importlib.import_module("kernels.hypergrad")  # the module (which, called, runs the function hypergrad)


# --------------------------------------------------------------------------- float32 accuracy


@pytest.fixture(scope="module")
def f32():
    return R.float32_errors()


def test_float32_convolution_within_the_documented_bound(f32):
    for row in f32["conv"]:
        assert row["max_error"] <= (row["terms"] + 3) * R.CONV_FLOAT32_BOUND_PER_TERM, row
        assert row["max_error"] > 0.01 * R.U32, row  # float32 really was used: the bound is not vacuous


def test_float32_gradient_within_the_documented_bound(f32):
    for row in f32["grad"]:
        assert row["max_error"] <= R.GRAD_FLOAT32_BOUND, row
        assert row["max_error"] > 0.01 * R.U32, row


def test_documented_bounds_are_what_the_report_states():
    assert R.GRAD_FLOAT32_BOUND == 4 * 2.0**-24
    assert R.CONV_FLOAT32_BOUND_PER_TERM == 2.0**-24


# --------------------------------------------------------------------------- memory refusal


def test_reverse_refuses_a_trajectory_larger_than_memory_up_front():
    X, t = np.ones((4, 3)), np.ones(4)
    with pytest.raises(MemoryError) as info:
        kernels.hypergrad(X, t, lr=0.01, steps=10**13, method="reverse")
    exc = info.value
    assert isinstance(exc, ValueError) and isinstance(exc, hg.TrajectoryMemoryError)
    msg = str(exc)
    need = (10**13 + 1) * 3 * 8
    for part in ("steps=10000000000000", "d=3", f"{need} bytes", "available"):
        assert part in msg, (part, msg)
    avail = int(re.search(r"only (\d+) bytes", msg).group(1))
    assert abs(avail - hg.available_memory()) < 2**30  # the machine's figure, read moments apart


def test_refusal_threshold_is_margin_times_available(monkeypatch):
    monkeypatch.setattr(hg._problem, "available_memory", lambda: 10_000)  # where _check_memory reads it
    monkeypatch.setattr(kernels._validate, "CHECKED_ALLOCATION_BYTES", 0)  # check these small sizes too
    X, t = np.eye(3), np.ones(3)
    lr = 0.1
    limit = hg.MEMORY_MARGIN * 10_000
    ok_steps = int(limit // 24) - 1  # (T + 1) * 3 * 8 <= limit
    assert kernels.hypergrad(X, t, lr=lr, steps=ok_steps).bytes_stored <= limit
    with pytest.raises(MemoryError, match="steps=334"):
        kernels.hypergrad(X, t, lr=lr, steps=334)  # 335 * 24 = 8040 > 8000
    # checkpointing needs O(sqrt(T) d): refused only far later; forward and exact never
    assert kernels.hypergrad(X, t, lr=lr, steps=5000, method="checkpoint").bytes_stored <= limit
    with pytest.raises(MemoryError):
        kernels.hypergrad(X, t, lr=lr, steps=10**6, method="checkpoint")
    assert kernels.hypergrad(X, t, lr=lr, steps=2000, method="forward").bytes_stored == 48
    assert not kernels.hypergrad(X, t, lr=lr, steps=10**12, method="exact").diverged


def test_available_memory_is_memavailable():
    avail = hg.available_memory()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < avail <= total
    with open("/proc/meminfo") as fh:
        line = next(ln for ln in fh if ln.startswith("MemAvailable:"))
    assert abs(avail - int(line.split()[1]) * 1024) < 0.25 * total  # read moments apart


# --------------------------------------------------------------------------- divergence


def test_every_optimizer_reports_divergence_at_its_first_non_finite_iterate():
    res = R.divergence()
    for name in ("gd", "sgd", "rmsprop", "adagrad", "adam"):
        row = res[name]
        assert row["diverged"] and row["first"] and row["w_finite"], (name, row)
        assert row["steps_returned"] == row["diverged_at"] - 1


@pytest.mark.parametrize("name", ["gd", "sgd", "rmsprop", "adagrad", "adam"])
def test_divergence_step_matches_the_reference(name):
    rng = np.random.default_rng(3)
    X, t = rng.standard_normal((30, 4)) * 1e2, rng.standard_normal(30)
    kw = dict(lr=1e6 if name in ("gd", "sgd") else 1e300, steps=500)  # adaptive steps are ~lr per weight
    if name == "sgd":
        kw["batch_size"] = 7
    got = getattr(kernels, name)(X, t, **kw)
    ref = getattr(naive, name)(X, t, **kw)
    assert got.diverged and (got.diverged_at, got.steps) == (ref.diverged_at, ref.steps)
    np.testing.assert_allclose(got.w, ref.w, rtol=1e-9)


def test_every_hypergradient_method_reports_the_same_divergence():
    rng = np.random.default_rng(1)
    X, t = rng.standard_normal((12, 5)), rng.standard_normal(12)
    lr = 3.0 * kernels.critical_lr(X, 0.01)
    steps = {}
    with pytest.warns(RuntimeWarning, match="critical learning rate"):
        for method in ("reverse", "checkpoint", "forward", "exact"):
            r = kernels.hypergrad(X, t, lr=lr, l2=0.01, steps=50, method=method)
            assert r.diverged and r.loss == math.inf and math.isnan(r.d_lr) and r.lr_critical > 0
            steps[method] = r.diverged_at
    assert len(set(steps.values())) == 1 and steps["reverse"] >= 1
    assert naive.hypergrad(X, t, lr=lr, l2=0.01, steps=50).diverged_at == steps["reverse"]


# --------------------------------------------------------------------------- memory leaks


def test_ten_thousand_calls_of_every_kernel_do_not_grow_memory():
    res = R.leak(calls=R.LEAK_CALLS, warmup=1000)
    bad = {k: v for k, v in res["kernels"].items()
           if v["rss_growth_bytes"] > R.LEAK_TOLERANCE_BYTES or v["nrt_net_allocations"] != 0}
    assert bad == {}
    assert len(res["kernels"]) >= 20 and all(v["calls"] == 10_000 for v in res["kernels"].values())


def test_the_leak_check_would_see_a_leak():
    """The measurement's sensitivity: a deliberate leak of 200 bytes per call over 10,000 calls
    exceeds the tolerance, and NRT counts allocations that are never freed."""
    code = ("import numpy as np; from kernels.apps.reliability import _rss; import gc; keep = []; gc.collect(); r0 = _rss();\n"
            "for _ in range(10000): keep.append(np.ones(25))\n"
            "gc.collect(); print(_rss() - r0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=R._subprocess_env(),
                         timeout=120, check=True)
    assert int(out.stdout.strip()) > R.LEAK_TOLERANCE_BYTES


# --------------------------------------------------------------------------- bounds checking


def _boundscheck_fuzz(workdir):
    """The fuzz suite in a subprocess with bounds checking (started in the background: tests/conftest.py)."""
    cache = workdir / "cache"
    cache.mkdir()
    env = R._subprocess_env(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="1",
                            KERNELS_FUZZ_EXAMPLES=os.environ.get("KERNELS_BOUNDSCHECK_EXAMPLES", "15"))
    return {"fuzz": dict(argv=[sys.executable, "-m", "pytest", os.path.join(R.ROOT, "tests", "test_fuzz.py"), "-q",
                               "-p", "no:cacheprovider", "--benchmark-disable", "-rs"],
                         cwd=R.ROOT, env=env, timeout=900)}


@pytest.mark.background(start=_boundscheck_fuzz)
def test_fuzz_suite_under_numba_boundscheck_with_an_empty_cache(background):
    """Every kernel recompiled with bounds checking (caching off, a fresh NUMBA_CACHE_DIR as
    well), then the fuzz suite: an out-of-range index would raise IndexError and fail it. The
    suite's canary test proves the checks are really compiled in.

    One Numba thread: an IndexError raised in a *worker* thread's chunk of a ``prange`` is lost
    (Numba 0.68, OpenMP layer: ``a[i + 2]`` over ``prange(4)`` on 2 threads returns silently,
    on 1 thread it raises), so with 2 threads half of every parallel loop would go unchecked."""
    rc, out, err = background["fuzz"].result()
    written = sum(len(f) for _, _, f in os.walk(background.workdir / "cache"))
    assert rc == 0, out[-4000:] + err[-2000:]
    assert "skipped" not in out.splitlines()[-1], out[-2000:]  # the canary ran
    assert written == 0  # nothing was cached from the checked build
