"""The homework, answered by computation: ``python -m kernels hw2`` (issue 6).

Every question of CSC413 Homework 2 (``shared/seed/``) that has a computational side is answered
here by the library's own kernels, at run time -- nothing is typed in -- and written to
``results/hw2.md`` with the figures ``hw2_rmsprop.png``, ``hw2_graph.png`` and ``hw2_lr.png``
(and the raw numbers in ``hw2.json``)::

    python -m kernels hw2 [--out DIR] [--spec SPEC] [--quick]

Each ``q*`` function computes one answer and returns plain data (dicts of floats, lists and
strings), so the tests call the very functions whose numbers the report prints and check them
against independent derivations. :func:`render_markdown` and the ``plot_*`` functions turn that
data into the report; matplotlib is imported only there (it belongs to the ``bench`` extra).

Questions and what answers them:

=======  =======================================================================================
1.1.1    :func:`kernels.sgd` from ``w0 = 0`` against :func:`kernels.min_norm_solution` (``d > n``)
1.2      :func:`kernels.rmsprop`, :func:`kernels.adagrad`, :func:`kernels.adam` on ``x1 = [2, 1]``,
         ``t = [2]``; their 2-D trajectories against the solution line
2.1.1    :func:`kernels.unroll_graph` (DOT text), parsed and drawn with a layered layout
2.1.2    ``results/memory.json`` (the memory-scaling study) when present, else tracemalloc and
         ``bytes_stored`` of :func:`kernels.hypergrad` measured here
2.2      ``L_1(eta)`` on a grid, :func:`kernels.optimal_lr_one_step`, :func:`kernels.tune_lr`
2.3      :func:`kernels.gd` / :func:`kernels.rmsprop` with ``l2`` against ``weight_decay``
3.1      :func:`kernels.conv.convolve2d` / :func:`kernels.conv.correlate2d`, ``padding='same'``
3.2/3.3  :mod:`kernels.arch` (``parse``, ``analyze``, ``to_dense``, the empirical receptive field)
=======  =======================================================================================
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

DEFAULT_SPEC = "in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2"

#: Problem sizes: the full report and the ``--quick`` smoke run (tests).
SIZES = {
    False: dict(sgd_n=20, sgd_d=50, sgd_seeds=(0, 1, 2), sgd_batches=(2, 5, 10), sgd_steps=20000,
                adaptive_steps=5000, adaptive_record=5, mem_d=1000, mem_n=50,
                mem_T=(250, 500, 1000, 2000, 4000, 8000, 16000), lr_n=40, lr_d=10, wd_n=30, wd_d=8,
                wd_steps=200),
    True: dict(sgd_n=8, sgd_d=20, sgd_seeds=(0, 1), sgd_batches=(2, 4), sgd_steps=6000,
               adaptive_steps=3000, adaptive_record=5, mem_d=200, mem_n=20,
               mem_T=(50, 100, 200, 400, 800), lr_n=20, lr_d=6, wd_n=12, wd_d=5, wd_steps=50),
}


def _k():
    """The package, imported late so that ``python -m kernels --help`` stays instant."""
    return importlib.import_module("kernels")


def _conv():
    return importlib.import_module("kernels.conv")


def _arch():
    return importlib.import_module("kernels.arch")


def _f(x):
    return float(x)


# ============================================================================ 1.1.1


def q1_1_1(quick=False):
    """Mini-batch SGD from ``w0 = 0`` converges to the minimum-norm solution (question 1.1.1).

    Random ``X`` (``n < d``, rows scaled to norm about 1) and ``t``; for several seeds (of the
    data and of the batch order) and batch sizes, run :func:`kernels.sgd` and measure the
    residual ``||X w - t||``, the distance to ``w* = min_norm_solution(X, t)`` and the part of
    ``w`` outside the row space of ``X``. One more run starts from a random ``w0``: it converges
    to ``w* + (I - P) w0`` (``P`` the projector on the row space), so the distance to ``w*`` is
    ``||(I - P) w0||``, not 0 -- the updates never leave ``w0 + rowspace(X)``.

    ``lr = 0.5 / max_i ||x_i||^2`` is stable for every batch: the batch Hessian
    ``(2/b) X_B^T X_B`` has ``lambda_max <= 2 max_i ||x_i||^2``.
    """
    K = _k()
    S = SIZES[bool(quick)]
    n, d, steps = S["sgd_n"], S["sgd_d"], S["sgd_steps"]
    runs = []
    off = None
    for seed in S["sgd_seeds"]:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d)) / math.sqrt(d)
        t = rng.standard_normal(n)
        w_star = K.min_norm_solution(X, t)
        # row-space projector from the SVD (the report's own check of "stays in the span")
        _, s, Vt = np.linalg.svd(X, full_matrices=False)
        Vr = Vt[s > s[0] * 1e-12]
        lr = 0.5 / float(np.max(np.sum(X * X, axis=1)))
        for b in S["sgd_batches"]:
            r = K.sgd(X, t, lr=lr, batch_size=b, steps=steps, seed=seed)
            w = r.w
            runs.append(dict(
                seed=seed, batch_size=b, steps=r.steps, lr=lr, diverged=bool(r.diverged),
                residual=_f(np.linalg.norm(X @ w - t)),
                dist_to_min_norm=_f(np.linalg.norm(w - w_star)),
                outside_row_space=_f(np.linalg.norm(w - Vr.T @ (Vr @ w))),
                norm_w=_f(np.linalg.norm(w)), norm_min_norm=_f(np.linalg.norm(w_star)),
                w=[_f(v) for v in w],
            ))
        if off is None:
            w0 = rng.standard_normal(d)
            b = S["sgd_batches"][0]
            r = K.sgd(X, t, lr=lr, batch_size=b, steps=steps, seed=seed, w0=w0)
            null_part = w0 - Vr.T @ (Vr @ w0)
            off = dict(seed=seed, batch_size=b, steps=r.steps,
                       residual=_f(np.linalg.norm(X @ r.w - t)),
                       dist_to_min_norm=_f(np.linalg.norm(r.w - w_star)),
                       predicted_dist=_f(np.linalg.norm(null_part)),
                       dist_to_predicted=_f(np.linalg.norm(r.w - (w_star + null_part))),
                       w0=[_f(v) for v in w0], w=[_f(v) for v in r.w])
    worst = max(r["dist_to_min_norm"] for r in runs)
    return dict(n=n, d=d, runs=runs, off_row_space=off, max_dist_to_min_norm=worst,
                max_residual=max(r["residual"] for r in runs))


# ============================================================================ 1.2


def q1_2(quick=False):
    """Adaptive methods on ``x1 = [2, 1]``, ``t = [2]``, ``w0 = 0`` (questions 1.2.1 and 1.2.2).

    Runs GD and the three adaptive methods to convergence, recording the 2-D trajectory. The
    minimum-norm solution is ``x1 t / ||x1||^2 = [0.8, 0.4]``, in the row space ``span(x1)``.
    Every gradient is ``(2/n)(x1 . w - t) x1``, a multiple of ``x1``; GD adds multiples of
    ``x1`` to ``w0 = 0`` and stays in the row space. RMSProp, Adagrad and Adam divide each
    coordinate of that gradient by the root of its own running mean square, which is the same
    multiple of ``|x1_i|``: the update is the same number in both coordinates, so they move along
    ``[1, 1]`` and land on ``2 w1 + w2 = 2`` at ``[2/3, 2/3]`` -- not the minimum-norm point.
    The report measures all of this: the first step's direction, the final ``w``, its norm, its
    distance to ``[0.8, 0.4]``, and its component along the null-space direction ``[1, -2]``.
    """
    K = _k()
    S = SIZES[bool(quick)]
    X = np.array([[2.0, 1.0]])
    t = np.array([2.0])
    w_star = K.min_norm_solution(X, t)
    null_dir = np.array([1.0, -2.0]) / math.sqrt(5.0)
    steps, rec = S["adaptive_steps"], S["adaptive_record"]
    configs = [
        ("GD", K.gd, dict(lr=0.05)),
        ("RMSProp", K.rmsprop, dict(lr=0.01, beta=0.9, eps=1e-8)),
        ("Adagrad", K.adagrad, dict(lr=0.1, eps=1e-10)),
        ("Adam", K.adam, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)),
    ]
    methods = []
    for name, fn, kw in configs:
        r = fn(X, t, steps=steps, record_every=rec, **kw)
        first = fn(X, t, steps=1, **kw).w  # w_1 - w_0 with w_0 = 0
        w = r.w.astype(float)
        methods.append(dict(
            name=name, params={k: float(v) for k, v in kw.items()}, steps=r.steps, diverged=bool(r.diverged),
            w=[_f(v) for v in w], norm=_f(np.linalg.norm(w)), residual=_f(abs((X @ w - t)[0])),
            dist_to_min_norm=_f(np.linalg.norm(w - w_star)), null_component=_f(null_dir @ w),
            first_step=[_f(v) for v in first], first_step_ratio=_f(first[1] / first[0]),
            trajectory=[[_f(a), _f(b)] for a, b in r.trajectory],
        ))
    return dict(x1=[2.0, 1.0], t=[2.0], w_min_norm=[_f(v) for v in w_star],
                norm_min_norm=_f(np.linalg.norm(w_star)), null_direction=[_f(v) for v in null_dir],
                methods=methods, scaling=_badly_scaled(K, quick))


def _badly_scaled(K, quick):
    """Why per-dimension rates help (1.2.2): a diagonal problem whose two curvatures differ by
    10^4. GD's stable rate is set by the steep direction and crawls along the flat one; the
    adaptive methods normalise each coordinate. Reported: the first step at which the loss falls
    below ``tol``, within a budget of steps."""
    X = np.diag([10.0, 0.1])
    t = np.array([1.0, 1.0])
    budget = 2000 if quick else 5000
    tol = 1e-6
    curvatures = np.linalg.eigvalsh(2.0 / X.shape[0] * X.T @ X)[::-1]  # of the Hessian (2/n) X^T X
    crit = K.critical_lr(X)  # 2 / lambda_max: GD's stability limit
    configs = [
        ("GD (lr = 0.9 x critical)", K.gd, dict(lr=0.9 * crit)),
        ("RMSProp", K.rmsprop, dict(lr=0.01)),
        ("Adagrad", K.adagrad, dict(lr=1.0)),
        ("Adam", K.adam, dict(lr=0.05)),
    ]
    rows = []
    for name, fn, kw in configs:
        r = fn(X, t, steps=budget, record_every=1, **kw)
        below = np.nonzero(r.losses < tol)[0]
        rows.append(dict(name=name, lr=float(kw["lr"]), final_loss=_f(r.losses[-1]),
                         steps_to_tol=int(r.recorded_steps[below[0]]) if below.size else None))
    return dict(curvatures=[_f(c) for c in curvatures], critical_lr=_f(crit), budget=budget, tol=tol, rows=rows)


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
    dot = _k().unroll_graph(steps)
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


def _s3(x):
    """A slope to three decimals, without a ``-0.000``."""
    if x is None or x != x:
        return "—"
    return f"{round(float(x), 3) + 0.0:.3f}"


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

    K = _k()
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
    K = _k()
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
    K = _k()
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


# ============================================================================ 3.1

#: The homework's 5x5 input I of question 3.1, as read from the seed text (see the report).
HW_I = np.array([[0, 0, 0, 0, 0],
                 [0, 0, 1, 1, 1],
                 [1, 1, 1, 1, 0],
                 [0, 1, 1, 1, 0],
                 [0, 0, 1, 0, 0]], dtype=np.float64)
#: The filter J: rows (-1,-1,-1), (0,0,0), (1,1,1).
HW_J = np.array([[-1, -1, -1],
                 [0, 0, 0],
                 [1, 1, 1]], dtype=np.float64)


def q3_1():
    """``I * J`` with zero 'same' padding under both conventions (question 3.1), and what ``J``
    detects: its response to a horizontal and to a vertical step edge (8x8, 'valid' so that the
    padding adds no edges of its own)."""
    C = _conv()
    conv = C.convolve2d(HW_I, HW_J, padding="same")
    corr = C.correlate2d(HW_I, HW_J, padding="same")
    step_h = np.zeros((8, 8))
    step_h[4:, :] = 1.0   # dark above, bright below: a horizontal edge
    step_v = np.zeros((8, 8))
    step_v[:, 4:] = 1.0   # dark left, bright right: a vertical edge
    resp = {}
    for name, img in (("horizontal", step_h), ("vertical", step_v)):
        r_conv = C.convolve2d(img, HW_J, padding="valid")
        r_corr = C.correlate2d(img, HW_J, padding="valid")
        resp[name] = dict(max_abs_convolve=_f(np.abs(r_conv).max()), max_abs_correlate=_f(np.abs(r_corr).max()),
                          convolve_sum=_f(r_conv.sum()), correlate_sum=_f(r_corr.sum()))
    return dict(I=HW_I.tolist(), J=HW_J.tolist(), convolve=conv.tolist(), correlate=corr.tolist(),
                sign_flip=bool(np.array_equal(conv, -corr)), edges=resp)


# ============================================================================ 3.2 / 3.3


def _row(r):
    """An ``analyze`` row as plain data."""
    out = {}
    for key in ("name", "kind", "out_shape", "neurons", "params", "rf", "jump", "start"):
        v = getattr(r, key)
        if isinstance(v, (tuple, list, np.ndarray)):
            v = [x.item() if hasattr(x, "item") else x for x in v]
        elif hasattr(v, "item"):
            v = v.item()
        out[key] = v
    return out


def _is_input(row):
    return row["kind"] == "input"


def q3_2(spec=DEFAULT_SPEC):
    """Neurons and trainable parameters of the CNN ``spec`` and of its fully connected
    counterpart (question 3.2), from :func:`kernels.arch.analyze` and
    :func:`kernels.arch.to_dense`. Neurons are counted over every layer's outputs; the input
    layer is reported apart (whether to count it is a convention)."""
    A = _arch()
    out = {}
    for key, layers in (("cnn", A.parse(spec)), ("fcnn", None)):
        if layers is None:
            layers = A.to_dense(A.parse(spec))
        analyzed = A.analyze(layers)
        rows = [_row(r) for r in analyzed]
        body = A.totals(analyzed)
        full = A.totals(analyzed, include_input=True)
        out[key] = dict(rows=rows, neurons=int(body["neurons"]), neurons_with_input=int(full["neurons"]),
                        input_neurons=int(full["neurons"] - body["neurons"]), params=int(body["params"]))
    out["spec"] = spec
    out["param_ratio"] = out["fcnn"]["params"] / max(1, out["cnn"]["params"])
    return out


def _respec(spec, k):
    """``spec`` with every conv's kernel size set to ``k`` (its other suffixes kept)."""
    return " ".join(re.sub(r"^conv\d+", f"conv{k}", tok) for tok in spec.split())


def _upto_second_conv(spec):
    """The tokens of ``spec`` up to and including its second conv layer."""
    toks, n = [], 0
    for tok in spec.split():
        toks.append(tok)
        if tok.startswith("conv"):
            n += 1
            if n == 2:
                break
    if n < 2:
        raise ValueError(f"spec {spec!r} has fewer than two conv layers, so no 'second conv layer'")
    return " ".join(toks)


def _empirical_rf(A, layers):
    """The measured field of the centre unit of the last layer: its (height, width) extent and
    whether the image border clipped it (then the extent would only be a lower bound)."""
    res = A.empirical_receptive_field(layers)
    return [int(v) for v in res.rf], bool(any(res.clipped))


def q3_3(spec=DEFAULT_SPEC, kernel=5):
    """Receptive field after the second conv layer when every conv of ``spec`` uses
    ``kernel x kernel`` filters (question 3.3), analytic (:func:`kernels.arch.analyze`, the
    recurrence ``r <- r + (k_eff - 1) j``, ``j <- j s``) and empirical (a unit gradient
    backpropagated through the conv and pool backward kernels). Then variants that change one
    thing each -- stride, dilation, pooling, depth -- with their receptive fields."""
    A = _arch()
    note = None
    if sum(tok.startswith("conv") for tok in spec.split()) < 2:
        note = f"the spec {spec!r} has fewer than two conv layers, so 3.3 analyses the homework's {DEFAULT_SPEC!r}"
        spec = DEFAULT_SPEC
    base = _upto_second_conv(_respec(spec, kernel))
    orig = _upto_second_conv(spec)
    toks = base.split()
    conv_idx = [i for i, tok in enumerate(toks) if tok.startswith("conv")]
    pool_idx = [i for i, tok in enumerate(toks) if tok.startswith("pool")]
    k = kernel
    variants = [("as asked: every conv 5x5" if k == 5 else f"as asked: every conv {k}x{k}", base)]
    v = list(toks)
    v[conv_idx[0]] = f"conv{k}s2p{(k - 1) // 2}"
    variants.append(("stride 2 in the first conv", " ".join(v)))
    v = [f"conv{k}d2" if tok.startswith("conv") else tok for tok in toks]
    variants.append(("dilation 2 in both convs", " ".join(v)))
    if pool_idx:
        v = [tok for i, tok in enumerate(toks) if i not in pool_idx]
        variants.append(("no pooling", " ".join(v)))
        v = [("pool3" if i in pool_idx else tok) for i, tok in enumerate(toks)]
        variants.append(("3x3 pooling, stride 3", " ".join(v)))
    v = toks[:conv_idx[1]] + [f"conv{k}"] + toks[conv_idx[1]:]
    variants.append(("depth: one more conv before the second", " ".join(v)))
    rows = []
    for label, s in variants:
        layers = A.parse(s)
        last = _row(A.analyze(layers)[-1])
        emp, clipped = _empirical_rf(A, layers)
        rows.append(dict(label=label, spec=s, rf=last["rf"], jump=last["jump"], empirical=emp, clipped=clipped))
    orig_rows = [_row(r) for r in A.analyze(A.parse(orig))]
    return dict(spec=base, kernel=k, rf=rows[0]["rf"], empirical=rows[0]["empirical"], variants=rows, note=note,
                text_check=dict(spec=orig, rfs=[r["rf"] for r in orig_rows if not _is_input(r)],
                                names=[r["name"] for r in orig_rows if not _is_input(r)]))


# ============================================================================ the report


def machine_info():
    """Date, commit, platform and library versions for the report's header."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        try:
            p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    import numba

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        commit=commit or "unknown (not a git checkout)", dirty=bool(dirty),
        platform=platform.platform(), machine=platform.machine(), processor=platform.processor() or "unknown",
        cpus=os.cpu_count(), python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
    )


def compute_all(spec=DEFAULT_SPEC, quick=False, memory_json=None):
    """Every answer, as plain data, with the seconds each took."""
    sections = [
        ("q1_1_1", lambda: q1_1_1(quick)),
        ("q1_2", lambda: q1_2(quick)),
        ("q2_1_1", lambda: q2_1_1(2)),
        ("q2_1_2", lambda: q2_1_2(memory_json, quick)),
        ("q2_2", lambda: q2_2(quick)),
        ("q2_3", lambda: q2_3(quick)),
        ("q3_1", q3_1),
        ("q3_2", lambda: q3_2(spec)),
        ("q3_3", lambda: q3_3(spec, 5)),
    ]
    res = dict(spec=spec, quick=bool(quick), seconds={})
    for name, fn in sections:
        t0 = time.perf_counter()
        res[name] = fn()
        res["seconds"][name] = time.perf_counter() - t0
    return res


def _g(x, p=4):
    if x is None:
        return "-"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{x:,}"
    x = float(x)
    if x != x:
        return "—"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.{p}g}"
    return f"{x:.{max(1, p - 2)}e}"


def _hw(v):
    """A (height, width) pair as ``14×14`` (or the scalar itself)."""
    return "×".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def _vec(v, p=6):
    return "[" + ", ".join(f"{x:.{p}g}" for x in v) + "]"


def _matrix(m):
    lines = ["```"]
    width = max(len(_g(x)) for row in m for x in row)
    lines += [" ".join(f"{_g(x):>{width}}" for x in row) for row in m]
    lines.append("```")
    return lines


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(res, meta, figures):
    """The report ``hw2.md`` from :func:`compute_all`'s data, :func:`machine_info` and the
    figures' file names (``{"rmsprop": ..., "graph": ..., "lr": ...}``)."""
    L = ["# Homework 2, answered by the kernels", ""]
    L += [f"Generated by `python -m kernels hw2{' --quick' if res['quick'] else ''}` on {meta['date']}, "
          f"commit `{meta['commit']}`{' (with uncommitted changes)' if meta['dirty'] else ''}.",
          f"Machine: {meta['platform']}, {meta['machine']}, {meta['cpus']} CPUs; Python {meta['python']}, "
          f"NumPy {meta['numpy']}, Numba {meta['numba']}.",
          f"Every number below is computed at run time by the library; the whole report took "
          f"{sum(res['seconds'].values()):.1f} s.", ""]
    if res["quick"]:
        L += ["**Quick smoke run**: small problems; the numbers are not the full report's.", ""]

    # ---- 1.1.1
    q = res["q1_1_1"]
    L += ["## 1.1.1 Mini-batch SGD from zero finds the minimum-norm solution", "",
          f"Random `X` of shape ({q['n']}, {q['d']}) (d > n, full rank) and `t`; `kernels.sgd` from `w0 = 0` "
          f"(`lr = 0.5 / max_i ||x_i||^2`, stable for every batch), against `kernels.min_norm_solution` "
          f"(`pinv(X) t`).", ""]
    L += _table(["seed", "batch", "steps", "‖Xŵ − t‖", "‖ŵ − w*‖", "‖ŵ outside rowspace(X)‖"],
                [[r["seed"], r["batch_size"], r["steps"], _g(r["residual"], 3), _g(r["dist_to_min_norm"], 3),
                  _g(r["outside_row_space"], 3)] for r in q["runs"]])
    o = q["off_row_space"]
    L += ["", f"Largest distance to `w*` over these runs: **{_g(q['max_dist_to_min_norm'], 3)}**. Each update "
          f"adds a combination of the batch rows `x_j`, which lie in the row space of `X`; from `w0 = 0` the "
          f"iterate never leaves it, and the only solution of `Xw = t` in the row space is `w*`.",
          f"Control: from a random `w0` (seed {o['seed']}, batch {o['batch_size']}) SGD still solves `Xw = t` "
          f"(residual {_g(o['residual'], 3)}) but ends {_g(o['dist_to_min_norm'], 4)} from `w*`; the predicted "
          f"distance, the norm of `w0`'s component outside the row space, is {_g(o['predicted_dist'], 4)} "
          f"(`‖ŵ − (w* + (I − P)w0)‖` = {_g(o['dist_to_predicted'], 3)}).", ""]

    # ---- 1.2
    q = res["q1_2"]
    wmn = q["w_min_norm"]
    L += ["## 1.2.1 / 1.2.2 Adaptive methods and the minimum-norm solution", "",
          f"`x1 = [2, 1]`, `t = [2]`, `w0 = 0`. Minimum-norm solution (`kernels.min_norm_solution`): "
          f"{_vec(wmn)}, norm {_g(q['norm_min_norm'], 6)}.", ""]
    L += _table(["method", "hyper-parameters", "steps", "final w", "‖w‖", "\\|x1·w − t\\|", "‖w − w*‖",
                 "component along null space [1, −2]/√5", "first step w1 − w0", "ratio of its coordinates"],
                [[m["name"], ", ".join(f"{k}={v:g}" for k, v in m["params"].items()), m["steps"], _vec(m["w"]),
                  _g(m["norm"], 6), _g(m["residual"], 2), _g(m["dist_to_min_norm"], 4), _g(m["null_component"], 4),
                  _vec(m["first_step"], 4), _g(m["first_step_ratio"], 4)] for m in q["methods"]])
    gd = next(m for m in q["methods"] if m["name"] == "GD")
    adaptive = [m for m in q["methods"] if m["name"] != "GD"]
    tol = 1e-6
    leave = [m["name"] for m in adaptive if m["dist_to_min_norm"] > tol]
    stay = [m["name"] for m in adaptive if m["dist_to_min_norm"] <= tol]
    L += ["", f"GD's first step has coordinate ratio {_g(gd['first_step_ratio'], 4)} (that of `x1`: it moves in the "
          f"row space) and it ends {_g(gd['dist_to_min_norm'], 3)} from `w*`."]
    if leave:
        L += [f"**Counterexample (1.2.1):** {', '.join(leave)} converge to a solution of `x1·w = t` (residuals in "
              f"the table) that is *not* the minimum-norm one: their first step has coordinate ratio "
              f"{', '.join(_g(m['first_step_ratio'], 4) for m in adaptive if m['name'] in leave)} instead of "
              f"{_g(wmn[1] / wmn[0], 4)}, i.e. they move along [1, 1]. The minimum-norm solution is the one in "
              f"the row space of `X`; every gradient is a multiple of `x1`, but the adaptive methods divide each "
              f"coordinate by its own running root-mean-square, which rescales the coordinates differently and "
              f"leaves the row space (null-space component in the table, 0 for `w*`). So RMSProp does not always "
              f"find the minimum-norm solution, and (1.2.2) neither do Adagrad and Adam in general."]
    if stay:
        L += [f"{', '.join(stay)} ended within {tol:g} of `w*` here."]
    sc = q["scaling"]
    L += ["", f"Why per-dimension rates are still desirable (1.2.2): on `X = diag(10, 0.1)`, `t = [1, 1]` the two "
          f"curvatures are {_g(sc['curvatures'][0])} and {_g(sc['curvatures'][1])}. GD's step size is capped by the "
          f"steep direction, so it crawls along the flat one; adaptive methods normalise each coordinate. Steps to "
          f"reach a loss below {sc['tol']:g} (budget {sc['budget']}):", ""]
    L += _table(["method", "lr", "steps to tolerance", f"loss after {sc['budget']} steps"],
                [[r["name"], _g(r["lr"]), r["steps_to_tol"] if r["steps_to_tol"] is not None else "not reached",
                  _g(r["final_loss"], 3)] for r in sc["rows"]])
    L += ["", f"![trajectories]({figures['rmsprop']})", "",
          f"`{figures['rmsprop']}`: the 2-D trajectories (recorded every few steps) against the solution line "
          f"`2 w1 + w2 = 2` and the minimum-norm point.", ""]

    # ---- 2.1.1
    q = res["q2_1_1"]
    L += ["## 2.1.1 The computation graph of two GD iterations", "",
          f"From `kernels.unroll_graph({q['steps']})` (DOT text below), parsed and laid out by topological depth "
          f"({len(q['nodes'])} nodes, {len(q['edges'])} edges; depth = longest path from an input):", ""]
    by_depth = {}
    for node, dep in q["depth"].items():
        by_depth.setdefault(dep, []).append(node)
    L += [f"- depth {dep}: " + ", ".join(f"`{n}`" for n in by_depth[dep]) for dep in sorted(by_depth)]
    L += ["", f"![computation graph]({figures['graph']})", "", "```dot", q["dot"].rstrip("\n"), "```", ""]

    # ---- 2.1.2
    q = res["q2_1_2"]
    L += ["## 2.1.2 Memory of the forward pass and of back-propagation against t", ""]
    if q["source"] == "memory.json":
        L += [f"Source: the memory-scaling study, `{os.path.basename(q['path'])}` (memory-profiler RSS above the "
              f"baseline and tracemalloc peaks). Log-log slopes of memory against T:", ""]
        rows = []
        for m, v in q["methods"].items():
            s = v["slopes"]
            Tr = [x for x in v["T"] if x is not None]
            rows.append([m, f"{_g(min(Tr))}–{_g(max(Tr))}" if Tr else "—", _s3(s.get("rss")), _s3(s.get("tracemalloc")),
                         _s3(s.get("bytes_stored")), _s3(s.get("time")),
                         _g(v["bytes_stored"][-1] if v["bytes_stored"] else None)])
        L += _table(["method", "T range", "slope RSS", "slope tracemalloc", "slope bytes stored", "slope time",
                     "bytes stored at max T"], rows)
    else:
        L += [f"Source: measured here (no `memory.json` from the memory-scaling study was found): X of shape "
              f"({q['n']}, {q['d']}), tracemalloc peak of one call (after a warm-up) and the `bytes_stored` each "
              f"method reports. Log-log slopes against T:", ""]
        rows = []
        for m, v in q["methods"].items():
            rows.append([m, f"{v['T'][0]}–{v['T'][-1]}", _g(v["tracemalloc_mib"][0], 3), _g(v["tracemalloc_mib"][-1], 3),
                         _s3(v["slopes"]["tracemalloc"]), _g(v["bytes_stored"][-1]), _s3(v["slopes"]["bytes_stored"])])
        L += _table(["method", "T range", "peak MiB (min T)", "peak MiB (max T)", "slope of peak",
                     "bytes stored (max T)", "slope of bytes stored"], rows)
    measured = []
    keys = ("rss", "tracemalloc") if q["source"] == "memory.json" else ("tracemalloc",)
    for m, v in q["methods"].items():
        parts = [f"{key} {_s3(v['slopes'][key])} → {complexity_class(v['slopes'][key])}" for key in keys
                 if v["slopes"].get(key) is not None and v["slopes"][key] == v["slopes"][key]]
        if parts:
            measured.append(f"`{m}` " + ", ".join(parts))
    L += ["", "Measured growth of peak memory with T (log-log slope → class): " + "; ".join(measured) + "."]
    L += ["", "Reading: the forward pass (and forward-mode differentiation) keeps only the current `w` (and tangents): "
          "memory **O(1)** in t (slope ≈ 0). Standard back-propagation stores `w_0 … w_t` for the reverse pass: "
          "memory **O(t)** (slope ≈ 1); checkpointing trades it for recomputation, O(√t) (slope ≈ 0.5).", ""]

    # ---- 2.2
    q = res["q2_2"]
    L += ["## 2.2 The optimal learning rate after one step", "",
          f"Random `X` ({q['n']}, {q['d']}), `t`, `w0 = 0`, unregularised. `L_1(η)` evaluated by the kernels (one "
          f"`kernels.gd` step, then `kernels.loss`) on {len(q['grid_eta'])} points of [0, 2η*]:",
          "", f"- 2.2.1: `w1 = w0 − (2η/n) Xᵀa`, `a = Xw0 − t`, so `L_1(η) = (1/n)‖a − η c‖²` with `c = (2/n) X Xᵀ a`: "
          f"a quadratic `{_g(q['analytic_quadratic'], 6)} η² + ({_g(q['analytic_linear'], 6)}) η + "
          f"{_g(q['analytic_constant'], 6)}`; the fit to the kernel values gives "
          f"`{_g(q['fit_quadratic'], 6)} η² + ({_g(q['fit_linear'], 6)}) η + {_g(q['fit_constant'], 6)}`.",
          f"- 2.2.2: the quadratic coefficient `‖c‖²/n` = {_g(q['analytic_quadratic'], 6)} is "
          f"{'positive' if q['convex'] else 'zero'}: `L_1` is {'convex' if q['convex'] else 'not strictly convex'} in η.",
          f"- 2.2.3: `η* = n aᵀXXᵀa / (2‖XXᵀa‖²)` (`kernels.optimal_lr_one_step`) = **{_g(q['eta_closed'], 10)}**, "
          f"where `L_1` = {_g(q['L1_at_eta_closed'], 6)} (from `L_0` = {_g(q['L0'], 6)}) and the hypergradient "
          f"`dL_1/dη` = {_g(q['hypergrad_at_eta_closed'], 3)}. Hypergradient descent (`kernels.tune_lr`, steps=1, "
          f"from η = {_g(q['lr0'], 4)}, meta_lr = 1/(2 L_0), {q['meta_steps']} meta-steps) finds "
          f"**{_g(q['eta_tuned'], 10)}** (relative difference {_g(q['rel_diff'], 2)}).",
          "", f"![L1(eta)]({figures['lr']})", ""]

    # ---- 2.3
    q = res["q2_3"]
    gd, rms = q["rows"][0], q["rows"][1]
    L += ["## 2.3 L2 regularisation against weight decay", "",
          "2.3.1: with the L2 loss, `w1 = w0 − η((2/n)Xᵀ(Xw0 − t) + 2λ̃ w0) = (1 − 2ηλ̃) w0 − η (2/n)Xᵀ(Xw0 − t)`; "
          "with weight decay, `w1 = (1 − λ) w0 − η (2/n)Xᵀ(Xw0 − t)`. 2.3.2: they coincide when `λ = 2ηλ̃`, "
          f"i.e. `λ̃ = λ / (2η)`. Measured on random `X` ({q['n']}, {q['d']}), `λ̃` = {gd['l2']:g}, "
          f"{gd['steps']} steps, `weight_decay = 2·lr·λ̃`:", ""]
    L += _table(["optimizer", "lr", "λ̃ (l2)", "λ (weight_decay)", "max \\|difference\\| over the trajectory",
                 "‖w_l2 − w_wd‖ at the end", "relative", "‖w_l2‖", "‖w_wd‖"],
                [[r["name"], _g(r["lr"]), _g(r["l2"]), _g(r["weight_decay"]), _g(r["max_traj_diff"], 3),
                  _g(r["final_diff"], 3), _g(r["rel_final_diff"], 3), _g(r["norm_l2"], 5), _g(r["norm_wd"], 5)]
                 for r in q["rows"]])
    L += ["", f"2.3.3: under GD the two agree to rounding ({_g(gd['max_traj_diff'], 2)}). Under RMSProp they differ "
          f"by {_g(rms['rel_final_diff'], 3)} relative: the L2 term `2λ̃w` enters the gradient and is divided by "
          f"`√v + ε` like the data gradient (coordinates with large gradients are barely regularised), while "
          f"decoupled weight decay shrinks every weight by the same factor whatever its gradient history.", ""]

    # ---- 3.1
    q = res["q3_1"]
    L += ["## 3.1 Convolutional filters", "",
          "How the seed text was read: its `I` is the 5×5 matrix whose rows are (0,0,0,0,0), (0,0,1,1,1), "
          "(1,1,1,1,0), (0,1,1,1,0), (0,0,1,0,0) (the `Γ` and `[` in the first row are the PDF's bracket glyphs, "
          "not entries). Its `J` shows only the rows (−1,−1,−1) and (0,0,0); the third row, lost in the text "
          "extraction, is read as (1,1,1) (a 3×3 filter, as in the original homework). Zero padding, output "
          "5×5 ('same').", "", "`I`:"]
    L += _matrix(q["I"]) + ["", "`J`:"] + _matrix(q["J"])
    L += ["", "`I * J` as lecture 4 defines convolution (filter flipped; `kernels.convolve2d`, as "
          "`scipy.signal.convolve2d`) — **the answer**:"] + _matrix(q["convolve"])
    L += ["", "Cross-correlation (what deep-learning frameworks call convolution; `kernels.correlate2d`, as "
          "`torch.nn.functional.conv2d`):"] + _matrix(q["correlate"])
    e = q["edges"]
    L += ["", f"The two differ {'exactly by sign' if q['sign_flip'] else 'by more than a sign'}: flipping this `J` by "
          f"180° negates it. What it detects: on an 8×8 horizontal step edge (dark above, bright below) the largest "
          f"response is {_g(e['horizontal']['max_abs_convolve'])}, on a vertical step edge "
          f"{_g(e['vertical']['max_abs_convolve'])} ('valid' outputs). `J` differences the row below and the row "
          f"above (summed over three columns): it detects **horizontal edges** (intensity changing from top to "
          f"bottom), with the sign telling the direction of the change.", ""]

    # ---- 3.2
    q = res["q3_2"]
    L += ["## 3.2 Size of conv nets", ""]
    if q["spec"] != DEFAULT_SPEC:
        L += ["Analysing the architecture given with `--spec` instead of the assumed default below.", ""]
    L += ["The architecture figure is missing from the text. Assumed (`--spec` takes another): a 32×32 grey "
          "input; 3×3 convolutions with one output channel, a bias and 'same' zero padding, each followed by a "
          "2×2 max-pool with stride 2, three conv+pool stages — consistent with the text's receptive fields of 3, "
          "4 and 8 (checked in 3.3). The FCNN replaces each conv by a fully connected layer with the same input "
          "and output sizes (`kernels.arch.to_dense`).", "", f"Spec: `{q['spec']}`", ""]
    for key, title in (("cnn", "CNN"), ("fcnn", "FCNN")):
        L += [f"{title}:", ""]
        L += _table(["layer", "output shape", "neurons", "parameters"],
                    [[r["name"], "×".join(str(x) for x in r["out_shape"]), _g(r["neurons"]), _g(r["params"])]
                     for r in q[key]["rows"]])
        L += [""]
    c, f = q["cnn"], q["fcnn"]
    L += _table(["network", "neurons (input excluded)", "neurons (input included)", "trainable parameters"],
                [["CNN", f"**{_g(c['neurons'])}**", _g(c["neurons_with_input"]), f"**{_g(c['params'])}**"],
                 ["FCNN", f"**{_g(f['neurons'])}**", _g(f["neurons_with_input"]), f"**{_g(f['params'])}**"]])
    L += ["", f"The FCNN has {q['param_ratio']:,.0f}× the parameters for the same neurons. One disadvantage of "
          f"more trainable parameters: the model overfits more easily (more capacity to memorise the training "
          f"set, so more data or regularisation is needed), and it costs more memory and computation to train "
          f"and store.", ""]

    # ---- 3.3
    q = res["q3_3"]
    tc = q["text_check"]
    L += ["## 3.3 Receptive fields", ""]
    if q.get("note"):
        L += [f"Note: {q['note']}.", ""]
    L += [
          f"Check against the text with 3×3 filters (`{tc['spec']}`): receptive fields "
          + ", ".join(f"{n} {_hw(r)}" for n, r in zip(tc["names"], tc["rfs"])) + " (the text says 3, 4 and 8).", "",
          f"With 5×5 filters (`{q['spec']}`), the receptive field of a neuron after the second conv layer is "
          f"**{_hw(q['rf'])}** analytically (`kernels.arch.analyze`, `r ← r + (k_eff − 1)·j`, `j ← j·s`) and "
          f"**{_hw(q['empirical'])}** measured (a unit gradient at one output neuron backpropagated through the conv "
          f"and max-pool backward kernels; the support of the input gradient).", "",
          "Other things that change the receptive field, each changed alone (receptive field after the second "
          "conv layer):", ""]
    L += _table(["variant", "spec", "analytic rf", "empirical rf", "jump"],
                [[v["label"], f"`{v['spec']}`", _hw(v["rf"]), _hw(v["empirical"]) + (" (clipped)" if v["clipped"] else ""),
                  _hw(v["jump"])] for v in q["variants"]])
    L += ["", "So besides the filter size: the stride of earlier layers, dilation, pooling (its window and stride) "
          "and depth (the number of layers) all change it.", ""]
    L += ["---", "", "Seconds per answer: " + ", ".join(f"{k} {v:.2f}" for k, v in res["seconds"].items()), ""]
    return "\n".join(L)


# ---------------------------------------------------------------------------- figures


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("python -m kernels hw2 draws figures with matplotlib, which is not installed; install the "
                         "bench extra: python -m pip install -e \".[bench]\"") from exc
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


def write_report(out="results", spec=DEFAULT_SPEC, quick=False, memory_json=None):
    """Compute every answer, write ``hw2.md``, ``hw2.json`` and the figures into ``out``;
    returns the data. ``memory_json`` defaults to ``out/memory.json``."""
    _pyplot()  # fail early, before minutes of work, if matplotlib is missing
    os.makedirs(out, exist_ok=True)
    if memory_json is None:
        memory_json = os.path.join(out, "memory.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = compute_all(spec=spec, quick=quick, memory_json=memory_json)
    meta = machine_info()
    plot_rmsprop(res["q1_2"], os.path.join(out, FIGURES["rmsprop"]))
    plot_graph(res["q2_1_1"], os.path.join(out, FIGURES["graph"]))
    plot_lr(res["q2_2"], os.path.join(out, FIGURES["lr"]))
    with open(os.path.join(out, "hw2.md"), "w") as fh:
        fh.write(render_markdown(res, meta, FIGURES))
    with open(os.path.join(out, "hw2.json"), "w") as fh:
        json.dump(dict(meta=meta, **res), fh, indent=1, default=_jsonable)
    return res


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kernels hw2",
                                description="Answer CSC413 Homework 2's computational questions with the kernels: "
                                            "writes hw2.md, hw2.json and hw2_*.png into --out.")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--spec", default=DEFAULT_SPEC,
                   help=f"the CNN of questions 3.2/3.3, as a kernels.arch spec (default: {DEFAULT_SPEC!r})")
    p.add_argument("--quick", action="store_true", help="small problems: a smoke run for tests (numbers not the report's)")
    p.add_argument("--memory-json", default=None,
                   help="the memory-scaling study's JSON for 2.1.2 (default: OUT/memory.json; measured here if absent)")
    args = p.parse_args(argv)
    try:
        _arch().parse(args.spec)
    except ValueError as exc:
        p.error(f"--spec: {exc}")
    t0 = time.perf_counter()
    write_report(out=args.out, spec=args.spec, quick=args.quick, memory_json=args.memory_json)
    print(f"hw2: wrote {os.path.join(args.out, 'hw2.md')} and {len(FIGURES)} figures in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
