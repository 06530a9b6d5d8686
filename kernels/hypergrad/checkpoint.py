"""``method="checkpoint"``: reverse mode with recomputation; memory O(sqrt(T) d) by default.

By default, uniform segments of ``S = ceil(sqrt(T))`` steps. The forward pass keeps the state
at the start of each segment (``J = ceil(T / S)`` rows) and the states inside the last
segment (a buffer of ``S - 1`` rows). The reverse pass walks the segments backwards; while
it runs the adjoint through segment ``j`` it recomputes segment ``j - 1`` from its
checkpoint *in the same pass over X* (one row sweep forms ``X w``, ``X a``, ``X^T r`` and
``X^T s`` together), writing the recomputed states into the buffer in the opposite order
to the one being read, so a single buffer suffices. ``bytes_stored = (J + S - 1) d 8``,
which is below ``(2 sqrt(T) + 1) d 8``; each step is computed twice in all.

With ``checkpoints=k``: the binomial schedule of Griewank and Walther ("Algorithm 799:
revolve", ACM TOMS 26(1):19-45, 2000) with ``k`` snapshot slots, one of them holding
``w_0``; ``bytes_stored = k d 8`` exactly. Revolve's splitting rule minimises the number of
recomputed steps (``r T - C(k + r, k + 1)``), each step being recomputed at most ``r``
times, ``r`` the least integer with ``C(k + r, k) >= T`` (``k = 1`` recomputes every state
from ``w_0``: O(T^2) steps in O(d) memory). Its recomputations are separate sweeps (not
overlapped with the adjoint), so for the same memory it is slower than the default.
"""

from __future__ import annotations

import math

import numpy as np

from .._config import jit
from .._rows import copy
from ._problem import _check_memory
from .descent import _adjoint_step, _finish_grad, _fused_sweep, _grad_sweep, _hess_sweep, _reverse_mode


def _segments(steps, checkpoints):
    if checkpoints is None:
        S = math.isqrt(steps - 1) + 1  # ceil(sqrt(T)) for T >= 1
    else:
        S = -(-steps // checkpoints)
    J = -(-steps // S)
    return S, J


@jit()
def _slot(orient, m, S):  # pragma: no cover - compiled
    # Offset m >= 1 of a segment lives in buffer row m - 1 (orientation 0) or S - 1 - m (1).
    return m - 1 if orient == 0 else S - 1 - m


@jit()
def _checkpoint_reverse_kernel(X, t, ckpt, buf, S, a, lr, l2, steps):  # pragma: no cover
    """The adjoint sweep with recomputation from checkpoints ``ckpt[j] = w_{jS}``.

    ``buf`` holds the states inside the last segment (orientation 0) on entry. While the
    adjoint runs backwards through segment ``j`` (reading ``buf``), segment ``j - 1`` is
    recomputed forwards from its checkpoint in the same row sweeps, and its states are written
    into ``buf`` in the other orientation: step ``i`` reads slot ``slot(o, L-1-i)`` and then
    writes ``slot(1-o, i+1)``, and no slot written at step ``i`` is read after step ``i``
    (``L <= S``), so one buffer of ``S - 1`` rows suffices.
    """
    n, d = X.shape
    coef = 2.0 / n
    J = ckpt.shape[0]
    s, h, g, w = np.empty(n), np.empty(d), np.empty(d), np.empty(d)
    d_lr = d_l2 = 0.0
    orient = 0
    for j in range(J - 1, -1, -1):
        L = min(S, steps - j * S)
        recompute = j > 0
        n_rec = S - 1 if recompute else 0
        if recompute:
            copy(w, ckpt[j - 1])
        for i in range(max(L, n_rec)):
            rev = i < L
            rec = i < n_rec
            if rev and rec:
                _fused_sweep(X, t, w, a, g, s, h, coef)
            elif rev:
                _hess_sweep(X, a, s, h)
            else:
                _grad_sweep(X, t, w, g, coef)
            if rev:
                m = L - 1 - i
                if m == 0:
                    dl, dq = _adjoint_step(t, ckpt[j], a, s, h, lr, l2, coef)
                else:
                    dl, dq = _adjoint_step(t, buf[_slot(orient, m, S)], a, s, h, lr, l2, coef)
                d_lr += dl
                d_l2 += dq
            if rec:
                _finish_grad(w, g, l2)
                for jj in range(d):
                    w[jj] -= lr * g[jj]
                copy(buf[_slot(1 - orient, i + 1, S)], w)
        orient = 1 - orient
    return d_lr, d_l2


def _binomial_reps(snaps, steps):
    """The least ``r`` with ``C(snaps + r, snaps) >= steps``: the repetition number of the
    binomial schedule with ``snaps`` snapshots in all (Griewank and Walther, 'revolve')."""
    r = 0
    while math.comb(snaps + r, snaps) < steps:
        r += 1
    return r


def _revolve_advance(length, ds):
    """How far to advance before the next snapshot, for ``length >= 2`` steps to reverse from a
    state held in a slot with ``ds - 1 >= 1`` spare slots: the rule of revolve (Griewank and
    Walther, "Algorithm 799: revolve", ACM TOMS 26(1) 19-45, 2000), which minimises the total number of
    recomputed steps."""
    reps, rng = 0, 1
    while rng < length:
        reps += 1
        rng = rng * (reps + ds) // reps
    bino1 = rng * reps // (ds + reps)
    bino2 = bino1 * ds // (ds + reps - 1) if ds > 1 else 1
    bino3 = 0 if ds == 1 else (bino2 * (ds - 1) // (ds + reps - 2) if ds > 2 else 1)
    bino4 = bino2 * (reps - 1) // ds
    bino5 = 0 if ds < 3 else (bino3 * (ds - 2) // reps if ds > 3 else 1)
    if length <= bino1 + bino3:
        adv = bino4
    elif length >= rng - bino5:
        adv = bino1
    else:
        adv = length - bino2 - bino3
    return max(1, min(adv, length - 1))


def _revolve_plan(steps, snapshots):
    """The binomial checkpointing schedule for ``steps`` steps with ``snapshots`` slots (slot 0
    holds ``w_0``), as an int64 array of operations ``(kind, src, n, dst)`` for
    :func:`_revolve_kernel`: kind 0 advances the state in slot ``src`` by ``n`` steps into slot
    ``dst`` (``-1``: into the working vector), kind 1 runs one reverse step at the state in slot
    ``src`` (``-1``: the working vector).

    To reverse steps ``i .. j-1`` from ``w_i`` held in a slot while spare slots remain: advance
    by :func:`_revolve_advance` into a spare slot, reverse the right part (one spare fewer),
    free the slot, then reverse the left part. With no spare slot each state is recomputed from
    ``w_i``. An explicit stack replaces recursion (its depth can reach ``snapshots``).
    """
    ops = []
    free = list(range(snapshots - 1, 0, -1))
    stack = [(0, 0, steps, 0)]  # (0, i, j, slot): reverse steps i..j-1; (1, slot): free it
    while stack:
        item = stack.pop()
        if item[0] == 1:
            free.append(item[1])
            continue
        _, i, j, slot = item
        if j - i > 1 and free:
            left = _revolve_advance(j - i, len(free) + 1)
            dst = free.pop()
            ops.append((0, slot, left, dst))
            stack.append((0, i, i + left, slot))  # last: the left part, with dst free again
            stack.append((1, dst))
            stack.append((0, i + left, j, dst))  # first: the right part
            continue
        for k in range(j - 1, i, -1):  # no spare slot: recompute each state from w_i
            ops.append((0, slot, k - i, -1))
            ops.append((1, -1, 0, 0))
        ops.append((1, slot, 0, 0))
    return np.array(ops, dtype=np.int64).reshape(-1, 4)


@jit()
def _revolve_kernel(X, t, snaps, ops, a, lr, l2):  # pragma: no cover - compiled
    """Execute a :func:`_revolve_plan`; ``a`` enters as ``dObj/dw_T``. Returns ``(d_lr, d_l2)``
    without the direct partial of the objective."""
    n, d = X.shape
    coef = 2.0 / n
    s, h, g, w = np.empty(n), np.empty(d), np.empty(d), np.empty(d)
    d_lr = d_l2 = 0.0
    for o in range(ops.shape[0]):
        src = ops[o, 1]
        if ops[o, 0] == 0:
            copy(w, snaps[src])
            for _ in range(ops[o, 2]):
                _grad_sweep(X, t, w, g, coef)
                _finish_grad(w, g, l2)
                for j in range(d):
                    w[j] -= lr * g[j]
            if ops[o, 3] >= 0:
                copy(snaps[ops[o, 3]], w)
        else:
            _hess_sweep(X, a, s, h)
            if src >= 0:
                dl, dq = _adjoint_step(t, snaps[src], a, s, h, lr, l2, coef)
            else:
                dl, dq = _adjoint_step(t, w, a, s, h, lr, l2, coef)
            d_lr += dl
            d_l2 += dq
    return d_lr, d_l2


def checkpoint(X, t, w0, X_val, t_val, lr, l2, steps, checkpoints=None):
    """The hypergradient by reverse mode with recomputation (checked input, see
    :func:`kernels.hypergrad.hypergrad`): uniform segments, or revolve with ``checkpoints``
    snapshot slots."""
    d = X.shape[1]
    if checkpoints is None:
        S, J = _segments(steps, None)
        _check_memory("checkpoint", steps, d, J + S - 1)
        ckpt = np.empty((J, d))
        buf = np.empty((S - 1, d))
        return _reverse_mode(X, t, w0, X_val, t_val, lr, l2, steps, "checkpoint", ckpt.nbytes + buf.nbytes, ckpt, S,
                             buf, lambda a: _checkpoint_reverse_kernel(X, t, ckpt, buf, S, a, lr, l2, steps))
    # the binomial (revolve) schedule: `checkpoints` snapshot slots, slot 0 holds w_0, the only
    # state the forward pass stores (a stride of steps + 1)
    _check_memory("checkpoint", steps, d, checkpoints)
    snaps = np.empty((checkpoints, d))
    return _reverse_mode(X, t, w0, X_val, t_val, lr, l2, steps, "checkpoint", snaps.nbytes, snaps[:1], steps + 1,
                         np.empty((0, d)),
                         lambda a: _revolve_kernel(X, t, snaps, _revolve_plan(steps, checkpoints), a, lr, l2))
