"""Property tests for the timestamp rules and the batched stream parser.

1. Round trips: an instant written in every supported form parses back to that instant.
2. Fuzzing: arbitrary or nearly valid input either parses to an aware UTC datetime or raises
   InvalidTimestamp, never anything else.
3. The fast paths of `parse_block` (the native reader, and numpy's arrays) agree with
   `normalize` (the definition) line for line, rendering or only checking.
4. Fractions are truncated, never rounded.

Expected values come from datetime arithmetic and this file's own formatting (`iso_ms`), never
from the code under test, except in 3 where agreeing with `normalize` is the property itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lumu_cli import native_events
from lumu_cli.errors import InvalidTimestamp
from lumu_cli.timestamps import AUTO_RULE, Unit, format_timestamp, normalize, parse_timestamp
from lumu_cli.tsstream import parse_block

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
FIRST_US = (FIRST - EPOCH) // MICRO
LAST_US = (LAST - EPOCH) // MICRO
MADRID = ZoneInfo("Europe/Madrid")

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# RFC 2822 section 4.3 obsolete zone names, plus the UTC spellings, in minutes east of UTC.
RFC_ZONE_NAMES = {
    "GMT": 0, "UT": 0, "UTC": 0, "Z": 0,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300,
    "MST": -420, "MDT": -360, "PST": -480, "PDT": -420,
}  # fmt: skip
OUTPUT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
MUTATION_ALPHABET = "0123456789-:+TZ .,W"

SETTINGS = settings(max_examples=300, deadline=None)
BLOCK_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Year, month, day, hour, minute, second, microsecond of a local wall clock (year 0 or 10000 too).
Wall = tuple[int, int, int, int, int, int, int]


# ---------------------------------------------------------------- helpers (independent of lumu)


def iso_ms(instant: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` of an aware datetime, truncated to the millisecond."""
    u = instant.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond // 1000:03d}Z"
    )


def truncate(instant: datetime, digits: int) -> datetime:
    """`instant` with only `digits` (0..6) fraction digits kept."""
    step = 10 ** (6 - min(digits, 6))
    return instant.replace(microsecond=instant.microsecond // step * step)


def wall_clock(instant: datetime, offset_minutes: int) -> tuple[Wall, int]:
    """Local wall clock fields of a UTC instant at a fixed offset, and its weekday (Mon=0).

    The wall clock may fall on 0000-12-31 or 10000-01-01, which datetime cannot hold; those
    are computed by hand (the offset is under a day, so they are at most one day out).
    """
    offset = timedelta(minutes=offset_minutes)
    naive = instant.astimezone(UTC).replace(tzinfo=None)
    try:
        w = naive + offset
    except OverflowError:
        day = timedelta(days=1)
        if offset < timedelta(0):  # 0001-01-01 minus a bit: 0000-12-31, a Sunday
            s = naive + day + offset
            return (0, 12, 31, s.hour, s.minute, s.second, s.microsecond), (s.weekday() - 1) % 7
        s = naive - day + offset  # 9999-12-31 plus a bit: 10000-01-01, a Saturday
        return (10000, 1, 1, s.hour, s.minute, s.second, s.microsecond), (s.weekday() + 1) % 7
    return (w.year, w.month, w.day, w.hour, w.minute, w.second, w.microsecond), w.weekday()


def in_range(wall: Wall) -> bool:
    return 1 <= wall[0] <= 9999


def zone_text(style: str, offset_minutes: int, negative_zero: bool = False) -> str:
    """The written zone for a style: '' (naive), 'Z', 'hh:mm', 'hhmm' or 'hh'."""
    if style in ("", "Z"):
        return style
    sign = "-" if offset_minutes < 0 or (offset_minutes == 0 and negative_zero) else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    if style == "hh":
        assert minutes == 0
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}{':' if style == 'hh:mm' else ''}{minutes:02d}"


def fraction_text(microsecond: int, digits: int, mark: str) -> str:
    """`mark` and the first `digits` (0, 3 or 6) fraction digits of `microsecond`."""
    return mark + f"{microsecond:06d}"[:digits] if digits else ""


def epoch_text(n_ns: int, unit: Unit, strip: bool) -> str:
    """`n_ns` nanoseconds since the epoch written as a decimal number of `unit`."""
    return decimal_text(n_ns, {Unit.S: 9, Unit.MS: 6, Unit.US: 3, Unit.NS: 0}[unit], strip)


def decimal_text(n: int, places: int, strip: bool = False) -> str:
    """The integer `n` divided by 10**places, as exact decimal text."""
    whole, fraction = divmod(abs(n), 10**places)
    digits = f"{fraction:0{places}d}" if places else ""
    if strip:
        digits = digits.rstrip("0")
    return ("-" if n < 0 else "") + str(whole) + ("." + digits if digits else "")


Value = str | bytes | int | Decimal


def assert_parses_to(
    value: Value, expected: datetime, *, unit: Unit = Unit.AUTO, tz: tzinfo | None = None
) -> None:
    got = parse_timestamp(value, unit=unit, tz=tz)
    assert got.tzinfo is UTC, (value, got)
    assert got == expected, (value, got, expected)
    assert normalize(value, unit=unit, tz=tz) == iso_ms(expected), value


def assert_invalid(value: Value, *, unit: Unit = Unit.AUTO, tz: tzinfo | None = None) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_timestamp(value, unit=unit, tz=tz)


# ---------------------------------------------------------------- strategies

naive_instants = st.one_of(
    st.datetimes(),  # years 1..9999 with microseconds; hypothesis favours the ends
    st.datetimes(max_value=datetime(1, 1, 2)),
    st.datetimes(min_value=datetime(9999, 12, 30, 23)),
)
instants = naive_instants.map(lambda d: d.replace(tzinfo=UTC))
offsets = st.one_of(
    st.just(0),
    st.integers(-1439, 1439),
    st.sampled_from([60, -60, 330, -330, 345, 525, -570, 1439, -1439]),
)


@st.composite
def zones(
    draw: st.DrawFn, styles: tuple[str, ...] = ("", "Z", "hh:mm", "hhmm", "hh")
) -> tuple[str, int]:
    """A zone style and an offset in minutes it can write."""
    style = draw(st.sampled_from(styles))
    if style in ("", "Z"):
        return style, 0
    if style == "hh":
        return style, draw(st.integers(-23, 23)) * 60
    return style, draw(offsets)


@st.composite
def iso_strings(draw: st.DrawFn) -> tuple[str, datetime | None]:
    """An ISO 8601 extended string for a random instant, and the instant it must parse to
    (None when its wall clock falls outside years 1..9999)."""
    instant = draw(instants)
    style, offset = draw(zones())
    sep = draw(st.sampled_from("T t"))
    digits = draw(st.sampled_from([0, 3, 6]))
    mark = draw(st.sampled_from(".,"))
    wall, _ = wall_clock(instant, offset)
    y, mo, d, h, mi, s, us = wall
    text = (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
        f"{fraction_text(us, digits, mark)}{zone_text(style, offset, draw(st.booleans()))}"
    )
    return text, truncate(instant, digits) if in_range(wall) else None


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """`base` with one to three characters replaced, inserted or deleted."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        char = draw(st.sampled_from(MUTATION_ALPHABET))
        if op == "insert" or not text:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + char + text[at:]
            continue
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + (char if op == "replace" else "") + text[at + 1 :]
    return text


@st.composite
def named_strings(draw: st.DrawFn) -> str:
    """A valid RFC 2822 or ctime string (for mutation; round trips are tested below)."""
    d = draw(st.datetimes())
    zone = draw(st.sampled_from(["+0000", "-0530", "+2359", "GMT", "EST", "UTC"]))
    if draw(st.booleans()):
        return (
            f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year:04d} "
            f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {zone}"
        )
    return (
        f"{WEEKDAYS[d.weekday()]} {MONTHS[d.month - 1]} {d.day:2d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {d.year:04d}"
    )


near_valid = mutated(st.one_of(iso_strings().map(lambda pair: pair[0]), named_strings()))


@st.composite
def fast_shaped(draw: st.DrawFn) -> str:
    """`YYYY-MM-DD[Tt ]HH:MM:SS[.,fraction][zone]` with field values valid or not."""

    def field(valid: tuple[int, int], wide: tuple[int, int], edges: list[int]) -> int:
        return draw(st.one_of(st.integers(*valid), st.integers(*wide), st.sampled_from(edges)))

    if draw(st.integers(0, 3)) == 0:  # at an end of the calendar, where offsets overflow
        year, month, day, hour = draw(st.sampled_from([(1, 1, 1, 0), (9999, 12, 31, 23)]))
    else:
        year = field((1, 9999), (0, 9999), [0, 1, 1582, 1900, 1970, 2000, 2024, 9999])
        month = field((1, 12), (0, 19), [0, 1, 2, 12, 13])
        day = field((1, 28), (0, 39), [0, 1, 28, 29, 30, 31, 32])
        hour = field((0, 23), (0, 29), [0, 23, 24])
    minute = field((0, 59), (0, 69), [0, 59, 60])
    second = field((0, 59), (0, 69), [0, 59, 60])
    text = f"{year:04d}-{month:02d}-{day:02d}{draw(st.sampled_from('Tt '))}"
    text += f"{hour:02d}:{minute:02d}:{second:02d}"
    places = draw(st.one_of(st.just(0), st.integers(1, 9), st.integers(1, 12)))
    if places:
        fraction = draw(
            st.one_of(
                st.text("0123456789", min_size=places, max_size=places),
                st.sampled_from(["0", "9"]).map(lambda digit: digit * places),
            )
        )
        text += draw(st.sampled_from(".,")) + fraction
    style = draw(st.sampled_from(["", "Z", "z", "hh:mm", "hhmm", "hh"]))
    if style in ("Z", "z", ""):
        return text + style
    sign = draw(st.sampled_from("+-"))
    zh = field((0, 23), (0, 29), [0, 1, 23, 24])
    zm = field((0, 59), (0, 69), [0, 1, 30, 59, 60])
    if style == "hh":
        return f"{text}{sign}{zh:02d}"
    return f"{text}{sign}{zh:02d}{':' if style == 'hh:mm' else ''}{zm:02d}"


@st.composite
def separator_swapped(draw: st.DrawFn) -> str:
    """A fast-shaped line with one separator (or zone sign) replaced by another separator."""
    text = draw(fast_shaped())
    spots = [i for i, char in enumerate(text) if not char.isdigit()]
    at = draw(st.sampled_from(spots))
    return text[:at] + draw(st.sampled_from("-+:Tt .,Zz/_")) + text[at + 1 :]


@st.composite
def calendar_edges(draw: st.DrawFn) -> str:
    """A fast-shaped line whose UTC instant is within seconds of 0001-01-01 or 10000-01-01."""
    minutes = draw(st.integers(0, 1439))
    delta = timedelta(milliseconds=draw(st.integers(-3000, 3000)))
    if draw(st.booleans()):  # local clock ahead of UTC near the start
        anchor, offset = datetime(1, 1, 1), minutes
    else:  # local clock behind UTC near the end
        anchor, offset = datetime(9999, 12, 31, 23, 59, 59, 999000), -minutes
    try:
        wall = anchor + timedelta(minutes=offset) + delta
    except OverflowError:
        wall = anchor + timedelta(minutes=offset) - delta
    return wall.isoformat(sep=draw(st.sampled_from("Tt ")), timespec="milliseconds") + zone_text(
        draw(st.sampled_from(["hh:mm", "hhmm"])), offset, negative_zero=draw(st.booleans())
    )


no_newline = st.characters(codec="utf-8", exclude_characters="\n\r")
block_lines = st.lists(
    st.tuples(
        st.one_of(
            fast_shaped().map(str.encode),
            fast_shaped().map(str.encode),
            separator_swapped().map(str.encode),
            calendar_edges().map(str.encode),
            mutated(fast_shaped()).map(str.encode),
            near_valid.map(str.encode),
            st.integers(-(10**15), 10**21).map(lambda n: str(n).encode()),
            st.text(no_newline, max_size=30).map(str.encode),
            st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
        ),
        st.booleans(),  # end the line with \r\n instead of \n
    ),
    max_size=40,
)


# ---------------------------------------------------------------- 1. round trips


@SETTINGS
@given(iso_strings())
@example(("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)))
@example(("0000-12-31T23:00:00-01:00", None))  # UTC is in range, the written year is not
@example(("9999-12-31T23:59:59.999999Z", LAST))
@example(("10000-01-01T00:30:00+01:00", None))
def test_iso_extended_round_trip(case: tuple[str, datetime | None]) -> None:
    text, expected = case
    if expected is None:
        assert_invalid(text)
    else:
        assert_parses_to(text, expected)


@SETTINGS
@given(instants, zones(("Z", "hhmm", "hh")), st.sampled_from([0, 3, 6]), st.sampled_from(".,"))
def test_iso_basic_round_trip(
    instant: datetime, zone: tuple[str, int], digits: int, mark: str
) -> None:
    style, offset = zone
    wall, _ = wall_clock(instant, offset)
    y, mo, d, h, mi, s, us = wall
    text = f"{y:04d}{mo:02d}{d:02d}T{h:02d}{mi:02d}{s:02d}"
    text += fraction_text(us, digits, mark) + zone_text(style, offset)
    if in_range(wall):
        assert_parses_to(text, truncate(instant, digits))
    else:
        assert_invalid(text)


@SETTINGS
@given(
    instants,
    st.one_of(
        st.sampled_from(sorted(RFC_ZONE_NAMES)).map(lambda name: (name, RFC_ZONE_NAMES[name])),
        offsets.map(lambda off: (zone_text("hhmm", off), off)),
    ),
    st.booleans(),
    st.booleans(),
)
def test_rfc2822_round_trip(
    instant: datetime, zone: tuple[str, int], with_weekday: bool, pad_day: bool
) -> None:
    name, offset = zone
    wall, weekday = wall_clock(instant, offset)
    y, mo, d, h, mi, s, _ = wall
    day = f"{d:02d}" if pad_day else str(d)
    body = f"{day} {MONTHS[mo - 1]} {y:04d} {h:02d}:{mi:02d}:{s:02d} {name}"
    text = f"{WEEKDAYS[weekday]}, {body}" if with_weekday else body
    if not in_range(wall):
        assert_invalid(text)
        return
    assert_parses_to(text, truncate(instant, 0))
    # The weekday is checked, not ignored.
    wrong = WEEKDAYS[(weekday + 1 + instant.microsecond % 6) % 7]
    assert_invalid(f"{wrong}, {body}")


@SETTINGS
@given(
    instants,
    st.sampled_from(["naive", "utc-name", "numeric", "tz-argument"]),
    offsets,
)
def test_ctime_round_trip(instant: datetime, mode: str, offset: int) -> None:
    if mode in ("naive", "utc-name"):
        offset = 0
    wall, weekday = wall_clock(instant, offset)
    y, mo, d, h, mi, s, _ = wall
    zone = {"utc-name": " UTC", "numeric": " " + zone_text("hhmm", offset)}.get(mode, "")
    text = f"{WEEKDAYS[weekday]} {MONTHS[mo - 1]} {d:2d} {h:02d}:{mi:02d}:{s:02d}{zone} {y:04d}"
    tz = timezone(timedelta(minutes=offset)) if mode == "tz-argument" else None
    if in_range(wall):
        assert_parses_to(text, truncate(instant, 0), tz=tz)
    else:
        assert_invalid(text, tz=tz)


@SETTINGS
@given(
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from("+-"),
    st.sampled_from(["iso", "iso-basic", "rfc2822", "ctime"]),
)
def test_numeric_zone_range(hours: int, minutes: int, sign: str, form: str) -> None:
    """A written offset is read exactly when it is within +/-23:59."""
    zone = f"{sign}{hours:02d}{minutes:02d}"
    text = {
        "iso": f"2024-09-18T19:44:10{sign}{hours:02d}:{minutes:02d}",
        "iso-basic": f"20240918T194410{zone}",
        "rfc2822": f"Wed, 18 Sep 2024 19:44:10 {zone}",
        "ctime": f"Wed Sep 18 19:44:10 {zone} 2024",
    }[form]
    if hours > 23 or minutes > 59:
        assert_invalid(text)
        return
    offset = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
    assert_parses_to(text, datetime(2024, 9, 18, 19, 44, 10, tzinfo=UTC) - offset)


def test_documented_examples() -> None:
    assert normalize("Thu Feb  4 21:00:57 2010") == "2010-02-04T21:00:57.000Z"
    assert normalize("Wed, 18 Sep 2024 19:44:10 +0530") == "2024-09-18T14:14:10.000Z"


# AUTO reads below 1e11 as seconds and [1e11, 1e14) as milliseconds: 1970..5138 and 1973..5138.
_NAIVE_EPOCH = EPOCH.replace(tzinfo=None)
AUTO_SECONDS = st.datetimes(_NAIVE_EPOCH, _NAIVE_EPOCH + timedelta(seconds=10**11) - MICRO)
AUTO_MILLIS = st.datetimes(
    _NAIVE_EPOCH + timedelta(milliseconds=10**11),
    _NAIVE_EPOCH + timedelta(milliseconds=10**14) - MICRO,
)


@SETTINGS
@given(
    AUTO_SECONDS.map(lambda d: d.replace(tzinfo=UTC)),
    st.sampled_from(["int", "str", "frac", "dec"]),
)
@example(EPOCH, "int")
@example(EPOCH + timedelta(seconds=10**11 - 1), "int")
def test_epoch_seconds_auto_round_trip(instant: datetime, form: str) -> None:
    micros = (instant - EPOCH) // MICRO
    seconds, fraction = divmod(micros, 10**6)
    assert seconds < 10**11  # inside AUTO's seconds band
    forms: dict[str, Value] = {
        "int": seconds,
        "str": f" {seconds} ",
        "frac": f"{seconds}.{fraction:06d}",
        "dec": Decimal(micros).scaleb(-6),
    }
    value = forms[form]
    if form in ("int", "str") and EIGHT_DIGITS[0] <= seconds < EIGHT_DIGITS[1]:
        return  # eight digits without a point are a date (below); with one, seconds as here
    assert_parses_to(value, instant if form in ("frac", "dec") else truncate(instant, 0))


@SETTINGS
@given(AUTO_MILLIS.map(lambda d: d.replace(tzinfo=UTC)), st.sampled_from(["int", "str", "frac"]))
@example(EPOCH + timedelta(milliseconds=10**11), "int")
def test_epoch_millis_auto_round_trip(instant: datetime, form: str) -> None:
    micros = (instant - EPOCH) // MICRO
    millis, fraction = divmod(micros, 1000)
    assert 10**11 <= millis < 10**14  # inside AUTO's milliseconds band
    forms: dict[str, Value] = {
        "int": millis,
        "str": str(millis),
        "frac": f"{millis}.{fraction:03d}",
    }
    value = forms[form]
    assert_parses_to(value, instant if form == "frac" else truncate(instant, 3))


# The AUTO rule, restated: first unit whose bound exceeds the integer part; but eight digits
# (no sign, no point) are an ISO 8601 basic date, YYYYMMDD.
AUTO_BANDS = ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3), (10**20, 1))  # bound, ns/unit
EIGHT_DIGITS = (10**7, 10**8)


def basic_date(n: int) -> datetime | None:
    """The date eight digits name, written plainly (None: not a date)."""
    text = str(n)
    try:
        return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), tzinfo=UTC)
    except ValueError:
        return None


@SETTINGS
@given(
    st.one_of(
        st.integers(*EIGHT_DIGITS).filter(lambda n: n < EIGHT_DIGITS[1]),
        st.dates(datetime(1000, 1, 1).date(), datetime(9999, 12, 31).date()).map(
            lambda d: int(f"{d:%Y%m%d}")
        ),
    ),
    st.sampled_from(["int", "str", "bytes"]),
)
@example(20070717, "str")  # a Symantec Web Security date field: 2007-07-17, never 1970
@example(99999999, "int")
def test_eight_digits_are_a_date_or_an_error_and_seconds_only_with_unit_s(
    n: int, form: str
) -> None:
    forms: dict[str, Value] = {"int": n, "str": str(n), "bytes": str(n).encode()}
    value = forms[form]
    date = basic_date(n)
    if date is None:
        with pytest.raises(InvalidTimestamp, match="eight digits are read as a date, YYYYMMDD"):
            parse_timestamp(value)
    else:
        assert_parses_to(value, date)
    assert parse_timestamp(value, unit=Unit.S) == EPOCH + timedelta(seconds=n)
    assert parse_timestamp(f"{n}.0") == EPOCH + timedelta(seconds=n)  # a point: seconds


@SETTINGS
@given(
    st.one_of(
        st.integers(0, 10**21),
        st.sampled_from([10**k + d for k in (11, 14, 17, 20) for d in (-1, 0, 1)]),
    ),
    st.booleans(),
)
def test_epoch_auto_rule(n: int, as_text: bool) -> None:
    assert "1e11" in AUTO_RULE
    assert "1e14" in AUTO_RULE
    value: str | int = str(n) if as_text else n
    if EIGHT_DIGITS[0] <= n < EIGHT_DIGITS[1]:
        return  # a date, or an error: the property above
    scale = next((ns for bound, ns in AUTO_BANDS if n < bound), None)
    if scale is None:
        assert_invalid(value)
        return
    assert_parses_to(value, EPOCH + timedelta(microseconds=n * scale // 1000))


@SETTINGS
@given(st.integers(1, 10**10), st.sampled_from(list(Unit)))
def test_negative_epoch_needs_a_unit(n: int, unit: Unit) -> None:
    for value in (-n, f"-{n}", f"-{n}.5", f"-0.{n}"):
        if unit is Unit.AUTO:
            assert_invalid(value)
        else:
            assert parse_timestamp(value, unit=unit) < EPOCH  # 10**10 s is still after year 1


@SETTINGS
@given(
    instants,
    st.integers(0, 999),
    st.sampled_from([Unit.S, Unit.MS, Unit.US, Unit.NS]),
    st.booleans(),
    st.sampled_from(["str", "int", "dec"]),
)
@example(FIRST, 0, Unit.S, False, "str")
@example(EPOCH - MICRO, 1, Unit.NS, True, "str")
@example(LAST, 999, Unit.NS, False, "int")
def test_epoch_explicit_unit_round_trip(
    instant: datetime, extra_ns: int, unit: Unit, strip: bool, form: str
) -> None:
    """Any instant (negative epochs too) as a number of s/ms/us/ns, floored to the microsecond."""
    n_ns = (instant - EPOCH) // MICRO * 1000 + extra_ns
    text = epoch_text(n_ns, unit, strip)
    per_unit = {Unit.S: 10**9, Unit.MS: 10**6, Unit.US: 10**3, Unit.NS: 1}[unit]
    if form == "str":
        assert_parses_to(text, instant, unit=unit)
    elif form == "dec":
        assert_parses_to(Decimal(text), instant, unit=unit)
    else:  # an int loses the finer digits: floor to a whole unit
        whole = n_ns // per_unit
        expected = EPOCH + timedelta(microseconds=whole * per_unit // 1000)
        assert_parses_to(whole, expected, unit=unit)


@SETTINGS
@given(
    st.one_of(st.integers(-(10**23), 10**23), st.integers(-(10**13), 10**13)),
    st.sampled_from([Unit.S, Unit.MS, Unit.US, Unit.NS]),
)
def test_epoch_explicit_unit_range(n: int, unit: Unit) -> None:
    """A number of `unit` is an instant exactly when it falls within years 1..9999."""
    per_unit = {Unit.S: 10**9, Unit.MS: 10**6, Unit.US: 10**3, Unit.NS: 1}[unit]
    micros = n * per_unit // 1000
    for value in (n, str(n)):
        if FIRST_US <= micros <= LAST_US:
            assert_parses_to(value, EPOCH + timedelta(microseconds=micros), unit=unit)
        else:
            assert_invalid(value, unit=unit)


# ---------------------------------------------------------------- 2. fuzzing


def check_total(value: str | bytes | int | float | Decimal, unit: Unit, tz: tzinfo | None) -> None:
    """parse_timestamp returns an aware UTC datetime or raises InvalidTimestamp, nothing else."""
    try:
        got = parse_timestamp(value, unit=unit, tz=tz)
    except InvalidTimestamp as exc:
        error = exc
    else:
        assert isinstance(got, datetime)
        assert got.tzinfo is UTC
        assert OUTPUT.fullmatch(format_timestamp(got))
        return
    assert error.value is value
    assert str(error).startswith("cannot parse ")


units = st.sampled_from(list(Unit))
tzs = st.sampled_from([None, MADRID, timezone(timedelta(hours=-9, minutes=-30))])


@SETTINGS
@given(st.text(), units, tzs)
def test_fuzz_text(value: str, unit: Unit, tz: tzinfo | None) -> None:
    check_total(value, unit, tz)


@SETTINGS
@given(st.binary(), units, tzs)
def test_fuzz_bytes(value: bytes, unit: Unit, tz: tzinfo | None) -> None:
    check_total(value, unit, tz)


@SETTINGS
@given(st.one_of(near_valid, mutated(fast_shaped()), separator_swapped()), units, tzs)
@example("9999-12-31T24:00:00", Unit.AUTO, None)
@example("9999-12-31T24:00:00+01:00", Unit.AUTO, None)
@example("9999-W52-7T12:00", Unit.AUTO, None)
@example("9999-W53-7", Unit.AUTO, None)
@example("0001-W01-1", Unit.AUTO, MADRID)
@example("9999-366", Unit.AUTO, None)
@example("Fri, 31 Dec 9999 23:59:59 -2400", Unit.AUTO, None)
@example("Fri Dec 31 23:59:59 +2400 9999", Unit.AUTO, None)
@example("Sat, 01 Jan 0000 00:00:00 +0000", Unit.AUTO, None)
def test_fuzz_near_valid(value: str, unit: Unit, tz: tzinfo | None) -> None:
    check_total(value, unit, tz)
    check_total(value.encode(), unit, tz)


@SETTINGS
@given(
    st.one_of(
        st.integers(),
        st.floats(),
        st.decimals(),
        st.integers(-(10**25), 10**25).map(lambda n: Decimal(n).scaleb(-9)),
    ),
    units,
)
def test_fuzz_numbers(value: int | float | Decimal, unit: Unit) -> None:
    check_total(value, unit, None)


@pytest.mark.parametrize("digits", [22, 4300, 4301, 5000])
def test_huge_numbers_are_invalid_timestamps(digits: int) -> None:
    # Regression: an int over 4300 digits used to raise a plain ValueError from str().
    for value in (10 ** (digits - 1), -(10 ** (digits - 1)), "9" * digits):
        for unit in Unit:
            check_total(value, unit, None)
            assert_invalid(value, unit=unit)


# ---------------------------------------------------------------- 3. fast path == definition


def expected_rows(
    lines: list[bytes], unit: Unit, tz: tzinfo | None
) -> list[tuple[str | None, str | None]]:
    """(normalized text, error message) of each line according to `normalize`."""
    rows: list[tuple[str | None, str | None]] = []
    for raw in lines:
        try:
            value: str | bytes = raw.decode()
        except UnicodeDecodeError:
            value = raw
        try:
            rows.append((normalize(value, unit=unit, tz=tz), None))
        except InvalidTimestamp as exc:
            rows.append((None, str(exc)))
    return rows


def check_block(
    lines: list[tuple[bytes, bool]], unit: Unit, tz: tzinfo | None, lo: int, hi: int
) -> None:
    """parse_block as the definition says, with the native reader (the default where it is
    built) and with numpy's arrays alone."""
    check_block_once(lines, unit, tz, lo, hi)
    native, native_events.native = native_events.native, None
    try:
        check_block_once(lines, unit, tz, lo, hi)
    finally:
        native_events.native = native


def check_block_once(
    lines: list[tuple[bytes, bool]], unit: Unit, tz: tzinfo | None, lo: int, hi: int
) -> None:
    data = b"".join(raw + (b"\r\n" if crlf else b"\n") for raw, crlf in lines)
    block = parse_block(data, 7, unit=unit, tz=tz)
    assert len(block) == len(lines)
    checked = parse_block(data, 7, unit=unit, tz=tz, render=False)  # as track checks stamps
    assert checked.ok.tolist() == block.ok.tolist()
    expected = expected_rows([raw for raw, _ in lines], unit, tz)
    for row, ((raw, _), (text, error)) in enumerate(zip(lines, expected, strict=True)):
        assert block.text(row) == raw.decode("utf-8", "replace")
        assert block.result(row) == text, raw
        if error is None:
            assert row not in block.errors, raw
        else:
            assert str(block.errors[row]) == error, raw
    assert set(block.errors) == {row for row, (text, _) in enumerate(expected) if text is None}
    good = [(text or "").encode() + b"\n" for text, _ in expected if text is not None]
    assert block.output(0, len(block)) == b"".join(good)
    lo, hi = sorted((min(lo, len(lines)), min(hi, len(lines))))
    part = [(text or "").encode() + b"\n" for text, _ in expected[lo:hi] if text is not None]
    assert block.output(lo, hi) == b"".join(part)


@BLOCK_SETTINGS
@given(block_lines, st.integers(0, 40), st.integers(0, 40))
@example([(b"2024-02-29T23:59:59.9999999999+23:59", False)], 0, 1)
@example([(b"0001-01-01T00:00:00+00:01", True), (b"9999-12-31 23:59:59,999-00:01", False)], 0, 2)
@example(
    [
        (b"2024+01-01T00:00:00Z", False),  # '+' shares the '-' class in the shape table
        (b"2024-01+01 00:00:00.5+01", False),
        (b"2024-01-01T00:00:00-00:60", False),
        (b"2023-02-29T12:00:00Z", False),
        (b"2024-01-01T24:00:00Z", False),
        (b"2024-01-01T24:00:01Z", False),
        (b"9999-12-31T23:59:59.000-00:01", True),
        (b"1900-02-29T00:00:00Z", False),  # no leap day in a century year,
        (b"2000-02-29T00:00:00.000Z", False),  # unless it divides by 400
        (b"2100-02-29 00:00:00+01:00", False),
        (b"2024-02-29T00:00:00+05:30", False),
        (b"2023-04-31T00:00:00Z", False),
    ],
    0,
    12,
)
def test_fast_path_equals_definition(lines: list[tuple[bytes, bool]], lo: int, hi: int) -> None:
    check_block(lines, Unit.AUTO, None, lo, hi)


@pytest.mark.parametrize(
    ("unit", "tz"),
    [(Unit.AUTO, MADRID), (Unit.MS, None), (Unit.MS, MADRID)],
    ids=["madrid", "ms", "ms-madrid"],
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=block_lines, lo=st.integers(0, 40), hi=st.integers(0, 40))
def test_fast_path_equals_definition_with_options(
    unit: Unit, tz: tzinfo | None, lines: list[tuple[bytes, bool]], lo: int, hi: int
) -> None:
    check_block(lines, unit, tz, lo, hi)


def test_fast_path_dst_gap_in_madrid() -> None:
    # 2024-03-31 02:30 does not exist in Madrid; the zoned forms of the same wall clock do.
    block = parse_block(b"2024-03-31T02:30:00\n2024-03-31T02:30:00+01:00\n", tz=MADRID)
    assert block.result(0) is None
    assert 0 in block.errors
    assert block.result(1) == "2024-03-31T01:30:00.000Z"


def test_empty_block_has_no_rows() -> None:
    # Regression: parse_block(b"") used to report one row while holding none.
    block = parse_block(b"")
    assert len(block) == 0
    assert block.output(0, 0) == b""
    assert block.errors == {}


# ---------------------------------------------------------------- 4. truncation, not rounding


@SETTINGS
@given(instants, st.integers(0, 9), st.sampled_from(".,"), zones(("", "Z", "hh:mm")))
@example(LAST, 9, ".", ("Z", 0))
@example(datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 6, ",", ("", 0))
def test_fraction_truncated_not_rounded(
    instant: datetime, nines: int, mark: str, zone: tuple[str, int]
) -> None:
    style, offset = zone
    wall, _ = wall_clock(instant, offset)
    if not in_range(wall):
        return
    y, mo, d, h, mi, s, us = wall
    head = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{mark}{us // 1000:03d}"
    zone_part = zone_text(style, offset)
    expected = iso_ms(instant)
    texts = [
        head + "000" + zone_part,
        head + "9" * nines + zone_part,
        head + "999999999" + zone_part,
    ]
    for text in texts:
        assert normalize(text) == expected, text
    # Through the block parser too: 9 digits take the fast path, longer ones the fallback.
    data = "".join(t + "\n" for t in [*texts, head + "9" * 12 + zone_part]).encode()
    block = parse_block(data)
    assert [block.result(r) for r in range(len(block))] == [expected] * 4
    # Microseconds are truncated as well: nine 9s keep the 999 microseconds, no more.
    got = parse_timestamp(head + "999999999" + zone_part)
    assert got == truncate(instant, 3) + timedelta(microseconds=999)


@SETTINGS
@given(instants, st.sampled_from([Unit.S, Unit.MS]))
@example(LAST, Unit.S)
def test_epoch_fraction_truncated_not_rounded(instant: datetime, unit: Unit) -> None:
    ms = (instant - EPOCH) // timedelta(milliseconds=1)
    # ms + 0.999999999 ms, negative epochs included, written in the unit: floors to ms + 999 us.
    places = 12 if unit is Unit.S else 9
    text = decimal_text(ms * 10**9 + 10**9 - 1, places)
    expected = EPOCH + timedelta(milliseconds=ms, microseconds=999)
    assert_parses_to(text, expected, unit=unit)
    assert normalize(text, unit=unit) == iso_ms(instant)


@SETTINGS
@given(
    st.datetimes(timezones=st.sampled_from([UTC, MADRID, timezone(timedelta(hours=14))])),
)
def test_format_timestamp_truncates(instant: datetime) -> None:
    try:
        instant.astimezone(UTC)
    except OverflowError:
        return
    assert format_timestamp(instant) == iso_ms(instant)


@pytest.mark.parametrize("unit", list(Unit))
@settings(max_examples=150, deadline=None)
@given(
    numbers=st.lists(
        st.one_of(
            st.integers(0, 10**20),
            st.sampled_from([0, 10**11 - 1, 10**11, 10**14 - 1, 10**14, 10**17 - 1, 10**17]),
            st.integers(253402300799, 253402300800),  # the last second of year 9999
            st.integers(10**17, 10**18 - 1),
        ),
        max_size=30,
    ),
    zeros=st.integers(0, 3),
)
def test_epoch_digit_fast_path_equals_definition(
    unit: Unit, numbers: list[int], zeros: int
) -> None:
    # Lines of 1-18 digits take the numpy epoch path; longer ones take the definition's path.
    lines = [(b"0" * zeros + str(n).encode(), False) for n in numbers]
    check_block(lines, unit, None, 0, len(lines))
