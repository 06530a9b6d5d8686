"""The rectifier, forward and backward, compiled: ``relu(x) = max(x, 0)``.

Both passes work on flat views of C-contiguous arrays and may run in place (``out is x``): the
backward pass needs only the rectified output ``y`` (``relu'(x) = [y > 0]``), so the
pre-activation is never kept. NaN propagates as in ``torch.relu`` (``relu(NaN) = NaN``), and
the gradient at 0 is 0, as PyTorch's ``threshold_backward`` gives it.

Serial loops: a training step calls these on a few hundred kilobytes at most, where a parallel
launch costs more than the pass (the batch-1 case is pure overhead). In place, each pass is its
own kernel over the one array: given ``out is x``, LLVM's run-time overlap test of the two-array
loop fails and it runs the scalar loop (10.9 us against 2.1 for a backward pass over 16k float32
values).
"""

from __future__ import annotations

from .._config import jit

__all__ = ["relu_forward", "relu_backward"]


@jit()
def _relu_forward_kernel(x, out):  # pragma: no cover - compiled
    """``out[i] = x[i] if x[i] > 0 or x[i] is NaN else 0`` over flat, equally long arrays."""
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0


@jit()
def _relu_backward_kernel(g, y, out):  # pragma: no cover - compiled
    """``out[i] = g[i] if y[i] > 0 else 0`` over flat, equally long arrays."""
    for i in range(g.shape[0]):
        out[i] = g[i] if y[i] > 0 else 0


@jit()
def _relu_forward_inplace(x):  # pragma: no cover - compiled
    """:func:`_relu_forward_kernel` with ``out`` = ``x``."""
    for i in range(x.shape[0]):
        v = x[i]
        x[i] = v if (v > 0 or v != v) else 0


@jit()
def _relu_backward_inplace(g, y):  # pragma: no cover - compiled
    """:func:`_relu_backward_kernel` with ``out`` = ``g``."""
    for i in range(g.shape[0]):
        g[i] = g[i] if y[i] > 0 else 0


def relu_forward(x, out=None):
    """``max(x, 0)`` elementwise, into ``out`` (may be ``x``: in place). ``x`` C-contiguous float."""
    if out is x:
        _relu_forward_inplace(x.reshape(-1))
        return out
    if out is None:
        out = x.copy()
    _relu_forward_kernel(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(g, y, out=None):
    """``g * [y > 0]`` elementwise, with ``y = relu(x)`` the forward output; into ``out`` (may be ``g``)."""
    if out is g:
        _relu_backward_inplace(g.reshape(-1), y.reshape(-1))
        return out
    if out is None:
        out = g.copy()
    _relu_backward_kernel(g.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out
