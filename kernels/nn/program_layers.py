"""Each layer kind of a :mod:`kernels.nn.program` on one image: the compiled forward and backward
passes its walks call, each reading its geometry from the layer's row of the program table.

A row is int64 columns (:data:`COLUMNS`): the layer's kind; the offsets of its input and output
in the flat activation buffer (``IN``, ``OUT``; a relu's are equal: it works in place); the
input's ``C, H, W`` and the output's ``CO, HO, WO`` per image; a conv's or pool's kernel,
stride, dilation and padding; the offsets of its weight and bias in the model's flat parameter
buffer (``WOFF``, ``BOFF``; -1 for none); where its pool indices or conv tap offsets start in the
int64 buffer (``IOFF``, ``TOFF``); whether its input gradient is needed (``NEED_GX``: not for
the first layer). :mod:`kernels.nn.program` says how the loops are laid out and what they
measured.
"""

from __future__ import annotations

from .._config import jit
from .._pool2x2 import _window2x2

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
