"""Compare two benchmark runs group by group: did a change make any kernel slower?

    python bench/compare.py OLD.json NEW.json [--impl numba] [--markdown OUT.md]

Both files are pytest-benchmark JSON as ``bench/run.py`` writes them (``results/benchmarks.json``;
an older one comes from ``git show REV:results/benchmarks.json``). For every group present in
both, the table gives the medians of our implementation (``--impl``, default every ``numba*``
row) and the ratio new/old, and beside it the same ratio *relative to the peers of the group*
(the new/old ratio of our time divided by the geometric mean of the peers' new/old ratios). The
machine's speed swings from one run to the next (memory bandwidth by up to 2x within an hour), and
the peers, whose code did not change, measure that swing: a relative ratio near 1 means our kernel
moved with the machine, not with the change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _medians(path):
    with open(path) as fh:
        data = json.load(fh)
    out = {}
    for b in data.get("benchmarks", []):
        impl = (b.get("extra_info") or {}).get("impl") or b.get("param") or b["name"]
        out[(b["group"], impl)] = b["stats"]["median"]
    return out


def compare(old_path, new_path, impl_prefix="numba"):
    """Rows ``(group, impl, old_s, new_s, ratio, relative_ratio or None)``, ordered by group."""
    old, new = _medians(old_path), _medians(new_path)
    rows = []
    for (group, impl), t_new in sorted(new.items()):
        if not impl.startswith(impl_prefix) or (group, impl) not in old:
            continue
        t_old = old[(group, impl)]
        peers = [new[k] / old[k] for k in new if k[0] == group and not k[1].startswith(impl_prefix) and k in old]
        drift = math.exp(sum(math.log(r) for r in peers) / len(peers)) if peers else None
        ratio = t_new / t_old
        rows.append((group, impl, t_old, t_new, ratio, ratio / drift if drift else None))
    return rows


def markdown(rows) -> str:
    lines = ["| group | impl | old | new | new/old | relative to the group's peers |",
             "|---|---|---:|---:|---:|---:|"]
    for group, impl, t_old, t_new, ratio, rel in rows:
        rel_text = f"{rel:.2f}" if rel is not None else "-"
        lines.append(f"| {group.replace('|', chr(92) + '|')} | {impl} | {_fmt(t_old)} | {_fmt(t_new)} | {ratio:.2f} | {rel_text} |")
    ratios = [r[4] for r in rows]
    if ratios:
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines.append("")
        lines.append(f"{len(rows)} groups; geometric mean new/old {gm:.3f}; "
                     f"worst {max(ratios):.2f} ({rows[ratios.index(max(ratios))][0]}).")
    return "\n".join(lines)


def _fmt(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--impl", default="numba", help="prefix of the implementations to compare (default numba)")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    text = markdown(compare(args.old, args.new, args.impl))
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
