"""Max-pooling benchmarks (issue 2): 2x2 window, stride 2, on a (16, 32, 128, 128) batch.

Three groups per dtype, each timing ``numba`` (kernels), ``numpy`` (the naive reference) and
``torch`` (PyTorch CPU, same thread count):

- ``maxpool2d``: values only, ``kernels.maxpool2d(x, 2)`` vs ``F.max_pool2d(x, 2)``; the bar.
  Roofline bytes: read the input once, write the output once.
- ``maxpool2d indices``: ``return_indices=True`` (what a training step needs); PyTorch's CPU
  kernel computes the indices in both cases. Bytes add the int64 indices written.
- ``maxpool2d_backward``: ``kernels.maxpool2d_backward(g, idx, x.shape, out=buf)`` into a
  preallocated buffer, as a training loop calls it (``numba``; ``numba_alloc`` allocates its
  result every call), vs the function PyTorch's autograd calls for this node,
  ``aten.max_pool2d_with_indices_backward`` (no graph bookkeeping timed; it allocates, as it does
  for every user). Bytes: read ``g`` and the indices, write ``grad_x`` once.

Every implementation's result is checked against ``kernels`` (bit-identical) in the untimed
warm-up call. ``KERNELS_BENCH_QUICK=1`` shrinks the batch to a smoke size (other group names,
so the bars read NOT RUN there).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import kernels
from kernels import peers

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
SHAPE = (2, 4, 32, 32) if QUICK else (16, 32, 128, 128)
SHAPE_TEXT = "x".join(str(s) for s in SHAPE) + " k2 s2"
DTYPES = ["float32", "float64"]
IMPLS = ["numba", "numpy", "torch"]

BARS = [
    dict(issue=2, text=f"max-pool 2x2 stride 2 on (16, 32, 128, 128) {dtype}: >= 10x faster than PyTorch",
         group=f"maxpool2d|16x32x128x128 k2 s2|{dtype}", impl="numba", versus=("torch",), min_speedup=10.0)
    for dtype in DTYPES
] + [
    dict(issue=13, text=f"max-pool backward 2x2 stride 2 on (16, 32, 128, 128) {dtype}: >= 5x faster than PyTorch",
         group=f"maxpool2d_backward|16x32x128x128 k2 s2|{dtype}", impl="numba", versus=("torch",), min_speedup=5.0)
    for dtype in DTYPES
]


@pytest.fixture(scope="module")
def problems():
    """Per dtype: input, pooled values and indices (from kernels), and an upstream gradient."""
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal(SHAPE)
    out = {}
    for dtype in DTYPES:
        x = x64.astype(dtype)
        y, idx = kernels.maxpool2d(x, 2, return_indices=True)
        g = rng.standard_normal(y.shape).astype(dtype)
        out[dtype] = (x, y, idx, g)
    return out


def _torch():
    try:
        return peers.require("torch")
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))


def _forward_impl(impl, return_indices, catalog):
    if impl in ("numba", "numpy"):
        pool = catalog("maxpool2d", impl)
        return lambda x: pool(x, 2, return_indices=return_indices)
    # Not the catalog's maxpool2d_torch: F.max_pool2d is timed on the tensor view, returning tensors.
    torch = _torch()
    F = torch.nn.functional

    def run(x):
        t = torch.from_numpy(x)
        if return_indices:
            return F.max_pool2d(t, 2, return_indices=True)
        return F.max_pool2d(t, 2)

    return run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_maxpool2d(benchmark, impl, dtype, problems, catalog):
    x, y, _, _ = problems[dtype]
    fn = _forward_impl(impl, False, catalog)
    got = fn(x)  # warm-up: compiles, and checks the result untimed
    np.testing.assert_array_equal(np.asarray(got), y)
    benchmark.group = f"maxpool2d|{SHAPE_TEXT}|{dtype}"
    benchmark.extra_info.update(impl=impl, bytes=x.nbytes + y.nbytes)
    benchmark(fn, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_maxpool2d_indices(benchmark, impl, dtype, problems, catalog):
    x, y, idx, _ = problems[dtype]
    fn = _forward_impl(impl, True, catalog)
    got_y, got_idx = fn(x)
    np.testing.assert_array_equal(np.asarray(got_y), y)
    np.testing.assert_array_equal(np.asarray(got_idx), idx)
    benchmark.group = f"maxpool2d indices|{SHAPE_TEXT}|{dtype}"
    benchmark.extra_info.update(impl=impl, bytes=x.nbytes + y.nbytes + idx.nbytes)
    benchmark(fn, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS + ["numba_alloc"])
def test_maxpool2d_backward(benchmark, impl, dtype, problems, catalog):
    x, _, idx, g = problems[dtype]
    if impl == "numba":
        buf = np.empty_like(x)

        def fn(g, idx, shape):
            return kernels.maxpool2d_backward(g, idx, shape, out=buf)

        args = (g, idx, x.shape)
    elif impl in ("numba_alloc", "numpy"):
        fn, args = catalog("maxpool2d_backward", "numba" if impl == "numba_alloc" else impl), (g, idx, x.shape)
    else:
        # Not the catalog's maxpool2d_backward_torch (a scatter_add_): the aten op autograd calls.
        torch = _torch()
        backward = torch.ops.aten.max_pool2d_with_indices_backward

        def fn(gt, xt, it):
            return backward(gt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, it)

        args = (torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(idx))
    want = kernels.maxpool2d_backward(g, idx, x.shape)
    got = fn(*args)
    np.testing.assert_array_equal(np.asarray(got), want)
    benchmark.group = f"maxpool2d_backward|{SHAPE_TEXT}|{dtype}"
    benchmark.extra_info.update(impl=impl, bytes=g.nbytes + idx.nbytes + want.nbytes)
    benchmark(fn, *args)
