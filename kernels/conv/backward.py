"""The backward pass, public :func:`correlate2d_backward`: ``grad_w`` and ``grad_bias`` by the
reductions of :mod:`.filter_grad`, ``grad_x`` as forward correlations of ``grad_out`` with the
rotated filter (:func:`.forward._run_forward`), one per phase of the stride.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels import _recycled, _simd
from kernels import _validate as V

from . import tiles
from .blocked import _correlate_blocked_kernel, _pack_filter, _read_slack
from .filter_grad import _grad_bias_kernel, _grad_w3x3_kernel, _grad_w_pairs_kernel, _grad_w_taps_kernel
from .forward import _run_forward
from .geometry import _pad_flat, _prepare
from .phases import column_phases, interleave_phases


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
    once (``grad_w`` after runs in the input dtype over a band of rows per SIMD lane: 8 rows,
    or 32 products on narrower planes);
    ``grad_x`` (sums of ``C_out*kh*kw`` terms) accumulates in the input dtype.

    The gradients of :func:`convolve2d` follow from ``convolve2d(x, w) = correlate2d(x, flip(w))``
    with ``flip = w[..., ::-1, ::-1]``: call this function with ``flip(w)``; ``grad_x`` and
    ``grad_bias`` are unchanged and the filter gradient is ``flip(grad_w)``.

    Implementation: ``grad_w`` is a compiled reduction over the zero-padded input, parallel over
    (co, ci) pairs. ``grad_x`` is itself a forward correlation (of ``grad_out`` with the filter
    rotated by 180 degrees, channel axes swapped, padding ``d*(k-1) - p``) and runs on the forward
    kernel; at a stride above 1, one correlation per phase of the stride, each with the taps
    that reach its positions (:func:`_input_grad`).
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
    if isinstance(grads, str):
        raise TypeError(f"grads must be a tuple of names among {_GRADS}, got {grads!r}")
    try:
        names = tuple(grads)  # once: a generator would be empty on a second pass
    except TypeError:
        raise TypeError(f"grads must be a tuple of names among {_GRADS}, got {grads!r}") from None
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"grads must be a tuple of names among {_GRADS}, got {names!r}")
    unknown = [name for name in names if name not in _GRADS]
    if unknown:
        raise ValueError(f"grads names {unknown!r}; expected names among {_GRADS}")
    return {name: name in names for name in _GRADS}


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
        # With finite x, the kernel widens grad_out's rows with zero columns to whole vectors (no
        # scalar tail; zeros times inf would be NaN, hence finite x only: otherwise the tail sums
        # exactly).
        widen = bool(Wo % lanes) and bool(np.isfinite(xc).all())
        if sw == 1:
            xflat, (_, _, Hp, Wp) = _pad_flat(xc, p["pad"], lanes)  # slack: widened rows read past
            phase_stride = 0
        else:
            # at a column stride, over the column phases: only the products the definition forms
            # (grad_out spread out by the stride formed sw times as many), each read at stride 1
            xflat, Hp, Wp, phase_stride = column_phases(xc, p["pad"], sw, lanes, (kw - 1) * dw + 1)
        _grad_w_taps_kernel(g4, xflat, C, Hp, Wp, grad_w, sh, dh, dw, sw, phase_stride, widen)
    return grad_w.astype(dtype).reshape(Co, C, kh, kw)


def _phase_taps(a, s, p, d, k, n):
    """Output phase ``a`` (positions ``a, a + s, ...`` of ``n``) of the input gradient along one
    axis (stride ``s``, padding ``p``, dilation ``d``, ``k`` taps): input position ``h = a + s m``
    receives tap ``i`` from output ``y = m + (a + p - i d) / s`` wherever that is an integer.
    Returns the taps in the order of their offsets (a correlation's), the first offset, the
    offsets' spacing and the phase's length."""
    taps = sorted((i for i in range(k) if (a + p - i * d) % s == 0), key=lambda i: -i)
    offsets = [(a + p - i * d) // s for i in taps]
    step = offsets[1] - offsets[0] if len(taps) > 1 else 1
    return taps, (offsets[0] if taps else 0), step, len(range(a, n, s))


def _input_grad(g4, wc, p, N, C, H, W, Co, kh, kw, Ho, Wo):
    """``grad_x`` of :func:`correlate2d_backward`, in the dtype of ``wc``.

    Polyphase: the input positions ``(a + s_h m, b + s_w l)`` of one phase ``(a, b)`` receive
    the taps ``(i, j)`` with ``a + p_t - i d_h`` and ``b + p_l - j d_w`` multiples of the
    stride, from consecutive outputs: a stride-1 correlation of grad_out with that sub-filter,
    rotated by 180 degrees and its channel axes swapped (at stride 1 the one phase is the whole
    filter). Each runs on the forward kernels with the rows and columns of grad_out it reaches,
    "padded" where it would reach outputs that do not exist (products the definition never
    forms: ``padding_is_data=False``; at a stride, for a finite filter on several channels, all
    from one padded copy: :func:`_phases_on_one_copy`), and the phases are interleaved into
    grad_x in one pass. Only the products of the definition are formed, so a non-finite filter
    needs no other route.
    """
    dtype = wc.dtype
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    pt, _, pl, _ = p["pad"]
    grad_x = _recycled.output((N, C, H, W), dtype)
    whole = (sh, sw) == (1, 1)
    plans = []
    # the phases side by side in one buffer (a stride past the edge: no more phases hold a position)
    nA, nB = min(sh, H), min(sw, W)
    shapes = [(len(range(a, H, sh)), len(range(b, W, sw))) for a in range(nA) for b in range(nB)]
    starts = np.cumsum([0] + [N * C * Ma * Mb for Ma, Mb in shapes])
    store = np.empty(0 if whole else int(starts[-1]), dtype=dtype)
    for a in range(nA):
        rows, r0, rstep, Ma = _phase_taps(a, sh, pt, dh, kh, H)
        for b in range(nB):
            cols, c0, cstep, Mb = _phase_taps(b, sw, pl, dw, kw, W)
            k = a * nB + b
            out = grad_x if whole else store[starts[k] : starts[k + 1]].reshape(N, C, Ma, Mb)
            # the window of grad_out the phase reaches, rows r0 <= y < r1 and columns c0 <= x < c1
            # ("padding" where that is outside grad_out)
            r1, c1 = r0 + Ma + rstep * (len(rows) - 1), c0 + Mb + cstep * (len(cols) - 1)
            if not rows or not cols or min(Ho, r1) <= max(0, r0) or min(Wo, c1) <= max(0, c0):
                out[...] = 0
            else:
                plans.append((out, rows, cols, rstep, cstep, (r0, r1, c0, c1)))
    if not whole and C * Co > 1 and np.isfinite(wc).all():
        _phases_on_one_copy(g4, wc, plans)
    else:
        for out, rows, cols, rstep, cstep, (r0, r1, c0, c1) in plans:
            pads = (max(0, -r0), max(0, r1 - Ho), max(0, -c0), max(0, c1 - Wo))
            wt = np.ascontiguousarray(wc[:, :, rows][:, :, :, cols].transpose(1, 0, 2, 3))
            window = np.ascontiguousarray(g4[:, :, max(0, r0) : min(Ho, r1), max(0, c0) : min(Wo, c1)])
            _run_forward(window, wt, np.zeros(C, dtype=dtype), out, (1, 1), (rstep, cstep), pads,
                         padding_is_data=False)
    if not whole:
        interleave_phases(store, starts[:-1], np.array(shapes, dtype=np.int64).reshape(-1, 2), grad_x, (sh, sw))
    return grad_x


def _phases_on_one_copy(g4, wc, plans):
    """The phases of :func:`_input_grad` (each ``(out, rows, cols, rstep, cstep, window)``: its
    output, its taps, and the window ``(r0, r1, c0, c1)`` of grad_out it reads) on the blocked
    forward kernel, all from one zero-padded copy of ``grad_out`` (each phase's window starts
    where its own would), where a copy per phase cost three passes over grad_out at stride 2.
    For a finite filter on several channels, the blocked kernel's case: the same products in
    the same order."""
    N, Co, Ho, Wo = g4.shape
    C = wc.shape[1]
    windows = [q[5] for q in plans]
    top = max([0] + [-r0 for r0, _, _, _ in windows])
    bottom = max([0] + [r1 - Ho for _, r1, _, _ in windows])
    left = max([0] + [-c0 for _, _, c0, _ in windows])
    right = max([0] + [c1 - Wo for _, _, _, c1 in windows])
    gflat, (_, _, Hp, Wp) = _pad_flat(g4, (top, bottom, left, right), _read_slack(g4.itemsize))
    zeros = np.zeros(C, dtype=wc.dtype)
    for out, rows, cols, rstep, cstep, (r0, _, c0, _) in plans:
        wpack, bpack = _pack_filter(wc[:, :, rows][:, :, :, cols].transpose(1, 0, 2, 3), zeros)
        offsets = (np.arange(len(rows), dtype=np.int64)[:, None] * (rstep * Wp)
                   + np.arange(len(cols), dtype=np.int64)[None, :] * cstep).reshape(-1)
        tile = max(1, min(out.shape[2], tiles._PADDED_TILE_ELEMENTS // Wp))
        three = (len(rows), len(cols), rstep, cstep) == (3, 3, 1, 1)
        _correlate_blocked_kernel(gflat[(r0 + top) * Wp + c0 + left :], N, Co, Hp * Wp, Wp, wpack, bpack, out, tile,
                                  offsets, three)
