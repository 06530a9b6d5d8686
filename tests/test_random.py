"""Tests for kernels._random: the compiled shuffle draws NumPy's very permutations.

Oracle: ``numpy.random.default_rng(seed).permutation(n)`` on successive calls, the integers
themselves (equality, not a statistical test), over random seeds, sizes and epoch chunks; and
the optimizers, whose mini-batches must be the same whichever path drew them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import _random, naive


def numpy_perms(seed, n, epochs):
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)])


def test_agrees_with_the_installed_numpy():
    # the self-check that picks the compiled path: False would mean a NumPy whose stream changed
    assert _random._agrees_with_numpy()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(1, 3000), chunks=st.lists(st.integers(1, 3), min_size=1,
                                                                                 max_size=3))
def test_compiled_shuffle_draws_numpys_permutations(seed, n, chunks):
    # below COMPILED_MIN_ROWS too: the compiled fill itself, chunk after chunk of epochs, the
    # 32-bit draw buffered across chunk boundaries as NumPy buffers it across calls
    st_ = _random._state(seed)
    got = [np.empty((k, n), dtype=np.int64) for k in chunks]
    for out in got:
        _random._fill(st_, out)
    assert np.array_equal(np.concatenate(got), numpy_perms(seed, n, sum(chunks)))


@pytest.mark.parametrize("n", [_random.COMPILED_MIN_ROWS - 1, _random.COMPILED_MIN_ROWS, 20000])
def test_permutations_either_path(n):
    p = _random.Permutations(7, n)
    assert p._compiled == (n >= _random.COMPILED_MIN_ROWS)
    got = np.concatenate([p.fill(np.empty((k, n), dtype=np.int64)) for k in (2, 1)])
    assert np.array_equal(got, numpy_perms(7, n, 3))


def test_state_is_not_shared_between_runs():
    # the cached seeded state is copied: a second run with the same seed starts over
    a = _random.Permutations(3, 5000).fill(np.empty((1, 5000), dtype=np.int64))
    b = _random.Permutations(3, 5000).fill(np.empty((1, 5000), dtype=np.int64))
    assert np.array_equal(a, b)


def test_falls_back_to_numpy_when_streams_differ(monkeypatch):
    monkeypatch.setattr(_random, "_agrees_with_numpy", lambda: False)
    p = _random.Permutations(11, 5000)
    assert not p._compiled
    assert np.array_equal(p.fill(np.empty((2, 5000), dtype=np.int64)), numpy_perms(11, 5000, 2))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_batches_are_numpys(name, monkeypatch):
    # a mini-batch run large enough for the compiled shuffle: the same bits as with NumPy's
    # permutations, and the NumPy reference's result
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 3))
    t = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(5000)
    kw = dict(lr=1e-3, batch_size=700, steps=20, seed=5)
    fast = getattr(kernels, name)(X, t, **kw)
    monkeypatch.setattr(_random, "_agrees_with_numpy", lambda: False)
    slow = getattr(kernels, name)(X, t, **kw)
    assert np.array_equal(fast.w, slow.w) and fast.loss == slow.loss
    ref = getattr(naive, name)(X, t, **kw)
    assert np.max(np.abs(fast.w - ref.w)) <= 1e-12 * np.max(np.abs(ref.w))
