"""Tests for kernels/apps/hw2/ and ``python -m kernels`` (issue 6).

The report's numbers come from the ``q*`` functions; each is run once here (quick sizes) and
checked against a derivation written out in the test: NumPy's ``pinv``, closed forms, SciPy's
``signal.convolve2d``, parameter counts by arithmetic, the receptive-field recurrence. The CLI is
then run end to end into a temporary directory.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kernels.apps import hw2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def q111():
    return hw2.q1_1_1(quick=True)


@pytest.fixture(scope="module")
def q12():
    return hw2.q1_2(quick=True)


@pytest.fixture(scope="module")
def q22():
    return hw2.q2_2(quick=True)


@pytest.fixture(scope="module")
def q23():
    return hw2.q2_3(quick=True)


# ------------------------------------------------------------------------------------ 1.1.1


def _sgd_data(seed, n, d):
    # the report's recipe, written out: X (n, d) / sqrt(d), then t, then (control) w0
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    t = rng.standard_normal(n)
    return X, t, rng


def test_q1_1_1_sgd_from_zero_is_pinv_solution(q111):
    n, d = q111["n"], q111["d"]
    assert d > n
    assert len({r["seed"] for r in q111["runs"]}) >= 2 and len({r["batch_size"] for r in q111["runs"]}) >= 2
    for r in q111["runs"]:
        X, t, _ = _sgd_data(r["seed"], n, d)
        w_pinv = np.linalg.pinv(X) @ t
        w = np.array(r["w"])
        assert not r["diverged"]
        assert np.linalg.norm(w - w_pinv) < 1e-8
        assert r["dist_to_min_norm"] == pytest.approx(np.linalg.norm(w - w_pinv), abs=1e-12)
        assert r["residual"] == pytest.approx(np.linalg.norm(X @ w - t), abs=1e-14)
        # component outside the row space, with the projector I - pinv(X) X
        outside = np.linalg.norm(w - np.linalg.pinv(X) @ (X @ w))
        assert r["outside_row_space"] == pytest.approx(outside, abs=1e-12)
    assert q111["max_dist_to_min_norm"] == max(r["dist_to_min_norm"] for r in q111["runs"])


def test_q1_1_1_control_from_random_w0_keeps_null_space_part(q111):
    o = q111["off_row_space"]
    X, t, _ = _sgd_data(o["seed"], q111["n"], q111["d"])
    w0 = np.array(o["w0"])
    P = np.linalg.pinv(X) @ X
    predicted = np.linalg.pinv(X) @ t + (np.eye(X.shape[1]) - P) @ w0
    assert np.linalg.norm(np.array(o["w"]) - predicted) < 1e-8
    assert o["predicted_dist"] == pytest.approx(np.linalg.norm((np.eye(X.shape[1]) - P) @ w0), rel=1e-10)
    assert o["dist_to_min_norm"] == pytest.approx(o["predicted_dist"], rel=1e-8)
    assert o["dist_to_min_norm"] > 0.1


# ------------------------------------------------------------------------------------ 1.2


def test_q1_2_adaptive_methods_land_on_the_diagonal(q12):
    # gradient = c (x1.w - t) x1 with x1 = [2, 1] > 0: RMSProp/Adagrad/Adam divide coordinate i by
    # a running RMS proportional to |x1_i|, so both coordinates move by the same amount and the
    # iterate stays on w1 = w2, meeting 2 w1 + w2 = 2 at [2/3, 2/3].
    diag = np.array([2.0, 2.0]) / 3.0
    mn = np.array([2.0, 1.0]) * 2.0 / 5.0  # x1 t / ||x1||^2
    assert q12["w_min_norm"] == pytest.approx(mn, abs=1e-15)
    assert q12["norm_min_norm"] == pytest.approx(math.sqrt(0.8), rel=1e-14)
    by = {m["name"]: m for m in q12["methods"]}
    assert set(by) == {"GD", "RMSProp", "Adagrad", "Adam"}
    for name in ("RMSProp", "Adagrad", "Adam"):
        m = by[name]
        assert not m["diverged"]
        assert m["w"] == pytest.approx(diag, abs=1e-6)
        assert m["norm"] == pytest.approx(2 * math.sqrt(2) / 3, abs=1e-6)
        assert m["dist_to_min_norm"] == pytest.approx(math.sqrt(20) / 15, abs=1e-6)
        assert m["null_component"] == pytest.approx((diag[0] - 2 * diag[1]) / math.sqrt(5), abs=1e-6)
        assert m["first_step_ratio"] == pytest.approx(1.0, abs=1e-6)
        assert m["residual"] < 1e-9
    # the first step, from the update rules with v_{-1} = 0 (eps negligible): RMSProp lr/sqrt(1-beta),
    # Adagrad lr, Adam lr (bias correction makes m/sqrt(v) = sign(g))
    p = by["RMSProp"]["params"]
    assert by["RMSProp"]["first_step"][0] == pytest.approx(p["lr"] / math.sqrt(1 - p["beta"]), rel=1e-6)
    assert by["Adagrad"]["first_step"][0] == pytest.approx(by["Adagrad"]["params"]["lr"], rel=1e-6)
    assert by["Adam"]["first_step"][0] == pytest.approx(by["Adam"]["params"]["lr"], rel=1e-6)
    gd = by["GD"]
    assert gd["w"] == pytest.approx(mn, abs=1e-12)
    assert gd["first_step_ratio"] == pytest.approx(0.5, abs=1e-15)
    # GD's first step from 0: -lr * (2/n) (x1.0 - t) x1 = lr * 4 * x1
    assert gd["first_step"] == pytest.approx(gd["params"]["lr"] * 4 * np.array([2.0, 1.0]), rel=1e-14)
    assert len(gd["trajectory"]) > 10 and gd["trajectory"][0] == [0.0, 0.0]


def test_q1_2_badly_scaled_gd_matches_closed_form(q12):
    sc = q12["scaling"]
    gd = sc["rows"][0]
    assert gd["name"].startswith("GD")
    # X = diag(10, 0.1), t = 1: residuals r_i = (1 - lr h_i)^k r_i0 with r_i0 = -1, h = (100, 0.01)
    assert sc["curvatures"] == pytest.approx([100.0, 0.01], rel=1e-12)  # (2/n) X^T X = diag(100, 0.01)
    assert gd["lr"] == pytest.approx(0.9 * 2 / 100.0, rel=1e-12)
    k = sc["budget"]
    loss = 0.5 * sum((1 - gd["lr"] * h) ** (2 * k) for h in (100.0, 0.01))
    assert gd["final_loss"] == pytest.approx(loss, rel=1e-8)
    assert gd["steps_to_tol"] is None and loss > sc["tol"]
    assert all(r["steps_to_tol"] is not None for r in sc["rows"][1:])


# ------------------------------------------------------------------------------------ 2.1.1


def test_q2_1_1_graph_has_the_questions_dependencies():
    q = hw2.q2_1_1(2)
    # written out from question 2.1.1: the loss and its gradient depend on w_k and lambda~;
    # w_{k+1} on w_k, the gradient and eta
    expected = set()
    for k in range(3):
        expected |= {(f"w{k}", f"L{k}"), ("lambda~", f"L{k}")}
    for k in range(2):
        expected |= {(f"w{k}", f"grad L{k}"), ("lambda~", f"grad L{k}"), (f"w{k}", f"w{k + 1}"),
                     (f"grad L{k}", f"w{k + 1}"), ("eta", f"w{k + 1}")}
    assert {tuple(e) for e in q["edges"]} == expected
    assert set(q["nodes"]) == {a for e in expected for a in e}
    assert all(q["depth"][b] > q["depth"][a] for a, b in q["edges"])
    assert {n: q["depth"][n] for n in ("w0", "eta", "lambda~", "w1", "w2", "L2")} == \
        {"w0": 0, "eta": 0, "lambda~": 0, "w1": 2, "w2": 4, "L2": 5}
    assert "digraph" in q["dot"]
    pos = hw2.graph_positions(q["nodes"], q["edges"], q["depth"])
    assert all(pos[n][0] == q["depth"][n] for n in q["nodes"])
    assert len(set(pos.values())) == len(pos)  # no two nodes drawn on top of each other


def test_parse_dot_handles_attributes_bare_ids_and_graph_attributes():
    text = 'digraph g {\n  rankdir=LR;\n  node [shape=circle];\n  a [label="A", shape=box];\n  "b c";\n' \
           '  a -> "b c";\n  "b c" -> d [color=red];\n}\n'
    nodes, edges = hw2.parse_dot(text)
    assert list(nodes) == ["a", "b c", "d"]
    assert nodes["a"] == {"label": "A", "shape": "box"}
    assert edges == [("a", "b c"), ("b c", "d")]
    assert hw2.layered_layout(nodes, edges) == {"a": 0, "b c": 1, "d": 2}
    with pytest.raises(ValueError, match="cycle"):
        hw2.layered_layout({"x": {}, "y": {}}, [("x", "y"), ("y", "x")])


# ------------------------------------------------------------------------------------ 2.1.2


def test_q2_1_2_measured_memory_classes():
    q = hw2.q2_1_2(None, quick=True)
    assert q["source"] == "tracemalloc"
    d = q["d"]
    m = q["methods"]
    Ts = np.array(m["reverse"]["T"])
    assert m["reverse"]["bytes_stored"] == [(T + 1) * d * 8 for T in Ts]  # issue 4's exact figure
    assert m["forward"]["bytes_stored"] == [2 * d * 8] * len(Ts)
    assert m["reverse"]["slopes"]["bytes_stored"] == pytest.approx(np.polyfit(np.log(Ts), np.log((Ts + 1.0) * d * 8), 1)[0],
                                                                     rel=1e-10)
    assert abs(m["forward_pass"]["slopes"]["tracemalloc"]) < 0.1
    assert abs(m["forward"]["slopes"]["tracemalloc"]) < 0.1
    assert m["reverse"]["slopes"]["tracemalloc"] > 0.8
    assert 0.2 < m["checkpoint"]["slopes"]["bytes_stored"] < 0.7
    assert hw2.complexity_class(0.01) == "O(1)" and hw2.complexity_class(0.98) == "O(t)"
    assert hw2.complexity_class(0.5) == "O(√t)"


def test_q2_1_2_quotes_memory_json(tmp_path, q111, q12, q22, q23):
    data = {"runs": [{"method": "reverse", "T": T, "rss_above_baseline_mib": T / 100, "tracemalloc_peak_mib": T / 100,
                      "bytes_stored": 8000 * (T + 1), "wall_s": 0.01} for T in (250, 500)]
            + [{"method": "forward_pass", "T": T, "rss_above_baseline_mib": 0.1, "tracemalloc_peak_mib": 0.1,
                "bytes_stored": 0, "wall_s": 0.01} for T in (250, 500)],
            "slopes": {"reverse": {"rss": 1.01, "tracemalloc": 0.999, "time": 1.0},
                       "forward_pass": {"rss": 0.003, "tracemalloc": 0.0, "time": 1.0}}}
    path = tmp_path / "memory.json"
    path.write_text(json.dumps(data))
    q = hw2.q2_1_2(str(path))
    assert q["source"] == "memory.json"
    assert q["methods"]["reverse"]["slopes"]["rss"] == 1.01
    assert q["methods"]["reverse"]["T"] == [250, 500]
    res = dict(spec=hw2.DEFAULT_SPEC, quick=True, seconds={}, q1_1_1=q111, q1_2=q12, q2_1_1=hw2.q2_1_1(2),
               q2_1_2=q, q2_2=q22, q2_3=q23, q3_1=hw2.q3_1(), q3_2=hw2.q3_2(), q3_3=hw2.q3_3())
    md = hw2.render_markdown(res, hw2.machine_info(), hw2.FIGURES)
    section = md[md.index("## 2.1.2"):md.index("## 2.2")]
    assert "Source: the memory-scaling study, `memory.json`" in section
    assert "`reverse` rss 1.010 → O(t), tracemalloc 0.999 → O(t)" in section and "`forward_pass` rss 0.003 → O(1)" in section


# ------------------------------------------------------------------------------------ 2.2


def test_q2_2_eta_star_closed_form_hypergradient_and_convexity(q22):
    S = hw2.SIZES[True]
    rng = np.random.default_rng(0)
    n, d = S["lr_n"], S["lr_d"]
    X = rng.standard_normal((n, d))
    t = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    a = -t  # X w0 - t with w0 = 0
    q = X @ (X.T @ a)
    eta = n * (a @ q) / (2 * (q @ q))
    assert q22["eta_closed"] == pytest.approx(eta, rel=1e-12)
    assert q22["eta_tuned"] == pytest.approx(eta, rel=1e-8)
    assert q22["rel_diff"] < 1e-8
    # L1(eta) = (1/n) ||a - eta (2/n) X X^T a||^2 on the report's grid
    c = (2.0 / n) * q
    grid = np.array(q22["grid_eta"])
    L1 = np.array([np.sum((a - e * c) ** 2) / n for e in grid])
    assert np.allclose(q22["grid_L1"], L1, rtol=1e-12, atol=1e-12)
    quad = 4 * (q @ q) / n**3
    assert quad > 0 and q22["convex"]
    assert q22["analytic_quadratic"] == pytest.approx(quad, rel=1e-12)
    assert q22["fit_quadratic"] == pytest.approx(quad, rel=1e-8)
    assert abs(q22["hypergrad_at_eta_closed"]) < 1e-10 * max(1.0, q22["L0"])
    assert q22["L1_at_eta_closed"] == pytest.approx(np.sum((a - eta * c) ** 2) / n, rel=1e-12)


# ------------------------------------------------------------------------------------ 2.3


def _rmsprop_numpy(X, t, lr, steps, l2, wd, beta=0.9, eps=1e-8):
    n, d = X.shape
    w = np.zeros(d)
    v = np.zeros(d)
    for _ in range(steps):
        g = 2.0 / n * X.T @ (X @ w - t) + 2 * l2 * w
        v = beta * v + (1 - beta) * g * g
        w = (1 - wd) * w - lr * g / (np.sqrt(v) + eps)
    return w


def test_q2_3_weight_decay_equals_l2_under_gd_not_rmsprop(q23):
    gd, rms = q23["rows"]
    assert gd["name"] == "GD" and rms["name"] == "RMSProp"
    assert gd["weight_decay"] == pytest.approx(2 * gd["lr"] * gd["l2"], rel=1e-15)
    assert gd["max_traj_diff"] < 1e-12 and gd["final_diff"] < 1e-12
    rng = np.random.default_rng(q23["seed"])
    X = rng.standard_normal((q23["n"], q23["d"])) / math.sqrt(q23["d"])
    t = rng.standard_normal(q23["n"])
    a = _rmsprop_numpy(X, t, rms["lr"], rms["steps"], rms["l2"], 0.0)
    b = _rmsprop_numpy(X, t, rms["lr"], rms["steps"], 0.0, 2 * rms["lr"] * rms["l2"])
    assert rms["final_diff"] == pytest.approx(np.linalg.norm(a - b), rel=1e-8)
    assert rms["norm_l2"] == pytest.approx(np.linalg.norm(a), rel=1e-10)
    assert rms["final_diff"] > 0.01


# ------------------------------------------------------------------------------------ 3.1


def test_q3_1_matches_scipy_both_conventions():
    signal = pytest.importorskip("scipy.signal")
    q = hw2.q3_1()
    I = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], float)
    J = np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], float)
    assert np.array_equal(q["I"], I) and np.array_equal(q["J"], J)
    assert np.array_equal(q["convolve"], signal.convolve2d(I, J, mode="same"))
    assert np.array_equal(q["correlate"], signal.correlate2d(I, J, mode="same"))
    assert q["sign_flip"]
    h = np.zeros((8, 8))
    h[4:] = 1
    v = np.zeros((8, 8))
    v[:, 4:] = 1
    assert q["edges"]["horizontal"]["max_abs_convolve"] == np.abs(signal.convolve2d(h, J, mode="valid")).max() == 3
    assert q["edges"]["vertical"]["max_abs_convolve"] == np.abs(signal.convolve2d(v, J, mode="valid")).max() == 0
    assert q["edges"]["horizontal"]["correlate_sum"] == signal.correlate2d(h, J, mode="valid").sum()


# ------------------------------------------------------------------------------------ 3.2


def _counts(H, stages, k):
    """Neurons (input excluded) and parameters by arithmetic: ``stages`` x (k x k 'same' conv with
    one channel and a bias, then 2x2 pool stride 2), and the dense counterpart."""
    neurons = cnn = fcnn = 0
    for _ in range(stages):
        conv_units = H * H
        neurons += conv_units
        cnn += k * k + 1
        fcnn += conv_units * conv_units + conv_units  # (H*H inputs) x (H*H outputs) + biases
        H //= 2
        neurons += H * H
    return neurons, cnn, fcnn


@pytest.mark.parametrize("spec,H,stages,k", [(hw2.DEFAULT_SPEC, 32, 3, 3), ("in28x28x1 conv5 pool2 conv5 pool2", 28, 2, 5)])
def test_q3_2_counts_by_arithmetic(spec, H, stages, k):
    q = hw2.q3_2(spec)
    neurons, cnn, fcnn = _counts(H, stages, k)
    assert q["cnn"]["neurons"] == q["fcnn"]["neurons"] == neurons
    assert q["cnn"]["params"] == cnn
    assert q["fcnn"]["params"] == fcnn
    assert q["cnn"]["neurons_with_input"] == neurons + H * H
    if spec == hw2.DEFAULT_SPEC:
        assert (neurons, cnn, fcnn) == (1680, 30, 1119552)


# ------------------------------------------------------------------------------------ 3.3


def _rf_recurrence(spec):
    """r <- r + (k_eff - 1) j, j <- j s, over the tokens of a spec (written out for the test)."""
    r, j = 1, 1
    for tok in spec.split()[1:]:
        if tok.startswith("conv"):
            k = int(re.match(r"conv(\d+)", tok).group(1))
            rest = tok[len(f"conv{k}"):]
            s = int(m.group(1)) if (m := re.search(r"s(\d+)", rest)) else 1
            dil = int(m.group(1)) if (m := re.search(r"d(\d+)", rest)) else 1
            keff = dil * (k - 1) + 1
        else:
            keff = int(re.match(r"pool(\d+)", tok).group(1))
            s = int(m.group(1)) if (m := re.search(r"s(\d+)", tok[4 + len(str(keff)):])) else keff
        r += (keff - 1) * j
        j *= s
    return r, j


def test_q3_3_receptive_fields_by_recurrence():
    q = hw2.q3_3(hw2.DEFAULT_SPEC, 5)
    assert q["spec"] == "in32x32x1 conv5 pool2 conv5"
    assert q["rf"] == [14, 14] and q["empirical"] == [14, 14]
    assert _rf_recurrence(q["spec"]) == (14, 2)
    labels = " ".join(v["label"] for v in q["variants"])
    for word in ("stride", "dilation", "pool", "depth"):
        assert word in labels
    for v in q["variants"]:
        r, j = _rf_recurrence(v["spec"])
        assert v["rf"] == [r, r] and v["jump"] == [j, j], v
        assert v["empirical"] == v["rf"] and not v["clipped"], v
    assert len({v["rf"][0] for v in q["variants"]}) == len(q["variants"])  # each one changes it
    # the text's own figures with 3x3 filters: 3, 4 and 8
    assert [r[0] for r in q["text_check"]["rfs"]] == [3, 4, 8]


# ------------------------------------------------------------------------------------ CLI


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_cli_help_lists_hw2_and_its_options():
    top = subprocess.run([sys.executable, "-m", "kernels", "--help"], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert top.returncode == 0 and "hw2" in top.stdout
    sub = subprocess.run([sys.executable, "-m", "kernels", "hw2", "--help"], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert sub.returncode == 0
    for opt in ("--out", "--spec", "--quick"):
        assert opt in sub.stdout
    bad = subprocess.run([sys.executable, "-m", "kernels", "nope"], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_cli_hw2_end_to_end(tmp_path, q22, q23):
    """The command runs its two groups of sections in two processes (hw2._groups): the answers
    are the ones computed here, in this process, to the last bit."""
    out = tmp_path / "res"
    p = subprocess.run([sys.executable, "-m", "kernels", "hw2", "--out", str(out), "--quick"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("hw2_rmsprop.png", "hw2_graph.png", "hw2_lr.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (out / "hw2.md").read_text()
    res = json.loads((out / "hw2.json").read_text())
    assert re.search(r"commit `[0-9a-f]{40}|commit `unknown", md)
    assert res["meta"]["platform"] in md
    # the numbers the report prints are the computed ones
    assert f"{res['q2_2']['eta_closed']:.10g}" in md
    assert "**1,680**" in md and "**30**" in md and "**1,119,552**" in md
    assert "**14×14** analytically" in md and "**14×14** measured" in md
    assert "0.8, 0.4" in md and "0.666667, 0.666667" in md
    assert "digraph" in md and "```dot" in md
    for row in res["q3_1"]["convolve"]:
        assert " ".join(f"{int(x):>2}" for x in row) in md
    assert "O(t)" in md and "O(1)" in md
    assert "hw2_rmsprop.png" in md and "hw2_graph.png" in md and "hw2_lr.png" in md
    assert "in 2 process(es)" in p.stderr and all(f"{name} done" in p.stderr for group in hw2._groups(None) for name in group)
    assert res["q2_2"]["eta_closed"] == q22["eta_closed"]
    assert json.loads(json.dumps(q23, default=hw2._jsonable)) == res["q2_3"]


def test_groups_cover_every_section_once(tmp_path):
    """Either grouping (2.1.2 quoting a memory JSON, or measuring) runs each section exactly once,
    in two processes."""
    quoted = tmp_path / "memory.json"
    quoted.write_text("{}")
    every = sorted(hw2._sections(hw2.DEFAULT_SPEC, True, None))
    for memory_json in (None, str(tmp_path / "absent.json"), str(quoted)):
        groups = hw2._groups(memory_json)
        assert len(groups) == 2 and sorted(name for group in groups for name in group) == every
        measures = memory_json is None or memory_json.endswith("absent.json")
        assert not any("q2_1_2" in group and "q3_1" in group for group in groups)
        # measuring, 2.1.2 has a process of its own; quoting, it joins the optimizers'
        assert measures != any("q2_1_2" in group and "q1_1_1" in group for group in groups)


def test_missing_matplotlib_names_the_bench_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match=r"bench"):
        hw2._pyplot()
    with pytest.raises(SystemExit, match=r"bench"):  # the early check, before any section runs
        hw2.require_matplotlib()
    with pytest.raises(SystemExit, match=r"bench"):
        hw2.write_report(out="never-written")
