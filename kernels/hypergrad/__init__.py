"""kernels.hypergrad(X, t, *, lr, l2=0.0, steps, ...) -- hypergradients through unrolled gradient
descent (homework section 2), four ways, and through SGD, RMSProp and Adam (issue 15). Calling
this module calls the function :func:`kernels.hypergrad.hypergrad` (same signature, same
result); the module holds the methods.

Setting (homework section 2, with ``k = 0 ... T-1`` and ``T = steps``)::

    L~(w) = (1/n) ||X w - t||^2 + l2 ||w||^2                       (training loss)
    w_{k+1} = w_k - lr * g_k,   g_k = grad L~(w_k) = H w_k - b
    H = (2/n) X^T X + 2 l2 I,   b = (2/n) X^T t                    (constant Hessian)

The objective is ``L~(w_T)`` by default. With ``X_val``, ``t_val`` it is the validation error
``(1/n_v) ||X_val w_T - t_val||^2`` -- *without* an ``l2`` term: the penalty is part of
training, not of the criterion the hyper-parameters are judged by, so ``l2`` reaches the
validation objective only through ``w_T``. :func:`hypergrad` returns the objective and its
derivatives ``d_lr = dObj/dlr`` and ``d_l2 = dObj/dl2``, computed by one of four methods that
trade memory for time (all four agree to ~1e-12 relative on well-conditioned problems), one
module each:

================  ===============================================  ============================
``method``        how                                              memory (``bytes_stored``)
================  ===============================================  ============================
``"reverse"``     reverse mode over the stored trajectory          Theta(T d)
                  (:mod:`.reverse`)
``"checkpoint"``  reverse mode, recomputing from sqrt(T) segment   O(sqrt(T) d), or ``k d`` with
                  starts, or the binomial schedule of revolve      ``checkpoints=k``
                  (:mod:`.checkpoint`)
``"forward"``     forward mode, two tangents (:mod:`.forward`)     O(d), independent of T
``"exact"``       closed form on the eigendecomposition of         the eigen-factors; time
                  ``X^T X`` (:mod:`.exact`)                        independent of T
================  ===============================================  ============================

Every optimizer (``optimizer="gd" | "sgd" | "rmsprop" | "adam"``, with ``batch_size``, ``seed``,
``weight_decay`` and the optimizer's own ``beta`` / ``beta1``, ``beta2``, ``eps``): the result's
``grads`` holds the derivative in every continuous hyper-parameter. Plain gradient descent
takes the four methods above; the other optimizers (and GD with ``weight_decay``) are unrolled
by :mod:`.unroll` (its compiled kernels) and :mod:`.optimizer_methods` (the methods driving
them), which differentiate the package's own update rules with their adjoints and tangents
(beside the rules, in :mod:`kernels.optim.rules`): ``"reverse"`` (stored trajectory
and optimizer state), ``"checkpoint"`` (sqrt(T) segments, or revolve with ``checkpoints=k``),
``"forward"`` (one tangent per hyper-parameter, O(d)); ``"exact"`` is GD only and refuses
the others with a ``ValueError``. :func:`tune` (:mod:`.hpo`, ``kernels.tune``) chooses
hyper-parameters on a validation set by hypergradient descent in log space, with a safeguard
and a stopping rule.

The other modules: :mod:`.descent` (the unrolled descent and adjoint step the iterative
methods share, and :func:`unrolled_loss`), :mod:`.spectrum` (:func:`critical_lr` and the
divergence report: a run that diverges returns ``diverged=True`` and ``d_lr = d_l2 = nan``,
with a warning naming ``2 / lambda_max(H)``), :mod:`.tuning` (:func:`optimal_lr_one_step`,
:func:`tune_lr`), :mod:`.graph` (:func:`unroll_graph`), :mod:`._problem` (the checks at the
door, the result types and the dtype policy: float32 or float64 in, float64 inside and out).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

from ._api import hypergrad
from ._problem import (  # noqa: F401
    DIVERGENCE_FACTOR, MEMORY_MARGIN, METHODS, HypergradResult, TrajectoryMemoryError, TuneResult, available_memory,
)
from .checkpoint import _binomial_reps, _revolve_plan, _segments  # noqa: F401
from .descent import unrolled_loss
from .graph import unroll_graph
from .hpo import TuningResult, tune
from .spectrum import critical_lr
from .tuning import optimal_lr_one_step, tune_lr
from .unroll import OPTIMIZERS

__all__ = ["hypergrad", "HypergradResult", "TuneResult", "TrajectoryMemoryError", "METHODS", "critical_lr",
           "unrolled_loss", "optimal_lr_one_step", "tune_lr", "unroll_graph", "tune", "TuningResult", "OPTIMIZERS"]


class _CallableModule(types.ModuleType):
    """This module's class: calling the module calls :func:`hypergrad`, so that
    ``kernels.hypergrad(X, t, ...)`` works while ``import kernels.hypergrad as m`` gives the
    module (assigning a module's ``__class__`` is supported Python since 3.5)."""

    def __call__(self, *args, **kwargs):
        return hypergrad(*args, **kwargs)

    def __reduce__(self):
        # pickled by name, as a plain module is (a closure calling kernels.hypergrad can then be
        # sent to another process, e.g. a dask worker)
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(hypergrad)  # what inspect.signature(kernels.hypergrad) reports
