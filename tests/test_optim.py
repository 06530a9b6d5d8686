"""Tests for kernels.optim: linear-regression loss/gradient and the optimizers.

Oracles: the NumPy reference (kernels.naive.optim) step by step; PyTorch's own optimizers
(torch.optim) driven by the same loss; closed forms (central finite differences of the
quadratic loss, the minimum-norm solution, the [2/3, 2/3] limit of the adaptive methods on
the homework's 2-D example); and hypothesis properties over random shapes.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernels
import kernels.optim as optim
from kernels import naive, peers

OPTIMIZERS = ["gd", "sgd", "rmsprop", "adagrad", "adam"]


def rel_err(a, b):
    """max |a - b| / max |b|: a norm-wise relative error (elementwise would be meaningless for
    entries that cancel to ~0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    return np.abs(a - b).max(initial=0.0) / scale


def make_problem(n, d, dtype=np.float64, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    t = X @ rng.standard_normal(d) + noise * rng.standard_normal(n)
    return X.astype(dtype), t.astype(dtype)


def safe_lr(X, batch=None):
    """A step size with lr * (2/b) * lambda_max(X_B^T X_B) <= 0.5 for every batch B: stable for
    GD and SGD whatever the batch (lambda_max(X_B^T X_B) / b <= max_i ||x_i||^2)."""
    X = np.asarray(X, dtype=np.float64)
    return 0.25 / max(np.max(np.sum(X * X, axis=1)), np.linalg.norm(X, 2) ** 2 / X.shape[0])


@pytest.fixture(scope="module")
def problem():
    return make_problem(40, 6)


@pytest.fixture(scope="module")
def torch():
    try:
        return peers.require("torch")
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))


def call(module, name, X, t, **kw):
    """Call optimizer ``name`` with sensible defaults per optimizer."""
    kw = dict(kw)
    if name == "gd":
        kw.pop("batch_size", None)
        kw.pop("seed", None)
    elif name == "sgd" and "batch_size" not in kw:
        kw["batch_size"] = X.shape[0]
    return getattr(module, name)(X, t, **kw)


# --------------------------------------------------------------------------- loss and grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_matches_reference_and_formula(problem, dtype):
    X, t = (a.astype(dtype) for a in problem)
    w = np.linspace(-1, 1, X.shape[1]).astype(dtype)
    got = kernels.loss(X, t, w, l2=0.3)
    X64, t64, w64 = (a.astype(np.float64) for a in (X, t, w))
    formula = np.mean((X64 @ w64 - t64) ** 2) + 0.3 * np.sum(w64**2)
    assert isinstance(got, float)
    assert abs(got - formula) <= 1e-12 * formula
    assert abs(got - naive.loss(X, t, w, l2=0.3)) <= 1e-12 * formula


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_matches_reference_and_finite_differences(dtype, layout):
    X, t = make_problem(700, 9, dtype=dtype, seed=3)  # 700 rows: 3 parallel blocks of 256
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        big = np.zeros((700, 20), dtype=dtype)
        big[:, ::2][:, :9] = X
        X = big[:, ::2][:, :9]
        assert not X.flags.c_contiguous
    w = np.random.default_rng(4).standard_normal(9).astype(dtype)
    g = kernels.grad(X, t, w, l2=0.2)
    assert g.dtype == dtype and g.shape == (9,)
    # reference in float64 (the kernel accumulates in float64 and rounds once)
    X64, t64, w64 = (a.astype(np.float64) for a in (X, t, w))
    ref64 = naive.grad(X64, t64, w64, l2=0.2)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert rel_err(g, ref64) <= tol
    assert rel_err(g, naive.grad(X, t, w, l2=0.2)) <= (1e-12 if dtype == np.float64 else 1e-5)
    # central differences of the quadratic loss along a random direction are exact up to rounding
    v = np.random.default_rng(5).standard_normal(9)
    h = 1e-3
    fd = (naive.loss(X64, t64, w64 + h * v, l2=0.2) - naive.loss(X64, t64, w64 - h * v, l2=0.2)) / (2 * h)
    assert abs(fd - g.astype(np.float64) @ v) <= (1e-8 if dtype == np.float64 else 1e-5) * np.abs(g) @ np.abs(v)


def test_grad_out_argument(problem):
    X, t = problem
    w = np.ones(X.shape[1])
    out = np.full(X.shape[1], np.nan)
    res = kernels.grad(X, t, w, out=out)
    assert res is out
    assert rel_err(out, naive.grad(X, t, w)) <= 1e-12
    with pytest.raises(ValueError, match="out"):
        kernels.grad(X, t, w, out=np.empty(X.shape[1] + 1))
    with pytest.raises(TypeError, match="out"):
        kernels.grad(X, t, w, out=np.empty(X.shape[1], dtype=np.float32))


def test_passes_bit_identical_across_thread_counts_and_serial_parallel(monkeypatch):
    """The same fixed blocks, summed in block order: 1 thread, 2 threads, and the serial path
    taken below _PARALLEL_MIN_BYTES all give the same bits."""
    X, t = make_problem(1100, 7, seed=11)  # 5 blocks of 256 rows
    w = np.random.default_rng(0).standard_normal(7)

    def run():
        return (kernels.grad(X, t, w), kernels.loss(X, t, w),
                kernels.rmsprop(X, t, lr=1e-2, steps=20, record_every=5),
                kernels.adam(X, t, lr=1e-2, steps=20, batch_size=600, seed=3, record_every=5))

    results = [run()]  # serial: 1100 x 7 float64 is far below the threshold
    monkeypatch.setattr(optim.linreg, "_PARALLEL_MIN_BYTES", 0)  # every pass parallel
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(run())
    finally:
        numba.set_num_threads(before)
    # both builds of the optimizers' loop ran: the serial one first, the parallel one after
    assert optim.drivers._DRIVE_SERIAL.signatures and optim.drivers._DRIVE.signatures
    for g, lo, r1, r2 in results[1:]:
        assert np.array_equal(g, results[0][0]) and lo == results[0][1]
        for a, b in ((r1, results[0][2]), (r2, results[0][3])):
            assert np.array_equal(a.trajectory, b.trajectory) and np.array_equal(a.losses, b.losses)


@pytest.mark.parametrize("name,kw", [
    ("rmsprop", dict(lr=1e-2, steps=40, record_every=7)),
    ("adam", dict(lr=1e-2, steps=41, l2=0.1)),
    ("gd", dict(lr=1e20, steps=40, record_every=1)),  # diverges at step 8, inside the probe
    ("adagrad", dict(lr=0.5, steps=30, weight_decay=0.01)),
])
def test_full_batch_probe_of_serial_and_parallel_builds_changes_no_bit(monkeypatch, name, kw):
    """Long full-batch runs on cache-sized data time a few steps on each build and finish on the
    faster one (drivers._probe): whichever wins, and with a divergence inside the probe, the
    result is the serial run's, bit for bit."""
    X, t = make_problem(300, 9, seed=5)
    monkeypatch.setattr(optim.linreg, "_GRAM", False)
    monkeypatch.setattr(optim.drivers, "_PROBE_MIN_BYTES", 1 << 62)
    want = call(kernels, name, X, t, **kw)
    monkeypatch.setattr(optim.drivers, "_PROBE_MIN_BYTES", 0)
    calls = []
    real = optim.drivers._probe
    monkeypatch.setattr(optim.drivers, "_probe", lambda *a: calls.append(1) or real(*a))
    got = call(kernels, name, X, t, **kw)
    assert calls, "the probe did not run"
    assert (got.steps, got.diverged_at) == (want.steps, want.diverged_at)
    for field in ("w", "losses", "trajectory", "recorded_steps"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    if name == "gd":
        assert got.diverged and got.diverged_at < 3 * 2 * optim.drivers._PROBE_STEPS


@pytest.mark.parametrize("name,kw", [
    ("gd", dict(lr=0.05, l2=0.1, weight_decay=0.01)),
    ("rmsprop", dict(lr=0.003)),
    ("adagrad", dict(lr=0.2)),
    ("adam", dict(lr=0.02, weight_decay=0.01)),
])
def test_gram_form_matches_residual_form(problem, monkeypatch, name, kw):
    """Full batch with 4 d <= n and 4 steps >= d steps in the Gram form (G = X^T X); it must give
    the residual form's trajectory, and its recorded losses come from a residual pass."""
    X, t = problem
    assert optim._gram(X, t, 100)[0]  # 40 x 6: the Gram form is the default here
    assert not optim._gram(X[:20], t[:20], 100)[0] and not optim._gram(X, t, 1)[0]
    assert optim._gram(X, t, 2)[0]  # 4 steps >= d = 6
    assert not optim._gram(X * 1e160, t, 100)[0]  # G would overflow: the residual form
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    a = call(kernels, name, X, t, w0=w0, steps=100, record_every=1, **kw)
    monkeypatch.setattr(optim.linreg, "_GRAM", False)
    b = call(kernels, name, X, t, w0=w0, steps=100, record_every=1, **kw)
    assert rel_err(a.trajectory, b.trajectory) <= 1e-12
    for k in (0, 50, 100):
        assert a.losses[k] == kernels.loss(X, t, a.trajectory[k], l2=kw.get("l2", 0.0))


def test_min_norm_solution_against_pinv_and_row_space():
    X, t = make_problem(5, 12, seed=1)
    w = kernels.min_norm_solution(X, t)
    assert rel_err(w, naive.min_norm_solution(X, t)) <= 1e-12
    assert rel_err(X @ w, t) <= 1e-12  # interpolates (d > n, full row rank)
    # lies in the row space: w = X^T a for some a
    a, *_ = np.linalg.lstsq(X.T, w, rcond=None)
    assert rel_err(X.T @ a, w) <= 1e-12


# --------------------------------------------------------------------------- against the reference

CASES = [
    ("gd", dict(lr=0.05, steps=60)),
    ("gd", dict(lr=0.05, steps=60, l2=0.1, weight_decay=0.01)),
    ("sgd", dict(lr=0.03, batch_size=7, steps=45, seed=5)),  # 40 rows: 5 full batches + 1 short
    ("sgd", dict(lr=0.03, batch_size=16, epochs=4, seed=1, l2=0.05, weight_decay=0.02)),
    ("rmsprop", dict(lr=0.003, beta=0.9, eps=1e-8, steps=80)),
    ("rmsprop", dict(lr=0.01, beta=0.5, eps=1e-3, steps=70, batch_size=9, seed=2, l2=0.2, weight_decay=0.01)),
    ("adagrad", dict(lr=0.2, steps=80)),
    ("adagrad", dict(lr=0.1, eps=1e-6, steps=50, batch_size=13, seed=4, l2=0.1, weight_decay=0.003)),
    ("adam", dict(lr=0.02, steps=80)),
    ("adam", dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, steps=60, batch_size=11, seed=9, l2=0.1,
                  weight_decay=0.01)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_optimizer_matches_reference_step_by_step(problem, name, kw):
    X, t = problem
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    got = getattr(kernels, name)(X, t, w0=w0, record_every=1, **kw)
    ref = getattr(naive, name)(X, t, w0=w0, record_every=1, **kw)
    assert got.steps == ref.steps and not got.diverged and got.diverged_at == -1
    assert got.trajectory.shape == (got.steps + 1, X.shape[1])
    assert np.array_equal(got.recorded_steps, np.arange(got.steps + 1))
    assert rel_err(got.trajectory, ref.trajectory) <= 1e-12
    assert rel_err(got.losses, ref.losses) <= 1e-12
    assert rel_err(got.w, ref.w) <= 1e-12
    # the recorded losses are the full-data objective at the recorded weights
    assert abs(got.losses[-1] - kernels.loss(X, t, got.w, l2=kw.get("l2", 0.0))) <= 1e-12 * got.losses[-1]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_torch_manual_loop_peers_agree(problem, torch, name):
    """The PyTorch loops that bench/ times compute the same thing (same batches, same seed)."""
    X, t = problem
    kw = dict(lr=0.003, steps=30, batch_size=8, seed=3, l2=0.1, weight_decay=0.01, record_every=4)
    if name == "gd":
        kw.pop("batch_size"), kw.pop("seed")
    got = getattr(kernels, name)(X, t, **kw)
    peer = getattr(peers, f"{name}_torch")(X, t, **kw)
    assert rel_err(got.trajectory, peer.trajectory) <= 1e-12
    assert np.array_equal(got.recorded_steps, peer.recorded_steps)
    assert rel_err(peers.grad_torch(X, t, got.w), kernels.grad(X, t, got.w)) <= 1e-12


# --------------------------------------------------------------------------- against torch.optim


def torch_trajectory(torch, X, t, w0, steps, make_opt, l2=0.0):
    """Drive a torch.optim optimizer on the same loss; return the (steps + 1, d) iterates."""
    Xt, tt = torch.from_numpy(X), torch.from_numpy(t)
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = make_opt([w])
    traj = [w.detach().numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        loss = ((Xt @ w - tt) ** 2).mean() + l2 * (w**2).sum()
        loss.backward()
        opt.step()
        traj.append(w.detach().numpy().copy())
    return np.array(traj)


# Step sizes keep the 100 steps in the transient phase. Once a constant-lr adaptive method reaches
# its noise floor (|w - w*| ~ lr), each update is roughly lr * sign(g): a chaotic map that
# amplifies a 1e-16 rounding difference by ~10x per step (RMSProp at lr=0.01 here: 1e-16 at
# step 70, 1e-8 at step 90, 1e-2 at step 100), so no two implementations agree past that point.
TORCH_CASES = [
    ("gd", dict(lr=0.05), lambda o, p: o.SGD(p, lr=0.05)),
    ("rmsprop", dict(lr=0.003, beta=0.9, eps=1e-8), lambda o, p: o.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-8)),
    ("rmsprop", dict(lr=0.005, beta=0.6, eps=1e-4), lambda o, p: o.RMSprop(p, lr=0.005, alpha=0.6, eps=1e-4)),
    ("adagrad", dict(lr=0.2, eps=1e-10), lambda o, p: o.Adagrad(p, lr=0.2, eps=1e-10)),
    ("adam", dict(lr=0.02, beta1=0.9, beta2=0.999, eps=1e-8),
     lambda o, p: o.Adam(p, lr=0.02, betas=(0.9, 0.999), eps=1e-8)),
    ("adam", dict(lr=0.03, beta1=0.7, beta2=0.95, eps=1e-5),
     lambda o, p: o.Adam(p, lr=0.03, betas=(0.7, 0.95), eps=1e-5)),
]


@pytest.mark.parametrize("name,kw,make", TORCH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_optimizer_matches_torch_optim_100_steps(problem, torch, name, kw, make):
    X, t = problem
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    got = call(kernels, name, X, t, w0=w0, steps=100, record_every=1, **kw)
    want = torch_trajectory(torch, X, t, w0, 100, lambda p: make(torch.optim, p))
    assert rel_err(got.trajectory, want) <= 1e-10


L2_CASES = [
    ("gd", dict(lr=0.05), lambda o, p, wd: o.SGD(p, lr=0.05, weight_decay=wd)),
    ("rmsprop", dict(lr=0.003), lambda o, p, wd: o.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-8, weight_decay=wd)),
    ("adagrad", dict(lr=0.2), lambda o, p, wd: o.Adagrad(p, lr=0.2, weight_decay=wd)),
    ("adam", dict(lr=0.02), lambda o, p, wd: o.Adam(p, lr=0.02, weight_decay=wd)),
]


@pytest.mark.parametrize("name,kw,make", L2_CASES, ids=[c[0] for c in L2_CASES])
def test_l2_is_torch_coupled_weight_decay(problem, torch, name, kw, make):
    """``l2 = c`` adds ``2 c w`` to the gradient: torch's (coupled) ``weight_decay = 2 c``."""
    X, t = problem
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    got = call(kernels, name, X, t, w0=w0, steps=100, record_every=1, l2=0.15, **kw)
    want = torch_trajectory(torch, X, t, w0, 100, lambda p: make(torch.optim, p, 0.3))
    assert rel_err(got.trajectory, want) <= 1e-10
    # and torch driven with the penalty inside its loss agrees too
    want2 = torch_trajectory(torch, X, t, w0, 100, lambda p: make(torch.optim, p, 0.0), l2=0.15)
    assert rel_err(got.trajectory, want2) <= 1e-10


def test_adam_weight_decay_is_adamw_with_lambda_over_lr(problem, torch):
    """Decoupled ``weight_decay = lam`` multiplies w by (1 - lam): AdamW(weight_decay=lam/lr)."""
    X, t = problem
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    lr, lam = 0.02, 0.004
    got = kernels.adam(X, t, lr=lr, steps=100, w0=w0, weight_decay=lam, record_every=1)
    want = torch_trajectory(torch, X, t, w0, 100, lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=lam / lr))
    assert rel_err(got.trajectory, want) <= 1e-10
    # ... and *not* torch's Adam(weight_decay=lam), which is an L2 penalty
    l2_form = torch_trajectory(torch, X, t, w0, 100, lambda p: torch.optim.Adam(p, lr=lr, weight_decay=lam))
    assert rel_err(got.trajectory, l2_form) > 1e-4


def test_decoupled_weight_decay_hand_written(problem):
    """weight_decay per equation (5), written out for one RMSProp step and one Adam step."""
    X, t = problem
    w0 = np.linspace(-0.5, 0.5, X.shape[1])
    g = naive.grad(X, t, w0, l2=0.1)
    lam, lr = 0.05, 0.01
    v = 0.1 * g**2
    want = (1 - lam) * w0 - lr * g / (np.sqrt(v) + 1e-8)
    got = kernels.rmsprop(X, t, lr=lr, steps=1, w0=w0, l2=0.1, weight_decay=lam).w
    assert rel_err(got, want) <= 1e-14
    m, v = 0.1 * g, 0.001 * g**2
    want = (1 - lam) * w0 - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    got = kernels.adam(X, t, lr=lr, steps=1, w0=w0, l2=0.1, weight_decay=lam).w
    assert rel_err(got, want) <= 1e-14


# --------------------------------------------------------------------------- mini-batch sampling


def test_sgd_full_batch_equals_gd(problem):
    X, t = problem
    a = kernels.sgd(X, t, lr=0.05, batch_size=X.shape[0], steps=50, seed=7, record_every=1)
    b = kernels.gd(X, t, lr=0.05, steps=50, record_every=1)
    assert rel_err(a.trajectory, b.trajectory) <= 1e-12  # only the order of the sum differs


def test_sgd_batches_are_epoch_permutations_without_replacement():
    """An independent look at the sampling: with X = I, t = 1, w0 = 0, a batch moves exactly the
    coordinates of its rows, so the trajectory reveals every batch."""
    n, b, seed = 10, 4, 123
    X, t = np.eye(n), np.ones(n)
    r = kernels.sgd(X, t, lr=0.01, batch_size=b, epochs=3, seed=seed, record_every=1)
    assert r.steps == 9  # ceil(10 / 4) = 3 batches per epoch, the last one short
    moved = [set(np.flatnonzero(np.diff(r.trajectory, axis=0)[s])) for s in range(r.steps)]
    rng = np.random.default_rng(seed)
    for e in range(3):
        perm = rng.permutation(n)
        batches = moved[3 * e:3 * e + 3]
        assert [len(x) for x in batches] == [4, 4, 2]
        assert set().union(*batches) == set(range(n))  # every row once per epoch
        assert batches == [set(perm[0:4]), set(perm[4:8]), set(perm[8:10])]


def test_sgd_steps_cross_epochs_and_chunks(problem, monkeypatch):
    X, t = problem
    nb = -(-X.shape[0] // 6)
    a = kernels.sgd(X, t, lr=0.02, batch_size=6, epochs=5, seed=2, record_every=3)
    b = kernels.sgd(X, t, lr=0.02, batch_size=6, steps=5 * nb, seed=2, record_every=3)
    assert np.array_equal(a.trajectory, b.trajectory) and np.array_equal(a.w, b.w)
    # permutations handed to the kernel one epoch at a time: the same run, bit for bit
    monkeypatch.setattr(optim.drivers, "_PERM_CHUNK", 1)
    c = kernels.sgd(X, t, lr=0.02, batch_size=6, epochs=5, seed=2, record_every=3)
    assert np.array_equal(a.trajectory, c.trajectory) and np.array_equal(a.losses, c.losses)
    # a run that stops mid-epoch is a prefix of the longer run
    d = kernels.sgd(X, t, lr=0.02, batch_size=6, steps=2 * nb + 3, seed=2, record_every=1)
    e = kernels.sgd(X, t, lr=0.02, batch_size=6, steps=5 * nb, seed=2, record_every=1)
    assert np.array_equal(d.trajectory, e.trajectory[: 2 * nb + 4])


def test_same_seed_same_result_different_seed_different(problem):
    X, t = problem
    for name in ["sgd", "rmsprop", "adagrad", "adam"]:
        kw = dict(lr=0.01, steps=25, batch_size=5, record_every=2)
        a = call(kernels, name, X, t, seed=4, **kw)
        b = call(kernels, name, X, t, seed=4, **kw)
        c = call(kernels, name, X, t, seed=5, **kw)
        assert np.array_equal(a.trajectory, b.trajectory) and np.array_equal(a.losses, b.losses)
        assert not np.array_equal(a.w, c.w)


# --------------------------------------------------------------------------- homework questions


@pytest.mark.parametrize("seed,batch_size", [(0, 1), (1, 2), (2, 3), (3, 5)])
def test_q111_sgd_from_zero_converges_to_min_norm_solution(seed, batch_size):
    """Question 1.1.1: d > n, w0 = 0 -> mini-batch SGD ends at pinv(X) t (its steps stay in
    the row space of X). Started off the row space it keeps the orthogonal component."""
    X, t = make_problem(5, 12, seed=seed, noise=1.0)
    w_star = kernels.min_norm_solution(X, t)
    lr = safe_lr(X)
    r = kernels.sgd(X, t, lr=lr, batch_size=batch_size, epochs=20_000, seed=seed)
    assert not r.diverged
    assert np.linalg.norm(r.w - w_star) <= 1e-8 * np.linalg.norm(w_star)
    # away from the row space: the component of w0 orthogonal to it is invariant
    w0 = np.random.default_rng(100 + seed).standard_normal(12)
    perp = w0 - np.linalg.pinv(X) @ (X @ w0)
    r2 = kernels.sgd(X, t, lr=lr, batch_size=batch_size, epochs=20_000, seed=seed, w0=w0)
    assert np.linalg.norm(perp) > 1.0
    assert np.linalg.norm(r2.w - w_star) > 1.0  # a solution of X w = t, but not the minimum-norm one
    assert rel_err(X @ r2.w, t) <= 1e-8
    assert np.linalg.norm(r2.w - (w_star + perp)) <= 1e-8 * np.linalg.norm(w_star + perp)


# The adaptive methods on x1 = [2, 1], t = [2], w0 = 0 (questions 1.2.1, 1.2.2). Every gradient
# is a multiple of x1, so g_1 = 2 g_2 at every step; then v_1 = 4 v_2 (and m_1 = 2 m_2), so
# g_i / sqrt(v_i) is the same for both coordinates (up to eps): both weights move by the same
# amount every step, w stays on the line w_1 = w_2, and the limit solves 2w + w = 2: w = [2/3, 2/3].
# Its distance to the minimum-norm solution [0.8, 0.4] is ||[-2/15, 4/15]|| = sqrt(20)/15 = 0.29814.
Q12_LIMIT = np.array([2 / 3, 2 / 3])
Q12_DISTANCE = np.sqrt(20) / 15


@pytest.mark.parametrize("name,kw", [
    ("rmsprop", dict(lr=1e-3, steps=5000)),
    ("adagrad", dict(lr=0.1, steps=5000)),
    ("adam", dict(lr=1e-2, steps=5000)),
])
def test_q121_q122_adaptive_methods_miss_the_min_norm_solution(name, kw):
    X, t = np.array([[2.0, 1.0]]), np.array([2.0])
    w_min = kernels.min_norm_solution(X, t)
    assert rel_err(w_min, [0.8, 0.4]) <= 1e-14
    r = getattr(kernels, name)(X, t, **kw)
    assert not r.diverged
    assert abs(X @ r.w - t)[0] <= 1e-8  # it converged to a solution of X w = t ...
    dist = np.linalg.norm(r.w - w_min)
    assert dist > 0.25  # ... that is far from the minimum-norm one ...
    assert abs(dist - Q12_DISTANCE) <= 1e-7  # ... by the distance derived above (0.29814)
    assert np.linalg.norm(r.w - Q12_LIMIT) <= 1e-7
    # GD, by contrast, finds the minimum-norm solution
    assert rel_err(kernels.gd(X, t, lr=0.05, steps=2000).w, w_min) <= 1e-12


def test_q232_l2_equals_weight_decay_under_gd_not_under_rmsprop(problem):
    """Question 2.3.2: under GD, l2 = c and weight_decay = 2 lr c are one update; under RMSProp
    the penalty is rescaled per coordinate by 1 / sqrt(v), the decay is not."""
    X, t = problem
    lr, c = 0.05, 0.2
    w0 = np.linspace(-1, 1, X.shape[1])
    a = kernels.gd(X, t, lr=lr, steps=100, w0=w0, l2=c, record_every=1)
    b = kernels.gd(X, t, lr=lr, steps=100, w0=w0, weight_decay=2 * lr * c, record_every=1)
    assert rel_err(a.trajectory, b.trajectory) <= 1e-12
    lr = 0.003  # the transient phase, before the chaotic noise floor (see TORCH_CASES)
    a = kernels.rmsprop(X, t, lr=lr, steps=100, w0=w0, l2=c, record_every=1)
    b = kernels.rmsprop(X, t, lr=lr, steps=100, w0=w0, weight_decay=2 * lr * c, record_every=1)
    gap = rel_err(a.trajectory, b.trajectory)
    assert gap > 1e-2, gap  # measured: 0.146 of the weights' scale, 1e14 times rounding
    # the reference shows the same gap, so it is the method's, not the kernel's
    ra = naive.rmsprop(X, t, lr=lr, steps=100, w0=w0, l2=c, record_every=1)
    rb = naive.rmsprop(X, t, lr=lr, steps=100, w0=w0, weight_decay=2 * lr * c, record_every=1)
    assert abs(rel_err(ra.trajectory, rb.trajectory) - gap) <= 1e-10


# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("name,kw", [
    ("gd", dict(lr=3.0)),
    ("sgd", dict(lr=3.0, batch_size=4, seed=1)),
    ("rmsprop", dict(lr=1e160)),  # steps of ~lr: the loss at w_1 overflows
    ("adam", dict(lr=1e160, batch_size=8, seed=2)),
])
def test_divergence_is_reported_at_the_first_bad_iterate(problem, name, kw):
    X, t = problem
    with np.errstate(all="ignore"):
        r = call(kernels, name, X, t, steps=5000, record_every=1, **kw)
        ref = call(naive, name, X, t, steps=5000, record_every=1, **kw)
    assert r.diverged and r.diverged_at >= 1
    assert r.diverged_at == ref.diverged_at and r.steps == ref.steps == r.diverged_at - 1
    assert np.all(np.isfinite(r.w)) and np.all(np.isfinite(r.trajectory)) and np.all(np.isfinite(r.losses))
    assert r.trajectory.shape[0] == r.steps + 1 and r.recorded_steps[-1] == r.steps
    assert rel_err(r.w, ref.w) <= 1e-10
    # the returned w is the last good iterate: the same run stopped one step earlier
    short = call(kernels, name, X, t, steps=r.steps, **kw)
    assert not short.diverged and np.array_equal(short.w, r.w)


@pytest.mark.parametrize("name,kw", [
    ("gd", dict(lr=3.0)),
    ("sgd", dict(lr=3.0, batch_size=4, seed=1)),
    ("sgd", dict(lr=3.0, batch_size=1, seed=1)),
    ("gd", dict(lr=3.0, record_every=1)),
])
def test_float32_run_diverges_before_a_weight_leaves_float32s_range(problem, name, kw):
    """The working copy is float64: a diverging float32 run has weights past 3.4e38 long before
    they overflow float64. Each of those iterates is bad (its float32 weights would be inf), so
    the run stops at the first one and returns the last whose weights float32 holds; the NumPy
    reference agrees, and the float64 run on the same data goes further."""
    X, t = problem
    X32, t32 = X.astype(np.float32), t.astype(np.float32)
    with np.errstate(all="ignore"):
        r = call(kernels, name, X32, t32, steps=5000, **kw)
        ref = call(naive, name, X32, t32, steps=5000, **kw)
        r64 = call(kernels, name, X32.astype(np.float64), t32.astype(np.float64), steps=5000, **kw)
    assert r.diverged and r.diverged_at == ref.diverged_at and r.steps == ref.steps == r.diverged_at - 1
    assert r.w.dtype == np.float32 and np.all(np.isfinite(r.w)) and np.all(np.isfinite(r.trajectory))
    assert np.array_equal(r.w, ref.w)
    assert r64.diverged_at > r.diverged_at  # float64 holds the weights that float32 cannot
    # the first bad iterate is the first with a weight beyond float32's range
    short = call(kernels, name, X32.astype(np.float64), t32.astype(np.float64), steps=r.diverged_at, **kw)
    assert np.abs(short.w).max() > np.finfo(np.float32).max
    assert np.array_equal(r.w, call(kernels, name, X32, t32, steps=r.steps, **kw).w)


def test_gd_divergence_step_by_hand():
    """GD overflow: the next iterate or its loss computed by hand from the returned w is not finite."""
    X, t = make_problem(30, 4, seed=8)
    r = kernels.gd(X, t, lr=2.0, steps=10_000)
    assert r.diverged and r.steps == r.diverged_at - 1
    with np.errstate(all="ignore"):
        w_next = r.w - 2.0 * naive.grad(X, t, r.w)
        bad = not np.all(np.isfinite(w_next)) or not np.isfinite(naive.loss(X, t, w_next))
    assert bad and np.isfinite(naive.loss(X, t, r.w))


def test_nan_in_data_diverges_at_step_zero_without_raising(problem):
    X, t = problem
    X = X.copy()
    X[3, 2] = np.nan
    w0 = np.full(X.shape[1], 0.5)
    for name in OPTIMIZERS:
        r = call(kernels, name, X, t, lr=0.01, steps=10, w0=w0, batch_size=X.shape[0])
        assert r.diverged and r.diverged_at == 0 and r.steps == 0
        assert np.array_equal(r.w, w0)  # nothing better to return than the start
    assert np.isnan(kernels.loss(X, t, w0)) and np.isnan(kernels.grad(X, t, w0)).any()


# --------------------------------------------------------------------------- results and dtypes


def test_record_every_semantics(problem):
    X, t = problem
    r = kernels.adam(X, t, lr=0.01, steps=23, record_every=5)
    assert list(r.recorded_steps) == [0, 5, 10, 15, 20, 23]
    assert r.trajectory.shape == (6, X.shape[1]) and r.losses.shape == (6,)
    full = kernels.adam(X, t, lr=0.01, steps=23, record_every=1)
    assert np.array_equal(r.trajectory, full.trajectory[[0, 5, 10, 15, 20, 23]])
    for k, s in enumerate(r.recorded_steps):
        assert abs(r.losses[k] - kernels.loss(X, t, full.trajectory[s])) <= 1e-12 * r.losses[k]
    z = kernels.adam(X, t, lr=0.01, steps=23)
    assert z.trajectory.shape == (0, X.shape[1]) and z.losses.shape == (1,)
    assert list(z.recorded_steps) == [23] and z.loss == kernels.loss(X, t, z.w)
    assert np.array_equal(z.w, r.w)
    zero = kernels.sgd(X, t, lr=0.01, batch_size=4, steps=0, record_every=3)
    assert zero.steps == 0 and list(zero.recorded_steps) == [0] and np.array_equal(zero.w, np.zeros(X.shape[1]))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_keeps_dtype_and_matches_float64(problem, name):
    X, t = (a.astype(np.float32) for a in problem)
    kw = dict(lr=0.01, steps=30, batch_size=8, seed=1, record_every=3, w0=np.full(X.shape[1], 0.1, np.float32))
    r32 = call(kernels, name, X, t, **kw)
    assert r32.w.dtype == np.float32 and r32.trajectory.dtype == np.float32 and r32.losses.dtype == np.float64
    # float32 data, float64 arithmetic: the same run as on the (exactly representable) data in
    # float64, rounded at the end
    kw64 = dict(kw, w0=kw["w0"].astype(np.float64))
    r64 = call(kernels, name, X.astype(np.float64), t.astype(np.float64), **kw64)
    assert rel_err(r32.w, r64.w) <= 1e-6  # one float32 rounding at the end (a float32 ulp is 6e-8)
    assert rel_err(r32.losses, r64.losses) <= 1e-12
    ref = call(naive, name, X, t, **kw)
    assert ref.w.dtype == np.float32 and rel_err(r32.trajectory, ref.trajectory) <= 1e-5


def test_exports_and_result_is_frozen(problem):
    X, t = problem
    r = kernels.gd(X, t, lr=0.01, steps=2)
    assert isinstance(r, kernels.OptimResult)
    with pytest.raises(AttributeError):
        r.steps = 3
    for name in ["loss", "grad", "min_norm_solution", *OPTIMIZERS]:
        assert callable(getattr(kernels, name)) and callable(getattr(naive, name))


# --------------------------------------------------------------------------- validation


def _bad_calls(X, t):
    w = np.zeros(X.shape[1])
    return [
        (TypeError, "X", lambda: kernels.gd(X.astype(np.int64), t, lr=0.1, steps=1)),
        (ValueError, "X", lambda: kernels.gd(X[0], t, lr=0.1, steps=1)),
        (ValueError, "t", lambda: kernels.gd(X, t[:-1], lr=0.1, steps=1)),
        (TypeError, "t", lambda: kernels.gd(X, t.astype(np.float32), lr=0.1, steps=1)),
        (ValueError, "w0", lambda: kernels.gd(X, t, lr=0.1, steps=1, w0=np.zeros(X.shape[1] + 1))),
        (ValueError, "w0", lambda: kernels.gd(X, t, lr=0.1, steps=1, w0=np.full(X.shape[1], np.inf))),
        (ValueError, "lr", lambda: kernels.gd(X, t, lr=0.0, steps=1)),
        (ValueError, "lr", lambda: kernels.gd(X, t, lr=-1.0, steps=1)),
        (ValueError, "lr", lambda: kernels.gd(X, t, lr=np.nan, steps=1)),
        (TypeError, "lr", lambda: kernels.gd(X, t, lr="0.1", steps=1)),
        (TypeError, "steps", lambda: kernels.gd(X, t, lr=0.1, steps=2.5)),
        (ValueError, "steps", lambda: kernels.gd(X, t, lr=0.1, steps=-1)),
        (ValueError, "l2", lambda: kernels.gd(X, t, lr=0.1, steps=1, l2=-0.1)),
        (ValueError, "weight_decay", lambda: kernels.gd(X, t, lr=0.1, steps=1, weight_decay=1.0)),
        (ValueError, "record_every", lambda: kernels.gd(X, t, lr=0.1, steps=1, record_every=-1)),
        (ValueError, "batch_size", lambda: kernels.sgd(X, t, lr=0.1, batch_size=0, steps=1)),
        (ValueError, "batch_size", lambda: kernels.sgd(X, t, lr=0.1, batch_size=X.shape[0] + 1, steps=1)),
        (TypeError, "batch_size", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2.0, steps=1)),
        (ValueError, "steps and epochs", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2, steps=1, epochs=1)),
        (ValueError, "steps and epochs", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2)),
        (TypeError, "epochs", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2, epochs=1.5)),
        (TypeError, "seed", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2, steps=1, seed=1.5)),
        (ValueError, "seed", lambda: kernels.sgd(X, t, lr=0.1, batch_size=2, steps=1, seed=-1)),
        (ValueError, "seed", lambda: kernels.adam(X, t, lr=0.1, steps=1, seed=-1)),
        (ValueError, "beta", lambda: kernels.rmsprop(X, t, lr=0.1, steps=1, beta=1.0)),
        (ValueError, "beta", lambda: kernels.rmsprop(X, t, lr=0.1, steps=1, beta=-0.1)),
        (ValueError, "eps", lambda: kernels.rmsprop(X, t, lr=0.1, steps=1, eps=-1e-8)),
        (ValueError, "eps", lambda: kernels.adagrad(X, t, lr=0.1, steps=1, eps=-1.0)),
        (ValueError, "beta1", lambda: kernels.adam(X, t, lr=0.1, steps=1, beta1=1.0)),
        (ValueError, "beta2", lambda: kernels.adam(X, t, lr=0.1, steps=1, beta2=1.5)),
        (ValueError, "batch_size", lambda: kernels.adam(X, t, lr=0.1, steps=1, batch_size=0)),
        (ValueError, "w", lambda: kernels.grad(X, t, np.zeros(X.shape[1] + 1))),
        (ValueError, "w", lambda: kernels.grad(X, t, np.full(X.shape[1], np.nan))),
        (ValueError, "w", lambda: kernels.loss(X, t, np.full(X.shape[1], -np.inf))),
        (TypeError, "w", lambda: kernels.loss(X, t, w.astype(np.float32))),
        (ValueError, "l2", lambda: kernels.loss(X, t, w, l2=np.inf)),
        (ValueError, "t", lambda: kernels.min_norm_solution(X, t[:3])),
    ]


def test_validation_names_the_argument(problem):
    X, t = problem
    for exc, name, fn in _bad_calls(X, t):
        with pytest.raises(exc, match=name):
            fn()


# --------------------------------------------------------------------------- properties

shapes = st.tuples(st.integers(1, 14), st.integers(1, 6), st.integers(0, 2**16))


@given(shape=shapes)
def test_property_grad_is_the_derivative_of_loss(shape):
    n, d, seed = shape
    X, t = make_problem(n, d, seed=seed)
    rng = np.random.default_rng(seed + 1)
    w, v = rng.standard_normal(d), rng.standard_normal(d)
    g = kernels.grad(X, t, w, l2=0.1)
    assert rel_err(g, naive.grad(X, t, w, l2=0.1)) <= 1e-12
    h = 1e-3
    fd = (kernels.loss(X, t, w + h * v, l2=0.1) - kernels.loss(X, t, w - h * v, l2=0.1)) / (2 * h)
    scale = np.abs(g) @ np.abs(v) + kernels.loss(X, t, w, l2=0.1) / h
    assert abs(fd - g @ v) <= 1e-9 * scale
    assert kernels.loss(X, t, w) >= 0.0


@given(
    shape=shapes,
    name=st.sampled_from(OPTIMIZERS),
    steps=st.integers(0, 20),
    record_every=st.integers(0, 4),
    batch_frac=st.floats(0.0, 1.0),
    full=st.booleans(),
)
def test_property_optimizers_match_reference(shape, name, steps, record_every, batch_frac, full):
    n, d, seed = shape
    X, t = make_problem(n, d, seed=seed)
    batch = None if (full and name != "sgd") else 1 + int(batch_frac * (n - 1))
    lr = safe_lr(X) if name in ("gd", "sgd") else 0.01
    kw = dict(lr=lr, steps=steps, record_every=record_every, seed=seed % 7, l2=0.01, weight_decay=0.001)
    if batch is not None:
        kw["batch_size"] = batch
    got = call(kernels, name, X, t, **kw)
    ref = call(naive, name, X, t, **kw)
    assert got.steps == ref.steps == steps and not got.diverged
    assert np.array_equal(got.recorded_steps, ref.recorded_steps)
    if record_every:
        assert rel_err(got.trajectory, ref.trajectory) <= 1e-12
    else:
        assert got.trajectory.shape == (0, d)
    assert rel_err(got.w, ref.w) <= 1e-12 and rel_err(got.losses, ref.losses) <= 1e-12
    if name == "gd" and record_every == 1:
        # a safe step never increases the loss of a quadratic
        assert np.all(np.diff(got.losses) <= 1e-12 * got.losses[0])


def test_sgd_epochs_beyond_int64_steps_are_refused_naming_epochs():
    X, t = np.ones((10, 2)), np.ones(10)
    with pytest.raises(ValueError, match="epochs"):
        kernels.sgd(X, t, lr=0.1, batch_size=1, epochs=2**62)
