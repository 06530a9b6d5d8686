"""How the reports print values: times, a measured value against its bar, speed-ups, Markdown
tables, fitted slopes."""

from __future__ import annotations

import math


def fmt_time(s) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_against(value, target, pct=False) -> str:
    """``value`` with enough digits that it reads on the same side of ``target`` as it is
    (3.9973 against a bar of 4 prints as 3.997, not as a failing "4")."""
    scale, suffix = (100.0, "%") if pct else (1.0, "")
    for digits in range(3, 10):
        text = f"{value * scale:.{digits}g}"
        if "e" in text:  # 1.01e+03 reads badly in a table: whole numbers from 1000 up
            text = f"{value * scale:.{max(digits - len(str(int(value * scale))), 0)}f}"
        shown = float(text) / scale
        if (shown >= target) == (value >= target):
            return text + suffix
    return f"{value * scale!r}{suffix}"


def fmt_x(v) -> str:
    return "—" if v is None else f"{v:.3g}x"


def md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_slope(v) -> str:
    """A fitted slope to three decimals (a fit of a flat line gives +-1e-17: that is 0.000)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "—"
    text = f"{v:.3f}"
    return "0.000" if text == "-0.000" else text


def fmt_num(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


# RSS above baseline can be 0 (or slightly negative) for constant-memory methods; log axes need a
# floor, and the report says where it was applied.
MIB_FLOOR = 1e-2
