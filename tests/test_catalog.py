"""The catalog (:mod:`kernels.catalog`) is complete, names real functions, and every entry's
implementations agree on one small canonical float64 problem per kernel.

Each catalogued kernel gets a tiny fixed-seed problem below; every implementation from
``implementations(kernel)`` (the naive reference and each peer) is called with the same
arguments and compared with the Numba kernel to 1e-10 relative. A peer whose library is missing
is skipped with the reason, never passed silently.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import kernels
from kernels import naive, peers
from kernels.catalog import CATALOG, implementations

RTOL = 1e-10


def _rng():
    return np.random.default_rng(20240513)


def _regression(n=12, d=5):
    rng = _rng()
    X = rng.standard_normal((n, d))
    t = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    w = rng.standard_normal(d)
    return X, t, w


def _stable_lr(X, fraction=0.2):
    """A fraction of 1/L, L = 2 lambda_max(X^T X / n): gradient descent stays contracting."""
    return fraction / (2 * np.linalg.norm(X, 2) ** 2 / X.shape[0])


def _conv_image():
    rng = _rng()
    return rng.standard_normal((7, 8)), rng.standard_normal((3, 3))


def _correlate2d():
    x, w = _conv_image()
    return (x, w, 0.5), dict(padding="same")  # 'same' with an odd filter: every peer computes it


def _convolve2d():
    x, w = _conv_image()
    return (x, w, -0.25), dict(padding="full")


def _correlate2d_backward():
    rng = _rng()
    x, w = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal(kernels.correlate2d(x, w, padding=1).shape)
    return (g, x, w), dict(padding=1)


def _maxpool2d():
    return (_rng().standard_normal((2, 3, 9, 9)), 3), dict(stride=2, padding=1, return_indices=True)


def _maxpool2d_backward():
    x = _rng().standard_normal((2, 3, 9, 9))
    y, idx = kernels.maxpool2d(x, 3, stride=2, padding=1, return_indices=True)
    return (np.random.default_rng(1).standard_normal(y.shape), idx, x.shape), {}


def _grad():
    X, t, w = _regression()
    return (X, t, w), dict(l2=0.1)


def _loss():
    X, t, w = _regression()
    return (X, t, w), dict(l2=0.1)


def _min_norm_solution():
    X, t, _ = _regression(n=5, d=8)  # underdetermined: the minimum-norm choice matters
    return (X, t), {}


def _optimizer(name):
    def problem():
        X, t, _ = _regression(n=16, d=4)
        kw = dict(lr=_stable_lr(X), steps=12, l2=0.01, record_every=4)
        if name == "sgd":
            kw.update(batch_size=5, seed=3)  # 4 batches per epoch, one permutation per epoch
        elif name != "gd":
            kw.update(lr=0.01)  # adaptive steps are about lr per coordinate
        return (X, t), kw

    return problem


def _hypergrad_problem():
    rng = _rng()
    X, t = rng.standard_normal((15, 6)), rng.standard_normal(15)
    kw = dict(lr=_stable_lr(X), l2=0.05, steps=10, w0=0.1 * rng.standard_normal(6),
              X_val=rng.standard_normal((9, 6)), t_val=rng.standard_normal(9))
    return (X, t), kw


def _optimal_lr_one_step():
    X, t, w = _regression()
    return (X, t, w), {}


PROBLEMS = {
    "correlate2d": _correlate2d,
    "convolve2d": _convolve2d,
    "correlate2d_backward": _correlate2d_backward,
    "maxpool2d": _maxpool2d,
    "maxpool2d_backward": _maxpool2d_backward,
    "grad": _grad,
    "loss": _loss,
    "min_norm_solution": _min_norm_solution,
    **{name: _optimizer(name) for name in ("gd", "sgd", "rmsprop", "adagrad", "adam")},
    "hypergrad": _hypergrad_problem,
    "unrolled_loss": _hypergrad_problem,
    "optimal_lr_one_step": _optimal_lr_one_step,
}

# Result objects: the fields that carry the answer. A peer documented not to return a field
# gives None there (hypergrad_jax's ``w``); that field is then not compared for it.
FIELDS = {
    **{name: ("w", "losses", "trajectory", "recorded_steps", "steps", "diverged", "diverged_at")
       for name in ("gd", "sgd", "rmsprop", "adagrad", "adam")},
    "hypergrad": ("loss", "d_lr", "d_l2", "w", "diverged"),
    "unrolled_loss": ("loss", "w", "diverged"),
}


def _assert_agree(got, want, where):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{where}: {type(got)} vs a {len(want)}-tuple"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_agree(g, w, f"{where}[{i}]")
        return
    if isinstance(want, (bool, np.bool_, int, np.integer)) or (
            isinstance(want, np.ndarray) and want.dtype.kind in "biu"):
        np.testing.assert_array_equal(got, want, err_msg=where)
        return
    want = np.asarray(want)
    got = np.asarray(got)
    if want.ndim:
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} vs {want.dtype}"
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12 * scale, err_msg=where)


_NUMBA: dict = {}


def _numba_result(kernel):
    if kernel not in _NUMBA:
        args, kwargs = PROBLEMS[kernel]()
        _NUMBA[kernel] = implementations(kernel)["numba"](*args, **kwargs)
    return _NUMBA[kernel]


CASES = [(kernel, impl) for kernel in CATALOG for impl in implementations(kernel) if impl != "numba"]


@pytest.mark.parametrize("kernel, impl", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_implementation_agrees_with_kernel(kernel, impl):
    want = _numba_result(kernel)
    args, kwargs = PROBLEMS[kernel]()
    try:
        got = implementations(kernel)[impl](*args, **kwargs)
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))
    fields = FIELDS.get(kernel)
    if fields is None:
        _assert_agree(got, want, f"{impl} vs numba")
        return
    assert type(got).__name__ == type(want).__name__, f"{impl} returned {type(got)}"
    for name in fields:
        g = getattr(got, name)
        if g is None and name == "w" and kernel == "hypergrad" and impl == "hypergrad_jax":
            continue  # documented: hypergrad_jax does not return w
        _assert_agree(g, getattr(want, name), f"{impl} vs numba: .{name}")


def test_every_catalog_entry_has_a_canonical_problem():
    assert set(PROBLEMS) == set(CATALOG)


def _public_callable(obj):
    """A public function, or a callable module (kernels.hypergrad: CONTRIBUTING.md says why)."""
    return inspect.isfunction(obj) or (inspect.ismodule(obj) and callable(obj))


def test_catalogued_names_exist():
    for kernel, entry in CATALOG.items():
        assert entry.kernel == kernel
        assert _public_callable(getattr(kernels, entry.kernel, None)), f"kernels.{entry.kernel}"
        assert inspect.isfunction(getattr(naive, entry.reference, None)), f"kernels.naive.{entry.reference}"
        for p in entry.peers:
            assert inspect.isfunction(getattr(peers, p, None)), f"kernels.peers.{p}"
        impls = implementations(kernel)
        assert list(impls) == ["numba", "numpy", *entry.peers]
        assert len(set(map(id, impls.values()))) == len(impls), f"{kernel}: two labels name one function"


def test_every_kernel_with_a_reference_is_catalogued():
    public = {name for name in dir(kernels)
              if not name.startswith("_") and _public_callable(getattr(kernels, name))}
    with_reference = {name for name in public if inspect.isfunction(getattr(naive, name, None))}
    assert with_reference, "no kernel has a naive reference of the same name?"
    missing = sorted(with_reference - set(CATALOG))
    assert not missing, f"kernels with a reference in kernels.naive but no catalog entry: {missing}"
