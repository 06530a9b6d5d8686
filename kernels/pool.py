"""2-D max-pooling, forward and backward, with PyTorch's semantics.

The homework's section 3.2 pools with a 2x2 window and stride 2; these kernels take any window,
stride and padding that ``torch.nn.functional.max_pool2d`` takes (``dilation=1``,
``ceil_mode=False``) and give bit-identical values and indices.

Semantics (those of PyTorch's CPU kernel, checked against it in ``tests/test_pool.py``):

* Output size, per axis: ``out = floor((n + 2*pad - k) / stride) + 1``.
* Padding is implicit ``-inf``: padded positions never win, and the index of a window whose
  real elements are all ``-inf`` is its first real element. PyTorch requires
  ``pad <= k / 2``, which guarantees every window holds at least one real element.
* Each window is scanned in row-major order and the running maximum ``m`` (start ``-inf``) is
  replaced by ``v`` when ``v > m or isnan(v)``. Hence ties go to the *first* maximum, and a
  NaN anywhere in the window makes the output NaN, with the index of the *last* NaN of the
  window (a later NaN replaces an earlier one; nothing else replaces a NaN).
* ``indices`` are flat indices ``row * W + col`` into each ``(H, W)`` input plane, int64.
* The backward pass adds ``grad_y[n, c, i, j]`` into ``grad_x[n, c].flat[indices[n, c, i, j]]``
  in row-major order of the output, exactly as PyTorch's autograd does, so overlapping windows
  (``stride < kernel``) accumulate.

dtype rules: float32 and float64 in, the same dtype out. The forward pass only compares and
copies, so it is exact. The backward pass sums, per input element, the gradients of the windows
that picked it: at most ``ceil(kh/sh) * ceil(kw/sw)`` terms, added in the input dtype as PyTorch
does (a float64 accumulator would make float32 results differ from PyTorch's and gain nothing).

Layout and threads: ``(N, C, H, W)`` batches, ``(C, H, W)`` or single ``(H, W)`` planes. The
compiled kernels run one ``prange`` iteration per ``(n, c)`` plane, so each writes only its own
plane: results are deterministic and independent of the thread count. The homework's 2x2 window
with stride 2 runs unrolled kernels of its own, :mod:`kernels._pool2x2`.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import prange

from . import _recycled, _validate
from ._config import jit
from ._pool2x2 import (_maxpool2x2_backward_streaming_kernel, maxpool2x2, maxpool2x2_indices,  # noqa: F401
                       route_plane2x2, streams)

__all__ = ["maxpool2d", "maxpool2d_backward", "pool_output_size"]


# --------------------------------------------------------------------------- compiled kernels


@jit(parallel=True)
def _maxpool2d_kernel(x, kh, kw, sh, sw, ph, pw, out):  # pragma: no cover - compiled
    """Fill ``out`` with the window maxima of ``x``, both (N, C, H, W).

    For each output row the window is swept one kernel tap ``(i, j)`` at a time, in row-major
    tap order, with the innermost loop over output columns. Every output therefore sees its
    window's elements in the same row-major order as a per-window scan (so ties and NaN go the
    same way), while the inner loop is a branch-free compare-and-select over contiguous output
    memory that LLVM vectorises. Row, tap and column ranges are clipped in advance so that no
    tap reads outside the input: padded taps are skipped, which is what ``-inf`` padding amounts
    to, and the work per output row is bounded by the input's width, not the kernel's.
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    # the taps that land inside [0, W) for some output column: from the last column's first real
    # tap to the first column's last one, at most 2W of them (2*pw <= kw), however wide the
    # kernel; the taps skipped would run an empty column range
    j_lo = max(0, pw - (OW - 1) * sw)
    j_hi = min(kw, pw + W)
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            h0 = oh * sh - ph
            orow = out[n, c, oh]
            for ow in range(OW):
                orow[ow] = -np.inf
            for i in range(max(h0, 0), min(h0 + kh, H)):
                xrow = x[n, c, i]
                for j in range(j_lo, j_hi):
                    # the outputs whose tap j lands inside [0, W): 0 <= ow*sw - pw + j < W
                    lo = max(0, (pw - j + sw - 1) // sw)
                    hi = min(OW, (W + pw - j - 1) // sw + 1)
                    off = j - pw
                    for ow in range(lo, hi):
                        v = xrow[ow * sw + off]
                        m = orow[ow]
                        orow[ow] = v if (v > m or v != v) else m


@jit(parallel=True)
def _maxpool2d_indices_kernel(x, kh, kw, sh, sw, ph, pw, out, idx):  # pragma: no cover - compiled
    """Window maxima of ``x`` into ``out`` and the flat index of each into ``idx``.

    One scalar scan per window, in row-major order over the window's real elements (the clipped
    ranges skip padding). The running index starts at the first real element, which stands
    when every element is ``-inf``. A tap sweep like :func:`_maxpool2d_kernel`'s, carrying an
    index row beside the value row, measured 1.3x slower than this scan: LLVM vectorises the
    float compare-and-select but not the paired int64 select.
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = max(h0, 0)
            he = min(h0 + kh, H)
            orow = out[n, c, oh]
            irow = idx[n, c, oh]
            for ow in range(OW):
                w0 = ow * sw - pw
                ws = max(w0, 0)
                we = min(w0 + kw, W)
                m = -np.inf
                k = hs * W + ws
                for i in range(hs, he):
                    xrow = x[n, c, i]
                    for jj in range(ws, we):
                        v = xrow[jj]
                        if v > m or v != v:
                            m = v
                            k = i * W + jj
                orow[ow] = m
                irow[ow] = k


@jit(parallel=True)
def _maxpool2d_backward_kernel(grad_y, idx, grad_x, bad, two):  # pragma: no cover - compiled
    """``grad_x[n, c] = 0``, then ``grad_x[n, c, k] += grad_y[n, c, i, j]`` with
    ``k = idx[n, c, i, j]``, in row-major order.

    ``grad_x`` is (N, C, H*W), overwritten; one ``prange`` iteration owns one plane, zeroes it
    (in cache, right before its scattered additions: no separate zeroing pass over memory) and
    adds into it, so the additions never race. Each plane first checks its indices, ``0 <= k <
    H*W`` (as unsigned: a negative ``k`` is huge); a plane with one outside stays zero and is
    counted in ``bad[n C + c]``, for the caller to raise. So the indices are read from memory
    once, not once more by a check of them all first (a sixth of the call). With ``two`` > 0,
    the input width ``W`` of planes shaped as the 2x2 stride-2 pool's (``OH = H // 2``, ``OW =
    W // 2``), a plane is first written in memory order by :func:`route_plane2x2`, and zeroed
    and scattered as above only when one of its indices leaves its window (0: always so)."""
    N, C, OH, OW = grad_y.shape
    hw = np.uint64(grad_x.shape[2])
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        g = grad_x[n, c]
        if two > 0 and route_plane2x2(grad_y[n, c], idx[n, c], g, two):
            bad[p] = 0
        else:
            for k in range(g.shape[0]):
                g[k] = 0
            nbad = 0
            for oh in range(OH):
                irow = idx[n, c, oh]
                for ow in range(OW):
                    nbad += np.uint64(irow[ow]) >= hw
            bad[p] = nbad
            if nbad == 0:
                for oh in range(OH):
                    grow = grad_y[n, c, oh]
                    irow = idx[n, c, oh]
                    for ow in range(OW):
                        g[irow[ow]] += grow[ow]


#: Input planes of at most this many elements (32x32) take :func:`_maxpool2d_backward_small_kernel`
#: (flat unsigned indexing, no per-plane views or calls), larger ones the per-plane kernels above.
#: Measured alternating on the 2-core Zen 5 EPYC (float32, medians of 200 calls, one thread /
#: two, in us): (64, 16, 10, 10) 21 / 14 against 143 / 84; (64, 6, 28, 28) 40 / 29 against
#: 132 / 105; (16, 32, 32, 32) 70 / 49 against 153 / 80; (16, 32, 128, 128) 2078 / 1218
#: against 1495 / 730, where the per-plane kernels' write-once route of the 2x2 pool wins.
#: (With signed indices, on the 2-core Intel Xeon, the flat kernel had won only up to 8x8.)
_SMALL_PLANE = 1024
#: Elements of input gradient per task of the small-plane kernel (whole planes, at least one).
_SMALL_TASK_ELEMENTS = 1 << 15


@jit(parallel=True)
def _maxpool2d_backward_small_kernel(gy, idx, gx, bad, planes_per_task):  # pragma: no cover - compiled
    """:func:`_maxpool2d_backward_kernel` without its 2x2 route, for small planes, on the flat
    arrays ``gy`` and ``idx`` (``N C`` planes of ``P`` outputs each, C-contiguous) and ``gx``
    (``N C`` planes of ``HW`` inputs): a task zeroes its ``planes_per_task`` planes in one run,
    then adds ``gx[p HW + k] += gy[p P + j]`` for ``j`` in order, each index checked as it is
    added (``0 <= k < HW``; a plane with one outside is zeroed again and counted in ``bad[p]``).
    The same additions in the same order as the per-plane kernel, so the same bits, with no
    view and no call per plane (they cost 100 ns a plane of 64 inputs). Every index is unsigned:
    a signed one gets Numba's wraparound check on each access, which kept even the zeroing
    from vectorising (float32, one thread, on the 2-core Zen 5 EPYC: (64, 16, 8, 8) 11 us
    against 37, (64, 32, 4, 4) 8 against 21)."""
    NC = bad.shape[0]
    P = gy.shape[0] // max(1, NC)
    HW = gx.shape[0] // max(1, NC)
    hw, uP = np.uint64(HW), np.uint64(P)
    for t in prange((NC + planes_per_task - 1) // planes_per_task):
        p0 = t * planes_per_task
        p1 = min(NC, p0 + planes_per_task)
        for k in range(np.uint64(p0) * hw, np.uint64(p1) * hw):  # the task's planes are contiguous: zeroed in one run
            gx[k] = 0
        for p in range(p0, p1):
            base = np.uint64(p) * hw
            o = np.uint64(p) * uP
            nbad = 0
            for j in range(o, o + uP):  # checked as added: no pass over the indices first
                k = np.uint64(idx[j])
                if k < hw:
                    gx[base + k] += gy[j]
                else:
                    nbad += 1
            bad[p] = nbad
            if nbad:
                for k in range(base, base + hw):
                    gx[k] = 0


def route_gradients(gy4, idx4, gx4):
    """``gx4`` (N, C, H, W, C-contiguous, overwritten) from ``gy4`` and the flat indices
    ``idx4``: planes of at most :data:`_SMALL_PLANE` inputs by one flat scatter; larger ones of
    the 2x2 stride-2 pool's shapes in memory order where their indices lie in their windows
    (streamed for large float64 gradients), every other by scattering.
    Returns the per-plane count of indices outside ``[0, H*W)`` (those planes left zero)."""
    N, C, H, W = gx4.shape
    bad = np.empty(N * C, dtype=np.int64)
    if H * W <= _SMALL_PLANE:
        _maxpool2d_backward_small_kernel(gy4.reshape(-1), idx4.reshape(-1), gx4.reshape(-1), bad,
                                         max(1, _SMALL_TASK_ELEMENTS // max(1, H * W)))
        return bad
    two = W if gy4.shape[2] == H // 2 and gy4.shape[3] == W // 2 else 0
    if two and streams(gx4):
        _maxpool2x2_backward_streaming_kernel(gy4, idx4, gx4, bad)
        if not bad.any():
            return bad
        two = 0  # an index left its window: scatter every plane (the streamed ones rewritten)
    _maxpool2d_backward_kernel(gy4, idx4, gx4.reshape(N, C, H * W), bad, two)
    return bad


# --------------------------------------------------------------------------- validation helpers


def pool_output_size(n: int, k: int, stride: int, pad: int) -> int:
    """``floor((n + 2*pad - k) / stride) + 1``, PyTorch's ``ceil_mode=False`` output size."""
    return (n + 2 * pad - k) // stride + 1


def _pool_params(kernel_size, stride, padding):
    kernel = _validate.int_pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _validate.int_pair(stride, "stride")
    pads = _validate.int_pair(padding, "padding", minimum=0)
    for axis, k, p in zip(("height", "width"), kernel, pads):
        if 2 * p > k:
            raise ValueError(
                f"padding must be at most half of kernel_size (as in PyTorch), got padding={padding!r} "
                f"with kernel_size={kernel_size!r} ({axis}: pad {p} > {k}/2)"
            )
    return kernel, strides, pads


def _as_4d(a: np.ndarray) -> np.ndarray:
    """A view of a 2-, 3- or 4-D array with leading unit axes added (never a copy)."""
    while a.ndim < 4:
        a = a[np.newaxis]
    return a


# --------------------------------------------------------------------------- public API


def maxpool2d(x, kernel_size=2, *, stride=None, padding=0, return_indices=False):
    """2-D max-pooling with ``torch.nn.functional.max_pool2d`` semantics.

    ``y[n, c, i, j] = max over a < kh, b < kw of xp[n, c, i*sh + a, j*sw + b]``, where ``xp`` is
    ``x`` padded with ``-inf`` by ``(ph, pw)`` on each side (homework section 3.2: 2x2 window,
    stride 2). See the module docstring for ties (first maximum wins) and NaN (propagates; the
    index points at the window's last NaN), which follow PyTorch's CPU kernel exactly.

    Parameters
    ----------
    x : array, shape (N, C, H, W), (C, H, W) or (H, W); float32 or float64
        Non-contiguous arrays are read through their strides.
    kernel_size : int or (kh, kw), default 2
    stride : int or (sh, sw), default ``kernel_size``
    padding : int or (ph, pw), default 0
        Implicit ``-inf`` padding; each must be at most half the kernel size (PyTorch's rule).
    return_indices : bool
        Also return the flat index ``row * W + col`` of each maximum within its ``(H, W)`` input
        plane (int64, same shape as ``y``), for :func:`maxpool2d_backward`.

    Returns
    -------
    y : array of ``x``'s dtype and number of dimensions, spatial size
        ``floor((H + 2*ph - kh) / sh) + 1`` by ``floor((W + 2*pw - kw) / sw) + 1``.
    indices : int64 array like ``y`` (only with ``return_indices=True``).

    Raises
    ------
    TypeError
        ``x`` not float32/float64; a size that is not an integer; ``return_indices`` not a bool.
    ValueError
        ``x`` empty (a 4-D batch of zero images is fine: the result is empty, as in PyTorch) or
        not 2/3/4-D; non-positive kernel or stride; negative padding or padding
        above half the kernel; a kernel larger than the padded input.
    """
    x = _validate.float_array(x, "x", ndim=(2, 3, 4), empty_batch=True)
    if not isinstance(return_indices, (bool, np.bool_)):
        raise TypeError(f"return_indices must be a bool, got {type(return_indices).__name__} {return_indices!r}")
    (kh, kw), (sh, sw), (ph, pw) = _pool_params(kernel_size, stride, padding)
    H, W = x.shape[-2:]
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(
            f"kernel_size {(kh, kw)} is larger than the padded input {(H + 2 * ph, W + 2 * pw)} "
            f"(x spatial shape {(H, W)}, padding {(ph, pw)})"
        )
    OH = pool_output_size(H, kh, sh, ph)
    OW = pool_output_size(W, kw, sw, pw)
    x4 = _as_4d(x)
    out_shape = x.shape[:-2] + (OH, OW)
    y = _recycled.output(out_shape, x.dtype)
    y4 = _as_4d(y)
    if y.size == 0:  # an empty batch (N = 0): nothing to pool, as in PyTorch
        return (y, np.empty(out_shape, dtype=np.int64)) if return_indices else y
    # the homework's 2x2 stride-2 case has unrolled kernels (same rule, same results)
    two_by_two = (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0)
    if return_indices:
        idx = _recycled.output(out_shape, np.int64)
        if two_by_two:
            maxpool2x2_indices(x4, y4, _as_4d(idx))
        else:
            _maxpool2d_indices_kernel(x4, kh, kw, sh, sw, ph, pw, y4, _as_4d(idx))
        return y, idx
    if two_by_two:
        maxpool2x2(x4, y4)
    else:
        _maxpool2d_kernel(x4, kh, kw, sh, sw, ph, pw, y4)
    return y


def maxpool2d_backward(grad_y, indices, input_shape, *, out=None):
    """Gradient of :func:`maxpool2d` with respect to its input, routed through ``indices``.

    ``grad_x[n, c].flat[indices[n, c, i, j]] += grad_y[n, c, i, j]`` for every output position,
    in row-major order (PyTorch's autograd order, so float sums are bit-identical to it).
    Overlapping windows (stride < kernel) accumulate; positions that are no window's maximum
    get zero.

    Parameters
    ----------
    grad_y : array, shape (N, C, OH, OW), (C, OH, OW) or (OH, OW); float32 or float64
    indices : integer array of ``grad_y``'s shape, as returned by ``maxpool2d(...,
        return_indices=True)``: flat indices into each ``(H, W)`` input plane, each in
        ``[0, H*W)``. Other integer dtypes are converted to int64.
    input_shape : tuple of ints, the shape of the pooled input: same length as ``grad_y.shape``
        and the same leading (batch, channel) sizes.
    out : optional C-contiguous array of shape ``input_shape`` and ``grad_y``'s dtype, written
        in place (every element) and returned: a training loop reuses one buffer instead of
        having fresh memory zeroed and faulted in at every step.

    Returns
    -------
    grad_x : array of shape ``input_shape`` and ``grad_y``'s dtype (``out`` when given).

    Raises
    ------
    TypeError
        ``grad_y`` not float32/float64; ``indices`` not an integer array; ``input_shape`` not a
        sequence of integers.
    ValueError
        Empty or wrongly-dimensioned arrays; ``indices`` shape differing from ``grad_y``'s;
        ``input_shape`` inconsistent with ``grad_y``; an index outside ``[0, H*W)``, which the
        kernel finds before adding into that index's plane (the rest is checked before compiled
        code runs): nothing is written out of bounds, and ``out`` (when given) then holds zeros
        in the planes with a bad index, their gradients in the others.
    """
    grad_y = _validate.float_array(grad_y, "grad_y", ndim=(2, 3, 4), empty_batch=True)
    if not isinstance(indices, np.ndarray):
        try:
            indices = np.asarray(indices)
        except Exception as exc:
            raise TypeError(f"indices must be an array of integers, got {type(indices).__name__}: {exc}") from None
    if indices.dtype.kind not in "iu" or indices.dtype == np.bool_:
        raise TypeError(f"indices must have an integer dtype (int64 from maxpool2d), got {indices.dtype}")
    if indices.shape != grad_y.shape:
        raise ValueError(f"indices must have grad_y's shape {grad_y.shape}, got {indices.shape}")
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"input_shape must be a tuple of ints, got {type(input_shape).__name__} {input_shape!r}")
    if len(input_shape) != grad_y.ndim:
        raise ValueError(
            f"input_shape must have {grad_y.ndim} entries like grad_y's shape {grad_y.shape}, got {tuple(input_shape)!r}"
        )
    for s in input_shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"input_shape must be a tuple of ints, got {tuple(input_shape)!r}")
    input_shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in input_shape[1 if len(input_shape) == 4 else 0:]) or input_shape[0] < 0:
        raise ValueError(f"input_shape must have positive sizes (a batch of 0 aside), got {input_shape}")
    if input_shape[:-2] != grad_y.shape[:-2]:
        raise ValueError(
            f"input_shape {input_shape} must share grad_y's leading (batch, channel) sizes {grad_y.shape[:-2]}"
        )
    H, W = input_shape[-2:]
    if out is not None:
        out = _validate.out_array(out, "out", input_shape, grad_y.dtype)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
    if grad_y.size == 0:  # an empty batch
        return np.zeros(input_shape, dtype=grad_y.dtype) if out is None else out
    given = indices
    if indices.dtype != np.int64:
        indices = indices.astype(np.int64)  # a uint64 past int64 wraps negative: refused all the same
    gy4 = _as_4d(grad_y)
    N, C = gy4.shape[:2]
    grad_x = _recycled.output(input_shape, grad_y.dtype) if out is None else out
    bad = route_gradients(gy4, _as_4d(indices), grad_x.reshape(N, C, H, W))
    if bad.any():  # the kernel skipped the planes holding such an index
        lo = int(given.min())
        raise ValueError(f"indices must lie in [0, H*W) = [0, {H * W}) for input_shape {input_shape}, "
                         f"got {lo if lo < 0 else int(given.max())}")
    return grad_x
