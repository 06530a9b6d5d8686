"""The homework companion's figures: the trajectories of question 1.2, the computation graph of
2.1.1 and ``L_1(eta)`` of 2.2, drawn with matplotlib (the ``bench`` extra), which is imported
only when a figure is drawn."""

from __future__ import annotations

import importlib.util
import re

import numpy as np

from .render import _vec


_MISSING = ("python -m kernels hw2 draws figures with matplotlib, which is not installed; install the bench "
            "extra: python -m pip install -e \".[bench]\"")


def require_matplotlib():
    """Raise ``SystemExit`` naming the extra unless matplotlib can be imported; imports nothing
    (the import itself, 0.4-0.5 s, can then run while the sections compute)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(_MISSING)


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(_MISSING) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rmsprop(q, path):
    """The 2-D trajectories of question 1.2 against the solution line and ``w*``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    xs = np.linspace(-0.1, 1.1, 2)
    ax.plot(xs, 2 - 2 * xs, color="0.4", lw=1, label="solutions: 2 w1 + w2 = 2")
    ax.plot(xs, 0.5 * xs, color="0.7", lw=1, ls=":", label="row space span(x1)")
    # the adaptive methods share one path: distinct line styles keep each visible
    for m, (ls, lw) in zip(q["methods"], [("-", 1.5), ("-", 5.0), ("--", 2.5), (":", 2.0)]):
        tr = np.asarray(m["trajectory"])
        ax.plot(tr[:, 0], tr[:, 1], ls=ls, lw=lw, alpha=0.85, label=f"{m['name']} → {_vec(m['w'], 3)}")
    w = q["w_min_norm"]
    ax.plot([w[0]], [w[1]], "k*", ms=14, label=f"minimum norm {_vec(w, 3)}")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    ax.set_title("x1 = [2, 1], t = [2], w0 = 0")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_GREEK = {"eta": r"\eta", "lambda~": r"\tilde{\lambda}", "lambda": r"\lambda"}


def _node_label(name):
    if name in _GREEK:
        return f"${_GREEK[name]}$"
    m = re.fullmatch(r"grad L(\d+)", name)
    if m:
        return rf"$\nabla_{{w_{m.group(1)}}}\tilde{{L}}_{m.group(1)}$"
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if m:
        base = r"\tilde{L}" if m.group(1) == "L" else rf"\mathbf{{{m.group(1)}}}"
        return f"${base}_{{{m.group(2)}}}$"
    return name


def graph_positions(nodes, edges, depth):
    """``(x, y)`` for each node of a layered drawing: ``x`` is the depth; within a column the
    nodes are ordered by the mean height of their predecessors (the barycentre heuristic, which
    reduces crossings). Sources with edges that skip columns (here the hyper-parameters, which
    feed every step) go to the outside, alternately top and bottom, so that their long edges can
    bend round the rest of the drawing instead of crossing it."""
    cols = {}
    for node in nodes:
        cols.setdefault(depth[node], []).append(node)
    preds = {n: [a for a, b in edges if b == n] for n in nodes}
    span = {n: max([depth[b] - depth[n] for a, b in edges if a == n] or [0]) for n in nodes}
    y = {}

    def place(col):
        for i, node in enumerate(col):
            y[node] = (len(col) - 1) / 2.0 - i

    first = cols[0]
    longs = sorted((n for n in first if span[n] > 1), key=lambda n: -span[n])
    top, bottom = longs[0::2], longs[1::2]
    cols[0] = top + [n for n in first if span[n] <= 1] + bottom[::-1]
    place(cols[0])
    for dep in sorted(cols)[1:]:
        cols[dep].sort(key=lambda n: -np.mean([y[p] for p in preds[n]]) if preds[n] else 0.0)
        place(cols[dep])
    return {n: (float(depth[n]), float(y[n])) for n in nodes}


def plot_graph(q, path):
    """The computation graph of question 2.1.1 (:func:`graph_positions`), edges as arrows;
    edges that skip columns are drawn as arcs bending away from the middle."""
    plt = _pyplot()
    pos = {n: (2.0 * x, 1.2 * y) for n, (x, y) in graph_positions(q["nodes"], q["edges"], q["depth"]).items()}
    depth = q["depth"]
    ncols = max(depth.values()) + 1
    height = max(sum(1 for d in depth.values() if d == c) for c in range(ncols))
    fig, ax = plt.subplots(figsize=(2.0 + 1.7 * ncols, 2.4 + 1.2 * height))
    styles = {"box": dict(boxstyle="square,pad=0.35", fc="#fde9c9", ec="k"),
              "doublecircle": dict(boxstyle="circle,pad=0.25", fc="#d9ead3", ec="k", lw=2),
              None: dict(boxstyle="round,pad=0.35", fc="#dae8fc", ec="k")}
    for node, (x, y) in pos.items():
        style = styles.get(q["attrs"].get(node, {}).get("shape"), styles[None])
        ax.text(x, y, _node_label(node), ha="center", va="center", fontsize=13, bbox=style, zorder=3)
    for a, b in q["edges"]:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        skip = depth[b] - depth[a] > 1
        # arc3: positive rad bends a rightward edge downwards
        rad = (0.35 / (depth[b] - depth[a]) ** 0.5) * (-1.0 if ya > 0 or (ya == 0 and yb >= 0) else 1.0) if skip else 0.0
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="0.3" if skip else "0.1", lw=1.0, shrinkA=17, shrinkB=17,
                                    ls="--" if skip else "-", connectionstyle=f"arc3,rad={rad:.3f}"))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 1.6, max(ys) + 1.6)
    ax.axis("off")
    ax.set_title(f"Computation graph of {q['steps']} GD iterations (kernels.unroll_graph), columns by topological "
                 "depth;\ndashed: edges that skip columns (the hyper-parameters feed every step)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_lr(q, path):
    """``L_1(eta)`` of question 2.2 with the closed-form and the hypergradient ``eta*``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(q["grid_eta"], q["grid_L1"], "o-", ms=3, label="L1(η) from kernels.gd + kernels.loss")
    ax.axvline(q["eta_closed"], color="k", ls="--", label=f"closed form η* = {q['eta_closed']:.6g}")
    ax.axvline(q["eta_tuned"], color="C3", ls=":", lw=2, label=f"tune_lr (hypergradient) η = {q['eta_tuned']:.6g}")
    hist_lr = np.asarray(q["lr_history"])
    hist_obj = np.asarray(q["objective_history"])
    ok = np.isfinite(hist_obj) & (hist_lr <= max(q["grid_eta"]))
    ax.plot(hist_lr[ok], hist_obj[ok], "x", color="C3", ms=6, label="tune_lr iterates")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("loss after one GD step, L1(η)")
    ax.set_title("Question 2.2: L1 is a convex quadratic in η")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIGURES = {"rmsprop": "hw2_rmsprop.png", "graph": "hw2_graph.png", "lr": "hw2_lr.png"}
