"""A network's whole pass, forward and backward, in one compiled call: for small batches.

Layer by layer (:mod:`kernels.nn.layers`), a training step of LeNet-5 at batch 1 makes some
sixty calls, each a few microseconds of Python and dispatch around less than that of arithmetic:
on the 2-core EPYC 360 us a step, most of it overhead, and PyTorch's fused-Adam step took 810.
Here the network is a *program*: one int64 row per layer (:func:`build_program`: its kind, the
offsets of its input and output in one flat activation buffer, its shapes and geometry, the
offsets of its parameters in the model's flat buffers), and one compiled function walks the
rows, image by image, with loops written for planes of a few hundred pixels:

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
from .._pool2x2 import _window2x2
from .activations import _relu_backward_inplace, _relu_forward_inplace
from .loss import _softmax_xent_kernel

__all__ = ["Program", "build_program", "forward", "loss_and_grad"]

CONV, RELU, POOL, DENSE = 0, 1, 2, 3
# the columns of a program row
(KIND, IN, OUT, C, H, W, CO, HO, WO, K, S, D, PT, PB, PL, PR, WOFF, BOFF, IOFF, NEED_GX, TOFF) = range(21)
COLUMNS = 21


# ------------------------------------------------------------------------------ convolution

#: bytes of the longest vector: a stride-1 run is rounded up to whole vectors of it, so that
#: every multiply-add of a run is a full vector (LeNet-5's 248-element runs would end in eight
#: scalar iterations); the buffers hold that much more than the planes
VECTOR = 64


@jit(inline="always")
def _whole_vectors(length, itemsize):  # pragma: no cover - compiled
    lanes = VECTOR // itemsize
    return (length + lanes - 1) // lanes * lanes


@jit()
def _pad_image(act, off, Cn, Hn, Wn, pt, pl, Hp, Wp, xp):  # pragma: no cover - compiled
    """The image at ``act[off:]`` ``(Cn, Hn, Wn)`` into ``xp[:Cn Hp Wp]``, zero-padded
    (``pt`` rows above, ``pl`` columns left; the rest of each padded plane zero, and the
    :data:`VECTOR` elements after the last plane, which the rounded-up runs read)."""
    for q in range(Cn * Hp * Wp + VECTOR // xp.itemsize):
        xp[q] = 0
    for c in range(Cn):
        for h in range(Hn):
            src = off + (c * Hn + h) * Wn
            dst = (c * Hp + h + pt) * Wp + pl
            for w in range(Wn):
                xp[dst + w] = act[src + w]


@jit()
def _conv_forward(r, act, params, taps, xp, wide, n):  # pragma: no cover - compiled
    """Row ``r``'s convolution of image ``n``: ``act[IN]`` to ``act[OUT]`` (``taps``: the int64
    buffer holding the row's tap offsets at ``r[TOFF]``; ``xp``, ``wide``: scratch)."""
    Cn, Hn, Wn, Co, Ho, Wo = r[C], r[H], r[W], r[CO], r[HO], r[WO]
    k, s, d = r[K], r[S], r[D]
    Hp = Hn + r[PT] + r[PB]
    Wp = Wn + r[PL] + r[PR]
    _pad_image(act, r[IN] + n * Cn * Hn * Wn, Cn, Hn, Wn, r[PT], r[PL], Hp, Wp, xp)
    out = r[OUT] + n * Co * Ho * Wo
    woff, boff, toff = r[WOFF], r[BOFF], r[TOFF]  # locals: a store into act or wide may alias r
    if s == 1:
        L = _whole_vectors((Ho - 1) * Wp + Wo, xp.itemsize)
        for co in range(Co):
            if boff >= 0:
                b = params[boff + co]
                for q in range(L):
                    wide[q] = b
            else:
                for q in range(L):
                    wide[q] = 0
            acc = wide[:L]
            # four taps' multiply-adds per store
            T = Cn * k * k
            w = woff + co * T
            tp = taps[toff: toff + T]
            t = 0
            while t + 4 <= T:
                w0 = params[w + t]
                w1 = params[w + t + 1]
                w2 = params[w + t + 2]
                w3 = params[w + t + 3]
                s0 = tp[t]
                s1 = tp[t + 1]
                s2 = tp[t + 2]
                s3 = tp[t + 3]
                r0 = xp[s0: s0 + L]
                r1 = xp[s1: s1 + L]
                r2 = xp[s2: s2 + L]
                r3 = xp[s3: s3 + L]
                for q in range(L):
                    acc[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q] + w3 * r3[q]
                t += 4
            for t in range(t, T):
                wv = params[w + t]
                src = tp[t]
                run = xp[src: src + L]
                for q in range(L):
                    acc[q] += wv * run[q]
            for oh in range(Ho):
                dst = out + (co * Ho + oh) * Wo
                for ow in range(Wo):
                    act[dst + ow] = wide[oh * Wp + ow]
        return
    for co in range(Co):
        base = out + co * Ho * Wo
        for q in range(Ho * Wo):
            act[base + q] = params[boff + co] if boff >= 0 else 0
        for ci in range(Cn):
            for i in range(k):
                for j in range(k):
                    wv = params[woff + ((co * Cn + ci) * k + i) * k + j]
                    for oh in range(Ho):
                        src = (ci * Hp + oh * s + i * d) * Wp + j * d
                        dst = base + oh * Wo
                        for ow in range(Wo):
                            act[dst + ow] += wv * xp[src + ow * s]


@jit()
def _conv_backward(r, act, gact, params, grads, taps, xp, wide, gxp, n):  # pragma: no cover - compiled
    """Row ``r``'s convolution, backward, for image ``n``: the filter and bias gradients added
    into ``grads``, the input gradient (if ``r[NEED_GX]``) written into ``gact[IN]``."""
    Cn, Hn, Wn, Co, Ho, Wo = r[C], r[H], r[W], r[CO], r[HO], r[WO]
    k, s, d = r[K], r[S], r[D]
    pt, pl = r[PT], r[PL]
    Hp = Hn + pt + r[PB]
    Wp = Wn + pl + r[PR]
    _pad_image(act, r[IN] + n * Cn * Hn * Wn, Cn, Hn, Wn, pt, pl, Hp, Wp, xp)
    gy = r[OUT] + n * Co * Ho * Wo
    woff, boff, toff, xin = r[WOFF], r[BOFF], r[TOFF], r[IN]
    need_gx = r[NEED_GX] != 0
    if need_gx:
        for q in range(Cn * Hp * Wp + VECTOR // xp.itemsize):
            gxp[q] = 0
    if boff >= 0:
        for co in range(Co):
            acc = 0.0
            for q in range(Ho * Wo):
                acc += gact[gy + co * Ho * Wo + q]
            grads[boff + co] += acc
    if s == 1:
        # the output gradient in the wide layout, L apart, zero past each row's Wo columns
        L = _whole_vectors((Ho - 1) * Wp + Wo, xp.itemsize)
        for co in range(Co):
            for q in range(L):
                wide[co * L + q] = 0
            for oh in range(Ho):
                row = co * L + oh * Wp
                src = gy + (co * Ho + oh) * Wo
                for ow in range(Wo):
                    wide[row + ow] = gact[src + ow]
        # the filter gradient: dot products of the wide output gradient with the runs, four
        # output channels by four taps at a time (sixteen sums over eight loads per position),
        # in the working precision (as BLAS sums; float64 sums cost twice the time here)
        T = Cn * k * k
        tp = taps[toff: toff + T]
        co = 0
        while co + 4 <= Co:
            g0 = wide[co * L: co * L + L]
            g1 = wide[(co + 1) * L: (co + 2) * L]
            g2 = wide[(co + 2) * L: (co + 3) * L]
            g3 = wide[(co + 3) * L: (co + 4) * L]
            w = woff + co * T
            t = 0
            while t + 4 <= T:
                r0 = xp[tp[t]: tp[t] + L]
                r1 = xp[tp[t + 1]: tp[t + 1] + L]
                r2 = xp[tp[t + 2]: tp[t + 2] + L]
                r3 = xp[tp[t + 3]: tp[t + 3] + L]
                a00 = g0[0] * r0[0]
                a01 = g0[0] * r1[0]
                a02 = g0[0] * r2[0]
                a03 = g0[0] * r3[0]
                a10 = g1[0] * r0[0]
                a11 = g1[0] * r1[0]
                a12 = g1[0] * r2[0]
                a13 = g1[0] * r3[0]
                a20 = g2[0] * r0[0]
                a21 = g2[0] * r1[0]
                a22 = g2[0] * r2[0]
                a23 = g2[0] * r3[0]
                a30 = g3[0] * r0[0]
                a31 = g3[0] * r1[0]
                a32 = g3[0] * r2[0]
                a33 = g3[0] * r3[0]
                for q in range(1, L):
                    x0 = r0[q]
                    x1 = r1[q]
                    x2 = r2[q]
                    x3 = r3[q]
                    y = g0[q]
                    a00 += y * x0
                    a01 += y * x1
                    a02 += y * x2
                    a03 += y * x3
                    y = g1[q]
                    a10 += y * x0
                    a11 += y * x1
                    a12 += y * x2
                    a13 += y * x3
                    y = g2[q]
                    a20 += y * x0
                    a21 += y * x1
                    a22 += y * x2
                    a23 += y * x3
                    y = g3[q]
                    a30 += y * x0
                    a31 += y * x1
                    a32 += y * x2
                    a33 += y * x3
                grads[w + t] += a00
                grads[w + t + 1] += a01
                grads[w + t + 2] += a02
                grads[w + t + 3] += a03
                grads[w + T + t] += a10
                grads[w + T + t + 1] += a11
                grads[w + T + t + 2] += a12
                grads[w + T + t + 3] += a13
                grads[w + 2 * T + t] += a20
                grads[w + 2 * T + t + 1] += a21
                grads[w + 2 * T + t + 2] += a22
                grads[w + 2 * T + t + 3] += a23
                grads[w + 3 * T + t] += a30
                grads[w + 3 * T + t + 1] += a31
                grads[w + 3 * T + t + 2] += a32
                grads[w + 3 * T + t + 3] += a33
                t += 4
            for t in range(t, T):
                run = xp[tp[t]: tp[t] + L]
                grads[w + t] += _dot(g0, run)
                grads[w + T + t] += _dot(g1, run)
                grads[w + 2 * T + t] += _dot(g2, run)
                grads[w + 3 * T + t] += _dot(g3, run)
            co += 4
        for co in range(co, Co):
            gyw = wide[co * L: co * L + L]
            for t in range(T):
                grads[woff + co * T + t] += _dot(gyw, xp[tp[t]: tp[t] + L])
        if need_gx:
            # the input gradient: per tap, four output channels' multiply-adds per store
            T = Cn * k * k
            for t in range(T):
                src = taps[toff + t]
                grun = gxp[src: src + L]
                w = woff + t
                co = 0
                while co + 4 <= Co:
                    w0 = params[w + co * T]
                    w1 = params[w + (co + 1) * T]
                    w2 = params[w + (co + 2) * T]
                    w3 = params[w + (co + 3) * T]
                    g0 = wide[co * L: co * L + L]
                    g1 = wide[(co + 1) * L: (co + 2) * L]
                    g2 = wide[(co + 2) * L: (co + 3) * L]
                    g3 = wide[(co + 3) * L: (co + 4) * L]
                    for q in range(L):
                        grun[q] += w0 * g0[q] + w1 * g1[q] + w2 * g2[q] + w3 * g3[q]
                    co += 4
                for co in range(co, Co):
                    wv = params[w + co * T]
                    gyw = wide[co * L: co * L + L]
                    for q in range(L):
                        grun[q] += wv * gyw[q]
    else:
        for co in range(Co):
            for ci in range(Cn):
                for i in range(k):
                    for j in range(k):
                        t = woff + ((co * Cn + ci) * k + i) * k + j
                        wv = params[t]
                        acc = 0.0
                        for oh in range(Ho):
                            src = (ci * Hp + oh * s + i * d) * Wp + j * d
                            g = gy + (co * Ho + oh) * Wo
                            for ow in range(Wo):
                                acc += gact[g + ow] * xp[src + ow * s]
                            if need_gx:
                                for ow in range(Wo):
                                    gxp[src + ow * s] += wv * gact[g + ow]
                        grads[t] += acc
    if need_gx:
        gx = xin + n * Cn * Hn * Wn
        for c in range(Cn):
            for h in range(Hn):
                src = (c * Hp + h + pt) * Wp + pl
                dst = gx + (c * Hn + h) * Wn
                for w in range(Wn):
                    gact[dst + w] = gxp[src + w]


@jit(inline="always")
def _dot(a, b):  # pragma: no cover - compiled
    """``sum_q a[q] b[q]`` over ``a``'s length (at least 1), in the working precision."""
    acc = a[0] * b[0]
    for q in range(1, a.shape[0]):
        acc += a[q] * b[q]
    return acc


# ------------------------------------------------------------------------------ pooling, dense

@jit()
def _pool_forward(r, act, iwork, n):  # pragma: no cover - compiled
    """Row ``r``'s max-pool of image ``n``: window maxima into ``act[OUT]``, their flat indices
    in the plane into ``iwork[IOFF]``; a later tap replaces the running maximum when it is
    greater or NaN (:mod:`kernels.pool`'s rule)."""
    Cn, Hn, Wn, Ho, Wo, k, s = r[C], r[H], r[W], r[HO], r[WO], r[K], r[S]
    xin, yout, iout = r[IN], r[OUT], r[IOFF]
    for c in range(Cn):
        src = xin + (n * Cn + c) * Hn * Wn
        dst = (n * Cn + c) * Ho * Wo
        if k == 2 and s == 2:  # the homework's pool, by pairs without branches (kernels._pool2x2)
            for oh in range(Ho):
                for ow in range(Wo):
                    first = 2 * oh * Wn + 2 * ow
                    a = src + first
                    m, off = _window2x2(act[a], act[a + 1], act[a + Wn], act[a + Wn + 1], Wn)
                    act[yout + dst + oh * Wo + ow] = m
                    iwork[iout + dst + oh * Wo + ow] = first + off
            continue
        for oh in range(Ho):
            for ow in range(Wo):
                first = oh * s * Wn + ow * s
                m = act[src + first]
                mi = first
                for i in range(k):
                    for j in range(k):
                        q = first + i * Wn + j
                        v = act[src + q]
                        if v > m or v != v:
                            m = v
                            mi = q
                act[yout + dst + oh * Wo + ow] = m
                iwork[iout + dst + oh * Wo + ow] = mi


@jit()
def _pool_backward(r, gact, iwork, n):  # pragma: no cover - compiled
    """Row ``r``'s max-pool, backward, for image ``n``: ``gact[IN]`` zeroed, then each window's
    gradient added at its recorded maximum."""
    Cn, Hn, Wn, Ho, Wo = r[C], r[H], r[W], r[HO], r[WO]
    xin, yout, iout = r[IN], r[OUT], r[IOFF]
    for c in range(Cn):
        gx = xin + (n * Cn + c) * Hn * Wn
        src = (n * Cn + c) * Ho * Wo
        for q in range(Hn * Wn):
            gact[gx + q] = 0
        for q in range(Ho * Wo):
            gact[gx + iwork[iout + src + q]] += gact[yout + src + q]


@jit()
def _dense_forward(r, act, params, n):  # pragma: no cover - compiled
    """Row ``r``'s dense layer on image ``n``: ``y = W x + b``."""
    m = r[C] * r[H] * r[W]
    units = r[CO]
    x = r[IN] + n * m
    woff, boff, y = r[WOFF], r[BOFF], r[OUT] + n * units
    xs = act[x: x + m]
    for o in range(units):
        wrow = params[woff + o * m: woff + (o + 1) * m]
        acc = wrow[0] * xs[0]
        for i in range(1, m):
            acc += wrow[i] * xs[i]
        if boff >= 0:
            acc += params[boff + o]
        act[y + o] = acc


@jit()
def _dense_backward(r, act, gact, params, grads, n):  # pragma: no cover - compiled
    """Row ``r``'s dense layer, backward, for image ``n``: ``gW += gy x^T``, ``gb += gy``, and
    ``gx = W^T gy`` into ``gact[IN]`` if ``r[NEED_GX]``."""
    m = r[C] * r[H] * r[W]
    units = r[CO]
    x = r[IN] + n * m
    gy = r[OUT] + n * units
    woff, boff = r[WOFF], r[BOFF]
    need_gx = r[NEED_GX] != 0
    if need_gx:
        for i in range(m):
            gact[x + i] = 0
    xs = act[x: x + m]
    gxs = gact[x: x + m]
    for o in range(units):
        g = gact[gy + o]
        wrow = params[woff + o * m: woff + (o + 1) * m]
        grow = grads[woff + o * m: woff + (o + 1) * m]
        for i in range(m):
            grow[i] += g * xs[i]
        if need_gx:
            for i in range(m):
                gxs[i] += g * wrow[i]
        if boff >= 0:
            grads[boff + o] += g


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
            row[WOFF] = _offset(model, p)
            if len(layer.shapes) > 1:
                row[BOFF] = _offset(model, p + 1)
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


def _offset(model, i):
    """Where ``model.params[i]`` starts in ``model.flat_params``."""
    return (model.params[i].__array_interface__["data"][0]
            - model.flat_params.__array_interface__["data"][0]) // model.dtype.itemsize


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
