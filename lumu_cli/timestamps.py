"""Timestamp rules: a value a device sends -> aware UTC datetime -> `YYYY-MM-DDTHH:MM:SS.mmmZ`.

Strict by design: a value is either a real instant or an `InvalidTimestamp` naming the reason.
Nothing is ever filled in from today's date. The batched fast path in `tsstream` must agree with
this module exactly; this module is the definition.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lumu_cli.errors import InvalidTimestamp, UsageError

if TYPE_CHECKING:
    from dateutil.parser import isoparser

__all__ = ["Unit", "format_timestamp", "load_zone", "normalize", "parse_timestamp"]

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
    "milliseconds, below 1e17 microseconds, below 1e20 nanoseconds; longer is an error"
)
_MAX_DIGITS = 21  # no unit reaches year 9999 with more integer digits than this
_TINY = Decimal("1e-30")
_TOO_LONG = "too many integer digits for any unit"

_EPOCH_TEXT = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}[0-9W-]*", re.ASCII)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# RFC 2822 section 3.3 and 4.3 zone names, plus UTC and Z as `date` and devices write them.
_ZONE_NAMES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "est": -300, "edt": -240, "cst": -360, "cdt": -300,
    "mst": -420, "mdt": -360, "pst": -480, "pdt": -420,
}  # fmt: skip
_DAY = r"(?P<wd>mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_MONTH = r"(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2})"
_ZONE = r"(?P<zone>[+-][0-9]{4}|[a-z]{1,4})"
_FLAGS = re.ASCII | re.IGNORECASE
# RFC 2822 / IMF-fixdate `Wed, 18 Sep 2024 19:44:10 +0530`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`
_RFC2822 = re.compile(
    rf"(?:{_DAY},\s*)?(?P<d>[0-9]{{1,2}})(?P<s1>\s+|-){_MONTH}(?P=s1)(?P<y>[0-9]{{2,4}})"
    rf"\s+{_TIME}(?::(?P<sec>[0-9]{{2}}))?\s+{_ZONE}",
    _FLAGS,
)
# ctime / asctime / date(1): `Thu Feb  4 21:00:57 2010`, `Fri Dec  3 16:15:30 UTC 2021`.
_CTIME = re.compile(
    rf"{_DAY}\s+{_MONTH}\s+(?P<d>[0-9]{{1,2}})\s+{_TIME}:(?P<sec>[0-9]{{2}})"
    rf"(?:\s+{_ZONE})?\s+(?P<y>[0-9]{{4}})",
    _FLAGS,
)


def parse_timestamp(
    value: str | bytes | int | float | Decimal,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
) -> datetime:
    """Parse one timestamp into an aware UTC datetime (microseconds kept, never rounded up)."""
    if isinstance(value, bool):  # bool is an int subclass, but True is not an instant
        raise InvalidTimestamp(value, "a boolean is not a timestamp")
    if isinstance(value, int | float | Decimal):
        return _from_epoch(value, _number_digits(value), unit)
    try:
        text = (value.decode() if isinstance(value, bytes) else value).strip()
    except UnicodeDecodeError:
        raise InvalidTimestamp(value, "not valid UTF-8 text") from None
    if not text:
        raise InvalidTimestamp(value, "empty input")
    if digits := _EPOCH_TEXT.fullmatch(text):
        return _from_epoch(value, digits, unit)
    if _ISO_DATE.match(text):
        local = _from_iso(value, text)
    elif match := _RFC2822.fullmatch(text) or _CTIME.fullmatch(text):
        local = _from_named(value, match)
    else:
        raise InvalidTimestamp(
            value, "not a recognized timestamp (ISO 8601, RFC 2822, ctime or an epoch number)"
        )
    return _to_utc(value, local, tz)


def format_timestamp(instant: datetime) -> str:
    """Render an aware datetime as ISO 8601 UTC with milliseconds, truncating finer digits."""
    naive = instant.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="milliseconds") + "Z"


def normalize(
    value: str | bytes | int | float | Decimal,
    *,
    unit: Unit = Unit.AUTO,
    tz: tzinfo | None = None,
) -> str:
    """`format_timestamp(parse_timestamp(value))`: the one-call form of `lumu ts parse`."""
    return format_timestamp(parse_timestamp(value, unit=unit, tz=tz))


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


def _auto_unit(value: object, whole: str, negative: bool) -> Unit:
    """The unit AUTO_RULE gives an epoch whose integer part is `whole`."""
    if negative:
        reason = "a negative epoch is ambiguous; pass --unit s, ms, us or ns to read it"
        raise InvalidTimestamp(value, reason)
    for bound, unit in AUTO_BOUNDS:
        if int(whole) < bound:
            return unit
    raise InvalidTimestamp(value, _TOO_LONG)


def _from_iso(value: object, text: str) -> datetime:
    """ISO 8601 / RFC 3339 via dateutil's strict isoparser; naive when no zone is written."""
    date_part = _ISO_DATE.match(text)
    assert date_part is not None
    rest = text[date_part.end() :]
    if rest.endswith(" UTC"):
        rest = rest[:-4] + "Z"
    if rest and rest[0] not in "Tt ":
        raise InvalidTimestamp(
            value, f"unexpected {rest[0]!r} after the date (expected T or a space)"
        )
    try:
        return _isoparser().isoparse(date_part.group() + rest)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestamp(value, _iso_reason(exc)) from exc


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


def _from_named(value: object, match: re.Match[str]) -> datetime:
    """RFC 2822, RFC 850, ctime and date(1) forms: names for weekday and month."""
    year_text = match["y"]
    year = int(year_text)
    if len(year_text) < 4:  # RFC 2822 section 4.3: 00-49 -> 20xx, 50-99 and 3 digits -> 19xx
        year += 2000 if len(year_text) == 2 and year < 50 else 1900
    month = _MONTHS.index(match["mon"].lower()) + 1
    try:
        local = datetime(
            year, month, int(match["d"]), int(match["h"]), int(match["mi"]), int(match["sec"] or 0)
        )
    except ValueError as exc:
        raise InvalidTimestamp(value, str(exc)) from exc
    weekday = match["wd"]
    if weekday is not None and _WEEKDAYS.index(weekday.lower()) != local.weekday():
        actual = _WEEKDAYS[local.weekday()].title()
        raise InvalidTimestamp(value, f"{local:%Y-%m-%d} is a {actual}, not {weekday.title()}")
    zone = match["zone"]
    return local if zone is None else local.replace(tzinfo=_named_zone(value, zone))


def _named_zone(value: object, zone: str) -> tzinfo:
    if zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[3:5])
        if hours > 23 or minutes > 59:
            raise InvalidTimestamp(value, f"time zone offset {zone} is beyond +/-23:59")
        offset = timedelta(hours=hours, minutes=minutes)
        return timezone(-offset if zone[0] == "-" else offset)
    if zone.lower() not in _ZONE_NAMES:
        raise InvalidTimestamp(value, f"unknown time zone abbreviation {zone!r}")
    return timezone(timedelta(minutes=_ZONE_NAMES[zone.lower()]))


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
