"""The backward pass, public :func:`correlate2d_backward`: ``grad_w`` and ``grad_bias`` by the
reductions of :mod:`.filter_grad`, ``grad_x`` as a forward correlation of ``grad_out`` with the
rotated filter (:func:`.forward._run_forward`), or, at a stride above 1 with a non-finite filter
(or padding beyond the filter's extent), by BLAS columns scattered back with
:func:`_col2im_kernel`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kernels import _simd
from kernels import _validate as V
from kernels._config import jit

from .filter_grad import _grad_bias_kernel, _grad_w3x3_kernel, _grad_w_kernel, _grad_w_pairs_kernel, _grad_w_taps_kernel
from .forward import _run_forward
from .geometry import _pad, _pad_flat, _prepare


@jit(parallel=True)
def _col2im_kernel(cols, gx, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo):
    """gx[n, ci] = sum over taps of cols scattered back to the input positions they came from.

    Each input channel is one task writing only its own plane, in a fixed tap order.
    """
    C, H = gx.shape[1], gx.shape[2]
    for ci in prange(C):
        plane = gx[n, ci]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                src = cols[(ci * kh + i) * kw + j]
                for y in range(Ho):
                    h = y * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    prow = plane[h]
                    _accumulate_tap_scatter(prow, src[y * Wo : (y + 1) * Wo], sw, j * dw - pl)


@jit()
def _accumulate_tap_scatter(prow, grow, sw, off):
    """prow[xo*sw + off] += grow[xo] wherever the column is inside prow."""
    W = prow.shape[0]
    Wo = grow.shape[0]
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    if W - 1 - off < 0:
        return
    hi = min(Wo, (W - 1 - off) // sw + 1)
    if hi <= lo:
        return
    if sw == 1:
        dst = prow[lo + off : hi + off]
        src = grow[lo:hi]
        for k in range(hi - lo):
            dst[k] += src[k]
    else:
        for xo in range(lo, hi):
            prow[xo * sw + off] += grow[xo]


def correlate2d_backward(grad_out, x, w, *, stride=1, padding=0, dilation=1, grads=("x", "w", "bias")):
    """Gradients of :func:`correlate2d`: ``(grad_x, grad_w, grad_bias)`` for upstream ``grad_out``.

    Formulas (``L`` a scalar loss, ``g = dL/d out``)::

        grad_x[n, ci, h, c]  = sum_{co, i, j, y, x : y*s_h - p_t + i*d_h = h, x*s_w - p_l + j*d_w = c} g[n, co, y, x] w[co, ci, i, j]
        grad_w[co, ci, i, j] = sum_{n, y, x} g[n, co, y, x] xpad[n, ci, y*s_h + i*d_h, x*s_w + j*d_w]
        grad_bias[co]        = sum_{n, y, x} g[n, co, y, x]

    the same as PyTorch autograd of ``conv2d``. Shapes mirror the inputs: ``grad_x`` like ``x``,
    ``grad_w`` like ``w``, ``grad_bias`` is ``(C_out,)`` for a batch and a 0-d array for a 2-D
    ``x`` (whose bias is a scalar). ``grad_out`` must have the forward output's shape and the
    dtype of ``x`` and ``w``; the arguments otherwise follow :func:`correlate2d`.

    ``grads`` names the gradients to compute, any of ``"x"``, ``"w"``, ``"bias"`` (all three by
    default); the others are returned as ``None`` and cost nothing (PyTorch's ``output_mask``:
    the first layer of a network needs no ``grad_x``, an input-saliency map no ``grad_w``).

    dtype rules: float32 and float64 keep their dtype. ``grad_w`` and ``grad_bias`` are long
    reductions over ``N*H_out*W_out`` terms, so for float32 they accumulate in float64 and round
    once; ``grad_x`` (sums of ``C_out*kh*kw`` terms) accumulates in the input dtype.

    The gradients of :func:`convolve2d` follow from ``convolve2d(x, w) = correlate2d(x, flip(w))``
    with ``flip = w[..., ::-1, ::-1]``: call this function with ``flip(w)``; ``grad_x`` and
    ``grad_bias`` are unchanged and the filter gradient is ``flip(grad_w)``.

    Implementation: ``grad_w`` is a compiled reduction over the zero-padded input, parallel over
    (co, ci) pairs. At stride 1 ``grad_x`` is itself a forward correlation (of ``grad_out`` with
    the filter rotated by 180 degrees, channel axes swapped, padding ``d*(k-1) - p``) and runs on
    the forward kernel; at larger strides its columns come from a NumPy matrix product (BLAS), one
    image at a time, scattered back by a compiled col2im parallel over input channels.
    """
    want = _wanted(grads)
    p = _prepare(x, w, stride, padding, dilation)
    x4, w4, two_d = p["x4"], p["w4"], p["two_d"]
    dtype = x4.dtype
    N, C, H, W = x4.shape
    Co, _, kh, kw = w4.shape
    Ho, Wo = p["out_hw"]
    g_shape = (Ho, Wo) if two_d else (N, Co, Ho, Wo)
    g = V.float_array(grad_out, "grad_out", ndim=len(g_shape), empty_batch=True)
    if g.dtype != dtype:
        raise TypeError(f"grad_out must have dtype {dtype} like x, got {g.dtype}")
    if g.shape != g_shape:
        raise ValueError(f"grad_out must have the forward output's shape {g_shape}, got {g.shape}")
    if N == 0:  # an empty batch: no image, so no gradient flows to w or the bias (PyTorch's zeros)
        return (np.empty((N, C, H, W), dtype=dtype) if want["x"] else None,
                np.zeros((Co, C, kh, kw), dtype=dtype) if want["w"] else None,
                np.zeros(Co, dtype=dtype) if want["bias"] else None)
    g4 = np.ascontiguousarray(g.reshape(N, Co, Ho, Wo))
    xc = np.ascontiguousarray(x4)
    wc = np.ascontiguousarray(w4)
    grad_w = _filter_grad(g4, xc, p, Co, C, kh, kw) if want["w"] else None
    grad_x = _input_grad(g4, wc, p, N, C, H, W, Co, kh, kw, Ho, Wo) if want["x"] else None
    grad_b = None
    if want["bias"]:
        grad_b = np.empty(Co, dtype=np.float64)
        _grad_bias_kernel(g4, grad_b)
        grad_b = grad_b.astype(dtype)
    if two_d:
        return (None if grad_x is None else grad_x[0, 0], None if grad_w is None else grad_w[0, 0],
                None if grad_b is None else grad_b.reshape(()))
    return grad_x, grad_w, grad_b


_GRADS = ("x", "w", "bias")


def _wanted(grads) -> dict:
    if isinstance(grads, str) or not all(isinstance(name, str) for name in grads):
        raise TypeError(f"grads must be a tuple of names among {_GRADS}, got {grads!r}")
    unknown = [name for name in grads if name not in _GRADS]
    if unknown:
        raise ValueError(f"grads names {unknown!r}; expected names among {_GRADS}")
    return {name: name in grads for name in _GRADS}


def _filter_grad(g4, xc, p, Co, C, kh, kw):
    """``grad_w`` of :func:`correlate2d_backward`, in the dtype of ``xc``."""
    dtype = xc.dtype
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    pt, pb, pl, pr = p["pad"]
    N, _, Ho, Wo = g4.shape
    acc = np.float64
    # grad_w: one float64 reduction per (co, ci) over the zero-padded input.
    grad_w = np.empty((Co, C, kh, kw), dtype=acc)
    lanes = _simd.VECTOR_BYTES // xc.itemsize
    if (kh, kw) == (1, 1) and not (pt or pb or pl or pr):
        # a matrix product per image, summed: the positions (subsampled first at a stride) flat
        xs = xc if (sh, sw) == (1, 1) else np.ascontiguousarray(xc[:, :, ::sh, ::sw])
        block = _simd.TAP_CHANNEL_BLOCK
        per_thread = -(-Co // (block * max(1, numba.get_num_threads())))  # blocks per thread, at most 4
        _grad_w_pairs_kernel(g4.reshape(N, Co, Ho * Wo), xs.reshape(N, C, Ho * Wo), grad_w.reshape(Co, C),
                             block * min(4, per_thread))
    elif (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1):
        xflat, (_, _, Hp, Wp) = _pad_flat(xc, p["pad"], lanes)  # the blocks read a vector past a row
        _grad_w3x3_kernel(g4, xflat, C, Hp, Wp, grad_w)
    else:
        # With finite x, grad_out is widened with zero columns: spread out by a column stride
        # sw > 1 (which becomes stride 1, at sw times the multiply-adds) and completed to whole
        # vectors (no scalar tail). Zeros times inf would be NaN, hence finite x only; a column
        # stride over non-finite x keeps the exact scalar reduction.
        x_finite = bool(np.isfinite(xc).all())
        if sw == 1 or x_finite:
            gs = g4
            if x_finite and (sw != 1 or Wo % lanes):
                Ws = (Wo - 1) * sw + 1
                gs = np.zeros((N, Co, Ho, -(-Ws // lanes) * lanes), dtype=dtype)
                gs[..., :Ws:sw] = g4
            xflat, (_, _, Hp, Wp) = _pad_flat(xc, p["pad"], lanes)  # slack: widened rows read past
            _grad_w_taps_kernel(gs, xflat, C, Hp, Wp, grad_w, sh, dh, dw)
        else:
            xpad = xc if not (pt or pb or pl or pr) else _pad(xc, p["pad"])
            _grad_w_kernel(g4, xpad, grad_w, sh, sw, dh, dw)
    return grad_w.astype(dtype).reshape(Co, C, kh, kw)


def _input_grad(g4, wc, p, N, C, H, W, Co, kh, kw, Ho, Wo):
    """``grad_x`` of :func:`correlate2d_backward`, in the dtype of ``wc``."""
    dtype = wc.dtype
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    pt, pb, pl, pr = p["pad"]
    # grad_x is itself a correlation: of grad_out with the filter rotated by 180 degrees and its
    # channel axes swapped, padded by the filter extent minus the forward padding; at a stride
    # above 1, of grad_out spread out by the stride with zeros between (the zeros are products
    # the definition does not form, harmless unless the filter holds inf or NaN).
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    Hs, Ws = (Ho - 1) * sh + 1, (Wo - 1) * sw + 1
    bpads = (ekh - pt, H - Hs + pt, ekw - pl, W - Ws + pl)
    grad_x = np.empty((N, C, H, W), dtype=dtype)
    if min(bpads) >= 0 and ((sh, sw) == (1, 1) or np.isfinite(wc).all()):
        wt = np.ascontiguousarray(wc[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gs = g4
        if (sh, sw) != (1, 1):
            gs = np.zeros((N, Co, Hs, Ws), dtype=dtype)
            gs[:, :, ::sh, ::sw] = g4
        _run_forward(gs, wt, np.zeros(C, dtype=dtype), grad_x, (1, 1), (dh, dw), bpads, padding_is_data=False)
    else:
        # strided (or over-padded): columns of grad_x by BLAS, scattered back by col2im
        K, P = C * kh * kw, Ho * Wo
        w2t = np.ascontiguousarray(wc.reshape(Co, K).T)
        gcols = np.empty((K, P), dtype=dtype)
        for n in range(N):
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf propagate, like the kernels
                np.matmul(w2t, g4[n].reshape(Co, P), out=gcols)
            _col2im_kernel(gcols, grad_x, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo)
    return grad_x
