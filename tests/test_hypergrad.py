"""Tests for kernels.hypergrad: hypergradients through unrolled gradient descent (issue 4).

Oracles: the naive NumPy reverse pass (and its textbook forward mode), central finite
differences of the naive forward loss, PyTorch autograd through the same unrolled loop in
float64, closed forms (question 2.2.3), and hypothesis properties over random shapes.

Tolerances: ``d_lr`` and ``d_l2`` are sums of ``T`` terms of both signs, so their rounding
error is relative to the size of the terms, not of the sum; comparisons use ``rtol`` against
``max(|reference|, floor)`` with a floor of 1e-6 (values are O(1) on these problems).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import kernels
from kernels import naive
from kernels.hypergrad import METHODS, critical_lr, hypergrad, optimal_lr_one_step, tune_lr, unroll_graph, unrolled_loss

ROOT = Path(__file__).resolve().parents[1]


def close(a, b, rtol, floor=1e-6):
    return abs(a - b) <= rtol * max(abs(b), floor)


def lam_max(X, l2):
    """lambda_max(H) from a dense eigendecomposition of H, independent of the library."""
    n, d = X.shape
    H = (2.0 / n) * X.T.astype(np.float64) @ X.astype(np.float64) + 2.0 * l2 * np.eye(d)
    return float(np.linalg.eigvalsh(H)[-1])


def problem(seed, n, d, *, l2=0.0, val=False, w0=False, frac=0.3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    t = rng.standard_normal(n)
    kw = dict(lr=frac * 2.0 / lam_max(X, l2), l2=l2)
    if w0:
        kw["w0"] = 0.5 * rng.standard_normal(d)
    if val:
        kw["X_val"] = rng.standard_normal((4, d))
        kw["t_val"] = rng.standard_normal(4)
    return X, t, kw


# d > n and d < n, with and without l2, with and without a validation set and w0.
CASES = {
    "wide": (6, 11, dict(l2=0.0)),
    "wide_l2_val": (6, 11, dict(l2=0.05, val=True)),
    "tall_l2": (13, 5, dict(l2=0.1, w0=True)),
    "tall_val_w0": (13, 5, dict(l2=0.0, val=True, w0=True)),
    "square_all": (8, 8, dict(l2=0.02, val=True, w0=True)),
}
STEPS = 17


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    n, d, opts = CASES[request.param]
    X, t, kw = problem(sum(map(ord, request.param)), n, d, **opts)
    ref = naive.hypergrad(X, t, steps=STEPS, **kw)
    return X, t, kw, ref


# --- the naive reference -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_hypergrad_matches_naive_reference(case, method):
    X, t, kw, ref = case
    res = hypergrad(X, t, steps=STEPS, method=method, **kw)
    assert not res.diverged and res.diverged_at == -1
    assert res.method == method and res.steps == STEPS
    assert close(res.loss, ref.loss, 1e-12)
    assert close(res.d_lr, ref.d_lr, 1e-11)
    assert close(res.d_l2, ref.d_l2, 1e-11)
    np.testing.assert_allclose(res.w, ref.w, rtol=1e-12, atol=1e-13)
    assert res.w.dtype == np.float64


def test_naive_forward_mode_matches_naive_reverse(case):
    X, t, kw, ref = case
    fwd = naive.hypergrad(X, t, steps=STEPS, method="forward", **kw)
    assert close(fwd.d_lr, ref.d_lr, 1e-11) and close(fwd.d_l2, ref.d_l2, 1e-11)


# --- independent oracles: finite differences and PyTorch -----------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_hypergrad_matches_central_finite_differences(case, method):
    X, t, kw, _ = case
    res = hypergrad(X, t, steps=STEPS, method=method, **kw)
    for name, d in (("lr", res.d_lr), ("l2", res.d_l2)):
        h = 1e-5 * (kw["lr"] if name == "lr" else max(kw["l2"], 0.01))
        plus, minus = dict(kw), dict(kw)
        plus[name] = kw[name] + h
        minus[name] = kw[name] - h
        if name == "l2" and kw["l2"] == 0.0:  # one-sided at the boundary l2 >= 0 (second order)
            minus[name] = 0.0
            p2 = dict(kw, l2=2 * h)
            f0 = naive.unrolled_loss(X, t, steps=STEPS, **kw).loss
            f1 = naive.unrolled_loss(X, t, steps=STEPS, **plus).loss
            f2 = naive.unrolled_loss(X, t, steps=STEPS, **p2).loss
            fd = (-3 * f0 + 4 * f1 - f2) / (2 * h)
        else:
            fd = (naive.unrolled_loss(X, t, steps=STEPS, **plus).loss
                  - naive.unrolled_loss(X, t, steps=STEPS, **minus).loss) / (2 * h)
        assert close(d, fd, 1e-6, floor=1e-3), (name, d, fd)


@pytest.mark.parametrize("method", METHODS)
def test_hypergrad_matches_torch_autograd(case, method):
    pytest.importorskip("torch", reason="torch is the independent autograd oracle")
    from kernels import peers

    X, t, kw, _ = case
    ref = peers.hypergrad_torch(X, t, steps=STEPS, **kw)
    res = hypergrad(X, t, steps=STEPS, method=method, **kw)
    assert close(res.loss, ref.loss, 1e-12)
    assert close(res.d_lr, ref.d_lr, 1e-10)
    assert close(res.d_l2, ref.d_l2, 1e-10)


def test_jax_peer_matches_torch_peer():
    pytest.importorskip("jax", reason="jax peer")
    from kernels import peers

    X, t, kw = problem(3, 6, 9, l2=0.05, val=True, w0=True)
    a = peers.hypergrad_jax(X, t, steps=11, **kw)
    b = peers.hypergrad_torch(X, t, steps=11, **kw)
    assert close(a.loss, b.loss, 1e-12) and close(a.d_lr, b.d_lr, 1e-10) and close(a.d_l2, b.d_l2, 1e-10)


def test_four_methods_agree_long_horizon():
    # 400 steps, most of the way to convergence: the four methods agree to 1e-9 (issue 4). As w_T
    # converges d_lr -> 0 while its terms do not, so values are compared relative to a floor of
    # 1e-4 (rounding noise of the T terms is ~1e-14 absolute here).
    for n, d, opts in ((5, 12, dict(l2=0.01)), (14, 6, dict(l2=0.0, val=True)), (9, 9, dict(l2=0.2, w0=True))):
        X, t, kw = problem(7, n, d, frac=0.2, **opts)
        res = [hypergrad(X, t, steps=400, method=m, **kw) for m in METHODS]
        for r in res[1:]:
            assert close(r.loss, res[0].loss, 1e-9)
            assert close(r.d_lr, res[0].d_lr, 1e-9, floor=1e-4), (r.method, r.d_lr, res[0].d_lr)
            assert close(r.d_l2, res[0].d_l2, 1e-9, floor=1e-4), (r.method, r.d_l2, res[0].d_l2)


def test_exact_at_long_horizon_matches_forward_mode():
    X, t, kw = problem(11, 5, 8, l2=1e-3, w0=True, frac=0.2)
    a = hypergrad(X, t, steps=100_000, method="exact", **kw)
    b = hypergrad(X, t, steps=100_000, method="forward", **kw)
    assert close(a.loss, b.loss, 1e-9) and close(a.d_lr, b.d_lr, 1e-9, floor=1e-9) and close(a.d_l2, b.d_l2, 1e-9)


def test_exact_small_step_series_branch_matches_reference():
    # lr * mu * T << 1 for every eigenvalue: S_1 comes from the binomial series.
    X, t, kw = problem(12, 6, 10, l2=0.3, w0=True, frac=1e-6)
    ref = naive.hypergrad(X, t, steps=40, **kw)
    res = hypergrad(X, t, steps=40, method="exact", **kw)
    assert close(res.d_lr, ref.d_lr, 1e-10) and close(res.d_l2, ref.d_l2, 1e-9, floor=1e-12)


@pytest.mark.parametrize("checkpoints", [1, 2, 3, 5, 16, 17])
def test_checkpoint_schedules_match_reverse(case, checkpoints):
    X, t, kw, ref = case
    res = hypergrad(X, t, steps=STEPS, method="checkpoint", checkpoints=checkpoints, **kw)
    assert close(res.d_lr, ref.d_lr, 1e-11) and close(res.d_l2, ref.d_l2, 1e-11)
    assert res.bytes_stored == checkpoints * X.shape[1] * 8  # the revolve snapshots, exactly


def _simulate_plan(T, k):
    """Run a revolve plan on integer 'states' (the step index): every reverse step must see
    w_k for k = T-1 ... 0 in order, within k slots; returns (total advances, max per step)."""
    from kernels.hypergrad import _revolve_plan

    snaps, w, revs, count = {0: 0}, None, [], [0] * T
    for kind, src, n, dst in _revolve_plan(T, k):
        if kind == 0:
            assert src in snaps
            for q in range(snaps[src], snaps[src] + n):
                count[q] += 1
            if dst >= 0:
                assert 0 < dst < k
                snaps[dst] = snaps[src] + n
            else:
                w = snaps[src] + n
        else:
            revs.append(snaps[src] if src >= 0 else w)
    assert revs == list(range(T - 1, -1, -1))
    return sum(count), max(count)


@pytest.mark.parametrize("T,k", [(1, 1), (7, 1), (17, 2), (17, 5), (100, 3), (1000, 2), (1000, 32), (1000, 63), (5000, 5)])
def test_revolve_plan_is_the_binomial_optimum(T, k):
    from kernels.hypergrad import _binomial_reps

    total, most = _simulate_plan(T, k)
    r = _binomial_reps(k, T)
    assert math.comb(k + r, k) >= T and (r == 0 or math.comb(k + r - 1, k) < T)
    assert most == r  # no step recomputed more than r times
    # Griewank & Walther's minimal number of recomputed steps: r T - C(k + r, k + 1)
    assert total == r * T - math.comb(k + r, k + 1)


# --- layout and dtype ------------------------------------------------------------------------


def test_float32_inputs_are_upcast_to_float64():
    X, t, kw = problem(5, 7, 9, l2=0.05, w0=True)
    X32, t32, w32 = X.astype(np.float32), t.astype(np.float32), kw["w0"].astype(np.float32)
    kw64 = dict(kw, w0=w32.astype(np.float64))
    for m in METHODS:
        a = hypergrad(X32, t32, steps=9, method=m, **dict(kw, w0=w32))
        b = hypergrad(X32.astype(np.float64), t32.astype(np.float64), steps=9, method=m, **kw64)
        assert a.w.dtype == np.float64
        assert a.loss == b.loss and a.d_lr == b.d_lr and a.d_l2 == b.d_l2


def test_non_contiguous_inputs():
    X, t, kw = problem(6, 9, 7, l2=0.05)
    Xf = np.asfortranarray(X)
    t2 = np.repeat(t, 2)[::2]
    for m in METHODS:
        a = hypergrad(Xf, t2, steps=9, method=m, **kw)
        b = hypergrad(X, t, steps=9, method=m, **kw)
        assert a.d_lr == b.d_lr and a.d_l2 == b.d_l2


# --- memory accounting ---------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 7, 16, 17, 100, 1000])
def test_bytes_stored(T):
    X, t, kw = problem(8, 4, 6)
    d = 6
    assert hypergrad(X, t, steps=T, method="reverse", **kw).bytes_stored == (T + 1) * d * 8
    assert hypergrad(X, t, steps=T, method="forward", **kw).bytes_stored == 2 * d * 8
    ck = hypergrad(X, t, steps=T, method="checkpoint", **kw).bytes_stored
    S = math.isqrt(T - 1) + 1
    assert S == math.ceil(math.sqrt(T))
    assert ck == (-(-T // S) + S - 1) * d * 8
    assert ck <= (2 * math.sqrt(T) + 1) * d * 8
    assert unrolled_loss(X, t, steps=T, **kw).bytes_stored == 0


# --- question 2.2.3 and 2.2.2 --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 11), (13, 5)])
def test_optimal_lr_one_step_closed_form(shape):
    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape)
    t = rng.standard_normal(shape[0])
    w0 = rng.standard_normal(shape[1])
    n = shape[0]
    K = X @ X.T
    a = X @ w0 - t
    eta = n * (a @ K @ a) / (2 * np.sum((K @ a) ** 2))
    got = optimal_lr_one_step(X, t, w0)
    assert close(got, eta, 1e-12)
    assert close(naive.optimal_lr_one_step(X, t, w0), eta, 1e-12)
    scale = abs(hypergrad(X, t, lr=0.5 * got, steps=1, w0=w0).d_lr)
    for m in METHODS:
        assert abs(hypergrad(X, t, lr=got, steps=1, w0=w0, method=m).d_lr) <= 1e-10 * max(1.0, scale)
    # L_1(eta) is convex (question 2.2.2): exact quadratic coefficient (1/n)(2/n)^2 ||X X^T a||^2 > 0,
    # and positive second differences of the computed loss on a grid.
    assert (1 / n) * (2 / n) ** 2 * np.sum((K @ a) ** 2) > 0
    grid = np.linspace(0.1, 1.9, 15) * got  # L_1(2 eta*) = L_1(0): the whole parabola below L_0
    L = np.array([unrolled_loss(X, t, lr=e, steps=1, w0=w0).loss for e in grid])
    assert np.all(L[:-2] - 2 * L[1:-1] + L[2:] > 0)
    assert np.argmin(L) in (np.abs(grid - got).argmin(), np.abs(grid - got).argmin() - 1, np.abs(grid - got).argmin() + 1)


@pytest.mark.parametrize("s", [1e-100, 1e-80, 1e-50, 1e-20, 1.0, 1e20, 1e50, 1e80])
def test_optimal_lr_one_step_at_extreme_scales(s):
    # eta*(s X, t, w0 / s) = eta*(X, t, w0) / s^2 (the residual a is unchanged), and eta* does
    # not depend on the scale r of (t, w0); unscaled, ||X X^T a||^2 ~ s^4 leaves float64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3))
    t = rng.standard_normal(4)
    w0 = rng.standard_normal(3)
    for w in (None, w0):
        base = optimal_lr_one_step(X, t, w)
        for r in (1e-150, 1.0, 1e100):
            ws = None if w is None else w * r / s
            assert close(optimal_lr_one_step(X * s, t * r, ws), base / s / s, 1e-12, floor=0.0), (s, r)
            assert close(naive.optimal_lr_one_step(X * s, t * r, ws), base / s / s, 1e-12, floor=0.0), (s, r)
    if s <= 1e-50:
        # t = 0 and X w0 ~ 1e-320 (subnormal: the products X_ij w0_j alone would lose the digits)
        base = optimal_lr_one_step(X, 0 * t, w0)
        assert close(optimal_lr_one_step(X * s, 0 * t, w0 * (1e-320 / s)), base / s / s, 1e-12, floor=0.0)


def test_optimal_lr_one_step_that_overflows_is_an_error_naming_x():
    with pytest.raises(ValueError, match=r"X is too small: the optimal learning rate overflows"):
        optimal_lr_one_step(np.full((2, 1), 1e-160), np.ones(2))


def test_optimal_lr_one_step_zero_gradient_is_an_error():
    X = np.eye(3)
    t = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="gradient"):
        optimal_lr_one_step(X, t, w0=t.copy())
    with pytest.raises(ValueError, match="gradient"):
        optimal_lr_one_step(X * 1e-150, t * 1e-300, w0=t * 1e-150)


# --- tune_lr --------------------------------------------------------------------------------


def test_tune_lr_lowers_objective_from_a_too_small_lr():
    X, t, kw = problem(21, 12, 6, l2=0.01, frac=0.5)
    lr0 = kw["lr"] / 10
    res = tune_lr(X, t, lr0=lr0, l2=0.01, steps=20, meta_steps=30, meta_lr=10.0)
    good = unrolled_loss(X, t, steps=20, **kw).loss
    h = res.objective_history
    assert h[-1] < h[0] - 0.9 * (h[0] - good)  # recovers 90% of the gap to the 10x larger lr
    assert np.all(np.diff(h) < 0)
    assert res.lr > 5 * lr0
    assert len(res.lr_history) == len(res.objective_history) == 30
    assert res.lr_history[0] == lr0


@pytest.mark.parametrize("method", ["reverse", "forward", "exact"])
def test_tune_lr_one_step_converges_to_eta_star(method):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 10))
    t = rng.standard_normal(7)
    n = 7
    eta = optimal_lr_one_step(X, t)
    g0 = (2 / n) * X.T @ (-t)
    curv = (2 / n) * np.sum((X @ g0) ** 2)  # L_1''(eta)
    res = tune_lr(X, t, lr0=eta / 3, steps=1, meta_steps=60, meta_lr=0.5 / (eta**2 * curv), method=method)
    assert close(res.lr, eta, 1e-8)


def test_tune_lr_and_l2_on_validation_lowers_validation_error():
    X, t, kw = problem(22, 10, 14, l2=0.5, val=True, frac=0.2)
    res = tune_lr(X, t, lr0=kw["lr"], l2=0.5, steps=15, meta_steps=25, meta_lr=0.5, X_val=kw["X_val"],
                  t_val=kw["t_val"], tune_l2=True)
    assert res.objective_history[-1] < res.objective_history[0]
    assert not np.all(res.l2_history == 0.5)


def test_tune_lr_backs_off_after_divergence():
    X, t, kw = problem(23, 8, 5, frac=3.0)
    res = tune_lr(X, t, lr0=kw["lr"], steps=200, meta_steps=6, meta_lr=0.1)
    assert np.isinf(res.objective_history[0])
    assert res.lr_history[1] == pytest.approx(kw["lr"] / 2)
    assert np.isfinite(res.objective_history[-1])


# --- divergence ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_divergence_is_reported_not_silent(method):
    X, t, kw = problem(31, 6, 9, l2=0.01, w0=True, frac=1.1)
    crit = 2.0 / lam_max(X, 0.01)
    ref = naive.hypergrad(X, t, steps=300, **kw)
    with pytest.warns(RuntimeWarning, match="critical learning rate"):
        res = hypergrad(X, t, steps=300, method=method, **kw)
    assert res.diverged and 1 <= res.diverged_at <= 300
    assert abs(res.diverged_at - ref.diverged_at) <= 1
    assert res.loss == math.inf and math.isnan(res.d_lr) and math.isnan(res.d_l2)
    assert close(res.lr_critical, crit, 1e-10)
    with pytest.warns(RuntimeWarning):
        assert unrolled_loss(X, t, steps=300, **kw).diverged


def test_divergence_overflow_is_reported():
    X, t, kw = problem(32, 6, 9, frac=50.0)
    for m in METHODS:
        with pytest.warns(RuntimeWarning):
            res = hypergrad(X, t, steps=5000, method=m, **kw)
        assert res.diverged and res.diverged_at < 100


def test_stable_lr_close_to_critical_does_not_diverge():
    X, t, kw = problem(33, 6, 9, l2=0.01, frac=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in METHODS:
            res = hypergrad(X, t, steps=500, method=m, **kw)
            assert not res.diverged and math.isfinite(res.d_lr) and math.isfinite(res.d_l2)


def test_critical_lr_matches_eigenvalues():
    X, t, kw = problem(34, 7, 4, l2=0.3)
    assert close(critical_lr(X, 0.3), 2 / lam_max(X, 0.3), 1e-12)
    assert critical_lr(np.zeros((3, 2))) == math.inf


@pytest.mark.parametrize("c,n", [(1e-150, 3), (1e-100, 3), (1e-50, 1000), (1.0, 3), (1e50, 3), (1e100, 1000),
                                 (1e150, 3), (1e153, 1000), (1e154, 4), (1.3e154, 1), (7.5e-155, 2)])
def test_critical_lr_at_extreme_scales_matches_closed_form(c, n):
    # X = c ones((n, 1)): H = (2/n) n c^2 = 2 c^2, so 2 / lambda_max = 1 / c^2, representable
    # although 2 c^2 overflows for c = 1e154 and c^2 is subnormal for c = 7.5e-155
    expect = 1.0 / c / c
    assert close(critical_lr(np.full((n, 1), c)), expect, 1e-13, floor=0.0)
    # with l2 = c^2: H = 4 c^2
    if c * c > 1e-300:
        assert close(critical_lr(np.full((n, 1), c), c * c), expect / 2, 1e-13, floor=0.0)
    # X = c diag(1, 2, 3): H = (2/3) diag(1, 4, 9) c^2, lambda_max = 6 c^2
    if c < 1e154:
        assert close(critical_lr(c * np.diag([1.0, 2.0, 3.0])), expect / 3, 1e-13, floor=0.0)


def test_critical_lr_is_inf_past_the_float64_range():
    assert critical_lr(np.full((2, 1), 1e-160)) == math.inf  # 1 / c^2 = 1e320
    assert close(critical_lr(np.full((2, 1), 1e-160), 1e-300), 1e300, 1e-15)


# --- properties over random problems -------------------------------------------------------


@given(
    n=st.integers(1, 9), d=st.integers(1, 9), T=st.integers(1, 25),
    l2=st.sampled_from([0.0, 0.01, 0.3]), frac=st.floats(0.05, 0.9), val=st.booleans(),
    seed=st.integers(0, 2**16), k=st.integers(1, 25),
)
def test_property_all_methods_match_reference(n, d, T, l2, frac, val, seed, k):
    X, t, kw = problem(seed, n, d, l2=l2, val=val, w0=seed % 2 == 0, frac=frac)
    ref = naive.hypergrad(X, t, steps=T, **kw)
    for m in METHODS:
        res = hypergrad(X, t, steps=T, method=m, checkpoints=min(k, T) if m == "checkpoint" else None, **kw)
        assert not res.diverged
        assert close(res.loss, ref.loss, 1e-10)
        assert close(res.d_lr, ref.d_lr, 1e-9), (m, res.d_lr, ref.d_lr)
        assert close(res.d_l2, ref.d_l2, 1e-9), (m, res.d_l2, ref.d_l2)


@given(T=st.integers(1, 3000), d=st.integers(1, 50))
def test_property_checkpoint_memory_is_about_two_sqrt_T(T, d):
    from kernels.hypergrad import _segments

    S, J = _segments(T, None)
    assert S * J >= T and (J - 1) * S < T
    assert J + S - 1 <= 2 * math.sqrt(T) + 1


# --- validation ----------------------------------------------------------------------------


def test_validation_errors():
    X, t, kw = problem(41, 5, 4)
    ok = dict(lr=0.01, steps=3)
    with pytest.raises(TypeError, match="X"):
        hypergrad(X.astype(int), t, **ok)
    with pytest.raises(TypeError, match="t"):
        hypergrad(X, t.astype(np.float32), **ok)
    with pytest.raises(ValueError, match="X"):
        hypergrad(X[0], t, **ok)
    with pytest.raises(ValueError, match="t must have length"):
        hypergrad(X, t[:3], **ok)
    with pytest.raises(ValueError, match="w0"):
        hypergrad(X, t, w0=np.zeros(5), **ok)
    with pytest.raises(ValueError, match="lr"):
        hypergrad(X, t, lr=0.0, steps=3)
    with pytest.raises(ValueError, match="lr"):
        hypergrad(X, t, lr=float("nan"), steps=3)
    with pytest.raises(TypeError, match="lr"):
        hypergrad(X, t, lr="0.1", steps=3)
    with pytest.raises(ValueError, match="l2"):
        hypergrad(X, t, l2=-1.0, **ok)
    with pytest.raises(ValueError, match="steps"):
        hypergrad(X, t, lr=0.01, steps=0)
    with pytest.raises(TypeError, match="steps"):
        hypergrad(X, t, lr=0.01, steps=2.0)
    with pytest.raises(ValueError, match="method"):
        hypergrad(X, t, method="adjoint", **ok)
    with pytest.raises(TypeError, match="method"):
        hypergrad(X, t, method=None, **ok)
    with pytest.raises(ValueError, match="checkpoints"):
        hypergrad(X, t, method="reverse", checkpoints=2, **ok)
    with pytest.raises(ValueError, match="checkpoints"):
        hypergrad(X, t, method="checkpoint", checkpoints=4, **ok)
    with pytest.raises(TypeError, match="checkpoints"):
        hypergrad(X, t, method="checkpoint", checkpoints=1.5, **ok)
    with pytest.raises(ValueError, match="X_val and t_val"):
        hypergrad(X, t, X_val=X, **ok)
    with pytest.raises(ValueError, match="X_val"):
        hypergrad(X, t, X_val=np.zeros((2, 3)), t_val=np.zeros(2), **ok)
    with pytest.raises(ValueError, match="t_val"):
        hypergrad(X, t, X_val=np.zeros((2, 4)), t_val=np.zeros(3), **ok)
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="X must contain only finite"):
        hypergrad(bad, t, **ok)
    with pytest.raises(ValueError, match="steps"):
        unroll_graph(0)
    with pytest.raises(ValueError, match="lr0"):
        tune_lr(X, t, lr0=-1.0, steps=2, meta_steps=2, meta_lr=0.1)
    with pytest.raises(ValueError, match="l2"):
        tune_lr(X, t, lr0=0.1, steps=2, meta_steps=2, meta_lr=0.1, tune_l2=True)
    with pytest.raises(TypeError, match="meta_steps"):
        tune_lr(X, t, lr0=0.1, steps=2, meta_steps=None, meta_lr=0.1)
    with pytest.raises(TypeError, match="X"):
        optimal_lr_one_step([[1, 2]], [1.0])


def test_public_api_is_exported():
    for name in ("hypergrad", "optimal_lr_one_step", "tune_lr", "unroll_graph"):
        assert callable(getattr(kernels, name))
    # kernels.hypergrad is the module (no shadowing), and calling it calls the function hypergrad
    assert kernels.hypergrad is sys.modules["kernels.hypergrad"] and callable(kernels.hypergrad)
    X, t = np.random.default_rng(0).standard_normal((6, 3)), np.ones(6)
    got, want = kernels.hypergrad(X, t, lr=0.01, l2=0.1, steps=3), hypergrad(X, t, lr=0.01, l2=0.1, steps=3)
    assert (got.loss, got.d_lr, got.d_l2) == (want.loss, want.d_lr, want.d_l2) and np.array_equal(got.w, want.w)
    # the module pickles by name, like any module (a closure calling it can go to another process)
    import pickle

    assert pickle.loads(pickle.dumps(kernels.hypergrad)) is kernels.hypergrad


# --- question 2.1.1 ------------------------------------------------------------------------


def test_unroll_graph_two_steps():
    dot = unroll_graph(steps=2)
    assert dot.startswith("digraph")
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    nodes = {a for e in edges for a in e}
    assert nodes == {"w0", "grad L0", "L0", "w1", "grad L1", "L1", "w2", "L2", "lambda~", "eta"}
    expected = {
        ("w0", "L0"), ("lambda~", "L0"), ("w0", "grad L0"), ("lambda~", "grad L0"),
        ("w0", "w1"), ("grad L0", "w1"), ("eta", "w1"),
        ("w1", "L1"), ("lambda~", "L1"), ("w1", "grad L1"), ("lambda~", "grad L1"),
        ("w1", "w2"), ("grad L1", "w2"), ("eta", "w2"),
        ("w2", "L2"), ("lambda~", "L2"),
    }
    assert edges == expected
    assert len(re.findall(r"->", unroll_graph(steps=5))) == 5 * 7 + 2


# --- the memory-scaling script -------------------------------------------------------------


def _memory_scaling_quick(workdir):
    """The memory study's smoke run, in a subprocess started in the background (tests/conftest.py)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return {"study": dict(argv=[sys.executable, str(ROOT / "bench" / "memory_scaling.py"), "--quick", "--out",
                                str(workdir / "memory.json")], cwd=ROOT, env=env, timeout=600)}


@pytest.mark.background(start=_memory_scaling_quick)
def test_memory_scaling_script_quick(background):
    rc, _, err = background["study"].result()
    assert rc == 0, err[-3000:]
    data = json.loads((background.workdir / "memory.json").read_text())
    assert set(data) >= {"generated", "d", "n", "T", "runs", "slopes", "bars"}
    keys = {"method", "T", "rss_baseline_mib", "rss_peak_mib", "rss_above_baseline_mib", "tracemalloc_peak_mib",
            "bytes_stored", "wall_s"}
    assert data["runs"] and all(set(r) >= keys for r in data["runs"])
    rev = sorted((r["T"], r["bytes_stored"]) for r in data["runs"] if r["method"] == "reverse")
    assert len(rev) >= 2
    for T, b in rev:
        assert b == (T + 1) * data["d"] * 8
    for m in ("reverse", "checkpoint", "forward", "forward_pass"):
        assert set(data["slopes"][m]) == {"rss", "tracemalloc", "time"}
    for bar in data["bars"]:
        assert set(bar) - {"issue"} == {"text", "method", "metric", "value", "target", "pass"}
    for m in ("rmsprop_reverse", "rmsprop_checkpoint", "rmsprop_forward"):  # issue 15
        assert set(data["slopes"][m]) == {"rss", "tracemalloc", "time"}
    rms = sorted((r["T"], r["bytes_stored"]) for r in data["runs"] if r["method"] == "rmsprop_reverse")
    for T, b in rms:
        assert b == (3 * T + 1) * data["d"] * 8


def test_catalog_implementations_agree():
    from kernels import peers
    from kernels.catalog import implementations

    X, t, kw = problem(51, 7, 10, l2=0.05, val=True, w0=True)
    ref = naive.hypergrad(X, t, steps=9, **kw)
    for name, f in implementations("hypergrad").items():
        try:
            res = f(X, t, steps=9, **kw)
        except peers.PeerUnavailable:
            continue  # a missing peer library; its own test reports the skip
        assert close(res.loss, ref.loss, 1e-12) and close(res.d_lr, ref.d_lr, 1e-10) and close(res.d_l2, ref.d_l2, 1e-10), name
