import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hypothesis import HealthCheck, settings

# Small example counts keep the suite inside CI's budget (2 cores, compile time included);
# KERNELS_HYPOTHESIS_PROFILE=thorough runs many more.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KERNELS_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def bench_module():
    """Loads a module of ``bench/`` (not a package) by path, for the tests of its helpers."""
    return _load_bench_module


def _load_bench_module(name):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- background subprocesses
#
# The slowest tests each run one subprocess that compiles every kernel afresh (for another target,
# with bounds checks, without optimisation) and mostly use one core. The suite's own process
# mostly uses one core too, so on CI's 2-core machine such a subprocess is started in the
# background as soon as collection has chosen its test, at a lower priority, and the test waits
# for its result: the suite's wall time is then about the longer of the two, not their sum. A
# test names its subprocesses with ``@pytest.mark.background(start=start)``, ``start(workdir)``
# returning ``{name: dict(argv=..., env=..., cwd=..., timeout=...)}``, and reads them from the
# ``background`` fixture. At most ``cores - 1`` start on their own, in the order of the tests;
# a test that arrives first starts its own at once.

_LOCK = threading.Lock()
_JOBS: dict = {}  # nodeid -> Jobs
_QUEUE: list = []
_STOP = threading.Event()
_WORKDIR: list = []


#: Runs a command at a lower priority (``os.nice``, where the platform has it), then becomes it.
_NICE = "import os, sys; hasattr(os, 'nice') and os.nice(10); os.execv(sys.argv[1], sys.argv[1:])"


class Job:
    """One background subprocess: started at most once, its output and errors in files (a pipe
    nobody reads until the test could fill and stall the child)."""

    def __init__(self, name, log, argv, env, cwd, timeout):
        self.name, self.log, self.argv, self.env, self.cwd, self.timeout = name, log, argv, env, cwd, timeout
        self.proc = None
        self._files = []
        self._started = 0.0

    def start(self):
        with _LOCK:
            if self.proc is None:
                self._files = [open(f"{self.log}.{kind}", "w") for kind in ("out", "err")]
                self._started = time.monotonic()
                self.proc = subprocess.Popen([sys.executable, "-c", _NICE, *self.argv], cwd=self.cwd, env=self.env,
                                             stdout=self._files[0], stderr=self._files[1])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def result(self):
        """``(returncode, stdout, stderr)``, waiting at most ``timeout`` seconds from the start."""
        self.start()
        try:
            rc = self.proc.wait(timeout=max(1.0, self.timeout - (time.monotonic() - self._started)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            for f in self._files:
                f.close()
        return (rc, *(Path(f"{self.log}.{kind}").read_text(errors="replace") for kind in ("out", "err")))

    def stop(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()
        for f in self._files:
            f.close()


class Jobs(dict):
    """A test's background subprocesses by name, and the directory they may write in."""

    def __init__(self, workdir):
        super().__init__()
        self.workdir = workdir


def _make_jobs(item, start):
    if not _WORKDIR:
        _WORKDIR.append(Path(tempfile.mkdtemp(prefix="kernels-background-")))
    workdir = _WORKDIR[0] / f"job{len(_JOBS)}"
    workdir.mkdir()
    jobs = Jobs(workdir)
    for name, spec in start(workdir).items():
        jobs[name] = Job(name, workdir / name, **spec)
    return jobs


def _scheduler(slots):
    for job in list(_QUEUE):
        while not _STOP.is_set() and sum(j.running() for j in _QUEUE) >= slots:
            time.sleep(0.2)
        if _STOP.is_set():
            return
        job.start()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "background(start): the test's slow subprocesses, started in the background after collection "
                   "(see tests/conftest.py)")


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is not None:
            _JOBS[item.nodeid] = _make_jobs(item, marker.kwargs["start"])
            _QUEUE.extend(_JOBS[item.nodeid].values())
    if _QUEUE:
        slots = max(1, (os.cpu_count() or 2) - 1)
        threading.Thread(target=_scheduler, args=(slots,), name="kernels-background", daemon=True).start()


def pytest_sessionfinish(session):
    _STOP.set()
    for job in _QUEUE:
        job.stop()
    for d in _WORKDIR:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def background(request):
    """The background subprocesses of this test (``@pytest.mark.background``), all started."""
    jobs = _JOBS.get(request.node.nodeid)
    if jobs is None:
        marker = request.node.get_closest_marker("background")
        if marker is None:
            raise RuntimeError(f"{request.node.nodeid} uses the background fixture without @pytest.mark.background")
        jobs = _JOBS[request.node.nodeid] = _make_jobs(request.node, marker.kwargs["start"])
        _QUEUE.extend(jobs.values())
    for job in jobs.values():
        job.start()
    return jobs
