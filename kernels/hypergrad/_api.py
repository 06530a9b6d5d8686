"""The public entry point :func:`hypergrad`: it checks its arguments and runs the method asked
for (one module each: :mod:`.reverse`, :mod:`.checkpoint`, :mod:`.forward`, :mod:`.exact`;
:mod:`.optimizer_methods` over the kernels of :mod:`.unroll` for the optimizers other than
plain gradient descent)."""

from __future__ import annotations

import dataclasses

from .._validate import finite_float, positive_int
from ._problem import METHODS, OPTIMIZER_NAMES, HypergradResult, _hyper, _problem
from .checkpoint import checkpoint
from .exact import _exact
from .forward import forward
from .reverse import reverse
from .optimizer_methods import Setup, checkpoint_opt, forward_opt, reverse_opt, unrolled_opt

#: The defaults of the optimizers' own hyper-parameters (as :mod:`kernels.optim`).
OPTIMIZER_DEFAULTS = {"rmsprop": dict(beta=0.9, eps=1e-8), "adam": dict(beta1=0.9, beta2=0.999, eps=1e-8)}


def _optimizer_args(X, optimizer, batch_size, seed, weight_decay, beta, beta1, beta2, eps):
    """Check the optimizer and its hyper-parameters; returns ``(batch_size, seed, wd, b1, b2, eps)``
    in the rules' layout (RMSProp's ``beta`` is ``b2``)."""
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a string, got {type(optimizer).__name__} {optimizer!r}")
    if optimizer not in OPTIMIZER_NAMES:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES}, got {optimizer!r}")
    given = dict(beta=beta, beta1=beta1, beta2=beta2, eps=eps)
    own = OPTIMIZER_DEFAULTS.get(optimizer, {})
    for name, value in given.items():
        if value is not None and name not in own:
            raise ValueError(f"{name} is not a hyper-parameter of optimizer={optimizer!r} "
                             f"(its own are: {', '.join(own) or 'none'}), got {name}={value!r}")
    vals = {name: (own[name] if given[name] is None else given[name]) for name in own}
    for name in ("beta", "beta1", "beta2"):
        if name in vals:
            vals[name] = finite_float(vals[name], name, low=0.0, high=1.0, high_open=True)
    if "eps" in vals:
        vals["eps"] = finite_float(vals["eps"], "eps", low=0.0)
    wd = finite_float(weight_decay, "weight_decay", low=0.0, high=1.0, high_open=True)
    if batch_size is not None:
        if optimizer == "gd":
            raise ValueError(f"optimizer='gd' is full batch; for mini-batches use optimizer='sgd', got "
                             f"batch_size={batch_size!r}")
        batch_size = positive_int(batch_size, "batch_size")
        if batch_size > X.shape[0]:
            raise ValueError(f"batch_size must be <= n = {X.shape[0]} (the rows of X), got {batch_size}")
    seed = positive_int(seed, "seed", minimum=0)
    b1 = vals.get("beta1", 0.0)
    b2 = vals.get("beta2", vals.get("beta", 0.0))
    return batch_size, seed, wd, b1, b2, vals.get("eps", 0.0)


def hypergrad(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse", checkpoints=None,
              optimizer="gd", batch_size=None, seed=0, weight_decay=0.0, beta=None, beta1=None, beta2=None,
              eps=None) -> HypergradResult:
    """Objective after ``steps`` steps of an optimizer and its derivatives in every continuous
    hyper-parameter (homework section 2; :mod:`kernels.hypergrad` describes the methods, and
    each method's module its formulas). ``kernels.hypergrad(...)``, the module called, is this.

    Parameters
    ----------
    X : (n, d) float32 or float64; t : (n,) same dtype. Finite.
    lr : float > 0, the learning rate eta. l2 : float >= 0, the penalty lambda~.
    steps : int >= 1, the horizon T.
    w0 : (d,) same dtype, default zeros.
    X_val, t_val : (n_v, d) and (n_v,), optional, given together: the objective becomes the
        validation error ``(1/n_v) ||X_val w_T - t_val||^2`` (no ``l2`` term).
    method : "reverse" | "checkpoint" | "forward" | "exact" (``"exact"``: gradient descent only).
    checkpoints : int in [1, steps], only with ``method="checkpoint"``: the number of snapshot
        slots of the binomial (revolve) schedule. Default ``None``, ``ceil(sqrt(T))``-step
        segments.
    optimizer : "gd" (full-batch gradient descent, the default) | "sgd" | "rmsprop" | "adam":
        the update rules of :func:`kernels.gd`, :func:`kernels.sgd`, :func:`kernels.rmsprop`,
        :func:`kernels.adam`, with their defaults and semantics; ``w_T`` is the weights those
        functions return for the same arguments (to rounding).
    batch_size, seed : mini-batches as :func:`kernels.sgd` draws them (``None``: full batch;
        not for ``"gd"``).
    weight_decay : float in [0, 1), the decoupled decay of equation (5).
    beta (RMSProp), beta1, beta2 (Adam), eps (both): their own hyper-parameters; ``None`` is the
        optimizer's default (0.9, 0.9, 0.999, 1e-8). Giving one the optimizer does not have is
        a ``ValueError``.

    Returns
    -------
    :class:`HypergradResult` (float64 throughout): ``loss``, ``d_lr``, ``d_l2`` and ``grads``,
    the derivatives in ``lr``, ``l2``, ``weight_decay`` and the optimizer's own
    hyper-parameters. See :mod:`kernels.hypergrad.spectrum` and :mod:`kernels.hypergrad.unroll`
    for divergence.
    """
    _check_method(method)
    X, t, w0, X_val, t_val = _problem(X, t, w0, X_val, t_val)
    return _hypergrad(X, t, w0, X_val, t_val, lr=lr, l2=l2, steps=steps, method=method, checkpoints=checkpoints,
                      optimizer=optimizer, batch_size=batch_size, seed=seed, weight_decay=weight_decay, beta=beta,
                      beta1=beta1, beta2=beta2, eps=eps)


def _check_method(method):
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__} {method!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _hypergrad(X, t, w0, X_val, t_val, *, lr, l2=0.0, steps, method="reverse", checkpoints=None, optimizer="gd",
               batch_size=None, seed=0, weight_decay=0.0, beta=None, beta1=None, beta2=None, eps=None, _setups=None):
    """:func:`hypergrad` on data :func:`._problem` has already checked and coerced (``w0`` an
    array) and a ``method`` :func:`_check_method` has passed: :func:`kernels.tune` checks its
    data once, not once per evaluation (on the diabetes set, 47 us of a 150 us evaluation).
    Checks the rest of the arguments as ``hypergrad``, with its defaults. ``_setups``, a dict
    the caller keeps across calls that differ only in the hyper-parameters (``lr``, ``l2``,
    ``weight_decay``, ``beta``...), holds the first call's :class:`Setup` for the others."""
    lr, l2 = _hyper(lr, l2)
    steps = positive_int(steps, "steps")
    batch_size, seed, wd, b1, b2, eps = _optimizer_args(X, optimizer, batch_size, seed, weight_decay, beta, beta1,
                                                        beta2, eps)
    if method == "exact" and optimizer != "gd":
        raise ValueError(f"method='exact' is the closed form of full-batch gradient descent (a linear "
                         f"recursion); optimizer={optimizer!r} has none: use method='reverse', 'checkpoint' or "
                         f"'forward'")
    if checkpoints is not None:
        if method != "checkpoint":
            raise ValueError(f"checkpoints is only used by method='checkpoint', got method={method!r} "
                             f"with checkpoints={checkpoints!r}")
        checkpoints = positive_int(checkpoints, "checkpoints")
        if checkpoints > steps:
            raise ValueError(f"checkpoints must be <= steps = {steps}, got {checkpoints}")
    if optimizer == "gd" and (wd == 0.0 or method == "exact"):
        return _gd(X, t, w0, X_val, t_val, lr, l2, steps, method, checkpoints, wd)
    if _setups is None or "setup" not in _setups:
        p = Setup(X, t, w0, X_val, t_val, optimizer, lr, l2, steps, wd, batch_size, seed, b1, b2, eps)
        if _setups is not None:
            _setups["setup"] = p
    else:
        p = _setups["setup"].at(lr, l2, wd, b1, b2, eps)
    if method == "forward":
        return forward_opt(p)
    if method == "reverse":
        return reverse_opt(p)
    return checkpoint_opt(p, checkpoints)


def _gd(X, t, w0, X_val, t_val, lr, l2, steps, method, checkpoints, wd):
    """Plain gradient descent by the GD-specific methods. Decoupled decay enters as the penalty
    ``l2 + wd / (2 lr)`` of the descent (question 2.3.2; only "exact" takes this path with
    ``wd > 0``), and ``d/d weight_decay = (d/dl2 through the descent) / (2 lr)``, since both move
    ``w_{k+1}`` by ``-w_k`` and ``-2 lr w_k`` respectively."""
    if method == "exact":
        res = _exact(X, t, w0, X_val, t_val, lr, l2 + wd / (2.0 * lr), steps, l2_obj=l2)
    elif method == "forward":
        res = forward(X, t, w0, X_val, t_val, lr, l2, steps)
    elif method == "reverse":
        res = reverse(X, t, w0, X_val, t_val, lr, l2, steps)
    else:
        res = checkpoint(X, t, w0, X_val, t_val, lr, l2, steps, checkpoints)
    names = ("lr", "l2", "weight_decay")
    if res.diverged:
        return dataclasses.replace(res, grads={name: res.d_lr for name in names})
    direct = float(res.w @ res.w) if X_val is None else 0.0
    through = res.d_l2 - direct  # d/dl2 through the descent only
    d_wd = through / (2.0 * lr)
    # divided by lr twice, not by lr * lr, which underflows to zero for lr below 1e-154
    d_lr = res.d_lr - (d_wd * wd / lr if wd else 0.0)
    return dataclasses.replace(res, d_lr=d_lr, grads=dict(lr=d_lr, l2=res.d_l2, weight_decay=d_wd))


def unrolled(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, optimizer="gd", batch_size=None, seed=0,
             weight_decay=0.0, beta=None, beta1=None, beta2=None, eps=None) -> HypergradResult:
    """The plain forward pass of any optimizer, the objective with no derivative (as
    :func:`kernels.unrolled_loss` for gradient descent, which it calls when it can)."""
    from .descent import unrolled_loss

    X, t, w0, X_val, t_val = _problem(X, t, w0, X_val, t_val)
    lr, l2 = _hyper(lr, l2)
    steps = positive_int(steps, "steps")
    batch_size, seed, wd, b1, b2, eps = _optimizer_args(X, optimizer, batch_size, seed, weight_decay, beta, beta1,
                                                        beta2, eps)
    if optimizer == "gd" and wd == 0.0:
        return unrolled_loss(X, t, lr=lr, l2=l2, steps=steps, w0=w0, X_val=X_val, t_val=t_val)
    return unrolled_opt(Setup(X, t, w0, X_val, t_val, optimizer, lr, l2, steps, wd, batch_size, seed, b1, b2, eps))
