"""The computation graph of unrolled gradient descent (question 2.1.1), as Graphviz text."""

from __future__ import annotations

from .._validate import positive_int


def unroll_graph(steps=2) -> str:
    """The computation graph of question 2.1.1 as Graphviz DOT text, for ``steps`` steps.

    Nodes ``w0 ... wT``, ``grad L0 ... grad L(T-1)``, ``L0 ... LT``, and the hyper-parameters
    ``lambda~`` and ``eta``. Edges: ``w_k -> L_k``, ``lambda~ -> L_k`` (the loss), ``w_k ->
    grad L_k``, ``lambda~ -> grad L_k`` (its gradient), and ``w_k``, ``grad L_k``, ``eta ->
    w_{k+1}`` (the update). The data ``X``, ``t`` are constants and not drawn.
    """
    steps = positive_int(steps, "steps")
    lines = ["digraph unrolled_gd {", "  rankdir=LR;", '  "lambda~" [shape=box];', '  "eta" [shape=box];']
    for k in range(steps + 1):
        lines.append(f'  "w{k}";')
        lines.append(f'  "L{k}" [shape=doublecircle];')
        if k < steps:
            lines.append(f'  "grad L{k}";')
    for k in range(steps + 1):
        lines.append(f'  "w{k}" -> "L{k}";')
        lines.append(f'  "lambda~" -> "L{k}";')
        if k < steps:
            lines.append(f'  "w{k}" -> "grad L{k}";')
            lines.append(f'  "lambda~" -> "grad L{k}";')
            lines.append(f'  "w{k}" -> "w{k + 1}";')
            lines.append(f'  "grad L{k}" -> "w{k + 1}";')
            lines.append(f'  "eta" -> "w{k + 1}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
