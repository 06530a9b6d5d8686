"""Loading a run: the JSON files, the ``BARS`` the bench modules declare, and :class:`Index`,
every benchmark of a pytest-benchmark JSON by group and implementation with the ceilings
(STREAM triad, GEMM peak) measured in the same run."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field

#: ``bench/``, where the ``bench_*.py`` modules live, and the repository root above it.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)

#: Implementations that are this library's own code (or its naive reference); every other impl
#: name in a group is a peer library, except variants of the kernel labelled ``numba_*``
#: (``numba_residual``, ``numba_cold``), which are this library's too.
OWN_IMPLS = ("numba", "forward_pass", "reverse", "forward", "checkpoint", "exact")
REFERENCE_IMPL = "numpy"


def load_json(path):
    """The JSON at ``path``, or None where there is none: a stage that was killed (a timeout)
    may leave an empty or truncated file, and its bars are then reported as not run, with a
    warning, instead of stopping the report."""
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"report: {path} is not JSON ({len(text)} bytes: {exc}); its results are reported as not run",
              file=sys.stderr)
        return None


@dataclass
class BarSet:
    bars: list = field(default_factory=list)  #: dicts, each with "module" added
    errors: list = field(default_factory=list)  #: (module, message) for modules that would not import


def collect_bars(bench_dir: str) -> BarSet:
    """Import every ``bench_*.py`` in ``bench_dir`` by path and gather its ``BARS``."""
    out = BarSet()
    # Bench modules import `kernels` (an uninstalled checkout has it only at the root) and may
    # import their siblings.
    for path in (ROOT, bench_dir):
        if path not in sys.path:
            sys.path.insert(0, path)
    for path in sorted(glob.glob(os.path.join(bench_dir, "bench_*.py"))):
        module = os.path.basename(path)
        name = "_kernels_report_" + module[:-3]
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # dataclasses and pickling look modules up there
            spec.loader.exec_module(mod)
        except BaseException as exc:  # a broken module must show up, not stop the report
            if isinstance(exc, KeyboardInterrupt):
                raise
            out.errors.append((module, f"{type(exc).__name__}: {exc}"))
            continue
        bars = getattr(mod, "BARS", None)
        if bars is None:
            out.errors.append((module, "declares no BARS"))
            continue
        for bar in bars:
            b = dict(bar)
            b["module"] = module
            out.bars.append(b)
    return out


def is_own(impl: str) -> bool:
    """Whether ``impl`` labels this library's code (see :data:`OWN_IMPLS`)."""
    return impl in OWN_IMPLS or impl.startswith("numba_")


def impl_of(bench: dict) -> str:
    extra = bench.get("extra_info") or {}
    params = bench.get("params") or {}
    return str(extra.get("impl") or params.get("impl") or bench.get("param") or bench["name"])


def module_of(bench: dict) -> str:
    """The bench module file a benchmark came from (``bench_conv.py``)."""
    return os.path.basename(str(bench.get("fullname", "?")).split("::")[0])


def group_parts(group: str):
    parts = (group or "").split("|")
    return parts + [""] * (3 - len(parts))


class Index:
    """The benchmarks of one pytest-benchmark JSON, by group and implementation."""

    def __init__(self, data):
        self.data = data or {}
        self.by_key: dict = {}
        self.groups: dict = {}
        self.duplicates: list = []
        for b in self.data.get("benchmarks", []):
            key = (b.get("group") or "(no group)", impl_of(b))
            if key in self.by_key:
                self.duplicates.append(b.get("fullname", b.get("name")))
                continue
            self.by_key[key] = b
            self.groups.setdefault(key[0], []).append(b)
        self.outcomes = self.data.get("kernels_outcomes", [])
        self.triad_bw, self.triad_from = self._triad()
        self.gemm_peak = self._gemm()

    def get(self, group, impl):
        return self.by_key.get((group, impl))

    def _triad(self):
        best, src = None, None
        for (group, impl), b in self.by_key.items():
            extra = b.get("extra_info") or {}
            if extra.get("roofline") == "bandwidth" and extra.get("bytes"):
                bw = extra["bytes"] / b["stats"]["median"]
                if best is None or bw > best:
                    best, src = bw, f"{group} [{impl}]"
        return best, src

    def _gemm(self):
        peaks: dict = {}
        for (group, impl), b in self.by_key.items():
            extra = b.get("extra_info") or {}
            if extra.get("roofline") == "flops" and extra.get("flops"):
                dtype = group_parts(group)[2]
                rate = extra["flops"] / b["stats"]["median"]
                if dtype not in peaks or rate > peaks[dtype][0]:
                    peaks[dtype] = (rate, f"{group} [{impl}]")
        return peaks


def median(b) -> float:
    return b["stats"]["median"]
