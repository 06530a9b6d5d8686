"""Naive references for :mod:`kernels.conv`: pad with zeros, then one slice per filter tap.

Written to be checked by eye against the formula, not to be fast. Same signatures and results
as the kernels. Sums are formed in float64 and rounded once to the input dtype, so for float32
the reference is the more accurate of the two.
"""

from __future__ import annotations

import numpy as np


def _pads(padding, kh, kw, dh, dw, stride):
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    if isinstance(padding, str):
        padding = padding.lower()
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "full":
            return ekh, ekh, ekw, ekw
        if padding == "same":
            assert stride == (1, 1)
            return ekh // 2, ekh - ekh // 2, ekw // 2, ekw - ekw // 2
        raise ValueError(padding)
    ph, pw = (padding, padding) if np.isscalar(padding) else tuple(padding)
    return ph, ph, pw, pw


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _geometry(x, w, stride, padding, dilation):
    x = np.asarray(x)
    w = np.asarray(w)
    two_d = x.ndim == 2
    x4 = x[None, None] if two_d else x
    w4 = w[None, None] if two_d else w
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    kh, kw = w4.shape[2:]
    pt, pb, pl, pr = _pads(padding, kh, kw, dh, dw, (sh, sw))
    xp = np.pad(x4.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    Wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return two_d, x4, w4, xp, (sh, sw), (dh, dw), (pt, pl), (Ho, Wo)


def _window(xp, i, j, sh, sw, dh, dw, Ho, Wo):
    """xp[:, :, y*sh + i*dh, x*sw + j*dw] for every output (y, x): the input tap (i, j) reads."""
    return xp[:, :, i * dh : i * dh + (Ho - 1) * sh + 1 : sh, j * dw : j * dw + (Wo - 1) * sw + 1 : sw]


def _accumulate(acc, xp, w4, sh, sw, dh, dw, Ho, Wo):
    for i in range(w4.shape[2]):
        for j in range(w4.shape[3]):
            win = _window(xp, i, j, sh, sw, dh, dw, Ho, Wo)  # (N, C, Ho, Wo)
            for o in range(w4.shape[0]):
                for c in range(w4.shape[1]):
                    acc[:, o] += float(w4[o, c, i, j]) * win[:, c]


def correlate2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """out[n,o,y,x] = bias[o] + sum_{c,i,j} w[o,c,i,j] * xpad[n, c, y*sh + i*dh, x*sw + j*dw]."""
    two_d, x4, w4, xp, (sh, sw), (dh, dw), _, (Ho, Wo) = _geometry(x, w, stride, padding, dilation)
    N, Co = x4.shape[0], w4.shape[0]
    acc = np.zeros((N, Co, Ho, Wo))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and inf * 0 are NaN, as they should be
        _accumulate(acc, xp, w4, sh, sw, dh, dw, Ho, Wo)
    if bias is not None:
        acc += np.asarray(bias, dtype=np.float64).reshape(1, -1, 1, 1)
    res = acc.astype(x4.dtype)
    res = res[0, 0] if two_d else res
    if out is not None:
        out[...] = res
        return out
    return res


def convolve2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """True convolution: correlation with the filter rotated by 180 degrees.

    ``'same'`` is SciPy's definition: the centred ``H x W`` part of the ``'full'`` output,
    starting at row ``ekh // 2`` and column ``ekw // 2`` (``ekh = dh*(kh-1)``)."""
    w = np.asarray(w)
    wf = w[..., ::-1, ::-1]
    if isinstance(padding, str) and padding.lower() == "same":
        full = correlate2d(x, wf, bias, stride=stride, padding="full", dilation=dilation)
        (H, W), (kh, kw), (dh, dw) = np.shape(x)[-2:], w.shape[-2:], _pair(dilation)
        top, left = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        res = np.ascontiguousarray(full[..., top : top + H, left : left + W])
        if out is not None:
            out[...] = res
            return out
        return res
    return correlate2d(x, wf, bias, stride=stride, padding=padding, dilation=dilation, out=out)


def _scatter(g4, xp, w4, gxp, gw, sh, sw, dh, dw, Ho, Wo):
    for i in range(w4.shape[2]):
        for j in range(w4.shape[3]):
            win = _window(xp, i, j, sh, sw, dh, dw, Ho, Wo)
            gwin = _window(gxp, i, j, sh, sw, dh, dw, Ho, Wo)  # a view: += scatters into gxp
            for o in range(w4.shape[0]):
                for c in range(w4.shape[1]):
                    gw[o, c, i, j] = np.sum(g4[:, o] * win[:, c])
                    gwin[:, c] += float(w4[o, c, i, j]) * g4[:, o]


def correlate2d_backward(grad_out, x, w, *, stride=1, padding=0, dilation=1, grads=("x", "w", "bias")):
    """(grad_x, grad_w, grad_bias) of :func:`correlate2d` by scattering each tap's window back;
    the ones ``grads`` does not name are None."""
    two_d, x4, w4, xp, (sh, sw), (dh, dw), (pt, pl), (Ho, Wo) = _geometry(x, w, stride, padding, dilation)
    g = np.asarray(grad_out, dtype=np.float64)
    g4 = g[None, None] if two_d else g
    H, W = x4.shape[2:]
    gxp = np.zeros_like(xp)
    gw = np.zeros(w4.shape)
    with np.errstate(invalid="ignore", over="ignore"):  # IEEE results (NaN, inf) are the point
        _scatter(g4, xp, w4, gxp, gw, sh, sw, dh, dw, Ho, Wo)
    gx = gxp[:, :, pt : pt + H, pl : pl + W]
    gb = g4.sum(axis=(0, 2, 3))
    dt = x4.dtype
    if two_d:
        gx, gw, gb = gx[0, 0], gw[0, 0], gb.reshape(())
    return tuple(a.astype(dt) if name in grads else None for a, name in ((gx, "x"), (gw, "w"), (gb, "bias")))
