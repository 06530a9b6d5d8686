"""Render the reports in ``results/`` from the raw JSON alone.

    python bench/report.py [--results results] [--bench-dir bench]

Reads ``results/benchmarks.json`` (pytest-benchmark, with the machine and thread information
``bench/conftest.py`` adds), ``results/memory.json`` (``bench/memory_scaling.py``) and
``results/run.json`` (``bench/run.py``'s stage log), whichever exist, and the ``BARS`` declared by
``bench/bench_*.py``; writes ``README.md``, ``benchmarks.md``, ``memory.md`` and the figures
``speedups.png``, ``memory_scaling.png``, ``time_scaling.png``. Nothing is measured here, so the
reports can be re-rendered at any time without re-running anything.

Every bar ends up PASS, FAIL or NOT RUN, the last with its reason (a skipped peer, a failed
benchmark, a missing stage); none is dropped. A speed-up bar that lacks some of the peers it is
measured against is FAIL if the peers present already beat it (more peers can only lower a
minimum) and NOT RUN otherwise.

This script is the command and puts the parts together (:func:`render`); the parts live in the
``reporting`` package beside it, one concern a module (its docstring lists them). Besides what
:func:`render` uses, the imports below bring the names ``tests/test_report.py`` checks
(``F401``), so this file loaded as a module offers them as it always did.
"""

from __future__ import annotations

import argparse
import os
import sys

# The reporting package sits beside this file; put its folder on the path however this file was
# loaded (as a script, which does so itself, or by path from tests/test_report.py).
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reporting.bars import FAIL, NOT_RUN, PASS, evaluate_bar, memory_verdicts  # noqa: E402
from reporting.figures import memory_legend, plot_memory, plot_speedups, speedup_rows  # noqa: E402,F401
from reporting.formatting import fmt_against  # noqa: E402,F401
from reporting.load import HERE, ROOT, Index, collect_bars, load_json  # noqa: E402
from reporting.readme import REGENERATE, render_readme  # noqa: E402,F401
from reporting.tables import render_benchmarks_md, render_memory_md, speedups  # noqa: E402,F401


def render(results_dir: str, bench_dir: str) -> dict:
    """Write every report into ``results_dir``; return a summary (counts, files written)."""
    os.makedirs(results_dir, exist_ok=True)
    index = Index(load_json(os.path.join(results_dir, "benchmarks.json")))
    memory = load_json(os.path.join(results_dir, "memory.json"))
    run = load_json(os.path.join(results_dir, "run.json"))
    barset = collect_bars(bench_dir)
    verdicts = [evaluate_bar(b, index) for b in barset.bars]
    mem_verdicts = memory_verdicts(memory)

    written = []

    def write(name, text):
        path = os.path.join(results_dir, name)
        with open(path, "w") as fh:
            fh.write(text.rstrip() + "\n")
        written.append(path)

    write("benchmarks.md", render_benchmarks_md(index, verdicts, barset))
    write("memory.md", render_memory_md(memory, mem_verdicts))
    stale = ["speedups.png", "memory_scaling.png", "time_scaling.png"]
    try:
        import matplotlib  # noqa: F401  (a test-only install may lack it: say so, draw nothing)
    except ImportError as exc:
        figures_note = f"matplotlib is not installed ({exc}), so no figures were drawn"
    else:
        figures_note = ""
        written.append(plot_speedups(index, results_dir))
        stale.remove("speedups.png")
        if memory is not None:
            written += plot_memory(memory, results_dir)
            stale = []
    for name in stale:  # a figure left from an earlier run would contradict this run's reports
        path = os.path.join(results_dir, name)
        if os.path.exists(path):
            os.remove(path)
    write("README.md", render_readme(index, memory, run, verdicts, mem_verdicts, barset, results_dir,
                                     figures_note))
    allv = verdicts + mem_verdicts
    return {"written": written, "bars": len(allv),
            **{s: sum(v.status == s for v in allv) for s in (PASS, FAIL, NOT_RUN)},
            "bar_module_errors": barset.errors}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "results"), help="results directory")
    p.add_argument("--bench-dir", default=HERE, help="where the bench_*.py modules with BARS live")
    args = p.parse_args(argv)
    summary = render(args.results, args.bench_dir)
    for path in summary["written"]:
        print(f"wrote {os.path.relpath(path)}")
    print(f"bars: {summary[PASS]} PASS, {summary[FAIL]} FAIL, {summary[NOT_RUN]} NOT RUN")
    for module, err in summary["bar_module_errors"]:
        print(f"warning: bars of {module} could not be read: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
