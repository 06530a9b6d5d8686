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
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

U32 = float(2.0**-24)
#: Convolution in float32: error per summed product, in units of the magnitude ``|x| * |w| + |b|``.
CONV_FLOAT32_BOUND_PER_TERM = U32
#: Gradient in float32: the error bound in units of ``S`` (module docstring).
GRAD_FLOAT32_BOUND = 4 * U32
#: 10,000 calls of one kernel may grow the process's RSS by at most this much after warm-up
#: (a leak of 100 bytes per call would show as 1 MB); Numba's NRT must end with as many frees as
#: allocations.
LEAK_CALLS = 10_000
LEAK_TOLERANCE_BYTES = 512 * 1024

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------
# every kernel on fixed inputs
# --------------------------------------------------------------------------------------------


def _problems(seed=0):
    """Seeded inputs per kernel, large enough to span several parallel tiles/blocks."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((150, 130))
    xb = rng.standard_normal((2, 3, 20, 24))
    wb = rng.standard_normal((5, 3, 3, 3))
    w5 = rng.standard_normal((2, 3, 5, 4))
    X = rng.standard_normal((1100, 12))  # > 4 blocks of REDUCTION_BLOCK rows
    t = X @ rng.standard_normal(12) + 0.1 * rng.standard_normal(1100)
    Xh = rng.standard_normal((30, 8))
    th = Xh @ rng.standard_normal(8)
    # above kernels.optim's _PARALLEL_MIN_BYTES (32 MiB): the passes really run in parallel blocks
    XL = rng.standard_normal((66_000, 64))
    tL = rng.standard_normal(66_000)
    return dict(img=img, xb=xb, wb=wb, w5=w5, X=X, t=t, Xh=Xh, th=th, k3=rng.standard_normal((3, 3)), XL=XL, tL=tL)


def _calls(p, dtype=np.float64):
    """``{name: zero-argument callable}`` covering every public function and its main paths."""
    import kernels
    from kernels import arch

    c = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    X, t = c["X"], c["t"]
    Xh, th = p["Xh"], p["th"]

    def pool_bwd():
        y, i = kernels.maxpool2d(c["xb"], 3, stride=2, padding=1, return_indices=True)
        return kernels.maxpool2d_backward(np.ones_like(y), i, c["xb"].shape)

    lr_h = 0.5 * kernels.critical_lr(Xh)
    calls = {
        "correlate2d[2d same]": lambda: kernels.correlate2d(c["img"], c["k3"], padding="same"),
        "correlate2d[batch 3x3]": lambda: kernels.correlate2d(c["xb"], c["wb"], padding=1),
        "correlate2d[strided dilated]": lambda: kernels.correlate2d(c["xb"], c["w5"], stride=2, padding=(1, 2), dilation=(1, 2)),
        "convolve2d": lambda: kernels.convolve2d(c["img"], c["k3"], padding="full"),
        "correlate2d_backward[stride 1]": lambda: kernels.correlate2d_backward(
            np.ones((2, 5, 20, 24), dtype), c["xb"], c["wb"], padding=1),
        "correlate2d_backward[stride 2]": lambda: kernels.correlate2d_backward(
            np.ones((2, 2, 8, 12), dtype), c["xb"], c["w5"], stride=2, padding=(0, 1)),
        "maxpool2d[2x2]": lambda: kernels.maxpool2d(c["xb"], 2, return_indices=True),
        "maxpool2d[3x3 s2 p1]": lambda: kernels.maxpool2d(c["xb"], 3, stride=2, padding=1),
        "maxpool2d_backward": pool_bwd,
        "loss": lambda: kernels.loss(X, t, np.ones(12, dtype), l2=0.1),
        "grad": lambda: kernels.grad(X, t, np.ones(12, dtype), l2=0.1),
        "loss[33 MiB]": lambda: kernels.loss(c["XL"], c["tL"], np.ones(64, dtype)),
        "grad[33 MiB]": lambda: kernels.grad(c["XL"], c["tL"], np.ones(64, dtype), l2=0.1),
        "gd[33 MiB]": lambda: kernels.gd(c["XL"], c["tL"], lr=0.05, steps=3, record_every=1),
        "min_norm_solution": lambda: kernels.min_norm_solution(X, t),
        "gd": lambda: kernels.gd(X, t, lr=0.05, steps=20, record_every=5),
        "sgd": lambda: kernels.sgd(X, t, lr=0.01, batch_size=300, epochs=3, seed=7, record_every=4),
        "rmsprop": lambda: kernels.rmsprop(X, t, lr=0.01, steps=20, batch_size=600, seed=3),
        "adagrad": lambda: kernels.adagrad(X, t, lr=0.1, steps=20),
        "adam": lambda: kernels.adam(X, t, lr=0.01, steps=20, batch_size=64, seed=1, weight_decay=0.01),
        "hypergrad[reverse]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40),
        "hypergrad[checkpoint]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="checkpoint"),
        "hypergrad[forward]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="forward"),
        "hypergrad[exact]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="exact"),
        "optimal_lr_one_step": lambda: kernels.optimal_lr_one_step(Xh, th),
        "tune_lr": lambda: kernels.tune_lr(Xh, th, lr0=0.1 * lr_h, steps=5, meta_steps=3, meta_lr=0.5),
        "unroll_graph": lambda: kernels.unroll_graph(3),
        "arch.analyze": lambda: arch.analyze(arch.parse("in32x32x3 conv3c8 pool2 conv3s2p1c16 fc10")),
        "arch.to_dense": lambda: arch.to_dense("in16x16x1 conv3 pool2 conv3"),
    }
    return calls


def _digest(value, h):
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(value, (tuple, list)):
        for v in value:
            _digest(v, h)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _digest(getattr(value, name), h)
    elif isinstance(value, float):
        h.update(float(value).hex().encode())
    else:
        h.update(repr(value).encode())


def digest(value) -> str:
    """SHA-256 of a result's exact bytes (arrays, floats as hex, dataclass fields in order)."""
    h = hashlib.sha256()
    _digest(value, h)
    return h.hexdigest()


def fingerprints(names=None, seed=0) -> dict:
    """``{kernel: digest}`` of every kernel (or of ``names``) on the seeded problems."""
    calls = _calls(_problems(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: digest(f()) for k, f in calls.items() if names is None or k in names}


def _subprocess_env(**overrides):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


_FINGERPRINT_CODE = "import json, sys; from kernels.reliability import fingerprints; " \
                    "print(json.dumps(fingerprints(json.loads(sys.argv[1]))))"


def _spawn_fingerprints(names, env):
    return subprocess.Popen([sys.executable, "-c", _FINGERPRINT_CODE, json.dumps(names)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        return None, f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    return json.loads(out.strip().splitlines()[-1]), ""


def fingerprints_in_subprocess(names=None, timeout=600, **env) -> dict:
    """:func:`fingerprints` in a fresh Python process with ``env`` added to the environment."""
    res, err = _collect(_spawn_fingerprints(names, _subprocess_env(**env)), timeout)
    if res is None:
        raise RuntimeError(f"fingerprint subprocess failed ({env}): {err}")
    return res


def determinism(threads=(1, 2)) -> dict:
    """Bit-identical outputs run to run (in-process) and across ``NUMBA_NUM_THREADS`` (processes)."""
    first = fingerprints()
    second = fingerprints()
    per_threads = {n: fingerprints_in_subprocess(NUMBA_NUM_THREADS=n) for n in threads}
    sgd_again = fingerprints_in_subprocess(["sgd", "rmsprop", "adam"], NUMBA_NUM_THREADS=threads[-1])
    rows = {}
    for k in first:
        rows[k] = {
            "run_to_run": first[k] == second[k],
            "threads": all(per_threads[n][k] == first[k] for n in threads),
        }
    return {
        "kernels": rows,
        "threads": list(threads),
        "seeded_sgd_across_processes": all(sgd_again[k] == first[k] for k in sgd_again),
        "all_identical": all(r["run_to_run"] and r["threads"] for r in rows.values()),
    }


#: Results that come from LAPACK (through NumPy), not from our kernels: OpenBLAS may split its
#: work differently while other threads are inside it, so under concurrency they are compared to
#: 1e-12 relative instead of bit for bit.
LAPACK_BACKED = ("min_norm_solution", "hypergrad[exact]")


def _flat(value):
    if isinstance(value, np.ndarray):
        return [np.asarray(value, dtype=np.float64).ravel()] if value.dtype.kind in "fiub" else []
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [a for k in value.__dataclass_fields__ for a in _flat(getattr(value, k))]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [np.array([float(value)])]
    return []


def _close(a, b, rtol=1e-12) -> bool:
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(x.shape == y.shape and np.allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True)
                                      for x, y in zip(fa, fb))


def concurrency(n_threads=4, rounds=3, seed=0) -> dict:
    """``n_threads`` Python threads call every kernel ``rounds`` times each, in different orders,
    all at once; each result must equal the serial one bit for bit (:data:`LAPACK_BACKED` ones
    to 1e-12)."""
    calls = _calls(_problems(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        serial = {k: f() for k, f in calls.items()}
    expected = {k: digest(v) for k, v in serial.items()}
    names = list(calls)
    mismatches, errors = [], []
    barrier = threading.Barrier(n_threads)

    def worker(i):
        order = names[i % len(names):] + names[: i % len(names)]
        try:
            barrier.wait()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for _ in range(rounds):
                    for k in order:
                        got = calls[k]()
                        same = _close(got, serial[k]) if k in LAPACK_BACKED else digest(got) == expected[k]
                        if not same:
                            mismatches.append((i, k))
        except Exception as exc:  # reported, not swallowed
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {
        "threads": n_threads,
        "calls": n_threads * rounds * len(names),
        "kernels": len(names),
        "mismatches": sorted(set(mismatches)),
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 2),
        "ok": not mismatches and not errors,
    }


#: The kernels two cold processes compile side by side: a parallel one and a serial one keep it
#: to seconds (compiling every kernel twice would take minutes on two cores).
COLD_CACHE_KERNELS = ("maxpool2d[2x2]", "hypergrad[reverse]")


def cold_cache(n_processes=2, names=COLD_CACHE_KERNELS, timeout=600) -> dict:
    """``n_processes`` started together on one empty ``NUMBA_CACHE_DIR``, each compiling and
    writing the cache at once; then one more that loads what they wrote. All must agree with
    this process's results."""
    expected = fingerprints(list(names))
    with tempfile.TemporaryDirectory(prefix="kernels-cold-cache-") as cache:
        env = _subprocess_env(NUMBA_CACHE_DIR=cache, KERNELS_CACHE="1")
        t0 = time.perf_counter()
        procs = [_spawn_fingerprints(list(names), env) for _ in range(n_processes)]
        results = [_collect(p, timeout) for p in procs]
        together = time.perf_counter() - t0
        files = sum(len(fs) for _, _, fs in os.walk(cache))
        t1 = time.perf_counter()
        warm = _collect(_spawn_fingerprints(list(names), env), timeout)
        warm_s = time.perf_counter() - t1
    ok = [r == expected for r, _ in results]
    return {
        "processes": n_processes,
        "kernels": list(names),
        "each_ok": ok,
        "errors": [e for _, e in results if e],
        "seconds_together": round(together, 1),
        "cache_files_written": files,
        "warm_process_ok": warm[0] == expected,
        "warm_process_seconds": round(warm_s, 1),
        "ok": all(ok) and warm[0] == expected,
    }


# --------------------------------------------------------------------------------------------
# numerical limits
# --------------------------------------------------------------------------------------------


def float32_errors(seed=0) -> dict:
    """float32 against float64 for the convolution (forward paths) and the gradient, in units of
    the documented bounds' scales (module docstring). ``ratio`` = worst error / bound (<= 1)."""
    import kernels

    rng = np.random.default_rng(seed)
    out = {"unit_roundoff": U32, "conv": [], "grad": []}
    conv_cases = [
        ("2-D 3x3 same", (64, 80), (3, 3), {}, dict(padding="same")),
        ("batch 3x3 pad 1", (2, 8, 16, 16), (4, 8, 3, 3), {"bias": True}, dict(padding=1)),
        ("batch 5x5 stride 2", (2, 16, 17, 15), (3, 16, 5, 5), {"bias": True}, dict(stride=2, padding=2)),
        ("batch 3x3 C_in 64", (1, 64, 12, 12), (4, 64, 3, 3), {}, dict(padding=0)),
    ]
    for label, xs, ws, extra, kw in conv_cases:
        x64, w64 = rng.standard_normal(xs), rng.standard_normal(ws)
        b64 = rng.standard_normal(ws[0]) if extra.get("bias") else None
        b32 = None if b64 is None else b64.astype(np.float32)
        y64 = kernels.correlate2d(x64, w64, b64, **kw)
        y32 = kernels.correlate2d(x64.astype(np.float32), w64.astype(np.float32), b32, **kw)
        scale = kernels.correlate2d(np.abs(x64), np.abs(w64), None if b64 is None else np.abs(b64), **kw)
        m = int(np.prod(ws[-3:])) if len(ws) == 4 else int(np.prod(ws))
        err = np.abs(y32.astype(np.float64) - y64) / scale
        bound = (m + 3) * CONV_FLOAT32_BOUND_PER_TERM
        out["conv"].append(dict(case=label, terms=m, max_error=float(err.max()), rms_error=float(np.sqrt(np.mean(err**2))),
                                bound=bound, ratio=float(err.max() / bound),
                                max_relative_error=float(np.max(np.abs(y32 - y64) / np.maximum(np.abs(y64), 1e-300)))))
    for n, d, l2 in ((500, 20, 0.0), (3000, 50, 0.1), (200, 400, 0.01)):
        X = rng.standard_normal((n, d))
        w = rng.standard_normal(d)
        t = X @ rng.standard_normal(d) + rng.standard_normal(n)
        g64 = kernels.grad(X, t, w, l2=l2)
        g32 = kernels.grad(X.astype(np.float32), t.astype(np.float32), w.astype(np.float32), l2=l2)
        S = (2.0 / n) * (np.abs(X).T @ (np.abs(X) @ np.abs(w) + np.abs(t))) + 2 * l2 * np.abs(w)
        err = np.abs(g32.astype(np.float64) - g64) / S
        out["grad"].append(dict(case=f"n={n} d={d} l2={l2}", max_error=float(err.max()), rms_error=float(np.sqrt(np.mean(err**2))),
                                bound=GRAD_FLOAT32_BOUND, ratio=float(err.max() / GRAD_FLOAT32_BOUND),
                                max_relative_error=float(np.max(np.abs(g32 - g64) / np.abs(g64)))))
    out["ok"] = all(r["ratio"] <= 1.0 for r in out["conv"] + out["grad"])
    return out


def memory_refusal() -> dict:
    """Ask the reverse hypergradient for a trajectory larger than the memory available."""
    import importlib

    import kernels

    hg = importlib.import_module("kernels.hypergrad")  # the module, not the function of that name
    X = np.ones((4, 3))
    t = np.ones(4)
    steps = 10**13
    try:
        kernels.hypergrad(X, t, lr=0.01, steps=steps, method="reverse")
    except MemoryError as exc:
        return {"steps": steps, "d": 3, "refused": True, "exception": type(exc).__name__,
                "is_value_error": isinstance(exc, ValueError), "message": str(exc),
                "available_bytes": hg.available_memory(), "margin": hg.MEMORY_MARGIN}
    return {"steps": steps, "d": 3, "refused": False}


def divergence(seed=0) -> dict:
    """Every optimizer on a problem it cannot survive (lr far too large): where it stops, and
    that this is the *first* non-finite iterate (the same run one step shorter is finite and
    ends on the very weights returned)."""
    import kernels

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 5)) * 1e3
    t = rng.standard_normal(40)
    runs = {
        "gd": lambda s: kernels.gd(X, t, lr=1e3, steps=s),
        "sgd": lambda s: kernels.sgd(X, t, lr=1e3, batch_size=8, steps=s, seed=1),
        "rmsprop": lambda s: kernels.rmsprop(X, t, lr=1e300, steps=s, eps=0.0),
        "adagrad": lambda s: kernels.adagrad(X, t, lr=1e300, steps=s, eps=0.0),
        "adam": lambda s: kernels.adam(X, t, lr=1e300, steps=s, beta1=0.0, eps=0.0),
    }
    out = {}
    for name, run in runs.items():
        r = run(1000)
        k = r.diverged_at
        shorter = run(max(k - 1, 0)) if k >= 1 else None
        first = (r.diverged and k >= 1 and shorter is not None and not shorter.diverged
                 and np.array_equal(shorter.w, r.w) and bool(np.all(np.isfinite(r.w))))
        out[name] = {"diverged": bool(r.diverged), "diverged_at": int(k), "steps_returned": int(r.steps),
                     "w_finite": bool(np.all(np.isfinite(r.w))), "first": bool(first)}
    out["ok"] = all(v["first"] for v in out.values() if isinstance(v, dict))
    return out


# --------------------------------------------------------------------------------------------
# memory leaks
# --------------------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tiny_calls():
    """Every kernel on inputs of a few elements (the call overhead is what leaks, if anything)."""
    import kernels
    from kernels import arch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 7))
    xb = rng.standard_normal((1, 2, 5, 5))
    wb = rng.standard_normal((2, 2, 3, 3))
    k3 = rng.standard_normal((3, 3))
    X = rng.standard_normal((8, 3))
    t = rng.standard_normal(8)
    w = np.ones(3)
    y, idx = kernels.maxpool2d(xb, 2, return_indices=True)
    lr = 0.5 * kernels.critical_lr(X)
    return {
        "correlate2d": lambda: kernels.correlate2d(x, k3, padding="same"),
        "correlate2d[batch]": lambda: kernels.correlate2d(xb, wb, padding=1),
        "convolve2d": lambda: kernels.convolve2d(x, k3),
        "correlate2d_backward": lambda: kernels.correlate2d_backward(np.ones((1, 2, 3, 3)), xb, wb),
        "correlate2d_backward[stride 2]": lambda: kernels.correlate2d_backward(np.ones((1, 2, 2, 2)), xb, wb, stride=2),
        "maxpool2d": lambda: kernels.maxpool2d(xb, 2, return_indices=True),
        "maxpool2d[3x3]": lambda: kernels.maxpool2d(xb, 3, stride=1, padding=1),
        "maxpool2d_backward": lambda: kernels.maxpool2d_backward(y, idx, xb.shape),
        "loss": lambda: kernels.loss(X, t, w),
        "grad": lambda: kernels.grad(X, t, w),
        "min_norm_solution": lambda: kernels.min_norm_solution(X, t),
        "gd": lambda: kernels.gd(X, t, lr=0.01, steps=3, record_every=1),
        "sgd": lambda: kernels.sgd(X, t, lr=0.01, batch_size=3, steps=3),
        "rmsprop": lambda: kernels.rmsprop(X, t, lr=0.01, steps=3),
        "adagrad": lambda: kernels.adagrad(X, t, lr=0.01, steps=3),
        "adam": lambda: kernels.adam(X, t, lr=0.01, steps=3, batch_size=4),
        "hypergrad[reverse]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3),
        "hypergrad[checkpoint]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="checkpoint"),
        "hypergrad[forward]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="forward"),
        "hypergrad[exact]": lambda: kernels.hypergrad(X, t, lr=lr, steps=3, method="exact"),
        "optimal_lr_one_step": lambda: kernels.optimal_lr_one_step(X, t),
        "tune_lr": lambda: kernels.tune_lr(X, t, lr0=lr / 4, steps=2, meta_steps=2, meta_lr=0.1),
        "unroll_graph": lambda: kernels.unroll_graph(2),
        "arch.analyze": lambda: arch.analyze("in8x8x1 conv3 pool2"),
        "arch.to_dense": lambda: arch.to_dense("in8x8x1 conv3 pool2"),
    }


def _nrt_net():
    from numba.core.runtime import rtsys

    try:
        s = rtsys.get_allocation_stats()
    except Exception:  # stats off (NUMBA_NRT_STATS unset)
        return None
    return int(s.alloc - s.free)


def leak_measure(calls=LEAK_CALLS, warmup=1000) -> dict:
    """In this process: per kernel, RSS and NRT net allocations before and after ``calls``
    calls (after ``warmup`` calls and a garbage collection)."""
    out = {}
    fns = _tiny_calls()
    for name, f in fns.items():
        for _ in range(warmup):
            f()
        gc.collect()
        rss0, nrt0 = _rss(), _nrt_net()
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        gc.collect()
        rss1, nrt1 = _rss(), _nrt_net()
        out[name] = {"calls": calls, "rss_growth_bytes": rss1 - rss0,
                     "nrt_net_allocations": None if nrt0 is None else nrt1 - nrt0,
                     "us_per_call": round((time.perf_counter() - t0) / calls * 1e6, 1)}
    return out


def leak(calls=LEAK_CALLS, warmup=1000, timeout=600) -> dict:
    """:func:`leak_measure` in a fresh process with Numba's NRT statistics on."""
    code = (f"import json; from kernels.reliability import leak_measure; "
            f"print(json.dumps(leak_measure({int(calls)}, {int(warmup)})))")
    # One Numba thread: the parallel code paths still run, but a busy machine cannot turn every
    # launch into a wait for spinning OpenMP workers (measured 1.7 ms instead of 15 us per call
    # with two such processes on two cores), which is what the call count would then measure.
    env = _subprocess_env(NUMBA_NRT_STATS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"leak subprocess failed: {proc.stderr.strip()[-500:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = all(r["rss_growth_bytes"] <= LEAK_TOLERANCE_BYTES and r["nrt_net_allocations"] in (0, None)
             for r in rows.values())
    return {"calls": calls, "warmup": warmup, "tolerance_bytes": LEAK_TOLERANCE_BYTES, "kernels": rows, "ok": ok}


# --------------------------------------------------------------------------------------------
# fuzzing (tests/test_fuzz.py, run as a subprocess)
# --------------------------------------------------------------------------------------------


def fuzz(examples=None, timeout=600, extra_env=None) -> dict:
    """Run ``tests/test_fuzz.py`` with ``KERNELS_FUZZ_COUNTS`` set and return its counts."""
    test = os.path.join(ROOT, "tests", "test_fuzz.py")
    if not os.path.exists(test):
        return {"available": False, "reason": f"{test} not found (run from a source checkout)"}
    with tempfile.TemporaryDirectory(prefix="kernels-fuzz-") as tmp:
        counts = os.path.join(tmp, "counts.json")
        env = _subprocess_env(KERNELS_FUZZ_COUNTS=counts, **(extra_env or {}))
        if examples:
            env["KERNELS_FUZZ_EXAMPLES"] = str(int(examples))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider",
                               "--benchmark-disable"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        elapsed = time.perf_counter() - t0
        summary = next((ln for ln in reversed(proc.stdout.splitlines()) if " in " in ln), "").strip("= ")
        data = json.load(open(counts)) if os.path.exists(counts) else {}
    return {"available": True, "passed": proc.returncode == 0, "returncode": proc.returncode, "summary": summary,
            "seconds": round(elapsed, 1), "examples_per_test": data.get("examples_per_test"),
            "functions": data.get("functions", {}), "mutations": data.get("mutations", {}),
            "failures": proc.stdout[-3000:] if proc.returncode else ""}


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def _yes(ok):
    return "yes" if ok else "**NO**"


def render(res: dict) -> str:
    L = ["# Reliability (issue 7)", "",
         f"Generated {res['generated']} by `python -m kernels reliability`{' --quick' if res['quick'] else ''} "
         f"in {res['seconds']:.0f} s; Numba {res['config']['numba_version']}, "
         f"{res['config']['numba_threads']} threads (threading layer `{res.get('threading_layer')}`), "
         f"compile options {res['config']}. The fuzz suite also runs under `NUMBA_BOUNDSCHECK=1` with an "
         "empty compile cache and `NUMBA_NUM_THREADS=1` in CI (`tests/test_limits.py`; an exception in a worker "
         "thread of a parallel loop is lost by Numba, so one thread), so an out-of-range index would fail it.", ""]
    fz = res["fuzz"]
    L += ["## Fuzzing: hostile input across the public API", ""]
    if not fz.get("available"):
        L += [f"Not run: {fz.get('reason')}", ""]
    else:
        L += [f"`tests/test_fuzz.py` (hypothesis, {fz['examples_per_test']} examples per test): "
              f"**{'passed' if fz['passed'] else 'FAILED'}** ({fz['summary']}), {fz['seconds']} s. "
              "Invariant: every call returns the reference's answer (`kernels.naive`, or the closed form "
              "stated in the test) or raises `ValueError`/`TypeError` whose message names the argument "
              "that was made hostile; never another exception, never a crash.", "",
              "| function | cases tried | returned (= reference) | raised, naming the argument |",
              "|---|---:|---:|---:|"]
        tot = [0, 0, 0]
        for name, c in sorted(fz["functions"].items()):
            L.append(f"| `{name}` | {c['tried']} | {c['returned']} | {c['raised']} |")
            tot = [tot[0] + c["tried"], tot[1] + c["returned"], tot[2] + c["raised"]]
        L += [f"| **total** | **{tot[0]}** | **{tot[1]}** | **{tot[2]}** |", ""]
        if fz["mutations"]:
            L += ["Cases by what was made hostile: " + ", ".join(f"{k} {v}" for k, v in sorted(fz["mutations"].items())) + ".", ""]
        if fz["failures"]:
            L += ["```", fz["failures"], "```", ""]
    d = res["determinism"]
    L += ["## Determinism", "",
          f"SHA-256 of every output, twice in this process and once in fresh processes with "
          f"`NUMBA_NUM_THREADS` = {', '.join(map(str, d['threads']))}. All bit-identical: **{_yes(d['all_identical'])}**; "
          f"seeded SGD/RMSProp/Adam reproduced in another process: **{_yes(d['seeded_sgd_across_processes'])}**.", "",
          "| kernel | run to run | across thread counts |", "|---|---|---|"]
    L += [f"| `{k}` | {_yes(v['run_to_run'])} | {_yes(v['threads'])} |" for k, v in d["kernels"].items()]
    c, cc = res["concurrency"], res["cold_cache"]
    L += ["", "## Threads and processes", "",
          f"- {c['threads']} Python threads calling {c['kernels']} kernels at once, {c['calls']} calls in "
          f"{c['seconds']} s: every result bit-identical to the serial one: **{_yes(c['ok'])}**"
          + (f" (mismatches {c['mismatches']}, errors {c['errors']})" if not c["ok"] else "") + ".",
          f"- {cc['processes']} processes started together on one empty `NUMBA_CACHE_DIR` "
          f"(kernels {', '.join(cc['kernels'])}): each correct **{cc['each_ok']}**, {cc['seconds_together']} s, "
          f"{cc['cache_files_written']} cache files written; a later process loading that cache correct: "
          f"**{_yes(cc['warm_process_ok'])}** ({cc['warm_process_seconds']} s)"
          + (f"; errors: {cc['errors']}" if cc["errors"] else "") + ".", ""]
    f = res["float32"]
    L += ["## float32 accuracy against float64", "",
          f"Convolution bound `(m + 3) u` times `|x| * |w| + |b|` (m products per output); gradient bound "
          f"`4 u` times `S = (2/n)|X|^T(|X||w| + |t|) + 2 l2 |w|`; `u = 2^-24 = {U32:.3g}`. All within bounds: "
          f"**{_yes(f['ok'])}**.", "",
          "| kernel | case | terms | max error / scale | rms error / scale | bound | max error / bound | max relative error |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind in ("conv", "grad"):
        for r in f[kind]:
            L.append(f"| {'correlate2d' if kind == 'conv' else 'grad'} | {r['case']} | {r.get('terms', '')} | "
                     f"{r['max_error']:.3g} | {r['rms_error']:.3g} | {r['bound']:.3g} | {r['ratio']:.3f} | "
                     f"{r['max_relative_error']:.3g} |")
    m = res["memory_refusal"]
    L += ["", "## Memory the reverse hypergradient would need", ""]
    if m["refused"]:
        L += [f"`hypergrad(method='reverse', steps={m['steps']}, d={m['d']})` is refused before allocating "
              f"(`{m['exception']}`, also a `ValueError`: {m['is_value_error']}; margin {m['margin']} of the "
              f"{m['available_bytes'] / 2**30:.2f} GiB available):", "", f"> {m['message']}", ""]
    else:
        L += ["**NOT refused**", ""]
    dv = res["divergence"]
    L += ["## Divergence of the optimizers", "",
          "lr far too large; `diverged_at` must be the first non-finite iterate: the run one step "
          f"shorter is finite and returns the same weights. All first: **{_yes(dv['ok'])}**.", "",
          "| optimizer | diverged | diverged_at | steps returned | returned w finite | first non-finite |",
          "|---|---|---:|---:|---|---|"]
    L += [f"| `{k}` | {v['diverged']} | {v['diverged_at']} | {v['steps_returned']} | {v['w_finite']} | {_yes(v['first'])} |"
          for k, v in dv.items() if isinstance(v, dict)]
    lk = res["leak"]
    L += ["", "## Memory leaks", "",
          f"{lk['calls']:,} calls of each kernel on tiny inputs in a fresh process, after {lk['warmup']:,} warm-up "
          f"calls and `gc.collect()`; tolerance {lk['tolerance_bytes'] // 1024} KiB of RSS growth, and Numba's NRT "
          f"must free everything it allocated. All within: **{_yes(lk['ok'])}**.", "",
          "| kernel | RSS growth (bytes) | NRT allocations not freed | µs per call |", "|---|---:|---:|---:|"]
    L += [f"| `{k}` | {v['rss_growth_bytes']} | {v['nrt_net_allocations']} | {v['us_per_call']} |"
          for k, v in lk["kernels"].items()]
    L += ["", "Timings of the checks (s): " + ", ".join(f"{k} {v}" for k, v in res["timings"].items()) + ".", ""]
    return "\n".join(L)


def run(quick=False, fuzz_examples=None, leak_calls=None) -> dict:
    from kernels import _config

    t0 = time.perf_counter()
    res = {"generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "quick": quick,
           "config": _config.describe(), "timings": {}}

    def timed(key, fn):
        t = time.perf_counter()
        print(f"reliability: {key} ...", flush=True)
        res[key] = fn()
        res["timings"][key] = round(time.perf_counter() - t, 1)

    timed("fuzz", lambda: fuzz(fuzz_examples or (10 if quick else 500)))
    timed("determinism", determinism)
    timed("concurrency", concurrency)
    timed("cold_cache", cold_cache)
    timed("float32", float32_errors)
    timed("memory_refusal", memory_refusal)
    timed("divergence", divergence)
    timed("leak", lambda: leak(leak_calls or (1000 if quick else LEAK_CALLS), 200 if quick else 1000))
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
    p.add_argument("--fuzz-examples", type=int, default=None, help="hypothesis examples per fuzz test")
    p.add_argument("--leak-calls", type=int, default=None, help=f"calls per kernel in the leak check ({LEAK_CALLS})")
    args = p.parse_args(argv)
    res = run(quick=args.quick, fuzz_examples=args.fuzz_examples, leak_calls=args.leak_calls)
    os.makedirs(args.out, exist_ok=True)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
