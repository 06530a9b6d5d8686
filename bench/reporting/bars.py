"""The bars: each one the bench modules declare (``BARS``) or ``memory.json`` carries, evaluated
against a run to PASS, FAIL or NOT RUN, with the measured value and the reason."""

from __future__ import annotations

from dataclasses import dataclass

from .formatting import fmt_against, fmt_slope, fmt_time
from .load import Index, group_parts, impl_of, median, module_of

CRITERIA = ("min_speedup", "min_bandwidth_fraction", "min_flops_fraction", "min_ratio", "max_ratio", "max_seconds")

PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"


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

    if kind in ("min_ratio", "max_ratio"):
        return _ratio_verdict(bar, kind, target, main, index)

    if kind == "max_seconds":
        target_txt = f"<= {fmt_time(target)}"
        if main is None:
            return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, [impl]))
        value = median(main)
        return Verdict(bar, PASS if value <= target else FAIL, fmt_time(value), target_txt,
                       "median wall time of the whole process")

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


def _ratio_verdict(bar, kind, target, main, index) -> Verdict:
    """A bar on calls timed alternating inside one benchmark (``bench/bench_interleaved.py``):
    ``ratio=(a, b)`` names two of the medians the benchmark keeps in
    ``extra_info["medians_s"]``; the bar holds when ``a / b`` is at least ``min_ratio`` or at
    most ``max_ratio``."""
    a, b = bar.get("ratio", (None, None))
    target_txt = f">= {target:.3g}x" if kind == "min_ratio" else f"<= {target:.3g}x"
    if main is None:
        return Verdict(bar, NOT_RUN, "—", target_txt, why_missing(index, bar, [bar.get("impl")]))
    medians = (main.get("extra_info") or {}).get("medians_s") or {}
    if a not in medians or b not in medians:
        return Verdict(bar, NOT_RUN, "—", target_txt,
                       f"{bar.get('group')} [{bar.get('impl')}] has no medians {a!r} and {b!r} "
                       f"(it has {', '.join(sorted(medians)) or 'none'})")
    value = medians[a] / medians[b]
    ok = value >= target if kind == "min_ratio" else value <= target
    if bar.get("unit") == "MiB":  # peak memory (bench_nn.py), carried in medians_s as MiB
        detail = f"{medians[a]:.3g} MiB / {medians[b]:.3g} MiB, peak memory of a step, one fresh process each"
    else:
        detail = f"{fmt_time(medians[a])} / {fmt_time(medians[b])}, medians of calls alternating in one loop"
    return Verdict(bar, PASS if ok else FAIL, f"{value:.3g}x ({a} / {b})", target_txt, detail)


def memory_verdicts(memory) -> list:
    """The bars memory.json carries, as verdicts (NOT RUN where it has no pass/fail)."""
    out = []
    if memory is None:
        return out
    for b in memory.get("bars", []):
        passed = b.get("pass")
        status = PASS if passed is True else FAIL if passed is False else NOT_RUN
        measured = f"{b.get('method', '?')} {b.get('metric', '')} = {fmt_slope(b.get('value'))}"
        reason = "" if status != NOT_RUN else (b.get("reason") or "memory.json gives no pass/fail")
        bar = dict(issue=b.get("issue", 4), text=b.get("text", "?"), group="memory scaling",
                   impl=b.get("method"), module="memory.json")
        out.append(Verdict(bar, status, measured, str(b.get("target", "?")), reason))
    return out
