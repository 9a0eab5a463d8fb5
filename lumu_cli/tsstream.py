"""`lumu ts parse -` for streams: lines in blocks, the common shapes parsed as arrays.

Every line shaped `YYYY-MM-DD[Tt ]HH:MM:SS[.,fraction][zone]`, every line of up to 18 digits (an
epoch number), and every line that fits the template of a fixed-width form (Common Log Format,
RFC 5322, ctime, BIND, Cisco ASA, PAN-OS, GeneralizedTime, RFC 3164, klog, ...), is parsed,
checked and rendered with numpy for the whole block at once.
Every other line, and every line the arrays find invalid, goes through `timestamps.normalize`,
which is the definition and supplies the error message. So the fast path can only be faster,
never different (tests/test_properties.py holds them equal).
"""

from __future__ import annotations

import io
import itertools
import os
import select
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from functools import cached_property, partial

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from lumu_cli.errors import InputError, InvalidTimestamp
from lumu_cli.forms import MONTHS, WEEKDAYS
from lumu_cli.timestamps import AUTO_BOUNDS, DIGIT_SHIFT, Unit, normalize

__all__ = ["ParsedBlock", "parse_stream", "read_blocks"]

BLOCK_BYTES = 1 << 22
SPLIT_BYTES = 1 << 20  # a smaller block is parsed whole: threads would cost more than they save
WORKERS = min(2, os.cpu_count() or 1)
MAX_LINE = 1 << 16  # longer lines are cut here: no timestamp is that long, and memory stays bounded
OUT_WIDTH = 25  # `YYYY-MM-DDTHH:MM:SS.mmmZ` and a newline

Bytes = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]

_PREFIX = b"0000-00-00T00:00:00"
_ZONES = ("", "Z", "-00:00", "-0000", "-00")
_MAX_FRACTION = 9
_MIN_MS = -62135596800000  # 0001-01-01T00:00:00.000Z
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def _class_table() -> Bytes:
    """Byte -> shape class: digits to '0', each set of interchangeable separators to one byte."""
    table = np.zeros(256, np.uint8)
    table[ord("0") : ord("9") + 1] = ord("0")
    for chars, cls in (("Tt ", "T"), (".,", "."), ("+-", "-"), ("Zz", "Z"), (":", ":")):
        for char in chars:
            table[ord(char)] = ord(cls)
    return table


_CLASS = _class_table()
_DIGITS2 = np.array([b"%02d" % i for i in range(100)]).view(np.uint16)
_DIGITS3 = np.array([b"%03d" % i for i in range(1000)]).view("S3")
_OUT_DTYPE = np.dtype(
    {
        "names": ["y1", "y2", "mon", "day", "hour", "min", "sec", "ms"],
        "formats": ["u2", "u2", "u2", "u2", "u2", "u2", "u2", "S3"],  # native, as _DIGITS2
        "offsets": [0, 2, 5, 8, 11, 14, 17, 20],
        "itemsize": OUT_WIDTH,
    }
)
_OUT_TEMPLATE = np.frombuffer(b"0000-00-00T00:00:00.000Z\n", np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int16)
_EDGE_YEARS = np.frombuffer(b"00019999", "V4")


@dataclass(frozen=True)
class _Shape:
    """One fast-path line shape: how many fraction digits and which zone form."""

    fraction: int
    zone: str

    @cached_property
    def pattern(self) -> npt.NDArray[np.void]:
        """The shape classes of the whole line as one fixed-size value, to compare rows at once."""
        dot = "." + "0" * self.fraction if self.fraction else ""
        text = _PREFIX + f"{dot}{self.zone}".encode()
        return np.frombuffer(text, f"V{len(text)}")

    def fields(self, chars: Bytes) -> npt.NDArray[np.bool_]:
        """Which rows have a real month, day, time of day and offset (small integers only)."""
        digit = chars.astype(np.int16) - ord("0")  # every digit column was checked already
        year = digit[:, 0] * 1000 + digit[:, 1] * 100 + digit[:, 2] * 10 + digit[:, 3]
        month, day = digit[:, 5] * 10 + digit[:, 6], digit[:, 8] * 10 + digit[:, 9]
        valid = _real_dates(year, month, day)
        valid &= digit[:, 11] * 10 + digit[:, 12] <= 23  # hour
        valid &= (digit[:, 14] <= 5) & (digit[:, 17] <= 5)  # minute and second below 60
        if len(self.zone) > 1:  # +HH:MM, +HHMM or +HH
            at = chars.shape[1] - len(self.zone)
            valid &= digit[:, at + 1] * 10 + digit[:, at + 2] <= 23
            if len(self.zone) > 3:
                valid &= digit[:, chars.shape[1] - 2] <= 5  # offset minutes below 60
        return np.asarray(valid, np.bool_)

    def valid(self, chars: Bytes) -> npt.NDArray[np.bool_]:
        """Which rows are surely real instants, without computing them.

        A row of year 1 or 9999 with an offset may fall outside years 1..9999 in UTC: it is left
        out here, for the definition to decide.
        """
        valid = self.fields(chars)
        if len(self.zone) > 1:
            valid &= ~np.isin(chars[:, :4].view("V4")[:, 0], _EDGE_YEARS)
        return valid

    def millis(self, chars: Bytes) -> tuple[Ints, npt.NDArray[np.bool_]]:
        """Epoch milliseconds of rows in this shape, and which rows are real instants."""
        valid = self.fields(chars)
        year, month, day = _num(chars, 0, 4), _num(chars, 5, 2), _num(chars, 8, 2)
        hour, minute, second = _num(chars, 11, 2), _num(chars, 14, 2), _num(chars, 17, 2)
        frac = _num(chars, 20, min(self.fraction, 3)) * 10 ** max(3 - self.fraction, 0)
        days = _days_from_civil(year, np.clip(month, 1, 12), day)
        seconds = days * 86400 + hour * 3600 + minute * 60 + second
        if len(self.zone) > 1:
            at = len(chars[0]) - len(self.zone)
            zh = _num(chars, at + 1, 2)
            zm = _num(chars, len(chars[0]) - 2, 2) if len(self.zone) > 3 else np.zeros_like(zh)
            sign = np.where(chars[:, at] == ord("+"), 1, -1)
            seconds -= sign * (zh * 3600 + zm * 60)
        millis = seconds * 1000 + frac
        valid &= (millis >= _MIN_MS) & (millis <= _MAX_MS)
        return millis, valid


_SHAPES: dict[int, list[_Shape]] = {}
for _fraction in range(_MAX_FRACTION + 1):
    for _zone in _ZONES:
        _shape = _Shape(_fraction, _zone)
        _SHAPES.setdefault(_shape.pattern.itemsize, []).append(_shape)


_MAX_SHAPE = max(_SHAPES)


def _real_dates(year: Ints, month: Ints, day: Ints) -> npt.NDArray[np.bool_]:
    """Which (year, month, day) rows name a real date from year 1 on."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + ((month == 2) & leap)
    real = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)
    return np.asarray(real, np.bool_)


def _num(chars: Bytes, col: int, width: int) -> Ints:
    """The decimal number in columns col..col+width of every row (digits already checked)."""
    value = np.zeros(len(chars), np.int64)
    for k in range(col, col + width):
        value = value * 10 + chars[:, k] - ord("0")
    return value


def _days_from_civil(year: Ints, month: Ints, day: Ints) -> Ints:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's days_from_civil, in
    integers: a third of the time of numpy's datetime64 casts)."""
    year = year - (month <= 2)
    era = year // 400
    yoe = year - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days: Ints = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days


def _civil_from_days(days: Ints) -> tuple[Ints, Ints, Ints]:
    """(year, month, day) of days since 1970-01-01 (Hinnant's civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def _render(millis: Ints) -> Bytes:
    """Epoch milliseconds -> rows of `YYYY-MM-DDTHH:MM:SS.mmmZ\\n`, the calendar done by numpy."""
    days, in_day = np.divmod(millis, 86_400_000)
    year, month, day = _civil_from_days(days)
    seconds, ms = np.divmod(in_day, 1000)
    out = np.empty((len(millis), OUT_WIDTH), np.uint8)
    out[:] = _OUT_TEMPLATE
    fields = out.view(_OUT_DTYPE)[:, 0]
    fields["y1"] = _DIGITS2[year // 100]
    fields["y2"] = _DIGITS2[year % 100]
    fields["mon"] = _DIGITS2[month]
    fields["day"] = _DIGITS2[day]
    fields["hour"] = _DIGITS2[seconds // 3600]
    fields["min"] = _DIGITS2[seconds // 60 % 60]
    fields["sec"] = _DIGITS2[seconds % 60]
    fields["ms"] = _DIGITS3[ms]
    return out


@dataclass
class ParsedBlock:
    """The results for one block of lines: rendered rows, which rows are good, errors by row."""

    first_line: int
    data: bytes
    starts: Ints
    lengths: Ints
    rendered: Bytes
    ok: npt.NDArray[np.bool_]
    errors: dict[int, InvalidTimestamp] = field(default_factory=dict)
    times: Ints | None = None  # with `times`: each good row's epoch milliseconds

    def __len__(self) -> int:
        return len(self.starts)

    def output(self, lo: int, hi: int) -> bytes:
        """The output lines of rows lo..hi, bad rows left out."""
        return self.rendered[lo:hi][self.ok[lo:hi]].tobytes()

    def raw(self, row: int) -> bytes:
        """The input line of `row` without its line ending."""
        start = int(self.starts[row])
        return self.data[start : start + int(self.lengths[row])]

    def text(self, row: int) -> str:
        """The input line of `row` as text (undecodable bytes replaced)."""
        return self.raw(row).decode("utf-8", "replace")

    def result(self, row: int) -> str | None:
        """The normalized timestamp of `row`, or None if it failed."""
        return self.rendered[row, : OUT_WIDTH - 1].tobytes().decode() if self.ok[row] else None

    def millis(self) -> Ints:
        """The epoch milliseconds of each row (parse with `times`, or read back from its
        rendered text with `render`); a bad row's value means nothing (see `ok`)."""
        if self.times is not None:
            return np.where(self.ok, self.times, 0)
        return _millis_of(self.rendered, self.ok)


def _millis_of(rendered: Bytes, ok: npt.NDArray[np.bool_]) -> Ints:
    """Epoch milliseconds read back from rendered rows (`YYYY-MM-DDTHH:MM:SS.mmmZ`)."""
    digit = rendered.astype(np.int64) - ord("0")

    def number(col: int, width: int) -> Ints:
        value = np.zeros(len(digit), np.int64)
        for k in range(col, col + width):
            value = value * 10 + digit[:, k]
        return value

    month = np.clip(number(5, 2), 1, 12)
    days = _days_from_civil(number(0, 4), month, number(8, 2))
    seconds = days * 86400 + number(11, 2) * 3600 + number(14, 2) * 60 + number(17, 2)
    return np.where(ok, seconds * 1000 + number(20, 3), 0)


def parse_block(
    data: bytes,
    first_line: int = 1,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
    render: bool = True,
    year: int | None = None,
    formats: Sequence[str] = (),
    times: bool = False,
) -> ParsedBlock:
    """Parse every newline-terminated line of `data` (without `render`, only which are good;
    with `times`, each good line's epoch milliseconds too, rendered or not).

    With `formats`, which are tried before any built-in form, every line is parsed on its own.
    """
    chars = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(chars == ord("\n"))
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    lengths -= (lengths > 0) & (chars[np.maximum(ends - 1, 0)] == ord("\r"))
    block = ParsedBlock(
        first_line, data, starts, lengths, np.empty((len(ends), OUT_WIDTH), np.uint8),
        np.zeros(len(ends), np.bool_), times=np.zeros(len(ends), np.int64) if times else None,
    )  # fmt: skip
    if not formats:
        if not _parse_natively(block, data, unit, naive_is_utc=tz is None, render=render):
            _parse_common_shapes(block, chars, naive_is_utc=tz is None, render=render)
            _parse_epoch_digits(block, chars, unit, render=render)
        _parse_templates(block, chars, naive_is_utc=tz is None, year=year, render=render)
    rules = partial(normalize, unit=unit, tz=tz, year=year, formats=formats)
    rest = np.flatnonzero(~block.ok)
    for row in rest:
        _parse_one(block, int(row), rules)
    if block.times is not None and len(rest):  # the definition's answers: read back
        block.times[rest] = _millis_of(block.rendered[rest], block.ok[rest])
    return block


def _parse_natively(
    block: ParsedBlock, data: bytes, unit: Unit, *, naive_is_utc: bool, render: bool
) -> bool:
    """The common shapes and epoch digits read by the native checker, the same rows as
    `_parse_common_shapes` and `_parse_epoch_digits` read; False when it is not there."""
    from lumu_cli import native_events  # (here: it imports events, which imports this module)

    found = native_events.parse_lines(data, unit=str(unit), naive_utc=naive_is_utc, render=render)
    if found is None:
        return False
    ok, rendered, millis = found
    block.ok = np.frombuffer(ok, np.bool_).copy()
    if render:
        block.rendered = np.frombuffer(rendered, np.uint8).reshape(-1, OUT_WIDTH).copy()
    if block.times is not None:
        block.times = np.frombuffer(millis, np.int64).copy()
    return True


def _parse_common_shapes(
    block: ParsedBlock, chars: Bytes, *, naive_is_utc: bool, render: bool
) -> None:
    present = np.flatnonzero(np.bincount(block.lengths, minlength=_MAX_SHAPE + 1)[: _MAX_SHAPE + 1])
    for length in present.tolist():
        if (shapes := _SHAPES.get(length)) is None:
            continue
        rows = np.flatnonzero(block.lengths == length)
        line = sliding_window_view(chars, length)[block.starts[rows]]
        shape = np.take(_CLASS, line).view(f"V{length}")[:, 0]
        dashes = (line[:, 4] == ord("-")) & (line[:, 7] == ord("-"))  # '+' shares their class
        for candidate in shapes:
            if candidate.zone == "" and not naive_is_utc:
                continue
            hit = np.flatnonzero((shape == candidate.pattern) & dashes)
            if len(hit) and (render or block.times is not None):
                millis, valid = candidate.millis(line[hit])
                if render:
                    block.rendered[rows[hit[valid]]] = _render(millis[valid])
                if block.times is not None:
                    block.times[rows[hit[valid]]] = millis[valid]
                block.ok[rows[hit[valid]]] = True
            elif len(hit):
                block.ok[rows[hit[candidate.valid(line[hit])]]] = True


# ---------------------------------------------------------------- fixed-width forms

# A template spells a fixed-width form column by column (forms.py is the definition):
#   Y O D h m s   digits of year, month (O: M is in GMT), day, hour, minute, second
#   E             the tens of a day: a digit or a space (`Dec  3`)
#   f             a digit of the fraction that counts (the first three); x one that does not
#   b a           the three letters of a month or a weekday name (any case)
#   A             any letter (a zone abbreviation the offset overrides); L one of I, W, E, F
#   ~ H N         the sign, hours and minutes of an offset
#   anything else the very character
# Its zone: "naive" (none written: UTC, unless --tz), "utc" (Z, GMT, UTC written), or "offset".
_TEMPLATE_SPECS: list[tuple[str, str]] = [
    ("DD/bbb/YYYY:hh:mm:ss ~HHNN", "offset"),  # Common Log Format
    ("[DD/bbb/YYYY:hh:mm:ss ~HHNN]", "offset"),
    ("aaa, ED bbb YYYY hh:mm:ss ~HHNN", "offset"),  # RFC 5322
    ("aaa, D bbb YYYY hh:mm:ss ~HHNN", "offset"),
    ("aaa, ED bbb YYYY hh:mm:ss GMT", "utc"),  # HTTP dates
    ("aaa, ED-bbb-YYYY hh:mm:ss GMT", "utc"),  # Netscape cookies
    ("aaa bbb ED hh:mm:ss YYYY", "naive"),  # ctime, date(1)
    ("aaa bbb ED hh:mm:ss.fffxxx YYYY", "naive"),  # Apache httpd 2.4 error log
    ("aaa bbb ED hh:mm:ss UTC YYYY", "utc"),
    ("aaa bbb ED hh:mm:ss ~HHNN YYYY", "offset"),  # Go RubyDate
    ("aaa bbb DD YYYY hh:mm:ss GMT~HHNN", "offset"),  # JavaScript, without the zone's name
    ("DD-bbb-YYYY hh:mm:ss", "naive"),  # BIND
    ("DD-bbb-YYYY hh:mm:ss.fff", "naive"),
    ("bbb ED YYYY hh:mm:ss", "naive"),  # Cisco ASA, CEF rt
    ("bbb ED YYYY hh:mm:ss.fff", "naive"),
    ("bbb ED YYYY hh:mm:ss UTC", "utc"),
    ("bbb ED YYYY hh:mm:ss.fff UTC", "utc"),
    ("DD bbb YYYY hh:mm:ss.fff", "naive"),  # Redis
    ("YYYY/OO/DD hh:mm:ss", "naive"),  # PAN-OS
    ("YYYYOODDhhmmssZ", "utc"),  # LDAP GeneralizedTime
    ("YYYYOODDhhmmss.fffZ", "utc"),
    ("YYYYOODDhhmmss~HHNN", "offset"),
    ("YYYYOODDhhmmss.fff~HHNN", "offset"),
    ("bbb ED hh:mm:ss", "naive"),  # RFC 3164 syslog, with --year
    ("bbb DD hh:mm:ss.fff", "naive"),  # CEF rt without a year
    ("LOODD hh:mm:ss.fffxxx", "naive"),  # klog, with --year
    ("OO-DD hh:mm:ss.fff", "naive"),  # Android logcat, with --year
]
for _date in ("YYYY-OO-DDThh:mm:ss", "YYYY-OO-DD hh:mm:ss"):  # ISO with a spaced zone; Go
    for _digits in ("", ".f", ".ff", ".fff", ".fffxxx", ".fffxxxxxx"):
        _TEMPLATE_SPECS += [(f"{_date}{_digits} GMT", "utc"), (f"{_date}{_digits} UTC", "utc"),
                            (f"{_date}{_digits} ~HH:NN", "offset"),
                            (f"{_date}{_digits} ~HHNN", "offset")]  # fmt: skip
        if _date.endswith(" hh:mm:ss"):
            _TEMPLATE_SPECS += [(f"{_date}{_digits} ~HHNN AAA", "offset"),
                                (f"{_date}{_digits} ~HHNN AAAA", "offset")]  # fmt: skip
_LETTER_CODES = 26 * 26 * 26


def _name_table(names: tuple[str, ...], first: int) -> npt.NDArray[np.int8]:
    """Three-letter code -> index + first (0 or -1 for no name)."""
    table = np.full(_LETTER_CODES, -1 if first == 0 else 0, np.int8)
    for index, name in enumerate(names):
        a, b, c = (ord(char) - ord("a") for char in name)
        table[a * 676 + b * 26 + c] = index + first
    return table


_MONTH_OF = _name_table(MONTHS, 1)
_WEEKDAY_OF = _name_table(WEEKDAYS, 0)


def _letters(chars: Bytes, col: int) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """The code of the three letters at `col` (any case), and which rows have three letters."""
    lower = chars[:, col : col + 3] | 0x20
    alpha = ((lower >= ord("a")) & (lower <= ord("z"))).all(axis=1)
    code = lower.astype(np.int64) - ord("a")
    codes: Ints = np.where(alpha, code[:, 0] * 676 + code[:, 1] * 26 + code[:, 2], 0)
    return codes, np.asarray(alpha, np.bool_)


@dataclass(frozen=True)
class _Template:
    spec: str
    zone: str

    @cached_property
    def columns(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for col, char in enumerate(self.spec):
            found.setdefault(char, []).append(col)
        return found

    @cached_property
    def literal(self) -> tuple[npt.NDArray[np.intp], Bytes]:
        cols = [c for c, char in enumerate(self.spec) if char not in "YODhmsEfxbaALHN~"]
        return np.array(cols, np.intp), np.frombuffer(self.spec.encode(), np.uint8)[cols]

    def millis(self, chars: Bytes, year: int | None) -> tuple[Ints, npt.NDArray[np.bool_]]:
        """Epoch milliseconds of rows of this template, and which rows it surely reads."""
        cols = self.columns
        literal_cols, literal = self.literal
        ok = (chars[:, literal_cols] == literal).all(axis=1)
        digit_cols = [c for key in "YODhmsfxHN" for c in cols.get(key, [])]
        ok &= ((chars[:, digit_cols] - ord("0")) < 10).all(axis=1)
        for col in cols.get("E", []):
            ok &= (chars[:, col] == ord(" ")) | ((chars[:, col] - ord("0")) < 10)
        for col in cols.get("A", []):
            ok &= ((chars[:, col] | 0x20) - ord("a")) < 26
        for col in cols.get("L", []):
            ok &= np.isin(chars[:, col], np.frombuffer(b"IWEF", np.uint8))
        for col in cols.get("~", []):
            ok &= (chars[:, col] == ord("+")) | (chars[:, col] == ord("-"))
        digits = np.where(chars == ord(" "), ord("0"), chars).astype(np.int64) - ord("0")

        def number(key: str, count: int | None = None) -> Ints:
            value = np.zeros(len(chars), np.int64)
            for col in cols.get(key, [])[:count]:
                value = value * 10 + digits[:, col]
            return value

        yyyy = number("Y") if "Y" in cols else np.full(len(chars), year or 0, np.int64)
        if "b" in cols:
            code, alpha = _letters(chars, cols["b"][0])
            month = _MONTH_OF[code].astype(np.int64)
            ok &= alpha & (month > 0)
        else:
            month = number("O")
        day = number("E") * 10 + number("D") if "E" in cols else number("D")
        fraction = cols.get("f", [])
        ms = number("f") * 10 ** (3 - len(fraction))
        offset = (number("H") * 60 + number("N")) * np.where(
            chars[:, cols["~"][0]] == ord("-"), -1, 1
        ) if "~" in cols else np.zeros(len(chars), np.int64)  # fmt: skip
        ok &= _real_dates(yyyy, month, day) & (yyyy >= 2) & (yyyy <= 9998)  # edges: the definition
        ok &= (number("h") <= 23) & (number("m") <= 59) & (number("s") <= 59)
        ok &= (number("H") <= 23) & (number("N") <= 59)
        days = _days_from_civil(np.where(ok, yyyy, 1970), np.clip(month, 1, 12), day)
        if "a" in cols:
            code, alpha = _letters(chars, cols["a"][0])
            ok &= alpha & (_WEEKDAY_OF[code] == (days + 3) % 7)  # 1970-01-01 was a Thursday
        seconds = days * 86400 + number("h") * 3600 + number("m") * 60 + number("s")
        millis: Ints = (seconds - offset * 60) * 1000 + ms
        return millis, np.asarray(ok, np.bool_)


_TEMPLATES: dict[int, list[_Template]] = {}
for _spec, _zone in _TEMPLATE_SPECS:
    _TEMPLATES.setdefault(len(_spec), []).append(_Template(_spec, _zone))


def _parse_templates(
    block: ParsedBlock, chars: Bytes, *, naive_is_utc: bool, year: int | None, render: bool
) -> None:
    """The rows still open that fit a fixed-width form, read for the whole block at once."""
    if block.ok.all():
        return
    lengths = np.where(block.ok, 0, block.lengths)
    for length in sorted(set(np.unique(lengths).tolist()) & _TEMPLATES.keys()):
        rows = np.flatnonzero(lengths == length)
        line = sliding_window_view(chars, length)[block.starts[rows]]
        for template in _TEMPLATES[length]:
            if template.zone == "naive" and not naive_is_utc:
                continue
            if "Y" not in template.columns and year is None:
                continue
            millis, good = template.millis(line, year)
            if render:
                block.rendered[rows[good]] = _render(millis[good])
            if block.times is not None:
                block.times[rows[good]] = millis[good]
            block.ok[rows[good]] = True
            rows, line = rows[~good], line[~good]
            if not len(rows):
                break


_EPOCH_MAX_DIGITS = 18  # every 18-digit number fits an int64


def _parse_epoch_digits(block: ParsedBlock, chars: Bytes, unit: Unit, *, render: bool) -> None:
    """Lines of only digits (epoch numbers without sign or fraction), by the AUTO_RULE bounds.
    Under AUTO, eight digits are a date (YYYYMMDD): those are left to the definition."""
    lengths = np.where(block.ok | ((block.lengths == 8) & (unit is Unit.AUTO)), 0, block.lengths)
    present = np.flatnonzero(
        np.bincount(lengths, minlength=_EPOCH_MAX_DIGITS + 1)[1 : _EPOCH_MAX_DIGITS + 1]
    )
    for length in (present + 1).tolist():
        rows = np.flatnonzero(lengths == length)
        line = sliding_window_view(chars, length)[block.starts[rows]]
        digits = ((line - ord("0")) < 10).all(axis=1)  # uint8: bytes below '0' wrap around
        rows, line = rows[digits], line[digits]
        value = _num(line, 0, length)
        millis = np.full(len(rows), _MAX_MS + 1, np.int64)
        lower = 0
        for bound, unit_here in AUTO_BOUNDS if unit is Unit.AUTO else ((10**20, unit),):
            part = (value >= lower) & (value < bound)
            shift = DIGIT_SHIFT[unit_here] - 3  # decimal places to milliseconds
            if shift >= 0:
                part &= value <= _MAX_MS // 10**shift  # and no int64 overflow
                millis[part] = value[part] * 10**shift
            else:
                millis[part] = value[part] // 10**-shift
            lower = bound
        valid = millis <= _MAX_MS
        if render:
            block.rendered[rows[valid]] = _render(millis[valid])
        if block.times is not None:
            block.times[rows[valid]] = millis[valid]
        block.ok[rows[valid]] = True


def _parse_one(block: ParsedBlock, row: int, rules: Callable[[str | bytes], str]) -> None:
    raw = block.raw(row)
    try:
        value: str | bytes = raw.decode()
    except UnicodeDecodeError:
        value = raw
    try:
        text = rules(value)
    except InvalidTimestamp as exc:
        block.errors[row] = exc
        return
    block.rendered[row] = np.frombuffer(text.encode() + b"\n", np.uint8)
    block.ok[row] = True


def parse_stream(
    stream: io.BufferedIOBase,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
    name: str = "stdin",
    year: int | None = None,
    formats: Sequence[str] = (),
) -> Iterator[ParsedBlock]:
    """Parse a stream of lines in order, block by block; memory stays bounded whatever its length.

    A large block is cut in one piece per core and the pieces are parsed in threads: numpy
    releases the GIL for most of the work. Each block is finished before the next is read, so
    lines that trickle in (`tail -f`) are answered at once.
    """
    line = 1
    with ThreadPoolExecutor(WORKERS) as pool:
        for data in _read_blocks_or_fail(stream, name):
            pieces = _pieces(data, WORKERS) if len(data) >= SPLIT_BYTES else [data]
            parse = partial(parse_block, unit=unit, tz=tz, year=year, formats=formats)
            parsing = [pool.submit(parse, piece) for piece in pieces]
            for future in parsing:
                block = replace(future.result(), first_line=line)  # its rows counted it already
                line += len(block)
                yield block


def _read_blocks_or_fail(stream: io.BufferedIOBase, name: str) -> Iterator[bytes]:
    try:
        yield from read_blocks(stream)
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc


def _pieces(data: bytes, count: int) -> list[bytes]:
    """`data` cut at line ends into `count` pieces of about equal size."""
    cuts = [0]
    for k in range(1, count):
        cut = data.find(b"\n", len(data) * k // count) + 1
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(len(data))
    return [data[start:end] for start, end in itertools.pairwise(cuts) if end > start]


def read_blocks(stream: io.BufferedIOBase, size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines, each ending in a newline, as soon as the stream has them."""
    pending = b""
    while chunk := _read_available(stream, size):
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        pending = data[cut:]
        if len(pending) > MAX_LINE:  # keep its start, which is enough to report it
            pending = pending[:MAX_LINE] + _skip_line(stream)
    if pending:
        yield pending if pending.endswith(b"\n") else pending + b"\n"


def _skip_line(stream: io.BufferedIOBase) -> bytes:
    """Drop the rest of an over-long line; return what follows its newline."""
    while chunk := stream.read1(BLOCK_BYTES):
        newline = chunk.find(b"\n")
        if newline >= 0:
            return chunk[newline:]
    return b""


def _read_available(stream: io.BufferedIOBase, size: int) -> bytes:
    """Up to `size` bytes: waits for the first, then takes only what is ready (`tail -f` flows)."""
    data = stream.read1(size)
    while data and len(data) < size and _ready(stream):
        more = stream.read1(size - len(data))
        if not more:
            break
        data += more
    return data


def _ready(stream: io.BufferedIOBase) -> bool:
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError):  # no file descriptor (an in-memory stream): always ready
        return True
