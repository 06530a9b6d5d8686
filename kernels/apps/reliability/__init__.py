"""Reliability of the whole public API, measured: ``python -m kernels reliability`` (issue 7).

::

    python -m kernels reliability [--out DIR] [--quick] [--fuzz-examples N] [--leak-calls N]

regenerates ``results/reliability.md`` (and ``reliability.json``) from checks run there and then;
nothing in the report is typed in. The same functions are what ``tests/`` assert on, so the
report and the test suite measure one thing:

=====================  ========================================================================
check                  what is measured
=====================  ========================================================================
fuzz                   ``tests/test_fuzz.py`` run in a subprocess (hypothesis, every public
                       function, hostile shapes/dtypes/layouts/values/hyper-parameters); the
                       cases it tried per function and how each ended, read from the JSON it
                       writes when ``KERNELS_FUZZ_COUNTS`` names a file
determinism            :func:`fingerprints` (SHA-256 of every kernel's output bytes on fixed
                       seeded inputs sized to span several parallel blocks) twice in-process,
                       then in fresh processes with ``NUMBA_NUM_THREADS=1`` and ``2``
concurrency            :func:`concurrency`: Python threads calling every kernel at once against
                       the serial results, bit for bit; :func:`cold_cache`: processes started
                       together on one empty ``NUMBA_CACHE_DIR``
float32 limits         :func:`float32_errors`: float32 against float64 for the convolution and
                       the gradient, against the documented bounds below
memory refusal         the reverse hypergradient asked for a trajectory larger than the memory
                       available (:data:`kernels.hypergrad.MEMORY_MARGIN`)
divergence             :func:`divergence`: every optimizer stops at its first non-finite iterate
memory leak            :func:`leak`: RSS (and Numba's NRT allocation count) around 10,000 calls of
                       every kernel on tiny inputs, after warm-up, in a fresh process
=====================  ========================================================================

One module per check, each with the function the table names; this package runs them all
(:func:`run`, :func:`main`) and re-exports what ``tests/`` call:

=====================  ========================================================================
``problems.py``        every public function on fixed seeded inputs (what the checks call)
``fingerprint.py``     determinism: :func:`digest`, :func:`fingerprints`, :func:`determinism`
``threads.py``         concurrency: :func:`concurrency`, :func:`cold_cache`
``limits.py``          :func:`float32_errors`, :func:`memory_refusal`, :func:`divergence`
``leaks.py``           :func:`leak` (and :func:`leak_measure`, what its fresh process runs)
``fuzzing.py``         :func:`fuzz`
``processes.py``       the environment of the child processes the checks start
``report.py``          :func:`render`: ``reliability.md`` from the results
=====================  ========================================================================

Documented float32 bounds (``u = 2**-24``, the unit roundoff of float32):

* convolution: ``|y32 - y64| <= (m + 3) u (|x| * |w| + |b|)`` elementwise, with ``m = C_in kh kw``
  the number of products each output sums (Higham's ``gamma_m`` bound for a sum in any order,
  plus the rounding of the products, of ``x`` and ``w`` to float32, and of the bias);
  :data:`CONV_FLOAT32_BOUND_PER_TERM` is that ``u``.
* gradient: ``|g32 - g64| <= 4 u S`` elementwise, ``S = (2/n) |X|^T (|X| |w| + |t|) + 2 l2 |w|``:
  the kernel sums in float64 and rounds once, so only the rounding of ``X``, ``t``, ``w`` to
  float32 (three ``u``) and of the result (one ``u``) remain; :data:`GRAD_FLOAT32_BOUND`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from .. import make_out_dir, positive_int
from .fingerprint import determinism, digest, fingerprints, fingerprints_in_subprocess
from .fuzzing import fuzz
from .leaks import LEAK_CALLS, LEAK_TOLERANCE_BYTES, leak, leak_measure
from .leaks import _rss  # noqa: F401  (tests/test_limits.py measures a deliberate leak with it)
from .limits import CONV_FLOAT32_BOUND_PER_TERM, GRAD_FLOAT32_BOUND, U32, divergence, float32_errors, memory_refusal
from .processes import ROOT
from .processes import _subprocess_env  # noqa: F401  (tests start their child processes with it)
from .report import render
from .threads import COLD_CACHE_KERNELS, LAPACK_BACKED, cold_cache, concurrency

__all__ = [
    "COLD_CACHE_KERNELS", "CONV_FLOAT32_BOUND_PER_TERM", "GRAD_FLOAT32_BOUND", "LAPACK_BACKED", "LEAK_CALLS",
    "LEAK_TOLERANCE_BYTES", "ROOT", "U32", "cold_cache", "concurrency", "determinism", "digest", "divergence",
    "fingerprints", "fingerprints_in_subprocess", "float32_errors", "fuzz", "leak", "leak_measure", "main",
    "memory_refusal", "render", "run",
]


def run(quick=False, fuzz_examples=None, leak_calls=None) -> dict:
    """Every check, in the report's order, with the seconds each took; the results as plain data."""
    # `is None`, not `or`: an explicit 0 is refused here, not silently replaced by the default
    if fuzz_examples is None:
        fuzz_examples = 10 if quick else 500
    if leak_calls is None:
        leak_calls = 1000 if quick else LEAK_CALLS
    for name, value in (("fuzz_examples", fuzz_examples), ("leak_calls", leak_calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    from kernels import _config

    t0 = time.perf_counter()
    res = {"generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "quick": quick,
           "config": _config.describe(), "timings": {}}

    def timed(key, fn):
        t = time.perf_counter()
        print(f"reliability: {key} ...", flush=True)
        res[key] = fn()
        res["timings"][key] = round(time.perf_counter() - t, 1)

    timed("fuzz", lambda: fuzz(fuzz_examples))
    timed("determinism", determinism)
    timed("concurrency", concurrency)
    timed("cold_cache", cold_cache)
    timed("float32", float32_errors)
    timed("memory_refusal", memory_refusal)
    timed("divergence", divergence)
    timed("leak", lambda: leak(leak_calls, 200 if quick else 1000))
    import numba

    res["threading_layer"] = numba.threading_layer()
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels reliability",
                                description="Measure fuzzing, determinism, concurrency, float32 limits, memory "
                                            "refusal, divergence and leaks; write reliability.md and .json into --out.")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--quick", action="store_true", help="few fuzz examples and calls: a smoke run")
    p.add_argument("--fuzz-examples", type=positive_int, default=None, help="hypothesis examples per fuzz test")
    p.add_argument("--leak-calls", type=positive_int, default=None,
                   help=f"calls per kernel in the leak check ({LEAK_CALLS})")
    args = p.parse_args(argv)
    make_out_dir(p, args.out)
    res = run(quick=args.quick, fuzz_examples=args.fuzz_examples, leak_calls=args.leak_calls)
    with open(os.path.join(args.out, "reliability.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    with open(os.path.join(args.out, "reliability.md"), "w") as fh:
        fh.write(render(res))
    ok = all(res[k].get("ok", True) for k in ("concurrency", "cold_cache", "float32", "divergence", "leak"))
    ok = ok and res["determinism"]["all_identical"] and res["memory_refusal"]["refused"]
    ok = ok and (res["fuzz"].get("passed", True))
    print(f"reliability: wrote {os.path.join(args.out, 'reliability.md')} in {res['seconds']:.0f} s; "
          f"{'all checks passed' if ok else 'SOME CHECKS FAILED (see the report)'}", flush=True)
    return 0 if ok else 1
