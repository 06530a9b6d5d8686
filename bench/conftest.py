"""Shared set-up for the benchmarks.

Thread counts are fixed before anything is timed, so that Numba, the BLAS behind NumPy and
PyTorch each use the same number of threads (all cores of the machine by default, or
``KERNELS_BENCH_THREADS``). The counts in force while the benchmarks ran, the BLAS libraries
threadpoolctl sees (with their kernel, e.g. ``architecture: Haswell``) and a description of the
machine are written into the JSON (``machine_info["kernels"]``) and the thread counts into every
benchmark's ``extra_info["threads"]``. Tests that were skipped or failed are listed in the
JSON's ``"kernels_outcomes"`` with their reasons, so a report can say why a bar was not run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from gitstate import git_state

THREADS = int(os.environ.get("KERNELS_BENCH_THREADS", os.cpu_count() or 1))

# Filled by the `fixed_threads` fixture while the limits are in force (the JSON is written at
# session end, after the fixture has restored the original limits, so it cannot look then).
_THREADS_SEEN: dict = {}
# nodeid -> {"module", "params"}; and the skipped/failed outcomes, for the JSON.
_ITEMS: dict = {}
_OUTCOMES: list = []


def pytest_configure(config):
    # `pytest bench --benchmark-only` must time, although setup.cfg disables timing by default
    # (so the plain test command runs each benchmark once, as a smoke test).
    if config.getoption("benchmark_only", False):
        config.option.benchmark_disable = False


def _thread_counts() -> dict:
    """Numba, BLAS (every library threadpoolctl finds) and PyTorch thread counts, as now."""
    info: dict = {"requested": THREADS, "cpu_count": os.cpu_count()}
    try:
        import numba

        info["numba"] = numba.get_num_threads()
        info["numba_max"] = numba.config.NUMBA_NUM_THREADS
        info["numba_threading_layer"] = _numba_threading_layer()
    except ImportError as exc:  # pragma: no cover - numba is a hard dependency
        info["numba"] = f"unavailable: {exc}"
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads",
                                   "threading_layer", "architecture", "filepath")}
            for p in threadpool_info()
        ]
    except ImportError as exc:
        info["threadpools"] = f"threadpoolctl unavailable: {exc}"
    try:
        import torch

        info["torch"] = torch.get_num_threads()
        info["torch_interop"] = torch.get_num_interop_threads()
    except ImportError as exc:
        info["torch"] = f"unavailable: {exc}"
    return info


def _numba_threading_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        # Only known once a parallel kernel has run; say which one is configured instead.
        return f"not yet chosen (config: {numba.config.THREADING_LAYER})"


@pytest.fixture(scope="session", autouse=True)
def fixed_threads():
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    # Load the BLAS libraries of the peers before limiting, so threadpoolctl limits (and
    # reports) all of them, not only NumPy's.
    for lib in ("numpy", "scipy.linalg", "torch"):
        try:
            __import__(lib)
        except ImportError:
            pass
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=THREADS)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
    _THREADS_SEEN.clear()
    _THREADS_SEEN.update(_thread_counts())
    yield THREADS
    # The threading layer is only chosen once a parallel kernel has run: look again.
    _THREADS_SEEN["numba_threading_layer"] = _numba_threading_layer()
    if limiter is not None:
        limiter.restore_original_limits()


# Bench impl label -> the library of its catalog peer, which kernels.catalog names
# f"{kernel}_{label}" (e.g. "scipy_ndimage" -> kernels.peers.correlate2d_scipy_ndimage).
PEER_LIBRARIES = {"torch": "torch", "jax": "jax", "scipy_signal": "scipy.signal", "scipy_ndimage": "scipy.ndimage"}


def catalog_impl(kernel: str, impl: str):
    """The callable ``kernels.catalog.implementations(kernel)`` holds for bench label ``impl``
    ("numba", "numpy" or a key of PEER_LIBRARIES), or a visible skip naming a missing peer library."""
    from kernels import peers
    from kernels.catalog import implementations

    impls = implementations(kernel)
    if impl in ("numba", "numpy"):
        return impls[impl]
    try:
        peers.require(PEER_LIBRARIES[impl])
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))
    return impls[f"{kernel}_{impl}"]


@pytest.fixture(scope="session")
def catalog():
    """:func:`catalog_impl` for the bench modules (a conftest is not importable by name)."""
    return catalog_impl


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = {k: _plain(v) for k, v in callspec.params.items()} if callspec else {}
        _ITEMS[item.nodeid] = {"module": os.path.basename(str(item.fspath)), "params": params}


def _plain(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def pytest_runtest_logreport(report):
    """Keep each skipped or failed test with its reason, for the report's NOT RUN lines."""
    if report.outcome == "passed":
        return
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if reason.startswith("Skipped: "):
            reason = reason[len("Skipped: "):]
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)[-500:]
    entry = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
             "reason": reason.strip()[:500]}
    entry.update(_ITEMS.get(report.nodeid, {"module": report.nodeid.split("::")[0].split("/")[-1],
                                            "params": {}}))
    _OUTCOMES.append(entry)


def pytest_collectreport(report):
    """A bench module that fails to import is an outcome too (all of its bars are NOT RUN)."""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)[-500:]
        _OUTCOMES.append({"nodeid": report.nodeid, "when": "collect", "outcome": "error",
                          "reason": reason.strip()[:500],
                          "module": os.path.basename(report.nodeid.split("::")[0]), "params": {}})


def machine_description() -> dict:
    """CPU model, cores, memory, OS and library versions; used by the report's README."""
    desc: dict = {
        "cpu_model": _cpu_model(),
        "cpu_simd": _cpu_simd(),
        "cpu_count": os.cpu_count(),
        "mem_total_gib": _mem_total_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "env": {k: os.environ[k] for k in sorted(os.environ)
                if k.startswith(("NUMBA_", "KERNELS_", "OMP_", "OPENBLAS_", "MKL_"))},
        "versions": {},
    }
    for mod in ("numpy", "numba", "scipy", "torch", "jax", "threadpoolctl", "pytest_benchmark",
                "llvmlite"):
        try:
            m = __import__(mod)
            desc["versions"][mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # an absent peer is worth recording, not raising
            desc["versions"][mod] = f"not installed ({type(exc).__name__})"
    try:
        from kernels import _config

        desc["kernels_config"] = _config.describe()
    except Exception as exc:
        desc["kernels_config"] = f"unavailable: {exc}"
    desc["git"] = _GIT_AT_START
    return desc


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _cpu_simd() -> list:
    """The vector extensions the CPU reports (what the BLAS kernel could have used)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return [f for f in flags if f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                                      "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile")]
    except OSError:
        pass
    return []


def _mem_total_gib():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


# The tree as it was when the run began: the JSON is written at the end, after the run has
# itself rewritten results/, which says nothing about the code that was measured. bench/run.py
# takes it once for all its stages and passes it on.
_GIT_AT_START = (json.loads(os.environ["KERNELS_GIT_AT_START"]) if os.environ.get("KERNELS_GIT_AT_START")
                 else git_state(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["kernels"] = machine_description()
    machine_info["kernels"]["threads"] = dict(_THREADS_SEEN) or _thread_counts()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    threads = dict(_THREADS_SEEN) or _thread_counts()
    pools = [p for p in threads.get("threadpools", []) if isinstance(p, dict)]
    summary = {"numba": threads.get("numba"), "torch": threads.get("torch"),
               "blas": [p.get("num_threads") for p in pools if p.get("user_api") == "blas"],
               "openmp": [p.get("num_threads") for p in pools if p.get("user_api") == "openmp"]}
    for bench in output_json.get("benchmarks", []):
        bench.setdefault("extra_info", {})["threads"] = summary
    output_json["kernels_outcomes"] = list(_OUTCOMES)
    output_json["kernels_options"] = {
        "args": list(config.invocation_params.args),
        "max_time": config.getoption("benchmark_max_time", None),
        "min_rounds": config.getoption("benchmark_min_rounds", None),
        "warmup": config.getoption("benchmark_warmup", None),
    }
