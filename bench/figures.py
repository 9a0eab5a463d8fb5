"""What every benchmark prints alike: a check that ends the run, ratio lines, the README rows.

- `check(ok, what)`: a benchmark compares like with like only if both sides did the same work
  (the same records read, the same answers given); when not, it exits 1 with one line,
  `FAIL: what`, and prints no figures.
- `ratio(value, baseline, name)`: "ratio against <named baseline>: 1.23x", the form every
  script prints its ratios in, the headline first.
- `readme(*rows)`: the script's last lines, the rows of the README's benchmark table
  (script | lumu | baseline | ratio), ready to paste.
"""

from __future__ import annotations

from collections.abc import Sequence


def check(ok: bool, what: str) -> None:
    """Exit 1 with `FAIL: what` unless `ok`."""
    if not ok:
        raise SystemExit(f"FAIL: {what}")


def ratio(value: float, baseline: float, name: str, note: str = "", digits: int = 2) -> str:
    """'ratio against NAME: X.XXx (note)'."""
    shown = f"{value / baseline:.{digits}f}x" if baseline else "n/a (baseline 0)"
    return f"ratio against {name}: {shown}" + (f" ({note})" if note else "")


def readme(*rows: Sequence[str]) -> None:
    """Print the README table rows (each: script, lumu, baseline, ratio), the headline first."""
    print("\nREADME rows (script | lumu | baseline | ratio):")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
