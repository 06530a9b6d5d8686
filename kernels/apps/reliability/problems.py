"""Every public function of the library on fixed, seeded inputs: the calls that the determinism
and concurrency checks (:mod:`.fingerprint`, :mod:`.threads`) hash and compare."""

from __future__ import annotations

import numpy as np


def _problems(seed=0):
    """Seeded inputs per kernel, large enough to span several parallel tiles/blocks."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((150, 130))
    xb = rng.standard_normal((2, 3, 20, 24))
    wb = rng.standard_normal((5, 3, 3, 3))
    w5 = rng.standard_normal((2, 3, 5, 4))
    X = rng.standard_normal((1100, 12))  # > 4 blocks of REDUCTION_BLOCK rows
    t = X @ rng.standard_normal(12) + 0.1 * rng.standard_normal(1100)
    Xh = rng.standard_normal((30, 8))
    th = Xh @ rng.standard_normal(8)
    # above kernels.optim's _PARALLEL_MIN_BYTES (32 MiB): the passes really run in parallel blocks
    XL = rng.standard_normal((66_000, 64))
    tL = rng.standard_normal(66_000)
    return dict(img=img, xb=xb, wb=wb, w5=w5, X=X, t=t, Xh=Xh, th=th, k3=rng.standard_normal((3, 3)), XL=XL, tL=tL)


def _calls(p, dtype=np.float64):
    """``{name: zero-argument callable}`` covering every public function and its main paths."""
    import kernels
    from kernels import arch

    c = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    X, t = c["X"], c["t"]
    Xh, th = p["Xh"], p["th"]

    def pool_bwd():
        y, i = kernels.maxpool2d(c["xb"], 3, stride=2, padding=1, return_indices=True)
        return kernels.maxpool2d_backward(np.ones_like(y), i, c["xb"].shape)

    lr_h = 0.5 * kernels.critical_lr(Xh)
    calls = {
        "correlate2d[2d same]": lambda: kernels.correlate2d(c["img"], c["k3"], padding="same"),
        "correlate2d[batch 3x3]": lambda: kernels.correlate2d(c["xb"], c["wb"], padding=1),
        "correlate2d[strided dilated]": lambda: kernels.correlate2d(c["xb"], c["w5"], stride=2, padding=(1, 2), dilation=(1, 2)),
        "convolve2d": lambda: kernels.convolve2d(c["img"], c["k3"], padding="full"),
        "correlate2d_backward[stride 1]": lambda: kernels.correlate2d_backward(
            np.ones((2, 5, 20, 24), dtype), c["xb"], c["wb"], padding=1),
        "correlate2d_backward[stride 2]": lambda: kernels.correlate2d_backward(
            np.ones((2, 2, 8, 12), dtype), c["xb"], c["w5"], stride=2, padding=(0, 1)),
        "maxpool2d[2x2]": lambda: kernels.maxpool2d(c["xb"], 2, return_indices=True),
        "maxpool2d[3x3 s2 p1]": lambda: kernels.maxpool2d(c["xb"], 3, stride=2, padding=1),
        "maxpool2d_backward": pool_bwd,
        "loss": lambda: kernels.loss(X, t, np.ones(12, dtype), l2=0.1),
        "grad": lambda: kernels.grad(X, t, np.ones(12, dtype), l2=0.1),
        "loss[33 MiB]": lambda: kernels.loss(c["XL"], c["tL"], np.ones(64, dtype)),
        "grad[33 MiB]": lambda: kernels.grad(c["XL"], c["tL"], np.ones(64, dtype), l2=0.1),
        "gd[33 MiB]": lambda: kernels.gd(c["XL"], c["tL"], lr=0.05, steps=3, record_every=1),
        "min_norm_solution": lambda: kernels.min_norm_solution(X, t),
        "gd": lambda: kernels.gd(X, t, lr=0.05, steps=20, record_every=5),
        "sgd": lambda: kernels.sgd(X, t, lr=0.01, batch_size=300, epochs=3, seed=7, record_every=4),
        "rmsprop": lambda: kernels.rmsprop(X, t, lr=0.01, steps=20, batch_size=600, seed=3),
        "adagrad": lambda: kernels.adagrad(X, t, lr=0.1, steps=20),
        "adam": lambda: kernels.adam(X, t, lr=0.01, steps=20, batch_size=64, seed=1, weight_decay=0.01),
        "hypergrad[reverse]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40),
        "hypergrad[checkpoint]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="checkpoint"),
        "hypergrad[checkpoint rmsprop]": lambda: kernels.hypergrad(Xh, th, lr=0.1 * lr_h, l2=0.01, steps=40,
                                                                   method="checkpoint", optimizer="rmsprop"),
        "hypergrad[forward]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="forward"),
        "hypergrad[exact]": lambda: kernels.hypergrad(Xh, th, lr=lr_h, l2=0.01, steps=40, method="exact"),
        "optimal_lr_one_step": lambda: kernels.optimal_lr_one_step(Xh, th),
        "tune_lr": lambda: kernels.tune_lr(Xh, th, lr0=0.1 * lr_h, steps=5, meta_steps=3, meta_lr=0.5),
        "unroll_graph": lambda: kernels.unroll_graph(3),
        "arch.analyze": lambda: arch.analyze(arch.parse("in32x32x3 conv3c8 pool2 conv3s2p1c16 fc10")),
        "arch.to_dense": lambda: arch.to_dense("in16x16x1 conv3 pool2 conv3"),
    }
    return calls
