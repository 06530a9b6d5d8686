"""Tests for kernels.conv: correlate2d, convolve2d, correlate2d_backward (issue 2, homework 3.1).

Oracles: the naive reference (kernels.naive.conv), SciPy (signal.correlate2d/convolve2d in all
three modes), PyTorch (conv2d forward and autograd gradients), central finite differences on a
random direction, and hypothesis properties over random shapes, strides, paddings, dilations
and both dtypes.

Tolerances are relative to the scale of the sum being formed: |got - ref| <= tol * (|x| ⋆ |w| +
|b|), the magnitude of the terms each output adds up (1e-12 in float64, 1e-5 in float32). A
plain elementwise relative tolerance would be meaningless where terms cancel to near zero.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernels
from kernels import _simd, naive
from kernels.conv.phases import PHASE_BAND, row_copy

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(shape, dtype, rng):
    return rng.standard_normal(shape).astype(dtype)


def assert_close(got, ref, scale, dtype):
    """|got - ref| <= tol * scale elementwise (plus a denormal floor), NaN/inf where ref has them."""
    got, ref, scale = np.asarray(got), np.asarray(ref), np.asarray(scale, dtype=np.float64)
    assert got.shape == ref.shape and got.dtype == np.dtype(dtype)
    tol = TOL[np.dtype(dtype)]
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    err = np.abs(got[finite].astype(np.float64) - ref[finite].astype(np.float64))
    bound = tol * scale[finite] + 1e-30
    assert np.all(err <= bound), f"max excess {np.max(err - bound)} (max err {err.max()})"


def forward_scale(x, w, bias, **kw):
    """|x| ⋆ |w| + |b| in float64: the size of the terms each output sums."""
    b = None if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    return naive.correlate2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), b, **kw)


def check_forward(x, w, bias=None, **kw):
    got = kernels.correlate2d(x, w, bias, **kw)
    ref = naive.correlate2d(x, w, bias, **kw)
    assert_close(got, ref, forward_scale(x, w, bias, **kw), x.dtype)
    return got


def check_backward(g, x, w, **kw):
    got = kernels.correlate2d_backward(g, x, w, **kw)
    ref = naive.correlate2d_backward(g, x, w, **kw)
    ag, ax, aw = (np.abs(a).astype(np.float64) for a in (g, x, w))
    scales = naive.correlate2d_backward(ag, ax, aw, **kw)
    for name, a, b, s, like in zip(("grad_x", "grad_w", "grad_bias"), got, ref, scales, (x, w, None)):
        if like is not None:
            assert a.shape == like.shape, name
        assert_close(a, b, s, x.dtype)
    return got


# Cases chosen to reach every compiled path: the padded fused 3x3 kernel (batches), the
# copy-free fused kernel with flat rows (Wo == W) or row by row with border columns (single
# channel), and the per-tap kernel (everything else), with leftover output channels (C_out % 4).
FORWARD_CASES = [
    # (x shape, w shape, kwargs)
    ((9, 11), (3, 3), dict(padding="same")),
    ((9, 11), (3, 3), dict(padding=0)),
    ((9, 11), (3, 3), dict(padding=2)),
    ((9, 11), (3, 3), dict(padding=(1, 0))),
    ((9, 11), (3, 3), dict(padding=(0, 1))),
    ((9, 11), (3, 3), dict(padding="full")),
    ((3, 3), (3, 3), dict(padding="valid")),
    ((2, 2), (3, 3), dict(padding="same")),
    ((8, 7), (4, 4), dict(padding="same")),
    ((8, 7), (2, 5), dict(padding="full", dilation=(2, 1))),
    ((8, 7), (1, 1), dict()),
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(padding=1)),
    ((2, 3, 9, 11), (8, 3, 3, 3), dict(padding=0)),
    ((2, 3, 9, 11), (6, 3, 3, 3), dict(padding=(2, 1))),
    ((2, 3, 9, 11), (4, 3, 3, 3), dict(padding="full")),
    ((1, 1, 9, 11), (1, 1, 3, 3), dict(padding=1)),
    ((2, 2, 9, 11), (3, 2, 2, 4), dict(padding="same")),
    ((2, 2, 9, 11), (3, 2, 3, 3), dict(padding="same", dilation=2)),
    ((2, 2, 9, 12), (3, 2, 3, 3), dict(stride=2, padding=(1, 2), dilation=(2, 1))),
    ((2, 2, 10, 9), (3, 2, 3, 2), dict(stride=(3, 2), padding="valid")),
    ((1, 2, 5, 6), (2, 2, 5, 6), dict()),  # filter as large as the input: one output pixel
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", FORWARD_CASES)
def test_correlate2d_matches_reference(xs, ws, kw, dtype):
    rng = _rng(1)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    bias = _data((ws[0],), dtype, rng) if len(ws) == 4 else dtype(0.25)
    got = check_forward(x, w, bias, **kw)
    assert got.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", [((3, 5, 7, 9), (6, 5, 1, 1), {}), ((2, 4, 7, 9), (3, 4, 1, 1), dict(stride=2)),
                                      ((2, 4, 8, 9), (3, 4, 1, 1), dict(stride=(3, 2), dilation=4)),
                                      ((1, 1, 6, 6), (5, 1, 1, 1), {}), ((2, 3, 6, 5), (1, 3, 1, 1), {})])
def test_one_by_one_filters_as_matrix_products(xs, ws, kw, dtype):
    """A 1x1 filter without padding runs as a matrix product per image (BLAS): the reference's
    values with and without bias, into out=, with NaN and inf propagating as the definition says."""
    rng = _rng(6)
    x, w, b = _data(xs, dtype, rng), _data(ws, dtype, rng), _data(ws[:1], dtype, rng)
    for bias in (None, b):
        ref = naive.correlate2d(x, w, bias, **kw)
        got = kernels.correlate2d(x, w, bias, **kw)
        assert_close(got, ref, forward_scale(x, w, bias, **kw), dtype)
        out = np.full_like(ref, np.nan)
        np.testing.assert_array_equal(kernels.correlate2d(x, w, bias, out=out, **kw), got)
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = np.nan, np.inf
    got, ref = kernels.correlate2d(x, w, **kw), naive.correlate2d(x, w, **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", FORWARD_CASES[::3])
def test_convolve2d_is_correlation_with_rotated_filter(xs, ws, kw, dtype):
    rng = _rng(2)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    got = kernels.convolve2d(x, w, **kw)
    ref = naive.convolve2d(x, w, **kw)
    assert_close(got, ref, forward_scale(x, w, None, **kw), dtype)
    np.testing.assert_array_equal(got, kernels.correlate2d(x, np.ascontiguousarray(w[..., ::-1, ::-1]), **kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", FORWARD_CASES)
def test_correlate2d_backward_matches_reference(xs, ws, kw, dtype):
    rng = _rng(3)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    y = kernels.correlate2d(x, w, **kw)
    g = _data(y.shape, dtype, rng)
    gx, gw, gb = check_backward(g, x, w, **kw)
    assert gb.shape == (() if x.ndim == 2 else (ws[0],))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 7, 37), (1, 3, 9, 9), (3, 6, 5, 70), (2, 4, 33, 16)])
@pytest.mark.parametrize("co", [1, 3, 4])
def test_filter_gradient_3x3_blocks_and_tails(shape, co, dtype):
    """The 3x3 stride-1 filter gradient runs SIMD blocks over whole vectors of each row (16
    float32 / 8 float64 columns), two output channels at a time in groups of four input
    channels, with a float64 scalar tail for the remaining columns: widths with and without a
    tail and below one vector, odd channel counts and partial groups all match the reference,
    and float32 keeps the documented tolerance over sums of N*H*W products."""
    rng = _rng(30)
    x, w = _data(shape, dtype, rng), _data((co, shape[1], 3, 3), dtype, rng)
    for kw in (dict(padding=1), dict(padding=0), dict(padding=(2, 0))):
        g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
        check_backward(g, x, w, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,co,kw", [((2, 5, 7, 37), 9, {}), ((1, 3, 4, 4), 1, {}), ((3, 8, 16, 32), 4, {}),
                                         ((2, 7, 9, 11), 6, dict(stride=2)), ((2, 4, 6, 8), 17, dict(stride=(1, 3)))])
def test_filter_gradient_1x1_pair_blocks_and_tails(shape, co, kw, dtype):
    """A 1x1 filter without padding takes its gradient from blocks of (output, input) channel
    pairs over flat planes (4 x 4 with 32 registers, 4 x 2 with 16), with a float64 tail past the
    last whole vector: channel counts that fill no block, planes shorter than a vector and
    strided positions all match the reference; the result is the same for any task split."""
    rng = _rng(31)
    x, w = _data(shape, dtype, rng), _data((co, shape[1], 1, 1), dtype, rng)
    g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
    _, gw, _ = check_backward(g, x, w, **kw)
    from kernels.conv.filter_grad import _grad_w_pairs_kernel
    sh, sw = np.broadcast_to(kw.get("stride", 1), 2)
    xs = np.ascontiguousarray(x[:, :, ::sh, ::sw])
    N, C = shape[:2]
    for task_channels in (4, 8, 16):
        split = np.empty((co, C))
        _grad_w_pairs_kernel(g.reshape(N, co, -1), xs.reshape(N, C, -1), split, task_channels)
        np.testing.assert_array_equal(split.astype(dtype), gw.reshape(co, C))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ws,kw", [((3, 2, 5, 5), dict(padding=2)), ((5, 2, 3, 7), dict(padding=(1, 3))),
                                   ((2, 3, 2, 6), dict(dilation=(1, 2), padding=1)), ((4, 2, 5, 1), dict(stride=(2, 1)))])
def test_filter_gradient_row_tap_runs(ws, kw, dtype):
    """Any other filter at column stride 1 takes each filter row's taps in runs (five with 32
    registers, two with 16) sharing each gradient vector: rows longer than a run, shorter ones,
    dilated taps and row strides match the reference."""
    rng = _rng(32)
    x, w = _data((2, ws[1], 13, 40), dtype, rng), _data(ws, dtype, rng)
    g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
    check_backward(g, x, w, **kw)


@numba.njit
def _tap_block_sums(three, K, J, g, xf, rows, nvec, sw, dw, phase_stride, width, g_cols=None):
    """Run one tap block (``grad_tap_rows3`` when ``three``, else ``grad_tap_rows``) over
    ``g`` (K channel planes of ``rows`` x ``width``, read as zeros from column ``g_cols``) and
    ``xf``; return its float64 sums, ``(J, K, lanes)``."""
    V = _simd.VECTOR_BYTES // g.itemsize
    KB = _simd.TAP3_CHANNEL_BLOCK if three else _simd.TAP_CHANNEL_BLOCK
    JB = 3 if three else _simd.ROW_TAPS
    acc = np.zeros(KB * JB * V)
    gf = g.reshape(g.size)
    cols = width if g_cols is None else g_cols
    if three:
        _simd.grad_tap_rows3(acc, gf, 0, rows * width, width, cols, xf, 0, width + 8, rows, nvec, K, J, 0, dw, sw,
                             phase_stride)
    else:
        _simd.grad_tap_rows(acc, gf, 0, rows * width, width, cols, xf, 0, width + 8, rows, nvec, K, J, 0, dw, sw,
                            phase_stride)
    return acc.reshape(JB, KB, V)[:J, :K]


@pytest.mark.parametrize("three", [False, True] if _simd.TAP3_CHANNEL_BLOCK else [False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_gradient_tap_block_reads_a_row_past_its_columns_as_zeros(three, dtype):
    """``g_cols``: the lanes of a row's vectors at or past that column take no part (they hold
    the next row's values here), the same bits as the row widened with zeros, which is how the
    filter gradient reads rows narrower than whole vectors without copying them."""
    rng = _rng(34)
    rows, nvec, K, J = 4, 2, 3, 3
    V = _simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    width = nvec * V
    cols = width - V // 2 - 1
    g = _data((K, rows, width), dtype, rng)
    xf = _data(((rows + 1) * (width + 8) + 4 * width,), dtype, rng)
    widened = g.copy()
    widened[..., cols:] = 0
    a = _tap_block_sums(three, K, J, g, xf, rows, nvec, 1, 1, 0, width, g_cols=cols)
    b = _tap_block_sums(three, K, J, widened, xf, rows, nvec, 1, 1, 0, width)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _tap_block_sums(three, K, J, g, xf, rows, nvec, 1, 1, 0, width))


@pytest.mark.skipif(_simd.TAP3_CHANNEL_BLOCK == 0, reason="no 8 x 3 tap block with 16 vector registers")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K,J,sw,dw", [(4, 3, 2, 1), (3, 2, 2, 1), (1, 3, 1, 2), (4, 1, 3, 1)])
def test_filter_gradient_eight_by_three_tap_block_sums_as_the_four_by_five(K, J, sw, dw, dtype):
    """Rows of three taps run the 8 x 3 block (``grad_tap_rows3``), the others the 4 x 5 one:
    each accumulator of either sums the same products in the same order, so a channel and tap
    both compute gives the same bits in both (blocks of up to four channels, the 4 x 5 one's)."""
    rng = _rng(33)
    rows, nvec = 5, 2
    V = _simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    width = nvec * V
    g = _data((K, rows, width), dtype, rng)
    xf = _data(((rows + 1) * (width + 8) + 4 * width,), dtype, rng)
    ps = width // 2 + 3 if sw > 1 else 0
    a = _tap_block_sums(True, K, J, g, xf, rows, nvec, sw, dw, ps, width)
    b = _tap_block_sums(False, K, J, g, xf, rows, nvec, sw, dw, ps, width)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 0


@pytest.mark.parametrize("grads", [("x",), ("w",), ("bias",), ("x", "bias"), ("w", "bias"), ()])
@pytest.mark.parametrize("xs,ws,kw", [((2, 3, 9, 8), (4, 3, 3, 3), dict(padding=1)),
                                      ((2, 3, 9, 8), (2, 3, 2, 3), dict(stride=2, dilation=(1, 2))),
                                      ((7, 6), (3, 3), dict(padding="same")),
                                      ((0, 3, 9, 8), (4, 3, 3, 3), {})])
def test_correlate2d_backward_computes_only_the_gradients_asked_for(xs, ws, kw, grads):
    rng = _rng(5)
    x, w = _data(xs, "float64", rng), _data(ws, "float64", rng)
    g = _data(kernels.correlate2d(x, w, **kw).shape, "float64", rng)
    full = kernels.correlate2d_backward(g, x, w, **kw)
    some = kernels.correlate2d_backward(g, x, w, grads=grads, **kw)
    ref = naive.correlate2d_backward(g, x, w, grads=grads, **kw)
    for name, a, b, r in zip(("x", "w", "bias"), full, some, ref):
        if name in grads:
            np.testing.assert_array_equal(a, b)
            assert r is not None and r.shape == b.shape
        else:
            assert b is None and r is None


def test_correlate2d_backward_grads_argument_is_checked():
    x, w = np.ones((5, 5)), np.ones((3, 3))
    with pytest.raises(ValueError, match="grads"):
        kernels.correlate2d_backward(np.ones((3, 3)), x, w, grads=("x", "input"))
    with pytest.raises(TypeError, match="grads"):
        kernels.correlate2d_backward(np.ones((3, 3)), x, w, grads="x")


@pytest.mark.parametrize("ws,kw", [((4, 3, 3, 3), dict(padding=3)), ((4, 3, 3, 3), dict(stride=2, padding=1)),
                                   ((4, 3, 3, 3), dict(stride=(1, 3), padding=(0, 2), dilation=2)),
                                   ((2, 3, 3, 3), dict(stride=2, dilation=2, padding=2)),
                                   ((2, 3, 1, 1), dict(stride=3)), ((3, 3, 2, 4), dict(stride=(3, 2), padding=(4, 1))),
                                   ((2, 3, 5, 5), dict(stride=4, padding=2)), ((2, 3, 3, 2), dict(stride=(2, 5)))])
def test_correlate2d_backward_overpadded_and_strided_paths(ws, kw):
    """grad_x at a stride is one correlation per phase of the stride, with the taps that reach
    the phase's positions: phases no tap reaches (a stride above the dilated filter, or a
    dilation sharing a factor with the stride) stay zero, over-padding reaches outputs that do
    not exist, and a non-finite filter gives NaN exactly where the definition forms its products."""
    rng = _rng(4)
    for dtype in DTYPES:
        x, w = _data((2, 3, 11, 13), dtype, rng), _data(ws, dtype, rng)
        g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
        check_backward(g, x, w, **kw)
        w[0, 1, -1, 0] = np.inf
        gx = kernels.correlate2d_backward(g, x, w, grads=("x",), **kw)[0]
        ref = naive.correlate2d_backward(g, x, w, **kw)[0]
        np.testing.assert_array_equal(np.isnan(gx), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(gx), np.isinf(ref))


# ------------------------------------------------------------------ independent oracles


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("wshape", [(3, 3), (3, 5), (1, 1), (2, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_scipy_signal(mode, wshape, dtype):
    signal = pytest.importorskip("scipy.signal")
    # every mode and filter parity, both conventions: 'same' for an even filter is the centred
    # part of 'full' in SciPy's sense for both (issue 17: convolve2d's used to be shifted by one)
    rng = _rng(5)
    x, w = _data((7, 9), dtype, rng), _data(wshape, dtype, rng)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    scale = forward_scale(x, w, None, padding=mode)
    assert_close(kernels.correlate2d(x, w, padding=mode), signal.correlate2d(x64, w64, mode=mode).astype(dtype),
                 scale, dtype)
    assert_close(kernels.convolve2d(x, w, padding=mode), signal.convolve2d(x64, w64, mode=mode).astype(dtype),
                 scale, dtype)


def test_matches_scipy_ndimage_same():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = _rng(6)
    x, w = _data((12, 10), np.float64, rng), _data((3, 5), np.float64, rng)
    ref = ndimage.correlate(x, w, mode="constant", cval=0.0)
    assert_close(kernels.correlate2d(x, w, padding="same"), ref, forward_scale(x, w, None, padding="same"),
                 np.float64)


TORCH_CASES = [
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(padding=1)),
    ((2, 3, 9, 11), (4, 3, 3, 3), dict(padding=0)),
    ((2, 3, 9, 11), (4, 3, 2, 4), dict(padding="same")),
    ((2, 3, 10, 11), (4, 3, 3, 3), dict(stride=2, padding=(2, 1), dilation=(1, 2))),
    ((2, 2, 9, 11), (3, 2, 3, 3), dict(padding="same", dilation=2)),
    ((1, 2, 6, 7), (2, 2, 3, 3), dict(padding=3)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on its own even-'same' copy
@pytest.mark.parametrize("xs,ws,kw", TORCH_CASES)
def test_forward_and_gradients_match_torch_autograd(xs, ws, kw):
    torch = pytest.importorskip("torch")
    rng = _rng(7)
    x, w, b = _data(xs, np.float64, rng), _data(ws, np.float64, rng), _data((ws[0],), np.float64, rng)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(w.copy()).requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    pad = kw.get("padding", 0)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=kw.get("stride", 1), padding=pad,
                                    dilation=kw.get("dilation", 1))
    y = kernels.correlate2d(x, w, b, **kw)
    assert_close(y, yt.detach().numpy(), forward_scale(x, w, b, **kw), np.float64)
    g = _data(y.shape, np.float64, rng)
    gxt, gwt, gbt = torch.autograd.grad(yt, (xt, wt, bt), torch.from_numpy(g))
    gx, gw, gb = kernels.correlate2d_backward(g, x, w, **kw)
    scales = naive.correlate2d_backward(np.abs(g), np.abs(x), np.abs(w), **kw)
    for a, t, s in zip((gx, gw, gb), (gxt, gwt, gbt), scales):
        assert_close(a, t.numpy(), s, np.float64)


def test_convolve2d_gradients_via_flipped_filter_match_torch():
    # documented relation: grads of convolve2d = correlate2d_backward with flip(w), grad_w flipped back
    torch = pytest.importorskip("torch")
    rng = _rng(8)
    x, w = _data((2, 2, 8, 9), np.float64, rng), _data((3, 2, 3, 2), np.float64, rng)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(w.copy()).requires_grad_()
    yt = torch.nn.functional.conv2d(xt, torch.flip(wt, (2, 3)), padding=1)
    np.testing.assert_allclose(kernels.convolve2d(x, w, padding=1), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = _data(tuple(yt.shape), np.float64, rng)
    gxt, gwt = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(g))
    gx, gwf, _ = kernels.correlate2d_backward(g, x, np.ascontiguousarray(w[..., ::-1, ::-1]), padding=1)
    np.testing.assert_allclose(gx, gxt.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gwf[..., ::-1, ::-1], gwt.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 7, 8), (4, 3, 3, 3), dict(padding=1)),
    ((2, 2, 7, 9), (3, 2, 2, 3), dict(stride=2, padding="full", dilation=(1, 2))),
    ((6, 7), (3, 3), dict(padding="same")),
])
def test_backward_matches_central_finite_differences(xs, ws, kw):
    """<g, y(x + h v)> - <g, y(x - h v)> over 2h == <grad_x, v>, likewise for w and bias."""
    rng = _rng(9)
    x, w = _data(xs, np.float64, rng), _data(ws, np.float64, rng)
    b = _data((ws[0],), np.float64, rng) if len(ws) == 4 else 0.3
    g = _data(kernels.correlate2d(x, w, b, **kw).shape, np.float64, rng)
    gx, gw, gb = kernels.correlate2d_backward(g, x, w, **kw)

    def loss(xx, ww, bb):
        return float(np.sum(g * kernels.correlate2d(xx, ww, bb, **kw)))

    h = 1e-6
    vx, vw = _data(xs, np.float64, rng), _data(ws, np.float64, rng)
    vb = _data(np.shape(b), np.float64, rng)
    bb = np.asarray(b, dtype=np.float64)
    fd_x = (loss(x + h * vx, w, b) - loss(x - h * vx, w, b)) / (2 * h)
    fd_w = (loss(x, w + h * vw, b) - loss(x, w - h * vw, b)) / (2 * h)
    fd_b = (loss(x, w, bb + h * vb) - loss(x, w, bb - h * vb)) / (2 * h)
    for fd, an, v in ((fd_x, gx, vx), (fd_w, gw, vw), (fd_b, gb, vb)):
        exact = float(np.sum(an * v))
        assert abs(fd - exact) <= 1e-6 * (1 + abs(exact)), (fd, exact)


# ------------------------------------------------------------------ hypothesis properties


def _min_image(kh, kw, *, padding, dilation):
    """The smallest (H, W) into whose padded form the dilated filter fits."""
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if isinstance(padding, str):
        ph2 = {"valid": 0, "same": eh - 1, "full": 2 * (eh - 1)}[padding]
        pw2 = {"valid": 0, "same": ew - 1, "full": 2 * (ew - 1)}[padding]
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        ph2, pw2 = 2 * ph, 2 * pw
    return eh - ph2, ew - pw2


def _filter_fits(xshape, wshape, *, stride, padding, dilation):
    """Whether the dilated filter fits inside the padded input (else the call is a ValueError)."""
    hmin, wmin = _min_image(*wshape[-2:], padding=padding, dilation=dilation)
    return xshape[-2] >= hmin and xshape[-1] >= wmin


@st.composite
def conv_problems(draw, fit=True):
    """Random conv problems; with ``fit`` the image is grown until the dilated filter fits the
    padded input, without it a problem may be out of scope (see _filter_fits)."""
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.booleans())
    if draw(st.booleans()):  # the fused 3x3 paths get half the examples
        kh = kw = 3
        stride = dilation = (1, 1)
    else:
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(
        st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.sampled_from(["valid", "same", "full"]),
    ))
    if padding == "same":
        stride = (1, 1)
    H, W = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    if fit:
        hmin, wmin = _min_image(kh, kw, padding=padding, dilation=dilation)
        H, W = max(H, hmin), max(W, wmin)
    N, C, Co = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 6))) if batch else (1, 1, 1)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = _rng(seed)
    if batch:
        x, w, b = _data((N, C, H, W), dtype, rng), _data((Co, C, kh, kw), dtype, rng), _data((Co,), dtype, rng)
    else:
        x, w, b = _data((H, W), dtype, rng), _data((kh, kw), dtype, rng), dtype(rng.standard_normal())
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation)


@given(conv_problems(fit=False))
def test_property_forward_and_backward_match_reference(problem):
    x, w, b, kw = problem
    if not _filter_fits(x.shape, w.shape, **kw):
        # out of scope, not skipped: the user gets a ValueError naming the filter's extent
        with pytest.raises(ValueError, match="extent"):
            kernels.correlate2d(x, w, b, **kw)
        with pytest.raises(ValueError, match="extent"):
            kernels.correlate2d_backward(np.ones((1, 1), x.dtype), x, w, **kw)
        return
    y = check_forward(x, w, b, **kw)
    g = _data(y.shape, x.dtype, _rng(11))
    check_backward(g, x, w, **kw)


@given(conv_problems())
def test_property_convolve2d_matches_reference(problem):
    """convolve2d over random shapes, batches, dilations and paddings, 'same' with even extents
    included (issue 17): the reference computes 'same' as the centred part of 'full', SciPy's
    definition, independently of the kernels' padding rule."""
    x, w, b, kw = problem
    got = kernels.convolve2d(x, w, b, **kw)
    ref = naive.convolve2d(x, w, b, **kw)
    assert got.shape == ref.shape
    b_abs = None if b is None else np.abs(np.asarray(b, dtype=np.float64))
    scale = naive.convolve2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), b_abs, **kw)
    assert_close(got, ref, scale, x.dtype)


@given(conv_problems())
def test_property_linearity_and_bias_shift(problem):
    """correlate2d is linear in x and adding c to the bias adds c to every output."""
    x, w, b, kw = problem
    y = kernels.correlate2d(x, w, **kw).astype(np.float64)
    y2 = kernels.correlate2d(2 * x, w, **kw).astype(np.float64)
    scale = forward_scale(x, w, None, **kw)
    tol = TOL[x.dtype]
    assert np.all(np.abs(y2 - 2 * y) <= 4 * tol * scale + 1e-30)
    yb = kernels.correlate2d(x, w, b, **kw).astype(np.float64)
    shift = np.asarray(b, dtype=np.float64).reshape((-1, 1, 1) if x.ndim == 4 else ())
    assert np.all(np.abs(yb - y - shift) <= 2 * tol * (scale + np.abs(shift)) + 1e-30)


# ------------------------------------------------------------------ the homework


I_HW = np.array([[0, 0, 0, 0, 0],
                 [0, 0, 1, 1, 1],
                 [1, 1, 1, 1, 0],
                 [0, 1, 1, 1, 0],
                 [0, 0, 1, 0, 0]], dtype=float)
J_HW = np.array([[-1, -1, -1],
                 [0, 0, 0],
                 [1, 1, 1]], dtype=float)


def _definition_correlate(I, J):
    """Question 3.1 straight from the definition: zero outside I, 'same' size, 3x3 filter."""
    out = np.zeros_like(I)
    for y in range(I.shape[0]):
        for x in range(I.shape[1]):
            s = 0.0
            for i in range(3):
                for j in range(3):
                    r, c = y + i - 1, x + j - 1
                    if 0 <= r < I.shape[0] and 0 <= c < I.shape[1]:
                        s += I[r, c] * J[i, j]
            out[y, x] = s
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_homework_3_1_both_conventions(dtype):
    I, J = I_HW.astype(dtype), J_HW.astype(dtype)
    # Worked by hand from the definition: row y of the cross-correlation is (sum of I's row
    # y+1 over the 3-wide window) minus (the same for row y-1).
    expected_corr = np.array([[0, 1, 2, 3, 2],
                              [2, 3, 3, 2, 1],
                              [1, 1, 1, -1, -1],
                              [-2, -2, -2, -1, -1],
                              [-1, -2, -3, -2, -1]], dtype=dtype)
    np.testing.assert_array_equal(_definition_correlate(I_HW, J_HW), expected_corr)
    corr = kernels.correlate2d(I, J, padding="same")
    conv = kernels.convolve2d(I, J, padding="same")  # the lecture's convention
    np.testing.assert_array_equal(corr, expected_corr)
    np.testing.assert_array_equal(conv, -expected_corr)  # flipping J negates it: sign flips
    np.testing.assert_array_equal(conv, naive.convolve2d(I, J, padding="same"))
    signal = pytest.importorskip("scipy.signal")
    np.testing.assert_array_equal(conv, signal.convolve2d(I_HW, J_HW, mode="same").astype(dtype))
    np.testing.assert_array_equal(corr, signal.correlate2d(I_HW, J_HW, mode="same").astype(dtype))


# ------------------------------------------------------------------ validation


def _err(fn, exc, name, *args, **kw):
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert name in str(info.value), str(info.value)


def test_validation_errors_name_the_argument():
    x = np.zeros((2, 3, 6, 6))
    w = np.zeros((4, 3, 3, 3))
    c2 = kernels.correlate2d
    _err(c2, TypeError, "x", x.astype(np.int64), w)
    _err(c2, TypeError, "x", x.astype(np.complex128), w)
    _err(c2, TypeError, "x", x.astype(np.float16), w)
    _err(c2, TypeError, "x", x.astype(bool), w)
    _err(c2, TypeError, "w", x, w.astype(np.float32))
    _err(c2, ValueError, "x", np.zeros((3, 6, 6)), w)
    _err(c2, ValueError, "w", x, np.zeros((3, 3)))
    _err(c2, ValueError, "w", np.zeros((6, 6)), np.zeros((1, 1, 3, 3)))
    _err(c2, ValueError, "channels", x, np.zeros((4, 2, 3, 3)))
    _err(c2, ValueError, "x", np.zeros((2, 3, 0, 6)), w)
    _err(c2, ValueError, "w", x, np.zeros((4, 3, 0, 3)))
    _err(c2, ValueError, "w", np.zeros((2, 3, 2, 6)), w)  # filter taller than the input
    _err(c2, ValueError, "w", np.zeros((4, 4)), np.zeros((3, 3)), dilation=2)  # dilated extent 5 > 4
    _err(c2, ValueError, "stride", x, w, stride=0)
    _err(c2, ValueError, "stride", x, w, stride=(1, -2))
    _err(c2, TypeError, "stride", x, w, stride=1.5)
    _err(c2, TypeError, "stride", x, w, stride=True)
    _err(c2, ValueError, "dilation", x, w, dilation=0)
    _err(c2, ValueError, "padding", x, w, padding=-1)
    _err(c2, ValueError, "padding", x, w, padding=(1, 2, 3))
    _err(c2, ValueError, "padding", x, w, padding="circular")
    _err(c2, ValueError, "padding", x, w, padding="same", stride=2)
    _err(c2, ValueError, "bias", x, w, np.zeros(3))
    _err(c2, TypeError, "bias", x, w, np.zeros(4, dtype=np.float32))
    _err(c2, ValueError, "bias", np.zeros((6, 6)), np.zeros((3, 3)), np.zeros(2))
    _err(c2, ValueError, "out", x, w, padding=1, out=np.zeros((2, 4, 5, 5)))
    _err(c2, TypeError, "out", x, w, padding=1, out=np.zeros((2, 4, 6, 6), dtype=np.float32))
    _err(c2, TypeError, "out", x, w, padding=1, out=[0.0])
    ro = np.zeros((2, 4, 6, 6))
    ro.flags.writeable = False
    _err(c2, ValueError, "out", x, w, padding=1, out=ro)
    _err(kernels.convolve2d, TypeError, "w", x, w.astype(np.float32))
    bw = kernels.correlate2d_backward
    _err(bw, ValueError, "grad_out", np.zeros((2, 4, 5, 5)), x, w, padding=1)
    _err(bw, TypeError, "grad_out", np.zeros((2, 4, 6, 6), dtype=np.float32), x, w, padding=1)
    _err(bw, TypeError, "grad_out", np.zeros((2, 4, 6, 6), dtype=np.int32), x, w, padding=1)
    _err(bw, ValueError, "channels", np.zeros((2, 4, 6, 6)), x, np.zeros((4, 2, 3, 3)), padding=1)


# ------------------------------------------------------------------ out=, layout, IEEE, determinism


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_filled_in_place_and_returned(dtype):
    rng = _rng(12)
    x, w, b = _data((2, 3, 7, 8), dtype, rng), _data((5, 3, 3, 3), dtype, rng), _data((5,), dtype, rng)
    ref = kernels.correlate2d(x, w, b, padding=1)
    out = np.full(ref.shape, np.nan, dtype=dtype)
    res = kernels.correlate2d(x, w, b, padding=1, out=out)
    assert res is out
    np.testing.assert_array_equal(out, ref)
    # a non-contiguous out (every other column of a wider array) is filled too, and nothing else
    big = np.full(ref.shape[:3] + (2 * ref.shape[3],), -7.0, dtype=dtype)
    view = big[..., ::2]
    assert kernels.correlate2d(x, w, b, padding=1, out=view) is view
    np.testing.assert_array_equal(view, ref)
    assert np.all(big[..., 1::2] == -7.0)
    # 2-D, via convolve2d
    x2, w2 = _data((6, 5), dtype, rng), _data((2, 3), dtype, rng)
    out2 = np.empty((5, 3), dtype=dtype)
    assert kernels.convolve2d(x2, w2, 1.5, out=out2) is out2
    np.testing.assert_array_equal(out2, kernels.convolve2d(x2, w2, 1.5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_inputs(dtype):
    rng = _rng(13)
    xb = _data((3, 2, 8, 18), dtype, rng)[::2, :, :, ::2].transpose(0, 1, 3, 2)  # strided and transposed
    wb = _data((4, 2, 3, 6), dtype, rng)[..., ::2]
    for kw in (dict(padding=1), dict(padding="same", dilation=2), dict(stride=2)):
        got = kernels.correlate2d(xb, wb, **kw)
        np.testing.assert_array_equal(got, kernels.correlate2d(xb.copy(), wb.copy(), **kw))
        check_forward(xb, wb, **kw)
        g = _data(got.shape, dtype, rng)[..., ::-1]
        for a, c in zip(kernels.correlate2d_backward(g, xb, wb, **kw),
                        kernels.correlate2d_backward(g.copy(), xb.copy(), wb.copy(), **kw)):
            np.testing.assert_array_equal(a, c)
    x2 = _data((9, 14), dtype, rng).T
    np.testing.assert_array_equal(kernels.correlate2d(x2, wb[0, 0], padding="same"),
                                  kernels.correlate2d(x2.copy(), wb[0, 0].copy(), padding="same"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [((11, 12), (3, 3)), ((2, 3, 9, 10), (5, 3, 3, 3)), ((2, 2, 9, 10), (3, 2, 2, 3))])
def test_nan_and_inf_propagate_like_the_reference(case, dtype):
    xs, ws = case
    rng = _rng(14)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    x[..., 0, 0] = np.nan
    x[..., 4, 5] = np.inf
    x[..., 6, 2] = -np.inf
    x[..., -1, -1] = np.inf
    for kw in (dict(padding="same"), dict(padding="valid"), dict(padding=2), dict(stride=2, padding=1),
               dict(stride=(3, 2), dilation=(1, 2), padding=2)):
        check_forward(x, w, **kw)  # at a stride, a NaN in a column no output reads stays out
    # a non-finite filter tap times a zero of the padding is NaN under the zero-padded definition
    xf = _data(xs, dtype, rng)
    wf = w.copy()
    wf[..., 0, 0] = np.inf
    wf[..., -1, -1] = -np.inf
    for kw in (dict(padding="same"), dict(padding=1), dict(padding="full")):
        got = check_forward(xf, wf, **kw)
        assert np.isnan(got).any()
    torch = pytest.importorskip("torch")
    if xf.ndim == 4 and dtype == np.float64:
        # PyTorch's float64 path materialises the zero padding (im2col) and agrees; its float32
        # path (oneDNN) skips padded taps, so inf * 0 never happens there: not an oracle for this.
        ref = torch.nn.functional.conv2d(torch.from_numpy(xf), torch.from_numpy(wf), padding=1).numpy()
        got = kernels.correlate2d(xf, wf, padding=1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [((9, 10), (3, 3), dict(padding="same")),
                                  ((2, 3, 8, 9), (4, 3, 3, 3), dict(padding=1)),
                                  ((2, 2, 8, 9), (3, 2, 2, 3), dict(stride=2, padding="full"))])
def test_backward_nan_and_inf_propagate_like_the_reference(case, dtype):
    xs, ws, kw = case
    rng = _rng(17)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
    w[..., 0, 0] = np.inf  # its products with padding positions are never formed for grad_x
    x[..., 2, 3] = np.nan
    g[..., 1, 1] = -np.inf
    check_backward(g, x, w, **kw)
    torch = pytest.importorskip("torch")
    if x.ndim == 4 and dtype == np.float64:
        xt = torch.from_numpy(x.copy()).requires_grad_()
        wt = torch.from_numpy(w.copy()).requires_grad_()
        pad = kw.get("padding")
        if pad == "full":
            pad = (ws[2] - 1, ws[3] - 1)
        yt = torch.nn.functional.conv2d(xt, wt, stride=kw.get("stride", 1), padding=pad)
        for a, t in zip(kernels.correlate2d_backward(g, x, w, **kw), torch.autograd.grad(yt, (xt, wt), torch.from_numpy(g))):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(t.numpy()))
            np.testing.assert_array_equal(np.isinf(a), np.isinf(t.numpy()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ws,kw", [((4, 3, 3, 3), dict(stride=2, padding=1)), ((2, 3, 5, 5), dict(stride=(1, 2), padding=2)),
                                   ((3, 3, 1, 1), dict()), ((2, 3, 2, 3), dict(dilation=2, padding=1))])
def test_backward_with_finite_filter_and_nonfinite_data(ws, kw, dtype):
    """A finite filter lets the backward pass spread grad_out out by the stride and widen it with
    zeros (the extra products are zero); NaN and inf in x and grad_out must still land exactly
    where the reference puts them, and a non-finite x must take the exact path for grad_w."""
    rng = _rng(18)
    x, w = _data((2, 3, 9, 11), dtype, rng), _data(ws, dtype, rng)
    g = _data(kernels.correlate2d(x, w, **kw).shape, dtype, rng)
    g[0, 0, 1, 1] = np.inf
    check_backward(g, x, w, **kw)
    x[1, 2, 4, 5] = np.nan
    check_backward(g, x, w, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_across_calls_and_thread_counts(dtype):
    rng = _rng(15)
    cases = [((2, 5, 20, 21), (6, 5, 3, 3), dict(padding=1)), ((40, 33), (3, 3), dict(padding="same")),
             ((2, 3, 12, 13), (4, 3, 2, 3), dict(stride=2, padding=1))]
    threads = numba.get_num_threads()
    try:
        for xs, ws, kw in cases:
            x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
            y = kernels.correlate2d(x, w, **kw)
            g = _data(y.shape, dtype, rng)
            grads = kernels.correlate2d_backward(g, x, w, **kw)
            for n in (1, threads, threads):
                numba.set_num_threads(n)
                np.testing.assert_array_equal(kernels.correlate2d(x, w, **kw), y)
                for a, c in zip(kernels.correlate2d_backward(g, x, w, **kw), grads):
                    np.testing.assert_array_equal(a, c)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("shape", [(37, 133), (3, 1, 29, 70), (9, 5)])
def test_single_channel_stencil_ignores_output_alignment(shape, streaming, dtype, monkeypatch):
    """The single-channel 3x3 path writes vector blocks from the first 64-byte-aligned output
    address, scalar head and tail around them (kernels._simd), with non-temporal stores when
    ``streaming``: every element must come out bit-identical wherever the output buffer starts,
    and match the reference. Streaming is forced on small images here by lowering its size
    threshold, so this runs the code path the 2048x2048 benchmark takes."""
    from kernels.conv import tiles  # the dispatch reads its thresholds from here at each call

    monkeypatch.setattr(tiles, "_STREAM_MIN_BYTES", 0 if streaming else 1 << 62)
    rng = _rng(17)
    x = _data(shape, dtype, rng)
    w = _data((3, 3) if len(shape) == 2 else (1, 1, 3, 3), dtype, rng)
    b = None if len(shape) == 2 else _data((1,), dtype, rng)
    ref = check_forward(x, w, b, padding="same")
    buf = np.full(ref.size + 16, np.nan, dtype=dtype)
    for offset in range(16):  # every element alignment modulo 64 bytes, both dtypes
        out = buf[offset : offset + ref.size].reshape(ref.shape)
        assert kernels.correlate2d(x, w, b, padding="same", out=out) is out
        np.testing.assert_array_equal(out, ref)
    # a tiling with other task boundaries gives the same bits too
    monkeypatch.setattr(tiles, "_STENCIL_TILE_ELEMENTS", 97)
    np.testing.assert_array_equal(kernels.correlate2d(x, w, b, padding="same"), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wshape,kw", [((3, 3), dict(padding="same")), ((5, 4), dict(stride=2, padding=1)),
                                       ((3, 3), dict(dilation=2, padding=2))])
def test_single_channel_serial_and_parallel_builds_agree(wshape, kw, dtype, monkeypatch):
    """A single-channel image that is one tile runs the serial build of the copy-free kernel,
    a batch or an image of several tiles the parallel build (kernels.conv.direct._CORRELATE):
    the same bits, and the reference's values."""
    from kernels.conv import direct, tiles

    rng = _rng(18)
    x, w = _data((2, 1, 45, 67), dtype, rng), _data((1, 1) + wshape, dtype, rng)
    monkeypatch.setattr(tiles, "_STENCIL_TILE_ELEMENTS", 1 << 40)  # an image is one tile
    monkeypatch.setattr(tiles, "_TILE_ELEMENTS", 1 << 40)
    one_by_one = np.concatenate([kernels.correlate2d(x[i : i + 1], w, **kw) for i in range(2)])  # serial
    batched = kernels.correlate2d(x, w, **kw)  # two tiles: parallel
    np.testing.assert_array_equal(one_by_one, batched)
    monkeypatch.setattr(tiles, "_STENCIL_TILE_ELEMENTS", 200)  # several tiles per image: parallel
    monkeypatch.setattr(tiles, "_TILE_ELEMENTS", 200)
    np.testing.assert_array_equal(kernels.correlate2d(x[:1], w, **kw), one_by_one[:1])
    for parallel in (False, True):
        sigs = direct._CORRELATE[True, parallel].signatures
        assert any(str(s[0].dtype) == np.dtype(dtype).name for s in sigs), f"parallel={parallel} build never ran"
    check_forward(x, w, None, **kw)


@pytest.mark.parametrize("xs,pads,stride,geom", [
    ((2, 3, 9, 11), (1, 2, 3, 0), (2, 3), (2, 3, 1, 1)), ((1, 2, 8, 8), (0, 0, 0, 0), (2, 2), (3, 3, 1, 1)),
    ((1, 1, 7, 5), (2, 2, 2, 2), (3, 1), (3, 1, 1, 1)), ((2, 2, 5, 6), (0, 1, 4, 1), (1, 2), (1, 2, 1, 1)),
    ((1, 1, 6, 7), (0, 0, 1, 2), (2, 2), (2, 2, 1, 1)), ((1, 1, 3, 1), (5, 5, 5, 5), (2, 2), (3, 3, 1, 1)),
    ((1, 2, 9, 9), (1, 1, 1, 1), (4, 5), (3, 2, 2, 3)), ((1, 1, 4, 4), (0, 0, 0, 0), (10**9, 10**9), (2, 2, 1, 1)),
    ((1, 2, 6, 7), (2, 1, 3, 2), (1, 1), (3, 2, 2, 3)), ((2, 1, 5, 4), (0, 0, 0, 0), (1, 1), (1, 1, 1, 1))])
def test_phase_bands_are_the_padded_input_at_each_offset(xs, pads, stride, geom):
    """The strided forward's copy (kernels.conv.phases.PHASE_BAND, a band of rows of each
    plane's phases): phase (a, b) of a plane is the zero-padded plane's rows a, a + sh, ... and
    columns b, b + sw, ..., zero-filled to one shape, for the phases the filter's taps read
    (``(i dh) % sh``, ``(j dw) % sw``) and those only (a stride of 1e9 copies four), whichever
    rows a band starts at and however many it holds (rows past the plane are zeros)."""
    from kernels.conv.phases import phases_used

    x = _data(xs, np.float64, _rng(19))
    (pt, pb, pl, pr), (sh, sw), (kh, kw, dh, dw) = pads, stride, geom
    rows, cols = phases_used(kh, dh, sh), phases_used(kw, dw, sw)
    assert list(rows) == sorted({i * dh % sh for i in range(kh)})
    assert list(cols) == sorted({j * dw % sw for j in range(kw)})
    Hq, Wq = -(-(xs[2] + pt + pb) // sh), -(-(xs[3] + pl + pr) // sw)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = np.zeros(xs[:2] + (len(rows), len(cols), Hq + 3, Wq))
    for p, a in enumerate(rows):
        for q, b in enumerate(cols):
            part = xp[:, :, a::sh, b::sw]
            want[:, :, p, q, : part.shape[2], : part.shape[3]] = part
    for u0, band_rows in ((0, Hq), (1, 2), (Hq - 1, 4), (0, 1)):
        for n in range(xs[0]):
            band = np.full(xs[1] * len(rows) * len(cols) * band_rows * Wq, np.nan)
            copy = PHASE_BAND[row_copy(sw, len(cols))]
            copy(x, n, u0, band, band_rows, Wq, pt, pl, sh, sw, rows, cols)
            got = band.reshape(xs[1], len(rows), len(cols), band_rows, Wq)
            np.testing.assert_array_equal(got, want[n, :, :, :, u0 : u0 + band_rows])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", [((3, 5, 17, 23), (6, 5, 3, 3), dict(stride=2, padding=1)),
                                      ((1, 4, 20, 19), (9, 4, 5, 3), dict(stride=(3, 2), padding=(2, 1), dilation=(1, 2))),
                                      ((2, 3, 9, 30), (5, 3, 1, 1), dict(stride=(1, 4))),
                                      ((2, 4, 12, 13), (5, 4, 3, 3), dict(padding=2, dilation=2)),
                                      ((1, 3, 11, 9), (7, 3, 5, 5), dict(padding=2))])
def test_strided_forward_bands_change_no_bit(monkeypatch, xs, ws, kw, dtype):
    """The strided forward (and any filter but the 3x3 at stride 1, whose one phase is the
    padded plane) cuts each image into bands of output rows, each task copying the
    band of phases it reads (kernels.conv.tiles.phase_band_rows, which follows the thread
    count): one row per band, a few, and the whole image give the same bits, and match the
    reference."""
    from kernels.conv import tiles

    rng = _rng(21)
    x, w = _data(xs, dtype, rng), _data(ws, dtype, rng)
    want = check_forward(x, w, **kw)
    for band_bytes, tasks in ((1, 1), (3000, 1), (1 << 30, 1), (1 << 30, 64)):
        monkeypatch.setattr(tiles, "_PHASE_BAND_BYTES", band_bytes)
        monkeypatch.setattr(tiles, "_PHASE_BAND_TASKS_PER_THREAD", tasks)
        np.testing.assert_array_equal(kernels.correlate2d(x, w, **kw), want)
    # the order of the blocks: one block of output channels at a time (0), or every block over
    # 1, 2, ... input channels a pass (the last pass short) up to all of them at once
    chosen = tiles.band_channels_per_pass
    for per_pass in range(xs[1] + 1):
        monkeypatch.setattr(tiles, "band_channels_per_pass", lambda *args, k=per_pass: k)
        np.testing.assert_array_equal(kernels.correlate2d(x, w, **kw), want)
    monkeypatch.setattr(tiles, "band_channels_per_pass", chosen)


def test_band_channels_per_pass_keeps_the_rows_in_budget(monkeypatch):
    from kernels.conv import tiles
    from kernels.conv.phases import phase_offsets, phases_used

    def per_pass(C, k, stride, dilation=1, position_bytes=256):
        Wq = -(-(64 + 2) // stride)
        prow = phases_used(k, dilation, stride)
        offsets = phase_offsets(k, k, (dilation, dilation), (stride, stride), (33, Wq), (prow, prow))
        return tiles.band_channels_per_pass(offsets, Wq, C, position_bytes)

    monkeypatch.setattr(tiles, "_BAND_CHANNEL_BYTES", 32 << 10)
    # 3x3 at stride 2: six rows of phases per channel, 6 * (256 + 64) bytes: 17 channels a pass
    assert per_pass(32, 3, 2) == 17 and per_pass(64, 3, 2) == 17
    assert per_pass(16, 3, 2) == 0  # all 16 channels fit: one block of output channels at a time
    assert per_pass(16, 3, 1, dilation=2) == 0 and per_pass(64, 3, 1, dilation=2) == 34
    assert per_pass(64, 1, 1) == 0  # the 1x1: one row, read once
    monkeypatch.setattr(tiles, "_BAND_CHANNEL_BYTES", 1)
    assert per_pass(32, 3, 2) == 1


@pytest.mark.parametrize("stride", [10**9, (2, 10**9), (10**9, 3)])
def test_strides_wider_than_the_input_both_passes(stride):
    """A stride wider than the padded input is a valid call (one output position per row or
    column): the forward and both gradients match the reference, with no copy or loop sized by
    the stride (the strided copies hold only the phases the taps read)."""
    rng = _rng(20)
    x, w = _data((1, 2, 5, 7), np.float64, rng), _data((3, 2, 2, 3), np.float64, rng)
    kw = dict(stride=stride, padding=1)
    y = check_forward(x, w, **kw)
    check_backward(_data(y.shape, np.float64, rng), x, w, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_forms_for_single_channel(dtype):
    rng = _rng(16)
    x, w = _data((6, 7), dtype, rng), _data((3, 3), dtype, rng)
    base = kernels.correlate2d(x, w, padding=1)
    for b in (0.5, np.float64(0.5), np.array(0.5, dtype=dtype), np.array([0.5], dtype=dtype)):
        got = kernels.correlate2d(x, w, b, padding=1)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, base + dtype(0.5), rtol=TOL[np.dtype(dtype)] * 10)


def test_huge_padding_or_dilation_is_refused_up_front_naming_them():
    """An output or padded copy of terabytes is refused before allocating (AllocationError is
    both a ValueError naming the geometry and a MemoryError), while a huge dilation whose
    output stays small still computes."""
    x = np.arange(64.0).reshape(1, 1, 8, 8)
    w = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"padding=1000000000") as info:
        kernels.correlate2d(x, w, padding=10**9)
    assert isinstance(info.value, MemoryError)
    with pytest.raises(MemoryError, match=r"zero-padded copy"):
        kernels.correlate2d_backward(np.ones((1, 1, 8, 8)), x, w, padding="same", dilation=10**6)
    # every tap but the centre falls in the padding: the output is the centre tap times x
    np.testing.assert_array_equal(kernels.correlate2d(x, w, padding="same", dilation=10**6), x)


@pytest.mark.skipif(_simd.WIDE_CHANNEL_BLOCK == 0, reason="no wide channel block with 16 vector registers")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("co,kw", [(6, dict(padding=2)), (5, dict(stride=2, padding=1)), (18, dict(dilation=2)),
                                   (6, dict(padding=1, C=40))])
def test_wide_channel_block_gives_the_bits_of_blocks_of_four(co, kw, dtype, monkeypatch):
    """5, 6, 17-18 ... output channels run in blocks of six (one block for LeNet-5's six, where
    blocks of four computed eight): each output's multiply-adds in the same order, the same bits
    as blocks of four, forward and input gradient (over 40 input channels, a few at a time)."""
    from kernels.conv import blocked, forward

    assert blocked.band_channel_block(co) == _simd.WIDE_CHANNEL_BLOCK
    assert blocked.band_channel_block(16) == blocked.band_channel_block(3) == _simd.CHANNEL_BLOCK
    kw = dict(kw)
    C = kw.pop("C", 3)
    rng = _rng(35)
    k = 3 if "dilation" in kw or "stride" in kw else 5
    x, w, b = _data((2, C, 13, 15), dtype, rng), _data((co, C, k, k), dtype, rng), _data((co,), dtype, rng)
    y = kernels.correlate2d(x, w, b, **kw)
    g = _data(y.shape, dtype, rng)
    gx = kernels.correlate2d_backward(g, x, w, **kw)[0]
    monkeypatch.setattr(forward, "band_channel_block", lambda Co: _simd.CHANNEL_BLOCK)
    np.testing.assert_array_equal(y, kernels.correlate2d(x, w, b, **kw))
    np.testing.assert_array_equal(gx, kernels.correlate2d_backward(g, x, w, **kw)[0])
    single = np.dtype(dtype) == np.float32
    np.testing.assert_allclose(y, naive.correlate2d(x, w, b, **kw), rtol=1e-4 if single else 1e-12,
                               atol=1e-3 if single else 1e-12)
