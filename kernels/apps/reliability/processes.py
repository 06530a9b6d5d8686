"""Child processes: the checks that need a fresh interpreter (another thread count, an empty
compile cache, Numba's allocation statistics, the fuzz suite) start one with this environment,
which finds ``kernels`` in this checkout whether or not it is installed."""

from __future__ import annotations

import json
import os
import sys

from .. import ROOT

#: The line a child started by :func:`check_command` prints its result on.
RESULT_TAG = "KERNELS_RELIABILITY_RESULT "


def _subprocess_env(**overrides):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def check_command(call: str) -> list:
    """The command line of a fresh Python process that runs ``kernels.apps.reliability.<call>``
    (for instance ``"leak(calls=100)"``) and prints its result as JSON after :data:`RESULT_TAG`
    (read it back with :func:`check_result`): a check that takes a minute can then run beside
    other work."""
    code = (f"import json; from kernels.apps import reliability as R; "
            f"print({RESULT_TAG!r} + json.dumps(R.{call}))")
    return [sys.executable, "-c", code]


def check_result(stdout: str):
    """The result a :func:`check_command` process printed."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if not lines:
        raise RuntimeError(f"the check printed no result:\n{stdout[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])
