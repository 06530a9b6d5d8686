"""``reliability.md``: the checks' results (:func:`kernels.apps.reliability.run`) as Markdown."""

from __future__ import annotations

from .limits import U32


def _yes(ok):
    return "yes" if ok else "**NO**"


def render(res: dict) -> str:
    L = ["# Reliability (issue 7)", "",
         f"Generated {res['generated']} by `python -m kernels reliability`{' --quick' if res['quick'] else ''} "
         f"in {res['seconds']:.0f} s; Numba {res['config']['numba_version']}, "
         f"{res['config']['numba_threads']} threads (threading layer `{res.get('threading_layer')}`), "
         f"compile options {res['config']}. The fuzz suite also runs under `NUMBA_BOUNDSCHECK=1` with an "
         "empty compile cache and `NUMBA_NUM_THREADS=1` in CI (`tests/test_limits.py`; an exception in a worker "
         "thread of a parallel loop is lost by Numba, so one thread), so an out-of-range index would fail it.", ""]
    fz = res["fuzz"]
    L += ["## Fuzzing: hostile input across the public API", ""]
    if not fz.get("available"):
        L += [f"Not run: {fz.get('reason')}", ""]
    else:
        L += [f"`tests/test_fuzz.py` (hypothesis, {fz['examples_per_test']} examples per test): "
              f"**{'passed' if fz['passed'] else 'FAILED'}** ({fz['summary']}), {fz['seconds']} s. "
              "Invariant: every call returns the reference's answer (`kernels.naive`, or the closed form "
              "stated in the test) or raises `ValueError`/`TypeError` whose message names the argument "
              "that was made hostile; never another exception, never a crash.", "",
              "| function | cases tried | returned (= reference) | raised, naming the argument |",
              "|---|---:|---:|---:|"]
        tot = [0, 0, 0]
        for name, c in sorted(fz["functions"].items()):
            L.append(f"| `{name}` | {c['tried']} | {c['returned']} | {c['raised']} |")
            tot = [tot[0] + c["tried"], tot[1] + c["returned"], tot[2] + c["raised"]]
        L += [f"| **total** | **{tot[0]}** | **{tot[1]}** | **{tot[2]}** |", ""]
        if fz["mutations"]:
            L += ["Cases by what was made hostile: " + ", ".join(f"{k} {v}" for k, v in sorted(fz["mutations"].items())) + ".", ""]
        if fz["failures"]:
            L += ["```", fz["failures"], "```", ""]
    d = res["determinism"]
    L += ["## Determinism", "",
          f"SHA-256 of every output, twice in this process and once in fresh processes with "
          f"`NUMBA_NUM_THREADS` = {', '.join(map(str, d['threads']))}. All bit-identical: **{_yes(d['all_identical'])}**; "
          f"seeded SGD/RMSProp/Adam reproduced in another process: **{_yes(d['seeded_sgd_across_processes'])}**.", "",
          "| kernel | run to run | across thread counts |", "|---|---|---|"]
    L += [f"| `{k}` | {_yes(v['run_to_run'])} | {_yes(v['threads'])} |" for k, v in d["kernels"].items()]
    c, cc = res["concurrency"], res["cold_cache"]
    L += ["", "## Threads and processes", "",
          f"- {c['threads']} Python threads calling {c['kernels']} kernels at once, {c['calls']} calls in "
          f"{c['seconds']} s: every result bit-identical to the serial one: **{_yes(c['ok'])}**"
          + (f" (mismatches {c['mismatches']}, errors {c['errors']})" if not c["ok"] else "") + ".",
          f"- {cc['processes']} processes started together on one empty `NUMBA_CACHE_DIR` "
          f"(kernels {', '.join(cc['kernels'])}): each correct **{cc['each_ok']}**, {cc['seconds_together']} s, "
          f"{cc['cache_files_written']} cache files written; a later process loading that cache correct: "
          f"**{_yes(cc['warm_process_ok'])}** ({cc['warm_process_seconds']} s)"
          + (f"; errors: {cc['errors']}" if cc["errors"] else "") + ".", ""]
    f = res["float32"]
    L += ["## float32 accuracy against float64", "",
          f"Convolution bound `(m + 3) u` times `|x| * |w| + |b|` (m products per output); gradient bound "
          f"`4 u` times `S = (2/n)|X|^T(|X||w| + |t|) + 2 l2 |w|`; `u = 2^-24 = {U32:.3g}`. All within bounds: "
          f"**{_yes(f['ok'])}**.", "",
          "| kernel | case | terms | max error / scale | rms error / scale | bound | max error / bound | max relative error |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind in ("conv", "grad"):
        for r in f[kind]:
            L.append(f"| {'correlate2d' if kind == 'conv' else 'grad'} | {r['case']} | {r.get('terms', '')} | "
                     f"{r['max_error']:.3g} | {r['rms_error']:.3g} | {r['bound']:.3g} | {r['ratio']:.3f} | "
                     f"{r['max_relative_error']:.3g} |")
    m = res["memory_refusal"]
    L += ["", "## Memory the reverse hypergradient would need", ""]
    if m["refused"]:
        L += [f"`hypergrad(method='reverse', steps={m['steps']}, d={m['d']})` is refused before allocating "
              f"(`{m['exception']}`, also a `ValueError`: {m['is_value_error']}; margin {m['margin']} of the "
              f"{m['available_bytes'] / 2**30:.2f} GiB available):", "", f"> {m['message']}", ""]
    else:
        L += ["**NOT refused**", ""]
    dv = res["divergence"]
    L += ["## Divergence of the optimizers", "",
          "lr far too large; `diverged_at` must be the first non-finite iterate: the run one step "
          f"shorter is finite and returns the same weights. All first: **{_yes(dv['ok'])}**.", "",
          "| optimizer | diverged | diverged_at | steps returned | returned w finite | first non-finite |",
          "|---|---|---:|---:|---|---|"]
    L += [f"| `{k}` | {v['diverged']} | {v['diverged_at']} | {v['steps_returned']} | {v['w_finite']} | {_yes(v['first'])} |"
          for k, v in dv.items() if isinstance(v, dict)]
    lk = res["leak"]
    L += ["", "## Memory leaks", "",
          f"{lk['calls']:,} calls of each kernel on tiny inputs in a fresh process, after {lk['warmup']:,} warm-up "
          f"calls and `gc.collect()`; tolerance {lk['tolerance_bytes'] // 1024} KiB of RSS growth, and Numba's NRT "
          f"must free everything it allocated. All within: **{_yes(lk['ok'])}**.", "",
          "| kernel | RSS growth (bytes) | NRT allocations not freed | µs per call |", "|---|---:|---:|---:|"]
    L += [f"| `{k}` | {v['rss_growth_bytes']} | {v['nrt_net_allocations']} | {v['us_per_call']} |"
          for k, v in lk["kernels"].items()]
    L += ["", "Timings of the checks (s): " + ", ".join(f"{k} {v}" for k, v in res["timings"].items()) + ".", ""]
    return "\n".join(L)
