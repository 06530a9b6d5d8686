"""The homework, answered by computation: ``python -m kernels hw2`` (issue 6).

Every question of CSC413 Homework 2 (``shared/seed/``) that has a computational side is answered
here by the library's own kernels, at run time -- nothing is typed in -- and written to
``results/hw2.md`` with the figures ``hw2_rmsprop.png``, ``hw2_graph.png`` and ``hw2_lr.png``
(and the raw numbers in ``hw2.json``)::

    python -m kernels hw2 [--out DIR] [--spec SPEC] [--quick]

Each ``q*`` function computes one answer and returns plain data (dicts of floats, lists and
strings), so the tests call the very functions whose numbers the report prints and check them
against independent derivations. :func:`render_markdown` and the ``plot_*`` functions turn that
data into the report; matplotlib is imported only there (it belongs to the ``bench`` extra).

One file per part of the homework, one for the Markdown and one for the figures; this module
runs them (:func:`compute_all`, :func:`write_report`, :func:`main`) and re-exports what the
tests call:

=========================  ==================================================================
``q1_optimization.py``     1.1.1 and 1.2: SGD, the minimum-norm solution, adaptive methods
``q2_hypergradients.py``   2.1.1 to 2.3: the unrolled graph, memory against T, the optimal
                           learning rate, L2 against weight decay
``q3_cnn.py``              3.1 to 3.3: the homework's filter, network sizes, receptive fields
``render.py``              ``hw2.md`` from the answers' data
``figures.py``             ``hw2_rmsprop.png``, ``hw2_graph.png``, ``hw2_lr.png``
``_common.py``             the default CNN spec and the problem sizes (full and ``--quick``)
=========================  ==================================================================

Questions and what answers them:

=======  =======================================================================================
1.1.1    :func:`kernels.sgd` from ``w0 = 0`` against :func:`kernels.min_norm_solution` (``d > n``)
1.2      :func:`kernels.rmsprop`, :func:`kernels.adagrad`, :func:`kernels.adam` on ``x1 = [2, 1]``,
         ``t = [2]``; their 2-D trajectories against the solution line
2.1.1    :func:`kernels.unroll_graph` (DOT text), parsed and drawn with a layered layout
2.1.2    ``results/memory.json`` (the memory-scaling study) when present, else tracemalloc and
         ``bytes_stored`` of :func:`kernels.hypergrad` measured here
2.2      ``L_1(eta)`` on a grid, :func:`kernels.optimal_lr_one_step`, :func:`kernels.tune_lr`
2.3      :func:`kernels.gd` / :func:`kernels.rmsprop` with ``l2`` against ``weight_decay``
3.1      :func:`kernels.conv.convolve2d` / :func:`kernels.conv.correlate2d`, ``padding='same'``
3.2/3.3  :mod:`kernels.arch` (``parse``, ``analyze``, ``to_dense``, the empirical receptive field)
=======  =======================================================================================
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

from kernels import arch

from .. import ROOT, make_out_dir
from ._common import DEFAULT_SPEC, SIZES
from .figures import FIGURES, _pyplot, graph_positions, plot_graph, plot_lr, plot_rmsprop, require_matplotlib
from .q1_optimization import q1_1_1, q1_2
from .q2_hypergradients import complexity_class, layered_layout, parse_dot, q2_1_1, q2_1_2, q2_2, q2_3
from .q3_cnn import HW_I, HW_J, q3_1, q3_2, q3_3, q3_3_specs
from .render import render_markdown

__all__ = [
    "DEFAULT_SPEC", "FIGURES", "HW_I", "HW_J", "SIZES", "check_memory_json", "check_spec", "complexity_class",
    "compute_all", "graph_positions", "layered_layout", "machine_info", "main", "parse_dot", "plot_graph", "plot_lr",
    "plot_rmsprop", "q1_1_1", "q1_2", "q2_1_1", "q2_1_2", "q2_2", "q2_3", "q3_1", "q3_2", "q3_3", "q3_3_specs",
    "render_markdown", "write_report",
]

#: The filter size question 3.3 sets every conv to.
Q3_3_KERNEL = 5


def machine_info():
    """Date, commit, platform and library versions for the report's header."""

    def git(*args):
        try:
            p = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    import numba

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        commit=commit or "unknown (not a git checkout)", dirty=bool(dirty),
        platform=platform.platform(), machine=platform.machine(), processor=platform.processor() or "unknown",
        cpus=os.cpu_count(), python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
    )


def _sections(spec, quick, memory_json):
    """name -> the function computing that answer."""
    return {
        "q1_1_1": lambda: q1_1_1(quick),
        "q1_2": lambda: q1_2(quick),
        "q2_1_1": lambda: q2_1_1(2),
        "q2_1_2": lambda: q2_1_2(memory_json, quick),
        "q2_2": lambda: q2_2(quick),
        "q2_3": lambda: q2_3(quick),
        "q3_1": q3_1,
        "q3_2": lambda: q3_2(spec),
        "q3_3": lambda: q3_3(spec, Q3_3_KERNEL),
    }


#: The sections in groups that call nearly disjoint kernel families, so that two processes compile
#: disjoint sets of kernels at once (each writes what it compiled to the disk cache, where the
#: other finds it): convolution and pooling (3.x); the optimizers (1.x, 2.2, 2.3), with 2.1
#: when 2.1.2 quotes the memory study's JSON (then it runs no kernel); otherwise 2.1, whose
#: tracemalloc measurement compiles every hypergradient method, beside the other two families
#: together. Measured cold on the 2-core EPYC (sections' seconds summed per process): quoting,
#: 5.5-6.9 s and 6.0-7.5 s (the conv sections with the optimizers: 12.8-14.6 s in all);
#: measuring, 9.9 s and 7.7 s, where three processes (one per family) took 12.0 s in all and
#: the hypergradients with the optimizers 13.0 s.
_CONV_SECTIONS = ("q3_1", "q3_2", "q3_3")
_OPTIM_SECTIONS = ("q1_1_1", "q1_2", "q2_2", "q2_3")
_HYPER_SECTIONS = ("q2_1_1", "q2_1_2")


def _groups(memory_json):
    """The groups of sections, one process each, for a run whose 2.1.2 reads ``memory_json``
    (measures when it is None or absent)."""
    if memory_json and os.path.exists(memory_json):
        return _CONV_SECTIONS, _OPTIM_SECTIONS + _HYPER_SECTIONS
    return _CONV_SECTIONS + _OPTIM_SECTIONS, _HYPER_SECTIONS


def _run_group(names, spec, quick, memory_json, say_progress, threads=None):
    """Run the sections ``names`` in this process: ``{name: answer}``, ``{name: seconds}``."""
    if threads is not None:
        import numba

        numba.set_num_threads(threads)
    sections = _sections(spec, quick, memory_json)
    answers, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in names:
            t0 = time.perf_counter()
            answers[name] = sections[name]()
            seconds[name] = time.perf_counter() - t0
            if say_progress is not None:
                say_progress(name, seconds[name])
    return answers, seconds


def check_spec(spec):
    """Raise ``ValueError`` unless every section can analyse the CNN ``spec``: it parses, its
    shapes fit (:func:`kernels.arch.analyze`), so do its fully connected counterpart's (3.2) and
    every spec section 3.3 derives from it with 5x5 convs (:func:`q3_3_specs`). Cheap: no kernel
    runs, so the command line calls it before minutes of work."""
    layers = arch.parse(spec)
    arch.analyze(layers)
    arch.analyze(arch.to_dense(layers))
    for label, derived in q3_3_specs(spec, Q3_3_KERNEL)[2]:
        try:
            arch.analyze(arch.parse(derived))
        except ValueError as exc:
            raise ValueError(f"section 3.3 analyses {derived!r} ({label}), which does not fit: {exc}") from None


def _number_or_null(x):
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def check_memory_json(path):
    """Raise ``ValueError`` unless ``path`` holds what question 2.1.2 quotes from the memory-scaling
    study: a JSON object whose optional ``runs`` is a list of objects (``method`` a string, ``T``
    and the measured ``rss_above_baseline_mib``, ``tracemalloc_peak_mib``, ``bytes_stored`` numbers
    or null) and whose optional ``slopes`` maps each method to an object of numbers or nulls."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"must hold a JSON object with 'runs' and 'slopes', got a {type(data).__name__}")
    runs = data.get("runs", [])
    if not isinstance(runs, list):
        raise ValueError(f"'runs' must be a list, got a {type(runs).__name__}")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ValueError(f"runs[{i}] must be an object, got {run!r}")
        if not isinstance(run.get("method") or "", str):
            raise ValueError(f"runs[{i}]['method'] must be a string, got {run['method']!r}")
        if "T" in run and run["T"] is None:  # q2_1_2 sorts the runs by T
            raise ValueError(f"runs[{i}]['T'] must be a number, got null")
        for key in ("T", "rss_above_baseline_mib", "tracemalloc_peak_mib", "bytes_stored"):
            if not _number_or_null(run.get(key)):
                raise ValueError(f"runs[{i}][{key!r}] must be a number, got {run[key]!r}")
    slopes = data.get("slopes", {})
    if not isinstance(slopes, dict):
        raise ValueError(f"'slopes' must be an object, got a {type(slopes).__name__}")
    for method, by_kind in slopes.items():
        if not isinstance(by_kind, dict):
            raise ValueError(f"slopes[{method!r}] must be an object, got {by_kind!r}")
        for kind, value in by_kind.items():
            if not _number_or_null(value):
                raise ValueError(f"slopes[{method!r}][{kind!r}] must be a number, got {value!r}")


def _say(name, seconds):
    print(f"hw2: {name} done in {seconds:.1f} s", file=sys.stderr, flush=True)


def compute_all(spec=DEFAULT_SPEC, quick=False, memory_json=None, progress=None, workers=1, meanwhile=None):
    """Every answer, as plain data, with the seconds each took; ``progress(name, seconds)`` is
    called after each section, and ``meanwhile()`` (if given) in this process while the workers
    compute (before the sections, with one worker).

    ``workers=2`` runs the two groups of sections (:func:`_groups`) in two fresh processes at
    once, one thread each, and ``progress`` must then be picklable (a module-level function):
    on a first run most of the time is spent compiling, one core per process, so two processes
    halve it. The answers do not depend on it (the kernels give the same bits on any number of
    threads)."""
    res = dict(spec=spec, quick=bool(quick), seconds={})
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        groups = _groups(memory_json)
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_run_group, names, spec, quick, memory_json, progress, 1) for names in groups]
            if meanwhile is not None:
                meanwhile()
            parts = [job.result() for job in jobs]
    else:
        if meanwhile is not None:
            meanwhile()
        parts = [_run_group(list(_sections(spec, quick, memory_json)), spec, quick, memory_json, progress)]
    for answers, seconds in parts:
        res.update(answers)
        res["seconds"].update(seconds)
    return res


def write_report(out="results", spec=DEFAULT_SPEC, quick=False, memory_json=None, progress=None, workers=1):
    """Compute every answer, write ``hw2.md``, ``hw2.json`` and the figures into ``out``;
    returns the data. ``memory_json`` defaults to ``out/memory.json``; ``workers`` as in
    :func:`compute_all`."""
    require_matplotlib()  # fail early, before minutes of work, if matplotlib is missing
    os.makedirs(out, exist_ok=True)
    if memory_json is None:
        memory_json = os.path.join(out, "memory.json")
    # matplotlib's import runs while the workers compile and compute
    res = compute_all(spec=spec, quick=quick, memory_json=memory_json, progress=progress, workers=workers,
                      meanwhile=_pyplot)
    meta = machine_info()
    plot_rmsprop(res["q1_2"], os.path.join(out, FIGURES["rmsprop"]))
    plot_graph(res["q2_1_1"], os.path.join(out, FIGURES["graph"]))
    plot_lr(res["q2_2"], os.path.join(out, FIGURES["lr"]))
    with open(os.path.join(out, "hw2.md"), "w") as fh:
        fh.write(render_markdown(res, meta, FIGURES))
    with open(os.path.join(out, "hw2.json"), "w") as fh:
        json.dump(dict(meta=meta, **res), fh, indent=1, default=_jsonable)
    return res


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kernels hw2",
                                description="Answer CSC413 Homework 2's computational questions with the kernels: "
                                            "writes hw2.md, hw2.json and hw2_*.png into --out.")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--spec", default=DEFAULT_SPEC,
                   help=f"the CNN of questions 3.2/3.3, as a kernels.arch spec (default: {DEFAULT_SPEC!r})")
    p.add_argument("--quick", action="store_true", help="small problems: a smoke run for tests (numbers not the report's)")
    p.add_argument("--memory-json", default=None,
                   help="the memory-scaling study's JSON for 2.1.2 (default: OUT/memory.json; measured here if absent)")
    args = p.parse_args(argv)
    # Every check before any work: a spec or a memory.json that cannot be used would otherwise
    # end, minutes later, in a traceback from a worker process.
    try:
        check_spec(args.spec)
    except ValueError as exc:
        p.error(f"--spec {args.spec!r}: {exc}")
    memory_json = os.path.join(args.out, "memory.json") if args.memory_json is None else args.memory_json
    if os.path.exists(memory_json):  # absent: 2.1.2 measures instead
        try:
            check_memory_json(memory_json)
        except ValueError as exc:
            option = "--memory-json" if args.memory_json is not None else "--memory-json (default OUT/memory.json)"
            p.error(f"{option} {memory_json!r}: {exc}")
    make_out_dir(p, args.out)
    t0 = time.perf_counter()
    workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    # A newcomer's first run compiles every kernel it calls (tens of seconds of one core, against
    # a few seconds once they are cached on disk): say so instead of sitting silent.
    print(f"hw2: answering 9 sections in {workers} process(es); the first run also compiles the kernels "
          "(a few tens of seconds), later runs load them from the disk cache", file=sys.stderr, flush=True)
    write_report(out=args.out, spec=args.spec, quick=args.quick, memory_json=args.memory_json, progress=_say,
                 workers=workers)
    print(f"hw2: wrote {os.path.join(args.out, 'hw2.md')} and {len(FIGURES)} figures in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return 0
