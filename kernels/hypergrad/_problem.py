"""What every hypergradient method shares: the checks at the door, the result types, the
objective at ``w_T`` and the memory guard of the methods that store states.

dtype policy: ``X``, ``t``, ``w0`` (and ``X_val``, ``t_val``) must share a dtype, float32 or
float64. Everything is computed in float64 (float32 inputs are upcast once, in the wrapper):
the reverse pass accumulates ``T`` adjoint steps and float32 would lose the answer. ``w`` is
returned as float64, ``loss``, ``d_lr`` and ``d_l2`` as Python floats. Non-finite data are a
``ValueError`` (every iterate would be non-finite, which is not divergence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _aligned, _validate
from .._validate import finite_float, float_array

METHODS = ("reverse", "checkpoint", "forward", "exact")
OPTIMIZER_NAMES = ("gd", "sgd", "rmsprop", "adam")

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
    if need < _validate.CHECKED_ALLOCATION_BYTES:  # not worth reading /proc/meminfo for (a tuner
        return  # calls this per evaluation); numpy's own MemoryError stands behind such sizes
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
    docstring of each method's module for its exact figure), ``method`` and ``steps`` as asked.
    ``diverged``/``diverged_at``/``lr_critical`` report divergence (:mod:`.spectrum`).
    ``grads`` maps every continuous hyper-parameter of the ``optimizer`` to the derivative of
    the objective in it (``lr``, ``l2``, ``weight_decay``, and ``beta`` for RMSProp, ``beta1``,
    ``beta2`` for Adam, ``eps`` for both); ``d_lr`` and ``d_l2`` are two of its entries.
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
    grads: dict = field(default_factory=dict, repr=False)
    optimizer: str = "gd"


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


def _finite(arr, name):
    """``arr`` float64 and C-contiguous, or raise if it holds a NaN or an infinity."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    # The sum is finite when every value is (a NaN or an infinity carries through it), and it
    # needs no temporary, unlike np.isfinite(arr).all() with its (n, d) bool array: the
    # memory-scaling measurement sees every temporary of the wrapper. Only a sum that overflows,
    # or a bad value, takes the exact test.
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(arr.sum())
    if not math.isfinite(total):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ValueError(f"{name} must contain only finite values, got {bad} non-finite")
    return arr


def _problem(X, t, w0, X_val, t_val):
    """Validate and coerce the data: C-contiguous float64 copies where needed, X 64-byte aligned
    (:mod:`kernels._aligned`)."""
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
    out[0] = _aligned.for_many_passes(out[0])  # every method passes over X many times
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


def _noise_scale(X, t, w0):
    """The scale of the loss at ``w0``, the penalty aside: ``(t.t + |X|_F^2 |w0|^2) / n``."""
    return (float(t @ t) + float(np.einsum("ij,ij->", X, X)) * float(w0 @ w0)) / X.shape[0]


def _noise(X, t, w0, l2):
    return _NOISE_FLOOR * (_noise_scale(X, t, w0) + l2 * float(w0 @ w0))


def _objective_grad(X, t, w, g, loss, l2, X_val, t_val):
    """The objective at ``w_T`` and ``a_T = dObj/dw_T``, and the direct partial dObj/dl2."""
    if X_val is None:
        return loss, g.copy(), float(w @ w)
    r = X_val @ w - t_val
    nv = X_val.shape[0]
    return float(r @ r) / nv, (2.0 / nv) * (X_val.T @ r), 0.0
