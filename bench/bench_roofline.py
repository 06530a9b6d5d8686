"""The machine's two ceilings, measured in the same run as the kernels they judge.

- Memory bandwidth: a STREAM-like triad ``a = b + s * c`` over arrays far larger than the
  last-level cache, once as a parallel Numba kernel and once with NumPy. STREAM's convention
  counts 3 x 8 bytes per element (read ``b`` and ``c``, write ``a``; the write-allocate read
  of ``a`` is not counted), so ``extra_info["bytes"]`` is ``24 n``. The report takes the best
  of the two as the bandwidth roofline (``min_bandwidth_fraction`` bars).
- Peak floating-point rate: a large GEMM, ``2 n^3`` flops, in float64 and float32, through
  NumPy's BLAS and through PyTorch (whose oneDNN/MKL kernels may use wider SIMD than the BLAS
  NumPy ships, e.g. when ``OPENBLAS_CORETYPE`` pins OpenBLAS to its AVX2 kernels); the report
  takes the faster as the FLOP/s roofline of the matching dtype (``min_flops_fraction`` bars).

``KERNELS_BENCH_QUICK=1`` shrinks both to a smoke size (``bench/run.py --quick``).
"""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest

from kernels import peers
from kernels._config import jit

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
# 2**24 float64 = 128 MiB per array, 4x a 32 MiB L3; 3 arrays = 384 MiB.
TRIAD_LOG2N = 16 if QUICK else 24
GEMM_N = 256 if QUICK else 2048
TRIAD_SCALAR = 3.0

BARS: list = []  # the ceilings themselves carry no bar; the kernels' bars are judged against them


@jit(parallel=True)
def _triad_kernel(a, b, c, s):
    for i in numba.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def _triad_numpy(a, b, c, s):
    # Two passes (NumPy cannot fuse), timed against the same 24 n bytes: what NumPy achieves.
    np.multiply(c, s, out=a)
    np.add(a, b, out=a)


@pytest.fixture(scope="module")
def triad_arrays():
    n = 2**TRIAD_LOG2N
    rng = np.random.default_rng(0)
    b = rng.standard_normal(n)
    c = rng.standard_normal(n)
    a = np.empty_like(b)
    return a, b, c


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_triad(benchmark, impl, triad_arrays):
    a, b, c = triad_arrays
    fn = _triad_kernel if impl == "numba" else _triad_numpy
    fn(a, b, c, TRIAD_SCALAR)  # compile and fault the pages in, untimed
    np.testing.assert_allclose(a[:1000], b[:1000] + TRIAD_SCALAR * c[:1000], rtol=1e-12, atol=1e-13)  # FMA contraction may round differently
    benchmark.group = f"roofline|triad 2^{TRIAD_LOG2N}|float64"
    benchmark.extra_info.update(impl=impl, bytes=3 * a.itemsize * a.size, roofline="bandwidth")
    benchmark(fn, a, b, c, TRIAD_SCALAR)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_gemm_peak(benchmark, impl, dtype):
    n = GEMM_N
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, n)).astype(dtype)
    y = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    fn, args = np.matmul, (x, y)
    if impl == "torch":
        try:
            torch = peers.require("torch")
        except peers.PeerUnavailable as exc:
            pytest.skip(f"{exc}: the GEMM peak is NumPy's BLAS alone")
        fn, args, out = torch.matmul, (torch.from_numpy(x), torch.from_numpy(y)), torch.from_numpy(out)
    fn(*args, out=out)  # let the library spin its threads up, untimed
    np.testing.assert_allclose(np.asarray(out)[:2, :2], (x[:2] @ y[:, :2]), rtol=1e-3 if dtype == "float32" else 1e-10)
    benchmark.group = f"roofline|gemm {n}|{dtype}"
    benchmark.extra_info.update(impl=impl, flops=2 * n**3, roofline="flops")
    benchmark(fn, *args, out=out)
