"""Timestamp rules: a value a device sends -> aware UTC datetime -> `YYYY-MM-DDTHH:MM:SS.mmmZ`.

Strict by design: a value is either a real instant or an `InvalidTimestamp` naming the reason.
Nothing is ever filled in from today's date. The batched fast path in `tsstream` must agree with
this module exactly; this module is the definition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lumu_cli.errors import InvalidTimestamp, UsageError
from lumu_cli.forms import (
    ZONE_NAMES,
    fields_to_datetime,
    iana_zone,
    match_form,
    offset_zone,
    uncomment,
)
from lumu_cli.patterns import compile_pattern

if TYPE_CHECKING:
    from dateutil.parser import isoparser

__all__ = [
    "Unit",
    "format_millis",
    "format_timestamp",
    "load_zone",
    "normalize",
    "parse_timestamp",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unit(StrEnum):
    """Unit of an epoch number; AUTO picks one by magnitude (see AUTO_RULE)."""

    AUTO = "auto"
    S = "s"
    MS = "ms"
    US = "us"
    NS = "ns"


# Digits the decimal point moves right to turn the unit into microseconds.
# decimal places an epoch number moves to become microseconds
DIGIT_SHIFT = {Unit.S: 6, Unit.MS: 3, Unit.US: 0, Unit.NS: -3}
# AUTO: the first unit whose bound exceeds the integer part. Every unit then covers 1970/1973..5138.
AUTO_BOUNDS = ((10**11, Unit.S), (10**14, Unit.MS), (10**17, Unit.US), (10**20, Unit.NS))
AUTO_RULE = (
    "auto reads a non-negative epoch number by its integer part: below 1e11 seconds, below 1e14 "
    "milliseconds, below 1e17 microseconds, below 1e20 nanoseconds; longer is an error. "
    "Exactly eight digits (no sign, no point) are a date, YYYYMMDD"
)
_MAX_DIGITS = 21  # no unit reaches year 9999 with more integer digits than this
_TINY = Decimal("1e-30")
_TOO_LONG = "too many integer digits for any unit"

_EPOCH_TEXT = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}[0-9W-]*", re.ASCII)

# The ISO 8601 shape nearly every device writes, read here without dateutil (a tenth of its
# time); anything else that starts with a date, and anything this finds invalid, goes to dateutil
# for the definitive answer and its reason.
_ISO_COMMON = re.compile(
    r"(?P<Y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})[Tt ](?P<H>[0-9]{2}):(?P<M>[0-9]{2})"
    r"(?::(?P<S>[0-9]{2})(?:[.,](?P<f>[0-9]+))?)?(?P<z>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)
# ISO 8601 extended with a space before a numeric offset or an RFC 5322 zone name (PostgreSQL
# %t writes `2017-07-31 13:36:43 EST`).
_ISO_SPACED_ZONE = re.compile(
    r"(.*[0-9]) (?:([+-][0-9]{2}(?::?[0-9]{2})?)|((?i:UTC?|GMT|[ECMP][SD]T)))", re.ASCII
)
_ISO_OTHER_ZONE = re.compile(r".*[0-9] ([A-Za-z]{2,5})", re.ASCII)  # any other name: an error
# Under --unit auto, eight digits are an ISO 8601 basic calendar date, as GNU date reads them.
_BASIC_DATE = re.compile(r"[0-9]{8}", re.ASCII)
# Shapes that look like a form lumu does not read, and the --format that reads them.
_YYMMDD = re.compile(r"[0-9]{6}( |T)[0-9]{2}(:?)[0-9]{2}\2[0-9]{2}", re.ASCII)
_YEAR_MONTH_NAME = re.compile(r"[0-9]{4} [A-Za-z]{3} +[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# RFC 9557 suffixes: `[Europe/Paris]`, `[!Europe/Paris]`, `[u-ca=gregory]`.
_SUFFIXES = re.compile(r"((?:\[[^\[\]]*\])+)\Z")
_SUFFIX_TAG = re.compile(r"([a-z_][a-z0-9_-]*)=([A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)", re.ASCII)
_ZONE_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}", re.ASCII)
_US_DATE = re.compile(r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}\b", re.ASCII)
NOT_RECOGNIZED = "not a recognized timestamp (see lumu ts parse --help for the forms)"


def parse_timestamp(
    value: str | bytes | int | float | Decimal,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
    year: int | None = None,
    formats: Sequence[str] = (),
) -> datetime:
    """Parse one timestamp into an aware UTC datetime (microseconds kept, never rounded up).

    `tz` is the zone of inputs written without one (default UTC); `year` the year of forms that
    have none (RFC 3164 syslog, klog); `formats` strptime patterns tried first, in order.
    """
    if isinstance(value, bool):  # bool is an int subclass, but True is not an instant
        raise InvalidTimestamp(value, "a boolean is not a timestamp")
    if isinstance(value, int | float | Decimal):
        if isinstance(value, int) and unit is Unit.AUTO and 10**7 <= value < 10**8:
            return _basic_date(value, str(value), tz)
        return _from_epoch(value, _number_digits(value), unit)
    try:
        text = (value.decode() if isinstance(value, bytes) else value).strip()
    except UnicodeDecodeError:
        raise InvalidTimestamp(value, "not valid UTF-8 text") from None
    if not text:
        raise InvalidTimestamp(value, "empty input")
    for pattern in formats:
        compiled = compile_pattern(pattern)
        if match := compiled.regex.fullmatch(text):
            return _from_fields(value, match, f"--format {pattern!r}", year, tz)
    if digits := _EPOCH_TEXT.fullmatch(text):
        if unit is Unit.AUTO and _BASIC_DATE.fullmatch(text):
            return _basic_date(value, text, tz)
        return _from_epoch(value, digits, unit)
    if text[0] == "@":  # GNU date: seconds since the epoch, whatever --unit says
        if digits := _EPOCH_TEXT.fullmatch(text[1:]):
            return _from_epoch(value, digits, Unit.S)
        raise InvalidTimestamp(value, "expected seconds since the epoch after '@'")
    if (common := _ISO_COMMON.fullmatch(text)) and (fast := _iso_common(value, common, tz)):
        return fast
    if found := match_form(text):
        form, match = found
        return _from_fields(value, match, form.name, year, tz)
    if reason := _lookalike(text):
        raise InvalidTimestamp(value, reason)
    if _ISO_DATE.match(text):
        local, zone = _from_iso(value, text)
        return _to_utc(value, local, zone or tz)
    if ("(" in text or ")" in text) and uncomment(text) is None:
        raise InvalidTimestamp(value, "a comment's parentheses are unbalanced")
    if _US_DATE.match(text):
        reason = "a date with slashes must be year first (YYYY/MM/DD); use --format for others"
        raise InvalidTimestamp(value, reason)
    if formats:
        raise InvalidTimestamp(value, f"matches no --format, and is {NOT_RECOGNIZED}")
    raise InvalidTimestamp(value, NOT_RECOGNIZED)


def format_millis(millis: int) -> str:
    """Epoch milliseconds as `format_timestamp` writes an instant."""
    return format_timestamp(EPOCH + timedelta(milliseconds=millis))


def format_timestamp(instant: datetime) -> str:
    """Render an aware datetime as ISO 8601 UTC with milliseconds, truncating finer digits."""
    naive = instant.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="milliseconds") + "Z"


def normalize(
    value: str | bytes | int | float | Decimal,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
    year: int | None = None,
    formats: Sequence[str] = (),
) -> str:
    """`format_timestamp(parse_timestamp(value))`: the one-call form of `lumu ts parse`."""
    instant = parse_timestamp(value, unit=unit, tz=tz, year=year, formats=formats)
    return format_timestamp(instant)


def load_zone(name: str) -> tzinfo:
    """The IANA zone `name` (for `--tz`), or a UsageError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        example = "expected an IANA name such as Europe/Madrid"
        raise UsageError(f"unknown time zone {name!r} ({example})") from None


def _number_digits(value: int | float | Decimal) -> re.Match[str]:
    """A number as decimal digits, so ints, floats and Decimals share the exact text path."""
    if isinstance(value, int):
        if abs(value) >= 10**_MAX_DIGITS:  # before str(), which refuses ints over 4300 digits
            raise InvalidTimestamp(value, _TOO_LONG)
        return _digits(str(value))
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise InvalidTimestamp(value, "not a finite number")
    if number.adjusted() >= _MAX_DIGITS:  # before writing out all of 1e999999999
        raise InvalidTimestamp(value, _TOO_LONG)
    with localcontext(prec=_MAX_DIGITS + 40):  # floor to 1e-30 keeps every later floor exact
        return _digits(format(number.quantize(_TINY, rounding=ROUND_FLOOR), "f"))


def _digits(text: str) -> re.Match[str]:
    match = _EPOCH_TEXT.fullmatch(text)
    assert match is not None, text  # str(int) and format(finite Decimal, "f") always match
    return match


def _from_epoch(value: object, digits: re.Match[str], unit: Unit) -> datetime:
    """Epoch number as decimal digits -> UTC datetime, exact and floored to the microsecond."""
    sign, whole, fraction = digits[1], digits[2].lstrip("0") or "0", digits[3] or ""
    negative = sign == "-" and (whole != "0" or fraction.strip("0") != "")
    if len(whole) > _MAX_DIGITS:
        raise InvalidTimestamp(value, _TOO_LONG)
    if unit is Unit.AUTO:
        unit = _auto_unit(value, whole, negative)
    shift = DIGIT_SHIFT[unit]
    kept = fraction[:shift] if shift > 0 else ""
    magnitude = int(whole + kept.ljust(max(shift, 0), "0"))
    dropped = fraction[len(kept) :].strip("0") != ""
    micros = -magnitude - dropped if negative else magnitude  # floor, for either sign
    if shift < 0:
        micros //= 10**-shift
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidTimestamp(value, f"epoch {unit} value is outside years 1..9999") from None


def _basic_date(value: object, text: str, tz: tzinfo | None) -> datetime:
    """Eight digits under --unit auto: an ISO 8601 basic calendar date (YYYYMMDD), midnight."""
    try:
        local = datetime(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        reason = f"eight digits are read as a date, YYYYMMDD, and {text} is not one ({exc})"
        raise InvalidTimestamp(value, f"{reason}; pass --unit s for epoch seconds") from None
    return _to_utc(value, local, tz)


def _lookalike(text: str) -> str | None:
    """What is wrong with a shape that looks like a form lumu does not read, and the --format
    that reads it; None for any other text."""
    if match := _YYMMDD.fullmatch(text):
        colon = match[2]
        pattern = f"%y%m%d{match[1]}%H{colon}%M{colon}%S"
        return (
            "a two-digit year first (YYMMDD, as HDFS and MySQL 5.5 write it) is not ISO 8601 "
            f"and is ambiguous: if it is, pass --format '{pattern}'"
        )
    if _YEAR_MONTH_NAME.fullmatch(text):
        return (
            "a year first and then a month name (as OSSEC writes it) is not a form lumu knows: "
            "pass --format '%Y %b %d %H:%M:%S'"
        )
    return None


def _auto_unit(value: object, whole: str, negative: bool) -> Unit:
    """The unit AUTO_RULE gives an epoch whose integer part is `whole`."""
    if negative:
        reason = "a negative epoch is ambiguous; pass --unit s, ms, us or ns to read it"
        raise InvalidTimestamp(value, reason)
    for bound, unit in AUTO_BOUNDS:
        if int(whole) < bound:
            return unit
    raise InvalidTimestamp(value, _TOO_LONG)


def _iso_common(value: object, match: re.Match[str], tz: tzinfo | None) -> datetime | None:
    """The common ISO shape without dateutil, in UTC; None when dateutil must answer."""
    local = _iso_common_local(value, match)
    if local is None:
        return None
    try:
        return _to_utc(value, local, tz)
    except InvalidTimestamp:
        return None


def _iso_common_local(value: object, match: re.Match[str]) -> datetime | None:
    """The common ISO shape as written (aware if an offset is); None when a field is out of
    range, so that dateutil gives the answer (24:00 is midnight there) and the reason."""
    fraction = match["f"] or ""
    offset = match["z"]
    try:
        return datetime(
            int(match["Y"]), int(match["m"]), int(match["d"]), int(match["H"]),
            int(match["M"]), int(match["S"] or 0), int(fraction[:6].ljust(6, "0")),
            None if offset is None else offset_zone(value, offset),
        )  # fmt: skip
    except (ValueError, InvalidTimestamp):
        return None


def _from_iso(value: object, text: str) -> tuple[datetime, tzinfo | None]:
    """ISO 8601 / RFC 3339 via dateutil's strict isoparser, naive when no zone is written; with
    an RFC 9557 suffix, the zone it names beside it (the offset, when written, decides)."""
    suffixes = _SUFFIXES.search(text)
    if suffixes:
        text = text[: suffixes.start()]
    if spaced := _ISO_SPACED_ZONE.fullmatch(text):
        text = spaced[1] + (spaced[2] or _hhmm(timedelta(minutes=ZONE_NAMES[spaced[3].lower()])))
    elif named := _ISO_OTHER_ZONE.fullmatch(text):
        raise InvalidTimestamp(value, f"unknown time zone abbreviation {named[1]!r}")
    date_part = _ISO_DATE.match(text)
    assert date_part is not None
    rest = text[date_part.end() :]
    if rest and rest[0] not in "Tt ":
        raise InvalidTimestamp(
            value, f"unexpected {rest[0]!r} after the date (expected T or a space)"
        )
    common = _ISO_COMMON.fullmatch(text)
    local = None if common is None else _iso_common_local(value, common)
    if local is None:
        try:
            local = _isoparser().isoparse(date_part.group() + rest)
        except (ValueError, OverflowError) as exc:
            raise InvalidTimestamp(value, _iso_reason(exc)) from exc
    if suffixes is None:
        return local, None
    return _rfc9557(value, local, suffixes[1], utc=text[-1:] in ("Z", "z"))


def _rfc9557(
    value: object, local: datetime, suffixes: str, *, utc: bool
) -> tuple[datetime, tzinfo | None]:
    """Apply RFC 9557 suffixes: the zone (first, if any) and tags (`u-ca=...`). A critical
    (`!`) suffix that cannot be honoured is an error; an elective one is set aside."""
    zone, critical, name = None, False, ""
    for position, item in enumerate(suffixes[1:-1].split("][")):
        flagged = item.startswith("!")
        body = item[1:] if flagged else item
        if "=" in body:
            tag = _SUFFIX_TAG.fullmatch(body)
            if tag is None:
                raise InvalidTimestamp(value, f"malformed suffix [{item}]")
            key, calendar = tag[1], tag[2].lower()
            if flagged and (key != "u-ca" or calendar not in ("gregory", "iso8601")):
                raise InvalidTimestamp(value, f"critical suffix [{item}] is not supported")
            continue
        if position:
            raise InvalidTimestamp(value, f"time zone suffix [{item}] must come first")
        zone, critical, name = _suffix_zone(value, body), flagged, body
    if zone is None or local.tzinfo is None:
        return local, zone
    expected = local.astimezone(zone).utcoffset()
    if critical and not utc and expected != local.utcoffset():
        written, wanted = _hhmm(local.utcoffset()), _hhmm(expected)
        raise InvalidTimestamp(value, f"offset {written} disagrees with [!{name}] ({wanted})")
    return local, None


def _suffix_zone(value: object, name: str) -> tzinfo:
    if _ZONE_OFFSET.fullmatch(name):
        return offset_zone(value, name)
    return iana_zone(value, name)


def _hhmm(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds()) // 60
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _from_fields(
    value: object, match: re.Match[str], form: str, year: int | None, tz: tzinfo | None
) -> datetime:
    """A form's (or a --format's) match -> UTC datetime."""
    fields = match.groupdict()
    if (seconds := fields.get("s")) is not None:  # %s, with %f perhaps
        fraction = fields.get("f")
        return _from_epoch(value, _digits(seconds + (f".{fraction}" if fraction else "")), Unit.S)
    local, zone = fields_to_datetime(value, fields, form, year)
    return _to_utc(value, local, zone or tz)


@cache
def _isoparser() -> isoparser:
    """dateutil's parser, imported on first use: epoch-only runs start 25 ms sooner."""
    from dateutil.parser import isoparser

    return isoparser()


def _iso_reason(exc: Exception) -> str:
    if isinstance(exc, OverflowError):
        return "outside years 1..9999"
    reason = str(exc)
    if reason.startswith("Time zone offset must be"):
        return "malformed or repeated time zone"
    if reason.startswith(("String contains unknown", "Unused components", "'ascii' codec")):
        return "unexpected characters"
    return reason[:1].lower() + reason[1:]


def _to_utc(value: object, instant: datetime, tz: tzinfo | None) -> datetime:
    """Attach `tz` (default UTC) to a naive instant, then convert to UTC within years 1..9999."""
    if instant.tzinfo is None and tz is not None:
        aware = instant.replace(tzinfo=tz)
        try:
            exists = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == instant
        except OverflowError:
            raise InvalidTimestamp(value, "outside years 1..9999") from None
        if not exists:
            raise InvalidTimestamp(
                value, f"{instant} does not exist in {tz} (a daylight-saving gap)"
            )
        instant = aware
    try:
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    except OverflowError:
        raise InvalidTimestamp(value, "outside years 1..9999") from None
