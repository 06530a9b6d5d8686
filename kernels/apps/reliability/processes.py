"""Child processes: the checks that need a fresh interpreter (another thread count, an empty
compile cache, Numba's allocation statistics, the fuzz suite) start one with this environment,
which finds ``kernels`` in this checkout whether or not it is installed."""

from __future__ import annotations

import os

from .. import ROOT


def _subprocess_env(**overrides):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in overrides.items()})
    return env
