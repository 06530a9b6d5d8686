"""bench/baselines.py: the fastest plain NumPy and PyTorch loops the issue-12 bars compare
against compute what kernels computes (same batches from the same seed)."""

from __future__ import annotations

import numpy as np
import pytest

import kernels


@pytest.fixture(scope="module")
def baselines(bench_module):
    return bench_module("baselines")


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((203, 7))
    return X, X @ rng.standard_normal(7) + 0.1 * rng.standard_normal(203)


def test_grad(baselines, problem):
    X, t = problem
    w = np.linspace(-1, 1, X.shape[1])
    np.testing.assert_allclose(baselines.grad_numpy(X, t, w), kernels.grad(X, t, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["sgd_epoch_numpy", "sgd_epoch_torch"])
def test_sgd_epoch(baselines, problem, impl):
    if impl.endswith("torch"):
        pytest.importorskip("torch")
    X, t = problem
    w, loss = getattr(baselines, impl)(X, t, lr=0.01, batch_size=16, seed=5)
    ref = kernels.sgd(X, t, lr=0.01, batch_size=16, epochs=1, seed=5)  # 203 = 12 batches of 16 + one of 11
    np.testing.assert_allclose(w, ref.w, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(ref.losses[-1], rel=1e-10)


def test_rmsprop(baselines, problem):
    X, t = problem
    w, loss = baselines.rmsprop_numpy(X, t, lr=0.01, steps=50)
    ref = kernels.rmsprop(X, t, lr=0.01, steps=50)
    np.testing.assert_allclose(w, ref.w, rtol=1e-9, atol=1e-12)
    assert loss == pytest.approx(ref.losses[-1], rel=1e-9)
