"""The PyTorch twin of a :class:`kernels.nn.Model`: the same layers, weights and batches, trained
the way a PyTorch user would (eager mode, ``torch.optim``, ``zero_grad / loss.backward / step``).

Used by ``python -m kernels train``, ``bench/bench_nn.py`` and ``tests/test_nn.py``. Imports
torch lazily (inside the functions).
"""

from __future__ import annotations

import numpy as np

__all__ = ["torch_sequential", "torch_optimizer", "torch_step", "torch_epoch"]


def torch_sequential(model):
    """A ``torch.nn.Sequential`` of the model's spec, token by token, holding copies of its
    current weights: each conv is ``ZeroPad2d`` (the spec's padding, asymmetric for an even
    ``'same'``; left out when zero) then ``Conv2d(padding=0)``; ``relu`` is ``ReLU``, ``pool``
    ``MaxPool2d``, ``fc`` ``Flatten`` then ``Linear``, and ``Unflatten`` back to ``(units, 1, 1)``
    where a conv or pool follows; a final ``Flatten`` where the spec ends on a map (the logits
    are the last layer's outputs, flattened). The order is the spec's, as a PyTorch user writes
    it (``kernels.nn`` itself pools before rectifying where a relu precedes a pool)."""
    import torch

    from kernels import arch

    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    mods = []
    flat = False  # whether the running tensor is (N, features) rather than (N, C, H, W)
    for layer, row in zip(arch.parse(model.spec)[1:], model.rows[1:]):
        if flat and isinstance(layer, (arch.Conv, arch.Pool)):
            # kernels.nn keeps an fc output as (N, units, 1, 1)
            mods.append(torch.nn.Unflatten(1, (row.in_shape[2], 1, 1)))
            flat = False
        if isinstance(layer, arch.Conv):
            pt, pb, pl, pr = row.padding
            if any(row.padding):
                mods.append(torch.nn.ZeroPad2d((pl, pr, pt, pb)))
            mods.append(torch.nn.Conv2d(row.in_shape[2], layer.channels, layer.kernel, stride=layer.stride, padding=0,
                                        dilation=layer.dilation, bias=layer.bias))
        elif isinstance(layer, arch.Relu):
            mods.append(torch.nn.ReLU())
        elif isinstance(layer, arch.Pool):
            mods.append(torch.nn.MaxPool2d(layer.kernel, layer.kernel if layer.stride is None else layer.stride))
        else:
            mods += [torch.nn.Flatten(), torch.nn.Linear(int(np.prod(row.in_shape)), layer.units, bias=layer.bias)]
            flat = True
    if not flat:
        mods.append(torch.nn.Flatten())
    net = torch.nn.Sequential(*mods).to(dtype)
    tparams = list(net.parameters())
    if [tuple(p.shape) for p in tparams] != [p.shape for p in model.params]:
        raise AssertionError("the torch twin's parameters do not line up with the model's")
    with torch.no_grad():
        for tp, p in zip(tparams, model.params):
            tp.copy_(torch.from_numpy(np.array(p)))
    return net


def torch_optimizer(name, params, *, lr, l2=0.0, weight_decay=0.0, fused=False, **hyper):
    """The ``torch.optim`` optimizer that :func:`kernels.nn.fit`'s ``name`` matches (see
    :mod:`kernels.nn.train`): ``l2`` is torch's coupled ``weight_decay = 2 l2``; the decoupled
    ``weight_decay`` of equation (5) is AdamW's ``weight_decay / lr`` (Adam only here).

    ``fused=True`` asks for the fused implementation (one compiled kernel for all parameters,
    the fastest of torch's three on CPU: ``fused``, ``foreach`` and the default for-loop) where
    torch has one (SGD, Adam/AdamW; not RMSprop, whose default stays): what a user who wants
    speed writes, so the speed comparisons use it. Its results agree with the for-loop's to
    rounding, not bit for bit (``tests/test_nn.py`` checks both against kernels.nn)."""
    import torch

    params = list(params)
    fast = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=2 * l2, **fast)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hyper.get("beta", 0.9), eps=hyper.get("eps", 1e-8),
                                   weight_decay=2 * l2)
    if name == "adam":
        betas = (hyper.get("beta1", 0.9), hyper.get("beta2", 0.999))
        if weight_decay:
            return torch.optim.AdamW(params, lr=lr, betas=betas, eps=hyper.get("eps", 1e-8),
                                     weight_decay=weight_decay / lr, **fast)
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=hyper.get("eps", 1e-8), weight_decay=2 * l2, **fast)
    raise ValueError(f"no torch twin for optimizer {name!r}")


def torch_step(net, opt, xt, yt):
    """One training step as a PyTorch user writes it; returns the loss tensor."""
    import torch

    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(xt), yt)
    loss.backward()
    opt.step()
    return loss


def torch_epoch(net, opt, X, y, *, batch_size, rng):
    """One epoch over tensors ``X``, ``y`` in the batches of a NumPy permutation from ``rng``
    (the order :func:`kernels.nn.fit` draws with the same generator); returns the losses."""
    import torch

    perm = torch.from_numpy(rng.permutation(X.shape[0]))
    losses = []
    for s in range(0, X.shape[0], batch_size):
        idx = perm[s: s + batch_size]
        losses.append(torch_step(net, opt, X[idx], y[idx]).item())
    return losses
