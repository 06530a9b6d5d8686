"""Applications built on the library: the programs behind ``python -m kernels COMMAND``.

Two layers, one rule: **apps import the library; the library never imports apps.** The library
is ``kernels`` and its modules (the kernels, their references, peers, catalog and ``arch``);
``import kernels`` never loads this package, so it stays cheap (no matplotlib, hypothesis,
SciPy or PyTorch) and an application's optional dependencies cannot break it.

- ``kernels.apps.hw2``: ``python -m kernels hw2``, the homework's computational questions
  answered by the kernels, written to ``results/hw2.md`` with its figures;
- ``kernels.apps.reliability``: ``python -m kernels reliability``, fuzzing, determinism,
  concurrency, float32 limits, divergence and leaks, written to ``results/reliability.md``;
- ``kernels.apps.tune``: ``python -m kernels tune``, hypergradients against Optuna and grid
  search, written to ``results/tune.md``.

Each application is a subpackage whose ``__init__`` holds its ``main(argv)`` (registered in
:data:`kernels.__main__.COMMANDS`) and re-exports the functions ``tests/`` call; its other
modules hold one concern each.
"""

import os

#: The repository root (a source checkout): where ``tests/`` lives and where ``git`` is asked
#: for the commit. Applications that start child processes put it on their ``PYTHONPATH``.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
