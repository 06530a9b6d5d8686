"""``results/README.md``: the bars, what was run (the stage log of ``bench/run.py``), the machine
and the threads every benchmark ran with."""

from __future__ import annotations

import datetime as _dt
import os

from .bars import FAIL, NOT_RUN, PASS
from .formatting import md_escape, md_table
from .load import Index
from .tables import module_counts, noise, status_badge

REGENERATE = 'python -m pip install -e ".[bench]" && python bench/run.py'


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
        # the brand alone ("AMD EPYC") names several generations: family and model tell them apart
        ident = ", ".join(f"{key} {cpu[key]}" for key in ("family", "model", "stepping") if key in cpu)
        rows = [("CPU", f"{k.get('cpu_model', '?')}" + (f" ({cpu.get('brand_raw')})" if cpu.get("brand_raw")
                                                           and cpu.get("brand_raw") != k.get("cpu_model") else "")
                 + (f", {ident}" if ident else "")
                 + (f", {cpu['hz_actual_friendly']}" if cpu.get("hz_actual_friendly") else "")),
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
