"""Benchmarks for kernels.hypergrad (issue 4), side by side in one run, compilation excluded.

Group ``hypergrad|200x500 T1000|float64``: T = 1000 steps of gradient descent on X (200, 500),
lr = 1e-3, l2 = 1e-2, objective L~(w_T), all impls on the same inputs:

- ``forward_pass``: :func:`kernels.unrolled_loss`, the plain forward pass (the loss only) --
  the time baseline;
- ``reverse``, ``forward``, ``checkpoint``, ``exact``: :func:`kernels.hypergrad` with that
  method (validation, forward pass, storage and reverse pass all included);
- ``numpy``: the naive NumPy reverse pass :func:`kernels.naive.hypergrad`;
- ``jax``: ``jax.jit(jax.value_and_grad(...))`` of the same unrolled loop (``lax.fori_loop``,
  float64), compiled by the warm-up call (:func:`kernels.peers.hypergrad_jax`).

Group ``hypergrad|200x500 T100000|float64``: ``exact`` against ``reverse`` at T = 100000 (the
reverse trajectory is 100001 x 500 float64 = 400 MB). Few rounds (``benchmark.pedantic``); the
warm-up calls use 10 steps, which compiles the same code (Numba specialises on types, not on
T) without paying for a second long run.

Group ``hypergrad rmsprop|200x500 T1000|float64`` (issue 15): the same problem and horizon
through RMSProp (``beta`` = 0.9, ``eps`` = 1e-8; lr = 1e-3, l2 = 1e-2), every hyper-parameter
differentiated (``lr``, ``l2``, ``weight_decay``, ``beta``, ``eps``):

- ``rmsprop``: :func:`kernels.rmsprop`, the plain run (the time baseline);
- ``reverse``, ``checkpoint``, ``forward``: :func:`kernels.hypergrad` with ``optimizer="rmsprop"``;
- ``jax``: ``jax.jit(jax.value_and_grad(...))`` of the same unrolled RMSProp loop
  (``lax.fori_loop``, float64) in the five hyper-parameters, compiled by the warm-up call;
  ``pytest.skip`` with the reason when JAX is not installed (its bar then reads NOT RUN).

``extra_info["flops"]`` is the nominal arithmetic of the forward pass, 4 n d T (a dot product
and an axpy per row per step), for orientation; no roofline bar applies here.
``KERNELS_BENCH_QUICK=1`` shrinks T to a smoke size (and so the groups, whose bars then read
NOT RUN).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import kernels

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
N, D = 200, 500
LR, L2 = 1e-3, 1e-2
T_SHORT = 50 if QUICK else 1000
T_LONG = 500 if QUICK else 100_000
G_SHORT = f"hypergrad|{N}x{D} T{T_SHORT}|float64"
G_LONG = f"hypergrad|{N}x{D} T{T_LONG}|float64"

BARS = [
    dict(issue=4, text="T=1000 on (200, 500): reverse (forward + store + reverse pass) at most 2.5x the plain forward pass",
         group="hypergrad|200x500 T1000|float64", impl="reverse", versus=("forward_pass",), min_speedup=1 / 2.5),
    dict(issue=4, text="T=1000 on (200, 500): forward mode at most 1.5x the plain forward pass",
         group="hypergrad|200x500 T1000|float64", impl="forward", versus=("forward_pass",), min_speedup=1 / 1.5),
    dict(issue=4, text="T=1000 on (200, 500): checkpoint at most 1.6x reverse",
         group="hypergrad|200x500 T1000|float64", impl="checkpoint", versus=("reverse",), min_speedup=1 / 1.6),
    dict(issue=4, text="T=1000 on (200, 500): reverse at least 1.2x faster than jax.jit(jax.grad) of the unrolled loop",
         group="hypergrad|200x500 T1000|float64", impl="reverse", versus=("jax",), min_speedup=1.2),
    dict(issue=4, text="T=100000 on (200, 500): exact at least 100x faster than reverse",
         group="hypergrad|200x500 T100000|float64", impl="exact", versus=("reverse",), min_speedup=100.0),
    dict(issue=15, text="RMSProp T=1000 on (200, 500): reverse-mode hypergradient at most 3x the plain RMSProp run",
         group="hypergrad rmsprop|200x500 T1000|float64", impl="reverse", versus=("rmsprop",), min_speedup=1 / 3),
    dict(issue=15, text="RMSProp T=1000 on (200, 500): reverse at least 1.2x faster than jax.jit(jax.grad) of the "
                        "same loop",
         group="hypergrad rmsprop|200x500 T1000|float64", impl="reverse", versus=("jax",), min_speedup=1.2),
]

SHORT_IMPLS = ["forward_pass", "reverse", "forward", "checkpoint", "exact", "numpy", "jax"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    t = rng.standard_normal(N)
    return X, t


def _impl(name, catalog):
    if name == "forward_pass":
        return catalog("unrolled_loss", "numba")  # the kernel, labelled by its role as the baseline
    if name in ("numpy", "jax"):
        return catalog("hypergrad", name)
    # the kernel with one method chosen (a label per method, for the bars), not a catalog entry
    return lambda X, t, **kw: kernels.hypergrad(X, t, method=name, **kw)


def _info(benchmark, impl, steps):
    benchmark.extra_info.update(impl=impl, steps=steps, flops=4 * N * D * steps)


@pytest.mark.parametrize("impl", SHORT_IMPLS)
def test_hypergrad_short(benchmark, impl, data, catalog):
    X, t = data
    f = _impl(impl, catalog)
    kw = dict(lr=LR, l2=L2, steps=T_SHORT)
    f(X, t, **kw)  # compile (or trace, for jax) outside the timing
    benchmark.group = G_SHORT
    _info(benchmark, impl, T_SHORT)
    res = benchmark(f, X, t, **kw)
    assert np.isfinite(res.loss) and not res.diverged


@pytest.mark.parametrize("impl", ["reverse", "exact"])
def test_hypergrad_long(benchmark, impl, data, catalog):
    X, t = data
    f = _impl(impl, catalog)
    kw = dict(lr=LR, l2=L2, steps=T_LONG)
    f(X, t, lr=LR, l2=L2, steps=10)  # compiles the same specialisation cheaply
    benchmark.group = G_LONG
    _info(benchmark, impl, T_LONG)
    res = benchmark.pedantic(f, args=(X, t), kwargs=kw, rounds=3 if impl == "exact" else 2, iterations=1,
                             warmup_rounds=1 if impl == "exact" else 0)
    assert np.isfinite(res.loss) and np.isfinite(res.d_lr) and not res.diverged


# --- RMSProp (issue 15) ---------------------------------------------------------------------

G_RMS = f"hypergrad rmsprop|{N}x{D} T{T_SHORT}|float64"
RMS_IMPLS = ["rmsprop", "reverse", "checkpoint", "forward", "jax"]
_JAX_RMS = {}


def _jax_rmsprop():
    """``jax.jit(jax.value_and_grad(loss))`` of ``steps`` unrolled RMSProp steps in
    ``(lr, l2, weight_decay, beta, eps)``, float64; built once."""
    jax = pytest.importorskip("jax", reason="JAX is an optional peer (pip install 'jax[cpu]')")
    if "fn" not in _JAX_RMS:
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        def loss(hyper, X, t, steps):
            lr, l2, wd, beta, eps = hyper
            n = X.shape[0]

            def body(_, carry):
                w, v = carry
                g = (2.0 / n) * (X.T @ (X @ w - t)) + 2.0 * l2 * w
                v = beta * v + (1.0 - beta) * g * g
                return (1.0 - wd) * w - lr * g / (jnp.sqrt(v) + eps), v

            w0 = jnp.zeros(X.shape[1])
            w, _ = jax.lax.fori_loop(0, steps, body, (w0, jnp.zeros_like(w0)))
            r = X @ w - t
            return (r @ r) / n + l2 * (w @ w)

        _JAX_RMS["fn"] = jax.jit(jax.value_and_grad(loss), static_argnums=(3,))
        _JAX_RMS["jnp"] = jnp
    return _JAX_RMS["fn"], _JAX_RMS["jnp"]


def _rms_impl(name):
    kw = dict(lr=LR, l2=L2, steps=T_SHORT)
    if name == "rmsprop":
        return lambda X, t: kernels.rmsprop(X, t, **kw)
    if name == "jax":
        fn, jnp = _jax_rmsprop()

        def run(X, t):
            value, grads = fn(jnp.array([LR, L2, 0.0, 0.9, 1e-8]), X, t, T_SHORT)
            return float(value), [float(g) for g in grads]

        return run
    return lambda X, t: kernels.hypergrad(X, t, optimizer="rmsprop", method=name, **kw)


@pytest.mark.parametrize("impl", RMS_IMPLS)
def test_hypergrad_rmsprop(benchmark, impl, data):
    X, t = data
    f = _rms_impl(impl)
    if impl == "jax":
        import jax.numpy as jnp

        X, t = jnp.asarray(X), jnp.asarray(t)  # on the device once, as a JAX user holds them
    first = f(X, t)  # compile (or trace) outside the timing
    benchmark.group = G_RMS
    _info(benchmark, impl, T_SHORT)
    benchmark(f, X, t)
    if impl == "jax":
        # the peer computes the same numbers; checked at 30 steps, before RMSProp reaches its
        # noise floor on this d > n problem: there its steps are ~ lr sign(g), a chaotic map that
        # amplifies last-bit differences (the hypergradient at T = 1000 is ~1e31 and two correct
        # implementations agree on the loss to only ~2%)
        fn, jnp = _jax_rmsprop()
        value, grads = fn(jnp.array([LR, L2, 0.0, 0.9, 1e-8]), X, t, 30)
        ref = kernels.hypergrad(np.asarray(X), np.asarray(t), optimizer="rmsprop", lr=LR, l2=L2, steps=30)
        assert abs(float(value) - ref.loss) <= 1e-10 * abs(ref.loss)
        for g, name in zip(grads, ("lr", "l2", "weight_decay", "beta", "eps")):
            assert abs(float(g) - ref.grads[name]) <= 1e-7 * abs(ref.grads[name]), name
    elif impl != "rmsprop":
        assert not first.diverged and set(first.grads) == {"lr", "l2", "weight_decay", "beta", "eps"}
