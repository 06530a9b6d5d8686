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
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import importlib.util
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGENERATE = 'python -m pip install -e ".[bench]" && python bench/run.py'

#: Implementations that are this library's own code (or its naive reference); every other impl
#: name in a group is a peer library, except variants of the kernel labelled ``numba_*``
#: (``numba_residual``, ``numba_cold``), which are this library's too.
OWN_IMPLS = ("numba", "forward_pass", "reverse", "forward", "checkpoint", "exact")
REFERENCE_IMPL = "numpy"
CRITERIA = ("min_speedup", "min_bandwidth_fraction", "min_flops_fraction")

PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"


# --------------------------------------------------------------------------------------------
# loading


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


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


# --------------------------------------------------------------------------------------------
# bars


@dataclass
class Verdict:
    bar: dict
    status: str
    measured: str  #: the measured value, formatted ("17.3x vs torch", "64% of triad")
    target: str
    reason: str = ""  #: why NOT RUN, or what limited the value


def _criterion(bar):
    return [k for k in CRITERIA if k in bar]


def why_missing(index: Index, bar: dict, impls) -> str:
    """The reasons the JSON holds for ``impls`` of the bar's group not having run."""
    if not index.data:
        return "no benchmarks.json: the benchmark stage did not run or wrote nothing"
    module = bar.get("module")
    dtype = group_parts(bar.get("group"))[2]
    reasons = []
    for o in index.outcomes:
        if o.get("module") != module:
            continue
        params = o.get("params") or {}
        impl = params.get("impl")
        if dtype and params.get("dtype") not in (None, dtype):
            continue  # the same impl skipped or failed for the other dtype says nothing here
        if o.get("when") == "collect" or impl in impls or impl is None:
            text = f"{o['outcome']}: {o['reason']}"
            if text not in reasons:
                reasons.append(text)
    group = bar.get("group")
    if reasons:
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        return "; ".join(reasons[:3]) + more
    if group not in index.groups:
        kernel = group_parts(group)[0]  # show a group of the same kernel first: the likely mismatch
        ran = sorted({g for (g, _impl), b in index.by_key.items() if module_of(b) == module},
                     key=lambda g: (group_parts(g)[0] != kernel, g))
        if ran:
            return (f"no benchmark of group {group!r} in benchmarks.json; {module} ran {len(ran)} other "
                    f"group(s), e.g. {ran[0]!r} (a --quick run uses smaller shapes)")
        return f"no benchmark of group {group!r} in benchmarks.json ({module} did not run)"
    have = sorted(impl_of(b) for b in index.groups[group])
    return f"no result for {', '.join(impls)} in group {group!r} (ran: {', '.join(have)})"


def evaluate_bar(bar: dict, index: Index) -> Verdict:
    kinds = _criterion(bar)
    if len(kinds) != 1:
        return Verdict(bar, NOT_RUN, "—", "?",
                       f"the bar names {len(kinds)} criteria; the report knows exactly one of "
                       f"{', '.join(CRITERIA)} per bar (keys: {', '.join(sorted(bar))})")
    kind = kinds[0]
    target = float(bar[kind])
    group, impl = bar.get("group"), bar.get("impl")
    main = index.get(group, impl)
    if kind == "min_speedup":
        versus = bar.get("versus") or ()
        versus = (versus,) if isinstance(versus, str) else tuple(versus)
        target_txt = f">= {target:.3g}x" if target >= 1 else f">= {target:.3g}x (at most {1 / target:.3g}x the time)"
        if not versus:
            return Verdict(bar, NOT_RUN, "—", target_txt, "min_speedup bar without versus=")
        if main is None:
            return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, [impl]))
        present = {v: index.get(group, v) for v in versus if index.get(group, v) is not None}
        missing = [v for v in versus if v not in present]
        if not present:
            return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, missing))
        ratios = {v: median(b) / median(main) for v, b in present.items()}
        limiting = min(ratios, key=ratios.get)
        value = ratios[limiting]
        measured = f"{fmt_against(value, target)}x vs {limiting}"
        if value < target:
            extra = f"; not run: {', '.join(missing)}" if missing else ""
            return Verdict(bar, FAIL, measured, target_txt, f"limited by {limiting}{extra}")
        if missing:
            return Verdict(bar, NOT_RUN, measured + " (partial)", target_txt,
                           f"passes against {', '.join(present)} but {', '.join(missing)} did not run, "
                           f"so the minimum is unknown: {why_missing(index, bar, missing)}")
        return Verdict(bar, PASS, measured, target_txt, f"limited by {limiting}")

    if kind == "min_bandwidth_fraction":
        target_txt = f">= {target:.0%} of triad"
        if main is None:
            return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, [impl]))
        nbytes = (main.get("extra_info") or {}).get("bytes")
        if not nbytes:
            return Verdict(bar, NOT_RUN, "—", target_txt,
                           f"{group} [{impl}] has no extra_info['bytes'] to compute a bandwidth from")
        if index.triad_bw is None:
            return Verdict(bar, NOT_RUN, "—", target_txt,
                           "no triad bandwidth in this run (bench/bench_roofline.py did not run)")
        bw = nbytes / median(main)
        frac = bw / index.triad_bw
        status = PASS if frac >= target else FAIL
        return Verdict(bar, status, f"{fmt_against(frac, target, pct=True)} ({bw / 1e9:.1f} GB/s)", target_txt,
                       f"triad {index.triad_bw / 1e9:.1f} GB/s")

    # min_flops_fraction
    target_txt = f">= {target:.0%} of GEMM peak"
    if main is None:
        return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, [impl]))
    flops = (main.get("extra_info") or {}).get("flops")
    if not flops:
        return Verdict(bar, NOT_RUN, "—", target_txt,
                       f"{group} [{impl}] has no extra_info['flops'] to compute a rate from")
    dtype = group_parts(group)[2]
    peak = index.gemm_peak.get(dtype)
    if peak is None:
        return Verdict(bar, NOT_RUN, "—", target_txt,
                       f"no {dtype or 'matching'} GEMM peak in this run (bench/bench_roofline.py did not run)")
    rate = flops / median(main)
    frac = rate / peak[0]
    status = PASS if frac >= target else FAIL
    return Verdict(bar, status, f"{fmt_against(frac, target, pct=True)} ({rate / 1e9:.1f} GFLOP/s)", target_txt,
                   f"{dtype} GEMM peak {peak[0] / 1e9:.1f} GFLOP/s")


def memory_verdicts(memory) -> list:
    """The bars memory.json carries, as verdicts (NOT RUN where it has no pass/fail)."""
    out = []
    if memory is None:
        return out
    for b in memory.get("bars", []):
        passed = b.get("pass")
        status = PASS if passed is True else FAIL if passed is False else NOT_RUN
        measured = f"{b.get('method', '?')} {b.get('metric', '')} = {_slope(b.get('value'))}"
        reason = "" if status != NOT_RUN else (b.get("reason") or "memory.json gives no pass/fail")
        bar = dict(issue=b.get("issue", 4), text=b.get("text", "?"), group="memory scaling",
                   impl=b.get("method"), module="memory.json")
        out.append(Verdict(bar, status, measured, str(b.get("target", "?")), reason))
    return out


# --------------------------------------------------------------------------------------------
# formatting


def fmt_time(s) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_against(value, target, pct=False) -> str:
    """``value`` with enough digits that it reads on the same side of ``target`` as it is
    (3.9973 against a bar of 4 prints as 3.997, not as a failing "4")."""
    scale, suffix = (100.0, "%") if pct else (1.0, "")
    for digits in range(3, 10):
        text = f"{value * scale:.{digits}g}"
        if "e" in text:  # 1.01e+03 reads badly in a table: whole numbers from 1000 up
            text = f"{value * scale:.{max(digits - len(str(int(value * scale))), 0)}f}"
        shown = float(text) / scale
        if (shown >= target) == (value >= target):
            return text + suffix
    return f"{value * scale!r}{suffix}"


def fmt_x(v) -> str:
    return "—" if v is None else f"{v:.3g}x"


def md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def status_badge(status) -> str:
    return {PASS: "**PASS**", FAIL: "**FAIL**", NOT_RUN: "**NOT RUN**"}[status]


def verdict_line(v: Verdict) -> str:
    text = f"- {status_badge(v.status)} — issue {v.bar.get('issue', '?')}: {v.bar.get('text', '?')} — " \
           f"measured {v.measured}, bar {v.target}"
    if v.reason:
        text += f" ({v.reason})"
    return text


# --------------------------------------------------------------------------------------------
# benchmarks.md


def speedups(index: Index, group: str):
    """Rows of (impl, bench, vs_reference, vs_best_peer) and the best peer's name."""
    benches = index.groups[group]
    ref = next((b for b in benches if impl_of(b) == REFERENCE_IMPL), None)
    peers = [b for b in benches if not is_own(impl_of(b)) and impl_of(b) != REFERENCE_IMPL]
    best = min(peers, key=median) if peers else None
    rows = []
    for b in sorted(benches, key=median):
        rows.append((impl_of(b), b,
                     median(ref) / median(b) if ref else None,
                     median(best) / median(b) if best else None))
    return rows, (impl_of(best) if best else None)


def roofline_text(index: Index, group: str, b) -> str:
    extra = b.get("extra_info") or {}
    parts = []
    over = (" (above the measured ceiling: the count in extra_info is nominal, or this code "
            "outruns the ceiling's libraries)")
    if extra.get("bytes"):
        bw = extra["bytes"] / median(b)
        frac = f", {bw / index.triad_bw:.0%} of triad" if index.triad_bw else ", no triad in run"
        if index.triad_bw and bw > index.triad_bw and extra.get("roofline") != "bandwidth":
            frac += over
        parts.append(f"{bw / 1e9:.1f} GB/s{frac}")
    if extra.get("flops"):
        rate = extra["flops"] / median(b)
        peak = index.gemm_peak.get(group_parts(group)[2])
        frac = f", {rate / peak[0]:.0%} of GEMM peak" if peak else ", no GEMM peak in run"
        if peak and rate > peak[0] and extra.get("roofline") != "flops":
            frac += over
        parts.append(f"{rate / 1e9:.1f} GFLOP/s{frac}")
    return "; ".join(parts) or "—"


def module_counts(index: Index):
    """(module, timed, skipped, failed) rows: what each bench module contributed to the run."""
    counts: dict = {}
    for b in index.data.get("benchmarks", []):
        counts.setdefault(module_of(b), [0, 0, 0])[0] += 1
    for o in index.outcomes:
        c = counts.setdefault(o.get("module", "?"), [0, 0, 0])
        c[1 if o.get("outcome") == "skipped" else 2] += 1
    return [(m, str(t), str(s), str(f)) for m, (t, s, f) in sorted(counts.items())]


def noise(index: Index):
    """Median and worst IQR/median over the timed benchmarks (compile rounds excluded)."""
    rel = []
    for (group, impl), b in index.by_key.items():
        if group.startswith("compile|"):
            continue
        st = b["stats"]
        if st.get("median"):
            rel.append((st["iqr"] / st["median"], f"{group} [{impl}]"))
    if not rel:
        return None
    return statistics.median(r for r, _ in rel), max(rel), len(rel)


def render_benchmarks_md(index: Index, verdicts: list, barset: BarSet) -> str:
    out = ["# Benchmarks", ""]
    if not index.data:
        out += ["**No benchmark results**: `results/benchmarks.json` is missing, so every "
                "benchmark bar below is NOT RUN.", ""]
    else:
        opts = index.data.get("kernels_options", {})
        out += [f"Run {index.data.get('datetime', '?')}; pytest-benchmark options: max-time "
                f"{opts.get('max_time', '?')} s, min-rounds {opts.get('min_rounds', '?')}. "
                "Times are medians over rounds, compilation excluded (each benchmark calls its "
                "kernel once before timing). Speed-up = median of the other / median of this row: "
                f"`vs numpy` against the naive NumPy reference, `vs best peer` against the fastest "
                "peer library in the group. Machine and threads: [README.md](README.md).", "",
                "![speed-ups of each kernel](speedups.png)", ""]
        out += ["## Rooflines measured in this run", ""]
        rows = []
        if index.triad_bw:
            rows.append(("memory bandwidth (STREAM triad, best impl)",
                         f"{index.triad_bw / 1e9:.1f} GB/s", index.triad_from))
        else:
            rows.append(("memory bandwidth", "not measured", "bench_roofline.py did not run"))
        for dtype, (rate, src) in sorted(index.gemm_peak.items()):
            rows.append((f"{dtype} GEMM peak (best impl)", f"{rate / 1e9:.1f} GFLOP/s", src))
        if not index.gemm_peak:
            rows.append(("GEMM peak", "not measured", "bench_roofline.py did not run"))
        out += [md_table(("ceiling", "value", "from"), rows), ""]
        if index.duplicates:
            out += [f"Duplicate group/impl pairs ignored: {', '.join(index.duplicates)}", ""]

    by_group: dict = {}
    for v in verdicts:
        by_group.setdefault(v.bar.get("group"), []).append(v)

    # Kernels in name order, each kernel's shapes and dtypes together ("maxpool2d" before
    # "maxpool2d indices"); the rooflines last, as they are summarised above.
    groups = sorted((g for g in index.groups if not g.startswith("compile|")),
                    key=lambda g: (g.startswith("roofline|"), group_parts(g)))
    kernel = None
    for group in groups:
        name, shape, dtype = group_parts(group)
        if name != kernel:
            out += [f"## {name}", ""]
            kernel = name
        rows_data, best = speedups(index, group)
        out += [f"### {group}", ""]
        rows = []
        for impl, b, vs_ref, vs_peer in rows_data:
            st = b["stats"]
            rows.append((impl, fmt_time(st["median"]), fmt_time(st["iqr"]),
                         f"{st['iqr'] / st['median']:.1%}" if st["median"] else "—",
                         str(st["rounds"]), fmt_x(vs_ref), fmt_x(vs_peer), roofline_text(index, group, b)))
        header = ("impl", "median", "IQR", "IQR/median", "rounds", "vs numpy",
                  f"vs best peer ({best})" if best else "vs best peer (none)", "roofline")
        out += [md_table(header, rows), ""]
        for v in by_group.pop(group, []):
            out.append(verdict_line(v))
        out.append("")

    compile_groups = [g for g in sorted(index.groups) if g.startswith("compile|")]
    if compile_groups:
        out += ["## Compile time", "",
                "Each row is a fresh process calling the function twice on a tiny float64 input: "
                "`cold` with an empty `NUMBA_CACHE_DIR` (the first call compiles), `cached` with the "
                "cache the cold run wrote (the first call loads machine code). `process` is the "
                "whole process (interpreter, imports, both calls); the in-process parts are medians "
                "over the rounds.", ""]
        rows = []
        for group in compile_groups:
            for b in sorted(index.groups[group], key=lambda b: impl_of(b) != "cold"):
                ex = b.get("extra_info") or {}
                rows.append((ex.get("function", group_parts(group)[1]), impl_of(b),
                             fmt_time(median(b)), fmt_time(ex.get("import_s")),
                             fmt_time(ex.get("first_call_s")), fmt_time(ex.get("second_call_s")),
                             str(b["stats"]["rounds"]),
                             f"{sum(ex.get('cache_hits', []))}/{sum(ex.get('cache_misses', []))}"))
        out += [md_table(("function", "phase", "process", "import kernels", "first call",
                          "second call", "rounds", "cache hits/misses"), rows), ""]

    leftover = [v for g, vs in sorted(by_group.items(), key=lambda kv: str(kv[0])) for v in vs]
    if leftover:
        out += ["## Bars whose group has no results", ""]
        out += [verdict_line(v) for v in leftover] + [""]
    if barset.errors:
        out += ["## Bench modules whose bars could not be read", ""]
        out += [f"- `{m}`: {md_escape(e)}" for m, e in barset.errors] + [""]
    skipped = [o for o in index.outcomes]
    if skipped:
        out += ["## Benchmarks skipped or failed in this run", ""]
        out += [md_table(("test", "outcome", "reason"),
                         [(o["nodeid"], o["outcome"], o["reason"]) for o in skipped]), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# memory.md


def render_memory_md(memory, verdicts) -> str:
    out = ["# Memory scaling (homework question 2.1.2, measured)", ""]
    if memory is None:
        out += ["**Not run**: `results/memory.json` is missing (the memory stage of "
                "`bench/run.py` did not run or `bench/memory_scaling.py` does not exist yet).", ""]
        return "\n".join(out)
    out += [f"Generated {memory.get('generated', '?')}; d = {memory.get('d', '?')}, "
            f"n = {memory.get('n', '?')}; T = {', '.join(str(t) for t in memory.get('T', []))}. "
            "Each run is a fresh process; peak memory is measured above the process's baseline just "
            "before the call, by memory-profiler (RSS) and tracemalloc.", "",
            "![peak memory vs T](memory_scaling.png)", "", "![wall time vs T](time_scaling.png)", "",
            "## Fitted log-log slopes against T", ""]
    slopes = memory.get("slopes", {})
    rows = [(m, _slope(s.get("rss")), _slope(s.get("tracemalloc")), _slope(s.get("time")))
            for m, s in sorted(slopes.items())]
    out += [md_table(("method", "RSS slope", "tracemalloc slope", "time slope"), rows), "",
            "## Bars", ""]
    out += [verdict_line(v) for v in verdicts] or ["(memory.json declares no bars)"]
    floored = [f"{r.get('method')} T={r.get('T')}" for r in memory.get("runs", [])
               if (r.get("rss_above_baseline_mib") or 0.0) <= MIB_FLOOR
               or (r.get("tracemalloc_peak_mib") or 0.0) <= MIB_FLOOR]
    if floored:
        out += ["", f"On the log axes of the memory figure, {len(floored)} runs whose peak above baseline "
                f"was at most {MIB_FLOOR} MiB (nothing measurable) are drawn at {MIB_FLOOR} MiB: "
                + ", ".join(floored[:12]) + (" ..." if len(floored) > 12 else "") + "."]
    out += ["", "## Raw runs", ""]
    rows = [(r.get("method"), str(r.get("T")), _num(r.get("rss_baseline_mib")), _num(r.get("rss_peak_mib")),
             _num(r.get("rss_above_baseline_mib")), _num(r.get("tracemalloc_peak_mib")),
             str(r.get("bytes_stored", "—")), fmt_time(r.get("wall_s")))
            for r in sorted(memory.get("runs", []), key=lambda r: (str(r.get("method")), r.get("T", 0)))]
    out += [md_table(("method", "T", "RSS baseline MiB", "RSS peak MiB", "RSS above baseline MiB",
                      "tracemalloc peak MiB", "bytes stored", "wall"), rows), ""]
    return "\n".join(out)


def _slope(v) -> str:
    """A fitted slope to three decimals (a fit of a flat line gives +-1e-17: that is 0.000)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "—"
    text = f"{v:.3f}"
    return "0.000" if text == "-0.000" else text


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


# --------------------------------------------------------------------------------------------
# plots

# RSS above baseline can be 0 (or slightly negative) for constant-memory methods; log axes need a
# floor, and the report says where it was applied.
MIB_FLOOR = 1e-2


def memory_legend(memory, method):
    """Legend labels (RSS, tracemalloc, time) of one method, with its fitted log-log slopes."""
    s = (memory.get("slopes") or {}).get(method) or {}
    return (f"{method} RSS (slope {_slope(s.get('rss'))})",
            f"{method} tracemalloc (slope {_slope(s.get('tracemalloc'))})",
            f"{method} (slope {_slope(s.get('time'))})")


def _save(fig, path: str) -> str:
    """Lay out, write as PNG and close ``fig``; return ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_memory(memory, results_dir) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs = memory.get("runs", [])
    methods = sorted({r["method"] for r in runs})
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, m in enumerate(methods):
        rs = sorted((r for r in runs if r["method"] == m), key=lambda r: r["T"])
        ts = [r["T"] for r in rs]
        colour = f"C{i}"
        rss = [max(r.get("rss_above_baseline_mib") or 0.0, MIB_FLOOR) for r in rs]
        tm = [max(r.get("tracemalloc_peak_mib") or 0.0, MIB_FLOOR) for r in rs]
        rss_label, tm_label, _ = memory_legend(memory, m)
        ax.loglog(ts, rss, "o-", color=colour, label=rss_label)
        ax.loglog(ts, tm, "x--", color=colour, alpha=0.7, label=tm_label)
    ax.set_xlabel("T (gradient-descent steps)")
    ax.set_ylabel(f"peak memory above baseline (MiB, floor {MIB_FLOOR})")
    ax.set_title(f"Memory vs T (d = {memory.get('d', '?')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, os.path.join(results_dir, "memory_scaling.png")))

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, m in enumerate(methods):
        rs = sorted((r for r in runs if r["method"] == m and r.get("wall_s")), key=lambda r: r["T"])
        if rs:
            ax.loglog([r["T"] for r in rs], [r["wall_s"] for r in rs], "o-", color=f"C{i}",
                      label=memory_legend(memory, m)[2])
    ax.set_xlabel("T (gradient-descent steps)")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"Wall time vs T (d = {memory.get('d', '?')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, os.path.join(results_dir, "time_scaling.png")))
    return written


def speedup_rows(index: Index):
    """(label, vs_reference, vs_best_peer) for every own implementation with something to beat."""
    rows = []
    for group in sorted(index.groups):
        if group.startswith(("compile|", "roofline|")):
            continue
        data, best = speedups(index, group)
        for impl, _b, vs_ref, vs_peer in data:
            if impl in OWN_IMPLS and (vs_ref is not None or vs_peer is not None):
                label = group if impl == "numba" else f"{group} [{impl}]"
                rows.append((label, vs_ref, vs_peer, best))
    return rows


def plot_speedups(index: Index, results_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = speedup_rows(index)
    path = os.path.join(results_dir, "speedups.png")
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * len(rows) + 1.2)))
    if not rows:
        ax.text(0.5, 0.5, "no kernel benchmarks with a reference or peer in this run",
                ha="center", va="center")
        ax.set_axis_off()
    else:
        ys = range(len(rows))
        h = 0.38
        ref = [r[1] if r[1] is not None else float("nan") for r in rows]
        peer = [r[2] if r[2] is not None else float("nan") for r in rows]
        # Bars grow from 1 (parity), leftwards for a slow-down, so the log axis reads honestly.
        ax.barh([y - h / 2 for y in ys], [v - 1 for v in ref], left=1, height=h, color="C0",
                label="vs naive NumPy reference")
        ax.barh([y + h / 2 for y in ys], [v - 1 for v in peer], left=1, height=h, color="C1",
                label="vs best peer (named)")
        for y, (_label, r, pr, best) in zip(ys, rows):
            if r is not None:
                ax.text(r, y - h / 2, f" {r:.3g}x", va="center", fontsize=6)
            if pr is not None:
                ax.text(pr, y + h / 2, f" {pr:.3g}x vs {best}", va="center", fontsize=6)
        finite = [v for v in ref + peer if v == v]
        ax.set_xlim(min(finite + [1.0]) / 2, max(finite + [1.0]) * 4)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([r[0] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel("speed-up (median time of the other / median time of ours; log scale)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# README.md


def render_readme(index: Index, memory, run, verdicts, mem_verdicts, barset, results_dir,
                  figures_note="") -> str:
    mi = (index.data.get("machine_info") or {}) if index.data else {}
    k = mi.get("kernels") or {}
    out = ["# Results", ""]
    when = index.data.get("datetime") if index.data else None
    git = k.get("git") or {}
    commit = git.get("commit") or (index.data.get("commit_info", {}).get("id") if index.data else None)
    dirty = git.get("dirty")
    out += [f"Benchmarks run {when or '(not run)'} on commit `{commit or '?'}`"
            + (" (working tree **dirty**: uncommitted changes to " + ", ".join(git.get("dirty_files", [])) + ")"
               if dirty else " (clean working tree)" if dirty is False else "") + ".",
            f"Reports rendered {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} "
            "by `bench/report.py` from the JSON beside them.", "",
            "Regenerate everything (from the repository root, on a fresh machine):", "",
            f"```bash\n{REGENERATE}\n```", "",
            "Re-render the reports from the JSON alone: `python bench/report.py`.", "",
            "- [benchmarks.md](benchmarks.md): every benchmark group, speed-ups, rooflines, compile "
            "time ([speedups.png](speedups.png))",
            "- [memory.md](memory.md): memory and time scaling of the hypergradient methods "
            "([memory_scaling.png](memory_scaling.png), [time_scaling.png](time_scaling.png))"]
    stages = {s["name"]: s for s in (run or {}).get("stages", [])}
    for stage, name, what in (("hw2", "hw2.md", "the homework answered by computation"),
                              ("reliability", "reliability.md", "hostile input, determinism and leak checks")):
        present = os.path.exists(os.path.join(results_dir, name))
        st = stages.get(stage)
        if st is not None and st["status"] != "ok":
            note = f" — **not produced in this run** ({st['status']}: {st.get('detail', '')})"
            if present:
                note += "; the file there is from an earlier run"
        elif not present:
            note = " — **missing**"
        else:
            note = ""
        out.append(f"- [{name}]({name}): {what}{note}")
    out += ["- raw data: [benchmarks.json](benchmarks.json), [memory.json](memory.json)", ""]
    if figures_note:
        out += [f"**Figures missing**: {figures_note}.", ""]

    allv = verdicts + mem_verdicts
    counts = {s: sum(v.status == s for v in allv) for s in (PASS, FAIL, NOT_RUN)}
    out += ["## Bars", "",
            f"{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[NOT_RUN]} NOT RUN, of {len(allv)} bars "
            "declared by the bench modules (`BARS`) and by memory.json.", ""]
    rows = [(status_badge(v.status), str(v.bar.get("issue", "?")), v.bar.get("text", "?"), v.measured,
             v.target, v.reason) for v in allv]
    out += [md_table(("status", "issue", "bar", "measured", "target", "note"), rows) if rows
            else "(no bars declared)", ""]
    if barset.errors:
        out += ["Bench modules whose bars could not be read (their bars are missing above):", ""]
        out += [f"- `{m}`: {md_escape(e)}" for m, e in barset.errors] + [""]

    out += ["## What was run", ""]
    if run:
        out += [f"`bench/run.py {' '.join(run.get('argv', []))}` started {run.get('started', '?')}, "
                f"finished {run.get('finished', '?')}, {run.get('elapsed_s', 0):.0f} s in all"
                + (" (**quick smoke run**: tiny sizes, not representative)" if run.get("quick") else "")
                + ".", ""]
        out += [md_table(("stage", "status", "elapsed", "detail"),
                         [(s["name"], s["status"], f"{s.get('elapsed_s', 0):.0f} s", s.get("detail", ""))
                          for s in run.get("stages", [])]), ""]
    else:
        out += ["(no run.json: the reports were rendered from JSON produced outside `bench/run.py`)", ""]
    if index.data:
        opts = index.data.get("kernels_options", {})
        out += [f"Benchmarks: {len(index.data.get('benchmarks', []))} timed, in {len(index.groups)} groups; "
                f"`pytest {' '.join(opts.get('args', []))}`.", ""]
        out += [md_table(("module", "timed", "skipped", "failed or errored"), module_counts(index)), ""]
        nz = noise(index)
        if nz:
            med, (worst, worst_name), n = nz
            out += [f"Noise: the median IQR/median over {n} timed benchmarks is {med:.1%} (worst "
                    f"{worst:.1%}, {worst_name}). The machine is shared; treat differences smaller "
                    "than a few IQRs as noise.", ""]

    out += ["## Machine", ""]
    if not k:
        out += ["(no machine information: benchmarks.json is missing)", ""]
    else:
        cpu = mi.get("cpu") or {}
        versions = k.get("versions", {})
        threads = k.get("threads", {})
        rows = [("CPU", f"{k.get('cpu_model', '?')}" + (f" ({cpu.get('brand_raw')})" if cpu.get("brand_raw")
                                                           and cpu.get("brand_raw") != k.get("cpu_model") else "")),
                ("cores (os.cpu_count)", str(k.get("cpu_count"))),
                ("memory", f"{k.get('mem_total_gib', '?')} GiB"),
                ("OS", k.get("os", "?")),
                ("Python", k.get("python", "?"))]
        rows += [(name, str(ver)) for name, ver in versions.items()]
        if k.get("cpu_simd"):
            rows.append(("SIMD extensions", " ".join(k["cpu_simd"])))
        rows.append(("OPENBLAS_CORETYPE", k.get("openblas_coretype") or "(not set)"))
        env = k.get("env") or {}
        if env:
            rows.append(("environment", ", ".join(f"{a}={b}" for a, b in env.items())))
        cfg = k.get("kernels_config")
        if isinstance(cfg, dict):
            rows.append(("kernels._config", ", ".join(f"{a}={b}" for a, b in cfg.items())))
        out += [md_table(("", ""), rows), ""]
        if k.get("openblas_coretype"):
            out += [f"Note: `OPENBLAS_CORETYPE={k['openblas_coretype']}` is set in the environment, so "
                    f"OpenBLAS runs its {k['openblas_coretype']} kernels whatever the CPU offers "
                    f"({' '.join(k.get('cpu_simd', [])) or 'flags not recorded'}); the GEMM ceiling "
                    "is measured under that setting.", ""]
        out += ["## Threads (fixed for every benchmark)", ""]
        rows = [("requested (KERNELS_BENCH_THREADS or all cores)", str(threads.get("requested"))),
                ("Numba", f"{threads.get('numba')} (max {threads.get('numba_max')}, layer "
                          f"{threads.get('numba_threading_layer')})"),
                ("PyTorch", f"{threads.get('torch')} (inter-op {threads.get('torch_interop', '?')})")]
        out += [md_table(("", "threads"), rows), ""]
        pools = threads.get("threadpools")
        if isinstance(pools, list) and pools:
            out += ["Thread pools seen by threadpoolctl (BLAS and OpenMP), with the BLAS kernel in use:", ""]
            out += [md_table(("user_api", "internal_api", "version", "architecture", "threads", "library"),
                             [(p.get("user_api"), p.get("internal_api"), p.get("version") or "—",
                               p.get("architecture") or "—", str(p.get("num_threads")),
                               os.path.basename(p.get("filepath") or "") or p.get("prefix", "?"))
                              for p in pools]), ""]
        elif pools:
            out += [f"threadpoolctl: {pools}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


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
