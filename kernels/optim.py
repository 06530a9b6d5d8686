"""Linear regression and its optimizers (homework sections 1 and 2.3), compiled end to end.

The model is linear regression with the homework's objective, equation (1) plus the L2 penalty
of section 2.3::

    L(w) = (1/n) ||X w - t||^2 + l2 ||w||^2,      grad L(w) = (2/n) X^T (X w - t) + 2 l2 w

with ``X`` of shape ``(n, d)``, ``t`` of shape ``(n,)`` and ``w`` of shape ``(d,)``. On a
mini-batch ``B`` of ``b`` rows the mean runs over the batch: ``(1/b) sum_{i in B} r_i^2`` and
``(2/b) sum_{i in B} r_i x_i``, with ``r_i = x_i . w - t_i`` (equation (2)).

Optimizers (``g`` is the gradient above on the step's batch, at the current ``w``; every update
ends with the decoupled weight decay of equation (5), ``w <- (1 - weight_decay) w - lr u``):

=========  ================================================================  ===================
optimizer  ``u``                                                             same as (PyTorch)
=========  ================================================================  ===================
gd, sgd    ``g``                                                             ``SGD(lr)``
rmsprop    ``v <- beta v + (1 - beta) g^2;  u = g / (sqrt(v) + eps)``        ``RMSprop(lr,
           (equations (3)-(4): ``v`` includes the current gradient,          alpha=beta, eps)``
           ``v_{-1} = 0``, ``eps`` outside the square root)
adagrad    ``s <- s + g^2;  u = g / (sqrt(s) + eps)``                        ``Adagrad(lr, eps)``
adam       ``m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2``;            ``Adam(lr, betas,
           ``u = (m / (1 - b1^k)) / (sqrt(v) / sqrt(1 - b2^k) + eps)``,      eps)``
           ``k = step + 1`` (bias-corrected, ``eps`` outside the square root)
=========  ================================================================  ===================

``l2`` is the penalty inside the loss: it enters ``g`` as ``2 l2 w``, so it is what PyTorch
calls ``weight_decay`` (its coupled form, ``weight_decay = 2 l2``). ``weight_decay=lam`` here is
the homework's decoupled form: ``w`` is multiplied by ``(1 - lam)`` itself, *not* by
``(1 - lr lam)`` as in ``torch.optim.AdamW(weight_decay=lam)``; ``adam(weight_decay=lam)``
equals ``AdamW(lr, weight_decay=lam / lr)``. Under GD, ``l2 = c`` and ``weight_decay = 2 lr c``
are the same update (question 2.3.2); under the adaptive methods they are not.

Mini-batches (``sgd``, and ``rmsprop``/``adagrad``/``adam`` with ``batch_size``): each epoch
draws a fresh permutation of the rows, ``numpy.random.default_rng(seed).permutation(n)`` once
per epoch in order, and walks it in consecutive batches of ``batch_size`` rows; the last batch
of an epoch is short when ``batch_size`` does not divide ``n`` (it is used, not dropped), so an
epoch is ``ceil(n / batch_size)`` steps and ``steps`` may end mid-epoch. The permutations are
drawn in Python (a bounded chunk of epochs at a time) and handed to the kernel, so the NumPy
reference :mod:`kernels.naive.optim` with the same seed uses the very same indices.

Results, recording and divergence (the :class:`OptimResult` fields):

* ``w`` is the returned iterate ``w_k`` with ``k = steps`` (the number of updates applied).
* ``record_every = r > 0`` records ``w`` and the *full-data* loss ``L(w)`` at steps
  ``0, r, 2r, ...`` and at the returned step: ``trajectory`` ``(k, d)``, ``losses`` ``(k,)``,
  ``recorded_steps`` ``(k,)``. Full batch, the loss of a recorded step comes free from the
  fused gradient pass; mini-batch, each recorded step costs one extra pass over ``X``.
* ``record_every = 0`` (the default) records nothing while running, so memory does not grow
  with ``steps``: ``trajectory`` is ``(0, d)``, and ``losses`` and ``recorded_steps`` hold one
  entry, the full-data loss of the returned ``w`` and its step. (Every run ends with that one
  full-data pass, which also checks the returned ``w``.)
* ``w0`` (default zeros), like ``loss``'s and ``grad``'s ``w``, must be finite: a ``ValueError``
  otherwise (a weight vector is a parameter, checked in O(d)). NaN or inf in the data ``X``,
  ``t`` is not checked (that would cost a pass): it propagates as IEEE arithmetic says, and an
  optimizer reports it as divergence.
* Divergence: iterate ``w_k`` is bad when one of its weights, or the loss computed at it (the
  batch loss of step ``k``; the full-data loss at a recorded or the last step), is not
  finite. The loop stops at the first bad iterate, ``diverged=True``, ``diverged_at=k``, and
  the last good iterate ``w_{k-1}`` is returned (``steps = k - 1``; if ``w_0`` itself is bad,
  ``w_0`` is returned with ``steps = 0``). Nothing raises inside compiled code. Without
  divergence ``diverged_at = -1``.

dtype policy: ``X``, ``t`` and ``w0`` must share a dtype, float32 or float64, and ``w``,
``trajectory`` and ``grad``'s result have it too. Internally every dot product, gradient sum,
loss, weight and optimizer state is float64 (float32 inputs are read as float32 and widened
in registers), so float32 data cost half the memory traffic and the arithmetic adds no float32
rounding: a float32 run equals the float64 run on the same (exactly widened) data, rounded once
at the end. Losses are always float64.

Numerical note: with a constant ``lr``, an adaptive method that has reached its noise floor
(``|w - w*| ~ lr``) takes steps of about ``lr * sign(g)``, a chaotic map that multiplies a
last-bit difference by about 10 per step; two correct implementations (this one, the NumPy
reference, PyTorch) then agree only up to that point. The tests compare trajectories in the
transient phase, before it.

Parallelism and determinism: every pass (a gradient, a loss) is split into blocks of
``REDUCTION_BLOCK`` consecutive (batch) rows, each summed into its own buffer, and the blocks
are added in block order, so results are bit-identical for any ``NUMBA_NUM_THREADS``. The
blocks of a pass run in parallel when it covers at least ``_PARALLEL_MIN_BYTES`` (32 MiB) of
``X``, and one after the other otherwise (the same arithmetic, the same bits): below that size
the data stay in cache between passes and a thread-pool wake-up per pass costs more than it
saves on a shared machine. The steps themselves always run serially.

Gram form: a full-batch run with ``4 d <= n`` and ``steps >= d`` forms ``G = X^T X`` and
``X^T t`` once (NumPy's BLAS, float64) and then steps in O(d^2) without reading ``X``; its
recorded and final losses still come from passes over ``X`` (see :func:`_gram`).

Layout: the kernels stream rows of ``X``, so a non-C-contiguous ``X`` (a transpose, a strided
slice) is copied once to C order by the wrapper (``numpy.ascontiguousarray``) before any
compiled code runs; ``t`` and ``w0`` likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from . import _validate
from ._config import REDUCTION_BLOCK, jit

__all__ = ["OptimResult", "loss", "grad", "min_norm_solution", "gd", "sgd", "rmsprop", "adagrad", "adam"]

_GD, _RMSPROP, _ADAGRAD, _ADAM = 0, 1, 2, 3

#: At most this many permutation entries (int64) are held at once: whole epochs, at least one.
_PERM_CHUNK = 1 << 20

#: A pass over fewer bytes of ``X`` than this runs its blocks on one thread. Such data stay in
#: the last-level cache (32 MiB on the reference machine) from one step to the next, one core
#: streams them at 40-60 GB/s, and a fork-join per pass (per step, in an optimizer) gains at
#: most 2x on an idle machine but loses several times that on a shared one, where a worker
#: thread that is not running costs the step a scheduler time slice (4 ms) to wake. Measured
#: on the 2-core reference machine, 2000 full-batch RMSProp steps on (4000, 500) in the
#: residual form: idle, 0.26 s parallel and 0.57 s serial; busy (load 5-8), 3.5-10 s parallel
#: and 1.1-1.5 s serial. Larger passes (DRAM-bound) run in parallel.
_PARALLEL_MIN_BYTES = 32 * 2**20

#: Full-batch runs may step in the Gram form (see :func:`_gram`); tests switch it off to
#: compare the two forms.
_GRAM = True

# info[] slots shared between the wrapper and the optimizer kernel
_I_STEPS, _I_DIVERGED_AT, _I_RECORDED = 0, 1, 2


@dataclass(frozen=True, eq=False)
class OptimResult:
    """What an optimizer returns (see the module docstring for the exact semantics).

    w : (d,) final (last good) weights, the dtype of ``X``.
    losses : (k,) float64 full-data losses at ``recorded_steps`` (k = 1 when ``record_every=0``).
    trajectory : (k, d) recorded weights, the dtype of ``X``; (0, d) when ``record_every=0``.
    recorded_steps : (k,) int64 step index of each entry of ``losses`` (and of ``trajectory``).
    steps : number of updates applied to produce ``w``.
    diverged : whether the run stopped at a non-finite weight or loss.
    diverged_at : index of the first non-finite iterate, -1 when the run did not diverge.
    """

    w: np.ndarray
    losses: np.ndarray
    trajectory: np.ndarray
    recorded_steps: np.ndarray
    steps: int
    diverged: bool
    diverged_at: int

    @property
    def loss(self) -> float:
        """Full-data loss of the returned ``w``."""
        return float(self.losses[-1])


# --------------------------------------------------------------------------- compiled kernels


@jit()
def _rows_pass(X, t, w, rows, start, end, acc, with_grad):  # pragma: no cover - compiled
    """Return ``sum r_i^2`` over batch rows ``start:end`` and, if ``with_grad``, add
    ``sum r_i x_i`` into ``acc`` (float64, (d,)), ``r_i = x_i . w - t_i``.

    Batch row ``ii`` is ``X[rows[ii]]``, or ``X[ii]`` when ``rows`` is empty. One pass over the
    rows: each row is read from memory once, for its dot product, and is still in L1/L2 cache
    when it is added into ``acc``. Rows are taken eight at a time so that ``w`` and ``acc`` are
    streamed once per eight rows instead of once per row (eight ran about 10% faster than four
    on (4000, 2000), side by side); both inner loops run over contiguous ``d`` and vectorise.
    """
    d = X.shape[1]
    indexed = rows.shape[0] > 0
    ss = 0.0
    ii = start
    while ii + 8 <= end:
        if indexed:
            i0, i1, i2, i3 = rows[ii], rows[ii + 1], rows[ii + 2], rows[ii + 3]
            i4, i5, i6, i7 = rows[ii + 4], rows[ii + 5], rows[ii + 6], rows[ii + 7]
        else:
            i0, i1, i2, i3, i4, i5, i6, i7 = ii, ii + 1, ii + 2, ii + 3, ii + 4, ii + 5, ii + 6, ii + 7
        x0, x1, x2, x3 = X[i0], X[i1], X[i2], X[i3]
        x4, x5, x6, x7 = X[i4], X[i5], X[i6], X[i7]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for j in range(d):
            wj = w[j]
            a0 += x0[j] * wj
            a1 += x1[j] * wj
            a2 += x2[j] * wj
            a3 += x3[j] * wj
            a4 += x4[j] * wj
            a5 += x5[j] * wj
            a6 += x6[j] * wj
            a7 += x7[j] * wj
        r0, r1, r2, r3 = a0 - t[i0], a1 - t[i1], a2 - t[i2], a3 - t[i3]
        r4, r5, r6, r7 = a4 - t[i4], a5 - t[i5], a6 - t[i6], a7 - t[i7]
        ss += r0 * r0
        ss += r1 * r1
        ss += r2 * r2
        ss += r3 * r3
        ss += r4 * r4
        ss += r5 * r5
        ss += r6 * r6
        ss += r7 * r7
        if with_grad:
            for j in range(d):
                acc[j] += (r0 * x0[j] + r1 * x1[j] + r2 * x2[j] + r3 * x3[j]
                           + r4 * x4[j] + r5 * x5[j] + r6 * x6[j] + r7 * x7[j])
        ii += 8
    while ii < end:
        i = rows[ii] if indexed else ii
        xi = X[i]
        a = 0.0
        for j in range(d):
            a += xi[j] * w[j]
        r = a - t[i]
        ss += r * r
        if with_grad:
            for j in range(d):
                acc[j] += r * xi[j]
        ii += 1
    return ss


@jit()
def _block_pass(X, t, w, rows, lo, hi, acc, with_grad):  # pragma: no cover - compiled
    """One block of a pass: zero ``acc`` (if ``with_grad``), then :func:`_rows_pass`."""
    if with_grad:
        for j in range(acc.shape[0]):
            acc[j] = 0.0
    return _rows_pass(X, t, w, rows, lo, hi, acc, with_grad)


@jit()
def _reduce_blocks(part, spart, nblk, g, with_grad):  # pragma: no cover - compiled
    """Sum the per-block results in block order: ``g = sum_b part[b]``; return ``sum_b spart[b]``.

    The order is fixed by the blocks, not by the threads, so the result is bit-identical for
    any ``NUMBA_NUM_THREADS``.
    """
    d = g.shape[0]
    if with_grad:
        for j in range(d):
            g[j] = 0.0
    ss = 0.0
    for b in range(nblk):
        ss += spart[b]
        if with_grad:
            pb = part[b]
            for j in range(d):
                g[j] += pb[j]
    return ss


@jit()
def _serial_blocks(X, t, w, rows, start, end, g, part, spart, with_grad):  # pragma: no cover
    """The blocks of a pass over batch rows ``start:end``, one after the other on this thread,
    into ``part``/``spart`` and reduced by :func:`_reduce_blocks`: the very arithmetic of the
    parallel path, so both give the same bits."""
    B = REDUCTION_BLOCK
    nblk = (end - start + B - 1) // B
    for b in range(nblk):
        lo = start + b * B
        spart[b] = _block_pass(X, t, w, rows, lo, min(lo + B, end), part[b], with_grad)
    return _reduce_blocks(part, spart, nblk, g, with_grad)


# Serial or parallel: a pass over ``m`` rows runs its blocks in parallel (``prange`` in the
# compiled entry points below) only when ``m >= par_rows``, a size set by the wrapper from
# ``_PARALLEL_MIN_BYTES``; smaller passes run the same blocks serially (same bits). Parallel
# functions are never called from other compiled functions: a cached caller of a parallel
# callee segfaults when loaded from the cache (numba issue #8578).


@jit()
def _sumsq(w):  # pragma: no cover - compiled
    s = 0.0
    for j in range(w.shape[0]):
        s += w[j] * w[j]
    return s


@jit(parallel=True)
def _grad_kernel(X, t, w, l2, par_rows, part, spart, g, out):  # pragma: no cover - compiled
    """``out = (2/n) X^T (X w - t) + 2 l2 w`` in one fused pass; returns the loss (float64)."""
    n = X.shape[0]
    B = REDUCTION_BLOCK
    empty = np.empty(0, dtype=np.int64)
    if n < par_rows:
        ss = _serial_blocks(X, t, w, empty, 0, n, g, part, spart, True)
    else:
        nblk = (n + B - 1) // B
        for b in prange(nblk):
            spart[b] = _block_pass(X, t, w, empty, b * B, min(b * B + B, n), part[b], True)
        ss = _reduce_blocks(part, spart, nblk, g, True)
    c = 2.0 / n
    for j in range(w.shape[0]):
        out[j] = c * g[j] + 2.0 * l2 * w[j]
    return ss / n + l2 * _sumsq(w)


@jit()
def _loss_serial(X, t, w, l2, part, spart, g):  # pragma: no cover - compiled
    """``(1/n) ||X w - t||^2 + l2 ||w||^2`` in float64, fixed row blocks on this thread."""
    n = X.shape[0]
    empty = np.empty(0, dtype=np.int64)
    return _serial_blocks(X, t, w, empty, 0, n, g, part, spart, False) / n + l2 * _sumsq(w)


@jit(parallel=True)
def _loss_parallel(X, t, w, l2, part, spart, g):  # pragma: no cover - compiled
    """:func:`_loss_serial` with its blocks in parallel (the same bits)."""
    n = X.shape[0]
    B = REDUCTION_BLOCK
    nblk = (n + B - 1) // B
    empty = np.empty(0, dtype=np.int64)
    for b in prange(nblk):
        spart[b] = _block_pass(X, t, w, empty, b * B, min(b * B + B, n), g, False)
    return _reduce_blocks(part, spart, nblk, g, False) / n + l2 * _sumsq(w)


@jit(parallel=True)
def _optimize_kernel(
    X, t, perm, full, batch, nbatches, epoch0, s0, s1,
    kind, lr, b1, b2, eps, l2, wd, record_every, par_rows, gram, G, Xt_t, t_t,
    w, w_prev, m, v, g, part, spart, losses, traj, rec_steps, info,
):  # pragma: no cover - compiled
    """Run steps ``s0 <= s < s1`` of one optimizer, updating ``w``, ``m``, ``v`` in place.

    ``perm[e]`` is the row permutation of epoch ``epoch0 + e`` (unused when ``full``). The
    time loop is serial; a step's gradient pass is parallel over row blocks when the batch has
    at least ``par_rows`` rows. With ``gram`` (full batch only) a step reads no ``X``: its
    gradient sum is ``G w - X^T t`` with ``G = X^T X`` and its squared residual
    ``w.G w - 2 (X^T t).w + t.t``, both O(d^2); recorded losses still come from a pass over
    ``X`` (the Gram form of the loss cancels). ``info`` carries the returned step,
    ``diverged_at`` and the number of records across calls; ``w_prev`` holds the iterate
    before the last update, so that the last good iterate can be returned.
    """
    n = X.shape[0]
    d = X.shape[1]
    B = REDUCTION_BLOCK
    empty = np.empty(0, dtype=np.int64)
    for s in range(s0, s1):
        if full:
            rows = empty
            start = 0
            end = n
        else:
            e = s // nbatches
            start = (s - e * nbatches) * batch
            end = min(start + batch, n)
            rows = perm[e - epoch0]
        mb = end - start
        wsq = _sumsq(w)
        nblk = (mb + B - 1) // B
        if gram:
            wgw = 0.0
            bw = 0.0
            for i in range(d):
                gi = G[i]
                acc = 0.0
                for j in range(d):
                    acc += gi[j] * w[j]
                g[i] = acc - Xt_t[i]
                wgw += w[i] * acc
                bw += Xt_t[i] * w[i]
            # ||X w - t||^2 by the Gram form: good enough to tell finite from not (the
            # divergence check); never recorded, as it cancels when the residual is small
            ss = wgw - 2.0 * bw + t_t
        elif mb < par_rows:
            ss = _serial_blocks(X, t, w, rows, start, end, g, part, spart, True)
        else:
            for b in prange(nblk):
                lo = start + b * B
                spart[b] = _block_pass(X, t, w, rows, lo, min(lo + B, end), part[b], True)
            ss = _reduce_blocks(part, spart, nblk, g, True)
        lb = ss / mb + l2 * wsq
        if record_every > 0 and s % record_every == 0 and np.isfinite(lb):
            if full and not gram:
                lf = lb
            else:
                # the full-data loss of a recorded step: one more pass (g is left alone)
                if n < par_rows:
                    lf = _loss_serial(X, t, w, l2, part, spart, g)
                else:
                    nfb = (n + B - 1) // B
                    for b in prange(nfb):
                        spart[b] = _block_pass(X, t, w, empty, b * B, min(b * B + B, n), g, False)
                    lf = _reduce_blocks(part, spart, nfb, g, False) / n + l2 * wsq
            if np.isfinite(lf):
                k = info[2]
                losses[k] = lf
                for j in range(d):
                    traj[k, j] = w[j]
                rec_steps[k] = s
                info[2] = k + 1
            else:
                lb = lf
        if not np.isfinite(lb):
            # w_s is bad: step back to w_{s-1}, which step s - 1 left in w_prev
            info[1] = s
            if s > 0:
                for j in range(d):
                    w[j] = w_prev[j]
                info[0] = s - 1
            return
        c = 2.0 / mb
        tl2 = 2.0 * l2
        keep = 1.0 - wd
        bad = 0.0
        if kind == 0:
            for j in range(d):
                wj = w[j]
                gj = c * g[j] + tl2 * wj
                nw = keep * wj - lr * gj
                w_prev[j] = wj
                w[j] = nw
                bad += nw * 0.0
        elif kind == 1:
            for j in range(d):
                wj = w[j]
                gj = c * g[j] + tl2 * wj
                vj = b2 * v[j] + (1.0 - b2) * (gj * gj)
                v[j] = vj
                nw = keep * wj - lr * (gj / (np.sqrt(vj) + eps))
                w_prev[j] = wj
                w[j] = nw
                bad += nw * 0.0
        elif kind == 2:
            for j in range(d):
                wj = w[j]
                gj = c * g[j] + tl2 * wj
                vj = v[j] + gj * gj
                v[j] = vj
                nw = keep * wj - lr * (gj / (np.sqrt(vj) + eps))
                w_prev[j] = wj
                w[j] = nw
                bad += nw * 0.0
        else:
            k1 = s + 1
            step_size = lr / (1.0 - b1**k1)
            bc2_sqrt = np.sqrt(1.0 - b2**k1)
            for j in range(d):
                wj = w[j]
                gj = c * g[j] + tl2 * wj
                mj = b1 * m[j] + (1.0 - b1) * gj
                vj = b2 * v[j] + (1.0 - b2) * (gj * gj)
                m[j] = mj
                v[j] = vj
                nw = keep * wj - step_size * (mj / (np.sqrt(vj) / bc2_sqrt + eps))
                w_prev[j] = wj
                w[j] = nw
                bad += nw * 0.0
        # x * 0 is 0 for finite x and NaN for inf/NaN (our fast-math keeps NaN/inf semantics)
        if bad != 0.0:
            for j in range(d):
                w[j] = w_prev[j]
            info[1] = s + 1
            info[0] = s
            return
        info[0] = s + 1


# --------------------------------------------------------------------------- validation helpers


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


def _full_loss(X, t, w, l2, part, spart, g) -> float:
    if X.shape[0] >= _par_rows(X):
        return float(_loss_parallel(X, t, w, l2, part, spart, g))
    return float(_loss_serial(X, t, w, l2, part, spart, g))


_NO_GRAM = (np.zeros((1, 1)), np.zeros(1), 0.0)


def _gram(X, t, steps):
    """``(use, G, X^T t, t.t)`` for a full-batch run: the Gram form is used when it is cheaper.

    A step in the Gram form costs O(d^2) instead of a pass over ``X`` (O(n d)); forming
    ``G = X^T X`` costs one BLAS product, about as much as ``d / 4`` passes. So it is used when
    ``4 d <= n`` and ``steps >= d``, with ``G`` in float64 through NumPy (``numba`` code cannot
    call BLAS without SciPy). Both forms compute ``X^T (X w - t)`` to the same worst-case
    error, ``eps |X|^T (|X| |w| + |t|)``; the step-by-step tests hold them to 1e-12 of each
    other and of the reference. Data whose ``G``, ``X^T t`` or ``t.t`` overflow (near 1e154)
    keep the residual form, which does not square them.
    """
    n, d = X.shape
    if not _GRAM or 4 * d > n or steps < d:
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
    nblk = max(1, -(-n // REDUCTION_BLOCK))
    return np.empty((nblk, d)), np.empty(nblk), np.empty(d)


# --------------------------------------------------------------------------- public API


def loss(X, t, w, *, l2=0.0) -> float:
    """``L(w) = (1/n) ||X w - t||^2 + l2 ||w||^2`` (homework eq. (1) and section 2.3), a Python
    float accumulated in float64 whatever the dtype. Shapes ``X (n, d)``, ``t (n,)``, ``w (d,)``,
    one dtype; ``w`` finite. One pass over ``X`` in fixed row blocks summed in block order
    (deterministic), in parallel for ``X`` of 32 MiB or more."""
    X, t = _data(X, t)
    w64 = _weights(w, "w", X, finite=True)
    l2 = _l2(l2)
    part, spart, g = _buffers(*X.shape)
    return _full_loss(X, t, w64, l2, part, spart, g)


def grad(X, t, w, *, l2=0.0, out=None) -> np.ndarray:
    """``(2/n) X^T (X w - t) + 2 l2 w``, shape ``(d,)``, the dtype of ``X``.

    One fused pass over ``X``: per block of ``REDUCTION_BLOCK`` rows, ``r_i = x_i . w - t_i``
    and ``g_b += r_i x_i`` while the row is in cache (four rows at a time, so that ``w`` and
    ``g_b`` are read once per four rows); the blocks are summed in block order (bit-identical
    for any thread count), and run in parallel for ``X`` of 32 MiB or more. Sums are float64
    and rounded once to the dtype at the end. ``w`` must be finite. ``out`` (shape ``(d,)``,
    the dtype of ``X``, writeable) receives the result if given, and is returned.
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


def _pow2_exponent(a) -> int:
    """``e`` with ``2**e`` near ``max |a|`` (0 for an all-zero array)."""
    peak = float(np.max(np.abs(a)))
    return 0 if peak == 0.0 else math.frexp(peak)[1] - 1


def _run_checks(X, t, *, lr, steps, epochs, batch_size, seed, w0, l2, weight_decay, record_every):
    """Validate the arguments every optimizer shares; return ``X, t`` (C-contiguous), the
    number of steps, and ``w0`` as a fresh float64 array. Shared with the NumPy reference."""
    X, t = _data(X, t)
    n = X.shape[0]
    _validate.finite_float(lr, "lr", low=0.0, low_open=True)
    _l2(l2)
    _validate.finite_float(weight_decay, "weight_decay", low=0.0, high=1.0, high_open=True)
    _validate.positive_int(record_every, "record_every", minimum=0)
    _validate.positive_int(seed, "seed", minimum=0)  # used only by mini-batches, checked always
    nbatches = 1
    if batch_size is not None:
        batch_size = _validate.positive_int(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size must be <= n = {n} (the rows of X), got {batch_size}")
        nbatches = -(-n // batch_size)
    if epochs is not None:
        if steps is not None:
            raise ValueError(f"give exactly one of steps and epochs, got steps={steps!r} and epochs={epochs!r}")
        steps = _validate.positive_int(epochs, "epochs", minimum=0) * nbatches
        if steps > _validate.MAX_INT:
            raise ValueError(f"epochs={epochs} times {nbatches} batches per epoch is {steps} steps, "
                             f"more than compiled code counts (int64, {_validate.MAX_INT})")
    elif steps is None:
        raise ValueError("give exactly one of steps and epochs, got neither")
    else:
        steps = _validate.positive_int(steps, "steps", minimum=0)
    return X, t, steps, _weights(w0, "w0", X, allow_none=True, finite=True)


def _run(kind, X, t, *, lr, steps, epochs=None, batch_size, seed, w0, l2, weight_decay, record_every,
         b1=0.0, b2=0.0, eps=0.0):
    X, t, steps, w = _run_checks(X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed,
                                 w0=w0, l2=l2, weight_decay=weight_decay, record_every=record_every)
    n, d = X.shape
    lr, l2, wd, record_every = float(lr), float(l2), float(weight_decay), int(record_every)
    full = batch_size is None
    if not full:
        batch_size = int(batch_size)
    nbatches = 1 if full else -(-n // batch_size)

    w_prev = w.copy()
    m = np.zeros(d)
    v = np.zeros(d)
    part, spart, g = _buffers(n, d)  # sized for a full-data pass (recorded and final losses)
    nrec = 1 + (-(-steps // record_every) if record_every else 0)
    losses = np.empty(nrec if record_every else 1)
    traj = np.empty((nrec if record_every else 0, d), dtype=X.dtype)
    rec_steps = np.empty(nrec if record_every else 1, dtype=np.int64)
    info = np.zeros(3, dtype=np.int64)
    info[_I_DIVERGED_AT] = -1
    gram, G, Xt_t, t_t = _gram(X, t, steps) if full else (False, *_NO_GRAM)
    args = (kind, lr, float(b1), float(b2), float(eps), l2, wd, record_every, _par_rows(X), gram, G, Xt_t, t_t,
            w, w_prev, m, v, g, part, spart, losses, traj, rec_steps, info)

    if full:
        perm = np.empty((1, 0), dtype=np.int64)
        _optimize_kernel(X, t, perm, True, n, 1, 0, 0, steps, *args)
    else:
        rng = np.random.default_rng(seed)
        epochs_total = -(-steps // nbatches)
        per_chunk = max(1, _PERM_CHUNK // n)
        for e0 in range(0, epochs_total, per_chunk):
            ne = min(per_chunk, epochs_total - e0)
            perm = np.empty((ne, n), dtype=np.int64)
            for k in range(ne):
                perm[k] = rng.permutation(n)
            s1 = min(steps, (e0 + ne) * nbatches)
            _optimize_kernel(X, t, perm, False, batch_size, nbatches, e0, e0 * nbatches, s1, *args)
            if info[_I_DIVERGED_AT] >= 0:
                break

    # the full-data loss of the returned iterate; a non-finite one makes it the bad iterate
    done = int(info[_I_STEPS])
    def final_loss():
        return _full_loss(X, t, w, l2, part, spart, g)

    lf = final_loss()
    if info[_I_DIVERGED_AT] < 0 and not math.isfinite(lf):
        info[_I_DIVERGED_AT] = done
        if done > 0:
            w[:] = w_prev
            done -= 1
            lf = final_loss()
    diverged_at = int(info[_I_DIVERGED_AT])
    k = int(info[_I_RECORDED])
    if record_every:
        if k == 0 or rec_steps[k - 1] != done:
            losses[k], traj[k], rec_steps[k] = lf, w, done
            k += 1
        losses, traj, rec_steps = losses[:k].copy(), traj[:k].copy(), rec_steps[:k].copy()
    else:
        losses[0], rec_steps[0] = lf, done
    return OptimResult(
        w=w.astype(X.dtype),
        losses=losses,
        trajectory=traj,
        recorded_steps=rec_steps,
        steps=done,
        diverged=diverged_at >= 0,
        diverged_at=diverged_at,
    )


def _beta(value, name):
    return _validate.finite_float(value, name, low=0.0, high=1.0, high_open=True)


def _eps(value):
    return _validate.finite_float(value, "eps", low=0.0)


def gd(X, t, *, lr, steps, w0=None, l2=0.0, weight_decay=0.0, record_every=0) -> OptimResult:
    """Full-batch gradient descent, ``w <- (1 - weight_decay) w - lr grad L(w)`` (eq. (5)),
    ``steps`` times from ``w0`` (zeros by default). See the module docstring for the loss, the
    result, recording, divergence and the dtype policy."""
    return _run(_GD, X, t, lr=lr, steps=steps, batch_size=None, seed=0, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every)


def sgd(X, t, *, lr, batch_size, steps=None, epochs=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
        record_every=0) -> OptimResult:
    """Mini-batch SGD, equation (2) (plus ``l2`` and decoupled ``weight_decay``).

    Batches of ``batch_size`` rows without replacement: a fresh permutation per epoch from
    ``numpy.random.default_rng(seed)``, consecutive batches, the last one short if need be.
    Give exactly one of ``steps`` (may stop mid-epoch) and ``epochs`` (``epochs *
    ceil(n / batch_size)`` steps). ``batch_size = n`` is full-batch GD up to the order of the
    sum."""
    return _run(_GD, X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed, w0=w0,
                l2=l2, weight_decay=weight_decay, record_every=record_every)


def rmsprop(X, t, *, lr, beta=0.9, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
            weight_decay=0.0, record_every=0) -> OptimResult:
    """RMSProp, equations (3)-(4): ``v_k = beta v_{k-1} + (1 - beta) g_k^2`` (``v_{-1} = 0``),
    ``w <- (1 - weight_decay) w - lr g_k / (sqrt(v_k) + eps)``; PyTorch's ``RMSprop(lr,
    alpha=beta, eps=eps)``. ``beta`` in [0, 1), ``eps >= 0``. ``batch_size=None`` is full
    batch; otherwise mini-batches sampled as in :func:`sgd`."""
    b2 = _beta(beta, "beta")
    return _run(_RMSPROP, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, b2=b2, eps=_eps(eps))


def adagrad(X, t, *, lr, eps=1e-10, steps, batch_size=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
            record_every=0) -> OptimResult:
    """Adagrad: ``s_k = s_{k-1} + g_k^2`` (``s_{-1} = 0``), ``w <- (1 - weight_decay) w - lr
    g_k / (sqrt(s_k) + eps)``; PyTorch's ``Adagrad(lr, eps=eps)`` (``lr_decay=0``,
    ``initial_accumulator_value=0``; ``eps`` defaults to PyTorch's 1e-10). ``eps >= 0``."""
    return _run(_ADAGRAD, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, eps=_eps(eps))


def adam(X, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
         weight_decay=0.0, record_every=0) -> OptimResult:
    """Adam (Kingma and Ba, arXiv:1412.6980), bias-corrected, ``eps`` outside the square root,
    as ``torch.optim.Adam(lr, betas=(beta1, beta2), eps=eps)``::

        m_k = beta1 m_{k-1} + (1 - beta1) g_k,   v_k = beta2 v_{k-1} + (1 - beta2) g_k^2
        w <- (1 - weight_decay) w - (lr / (1 - beta1^(k+1))) m_k / (sqrt(v_k) / sqrt(1 - beta2^(k+1)) + eps)

    for step ``k = 0, 1, ...``. ``weight_decay`` is the homework's decoupled ``(1 - lam)``
    factor: ``AdamW(lr, weight_decay=lam / lr)``, not ``Adam(weight_decay)`` (that is ``l2``)."""
    b1 = _beta(beta1, "beta1")
    b2 = _beta(beta2, "beta2")
    return _run(_ADAM, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, b1=b1, b2=b2, eps=_eps(eps))
