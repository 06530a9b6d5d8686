"""Python's garbage collector around Numba's compiles (kernels/_config.py): paused while a compile
runs and put back exactly as it was, and at exit one collection that finalises the garbage before
the rest is frozen."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numba
import pytest
from numba.core import event

import kernels  # noqa: F401  (registers the listener)
from kernels import _config

pytestmark = pytest.mark.skipif(not _config.GC_TUNED, reason="KERNELS_GC=0 in this environment")


class _SeesCollector(event.Listener):
    """Registered after kernels' listener, so it sees the collector as a compile sees it."""

    def __init__(self):
        self.during = []

    def on_start(self, ev):
        self.during.append(gc.isenabled())

    def on_end(self, ev):
        pass


def _compile_a_new_function(raise_in_typing=False):
    @numba.njit
    def f(x):
        return x + 1 if not raise_in_typing else x + "a"

    return f(1)


@pytest.fixture
def sees():
    listener = _SeesCollector()
    event.register("numba:compile", listener)
    yield listener
    event.unregister("numba:compile", listener)


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_collector_pauses_while_compiling_and_comes_back_as_it_was(sees, enabled_before):
    was = gc.isenabled()
    try:
        gc.enable() if enabled_before else gc.disable()
        assert _compile_a_new_function() == 2
        assert sees.during == [False]  # paused inside the compile
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable() if was else gc.disable()


def test_a_compile_that_fails_puts_the_collector_back(sees):
    assert gc.isenabled()
    with pytest.raises(numba.core.errors.TypingError):
        _compile_a_new_function(raise_in_typing=True)
    assert sees.during == [False] and gc.isenabled()
    assert _compile_a_new_function() == 2 and gc.isenabled()  # and the pause still works after


def test_garbage_at_exit_is_still_finalised():
    """A cycle with a finaliser that became garbage before exit is collected (its finaliser
    runs) even though the rest is frozen; a process with KERNELS_GC=0 behaves the same."""
    code = (
        "import kernels, sys\n"
        "class Noisy:\n"
        "    def __del__(self):\n"
        "        sys.stdout.write('finalised\\n'); sys.stdout.flush()\n"
        "a = Noisy(); a.self = a; del a\n"
        "import gc; gc.disable()\n"  # only the exit handler's collection can find it
        "kernels.maxpool2d(__import__('numpy').ones((1, 1, 4, 4)), 2)\n"
    )
    for flag in ("1", "0"):
        env = dict(os.environ, KERNELS_GC=flag)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.count("finalised") == 1, (flag, out.stdout, out.stderr[-2000:])
