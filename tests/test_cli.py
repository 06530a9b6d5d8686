"""Tests for the command line's checks: ``python -m kernels COMMAND`` refuses a bad option with an
argparse error (exit status 2, the option named) before any work starts or any directory is made.

Each command's work (``write_report``, ``compute``, ``run``) is replaced by a stub that fails the
test if it is reached, so a check that stops working fails in a second instead of starting a job
of minutes. One test runs the real ``python -m kernels`` in a subprocess, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from kernels.apps import hw2, positive_int, reliability, train, tune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: command -> (its module, the name of the function main() calls to do the work)
APPS = {"hw2": (hw2, "write_report"), "reliability": (reliability, "run"), "train": (train, "write_report"),
        "tune": (tune, "compute")}


@pytest.fixture
def no_work(monkeypatch):
    """Stub every command's work: reaching it fails the test (the check came too late)."""
    def started(*args, **kwargs):
        raise AssertionError("the command started its work before refusing the option")

    for module, name in APPS.values():
        monkeypatch.setattr(module, name, started)


def _refused(capsys, command, argv):
    """Run ``command``'s main on ``argv``; return its stderr, asserting an argparse error."""
    with pytest.raises(SystemExit) as exc:
        APPS[command][0].main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------ positive integers


def test_positive_int_accepts_one_and_up_and_refuses_the_rest():
    assert positive_int("1") == 1 and positive_int(" 42 ") == 42
    for text in ("0", "-3", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="integer >= 1"):
            positive_int(text)


@pytest.mark.parametrize("command, option", [("train", "--epochs"), ("tune", "--steps"),
                                             ("reliability", "--fuzz-examples"), ("reliability", "--leak-calls")])
@pytest.mark.parametrize("value", ["0", "-3", "2.5"])
def test_non_positive_counts_are_refused_before_the_output_directory(no_work, capsys, tmp_path, command, option,
                                                                     value):
    out = tmp_path / "out"
    err = _refused(capsys, command, ["--quick", option, value, "--out", str(out)])
    assert f"argument {option}: must be an integer >= 1, got" in err and "Traceback" not in err
    assert not out.exists()


def test_reliability_run_refuses_zero_instead_of_using_the_default():
    # run() used `fuzz_examples or default`: an explicit 0 silently became 500
    for kw in (dict(fuzz_examples=0), dict(leak_calls=-1), dict(fuzz_examples=True)):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            reliability.run(quick=True, **kw)


def test_accepted_options_reach_the_work_after_the_output_directory(monkeypatch, tmp_path):
    seen = {}

    def compute(quick=False, steps=None, progress=None):
        seen.update(quick=quick, steps=steps, out_exists=(tmp_path / "t").is_dir())
        raise KeyboardInterrupt  # stop here: only the parsing is under test

    monkeypatch.setattr(tune, "compute", compute)
    with pytest.raises(KeyboardInterrupt):
        tune.main(["--quick", "--steps", "3", "--out", str(tmp_path / "t")])
    assert seen == dict(quick=True, steps=3, out_exists=True)


# ------------------------------------------------------------------------------ --out


@pytest.mark.parametrize("command", sorted(APPS))
def test_out_that_is_a_file_is_refused_before_any_work(no_work, capsys, tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    err = _refused(capsys, command, ["--quick", "--out", str(afile)])
    assert "--out" in err and "is not a directory" in err
    assert afile.read_text() == "keep me"
    err = _refused(capsys, command, ["--quick", "--out", str(afile / "sub")])
    assert "--out" in err and "cannot create the directory" in err


# ------------------------------------------------------------------------------ hw2 --spec


@pytest.mark.parametrize("spec, reason", [
    ("in8x8x1 conv3 zz", "spec token 3"),                                       # does not parse
    ("in8x8x1 conv9valid", "effective kernel 9 is larger than the padded input 8x8"),  # does not fit
    ("in6x6x1 conv3valid conv1valid", "section 3.3 analyses 'in6x6x1 conv5valid conv5valid'"),  # 5x5 rewrite
    ("in2x2x1 conv1 pool2 conv1", "stride 2 in the first conv"),                 # a 3.3 variant
])
def test_hw2_spec_that_a_section_cannot_analyse_is_refused(no_work, capsys, tmp_path, spec, reason):
    out = tmp_path / "out"
    err = _refused(capsys, "hw2", ["--quick", "--spec", spec, "--out", str(out)])
    assert "--spec" in err and reason in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("spec", [hw2.DEFAULT_SPEC, "in28x28x1 conv5 pool2 conv5 pool2 fc10", "in8x8x1 conv3",
                                  "in12x12x1 conv3valid conv3valid"])
def test_hw2_check_spec_accepts_specs_every_section_can_analyse(spec):
    hw2.check_spec(spec)


def test_hw2_check_spec_checks_what_q3_3_analyses():
    # the check and the section build their specs with the same function
    base, orig, variants, note = hw2.q3_3_specs("in6x6x1 conv3valid conv1valid", hw2.Q3_3_KERNEL)
    assert base == "in6x6x1 conv5valid conv5valid" and variants[0] == ("as asked: every conv 5x5", base)
    with pytest.raises(ValueError, match="conv5valid conv5valid"):
        hw2.check_spec("in6x6x1 conv3valid conv1valid")


# ------------------------------------------------------------------------------ hw2 --memory-json


@pytest.mark.parametrize("text, reason", [
    ("[1, 2]", "must hold a JSON object"),
    ("garbage", "not valid JSON"),
    ('{"runs": {"method": "reverse"}}', "'runs' must be a list"),
    ('{"runs": [3]}', "runs[0] must be an object"),
    ('{"runs": [{"method": 3, "T": 1}]}', "runs[0]['method'] must be a string"),
    ('{"runs": [{"method": "reverse", "T": null}]}', "runs[0]['T'] must be a number, got null"),
    ('{"runs": [{"method": "reverse", "T": "8"}]}', "runs[0]['T'] must be a number"),
    ('{"runs": [{"method": "reverse", "T": 8, "bytes_stored": "many"}]}', "runs[0]['bytes_stored']"),
    ('{"slopes": [1]}', "'slopes' must be an object"),
    ('{"slopes": {"reverse": 1.0}}', "slopes['reverse'] must be an object"),
    ('{"slopes": {"reverse": {"rss": "one"}}}', "slopes['reverse']['rss'] must be a number"),
])
def test_hw2_malformed_memory_json_is_refused(no_work, capsys, tmp_path, text, reason):
    path = tmp_path / "memory.json"
    path.write_text(text)
    err = _refused(capsys, "hw2", ["--quick", "--memory-json", str(path), "--out", str(tmp_path / "out")])
    assert "--memory-json" in err and reason in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_hw2_malformed_default_memory_json_in_out_is_refused(no_work, capsys, tmp_path):
    (tmp_path / "memory.json").write_text('{"runs": [1]}')
    err = _refused(capsys, "hw2", ["--quick", "--out", str(tmp_path)])
    assert "--memory-json (default OUT/memory.json)" in err and "runs[0] must be an object" in err


def test_hw2_accepts_the_memory_studys_json(monkeypatch, tmp_path):
    # the shape bench/memory_scaling.py writes, and an absent file (then 2.1.2 measures)
    runs = [dict(method="reverse", T=T, rss_above_baseline_mib=0.5 * T, tracemalloc_peak_mib=None, bytes_stored=8 * T)
            for T in (250, 500)]
    path = tmp_path / "memory.json"
    path.write_text(json.dumps(dict(runs=runs, slopes=dict(reverse=dict(rss=1.0, tracemalloc=float("nan"))))))
    hw2.check_memory_json(str(path))
    seen = []
    monkeypatch.setattr(hw2, "write_report", lambda **kw: seen.append(kw["memory_json"]))
    for given in (str(path), str(tmp_path / "absent.json")):
        assert hw2.main(["--quick", "--memory-json", given, "--out", str(tmp_path / "out")]) == 0
    assert seen == [str(path), str(tmp_path / "absent.json")]


# ------------------------------------------------------------------------------ as a user runs it


def test_python_m_kernels_refuses_a_bad_option_with_status_2(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run([sys.executable, "-m", "kernels", "tune", "--steps", "-1", "--out", str(tmp_path / "out")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "argument --steps: must be an integer >= 1, got -1" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "out").exists()
