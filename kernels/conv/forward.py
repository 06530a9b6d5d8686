"""The forward pass: dispatch to a kernel, and the public :func:`correlate2d` and
:func:`convolve2d`.

:func:`_run_forward` chooses the path (see the package docstring): several channels go through
one zero-padded copy to the register-blocked kernel of :mod:`.blocked`; one channel, or a
non-finite filter whose padding products must not be formed, to the copy-free kernel of
:mod:`.direct`. Tile sizes and the streaming threshold are read from :mod:`.tiles` at each call.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels import _recycled, _simd
from kernels import _validate as V

from . import tiles
from .blocked import BANDS, BANDS6, _correlate_blocked_kernel, _pack_filter, _read_slack, band_channel_block
from .direct import _CORRELATE
from .geometry import _bias_array, _pad, _pad_flat, _prepare
from .phases import phase_offsets, phases_used, row_copy


def _bands(tasks, size, dtype):
    """The scratch of :func:`kernels.conv.blocked._correlate_bands`: ``size`` elements
    for each of ``tasks`` tasks, one after the other (a function of its own, so that a test can
    hand the kernel memory with guard pages around it)."""
    V.check_allocation(tasks * size * np.dtype(dtype).itemsize, "the bands of the zero-padded input")
    return np.empty(tasks * size, dtype=dtype)


def _run_forward(xc, wc, b, res4, stride, dilation, pads, *, padding_is_data=True):
    """Dispatch a checked, C-contiguous 4-D correlation into the C-contiguous ``res4``.

    ``padding_is_data``: the zeros of the padding take part in products (the forward
    definition). The backward pass's ``grad_x`` sets it False: there the "padding" stands for
    output positions that do not exist, whose products the definition never forms.
    """
    (sh, sw), (dh, dw) = stride, dilation
    pt, pb, pl, pr = pads
    C = xc.shape[1]
    Co, kh, kw = wc.shape[0], wc.shape[2], wc.shape[3]
    Ho, Wo = res4.shape[2], res4.shape[3]
    finite = bool(np.isfinite(wc).all())
    if padding_is_data and (pt or pb or pl or pr) and not finite:
        # 0 * inf = NaN: with a non-finite filter, skipping padded taps would differ from the
        # zero-padded definition, so pad explicitly and let IEEE arithmetic decide.
        xc = _pad(xc, pads)
        pt = pb = pl = pr = 0
    if C * Co > 1 and (finite or padding_is_data):
        # Many channels: a zero-padded copy of x (cheap next to C_in*C_out*kh*kw multiply-adds
        # per pixel) buys a border-free, register-blocked inner loop (3x3 with lane shifts, any
        # other filter or stride with a load per tap). A single-channel image is memory-bound, so
        # it keeps the copy-free kernels below, as does a non-finite filter whose padding
        # products must not be formed. The copy ends in zero slack: the last block of a tile
        # reads whole vectors past its last position.
        # At a stride the copy cuts each padded plane into its phases, so that the outputs of a
        # row are consecutive positions and only the definition's products are formed
        # (computing every stride-1 position and keeping one in sw formed sw times more), and
        # each task copies the band of phases its output rows read (kernels.conv.blocked); any
        # filter but the 3x3 does so at stride 1 too (its one phase, the padded plane): each
        # band is read while it is in cache, where a padded copy of the whole batch made first
        # cost a serial pass over it (16x16x64x64 float32 5x5 or dilated 3x3: 0.85 ms of 3.4).
        # The 3x3 at stride 1 keeps that copy for its lane-shift block (the bands take a load
        # per tap), and so does not compile the bands' kernel on a first 3x3 call.
        slack = _read_slack(xc.itemsize)
        if (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1):
            wpack, bpack = _pack_filter(wc, b)
            xflat, (_, _, Hq, Wq) = _pad_flat(xc, (pt, pb, pl, pr), slack)
            offsets = phase_offsets(kh, kw, (dh, dw), (1, 1), (Hq, Wq))
            rows = max(1, min(Ho, tiles._PADDED_TILE_ELEMENTS // Wq))
            _correlate_blocked_kernel(xflat, xc.shape[0], C, Hq * Wq, Wq, wpack, bpack, res4, rows, offsets, True)
        else:
            prow, pcol = phases_used(kh, dh, sh), phases_used(kw, dw, sw)
            Wq = -(-(xc.shape[3] + pl + pr) // sw)
            reach = (kh - 1) * dh // sh  # phase rows a band holds beyond its output rows
            rows = tiles.phase_band_rows(xc.shape[0], C * len(prow) * len(pcol) * Wq * xc.itemsize, Ho, reach,
                                         numba.get_num_threads())
            band_rows = rows + reach
            offsets = phase_offsets(kh, kw, (dh, dw), (sh, sw), (band_rows, Wq), (prow, pcol))
            scratch = _bands(xc.shape[0] * -(-Ho // rows), C * len(prow) * len(pcol) * band_rows * Wq + slack,
                             xc.dtype)
            per_pass = tiles.band_channels_per_pass(offsets, Wq, C, _simd.TAP_POSITION_VECTORS * _simd.VECTOR_BYTES)
            K = band_channel_block(Co)
            wpack, bpack = _pack_filter(wc, b, K)
            bands = BANDS if K == _simd.CHANNEL_BLOCK else BANDS6
            bands[row_copy(sw, len(pcol))](xc, pt, pl, sh, sw, prow, pcol, Wq, band_rows, wpack, bpack, res4, rows,
                                           offsets, scratch, per_pass)
    else:
        single = C == 1 and (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1)
        rows = max(1, min(Ho, (tiles._STENCIL_TILE_ELEMENTS if single else tiles._TILE_ELEMENTS) // Wo))
        # Non-temporal stores only where each output element is written once (one input
        # channel) and the output is too large to stay in cache for whoever reads it next.
        stream = _simd.STREAMING_SUPPORTED and C == 1 and res4.nbytes >= tiles._STREAM_MIN_BYTES
        one = C == 1 and Co == 1
        parallel = not one or xc.shape[0] * -(-Ho // rows) > 1  # one channel: more than one tile
        _CORRELATE[one, parallel](xc, wc, b, res4, sh, sw, pt, pl, dh, dw, rows, stream)


def _forward(p, bias, out):
    x4, w4, two_d = p["x4"], p["w4"], p["two_d"]
    dtype = x4.dtype
    N, Co = x4.shape[0], w4.shape[0]
    Ho, Wo = p["out_hw"]
    out_shape = (Ho, Wo) if two_d else (N, Co, Ho, Wo)
    b = _bias_array(bias, Co, dtype, two_d)
    if out is not None:
        out = V.out_array(out, "out", out_shape, dtype)
    target = out if out is not None else _recycled.output(out_shape, dtype)
    if N == 0:
        return target
    res = target if target.flags.c_contiguous else np.empty(out_shape, dtype=dtype)
    xc, wc = np.ascontiguousarray(x4), np.ascontiguousarray(w4)
    if res is out:
        # The kernels read x, w and the bias while they write out: an out= that overlaps
        # one of them (out=x with padding="same") would read pixels already overwritten.
        xc, wc, b = (a.copy() if np.may_share_memory(a, out) else a for a in (xc, wc, b))
    _run_forward(xc, wc, b, res.reshape(N, Co, Ho, Wo), p["stride"], p["dilation"], p["pad"])
    if res is not target:
        target[...] = res
    return target


def correlate2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """2-D cross-correlation, what deep-learning frameworks call convolution.

    Formula (batch form; ``s`` stride, ``d`` dilation, ``p_t``/``p_l`` top/left zero padding)::

        out[n, co, y, x] = bias[co] + sum_{ci, i, j} w[co, ci, i, j] * xpad[n, ci, y*s_h + i*d_h, x*s_w + j*d_w]

    where ``xpad`` is ``x`` with zeros around it. Same result as ``torch.nn.functional.conv2d``
    and, for a single channel, as ``scipy.signal.correlate2d``. The homework's lecture (CSC413
    lecture 4) defines convolution with the flipped filter instead: that is :func:`convolve2d`;
    see the module docstring for why both exist (for the homework's filter ``J`` with rows
    (-1,-1,-1), (0,0,0), (1,1,1) the two differ exactly by sign).

    Parameters
    ----------
    x : array (H, W) or (N, C_in, H, W)
        Input, float32 or float64, any strides.
    w : array (kh, kw) or (C_out, C_in, kh, kw)
        Filter, the same dtype as ``x`` (a mismatch is a ``TypeError``, not a silent cast).
    bias : None, or (C_out,) for a batch; for a 2-D ``x`` a real scalar or an array of shape ``()``
        or ``(1,)``. Added to every output pixel of its channel. ``None`` means zero.
    stride, dilation : int or (int, int), each >= 1.
    padding : int >= 0, (ph, pw), ``'valid'`` (0), ``'full'`` (``d*(k-1)`` on each side: every
        overlap of filter and input), or ``'same'`` (output size == input size; stride 1 only,
        else ``ValueError``). For an even dilated extent ``'same'`` pads like PyTorch's
        ``padding='same'``: the odd pixel goes to the bottom/right, which is also the centred
        part of the ``'full'`` output that ``scipy.signal.correlate2d(x, w, 'same')`` returns.
    out : optional preallocated output of exactly the result's shape and dtype; it is filled in
        place and returned (saves the page faults of a fresh large array on every call). It may
        overlap ``x``, ``w`` or ``bias`` (``out=x`` with ``padding='same'``): the overlapped
        operand is copied first.

    Returns
    -------
    ``(H_out, W_out)`` or ``(N, C_out, H_out, W_out)``, dtype of ``x`` (``N = 0``, an empty
    batch, gives an empty result, as in PyTorch), with
    ``H_out = (H + p_t + p_b - d_h*(kh-1) - 1) // s_h + 1`` (likewise ``W_out``).

    Accumulation is in the input dtype, as in PyTorch (sums of ``C_in*kh*kw`` terms). NaN and
    inf propagate as IEEE arithmetic says on the zero-padded definition (a non-finite filter
    times padding zeros is NaN). Raises ``TypeError``/``ValueError`` naming the argument for
    wrong dtypes or ndim, channel mismatch, an empty image or filter, a filter larger than the padded input,
    non-positive stride/dilation, negative padding, a padded size, dilated filter extent or padded
    size plus stride beyond 2**62 (the kernels index in int64), a scalar bias outside the range
    of the dtype of ``x`` (NaN and inf are accepted and propagate), or a mismatched ``out``.
    """
    p = _prepare(x, w, stride, padding, dilation)
    return _forward(p, bias, out)


def convolve2d(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """2-D true convolution (filter flipped), as defined in the homework's lecture (CSC413 lecture 4).

    Formula: ``convolve2d(x, w) == correlate2d(x, w[..., ::-1, ::-1])``, i.e. for a single
    channel and padding 0 (``'valid'``) with ``kh x kw`` filter::

        out[y, x] = bias + sum_{i, j} w[i, j] * x[y + kh-1 - i, x + kw-1 - j]

    which is ``scipy.signal.convolve2d(x, w, mode)`` for ``'valid'``, ``'full'`` and ``'same'``
    (for ``'valid'`` with a filter larger than ``x`` SciPy swaps the operands; here it is a
    ``ValueError``). Every argument, shape and dtype rule is that of :func:`correlate2d`; numeric
    padding is applied to ``x`` exactly as there. ``'same'`` is the centred part of the
    ``'full'`` output, as in SciPy: for an even (dilated) filter extent the odd pixel of padding
    goes to the top/left, the mirror of :func:`correlate2d`'s rule, so that
    ``convolve2d(x, w, padding='same') == correlate2d(x, w[..., ::-1, ::-1], padding='same')``
    holds for odd filters only.
    Deep-learning frameworks compute :func:`correlate2d` and call it convolution; for the
    homework's filter ``J`` (rows (-1,-1,-1), (0,0,0), (1,1,1)) flipping is negation, so the two
    results differ exactly by sign.
    """
    p = _prepare(x, w, stride, padding, dilation, flipped=True)
    p["w4"] = p["w4"][:, :, ::-1, ::-1]
    return _forward(p, bias, out)
