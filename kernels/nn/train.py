"""Training: :func:`fit` (mini-batch epochs with the package's compiled update rules),
:class:`Trainer` (one step at a time), :class:`History`, :func:`accuracy`.

The optimizer is :mod:`kernels.optim.rules`, the very rules behind :func:`kernels.sgd`,
:func:`kernels.rmsprop` and :func:`kernels.adam`, applied by one compiled call per step to the
model's flat parameter vector, with the same hyper-parameter names and defaults::

    g     = dL/dw + 2 l2 w                          (l2: the penalty l2 ||w||^2, coupled)
    w    <- (1 - weight_decay) w - lr u(g)          (weight_decay: equation (5), decoupled)

``u`` is ``g`` (sgd), ``g / (sqrt(v) + eps)`` with ``v <- beta v + (1 - beta) g^2`` (rmsprop),
or Adam's bias-corrected step (adam; ``beta1``, ``beta2``, ``eps``). In PyTorch terms:
``l2`` is ``torch.optim.X(weight_decay=2 l2)``; ``weight_decay`` is AdamW's ``weight_decay =
weight_decay / lr`` for Adam (and ``p.mul_(1 - weight_decay)`` before the step for the others).
The optimizer state (the moments) has the model's dtype, and a rule computes in it
(:func:`kernels.optim.rules.working`), as PyTorch's optimizers do: a float32 network is updated
in float32 arithmetic, a float64 one in float64. A float32 network's update then moves half the
state's bytes (LeNet-5 at batch 1, alternating with PyTorch's step on the 2-core Zen 5 EPYC:
2.87-3.08x faster than PyTorch with float64 moments, 3.27-3.62x with float32 ones, three A/B runs
of ``bench/bench_nn.py``) and runs Adam's square root and division on twice the lanes (its 108k
weights, one update on one thread of the 2-core Zen 4 EPYC: 61 us against 110 computed in
float64; the training step at batch 1 against PyTorch's: 3.12-4.39x against 2.80-3.34x, three
A/B runs).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from numba import prange

from .. import _validate
from .._config import jit, specialise
from ..optim.rules import ADAGRAD, ADAM, RMSPROP, SGD, update
from .model import Model

__all__ = ["History", "Trainer", "fit", "accuracy"]

#: per optimizer: its hyper-parameters and their defaults (those of kernels.sgd/rmsprop/adagrad/adam)
HYPER = {
    "sgd": {},
    "rmsprop": {"beta": 0.9, "eps": 1e-8},
    "adagrad": {"eps": 1e-10},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
_RULE_ID = {"sgd": SGD, "rmsprop": RMSPROP, "adagrad": ADAGRAD, "adam": ADAM}  # the rules' ids


#: parameters per parallel block of an update (a fixed size: results never depend on the threads)
UPDATE_BLOCK = 16384


@jit(parallel=True)
def _step_kernel(rule, w, g, l2, state, k, lr, hyper, keep, w_prev):  # pragma: no cover - compiled
    """One update of the flat parameters ``w`` by rule ``rule`` (kernels.optim.rules.update, with
    the gradient scale 1: ``g`` is already the mean gradient); 0.0 if every weight stays finite.

    The rules are elementwise, so blocks of :data:`UPDATE_BLOCK` weights update in parallel with
    the very result of one pass (LeNet-5's 108k weights: 7 blocks). ``state`` is ``(blocks, 2,
    UPDATE_BLOCK)``, block ``b``'s moments in a C-contiguous slab of their own: a block sliced
    out of one ``(2, d)`` array has rows whose stride Numba cannot know, and there Adam's loop
    ran scalar (0.41 ms a step on LeNet-5's weights, 0.1 ms vectorised)."""
    d = w.shape[0]
    nb = (d + UPDATE_BLOCK - 1) // UPDATE_BLOCK
    if nb == 1:
        return update(rule, w, g, 1.0, l2, state[0], k, lr, hyper, keep, w_prev)
    bad = np.zeros(nb)
    for b in prange(nb):
        lo = b * UPDATE_BLOCK
        hi = min(d, lo + UPDATE_BLOCK)
        bad[b] = update(rule, w[lo:hi], g[lo:hi], 1.0, l2, state[b], k, lr, hyper, keep, w_prev[lo:hi])
    return bad.sum()


# The same update on one thread, for steps whose pass ran on one thread (a small batch): right
# after such a pass, Numba's workers are asleep and waking them costs more than they save
# (LeNet-5's 108k weights at batch 1, after the pass, on the 2-core EPYC: 108 us in parallel, 58
# on one thread). The blocks and their arithmetic are the same: the same bits.
_step_kernel_serial = specialise(_step_kernel.py_func, "_step_kernel_serial")


def _state(d, dtype):
    """The optimizer state of ``d`` weights of ``dtype``, zero, laid out for :func:`_step_kernel`."""
    return np.zeros((-(-d // UPDATE_BLOCK), 2, UPDATE_BLOCK), dtype=dtype)


@dataclass
class History:
    """What :func:`fit` records.

    ``loss[k]``: step ``k``'s mini-batch loss at the weights before its update (what a PyTorch
    loop's ``loss.item()`` records); ``train_acc[e]``: the fraction of epoch ``e``'s training
    images classified right by the logits of their step (the same forward pass, no extra one);
    ``val_acc[e]``: accuracy on ``X_val`` after epoch ``e`` (empty without ``X_val``);
    ``seconds[e]``: wall time of epoch ``e``'s steps (the validation pass excluded).
    ``diverged_at``: the first step whose loss (or updated weights) was not finite, -1 if none;
    the model then keeps the last finite weights.
    """

    loss: np.ndarray
    train_acc: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    steps: int = 0
    diverged_at: int = -1
    message: str = ""

    @property
    def diverged(self) -> bool:
        return self.diverged_at >= 0


def accuracy(model: Model, X, y, *, batch_size=512) -> float:
    """The fraction of images of ``X`` ``(N, C, H, W)`` whose predicted class (argmax of the
    logits) is the label ``y[n]``; evaluated in batches of ``batch_size``."""
    X = model.check_x(X, "X")
    y = model.check_y(y, X.shape[0])
    batch_size = _validate.positive_int(batch_size, "batch_size")
    return _accuracy(model, X, y, batch_size)


def _accuracy(model, X, y, batch_size=512):
    right = 0
    for s in range(0, X.shape[0], batch_size):
        logits = model._forward(X[s: s + batch_size], keep=False)
        right += int((np.argmax(logits, axis=1) == y[s: s + batch_size]).sum())
    return right / X.shape[0]


def _progress_bar(total, enabled):
    """A tqdm bar (shown only on runs longer than a second), or None: tqdm is the optional ``nn``
    extra, imported here only when asked for (``tests/test_layers.py`` allows it here alone), and
    training goes on without a bar if it is missing. ``import kernels`` and ``import kernels.nn``
    load no tqdm (``tests/test_nn.py`` checks it)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="img", unit_scale=True, delay=1.0, leave=False, desc="fit")


class Trainer:
    """One optimizer bound to one model: ``Trainer(model, "adam", lr=1e-3).step(x, y)`` runs one
    training step (forward, backward, update) on the batch and returns its loss at the weights
    before the update. :func:`fit` runs its steps through one of these.

    ``optimizer`` and the keywords as in :func:`fit`. The optimizer state (float64, zero at
    first) and the step count ``k`` (Adam's bias correction) live here, so successive ``step``
    calls continue one run. A non-finite loss leaves the weights alone, and an update that makes
    a weight non-finite is undone; both set ``diverged`` (and ``step`` returns the loss, which
    the caller checks: :func:`fit` stops there).
    """

    def __init__(self, model: Model, optimizer="sgd", *, lr, l2=0.0, weight_decay=0.0, **hyper):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a kernels.nn.Model (from nn.build), got {type(model).__name__}")
        if optimizer not in HYPER:
            raise ValueError(f"optimizer must be one of {sorted(HYPER)}, got {optimizer!r}")
        unknown = sorted(set(hyper) - set(HYPER[optimizer]))
        if unknown:
            raise TypeError(f"{optimizer} takes the hyper-parameters {sorted(HYPER[optimizer]) or 'none'} "
                            f"beyond lr, l2 and weight_decay, got {unknown}")
        h = dict(HYPER[optimizer], **hyper)
        for name in ("beta", "beta1", "beta2"):
            if name in h:
                h[name] = _validate.finite_float(h[name], name, low=0.0, high=1.0, high_open=True)
        if "eps" in h:
            h["eps"] = _validate.finite_float(h["eps"], "eps", low=0.0)
        self.model, self.optimizer, self.hyper = model, optimizer, h
        self._rule = _RULE_ID[optimizer]
        # the rules' (b1, b2, eps); RMSProp reads b2 as its beta
        self._rule_hyper = (h.get("beta1", 0.9), h.get("beta", h.get("beta2", 0.999)), h.get("eps", 1e-8))
        self.lr = _validate.finite_float(lr, "lr", low=0.0, low_open=True)
        self.l2 = _validate.finite_float(l2, "l2", low=0.0)
        self.weight_decay = _validate.finite_float(weight_decay, "weight_decay", low=0.0, high=1.0, high_open=True)
        self._keep = 1.0 - self.weight_decay
        self.state = _state(model.size, model.flat_params.dtype)
        self._w_prev = np.empty_like(model.flat_params)
        self.k = 0
        self.diverged = False
        self.logits = None

    def step(self, x, y) -> float:
        """One step on the batch ``x`` ``(N, C, H, W)``, labels ``y`` ``(N,)`` (checked as in
        :meth:`Model.loss_and_grad`); returns the batch loss before the update."""
        x = self.model.check_x(x)
        return self._step(x, self.model.check_y(y, x.shape[0]))

    def _update(self, n):
        """The update of the model's parameters by their gradients of a pass over ``n`` images
        (step ``k``); 0.0 if every weight stays finite. On one thread after a pass that ran on
        one (:data:`_step_kernel_serial`)."""
        model = self.model
        kernel = _step_kernel_serial if model._small(n) else _step_kernel
        return kernel(self._rule, model.flat_params, model.flat_grads, self.l2, self.state, self.k, self.lr,
                      self._rule_hyper, self._keep, self._w_prev)

    def _step(self, x, y):
        model = self.model
        loss, self.logits = model._loss_and_grad(x, y)
        if not math.isfinite(loss):
            self.diverged = True
            return loss
        if self._update(x.shape[0]) != 0.0:
            model.flat_params[...] = self._w_prev  # a weight went non-finite: keep the last finite ones
            self.diverged = True
            return loss
        self.k += 1
        return loss


def fit(model: Model, X, y, optimizer="sgd", *, lr, epochs=1, batch_size=32, seed=0, l2=0.0, weight_decay=0.0,
        X_val=None, y_val=None, progress=True, **hyper) -> History:
    """Train ``model`` in place on images ``X`` ``(N, C, H, W)`` and integer labels ``y`` ``(N,)``
    by mini-batch ``optimizer`` (``"sgd"``, ``"rmsprop"``, ``"adagrad"`` or ``"adam"``) on the
    mean softmax cross-entropy; returns a :class:`History`.

    Each epoch visits every image once, in batches of ``batch_size`` drawn without replacement
    from a permutation of ``numpy.random.default_rng(seed)`` (the last batch may be smaller).
    ``hyper``: the optimizer's own hyper-parameters, named and defaulted as in
    :func:`kernels.rmsprop` (``beta=0.9, eps=1e-8``), :func:`kernels.adam` (``beta1=0.9,
    beta2=0.999, eps=1e-8``), :func:`kernels.adagrad` (``eps=1e-10``); ``l2`` and
    ``weight_decay`` as in the module docstring. ``progress`` shows a tqdm bar with the loss
    and the throughput on runs longer than a second.

    Everything is checked before the first step (``TypeError``/``ValueError`` naming the
    argument: shapes against the spec, labels in range, finite data, hyper-parameters). A
    non-finite loss or weight stops training at once with a ``RuntimeWarning``; the model keeps
    the last finite weights and ``History.diverged_at`` says which step.
    """
    trainer = Trainer(model, optimizer, lr=lr, l2=l2, weight_decay=weight_decay, **hyper)
    epochs = _validate.positive_int(epochs, "epochs")
    batch_size = _validate.positive_int(batch_size, "batch_size")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
    X = model.check_x(X, "X")
    y = model.check_y(y, X.shape[0], "y")
    if (X_val is None) != (y_val is None):
        raise ValueError("X_val and y_val must be given together")
    if X_val is not None:
        X_val = model.check_x(X_val, "X_val")
        y_val = model.check_y(y_val, X_val.shape[0], "y_val")

    n = X.shape[0]
    per_epoch = -(-n // batch_size)
    rng = np.random.default_rng(seed)
    losses = np.full(epochs * per_epoch, np.nan)
    hist = History(loss=losses)
    bar = _progress_bar(epochs * n, progress)
    k = 0
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below, once
        try:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                order = rng.permutation(n)
                right = 0
                for s in range(0, n, batch_size):
                    idx = order[s: s + batch_size]
                    yb = y[idx]
                    losses[k] = trainer._step(X[idx], yb)
                    if trainer.diverged:
                        hist.diverged_at = k
                        break
                    k += 1
                    right += int((np.argmax(trainer.logits, axis=1) == yb).sum())
                    if bar is not None:
                        bar.update(len(idx))
                        if k % 20 == 0:
                            bar.set_postfix_str(f"loss {losses[k - 1]:.4f}", refresh=False)
                hist.seconds.append(time.perf_counter() - t0)
                if hist.diverged:
                    break
                hist.train_acc.append(right / n)
                if X_val is not None:
                    hist.val_acc.append(_accuracy(model, X_val, y_val))
        finally:
            if bar is not None:
                bar.close()
    hist.steps = k
    hist.loss = losses[: k + 1 if hist.diverged else k]
    if hist.diverged:
        hist.message = (f"training diverged at step {hist.diverged_at} (epoch {hist.diverged_at // per_epoch}): "
                        f"a non-finite loss or weight; the model keeps the last finite weights (try a smaller lr)")
        warnings.warn(hist.message, RuntimeWarning, stacklevel=2)
    return hist
