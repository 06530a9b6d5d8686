"""The layers of a :class:`kernels.nn.Model`: forward and backward of each kind, on NCHW batches.

Each layer is built once from its :mod:`kernels.arch` row (shapes, padding) by
:func:`kernels.nn.build`, which has validated the whole network; at run time it calls the
library's *private* compiled kernels directly (``kernels.conv``'s ``_run_forward`` and
filter-gradient kernels, ``kernels.pool``'s pooling kernels), skipping the public functions'
per-call validation, which is pure overhead once the shapes are known to be valid (it is most of
the cost of a step at batch 1). On that path the results are those of the public functions (the
same kernels on the same operands; the filter and bias gradients summed in float64). Convolutions
over a few thousand output pixels run instead as BLAS products over im2col columns (:mod:`.im2col`,
:func:`choose_paths`), summed in the working precision in BLAS's order, as PyTorch sums them;
the bias gradient stays a float64 sum.

Shape contract: activations are C-contiguous ``(N, C, H, W)`` arrays of the model's dtype; a
dense layer's output is ``(N, units, 1, 1)`` and its input is flattened in NCHW order, as
``torch.flatten(x, 1)`` does. Parameters are PyTorch's layouts: conv ``(C_out, C_in, kh, kw)``
and ``(C_out,)``, dense ``(out, in)`` and ``(out,)``; :class:`~kernels.nn.Model` hands each
layer views of its flat parameter and gradient buffers (``bind``).

``backward(gy, need_gx)`` writes the parameter gradients into the bound gradient views and
returns the input gradient (``None`` when ``need_gx`` is false: the first layer's input gradient
is never needed, and for a conv it is the costlier half of the backward pass).
"""

from __future__ import annotations

import threading

import numpy as np

from ..conv.backward import _filter_grad, _input_grad
from ..conv.filter_grad import _grad_bias_kernel
from ..conv.forward import _run_forward
from ..pool import _maxpool2d_indices_kernel, maxpool2x2_indices, route_gradients
from .activations import relu_backward, relu_forward
from .im2col import col2im, from_planes, im2col, to_planes

__all__ = ["ConvLayer", "ReluLayer", "PoolLayer", "DenseLayer", "choose_paths"]

#: force the paths of every conv layer (tests, benchmarks): None, or a triple of bools
#: (forward, grad_w, grad_x as BLAS products over im2col columns)
FORCE_PATHS = None


#: a conv pass whose products would have at most this many columns (output pixels of the whole
#: batch) runs as matrix products
GEMM_MAX_COLUMNS = 8192

#: the products run over rows of columns (one row per output pixel, :mod:`.im2col`) for a layer
#: with at least this many weights per output channel, else over PyTorch's columns: OpenBLAS
#: (float32, 2-core EPYC, batch 64) ran the digits network's second layer (fan-in 144) 1.4x
#: faster over rows (the three products 175 us against 246) and its first (fan-in 9) slower
#: (with the transposes around them, about 30 us a step)
ROWS_MIN_FAN_IN = 32


def choose_paths(n, out_hw):
    """``(forward, grad_w, grad_x)``: which of a conv layer's three products, for a batch of
    ``n`` images, run as BLAS matrix products over im2col columns rather than on the direct
    kernels of :mod:`kernels.conv` (all three one way or the other).

    The direct kernels are blocked for large planes and batches; on a few thousand output pixels
    their per-plane overheads dominate. Measured forward + backward (float32, on the 2-core
    machine, medians while it was shared): the digits network's 3x3 convs (64 images of 8x8 and
    4x4) ran 6x and 3x faster as products, LeNet-5's second conv (6 -> 16, 5x5, 14x14) 3x faster
    at batch 1 (88 us against 284). At batch 64 the direct kernels won on LeNet-5's convs (its
    first 1.9x), and a mix (direct forward and input gradient, the filter gradient as a product,
    which alone is 2x faster than the direct one on the second conv) gained nothing on the whole
    step of LeNet-5 and lost 25% on the homework's 32x32 network: the columns cost what the
    product saves.
    """
    if FORCE_PATHS is not None:
        return tuple(FORCE_PATHS)
    gemm = n * out_hw[0] * out_hw[1] <= GEMM_MAX_COLUMNS
    return (gemm, gemm, gemm)


class ConvLayer:
    """``y[n, co] = b[co] + sum_{ci,i,j} w[co, ci, i, j] xpad[n, ci, y*s + i*d, x*s + j*d]``
    (:func:`kernels.correlate2d`, with the arch row's (top, bottom, left, right) padding, which
    may be asymmetric for ``'same'``); backward as :func:`kernels.correlate2d_backward`."""

    kind = "conv"

    def __init__(self, c_in, c_out, kernel, stride, dilation, pads, bias, dtype, out_hw=(1 << 30, 1)):
        self.c_in, self.c_out, self.kernel = c_in, c_out, kernel
        self.stride, self.dilation, self.pads = (stride, stride), (dilation, dilation), tuple(pads)
        self.has_bias = bias
        self.dtype = np.dtype(dtype)
        self.shapes = [(c_out, c_in, kernel, kernel)] + ([(c_out,)] if bias else [])
        self.fan_in = c_in * kernel * kernel
        self._zero_bias = np.zeros(c_out, dtype=self.dtype)
        # Each of the three products runs either on the direct kernels of kernels.conv or as a
        # BLAS matrix product over im2col columns (:mod:`.im2col`); :func:`choose_paths` picks
        # per pass from the batch and the plane (see there for the measurements behind it).
        self.out_hw = tuple(out_hw)
        self.fw_gemm = self.gw_gemm = self.gx_gemm = False  # chosen by each forward pass
        self.x = None
        self.cols = None
        self._scratch = threading.local()  # the columns' buffer, one per thread (see forward)
        self.rows = self.fan_in >= ROWS_MIN_FAN_IN  # the layout of the columns

    def bind(self, params, grads):
        self.w, self.gw = params[0], grads[0]
        self.b, self.gb = (params[1], grads[1]) if self.has_bias else (self._zero_bias, None)

    def __getstate__(self):  # the per-thread columns stay behind (Model.__getstate__ says why)
        state = dict(self.__dict__)
        del state["_scratch"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scratch = threading.local()

    def out_shape(self, n, h, w):
        (sh, sw), (dh, dw) = self.stride, self.dilation
        pt, pb, pl, pr = self.pads
        k = self.kernel
        return (n, self.c_out, (h + pt + pb - dh * (k - 1) - 1) // sh + 1, (w + pl + pr - dw * (k - 1) - 1) // sw + 1)

    def forward(self, x, keep=True):
        y = np.empty(self.out_shape(*x.shape[:1], *x.shape[2:]), dtype=self.dtype)
        N, Co, Ho, Wo = y.shape
        k = self.kernel
        # the backward pass follows the paths of its forward pass (the columns are its input)
        fw_gemm, gw_gemm, gx_gemm = choose_paths(N, self.out_hw)
        if keep:
            self.fw_gemm, self.gw_gemm, self.gx_gemm = fw_gemm, gw_gemm, gx_gemm
        cols = None
        if fw_gemm or (keep and gw_gemm):
            # one buffer kept from call to call: the columns are k*k times the input (5 MB for
            # LeNet-5's first layer at batch 64), and a fresh one page-faults on every step; one
            # per thread, so that forward passes (inference) may run in several threads at once
            shape = (N * Ho * Wo, self.fan_in) if self.rows else (self.fan_in, N * Ho * Wo)
            cols = getattr(self._scratch, "cols", None)
            if cols is None or cols.shape != shape:
                cols = self._scratch.cols = np.empty(shape, dtype=self.dtype)
            im2col(x, cols, (k, k), self.stride, self.dilation, self.pads, self.rows)
        if fw_gemm:
            w2 = self._w2()
            y2 = np.matmul(cols, w2.T) if self.rows else np.matmul(w2, cols)
            to_planes(y2, self.b, self.has_bias, self.rows, y)
        else:
            _run_forward(x, self.w, self.b, y, self.stride, self.dilation, self.pads)
        self.x = x if keep else None
        self.cols = cols if keep else None
        return y

    def backward(self, gy, need_gx=True):
        x, w, cols = self.x, self.w, self.cols
        self.x = self.cols = None
        N, C, H, W = x.shape
        Co, _, kh, kw = w.shape
        K = self.fan_in
        g = None  # the output gradient as (N Ho Wo, C_out) for rows, else (C_out, N Ho Wo)
        gb = None
        if self.gw_gemm or (need_gx and self.gx_gemm):
            # laid out as the products take it, the bias gradient summed on the way (one pass)
            g, gb = from_planes(gy, self.rows, self.has_bias)
        if self.gw_gemm:
            # as (K, C_out), the orientation OpenBLAS ran fastest in both layouts (over rows 58 us
            # against 71-77 for the others on the digits network's second layer)
            if self.rows:  # patch elements (i, j, c): back to the filter's (c, i, j)
                self.gw[...] = np.matmul(cols.T, g).T.reshape(Co, kh, kw, C).transpose(0, 3, 1, 2)
            else:
                self.gw.reshape(Co, K)[...] = np.matmul(cols, g.T).T
        else:
            self._grad_w_direct(gy, x)
        if self.has_bias:
            if gb is not None:
                self.gb[...] = gb
            else:
                gb = np.empty(Co)
                _grad_bias_kernel(gy, gb)
                self.gb[...] = gb
        if not need_gx:
            return None
        if self.gx_gemm:
            w2 = self._w2()
            # the columns are spent: their buffer takes the columns' gradient
            gcols = np.matmul(g, w2, out=cols) if self.rows else np.matmul(w2.T, g, out=cols)
            return col2im(gcols, x.shape, (kh, kw), self.stride, self.dilation, self.pads, self.dtype, self.rows)
        return self._grad_x_direct(gy, x)

    def _geometry(self):
        return {"stride": self.stride, "dilation": self.dilation, "pad": self.pads}

    def _w2(self):
        """The filter as the products take it, ``(C_out, K)``: patch elements ``(i, j, c)`` for
        rows (:mod:`.im2col`: channels last, a copy), ``(c, i, j)`` for columns (a view)."""
        Co = self.c_out
        if self.rows:
            return np.ascontiguousarray(self.w.transpose(0, 2, 3, 1)).reshape(Co, self.fan_in)
        return self.w.reshape(Co, self.fan_in)

    def _grad_w_direct(self, gy, x):
        """grad_w as kernels.correlate2d_backward computes it (its float64 reductions)."""
        Co, C, kh, kw = self.w.shape
        self.gw[...] = _filter_grad(gy, x, self._geometry(), Co, C, kh, kw)

    def _grad_x_direct(self, gy, x):
        """grad_x as kernels.correlate2d_backward computes it."""
        N, C, H, W = x.shape
        Co, _, kh, kw = self.w.shape
        return _input_grad(gy, self.w, self._geometry(), N, C, H, W, Co, kh, kw, gy.shape[2], gy.shape[3])


class ReluLayer:
    """``y = max(x, 0)``, in place on its input (the layer before it owns that buffer);
    backward ``gx = gy [y > 0]``, in place on ``gy``."""

    kind = "relu"
    shapes: list = []

    def __init__(self):
        self.y = None

    def bind(self, params, grads):
        pass

    def out_shape(self, *shape):
        return shape

    def forward(self, x, keep=True):
        y = relu_forward(x, x)
        self.y = y if keep else None
        return y

    def backward(self, gy, need_gx=True):
        gx = relu_backward(gy, self.y, gy) if need_gx else None
        self.y = None
        return gx


class PoolLayer:
    """``kernel x kernel`` max-pooling, stride ``stride``, no padding (:func:`kernels.maxpool2d`
    with ``return_indices=True``); backward routes ``gy`` to the recorded maxima
    (:func:`kernels.maxpool2d_backward`)."""

    kind = "pool"
    shapes: list = []

    def __init__(self, kernel, stride):
        self.kernel, self.stride = kernel, stride
        self.idx = None
        self.in_shape = None

    def bind(self, params, grads):
        pass

    def out_shape(self, n, c, h, w):
        k, s = self.kernel, self.stride
        return (n, c, (h - k) // s + 1, (w - k) // s + 1)

    def forward(self, x, keep=True):
        shape = self.out_shape(*x.shape)
        y = np.empty(shape, dtype=x.dtype)
        idx = np.empty(shape, dtype=np.int64)
        k, s = self.kernel, self.stride
        if (k, s) == (2, 2):
            maxpool2x2_indices(x, y, idx)
        else:
            _maxpool2d_indices_kernel(x, k, k, s, s, 0, 0, y, idx)
        self.idx, self.in_shape = (idx, x.shape) if keep else (None, None)
        return y

    def backward(self, gy, need_gx=True):
        N, C, H, W = self.in_shape
        gx = None
        if need_gx:
            gx = np.empty((N, C, H, W), dtype=gy.dtype)  # the kernels write every element
            if route_gradients(gy, self.idx, gx).any():  # the forward's own indices: cannot happen
                raise RuntimeError("max-pool indices outside their planes: the recorded forward was corrupted")
        self.idx = None
        return gx


class DenseLayer:
    """``y = x W^T + b`` on the NCHW-flattened input (``torch.nn.Linear`` after
    ``torch.flatten(x, 1)``), by BLAS (NumPy's matmul); backward ``gW = gy^T x``,
    ``gb = sum_n gy``, ``gx = gy W``."""

    kind = "fc"

    def __init__(self, n_in, n_out, bias, dtype):
        self.n_in, self.n_out, self.has_bias = n_in, n_out, bias
        self.dtype = np.dtype(dtype)
        self.shapes = [(n_out, n_in)] + ([(n_out,)] if bias else [])
        self.fan_in = n_in
        self.x = None

    def bind(self, params, grads):
        self.w, self.gw = params[0], grads[0]
        self.b, self.gb = (params[1], grads[1]) if self.has_bias else (None, None)

    def out_shape(self, n, *rest):
        return (n, self.n_out, 1, 1)

    def forward(self, x, keep=True):
        x2 = x.reshape(x.shape[0], self.n_in)
        y = np.empty((x.shape[0], self.n_out), dtype=self.dtype)
        np.matmul(x2, self.w.T, out=y)
        if self.has_bias:
            y += self.b
        self.x = x if keep else None
        return y.reshape(x.shape[0], self.n_out, 1, 1)

    def backward(self, gy, need_gx=True):
        x = self.x
        g2 = gy.reshape(gy.shape[0], self.n_out)
        x2 = x.reshape(x.shape[0], self.n_in)
        if x.shape[0] == 1:
            # one image: an outer product, the same products a BLAS call with K = 1 forms, with
            # none of its packing (LeNet-5's 120 x 784 at batch 1: 48 us through matmul)
            np.multiply(g2.T, x2, out=self.gw)
        else:
            np.matmul(g2.T, x2, out=self.gw)
        if self.has_bias:
            np.sum(g2, axis=0, out=self.gb)
        self.x = None
        if not need_gx:
            return None
        return (g2 @ self.w).reshape(x.shape)
