"""Hypergradients through every optimizer: the unrolled run of ``kernels.sgd``,
``kernels.rmsprop`` and ``kernels.adam`` (and of ``kernels.gd`` with decoupled weight decay),
differentiated by hand with the adjoint and the tangent of each update rule, which live beside
the rules in :mod:`kernels.optim.rules`. This module holds the compiled kernels;
:mod:`.optimizer_methods` the checked problem and the wrappers that drive them.

Setting: ``T = steps`` updates of the optimizer from ``w_0``; step ``k`` draws its batch
``B_k`` (all rows, or the mini-batches of :func:`kernels.sgd`: one permutation per epoch from
``numpy.random.default_rng(seed)``, consecutive batches, the last one short), takes the data
gradient ``g_k = (2/|B_k|) X_B^T (X_B w_k - t_B)`` in one row sweep (:mod:`kernels._rows`)
(or, full batch with ``4 d <= n``, from ``G = X^T X`` in O(d^2), the Gram form of
:mod:`kernels.optim`) and applies the rule (``rules.sgd``, ``rules.rmsprop``, ``rules.adam``: the very functions the
optimizers' loop inlines)::

    G_k = g_k + 2 l2 w_k,   w_{k+1} = (1 - weight_decay) w_k - lr u_k(G_k, state)

The objective is the training loss ``L~(w_T)`` over all rows, or the validation error, as for
gradient descent (:mod:`kernels.hypergrad`). Its derivatives in every continuous
hyper-parameter of the optimizer (``lr``, ``l2``, ``weight_decay``, and ``beta`` / ``beta1``,
``beta2``, ``eps``) come from

* reverse mode (:func:`.optimizer_methods.reverse_opt`): the forward pass stores, per step, ``w_k``, ``g_k`` and
  the state the rule read (``R = 2`` rows of ``d`` for SGD, 3 for RMSProp, 4 for Adam); the
  reverse pass runs ``rules.adjoint`` and one Hessian-vector sweep ``X_B^T X_B gbar`` per step.
  ``bytes_stored = (T R + 1) d 8`` (and ``w_T``).
* checkpointing (:func:`.optimizer_methods.checkpoint_opt`): by default the state (``w``, both moments) at the
  start of segments of ``S = ceil(sqrt(T))`` steps; each segment is recomputed into a buffer of
  ``S`` stored steps and reversed. ``bytes_stored = J 3 d 8 + S R d 8`` (``J = ceil(T / S)``);
  each step is computed twice. With ``checkpoints=k``: ``k`` snapshot slots of ``(w, m, v)`` and
  the binomial schedule of revolve, as for gradient descent (:mod:`.checkpoint`);
  ``bytes_stored = 3 k d 8``.
* forward mode (:func:`.optimizer_methods.forward_opt`): one tangent of ``w`` and of the state per
  hyper-parameter (``rules.tangent``), each with its own Hessian-vector sweep after the
  gradient sweep that every method shares (fusing the first into it would change the order of
  the gradient's sums, and the run: an RMSProp run of 1000 steps then ended 4e-4 away in its
  loss). ``bytes_stored = P 3 d 8`` for ``P`` hyper-parameters, independent of ``T``.

The square root of the adaptive rules at ``v = 0`` takes the one-sided derivative documented
in :mod:`kernels.optim.rules` (finite: ``1 / eps`` in the gradient), where PyTorch's autograd
gives NaN. Hypergradients of a run that reached its noise floor (an adaptive method's steps
``~ lr sign(g)``) are exact for that finite run but can be huge: the run is then chaotic in its
hyper-parameters.

Mini-batch runs also hold the batch order, one int64 permutation of the ``n`` rows per epoch
(what ``kernels.sgd`` draws), not counted in ``bytes_stored``.

Divergence: step ``k`` is bad when its (batch) training loss is not finite or above a
threshold, or when the rule returns a non-finite weight; the threshold is ``2 L~(w_0)``
(:data:`~kernels.hypergrad.DIVERGENCE_FACTOR`) for full-batch SGD/GD, whose loss never rises at
a stable ``lr``, and ``1e6 L~(w_0)`` (:data:`NOISY_DIVERGENCE_FACTOR`) for mini-batches and the
adaptive rules, whose losses legitimately rise for a while. A diverged run returns
``diverged=True`` and NaN derivatives, with a warning; a hypergradient that overflows is
reported the same way.
"""

from __future__ import annotations

import numpy as np

from .._config import jit
from .._rows import copy, residual_sweep8, sweep, zero
from ..optim import rules

#: Divergence threshold of mini-batch and adaptive runs, times ``L~(w_0)`` (see above).
NOISY_DIVERGENCE_FACTOR = 1e6

#: The optimizers, their update rule, the state rows the rule reads and its hyper-parameters
#: (name, index in the rules' derivative array ``dh``).
OPTIMIZERS = {
    "gd": (rules.SGD, (), (("lr", rules.H_LR), ("l2", rules.H_L2), ("weight_decay", rules.H_WD))),
    "sgd": (rules.SGD, (), (("lr", rules.H_LR), ("l2", rules.H_L2), ("weight_decay", rules.H_WD))),
    "rmsprop": (rules.RMSPROP, (1,), (("lr", rules.H_LR), ("l2", rules.H_L2), ("weight_decay", rules.H_WD),
                                      ("beta", rules.H_B2), ("eps", rules.H_EPS))),
    "adam": (rules.ADAM, (0, 1), (("lr", rules.H_LR), ("l2", rules.H_L2), ("weight_decay", rules.H_WD),
                                  ("beta1", rules.H_B1), ("beta2", rules.H_B2), ("eps", rules.H_EPS))),
}


# --------------------------------------------------------------------------- compiled steps


# The per-step loops below take a step's rows as a view of ``perms`` only when the epoch
# changes, and copy rows of ``traj`` element by element: a view, or an array handed to an
# inlined helper, is a new reference, two atomic operations each, and a step of a mini-batch
# run made dozens of them (20% of its time on (640, 100), batch 32).


@jit(inline="always")
def _epoch_rows(k, full, perms, nb, rows, e_rows):  # pragma: no cover - compiled
    """``(rows, epoch)`` for step ``k``: ``rows`` as it is while step ``k`` is in epoch
    ``e_rows``, else that epoch's permutation (all rows, ``full``: ``rows`` unchanged)."""
    if full:
        return rows, e_rows
    e = k // nb
    if e != e_rows:
        return perms[e], e
    return rows, e_rows


@jit(inline="always")
def _span(k, full, batch, nb, n):  # pragma: no cover - compiled
    """``(start, end)`` of step ``k``'s rows in its epoch's permutation (``(0, n)`` if ``full``)."""
    if full:
        return 0, n
    start = (k - (k // nb) * nb) * batch
    return start, min(start + batch, n)


@jit(inline="always")
def _batch(k, full, perms, batch, nb, n, none):  # pragma: no cover - compiled
    """``(rows, start, end)`` of step ``k``: all rows (``none``), or batch ``k mod nb`` of epoch
    ``k // nb`` (a view per call: for the revolve plan, whose steps jump between slots)."""
    start, end = _span(k, full, batch, nb, n)
    return (none if full else perms[k // nb]), start, end


@jit(inline="always")
def _sqnorm(w):  # pragma: no cover - compiled
    s = 0.0
    for j in range(w.shape[0]):
        s += w[j] * w[j]
    return s


# The three row sweeps: each is a call of the compiled sweep of kernels._rows (not inlined), so
# its code is generated once (and cached) instead of once per caller -- cold compile time, which
# a user pays on a first call with an empty cache. A call per step costs well under a
# microsecond against the tens of microseconds of a sweep over X.


@jit(inline="always")
def _batch_grad(X, t, w, rows, start, end, g, coef):  # pragma: no cover - compiled
    """``g = coef X_B^T (X_B w - t_B)`` over batch rows ``start:end``; returns ``sum r_i^2``.
    Eight rows per group (the residual half alone allows it; ~10% faster than four)."""
    zero(g, None)
    return residual_sweep8(X, t, w, rows, start, end, g, coef)


@jit(inline="always")
def _batch_hvp(X, v, rows, start, end, s, h):  # pragma: no cover - compiled
    """``h = X_B^T X_B v`` (``s`` receives ``X_B v``)."""
    zero(None, h)
    sweep(X, None, None, v, rows, start, end, None, s, h, None)


@jit(inline="always")
def _update(rule, w, g, l2, state, k, lr, hyper, keep, wprev):  # pragma: no cover - compiled
    """The optimizers' own rules (:mod:`kernels.optim.rules`), dispatched over the three this
    module differentiates (``rules.update`` also carries Adagrad, which would only add code)."""
    tl2 = 2.0 * l2
    if rule == rules.SGD:
        return rules.sgd(w, g, 1.0, tl2, state, k, lr, hyper, keep, wprev)
    if rule == rules.RMSPROP:
        return rules.rmsprop(w, g, 1.0, tl2, state, k, lr, hyper, keep, wprev)
    return rules.adam(w, g, 1.0, tl2, state, k, lr, hyper, keep, wprev)


@jit(inline="always")
def _gram_grad(G, bt, tt, w, g, coef):  # pragma: no cover - compiled
    """The Gram form of a full-batch gradient: ``g = coef (G w - X^T t)``; returns
    ``||X w - t||^2 = w.G w - 2 (X^T t).w + t.t`` (it cancels near the solution: used only by
    the divergence test, never reported)."""
    d = w.shape[0]
    wgw = 0.0
    bw = 0.0
    for i in range(d):
        acc = 0.0
        for j in range(d):
            acc += G[i, j] * w[j]
        g[i] = coef * (acc - bt[i])
        wgw += w[i] * acc
        bw += bt[i] * w[i]
    return wgw - 2.0 * bw + tt


@jit(inline="always")
def _gram_hvp(G, v, h):  # pragma: no cover - compiled
    """``h = G v``."""
    d = v.shape[0]
    for i in range(d):
        acc = 0.0
        for j in range(d):
            acc += G[i, j] * v[j]
        h[i] = acc


@jit(inline="always")
def _forward_step(rule, X, t, rows, start, end, w, state, g, wprev, k, lr, l2, hyper, keep, gram, G, bt,
                  tt):  # pragma: no cover
    """Step ``k``: ``g = (2/m) X_B^T (X_B w - t_B)`` and the rule's update of ``w``, ``state``.
    Returns ``(batch training loss at w_k, bad)`` with ``bad`` 0.0 or NaN (non-finite weight)."""
    m = end - start
    if gram:
        ss = _gram_grad(G, bt, tt, w, g, 2.0 / m)
    else:
        ss = _batch_grad(X, t, w, rows, start, end, g, 2.0 / m)
    loss = ss / m + l2 * _sqnorm(w)
    bad = _update(rule, w, g, l2, state, k, lr, hyper, keep, wprev)
    return loss, bad


@jit(inline="always")
def _adjoint_sweep(rule, X, t, rows, start, end, a, astate, gbar, s, h, wk, gk, sprev, k, lr, l2, hyper, keep,
                   dh, gram, G):  # pragma: no cover
    """One reverse step: the rule's adjoint, then ``a += (2/m) X_B^T X_B gbar``."""
    rules.adjoint(rule, a, astate, gbar, wk, gk, 1.0, l2, sprev, k, lr, hyper, keep, dh)
    if gram:
        _gram_hvp(G, gbar, h)
    else:
        _batch_hvp(X, gbar, rows, start, end, s, h)
    coef = 2.0 / (end - start)
    for j in range(a.shape[0]):
        a[j] += coef * h[j]


@jit()
def _run_kernel(rule, X, t, perms, full, batch, nb, gram, G, bt, tt, w, state, lr, l2, hyper, keep, k0, k1, thr,
                srows, traj, ckpt, stride):  # pragma: no cover - compiled
    """Steps ``k0 <= k < k1`` from ``w``, ``state`` (updated in place). Stores step ``k`` into
    ``traj[k - k0]`` when ``traj`` has rows (w, g, the state read), and ``(w, state)`` into
    ``ckpt[(k - k0) // stride]`` when ``stride`` divides ``k - k0``. Returns the first bad step
    (``-1`` if none): batch loss above ``thr`` or not finite, or a non-finite update; ``w`` is
    then the bad iterate."""
    n, d = X.shape
    g = np.empty(d)
    wprev = np.empty(d)
    rows = np.empty(0, dtype=np.int64)
    e_rows = -1
    for k in range(k0, k1):
        rows, e_rows = _epoch_rows(k, full, perms, nb, rows, e_rows)
        start, end = _span(k, full, batch, nb, n)
        i = k - k0
        if ckpt.shape[0] > 0 and i % stride == 0:
            c = i // stride
            copy(ckpt[c, 0], w)
            copy(ckpt[c, 1], state[0])
            copy(ckpt[c, 2], state[1])
        if traj.shape[0] > 0:
            for j in range(d):
                traj[i, 0, j] = w[j]
            for r in range(srows.shape[0]):
                sr = srows[r]
                for j in range(d):
                    traj[i, 2 + r, j] = state[sr, j]
        loss, bad = _forward_step(rule, X, t, rows, start, end, w, state, g, wprev, k, lr, l2, hyper, keep, gram, G,
                                  bt, tt)
        if traj.shape[0] > 0:
            for j in range(d):
                traj[i, 1, j] = g[j]
        if not (loss <= thr):
            copy(w, wprev)
            return k
        if bad != 0.0:
            return k + 1
    return -1


@jit()
def _reverse_kernel(rule, X, t, perms, full, batch, nb, gram, G, bt, tt, traj, srows, a, lr, l2, hyper, keep, k0,
                    k1, astate, dh):  # pragma: no cover - compiled
    """The adjoint sweep over stored steps ``k1 - 1 ... k0`` (``traj[k - k0]``); ``a`` and
    ``astate`` enter as the adjoints after step ``k1 - 1`` and leave as those before ``k0``."""
    n, d = X.shape
    rows = np.empty(0, dtype=np.int64)
    e_rows = -1
    gbar = np.empty(d)
    s = np.empty(n)
    h = np.empty(d)
    sprev = np.zeros((2, d))
    for k in range(k1 - 1, k0 - 1, -1):
        rows, e_rows = _epoch_rows(k, full, perms, nb, rows, e_rows)
        start, end = _span(k, full, batch, nb, n)
        i = k - k0
        for r in range(srows.shape[0]):
            sr = srows[r]
            for j in range(d):
                sprev[sr, j] = traj[i, 2 + r, j]
        _adjoint_sweep(rule, X, t, rows, start, end, a, astate, gbar, s, h, traj[i, 0], traj[i, 1], sprev, k, lr,
                       l2, hyper, keep, dh, gram, G)


@jit()
def _tangent_kernel(rule, X, t, perms, full, batch, nb, gram, G, bt, tt, w, state, lr, l2, hyper, keep, steps, thr,
                    qs, TW, TS, TG):  # pragma: no cover - compiled
    """Forward mode: ``steps`` steps carrying ``TW[p] = dw/dq_p`` and ``TS[p] = dstate/dq_p`` for
    the hyper-parameters ``qs``. Returns the first bad step as :func:`_run_kernel`."""
    n, d = X.shape
    P = qs.shape[0]
    g = np.empty(d)
    wprev = np.empty(d)
    s = np.empty(n)
    h = np.empty(d)
    rows = np.empty(0, dtype=np.int64)
    e_rows = -1
    for k in range(steps):
        rows, e_rows = _epoch_rows(k, full, perms, nb, rows, e_rows)
        start, end = _span(k, full, batch, nb, n)
        m = end - start
        coef = 2.0 / m
        if gram:
            ss = _gram_grad(G, bt, tt, w, g, coef)
            for p in range(P):
                _gram_hvp(G, TW[p], h)
                for j in range(d):
                    TG[p, j] = coef * h[j]
        else:
            # the gradient by the very sweep of the other methods (the same run, to the bit),
            # then one Hessian-vector product per tangent
            ss = _batch_grad(X, t, w, rows, start, end, g, coef)
            for p in range(P):
                _batch_hvp(X, TW[p], rows, start, end, s, h)
                for j in range(d):
                    TG[p, j] = coef * h[j]
        loss = ss / m + l2 * _sqnorm(w)
        if not (loss <= thr):
            return k
        for p in range(P):
            rules.tangent(rule, TW[p], TS[p], TG[p], w, g, 1.0, l2, state, k, lr, hyper, keep, qs[p])
        if _update(rule, w, g, l2, state, k, lr, hyper, keep, wprev) != 0.0:
            return k + 1
    return -1


@jit()
def _revolve_opt_kernel(rule, X, t, perms, full, batch, nb, gram, G, bt, tt, snaps, slot_k, ops, a, lr, l2, hyper,
                        keep, dh):  # pragma: no cover - compiled
    """Execute a binomial (revolve) plan (:func:`kernels.hypergrad.checkpoint._revolve_plan`) on
    the optimizer: slot ``i`` of ``snaps`` holds ``(w, m, v)`` at step ``slot_k[i]`` (slot 0:
    step 0). An advance runs the rule forwards from a slot; a reverse step at ``w_k`` recomputes
    ``g_k`` (one sweep), then runs the rule's adjoint and the Hessian-vector sweep."""
    n, d = X.shape
    none = np.empty(0, dtype=np.int64)
    w = np.empty(d)
    state = np.empty((2, d))
    wk = np.empty(d)
    sprev = np.empty((2, d))
    g = np.empty(d)
    wprev = np.empty(d)
    gbar = np.empty(d)
    s = np.empty(n)
    h = np.empty(d)
    astate = np.zeros((2, d))
    kw = 0
    for o in range(ops.shape[0]):
        src = ops[o, 1]
        if ops[o, 0] == 0:
            copy(w, snaps[src, 0])
            copy(state[0], snaps[src, 1])
            copy(state[1], snaps[src, 2])
            k = slot_k[src]
            for _ in range(ops[o, 2]):
                rows, start, end = _batch(k, full, perms, batch, nb, n, none)
                _forward_step(rule, X, t, rows, start, end, w, state, g, wprev, k, lr, l2, hyper, keep, gram, G, bt,
                              tt)
                k += 1
            dst = ops[o, 3]
            if dst >= 0:
                copy(snaps[dst, 0], w)
                copy(snaps[dst, 1], state[0])
                copy(snaps[dst, 2], state[1])
                slot_k[dst] = k
            else:
                kw = k
        else:
            if src >= 0:
                copy(wk, snaps[src, 0])
                copy(sprev[0], snaps[src, 1])
                copy(sprev[1], snaps[src, 2])
                k = slot_k[src]
            else:
                copy(wk, w)
                copy(sprev[0], state[0])
                copy(sprev[1], state[1])
                k = kw
            rows, start, end = _batch(k, full, perms, batch, nb, n, none)
            if gram:
                _gram_grad(G, bt, tt, wk, g, 2.0 / (end - start))
            else:
                _batch_grad(X, t, wk, rows, start, end, g, 2.0 / (end - start))
            _adjoint_sweep(rule, X, t, rows, start, end, a, astate, gbar, s, h, wk, g, sprev, k, lr, l2, hyper, keep,
                           dh, gram, G)
