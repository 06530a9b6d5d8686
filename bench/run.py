"""The main job: run every benchmark and study, then render the reports in ``results/``.

    python bench/run.py [--quick] [--only STAGE ...] [--skip STAGE ...] [--results DIR]

Stages, in order (each prints a line when it starts and ends, with the elapsed time, and streams
its subprocess's output, so the minutes it takes are visible):

``bench``        ``pytest bench --benchmark-only --benchmark-json=results/benchmarks.json`` with
                 bounded timing (``--benchmark-max-time``, ``--benchmark-min-rounds``); warm-up is
                 each benchmark's own untimed first call.
``memory``       ``python bench/memory_scaling.py --out results/memory.json``, if that script exists.
``hw2``          ``python -m kernels hw2`` (writes ``results/hw2.md``), if ``kernels/__main__.py``
                 offers it.
``reliability``  ``python -m kernels reliability`` (``results/reliability.md``), if offered.
``train``        ``python -m kernels train`` (``results/train.md``: the CNN on the digits), if offered.
``tune``         ``python -m kernels tune`` (``results/tune.md``: hyper-parameter search), if offered.
``report``       ``python bench/report.py``: README.md, benchmarks.md, memory.md and the figures,
                 from the JSON alone.

A stage whose program does not exist yet is reported as ``not available`` with the reason and
does not fail the job; a stage that exits non-zero (a benchmark that errors or fails its own
correctness check, a crashed script, a timeout) makes the job exit 1 after the remaining stages
have run. Bars that FAIL are a finding of the report, not an error of the job. The stage log is
written to ``results/run.json`` and shown in ``results/README.md``.

``--quick`` is a smoke run for tests and CI: tiny sizes where a module honours
``KERNELS_BENCH_QUICK=1``, one round per benchmark, ``--quick`` passed to the scripts that
accept it (the others are skipped with a message). Its numbers are not representative, and the
README says so.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from gitstate import git_state  # noqa: E402  (beside this file)
STAGES = ("bench", "memory", "hw2", "reliability", "train", "tune", "report")

# Timing budget: the whole job must finish in under 15 minutes on 2 cores. A fast benchmark costs
# about MAX_TIME plus calibration and its untimed warm-up call (~1 s each, ~100 of them); a slow
# one costs (MIN_ROUNDS + 1) calls, so the few whose calls take seconds (RMSProp's 2000 steps,
# hypergrad at T = 100000, compile time in fresh processes) fix their own rounds with
# `benchmark.pedantic` and dominate the bench stage. The measured time of every stage is in
# results/run.json and results/README.md; the job prints its total against BUDGET_S at the end.
MAX_TIME = 0.5
MIN_ROUNDS = 5
BUDGET_S = 15 * 60  # the bar for the whole job on the 2-core machine
# Per-stage ceilings, so a hung stage cannot hold the job forever: twice what each took on the
# slowest machine the job has run on (2026-12-02, a 2-core Xeon on which the compute kernels and
# PyTorch ran 1.7x slower than the day before: bench up to 14.5 min, memory 3.4, reliability 3.9), as
# a stage killed at its ceiling loses all it measured (pytest-benchmark writes its JSON at the end).
TIMEOUT_S = {"bench": 30 * 60, "memory": 8 * 60, "hw2": 5 * 60, "reliability": 8 * 60, "train": 6 * 60,
             "tune": 6 * 60, "report": 3 * 60}

OK, ERROR, NOT_AVAILABLE, SKIPPED = "ok", "error", "not available", "skipped"


#: The checkout when the job started (before it rewrites results/), passed to every stage.
GIT_AT_START: dict = {}


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Job:
    def __init__(self, results, quick, argv):
        self.results = results
        self.quick = quick
        self.t0 = time.monotonic()
        self.log = {"argv": argv, "quick": quick, "started": _now(), "stages": []}

    def say(self, text):
        print(f"[run {time.monotonic() - self.t0:6.0f}s] {text}", flush=True)

    def record(self, name, status, elapsed, detail="", command=None):
        entry = {"name": name, "status": status, "elapsed_s": round(elapsed, 1), "detail": detail}
        if command:
            entry["command"] = command
        stages = [s for s in self.log["stages"] if s["name"] != name] + [entry]
        self.log["stages"] = sorted(stages, key=lambda s: STAGES.index(s["name"]))
        self.save()
        self.say(f"stage {name}: {status.upper()} after {elapsed:.0f} s" + (f" — {detail}" if detail else ""))
        return entry

    def save(self):
        self.log["finished"] = _now()
        self.log["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        os.makedirs(self.results, exist_ok=True)
        with open(os.path.join(self.results, "run.json"), "w") as fh:
            json.dump(self.log, fh, indent=2)

    def stream(self, cmd, *, env=None, timeout):
        """Run ``cmd`` in ROOT, echoing its output line by line with the job's elapsed time.

        Returns (exit code or None on timeout, last lines of output).
        """
        self.say("$ " + " ".join(cmd))
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        tail: list = []

        def pump():
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                del tail[:-40]
                print(f"[run {time.monotonic() - self.t0:6.0f}s]   {line}", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: pytest may have children
            proc.wait()
            rc = None
        reader.join(timeout=10)
        return rc, tail


def _env(quick):
    env = dict(os.environ)
    # An uninstalled checkout still finds `kernels`; an installed one is unaffected.
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Some machines set these for old OpenBLAS builds that misdetect the processor; they pin a
    # current NumPy to an older, slower kernel. The peers get NumPy at its best: both unset
    # together (which kernel then ran is in benchmarks.json: machine_info.kernels.threads).
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["KERNELS_GIT_AT_START"] = json.dumps(GIT_AT_START)
    if quick:
        env["KERNELS_BENCH_QUICK"] = "1"
    return env


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def stage_bench(job: Job):
    out = os.path.join(job.results, "benchmarks.json")
    _remove(out)  # a failed run must not leave the previous run's numbers to be reported as new
    cmd = [sys.executable, "-m", "pytest", os.path.join("bench"), "--benchmark-only",
           f"--benchmark-json={out}",
           f"--benchmark-max-time={0.001 if job.quick else MAX_TIME}",
           f"--benchmark-min-rounds={1 if job.quick else MIN_ROUNDS}",
           "--benchmark-warmup=off",
           "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name",
           "-p", "no:cacheprovider", "-v", "-rsfE",
           "--durations=12"]  # the slowest benchmarks, set-up included: where the minutes go
    t = time.monotonic()
    rc, tail = job.stream(cmd, env=_env(job.quick), timeout=TIMEOUT_S["bench"])
    elapsed = time.monotonic() - t
    if rc is None:
        return job.record("bench", ERROR, elapsed, f"timed out after {TIMEOUT_S['bench']} s", cmd)
    if not os.path.exists(out):
        return job.record("bench", ERROR, elapsed, f"pytest exited {rc} and wrote no {out}", cmd)
    n = len(json.load(open(out)).get("benchmarks", []))
    summary = next((ln.strip("= ") for ln in reversed(tail) if " in " in ln and ("passed" in ln or "failed" in ln)), "")
    if rc != 0:
        return job.record("bench", ERROR, elapsed, f"pytest exited {rc} ({summary}); {n} benchmarks kept", cmd)
    return job.record("bench", OK, elapsed, f"{n} benchmarks; {summary}", cmd)


def _help_text(cmd, env):
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "timed out asking for --help"
    return proc.returncode, proc.stdout + proc.stderr


def stage_memory(job: Job):
    script = os.path.join("bench", "memory_scaling.py")
    out = os.path.join(job.results, "memory.json")
    t = time.monotonic()
    if not os.path.exists(os.path.join(ROOT, script)):
        return job.record("memory", NOT_AVAILABLE, 0.0, f"{script} does not exist yet; memory.md says not run")
    env = _env(job.quick)
    cmd = [sys.executable, script, "--out", out]
    if job.quick:
        rc, text = _help_text([sys.executable, script, "--help"], env)
        if "--quick" not in (text or ""):
            return job.record("memory", SKIPPED, time.monotonic() - t,
                              f"quick run, and {script} has no --quick option (its full run takes minutes)")
        cmd.append("--quick")
    _remove(out)
    rc, _tail = job.stream(cmd, env=env, timeout=TIMEOUT_S["memory"])
    elapsed = time.monotonic() - t
    if rc is None:
        return job.record("memory", ERROR, elapsed, f"timed out after {TIMEOUT_S['memory']} s", cmd)
    if rc != 0 or not os.path.exists(out):
        return job.record("memory", ERROR, elapsed, f"exited {rc}" + ("" if os.path.exists(out) else f", no {out}"), cmd)
    return job.record("memory", OK, elapsed, f"wrote {os.path.relpath(out, ROOT)}", cmd)


def stage_kernels_command(job: Job, name: str, product: str):
    """``python -m kernels NAME`` if kernels/__main__.py offers it."""
    t = time.monotonic()
    if not os.path.exists(os.path.join(ROOT, "kernels", "__main__.py")):
        return job.record(name, NOT_AVAILABLE, 0.0, f"kernels/__main__.py does not exist yet, so no {product}")
    env = _env(job.quick)
    rc, text = _help_text([sys.executable, "-m", "kernels", "--help"], env)
    if rc != 0 or not re.search(rf"(^|[\s{{,]){re.escape(name)}([\s}},]|$)", text or "", re.M):
        why = f"`python -m kernels --help` exited {rc}" if rc != 0 else f"it lists no {name!r} command"
        return job.record(name, NOT_AVAILABLE, time.monotonic() - t, f"{why}, so no {product}")
    cmd = [sys.executable, "-m", "kernels", name]
    rc, sub = _help_text(cmd + ["--help"], env)
    if "--out" in (sub or ""):  # write beside the other reports (which --results may move)
        cmd += ["--out", job.results]
        product = os.path.relpath(os.path.join(job.results, os.path.basename(product)), ROOT)
    if job.quick:
        if "--quick" not in (sub or ""):
            return job.record(name, SKIPPED, time.monotonic() - t,
                              f"quick run, and `python -m kernels {name}` has no --quick option")
        cmd.append("--quick")
    rc, _tail = job.stream(cmd, env=env, timeout=TIMEOUT_S[name])
    elapsed = time.monotonic() - t
    if rc is None:
        return job.record(name, ERROR, elapsed, f"timed out after {TIMEOUT_S[name]} s", cmd)
    if rc != 0:
        return job.record(name, ERROR, elapsed, f"exited {rc}", cmd)
    return job.record(name, OK, elapsed, f"wrote {product}", cmd)


def stage_report(job: Job):
    t = time.monotonic()
    # The README shows the stage table; this stage is the one writing it.
    job.record("report", "running", 0.0, "rendering these reports")
    cmd = [sys.executable, os.path.join("bench", "report.py"), "--results", job.results]
    rc, _tail = job.stream(cmd, env=_env(job.quick), timeout=TIMEOUT_S["report"])
    elapsed = time.monotonic() - t
    if rc != 0:
        return job.record("report", ERROR, elapsed, "timed out" if rc is None else f"exited {rc}", cmd)
    return job.record("report", OK, elapsed, "README.md, benchmarks.md, memory.md and figures", cmd)


RUNNERS = {
    "bench": stage_bench,
    "memory": stage_memory,
    "hw2": lambda job: stage_kernels_command(job, "hw2", "results/hw2.md"),
    "reliability": lambda job: stage_kernels_command(job, "reliability", "results/reliability.md"),
    "train": lambda job: stage_kernels_command(job, "train", "results/train.md"),
    "tune": lambda job: stage_kernels_command(job, "tune", "results/tune.md"),
    "report": stage_report,
}


def selected_stages(only, skip):
    unknown = [s for s in (only or []) + (skip or []) if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    chosen = [s for s in STAGES if (not only or s in only) and s not in (skip or [])]
    if not chosen:
        raise SystemExit("no stage left to run")
    return chosen


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description="Run the benchmarks and studies, then render results/.",
                                epilog="stages: " + ", ".join(STAGES))
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers not representative)")
    p.add_argument("--only", action="append", metavar="STAGE", help="run only this stage (repeatable)")
    p.add_argument("--skip", action="append", metavar="STAGE", help="skip this stage (repeatable)")
    p.add_argument("--results", default=os.path.join(ROOT, "results"), help="output directory")
    args = p.parse_args(argv)
    stages = selected_stages(args.only, args.skip)
    args.results = os.path.abspath(args.results)
    os.makedirs(args.results, exist_ok=True)

    GIT_AT_START.update(git_state(ROOT))
    job = Job(args.results, args.quick, argv)
    job.say(f"stages: {', '.join(stages)}" + (" (quick smoke run)" if args.quick else "")
            + f"; results into {args.results}")
    for name in STAGES:
        if name not in stages:
            job.log["stages"].append({"name": name, "status": SKIPPED, "elapsed_s": 0.0,
                                      "detail": "not selected (--only/--skip)"})
    failed = []
    for name in stages:
        job.say(f"stage {name}: starting")
        try:
            entry = RUNNERS[name](job)
        except Exception as exc:  # a bug in a stage runner is an error of that stage, not a crash
            entry = job.record(name, ERROR, 0.0, f"{type(exc).__name__}: {exc}")
        if entry["status"] == ERROR:
            failed.append(name)
    job.save()
    total = time.monotonic() - job.t0
    budget = "within" if total <= BUDGET_S else "OVER"
    job.say(f"total {total / 60:.1f} min, {budget} the {BUDGET_S / 60:.0f}-minute budget of the main job")
    job.say("done: " + ("all stages ran" if not failed else f"stages with errors: {', '.join(failed)}")
            + f"; reports in {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
