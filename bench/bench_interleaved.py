"""Benchmarks of ``kernels`` inside a program that also calls NumPy and PyTorch (issue 12).

Each benchmark times calls *alternating in one loop*, so that every figure of a comparison comes
from the same minutes of this noisy machine, and keeps the medians of each kind of call in
``extra_info["medians_s"]`` (the benchmark's own row times whole rounds). The bars compare
those medians (``min_ratio``/``max_ratio`` in the report).

* ``interleaved|...``: a kernels call K and a NumPy BLAS call N on the same data. One round is
  ``K, K*, N, K^, N, N*, K, N^``: ``K*`` is K right after K (its time alone), ``K^`` K right
  after N, likewise ``N*`` and ``N^``. Bars: ``K^ / K* <= 1.2`` and ``N^ / N* <= 1.2``, i.e.
  neither library's idle threads slow the other (``kernels/_threads.py``). The same rounds
  with PyTorch's ``conv2d`` as N (its own OpenMP runtime and thread pool) are context.
* ``alternating|...``: the same job done by kernels and by the fastest plain NumPy (and
  PyTorch) loop a user would write (``bench/baselines.py``), one call of each per round in a
  rotating order. Bars: speed-ups of kernels over each. The RMSProp groups add a context row,
  ``kernels, residual form``: the same run with the Gram form switched off
  (``kernels.optim.linreg._GRAM``), one fused pass over ``X`` per step whatever the step count.
* ``alternating|sgd epoch parts ...``: context for the SGD epoch's bars, its parts and floor.
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import pytest

import kernels
from kernels.optim import linreg
from alternating import alternate, record, timed
from baselines import grad_numpy, rmsprop_numpy, sgd_epoch_numpy, sgd_epoch_torch

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
ROUNDS = 3 if QUICK else 25

GRAD = (400, 200) if QUICK else (4000, 2000)
CONV_X, CONV_W = ((2, 4, 16, 16), (8, 4, 3, 3)) if QUICK else ((16, 16, 64, 64), (32, 16, 3, 3))
POOL_X = (2, 4, 32, 32) if QUICK else (16, 32, 128, 128)
SGD = (2000, 20) if QUICK else (20000, 100)
RMS = (400, 50) if QUICK else (4000, 500)


def _shape(shape):
    return "x".join(map(str, shape))


BARS = []
for _job, _shape_text, _dtype in (("grad", _shape(GRAD), "float64"),
                                  ("correlate2d", f"{_shape(CONV_X)} w{_shape(CONV_W)} p1", "float32"),
                                  ("maxpool2d", f"{_shape(POOL_X)} k2", "float32")):
    for _side, _lib in (("kernels", "kernels"), ("numpy", "NumPy BLAS")):
        BARS.append(dict(
            issue=12, text=f"{_job} {_shape_text} {_dtype} interleaved with a NumPy BLAS call: the {_lib} call "
                           "at most 1.2x its time alone",
            group=f"interleaved|{_job} {_shape_text}|{_dtype}", impl="alternating",
            ratio=(f"{_side} after the other", f"{_side} alone"), max_ratio=1.2))
BARS += [
    dict(issue=12, text=f"grad {_shape(GRAD)} float64: >= 1.4x faster than (2/n) * (X.T @ (X @ w - t)), alternating",
         group=f"alternating|grad {_shape(GRAD)}|float64", impl="alternating", ratio=("numpy", "kernels"),
         min_ratio=1.4),
    dict(issue=12, text=f"one SGD epoch {_shape(SGD)} b32: >= 4x faster than the NumPy loop, alternating",
         group=f"alternating|sgd epoch {_shape(SGD)} b32|float64", impl="alternating",
         ratio=("numpy", "kernels"), min_ratio=4.0),
    dict(issue=12, text=f"one SGD epoch {_shape(SGD)} b32: >= 10x faster than a PyTorch loop, alternating",
         group=f"alternating|sgd epoch {_shape(SGD)} b32|float64", impl="alternating",
         ratio=("torch", "kernels"), min_ratio=10.0),
]
for _steps in (200, 2000):
    BARS.append(dict(
        issue=12, text=f"{_steps} full-batch RMSProp steps on {_shape(RMS)}: >= 1.6x faster than the NumPy loop, "
                       "alternating",
        group=f"alternating|rmsprop {_steps} steps {_shape(RMS)}|float64", impl="alternating",
        ratio=("numpy", "kernels"), min_ratio=1.6))


def _interleave(benchmark, k, n, group, other="numpy"):
    """Time K and N (``other``) alone and each right after the other, in the rounds the
    docstring gives."""
    benchmark.group = group
    k()
    n()  # warm: compiled code, BLAS threads, caches
    samples = {"kernels alone": [], "kernels after the other": [], f"{other} alone": [],
               f"{other} after the other": []}

    def one_round():
        k()
        samples["kernels alone"].append(timed(k))
        n()
        samples["kernels after the other"].append(timed(k))
        n()
        samples[f"{other} alone"].append(timed(n))
        k()
        samples[f"{other} after the other"].append(timed(n))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    record(benchmark, {name: statistics.median(v) for name, v in samples.items() if v},
           {name: len(v) for name, v in samples.items()})


def _alternate(benchmark, calls: dict, group, rounds=ROUNDS):
    """One call of each implementation per round, the order rotating (bench/alternating.py)."""
    benchmark.group = group
    record(benchmark, *alternate(benchmark, calls, rounds))


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(12)


def test_interleaved_grad(benchmark, rng):
    X = rng.standard_normal(GRAD)
    t, w = rng.standard_normal(GRAD[0]), rng.standard_normal(GRAD[1]) / np.sqrt(GRAD[1])
    out = np.empty(GRAD[1])
    _interleave(benchmark, lambda: kernels.grad(X, t, w, out=out), lambda: grad_numpy(X, t, w),
                f"interleaved|grad {_shape(GRAD)}|float64")


def test_interleaved_correlate2d(benchmark, rng):
    x = rng.standard_normal(CONV_X).astype(np.float32)
    w = rng.standard_normal(CONV_W).astype(np.float32)
    xm = x.reshape(CONV_X[0] * CONV_X[1], -1)  # a BLAS product over the same data
    _interleave(benchmark, lambda: kernels.correlate2d(x, w, padding=1), lambda: xm @ xm.T,
                f"interleaved|correlate2d {_shape(CONV_X)} w{_shape(CONV_W)} p1|float32")


def test_interleaved_correlate2d_torch(benchmark, rng):
    """Context: the convolution interleaved with PyTorch's, each with its own thread pool."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = rng.standard_normal(CONV_X).astype(np.float32)
    w = rng.standard_normal(CONV_W).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    _interleave(benchmark, lambda: kernels.correlate2d(x, w, padding=1), lambda: F.conv2d(xt, wt, padding=1),
                f"interleaved|correlate2d {_shape(CONV_X)} w{_shape(CONV_W)} p1, with torch conv2d|float32",
                other="torch")


def test_interleaved_maxpool2d(benchmark, rng):
    x = rng.standard_normal(POOL_X).astype(np.float32)
    xm = x.reshape(POOL_X[0] * POOL_X[1], -1)
    v = rng.standard_normal(xm.shape[1]).astype(np.float32)
    _interleave(benchmark, lambda: kernels.maxpool2d(x, 2), lambda: xm @ v,
                f"interleaved|maxpool2d {_shape(POOL_X)} k2|float32")


def test_alternating_grad(benchmark, rng):
    X = rng.standard_normal(GRAD)
    t, w = rng.standard_normal(GRAD[0]), rng.standard_normal(GRAD[1]) / np.sqrt(GRAD[1])
    out = np.empty(GRAD[1])
    _alternate(benchmark, {"kernels": lambda: kernels.grad(X, t, w, out=out), "numpy": lambda: grad_numpy(X, t, w)},
               f"alternating|grad {_shape(GRAD)}|float64")


def test_alternating_sgd_epoch(benchmark, rng):
    pytest.importorskip("torch")
    X = rng.standard_normal(SGD)
    t = X @ rng.standard_normal(SGD[1]) / np.sqrt(SGD[1]) + 0.1 * rng.standard_normal(SGD[0])
    kw = dict(lr=1e-3, batch_size=32)
    _alternate(benchmark, {"kernels": lambda: kernels.sgd(X, t, epochs=1, **kw),
                           "numpy": lambda: sgd_epoch_numpy(X, t, **kw),
                           "torch": lambda: sgd_epoch_torch(X, t, **kw)},
               f"alternating|sgd epoch {_shape(SGD)} b32|float64")


def test_sgd_epoch_parts(benchmark, rng):
    """Context for the SGD epoch's bars: where one epoch's time goes, and its floor. Each call is
    timed right after an (untimed) NumPy SGD epoch, the condition of the bars' alternation
    (``X`` and the caches as NumPy leaves them), the calls in a rotating order: the whole
    ``kernels.sgd`` epoch, its final full-data loss pass alone (``kernels.loss`` at the same
    size), the epoch's permutation as NumPy draws it, and NumPy's gather of the epoch's rows
    (``np.take``, the NumPy baseline's first line: the rows the epoch's steps read, in their
    order, plus a write of them)."""
    X = rng.standard_normal(SGD)
    t = X @ rng.standard_normal(SGD[1]) / np.sqrt(SGD[1]) + 0.1 * rng.standard_normal(SGD[0])
    kw = dict(lr=1e-3, batch_size=32)
    w = kernels.sgd(X, t, epochs=1, **kw).w
    perm = np.random.default_rng(0).permutation(SGD[0])
    calls = {"kernels.sgd, one epoch": lambda: kernels.sgd(X, t, epochs=1, **kw),
             "kernels.loss, one pass (the epoch's last)": lambda: kernels.loss(X, t, w),
             "NumPy permutation(n)": lambda: np.random.default_rng(0).permutation(SGD[0]),
             "NumPy gather of the epoch's rows, np.take": lambda: np.take(X, perm, axis=0)}
    benchmark.group = f"alternating|sgd epoch parts {_shape(SGD)} b32|float64"
    record(benchmark, *alternate(benchmark, calls, ROUNDS, before=lambda: sgd_epoch_numpy(X, t, **kw)))


@pytest.mark.parametrize("steps", [200, 2000])
def test_alternating_rmsprop(benchmark, rng, steps):
    X = rng.standard_normal(RMS)
    t = X @ rng.standard_normal(RMS[1]) / np.sqrt(RMS[1]) + 0.1 * rng.standard_normal(RMS[0])
    def residual_form():
        # context: the per-step fused pass over X alone, the Gram form switched off
        linreg._GRAM = False
        try:
            return kernels.rmsprop(X, t, lr=1e-3, steps=steps)
        finally:
            linreg._GRAM = True

    _alternate(benchmark, {"kernels": lambda: kernels.rmsprop(X, t, lr=1e-3, steps=steps),
                           "numpy": lambda: rmsprop_numpy(X, t, lr=1e-3, steps=steps),
                           "kernels, residual form": residual_form},
               f"alternating|rmsprop {steps} steps {_shape(RMS)}|float64",
               rounds=max(2, ROUNDS // (5 if steps > 500 else 2)))
