"""Command-line entry point: ``python -m kernels COMMAND [options]``.

Each command is one entry of :data:`COMMANDS`, ``name -> ("module:function", one-line help)``.
The module is imported only when its command runs (so ``--help`` is instant and a command whose
optional dependencies are missing cannot break the others); ``function(argv)`` receives the
arguments after the command name, parses them itself and returns the exit status. Adding a
command is adding one entry.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "hw2": ("kernels.apps.hw2:main", "answer the homework's computational questions into results/hw2.md and figures"),
    "reliability": ("kernels.apps.reliability:main", "fuzzing, determinism, concurrency, float32 limits and leaks into results/reliability.md"),
    "train": ("kernels.apps.train:main", "train the issue-14 CNNs on the digits beside PyTorch into results/train.md and train.png"),
    "tune": ("kernels.apps.tune:main", "tune (lr, l2) by hypergradients against Optuna and grid search into results/tune.md and a plot"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m kernels COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`python -m kernels COMMAND --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"python -m kernels: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target = COMMANDS[name][0]
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
