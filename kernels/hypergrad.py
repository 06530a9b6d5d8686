"""Hypergradients through unrolled gradient descent (homework section 2), four ways.

Setting (homework section 2, with ``k = 0 ... T-1`` and ``T = steps``)::

    L~(w) = (1/n) ||X w - t||^2 + l2 ||w||^2                       (training loss)
    w_{k+1} = w_k - lr * g_k,   g_k = grad L~(w_k) = H w_k - b
    H = (2/n) X^T X + 2 l2 I,   b = (2/n) X^T t                    (constant Hessian)

The objective is ``L~(w_T)`` by default. With ``X_val``, ``t_val`` it is the validation error
``(1/n_v) ||X_val w_T - t_val||^2`` -- *without* an ``l2`` term: the penalty is part of
training, not of the criterion the hyper-parameters are judged by, so ``l2`` reaches the
validation objective only through ``w_T``. :func:`hypergrad` returns the objective and its
derivatives ``d_lr = dObj/dlr`` and ``d_l2 = dObj/dl2``, computed by one of four methods that
trade memory for time (all four agree to ~1e-12 relative on well-conditioned problems):

``"reverse"``  (reverse mode over a stored trajectory; memory Theta(T d))
    The forward pass stores ``w_0 ... w_T`` in one ``(T+1, d)`` float64 array that the Python
    wrapper allocates (so profilers see it); ``bytes_stored = (T+1) d 8`` exactly. The reverse
    pass runs the adjoint ``a_k = dObj/dw_k`` backwards from ``a_T = dObj/dw_T``::

        d_lr += -a_{k+1} . g_k
        d_l2 += -lr a_{k+1} . (2 w_k)
        a_k   = a_{k+1} - lr H a_{k+1}

    plus, for the default objective, the direct partial ``dL~/dl2 = ||w_T||^2``. One pass over
    the rows of ``X`` per step gives both the Hessian-vector product and the recomputed
    gradient term: ``s = X a`` and ``h = X^T s`` are accumulated row by row, and then
    ``a . g_k = (2/n) (h . w_k - s . t) + 2 l2 a . w_k`` -- the same number as
    ``(2/n) (X a) . (X w_k - t) + 2 l2 a . w_k`` (``h . w_k = (X a) . (X w_k)``) without a
    second product ``X w_k``, so a reverse step costs what a forward step costs. (The price:
    ``h . w_k - s . t`` cancels when the residual ``X w_k - t`` is much smaller than ``t``;
    a residual 1e-4 of ``t`` costs about 4 of the 16 digits of that one term.)

``"checkpoint"``  (reverse mode with recomputation; memory O(sqrt(T) d) by default)
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

``"forward"``  (forward mode; memory O(d), independent of T)
    Carries the tangent ``v_k = dw_k/dl2`` with ``v_{k+1} = v_k - lr (H v_k + 2 w_k)``, its
    Hessian-vector product fused into the forward row sweep (``X w`` and ``X v`` together,
    then ``X^T r`` and ``X^T X v`` together). The tangent ``u_k = dw_k/dlr`` obeys
    ``u_{k+1} = (I - lr H) u_k - g_k``, ``u_0 = 0``; because the Hessian is constant,
    ``g_{k+1} = (I - lr H) g_k``, so ``u_k = -k g_{k-1}`` exactly, and it is carried in that
    form (the last gradient) at no extra cost. ``bytes_stored = 2 d 8`` (the two tangents).

``"exact"``  (closed form; time independent of T)
    With ``X = U diag(sigma) V^T`` (from ``eigh`` of the smaller Gram matrix, ``X X^T`` or
    ``X^T X``, formed by a compiled kernel: several times cheaper than an SVD), ``H`` has
    eigenvalues ``mu_i = (2/n) sigma_i^2 + 2 l2`` on the columns of ``V`` and ``2 l2`` on their orthogonal
    complement (where ``b`` has no component: with ``n < d`` that whole subspace just shrinks by
    ``(1 - 2 lr l2)^T``). Per eigen-direction, with ``m = 1 - lr mu``::

        z_T = m^T z_0 + G beta,          G = lr sum_{k<T} m^k = (1 - m^T) / mu
        dz_T/dlr = T m^(T-1) (beta - mu z_0)
        dz_T/dl2 = -2 lr T m^(T-1) z_0 - 2 lr^2 S_1 beta,   S_1 = sum_{k<T} k m^(k-1)

    (``l2`` moves both the eigenvalues and the fixed point ``w* = H^-1 b``; these are the exact
    derivatives of the closed form), evaluated without cancellation (``expm1``/``log1p``, and a
    binomial series for ``S_1`` when ``T lr mu`` is small). ``bytes_stored`` is the size of the
    eigen-factors held: ``U`` (n, r) when ``n <= d``, else ``V`` (d, r), and ``sigma`` (r,).

Divergence. Gradient descent on this quadratic is stable iff ``lr < 2 / lambda_max(H)``
(:func:`critical_lr`), and then the training loss never increases. The kernels track the
training loss at every iterate (it comes free from the gradient sweep) and call the run
*diverged* at the first step ``k`` where ``L~(w_k) > 2 L~(w_0)`` (plus a 1e-20 noise floor on
the scale of the data) or where it is not finite -- which can only happen when
``lr >= 2 / lambda_max``. Nothing raises: the result has ``diverged=True``,
``diverged_at=k``, ``w = w_k``, ``loss = inf``, ``d_lr = d_l2 = nan`` (undefined, and flagged,
never silent), ``lr_critical = 2 / lambda_max(H)``, and a :class:`RuntimeWarning` names the
critical learning rate. Without divergence ``diverged_at = -1`` (as in :mod:`kernels.optim`).
An unstable ``lr`` whose blow-up stays under the 2x threshold within ``T`` steps yields the
finite, exact finite-horizon values.

dtype policy: ``X``, ``t``, ``w0`` (and ``X_val``, ``t_val``) must share a dtype, float32 or
float64. Everything is computed in float64 (float32 inputs are upcast once, in the wrapper):
the reverse pass accumulates ``T`` adjoint steps and float32 would lose the answer. ``w`` is
returned as float64, ``loss``, ``d_lr`` and ``d_l2`` as Python floats. Non-finite data are a
``ValueError`` (every iterate would be non-finite, which is not divergence).

Parallelism: none. A step of the (200, 500) benchmark problem is ~10 microseconds, less than
the cost of starting a parallel region, and the time-stepping loop itself must stay serial.
The row sweeps are register-blocked four rows at a time instead (four dot products share each
load of the vector; four rows update the accumulator in one read-modify-write).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._config import jit
from . import _validate
from ._validate import finite_float, float_array, positive_int

METHODS = ("reverse", "checkpoint", "forward", "exact")

#: The run diverged at the first iterate whose training loss exceeds this factor times the
#: loss at ``w_0`` (or is not finite); impossible for a stable step size.
DIVERGENCE_FACTOR = 2.0
#: Relative noise floor of that test, on the scale of the data (guards ``L~(w_0) ~ 0``).
_NOISE_FLOOR = 1e-20
#: ``"reverse"`` and ``"checkpoint"`` refuse, before allocating, to store more than this fraction
#: of the memory available (:func:`available_memory`); the rest is left to the data, the
#: wrapper's temporaries and the other processes on the machine.
MEMORY_MARGIN = _validate.MEMORY_MARGIN
available_memory = _validate.available_memory


class TrajectoryMemoryError(_validate.AllocationError):
    """The stored trajectory of ``steps`` x ``d`` weights would not fit in the memory available.

    Both a :class:`MemoryError` (what it is) and a :class:`ValueError` (the ``steps`` argument is
    too large for this method on this machine), raised before anything is allocated."""


def _check_memory(method, steps, d, rows):
    """Refuse a stored trajectory of ``rows`` x ``d`` float64 that would not fit (see MEMORY_MARGIN)."""
    need = rows * d * 8
    avail = available_memory()
    if avail is not None and need > MEMORY_MARGIN * avail:
        raise TrajectoryMemoryError(
            f"method={method!r} with steps={steps} and d={d} would store {rows} x {d} float64 weights, "
            f"{need} bytes ({need / 2**30:.3g} GiB), but only {avail} bytes ({avail / 2**30:.3g} GiB) are available "
            f"(at most {MEMORY_MARGIN:.0%} of that is used): lower steps, or use method='checkpoint' "
            f"(O(sqrt(steps) d)), 'forward' (O(d)) or 'exact'"
        )


@dataclass(frozen=True, eq=False)
class HypergradResult:
    """What :func:`hypergrad` returns.

    ``loss`` is the objective at ``w_T`` (training loss ``L~`` or validation error), ``d_lr``
    and ``d_l2`` its derivatives, ``w`` the final weights ``w_T`` (float64, shape ``(d,)``),
    ``bytes_stored`` the memory the method held to differentiate through the steps (see the
    module docstring for each method's exact figure), ``method`` and ``steps`` as asked.
    ``diverged``/``diverged_at``/``lr_critical`` report divergence (module docstring).
    """

    loss: float
    d_lr: float
    d_l2: float
    w: np.ndarray = field(repr=False)
    bytes_stored: int | None
    method: str
    steps: int
    diverged: bool = False
    diverged_at: int = -1
    lr_critical: float | None = None


@dataclass(frozen=True, eq=False)
class TuneResult:
    """What :func:`tune_lr` returns: the final ``lr`` (and ``l2``), and per meta-step the
    ``lr`` and ``l2`` used and the objective they gave (``inf`` where the run diverged)."""

    lr: float
    l2: float
    lr_history: np.ndarray = field(repr=False)
    l2_history: np.ndarray = field(repr=False)
    objective_history: np.ndarray = field(repr=False)
    method: str


# ---------------------------------------------------------------------------------------------
# Compiled kernels. They assume clean input: X C-contiguous float64 (n, d), vectors float64.
# ---------------------------------------------------------------------------------------------


@jit()
def _grad_sweep(X, t, w, g, coef):  # pragma: no cover - compiled
    """``g = coef X^T (X w - t)`` in one pass over the rows; returns ``sum r_i^2``."""
    n, d = X.shape
    for j in range(d):
        g[j] = 0.0
    ss = 0.0
    n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for j in range(d):
            wj = w[j]
            s0 += X[i, j] * wj
            s1 += X[i + 1, j] * wj
            s2 += X[i + 2, j] * wj
            s3 += X[i + 3, j] * wj
        r0 = s0 - t[i]
        r1 = s1 - t[i + 1]
        r2 = s2 - t[i + 2]
        r3 = s3 - t[i + 3]
        ss += r0 * r0 + r1 * r1 + r2 * r2 + r3 * r3
        c0 = coef * r0
        c1 = coef * r1
        c2 = coef * r2
        c3 = coef * r3
        for j in range(d):
            g[j] += c0 * X[i, j] + c1 * X[i + 1, j] + c2 * X[i + 2, j] + c3 * X[i + 3, j]
    for i in range(n4, n):
        s0 = 0.0
        for j in range(d):
            s0 += X[i, j] * w[j]
        r0 = s0 - t[i]
        ss += r0 * r0
        c0 = coef * r0
        for j in range(d):
            g[j] += c0 * X[i, j]
    return ss


@jit()
def _hess_sweep(X, a, s, h):  # pragma: no cover - compiled
    """``s = X a`` and ``h = X^T s`` in one pass over the rows."""
    n, d = X.shape
    for j in range(d):
        h[j] = 0.0
    n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for j in range(d):
            aj = a[j]
            s0 += X[i, j] * aj
            s1 += X[i + 1, j] * aj
            s2 += X[i + 2, j] * aj
            s3 += X[i + 3, j] * aj
        s[i] = s0
        s[i + 1] = s1
        s[i + 2] = s2
        s[i + 3] = s3
        for j in range(d):
            h[j] += s0 * X[i, j] + s1 * X[i + 1, j] + s2 * X[i + 2, j] + s3 * X[i + 3, j]
    for i in range(n4, n):
        s0 = 0.0
        for j in range(d):
            s0 += X[i, j] * a[j]
        s[i] = s0
        for j in range(d):
            h[j] += s0 * X[i, j]


@jit()
def _fused_sweep(X, t, w, v, g, s, h, coef):  # pragma: no cover - compiled
    """One pass over the rows for two vectors: ``g = coef X^T (X w - t)``, ``s = X v``,
    ``h = X^T s``; returns ``sum r_i^2``. Each row is loaded once for both dot products and
    once for both accumulations, which is what makes a tangent (or an adjoint step overlapped
    with a recomputed forward step) cost much less than a second sweep."""
    n, d = X.shape
    for j in range(d):
        g[j] = 0.0
        h[j] = 0.0
    ss = 0.0
    n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        p0 = 0.0
        p1 = 0.0
        p2 = 0.0
        p3 = 0.0
        for j in range(d):
            wj = w[j]
            vj = v[j]
            x0 = X[i, j]
            x1 = X[i + 1, j]
            x2 = X[i + 2, j]
            x3 = X[i + 3, j]
            s0 += x0 * wj
            s1 += x1 * wj
            s2 += x2 * wj
            s3 += x3 * wj
            p0 += x0 * vj
            p1 += x1 * vj
            p2 += x2 * vj
            p3 += x3 * vj
        r0 = s0 - t[i]
        r1 = s1 - t[i + 1]
        r2 = s2 - t[i + 2]
        r3 = s3 - t[i + 3]
        ss += r0 * r0 + r1 * r1 + r2 * r2 + r3 * r3
        s[i] = p0
        s[i + 1] = p1
        s[i + 2] = p2
        s[i + 3] = p3
        c0 = coef * r0
        c1 = coef * r1
        c2 = coef * r2
        c3 = coef * r3
        for j in range(d):
            x0 = X[i, j]
            x1 = X[i + 1, j]
            x2 = X[i + 2, j]
            x3 = X[i + 3, j]
            g[j] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
            h[j] += p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3
    for i in range(n4, n):
        s0 = 0.0
        p0 = 0.0
        for j in range(d):
            s0 += X[i, j] * w[j]
            p0 += X[i, j] * v[j]
        r0 = s0 - t[i]
        ss += r0 * r0
        s[i] = p0
        c0 = coef * r0
        for j in range(d):
            g[j] += c0 * X[i, j]
            h[j] += p0 * X[i, j]
    return ss


@jit()
def _finish_grad(w, g, l2):  # pragma: no cover - compiled
    """Add the penalty's gradient ``2 l2 w`` to ``g``; returns ``||w||^2``."""
    ww = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        ww += wj * wj
        g[j] += 2.0 * l2 * wj
    return ww


@jit()
def _descend_kernel(X, t, w, g, lr, l2, steps, noise, ckpt, stride, buf):  # pragma: no cover
    """``steps`` steps of gradient descent from ``w`` (updated in place).

    Stores ``w_k`` into ``ckpt[k // stride]`` when ``stride`` divides ``k`` (and ``w_T`` too
    when there is a row for it), and the states inside the last segment (offsets ``m >= 1``
    from its checkpoint) into ``buf[m - 1]``. ``ckpt`` with no rows stores nothing (the plain
    forward pass). Returns ``(diverged_at, loss)``: ``(-1, L~(w_T))`` with ``g = grad L~(w_T)``,
    or the first step ``k`` whose loss breaks the divergence test, with ``w = w_k``.
    """
    n, d = X.shape
    coef = 2.0 / n
    inv_n = 1.0 / n
    J = ckpt.shape[0]
    last = (J - 1) * stride if J > 0 else steps + 1
    thr = 0.0
    for k in range(steps + 1):
        ss = _grad_sweep(X, t, w, g, coef)
        loss = ss * inv_n + l2 * _finish_grad(w, g, l2)
        if k == 0:
            thr = 2.0 * loss + noise  # DIVERGENCE_FACTOR
        elif not (loss <= thr):
            return k, loss
        if k == steps:
            if steps % stride == 0 and steps // stride < J:
                ckpt[steps // stride, :] = w
            return -1, loss
        if k % stride == 0 and k // stride < J:
            ckpt[k // stride, :] = w
        elif k > last and k - last - 1 < buf.shape[0]:
            buf[k - last - 1, :] = w
        for j in range(d):
            w[j] -= lr * g[j]
    return -1, 0.0  # not reached


@jit()
def _adjoint_step(t, wk, a, s, h, lr, l2, coef):  # pragma: no cover - compiled
    """One reverse step at ``w_k`` given ``s = X a``, ``h = X^T s``: updates ``a`` to ``a_k``
    in place and returns the step's contributions to ``(d_lr, d_l2)``."""
    st = 0.0
    for i in range(s.shape[0]):
        st += s[i] * t[i]
    hw = 0.0
    aw = 0.0
    for j in range(a.shape[0]):
        hw += h[j] * wk[j]
        aw += a[j] * wk[j]
    ag = coef * (hw - st) + 2.0 * l2 * aw  # a_{k+1} . g_k
    for j in range(a.shape[0]):
        a[j] -= lr * (coef * h[j] + 2.0 * l2 * a[j])
    return -ag, -2.0 * lr * aw


@jit()
def _reverse_kernel(X, t, traj, a, lr, l2, steps):  # pragma: no cover - compiled
    """The adjoint sweep over a stored trajectory ``traj[k] = w_k``; ``a`` enters as
    ``dObj/dw_T`` and leaves as ``dObj/dw_0``. Returns ``(d_lr, d_l2)`` without the direct
    partial of the objective."""
    n, d = X.shape
    coef = 2.0 / n
    s = np.empty(n)
    h = np.empty(d)
    d_lr = 0.0
    d_l2 = 0.0
    for k in range(steps - 1, -1, -1):
        _hess_sweep(X, a, s, h)
        dl, dq = _adjoint_step(t, traj[k], a, s, h, lr, l2, coef)
        d_lr += dl
        d_l2 += dq
    return d_lr, d_l2


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
    s = np.empty(n)
    h = np.empty(d)
    g = np.empty(d)
    w = np.empty(d)
    d_lr = 0.0
    d_l2 = 0.0
    orient = 0
    for j in range(J - 1, -1, -1):
        L = min(S, steps - j * S)
        recompute = j > 0
        n_rec = S - 1 if recompute else 0
        if recompute:
            w[:] = ckpt[j - 1]
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
                buf[_slot(1 - orient, i + 1, S), :] = w
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
    s = np.empty(n)
    h = np.empty(d)
    g = np.empty(d)
    w = np.empty(d)
    d_lr = 0.0
    d_l2 = 0.0
    for o in range(ops.shape[0]):
        src = ops[o, 1]
        if ops[o, 0] == 0:
            w[:] = snaps[src]
            for _ in range(ops[o, 2]):
                _grad_sweep(X, t, w, g, coef)
                _finish_grad(w, g, l2)
                for j in range(d):
                    w[j] -= lr * g[j]
            if ops[o, 3] >= 0:
                snaps[ops[o, 3], :] = w
        else:
            _hess_sweep(X, a, s, h)
            if src >= 0:
                dl, dq = _adjoint_step(t, snaps[src], a, s, h, lr, l2, coef)
            else:
                dl, dq = _adjoint_step(t, w, a, s, h, lr, l2, coef)
            d_lr += dl
            d_l2 += dq
    return d_lr, d_l2


@jit()
def _forward_mode_kernel(X, t, w, g, gprev, v, lr, l2, steps, noise):  # pragma: no cover
    """Gradient descent carrying ``v = dw/dl2`` (fused sweep) and ``gprev = g_{k-1}`` (so
    ``dw_k/dlr = -k gprev``). Returns ``(diverged_at, loss)`` like :func:`_descend_kernel`;
    on success ``w = w_T``, ``g = grad L~(w_T)``, ``gprev = g_{T-1}``, ``v = v_T``."""
    n, d = X.shape
    coef = 2.0 / n
    inv_n = 1.0 / n
    s = np.empty(n)
    h = np.empty(d)
    thr = 0.0
    for k in range(steps + 1):
        if k == steps:
            ss = _grad_sweep(X, t, w, g, coef)
        else:
            ss = _fused_sweep(X, t, w, v, g, s, h, coef)
        loss = ss * inv_n + l2 * _finish_grad(w, g, l2)
        if k == 0:
            thr = 2.0 * loss + noise  # DIVERGENCE_FACTOR
        elif not (loss <= thr):
            return k, loss
        if k == steps:
            return -1, loss
        for j in range(d):
            gj = g[j]
            v[j] -= lr * (coef * h[j] + 2.0 * l2 * v[j] + 2.0 * w[j])
            w[j] -= lr * gj
            gprev[j] = gj
    return -1, 0.0  # not reached


# ---------------------------------------------------------------------------------------------
# Validation and the public API
# ---------------------------------------------------------------------------------------------


@jit()
def _count_nonfinite(a):  # pragma: no cover - compiled
    # A compiled count instead of np.isfinite(a).all(), which allocates an (n, d) bool array:
    # the memory-scaling measurement sees every temporary of the wrapper.
    bad = 0
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            bad += 1
    return bad


def _finite(arr, name):
    """``arr`` float64 and C-contiguous, or raise if it holds a NaN or an infinity."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = _count_nonfinite(arr.reshape(-1))
    if bad:
        raise ValueError(f"{name} must contain only finite values, got {bad} non-finite")
    return arr


def _problem(X, t, w0, X_val, t_val):
    """Validate and coerce the data: C-contiguous float64 copies where needed."""
    X = float_array(X, "X", ndim=2)
    t = float_array(t, "t", ndim=1, dtype=X.dtype, like="X")
    n, d = X.shape
    if t.shape[0] != n:
        raise ValueError(f"t must have length n = X.shape[0] = {n}, got shape {t.shape}")
    if w0 is None:
        w0 = np.zeros(d)
    else:
        w0 = float_array(w0, "w0", ndim=1, dtype=X.dtype, like="X")
        if w0.shape[0] != d:
            raise ValueError(f"w0 must have length d = X.shape[1] = {d}, got shape {w0.shape}")
    if (X_val is None) != (t_val is None):
        raise ValueError(
            f"X_val and t_val must be given together, got X_val={'None' if X_val is None else 'array'} "
            f"and t_val={'None' if t_val is None else 'array'}"
        )
    if X_val is not None:
        X_val = float_array(X_val, "X_val", ndim=2, dtype=X.dtype, like="X")
        t_val = float_array(t_val, "t_val", ndim=1, dtype=X.dtype, like="X")
        if X_val.shape[1] != d:
            raise ValueError(f"X_val must have d = {d} columns like X, got shape {X_val.shape}")
        if t_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"t_val must have length X_val.shape[0] = {X_val.shape[0]}, got shape {t_val.shape}")
    out = []
    for arr, name in ((X, "X"), (t, "t"), (w0, "w0"), (X_val, "X_val"), (t_val, "t_val")):
        if arr is None:
            out.append(None)
            continue
        out.append(_finite(arr, name))
    _representable(*out[:3])
    if X_val is not None:
        _representable(out[3], out[4], np.zeros(d), names=("X_val", "t_val", "w0"))
    return tuple(out)


#: Data whose Hessian ``(2/n) X^T X`` or loss at ``w0`` would come within this of float64's
#: overflow threshold are refused: every method would return inf/NaN (and the eigendecomposition
#: of an overflowed Gram matrix meaningless finite numbers).
_MAX_REPRESENTABLE = 1e300


def _representable(X, t, w0, names=("X", "t", "w0")):
    n, d = X.shape
    nx, nt, nw = names
    peak = lambda a: max(float(a.max()), -float(a.min())) if a.size else 0.0  # noqa: E731  (no temporaries)
    px, pt, pw = peak(X), peak(t), peak(w0)
    if 2.0 * px * px * max(n, d) > _MAX_REPRESENTABLE:
        raise ValueError(f"{nx} is too large for float64: (2/n) {nx}^T {nx} would overflow (max |{nx}| = {px:.3g})")
    r = pt + px * pw * d  # bounds |X w0 - t|
    if r * r * n > _MAX_REPRESENTABLE:
        name = nt if pt >= px * pw * d else nw
        raise ValueError(f"{name} is too large for float64: the loss at w0 would overflow (max |{name}| = "
                         f"{pt if name == nt else pw:.3g})")


def _hyper(lr, l2):
    lr = finite_float(lr, "lr", low=0.0, low_open=True)
    # the Hessian's 2 l2 I must not overflow either (l2 = 1e308 gave a silent NaN from "exact")
    l2 = finite_float(l2, "l2", low=0.0, high=_MAX_REPRESENTABLE / 2)
    return lr, l2


def _noise(X, t, w0, l2):
    n = X.shape[0]
    scale = (float(t @ t) + float(np.einsum("ij,ij->", X, X)) * float(w0 @ w0)) / n + l2 * float(w0 @ w0)
    return _NOISE_FLOOR * scale


def _objective_grad(X, t, w, g, loss, l2, X_val, t_val):
    """The objective at ``w_T`` and ``a_T = dObj/dw_T``, and the direct partial dObj/dl2."""
    if X_val is None:
        return loss, g.copy(), float(w @ w)
    r = X_val @ w - t_val
    nv = X_val.shape[0]
    return float(r @ r) / nv, (2.0 / nv) * (X_val.T @ r), 0.0


def critical_lr(X, l2=0.0) -> float:
    """``2 / lambda_max(H)`` with ``H = (2/n) X^T X + 2 l2 I``: gradient descent on ``L~`` is
    stable iff ``lr`` is below it (``inf`` when ``H = 0``). Exact, from the largest
    eigenvalue of the smaller Gram matrix (LAPACK through NumPy)."""
    X = float_array(X, "X", ndim=2)
    l2 = finite_float(l2, "l2", low=0.0)
    X = _finite(X, "X")
    # lambda_max(X^T X) = s^2 lambda_max((X/s)^T (X/s)): with s a power of two near max |X|
    # (an exact division) the Gram matrix of data near 1e308 cannot overflow inside LAPACK.
    peak = float(np.max(np.abs(X))) if X.size else 0.0
    s = 1.0 if peak == 0.0 or 1e-100 < peak < 1e100 else math.ldexp(1.0, math.frexp(peak)[1] - 1)
    gram = np.empty((min(X.shape),) * 2)
    _gram_kernel(X if s == 1.0 else X / s, gram)
    top = max(float(_eigh_serial(gram, values_only=True)[-1]), 0.0)
    lam = 2.0 * s * (s * top) / X.shape[0] + 2.0 * l2
    return math.inf if lam == 0.0 else 2.0 / lam


def _diverged(X, l2, lr, steps, method, k, w, nbytes):
    crit = critical_lr(X, l2)
    warnings.warn(
        f"unrolled gradient descent diverged at step {k} of {steps}: lr={lr!r} is at or above the "
        f"critical learning rate 2/lambda_max(H) = {crit!r}",
        RuntimeWarning,
        stacklevel=3,
    )
    return HypergradResult(
        loss=math.inf, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=nbytes, method=method,
        steps=steps, diverged=True, diverged_at=int(k), lr_critical=crit,
    )


def unrolled_loss(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None) -> HypergradResult:
    """The plain forward pass: ``steps`` steps of gradient descent and the objective at
    ``w_T``, with no derivative (``d_lr = d_l2 = nan``, ``method="forward_pass"``,
    ``bytes_stored = 0``). The time baseline of the hypergradient methods and the function
    their finite-difference tests differentiate. Divergence as in :func:`hypergrad`."""
    X, t, w0, X_val, t_val = _problem(X, t, w0, X_val, t_val)
    lr, l2 = _hyper(lr, l2)
    steps = positive_int(steps, "steps")
    w = w0.copy()
    g = np.empty_like(w)
    none = np.empty((0, w.shape[0]))  # stores nothing
    k, loss = _descend_kernel(X, t, w, g, lr, l2, steps, _noise(X, t, w0, l2), none, 1, none)
    if k >= 0:
        return _diverged(X, l2, lr, steps, "forward_pass", k, w, 0)
    obj, _, _ = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
    return HypergradResult(loss=obj, d_lr=math.nan, d_l2=math.nan, w=w, bytes_stored=0, method="forward_pass",
                           steps=steps)


def _segments(steps, checkpoints):
    if checkpoints is None:
        S = math.isqrt(steps - 1) + 1  # ceil(sqrt(T)) for T >= 1
    else:
        S = -(-steps // checkpoints)
    J = -(-steps // S)
    return S, J


def hypergrad(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse",
              checkpoints=None) -> HypergradResult:
    """Objective after ``steps`` steps of gradient descent and its derivatives in ``lr`` and
    ``l2`` (homework section 2; the module docstring gives the formulas and each method).

    Parameters
    ----------
    X : (n, d) float32 or float64; t : (n,) same dtype. Finite.
    lr : float > 0, the learning rate eta. l2 : float >= 0, the penalty lambda~.
    steps : int >= 1, the horizon T.
    w0 : (d,) same dtype, default zeros.
    X_val, t_val : (n_v, d) and (n_v,), optional, given together: the objective becomes the
        validation error ``(1/n_v) ||X_val w_T - t_val||^2`` (no ``l2`` term).
    method : "reverse" | "checkpoint" | "forward" | "exact".
    checkpoints : int in [1, steps], only with ``method="checkpoint"``: the number of snapshot
        slots of the binomial (revolve) schedule; default ``None``, uniform segments of
        ``ceil(sqrt(T))`` steps with the recomputation overlapped with the adjoint.

    Returns
    -------
    :class:`HypergradResult` (float64 throughout; see the module docstring for divergence).
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__} {method!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    X, t, w0, X_val, t_val = _problem(X, t, w0, X_val, t_val)
    lr, l2 = _hyper(lr, l2)
    steps = positive_int(steps, "steps")
    if checkpoints is not None:
        if method != "checkpoint":
            raise ValueError(f"checkpoints is only used by method='checkpoint', got method={method!r} "
                             f"with checkpoints={checkpoints!r}")
        checkpoints = positive_int(checkpoints, "checkpoints")
        if checkpoints > steps:
            raise ValueError(f"checkpoints must be <= steps = {steps}, got {checkpoints}")
    if method == "exact":
        return _exact(X, t, w0, X_val, t_val, lr, l2, steps)

    n, d = X.shape
    noise = _noise(X, t, w0, l2)
    w = w0.copy()
    g = np.empty(d)
    if method == "forward":
        gprev = np.zeros(d)
        v = np.zeros(d)
        nbytes = gprev.nbytes + v.nbytes
        k, loss = _forward_mode_kernel(X, t, w, g, gprev, v, lr, l2, steps, noise)
        if k >= 0:
            return _diverged(X, l2, lr, steps, method, k, w, nbytes)
        obj, a, direct = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
        d_lr = -steps * float(a @ gprev)
        d_l2 = float(a @ v) + direct
        return HypergradResult(loss=obj, d_lr=d_lr, d_l2=d_l2, w=w, bytes_stored=nbytes, method=method, steps=steps)

    if method == "reverse":
        _check_memory(method, steps, d, steps + 1)
        traj = np.empty((steps + 1, d))  # the whole trajectory, visible to profilers
        buf = np.empty((0, d))
        stride = 1
        nbytes = traj.nbytes
    elif checkpoints is None:
        S, J = _segments(steps, None)
        _check_memory(method, steps, d, J + S - 1)
        traj = np.empty((J, d))
        buf = np.empty((S - 1, d))
        stride = S
        nbytes = traj.nbytes + buf.nbytes
    else:  # binomial (revolve) schedule: `checkpoints` snapshot slots, slot 0 holds w_0
        _check_memory(method, steps, d, checkpoints)
        traj = np.empty((checkpoints, d))
        buf = np.empty((0, d))
        stride = steps + 1  # the forward pass stores w_0 only
        nbytes = traj.nbytes
    k, loss = _descend_kernel(X, t, w, g, lr, l2, steps, noise, traj[:1] if checkpoints else traj, stride, buf)
    if k >= 0:
        return _diverged(X, l2, lr, steps, method, k, w, nbytes)
    obj, a, direct = _objective_grad(X, t, w, g, loss, l2, X_val, t_val)
    if method == "reverse":
        d_lr, d_l2 = _reverse_kernel(X, t, traj, a, lr, l2, steps)
    elif checkpoints is None:
        d_lr, d_l2 = _checkpoint_reverse_kernel(X, t, traj, buf, stride, a, lr, l2, steps)
    else:
        d_lr, d_l2 = _revolve_kernel(X, t, traj, _revolve_plan(steps, checkpoints), a, lr, l2)
    return HypergradResult(loss=obj, d_lr=float(d_lr), d_l2=float(d_l2) + direct, w=w, bytes_stored=nbytes,
                           method=method, steps=steps)


# ---------------------------------------------------------------------------------------------
# The exact method (NumPy/LAPACK in the wrapper; O(n d min(n, d)) whatever T)
# ---------------------------------------------------------------------------------------------


def _powers(x, T):
    """For ``m = 1 - x`` (elementwise, ``x = lr mu >= 0``): ``m^T``, ``1 - m^T`` and
    ``m^(T-1)``, via ``log1p``/``expm1`` where ``0 <= x < 1`` (no cancellation when ``x`` is
    tiny), by plain powers where ``m <= 0``."""
    x = np.asarray(x, dtype=np.float64)
    mT = np.empty_like(x)
    one_minus = np.empty_like(x)
    mT1 = np.empty_like(x)
    small = x < 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        lg = np.log1p(-x[small])
        mT[small] = np.exp(T * lg)
        one_minus[small] = -np.expm1(T * lg)
        mT1[small] = np.exp((T - 1) * lg)
        m = 1.0 - x[~small]
        mT[~small] = np.power(m, T)
        one_minus[~small] = 1.0 - mT[~small]
        mT1[~small] = np.power(m, T - 1)
    return mT, one_minus, mT1


def _s1(x, T, mT1, one_minus):
    """``S_1 = sum_{k<T} k m^(k-1)`` with ``m = 1 - x``: ``((1 - m^T) - T x m^(T-1)) / x^2``,
    whose numerator is P(Binomial(T, x) >= 2) and cancels when ``T x`` is small; there it is
    summed as the series ``sum_{j>=2} C(T, j) x^(j-2) m^(T-j)`` instead."""
    out = np.empty_like(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        direct = T * x > 1.0
        xd = x[direct]
        out[direct] = (one_minus[direct] - T * xd * mT1[direct]) / (xd * xd)
        xs = x[~direct]
        if xs.size:
            m = 1.0 - xs
            # term_2 = C(T,2) m^(T-2); term_{j+1} = term_j (T-j)/(j+1) x/m
            term = 0.5 * T * (T - 1) * np.exp((T - 2) * np.log1p(-xs)) if T >= 2 else np.zeros_like(xs)
            total = term.copy()
            ratio = xs / m
            for j in range(2, min(T, 200)):
                term = term * ((T - j) / (j + 1.0)) * ratio
                total += term
                if np.all(term <= 1e-17 * total):
                    break
            out[~direct] = total
    return out


@jit()
def _gram_kernel(X, G):  # pragma: no cover - compiled
    """``G = X X^T`` (``n <= d``) or ``X^T X`` (``n > d``), serial and deterministic.

    Compiled rather than BLAS: on a busy two-core machine a threaded OpenBLAS level-3 call of
    this size was measured taking 40 ms instead of 0.4 ms (spinning worker threads), and the
    exact method is meant to be the fast path."""
    n, d = X.shape
    if n <= d:
        for i in range(n):
            for j in range(i, n):
                acc = 0.0
                for k in range(d):
                    acc += X[i, k] * X[j, k]
                G[i, j] = acc
                G[j, i] = acc
    else:
        for a in range(d):
            for b in range(d):
                G[a, b] = 0.0
        for i in range(n):
            for a in range(d):
                xa = X[i, a]
                for b in range(a, d):
                    G[a, b] += xa * X[i, b]
        for a in range(d):
            for b in range(a):
                G[a, b] = G[b, a]


_BLAS_CONTROLLER = []


def _eigh_serial(G, values_only=False):
    """``numpy.linalg.eigh`` with LAPACK's BLAS limited to one thread when threadpoolctl is
    installed (an optional dependency; without it, plain ``eigh``). For these few-hundred-square
    matrices threads gain nothing, and on a busy two-core machine OpenBLAS's spinning workers
    were measured making ``eigh`` several times slower. The limit is process-wide for the
    duration of the call."""
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER.append(ThreadpoolController())
        except Exception:  # not installed, or it cannot inspect this process
            _BLAS_CONTROLLER.append(None)
    ctl = _BLAS_CONTROLLER[0]
    fn = np.linalg.eigvalsh if values_only else np.linalg.eigh
    if ctl is None:
        return fn(G)
    with ctl.limit(limits=1, user_api="blas"):
        return fn(G)


class _Eigen:
    """The eigen-directions of ``X^T X`` with nonzero ``sigma``, from ``eigh`` of the smaller
    Gram matrix: ``X X^T = U diag(sigma^2) U^T`` when ``n <= d`` (then ``V = X^T U diag(1/sigma)``
    is never formed: ``V^T y = (U^T X y) / sigma`` and ``V z = X^T U (z / sigma)`` are two
    matrix-vector products), else ``X^T X = V diag(sigma^2) V^T``. Directions with
    ``sigma^2 <= min(n, d) eps sigma_max^2`` are numerically null and are left to the
    complement (their ``mu`` is ``2 l2`` to within rounding)."""

    def __init__(self, X):
        n, d = X.shape
        m = min(n, d)
        G = np.empty((m, m))
        _gram_kernel(X, G)
        lam, E = _eigh_serial(G)
        keep = lam > m * np.finfo(np.float64).eps * max(float(lam[-1]), 0.0)
        self.X = X
        self.sig = np.sqrt(lam[keep])
        self.E = np.ascontiguousarray(E[:, keep])  # U (n, r) or V (d, r)
        self.wide = n <= d
        self.nbytes = self.E.nbytes + self.sig.nbytes

    def project(self, y):
        """``V^T y`` for ``y`` in R^d."""
        if self.wide:
            return (self.E.T @ (self.X @ y)) / self.sig
        return self.E.T @ y

    def lift(self, z):
        """``V z`` in R^d."""
        if self.wide:
            return self.X.T @ (self.E @ (z / self.sig))
        return self.E @ z


def _exact_components(X, t, w0):
    eig = _Eigen(X)
    n = X.shape[0]
    beta = (2.0 / n) * eig.project(X.T @ t)  # V^T b
    z0 = eig.project(w0)
    w0_perp = w0 - eig.lift(z0)
    return eig, beta, z0, w0_perp


def _exact_state(mu, z0, beta, w0_perp, lr, l2, T):
    """``z_T`` (eigen-coordinates), ``w_perp_T`` and the quantities the derivatives need."""
    x = lr * mu
    mT, one_minus, mT1 = _powers(x, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.where(x > 0, lr * one_minus / np.where(x > 0, x, 1.0), lr * T)
    zT = mT * z0 + G * beta
    xc = np.array([2.0 * lr * l2])
    mcT, _, mcT1 = _powers(xc, T)
    return x, mT, one_minus, mT1, G, zT, w0_perp * mcT[0], mcT1[0]


def _exact_diverged_at(mu, z0, beta, w0_perp, lr, l2, T, loss0, noise):
    """First ``k`` in ``[1, T]`` with ``L~(w_k) > 2 L~(w_0) + noise``, or -1. ``L~(w_k) - L* =
    (1/2) sum_i mu_i m_i^(2k) e_i^2`` is convex in ``k``, so the set of good ``k`` is an
    interval starting at 0 and a bisection finds its end."""
    mus = np.concatenate([mu, [2.0 * l2]])
    with np.errstate(divide="ignore", invalid="ignore"):
        e0 = np.where(mu > 0, z0 - beta / np.where(mu > 0, mu, 1.0), 0.0)
    coeffs = np.concatenate([0.5 * mu * e0 * e0, [0.5 * 2.0 * l2 * float(w0_perp @ w0_perp)]])
    ms = np.abs(1.0 - lr * mus)
    keep = (coeffs > 0) & (ms > 0)
    coeffs, ms = coeffs[keep], ms[keep]
    if coeffs.size == 0 or np.all(ms <= 1.0):
        return -1
    D0 = float(coeffs.sum())
    thr = loss0 + D0 + noise  # L_k > 2 L_0 + noise  <=>  D_k > L_0 + D_0 + noise (L* = L_0 - D_0)

    def bad(k):
        with np.errstate(over="ignore"):
            return float(np.sum(coeffs * np.exp(2.0 * k * np.log(ms)))) > thr

    if not bad(T):
        return -1
    lo, hi = 0, T  # bad(lo) false, bad(hi) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bad(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _exact(X, t, w0, X_val, t_val, lr, l2, T):
    n, d = X.shape
    eig, beta, z0, w0_perp = _exact_components(X, t, w0)
    mu = (2.0 / n) * eig.sig * eig.sig + 2.0 * l2
    nbytes = eig.nbytes
    r0 = X @ w0 - t
    loss0 = float(r0 @ r0) / n + l2 * float(w0 @ w0)
    k = _exact_diverged_at(mu, z0, beta, w0_perp, lr, l2, T, loss0, _noise(X, t, w0, l2))
    if k >= 0:
        _, _, _, _, _, zk, wpk, _ = _exact_state(mu, z0, beta, w0_perp, lr, l2, k)
        return _diverged(X, l2, lr, T, "exact", k, eig.lift(zk) + wpk, nbytes)
    x, mT, one_minus, mT1, G, zT, wpT, mcT1 = _exact_state(mu, z0, beta, w0_perp, lr, l2, T)
    w = eig.lift(zT) + wpT
    # d z_T / d lr and d z_T / d l2 per eigen-direction; the complement shrinks by m_c^T.
    dz_dlr = T * mT1 * (beta - mu * z0)
    S1 = _s1(x, T, mT1, one_minus)
    dz_dl2 = -2.0 * lr * T * mT1 * z0 - 2.0 * lr * lr * S1 * beta
    dwp_dlr = T * mcT1 * (-2.0 * l2) * w0_perp
    dwp_dl2 = T * mcT1 * (-2.0 * lr) * w0_perp
    if X_val is None:
        resid = X @ w - t
        obj = float(resid @ resid) / n + l2 * float(w @ w)
        a_z = mu * zT - beta  # the gradient of L~ at w_T, in eigen-coordinates
        a_perp = 2.0 * l2 * wpT
        direct = float(w @ w)
    else:
        r = X_val @ w - t_val
        nv = X_val.shape[0]
        obj = float(r @ r) / nv
        a = (2.0 / nv) * (X_val.T @ r)
        a_z = eig.project(a)
        a_perp = a - eig.lift(a_z)
        direct = 0.0
    d_lr = float(a_z @ dz_dlr) + float(a_perp @ dwp_dlr)
    d_l2 = float(a_z @ dz_dl2) + float(a_perp @ dwp_dl2) + direct
    return HypergradResult(loss=obj, d_lr=d_lr, d_l2=d_l2, w=w, bytes_stored=nbytes, method="exact", steps=T)


# ---------------------------------------------------------------------------------------------
# Question 2.2.3, hypergradient descent, and the graph of question 2.1.1
# ---------------------------------------------------------------------------------------------


def optimal_lr_one_step(X, t, w0=None) -> float:
    """The learning rate that minimises the unregularised loss after one step (question 2.2.3)::

        eta* = n a^T X X^T a / (2 ||X X^T a||^2),    a = X w0 - t

    (``L_1(eta) = (1/n) ||a - (2 eta / n) X X^T a||^2`` is a convex quadratic in ``eta``,
    question 2.2.2). Computed in float64. ``ValueError`` when ``X^T a = 0`` (``w0`` already
    minimises the loss, so every ``eta`` is optimal).
    """
    X, t, w0, _, _ = _problem(X, t, w0, None, None)
    a = X @ w0 - t
    q = X @ (X.T @ a)
    den = float(q @ q)
    if den == 0.0:
        raise ValueError("the gradient X^T (X w0 - t) is zero: w0 already minimises the loss and every eta is optimal")
    return X.shape[0] * float(a @ q) / (2.0 * den)


def tune_lr(X, t, *, lr0, l2=0.0, steps, meta_steps, meta_lr, X_val=None, t_val=None, method="reverse",
            tune_l2=False, w0=None) -> TuneResult:
    """Hypergradient descent on ``log(lr)`` (and on ``log(l2)`` with ``tune_l2=True``, which
    needs ``l2 > 0``): ``meta_steps`` times, compute the objective and its hypergradient with
    :func:`hypergrad` (``method``), then ``log lr <- log lr - meta_lr * lr * d_lr`` (the
    chain rule for ``d/dlog lr``; likewise ``l2``). Working in logs keeps ``lr`` positive
    and makes ``meta_lr`` scale-free in ``lr``. A run that diverges (see :func:`hypergrad`)
    records ``inf`` and halves ``lr`` instead of stepping. Returns a :class:`TuneResult` whose
    histories hold, for each meta-step, the ``lr``/``l2`` used and the objective obtained.
    """
    lr = finite_float(lr0, "lr0", low=0.0, low_open=True)
    l2 = finite_float(l2, "l2", low=0.0)
    meta_steps = positive_int(meta_steps, "meta_steps")
    meta_lr = finite_float(meta_lr, "meta_lr", low=0.0, low_open=True)
    if not isinstance(tune_l2, (bool, np.bool_)):
        raise TypeError(f"tune_l2 must be a bool, got {type(tune_l2).__name__} {tune_l2!r}")
    if tune_l2 and l2 <= 0.0:
        raise ValueError(f"tune_l2=True descends on log(l2), so l2 must be > 0, got {l2}")
    lrs, l2s, objs = [], [], []
    for _ in range(meta_steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = hypergrad(X, t, lr=lr, l2=l2, steps=steps, w0=w0, X_val=X_val, t_val=t_val, method=method)
        lrs.append(lr)
        l2s.append(l2)
        objs.append(res.loss)
        if res.diverged:
            lr *= 0.5
            continue
        lr = _log_step(lr, meta_lr * lr * res.d_lr, "lr", meta_lr)
        if tune_l2:
            l2 = _log_step(l2, meta_lr * l2 * res.d_l2, "l2", meta_lr)
    return TuneResult(lr=lr, l2=l2, lr_history=np.array(lrs), l2_history=np.array(l2s),
                      objective_history=np.array(objs), method=method)


def _log_step(value, step, name, meta_lr):
    """``value * exp(-step)``, or a ValueError naming ``meta_lr`` when the step leaves the
    floating-point range (``value`` would become 0 or inf, and the next run would refuse it)."""
    try:
        new = value * math.exp(-step)
    except OverflowError:
        new = math.inf
    if not 0.0 < new < math.inf:
        raise ValueError(f"meta_lr={meta_lr!r} is too large: a hypergradient step of {-step:.3g} on log({name}) "
                         f"took {name} from {value!r} to {new!r}")
    return new


def unroll_graph(steps=2) -> str:
    """The computation graph of question 2.1.1 as Graphviz DOT text, for ``steps`` steps.

    Nodes ``w0 ... wT``, ``grad L0 ... grad L(T-1)``, ``L0 ... LT``, and the hyper-parameters
    ``lambda~`` and ``eta``. Edges: ``w_k -> L_k``, ``lambda~ -> L_k`` (the loss), ``w_k ->
    grad L_k``, ``lambda~ -> grad L_k`` (its gradient), and ``w_k``, ``grad L_k``, ``eta ->
    w_{k+1}`` (the update). The data ``X``, ``t`` are constants and not drawn.
    """
    steps = positive_int(steps, "steps")
    lines = ["digraph unrolled_gd {", "  rankdir=LR;", '  "lambda~" [shape=box];', '  "eta" [shape=box];']
    for k in range(steps + 1):
        lines.append(f'  "w{k}";')
        lines.append(f'  "L{k}" [shape=doublecircle];')
        if k < steps:
            lines.append(f'  "grad L{k}";')
    for k in range(steps + 1):
        lines.append(f'  "w{k}" -> "L{k}";')
        lines.append(f'  "lambda~" -> "L{k}";')
        if k < steps:
            lines.append(f'  "w{k}" -> "grad L{k}";')
            lines.append(f'  "lambda~" -> "grad L{k}";')
            lines.append(f'  "w{k}" -> "w{k + 1}";')
            lines.append(f'  "grad L{k}" -> "w{k + 1}";')
            lines.append(f'  "eta" -> "w{k + 1}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
