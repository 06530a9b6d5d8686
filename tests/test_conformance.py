"""Conformance with the peers' own test suites (issue 17).

The other test modules check the kernels against SciPy and PyTorch on random inputs. This one
runs the cases those projects wrote for themselves, which hold the edge semantics their users
rely on, through the kernels:

* SciPy 1.17.1, ``scipy/signal/tests/test_signaltools.py`` (shipped in the wheel): the 2-D
  convolve2d/correlate2d cases, the real 2-D (and 1-D, lifted to a single row as SciPy's own
  ``test_consistency_*`` tests do) cases of convolve/correlate/fftconvolve, boundary 'fill' with
  fill value 0 (the only boundary the kernels offer). SciPy's inputs are Python ints; the
  kernels refuse integers (asserted below), so the same values run as float64 and float32.
* PyTorch 2.13.0: ``torch/testing/_internal/common_methods_invocations.py``
  (``sample_inputs_max_pool`` with ``_TestParamsMaxPool2d``, ``sample_inputs_conv2d``,
  ``error_inputs_max_pool2d``, ``error_inputs_conv2d``), ``common_nn.py`` (the Conv2d module
  tests), ``common_modules.py`` (``module_inputs_torch_nn_ConvNd``, ``..._MaxPool2d`` and its
  error inputs), all in the wheel; ``test/nn/test_pooling.py`` (pytorch/pytorch@00b6bcf576b7)
  and ``test/nn/test_convolution.py`` (pytorch/pytorch@00131b6bd4be), which the wheel does not
  ship, read from the repository. The wheel's sample-input generators cannot be imported here
  (``common_utils`` needs ``expecttest``), so their parameter grids are transcribed and the data
  drawn from a seeded generator the way ``make_tensor`` draws it (uniform in [-9, 9)).

Each case names its source (file::test, version). Literal expected values are the peer's; where
the peer's test compares the peer with itself (CPU vs CUDA, channels-last vs contiguous,
module vs functional) the expected value is the peer's output on the same data. float64 agrees
to 1e-12 and float32 to 1e-5 relative to the magnitude of the terms each output sums (a plain
elementwise relative tolerance is meaningless where terms cancel); pooling values, indices and
gradients agree exactly.

Scope: 2-D, real float32/float64, zero padding, no groups, no ceil_mode, no pooling dilation.
:data:`OUT_OF_SCOPE` lists every peer case left out and why; where the kernels answer such a case
with an error (integers, complex, float16, 3-D input to a convolution, an argument they do not
have), the error is asserted. Deliberate differences (SciPy swapping the operands of 'valid'
when the filter is the larger, ``signal.correlate``'s 'same' centring, 2-D input to
``maxpool2d``, zero channels, ...) are asserted as documented, never skipped; the README's
"Contracts" section lists them in one table.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import kernels

# PyTorch's own notices while computing expected values (not about the kernels)
pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN:UserWarning"),
]

DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

SCIPY = "SciPy 1.17.1 scipy/signal/tests/test_signaltools.py"
TORCH_OPINFO = "PyTorch 2.13.0 torch/testing/_internal/common_methods_invocations.py"
TORCH_NN = "PyTorch 2.13.0 torch/testing/_internal/common_nn.py"
TORCH_MODULES = "PyTorch 2.13.0 torch/testing/_internal/common_modules.py"
TORCH_POOLING = "PyTorch test/nn/test_pooling.py (pytorch/pytorch@00b6bcf576b7)"
TORCH_CONV = "PyTorch test/nn/test_convolution.py (pytorch/pytorch@00131b6bd4be)"


# ============================================================================================
# Out of scope: the peer cases not run, and why. Where the kernels give an error for such a
# case, a test below asserts it (named in the reason).
# ============================================================================================

OUT_OF_SCOPE = [
    # ---- SciPy 1.17.1, scipy/signal/tests/test_signaltools.py
    (f"{SCIPY}::TestConvolve2d::test_valid_mode_complx", "complex inputs: TypeError (test_complex_inputs_refused)"),
    (f"{SCIPY}::TestConvolve2d::test_valid_mode2 (complex half)",
     "complex inputs: TypeError (test_complex_inputs_refused)"),
    (f"{SCIPY}::TestCorrelate2d::test_complex_input", "complex inputs: TypeError (test_complex_inputs_refused)"),
    (f"{SCIPY}::TestConvolve::test_complex", "complex inputs: TypeError (test_complex_inputs_refused)"),
    (f"{SCIPY}::TestCorrelateComplex::*", "complex inputs: TypeError (test_complex_inputs_refused)"),
    (f"{SCIPY}::TestConvolve2d::test_fillvalue", "fill value 1: only zero fill is offered; no fillvalue argument "
                                                 "(TypeError, test_scipy_boundary_and_fillvalue_are_not_offered)"),
    (f"{SCIPY}::TestConvolve2d::test_fillvalue_errors", "no fillvalue argument (TypeError)"),
    (f"{SCIPY}::TestConvolve2d::test_fillvalue_empty", "no fillvalue argument (TypeError)"),
    (f"{SCIPY}::TestConvolve2d::test_wrap_boundary",
     "boundary='wrap' not offered (TypeError); pad with np.pad(mode='wrap')"),
    (f"{SCIPY}::TestConvolve2d::test_sym_boundary",
     "boundary='symm' not offered (TypeError); pad with np.pad(mode='symmetric')"),
    (f"{SCIPY}::TestConvolve2d::test_same_with_boundary", "boundary='symm'/'wrap' not offered (TypeError)"),
    (f"{SCIPY}::TestConvolve2d::test_boundary_extension_same", "boundary='wrap' not offered (TypeError)"),
    (f"{SCIPY}::TestConvolve2d::test_boundary_extension_full", "boundary='wrap' not offered (TypeError)"),
    (f"{SCIPY}::TestConvolve2d::test_large_array (full size)", "(268435, 1000) int64 input and (268435, 1001) output: "
                                                              "~4 GB as float64; run at a reduced number of rows"),
    (f"{SCIPY}::TestConvolve::test_zero_rank / test_zero_rank_python_scalars / test_single_element",
     "0-D and 1-D operands: ValueError (test_scipy_invalid_dims); a 1-D signal is a 1 x n row"),
    (f"{SCIPY}::TestConvolve::test_broadcastable / test_input_swapping",
     "3-D operands (and complex): not a 2-D convolution"),
    (f"{SCIPY}::TestConvolve::test_convolve_method / test_convolve_method_large_input",
     "method='fft'/'direct' over integer, bool, float16 and complex dtypes: no method argument; dtypes refused"),
    (f"{SCIPY}::TestConvolve::test_mismatched_dims / TestCorrelate::test_mismatched_dims", "0-D/1-D operands"),
    (f"{SCIPY}::TestCorrelateReal::* (integer, unsigned and longdouble dtypes)",
     "only float32/float64: TypeError (test_integer_inputs_refused, test_other_float_widths_refused)"),
    (f"{SCIPY}::TestCorrelateReal::test_method", "method='fft' vs 'direct' on Fortran-ordered rank-3 data: no method "
                                                 "argument (the rank-3 data itself runs, mapped to channels)"),
    (f"{SCIPY}::TestCorrelate::test_numpy_fastpath / test_correlation_lags*", "1-D correlate internals and lag helper"),
    (f"{SCIPY}::TestFFTConvolve::* (complex, axes=, random_data, many_sizes, empty, zero_rank, fft_nan)",
     "FFT method, axes argument, complex, 0-D/empty operands; the real 2-D and 1-D literal cases run"),
    (f"{SCIPY}::TestOAConvolve::*", "overlap-add method, axes argument"),
    (f"{SCIPY}::TestAllFreqConvolves::*", "frequency-domain methods' argument checks"),
    (f"{SCIPY}::test_convolve_longdtype_input", "longdouble: TypeError (test_other_float_widths_refused)"),
    (f"{SCIPY}::test_choose_conv_method*", "method selection"),
    # ---- PyTorch 2.13.0, OpInfo sample and error inputs
    (f"{TORCH_OPINFO}::sample_inputs_max_pool (nn.functional.max_pool2d, ceil_mode=True)",
     "ceil_mode not offered: TypeError, asserted per sample (test_torch_sample_inputs_max_pool2d)"),
    (f"{TORCH_OPINFO}::sample_inputs_max_pool (nn.functional.max_pool2d, dilation=(1, 2))",
     "pooling dilation not offered: TypeError, asserted per sample (test_torch_sample_inputs_max_pool2d)"),
    (f"{TORCH_OPINFO}::sample_inputs_conv2d (8 of 15 cases with groups > 1)",
     "groups not offered: TypeError, asserted per sample (test_torch_sample_inputs_conv2d)"),
    (f"{TORCH_OPINFO}::error_inputs_conv2d (groups cases)", "groups not offered: TypeError"),
    (f"{TORCH_OPINFO}::op_db nn.functional.conv2d / max_pool2d (half, bfloat16, complex, integer dtypes)",
     "only float32/float64: TypeError (bfloat16 has no NumPy dtype)"),
    # ---- PyTorch 2.13.0, common_nn.py / common_modules.py
    (f"{TORCH_NN}::Conv2d_groups / Conv2d_groups_thnn / Conv2d_depthwise* (5)", "groups not offered: TypeError"),
    (f"{TORCH_NN}::ConvTranspose2d*, Conv1d*, Conv3d*", "other operations"),
    (f"{TORCH_MODULES}::module_inputs_torch_nn_ConvNd (N=1, N=3, transposed, lazy)", "other operations"),
    # ---- PyTorch test/nn/test_pooling.py
    (f"{TORCH_POOLING}::TestPoolingNNDeviceType::test_max_pool2d_corner_cases",
     "int32/int64 input with dilation 2 and ceil_mode: TypeError (test_torch_integer_pooling_refused)"),
    (f"{TORCH_POOLING}::TestPoolingNNDeviceType::test_pooling_max_nhwc", "pooling dilation (2, 2): TypeError"),
    (f"{TORCH_POOLING}::TestPoolingNNDeviceType::test_max_pool_bfloat16_half", "half/bfloat16: TypeError for float16"),
    (f"{TORCH_POOLING}::TestPoolingNNDeviceType::test_pooling_shape (ceil_mode=True checks, gh-45357)",
     "ceil_mode: TypeError (test_torch_pooling_shape)"),
    (f"{TORCH_POOLING}::TestPoolingNNDeviceType::test_pool_invalid_size (dilation=2 form)",
     "pooling dilation: the kernel_size=6 form it falls back to runs"),
    (f"{TORCH_POOLING}::_test_maxpool_indices (backward after indices.add_(1) raises)",
     "no autograd graph: maxpool2d_backward takes indices as data and checks only their range"),
    (f"{TORCH_POOLING}::test_max_pool1d*, *3d*, AvgPool*, AdaptiveMaxPool*, FractionalMaxPool*, MaxUnpool*, "
     "test_pooling_large, test_pool3d_*", "other operations or dimensions (or CUDA-only sizes)"),
    # ---- PyTorch test/nn/test_convolution.py
    (f"{TORCH_CONV}::TestConvolutionNN::test_Conv2d_module_same_padding (padding_mode='reflect')",
     "padding modes other than zeros not offered: pad with np.pad, then 'valid'"),
    (f"{TORCH_CONV}::test_Conv2d_groups_nobias*, test_Conv2d_naive_groups, test_Conv2d_OneDNN, "
     "test_Conv2d_depthwise_naive_groups, test_Conv2d_backward_depthwise, test_group_conv_empty, "
     "test_conv_double_backward_groups, test_permute_conv2d_issue_120211", "groups not offered: TypeError"),
    (f"{TORCH_CONV}::TestConvolutionNNDeviceType::test_conv_backend",
     "backend selection; all its 2-D subtests use groups=3"),
    (f"{TORCH_CONV}::test_conv_double_backward*", "double backward not offered"),
    (f"{TORCH_CONV}::test_conv2d_same_padding / _backward / test_conv2d_valid_padding* / test_invalid_conv2d / "
     "test_mismatch_shape_conv2d / test_conv2d_discontiguous_weight (complex dtypes)", "complex: TypeError"),
    (f"{TORCH_CONV}::test_conv_empty_channel (accepting 0 input channels)",
     "zero channels: ValueError, a deliberate difference (test_torch_zero_channels_refused)"),
    (f"{TORCH_CONV}::test_conv_backcompat, test_conv_padding_mode, test_Conv2d_backward_twice, "
     "test_conv_tbc, test_nnpack_conv", "module serialisation/construction, autograd graph, other operators"),
    (f"{TORCH_CONV}::cuDNN/MIOpen/MKLDNN/MPS-specific and large-tensor tests (test_cudnn_*, "
     "test_conv_cudnn_*, test_Conv2d_large_workspace, test_conv_large*, test_*64bit_indexing, "
     "test_Conv2d_deterministic_cudnn, test_Conv2d_inconsistent_types_on_GPU_*)",
     "device backends; the CPU-comparable geometries of test_thnn_conv_strided_padded_dilated, "
     "test_Conv2d_size_1_kernel and test_noncontig_conv_grad run against CPU PyTorch"),
    (f"{TORCH_CONV}::ConvTranspose*, conv1d/conv3d tests", "other operations"),
]


def test_out_of_scope_table_is_well_formed():
    assert len(OUT_OF_SCOPE) == len({case for case, _ in OUT_OF_SCOPE})
    for case, reason in OUT_OF_SCOPE:
        assert case.startswith(("SciPy 1.17.1 ", "PyTorch ")) and "::" in case, case
        assert isinstance(reason, str) and reason, case


# ============================================================================================
# helpers
# ============================================================================================


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch's outputs are the expected values of these cases")


@pytest.fixture(scope="module")
def signal():
    return pytest.importorskip("scipy.signal", reason="SciPy's outputs are the expected values of these cases")


def _uniform(rng, shape, dtype):
    """What ``torch.testing.make_tensor`` draws for a float dtype: uniform in [-9, 9)."""
    return rng.uniform(-9.0, 9.0, size=shape).astype(dtype)


def _channels_last(a):
    """The same values as ``a`` (N, C, H, W), laid out (N, H, W, C) in memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def assert_scaled_close(got, ref, scale, dtype, what=""):
    """|got - ref| <= tol(dtype) * scale elementwise; same shape, dtype and non-finite pattern."""
    got, ref = np.asarray(got), np.asarray(ref)
    scale = np.asarray(scale, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype} != {np.dtype(dtype)}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=what)
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)], err_msg=what)
    err = np.abs(got[fin].astype(np.float64) - ref[fin].astype(np.float64))
    bound = TOL[np.dtype(dtype)] * np.broadcast_to(scale, ref.shape)[fin] + 1e-300
    assert np.all(err <= bound), f"{what}: max excess {np.max(err - bound)} (max err {err.max()})"


def assert_literal(got, expected, dtype, what=""):
    """Against a peer's literal expected array (sums of a few terms): tol(dtype) relative."""
    expected = np.asarray(expected, dtype=np.float64)
    assert_scaled_close(got, expected, np.abs(expected).max(), dtype, what)


def _torch_conv(torch, x, w, b=None, g=None, **kw):
    """PyTorch's conv2d output (and gradients for upstream ``g``) on x, w, b, and the magnitude
    of the terms each of them sums (the same computation on absolute values, in float64)."""
    F = torch.nn.functional

    def run(xa, wa, ba, ga):
        X = torch.from_numpy(np.array(xa)).requires_grad_(ga is not None)
        W = torch.from_numpy(np.array(wa)).requires_grad_(ga is not None)
        B = None if ba is None else torch.from_numpy(np.array(ba)).requires_grad_(ga is not None)
        y = F.conv2d(X, W, B, **kw)
        if ga is None:
            return (y.detach().numpy(),)
        y.backward(torch.from_numpy(np.array(ga)))
        gb = B.grad.numpy() if B is not None else np.array(ga).sum(axis=(0, 2, 3))
        return y.detach().numpy(), X.grad.numpy(), W.grad.numpy(), gb

    ref = run(x, w, b, g)
    f64 = lambda a: None if a is None else np.abs(np.asarray(a, dtype=np.float64))  # noqa: E731
    scale = run(f64(x), f64(w), f64(b), f64(g))
    return ref, scale


def check_conv_vs_torch(torch, x, w, b=None, g=None, what="", **kw):
    """kernels.correlate2d (and correlate2d_backward when ``g`` is given) == torch conv2d (and its
    autograd), to tol(dtype) of the magnitude of the summed terms. ``kw``: stride, padding,
    dilation as torch spells them (the kernels take the same forms)."""
    dtype = np.asarray(x).dtype
    ref, scale = _torch_conv(torch, x, w, b, g, **kw)
    y = kernels.correlate2d(x, w, b, **kw)
    assert_scaled_close(y, ref[0], scale[0], dtype, f"{what} forward")
    if g is not None:
        for name, got, r, s in zip(("grad_x", "grad_w", "grad_b"), kernels.correlate2d_backward(g, x, w, **kw),
                                   ref[1:], scale[1:]):
            assert_scaled_close(got, r, s, dtype, f"{what} {name}")
    return y


def _torch_pool(torch, x, g=None, **kw):
    """PyTorch's max_pool2d values, indices (and input gradient for upstream ``g``)."""
    X = torch.from_numpy(np.array(x))
    if x.ndim == 4 and not x.flags.c_contiguous and _channels_last(np.asarray(x)).strides == x.strides:
        X = X.contiguous(memory_format=torch.channels_last)
    X.requires_grad_(g is not None)
    y, idx = torch.nn.functional.max_pool2d(X, return_indices=True, **kw)
    gx = None
    if g is not None:
        y.backward(torch.from_numpy(np.array(g)))
        gx = X.grad.numpy()
    return y.detach().numpy(), idx.numpy(), gx


def check_pool_vs_torch(torch, x, g=None, what="", **kw):
    """kernels.maxpool2d/maxpool2d_backward == torch max_pool2d and its autograd, exactly."""
    ry, ridx, rgx = _torch_pool(torch, x, g, **kw)
    y, idx = kernels.maxpool2d(x, return_indices=True, **kw)
    assert y.dtype == x.dtype and idx.dtype == np.int64, what
    np.testing.assert_array_equal(y, ry, err_msg=f"{what} values")
    np.testing.assert_array_equal(idx, ridx, err_msg=f"{what} indices")
    np.testing.assert_array_equal(kernels.maxpool2d(x, **kw), ry, err_msg=f"{what} values without indices")
    if g is not None:
        gx = kernels.maxpool2d_backward(g, idx, x.shape)
        assert gx.dtype == x.dtype
        np.testing.assert_array_equal(gx, rgx, err_msg=f"{what} grad_x")
    return y, idx


# ============================================================================================
# SciPy 1.17.1, scipy/signal/tests/test_signaltools.py
# ============================================================================================

_A23 = [[1, 2, 3], [3, 4, 5]]
_B23 = [[2, 3, 4], [4, 5, 6]]
_E27 = [[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]]
_FFT_A = [1, 2, 3]
_FFT_B = [3, 3, 5, 6, 8, 7, 9, 0, 1]

# TestCorrelateReal._setup_rank1 / _setup_rank3 (the arrays are built exactly as there).
_R1_A, _R1_B = np.linspace(0, 3, 4), np.linspace(1, 2, 2)
_R1_Y = np.array([0, 2, 5, 8, 3], dtype=np.float64)
_R3_A = np.linspace(0, 39, 40).reshape((2, 4, 5), order="F")
_R3_B = np.linspace(0, 23, 24).reshape((2, 3, 4), order="F")
_R3_Y = np.array([
    [[0., 184., 504., 912., 1360., 888., 472., 160.],
     [46., 432., 1062., 1840., 2672., 1698., 864., 266.],
     [134., 736., 1662., 2768., 3920., 2418., 1168., 314.],
     [260., 952., 1932., 3056., 4208., 2580., 1240., 332.],
     [202., 664., 1290., 1984., 2688., 1590., 712., 150.],
     [114., 344., 642., 960., 1280., 726., 296., 38.]],
    [[23., 400., 1035., 1832., 2696., 1737., 904., 293.],
     [134., 920., 2166., 3680., 5280., 3306., 1640., 474.],
     [325., 1544., 3369., 5512., 7720., 4683., 2192., 535.],
     [571., 1964., 3891., 6064., 8272., 4989., 2324., 565.],
     [434., 1360., 2586., 3920., 5264., 3054., 1312., 230.],
     [241., 700., 1281., 1888., 2496., 1383., 532., 39.]],
    [[22., 214., 528., 916., 1332., 846., 430., 132.],
     [86., 484., 1098., 1832., 2600., 1602., 772., 206.],
     [188., 802., 1698., 2732., 3788., 2256., 1018., 218.],
     [308., 1006., 1950., 2996., 4052., 2400., 1078., 230.],
     [230., 692., 1290., 1928., 2568., 1458., 596., 78.],
     [126., 354., 636., 924., 1212., 654., 234., 0.]]])


def _row(v):
    """A 1-D signal as a 1 x n image (SciPy's test_consistency_* lift 1-D cases the same way)."""
    return np.atleast_2d(np.asarray(v, dtype=np.float64))


# (source test, kernels function, x, w, mode, SciPy's expected value)
SCIPY_CASES = [
    ("TestConvolve2d::test_2d_arrays", "convolve2d", _A23, _B23, "full",
     [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]),
    ("TestConvolve::test_2d_arrays (signal.convolve, 2-D)", "convolve2d", _A23, _B23, "full",
     [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]),
    ("TestConvolve2d::test_valid_mode (first call)", "convolve2d", _E27, _A23, "valid", [[62, 80, 98, 116, 134]]),
    ("TestConvolve2d::test_valid_mode2 (real, second call)", "convolve2d", _E27, _A23, "valid",
     [[62, 80, 98, 116, 134]]),
    # filter wider than the input, in 'same' mode: the issue's first bug (odd pixel top/left)
    ("TestConvolve2d::test_same_mode", "convolve2d", _A23, _E27, "same", [[22, 28, 34], [80, 98, 116]]),
    ("TestConvolve::test_basic (1-D as a row)", "convolve2d", _row([3, 4, 5, 6, 5, 4]), _row([1, 2, 3]), "full",
     [[3, 10, 22, 28, 32, 32, 23, 12]]),
    # an even filter longer than the input, 'same'
    ("TestConvolve::test_same (1-D as a row)", "convolve2d", _row([3, 4, 5]), _row([1, 2, 3, 4]), "same",
     [[10, 22, 34]]),
    ("TestConvolve::test_same_eq (1-D as a row)", "convolve2d", _row([3, 4, 5]), _row([1, 2, 3]), "same",
     [[10, 22, 22]]),
    ("TestConvolve::test_valid_mode2 (real, second call; 1-D as a row)", "convolve2d",
     _row([2, 3, 4, 5, 3, 4, 2, 2, 1]), _row([1, 2, 3, 6, 5, 3]), "valid", [[70, 78, 73, 65]]),
    ("TestConvolve::test_same_mode (1-D as a row)", "convolve2d", _row([1, 2, 3, 3, 1, 2]),
     _row([1, 4, 3, 4, 5, 6, 7, 4, 3, 2, 1, 1, 3]), "same", [[57, 61, 63, 57, 45, 36]]),
    ("TestFFTConvolve::test_2d_real_same (axes '', None, (0, 1), ...)", "convolve2d", [[1, 2, 3], [4, 5, 6]],
     [[1, 2, 3], [4, 5, 6]], "full", [[1, 4, 10, 12, 9], [8, 26, 56, 54, 36], [16, 40, 73, 60, 36]]),
    ("TestFFTConvolve::test_real_same_mode (first call; 1-D as a row)", "convolve2d", _row(_FFT_A), _row(_FFT_B),
     "same", [[35, 41, 47]]),
    ("TestFFTConvolve::test_real_same_mode (second call; 1-D as a row)", "convolve2d", _row(_FFT_B), _row(_FFT_A),
     "same", [[9, 20, 25, 35, 41, 47, 39, 28, 2]]),
    ("TestFFTConvolve::test_valid_mode_real (second call; 1-D as a row)", "convolve2d", _row(_FFT_B),
     _row([3, 2, 1]), "valid", [[24, 31, 41, 43, 49, 25, 12]]),
    ("TestCorrelateReal::test_rank1_full (1-D as a row)", "correlate2d", _row(_R1_A), _row(_R1_B), "full",
     _R1_Y[None]),
    ("TestCorrelateReal::test_rank1_valid (first call; 1-D as a row)", "correlate2d", _row(_R1_A), _row(_R1_B),
     "valid", _R1_Y[None, 1:4]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SCIPY_CASES, ids=[c[0] for c in SCIPY_CASES])
def test_scipy_literal_cases(case, dtype):
    source, func, x, w, mode, expected = case
    got = getattr(kernels, func)(np.asarray(x, dtype=dtype), np.asarray(w, dtype=dtype), padding=mode)
    assert_literal(got, expected, dtype, f"{SCIPY}::{source}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_rank3_correlate_as_a_multichannel_correlation(dtype):
    """TestCorrelateReal::test_rank3_valid / test_rank3_all: the first axis of a and b has the same
    length (2), so the zero-lag slice of a rank-3 correlation along it is a 2-channel
    correlation summed over channels: correlate2d(a[None], b[None]). The arrays are built in
    Fortran order, as there, and read through their strides."""
    a, b = _R3_A.astype(dtype), _R3_B.astype(dtype)
    assert not a.flags.c_contiguous
    full = kernels.correlate2d(a[None], b[None], padding="full")
    assert_literal(full[0, 0], _R3_Y[1], dtype, f"{SCIPY}::TestCorrelateReal::test_rank3_all")
    valid = kernels.correlate2d(a[None], b[None], padding="valid")
    assert_literal(valid[0], _R3_Y[1:2, 2:4, 3:5], dtype, f"{SCIPY}::TestCorrelateReal::test_rank3_valid")


# --- SciPy's 'valid' operand swap (gh-5897): a deliberate difference ------------------------

# (source test, kernels function, x, w as SciPy's call passes them, SciPy's expected value)
SCIPY_SWAPPED_VALID = [
    ("TestConvolve2d::test_valid_mode (second call, gh-5897)", "convolve2d", _A23, _E27, [[62, 80, 98, 116, 134]]),
    ("TestConvolve2d::test_valid_mode2 (real, first call, gh-5897)", "convolve2d", _A23, _E27,
     [[62, 80, 98, 116, 134]]),
    ("TestConvolve::test_valid_mode2 (real, first call; 1-D as a row)", "convolve2d", _row([1, 2, 3, 6, 5, 3]),
     _row([2, 3, 4, 5, 3, 4, 2, 2, 1]), [[70, 78, 73, 65]]),
    ("TestFFTConvolve::test_valid_mode_real (first call; 1-D as a row)", "convolve2d", _row([3, 2, 1]),
     _row(_FFT_B), [[24, 31, 41, 43, 49, 25, 12]]),
    ("TestCorrelateReal::test_rank1_valid (second call, gh-5897; 1-D as a row)", "correlate2d", _row(_R1_B),
     _row(_R1_A), _R1_Y[None, 1:4][:, ::-1]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SCIPY_SWAPPED_VALID, ids=[c[0] for c in SCIPY_SWAPPED_VALID])
def test_scipy_valid_operand_swap_is_a_value_error(case, dtype):
    """SciPy's 'valid' swaps the operands when the second is the larger in every dimension
    (gh-5897); the kernels keep the roles (x the image, w the filter) and raise a ValueError
    naming the filter's extent. In the kernels' order the result is SciPy's: for a convolution
    the operands commute; a correlation with the roles exchanged is the flipped correlation."""
    source, func, x, w, expected = case
    x, w = np.asarray(x, dtype=dtype), np.asarray(w, dtype=dtype)
    with pytest.raises(ValueError, match=r"extent .* is larger than the padded input"):
        getattr(kernels, func)(x, w, padding="valid")
    got = getattr(kernels, func)(w, x, padding="valid")
    if func == "correlate2d":
        got = got[::-1, ::-1]
    assert_literal(got, expected, dtype, f"{SCIPY}::{source}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_rank3_valid_swapped_is_a_value_error(dtype):
    """TestCorrelateReal::test_rank3_valid, second call correlate(b, a, 'valid') (gh-5897)."""
    a, b = _R3_A.astype(dtype), _R3_B.astype(dtype)
    with pytest.raises(ValueError, match="extent"):
        kernels.correlate2d(b[None], a[None], padding="valid")
    got = kernels.correlate2d(a[None], b[None], padding="valid")[0][::-1, ::-1, ::-1]
    assert_literal(got, _R3_Y[1:2, 2:4, 3:5][::-1, ::-1, ::-1], dtype, "test_rank3_valid (swapped)")


# --- signal.correlate's 'same' for an even filter: a deliberate difference ------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_correlate_same_even_filter_is_centred_like_correlate2d(dtype):
    """TestCorrelateReal::test_rank1_same and ::test_rank3_same expect scipy.signal.correlate's
    'same', which for an even filter extent keeps the left part of 'full' (y_r[:-1]).
    kernels.correlate2d follows scipy.signal.correlate2d and torch conv2d(padding='same')
    instead: the odd pixel of padding goes bottom/right, keeping the right part (y_r[1:]).
    The odd-extent axis (rank-3 rows, 3 taps) agrees with SciPy's expected value."""
    got = kernels.correlate2d(_row(_R1_A).astype(dtype), _row(_R1_B).astype(dtype), padding="same")
    assert_literal(got, _R1_Y[None, 1:], dtype, "test_rank1_same, kernels' centring")
    assert not np.array_equal(got[0], _R1_Y[:-1])  # SciPy's expected value for signal.correlate
    a, b = _R3_A.astype(dtype), _R3_B.astype(dtype)
    same = kernels.correlate2d(a[None], b[None], padding="same")[0, 0]
    assert_literal(same, _R3_Y[1, 1:-1, 2:-1], dtype, "test_rank3_same, kernels' centring")
    assert not np.array_equal(same, _R3_Y[1, 1:-1, 1:-2])  # SciPy's expected (0:-1, 1:-1, 1:-2)[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_correlate2d_same_even_filter_matches(signal, dtype):
    """...and the kernels' 'same' is scipy.signal.correlate2d's, channel by channel."""
    a, b = _R3_A.astype(np.float64), _R3_B.astype(np.float64)
    ref = sum(signal.correlate2d(a[c], b[c], mode="same") for c in range(2))
    got = kernels.correlate2d(a[None].astype(dtype), b[None].astype(dtype), padding="same")[0, 0]
    assert_literal(got, ref, dtype, "signal.correlate2d 'same'")
    assert_literal(kernels.correlate2d(_row(_R1_A).astype(dtype), _row(_R1_B).astype(dtype), padding="same"),
                   signal.correlate2d(_row(_R1_A), _row(_R1_B), mode="same"), dtype, "rank-1 'same'")


# --- cases whose expected value is another function's output ---------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_scipy_consistency_convolve_funcs(mode, dtype):
    """TestConvolve2d::test_consistency_convolve_funcs: convolve2d(a[None, :], b[None, :]) against
    np.convolve(a, b) with a = arange(5), b = [3.2, 1.4, 3]."""
    a, b = np.arange(5.0), np.array([3.2, 1.4, 3])
    got = kernels.convolve2d(a[None].astype(dtype), b[None].astype(dtype), padding=mode)
    assert_literal(got, np.convolve(a, b, mode=mode)[None], dtype, mode)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_scipy_consistency_correlate_funcs_2(signal, mode, dtype):
    """TestCorrelate2d::test_consistency_correlate_funcs_2 (and the data of
    ::test_consistency_correlate_funcs): correlate2d([a], [b]) against signal.correlate(a, b);
    for 'valid', correlate2d([b], [a]) (gh-5897) is the operand swap, a ValueError here."""
    a, b = np.arange(5.0), np.array([3.2, 1.4, 3])
    got = kernels.correlate2d(a[None].astype(dtype), b[None].astype(dtype), padding=mode)
    assert_literal(got, signal.correlate(a, b, mode=mode)[None], dtype, mode)
    assert_literal(got, np.correlate(a, b, mode=mode)[None], dtype, f"{mode} (np.correlate)")
    if mode == "valid":
        with pytest.raises(ValueError, match="extent"):
            kernels.correlate2d(b[None].astype(dtype), a[None].astype(dtype), padding=mode)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
def test_scipy_invalid_shapes(func):
    """TestConvolve2d::test_invalid_shapes, TestCorrelate2d::test_invalid_shapes,
    TestConvolve::test_invalid_shapes: neither of (2, 3) and (3, 2) contains the other, so 'valid'
    is a ValueError in both orders (SciPy's values as float64: integers are refused)."""
    a = np.arange(1, 7, dtype=np.float64).reshape(2, 3)
    b = np.arange(-6, 0, dtype=np.float64).reshape(3, 2)
    for x, w in ((a, b), (b, a)):
        with pytest.raises(ValueError, match="extent"):
            getattr(kernels, func)(x, w, padding="valid")


def test_scipy_invalid_dims():
    """TestConvolve2d::test_invalid_dims: convolve2d(3, 4), ([3], [4]), ([[[3]]], [[[4]]]). As
    written (Python ints) the kernels refuse the dtype first (TypeError); as floats, the rank
    (ValueError naming x)."""
    for x, w in ((3, 4), ([3], [4]), ([[[3]]], [[[4]]])):
        with pytest.raises(TypeError, match="float32 or float64"):
            kernels.convolve2d(x, w)
        with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
            kernels.convolve2d(np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64))


@pytest.mark.parametrize("mode", ["spam", "eggs", "ham"])
def test_scipy_invalid_params(mode):
    """TestConvolve::test_invalid_params: an unknown mode is a ValueError (the kernels' padding)."""
    a, b = _row([3, 4, 5]), _row([1, 2, 3])
    for func in (kernels.convolve2d, kernels.correlate2d):
        with pytest.raises(ValueError, match="padding must be"):
            func(a, b, padding=mode)


def test_scipy_large_array_gh10761_reduced():
    """TestConvolve2d::test_large_array (gh-10761, index overflow): a chequered pattern of 0 and 1
    as an overlapping strided view, rows of 1000 values each starting 1001 elements after the
    previous one, convolved (full) with [[1, 1]]; no count may exceed 1. SciPy uses
    n = 2**31 // 8000 = 268435 rows of int64 (a (268435, 1001) output, ~2 GB as float64 plus as
    much input); the same geometry runs here with 2048 rows of float64 (16 MB each way), read
    through the overlapping strides, and the exact counts are checked as well."""
    n = 2048
    base = np.zeros(1001 * n, dtype=np.float64)
    base[::2] = 1
    a = np.lib.stride_tricks.as_strided(base, shape=(n, 1000), strides=(8008, 8))
    count = kernels.convolve2d(a, np.array([[1.0, 1.0]]), padding="full")
    assert count.shape == (n, 1001)
    assert not np.any(count > 1)
    np.testing.assert_array_equal(count[:, 1:1000], 1.0)
    np.testing.assert_array_equal(count[:, 0], a[:, 0])
    np.testing.assert_array_equal(count[:, 1000], a[:, 999])


def test_scipy_boundary_and_fillvalue_are_not_offered():
    """TestConvolve2d::test_fillvalue / test_wrap_boundary / test_sym_boundary /
    test_same_with_boundary: the kernels pad with zeros only and have no such arguments; the
    zero-fill answer of test_fillvalue's data is test_2d_arrays'."""
    a, b = np.asarray(_A23, dtype=np.float64), np.asarray(_B23, dtype=np.float64)
    for kw in ({"fillvalue": 1}, {"boundary": "wrap"}, {"boundary": "symm"}, {"boundary": "fill"}):
        with pytest.raises(TypeError, match="unexpected keyword"):
            kernels.convolve2d(a, b, padding="full", **kw)


# ============================================================================================
# PyTorch 2.13.0: OpInfo sample inputs (common_methods_invocations.py)
# ============================================================================================

# _TestParamsMaxPoolBase with _TestParamsMaxPool2d's additions (the grid of
# sample_inputs_max_pool for 'nn.functional.max_pool2d' and 'max_pool2d_with_indices_backward').
MAX_POOL2D_SAMPLE_KWARGS = [
    dict(zip(("kernel_size", "stride", "ceil_mode", "padding", "dilation", "return_indices"), values))
    for values in itertools.product([3, (3, 2)], [2, None, (2, 1)], [True, False], [0, 1, (1, 1)], [1, (1, 2)],
                                    [True, False])
]
# shapes: batch [1, 2, None (no batch axis)] x channels [2] x H [3, 6] x W [6]; every 4-D shape
# also in channels_last memory format.
MAX_POOL2D_SAMPLE_LAYOUTS = [
    (shape, channels_last)
    for batch, c, h, w in itertools.product([1, 2, None], [2], [3, 6], [6])
    for shape in [(c, h, w) if batch is None else (batch, c, h, w)]
    for channels_last in ([False, True] if batch is not None else [False])
]


def _pool_sample_data(rng, shape, dtype, variant):
    x = _uniform(rng, shape, dtype)
    if variant == "ties":  # few distinct values: ties must go to the first maximum, as in PyTorch
        x = rng.integers(-2, 3, size=shape).astype(dtype)
    elif variant == "nan_inf":  # NaN propagates (index of the window's last NaN); -inf never wins
        u = rng.random(shape)
        x[u < 0.15] = np.nan
        x[(u >= 0.15) & (u < 0.35)] = -np.inf
        x[(u >= 0.35) & (u < 0.40)] = np.inf
    return x


def _kw_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items()).replace(" ", "")


def test_max_pool2d_sample_grid_counts():
    """The transcribed grid is the OpInfo's: 144 kwargs x 10 layouts, of which ceil_mode=False,
    dilation=1 (36 x 10 = 360 per dtype, 720 over float32 and float64) is in scope."""
    assert len(MAX_POOL2D_SAMPLE_KWARGS) == 144 and len(MAX_POOL2D_SAMPLE_LAYOUTS) == 10
    assert sum(not kw["ceil_mode"] and kw["dilation"] == 1 for kw in MAX_POOL2D_SAMPLE_KWARGS) == 36


@pytest.mark.parametrize("kw", MAX_POOL2D_SAMPLE_KWARGS, ids=[_kw_id(k) for k in MAX_POOL2D_SAMPLE_KWARGS])
def test_torch_sample_inputs_max_pool2d(torch, kw):
    """sample_inputs_max_pool (max_pool2d and max_pool2d_with_indices_backward, whose wrapper
    back-propagates ones): values, indices and input gradients (of ones, and of a random
    upstream gradient) equal PyTorch's bit for bit, for float32 and float64, on make_tensor's
    data and on the same geometries with ties and with NaN/-inf/inf. A sample with ceil_mode or
    pooling dilation gets a TypeError naming the argument the kernels do not have."""
    rng = np.random.default_rng(17)
    base = {k: kw[k] for k in ("kernel_size", "stride", "padding")}
    extra = {k: kw[k] for k, default in (("ceil_mode", False), ("dilation", 1)) if kw[k] != default}
    for (shape, channels_last), dtype in itertools.product(MAX_POOL2D_SAMPLE_LAYOUTS, DTYPES):
        x = _uniform(rng, shape, dtype)
        if channels_last:
            x = _channels_last(x)
        if extra:
            with pytest.raises(TypeError, match="unexpected keyword argument '(ceil_mode|dilation)'"):
                kernels.maxpool2d(x, return_indices=kw["return_indices"], **base, **extra)
        else:
            for variant in ("make_tensor", "ties", "nan_inf"):
                if variant != "make_tensor":
                    x = _pool_sample_data(rng, shape, dtype, variant)
                    x = _channels_last(x) if channels_last else x
                what = f"{shape} channels_last={channels_last} {np.dtype(dtype)} {variant}"
                y, idx = check_pool_vs_torch(torch, x, None, what, **base)
                for g in (np.ones_like(y), _uniform(rng, y.shape, dtype)):
                    ry, _, rgx = _torch_pool(torch, x, g, **base)
                    np.testing.assert_array_equal(kernels.maxpool2d_backward(g, idx, x.shape), rgx, err_msg=what)
                got = kernels.maxpool2d(x, return_indices=kw["return_indices"], **base)
                np.testing.assert_array_equal(got[0] if kw["return_indices"] else got, ry, err_msg=what)


# sample_inputs_conv2d: (input shape, weight shape, bias shape, kwargs), each yielded batched and
# unbatched (input_shape[1:]).
SAMPLE_INPUTS_CONV2D = [
    ((1, 3, 4, 4), (3, 3, 3, 3), (3,), {"stride": (2, 2), "padding": 2, "groups": 1}),
    ((2, 4, 8, 8), (2, 2, 3, 3), (2,), {"stride": (3, 2), "padding": (2, 1), "groups": 2, "dilation": (4, 4)}),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), {"stride": 2, "padding": 1, "groups": 1, "dilation": (2, 3)}),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), {"stride": 2, "padding": 1, "groups": 1, "dilation": (2, 3)}),
    ((1, 2, 4, 3), (4, 2, 3, 4), None, {"stride": 2, "padding": 1, "groups": 1}),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), {"stride": 2, "padding": "valid"}),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), {"stride": 1, "padding": "same", "dilation": 3}),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), {"groups": 4}),
    ((2, 4, 6, 6), (8, 1, 3, 3), (8,), {"groups": 4}),
    ((2, 4, 6, 6), (8, 1, 3, 3), None, {"groups": 4}),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), {"groups": 4, "stride": (3, 2)}),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), {"groups": 4, "padding": (1, 1)}),
    ((2, 4, 5, 5), (4, 1, 2, 2), (4,), {"groups": 4, "dilation": (2, 2)}),
    ((2, 4, 6, 5), (6, 2, 3, 2), (6,), {"groups": 2}),
    ((1, 4, 5, 5), (3, 4, 3, 3), None, {}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SAMPLE_INPUTS_CONV2D,
                         ids=[f"{c[0]}-{c[1]}-{_kw_id(c[3])}" for c in SAMPLE_INPUTS_CONV2D])
def test_torch_sample_inputs_conv2d(torch, case, dtype):
    """sample_inputs_conv2d: forward and gradients (PyTorch's OpInfo checks gradients with
    gradcheck; here against its autograd). Batched samples run as they are. Unbatched samples
    ((C, H, W) input) are a ValueError: the kernels take a 2-D plane with a 2-D filter or a 4-D
    batch; with the batch axis added the result is PyTorch's unbatched result. groups > 1 is a
    TypeError (no such argument)."""
    xs, ws, bs, kw = case
    rng = np.random.default_rng(SAMPLE_INPUTS_CONV2D.index(case))
    x, w = _uniform(rng, xs, dtype), _uniform(rng, ws, dtype)
    b = None if bs is None else _uniform(rng, bs, dtype)
    kw = dict(kw)
    groups = kw.pop("groups", 1)
    if groups != 1:
        with pytest.raises(TypeError, match="unexpected keyword argument 'groups'"):
            kernels.correlate2d(x, w, b, groups=groups, **kw)
    else:
        y = check_conv_vs_torch(torch, x, w, b, None, "batched", **kw)
        check_conv_vs_torch(torch, x, w, b, _uniform(rng, y.shape, dtype), "batched", **kw)
        # the unbatched sample: PyTorch's result on x[0] is its batched result's [0]
        F, tb = torch.nn.functional, (None if b is None else torch.from_numpy(b))
        np.testing.assert_array_equal(F.conv2d(torch.from_numpy(x[0]), torch.from_numpy(w), tb, **kw).numpy(),
                                      F.conv2d(torch.from_numpy(x), torch.from_numpy(w), tb, **kw)[0].numpy())
        with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
            kernels.correlate2d(x[0], w, b, **kw)
        check_conv_vs_torch(torch, x[:1], w, b, None, "unbatched, batch axis added", **kw)


def test_torch_error_inputs_conv2d():
    """error_inputs_conv2d (float64 = highest_precision_float on CPU): each is an error here too,
    naming the argument."""
    rng = np.random.default_rng(0)
    f = lambda *s: _uniform(rng, s, np.float64)  # noqa: E731
    # int64 (2, 4, 4) input and weight with a float bias ("should be the same"): the dtype is
    # refused first (TypeError), before the unbatched shape would be
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        kernels.correlate2d(rng.integers(-9, 9, (2, 4, 4)), rng.integers(-9, 9, (3, 2, 3, 3)), f(3))
    # complex bias (the sample's (2, 4, 4) input is unbatched; with its batch axis):
    with pytest.raises(TypeError, match="bias must have dtype float32 or float64"):
        kernels.correlate2d(f(1, 2, 4, 4), f(3, 2, 3, 3), f(3) + 1j)
    # negative stride, padding, dilation (as written, torch's 1-element tuples; and as ints)
    for kwargs in ({"stride": (-1,)}, {"stride": -1}):
        with pytest.raises(ValueError, match="stride"):
            kernels.correlate2d(f(1, 1, 4, 4), f(1, 2, 2, 3), f(1), **kwargs)
    for kwargs in ({"dilation": (-1,)}, {"dilation": -1}):
        with pytest.raises(ValueError, match="dilation"):
            kernels.correlate2d(f(1, 1, 4, 2), f(1, 1, 2, 5), f(1), **kwargs)
    with pytest.raises(ValueError):  # as written: the channels (1 vs 2) mismatch as well
        kernels.correlate2d(f(1, 1, 4, 3), f(1, 2, 2, 4), f(1), padding=(-1,))
    with pytest.raises(ValueError, match="padding must be >= 0"):  # channels made consistent
        kernels.correlate2d(f(1, 1, 4, 3), f(1, 1, 2, 4), f(1), padding=-1)
    # input.ndim != weight.ndim
    with pytest.raises(ValueError, match="w must be 4-dimensional"):
        kernels.correlate2d(f(1, 1, 4, 3), f(1, 2, 2), f(1), padding="same")
    # groups: no such argument
    with pytest.raises(TypeError, match="groups"):
        kernels.correlate2d(f(2, 2, 4, 3), f(2, 2, 1, 3), f(2), groups=3)


def test_torch_error_inputs_max_pool2d():
    """error_inputs_max_pool2d: every case is a ValueError. The first four use a (0, 1, 49) input,
    which the kernels refuse as empty before looking at the padding; with a non-empty input the
    padding itself is named."""
    rng = np.random.default_rng(0)
    x0 = _uniform(rng, (0, 1, 49), np.float32)
    x = _uniform(rng, (2, 1, 49), np.float32)
    for kernel_size, padding in itertools.product([2, (3, 2)], [-1, 4]):
        kwargs = {"kernel_size": kernel_size, "stride": 50, "padding": padding}
        with pytest.raises(ValueError, match="x must not be empty"):
            kernels.maxpool2d(x0, return_indices=True, **kwargs)
        with pytest.raises(ValueError, match="padding must be"):
            kernels.maxpool2d(x, return_indices=True, **kwargs)
    # unbatched / batched input with an empty non-batch axis
    for shape in ((1, 0, 10), (2, 1, 10, 0)):
        with pytest.raises(ValueError, match="x must not be empty"):
            kernels.maxpool2d(np.zeros(shape, dtype=np.float32), kernel_size=1)
    # kernel larger than the (1, 4) plane of a (1, 1, 4) input ("Output size is too small")
    with pytest.raises(ValueError, match="kernel_size .* is larger than the padded input"):
        kernels.maxpool2d(_uniform(rng, (1, 1, 4), np.float32), kernel_size=2)


# ============================================================================================
# PyTorch 2.13.0: module tests (common_nn.py, common_modules.py)
# ============================================================================================

# common_nn.py module_tests for Conv2d (default_dtype=torch.double): (desc, constructor args
# (in, out, kernel, stride, padding, dilation, groups, bias) as keywords, input_size)
CONV2D_MODULE_TESTS = [
    ("Conv2d", dict(cin=3, cout=4, k=(3, 2)), (2, 3, 7, 5)),
    ("Conv2d_strided", dict(cin=3, cout=4, k=(3, 3), stride=(2, 2)), (2, 3, 6, 6)),
    ("Conv2d_padding", dict(cin=3, cout=4, k=(3, 3), stride=(2, 2), padding=(1, 1)), (2, 3, 6, 6)),
    ("Conv2d_dilated", dict(cin=3, cout=2, k=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2)), (2, 3, 8, 8)),
    ("Conv2d_no_bias", dict(cin=3, cout=4, k=(3, 2), bias=False), (2, 3, 6, 5)),
    ("Conv2d_zero_batch", dict(cin=3, cout=4, k=(3, 2)), (0, 3, 7, 5)),
    ("Conv2d_pad_valid", dict(cin=2, cout=4, k=(3, 4), padding="valid"), (2, 2, 6, 5)),
    ("Conv2d_pad_same", dict(cin=2, cout=4, k=(3, 4), padding="same"), (2, 2, 6, 5)),
    ("Conv2d_pad_same_dilated", dict(cin=2, cout=4, k=(3, 4), padding="same", dilation=2), (2, 2, 6, 5)),
]


@pytest.mark.parametrize("case", CONV2D_MODULE_TESTS, ids=[c[0] for c in CONV2D_MODULE_TESTS])
def test_torch_common_nn_conv2d_module_tests(torch, case):
    """common_nn.py Conv2d module tests (float64): forward, and the gradients of input, weight and
    bias (the module tests' jacobian checks) against PyTorch's autograd. The zero-batch test
    gives the empty output and, as PyTorch, zero weight and bias gradients.
    check_with_long_tensor: see test_integer_inputs_refused."""
    desc, spec, input_size = case
    spec = dict(spec)
    cin, cout, k, bias = spec.pop("cin"), spec.pop("cout"), spec.pop("k"), spec.pop("bias", True)
    rng = np.random.default_rng(len(desc))
    x = _uniform(rng, input_size, np.float64)
    w = _uniform(rng, (cout, cin) + k, np.float64)
    b = _uniform(rng, (cout,), np.float64) if bias else None
    y = check_conv_vs_torch(torch, x, w, b, None, desc, **spec)
    check_conv_vs_torch(torch, x, w, b, _uniform(rng, y.shape, np.float64), desc, **spec)
    if input_size[0] == 0:
        assert y.shape == (0, cout, 5, 4)
        gx, gw, gb = kernels.correlate2d_backward(np.zeros(y.shape), x, w, **spec)
        assert gx.shape == x.shape and not gw.any() and not gb.any()


@pytest.mark.parametrize("padding", [None, "same"])
def test_torch_module_inputs_conv2d(torch, padding):
    """common_modules.py module_inputs_torch_nn_ConvNd(N=2): Conv2d(4, 5, 3) and
    Conv2d(4, 5, 3, padding='same') on a (2, 4, 3, 4) batch; the (4, 3, 4) no-batch-dim input is
    a ValueError here, and with its batch axis added gives PyTorch's no-batch result."""
    kw = {} if padding is None else {"padding": padding}
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        x, w, b = _uniform(rng, (2, 4, 3, 4), dtype), _uniform(rng, (5, 4, 3, 3), dtype), _uniform(rng, (5,), dtype)
        y = check_conv_vs_torch(torch, x, w, b, None, "batch", **kw)
        check_conv_vs_torch(torch, x, w, b, _uniform(rng, y.shape, dtype), "batch", **kw)
        with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
            kernels.correlate2d(x[1], w, b, **kw)
        check_conv_vs_torch(torch, x[1:], w, b, None, "no batch dim", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_module_inputs_max_pool2d(torch, dtype):
    """common_modules.py module_inputs_torch_nn_MaxPool2d: MaxPool2d((3, 3), (2, 2), (1, 1)) on a
    (3, 7, 7) input ('3d_input'), a (1, 3, 7, 7) input ('4d_input'), and with return_indices."""
    rng = np.random.default_rng(6)
    kw = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    for shape in ((3, 7, 7), (1, 3, 7, 7)):
        x = _uniform(rng, shape, dtype)
        y, _ = check_pool_vs_torch(torch, x, None, str(shape), **kw)
        check_pool_vs_torch(torch, x, _uniform(rng, y.shape, dtype), str(shape), **kw)


def test_torch_module_error_inputs_max_pool2d(torch):
    """module_error_inputs_torch_nn_MaxPool2d. A 2-D input, an error in PyTorch ("non-empty 3D or
    4D (batch mode) tensor expected"), is accepted here on purpose: it is one plane, pooled as
    PyTorch pools it with a channel axis added. A 5-D input and padding above half the kernel
    are ValueErrors, as there."""
    rng = np.random.default_rng(7)
    x = _uniform(rng, (3, 4), np.float32)
    with pytest.raises(RuntimeError, match="3D or 4D"):
        torch.nn.functional.max_pool2d(torch.from_numpy(x), 2)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    ry, ridx = torch.nn.functional.max_pool2d(torch.from_numpy(x[None]), 2, return_indices=True)
    assert y.shape == (1, 2)
    np.testing.assert_array_equal(y, ry[0].numpy())
    np.testing.assert_array_equal(idx, ridx[0].numpy())
    with pytest.raises(ValueError, match="x must be 2 or 3 or 4-dimensional"):
        kernels.maxpool2d(_uniform(rng, (1, 2, 3, 4, 5), np.float32), 2)
    with pytest.raises(ValueError, match="padding must be at most half of kernel_size"):
        kernels.maxpool2d(_uniform(rng, (1, 1, 10, 10), np.float32), 3, padding=5)


# ============================================================================================
# PyTorch test/nn/test_pooling.py (max_pool2d cases in scope)
# ============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_MaxPool_zero_batch_dim(torch, dtype):
    """TestPoolingNNDeviceType::test_MaxPool_zero_batch_dim (the MaxPool2d part): MaxPool2d(3,
    stride=2) on a (0, 16, 50, 32) batch gives PyTorch's empty (0, 16, 24, 15) output and an
    empty input gradient (_test_module_empty_input); a (1, 0, 50, 32) input (zero channels) is an
    error in both."""
    x = np.zeros((0, 16, 50, 32), dtype=dtype)
    ry = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride=2)
    y, idx = kernels.maxpool2d(x, 3, stride=2, return_indices=True)
    assert y.shape == tuple(ry.shape) == (0, 16, 24, 15) and y.dtype == dtype and idx.shape == y.shape
    assert kernels.maxpool2d(x, 3, stride=2).shape == y.shape
    gx = kernels.maxpool2d_backward(np.zeros(y.shape, dtype=dtype), idx, x.shape)
    assert gx.shape == x.shape and gx.dtype == dtype
    with pytest.raises(RuntimeError, match="Expected"):
        torch.nn.functional.max_pool2d(torch.zeros(1, 0, 50, 32, dtype=torch.float64), 3, stride=2)
    with pytest.raises(ValueError, match="x must not be empty"):
        kernels.maxpool2d(np.zeros((1, 0, 50, 32), dtype=dtype), 3, stride=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,h,w,k,s", [
    (4, 8, 8, 8, 7, None),
    (2, 512, 28, 28, 2, None),  # PyTorch: n=200 (80M elements); the batch is reduced to 2
    (4, 8, 7, 7, 3, 1),
    (2, 512, 31, 31, 3, 2),  # PyTorch: n=10; reduced to 2
    (1, 129, 8, 8, 3, 2),
])
def test_torch_max_pool2d_nhwc(torch, n, c, h, w, k, s, dtype):
    """TestPoolingNNDeviceType::test_max_pool2d_nhwc (float and double): a channels-last input and
    a random upstream gradient; values, indices and input gradient equal PyTorch's (which the
    test compares with its contiguous run). Deliberate difference: PyTorch keeps the
    channels-last layout for its output, the kernels return C-contiguous arrays."""
    rng = np.random.default_rng(n * c + h)
    x = _channels_last(rng.standard_normal((n, c, h, w)).astype(dtype))
    oh, ow = (h - k) // (s or k) + 1, (w - k) // (s or k) + 1
    g = rng.standard_normal((n, c, oh, ow)).astype(dtype)
    y, idx = check_pool_vs_torch(torch, x, g, "nhwc", kernel_size=k, stride=s)
    assert y.flags.c_contiguous and idx.flags.c_contiguous


@pytest.mark.parametrize("n,c,h,w,k", [
    (2, 8, 4, 4, 2),
    (1, 1000, 32, 32, 4),  # PyTorch: 100000 channels (100M elements); reduced to 1000
    (1, 100000, 1, 4, (1, 4)),  # "test for max_pool1d"
])
def test_torch_max_pool2d_cuda_cases_on_cpu(torch, n, c, h, w, k):
    """TestPoolingNNDeviceType::test_max_pool2d (CUDA against CPU, float32): the same cases
    against CPU PyTorch, forward and the gradient of the sum."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    y, _ = check_pool_vs_torch(torch, x, None, "", kernel_size=k)
    check_pool_vs_torch(torch, x, np.ones_like(y), "", kernel_size=k)


@pytest.mark.parametrize("shape,k", [((2, 8, 4, 4), 2), ((3, 50, 50), 5)])
def test_torch_max_pool2d_indices(torch, shape, k):
    """TestPoolingNNDeviceType::test_max_pool2d_indices (CUDA against CPU, float32; the second
    case has no batch axis): values, indices and gradient of the sum against CPU PyTorch."""
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    y, _ = check_pool_vs_torch(torch, x, None, "", kernel_size=k)
    check_pool_vs_torch(torch, x, np.ones_like(y), "", kernel_size=k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_MaxPool2d_indices(dtype):
    """TestPoolingNNDeviceType::test_MaxPool2d_indices (_test_maxpool_indices(2), float32 on CPU):
    MaxPool2d(2) of arange(1, 65).view(2, 2, 4, 4): PyTorch's literal expected output, indices
    and gradient of ones; then the -inf element with kernel_size=1 (value -inf, index 0)."""
    x = np.arange(1, 65, dtype=dtype).reshape(2, 2, 4, 4)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx, np.tile(np.array([[5, 7], [13, 15]]), (2, 2, 1, 1)))
    col = np.arange(6, 63, 8, dtype=dtype)
    np.testing.assert_array_equal(y, np.stack([col, col + 2], 1).reshape(2, 2, 2, 2))
    gx = kernels.maxpool2d_backward(np.ones_like(y), idx, x.shape)
    row = np.tile(np.array([0, 1, 0, 1], dtype=dtype), (2, 2, 1))  # expected_grad(1)
    zero = np.zeros_like(row)
    np.testing.assert_array_equal(gx, np.stack((zero, row, zero, row), 2))  # expected_grad(2)
    # "backward after changing indices will result in an error" is PyTorch's autograd graph; here
    # indices are data: shifted ones route the gradient to the shifted positions, and only an
    # index outside [0, H*W) is refused.
    shifted = kernels.maxpool2d_backward(np.ones_like(y), idx - 1, x.shape)
    np.testing.assert_array_equal(shifted.reshape(2, 2, 16)[..., :-1], gx.reshape(2, 2, 16)[..., 1:])
    with pytest.raises(ValueError, match="indices must lie in"):
        kernels.maxpool2d_backward(np.ones_like(y), idx + 1, x.shape)  # 15 + 1 = H*W
    t = np.array([[[-np.inf]]], dtype=dtype)
    y, idx = kernels.maxpool2d(t, 1, return_indices=True)
    assert y[0, 0, 0] == -np.inf and idx[0, 0, 0] == 0


def test_torch_maxpool_indices_no_batch_dim(torch):
    """TestPoolingNNDeviceType::test_maxpool_indices_no_batch_dim (MaxPool2d part): the indices of
    a (3, 5, 6) input equal those of its single-image batch, and PyTorch's."""
    x = np.random.default_rng(8).standard_normal((3, 5, 6)).astype(np.float32)
    _, idx = check_pool_vs_torch(torch, x, None, "no batch", kernel_size=3)
    np.testing.assert_array_equal(idx, kernels.maxpool2d(x[None], 3, return_indices=True)[1][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_max_pool_nan_inf(torch, dtype):
    """TestPoolingNNDeviceType::test_max_pool_nan_inf (max_pool2d part): a (1, 1, 3, 3) plane of
    NaN pools to NaN and one of -inf to -inf (kernel 3); forward, indices and the gradient of a
    random upstream gradient equal PyTorch's."""
    rng = np.random.default_rng(9)
    for fill, check in ((np.nan, np.isnan), (-np.inf, np.isneginf)):
        x = np.full((1, 1, 3, 3), fill, dtype=dtype)
        y, _ = check_pool_vs_torch(torch, x, rng.standard_normal((1, 1, 1, 1)).astype(dtype), str(fill),
                                   kernel_size=3)
        assert check(y.item())


def test_torch_pooling_zero_stride():
    """TestPoolingNNDeviceType::test_pooling_zero_stride (max_pool2d): stride 0 is an error."""
    with pytest.raises(ValueError, match="stride must be >= 1"):
        kernels.maxpool2d(np.ones((1, 2, 4, 4), dtype=np.float32), kernel_size=2, stride=0)


def test_torch_pool_large_size():
    """TestPoolingNNDeviceType::test_pool_large_size (max_pool2d part): a (1, 1, 16777217, 1)
    float32 input (16777217: the smallest integer float32 cannot represent) pooled with kernel 1,
    stride 1 keeps its height."""
    x = np.ones((1, 1, 16777217, 1), dtype=np.float32)
    y = kernels.maxpool2d(x, 1, stride=1, padding=0)
    assert y.shape == x.shape and bool(np.all(y == 1))


def test_torch_pool_invalid_size():
    """TestPoolingNNDeviceType::test_pool_invalid_size (max_pool2d_with_indices part): on a
    (1, 1, 4, 4) input, kernel 3 with dilation 2 (no dilation argument here: TypeError) and the
    fallback kernel 6, stride 2 (larger than the input: ValueError, as PyTorch's "too small")."""
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="dilation"):
        kernels.maxpool2d(x, 3, stride=2, padding=0, dilation=2, return_indices=True)
    with pytest.raises(ValueError, match="kernel_size .* is larger than the padded input"):
        kernels.maxpool2d(x, 6, stride=2, padding=0, return_indices=True)


def test_torch_pooling_shape(torch):
    """TestPoolingNNDeviceType::test_pooling_shape (max_pool2d): (1, 1, 3, 4) with kernel 2,
    stride 2, padding 1 gives (1, 1, 2, 3); the ceil_mode=True checks (and gh-45357's) are a
    TypeError here."""
    x = np.random.default_rng(10).standard_normal((1, 1, 3, 4)).astype(np.float32)
    y, _ = check_pool_vs_torch(torch, x, None, "", kernel_size=2, stride=2, padding=1)
    assert y.shape == (1, 1, 2, 3)
    for shape, kw in (((1, 1, 5, 6), dict(kernel_size=1, stride=2, padding=0)),
                      ((1, 1, 3, 4), dict(kernel_size=2, stride=2, padding=1)),
                      ((1, 1, 6, 7), dict(kernel_size=1, stride=(2, 2), padding=0))):
        with pytest.raises(TypeError, match="ceil_mode"):
            kernels.maxpool2d(np.ones(shape, dtype=np.float32), ceil_mode=True, **kw)


def test_torch_integer_pooling_refused(torch):
    """TestPoolingNNDeviceType::test_max_pool2d_corner_cases runs int32/int64 inputs (with dilation
    and ceil_mode); PyTorch pools integers, the kernels refuse them (TypeError)."""
    for dt in (np.int32, np.int64):
        x = np.array([[[[-1, -2], [-3, -4]]]], dtype=dt)
        torch.nn.functional.max_pool2d(torch.from_numpy(x), 2)  # accepted by PyTorch
        with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
            kernels.maxpool2d(x, 2, stride=2, padding=1)


# ============================================================================================
# PyTorch test/nn/test_convolution.py (conv2d cases in scope)
# ============================================================================================


def test_torch_conv2d_discontiguous_weight():
    """TestConvolutionNN::test_conv2d_discontiguous_weight (gh-55781, float): ones(64, 16, 16, 16)
    with the non-contiguous weight arange(0, 1, 2**-10).reshape(32, 16, 1, 2)[..., ::2] sums to
    PyTorch's literal 4186112.0."""
    x = np.ones((64, 16, 16, 16), dtype=np.float32)
    weight = np.arange(0, 1.0, 1 / 2.0**10, dtype=np.float32).reshape(32, 16, 1, 2)[:, :, :, ::2]
    assert not weight.flags.c_contiguous
    y = kernels.correlate2d(x, weight)
    assert y.shape == (64, 32, 16, 16) and y.sum(dtype=np.float64) == 4186112.0


def test_torch_mismatch_shape_conv2d():
    """TestConvolutionNN::test_mismatch_shape_conv2d (float): a 5-D input is an error."""
    x, w = np.ones((1, 10, 1, 28, 28), dtype=np.float32), np.ones((6, 1, 5, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
        kernels.correlate2d(x, w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_invalid_conv2d(dtype):
    """TestConvolutionNN::test_invalid_conv2d (float and double): dilated kernel 3 (extent 5) on a
    4x4 input; kernel 10 on a 1x1 input ("Kernel size can't be greater than actual input size");
    stride -1 and stride 0."""
    with pytest.raises(ValueError, match=r"extent \(5, 5\) is larger than the padded input \(4, 4\)"):
        kernels.correlate2d(np.zeros((1, 1, 4, 4), dtype), np.zeros((1, 1, 3, 3), dtype), dilation=2, stride=2)
    with pytest.raises(ValueError, match=r"extent \(10, 10\) is larger than the padded input \(1, 1\)"):
        kernels.correlate2d(np.zeros((1, 3, 1, 1), dtype), np.zeros((33, 3, 10, 10), dtype), np.zeros(33, dtype))
    for stride in (-1, 0):
        with pytest.raises(ValueError, match="stride must be >= 1"):
            kernels.correlate2d(np.zeros((1, 3, 4, 4), dtype), np.zeros((6, 3, 4, 4), dtype), stride=stride)


def test_torch_Conv2d_module_same_padding(torch):
    """TestConvolutionNN::test_Conv2d_module_same_padding (float32, rand data): padding='same'
    with kernel (5, 10) (symmetric and asymmetric padding) and kernel (3, 4) with dilation (1, 2)
    against F.conv2d(padding='same'); an unknown padding string and 'same' with a stride above 1
    (2, (1, 3), (4, 1)) are ValueErrors. padding_mode='reflect' is out of scope."""
    rng = np.random.default_rng(11)
    x = rng.random((1, 1, 9, 20)).astype(np.float32)
    for k, kw in (((5, 10), {}), ((3, 4), {"dilation": (1, 2)})):
        w, b = rng.random((1, 1) + k).astype(np.float32), rng.random(1).astype(np.float32)
        y = check_conv_vs_torch(torch, x, w, b, None, str(k), padding="same", **kw)
        assert y.shape == x.shape
    w = np.ones((33, 3, 10, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="padding must be"):
        kernels.correlate2d(np.ones((1, 3, 12, 12), np.float32), w, padding="foo")
    for stride in (2, (1, 3), (4, 1)):
        with pytest.raises(ValueError, match="padding='same' needs stride 1"):
            kernels.correlate2d(np.ones((1, 3, 12, 12), np.float32), w, padding="same", stride=stride)


def test_torch_Conv2d_inconsistent_types():
    """TestConvolutionNN::test_Conv2d_inconsistent_types: float input with a double weight is an
    error; the same types work."""
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((4, 1, 7, 7)).astype(np.float32), rng.standard_normal((1, 1, 3, 3))
    with pytest.raises(TypeError, match="w must have dtype float32 like x"):
        kernels.correlate2d(x, w)
    assert kernels.correlate2d(x, w.astype(np.float32)).shape == (4, 1, 5, 5)


def test_torch_Conv2d_missing_argument():
    """TestConvolutionNN::test_Conv2d_missing_argument: Conv2d(3, 3, 3)(None) is a TypeError."""
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        kernels.correlate2d(None, np.ones((3, 3, 3, 3)))


def test_torch_conv_modules_raise_error_on_incorrect_input_size():
    """TestConvolutionNN::test_conv_modules_raise_error_on_incorrect_input_size (Conv2d(3, 8, 3),
    float and double): inputs of 2 and 5 dimensions with its 4-D weight are errors. (A 2-D input
    is accepted with a 2-D filter: SciPy's form, see test_scipy_literal_cases.)"""
    for dtype in DTYPES:
        w = np.zeros((8, 3, 3, 3), dtype)
        with pytest.raises(ValueError, match="w must be 2-dimensional"):
            kernels.correlate2d(np.zeros((3, 3), dtype), w)
        with pytest.raises(ValueError, match="x must be 2 or 4-dimensional"):
            kernels.correlate2d(np.zeros((3,) * 5, dtype), w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_conv_shapecheck(dtype):
    """TestConvolutionNN::test_conv_shapecheck (Conv2d part, float and double): kernel 3 on 2x2
    raises, on 3x3 runs, on 2x2 with padding 1 runs (batches of 3)."""
    w = np.ones((1, 1, 3, 3), dtype)
    with pytest.raises(ValueError, match="extent"):
        kernels.correlate2d(np.zeros((3, 1, 2, 2), dtype), w)
    assert kernels.correlate2d(np.zeros((3, 1, 3, 3), dtype), w).shape == (3, 1, 1, 1)
    assert kernels.correlate2d(np.zeros((3, 1, 2, 2), dtype), w, padding=1).shape == (3, 1, 2, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_grad_conv2d_input_and_weight(torch, dtype):
    """TestConvolutionNN::test_grad_conv2d_input / test_grad_conv2d_weight (run_grad_conv_test,
    dim 2): kernel/input (3, 6), (3, 7), (4, 9) x batch 1, 2 x stride 1, 2 x padding 0, 1, 2,
    2 -> 3 channels, with and without bias: forward and all gradients against PyTorch's autograd
    (which the test compares with torch.nn.grad.conv2d_input/_weight)."""
    rng = np.random.default_rng(13)
    for (kern, size), batch, stride, padding, has_bias in itertools.product(
            [(3, 6), (3, 7), (4, 9)], [1, 2], [1, 2], [0, 1, 2], [True, False]):
        x = rng.standard_normal((batch, 2, size, size)).astype(dtype)
        w = rng.standard_normal((3, 2, kern, kern)).astype(dtype)
        b = rng.standard_normal(3).astype(dtype) if has_bias else None
        oh = (size + 2 * padding - kern) // stride + 1
        g = rng.standard_normal((batch, 3, oh, oh)).astype(dtype)
        check_conv_vs_torch(torch, x, w, b, g, f"k{kern} n{size} b{batch} s{stride} p{padding}",
                            stride=stride, padding=padding)


def test_torch_functional_grad_conv(torch):
    """TestConvolutionNN::test_functional_grad_conv (Conv 2D part): (1, 1, 5, 5) input, (1, 1, 3, 3)
    weight, dilation 2."""
    rng = np.random.default_rng(14)
    x, w = rng.standard_normal((1, 1, 5, 5)), rng.standard_normal((1, 1, 3, 3))
    check_conv_vs_torch(torch, x, w, None, rng.standard_normal((1, 1, 1, 1)), "", dilation=2)


def test_torch_functional_grad_conv2d(torch):
    """TestConvolutionNN::test_functional_grad_conv2d: batch 4, 8 -> 16 channels, 32x32, input
    uniform(-8, 8), weight uniform(-4, 4), padding k // 2, over stride 1, 2 x kernel 1, 3, 5 x
    dilation 1, 2 (groups 1; groups 2 and 4 are out of scope), in float64."""
    rng = np.random.default_rng(15)
    for stride, k, dilation in itertools.product([1, 2], [1, 3, 5], [1, 2]):
        x = rng.uniform(-8, 8, (4, 8, 32, 32))
        w = rng.uniform(-4, 4, (16, 8, k, k))
        kw = dict(stride=stride, padding=k // 2, dilation=dilation)
        y = kernels.correlate2d(x, w, **kw)
        check_conv_vs_torch(torch, x, w, None, rng.standard_normal(y.shape), f"s{stride} k{k} d{dilation}", **kw)


def test_torch_conv2d_same_padding(torch):
    """TestConvolutionNNDeviceType::test_conv2d_same_padding (float): padding='same' equals the
    explicit padding PyTorch's test names: (2, 2) then dropping the first row for a (4, 5)
    kernel; (2, 3) with dilation 2 for (3, 4); 5 then dropping the first row and column with
    dilation 3 for (4, 4). Also against F.conv2d(padding='same')."""
    rng = np.random.default_rng(16)
    x = rng.random((1, 1, 10, 11)).astype(np.float32)
    cases = [((4, 5), {}, (2, 2), (slice(1, None), slice(None))),
             ((3, 4), {"dilation": 2}, (2, 3), (slice(None), slice(None))),
             ((4, 4), {"dilation": 3}, 5, (slice(1, None), slice(1, None)))]
    for k, kw, pad, crop in cases:
        y = rng.random((1, 1) + k).astype(np.float32)
        same = check_conv_vs_torch(torch, x, y, None, None, str(k), padding="same", **kw)
        np.testing.assert_array_equal(same, kernels.correlate2d(x, y, padding=pad, **kw)[(..., *crop)])


def test_torch_conv2d_valid_padding(torch):
    """TestConvolutionNNDeviceType::test_conv2d_valid_padding and _valid_padding_backward (float):
    padding='valid' is no padding, forward and gradients of sum().abs()."""
    rng = np.random.default_rng(17)
    x, y = rng.random((1, 1, 1, 10)).astype(np.float32), rng.random((1, 1, 1, 4)).astype(np.float32)
    out = check_conv_vs_torch(torch, x, y, None, None, "", padding="valid")
    np.testing.assert_array_equal(out, kernels.correlate2d(x, y))
    g = np.full(out.shape, np.sign(out.sum()), dtype=np.float32)
    check_conv_vs_torch(torch, x, y, None, g, "", padding="valid")
    for a, b in zip(kernels.correlate2d_backward(g, x, y, padding="valid"), kernels.correlate2d_backward(g, x, y)):
        np.testing.assert_array_equal(a, b)


def test_torch_conv2d_same_padding_backward(torch):
    """TestConvolutionNNDeviceType::test_conv2d_same_padding_backward (float): the gradients of
    conv2d(x, y, padding='same', dilation=2).sum().abs() equal those with padding (3, 4) for a
    (4, 5) kernel (symmetric); for a (4, 4) kernel, those of padding 2 with the first row and
    column of the output dropped (asymmetric). Also against PyTorch's autograd."""
    rng = np.random.default_rng(18)
    x = rng.random((1, 1, 10, 11)).astype(np.float32)
    y = rng.random((1, 1, 4, 5)).astype(np.float32)
    out = kernels.correlate2d(x, y, padding="same", dilation=2)
    g = np.full(out.shape, np.sign(out.sum()), dtype=np.float32)
    check_conv_vs_torch(torch, x, y, None, g, "symmetric", padding="same", dilation=2)
    for a, b in zip(kernels.correlate2d_backward(g, x, y, padding="same", dilation=2),
                    kernels.correlate2d_backward(g, x, y, padding=(3, 4), dilation=2)):
        np.testing.assert_array_equal(a, b)
    y = rng.random((1, 1, 4, 4)).astype(np.float32)
    out = kernels.correlate2d(x, y, padding="same")
    g = np.full(out.shape, np.sign(out.sum()), dtype=np.float32)
    check_conv_vs_torch(torch, x, y, None, g, "asymmetric", padding="same")
    g2 = np.zeros((1, 1, 11, 12), dtype=np.float32)  # the output of padding 2, before the crop
    g2[..., 1:, 1:] = g
    for a, b in zip(kernels.correlate2d_backward(g, x, y, padding="same"),
                    kernels.correlate2d_backward(g2, x, y, padding=2)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["valid", "same"])
def test_torch_conv2d_vs_scipy(signal, mode):
    """TestConvolutionNNDeviceType::test_conv2d_vs_scipy (float): a (5, 10) image with an even
    (2, 4) and an odd (3, 5) filter; scipy.signal.convolve2d is the expected value, as there
    (PyTorch's test pads by k // 2 on every side, flips the filter and keeps the first rows and
    columns: the odd pixel of 'same' padding top/left, the convolve2d rule of issue 17)."""
    rng = np.random.default_rng(19)
    t = rng.uniform(-9, 9, (5, 10)).astype(np.float32)
    for shape in ((2, 4), (3, 5)):
        w = rng.uniform(-9, 9, shape).astype(np.float32)
        expected = signal.convolve2d(t.astype(np.float64), w.astype(np.float64), mode=mode)
        got = kernels.convolve2d(t, w, padding=mode)
        scale = signal.convolve2d(np.abs(t).astype(np.float64), np.abs(w).astype(np.float64), mode=mode)
        assert_scaled_close(got, expected, scale, np.float32, f"{mode} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_conv_thnn_nhwc(torch, dtype):
    """TestConvolutionNNDeviceType::test_conv_thnn_nhwc (Conv2d, groups 1, float and double):
    integer-valued data in [-3, 3) and channels-last input and/or weight, so every sum is exact:
    output and gradients equal PyTorch's exactly. (Cases with groups > 1 and ConvTranspose2d are
    out of scope.)"""
    rng = np.random.default_rng(20)
    helpers = [(2, 8, 4, 4, 4, 3, 1), (2, 1, 10, 10, 8, 3, 1), (1, 16, 56, 56, 16, 1, 1), (2, 8, 11, 13, 16, 3, 2)]
    for n, c, h, w, cout, k, dilation in helpers:
        x = rng.integers(-3, 3, (n, c, h, w)).astype(dtype)
        wt = rng.integers(-3, 3, (cout, c, k, k)).astype(dtype)
        b = rng.integers(-3, 3, cout).astype(dtype)
        with torch.backends.mkldnn.flags(enabled=False):  # as the test runs it: exact sums
            ref, _ = _torch_conv(torch, x, wt, b, None, dilation=dilation)
            g = rng.integers(-3, 3, ref[0].shape).astype(dtype)
            ref, _ = _torch_conv(torch, x, wt, b, g, dilation=dilation)
        for xin, win in ((_channels_last(x), _channels_last(wt)), (_channels_last(x), wt), (x, _channels_last(wt))):
            np.testing.assert_array_equal(kernels.correlate2d(xin, win, b, dilation=dilation), ref[0])
            for got, r in zip(kernels.correlate2d_backward(g, xin, win, dilation=dilation), ref[1:]):
                np.testing.assert_array_equal(got, r)


def test_torch_conv2d_no_grad(torch):
    """TestConvolutionNNDeviceType::test_conv2d_no_grad (float, groups 1): Conv2d(1, 8, 3) on
    (batch, 1, 8, 8) for batch 1, 2, 3."""
    rng = np.random.default_rng(21)
    for batch in (1, 2, 3):
        x = rng.random((batch, 1, 8, 8)).astype(np.float32)
        check_conv_vs_torch(torch, x, rng.uniform(-1, 1, (8, 1, 3, 3)).astype(np.float32),
                            rng.uniform(-1, 1, 8).astype(np.float32), None, f"batch {batch}")


def test_torch_Conv2d_1x1(torch):
    """TestConvolutionNN::test_Conv2d_1x1 (gradcheck of a 2 -> 2, 1x1, no-bias conv in double):
    gradients against PyTorch's autograd."""
    rng = np.random.default_rng(22)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 1, 1))
    check_conv_vs_torch(torch, x, w, None, rng.standard_normal((1, 2, 5, 5)), "1x1")


def test_torch_thnn_conv_strided_padded_dilated(torch):
    """TestConvolutionNN::test_thnn_conv_strided_padded_dilated (conv2d; CUDA against CPU,
    double): (1, 2, 4, 4) input, (2, 2, 1, 1) weight, bias, for (stride, padding, dilation) in
    (2, 0, 1), (1, 1, 1), (2, 1, 1), (1, 0, 2); against CPU PyTorch, with gradients."""
    rng = np.random.default_rng(23)
    for stride, padding, dilation in ((2, 0, 1), (1, 1, 1), (2, 1, 1), (1, 0, 2)):
        kw = dict(stride=stride, padding=padding, dilation=dilation)
        x, w, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 1, 1)), rng.standard_normal(2)
        y = kernels.correlate2d(x, w, b, **kw)
        check_conv_vs_torch(torch, x, w, b, rng.standard_normal(y.shape), str(kw), **kw)


def test_torch_Conv2d_size_1_kernel(torch):
    """TestConvolutionNNDeviceType::test_Conv2d_size_1_kernel (CUDA against CPU, float):
    Conv2d(3, 3, kernel_size=1) on (2, 3, 5, 5) with a rand_like upstream gradient."""
    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w, b = rng.uniform(-0.5, 0.5, (3, 3, 1, 1)).astype(np.float32), rng.uniform(-0.5, 0.5, 3).astype(np.float32)
    check_conv_vs_torch(torch, x, w, b, rng.random((2, 3, 5, 5)).astype(np.float32), "1x1")


def test_torch_noncontig_conv_grad(torch):
    """TestConvolutionNNDeviceType::test_noncontig_conv_grad (float): Conv2d(3, 5, 3, padding=1)
    on (2, 3, 10, 10) with the non-contiguous upstream gradient randn(2, 2, 5, 10, 10)[:, 1];
    the same gradients as with its contiguous copy, and as PyTorch's."""
    rng = np.random.default_rng(25)
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    w, b = rng.uniform(-0.2, 0.2, (5, 3, 3, 3)).astype(np.float32), rng.uniform(-0.2, 0.2, 5).astype(np.float32)
    g = rng.standard_normal((2, 2, 5, 10, 10)).astype(np.float32)[:, 1]
    assert not g.flags.c_contiguous
    check_conv_vs_torch(torch, x, w, b, g, "non-contiguous grad", padding=1)
    for a, c in zip(kernels.correlate2d_backward(g, x, w, padding=1),
                    kernels.correlate2d_backward(np.ascontiguousarray(g), x, w, padding=1)):
        np.testing.assert_array_equal(a, c)


def test_torch_conv_noncontig_weights(torch):
    """TestConvolutionNNDeviceType::test_conv_noncontig_weights (2-D, not grouped): a 3x3 filter
    expanded (stride 0) to (3, 3, 3, 3) on a (1, 3, 5, 5) input; forward and the gradients of
    the sum."""
    rng = np.random.default_rng(26)
    w = np.broadcast_to(rng.standard_normal((3, 3)).astype(np.float32), (3, 3, 3, 3))
    assert w.strides[:2] == (0, 0)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    check_conv_vs_torch(torch, x, w, None, np.ones((1, 3, 3, 3), dtype=np.float32), "expanded weight")


@pytest.mark.parametrize("bias", [True, False])
def test_torch_conv_noncontig_weights_and_bias(torch, bias):
    """TestConvolutionNNDeviceType::test_conv_noncontig_weights_and_bias (float, gh-16018):
    Conv2d(3, 64, 7, stride=2, padding=3) with input (1, 3, 224, 224, 2)[..., 1], weight
    (64, 3, 7, 7, 2)[..., 1] and bias (64, 2)[:, 1]: the same output as from contiguous copies,
    and PyTorch's."""
    rng = np.random.default_rng(27)
    x = rng.standard_normal((1, 3, 224, 224, 2)).astype(np.float32)[..., 1]
    w = rng.standard_normal((64, 3, 7, 7, 2)).astype(np.float32)[..., 1]
    b = rng.standard_normal((64, 2)).astype(np.float32)[:, 1] if bias else None
    y = check_conv_vs_torch(torch, x, w, b, None, "non-contiguous", stride=2, padding=3)
    contiguous = kernels.correlate2d(np.ascontiguousarray(x), np.ascontiguousarray(w),
                                     None if b is None else np.ascontiguousarray(b), stride=2, padding=3)
    np.testing.assert_array_equal(y, contiguous)


# ============================================================================================
# The two bugs of issue 17, with the peers' own cases
# ============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
def test_issue17_convolve2d_same_even_filter(signal, dtype):
    """Issue 17, bug 1: convolve2d(padding='same') with an even filter equals
    scipy.signal.convolve2d 'same' (the odd pixel of padding top/left for the flipped filter):
    TestConvolve2d::test_same_mode's literal value, TestConvolve::test_same's even 1-D filter,
    and SciPy's output on both parities of every axis."""
    assert_literal(kernels.convolve2d(np.asarray(_A23, dtype), np.asarray(_E27, dtype), padding="same"),
                   [[22, 28, 34], [80, 98, 116]], dtype, "test_same_mode")
    assert_literal(kernels.convolve2d(_row([3, 4, 5]).astype(dtype), _row([1, 2, 3, 4]).astype(dtype),
                                      padding="same"), [[10, 22, 34]], dtype, "test_same")
    rng = np.random.default_rng(28)
    x = rng.standard_normal((7, 8))
    for kh, kw in itertools.product([1, 2, 3, 4], [1, 2, 5, 6]):
        w = rng.standard_normal((kh, kw))
        assert_scaled_close(kernels.convolve2d(x.astype(dtype), w.astype(dtype), padding="same"),
                            signal.convolve2d(x, w, mode="same"),
                            signal.convolve2d(np.abs(x), np.abs(w), mode="same"), dtype, f"{kh}x{kw}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_issue17_empty_batch_through_every_function(torch, dtype):
    """Issue 17, bug 2: a batch of zero images (common_nn.py Conv2d 'zero_batch': Conv2d(3, 4,
    (3, 2)) on (0, 3, 7, 5); test_pooling.py test_MaxPool_zero_batch_dim: MaxPool2d(3, stride=2)
    on (0, 16, 50, 32)) through correlate2d, convolve2d, correlate2d_backward, maxpool2d and
    maxpool2d_backward: PyTorch's empty shapes, and its zero weight and bias gradients. An empty
    image (H or W = 0) or zero channels stays a ValueError."""
    F = torch.nn.functional
    x = np.zeros((0, 3, 7, 5), dtype=dtype)
    w, b = np.ones((4, 3, 3, 2), dtype=dtype), np.ones(4, dtype=dtype)
    X = torch.from_numpy(x).requires_grad_()
    W, B = torch.from_numpy(w.copy()).requires_grad_(), torch.from_numpy(b.copy()).requires_grad_()
    Y = F.conv2d(X, W, B)
    Y.backward(torch.rand_like(Y))
    for func in (kernels.correlate2d, kernels.convolve2d):
        y = func(x, w, b)
        assert y.shape == tuple(Y.shape) == (0, 4, 5, 4) and y.dtype == dtype
    gx, gw, gb = kernels.correlate2d_backward(np.zeros((0, 4, 5, 4), dtype), x, w)
    assert gx.shape == tuple(X.grad.shape) and gx.dtype == dtype
    np.testing.assert_array_equal(gw, W.grad.numpy())
    np.testing.assert_array_equal(gb, B.grad.numpy())
    assert gw.shape == w.shape and gb.shape == b.shape and not gw.any() and not gb.any()
    xp = np.zeros((0, 16, 50, 32), dtype=dtype)
    Xp = torch.from_numpy(xp).requires_grad_()
    Yp, Ip = F.max_pool2d(Xp, 3, stride=2, return_indices=True)
    Yp.backward(torch.rand_like(Yp))
    y, idx = kernels.maxpool2d(xp, 3, stride=2, return_indices=True)
    assert y.shape == idx.shape == tuple(Yp.shape) == tuple(Ip.shape)
    assert kernels.maxpool2d_backward(np.zeros(y.shape, dtype), idx, xp.shape).shape == tuple(Xp.grad.shape)
    for shape in ((0, 3, 0, 5), (0, 3, 7, 0), (0, 0, 7, 5), (2, 3, 0, 5)):
        with pytest.raises(ValueError, match="must not be empty"):
            kernels.correlate2d(np.zeros(shape, dtype), w)
        with pytest.raises(ValueError, match="must not be empty"):
            kernels.maxpool2d(np.zeros(shape, dtype), 1)


# ============================================================================================
# Deliberate differences (each listed in the README's contracts)
# ============================================================================================


def test_integer_inputs_refused(torch):
    """SciPy's cases are Python ints and SciPy convolves integers in integer arithmetic;
    PyTorch's conv2d module tests run with long tensors (check_with_long_tensor) and its
    max_pool2d pools integers. The kernels refuse integer and bool inputs (TypeError naming the
    argument) rather than upcast silently."""
    a, b = np.asarray(_A23), np.asarray(_B23)
    assert a.dtype.kind == "i"
    for func in (kernels.convolve2d, kernels.correlate2d):
        with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int"):
            func(a, b)
        with pytest.raises(TypeError, match="w must have dtype float32 or float64, got int"):
            func(a.astype(np.float64), b)
    xl = np.arange(2 * 3 * 7 * 5).reshape(2, 3, 7, 5)
    wl = np.ones((4, 3, 3, 2), dtype=np.int64)
    torch.nn.functional.conv2d(torch.from_numpy(xl), torch.from_numpy(wl))  # PyTorch accepts long
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        kernels.correlate2d(xl, wl)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got bool"):
        kernels.maxpool2d(np.ones((2, 4, 4), dtype=bool))


def test_complex_inputs_refused():
    """TestConvolve2d::test_valid_mode_complx, TestCorrelate2d::test_complex_input and PyTorch's
    cfloat/cdouble conv2d cases: complex inputs are a TypeError."""
    e = np.asarray(_E27, dtype=np.float64)
    f = np.asarray(_A23, dtype=np.complex128) + 1j
    with pytest.raises(TypeError, match="w must have dtype float32 or float64, got complex128"):
        kernels.convolve2d(e, f, padding="valid")
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got complex128"):
        kernels.correlate2d(np.array([[2j]]), np.array([[3j]]))
    with pytest.raises(TypeError, match="got complex64"):
        kernels.maxpool2d(np.ones((1, 4, 4), dtype=np.complex64), 2)


def test_other_float_widths_refused():
    """float16 (PyTorch's half cases) and longdouble (SciPy's test_convolve_longdtype_input,
    TestCorrelateReal's longdouble) are a TypeError; bfloat16 has no NumPy dtype."""
    for dt in (np.float16, np.longdouble):
        if np.dtype(dt).itemsize in (4, 8):  # longdouble is float64 on some platforms, and is that
            assert kernels.correlate2d(np.ones((4, 4), dt), np.ones((2, 2), dt)).dtype == np.dtype(dt)
        else:
            with pytest.raises(TypeError, match="float32 or float64"):
                kernels.correlate2d(np.ones((4, 4), dt), np.ones((2, 2), dt))
            with pytest.raises(TypeError, match="float32 or float64"):
                kernels.maxpool2d(np.ones((1, 4, 4), dt), 2)


def test_torch_zero_channels_refused(torch):
    """TestConvolutionNNDeviceType::test_conv_empty_channel: PyTorch convolves a (2, 0, 50, 100)
    input with a zero-input-channel Conv2d into an empty tensor; the kernels refuse zero channels
    (an empty image, not an empty batch) with a ValueError. The (2, 1, 40, 0) input is an error
    in both."""
    out = torch.nn.functional.conv2d(torch.zeros(2, 0, 50, 100), torch.zeros(33, 0, 3, 3), stride=2)
    assert out.numel() == 0
    with pytest.raises(ValueError, match="x must not be empty"):
        kernels.correlate2d(np.zeros((2, 0, 50, 100), np.float32), np.zeros((33, 0, 3, 3), np.float32), stride=2)
    with pytest.raises(ValueError, match="x must not be empty"):
        kernels.correlate2d(np.zeros((2, 1, 40, 0), np.float32), np.zeros((33, 1, 3, 3), np.float32), stride=2)


def test_unoffered_arguments_are_type_errors():
    """Arguments the peers have and the kernels do not (groups, padding_mode, ceil_mode, pooling
    dilation, SciPy's boundary/fillvalue/method) are a TypeError, never silently ignored."""
    x, w = np.ones((1, 2, 6, 6)), np.ones((2, 2, 3, 3))
    for kw in ({"groups": 2}, {"padding_mode": "reflect"}, {"method": "fft"}, {"boundary": "wrap"}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            kernels.correlate2d(x, w, **kw)
    for kw in ({"ceil_mode": True}, {"dilation": 2}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            kernels.maxpool2d(x, 2, **kw)
