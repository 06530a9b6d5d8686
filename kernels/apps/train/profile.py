"""Per-layer time of a training step, for kernels.nn and for its PyTorch twin: forward and
backward of each layer, the loss, and the optimizer update, summed over the batches of one
epoch and reported per step.

kernels.nn: each layer object's ``forward``/``backward`` timed in turn (the same calls
``Model._loss_and_grad`` makes, with the same thread choice), or, for a batch that runs as one
compiled call, each row of its program. PyTorch: each module run on a
detached copy of its input, so that its backward can be timed alone
(``out.backward(grad)``); the detaching adds no arithmetic. Both with ``time.perf_counter``
around synchronous CPU calls.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from kernels.nn import program as _program
from kernels.nn.loss import softmax_cross_entropy
from kernels.nn.threads import single_threaded


def kernels_breakdown(model, trainer, X, y, batches):
    """``OrderedDict(label -> [forward s, backward s])`` plus ``"loss"`` and ``"update"``, per step.

    Each batch takes the path ``Model._loss_and_grad`` takes: layer by layer, or the compiled
    program (:mod:`kernels.nn.program`: its rows timed one call each, over the batch's images)."""
    layers = model.layers
    fw, bw = np.zeros(len(layers)), np.zeros(len(layers))
    loss_t = upd_t = 0.0
    for idx in batches:
        xb, yb = X[idx], y[idx]
        program = model._compiled(len(idx))
        timed = _program_pass if program is not None else _layer_pass
        loss_t += timed(model, program, xb, yb, fw, bw)
        t0 = time.perf_counter()
        trainer._update(len(idx))
        trainer.k += 1
        upd_t += time.perf_counter() - t0
    n = len(batches)
    out = OrderedDict()
    counts = {}
    for i, layer in enumerate(layers):
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        out[f"{layer.kind}{counts[layer.kind]}"] = [fw[i] / n, bw[i] / n]
    out["loss"] = [loss_t / n, 0.0]
    out["update"] = [upd_t / n, 0.0]
    return out


def _layer_pass(model, _program, xb, yb, fw, bw):
    """One pass layer by layer, each layer's time added into ``fw``/``bw``; returns the loss's."""
    layers = model.layers
    with single_threaded(model._small(len(xb))):
        a = xb.copy() if model._copy_input else xb
        for i, layer in enumerate(layers):
            t0 = time.perf_counter()
            a = layer.forward(a, True)
            fw[i] += time.perf_counter() - t0
        t0 = time.perf_counter()
        z = np.ascontiguousarray(a.reshape(a.shape[0], -1))
        _, gz = softmax_cross_entropy(z, yb)
        loss_t = time.perf_counter() - t0
        h, w, c = model.rows[-1].out_shape
        g = gz.reshape(gz.shape[0], c, h, w)
        for i in range(len(layers) - 1, -1, -1):
            t0 = time.perf_counter()
            g = layers[i].backward(g, need_gx=i > 0)
            bw[i] += time.perf_counter() - t0
    return loss_t


def _program_pass(model, program, xb, yb, fw, bw):
    """The same for a pass on the compiled program: one call per row (the input's copy counted
    with the first row, zeroing the gradients with the loss)."""
    n = len(xb)
    args = (program.act, program.iwork, model.flat_params, program.xp, program.wide, n)
    back = (program.act, program.gact, program.iwork, model.flat_params, model.flat_grads, program.xp, program.wide,
            program.gxp, n)
    for i in range(len(model.layers)):
        t0 = time.perf_counter()
        if i == 0:
            program.act[: xb.size] = xb.reshape(-1)
        _program._row_forward(program.prog, i, *args)
        fw[i] += time.perf_counter() - t0
    t0 = time.perf_counter()
    _program._loss_kernel(program.prog, yb, program.act, program.gact, n)
    model.flat_grads[...] = 0
    loss_t = time.perf_counter() - t0
    for i in range(len(model.layers) - 1, -1, -1):
        t0 = time.perf_counter()
        _program._row_backward(program.prog, i, *back)
        bw[i] += time.perf_counter() - t0
    return loss_t


def torch_breakdown(net, opt, Xt, yt, batches):
    """The same table for the PyTorch twin (``ZeroPad2d`` counted with its ``Conv2d``, ``Flatten``
    with its ``Linear``)."""
    import torch

    mods = list(net)
    labels, counts = [], {}
    for m in mods:
        kind = {"ZeroPad2d": "conv", "Conv2d": "conv", "ReLU": "relu", "MaxPool2d": "pool", "Flatten": "fc",
                "Linear": "fc"}[type(m).__name__]
        if type(m).__name__ in ("Conv2d", "ReLU", "MaxPool2d", "Linear"):
            counts[kind] = counts.get(kind, 0) + 1
            labels.append(f"{kind}{counts[kind]}")
        else:  # a pad or a flatten belongs to the layer after it
            labels.append(f"{kind}{counts.get(kind, 0) + 1}")
    upstream = [any(p.requires_grad for m in mods[:i] for p in m.parameters()) for i in range(len(mods))]
    fw, bw = np.zeros(len(mods)), np.zeros(len(mods))
    loss_t = upd_t = 0.0
    for idx in batches:
        xb, yb = Xt[idx], yt[idx]
        t0 = time.perf_counter()
        opt.zero_grad()
        upd_t += time.perf_counter() - t0
        a = xb
        ins, outs = [], []
        for i, m in enumerate(mods):
            # as autograd would: an input gradient only where a parameter lies upstream
            inp = a.detach().requires_grad_(upstream[i])
            t0 = time.perf_counter()
            a = m(inp)
            fw[i] += time.perf_counter() - t0
            ins.append(inp)
            outs.append(a)
        z = a.detach().requires_grad_()
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(z, yb)
        loss.backward()
        loss_t += time.perf_counter() - t0
        g = z.grad
        for i in range(len(mods) - 1, -1, -1):
            if not outs[i].requires_grad:
                break
            t0 = time.perf_counter()
            outs[i].backward(g)
            bw[i] += time.perf_counter() - t0
            g = ins[i].grad
        t0 = time.perf_counter()
        opt.step()
        upd_t += time.perf_counter() - t0
    n = len(batches)
    out = OrderedDict()
    for label, f, b in zip(labels, fw, bw):
        prev = out.get(label, [0.0, 0.0])
        out[label] = [prev[0] + f / n, prev[1] + b / n]
    out["loss"] = [loss_t / n, 0.0]
    out["update"] = [upd_t / n, 0.0]
    return out
