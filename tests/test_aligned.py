"""Data at any address (kernels/_aligned.py): the multi-pass kernels copy unaligned data to a
64-byte boundary, and an array not even aligned to its itemsize is copied at the door; neither
changes a bit of any result, whatever the offset the caller's data start at."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import _aligned
from kernels._validate import float_array


def _at(arr, offset):
    """A C-contiguous copy of ``arr`` whose data start ``offset`` bytes past a 64-byte boundary."""
    buf = np.empty(arr.nbytes + 128, dtype=np.uint8)
    start = -buf.ctypes.data % 64 + offset
    out = buf[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    return out


@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=3), dtype=st.sampled_from(["float32", "float64", "int8"]))
@settings(max_examples=40, deadline=None)
def test_empty_and_aligned_start_on_a_cache_line(shape, dtype):
    a = _aligned.empty(tuple(shape), dtype)
    assert a.shape == tuple(shape) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous
    assert a.ctypes.data % 64 == 0 or a.size == 0  # an empty array has no data to place
    src = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    b = _aligned.aligned(_at(src, 8) if src.size else src)
    assert b.ctypes.data % 64 == 0 or b.size == 0
    np.testing.assert_array_equal(b, src)


def test_aligned_returns_aligned_contiguous_data_itself_and_copies_the_rest():
    a = _aligned.empty((5, 7))
    assert _aligned.aligned(a) is a
    assert _aligned.aligned(_at(np.ones((5, 7)), 16)) is not a
    strided = a[:, ::2]
    got = _aligned.aligned(strided)
    assert got.flags.c_contiguous and got.ctypes.data % 64 == 0
    np.testing.assert_array_equal(got, strided)
    big = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(_aligned.CACHED_MAX_BYTES // 8 + 1,), strides=(0,))
    assert _aligned.for_many_passes(big) is big  # past the cache: left as it is (this one is a view of 8 bytes)


def test_an_array_not_aligned_to_its_itemsize_is_copied_at_the_door():
    x = _at(np.arange(12.0), 3)
    assert not x.flags.aligned
    got = float_array(x, "x")
    assert got.flags.aligned
    np.testing.assert_array_equal(got, np.arange(12.0))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 44))
    t = X @ rng.standard_normal(44) / 7 + 0.1 * rng.standard_normal(300)
    return X, t


@pytest.mark.parametrize("call", [
    lambda X, t: kernels.sgd(X, t, lr=1e-2, batch_size=16, epochs=10).w,
    lambda X, t: kernels.rmsprop(X, t, lr=1e-3, steps=20).w,
    lambda X, t: kernels.adam(X, t, lr=1e-3, steps=30, batch_size=50).w,
    lambda X, t: kernels.gd(X, t, lr=1e-2, steps=40, record_every=7).trajectory,
    lambda X, t: kernels.hypergrad(X, t, lr=1e-2, l2=1e-3, steps=25).d_lr,
    lambda X, t: kernels.hypergrad(X, t, lr=1e-3, l2=1e-3, steps=25, optimizer="rmsprop", method="forward").d_l2,
], ids=["sgd", "rmsprop", "adam-batches", "gd-recorded", "hypergrad", "hypergrad-rmsprop-forward"])
def test_results_do_not_depend_on_where_the_data_start(problem, call):
    X, t = problem
    want = np.asarray(call(_at(X, 0), _at(t, 0)))
    for offset in (4, 8, 16, 32, 48, 3):
        Xo, to = _at(X, offset), _at(t, offset)
        assert Xo.ctypes.data % 64 == offset
        np.testing.assert_array_equal(np.asarray(call(Xo, to)), want, err_msg=f"offset {offset}")
    np.testing.assert_array_equal(X, _at(X, 16))  # the caller's data are not touched
