"""Numerical limits: float32 against float64 within the documented bounds
(:func:`float32_errors`; the bounds are derived in :mod:`kernels.apps.reliability`'s docstring),
the reverse hypergradient refusing a trajectory larger than memory (:func:`memory_refusal`),
and every optimizer stopping at its first non-finite iterate (:func:`divergence`)."""

from __future__ import annotations

import numpy as np

U32 = float(2.0**-24)
#: Convolution in float32: error per summed product, in units of the magnitude ``|x| * |w| + |b|``.
CONV_FLOAT32_BOUND_PER_TERM = U32
#: Gradient in float32: the error bound in units of ``S`` (module docstring).
GRAD_FLOAT32_BOUND = 4 * U32


def float32_errors(seed=0) -> dict:
    """float32 against float64 for the convolution (forward paths) and the gradient, in units of
    the documented bounds' scales (module docstring). ``ratio`` = worst error / bound (<= 1)."""
    import kernels

    rng = np.random.default_rng(seed)
    out = {"unit_roundoff": U32, "conv": [], "grad": []}
    conv_cases = [
        ("2-D 3x3 same", (64, 80), (3, 3), {}, dict(padding="same")),
        ("batch 3x3 pad 1", (2, 8, 16, 16), (4, 8, 3, 3), {"bias": True}, dict(padding=1)),
        ("batch 5x5 stride 2", (2, 16, 17, 15), (3, 16, 5, 5), {"bias": True}, dict(stride=2, padding=2)),
        ("batch 3x3 C_in 64", (1, 64, 12, 12), (4, 64, 3, 3), {}, dict(padding=0)),
    ]
    for label, xs, ws, extra, kw in conv_cases:
        x64, w64 = rng.standard_normal(xs), rng.standard_normal(ws)
        b64 = rng.standard_normal(ws[0]) if extra.get("bias") else None
        b32 = None if b64 is None else b64.astype(np.float32)
        y64 = kernels.correlate2d(x64, w64, b64, **kw)
        y32 = kernels.correlate2d(x64.astype(np.float32), w64.astype(np.float32), b32, **kw)
        scale = kernels.correlate2d(np.abs(x64), np.abs(w64), None if b64 is None else np.abs(b64), **kw)
        m = int(np.prod(ws[-3:])) if len(ws) == 4 else int(np.prod(ws))
        err = np.abs(y32.astype(np.float64) - y64) / scale
        bound = (m + 3) * CONV_FLOAT32_BOUND_PER_TERM
        out["conv"].append(dict(case=label, terms=m, max_error=float(err.max()), rms_error=float(np.sqrt(np.mean(err**2))),
                                bound=bound, ratio=float(err.max() / bound),
                                max_relative_error=float(np.max(np.abs(y32 - y64) / np.maximum(np.abs(y64), 1e-300)))))
    for n, d, l2 in ((500, 20, 0.0), (3000, 50, 0.1), (200, 400, 0.01)):
        X = rng.standard_normal((n, d))
        w = rng.standard_normal(d)
        t = X @ rng.standard_normal(d) + rng.standard_normal(n)
        g64 = kernels.grad(X, t, w, l2=l2)
        g32 = kernels.grad(X.astype(np.float32), t.astype(np.float32), w.astype(np.float32), l2=l2)
        S = (2.0 / n) * (np.abs(X).T @ (np.abs(X) @ np.abs(w) + np.abs(t))) + 2 * l2 * np.abs(w)
        err = np.abs(g32.astype(np.float64) - g64) / S
        out["grad"].append(dict(case=f"n={n} d={d} l2={l2}", max_error=float(err.max()), rms_error=float(np.sqrt(np.mean(err**2))),
                                bound=GRAD_FLOAT32_BOUND, ratio=float(err.max() / GRAD_FLOAT32_BOUND),
                                max_relative_error=float(np.max(np.abs(g32 - g64) / np.abs(g64)))))
    out["ok"] = all(r["ratio"] <= 1.0 for r in out["conv"] + out["grad"])
    return out


def memory_refusal() -> dict:
    """Ask the reverse hypergradient for a trajectory larger than the memory available."""
    import importlib

    import kernels

    hg = importlib.import_module("kernels.hypergrad")  # the module, not the function of that name
    X = np.ones((4, 3))
    t = np.ones(4)
    steps = 10**13
    try:
        kernels.hypergrad(X, t, lr=0.01, steps=steps, method="reverse")
    except MemoryError as exc:
        return {"steps": steps, "d": 3, "refused": True, "exception": type(exc).__name__,
                "is_value_error": isinstance(exc, ValueError), "message": str(exc),
                "available_bytes": hg.available_memory(), "margin": hg.MEMORY_MARGIN}
    return {"steps": steps, "d": 3, "refused": False}


def divergence(seed=0) -> dict:
    """Every optimizer on a problem it cannot survive (lr far too large): where it stops, and
    that this is the *first* non-finite iterate (the same run one step shorter is finite and
    ends on the very weights returned)."""
    import kernels

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 5)) * 1e3
    t = rng.standard_normal(40)
    runs = {
        "gd": lambda s: kernels.gd(X, t, lr=1e3, steps=s),
        "sgd": lambda s: kernels.sgd(X, t, lr=1e3, batch_size=8, steps=s, seed=1),
        "rmsprop": lambda s: kernels.rmsprop(X, t, lr=1e300, steps=s, eps=0.0),
        "adagrad": lambda s: kernels.adagrad(X, t, lr=1e300, steps=s, eps=0.0),
        "adam": lambda s: kernels.adam(X, t, lr=1e300, steps=s, beta1=0.0, eps=0.0),
    }
    out = {}
    for name, run in runs.items():
        r = run(1000)
        k = r.diverged_at
        shorter = run(max(k - 1, 0)) if k >= 1 else None
        first = (r.diverged and k >= 1 and shorter is not None and not shorter.diverged
                 and np.array_equal(shorter.w, r.w) and bool(np.all(np.isfinite(r.w))))
        out[name] = {"diverged": bool(r.diverged), "diverged_at": int(k), "steps_returned": int(r.steps),
                     "w_finite": bool(np.all(np.isfinite(r.w))), "first": bool(first)}
    out["ok"] = all(v["first"] for v in out.values() if isinstance(v, dict))
    return out
