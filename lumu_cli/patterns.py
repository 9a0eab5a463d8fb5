"""`--format` patterns: strptime directives compiled to a strict expression over the whole text.

The groups are the vocabulary of forms.py, so a pattern's fields are checked by the same
`fields_to_datetime` as the built-in forms: real dates, weekdays that match, offsets within
+/-23:59. Python's own strptime is not used: it cannot read %s, reads %Z only as UTC, GMT or the
local zone's names and then drops it, and accepts a weekday that disagrees with the date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from lumu_cli.errors import UsageError
from lumu_cli.forms import FLAGS, MONTH_NAMES

__all__ = ["DIRECTIVES", "Pattern", "compile_pattern"]

_MONTHS = r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DIGITS = r"[0-9]{1,2}"
# directive -> (group, expression); %T, %F, %R and %D are spelled out below.
DIRECTIVES = {
    "Y": ("Y", r"[0-9]{4}"),
    "y": ("yy", r"[0-9]{2}"),
    "m": ("m", _DIGITS),
    "d": ("d", _DIGITS),
    "e": ("d", r" ?[0-9]{1,2}"),
    "j": ("j", r"[0-9]{1,3}"),
    "H": ("H", _DIGITS),
    "I": ("I", _DIGITS),
    "p": ("p", r"am|pm"),
    "M": ("M", _DIGITS),
    "S": ("S", _DIGITS),
    "f": ("f", r"[0-9]{1,9}"),
    "z": ("z", r"Z|[+-][0-9]{2}(?::?[0-9]{2})?"),
    "Z": ("Z", r"[a-z][a-z0-9_+-]*(?:/[a-z0-9_+-]+)*"),
    "b": ("b", _MONTHS),
    "h": ("b", _MONTHS),
    "B": ("B", "|".join(MONTH_NAMES)),
    "a": ("a", r"[a-z]{3}"),
    "A": ("a", r"[a-z]{6,9}"),
    "s": ("s", r"[+-]?[0-9]+"),
    # a count of milliseconds, 1 to 3 digits (HealthApp's `:35:11` is 11 ms), where %f would read
    # a fraction (.11 = 110 ms); GNU date writes milliseconds as %3N
    "3N": ("ms", r"[0-9]{1,3}"),
}
_SHORTHANDS = {"T": "%H:%M:%S", "F": "%Y-%m-%d", "R": "%H:%M", "D": "%m/%d/%y"}
_EPOCH_WITH = {"s", "f"}  # the only fields %s may share a pattern with (%s.%f)


@dataclass(frozen=True)
class Pattern:
    """A compiled --format: its text, its expression, and its groups."""

    text: str
    regex: re.Pattern[str]
    groups: frozenset[str]

    @property
    def needs_year(self) -> bool:
        return not self.groups & {"Y", "yy", "s"}


@cache
def compile_pattern(text: str) -> Pattern:
    """Compile `text`, or a UsageError naming it and what is wrong."""
    expression: list[str] = []
    groups: set[str] = set()
    spelled = text
    for short, long in _SHORTHANDS.items():
        spelled = spelled.replace(f"%{short}", long)
    pieces = iter(re.split(r"(%3N|%.?)", spelled))
    for piece in pieces:
        if not piece.startswith("%"):
            expression.append(r"\s+" if piece.isspace() else _literal(piece))
            continue
        letter = piece[1:]
        if letter == "%":
            expression.append("%")
            continue
        if letter in ("n", "t"):
            expression.append(r"\s+")
            continue
        if letter not in DIRECTIVES:
            shown = f"%{letter}" if letter else "a lone % at the end"
            raise UsageError(f"--format {text!r}: unknown directive {shown}")
        group, regex = DIRECTIVES[letter]
        if group in groups:
            raise UsageError(f"--format {text!r}: %{letter} says again what another field said")
        groups.add(group)
        expression.append(f"(?P<{group}>{regex})")
    _check(text, groups)
    return Pattern(text, re.compile("".join(expression), FLAGS), frozenset(groups))


def _literal(text: str) -> str:
    """Literal text; each run of whitespace in it matches any run of whitespace, as strptime."""
    return r"\s+".join(re.escape(part) for part in re.split(r"\s+", text))


def _check(text: str, groups: set[str]) -> None:
    if "s" in groups:
        if groups - _EPOCH_WITH:
            raise UsageError(f"--format {text!r}: %s is a whole instant; only %f may go with it")
        return
    dated = "j" in groups or ("d" in groups and groups & {"m", "b", "B"})
    if not dated:
        raise UsageError(f"--format {text!r}: no date in it (needs a month and a day, or %j)")
    if "I" in groups and "p" not in groups:
        raise UsageError(f"--format {text!r}: %I needs %p (AM or PM)")
    if "f" in groups and "ms" in groups:
        raise UsageError(f"--format {text!r}: %f and %3N both give the part of a second")
    if "H" in groups and "I" in groups:
        raise UsageError(f"--format {text!r}: %H and %I both give the hour")
