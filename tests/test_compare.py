"""bench/compare.py: the per-group old/new table used to show a change made nothing slower."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def compare(bench_module):
    return bench_module("compare")


def _run(path, rows):
    benches = [{"group": g, "name": f"t[{i}]", "extra_info": {"impl": i}, "stats": {"median": m}} for g, i, m in rows]
    path.write_text(json.dumps({"benchmarks": benches}))
    return str(path)


def test_ratios_and_peer_relative_ratios(compare, tmp_path):
    old = _run(tmp_path / "old.json", [("g|a", "numba", 1.0), ("g|a", "torch", 2.0), ("g|b", "numba", 4.0),
                                       ("gone|x", "numba", 1.0)])
    new = _run(tmp_path / "new.json", [("g|a", "numba", 1.5), ("g|a", "torch", 3.0), ("g|b", "numba", 2.0),
                                       ("new|y", "numba", 1.0)])
    rows = compare.compare(old, new)
    assert [(r[0], r[1]) for r in rows] == [("g|a", "numba"), ("g|b", "numba")]
    (_, _, o, n, ratio, rel), (_, _, _, _, ratio_b, rel_b) = rows
    assert (o, n, ratio) == (1.0, 1.5, 1.5)
    assert rel == pytest.approx(1.0)  # the peer slowed down as much: the machine, not the change
    assert ratio_b == 0.5 and rel_b is None  # no peer in that group
    text = compare.markdown(rows)
    assert "| g\\|a | numba | 1.00 s | 1.50 s | 1.50 | 1.00 |" in text  # '|' escaped inside a cell
    assert "worst 1.50 (g|a)" in text
