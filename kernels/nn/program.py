"""A network's whole pass, forward and backward, in one compiled call: for small batches.

Layer by layer (:mod:`kernels.nn.layers`), a training step of LeNet-5 at batch 1 makes some
sixty calls, each a few microseconds of Python and dispatch around less than that of arithmetic:
on the 2-core EPYC 360 us a step, most of it overhead, and PyTorch's fused-Adam step took 810.
Here the network is a *program*: one int64 row per layer (:func:`build_program`: its kind, the
offsets of its input and output in one flat activation buffer, its shapes and geometry, the
offsets of its parameters in the model's flat buffers; :mod:`.program_layers` has the layout
and each layer kind's loops), and one compiled function walks the rows, layer by layer over the
images, with loops written for planes of a few hundred pixels:

* convolution ``y[co] = b[co] + sum_{ci,i,j} w[co, ci, i, j] xpad[ci, oh*s + i*d, ow*s + j*d]``
  over the zero-padded input plane. At stride 1 every tap is one multiply-add over a *wide*
  output: rows ``Wp`` (the padded width) long, so that the ``(ci, i, j)`` tap reads ``xpad``
  from one offset on as one contiguous run of ``(Ho - 1) Wp + Wo`` elements, a loop LLVM
  vectorises whatever ``Wo`` is (LeNet-5's 14-wide rows would be one 16-lane vector less two
  lanes); the ``Wp - Wo`` columns past each row are junk, dropped on the way out. Backward, the
  output gradient is laid out the same way with zeros in those columns: the filter gradient is
  a dot product of it with the same runs of ``xpad``, the input gradient a multiply-add of it
  into a padded plane that is then cropped. Each store carries four multiply-adds (forward:
  four taps into one output channel; input gradient: four output channels into one tap), the
  filter gradient's sixteen dot products at a time (four output channels by four taps) share
  eight loads per position and sum in the working precision, as BLAS does, and the
  taps' offsets come from a table built with the program (integer division per tap cost more
  than the arithmetic of LeNet-5's second conv). At stride > 1 the same loops run row by row;
* max-pooling by the library's rule (a later tap replaces the running maximum when it is
  greater or NaN; the flat index in the plane is kept for the backward pass; 2x2 windows by
  :mod:`kernels._pool2x2`'s pairs), relu in place (:mod:`.activations`), dense layers as dot
  products and multiply-adds, and the loss by :mod:`.loss`'s kernel.

Measured on the 2-core EPYC, LeNet-5 float32 at batch 1, forward and backward: 98 us against
207 layer by layer (its second conv 21 us forward, 29 backward: 34 and 72 with one output
channel's dot product at a time in float64); the homework's 32x32 network 12 against 87. :data:`kernels.nn.model.COMPILED_MAX_MACS` says when a pass runs here.

The values are those of the layer-by-layer path up to the order of the sums (float64 results
agree with PyTorch's autograd to 1e-10 in the tests, as the other paths do); every sum over a
batch runs in image order on one thread, so results do not depend on threads. The program's
buffers belong to the model, one set per thread and batch size, reused from call to call.
"""

from __future__ import annotations

import numpy as np

from .._config import jit
from .activations import _relu_backward_inplace, _relu_forward_inplace
from .loss import _softmax_xent_kernel
from .program_layers import (BOFF, C, CO, COLUMNS, CONV, D, DENSE, H, HO, IN, IOFF, K, KIND, NEED_GX, OUT, PB, PL,
                             POOL, PR, PT, RELU, S, TOFF, VECTOR, W, WO, WOFF, _conv_forward, _conv_backward,
                             _pool_forward, _pool_backward, _dense_forward, _dense_backward)

__all__ = ["Program", "build_program", "forward", "loss_and_grad"]

# ------------------------------------------------------------------------------ the walks

@jit()
def _row_forward(prog, li, act, iwork, params, xp, wide, N):  # pragma: no cover - compiled
    """Row ``li`` of ``prog`` on each of the ``N`` images in turn."""
    r = prog[li]
    kind = r[KIND]
    for n in range(N):
        if kind == CONV:
            _conv_forward(r, act, params, iwork, xp, wide, n)
        elif kind == POOL:
            _pool_forward(r, act, iwork, n)
        elif kind == DENSE:
            _dense_forward(r, act, params, n)
        else:
            m = r[C] * r[H] * r[W]
            _relu_forward_inplace(act[r[IN] + n * m: r[IN] + (n + 1) * m])


@jit()
def _row_backward(prog, li, act, gact, iwork, params, grads, xp, wide, gxp, N):  # pragma: no cover - compiled
    """Row ``li`` of ``prog``, backward, on each of the ``N`` images in turn (the parameter
    gradients summed over the images in their order)."""
    r = prog[li]
    kind = r[KIND]
    for n in range(N):
        if kind == CONV:
            _conv_backward(r, act, gact, params, grads, iwork, xp, wide, gxp, n)
        elif kind == DENSE:
            _dense_backward(r, act, gact, params, grads, n)
        elif r[NEED_GX] != 0:
            if kind == POOL:
                _pool_backward(r, gact, iwork, n)
            else:
                m = r[C] * r[H] * r[W]
                lo = r[IN] + n * m
                _relu_backward_inplace(gact[lo: lo + m], act[lo: lo + m])


@jit()
def _forward_kernel(prog, x, act, iwork, params, xp, wide):  # pragma: no cover - compiled
    """Every row of ``prog`` in order on the images of ``x`` (flat), activations into ``act``
    (the input copied to its start); returns the number of images."""
    for q in range(x.shape[0]):
        act[q] = x[q]
    N = x.shape[0] // (prog[0, C] * prog[0, H] * prog[0, W])
    for li in range(prog.shape[0]):
        _row_forward(prog, li, act, iwork, params, xp, wide, N)
    return N


@jit()
def _loss_kernel(prog, labels, act, gact, N):  # pragma: no cover - compiled
    """The mean softmax cross-entropy of the last row's outputs against ``labels``, its gradient
    into ``gact``."""
    last = prog[prog.shape[0] - 1]
    classes = last[CO] * last[HO] * last[WO]
    z = act[last[OUT]: last[OUT] + N * classes].reshape((N, classes))
    gz = gact[last[OUT]: last[OUT] + N * classes].reshape((N, classes))
    return _softmax_xent_kernel(z, labels, gz)


@jit()
def _loss_and_grad_kernel(prog, x, labels, act, gact, iwork, params, grads, xp, wide, gxp):  # pragma: no cover
    """The forward walk, the loss (:func:`_loss_kernel`) and the backward walk: the parameter
    gradients of the batch into ``grads`` (zeroed first). Returns the loss."""
    N = _forward_kernel(prog, x, act, iwork, params, xp, wide)
    loss = _loss_kernel(prog, labels, act, gact, N)
    for q in range(grads.shape[0]):
        grads[q] = 0
    for li in range(prog.shape[0] - 1, -1, -1):
        _row_backward(prog, li, act, gact, iwork, params, grads, xp, wide, gxp, N)
    return loss


# ------------------------------------------------------------------------------ the Python side

class Program:
    """The table and buffers of one network at one batch size (:func:`build_program`)."""

    def __init__(self, prog, n, act_size, idx_size, pad_size, wide_size, classes, dtype):
        self.prog, self.n, self.classes = prog, n, classes
        self.act = np.zeros(act_size, dtype=dtype)
        self.gact = np.zeros(act_size, dtype=dtype)
        self.iwork = np.zeros(max(idx_size, 1), dtype=np.int64)
        self.xp = np.zeros(max(pad_size, 1), dtype=dtype)
        self.gxp = np.zeros(max(pad_size, 1), dtype=dtype)
        self.wide = np.zeros(max(wide_size, 1), dtype=dtype)
        last = prog[-1]
        self.logits_at = int(last[OUT])


def build_program(model, n) -> Program:
    """The program of ``model`` (a :class:`kernels.nn.Model`) for batches of ``n`` images."""
    from .layers import ConvLayer, DenseLayer, PoolLayer

    c, h, w = model.input_shape
    rows = []
    act_at = 0
    act_end = n * c * h * w
    idx_end = pad_size = wide_size = 0  # idx_end: the int64 buffer, pool indices and tap tables
    tap_tables = []
    starts = np.cumsum([0] + [a.size for a in model.params])  # each parameter's place in flat_params
    p = 0  # the index into model.params of the next layer's first parameter
    for li, layer in enumerate(model.layers):
        row = np.zeros(COLUMNS, dtype=np.int64)
        row[IN], row[C], row[H], row[W] = act_at, c, h, w
        row[NEED_GX] = li > 0
        row[BOFF] = row[WOFF] = row[IOFF] = -1
        if isinstance(layer, ConvLayer):
            _, co, ho, wo = layer.out_shape(1, h, w)
            row[KIND], row[K], row[S], row[D] = CONV, layer.kernel, layer.stride[0], layer.dilation[0]
            row[PT], row[PB], row[PL], row[PR] = layer.pads
            hp, wp = h + layer.pads[0] + layer.pads[1], w + layer.pads[2] + layer.pads[3]
            k, d = layer.kernel, layer.dilation[0]
            ci, i, j = np.meshgrid(np.arange(c), np.arange(k), np.arange(k), indexing="ij")
            tap_tables.append(((ci * hp + i * d) * wp + j * d).ravel())
            row[TOFF] = idx_end
            idx_end += tap_tables[-1].size
            pad_size = max(pad_size, c * hp * wp + VECTOR)
            wide_size = max(wide_size, co * (ho * wp + VECTOR))
        elif isinstance(layer, PoolLayer):
            _, co, ho, wo = layer.out_shape(1, c, h, w)
            row[KIND], row[K], row[S] = POOL, layer.kernel, layer.stride
            row[IOFF] = idx_end
            idx_end += n * co * ho * wo
        elif isinstance(layer, DenseLayer):
            co, ho, wo = layer.n_out, 1, 1
            row[KIND] = DENSE
        else:  # relu, in place
            co, ho, wo = c, h, w
            row[KIND] = RELU
        if layer.shapes:
            row[WOFF] = starts[p]
            if len(layer.shapes) > 1:
                row[BOFF] = starts[p + 1]
            p += len(layer.shapes)
        if row[KIND] == RELU:
            row[OUT] = act_at
        else:
            row[OUT] = act_end
            act_at, act_end = act_end, act_end + n * co * ho * wo
        row[CO], row[HO], row[WO] = co, ho, wo
        c, h, w = co, ho, wo
        rows.append(row)
    program = Program(np.array(rows), n, act_end, idx_end, pad_size, wide_size, c * h * w, model.dtype)
    for row, table in zip((row for row in rows if row[KIND] == CONV), tap_tables):
        program.iwork[row[TOFF]: row[TOFF] + table.size] = table
    return program


def forward(program, params, x):
    """The logits ``(N, classes)`` of the checked batch ``x`` (a view into the program's buffer,
    valid until its next call)."""
    _forward_kernel(program.prog, x.reshape(-1), program.act, program.iwork, params, program.xp, program.wide)
    return _logits(program)


def loss_and_grad(program, params, grads, x, labels):
    """``(loss, logits)`` of the checked batch ``x`` and ``labels``, the gradient into ``grads``."""
    loss = _loss_and_grad_kernel(program.prog, x.reshape(-1), labels, program.act, program.gact, program.iwork,
                                 params, grads, program.xp, program.wide, program.gxp)
    return float(loss), _logits(program)


def _logits(program):
    at = program.logits_at
    return program.act[at: at + program.n * program.classes].reshape(program.n, program.classes)
