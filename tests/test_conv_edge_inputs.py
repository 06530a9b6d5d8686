"""Edge inputs of kernels.conv that are valid but unusual, or invalid in ways that used to slip
past validation: an ``out=`` that overlaps an operand, geometry whose indices would overflow
int64, a one-shot ``grads`` iterable, 0-d arrays as stride/padding/dilation, and a scalar bias
outside the dtype's range.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels import naive

DTYPES = [np.float32, np.float64]
FORWARDS = [kernels.correlate2d, kernels.convolve2d]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(shape, dtype, rng):
    return rng.standard_normal(shape).astype(dtype)


def _matches_unaliased(fn, x, w, bias, out, **kw):
    """fn(..., out=out) equals the same call on private copies of x, w and bias."""
    want = fn(x.copy(), w.copy(), None if bias is None else np.copy(bias), **kw)
    got = fn(x, w, bias, out=out, **kw)
    assert got is out
    np.testing.assert_array_equal(got, want)


# --- out= overlapping an operand ---------------------------------------------------------------

# (x shape, w shape, kwargs) whose output has the shape of x, so that out=x is a valid call:
# the single-channel 3x3 stencil, the per-tap kernel (5x5, dilated), the many-channel blocked
# kernel and its 1x1 matrix product.
OUT_IS_X_CASES = [
    ((8, 8), (3, 3), dict(padding="same")),
    ((7, 9), (5, 5), dict(padding="same")),
    ((8, 8), (3, 3), dict(padding="same", dilation=2)),
    ((1, 1, 8, 8), (1, 1, 3, 3), dict(padding=1)),
    ((2, 1, 7, 6), (1, 1, 5, 3), dict(padding=(2, 1))),
    ((2, 3, 8, 8), (3, 3, 3, 3), dict(padding=1)),
    ((2, 3, 6, 5), (3, 3, 1, 1), dict()),
]


@pytest.mark.parametrize("fn", FORWARDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", OUT_IS_X_CASES)
def test_out_is_x_matches_the_unaliased_result(fn, dtype, xs, ws, kw):
    rng = _rng(1)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    bias = rng.standard_normal(ws[0]).astype(dtype) if len(ws) == 4 else dtype(0.5)
    _matches_unaliased(fn, x, w, bias, x, **kw)


@pytest.mark.parametrize("fn", FORWARDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws", [((5, 5), (3, 3)), ((2, 2, 5, 5), (2, 2, 3, 3)), ((1, 1, 5, 5), (1, 1, 3, 3))])
def test_out_is_w_matches_the_unaliased_result(fn, dtype, xs, ws):
    """A valid correlation of a 5x5 input with a 3x3 filter is 3x3: out=w is a valid call (and,
    with N = C_in = C_out, in batch form too)."""
    rng = _rng(2)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    _matches_unaliased(fn, x, w, None, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", [
    ((9, 10), (3, 3), dict(stride=2, padding=1)),
    ((1, 1, 9, 10), (1, 1, 2, 3), dict(stride=(2, 3))),
    ((2, 3, 9, 10), (4, 3, 3, 3), dict(stride=2, padding=1)),
])
def test_out_partly_overlapping_x_in_one_buffer(dtype, xs, ws, kw):
    """out and x are different windows of one buffer that overlap (a strided output is smaller
    than x, so only part of x is overwritten)."""
    rng = _rng(3)
    w = _data(ws, dtype, rng)
    size = int(np.prod(xs))
    buf = _data(2 * size, dtype, rng)
    x = buf[:size].reshape(xs)
    out_shape = kernels.correlate2d(x, w, **kw).shape
    start = size // 3
    out = buf[start : start + int(np.prod(out_shape))].reshape(out_shape)
    assert np.may_share_memory(out, x)
    _matches_unaliased(kernels.correlate2d, x, w, None, out, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_overlapping_the_bias(dtype):
    rng = _rng(4)
    x, w = _data((2, 3, 6, 6), dtype, rng), _data((4, 3, 3, 3), dtype, rng)
    out = _data((2, 4, 6, 6), dtype, rng)
    bias = out[1, 3, 5, :4]  # the last pixels written
    _matches_unaliased(kernels.correlate2d, x, w, bias, out, padding=1)


def test_out_overlapping_x_when_out_is_not_contiguous():
    """A non-contiguous out is computed into a fresh buffer and copied in afterwards."""
    rng = _rng(5)
    buf = _data((8, 16), np.float64, rng)
    x, out = buf[:, ::2], buf[:, ::2]
    w = _data((3, 3), np.float64, rng)
    _matches_unaliased(kernels.correlate2d, x, w, None, out, padding="same")


# --- geometry beyond int64 ---------------------------------------------------------------------

M = 2**63 - 1


@pytest.mark.parametrize("fn", FORWARDS)
@pytest.mark.parametrize("x,w,kw,name", [
    (np.array([[1.0, 2.0, 3.0, 4.0]]), np.ones((1, 1)), dict(stride=(1, M), padding=(0, 2)), "stride"),
    (np.ones((1, 2, 1, 4)), np.ones((1, 2, 1, 3)), dict(stride=(1, M), padding=(0, 2**62), dilation=(1, 2**62)),
     "dilation"),
    (np.ones((1, 2, 3, 4)), np.ones((1, 2, 2, 3)), dict(dilation=(2**62, 1)), "dilation"),
    (np.ones((4, 4)), np.ones((2, 2)), dict(padding=(2**62, 0)), "padding"),
    (np.ones((4, 4)), np.ones((2, 2)), dict(padding="full", dilation=2**62), "dilation"),
    (np.ones((4, 4)), np.ones((2, 2)), dict(padding="full", dilation=2**61), "padding"),
    (np.ones((1, 4)), np.ones((1, 1)), dict(stride=(1, 2**62 - 7), padding=(0, 2)), "stride"),
])
def test_geometry_beyond_int64_indexing_is_refused_naming_the_argument(fn, x, w, kw, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        fn(x, w, **kw)
    g = np.ones((1, 1) if x.ndim == 2 else (1, 1, 1, 1))
    with pytest.raises(ValueError, match=rf"^{name}="):
        kernels.correlate2d_backward(g, x, w, **kw)


def test_geometry_at_the_int64_margin_still_computes():
    """The largest accepted geometry gives the definition's answer: a stride that leaves exactly
    2**62 for padded size plus stride, and a dilation of 2**60 whose one in-bounds tap is j = 1."""
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    # out[0, 0] reads padded column -2: a padding zero
    np.testing.assert_array_equal(kernels.correlate2d(x, np.ones((1, 1)), stride=(1, 2**62 - 8), padding=(0, 2)),
                                  [[0.0]])
    kw = dict(stride=(1, 2**61 - 8), padding=(0, 2**60), dilation=(1, 2**60))
    x4 = np.arange(1.0, 9.0).reshape(1, 2, 1, 4)
    w4 = np.arange(1.0, 5.0).reshape(1, 2, 1, 2)
    np.testing.assert_array_equal(kernels.correlate2d(x4, w4, **kw).ravel(), [w4[0, :, 0, 1] @ x4[0, :, 0, 0]])
    np.testing.assert_array_equal(kernels.correlate2d(x, np.array([[5.0, 7.0]]), **kw), [[7.0]])
    grad_x, _, grad_b = kernels.correlate2d_backward(np.full((1, 1, 1, 1), 2.0), x4, w4, grads=("x", "bias"), **kw)
    want = np.zeros_like(x4)
    want[0, :, 0, 0] = 2.0 * w4[0, :, 0, 1]
    np.testing.assert_array_equal(grad_x, want)
    np.testing.assert_array_equal(grad_b, [2.0])


@pytest.mark.parametrize("stride", [10**18, (2, 10**18), (10**18, 3)])
def test_strides_of_1e18_match_the_reference_both_passes(stride):
    rng = _rng(6)
    x, w = _data((1, 2, 5, 7), np.float64, rng), _data((3, 2, 2, 3), np.float64, rng)
    got = kernels.correlate2d(x, w, stride=stride, padding=1)
    np.testing.assert_allclose(got, naive.correlate2d(x, w, stride=stride, padding=1), rtol=1e-12, atol=1e-12)
    g = _data(got.shape, np.float64, rng)
    for a, b in zip(kernels.correlate2d_backward(g, x, w, stride=stride, padding=1),
                    naive.correlate2d_backward(g, x, w, stride=stride, padding=1)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --- grads= ------------------------------------------------------------------------------------


def _small_backward_case():
    x = np.arange(16.0).reshape(4, 4)
    return np.ones((3, 3)), x, np.ones((2, 2))


@pytest.mark.parametrize("make", [lambda: (n for n in ("x", "w")), lambda: iter(["x", "w"]), lambda: ["x", "w"]])
def test_grads_as_any_iterable_is_read_once(make):
    g, x, w = _small_backward_case()
    want = kernels.correlate2d_backward(g, x, w, grads=("x", "w"))
    got = kernels.correlate2d_backward(g, x, w, grads=make())
    assert got[2] is None
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("grads", [None, 3, 1.5, "x", ("x", 1)])
def test_grads_that_is_not_names_is_a_type_error_naming_it(grads):
    g, x, w = _small_backward_case()
    with pytest.raises(TypeError, match="^grads must be"):
        kernels.correlate2d_backward(g, x, w, grads=grads)


# --- 0-d arrays as stride, padding, dilation ---------------------------------------------------


@pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
@pytest.mark.parametrize("value", [np.array(2), np.array(2, dtype=np.uint8)])
def test_zero_d_integer_array_is_a_scalar(name, value):
    rng = _rng(7)
    x, w = _data((9, 9), np.float64, rng), _data((3, 3), np.float64, rng)
    want = kernels.correlate2d(x, w, **{name: 2})
    np.testing.assert_array_equal(kernels.correlate2d(x, w, **{name: value}), want)
    g = np.ones(want.shape)
    for a, b in zip(kernels.correlate2d_backward(g, x, w, **{name: value}),
                    kernels.correlate2d_backward(g, x, w, **{name: 2})):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
@pytest.mark.parametrize("value,error", [(np.array(2.0), TypeError), (np.array(True), TypeError),
                                         (np.array(-1), ValueError)])
def test_zero_d_array_of_a_bad_value_names_the_argument(name, value, error):
    x, w = np.ones((6, 6)), np.ones((3, 3))
    with pytest.raises(error, match=rf"^{name} must be"):
        kernels.correlate2d(x, w, **{name: value})


# --- scalar bias outside the dtype's range -----------------------------------------------------


@pytest.mark.parametrize("fn", FORWARDS)
@pytest.mark.parametrize("dtype,bias", [(np.float32, 1e300), (np.float32, -1e39), (np.float32, 10**400),
                                        (np.float64, 10**400), (np.float64, -(10**400))])
def test_scalar_bias_out_of_the_dtype_range_is_refused_naming_it(fn, dtype, bias):
    x, w = np.ones((4, 4), dtype), np.ones((2, 2), dtype)
    with pytest.raises(ValueError, match="^bias must be within the range of"):
        fn(x, w, bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_bias_at_the_dtype_limit_and_non_finite_scalars_pass(dtype):
    x, w = np.zeros((4, 4), dtype), np.ones((2, 2), dtype)
    top = float(np.finfo(dtype).max)
    np.testing.assert_array_equal(kernels.correlate2d(x, w, top), np.full((3, 3), top, dtype))
    assert np.isnan(kernels.correlate2d(x, w, float("nan"))).all()
    np.testing.assert_array_equal(kernels.correlate2d(x, w, -np.inf), np.full((3, 3), -np.inf, dtype))
