"""The optimizers on linear regression: ``gd``, ``sgd``, ``rmsprop``, ``adagrad``, ``adam``.

Each is the one time-stepping loop (:func:`_steps`, built parallel as ``_DRIVE`` and serial as
``_DRIVE_SERIAL``) that, per step, takes the gradient of the
step's batch in one pass over its rows (:mod:`kernels._rows`) and applies an update rule
(:mod:`kernels.optim.rules`, where the update formulas are), chosen by its id.

``l2`` is the penalty inside the loss: it enters ``g`` as ``2 l2 w``, so it is what PyTorch
calls ``weight_decay`` (its coupled form, ``weight_decay = 2 l2``). ``weight_decay=lam`` here is
the homework's decoupled form: ``w`` is multiplied by ``(1 - lam)`` itself, *not* by
``(1 - lr lam)`` as in ``torch.optim.AdamW(weight_decay=lam)``; ``adam(weight_decay=lam)``
equals ``AdamW(lr, weight_decay=lam / lr)``. Under GD, ``l2 = c`` and ``weight_decay = 2 lr c``
are the same update (question 2.3.2); under the adaptive methods they are not.

Mini-batches (``sgd``, and ``rmsprop``/``adagrad``/``adam`` with ``batch_size``): epoch ``e``
walks the ``e``-th ``numpy.random.default_rng(seed).permutation(n)`` in consecutive batches of
``batch_size`` rows; the last batch of an epoch is short when ``batch_size`` does not divide ``n``
(used, not dropped), so an epoch is ``ceil(n / batch_size)`` steps and ``steps`` may end
mid-epoch. The permutations are drawn a bounded chunk of epochs at a time (:mod:`kernels._random`:
NumPy's very integers, compiled), so :mod:`kernels.naive.optim` with the same seed uses the same
indices. A run that reads the rows of ``X`` many times works on an aligned copy of ``X`` where
``X`` is not aligned (:mod:`kernels._aligned`).

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
  finite, or when one of its weights lies beyond the largest value of the dtype of ``X``
  (float32 data: a weight past 3.4e38, which the returned float32 ``w`` would hold as inf,
  though the float64 working copy is finite). The loop stops at the first bad iterate, ``diverged=True``, ``diverged_at=k``, and
  the last good iterate ``w_{k-1}`` is returned (``steps = k - 1``; if ``w_0`` itself is bad,
  ``w_0`` is returned with ``steps = 0``). Nothing raises inside compiled code. Without
  divergence ``diverged_at = -1``.

dtype policy: as :mod:`kernels.optim.linreg`; ``w`` and ``trajectory`` have the dtype of ``X``,
and every weight and optimizer state is float64 inside: a float32 run equals the float64 run on
the same (exactly widened) data, rounded once at the end, up to the first iterate with a weight
beyond float32's range (the float32 run diverges there, see above).

Numerical note: with a constant ``lr``, an adaptive method that has reached its noise floor
(``|w - w*| ~ lr``) takes steps of about ``lr * sign(g)``, a chaotic map that multiplies a
last-bit difference by about 10 per step; two correct implementations (this one, the NumPy
reference, PyTorch) then agree only up to that point. The tests compare trajectories in the
transient phase, before it.

Serial or parallel: a step's pass over its rows runs in parallel when it reads at least
``linreg._PARALLEL_MIN_BYTES`` (DRAM-bound passes), else on one thread, in a serial build of
the loop that compiles in a fraction of the time. A long full-batch run on data between 1 MiB
and that size times a few steps of each build and finishes on the faster one
(:func:`_probe`): on an idle machine two threads win about 2x, on a busy one one thread does.
All of these give the same bits.

Gram form: a full-batch run with ``4 d <= n`` and ``4 steps >= d`` forms ``G = X^T X`` and
``X^T t`` once (NumPy's BLAS, float64) and then steps in O(d^2) without reading ``X``; its
recorded and final losses still come from passes over ``X`` (see :func:`linreg._gram`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from .. import _aligned, _validate
from .._config import REDUCTION_BLOCK, specialise
from .._random import Permutations
from .._rows import (gradient_block, loss_block, prefetch_rows, reduce_gradient_blocks, residual_sweep8, sum_blocks,
                     sumsq)
from . import rules
from .linreg import _NO_GRAM, _buffers, _data, _full_loss, _gram, _l2, _loss_serial, _par_rows, _weights

__all__ = ["OptimResult", "gd", "sgd", "rmsprop", "adagrad", "adam"]

#: At most this many permutation entries (int64) are held at once: whole epochs, at least one.
_PERM_CHUNK = 1 << 20

#: A mini-batch step prefetches the rows of the batch this many steps on (and, at the start of
#: an epoch, those before it), as many as keep the rows in flight within _PREFETCH_BYTES: a step
#: of 32 random rows of (20000, 100) float64 takes about 3 us, less than the rows of one batch
#: take to arrive from memory. Measured alternating on the 2-core Intel Xeon, one SGD epoch: 2.9
#: ms one batch ahead, 2.6 four ahead, 2.6 eight ahead (the same bits: prefetches are hints).
#: On the 2-core Zen 5 EPYC, right after a NumPy SGD epoch (X out of cache), neither the distance
#: (1 to 16 batches) nor spreading the prefetches through the sweep (four rows ahead before and
#: after each eight-row group, or a row-at-a-time sweep prefetching one row per row) moved the
#: epoch by more than 5%, though a bare gather of the rows ran 0.90 ms without prefetches and
#: 0.63 ms with one row prefetched per row: the eight-row groups already keep about as many rows
#: in flight as the core can.
_PREFETCH_BATCHES = 4
_PREFETCH_BYTES = 128 << 10

# info[] slots shared between the wrapper and the driver
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


# --------------------------------------------------------------------------- the compiled loop


def _steps(
    X, t, perm, full, batch, nbatches, epoch0, s0, s1,
    rule, lr, hyper, l2, wd, wmax, record_every, par_rows, gram, G, Xt_t, t_t,
    w, w_prev, state, g, part, spart, losses, traj, rec_steps, info,
):  # pragma: no cover - compiled
    """Run steps ``s0 <= s < s1`` of the optimizer whose update rule has id ``rule``
    (:data:`rules.SGD`, ...), updating ``w`` and ``state`` in place. ``_PARALLEL`` (a constant
    of each build, below) says whether the passes may run in parallel.

    ``perm[e]`` is the row permutation of epoch ``epoch0 + e`` (unused when ``full``). The
    time loop is serial; a step's gradient pass is parallel over row blocks when the batch has
    at least ``par_rows`` rows. With ``gram`` (full batch only) a step reads no ``X``: its
    gradient sum is ``G w - X^T t`` with ``G = X^T X`` and its squared residual
    ``w.G w - 2 (X^T t).w + t.t``, both O(d^2); recorded losses still come from a pass over
    ``X`` (the Gram form of the loss cancels). ``info`` carries the returned step,
    ``diverged_at`` and the number of records across calls; ``w_prev`` holds the iterate
    before the last update, so that the last good iterate can be returned. ``wmax`` is the
    largest value of the dtype of ``X``: a ``w_s`` with a weight beyond it is bad.
    """
    n = X.shape[0]
    d = X.shape[1]
    B = REDUCTION_BLOCK
    ahead = max(1, min(_PREFETCH_BATCHES, _PREFETCH_BYTES // max(1, batch * d * X.itemsize)))
    rows = perm[0]  # full batch: an empty row (consecutive rows); mini-batches: set per epoch
    for s in range(s0, s1):
        if full:
            start = 0
            end = n
        else:
            e = s // nbatches
            start = (s - e * nbatches) * batch
            end = min(start + batch, n)
            # the batch `ahead` steps on, if this epoch has it; at the start of an epoch (or of
            # the call) every batch up to it: consecutive positions of the permutation, one range
            lo = end + (ahead - 1) * batch
            if s == s0 or start == 0:
                rows = perm[e - epoch0]  # a view per epoch, not per step (each costs two atomics)
                lo = end
            hi = min(end + ahead * batch, n)
            if lo < hi:
                prefetch_rows(X, rows, lo, hi)
        mb = end - start
        wsq = sumsq(w)
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
        elif not _PARALLEL or mb < par_rows or nblk == 1:
            # the blocks one after the other, each its own sum reduced in block order: the
            # arithmetic of the parallel branch, so the same bits. One block goes straight into
            # g, the bits of the block and its reduction (0 + x = x). One call site of the sweep:
            # each site is a copy of it for LLVM to optimise again when the loop compiles.
            for b in range(nblk):
                lo = start + b * B
                acc = g if nblk == 1 else part[b]
                for j in range(d):
                    acc[j] = 0.0
                spart[b] = residual_sweep8(X, t, w, rows, lo, min(lo + B, end), acc, None)
            ss = spart[0] if nblk == 1 else reduce_gradient_blocks(part, spart, nblk, g)
        else:
            for b in prange(nblk):
                lo = start + b * B
                spart[b] = gradient_block(X, t, w, rows, lo, min(lo + B, end), part[b])
            ss = reduce_gradient_blocks(part, spart, nblk, g)
        lb = ss / mb + l2 * wsq
        if wsq > wmax * wmax:
            # a weight may lie beyond what the dtype of X holds (wmax): such a w_s is bad too
            for j in range(d):
                if abs(w[j]) > wmax:
                    lb = np.inf
        if record_every > 0 and s % record_every == 0 and np.isfinite(lb):
            if full and not gram:
                lf = lb
            else:
                # the full-data loss of a recorded step: one more pass (g is left alone)
                if not _PARALLEL or n < par_rows:
                    lf = _loss_serial(X, t, w, l2, spart)
                else:
                    nfb = (n + B - 1) // B
                    for b in prange(nfb):
                        spart[b] = loss_block(X, t, w, None, b * B, min(b * B + B, n))
                    lf = sum_blocks(spart, nfb) / n + l2 * wsq
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
        if rules.update(rule, w, g, 2.0 / mb, l2, state, s, lr, hyper, 1.0 - wd, w_prev) != 0.0:
            for j in range(d):
                w[j] = w_prev[j]
            info[1] = s + 1
            info[0] = s
            return
        info[0] = s + 1


# Two builds of the same loop (kernels._config.specialise): the parallel one for runs that make
# a pass over at least `par_rows` rows, and a serial one for the rest, mini-batches smaller than
# `par_rows` and data smaller than it. The serial build has none of the parallel passes (their
# branches are pruned before typing), so it compiles in a fraction of the time and carries no
# thread-pool call per step. Same arithmetic, same bits. Inlining `_steps` into two wrappers
# instead cost seconds of compile time (Numba's inliner deep-copies the whole loop's IR). One
# build holds all four rules: a build per rule made a first `sgd` 0.6 s faster to compile and a
# program using all four 4 s slower. One build holds full batches and mini-batches too: a build
# for each made a first `sgd` about a tenth faster to compile and `python -m kernels hw2`, which
# runs both, 1-2 s slower on an empty cache.
_DRIVE_SERIAL = specialise(_steps, "_drive_serial", _PARALLEL=False)
_DRIVE = specialise(_steps, "_drive", parallel=True, _PARALLEL=True)


# --------------------------------------------------------------------------- the wrappers


#: Full-batch runs whose passes stay in the last-level cache (below linreg._PARALLEL_MIN_BYTES,
#: so serial by default) but read at least this many bytes of ``X`` per step, and run at least
#: 8 * _PROBE_STEPS steps, time a few steps of each build and finish on the faster one: on an
#: idle 2-core machine two threads step such a pass about twice as fast; on a busy one a worker
#: that is not running costs each step a scheduler time slice, and one thread is faster.
_PROBE_MIN_BYTES = 1 << 20
_PROBE_STEPS = 3


def _probe_pays(X, steps) -> bool:
    return X.nbytes >= _PROBE_MIN_BYTES and steps >= 8 * _PROBE_STEPS and numba.get_num_threads() > 1


def _probe(X, t, perm, n, steps, args, par_rows, info):
    """Run the first steps alternately on the serial build and on the parallel one (every pass
    in parallel), _PROBE_STEPS at a time, twice each; return the build that ran its faster
    chunk faster and the step to go on from. Both give the same bits, so the choice changes
    only the time. The first chunk of each build warms its caches and threads and is not
    counted."""
    best = {_DRIVE_SERIAL: math.inf, _DRIVE: math.inf}
    s = 0
    for rnd in range(3):
        for build, rows in ((_DRIVE_SERIAL, par_rows), (_DRIVE, 1)):
            start = time.perf_counter()
            build(X, t, perm, True, n, 1, 0, s, s + _PROBE_STEPS, *args(rows))
            if rnd:
                best[build] = min(best[build], time.perf_counter() - start)
            s += _PROBE_STEPS
            if info[_I_DIVERGED_AT] >= 0:
                return build, s
    return min(best, key=best.get), s


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


def _run(rule, X, t, *, lr, steps, epochs=None, batch_size, seed, w0, l2, weight_decay, record_every,
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
    state = np.zeros((2, d))
    part, spart, g = _buffers(n, d)  # sized for a full-data pass (recorded and final losses)
    nrec = 1 + (-(-steps // record_every) if record_every else 0)
    losses = np.empty(nrec if record_every else 1)
    traj = np.empty((nrec if record_every else 0, d), dtype=X.dtype)
    rec_steps = np.empty(nrec if record_every else 1, dtype=np.int64)
    info = np.zeros(3, dtype=np.int64)
    info[_I_DIVERGED_AT] = -1
    gram, G, Xt_t, t_t = _gram(X, t, steps) if full else (False, *_NO_GRAM)
    if not gram and steps * (n if full else batch_size) >= _aligned.MIN_PASSES * n:
        X = _aligned.for_many_passes(X)  # the rows are read MIN_PASSES times or more
    par_rows = _par_rows(X)
    wmax = float(np.finfo(X.dtype).max)

    def args(par_rows):
        return (rule, lr, (float(b1), float(b2), float(eps)), l2, wd, wmax, record_every, par_rows, gram, G, Xt_t,
                t_t, w, w_prev, state, g, part, spart, losses, traj, rec_steps, info)

    # a pass over par_rows rows or more runs in parallel: a step's batch, or a recorded loss
    parallel = (not gram and (n if full else batch_size) >= par_rows) or (record_every and n >= par_rows)
    drive = _DRIVE if parallel else _DRIVE_SERIAL

    if full:
        perm = np.empty((1, 0), dtype=np.int64)
        s0 = 0
        if not parallel and not gram and _probe_pays(X, steps):
            drive, s0 = _probe(X, t, perm, n, steps, args, par_rows, info)
        if info[_I_DIVERGED_AT] < 0:
            drive(X, t, perm, True, n, 1, 0, s0, steps, *args(par_rows if drive is _DRIVE_SERIAL else 1))
    else:
        perms = Permutations(seed, n)
        epochs_total = -(-steps // nbatches)
        per_chunk = max(1, _PERM_CHUNK // n)
        for e0 in range(0, epochs_total, per_chunk):
            ne = min(per_chunk, epochs_total - e0)
            perm = perms.fill(np.empty((ne, n), dtype=np.int64))
            s1 = min(steps, (e0 + ne) * nbatches)
            drive(X, t, perm, False, batch_size, nbatches, e0, e0 * nbatches, s1, *args(par_rows))
            if info[_I_DIVERGED_AT] >= 0:
                break

    # the full-data loss of the returned iterate; a non-finite one makes it the bad iterate
    done = int(info[_I_STEPS])
    lf = _full_loss(X, t, w, l2, spart)
    if info[_I_DIVERGED_AT] < 0 and (not math.isfinite(lf) or np.abs(w).max(initial=0.0) > wmax):
        info[_I_DIVERGED_AT] = done
        if done > 0:
            w[:] = w_prev
            done -= 1
            lf = _full_loss(X, t, w, l2, spart)
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


def _hyper(value, name, high=1.0):
    """A decay rate in [0, 1), or with ``high=None`` an ``eps >= 0``."""
    return _validate.finite_float(value, name, low=0.0, high=high, high_open=high is not None)


def gd(X, t, *, lr, steps, w0=None, l2=0.0, weight_decay=0.0, record_every=0) -> OptimResult:
    """Full-batch gradient descent, ``w <- (1 - weight_decay) w - lr grad L(w)`` (eq. (5)),
    ``steps`` times from ``w0`` (zeros by default). See :mod:`kernels.optim` for the loss, and
    this module's docstring for the result, recording, divergence and the dtype policy."""
    return _run(rules.SGD, X, t, lr=lr, steps=steps, batch_size=None, seed=0, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every)


def sgd(X, t, *, lr, batch_size, steps=None, epochs=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
        record_every=0) -> OptimResult:
    """Mini-batch SGD, equation (2) (plus ``l2`` and decoupled ``weight_decay``).

    Batches of ``batch_size`` rows without replacement: a fresh permutation per epoch from
    ``numpy.random.default_rng(seed)``, consecutive batches, the last one short if need be.
    Give exactly one of ``steps`` (may stop mid-epoch) and ``epochs`` (``epochs *
    ceil(n / batch_size)`` steps). ``batch_size = n`` is full-batch GD up to the order of the
    sum."""
    return _run(rules.SGD, X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed, w0=w0,
                l2=l2, weight_decay=weight_decay, record_every=record_every)


def rmsprop(X, t, *, lr, beta=0.9, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
            weight_decay=0.0, record_every=0) -> OptimResult:
    """RMSProp, equations (3)-(4): ``v_k = beta v_{k-1} + (1 - beta) g_k^2`` (``v_{-1} = 0``),
    ``w <- (1 - weight_decay) w - lr g_k / (sqrt(v_k) + eps)``; PyTorch's ``RMSprop(lr,
    alpha=beta, eps=eps)``. ``beta`` in [0, 1), ``eps >= 0``. ``batch_size=None`` is full
    batch; otherwise mini-batches sampled as in :func:`sgd`."""
    b2 = _hyper(beta, "beta")
    return _run(rules.RMSPROP, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, b2=b2, eps=_hyper(eps, "eps", None))


def adagrad(X, t, *, lr, eps=1e-10, steps, batch_size=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
            record_every=0) -> OptimResult:
    """Adagrad: ``s_k = s_{k-1} + g_k^2`` (``s_{-1} = 0``), ``w <- (1 - weight_decay) w - lr
    g_k / (sqrt(s_k) + eps)``; PyTorch's ``Adagrad(lr, eps=eps)`` (``lr_decay=0``,
    ``initial_accumulator_value=0``; ``eps`` defaults to PyTorch's 1e-10). ``eps >= 0``."""
    return _run(rules.ADAGRAD, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, eps=_hyper(eps, "eps", None))


def adam(X, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
         weight_decay=0.0, record_every=0) -> OptimResult:
    """Adam (Kingma and Ba, arXiv:1412.6980), bias-corrected, ``eps`` outside the square root,
    as ``torch.optim.Adam(lr, betas=(beta1, beta2), eps=eps)``::

        m_k = beta1 m_{k-1} + (1 - beta1) g_k,   v_k = beta2 v_{k-1} + (1 - beta2) g_k^2
        w <- (1 - weight_decay) w - (lr / (1 - beta1^(k+1))) m_k / (sqrt(v_k) / sqrt(1 - beta2^(k+1)) + eps)

    for step ``k = 0, 1, ...``. ``weight_decay`` is the homework's decoupled ``(1 - lam)``
    factor: ``AdamW(lr, weight_decay=lam / lr)``, not ``Adam(weight_decay)`` (that is ``l2``)."""
    b1 = _hyper(beta1, "beta1")
    b2 = _hyper(beta2, "beta2")
    return _run(rules.ADAM, X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                weight_decay=weight_decay, record_every=record_every, b1=b1, b2=b2, eps=_hyper(eps, "eps", None))
