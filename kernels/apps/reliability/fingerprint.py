"""Determinism: the SHA-256 of every kernel's output bytes on fixed seeded inputs
(:func:`fingerprints`), compared run to run in this process and in fresh processes with other
``NUMBA_NUM_THREADS`` (:func:`determinism`)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings

import numpy as np

from .processes import ROOT, _subprocess_env
from .problems import _calls, _problems


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


_FINGERPRINT_CODE = "import json, sys; from kernels.apps.reliability.fingerprint import fingerprints; " \
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
