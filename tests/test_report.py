"""The report generator (bench/report.py) and the main job's stage logic (bench/run.py).

Everything runs on a small synthetic pytest-benchmark JSON and memory JSON built here, with a
synthetic bench module declaring BARS, so the expected speed-ups, roofline fractions and
PASS/FAIL/NOT RUN verdicts are known exactly. Nothing is timed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


report = _load("report")
run = _load("run")

G = "corr|64x64 k3|float64"  # a kernel group
G32 = "corr|64x64 k3|float32"


def _bench(group, impl, median, iqr=None, rounds=10, **extra):
    iqr = median * 0.1 if iqr is None else iqr
    return {
        "group": group, "name": f"test_x[{impl}]", "fullname": f"bench/bench_fake.py::test_x[{impl}]",
        "params": {"impl": impl}, "param": impl, "extra_info": dict(impl=impl, **extra),
        "stats": {"median": median, "iqr": iqr, "rounds": rounds, "min": median, "max": median,
                  "mean": median, "stddev": 0.0, "q1": median - iqr / 2, "q3": median + iqr / 2},
    }


def synthetic_benchmarks():
    benches = [
        # triad: 24e6 bytes in 1 ms = 24 GB/s (numba); numpy slower; the roofline is the best.
        _bench("roofline|triad 2^20|float64", "numba", 1e-3, bytes=24_000_000, roofline="bandwidth"),
        _bench("roofline|triad 2^20|float64", "numpy", 2e-3, bytes=24_000_000, roofline="bandwidth"),
        # GEMM: 2e9 flops in 20 ms = 100 GFLOP/s (float64), 200 GFLOP/s (float32).
        _bench("roofline|gemm 1000|float64", "numpy", 20e-3, flops=2_000_000_000, roofline="flops"),
        _bench("roofline|gemm 1000|float32", "numpy", 10e-3, flops=2_000_000_000, roofline="flops"),
        # the kernel group: numba 1 ms, naive 50 ms, torch 3 ms, scipy 1.5 ms.
        _bench(G, "numba", 1e-3, bytes=12_000_000, flops=30_000_000),
        _bench(G, "numpy", 50e-3),
        _bench(G, "torch", 3e-3),
        _bench(G, "scipy_ndimage", 1.5e-3),
        _bench(G32, "numba", 2e-3, iqr=1e-3, flops=2_000_000_000),  # 1000 GFLOP/s: above the peak
        _bench("compile|corr tiny|float64", "cold", 1.5, rounds=2, function="corr", import_s=0.3,
               first_call_s=1.0, second_call_s=1e-4, cache_hits=[0, 0], cache_misses=[2, 2]),
        _bench("compile|corr tiny|float64", "cached", 0.6, rounds=3, function="corr", import_s=0.3,
               first_call_s=0.1, second_call_s=1e-4, cache_hits=[2, 2, 2], cache_misses=[0, 0, 0]),
    ]
    return {
        "machine_info": {"kernels": {
            "cpu_model": "Test CPU 9000", "cpu_count": 2, "mem_total_gib": 24.0, "os": "TestOS",
            "python": "3.11.7", "openblas_coretype": "Haswell", "cpu_simd": ["avx2", "avx512f"],
            "env": {"OPENBLAS_CORETYPE": "Haswell"},
            "versions": {"numpy": "2.4.6", "numba": "0.68.1", "jax": "not installed (ImportError)"},
            "git": {"commit": "abc123", "dirty": False, "dirty_files": []},
            "threads": {"requested": 2, "numba": 2, "numba_max": 2, "numba_threading_layer": "omp",
                        "torch": 2, "torch_interop": 2,
                        "threadpools": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3",
                                         "num_threads": 2, "architecture": "Haswell",
                                         "filepath": "/x/libopenblas.so"}]},
        }},
        "commit_info": {"id": "abc123", "dirty": False},
        "datetime": "2026-01-01T00:00:00+00:00",
        "benchmarks": benches,
        "kernels_outcomes": [
            {"nodeid": "bench/bench_fake.py::test_x[jax]", "when": "setup", "outcome": "skipped",
             "reason": "peer library 'jax' is not installed", "module": "bench_fake.py",
             "params": {"impl": "jax"}},
            {"nodeid": "bench/bench_fake.py::test_x[torch-float32]", "when": "call", "outcome": "failed",
             "reason": "AssertionError: float32 torch disagrees", "module": "bench_fake.py",
             "params": {"impl": "torch", "dtype": "float32"}},
        ],
        "kernels_options": {"args": ["bench", "--benchmark-only"], "max_time": "0.5", "min_rounds": 5},
    }


BARS_SOURCE = '''
G = "corr|64x64 k3|float64"
BARS = [
    dict(issue=2, text="beats torch 2x", group=G, impl="numba", versus=("torch",), min_speedup=2.0),
    dict(issue=2, text="beats scipy and torch 2x", group=G, impl="numba",
         versus=("torch", "scipy_ndimage"), min_speedup=2.0),
    dict(issue=2, text="beats torch and jax 2x", group=G, impl="numba", versus=("torch", "jax"),
         min_speedup=2.0),
    dict(issue=2, text="beats scipy and jax 2x", group=G, impl="numba",
         versus=("scipy_ndimage", "jax"), min_speedup=2.0),
    dict(issue=4, text="at most 2.5x the time of torch", group=G, impl="numba", versus=("torch",),
         min_speedup=1 / 2.5),
    dict(issue=2, text="60% of bandwidth", group=G, impl="numba", min_bandwidth_fraction=0.60),
    dict(issue=2, text="40% of bandwidth", group=G, impl="numba", min_bandwidth_fraction=0.40),
    dict(issue=3, text="25% of GEMM peak", group=G, impl="numba", min_flops_fraction=0.25),
    dict(issue=2, text="bandwidth without bytes", group=G, impl="torch", min_bandwidth_fraction=0.1),
    dict(issue=2, text="group that never ran", group="corr|4096x4096 k3|float64", impl="numba",
         versus=("torch",), min_speedup=15.0),
    dict(issue=2, text="impl that was skipped", group=G, impl="jax", versus=("torch",), min_speedup=1.0),
    dict(issue=2, text="unknown criterion", group=G, impl="numba", max_joules=1.0),
]
'''


def synthetic_memory():
    ts = [250, 1000, 4000]
    runs = []
    for t in ts:
        runs.append(dict(method="reverse", T=t, rss_baseline_mib=100.0, rss_peak_mib=100 + t * 0.008,
                         rss_above_baseline_mib=t * 0.008, tracemalloc_peak_mib=t * 0.0076,
                         bytes_stored=(t + 1) * 8000, wall_s=t * 1e-4))
        runs.append(dict(method="forward", T=t, rss_baseline_mib=100.0, rss_peak_mib=100.0,
                         rss_above_baseline_mib=0.0, tracemalloc_peak_mib=0.03, bytes_stored=16000,
                         wall_s=t * 2e-4))
    return {
        "generated": "2026-01-01T00:00:00", "d": 1000, "n": 200, "T": ts, "runs": runs,
        "slopes": {"reverse": {"rss": 1.002, "tracemalloc": 0.998, "time": 1.01},
                   "forward": {"rss": 0.0, "tracemalloc": 0.01, "time": 0.99}},
        "bars": [
            {"text": "reverse slope 1 +- 0.05", "method": "reverse", "metric": "rss slope",
             "value": 1.002, "target": "1 +- 0.05", "pass": True},
            {"text": "forward slope < 0.05", "method": "forward", "metric": "rss slope",
             "value": 0.07, "target": "< 0.05", "pass": False},
            {"text": "checkpoint slope 0.5", "method": "checkpoint", "metric": "rss slope",
             "value": None, "target": "0.5 +- 0.1", "pass": None},
        ],
    }


@pytest.fixture()
def workspace(tmp_path):
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    (bench_dir / "bench_fake.py").write_text(textwrap.dedent(BARS_SOURCE))
    (bench_dir / "bench_broken.py").write_text("raise ImportError('kernels.nothing is missing')\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / "benchmarks.json").write_text(json.dumps(synthetic_benchmarks()))
    (results / "memory.json").write_text(json.dumps(synthetic_memory()))
    return bench_dir, results


@pytest.fixture()
def verdicts(workspace):
    bench_dir, results = workspace
    index = report.Index(json.loads((results / "benchmarks.json").read_text()))
    barset = report.collect_bars(str(bench_dir))
    return {v.bar["text"]: v for v in (report.evaluate_bar(b, index) for b in barset.bars)}


def test_rooflines_are_the_best_measured_in_the_run():
    index = report.Index(synthetic_benchmarks())
    assert index.triad_bw == pytest.approx(24e9)
    assert index.gemm_peak["float64"][0] == pytest.approx(100e9)
    assert index.gemm_peak["float32"][0] == pytest.approx(200e9)


def test_collect_bars_reads_modules_and_reports_broken_ones(workspace):
    bench_dir, _ = workspace
    barset = report.collect_bars(str(bench_dir))
    assert len(barset.bars) == 12
    assert all(b["module"] == "bench_fake.py" for b in barset.bars)
    assert [m for m, _ in barset.errors] == ["bench_broken.py"]
    assert "kernels.nothing is missing" in barset.errors[0][1]


def test_speedup_bar_pass_uses_median_ratio(verdicts):
    v = verdicts["beats torch 2x"]
    assert v.status == report.PASS
    assert v.measured == "3x vs torch"  # 3 ms / 1 ms


def test_measured_value_never_rounds_across_the_bar():
    assert report.fmt_against(3.99729, 4.0) == "3.997"  # not "4", which would read as a pass
    assert report.fmt_against(0.59996, 0.60, pct=True) == "59.996%"
    assert report.fmt_against(34.43, 10.0) == "34.4"
    assert report.fmt_against(1012.7, 100.0) == "1013"  # no exponent in a table


def test_speedup_bar_is_against_the_fastest_of_versus(verdicts):
    v = verdicts["beats scipy and torch 2x"]
    assert v.status == report.FAIL  # scipy 1.5 ms / 1 ms = 1.5x < 2x
    assert v.measured == "1.5x vs scipy_ndimage"


def test_speedup_bar_missing_peer_is_not_run_with_reason(verdicts):
    v = verdicts["beats torch and jax 2x"]
    assert v.status == report.NOT_RUN  # passes against torch, but jax might be faster
    assert "jax" in v.reason and "not installed" in v.reason


def test_speedup_bar_missing_peer_fails_when_present_peers_already_beat_it(verdicts):
    v = verdicts["beats scipy and jax 2x"]
    assert v.status == report.FAIL  # a missing peer can only lower the minimum
    assert "jax" in v.reason


def test_at_most_k_times_the_time_bar(verdicts):
    v = verdicts["at most 2.5x the time of torch"]
    assert v.status == report.PASS
    assert "at most 2.5x the time" in v.target


def test_bandwidth_fraction_bars(verdicts):
    # 12e6 bytes in 1 ms = 12 GB/s = 50% of the 24 GB/s triad
    assert verdicts["60% of bandwidth"].status == report.FAIL
    assert verdicts["60% of bandwidth"].measured.startswith("50%")
    assert verdicts["40% of bandwidth"].status == report.PASS
    v = verdicts["bandwidth without bytes"]
    assert v.status == report.NOT_RUN and "bytes" in v.reason


def test_flops_fraction_bar_uses_the_peak_of_the_groups_dtype(verdicts):
    v = verdicts["25% of GEMM peak"]  # 3e7 flops / 1 ms = 30 GFLOP/s = 30% of 100 (float64)
    assert v.status == report.PASS
    assert v.measured.startswith("30%")


def test_missing_group_and_skipped_impl_are_not_run_with_reasons(verdicts):
    v = verdicts["group that never ran"]
    assert v.status == report.NOT_RUN
    assert "corr|4096x4096 k3|float64" in v.reason
    assert f"bench_fake.py ran 6 other group(s), e.g. '{G32}'" in v.reason  # same kernel first
    v = verdicts["impl that was skipped"]
    assert v.status == report.NOT_RUN
    assert "skipped: peer library 'jax' is not installed" in v.reason


def test_missing_reason_comes_from_the_same_dtype_only(workspace):
    index = report.Index(synthetic_benchmarks())
    bar = dict(text="t", group=G32, impl="numba", versus=("torch",), min_speedup=1.0, module="bench_fake.py")
    v = report.evaluate_bar(bar, index)
    assert v.status == report.NOT_RUN and "float32 torch disagrees" in v.reason
    bar64 = dict(bar, group="corr|64x64 k5|float64")
    assert "float32 torch disagrees" not in report.evaluate_bar(bar64, index).reason


def test_unknown_criterion_is_not_run_not_dropped(verdicts):
    v = verdicts["unknown criterion"]
    assert v.status == report.NOT_RUN and "max_joules" in v.reason


def test_no_benchmark_json_makes_every_bar_not_run(workspace):
    bench_dir, _ = workspace
    index = report.Index(None)
    out = [report.evaluate_bar(b, index) for b in report.collect_bars(str(bench_dir)).bars]
    assert {v.status for v in out} == {report.NOT_RUN}
    assert all(v.reason for v in out)


def test_a_truncated_benchmark_json_is_not_run_not_a_crash(tmp_path, capsys):
    # a bench stage killed at its timeout leaves pytest-benchmark's JSON empty: the report says
    # so and carries on, its bars not run, instead of stopping on a JSONDecodeError
    empty, cut = tmp_path / "empty.json", tmp_path / "cut.json"
    empty.write_text("")
    cut.write_text('{"benchmarks": [')
    assert report.load_json(str(empty)) is None and report.load_json(str(cut)) is None
    assert "not JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text('{"benchmarks": []}')
    assert report.load_json(str(good)) == {"benchmarks": []}


def test_speedup_table_columns():
    index = report.Index(synthetic_benchmarks())
    rows, best = report.speedups(index, G)
    assert best == "scipy_ndimage"  # fastest peer; numba and numpy are not peers
    by_impl = {impl: (vs_ref, vs_peer) for impl, _b, vs_ref, vs_peer in rows}
    assert by_impl["numba"][0] == pytest.approx(50.0)
    assert by_impl["numba"][1] == pytest.approx(1.5)
    assert by_impl["torch"][1] == pytest.approx(0.5)
    assert [impl for impl, *_ in rows] == ["numba", "scipy_ndimage", "torch", "numpy"]  # by median
    rows32, best32 = report.speedups(index, G32)
    assert best32 is None and rows32[0][2] is None and rows32[0][3] is None


def test_memory_verdicts_and_legend():
    mem = synthetic_memory()
    vs = report.memory_verdicts(mem)
    assert [v.status for v in vs] == [report.PASS, report.FAIL, report.NOT_RUN]
    assert vs[0].measured == "reverse rss slope = 1.002"
    assert vs[2].reason
    rss, tm, time_label = report.memory_legend(mem, "reverse")
    assert rss == "reverse RSS (slope 1.002)"
    assert tm == "reverse tracemalloc (slope 0.998)"
    assert time_label == "reverse (slope 1.010)"
    assert report.memory_legend({"slopes": {"f": {"rss": -7e-17}}}, "f")[0] == "f RSS (slope 0.000)"


def test_render_writes_every_report(workspace):
    bench_dir, results = workspace
    (results / "run.json").write_text(json.dumps({
        "argv": [], "quick": False, "started": "s", "finished": "f", "elapsed_s": 600.0,
        "stages": [{"name": "bench", "status": "ok", "elapsed_s": 500.0, "detail": "11 benchmarks"},
                   {"name": "hw2", "status": "not available", "elapsed_s": 0.0,
                    "detail": "kernels/__main__.py does not exist yet"}]}))
    summary = report.render(str(results), str(bench_dir))
    assert (summary[report.PASS], summary[report.FAIL], summary[report.NOT_RUN]) == (5, 4, 6)

    bench_md = (results / "benchmarks.md").read_text()
    assert f"### {G}" in bench_md
    assert "| numba | 1 ms | 100 µs | 10.0% | 10 | 50x | 1.5x | 12.0 GB/s, 50% of triad; " \
           "30.0 GFLOP/s, 30% of GEMM peak |" in bench_md
    assert "vs best peer (scipy_ndimage)" in bench_md
    assert "1000.0 GFLOP/s, 500% of GEMM peak (above the measured ceiling" in bench_md
    assert "**FAIL** — issue 2: 60% of bandwidth — measured 50% (12.0 GB/s)" in bench_md
    assert "24.0 GB/s" in bench_md and "100.0 GFLOP/s" in bench_md
    assert "## Bars whose group has no results" in bench_md and "group that never ran" in bench_md
    assert "| corr | cold | 1.5 s | 300 ms | 1 s | 100 µs | 2 | 0/4 |" in bench_md
    assert "bench_broken.py" in bench_md
    assert "peer library 'jax' is not installed" in bench_md

    readme = (results / "README.md").read_text()
    assert "5 PASS, 4 FAIL, 6 NOT RUN, of 15 bars" in readme
    assert "Test CPU 9000" in readme and "Haswell" in readme and "`abc123`" in readme
    assert "clean working tree" in readme
    assert "`OPENBLAS_CORETYPE=Haswell` is set" in readme and "avx2 avx512f" in readme
    assert report.REGENERATE in readme
    assert "hw2.md" in readme and "not produced in this run** (not available" in readme
    assert "median IQR/median over" in readme
    assert "forward slope < 0.05" in readme  # the memory bars join the summary
    assert "| bench_fake.py | 11 | 1 | 1 |" in readme  # timed / skipped / failed per module
    for link in ("benchmarks.md", "memory.md", "speedups.png", "memory_scaling.png", "time_scaling.png"):
        assert f"]({link})" in readme

    memory_md = (results / "memory.md").read_text()
    assert "| reverse | 1.002 | 0.998 | 1.010 |" in memory_md
    assert "**NOT RUN** — issue 4: checkpoint slope 0.5" in memory_md
    assert "drawn at 0.01 MiB" in memory_md  # forward's RSS above baseline is 0


def test_render_draws_the_figures(workspace):
    pytest.importorskip("matplotlib", reason="matplotlib (a bench extra) draws the figures")
    bench_dir, results = workspace
    report.render(str(results), str(bench_dir))
    for name in ("speedups.png", "memory_scaling.png", "time_scaling.png"):
        data = (results / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    # without memory.json the memory figures go, and memory.md says why
    (results / "memory.json").unlink()
    report.render(str(results), str(bench_dir))
    assert not (results / "memory_scaling.png").exists()
    assert not (results / "time_scaling.png").exists()
    assert "**Not run**" in (results / "memory.md").read_text()
    assert "speedups.png" in os.listdir(results)


def test_speedup_figure_rows():
    rows = report.speedup_rows(report.Index(synthetic_benchmarks()))
    assert rows == [(G, pytest.approx(50.0), pytest.approx(1.5), "scipy_ndimage")]


# ---------------------------------------------------------------------------------------------
# bench/run.py: stage selection and the stages that wrap other helpers' programs


def test_stage_selection():
    assert run.selected_stages(None, None) == list(run.STAGES)
    assert run.selected_stages(["report", "bench"], None) == ["bench", "report"]
    assert run.selected_stages(None, ["bench", "memory"]) == ["hw2", "reliability", "train", "tune", "report"]
    with pytest.raises(SystemExit, match="unknown stage"):
        run.selected_stages(["benchmarks"], None)
    with pytest.raises(SystemExit, match="no stage left"):
        run.selected_stages(["bench"], ["bench"])


@pytest.fixture()
def fake_root(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    monkeypatch.setattr(run, "ROOT", str(root))
    return root


def _stages(results):
    return {s["name"]: s for s in json.loads((results / "run.json").read_text())["stages"]}


def test_missing_programs_are_reported_not_available(fake_root, tmp_path, capsys):
    results = tmp_path / "out"
    rc = run.main(["--skip", "bench", "--skip", "report", "--results", str(results)])
    assert rc == 0  # a stage whose program does not exist yet is not an error of the job
    stages = _stages(results)
    assert stages["memory"]["status"] == "not available"
    assert "memory_scaling.py does not exist" in stages["memory"]["detail"]
    assert stages["hw2"]["status"] == "not available" and "__main__" in stages["hw2"]["detail"]
    assert stages["bench"]["status"] == "skipped"
    assert [s["name"] for s in json.loads((results / "run.json").read_text())["stages"]] == list(run.STAGES)
    assert "stage memory: NOT AVAILABLE" in capsys.readouterr().out


def test_memory_stage_runs_the_script_and_a_failure_fails_the_job(fake_root, tmp_path):
    script = fake_root / "bench" / "memory_scaling.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        out = sys.argv[sys.argv.index("--out") + 1]
        json.dump({"runs": []}, open(out, "w"))
        print("measured")
    """))
    results = tmp_path / "out"
    assert run.main(["--only", "memory", "--results", str(results)]) == 0
    assert _stages(results)["memory"]["status"] == "ok"
    assert json.loads((results / "memory.json").read_text()) == {"runs": []}

    script.write_text("import sys; print('boom'); sys.exit(3)\n")
    assert run.main(["--only", "memory", "--results", str(results)]) == 1
    st = _stages(results)["memory"]
    assert st["status"] == "error" and "exited 3" in st["detail"]
    assert not (results / "memory.json").exists()  # the stale file is not reported as new


def test_kernels_command_stage_checks_the_command_exists(fake_root, tmp_path):
    pkg = fake_root / "kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(textwrap.dedent("""
        import os, sys
        args = sys.argv[1:]
        if args == ["--help"]:
            print("usage: python -m kernels {hw2}")
        elif args == ["hw2", "--help"]:
            print("usage: python -m kernels hw2 [--out OUT]")
        elif args[:2] == ["hw2", "--out"] and len(args) == 3:
            open(os.path.join(args[2], "hw2.md"), "w").write("answers")
        else:
            sys.exit(2)
    """))
    results = tmp_path / "out"
    rc = run.main(["--only", "hw2", "--only", "reliability", "--results", str(results)])
    assert rc == 0
    stages = _stages(results)
    assert stages["hw2"]["status"] == "ok"
    assert (results / "hw2.md").read_text() == "answers"  # --out follows --results
    assert stages["reliability"]["status"] == "not available"
    assert "no 'reliability' command" in stages["reliability"]["detail"]


def test_ratio_and_seconds_bars(workspace):
    """min_ratio/max_ratio read medians a benchmark keeps in extra_info (calls alternating in one
    loop, bench_interleaved.py); max_seconds bounds a median wall time (bench_compile.py)."""
    b = {"group": "alt|x|float64", "name": "t", "extra_info": {"impl": "alternating",
         "medians_s": {"kernels": 0.001, "numpy": 0.003}}, "stats": {"median": 0.5, "iqr": 0.0, "rounds": 3}}
    index = report.Index({"benchmarks": [b]})
    bar = dict(text="t", group="alt|x|float64", impl="alternating", ratio=("numpy", "kernels"), min_ratio=2.5)
    v = report.evaluate_bar(bar, index)
    assert v.status == report.PASS and v.measured.startswith("3x")
    assert report.evaluate_bar(dict(bar, min_ratio=3.5), index).status == report.FAIL
    assert report.evaluate_bar(dict(bar, min_ratio=None, max_ratio=2.0) | {"min_ratio": None}, index).status \
        == report.NOT_RUN  # two criteria named: refused, not guessed
    up = dict(text="t", group="alt|x|float64", impl="alternating", ratio=("kernels", "numpy"), max_ratio=1.2)
    assert report.evaluate_bar(up, index).status == report.PASS
    missing = report.evaluate_bar(dict(up, ratio=("kernels", "torch")), index)
    assert missing.status == report.NOT_RUN and "torch" in missing.reason
    mib = report.evaluate_bar(dict(bar, unit="MiB"), index)  # peak memory carried as MiB, not seconds
    assert mib.status == report.PASS and "0.003 MiB / 0.001 MiB" in mib.reason and " s " not in mib.reason
    sec = dict(text="t", group="alt|x|float64", impl="alternating", max_seconds=0.4)
    assert report.evaluate_bar(sec, index).status == report.FAIL
    assert report.evaluate_bar(dict(sec, max_seconds=0.6), index).status == report.PASS
