"""The one table that maps each kernel to its naive reference and its peers.

``tests/`` parametrise over it to check every kernel against its reference, and ``bench/``
parametrise over it to time every kernel beside its reference and peers, so the test and the
benchmark always compare the same pair. Names refer to functions in :mod:`kernels`,
:mod:`kernels.naive` and :mod:`kernels.peers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Comparison:
    kernel: str  #: public name in ``kernels``
    reference: str  #: name in ``kernels.naive`` (same signature and result)
    peers: tuple[str, ...] = field(default=())  #: names in ``kernels.peers`` (same signature)


CATALOG: dict[str, Comparison] = {}


def register(kernel: str, reference: str, peers=()) -> None:
    CATALOG[kernel] = Comparison(kernel, reference, tuple(peers))


def implementations(kernel: str) -> dict:
    """``{"numba": f, "numpy": ref, peer_name: peer, ...}`` for one catalogued kernel."""
    import kernels
    from kernels import naive, peers

    entry = CATALOG[kernel]
    impls = {"numba": getattr(kernels, entry.kernel), "numpy": getattr(naive, entry.reference)}
    for p in entry.peers:
        impls[p] = getattr(peers, p)
    return impls


# --- convolution ---
register("correlate2d", "correlate2d",
         peers=("correlate2d_scipy_signal", "correlate2d_scipy_ndimage", "correlate2d_torch"))
register("convolve2d", "convolve2d", peers=("convolve2d_scipy_signal", "convolve2d_torch"))
register("correlate2d_backward", "correlate2d_backward", peers=("correlate2d_backward_torch",))
# --- max-pooling ---
register("maxpool2d", "maxpool2d", peers=("maxpool2d_torch",))
register("maxpool2d_backward", "maxpool2d_backward", peers=("maxpool2d_backward_torch",))
# --- linear regression and optimizers ---
register("grad", "grad", peers=("grad_torch",))
register("gd", "gd", peers=("gd_torch",))
register("sgd", "sgd", peers=("sgd_torch",))
register("rmsprop", "rmsprop", peers=("rmsprop_torch",))
register("adagrad", "adagrad", peers=("adagrad_torch",))
register("adam", "adam", peers=("adam_torch",))
register("loss", "loss")
register("min_norm_solution", "min_norm_solution")
# --- hypergradients ---
register("hypergrad", "hypergrad", peers=("hypergrad_torch", "hypergrad_jax"))
register("unrolled_loss", "unrolled_loss")
register("optimal_lr_one_step", "optimal_lr_one_step")
