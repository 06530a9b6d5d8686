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
# --- linear regression and optimizer peers ---
# --- hypergradient peers ---
