"""Linear regression and its optimizers (homework sections 1 and 2.3), compiled end to end.

The model is linear regression with the homework's objective, equation (1) plus the L2 penalty
of section 2.3::

    L(w) = (1/n) ||X w - t||^2 + l2 ||w||^2,      grad L(w) = (2/n) X^T (X w - t) + 2 l2 w

with ``X`` of shape ``(n, d)``, ``t`` of shape ``(n,)`` and ``w`` of shape ``(d,)``. On a
mini-batch ``B`` of ``b`` rows the mean runs over the batch: ``(1/b) sum_{i in B} r_i^2`` and
``(2/b) sum_{i in B} r_i x_i``, with ``r_i = x_i . w - t_i`` (equation (2)).

One file per concern:

============  ==========================================================================
``linreg``    ``loss``, ``grad``, ``min_norm_solution``: the objective, its passes over
              ``X`` (in fixed row blocks, :mod:`kernels._rows`), the Gram form
``rules``     the update rules, one small compiled function each: SGD, RMSProp, Adagrad,
              Adam, the ``l2`` penalty folded into the gradient and the decoupled weight
              decay of equation (5); callable from Python and from compiled code
``drivers``   ``gd``, ``sgd``, ``rmsprop``, ``adagrad``, ``adam``: the one time-stepping
              loop that calls the rules, mini-batches, recording, divergence (the semantics
              of :class:`OptimResult` are in its docstring)
============  ==========================================================================
"""

from __future__ import annotations

from . import drivers, linreg, rules  # noqa: F401
from .drivers import OptimResult, _run_checks, adagrad, adam, gd, rmsprop, sgd  # noqa: F401
from .linreg import _gram, grad, loss, min_norm_solution  # noqa: F401

__all__ = ["OptimResult", "loss", "grad", "min_norm_solution", "gd", "sgd", "rmsprop", "adagrad", "adam"]
