"""Peer implementations with the same call signature as the kernels, for tests and benchmarks.

Each peer imports its library lazily, so ``kernels`` itself needs only numba and numpy. A peer
whose library is missing raises :class:`PeerUnavailable`; tests and benchmarks turn that into a
visible skip naming the library, never a silent pass.
"""

from __future__ import annotations

import importlib


class PeerUnavailable(ImportError):
    """The library a peer needs is not installed."""


def require(module: str):
    """Import ``module`` or raise :class:`PeerUnavailable` naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailable(f"peer library {module!r} is not installed: {exc}") from None


# --- convolution peers ---


def _scipy_signal_mode(x, w, stride, padding, dilation):
    """scipy.signal's mode for our padding, or an error for what scipy cannot express."""
    if x.ndim != 2:
        raise ValueError("scipy.signal peers take single-channel (H, W) images only")
    if stride not in (1, (1, 1)) or dilation not in (1, (1, 1)):
        raise ValueError("scipy.signal peers support stride 1 and dilation 1 only")
    mode = {0: "valid", (0, 0): "valid"}.get(padding, padding) if not isinstance(padding, str) else padding
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"scipy.signal peers support padding 'valid'/'same'/'full', got {padding!r}")
    if mode == "same" and (w.shape[0] % 2 == 0 or w.shape[1] % 2 == 0):
        # scipy centres an even filter with the extra row/column at the top/left, PyTorch (and
        # kernels) at the bottom/right: the results are shifted copies, not the same operation.
        raise ValueError("scipy.signal's 'same' centres even filters differently; use odd filters")
    return mode


def _into(res, out):
    if out is not None:
        out[...] = res
        return out
    return res


def correlate2d_scipy_signal(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """``scipy.signal.correlate2d`` (zero fill), for 2-D images at stride/dilation 1."""
    signal = require("scipy.signal")
    res = signal.correlate2d(x, w, mode=_scipy_signal_mode(x, w, stride, padding, dilation))
    if bias is not None:
        res += bias
    return _into(res, out)


def convolve2d_scipy_signal(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """``scipy.signal.convolve2d`` (zero fill), for 2-D images at stride/dilation 1."""
    signal = require("scipy.signal")
    res = signal.convolve2d(x, w, mode=_scipy_signal_mode(x, w, stride, padding, dilation))
    if bias is not None:
        res += bias
    return _into(res, out)


def correlate2d_scipy_ndimage(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """``scipy.ndimage.correlate`` with ``mode='constant', cval=0``: zero-padded 'same'
    correlation of a 2-D image with an odd filter (stride and dilation 1). ``out`` is passed as
    ndimage's own ``output=``, so it writes in place like the kernel does."""
    ndimage = require("scipy.ndimage")
    if x.ndim != 2 or padding != "same" or stride not in (1, (1, 1)) or dilation not in (1, (1, 1)):
        raise ValueError("the scipy.ndimage peer computes 2-D 'same' correlation at stride/dilation 1 only")
    if w.shape[0] % 2 == 0 or w.shape[1] % 2 == 0:
        raise ValueError("scipy.ndimage centres even filters differently; use odd filters")
    res = ndimage.correlate(x, w, output=out, mode="constant", cval=0.0)
    res = out if out is not None else res
    if bias is not None:
        res += bias
    return res


def _torch_padding(padding, w, dilation):
    if isinstance(padding, str):
        if padding == "full":
            d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
            return (d[0] * (w.shape[-2] - 1), d[1] * (w.shape[-1] - 1))
        return padding  # 'valid' and 'same' mean the same in torch (extra 'same' pixel bottom/right)
    return padding


def correlate2d_torch(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """``torch.nn.functional.conv2d`` on NumPy arrays (shared memory); 2-D images as (1, 1, H, W).
    PyTorch has no ``out=`` for conv2d, so a given ``out`` receives a copy."""
    import numpy as np

    torch = require("torch")
    plane = x.ndim == 2
    xt = torch.from_numpy(x)
    wt = torch.from_numpy(w)
    bt = None
    if bias is not None:
        bt = torch.from_numpy(np.asarray(bias, dtype=x.dtype).reshape(-1))
    if plane:
        xt, wt = xt[None, None], wt[None, None]
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=_torch_padding(padding, w, dilation),
                                   dilation=dilation)
    res = (y[0, 0] if plane else y).numpy()
    return _into(res, out)


def convolve2d_torch(x, w, bias=None, *, stride=1, padding=0, dilation=1, out=None):
    """True convolution with PyTorch: ``conv2d`` with the filter rotated by 180 degrees."""
    import numpy as np

    w = np.ascontiguousarray(np.asarray(w)[..., ::-1, ::-1])
    return correlate2d_torch(x, w, bias, stride=stride, padding=padding, dilation=dilation, out=out)


def correlate2d_backward_torch(grad_out, x, w, *, stride=1, padding=0, dilation=1):
    """``torch.ops.aten.convolution_backward``: the backward of conv2d alone, without autograd's
    graph bookkeeping, returning ``(grad_x, grad_w, grad_bias)`` like the kernel."""
    torch = require("torch")
    plane = x.ndim == 2
    gt, xt, wt = torch.from_numpy(grad_out), torch.from_numpy(x), torch.from_numpy(w)
    if plane:
        gt, xt, wt = gt[None, None], xt[None, None], wt[None, None]
    pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
    pad = padding
    if isinstance(padding, str):
        kh, kw = wt.shape[-2:]
        dh, dw = pair(dilation)
        eh, ew = dh * (kh - 1), dw * (kw - 1)
        if padding == "valid":
            pad = (0, 0)
        elif padding == "full":
            pad = (eh, ew)
        elif padding == "same":
            if eh % 2 or ew % 2:
                # aten's convolution takes symmetric padding; pad the odd pixel by hand
                xt = torch.nn.functional.pad(xt, (ew // 2, ew - ew // 2, eh // 2, eh - eh // 2))
                pad = (0, 0)
            else:
                pad = (eh // 2, ew // 2)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gt, xt, wt, [wt.shape[0]], list(pair(stride)), list(pair(pad)), list(pair(dilation)), False, [0, 0], 1,
        [True, True, True],
    )
    if isinstance(padding, str) and padding == "same" and xt.shape[-2:] != x.shape[-2:]:
        eh, ew = xt.shape[-2] - x.shape[-2], xt.shape[-1] - x.shape[-1]
        gx = gx[..., eh // 2 : eh // 2 + x.shape[-2], ew // 2 : ew // 2 + x.shape[-1]]
    if plane:
        return gx[0, 0].numpy(), gw[0, 0].numpy(), gb.reshape(()).numpy()
    return gx.numpy(), gw.numpy(), gb.numpy()

# --- max-pooling peers ---


def maxpool2d_torch(x, kernel_size=2, *, stride=None, padding=0, return_indices=False):
    """``torch.nn.functional.max_pool2d`` on NumPy arrays (shared memory, no copies)."""
    torch = require("torch")
    t = torch.from_numpy(x)
    plane = t.ndim == 2  # torch pools (C, H, W) and (N, C, H, W) only
    y = torch.nn.functional.max_pool2d(
        t[None] if plane else t, kernel_size, stride=stride, padding=padding, return_indices=return_indices
    )
    ys = y if return_indices else (y,)
    ys = tuple((a[0] if plane else a).numpy() for a in ys)
    return ys if return_indices else ys[0]


def maxpool2d_backward_torch(grad_y, indices, input_shape):
    """PyTorch's scatter-add of ``grad_y`` through ``indices`` into a zero ``grad_x``.

    PyTorch's own max-pool backward (``aten.max_pool2d_with_indices_backward``) also wants the
    window geometry, which this signature does not carry; ``scatter_add_`` along each flattened
    plane computes the same sums.
    """
    torch = require("torch")
    gy = torch.from_numpy(grad_y)
    idx = torch.from_numpy(indices)
    H, W = input_shape[-2:]
    planes = gy.numel() // max(gy.shape[-1] * gy.shape[-2], 1)
    gx = torch.zeros((planes, H * W), dtype=gy.dtype)
    gx.scatter_add_(1, idx.reshape(planes, -1), gy.reshape(planes, -1))
    return gx.reshape(tuple(input_shape)).numpy()

# --- linear regression and optimizer peers ---


def grad_torch(X, t, w, *, l2=0.0, out=None):
    """``2/n * X.T @ (X @ w - t) + 2 l2 w`` with PyTorch tensors (two passes over ``X``)."""
    torch = require("torch")
    Xt, tt, wt = (torch.from_numpy(a) for a in (X, t, w))
    g = 2 / X.shape[0] * Xt.T @ (Xt @ wt - tt)
    if l2:
        g = g + 2 * l2 * wt
    if out is not None:
        out[...] = g.numpy()
        return out
    return g.numpy()


def _optimize_torch(kind, X, t, *, lr, steps, epochs=None, batch_size, seed, w0, l2, weight_decay, record_every,
                    beta1=0.0, beta2=0.0, eps=0.0):
    """A PyTorch loop with manual updates and the semantics of :mod:`kernels.optim` (same
    batches from the same seed, recording, divergence), in float64 like the kernels."""
    import math

    import numpy as np

    torch = require("torch")

    from .optim import OptimResult, _run_checks

    X, t, steps, w0 = _run_checks(X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed,
                                  w0=w0, l2=l2, weight_decay=weight_decay, record_every=record_every)
    dtype = X.dtype
    Xt = torch.from_numpy(X.astype(np.float64, copy=False))
    tt = torch.from_numpy(t.astype(np.float64, copy=False))
    n, d = X.shape
    full = batch_size is None
    b = n if full else batch_size
    nbatches = -(-n // b)
    rng = np.random.default_rng(seed)
    w = torch.from_numpy(w0)
    w_prev = w
    m = torch.zeros(d, dtype=torch.float64)
    v = torch.zeros(d, dtype=torch.float64)
    losses, traj, rec = [], [], []
    done, diverged_at = 0, -1

    def full_loss(w):
        r = Xt @ w - tt
        return float(r @ r) / n + l2 * float(w @ w)

    with torch.no_grad():
        for s in range(steps):
            if full:
                Xb, tb = Xt, tt
            else:
                j = s % nbatches
                if j == 0:
                    perm = torch.from_numpy(rng.permutation(n))
                idx = perm[j * b:(j + 1) * b]
                Xb, tb = Xt[idx], tt[idx]
            mb = Xb.shape[0]
            r = Xb @ w - tb
            lb = float(r @ r) / mb + l2 * float(w @ w)
            if record_every and s % record_every == 0 and math.isfinite(lb):
                lf = lb if full else full_loss(w)
                if math.isfinite(lf):
                    losses.append(lf)
                    traj.append(w.numpy())
                    rec.append(s)
                lb = lf
            if not math.isfinite(lb):
                diverged_at = s
                if s > 0:
                    w, done = w_prev, s - 1
                break
            g = (2 / mb) * (Xb.T @ r) + (2 * l2) * w
            if kind == "gd":
                u = g
            elif kind == "rmsprop":
                v = beta2 * v + (1 - beta2) * g * g
                u = g / (v.sqrt() + eps)
            elif kind == "adagrad":
                v = v + g * g
                u = g / (v.sqrt() + eps)
            else:
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                k = s + 1
                u = m / (1 - beta1**k) / (v.sqrt() / math.sqrt(1 - beta2**k) + eps)
            w_new = (1 - weight_decay) * w - lr * u
            if not bool(torch.isfinite(w_new).all()):
                diverged_at, done = s + 1, s
                break
            w_prev, w, done = w, w_new, s + 1

        lf = full_loss(w)
        if diverged_at < 0 and not math.isfinite(lf):
            diverged_at = done
            if done > 0:
                w, done = w_prev, done - 1
                lf = full_loss(w)
    if record_every:
        if not rec or rec[-1] != done:
            losses.append(lf)
            traj.append(w.numpy())
            rec.append(done)
        trajectory = np.array(traj, dtype=dtype).reshape(len(traj), d)
    else:
        losses, rec = [lf], [done]
        trajectory = np.empty((0, d), dtype=dtype)
    return OptimResult(w=w.numpy().astype(dtype), losses=np.array(losses, dtype=np.float64),
                       trajectory=trajectory, recorded_steps=np.array(rec, dtype=np.int64), steps=done,
                       diverged=diverged_at >= 0, diverged_at=diverged_at)


def gd_torch(X, t, *, lr, steps, w0=None, l2=0.0, weight_decay=0.0, record_every=0):
    """Full-batch gradient descent as a PyTorch loop with manual updates."""
    return _optimize_torch("gd", X, t, lr=lr, steps=steps, batch_size=None, seed=0, w0=w0, l2=l2,
                           weight_decay=weight_decay, record_every=record_every)


def sgd_torch(X, t, *, lr, batch_size, steps=None, epochs=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
              record_every=0):
    """Mini-batch SGD as a PyTorch loop with manual updates, same batches as ``kernels.sgd``."""
    return _optimize_torch("gd", X, t, lr=lr, steps=steps, epochs=epochs, batch_size=batch_size, seed=seed,
                           w0=w0, l2=l2, weight_decay=weight_decay, record_every=record_every)


def rmsprop_torch(X, t, *, lr, beta=0.9, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
                  weight_decay=0.0, record_every=0):
    """RMSProp (equations (3)-(4)) as a PyTorch loop with manual updates."""
    return _optimize_torch("rmsprop", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                           weight_decay=weight_decay, record_every=record_every, beta2=beta, eps=eps)


def adagrad_torch(X, t, *, lr, eps=1e-10, steps, batch_size=None, seed=0, w0=None, l2=0.0, weight_decay=0.0,
                  record_every=0):
    """Adagrad as a PyTorch loop with manual updates."""
    return _optimize_torch("adagrad", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                           weight_decay=weight_decay, record_every=record_every, eps=eps)


def adam_torch(X, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, steps, batch_size=None, seed=0, w0=None, l2=0.0,
               weight_decay=0.0, record_every=0):
    """Adam (bias-corrected) as a PyTorch loop with manual updates."""
    return _optimize_torch("adam", X, t, lr=lr, steps=steps, batch_size=batch_size, seed=seed, w0=w0, l2=l2,
                           weight_decay=weight_decay, record_every=record_every, beta1=beta1, beta2=beta2,
                           eps=eps)


# --- hypergradient peers ---
def _hypergrad_inputs(X, t, w0, X_val, t_val):
    import numpy as np

    X = np.ascontiguousarray(X, dtype=np.float64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    w0 = np.zeros(X.shape[1]) if w0 is None else np.ascontiguousarray(w0, dtype=np.float64)
    if X_val is not None:
        X_val = np.ascontiguousarray(X_val, dtype=np.float64)
        t_val = np.ascontiguousarray(t_val, dtype=np.float64)
    return X, t, w0, X_val, t_val


def hypergrad_torch(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse",
                    checkpoints=None):
    """PyTorch autograd through the same unrolled loop, in float64: ``lr`` and ``l2`` are
    leaf tensors with ``requires_grad=True``, ``w_{k+1} = w_k - lr ((2/n) X^T (X w_k - t) +
    2 l2 w_k)``, and ``backward()`` on the objective (``L~(w_T)``, or the validation error
    without an ``l2`` term). ``method``/``checkpoints`` are accepted for the signature and
    ignored; ``bytes_stored`` is ``None`` (not measured). No divergence detection."""
    import math

    from kernels.hypergrad import HypergradResult

    torch = require("torch")
    X, t, w0, X_val, t_val = _hypergrad_inputs(X, t, w0, X_val, t_val)
    Xt, tt = torch.from_numpy(X), torch.from_numpy(t)
    lr_t = torch.tensor(float(lr), dtype=torch.float64, requires_grad=True)
    l2_t = torch.tensor(float(l2), dtype=torch.float64, requires_grad=True)
    n = X.shape[0]
    w = torch.from_numpy(w0.copy())
    for _ in range(steps):
        g = (2.0 / n) * (Xt.T @ (Xt @ w - tt)) + 2.0 * l2_t * w
        w = w - lr_t * g
    if X_val is None:
        r = Xt @ w - tt
        obj = (r @ r) / n + l2_t * (w @ w)
    else:
        r = torch.from_numpy(X_val) @ w - torch.from_numpy(t_val)
        obj = (r @ r) / X_val.shape[0]
    d_lr, d_l2 = torch.autograd.grad(obj, (lr_t, l2_t), allow_unused=True)
    d_l2 = 0.0 if d_l2 is None else float(d_l2)
    return HypergradResult(loss=float(obj.detach()), d_lr=float(d_lr) if d_lr is not None else math.nan, d_l2=d_l2,
                           w=w.detach().numpy().copy(), bytes_stored=None, method="torch", steps=steps)


_JAX_HYPERGRAD = {}


def _jax_hypergrad_fn():
    """``jax.jit(jax.value_and_grad(unrolled))`` built once (``steps`` and the presence of a
    validation set are static), so repeated calls of the same shape reuse the compiled code.
    Turns on ``jax_enable_x64`` (process-wide) so the loop runs in float64."""
    if "fn" not in _JAX_HYPERGRAD:
        jax = require("jax")
        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy

        def unrolled(hyper, X, t, w0, X_val, t_val, steps, has_val):
            lr, l2 = hyper[0], hyper[1]
            n = X.shape[0]

            def body(_, w):
                return w - lr * ((2.0 / n) * (X.T @ (X @ w - t)) + 2.0 * l2 * w)

            w = jax.lax.fori_loop(0, steps, body, w0)
            if has_val:
                r = X_val @ w - t_val
                return (r @ r) / X_val.shape[0]
            r = X @ w - t
            return (r @ r) / n + l2 * (w @ w)

        _JAX_HYPERGRAD["fn"] = jax.jit(jax.value_and_grad(unrolled), static_argnums=(6, 7))
        _JAX_HYPERGRAD["jnp"] = jnp
    return _JAX_HYPERGRAD["fn"], _JAX_HYPERGRAD["jnp"]


def hypergrad_jax(X, t, *, lr, l2=0.0, steps, w0=None, X_val=None, t_val=None, method="reverse",
                  checkpoints=None):
    """``jax.jit(jax.value_and_grad(...))`` of the same unrolled loop (``lax.fori_loop``,
    reverse mode), float64. The first call for a shape compiles; later calls reuse it. ``w``
    is not returned (``None``), ``bytes_stored`` is ``None``; no divergence detection."""
    from kernels.hypergrad import HypergradResult

    fn, jnp = _jax_hypergrad_fn()
    X, t, w0, X_val, t_val = _hypergrad_inputs(X, t, w0, X_val, t_val)
    has_val = X_val is not None
    if not has_val:
        X_val, t_val = X[:1], t[:1]  # placeholders of a fixed shape; unused
    obj, grads = fn(jnp.asarray([float(lr), float(l2)]), jnp.asarray(X), jnp.asarray(t), jnp.asarray(w0),
                    jnp.asarray(X_val), jnp.asarray(t_val), int(steps), has_val)
    grads = grads.block_until_ready()
    return HypergradResult(loss=float(obj), d_lr=float(grads[0]), d_l2=float(grads[1]), w=None, bytes_stored=None,
                           method="jax", steps=steps)
