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
modules hold one concern each. Their parsers share :func:`positive_int` and :func:`make_out_dir`,
so that a bad option is an argparse error (exit status 2, naming the option) before any work.
"""

import argparse
import os

#: The repository root (a source checkout): where ``tests/`` lives and where ``git`` is asked
#: for the commit. Applications that start child processes put it on their ``PYTHONPATH``.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def positive_int(text):
    """An argparse ``type=``: ``text`` as an integer >= 1. argparse turns the error into ``argument
    --steps: must be an integer >= 1, got 0`` (exit status 2), before any work starts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def make_out_dir(parser, path):
    """Create the output directory ``path`` (``--out``) before any work, or exit through
    ``parser.error``: a run of minutes must not end on a path that cannot hold its report."""
    if os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"--out {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {path!r}: cannot create the directory: {exc.strerror or exc}")
    if not os.access(path, os.W_OK | os.X_OK):
        parser.error(f"--out {path!r}: the directory is not writable")
