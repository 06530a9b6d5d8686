"""Convolutional networks built from a :mod:`kernels.arch` spec, trained with the package's kernels.

::

    from kernels import nn
    model = nn.build("in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10", seed=0, dtype="float32")
    model.params                       # PyTorch layouts: conv (C_out, C_in, kh, kw), (C_out,); fc (out, in), (out,)
    logits = model.forward(x)          # (N, C, H, W) -> (N, classes)
    loss, grads = model.loss_and_grad(x, y)      # mean softmax cross-entropy, grads aligned with params
    hist = nn.fit(model, X, y, optimizer="adam", lr=1e-3, epochs=10, batch_size=64, X_val=Xv, y_val=yv)
    nn.accuracy(model, Xv, yv)
    trainer = nn.Trainer(model, "adam", lr=1e-3); loss = trainer.step(x, y)   # one step at a time

The spec is the :mod:`kernels.arch` grammar (``in``, ``conv``, ``pool``, ``relu``, ``fc``): the
string :func:`kernels.arch.analyze` explains is the network that trains. Every layer computes
what its PyTorch counterpart computes (``Conv2d`` with the spec's padding, ``ReLU``,
``MaxPool2d``, ``Linear`` after ``Flatten``), which ``tests/test_nn.py`` checks against
``torch.autograd`` and finite differences, and step by step against ``torch.optim`` for 100
steps of SGD, RMSProp and Adam in float64.

Layout: ``layers`` (forward and backward of each layer kind over the conv and pool kernels),
``im2col`` (convolution as BLAS products, for small passes), ``program`` (the whole pass as one
compiled call, for one image of a small network or a small batch of a smaller one;
``program_layers`` its per-layer loops),
``activations`` (the compiled rectifier), ``loss`` (compiled softmax cross-entropy), ``threads``
(small passes on one thread), ``model`` (:func:`build`, :class:`Model`), ``train`` (:func:`fit`,
:class:`Trainer`, :class:`History`, :func:`accuracy`).

Dependencies: numba and numpy. ``fit(progress=True)`` shows a tqdm bar when tqdm (the ``nn``
extra) is installed, and trains without one when it is not.
"""

from __future__ import annotations

from .model import Model, build
from .train import History, Trainer, accuracy, fit

__all__ = ["Model", "History", "Trainer", "build", "fit", "accuracy"]
