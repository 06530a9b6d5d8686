"""Tests for kernels/pool.py: max-pooling forward (values, indices) and backward.

Oracles: the naive NumPy reference (bit-identical), PyTorch's max_pool2d forward, indices and
autograd gradient (bit-identical: same scan order, same accumulation order), central finite
differences of <g, maxpool(x)> on a random direction, closed forms (homework 3.2's 2x2 pool of a
ramp), and hypothesis properties over random shapes, windows, strides and paddings.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernels
from kernels import _pool2x2, naive, peers, pool
from kernels.catalog import implementations
from kernels._simd.vectors import lanes

torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle for max-pooling")
F = torch.nn.functional

DTYPES = [np.float32, np.float64]

# (shape, kernel_size, stride, padding): the homework case, odd sizes (floor drops a row and a
# column), overlapping windows (stride < kernel), rectangular windows, maximal padding.
CASES = [
    ((2, 3, 8, 8), 2, None, 0),
    ((2, 3, 9, 11), 2, None, 0),
    ((2, 2, 7, 9), 3, 1, 1),
    ((1, 2, 9, 8), 3, 2, 1),
    ((2, 1, 7, 8), (3, 2), (2, 1), (1, 1)),
    ((1, 2, 6, 7), 2, 1, 1),
    ((1, 1, 5, 6), 5, 1, 2),
    ((1, 1, 4, 4), 4, 3, 2),
]


def _data(rng, shape, dtype, specials=True):
    # rounded to one decimal so that ties inside windows are common
    x = np.round(rng.standard_normal(shape), 1).astype(dtype)
    if specials:
        flat = x.reshape(-1)
        k = rng.choice(flat.size, size=min(6, flat.size), replace=False)
        flat[k[:2]] = np.nan
        flat[k[2:3]] = np.inf
        flat[k[3:4]] = -np.inf
        flat[k[4:5]] = -0.0
    return x


def _torch_pool(x, k, s, p):
    y, i = F.max_pool2d(torch.from_numpy(np.ascontiguousarray(x)), k, stride=s, padding=p, return_indices=True)
    return y.numpy(), i.numpy()


def _torch_grad(x, k, s, p, g):
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    F.max_pool2d(xt, k, stride=s, padding=p).backward(torch.from_numpy(g))
    return xt.grad.numpy()


def _same_bits(a, b):
    """Equal values, NaN where NaN, and the same sign of zero."""
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20260211)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_maxpool2d_matches_reference_and_torch(rng, shape, k, s, p, dtype):
    x = _data(rng, shape, dtype)
    y, idx = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    y_only = kernels.maxpool2d(x, k, stride=s, padding=p)
    y_ref, idx_ref = naive.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    y_t, idx_t = _torch_pool(x, k, s, p)
    assert y.dtype == dtype and idx.dtype == np.int64
    _same_bits(y, y_ref)
    _same_bits(y, y_t)
    _same_bits(y_only, y)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(idx, idx_t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_homework_3_2_two_by_two_stride_two_closed_form(dtype):
    # a ramp x[i, j] = 4*i + j: each 2x2 window's maximum is its bottom-right corner
    x = np.arange(16, dtype=dtype).reshape(4, 4)
    y, idx = kernels.maxpool2d(x, 2, stride=2, return_indices=True)
    np.testing.assert_array_equal(y, np.array([[5, 7], [13, 15]], dtype=dtype))
    np.testing.assert_array_equal(idx, np.array([[5, 7], [13, 15]]))
    # the homework's 32x32 grey image halves at each pool: 16x16, then 8x8, then 4x4
    img = np.random.default_rng(3).standard_normal((1, 1, 32, 32)).astype(dtype)
    shapes = []
    for _ in range(3):
        img = kernels.maxpool2d(img, 2, stride=2)
        shapes.append(img.shape[-2:])
    assert shapes == [(16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_ties_go_to_first_maximum(dtype):
    x = np.zeros((1, 1, 4, 4), dtype=dtype)
    x[0, 0, 0, 1] = -0.0  # +0 first, then -0: +0 wins and keeps its sign
    x[0, 0, 2:, 2:] = 7.0  # four equal maxima: the top-left one
    x[0, 0, 2, 0] = -0.0
    x[0, 0, 2, 1] = 0.0  # -0 first: -0 wins
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    y_t, idx_t = _torch_pool(x, 2, None, 0)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    _same_bits(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    assert not np.signbit(y[0, 0, 0, 0]) and np.signbit(y[0, 0, 1, 0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (2, 1, 1)])
def test_maxpool2d_nan_propagates_to_last_nan_and_inf_like_torch(k, s, p, dtype):
    x = np.arange(36, dtype=dtype).reshape(1, 1, 6, 6)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan  # same 2x2 window as the first NaN, later in row-major order
    x[0, 0, 3, 3] = np.inf
    x[0, 0, 4:, 4:] = -np.inf  # an all -inf window: index of its first real element
    y, idx = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    y_t, idx_t = _torch_pool(x, k, s, p)
    _same_bits(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    if (k, s, p) == (2, 2, 0):
        assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 6
        assert y[0, 0, 1, 1] == np.inf and idx[0, 0, 1, 1] == 21
        assert y[0, 0, 2, 2] == -np.inf and idx[0, 0, 2, 2] == 28


@pytest.mark.parametrize("dtype", DTYPES)
def test_2x2_fast_path_picks_the_scans_tap_for_every_window_of_special_values(dtype):
    """The 2x2 kernel compares the window as two pairs, then their winners; the general kernel
    scans it in row-major order. Every window over {-inf, -1, 0, 1, inf, NaN} (1296: ties,
    NaNs in any position, all equal) gets the same value and index from both, and from torch."""
    import itertools

    values = [-np.inf, -1.0, 0.0, 1.0, np.inf, np.nan]
    quads = np.array(list(itertools.product(values, repeat=4)), dtype=dtype)
    # one window per plane (the small planes' kernel), and all of them side by side in one
    # wide plane (the row kernel, which builds each output from its first row, then its second)
    for windows in (quads.reshape(-1, 1, 2, 2), quads.reshape(1, -1, 2, 2).transpose(0, 2, 1, 3).reshape(1, 1, 2, -1)):
        y, idx = kernels.maxpool2d(windows, 2, return_indices=True)
        y_scan = np.empty_like(y)
        idx_scan = np.empty_like(idx)
        pool._maxpool2d_indices_kernel(windows, 2, 2, 2, 2, 0, 0, y_scan, idx_scan)
        _same_bits(y, y_scan)
        _same_bits(kernels.maxpool2d(windows, 2), y_scan)
        np.testing.assert_array_equal(idx, idx_scan)
        y_t, idx_t = _torch_pool(windows, 2, 2, 0)
        _same_bits(y, y_t)
        np.testing.assert_array_equal(idx, idx_t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [_pool2x2.ONE_LOOP_MIN_WIDTH - 2, _pool2x2.ONE_LOOP_MIN_WIDTH,
                                   _pool2x2.ONE_LOOP_MIN_WIDTH + 3])
def test_2x2_values_kernels_agree_with_the_scan_on_both_sides_of_the_wide_rows(monkeypatch, rng, dtype, width):
    """float64 rows of ONE_LOOP_MIN_WIDTH or more take the one-loop kernel; narrower rows, and
    float32, the two-loop row kernel: each gives the scan's bits (specials, odd widths, an odd
    last row), and the routing is the one its docstring promises."""
    x = _data(rng, (2, 3, 7, width), dtype)
    calls = []
    for name in ("_maxpool2x2_wide_kernel", "_maxpool2x2_kernel"):
        real = getattr(_pool2x2, name)
        monkeypatch.setattr(_pool2x2, name, lambda *a, _r=real, _n=name: (calls.append(_n), _r(*a))[1])
    y = kernels.maxpool2d(x, 2)
    want = "_maxpool2x2_wide_kernel" if dtype == np.float64 and width >= _pool2x2.ONE_LOOP_MIN_WIDTH else \
        "_maxpool2x2_kernel"
    assert calls == [want]
    y_scan = np.empty_like(y)
    pool._maxpool2d_kernel(x, 2, 2, 2, 2, 0, 0, y_scan)
    _same_bits(y, y_scan)
    _same_bits(y, _torch_pool(x, 2, 2, 0)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_2x2_values_kernel_chosen_by_time_on_large_inputs(monkeypatch, rng, dtype):
    """Inputs of CALIBRATE_MIN_BYTES or more (lowered here) with wide rows: the first
    CALIBRATION_CALLS calls alternate between the two values kernels, every result with the
    scan's bits, then every call runs the one whose fastest call was faster; smaller inputs keep
    the default routing."""
    monkeypatch.setattr(_pool2x2, "CALIBRATE_MIN_BYTES", 1)
    monkeypatch.setattr(_pool2x2, "CALIBRATION", {})
    monkeypatch.setattr(_pool2x2, "CHOSEN", {})
    x = _data(rng, (2, 3, 9, _pool2x2.ONE_LOOP_MIN_WIDTH + 3), dtype)
    y_scan = np.empty((2, 3, 4, (_pool2x2.ONE_LOOP_MIN_WIDTH + 3) // 2), dtype=dtype)
    pool._maxpool2d_kernel(x, 2, 2, 2, 2, 0, 0, y_scan)
    calls = []
    for name in ("_maxpool2x2_wide_kernel", "_maxpool2x2_kernel"):
        real = getattr(_pool2x2, name)
        monkeypatch.setattr(_pool2x2, name, lambda *a, _r=real, _n=name: (calls.append(_n), _r(*a))[1])
    for _ in range(_pool2x2.CALIBRATION_CALLS):
        _same_bits(kernels.maxpool2d(x, 2), y_scan)
    assert sorted(calls) == sorted(["_maxpool2x2_wide_kernel", "_maxpool2x2_kernel"] * (_pool2x2.CALIBRATION_CALLS // 2))
    times = _pool2x2.CALIBRATION[x.itemsize]
    chosen = _pool2x2.CHOSEN[x.itemsize]
    assert chosen == min(times, key=lambda k: min(times[k]))
    calls.clear()
    for _ in range(3):
        _same_bits(kernels.maxpool2d(x, 2), y_scan)
    assert calls == ["_maxpool2x2_wide_kernel" if chosen == "wide" else "_maxpool2x2_kernel"] * 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("delta", [-2, -1, 0, 1])
def test_2x2_indices_kernels_agree_with_the_scan_on_both_sides_of_one_vector(monkeypatch, rng, dtype, delta):
    """With indices, output rows shorter than a vector take the flat kernel and longer ones the
    row kernel: each gives the scan's values and indices (specials, odd widths, an odd last
    row), and the routing is the one maxpool2x2_indices promises."""
    ow = max(1, lanes(np.dtype(dtype).itemsize) + delta)  # the generic target's float64 vector: 2
    x = _data(rng, (2, 3, 7, 2 * ow + (delta % 2)), dtype)
    calls = []
    for name in ("_maxpool2x2_indices_flat_kernel", "_maxpool2x2_kernel"):
        real = getattr(_pool2x2, name)
        monkeypatch.setattr(_pool2x2, name, lambda *a, _r=real, _n=name: (calls.append(_n), _r(*a))[1])
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    assert calls == ["_maxpool2x2_indices_flat_kernel" if ow < lanes(np.dtype(dtype).itemsize) else "_maxpool2x2_kernel"]
    y_scan, idx_scan = np.empty_like(y), np.empty(y.shape, dtype=np.int64)
    pool._maxpool2d_indices_kernel(x, 2, 2, 2, 2, 0, 0, y_scan, idx_scan)
    _same_bits(y, y_scan)
    np.testing.assert_array_equal(idx, idx_scan)
    y_t, idx_t = _torch_pool(x, 2, 2, 0)
    _same_bits(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_all_neg_inf_with_padding_points_at_first_real_element(dtype):
    x = np.full((1, 1, 3, 3), -np.inf, dtype=dtype)
    y, idx = kernels.maxpool2d(x, 2, stride=1, padding=1, return_indices=True)
    y_t, idx_t = _torch_pool(x, 2, 1, 1)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx, idx_t)
    np.testing.assert_array_equal(idx[0, 0, 0], [0, 0, 1, 2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_non_contiguous_input(rng, dtype):
    base = _data(rng, (3, 2, 10, 14), dtype)
    views = [
        base.transpose(1, 0, 3, 2),  # (2, 3, 14, 10), every axis strided
        base[:, :, ::2, 1::2],  # (3, 2, 5, 7)
        base[::-1, :, 1:, ::-1],  # negative strides
    ]
    for v in views:
        for k, s, p, ri in [(2, None, 0, False), (2, None, 0, True), (3, 1, 1, True), (3, 2, 1, False)]:
            got = kernels.maxpool2d(v, k, stride=s, padding=p, return_indices=ri)
            ref = naive.maxpool2d(np.ascontiguousarray(v), k, stride=s, padding=p, return_indices=ri)
            if ri:
                _same_bits(got[0], ref[0])
                np.testing.assert_array_equal(got[1], ref[1])
            else:
                _same_bits(got, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_accepts_plane_and_channel_stack(rng, dtype):
    x = _data(rng, (2, 7, 9), dtype)
    y3, i3 = kernels.maxpool2d(x, 3, stride=2, padding=1, return_indices=True)
    y4, i4 = kernels.maxpool2d(x[None], 3, stride=2, padding=1, return_indices=True)
    y2, i2 = kernels.maxpool2d(x[1], 3, stride=2, padding=1, return_indices=True)
    assert y3.shape == (2, 4, 5) and y2.shape == (4, 5)
    _same_bits(y3, y4[0])
    _same_bits(y2, y4[0, 1])
    np.testing.assert_array_equal(i2, i4[0, 1])
    y_t, i_t = peers.maxpool2d_torch(x[1], 3, stride=2, padding=1, return_indices=True)
    _same_bits(y2, y_t)
    np.testing.assert_array_equal(i2, i_t)


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_maxpool2d_backward_matches_reference_and_torch_autograd(rng, shape, k, s, p, dtype):
    x = _data(rng, shape, dtype)
    y, idx = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = kernels.maxpool2d_backward(g, idx, x.shape)
    assert gx.dtype == dtype and gx.shape == x.shape
    # same additions in the same order as PyTorch's CPU kernel: identical bits
    np.testing.assert_array_equal(gx, naive.maxpool2d_backward(g, idx, x.shape))
    np.testing.assert_array_equal(gx, _torch_grad(x, k, s, p, g))
    np.testing.assert_array_equal(gx, peers.maxpool2d_backward_torch(g, idx, x.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 1, 1), (3, 2, 1)])
def test_maxpool2d_backward_matches_central_finite_differences(k, s, p, dtype):
    # distinct, well-separated values: max-pooling is linear near x, so the central difference
    # of f(x) = <g, maxpool(x)> along a direction d equals <grad_x, d> up to rounding
    rng = np.random.default_rng(7)
    shape = (2, 2, 7, 8)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
    d = rng.uniform(-1.0, 1.0, shape)
    y, idx = kernels.maxpool2d(x.astype(dtype), k, stride=s, padding=p, return_indices=True)
    g = rng.standard_normal(y.shape)
    gx = kernels.maxpool2d_backward(g.astype(dtype), idx, shape).astype(np.float64)
    eps = 1e-3  # moves no element past a neighbour (gaps are >= 1)

    def f(v):
        return float(np.sum(g * kernels.maxpool2d(v, k, stride=s, padding=p)))

    fd = (f(x + eps * d) - f(x - eps * d)) / (2 * eps)
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(np.sum(gx * d), fd, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_backward_accumulates_overlapping_windows(dtype):
    # a single peak at the centre is the maximum of all nine 3x3 stride-1 windows that hold it
    x = np.zeros((1, 1, 5, 5), dtype=dtype)
    x[0, 0, 2, 2] = 1.0
    y, idx = kernels.maxpool2d(x, 3, stride=1, return_indices=True)
    gx = kernels.maxpool2d_backward(np.ones_like(y), idx, x.shape)
    assert gx[0, 0, 2, 2] == 9.0 and gx.sum() == 9.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_backward_non_contiguous_grad_and_small_int_indices(rng, dtype):
    x = _data(rng, (2, 3, 8, 10), dtype, specials=False)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    g = np.asfortranarray(rng.standard_normal(y.shape).astype(dtype))
    gt = rng.standard_normal(y.shape[::-1]).astype(dtype).T  # transposed view
    for grad in (g, gt):
        want = naive.maxpool2d_backward(np.ascontiguousarray(grad), idx, x.shape)
        np.testing.assert_array_equal(kernels.maxpool2d_backward(grad, idx, x.shape), want)
        np.testing.assert_array_equal(kernels.maxpool2d_backward(grad, idx.astype(np.int32), x.shape), want)


def test_catalog_implementations_agree(rng):
    x = _data(rng, (2, 2, 9, 9), np.float64)
    outs = {name: f(x, 3, stride=2, padding=1, return_indices=True) for name, f in implementations("maxpool2d").items()}
    assert set(outs) == {"numba", "numpy", "maxpool2d_torch"}
    y, idx = outs["numba"]
    g = rng.standard_normal(y.shape)
    for name, (yy, ii) in outs.items():
        _same_bits(yy, y)
        np.testing.assert_array_equal(ii, idx)
    grads = {name: f(g, idx, x.shape) for name, f in implementations("maxpool2d_backward").items()}
    for gx in grads.values():
        np.testing.assert_array_equal(gx, grads["numba"])


# ----------------------------------------------------------------------------- properties


@st.composite
def pool_problems(draw):
    kh = draw(st.integers(1, 4))
    kw = draw(st.integers(1, 4))
    sh = draw(st.integers(1, 3))
    sw = draw(st.integers(1, 3))
    ph = draw(st.integers(0, kh // 2))
    pw = draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 9))
    W = draw(st.integers(max(1, kw - 2 * pw), 9))
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    return (N, C, H, W), (kh, kw), (sh, sw), (ph, pw), dtype, seed


@given(pool_problems())
def test_maxpool2d_properties_over_random_shapes(problem):
    shape, k, s, p, dtype, seed = problem
    rng = np.random.default_rng(seed)
    x = _data(rng, shape, dtype, specials=bool(seed % 2))
    y, idx = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    H, W = shape[-2:]
    OH = (H + 2 * p[0] - k[0]) // s[0] + 1
    OW = (W + 2 * p[1] - k[1]) // s[1] + 1
    assert y.shape == shape[:2] + (OH, OW) and y.dtype == dtype
    # the index points into its own window, and at the value reported
    rows, cols = idx // W, idx % W
    oh = np.arange(OH)[:, None]
    ow = np.arange(OW)[None, :]
    assert np.all((rows >= oh * s[0] - p[0]) & (rows < oh * s[0] - p[0] + k[0]))
    assert np.all((cols >= ow * s[1] - p[1]) & (cols < ow * s[1] - p[1] + k[1]))
    picked = np.take_along_axis(x.reshape(shape[:2] + (H * W,)), idx.reshape(shape[:2] + (-1,)), axis=2)
    _same_bits(picked.reshape(y.shape), y)
    # values-only path (a different kernel) agrees; the reference and torch agree
    _same_bits(kernels.maxpool2d(x, k, stride=s, padding=p), y)
    y_ref, idx_ref = naive.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    _same_bits(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    y_t, idx_t = _torch_pool(x, k, s, p)
    _same_bits(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    # backward: a unit gradient counts how many windows pick each input; mass is conserved
    ones = kernels.maxpool2d_backward(np.ones_like(y), idx, shape)
    assert ones.sum() == y.size and np.all(ones >= 0)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = kernels.maxpool2d_backward(g, idx, shape)
    np.testing.assert_array_equal(gx, naive.maxpool2d_backward(g, idx, shape))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(gx.sum(dtype=np.float64), g.sum(dtype=np.float64), rtol=tol, atol=tol * g.size)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 17), st.integers(2, 41), st.sampled_from(DTYPES))
def test_two_by_two_fast_path_equals_general_kernel(N, C, H, W, dtype):
    x = _data(np.random.default_rng(H * 31 + W), (N, C, H, W), dtype, specials=True)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)  # unrolled 2x2 kernels
    y_gen, idx_gen = kernels.maxpool2d(x, 2, stride=(2, 2), padding=(0, 0), return_indices=True)
    # the general kernels, called directly with the same window
    out = np.empty_like(y)
    pool._maxpool2d_kernel(x, 2, 2, 2, 2, 0, 0, out)
    out_i = np.empty_like(y)
    ind_i = np.empty(y.shape, np.int64)
    pool._maxpool2d_indices_kernel(x, 2, 2, 2, 2, 0, 0, out_i, ind_i)
    _same_bits(kernels.maxpool2d(x, 2), out)
    _same_bits(y, out_i)
    np.testing.assert_array_equal(idx, ind_i)
    _same_bits(y, y_gen)
    np.testing.assert_array_equal(idx, idx_gen)


def _general_backward(gy, idx, shape):
    """The general scatter kernel, called directly (zero, then add into each plane)."""
    N, C, H, W = shape
    gx = np.empty((N, C, H * W), gy.dtype)
    bad = np.empty(N * C, np.int64)
    pool._maxpool2d_backward_kernel(gy, idx, gx, bad, 0)
    assert not bad.any()
    return gx.reshape(shape)


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 32), st.integers(1, 32), st.integers(1, 3),
       st.integers(1, 3), st.sampled_from(DTYPES), st.integers(-1, 2))
def test_small_plane_backward_equals_general_kernel(N, C, H, W, k, s, dtype, stray):
    # planes of at most _SMALL_PLANE (32x32) inputs scatter flat, a task's planes at a time: the same
    # additions in the same order as the per-plane kernel (overlapping windows included), and
    # a plane with an index outside it (stray 1: past the end, 2: negative) left zero and
    # counted in the same place
    k, s = min(k, H, W), min(s, k)
    rng = np.random.default_rng(N * 1000 + C * 100 + H * 10 + W)
    x = _data(rng, (N, C, H, W), dtype, specials=True)
    y, idx = kernels.maxpool2d(x, k, stride=s, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy.flat[::3] = -0.0
    if stray >= 0:
        idx.flat[rng.integers(idx.size)] = [rng.integers(H * W), H * W, -1][stray]
    assert H * W <= pool._SMALL_PLANE
    want = np.empty((N, C, H * W), dtype)
    want_bad = np.empty(N * C, np.int64)
    pool._maxpool2d_backward_kernel(gy, idx, want, want_bad, 0)
    for per_task in (1, 3, N * C + 1):
        got = np.full((N, C, H * W), np.nan, dtype)
        bad = np.full(N * C, -7, np.int64)
        pool._maxpool2d_backward_small_kernel(gy.reshape(-1), idx.reshape(-1), got.reshape(-1), bad, per_task)
        np.testing.assert_array_equal(bad, want_bad)
        _same_bits(got, want)
    if not want_bad.any():
        _same_bits(kernels.maxpool2d_backward(gy, idx, x.shape), want.reshape(x.shape))


@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 17), st.integers(2, 41), st.sampled_from(DTYPES),
       st.booleans())
def test_two_by_two_backward_equals_general_kernel(N, C, H, W, dtype, stray):
    # the 2x2 backward streams rows in memory order: the same bits as the scatter, -0.0 turned
    # to 0.0 as the addition into zero does, a last odd row or column zero; with one index
    # moved out of its window (a stray: indices of another pool of the same output shape) it
    # must hand the call to the general kernel
    rng = np.random.default_rng(H * 41 + W)
    x = _data(rng, (N, C, H, W), dtype, specials=True)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy.flat[::3] = -0.0
    if stray:
        idx.flat[rng.integers(idx.size)] = rng.integers(H * W)  # maybe in its window, maybe not
    gx = kernels.maxpool2d_backward(gy, idx, x.shape)
    _same_bits(gx, _general_backward(gy, idx, x.shape))
    _same_bits(gx, naive.maxpool2d_backward(gy, idx, x.shape) + 0.0)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 23), st.integers(2, 61), st.integers(0, 7),
       st.booleans())
def test_two_by_two_backward_streamed_equals_general_kernel(N, C, H, W, offset, stray):
    # the streamed float64 path (non-temporal stores of aligned eight-element runs, the ends by
    # ordinary stores), run on small shapes by lowering its threshold, into an ``out`` that
    # starts at every offset from a line (even and odd numbers of elements): the same bits
    rng = np.random.default_rng(H * 67 + W * 3 + offset)
    x = _data(rng, (N, C, H, W), np.float64, specials=True)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    gy = rng.standard_normal(y.shape)
    gy.flat[::3] = -0.0
    if stray:
        idx.flat[rng.integers(idx.size)] = rng.integers(H * W)
    buf = np.empty(x.size + 16)
    start = (-(buf.ctypes.data // 8) + offset) % 8
    out = buf[start:start + x.size].reshape(x.shape)
    out[...] = np.nan
    saved = _pool2x2._STREAM_MIN_BYTES
    _pool2x2._STREAM_MIN_BYTES = 0
    try:
        gx = kernels.maxpool2d_backward(gy, idx, x.shape, out=out)
    finally:
        _pool2x2._STREAM_MIN_BYTES = saved
    assert gx is out
    _same_bits(gx, _general_backward(gy, idx, x.shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_of_a_3x3_pool_with_a_2x2_pools_shapes_runs_the_general_kernel(rng, dtype):
    # 3x3 stride 2 padding 1 on an even plane has the 2x2 pool's output shape, and indices
    # that leave their 2x2 windows: every gradient must still land where the indices say
    x = _data(rng, (2, 3, 8, 10), dtype)
    y, idx = kernels.maxpool2d(x, 3, stride=2, padding=1, return_indices=True)
    assert y.shape[2:] == (4, 5)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = kernels.maxpool2d_backward(gy, idx, x.shape)
    np.testing.assert_array_equal(gx, naive.maxpool2d_backward(gy, idx, x.shape))
    np.testing.assert_array_equal(gx, _general_backward(gy, idx, x.shape))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.zeros((4, 4), np.int64),), {}, TypeError, "x must have dtype float32 or float64, got int64"),
        ((np.zeros((4, 4), np.complex128),), {}, TypeError, "x must have dtype.*complex128"),
        ((np.zeros((4, 4), np.float16),), {}, TypeError, "x must have dtype.*float16"),
        ((np.zeros(4),), {}, ValueError, r"x must be 2 or 3 or 4-dimensional, got shape \(4,\)"),
        ((np.zeros((1, 1, 1, 4, 4)),), {}, ValueError, "x must be 2 or 3 or 4-dimensional"),
        ((np.zeros((0, 4)),), {}, ValueError, r"x must not be empty, got shape \(0, 4\)"),
        ((np.zeros((4, 4)), 0), {}, ValueError, "kernel_size must be >= 1, got 0"),
        ((np.zeros((4, 4)), -2), {}, ValueError, "kernel_size must be >= 1, got -2"),
        ((np.zeros((4, 4)), 2.0), {}, TypeError, "kernel_size must be an integer, got float 2.0"),
        ((np.zeros((4, 4)), (2, 2, 2)), {}, ValueError, r"kernel_size must be an int or a pair of ints, got \(2, 2, 2\)"),
        ((np.zeros((4, 4)), 2), {"stride": 0}, ValueError, "stride must be >= 1, got 0"),
        ((np.zeros((4, 4)), 2), {"stride": (1, -1)}, ValueError, "stride must be >= 1, got -1"),
        ((np.zeros((4, 4)), 2), {"padding": -1}, ValueError, "padding must be >= 0, got -1"),
        ((np.zeros((4, 4)), 3), {"padding": 2}, ValueError, "padding must be at most half of kernel_size.*padding=2"),
        ((np.zeros((4, 4)), (2, 4)), {"padding": (0, 3)}, ValueError, "padding must be at most half"),
        ((np.zeros((4, 4)), 5), {}, ValueError, r"kernel_size \(5, 5\) is larger than the padded input \(4, 4\)"),
        ((np.zeros((2, 9)), (5, 2)), {"padding": (1, 0)}, ValueError, r"larger than the padded input \(4, 9\)"),
        ((np.zeros((4, 4)),), {"return_indices": 1}, TypeError, "return_indices must be a bool, got int 1"),
        (("abc",), {}, TypeError, "x must have dtype float32 or float64"),
    ],
)
def test_maxpool2d_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kernels.maxpool2d(*args, **kwargs)


def test_maxpool2d_accepts_kernel_of_padded_size():
    # H + 2p == k is the smallest legal input: one output row
    y = kernels.maxpool2d(np.arange(8.0).reshape(2, 4), 4, padding=1)
    y_t = peers.maxpool2d_torch(np.arange(8.0).reshape(2, 4), 4, padding=1)
    np.testing.assert_array_equal(y, y_t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p", [(9, 7, 4), ((9, 3), (1, 5), (4, 1)), (12, 1, 6), (13, 20, 6)])
def test_maxpool2d_values_only_kernel_wider_than_input_agrees_with_the_scan(rng, k, s, p, dtype):
    # kernels wider than the input, strides wider than it: most taps fall in the padding and
    # the values-only kernel skips them; NaN, inf and ties must still go as the scan has them
    x = _data(rng, (2, 2, 3, 5), dtype)
    y, _ = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
    _same_bits(kernels.maxpool2d(x, k, stride=s, padding=p), y)
    _same_bits(y, _torch_pool(x, k, s, p)[0])


def test_maxpool2d_huge_kernel_with_padding_returns_promptly():
    """The values-only kernel works on the taps that reach the input, not on every tap of the
    window: a kernel of 2**62 (legal with padding 2**61) returns at once, as with indices (it
    looped over all 2**62 taps of each output row before, a hang; 2**28 took 30-130 s)."""
    x = _data(np.random.default_rng(7), (2, 3, 4, 5), np.float64)
    for k, s, p in [(2**62, None, 2**61), (2**62, 1, 2**61), (2**63 - 1, 2**63 - 1, 2**62 - 1)]:
        y = kernels.maxpool2d(x, k, stride=s, padding=p)
        y_idx, _ = kernels.maxpool2d(x, k, stride=s, padding=p, return_indices=True)
        _same_bits(y, y_idx)
    # one window covering each whole plane: its maximum, NaN where the plane holds one
    y = kernels.maxpool2d(x, 2**62, padding=2**61)
    assert y.shape == (2, 3, 1, 1)
    _same_bits(y[..., 0, 0], np.where(np.isnan(x).any(axis=(2, 3)), np.nan, np.nanmax(x, axis=(2, 3))))


@pytest.fixture(scope="module")
def pooled():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    return x, y, idx


def _set(indices, value):
    indices[1, 2, 0, 1] = value
    return indices


@pytest.mark.parametrize(
    "mutate,exc,match",
    [
        (lambda g, i, s: (g.astype(np.int32), i, s), TypeError, "grad_y must have dtype float32 or float64, got int32"),
        (lambda g, i, s: (g[0, 0, 0], i[0, 0, 0], s[-1:]), ValueError, "grad_y must be 2 or 3 or 4-dimensional"),
        # an empty image is refused; an empty batch is not (issue 17: test_conformance.py)
        (lambda g, i, s: (g[:, :, :0], i[:, :, :0], s), ValueError, "grad_y must not be empty"),
        (lambda g, i, s: (g, i.astype(np.float64), s), TypeError, "indices must have an integer dtype.*float64"),
        (lambda g, i, s: (g, i.astype(bool), s), TypeError, "indices must have an integer dtype.*bool"),
        (lambda g, i, s: (g, i[:, :, :2], s), ValueError, r"indices must have grad_y's shape \(2, 3, 3, 3\), got \(2, 3, 2, 3\)"),
        (lambda g, i, s: (g, i, s[1:]), ValueError, "input_shape must have 4 entries"),
        (lambda g, i, s: (g, i, (2, 4, 6, 6)), ValueError, r"input_shape \(2, 4, 6, 6\) must share grad_y's leading"),
        (lambda g, i, s: (g, i, (2, 3, 0, 6)), ValueError, "input_shape must have positive sizes"),
        (lambda g, i, s: (g, i, (2, 3, 6.0, 6)), TypeError, "input_shape must be a tuple of ints"),
        (lambda g, i, s: (g, i, 36), TypeError, "input_shape must be a tuple of ints, got int 36"),
        (lambda g, i, s: (g, _set(i, 36), s), ValueError, r"indices must lie in \[0, H\*W\) = \[0, 36\).*got 36"),
        (lambda g, i, s: (g, _set(i, -1), s), ValueError, r"indices must lie in \[0, H\*W\).*got -1"),
        (lambda g, i, s: (g, _set(i, 2**40).astype(np.uint64), s), ValueError, r"indices must lie.*got 1099511627776"),
        (lambda g, i, s: (g, _set(i.astype(np.uint64), 2**64 - 1), s), ValueError, r"indices must lie.*got 18446744073709551615"),
    ],
)
def test_maxpool2d_backward_rejects_bad_arguments(pooled, mutate, exc, match):
    x, y, idx = pooled
    g, i, s = mutate(np.ones_like(y), idx.copy(), x.shape)
    with pytest.raises(exc, match=match):
        kernels.maxpool2d_backward(g, i, s)


@pytest.mark.parametrize("bad", [-1, 36, 2**40, -(2**62)])
def test_maxpool2d_backward_bad_index_checked_in_the_kernel_writes_nothing_out_of_bounds(pooled, bad):
    """The kernel checks each plane's indices before its additions (pool.py): a bad index in
    one plane raises, that plane of ``out`` is left zero, the good planes hold their gradient,
    and nothing outside ``out`` is written (the sentinels around it keep their value)."""
    x, y, idx = pooled
    rng = np.random.default_rng(3)
    g = rng.standard_normal(y.shape)
    want = kernels.maxpool2d_backward(g, idx, x.shape)
    store = np.full(3 * x.size, 7.0)
    out = store[x.size:2 * x.size].reshape(x.shape)
    with pytest.raises(ValueError, match=rf"indices must lie in \[0, H\*W\) = \[0, 36\).*got {bad}"):
        kernels.maxpool2d_backward(g, _set(idx.copy(), bad), x.shape, out=out)
    np.testing.assert_array_equal(store[:x.size], 7.0)
    np.testing.assert_array_equal(store[2 * x.size:], 7.0)
    np.testing.assert_array_equal(out[1, 2], 0.0)
    keep = np.ones(x.shape[:2], dtype=bool)
    keep[1, 2] = False
    np.testing.assert_array_equal(out[keep], want[keep])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_maxpool2d_backward_into_out_overwrites_every_element(dtype):
    """``out=`` is written in place and returned; what it held before does not leak into the
    gradient (each plane is zeroed before the scatter), and a reused buffer gives the same bits."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    for kw in (dict(), dict(stride=1), dict(kernel_size=3, stride=2, padding=1)):
        y, idx = kernels.maxpool2d(x, kw.pop("kernel_size", 2), return_indices=True, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        want = kernels.maxpool2d_backward(g, idx, x.shape)
        out = np.full(x.shape, np.nan, dtype=dtype)
        got = kernels.maxpool2d_backward(g, idx, x.shape, out=out)
        assert got is out
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(kernels.maxpool2d_backward(g, idx, x.shape, out=out), want)
        np.testing.assert_array_equal(naive.maxpool2d_backward(g, idx, x.shape, out=np.empty_like(x)), want)


def test_maxpool2d_backward_out_is_checked():
    x = np.ones((1, 2, 4, 4))
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    g = np.ones_like(y)
    with pytest.raises(ValueError, match="out"):
        kernels.maxpool2d_backward(g, idx, x.shape, out=np.empty((1, 2, 4, 5)))
    with pytest.raises(TypeError, match="out"):
        kernels.maxpool2d_backward(g, idx, x.shape, out=np.empty((1, 2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.maxpool2d_backward(g, idx, x.shape, out=np.empty((1, 2, 4, 8))[..., ::2])
