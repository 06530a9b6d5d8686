"""Benchmarks for kernels.optim (issue 3), side by side in one run, compilation excluded.

- ``grad`` on X (4000, 2000) float64: the fused one-pass kernel against NumPy's
  ``2/n * X.T @ (X @ w - t)`` (exactly ``kernels.naive.grad``: two BLAS gemv passes) and the
  same expression in PyTorch. ``bytes`` is what one pass must move: X, t, w and the result.
- One epoch of mini-batch SGD, n = 20000, d = 100, batch 32 (625 steps, the permutation drawn
  in each call): the compiled loop against the NumPy reference loop and a PyTorch loop with
  manual updates (``kernels.peers.sgd_torch``), same batches from the same seed.
- 2000 full-batch RMSProp steps on X (4000, 500): against the NumPy reference loop (and the
  PyTorch manual loop). ``kernels.rmsprop`` steps in the Gram form here (``G = X^T X`` once,
  then O(d^2) per step: see ``kernels.optim.linreg._gram``); ``numba_residual`` times the same kernel
  with one pass over X per step instead (context, no bar).

The bars compare with the fastest plain NumPy a user would write (``numpy_gemv``, ``numpy_best``:
``bench/baselines.py``, issue 12); the ``numpy`` rows, the naive references, stay as context.

Every implementation is called once before ``benchmark(...)`` (the compiled ones compile on a
small problem of the same dtype, so the warm-up is cheap); large inputs are built once per
module. The RMSProp runs take seconds per call in NumPy, so they use ``benchmark.pedantic``
with a fixed number of rounds. ``KERNELS_BENCH_QUICK=1`` shrinks every shape to a smoke size
(other group names, so the bars then read NOT RUN).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import kernels
from baselines import grad_numpy, rmsprop_numpy, sgd_epoch_numpy
from kernels import naive

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
GRAD_SHAPE = (400, 200) if QUICK else (4000, 2000)
SGD_SHAPE = (2000, 20) if QUICK else (20000, 100)
RMS_SHAPE = (400, 50) if QUICK else (4000, 500)
RMS_STEPS = 100 if QUICK else 2000
RMS_ROUNDS = 1 if QUICK else 3

BARS = [
    # Against the fastest NumPy a user writes (issue 12), not the textbook form: ``numpy`` rows are
    # the naive reference, kept as context.
    dict(issue=3, text="grad (4000, 2000) float64: >= 1.4x faster than NumPy's (2/n) * (X.T @ (X @ w - t))",
         group="grad|4000x2000|float64", impl="numba", versus=("numpy_gemv",), min_speedup=1.4),
    dict(issue=3, text="grad (4000, 2000) float64: >= 70% of the one-pass memory-bandwidth roofline",
         group="grad|4000x2000|float64", impl="numba", min_bandwidth_fraction=0.70),
    dict(issue=3, text="one epoch of mini-batch SGD, n=20000 d=100 b=32: >= 4x faster than a NumPy loop",
         group="sgd epoch|20000x100 b32|float64", impl="numba", versus=("numpy_best",), min_speedup=4.0),
    dict(issue=3, text="one epoch of mini-batch SGD, n=20000 d=100 b=32: >= 10x faster than a PyTorch loop",
         group="sgd epoch|20000x100 b32|float64", impl="numba", versus=("torch",), min_speedup=10.0),
    dict(issue=3, text="2000 full-batch RMSProp steps on (4000, 500): >= 1.6x faster than a NumPy loop",
         group="rmsprop 2000 steps|4000x500|float64", impl="numba", versus=("numpy_best",), min_speedup=1.6),
]


def _problem(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    t = X @ rng.standard_normal(d) / np.sqrt(d) + 0.1 * rng.standard_normal(n)
    return X, t


@pytest.fixture(scope="module")
def grad_data():
    X, t = _problem(*GRAD_SHAPE, 0)
    w = np.random.default_rng(1).standard_normal(GRAD_SHAPE[1]) / np.sqrt(GRAD_SHAPE[1])
    return X, t, w


@pytest.fixture(scope="module")
def sgd_data():
    return _problem(*SGD_SHAPE, 2)


@pytest.fixture(scope="module")
def rmsprop_data():
    return _problem(*RMS_SHAPE, 3)


def _warm_compiled(fn, **kw):
    """Compile (or load from cache) the float64 kernels on a tiny problem."""
    X, t = _problem(300, 5, 9)
    fn(X, t, **kw)


def _grad_numpy_gemv(X, t, w):
    """The bar's baseline (``bench/baselines.py``): Python parses the reference's ``2/n * X.T @ r``
    as ``(2/n * X.T) @ r``, which scales a copy of X before the product; with the scalar applied
    after, NumPy does two gemv passes only."""
    return grad_numpy(X, t, w)


def _sgd_numpy_best(X, t, *, lr, batch_size, epochs, seed):
    assert epochs == 1
    return sgd_epoch_numpy(X, t, lr=lr, batch_size=batch_size, seed=seed)


def _rmsprop_numpy_best(X, t, *, lr, beta, eps, steps):
    return rmsprop_numpy(X, t, lr=lr, beta=beta, eps=eps, steps=steps)


@pytest.mark.parametrize("impl", ["numba", "numpy", "numpy_gemv", "torch"])
def test_grad(benchmark, impl, grad_data, catalog):
    X, t, w = grad_data
    # numpy_gemv is a variant of the reference timed for context, not a catalog entry
    fn = _grad_numpy_gemv if impl == "numpy_gemv" else catalog("grad", impl)
    out = np.empty(X.shape[1])
    if impl == "numba":
        fn(X, t, w, out=out)  # compile, untimed
        np.testing.assert_allclose(out, naive.grad(X, t, w), rtol=1e-10, atol=1e-12)
    else:
        fn(X, t, w)
    benchmark.group = f"grad|{GRAD_SHAPE[0]}x{GRAD_SHAPE[1]}|float64"
    benchmark.extra_info.update(impl=impl, bytes=X.nbytes + t.nbytes + w.nbytes + out.nbytes,
                                flops=4 * X.size)
    if impl == "numba":
        benchmark(fn, X, t, w, out=out)
    else:
        benchmark(fn, X, t, w)


SGD_KW = dict(lr=1e-3, batch_size=32, epochs=1, seed=0)


@pytest.mark.parametrize("impl", ["numba", "numpy", "numpy_best", "torch"])
def test_sgd_epoch(benchmark, impl, sgd_data, catalog):
    X, t = sgd_data
    if impl == "numpy_best":  # the fastest plain NumPy loop (bench/baselines.py): the bar's baseline
        benchmark.group = f"sgd epoch|{SGD_SHAPE[0]}x{SGD_SHAPE[1]} b32|float64"
        benchmark.extra_info.update(impl=impl)
        benchmark(_sgd_numpy_best, X, t, **SGD_KW)
        return
    fn = catalog("sgd", impl)
    if impl == "numba":
        _warm_compiled(fn, lr=1e-3, batch_size=4, steps=3)
    else:
        fn(X, t, **dict(SGD_KW, epochs=None, steps=5))  # first-call overheads (imports), untimed
    steps = -(-X.shape[0] // SGD_KW["batch_size"])
    benchmark.group = f"sgd epoch|{SGD_SHAPE[0]}x{SGD_SHAPE[1]} b32|float64"
    benchmark.extra_info.update(impl=impl, steps=steps)  # no roofline: per-step overheads dominate
    result = benchmark(fn, X, t, **SGD_KW)
    assert result.steps == steps and not result.diverged


RMS_KW = dict(lr=1e-3, beta=0.9, eps=1e-8, steps=RMS_STEPS)


def _rmsprop_residual(X, t, **kw):
    """kernels.rmsprop with the Gram form switched off: one fused pass over X per step."""
    from kernels import optim

    before, optim.linreg._GRAM = optim.linreg._GRAM, False
    try:
        return kernels.rmsprop(X, t, **kw)
    finally:
        optim.linreg._GRAM = before


@pytest.mark.parametrize("impl", ["numba", "numba_residual", "numpy", "numpy_best", "torch"])
def test_rmsprop_full_batch(benchmark, impl, rmsprop_data, catalog):
    X, t = rmsprop_data
    # numba_residual is the kernel with its Gram form switched off (context), numpy_best the
    # fastest plain NumPy loop (the bar's baseline); neither is a catalog entry
    fn = {"numba_residual": _rmsprop_residual, "numpy_best": _rmsprop_numpy_best}.get(impl) or catalog("rmsprop", impl)
    if impl in ("numba", "numba_residual"):
        _warm_compiled(fn, lr=1e-3, steps=3)
    else:
        fn(X, t, **dict(RMS_KW, steps=2))
    benchmark.group = f"rmsprop {RMS_STEPS} steps|{RMS_SHAPE[0]}x{RMS_SHAPE[1]}|float64"
    # no DRAM roofline: X is 16 MB and stays in the 32 MB L3 across steps
    benchmark.extra_info.update(impl=impl, steps=RMS_KW["steps"])
    # The smoke run (--benchmark-disable, the default) calls each implementation once; 2000 NumPy
    # or PyTorch steps take seconds (tens on a busy machine), so it runs 50 steps instead.
    kw = dict(RMS_KW, steps=50) if benchmark.disabled else RMS_KW
    result = benchmark.pedantic(fn, args=(X, t), kwargs=kw, rounds=RMS_ROUNDS, iterations=1)
    if impl != "numpy_best":
        assert result.steps == kw["steps"] and not result.diverged
