"""The public entry point :func:`hypergrad`: it checks its arguments and runs the method asked
for (one module each: :mod:`.reverse`, :mod:`.checkpoint`, :mod:`.forward`, :mod:`.exact`)."""

from __future__ import annotations

from .._validate import positive_int
from ._problem import METHODS, HypergradResult, _hyper, _problem
from .checkpoint import checkpoint
from .exact import _exact
from .forward import forward
from .reverse import reverse


def hypergrad(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse",
              checkpoints=None) -> HypergradResult:
    """Objective after ``steps`` steps of gradient descent and its derivatives in ``lr`` and
    ``l2`` (homework section 2; :mod:`kernels.hypergrad` describes the four methods, and each
    method's module its formulas). ``kernels.hypergrad(...)``, the module called, is this.

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
    :class:`HypergradResult` (float64 throughout; see :mod:`kernels.hypergrad.spectrum` for
    divergence).
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
    if method == "forward":
        return forward(X, t, w0, X_val, t_val, lr, l2, steps)
    if method == "reverse":
        return reverse(X, t, w0, X_val, t_val, lr, l2, steps)
    return checkpoint(X, t, w0, X_val, t_val, lr, l2, steps, checkpoints)
