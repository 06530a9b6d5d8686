"""Validation at the door and the zero-padded copies of the input.

:func:`_prepare` checks and coerces the arguments every public function shares (dtype, ndim,
channel agreement, stride, dilation, the ``padding`` forms, the output's size) into 4-D
operands and their geometry; :func:`_bias_array` the bias. :func:`_pad_flat` and :func:`_pad`
build the explicitly zero-padded copies the blocked kernels, the filter gradient and a
non-finite filter need. Nothing unchecked reaches the compiled kernels.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from kernels import _validate as V


def _padding(padding, kh, kw, dh, dw, stride, flipped=False):
    """(top, bottom, left, right) zero padding from the public ``padding`` argument.

    ``flipped``: the filter will be applied rotated by 180 degrees (:func:`convolve2d`). Its
    ``'same'`` output is the centred part of its ``'full'`` output, as ``scipy.signal`` defines
    it, which is the correlation with the odd pixel of padding at the top/left instead.
    """
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)  # dilated kernel extent minus one
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "full":
            return (ekh, ekh, ekw, ekw)
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            # PyTorch's rule: the odd pixel of an even extent goes to the bottom/right (which is
            # also scipy.signal.correlate2d's 'same'); the flipped filter mirrors it.
            top, left = (ekh - ekh // 2, ekw - ekw // 2) if flipped else (ekh // 2, ekw // 2)
            return (top, ekh - top, left, ekw - left)
        raise ValueError(f"padding must be an int, a pair of ints, 'valid', 'same' or 'full', got {padding!r}")
    ph, pw = V.int_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _bias_array(bias, co, dtype, two_d):
    if bias is None:
        return np.zeros(co, dtype=dtype)
    if two_d and isinstance(bias, numbers.Real) and not isinstance(bias, (bool, np.bool_)):
        # a Python (or NumPy) real scalar takes the dtype of x; arrays must already match it.
        # NaN and inf pass (they propagate like a non-finite bias array); a finite value that
        # overflows the dtype would turn every output pixel into inf.
        shown = repr(bias) if len(repr(bias)) <= 40 else repr(bias)[:37] + "..."
        overflow = f"bias must be within the range of {np.dtype(dtype)} (like x), got {shown}"
        try:
            value = float(bias)
        except OverflowError:
            raise ValueError(overflow) from None
        with np.errstate(over="ignore"):
            cast = np.full(1, value, dtype=dtype)
        if math.isfinite(value) and not np.isfinite(cast[0]):
            raise ValueError(overflow)
        return cast
    if two_d:
        b = V.float_array(bias, "bias", ndim=(0, 1), dtype=dtype, like="x")
        if b.size != 1:
            raise ValueError(f"bias for a 2-D x must be a scalar, shape () or (1,), got shape {b.shape}")
        return np.ascontiguousarray(b.reshape(1))
    b = V.float_array(bias, "bias", ndim=1, dtype=dtype, like="x")
    if b.shape != (co,):
        raise ValueError(f"bias must have shape ({co},) (one per output channel of w), got {b.shape}")
    return np.ascontiguousarray(b)


#: The largest padded size, dilated filter extent or padded size plus stride the kernels take.
#: They form indices from these (the first output a tap reaches, ``ceil((p_l - j d_w) / s_w)``;
#: the phases of a stride; tap offsets) in int64, where a few sums of values below 2**62 still
#: fit; beyond it the arithmetic would wrap and read the wrong pixels.
MAX_EXTENT = 2**62


def _check_index_range(padded, extent, stride, padding, dilation):
    """Refuse, naming the argument, a geometry whose indices would not fit in int64 (per axis:
    the padded size, the dilated extent and the padded size plus the stride, each at most
    :data:`MAX_EXTENT`)."""
    for axis, p, e, s in zip(("rows", "columns"), padded, extent, stride):
        if e > MAX_EXTENT:
            raise ValueError(f"dilation={dilation} spreads w's {axis} over {e} pixels, beyond the "
                             f"{MAX_EXTENT} (2**62) the kernels index in int64")
        if p > MAX_EXTENT:
            raise ValueError(f"padding={padding!r} (dilation={dilation}) pads x's {axis} to {p}, beyond the "
                             f"{MAX_EXTENT} (2**62) the kernels index in int64")
        if p + s > MAX_EXTENT:
            raise ValueError(f"stride={stride} plus x's padded {axis} ({p}) is {p + s}, beyond the "
                             f"{MAX_EXTENT} (2**62) the kernels index in int64")


def _filter_geometry(x, w, stride, padding, dilation, flipped=False):
    """Check the filter and the geometry against an already checked ``x`` (a NumPy or a dask
    array, 2-D or 4-D: only its shape and dtype are read). Returns the filter, its 4-D form,
    stride, dilation, (top, bottom, left, right) padding, the dilated extent and the output's
    (H_out, W_out)."""
    two_d = x.ndim == 2
    w = V.float_array(w, "w", ndim=2 if two_d else 4)
    if w.dtype != x.dtype:
        raise TypeError(f"w must have dtype {x.dtype} like x, got {w.dtype}")
    sh, sw = V.int_pair(stride, "stride")
    dh, dw = V.int_pair(dilation, "dilation")
    w4 = w[None, None] if two_d else w
    if not two_d and w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w has {w.shape[1]} input channels (shape {w.shape}) but x has {x.shape[1]} (shape {x.shape})"
        )
    kh, kw = w4.shape[2], w4.shape[3]
    pt, pb, pl, pr = _padding(padding, kh, kw, dh, dw, (sh, sw), flipped)
    H, W = x.shape[-2], x.shape[-1]
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    _check_index_range((H + pt + pb, W + pl + pr), (eh, ew), (sh, sw), padding, (dh, dw))
    if eh > H + pt + pb or ew > W + pl + pr:
        raise ValueError(
            f"w's (dilated) extent {(eh, ew)} is larger than the padded input {(H + pt + pb, W + pl + pr)} "
            f"(x shape {x.shape}, w shape {w.shape}, padding={padding!r}, dilation={(dh, dw)})"
        )
    out_hw = ((H + pt + pb - eh) // sh + 1, (W + pl + pr - ew) // sw + 1)
    return w, w4, (sh, sw), (dh, dw), (pt, pb, pl, pr), (eh, ew), out_hw


def _prepare(x, w, stride, padding, dilation, flipped=False):
    """Validate and coerce the common arguments; returns a dict of 4-D operands and geometry.

    A batch of zero images is accepted (its result is empty, as in PyTorch); an empty image or
    filter is not."""
    x = V.float_array(x, "x", ndim=(2, 4), empty_batch=True)
    two_d = x.ndim == 2
    w, w4, (sh, sw), (dh, dw), pads, _, (Ho, Wo) = _filter_geometry(x, w, stride, padding, dilation, flipped)
    x4 = x[None, None] if two_d else x
    # A huge padding or dilation implies a huge output: refuse it by name rather than let the
    # allocator fail, or the machine swap. (A forward pass pads a copy of x only where that copy
    # is no larger than the output; the backward pass checks its own padded copy.)
    V.check_allocation(
        x4.shape[0] * w4.shape[0] * Ho * Wo * x.dtype.itemsize,
        f"the output {(x4.shape[0], w4.shape[0], Ho, Wo)} implied by x shape {x.shape}, w shape {w.shape}, "
        f"padding={padding!r}, stride={(sh, sw)} and dilation={(dh, dw)}",
    )
    return dict(x=x, w=w, x4=x4, w4=w4, two_d=two_d, stride=(sh, sw), dilation=(dh, dw), pad=pads,
                out_hw=(Ho, Wo))


def _pad_flat(xc, pads, slack=0):
    """The C-contiguous batch ``xc`` zero-padded (pads = top, bottom, left, right), flat, followed
    by ``slack`` zeros; returns it and the padded shape."""
    pt, pb, pl, pr = pads
    N, C, H, W = xc.shape
    shape = (N, C, H + pt + pb, W + pl + pr)
    size = int(np.prod(shape, dtype=object))
    V.check_allocation((size + slack) * xc.itemsize,
                       f"the zero-padded copy {shape} of x that padding={pads} (after dilation) implies")
    flat = np.empty(size + slack, dtype=xc.dtype)
    flat[size:] = 0
    # NumPy's copies, one pass over each byte: a compiled parallel copy ran no faster than the
    # memory allows and cost a second of compilation on a first call.
    xp = flat[:size].reshape(shape)
    xp[:, :, :pt] = 0
    xp[:, :, pt + H:] = 0
    inner = xp[:, :, pt : pt + H]
    inner[..., :pl] = 0
    inner[..., pl + W:] = 0
    inner[..., pl : pl + W] = xc
    return flat, shape


def _pad(xc, pads):
    """A zero-padded copy of the C-contiguous batch ``xc`` (pads = top, bottom, left, right)."""
    flat, shape = _pad_flat(xc, pads)
    return flat.reshape(shape)
