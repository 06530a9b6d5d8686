"""Fuzzing: ``tests/test_fuzz.py`` (hypothesis, hostile input across the public API) run as a
subprocess, and the cases it tried per function read back from the JSON it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from .processes import ROOT, _subprocess_env


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
