"""Part 2 of the homework: hypergradients (questions 2.1.1, 2.1.2, 2.2 and 2.3).

The computation graph of unrolled GD (parsed from :func:`kernels.unroll_graph`'s DOT text and
laid out by depth), the memory of the forward and reverse passes against the number of steps,
the optimal learning rate after one step, and L2 regularisation against weight decay.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import tracemalloc

import numpy as np

import kernels as K

from ._common import SIZES, _f


# ============================================================================ 2.1.1


_NODE = r'(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][\w.]*))'
_EDGE_RE = re.compile(rf"^\s*{_NODE}\s*->\s*{_NODE}\s*(?:\[(.*)\])?\s*;?\s*$")
_NODE_RE = re.compile(rf"^\s*{_NODE}\s*(?:\[(.*)\])?\s*;?\s*$")
_ATTR_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s\]]+))')
_KEYWORDS = {"graph", "node", "edge", "digraph", "subgraph", "strict"}


def parse_dot(text):
    """Nodes (in order of first appearance, with their attributes) and edges of a simple DOT
    digraph: one statement per line, ``"a" -> "b";`` or ``"a" [k=v, ...];``. Graph attributes
    (``rankdir=LR;``), ``digraph name {`` and ``}`` are skipped. Enough for
    :func:`kernels.unroll_graph`; not a general DOT parser."""
    nodes: dict[str, dict] = {}
    edges: list[tuple[str, str]] = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(("//", "#")) or s in ("{", "}") or s.endswith("{"):
            continue
        m = _EDGE_RE.match(s)
        if m:
            a, b = m.group(1) or m.group(2), m.group(3) or m.group(4)
            for name in (a, b):
                nodes.setdefault(name, {})
            edges.append((a, b))
            continue
        if re.match(r"^\w+\s*=", s):  # a graph attribute such as rankdir=LR
            continue
        m = _NODE_RE.match(s)
        if m and (m.group(1) is not None or m.group(2) not in _KEYWORDS):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            attrs = {k: (v1 if v1 else v2) for k, v1, v2 in _ATTR_RE.findall(m.group(3) or "")}
            nodes.setdefault(name, {}).update(attrs)
    return nodes, edges


def layered_layout(nodes, edges):
    """Depth of each node: the length of the longest path reaching it from a source (a node with
    no incoming edge), by a topological sort. ``ValueError`` on a cycle."""
    preds = {n: [] for n in nodes}
    succs = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    indeg = {n: len(p) for n, p in preds.items()}
    order = [n for n in nodes if indeg[n] == 0]
    depth = {n: 0 for n in order}
    i = 0
    while i < len(order):
        a = order[i]
        i += 1
        for b in succs[a]:
            depth[b] = max(depth.get(b, 0), depth[a] + 1)
            indeg[b] -= 1
            if indeg[b] == 0:
                order.append(b)
    if len(order) != len(nodes):
        raise ValueError(f"the graph has a cycle through {sorted(set(nodes) - set(order))}")
    return depth


def q2_1_1(steps=2):
    """The computation graph of ``steps`` GD iterations (question 2.1.1), from
    :func:`kernels.unroll_graph`: its DOT text, nodes, edges and layered depths."""
    dot = K.unroll_graph(steps)
    nodes, edges = parse_dot(dot)
    depth = layered_layout(nodes, edges)
    return dict(steps=steps, dot=dot, nodes=list(nodes), attrs=nodes, edges=[list(e) for e in edges],
                depth=depth)


# ============================================================================ 2.1.2


def _slope(xs, ys):
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = (xs > 0) & (ys > 0)
    if ok.sum() < 2:
        return float("nan")
    return _f(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])


_MEMORY_ORDER = ("forward_pass", "forward", "checkpoint", "reverse", "exact")


def complexity_class(slope):
    """The O(.) class a log-log slope of memory against T points to (question 2.1.2)."""
    if slope < 0.15:
        return "O(1)"
    if 0.35 <= slope <= 0.65:
        return "O(√t)"
    if 0.85 <= slope <= 1.15:
        return "O(t)"
    return f"about t^{slope:.2f}"


def q2_1_2(memory_json=None, quick=False):
    """Memory of the forward pass and of reverse-mode differentiation against the number of GD
    steps T (question 2.1.2), measured.

    If ``memory_json`` (the memory-scaling study's ``results/memory.json``) exists, its runs and
    fitted log-log slopes are quoted (``source="memory.json"``). Otherwise a small range is
    measured here (``source="tracemalloc"``): for each T, the tracemalloc peak of one call (after
    a warm-up call, so compilation is not counted) and the ``bytes_stored`` the method reports,
    for the forward pass alone (:func:`kernels.unrolled_loss`) and the ``forward``,
    ``checkpoint`` and ``reverse`` hypergradient methods, with the slope of each against T.
    """
    if memory_json and os.path.exists(memory_json):
        with open(memory_json) as fh:
            data = json.load(fh)
        runs = data.get("runs", [])
        slopes = data.get("slopes", {})
        found = {r.get("method") for r in runs if r.get("method")} | set(slopes)
        methods = [m for m in _MEMORY_ORDER if m in found] + sorted(found - set(_MEMORY_ORDER))
        table = {}
        for m in methods:
            mr = sorted((r for r in runs if r.get("method") == m), key=lambda r: r.get("T", 0))
            table[m] = dict(T=[r.get("T") for r in mr],
                            rss_mib=[r.get("rss_above_baseline_mib") for r in mr],
                            tracemalloc_mib=[r.get("tracemalloc_peak_mib") for r in mr],
                            bytes_stored=[r.get("bytes_stored") for r in mr],
                            slopes=dict(slopes.get(m, {}),
                                        bytes_stored=_slope([r.get("T") for r in mr],
                                                            [r.get("bytes_stored") or 0 for r in mr])))
        return dict(source="memory.json", path=memory_json, methods=table)

    S = SIZES[bool(quick)]
    n, d, Ts = S["mem_n"], S["mem_d"], S["mem_T"]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    t = rng.standard_normal(n)
    lr = 0.5 * K.critical_lr(X)

    def call(method, T):
        if method == "forward_pass":
            return K.unrolled_loss(X, t, lr=lr, steps=T)
        return K.hypergrad(X, t, lr=lr, steps=T, method=method)

    table = {}
    for method in ("forward_pass", "forward", "checkpoint", "reverse"):
        call(method, 4)  # compile (or load from cache) outside the measurement
        peaks, stored, wall = [], [], []
        for T in Ts:
            tracemalloc.start()
            t0 = time.perf_counter()
            r = call(method, T)
            wall.append(time.perf_counter() - t0)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            stored.append(int(r.bytes_stored or 0))
        table[method] = dict(T=list(Ts), tracemalloc_mib=[p / 2**20 for p in peaks], bytes_stored=stored,
                             wall_s=wall, slopes=dict(tracemalloc=_slope(Ts, peaks), bytes_stored=_slope(Ts, stored),
                                                      time=_slope(Ts, wall)))
    return dict(source="tracemalloc", n=n, d=d, lr=lr, methods=table)


# ============================================================================ 2.2


def _lr_problem(quick):
    S = SIZES[bool(quick)]
    rng = np.random.default_rng(0)
    n, d = S["lr_n"], S["lr_d"]
    X = rng.standard_normal((n, d))
    t = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    return X, t


def q2_2(quick=False):
    """``L_1(eta)`` after one GD step from ``w0 = 0`` (questions 2.2.1-2.2.3).

    ``L_1(eta)`` is evaluated on a grid by the kernels themselves (one :func:`kernels.gd` step,
    then :func:`kernels.loss`); a degree-2 fit of those values gives the quadratic coefficient,
    compared with the analytic ``||c||^2 / n`` where ``c = (2/n) X X^T a``, ``a = X w0 - t``
    (positive: ``L_1`` is convex in ``eta``, 2.2.2). ``eta*`` comes from the closed form
    (:func:`kernels.optimal_lr_one_step`) and from hypergradient descent (:func:`kernels.tune_lr`
    with ``steps=1``), started at ``0.1 / lambda_max(H)`` with ``meta_lr = 1 / (2 L_0)``: since
    ``eta*^2 L_1'' = 2 (L_0 - L_1(eta*)) <= 2 L_0``, that meta-rate is at most a Newton step in
    ``log eta`` and the iteration contracts without knowing ``eta*``.
    """
    X, t = _lr_problem(quick)
    n, d = X.shape
    w0 = np.zeros(d)
    eta_closed = K.optimal_lr_one_step(X, t)
    crit = K.critical_lr(X)
    etas = np.linspace(0.0, 2.0 * eta_closed, 41)
    L1 = np.array([K.loss(X, t, K.gd(X, t, lr=e, steps=1).w) if e > 0 else K.loss(X, t, w0) for e in etas])
    quad, lin, const = np.polyfit(etas, L1, 2)
    a = X @ w0 - t
    c = (2.0 / n) * (X @ (X.T @ a))
    L0 = K.loss(X, t, w0)
    lr0 = 0.1 * crit / 2.0  # 0.1 / lambda_max(H)
    meta_lr = 1.0 / (2.0 * L0)
    tuned = K.tune_lr(X, t, lr0=lr0, steps=1, meta_steps=80, meta_lr=meta_lr)
    hg = K.hypergrad(X, t, lr=eta_closed, steps=1)
    return dict(
        n=n, d=d, L0=_f(L0), eta_closed=_f(eta_closed), eta_tuned=_f(tuned.lr),
        rel_diff=_f(abs(tuned.lr - eta_closed) / eta_closed), lr0=_f(lr0), meta_lr=_f(meta_lr),
        meta_steps=80, lr_history=[_f(v) for v in tuned.lr_history],
        objective_history=[_f(v) for v in tuned.objective_history],
        L1_at_eta_closed=_f(hg.loss), hypergrad_at_eta_closed=_f(hg.d_lr), critical_lr=_f(crit),
        grid_eta=[_f(v) for v in etas], grid_L1=[_f(v) for v in L1],
        fit_quadratic=_f(quad), fit_linear=_f(lin), fit_constant=_f(const),
        analytic_quadratic=_f(c @ c / n), analytic_linear=_f(-2.0 * (a @ c) / n), analytic_constant=_f(a @ a / n),
        convex=bool(c @ c > 0),
    )


# ============================================================================ 2.3


def q2_3(quick=False):
    """L2 regularisation against decoupled weight decay (questions 2.3.1-2.3.3), measured.

    Under GD, ``w <- w - eta (grad L + 2 l2 w) = (1 - 2 eta l2) w - eta grad L``: ``l2 = c`` and
    ``weight_decay = 2 eta c`` give the same trajectory (so ``lambda~ = lambda / (2 eta)``).
    Under RMSProp the penalty's gradient ``2 l2 w`` is divided by ``sqrt(v) + eps`` with the
    data gradient, the decay is not, so the trajectories part. Reported: the largest difference
    over the recorded trajectories and between the final weights for each optimizer.
    """
    S = SIZES[bool(quick)]
    rng = np.random.default_rng(1)
    n, d, steps = S["wd_n"], S["wd_d"], S["wd_steps"]
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    t = rng.standard_normal(n)
    l2 = 0.1
    rows = []
    for name, fn, lr in (("GD", K.gd, 0.1), ("RMSProp", K.rmsprop, 0.01)):
        wd = 2.0 * lr * l2
        a = fn(X, t, lr=lr, steps=steps, l2=l2, record_every=1)
        b = fn(X, t, lr=lr, steps=steps, weight_decay=wd, record_every=1)
        rows.append(dict(
            name=name, lr=lr, l2=l2, weight_decay=wd, steps=steps,
            max_traj_diff=_f(np.max(np.abs(a.trajectory - b.trajectory))),
            final_diff=_f(np.linalg.norm(a.w - b.w)),
            norm_l2=_f(np.linalg.norm(a.w)), norm_wd=_f(np.linalg.norm(b.w)),
            rel_final_diff=_f(np.linalg.norm(a.w - b.w) / np.linalg.norm(a.w)),
        ))
    return dict(n=n, d=d, seed=1, rows=rows)
