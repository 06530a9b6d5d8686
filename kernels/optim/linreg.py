"""The linear-regression objective: loss, gradient and the minimum-norm solution (homework
section 1.1 and the penalty of section 2.3), and the passes over ``X`` the optimizers step with.

    L(w) = (1/n) ||X w - t||^2 + l2 ||w||^2,      grad L(w) = (2/n) X^T (X w - t) + 2 l2 w

with ``X`` of shape ``(n, d)``, ``t`` of shape ``(n,)`` and ``w`` of shape ``(d,)``.

dtype policy: ``X``, ``t`` and ``w`` must share a dtype, float32 or float64, and ``grad``'s
result has it too. Internally every dot product, gradient sum and loss is float64 (float32
inputs are read as float32 and widened in registers), so float32 data cost half the memory
traffic and the arithmetic adds no float32 rounding. Losses are always float64.

Parallelism and determinism: every pass (a gradient, a loss) is split into blocks of
``REDUCTION_BLOCK`` consecutive (batch) rows, each summed into its own buffer, and the blocks
are added in block order (:mod:`kernels._rows`), so results are bit-identical for any
``NUMBA_NUM_THREADS``. The blocks of a pass run in parallel when it covers at least
``_PARALLEL_MIN_BYTES`` (32 MiB) of ``X``, and one after the other otherwise (the same
arithmetic, the same bits): below that size the data stay in cache between passes and a
thread-pool wake-up per pass costs more than it saves on a shared machine.

Layout: the kernels stream rows of ``X``, so a non-C-contiguous ``X`` (a transpose, a strided
slice) is copied once to C order by the wrapper (``numpy.ascontiguousarray``) before any
compiled code runs; ``t`` and ``w`` likewise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _validate
from .._config import REDUCTION_BLOCK, jit
from .._rows import gradient_block, loss_block, no_rows, reduce_gradient_blocks, serial_gradient_blocks, serial_loss_blocks, sum_blocks, sumsq

#: A pass over fewer bytes of ``X`` than this runs its blocks on one thread. Such data stay in
#: the last-level cache (32 MiB on the reference machine) from one step to the next, one core
#: streams them at 40-60 GB/s, and a fork-join per pass (per step, in an optimizer) gains at
#: most 2x on an idle machine but loses several times that on a shared one, where a worker
#: thread that is not running costs the step a scheduler time slice (4 ms) to wake. Measured
#: on the 2-core reference machine, 2000 full-batch RMSProp steps on (4000, 500) in the
#: residual form: idle, 0.26 s parallel and 0.57 s serial; busy (load 5-8), 3.5-10 s parallel
#: and 1.1-1.5 s serial. Larger passes (DRAM-bound) run in parallel.
_PARALLEL_MIN_BYTES = 32 * 2**20
#: A pass made once per call (the loss of ``loss``, and of the iterate a run returns) pays its
#: fork-join once, not once per step: it runs in parallel from this size, where a serial pass
#: takes 0.15 ms or more even from the last-level cache. Measured on the reference machine, one
#: SGD epoch on (20000, 100) float64 alternating with NumPy and PyTorch: its final loss pass
#: 0.55 ms serial, 0.3 ms parallel.
_ONE_PASS_PARALLEL_MIN_BYTES = 8 * 2**20

#: Full-batch runs may step in the Gram form (see :func:`_gram`); tests switch it off to
#: compare the two forms.
_GRAM = True


# --------------------------------------------------------------------------- compiled kernels
# Serial or parallel: a pass over ``m`` rows runs its blocks in parallel (``prange`` below)
# only when ``m >= par_rows``, a size set by the wrapper from ``_PARALLEL_MIN_BYTES``; smaller
# passes run the same blocks serially (same bits).


@jit(parallel=True)
def _grad_kernel(X, t, w, l2, par_rows, part, spart, g, out):  # pragma: no cover - compiled
    """``out = (2/n) X^T (X w - t) + 2 l2 w`` in one fused pass; returns the loss (float64)."""
    n = X.shape[0]
    B = REDUCTION_BLOCK
    rows = no_rows()
    if n < par_rows:
        ss = serial_gradient_blocks(X, t, w, rows, 0, n, g, part, spart)
    else:
        nblk = (n + B - 1) // B
        for b in prange(nblk):
            spart[b] = gradient_block(X, t, w, rows, b * B, min(b * B + B, n), part[b])
        ss = reduce_gradient_blocks(part, spart, nblk, g)
    c = 2.0 / n
    for j in range(w.shape[0]):
        out[j] = c * g[j] + 2.0 * l2 * w[j]
    return ss / n + l2 * sumsq(w)


@jit()
def _loss_serial(X, t, w, l2, spart):  # pragma: no cover - compiled
    """``(1/n) ||X w - t||^2 + l2 ||w||^2`` in float64, fixed row blocks on this thread."""
    n = X.shape[0]
    return serial_loss_blocks(X, t, w, None, 0, n, spart) / n + l2 * sumsq(w)


@jit(parallel=True)
def _loss_parallel(X, t, w, l2, spart):  # pragma: no cover - compiled
    """:func:`_loss_serial` with its blocks in parallel (the same bits)."""
    n = X.shape[0]
    B = REDUCTION_BLOCK
    nblk = (n + B - 1) // B
    for b in prange(nblk):
        spart[b] = loss_block(X, t, w, None, b * B, min(b * B + B, n))
    return sum_blocks(spart, nblk) / n + l2 * sumsq(w)


# --------------------------------------------------------------------------- helpers


def _data(X, t):
    X = _validate.float_array(X, "X", ndim=2)
    t = _validate.float_array(t, "t", ndim=1, dtype=X.dtype, like="X")
    if t.shape[0] != X.shape[0]:
        raise ValueError(f"t must have shape (n,) = ({X.shape[0]},) to match X of shape {X.shape}, got {t.shape}")
    return np.ascontiguousarray(X), np.ascontiguousarray(t)


def _weights(w, name, X, *, allow_none=False, finite=False):
    d = X.shape[1]
    if w is None:
        if allow_none:
            return np.zeros(d, dtype=np.float64)
        raise TypeError(f"{name} must be an array of floats, got None")
    w = _validate.float_array(w, name, ndim=1, dtype=X.dtype, like="X")
    if w.shape[0] != d:
        raise ValueError(f"{name} must have shape (d,) = ({d},) to match X of shape {X.shape}, got {w.shape}")
    w64 = np.array(w, dtype=np.float64)  # a fresh float64 copy: the kernels' working precision
    if finite and not np.all(np.isfinite(w64)):
        raise ValueError(f"{name} must be finite, got {w!r}")
    return w64


def _l2(l2):
    return _validate.finite_float(l2, "l2", low=0.0)


def _par_rows(X) -> int:
    """The fewest rows of ``X`` a pass must cover to run in parallel (see _PARALLEL_MIN_BYTES)."""
    return max(1, -(-_PARALLEL_MIN_BYTES // (X.shape[1] * X.itemsize)))


def _full_loss(X, t, w, l2, spart) -> float:
    """The loss of one call (``loss``, a run's last iterate): one pass, not a pass per step."""
    if X.nbytes >= _ONE_PASS_PARALLEL_MIN_BYTES:
        return float(_loss_parallel(X, t, w, l2, spart))
    return float(_loss_serial(X, t, w, l2, spart))


_NO_GRAM = (np.zeros((1, 1)), np.zeros(1), 0.0)


def _gram(X, t, steps):
    """``(use, G, X^T t, t.t)`` for a full-batch run: the Gram form is used when it is cheaper.

    A step in the Gram form costs O(d^2) instead of a pass over ``X`` (O(n d)); forming
    ``G = X^T X`` costs one BLAS product, at most about as much as ``d / 4`` passes. So it is
    used when ``4 d <= n`` and ``4 steps >= d``, with ``G`` in float64 through NumPy (``numba``
    code cannot call BLAS without SciPy). Measured on the 2-core reference machine (RMSProp, each
    form timed alone): at ``steps = d / 4`` the Gram form took 17.8 ms against 35.4 on (4000,
    500), 9.5 against 11.4 on (20000, 100), 18.1 against 20.2 on (100000, 50) and 1.1 against
    1.7 on (1000, 200); at ``d / 8`` the two were about even. (It used to ask for ``steps >=
    d``, which left 200 steps on (4000, 500) in the residual form at three times the time.) Both forms compute ``X^T (X w - t)`` to the same worst-case
    error, ``eps |X|^T (|X| |w| + |t|)``; the step-by-step tests hold them to 1e-12 of each
    other and of the reference. Data whose ``G``, ``X^T t`` or ``t.t`` overflow (near 1e154)
    keep the residual form, which does not square them.
    """
    n, d = X.shape
    if not _GRAM or 4 * d > n or 4 * steps < d:
        return (False, *_NO_GRAM)
    t64 = t.astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        if X.dtype == np.float64:
            G = np.ascontiguousarray(X.T @ X)
            Xt_t = X.T @ t64
        else:
            # widen float32 rows a slab at a time: no float64 copy of the whole of X
            G = np.zeros((d, d))
            Xt_t = np.zeros(d)
            rows = max(1, (1 << 22) // d)
            for lo in range(0, n, rows):
                slab = X[lo:lo + rows].astype(np.float64)
                G += slab.T @ slab
                Xt_t += slab.T @ t64[lo:lo + rows]
        t_t = float(t64 @ t64)
    if not (math.isfinite(t_t) and np.all(np.isfinite(G)) and np.all(np.isfinite(Xt_t))):
        return (False, *_NO_GRAM)
    return True, G, Xt_t, t_t


def _buffers(n, d):
    """Per-block buffers of a pass over ``n`` rows: ``part`` (nblk, d), ``spart`` (nblk,), and ``g`` (d,)."""
    nblk = max(1, -(-n // REDUCTION_BLOCK))
    return np.empty((nblk, d)), np.empty(nblk), np.empty(d)


def _pow2_exponent(a) -> int:
    """``e`` with ``2**e`` near ``max |a|`` (0 for an all-zero array)."""
    peak = float(np.max(np.abs(a)))
    return 0 if peak == 0.0 else math.frexp(peak)[1] - 1


# --------------------------------------------------------------------------- public API


def loss(X, t, w, *, l2=0.0) -> float:
    """``L(w) = (1/n) ||X w - t||^2 + l2 ||w||^2`` (homework eq. (1) and section 2.3), a Python
    float accumulated in float64 whatever the dtype. Shapes ``X (n, d)``, ``t (n,)``, ``w (d,)``,
    one dtype; ``w`` finite. One pass over ``X`` in fixed row blocks summed in block order
    (deterministic), in parallel for ``X`` of 8 MiB or more."""
    X, t = _data(X, t)
    w64 = _weights(w, "w", X, finite=True)
    l2 = _l2(l2)
    _, spart, _ = _buffers(*X.shape)
    return _full_loss(X, t, w64, l2, spart)


def grad(X, t, w, *, l2=0.0, out=None) -> np.ndarray:
    """``(2/n) X^T (X w - t) + 2 l2 w``, shape ``(d,)``, the dtype of ``X``.

    One fused pass over ``X`` (:mod:`kernels._rows`): per block of ``REDUCTION_BLOCK`` rows,
    ``r_i = x_i . w - t_i`` and ``g_b += r_i x_i`` while the row is in cache (eight rows at a
    time, so that ``w`` and ``g_b`` are read once per eight rows); the blocks are summed in
    block order (bit-identical for any thread count), and run in parallel for ``X`` of 32 MiB
    or more. Sums are float64 and rounded once to the dtype at the end. ``w`` must be finite.
    ``out`` (shape ``(d,)``, the dtype of ``X``, writeable) receives the result if given, and
    is returned.
    """
    X, t = _data(X, t)
    w64 = _weights(w, "w", X, finite=True)
    l2 = _l2(l2)
    n, d = X.shape
    if out is None:
        out = np.empty(d, dtype=X.dtype)
    else:
        _validate.out_array(out, "out", (d,), X.dtype)
    part, spart, g = _buffers(n, d)
    _grad_kernel(X, t, w64, l2, _par_rows(X), part, spart, g, out)
    return out


def min_norm_solution(X, t) -> np.ndarray:
    """The minimum-norm least-squares solution ``w* = pinv(X) t`` (question 1.1.1), shape
    ``(d,)``, the dtype of ``X``.

    A reference point, not a kernel: computed by LAPACK through ``numpy.linalg.lstsq`` (SVD,
    default ``rcond``) in float64 and rounded to the dtype. When ``d > n`` and ``X`` has full
    row rank, it is the unique solution of ``X w = t`` lying in the row space of ``X``.
    """
    X, t = _data(X, t)
    X64, t64 = X.astype(np.float64), t.astype(np.float64)
    for arr, name in ((X64, "X"), (t64, "t")):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite for min_norm_solution's SVD, got a NaN or an infinity")
    # pinv(X / a) (t / b) = (a / b) pinv(X) t, and dividing by powers of two is exact: scaled,
    # data near the overflow threshold (1e308) cannot overflow inside the SVD (LinAlgError).
    ex, et = _pow2_exponent(X64), _pow2_exponent(t64)
    w, *_ = np.linalg.lstsq(np.ldexp(X64, -ex), np.ldexp(t64, -et), rcond=None)
    return np.ldexp(w, et - ex).astype(X.dtype)  # one exact rescaling: overflows only if the answer does
