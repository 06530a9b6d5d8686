"""Tests for kernels.tune (issue 15): hypergradient descent on hyper-parameters in log space,
with a safeguard against divergence and a stopping rule of its own.

Oracles: a dense grid of the same validation objective (the unrolled loss, evaluated by
``kernels.hypergrad``'s plain forward pass ``method="exact"`` for GD and by ``kernels.rmsprop``
for RMSProp) and scikit-learn's ``Ridge`` for ``l2`` alone at large ``T``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import kernels
from kernels.hypergrad import hypergrad


def problem(seed=0, n=30, d=8, nv=20, noise=1.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    X = rng.standard_normal((n + nv, d))
    t = X @ w + noise * rng.standard_normal(n + nv)
    return X[:n], t[:n], X[n:], t[n:]


def val_error(X, t, Xv, tv, steps, optimizer="gd", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = hypergrad(X, t, steps=steps, X_val=Xv, t_val=tv, optimizer=optimizer,
                        method="exact" if optimizer == "gd" else "forward", **kw)
    return res.loss if not res.diverged else math.inf


def test_tune_gd_reaches_the_grid_optimum():
    X, t, Xv, tv = problem(1, n=12, d=20, noise=0.5)
    steps = 40
    res = kernels.tune(X, t, Xv, tv, steps=steps)
    crit = kernels.critical_lr(X)
    best = min(val_error(X, t, Xv, tv, steps, lr=lr, l2=l2)
               for lr in np.geomspace(1e-3 * crit, 0.999 * crit, 30) for l2 in np.geomspace(1e-5, 10, 30))
    assert res.objective <= best * 1.01
    # the returned objective is the one at the returned point, not extrapolated
    assert res.objective == pytest.approx(val_error(X, t, Xv, tv, steps, lr=res.lr, l2=res.l2), rel=1e-9)
    assert set(res.hyper) == {"lr", "l2"} and res.hyper["lr"] == res.lr and res.hyper["l2"] == res.l2
    assert res.inner_runs == len(res.objective_history) == len(res.history["lr"]) == len(res.accepted)
    assert res.stopped in ("converged", "stalled", "stationary") and res.inner_runs < 100
    assert res.seconds > 0 and np.all(np.diff(res.seconds_history) >= 0)
    # accepted objectives decrease
    acc = res.objective_history[res.accepted]
    assert np.all(np.diff(acc) < 0)


def test_tune_rmsprop_lowers_the_validation_error():
    X, t, Xv, tv = problem(2)
    res = kernels.tune(X, t, Xv, tv, optimizer="rmsprop", steps=30, hyper=("lr", "l2", "beta"))
    assert res.objective < res.objective_history[0]
    assert set(res.hyper) == {"lr", "l2", "beta"} and 0.0 < res.hyper["beta"] < 1.0
    r = kernels.rmsprop(X, t, lr=res.lr, l2=res.l2, beta=res.hyper["beta"], steps=30)
    assert res.objective == pytest.approx(float(np.mean((Xv @ r.w - tv) ** 2)), rel=1e-10)


def test_tune_safeguard_recovers_from_a_diverging_start():
    X, t, Xv, tv = problem(3)
    crit = kernels.critical_lr(X)
    res = kernels.tune(X, t, Xv, tv, steps=50, init={"lr": 30 * crit, "l2": 1e-3})
    assert math.isinf(res.objective_history[0]) and not res.accepted[0]
    assert math.isfinite(res.objective) and res.lr < crit


def test_tune_safeguard_steps_back_when_a_step_diverges():
    # from just below the critical lr the first hypergradient step (towards larger lr) diverges:
    # the step is taken back (rejected, inf recorded) and the search goes on from the best point
    X, t, Xv, tv = problem(4, n=40, d=5, noise=0.1)
    crit = kernels.critical_lr(X)
    res = kernels.tune(X, t, Xv, tv, steps=5, hyper=("lr",), init={"lr": 0.6 * crit})
    assert np.any(np.isinf(res.objective_history[1:]))
    assert math.isfinite(res.objective) and res.lr < 2 * crit
    assert res.objective <= res.objective_history[0]


def test_tune_fixed_values_and_one_name():
    X, t, Xv, tv = problem(5)
    res = kernels.tune(X, t, Xv, tv, steps=20, hyper="l2", lr=0.01, init={"l2": 0.1})
    assert res.lr == 0.01 and set(res.hyper) == {"l2"} and np.all(res.history["l2"] > 0)
    res = kernels.tune(X, t, Xv, tv, steps=20, hyper=("lr",), l2=0.2, meta_steps=5)
    assert res.l2 == 0.2 and res.inner_runs <= 5


def test_tune_l2_alone_matches_ridge_at_large_T():
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, t, Xv, tv = problem(6, n=40, d=10, noise=2.0)
    lr = 0.5 * kernels.critical_lr(X)
    res = kernels.tune(X, t, Xv, tv, steps=100_000, hyper=("l2",), lr=lr, method="exact", init={"l2": 1e-2})
    l2s = np.geomspace(1e-5, 10, 400)
    vals = [np.mean((Xv @ sklearn.Ridge(alpha=X.shape[0] * l2, fit_intercept=False).fit(X, t).coef_ - tv) ** 2)
            for l2 in l2s]
    i = int(np.argmin(vals))
    assert abs(math.log10(res.l2 / l2s[i])) <= math.log10(l2s[1] / l2s[0])


def test_tune_validation_errors():
    X, t, Xv, tv = problem(7)
    with pytest.raises(ValueError, match="hyper: 'beta' is not a hyper-parameter of optimizer='gd'"):
        kernels.tune(X, t, Xv, tv, steps=5, hyper=("lr", "beta"))
    with pytest.raises(ValueError, match="init"):
        kernels.tune(X, t, Xv, tv, steps=5, hyper=("lr",), init={"l2": 0.1}, l2=0.1)
    with pytest.raises(ValueError, match="init\\['l2'\\] must be > 0"):
        kernels.tune(X, t, Xv, tv, steps=5, init={"l2": 0.0})
    with pytest.raises(ValueError, match="lr is neither tuned"):
        kernels.tune(X, t, Xv, tv, steps=5, hyper=("l2",))
    with pytest.raises(ValueError, match="X_val"):
        kernels.tune(X, t, None, None, steps=5)
    with pytest.raises(ValueError, match="optimizer"):
        kernels.tune(X, t, Xv, tv, steps=5, optimizer="adagrad")
    with pytest.raises(TypeError, match="steps"):
        kernels.tune(X, t, Xv, tv, steps=2.5)
    with pytest.raises(ValueError, match="diverges at the fixed lr"):
        kernels.tune(X, t, Xv, tv, steps=200, hyper=("l2",), lr=100 * kernels.critical_lr(X))


def test_tune_bounds_keep_the_search_in_the_box():
    X, t, Xv, tv = problem(8)
    res = kernels.tune(X, t, Xv, tv, optimizer="rmsprop", steps=10, bounds={"lr": (1e-4, 1e-2), "l2": (1e-3, 1.0)})
    assert np.all(res.history["lr"] >= 1e-4 * (1 - 1e-12)) and np.all(res.history["lr"] <= 1e-2 * (1 + 1e-12))
    assert np.all(res.history["l2"] >= 1e-3 * (1 - 1e-12)) and np.all(res.history["l2"] <= 1.0 + 1e-12)
    with pytest.raises(ValueError, match="bounds"):
        kernels.tune(X, t, Xv, tv, steps=5, bounds={"lr": (1.0, 0.1)})


def test_tune_command_quick(tmp_path):
    # `python -m kernels tune --quick`: every contender runs and the report is written
    pytest.importorskip("sklearn", reason="the diabetes data ship with scikit-learn")
    pytest.importorskip("matplotlib")
    from kernels.apps import tune as app

    assert app.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "tune.md").read_text()
    assert (tmp_path / "tune.png").stat().st_size > 0
    for key in ("diabetes/gd", "diabetes/rmsprop", "synthetic/gd", "synthetic/rmsprop"):
        assert f"| {key} | hypergrad" in text and f"| {key} | grid" in text
    assert "ridge grid" in text and "Question 2.3" in text
    import json

    data = json.loads((tmp_path / "tune.json").read_text())
    for q in data["q23"].values():  # question 2.3.2: under GD the two hypergradients are one
        assert abs(q["gd"]["ratio"] - 1.0) < 1e-8
    for r in data["ridge"].values():
        assert r["match"]
