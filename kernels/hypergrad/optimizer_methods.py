"""The hypergradient methods through an optimizer (see :mod:`.unroll` for the setting and the
methods): :class:`Setup`, the checked problem, and the wrappers :func:`reverse_opt`,
:func:`checkpoint_opt`, :func:`forward_opt` and :func:`unrolled_opt`, which size the stored
states and drive the compiled kernels of :mod:`.unroll`."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np

from .._random import Permutations
from ..optim import rules
from ._problem import _NOISE_FLOOR, DIVERGENCE_FACTOR, HypergradResult, _noise_scale
from .unroll import (NOISY_DIVERGENCE_FACTOR, OPTIMIZERS, _reverse_kernel, _revolve_opt_kernel, _run_kernel,
                     _tangent_kernel)


class Setup:
    """A checked optimizer problem: data, rule, hyper-parameters, batches and thresholds."""

    def __init__(self, X, t, w0, X_val, t_val, optimizer, lr, l2, steps, weight_decay, batch_size, seed, b1, b2,
                 eps):
        self.X, self.t, self.w0, self.X_val, self.t_val = X, t, w0, X_val, t_val
        self.optimizer = optimizer
        self.rule, srows, names = OPTIMIZERS[optimizer]
        self.names = names
        self.srows = np.array(srows, dtype=np.int64)
        self.R = 2 + len(srows)
        self.steps = steps
        n, d = X.shape
        self.full = batch_size is None
        self.batch = n if self.full else int(batch_size)
        self.nb = -(-n // self.batch)
        if self.full:
            self.perms = np.empty((1, 0), dtype=np.int64)
        else:
            epochs = -(-steps // self.nb)  # default_rng(seed).permutation(n) per epoch
            self.perms = Permutations(seed, n).fill(np.empty((epochs, n), dtype=np.int64))
        # the Gram form for full batches of a tall X (as kernels.optim's drivers): a step reads
        # the d x d matrix G = X^T X instead of X, O(d^2) instead of O(n d)
        self.gram = self.full and 4 * d <= n
        if self.gram:
            self.G = np.ascontiguousarray(X.T @ X)
            self.bt = X.T @ t
            self.tt = float(t @ t)
            self.gram = bool(np.all(np.isfinite(self.G)) and np.all(np.isfinite(self.bt)) and math.isfinite(self.tt))
        if not self.gram:
            self.G, self.bt, self.tt = np.zeros((1, 1)), np.zeros(1), 0.0
        r0 = X @ w0 - t
        self._r0sq, self._w0sq = float(r0 @ r0) / n, float(w0 @ w0)
        self._scale = _noise_scale(X, t, w0)
        self._factor = DIVERGENCE_FACTOR if (self.full and self.rule == rules.SGD) else NOISY_DIVERGENCE_FACTOR
        self._set_hyper(lr, l2, weight_decay, b1, b2, eps)

    def _set_hyper(self, lr, l2, weight_decay, b1, b2, eps):
        self.lr, self.l2 = lr, l2
        self.wd = weight_decay
        self.keep = 1.0 - weight_decay
        self.hyper = (float(b1), float(b2), float(eps))
        # the divergence threshold: factor L~(w_0) + _noise(X, t, w0, l2), term for term
        self.thr = self._factor * (self._r0sq + l2 * self._w0sq) + _NOISE_FLOOR * (self._scale + l2 * self._w0sq)

    def at(self, lr, l2, weight_decay, b1, b2, eps):
        """This problem at other hyper-parameters: the data's parts (the permutations, the Gram
        form, the loss at ``w0``) shared, the rest set anew; what :func:`kernels.tune` evaluates
        (on the diabetes set: 3.7 us, against 26 us for a new Setup, of an evaluation's 90-150)."""
        p = copy.copy(self)
        p._set_hyper(lr, l2, weight_decay, b1, b2, eps)
        return p

    def common(self):
        return (self.rule, self.X, self.t, self.perms, self.full, self.batch, self.nb, self.gram, self.G, self.bt,
                self.tt)

    def run(self, w, state, k0, k1, traj, ckpt, stride):
        return _run_kernel(*self.common(), w, state, self.lr, self.l2, self.hyper, self.keep, k0, k1, self.thr,
                           self.srows, traj, ckpt, stride)

    def objective(self, w):
        """The objective at ``w_T``, ``dObj/dw_T`` and the direct partial in ``l2``."""
        X, t = self.X, self.t
        if self.X_val is None:
            r = X @ w - t
            n = X.shape[0]
            return (float(r @ r) / n + self.l2 * float(w @ w), (2.0 / n) * (X.T @ r) + 2.0 * self.l2 * w,
                    float(w @ w))
        r = self.X_val @ w - self.t_val
        nv = self.X_val.shape[0]
        return float(r @ r) / nv, (2.0 / nv) * (self.X_val.T @ r), 0.0

    def result(self, method, w, dh, direct, obj, nbytes):
        grads = {name: float(dh[i]) for name, i in self.names}
        grads["l2"] += direct
        if not (math.isfinite(obj) and all(math.isfinite(v) for v in grads.values())):
            return self.diverged(method, self.steps, w, nbytes, "its objective or hypergradient overflowed")
        return HypergradResult(loss=obj, d_lr=grads["lr"], d_l2=grads["l2"], w=w, bytes_stored=nbytes,
                               method=method, steps=self.steps, grads=grads, optimizer=self.optimizer)

    def diverged(self, method, k, w, nbytes, why=None):
        from .spectrum import _outside_stacklevel

        crit = None
        if self.full and self.rule == rules.SGD:
            from .spectrum import critical_lr

            # GD with decoupled decay is GD on l2 + weight_decay / (2 lr) (question 2.3.2)
            crit = critical_lr(self.X, self.l2 + self.wd / (2.0 * self.lr))
        why = why or ("its training loss left the finite range or the divergence threshold "
                      f"({self.thr:.3g})")
        warnings.warn(f"unrolled {self.optimizer} diverged at step {k} of {self.steps}: {why}; lr={self.lr!r}"
                      + (f", critical learning rate 2/lambda_max(H) = {crit!r}" if crit is not None else ""),
                      RuntimeWarning, stacklevel=_outside_stacklevel())
        nan = math.nan
        return HypergradResult(loss=math.inf, d_lr=nan, d_l2=nan, w=w, bytes_stored=nbytes, method=method,
                               steps=self.steps, diverged=True, diverged_at=int(k), lr_critical=crit,
                               grads={name: nan for name, _ in self.names}, optimizer=self.optimizer)


def _check_memory_rows(method, steps, d, rows):
    from ._problem import _check_memory

    _check_memory(method, steps, d, rows)


def reverse_opt(p: Setup):
    d = p.X.shape[1]
    _check_memory_rows("reverse", p.steps, d, p.steps * p.R + 1)
    traj = np.empty((p.steps, p.R, d))
    nbytes = traj.nbytes + d * 8  # and w_T
    w = p.w0.copy()
    state = np.zeros((2, d))
    k = p.run(w, state, 0, p.steps, traj, np.empty((0, 3, d)), 1)
    if k >= 0:
        return p.diverged("reverse", k, w, nbytes)
    obj, a, direct = p.objective(w)
    dh = np.zeros(rules.N_HYPER)
    _reverse_kernel(*p.common(), traj, p.srows, a, p.lr, p.l2, p.hyper, p.keep, 0, p.steps, np.zeros((2, d)), dh)
    return p.result("reverse", w, dh, direct, obj, nbytes)


def checkpoint_opt(p: Setup, checkpoints=None):
    d = p.X.shape[1]
    T = p.steps
    if checkpoints is not None:
        return _revolve_opt(p, checkpoints)
    S = math.isqrt(T - 1) + 1
    J = -(-T // S)
    _check_memory_rows("checkpoint", T, d, 3 * J + S * p.R)
    ckpt = np.empty((J, 3, d))
    buf = np.empty((S, p.R, d))
    nbytes = ckpt.nbytes + buf.nbytes
    w = p.w0.copy()
    state = np.zeros((2, d))
    k = p.run(w, state, 0, T, np.empty((0, p.R, d)), ckpt, S)
    if k >= 0:
        return p.diverged("checkpoint", k, w, nbytes)
    obj, a, direct = p.objective(w)
    # Reverse through segments of S steps from their stored starts ckpt[j] = (w, m, v) at step
    # j S: recompute the segment into buf, then run its adjoint. The segments are driven from
    # here, not from a compiled loop: a compiled caller of the two kernels carries its own copies
    # of them, optimised again in its module, and those rounded RMSProp and Adam differently in
    # the last bit, so a process that compiled the caller and one that loaded it from the disk
    # cache disagreed. Called from Python, each kernel runs its own code, and checkpointing gives
    # reverse mode's bits exactly, for 2 sqrt(T) calls of a few microseconds.
    dh = np.zeros(rules.N_HYPER)
    astate = np.zeros((2, d))
    ws = np.empty(d)  # w stays w_T, the result
    nockpt = np.empty((0, 3, d))
    common = p.common()
    for j in range(J - 1, -1, -1):
        k0, k1 = j * S, min(T, j * S + S)
        ws[:], state[0], state[1] = ckpt[j, 0], ckpt[j, 1], ckpt[j, 2]
        _run_kernel(*common, ws, state, p.lr, p.l2, p.hyper, p.keep, k0, k1, np.inf, p.srows, buf, nockpt, 1)
        _reverse_kernel(*common, buf, p.srows, a, p.lr, p.l2, p.hyper, p.keep, k0, k1, astate, dh)
    return p.result("checkpoint", w, dh, direct, obj, nbytes)


def _revolve_opt(p: Setup, checkpoints):
    """``checkpoints`` snapshot slots of ``(w, m, v)`` and the binomial schedule of revolve, as
    for gradient descent (:mod:`.checkpoint`); ``bytes_stored = checkpoints 3 d 8``."""
    from .checkpoint import _revolve_plan

    d = p.X.shape[1]
    T = p.steps
    _check_memory_rows("checkpoint", T, d, 3 * checkpoints)
    snaps = np.zeros((checkpoints, 3, d))
    snaps[0, 0] = p.w0
    slot_k = np.zeros(checkpoints, dtype=np.int64)
    nbytes = snaps.nbytes
    w = p.w0.copy()
    state = np.zeros((2, d))
    k = p.run(w, state, 0, T, np.empty((0, p.R, d)), np.empty((0, 3, d)), 1)  # the forward pass, storing nothing
    if k >= 0:
        return p.diverged("checkpoint", k, w, nbytes)
    obj, a, direct = p.objective(w)
    dh = np.zeros(rules.N_HYPER)
    _revolve_opt_kernel(*p.common(), snaps, slot_k, _revolve_plan(T, checkpoints), a, p.lr, p.l2, p.hyper, p.keep,
                        dh)
    return p.result("checkpoint", w, dh, direct, obj, nbytes)


def forward_opt(p: Setup):
    d = p.X.shape[1]
    qs = np.array([i for _, i in p.names], dtype=np.int64)
    P = qs.shape[0]
    TW = np.zeros((P, d))
    TS = np.zeros((P, 2, d))
    TG = np.empty((P, d))
    nbytes = TW.nbytes + TS.nbytes
    w = p.w0.copy()
    state = np.zeros((2, d))
    k = _tangent_kernel(*p.common(), w, state, p.lr, p.l2, p.hyper, p.keep, p.steps, p.thr, qs, TW, TS, TG)
    if k >= 0:
        return p.diverged("forward", k, w, nbytes)
    obj, a, direct = p.objective(w)
    dh = np.zeros(rules.N_HYPER)
    for idx in range(P):
        dh[qs[idx]] = float(a @ TW[idx])
    return p.result("forward", w, dh, direct, obj, nbytes)


def unrolled_opt(p: Setup):
    """The plain forward pass (no derivative)."""
    d = p.X.shape[1]
    w = p.w0.copy()
    state = np.zeros((2, d))
    none = np.empty((0, 3, d))
    k = p.run(w, state, 0, p.steps, np.empty((0, p.R, d)), none, 1)
    if k >= 0:
        return p.diverged("forward_pass", k, w, 0)
    obj, _, _ = p.objective(w)
    return HypergradResult(loss=obj, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=0, method="forward_pass",
                           steps=p.steps, optimizer=p.optimizer)
