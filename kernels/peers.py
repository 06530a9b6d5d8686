"""Peer implementations with the same call signature as the kernels, for tests and benchmarks.

Each peer imports its library lazily, so ``kernels`` itself needs only numba and numpy. A peer
whose library is missing raises :class:`PeerUnavailable`; tests and benchmarks turn that into a
visible skip naming the library, never a silent pass.
"""

from __future__ import annotations

import importlib


class PeerUnavailable(ImportError):
    """The library a peer needs is not installed."""


def require(module: str):
    """Import ``module`` or raise :class:`PeerUnavailable` naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailable(f"peer library {module!r} is not installed: {exc}") from None


# --- convolution peers ---
# --- max-pooling peers ---


def maxpool2d_torch(x, kernel_size=2, *, stride=None, padding=0, return_indices=False):
    """``torch.nn.functional.max_pool2d`` on NumPy arrays (shared memory, no copies)."""
    torch = require("torch")
    t = torch.from_numpy(x)
    plane = t.ndim == 2  # torch pools (C, H, W) and (N, C, H, W) only
    y = torch.nn.functional.max_pool2d(
        t[None] if plane else t, kernel_size, stride=stride, padding=padding, return_indices=return_indices
    )
    ys = y if return_indices else (y,)
    ys = tuple((a[0] if plane else a).numpy() for a in ys)
    return ys if return_indices else ys[0]


def maxpool2d_backward_torch(grad_y, indices, input_shape):
    """PyTorch's scatter-add of ``grad_y`` through ``indices`` into a zero ``grad_x``.

    PyTorch's own max-pool backward (``aten.max_pool2d_with_indices_backward``) also wants the
    window geometry, which this signature does not carry; ``scatter_add_`` along each flattened
    plane computes the same sums.
    """
    torch = require("torch")
    gy = torch.from_numpy(grad_y)
    idx = torch.from_numpy(indices)
    H, W = input_shape[-2:]
    planes = gy.numel() // max(gy.shape[-1] * gy.shape[-2], 1)
    gx = torch.zeros((planes, H * W), dtype=gy.dtype)
    gx.scatter_add_(1, idx.reshape(planes, -1), gy.reshape(planes, -1))
    return gx.reshape(tuple(input_shape)).numpy()

# --- linear regression and optimizer peers ---
# --- hypergradient peers ---
