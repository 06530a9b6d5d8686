"""Tests for hypergradients through SGD, RMSProp and Adam (issue 15): ``kernels.hypergrad`` with
``optimizer=``, every method, every hyper-parameter in ``.grads``.

Oracles: PyTorch autograd through the same unrolled loop written in PyTorch (float64, the same
batches; 1e-8 relative), central finite differences of the objective at the weights the
optimizers themselves (``kernels.sgd``, ``kernels.rmsprop``, ``kernels.adam``) return, the
naive NumPy reverse pass, the methods against each other, closed forms (question 2.3.2: under
GD, weight decay is an L2 penalty of ``weight_decay / (2 lr)``) and hypothesis properties.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kernels
from kernels import naive
from kernels.hypergrad import hypergrad

ITER_METHODS = ("reverse", "checkpoint", "forward")
NAMES = {"gd": ("lr", "l2", "weight_decay"), "sgd": ("lr", "l2", "weight_decay"),
         "rmsprop": ("lr", "l2", "weight_decay", "beta", "eps"),
         "adam": ("lr", "l2", "weight_decay", "beta1", "beta2", "eps")}
STEPS = 15


def close(a, b, rtol, floor=1e-6):
    return abs(a - b) <= rtol * max(abs(b), floor)


def data(seed=0, n=9, d=6, nv=4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)), rng.standard_normal(n), rng.standard_normal((nv, d)),
            rng.standard_normal(nv), 0.3 * rng.standard_normal(d))


# (optimizer, options): full batch and mini-batch, with and without decay, default and explicit
# own hyper-parameters.
CASES = {
    "gd_wd": ("gd", dict(lr=0.05, l2=0.03, weight_decay=0.01)),
    "gd": ("gd", dict(lr=0.05, l2=0.03)),
    "sgd_b4_wd": ("sgd", dict(lr=0.05, l2=0.03, batch_size=4, seed=3, weight_decay=0.01)),
    "rmsprop": ("rmsprop", dict(lr=0.01, l2=0.03, eps=1e-3)),
    "rmsprop_b3_wd": ("rmsprop", dict(lr=0.01, l2=0.03, batch_size=3, weight_decay=0.02, beta=0.8)),
    "adam": ("adam", dict(lr=0.01, l2=0.03)),
    "adam_b5_wd": ("adam", dict(lr=0.01, l2=0.0, batch_size=5, eps=1e-4, weight_decay=0.01, beta1=0.8,
                                beta2=0.99)),
    # tall X (4 d <= n), full batch: the Gram form G = X^T X
    "gd_wd_tall": ("gd", dict(lr=0.05, l2=0.03, weight_decay=0.01)),
    "rmsprop_tall": ("rmsprop", dict(lr=0.01, l2=0.03, weight_decay=0.01, eps=1e-3)),
    "adam_tall": ("adam", dict(lr=0.01, l2=0.03)),
    "sgd_tall_b7": ("sgd", dict(lr=0.05, l2=0.03, batch_size=7)),
}


def torch_unrolled(X, t, optimizer, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, batch_size=None,
                   seed=0, weight_decay=0.0, beta=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
    """The same unrolled loop in PyTorch, float64, every hyper-parameter a leaf tensor; the
    batches drawn as kernels.sgd draws them. Returns ``(objective, {name: derivative})``."""
    torch = pytest.importorskip("torch", reason="torch is the independent autograd oracle")
    Xt, tt = torch.from_numpy(X), torch.from_numpy(t)
    n, d = X.shape
    values = dict(lr=lr, l2=l2, weight_decay=weight_decay, beta=beta, beta1=beta1, beta2=beta2, eps=eps)
    P = {k: torch.tensor(float(values[k]), dtype=torch.float64, requires_grad=True) for k in NAMES[optimizer]}
    w = torch.zeros(d, dtype=torch.float64) if w0 is None else torch.from_numpy(np.array(w0))
    m = torch.zeros(d, dtype=torch.float64)
    v = torch.zeros(d, dtype=torch.float64)
    if batch_size:
        nb = -(-n // batch_size)
        rng = np.random.default_rng(seed)
        perms = [rng.permutation(n) for _ in range(-(-steps // nb))]
    for k in range(steps):
        if batch_size:
            e = k // nb
            s = (k - e * nb) * batch_size
            idx = torch.from_numpy(perms[e][s:s + batch_size])
            Xb, tb = Xt[idx], tt[idx]
        else:
            Xb, tb = Xt, tt
        G = (2.0 / Xb.shape[0]) * (Xb.T @ (Xb @ w - tb)) + 2 * P["l2"] * w
        step = P["lr"]
        if optimizer in ("gd", "sgd"):
            u = G
        elif optimizer == "rmsprop":
            v = P["beta"] * v + (1 - P["beta"]) * G * G
            u = G / (torch.sqrt(v) + P["eps"])
        else:
            m = P["beta1"] * m + (1 - P["beta1"]) * G
            v = P["beta2"] * v + (1 - P["beta2"]) * G * G
            step = P["lr"] / (1 - P["beta1"] ** (k + 1))
            u = m / (torch.sqrt(v) / torch.sqrt(1 - P["beta2"] ** (k + 1)) + P["eps"])
        w = (1 - P["weight_decay"]) * w - step * u
    if X_val is None:
        r = Xt @ w - tt
        obj = (r @ r) / n + P["l2"] * (w @ w)
    else:
        r = torch.from_numpy(X_val) @ w - torch.from_numpy(t_val)
        obj = (r @ r) / X_val.shape[0]
    names = NAMES[optimizer]
    grads = torch.autograd.grad(obj, [P[k] for k in names], allow_unused=True)
    return float(obj.detach()), {k: 0.0 if g is None else float(g) for k, g in zip(names, grads)}


def kwargs_of(case, val):
    optimizer, opts = CASES[case]
    n, d = (30, 5) if case.endswith(("_tall", "_b7")) else (9, 6)
    X, t, Xv, tv, w0 = data(sum(map(ord, case)) % 97, n=n, d=d)
    kw = dict(opts, steps=STEPS, w0=w0 if val else None)
    if val:
        kw.update(X_val=Xv, t_val=tv)
    return X, t, optimizer, kw


_TORCH = {}


def torch_ref(case, val):
    if (case, val) not in _TORCH:
        X, t, optimizer, kw = kwargs_of(case, val)
        _TORCH[case, val] = torch_unrolled(X, t, optimizer, **kw)
    return _TORCH[case, val]


@pytest.mark.parametrize("method", ITER_METHODS + ("revolve", "exact"))
@pytest.mark.parametrize("val", [False, True], ids=["train", "val"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_autograd(case, val, method):
    X, t, optimizer, kw = kwargs_of(case, val)
    if method == "exact" and optimizer != "gd":
        return  # refused: test_exact_refuses_other_optimizers
    obj, ref = torch_ref(case, val)
    if method == "revolve":  # checkpoint with 3 snapshot slots and the binomial schedule
        res = hypergrad(X, t, optimizer=optimizer, method="checkpoint", checkpoints=3, **kw)
        method = "checkpoint"
    else:
        res = hypergrad(X, t, optimizer=optimizer, method=method, **kw)
    assert not res.diverged and res.optimizer == optimizer and res.method == method
    assert close(res.loss, obj, 1e-12)
    assert set(res.grads) == set(NAMES[optimizer])
    for name in NAMES[optimizer]:
        assert close(res.grads[name], ref[name], 1e-8), (name, res.grads[name], ref[name])
    assert res.d_lr == res.grads["lr"] and res.d_l2 == res.grads["l2"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_naive_reference(case):
    X, t, optimizer, kw = kwargs_of(case, True)
    res = hypergrad(X, t, optimizer=optimizer, **kw)
    ref = naive.hypergrad(X, t, optimizer=optimizer, **kw)
    assert close(res.loss, ref.loss, 1e-12)
    np.testing.assert_allclose(res.w, ref.w, rtol=1e-12, atol=1e-14)
    for name in NAMES[optimizer]:
        assert close(res.grads[name], ref.grads[name], 1e-9), (name, res.grads[name], ref.grads[name])


OPTIMIZER_FN = {"gd": kernels.gd, "sgd": kernels.sgd, "rmsprop": kernels.rmsprop, "adam": kernels.adam}


def objective_via_optimizer(X, t, optimizer, kw):
    """The objective at the weights ``kernels.<optimizer>`` returns: the oracle is the optimizers'
    own loop, not the unroller."""
    kw = dict(kw)
    Xv, tv = kw.pop("X_val", None), kw.pop("t_val", None)
    res = OPTIMIZER_FN[optimizer](X, t, **kw)
    assert not res.diverged
    w = res.w
    if Xv is None:
        r = X @ w - t
        return float(r @ r) / X.shape[0] + kw.get("l2", 0.0) * float(w @ w)
    r = Xv @ w - tv
    return float(r @ r) / Xv.shape[0]


@pytest.mark.parametrize("case", ["gd_wd", "sgd_b4_wd", "rmsprop_b3_wd", "adam_b5_wd", "rmsprop", "rmsprop_tall"])
def test_matches_central_finite_differences_of_the_optimizers(case):
    X, t, optimizer, kw = kwargs_of(case, True)
    kw = dict(kw, eps=1e-3) if optimizer in ("rmsprop", "adam") else kw
    kw = dict(kw, l2=0.03)
    res = hypergrad(X, t, optimizer=optimizer, **kw)
    assert close(res.loss, objective_via_optimizer(X, t, optimizer, kw), 1e-12)
    defaults = dict(beta=0.9, beta1=0.9, beta2=0.999)
    for name in NAMES[optimizer]:
        x = kw.get(name, defaults.get(name, 0.0))
        f = lambda v: objective_via_optimizer(X, t, optimizer, dict(kw, **{name: v}))  # noqa: E731
        if x == 0.0:  # one-sided at the boundary weight_decay >= 0 (second order)
            h = 1e-6
            fd = (-3 * f(0.0) + 4 * f(h) - f(2 * h)) / (2 * h)
        else:
            h = 1e-5 * x if name != "beta2" else 1e-7
            fd = (f(x + h) - f(x - h)) / (2 * h)
        assert close(res.grads[name], fd, 1e-5, floor=1e-4), (name, res.grads[name], fd)


@pytest.mark.parametrize("optimizer,opts", [("sgd", dict(batch_size=2, seed=7)), ("rmsprop", dict(batch_size=4)),
                                            ("adam", dict()), ("rmsprop", dict(weight_decay=0.05))])
def test_final_weights_are_the_optimizers(optimizer, opts):
    X, t, _, _, w0 = data(5, n=11, d=7)
    kw = dict(lr=0.02, l2=0.01, steps=23, w0=w0, **opts)
    res = hypergrad(X, t, optimizer=optimizer, **kw)
    np.testing.assert_allclose(res.w, OPTIMIZER_FN[optimizer](X, t, **kw).w, rtol=1e-12, atol=1e-13)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 8), d=st.integers(1, 8), T=st.integers(1, 20), optimizer=st.sampled_from(["sgd", "rmsprop", "adam"]),
       batch=st.integers(0, 8), wd=st.sampled_from([0.0, 0.03]), val=st.booleans(), k=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_property_methods_agree(n, d, T, optimizer, batch, wd, val, k, seed):
    X, t, Xv, tv, w0 = data(seed, n=n, d=d)
    kw = dict(lr=0.01, l2=0.02, steps=T, w0=w0, weight_decay=wd, batch_size=min(batch, n) or None,
              X_val=Xv if val else None, t_val=tv if val else None)
    res = [hypergrad(X, t, optimizer=optimizer, method=m, **kw) for m in ITER_METHODS]
    seg = hypergrad(X, t, optimizer=optimizer, method="checkpoint", checkpoints=min(k, T), **kw)  # revolve
    for r in res[1:] + [seg]:
        assert r.loss == res[0].loss
        for name in NAMES[optimizer]:
            assert close(r.grads[name], res[0].grads[name], 1e-9, floor=1e-5), (r.method, name)


@pytest.mark.parametrize("optimizer,opts", [("sgd", dict(batch_size=5, seed=2)), ("rmsprop", dict()),
                                            ("adam", dict(batch_size=16, weight_decay=0.01))])
def test_checkpoint_recomputes_reverse_modes_steps_bit_for_bit(optimizer, opts):
    """sqrt(T) checkpointing reruns the very steps and adjoints of reverse mode, segment by
    segment, with the same compiled code: the same bits, not merely close ones. (A compiled
    segment loop holding its own copies of the two kernels once rounded RMSProp and Adam
    differently, and differently again when loaded from the disk cache.)"""
    rng = np.random.default_rng(11)
    X, t = rng.standard_normal((64, 40)), rng.standard_normal(64)
    kw = dict(lr=0.003, l2=0.01, steps=50, optimizer=optimizer, **opts)
    rev, ck = hypergrad(X, t, method="reverse", **kw), hypergrad(X, t, method="checkpoint", **kw)
    assert ck.grads == rev.grads and ck.loss == rev.loss and np.array_equal(ck.w, rev.w)


def test_exact_refuses_other_optimizers():
    X, t, *_ = data()
    for optimizer in ("sgd", "rmsprop", "adam"):
        with pytest.raises(ValueError, match=f"optimizer='{optimizer}'.*'reverse', 'checkpoint' or 'forward'"):
            hypergrad(X, t, lr=0.01, steps=3, optimizer=optimizer, method="exact")


def test_gd_weight_decay_is_an_l2_penalty_of_wd_over_2lr():
    # question 2.3.2: under GD, weight_decay = 2 lr c is the penalty l2 = c (same iterates), and
    # d/d weight_decay = (d/dl2 through the descent) / (2 lr).
    X, t, Xv, tv, _ = data(11, n=12, d=5)
    lr, c = 0.04, 0.05
    a = hypergrad(X, t, lr=lr, l2=c, steps=30, X_val=Xv, t_val=tv)
    b = hypergrad(X, t, lr=lr, weight_decay=2 * lr * c, steps=30, X_val=Xv, t_val=tv)
    assert close(a.loss, b.loss, 1e-12)
    assert close(a.grads["weight_decay"], a.grads["l2"] / (2 * lr), 1e-12)
    assert close(b.grads["weight_decay"], b.grads["l2"] / (2 * lr), 1e-10)
    for m in ("exact", "checkpoint", "forward"):
        r = hypergrad(X, t, lr=lr, weight_decay=2 * lr * c, steps=30, X_val=Xv, t_val=tv, method=m)
        for name in NAMES["gd"]:
            assert close(r.grads[name], b.grads[name], 1e-9), (m, name)


def test_rmsprop_l2_and_weight_decay_differ():
    # question 2.3.3: under RMSProp the penalty is divided by sqrt(v), the decay is not: the
    # same relation as GD's gives different iterates and different hypergradients.
    X, t, Xv, tv, _ = data(12, n=12, d=5)
    lr, c = 0.01, 0.05
    a = hypergrad(X, t, lr=lr, l2=c, steps=40, X_val=Xv, t_val=tv, optimizer="rmsprop")
    b = hypergrad(X, t, lr=lr, weight_decay=2 * lr * c, steps=40, X_val=Xv, t_val=tv, optimizer="rmsprop")
    assert abs(a.loss - b.loss) > 1e-3 * a.loss
    ratio = a.grads["weight_decay"] / (a.grads["l2"] / (2 * lr))
    assert abs(ratio - 1) > 1e-2


def test_zero_gradient_coordinate_uses_the_one_sided_square_root():
    # A zero column of X: its weight's gradient is 0 at every step, v stays 0, and sqrt'(0) is
    # infinite. The objective is the one of the problem without that column, and so must every
    # derivative be (finite, where PyTorch's autograd gives NaN).
    X, t, Xv, tv, _ = data(13, n=10, d=4)
    Xz = np.insert(X, 2, 0.0, axis=1)
    Xvz = np.insert(Xv, 2, 0.0, axis=1)
    for optimizer in ("rmsprop", "adam"):
        for m in ITER_METHODS:
            a = hypergrad(Xz, t, lr=0.01, l2=0.0, steps=12, X_val=Xvz, t_val=tv, optimizer=optimizer, method=m)
            b = hypergrad(X, t, lr=0.01, l2=0.0, steps=12, X_val=Xv, t_val=tv, optimizer=optimizer, method=m)
            assert a.w[2] == 0.0
            for name in NAMES[optimizer]:
                assert math.isfinite(a.grads[name])
                assert close(a.grads[name], b.grads[name], 1e-12), (optimizer, m, name)


def test_bytes_stored():
    X, t, *_ = data(14, n=6, d=5)
    d, T = 5, 17
    for optimizer, R, P in (("sgd", 2, 3), ("rmsprop", 3, 5), ("adam", 4, 6)):
        rev = hypergrad(X, t, lr=0.01, steps=T, optimizer=optimizer)
        assert rev.bytes_stored == (T * R + 1) * d * 8
        fwd = hypergrad(X, t, lr=0.01, steps=T, optimizer=optimizer, method="forward")
        assert fwd.bytes_stored == P * 3 * d * 8
        ck = hypergrad(X, t, lr=0.01, steps=T, optimizer=optimizer, method="checkpoint")
        S = math.ceil(math.sqrt(T))
        assert ck.bytes_stored == (-(-T // S) * 3 + S * R) * d * 8
        for k in (1, 3):  # revolve's snapshot slots of (w, m, v)
            rv = hypergrad(X, t, lr=0.01, steps=T, optimizer=optimizer, method="checkpoint", checkpoints=k)
            assert rv.bytes_stored == 3 * k * d * 8 and rv.grads == pytest.approx(rev.grads, rel=1e-9)


def test_divergence_is_reported_not_silent():
    X, t, *_ = data(15)
    for optimizer, lr in (("sgd", 50.0), ("gd", 50.0)):
        for m in ITER_METHODS:
            with pytest.warns(RuntimeWarning, match="diverged"):
                res = hypergrad(X, t, lr=lr, steps=200, optimizer=optimizer, weight_decay=0.01, method=m,
                                batch_size=3 if optimizer == "sgd" else None)
            assert res.diverged and res.diverged_at >= 0 and res.loss == math.inf
            assert all(math.isnan(v) for v in res.grads.values()) and set(res.grads) == set(NAMES[optimizer])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # RMSProp's steps are bounded by lr / sqrt(1 - beta): a large lr oscillates, finitely
        assert not hypergrad(X, t, lr=0.5, steps=50, optimizer="rmsprop").diverged


def test_float32_is_upcast():
    X, t, Xv, tv, w0 = data(16)
    a = hypergrad(X.astype(np.float32), t.astype(np.float32), lr=0.01, steps=9, optimizer="adam")
    b = hypergrad(X.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64), lr=0.01, steps=9,
                  optimizer="adam")
    assert a.w.dtype == np.float64 and a.grads == b.grads


def test_validation_errors():
    X, t, *_ = data(17)
    ok = dict(lr=0.01, steps=3)
    with pytest.raises(ValueError, match="optimizer"):
        hypergrad(X, t, optimizer="adamw", **ok)
    with pytest.raises(TypeError, match="optimizer"):
        hypergrad(X, t, optimizer=None, **ok)
    with pytest.raises(ValueError, match="beta1 is not a hyper-parameter of optimizer='rmsprop'"):
        hypergrad(X, t, optimizer="rmsprop", beta1=0.9, **ok)
    with pytest.raises(ValueError, match="beta is not a hyper-parameter of optimizer='adam'"):
        hypergrad(X, t, optimizer="adam", beta=0.9, **ok)
    with pytest.raises(ValueError, match="eps is not a hyper-parameter of optimizer='gd'"):
        hypergrad(X, t, eps=1e-8, **ok)
    with pytest.raises(ValueError, match="batch_size"):
        hypergrad(X, t, batch_size=3, **ok)
    with pytest.raises(ValueError, match="batch_size"):
        hypergrad(X, t, optimizer="sgd", batch_size=100, **ok)
    with pytest.raises(TypeError, match="batch_size"):
        hypergrad(X, t, optimizer="sgd", batch_size=2.5, **ok)
    with pytest.raises(ValueError, match="beta2"):
        hypergrad(X, t, optimizer="adam", beta2=1.0, **ok)
    with pytest.raises(ValueError, match="eps"):
        hypergrad(X, t, optimizer="rmsprop", eps=-1.0, **ok)
    with pytest.raises(ValueError, match="weight_decay"):
        hypergrad(X, t, optimizer="sgd", weight_decay=1.0, **ok)
    with pytest.raises(ValueError, match="seed"):
        hypergrad(X, t, optimizer="sgd", batch_size=2, seed=-1, **ok)
