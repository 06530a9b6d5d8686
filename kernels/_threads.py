"""Thread pools that share the cores with NumPy's BLAS, instead of spinning against it.

A program that calls ``kernels`` and NumPy in turn runs two thread pools on the same cores:
Numba's workers (the GNU OpenMP runtime, libgomp, behind Numba's ``omp`` threading layer) and
OpenBLAS's (behind ``X @ w``). Each pool keeps its idle workers awake after a call so that the
next call starts at once: libgomp spin-waits ``GOMP_SPINCOUNT`` iterations (300,000 by default,
milliseconds), OpenBLAS yields in a loop for ``2**OPENBLAS_THREAD_TIMEOUT`` cycles (``2**28`` by
default, about 0.1 s). Back to back that is what makes each fast alone; interleaved, the
idle pool's spinning workers take the cores from the busy one. Measured on the project's 2-core
machine (``X`` (4000, 2000) float64, calls alternating): NumPy's ``X.T @ (X @ w - t)`` ran 1.7x
its time alone right after a ``kernels.grad``, and ``kernels.grad`` 1.25x right after NumPy.

What :func:`configure` sets, once, at ``import kernels``:

* Numba's pool is started with ``GOMP_SPINCOUNT`` = :data:`NUMBA_SPIN` (about 0.05 ms of
  spinning), so its workers still catch the next parallel region of a kernel that launches one
  per step, and go to sleep soon after a kernel returns. The variable is set only while libgomp
  loads, then restored. Not done when the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``
  (theirs rule), when Numba's threading layer is not ``omp``, or when libgomp was loaded before.

  PyTorch shares it. Its wheels bundle a ``libgomp.so.1``, but the dynamic loader loads one
  library per name, so a PyTorch imported after ``kernels`` runs on the libgomp started here,
  with the short spin: each of its small parallel operations that follows a pause of more than
  ~20 us then waits tens of microseconds for a worker to wake (measured on the 2-core EPYC, a
  gap of 50 us: 33 us per call against 2; PyTorch's training step of the digits network at
  batch 64: 2.1 ms against 1.6 with PyTorch imported first, medians of four runs). No spin
  count serves both: 5000 gave PyTorch its 1.6 ms back and NumPy's gemv after a
  ``kernels.maxpool2d`` 1.23x its time alone, above issue 12's 1.2 (1000: 1.08x). A program whose
  PyTorch speed matters imports torch first (kernels then leaves the runtime as PyTorch started
  it) or sets ``GOMP_SPINCOUNT`` itself; the PyTorch comparisons of ``bench/bench_nn.py`` and
  ``python -m kernels train`` import torch first.
* OpenBLAS's pool is restarted with ``OPENBLAS_THREAD_TIMEOUT`` = :data:`BLAS_TIMEOUT` (``2**16``
  cycles, tens of microseconds), keeping its thread count; its own environment variable, when
  set, rules instead. OpenBLAS reads the variable only when it starts its threads, which NumPy
  has done by the time ``kernels`` is imported, hence the restart (through OpenBLAS's exported
  ``blas_thread_shutdown_``/``blas_thread_init``, the pair its own fork handler uses).
  Linux only (the library is found in ``/proc/self/maps``).

Results do not change: only when idle threads sleep. ``KERNELS_SHARE_THREADS=0`` leaves both
pools as they are. :func:`describe` says what was done, for reports.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: libgomp spin iterations before an idle Numba worker sleeps (libgomp's default: 300,000).
NUMBA_SPIN = 1000
#: log2 of the cycles an idle OpenBLAS worker yields before it sleeps (OpenBLAS's default: 28).
BLAS_TIMEOUT = 16

_STATE: dict = {"numba": "not configured", "openblas": "not configured"}


def _loaded_libraries(fragment: str) -> list[str]:
    try:
        with open("/proc/self/maps") as fh:
            return sorted({ln.split()[-1] for ln in fh if fragment in ln and ln.split()[-1].startswith("/")})
    except OSError:
        return []


def _start_numba_pool() -> str:
    import numba
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return f"left as it was: Numba's {numba.threading_layer()} pool had started before kernels was imported"
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        parallel._launch_threads()
        return "left to the user's OMP_WAIT_POLICY/GOMP_SPINCOUNT"
    if _loaded_libraries("libgomp"):
        parallel._launch_threads()
        return "left as it was: libgomp was loaded before kernels, with its environment of then"
    os.environ["GOMP_SPINCOUNT"] = str(NUMBA_SPIN)
    try:
        parallel._launch_threads()
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    layer = numba.threading_layer()
    if layer != "omp":
        return f"left as it was: Numba's threading layer is {layer}, not omp"
    return f"GOMP_SPINCOUNT={NUMBA_SPIN} while Numba's omp pool started"


def _symbol(lib, *names):
    for name in names:
        try:
            return getattr(lib, name)
        except AttributeError:
            continue
    return None


def _restart_openblas() -> str:
    paths = _loaded_libraries("openblas")
    if not paths:
        return "not loaded (or not Linux)"
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return f"left to the user's OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}"
    done = []
    for path in paths:
        lib = ctypes.CDLL(path)
        read_env = _symbol(lib, "openblas_read_env")
        shutdown = _symbol(lib, "blas_thread_shutdown_")
        init = _symbol(lib, "blas_thread_init")
        get_n = _symbol(lib, "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                        "openblas_get_num_threads")
        set_n = _symbol(lib, "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                        "openblas_set_num_threads")
        if None in (read_env, shutdown, init, get_n, set_n):
            done.append(f"{os.path.basename(path)}: left as it was (it exports no restart)")
            continue
        threads = get_n()
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_TIMEOUT)
        try:
            read_env()
            shutdown()
            init()
        finally:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
            read_env()
        set_n(ctypes.c_int(threads))
        done.append(f"{os.path.basename(path)}: restarted with OPENBLAS_THREAD_TIMEOUT={BLAS_TIMEOUT}, "
                    f"{threads} threads")
    return "; ".join(done)


def configure(parallel: bool) -> None:
    """Set both pools as the module docstring says; once per process, at ``import kernels``."""
    if _STATE["numba"] != "not configured":
        return
    if os.environ.get("KERNELS_SHARE_THREADS", "1").strip().lower() in ("0", "false", "no", "off"):
        _STATE.update(numba="left as it was (KERNELS_SHARE_THREADS=0)", openblas="left as it was (KERNELS_SHARE_THREADS=0)")
        return
    if not parallel:  # one kernel thread: an idle pool's spinning costs it nothing on another core
        _STATE.update(numba="not used (KERNELS_PARALLEL=0)", openblas="left as it was (KERNELS_PARALLEL=0)")
        return
    _STATE["numba"] = _start_numba_pool()
    _STATE["openblas"] = _restart_openblas() if sys.platform.startswith("linux") else "left as it was (not Linux)"


def describe() -> dict:
    """What :func:`configure` did to each pool."""
    return dict(_STATE)
