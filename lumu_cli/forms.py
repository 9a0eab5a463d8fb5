"""The named forms of time that devices, servers and languages write, each read strictly.

Each form is one regular expression over the whole (stripped) text. Its groups come from one
vocabulary, the strptime letters (Y year, m month, b month name, d day, H hour, M minute, S
second, f fraction, z offset, Z zone name, a weekday, ...), and `fields_to_datetime` turns the
groups of any match into a datetime, checking every field. `--format` patterns (patterns.py)
compile to the same groups, so one function decides for both.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache, cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lumu_cli.errors import InvalidTimestamp

__all__ = ["FORMS", "YEARLESS", "Form", "fields_to_datetime", "match_form", "uncomment"]

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
               "september", "october", "november", "december")  # fmt: skip
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# RFC 5322 section 4.3 zone names, plus UTC and Z as `date` and devices write them.
ZONE_NAMES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "est": -300, "edt": -240, "cst": -360, "cdt": -300,
    "mst": -420, "mdt": -360, "pst": -480, "pdt": -420,
}  # fmt: skip
MISSING_YEAR = "the year is missing ({form} has none); pass --year YYYY"
FLAGS = re.ASCII | re.IGNORECASE

_b = r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_a = r"(?P<a>[a-z]{3,9})"
_HMS = r"(?P<H>[0-9]{2}):(?P<M>[0-9]{2}):(?P<S>[0-9]{2})"
_MS = r"(?:\.(?P<f>[0-9]{3}))?"  # milliseconds, as BIND and CEF write them
_OFFSET = r"(?P<z>[+-][0-9]{2}:?[0-9]{2})"
# A zone after a time, as Java's `zzz` (CEF) writes it: a name, `GMT-08:00`, or an offset.
_JAVA_ZONE = rf"(?:GMT)?{_OFFSET}|(?P<Z>[a-z]{{1,5}})"


@dataclass(frozen=True)
class Form:
    """One documented form: its name, where it comes from, an example, and its expression."""

    name: str
    source: str
    example: str
    pattern: str

    @cached_property
    def regex(self) -> re.Pattern[str]:  # compiled on first use: start-up stays short
        return re.compile(self.pattern, FLAGS)


_form = Form


# In the order they are tried. ISO 8601 and epoch numbers are timestamps.py's own.
FORMS = (
    _form(
        "Go time.Time.String",
        "Go package time, func (Time) String",
        "2009-11-10 23:00:00.123456789 +0000 UTC",
        rf"(?P<Y>[0-9]{{4}})-(?P<m>[0-9]{{2}})-(?P<d>[0-9]{{2}}) {_HMS}(?:\.(?P<f>[0-9]{{1,9}}))?"
        r" (?P<z>[+-][0-9]{4}) (?:[a-z]{1,5}|[+-][0-9]{2}(?:[0-9]{2})?)"
        r"(?: m=[+-][0-9]+\.[0-9]{9})?",  # the monotonic clock reading, when there is one
    ),
    _form(
        "LDAP GeneralizedTime",
        "X.680 GeneralizedTime, RFC 4517 section 3.3.13",
        "20211203161530.235Z",
        r"(?P<Y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})(?P<H>[0-9]{2})"
        r"(?:(?P<M>[0-9]{2})(?P<S>[0-9]{2})?)?(?:[.,](?P<f>[0-9]+))?(?P<z>Z|[+-][0-9]{2}(?:[0-9]{2})?)",
    ),
    _form(
        "Common Log Format",
        "Apache mod_log_config %t, nginx $time_local",
        "[10/Oct/2000:13:55:36 -0700]",
        rf"(?P<open>\[)?(?P<d>[0-9]{{2}})/{_b}/(?P<Y>[0-9]{{4}}):{_HMS} (?P<z>[+-][0-9]{{4}})"
        r"(?(open)\])",
    ),
    _form(
        "BIND query log",
        "BIND 9 logging, print-time yes (the default local form)",
        "03-Dec-2021 16:15:30.235",
        rf"(?P<d>[0-9]{{2}})-{_b}-(?P<Y>[0-9]{{4}}) {_HMS}{_MS}",
    ),
    _form(
        "PAN-OS",
        "Palo Alto Networks PAN-OS syslog fields (receive_time, time_generated)",
        "2021/12/03 16:15:30",
        rf"(?P<Y>[0-9]{{4}})/(?P<m>[0-9]{{2}})/(?P<d>[0-9]{{2}}) {_HMS}",
    ),
    _form(
        "JavaScript Date toString",
        "ECMAScript Date.prototype.toString",
        "Fri Dec 03 2021 16:15:30 GMT+0000 (Coordinated Universal Time)",
        rf"{_a} {_b} (?P<d>[0-9]{{2}}) (?P<Y>[0-9]{{4}}) {_HMS} GMT(?P<z>[+-][0-9]{{4}})"
        r"(?: \([^()]*\))?",
    ),
    _form(
        "RFC 5322",
        "RFC 5322 section 3.3 (with comments), RFC 850, Netscape cookies, HTTP dates",
        "Fri, 3 Dec 2021 16:15:30 +0000 (UTC)",
        rf"(?:{_a}\s*,\s*)?(?P<d>[0-9]{{1,2}})(?P<sep>\s+|-){_b}(?P=sep)(?P<y>[0-9]{{2,4}})"
        r"\s+(?P<H>[0-9]{2})\s*:\s*(?P<M>[0-9]{2})(?:\s*:\s*(?P<S>[0-9]{2}))?"
        r"\s+(?:(?P<z>[+-][0-9]{4})|(?P<Z>[a-z]{1,5}))",
    ),
    _form(
        "ctime and date(1)",
        "C asctime, date(1), Go time.UnixDate and time.RubyDate; Apache httpd 2.4 error log",
        "Fri Dec  3 16:15:30 UTC 2021",
        rf"{_a}\s+{_b}\s+(?P<d>[0-9]{{1,2}})\s+{_HMS}(?:\.(?P<f>[0-9]{{6}}))?"  # httpd: µs
        r"(?:\s+(?:(?P<z>[+-][0-9]{4})|(?P<Z>[a-z]{1,5})))?\s+(?P<Y>[0-9]{4})",
    ),
    _form(
        "Cisco ASA and CEF rt",
        "Cisco ASA logging timestamp; ArcSight CEF rt (MMM dd yyyy, MMM d yyyy)",
        "Dec 03 2021 16:15:30.235 UTC",
        rf"{_b} {{1,2}}(?P<d>[0-9]{{1,2}}) (?P<Y>[0-9]{{4}}) {_HMS}{_MS}(?: (?:{_JAVA_ZONE}))?",
    ),
    _form(
        "Redis log",
        "Redis server log (dd Mon yyyy HH:MM:SS.mmm)",
        "27 Dec 2018 11:19:18.874",
        rf"(?P<d>[0-9]{{2}}) {_b} (?P<Y>[0-9]{{4}}) {_HMS}\.(?P<f>[0-9]{{3}})",
    ),
    _form(
        "java.util.logging",
        "java.util.logging.SimpleFormatter (MMM d, yyyy h:mm:ss a)",
        "Dec 30, 2020 11:30:40 AM",
        rf"{_b} (?P<d>[0-9]{{1,2}}), (?P<Y>[0-9]{{4}}) (?P<I>[0-9]{{1,2}}):(?P<M>[0-9]{{2}})"
        r":(?P<S>[0-9]{2}) (?P<p>AM|PM)",
    ),
    _form(
        "English long date",
        "java.text.DateFormat.LONG (en_US) with a 24-hour time (MMMM d, yyyy HH:mm:ss)",
        "October 11, 2019 13:15:40",
        rf"(?P<B>{'|'.join(MONTH_NAMES)}) (?P<d>[0-9]{{1,2}}), (?P<Y>[0-9]{{4}}) {_HMS}",
    ),
)
# Forms without a year: read only with --year.
YEARLESS = (
    _form(
        "RFC 3164 syslog",
        "RFC 3164 section 4.1.2; CEF rt without a year (MMM dd HH:mm:ss)",
        "Dec  3 16:15:30",
        rf"{_b} {{1,2}}(?P<d>[0-9]{{1,2}}) {_HMS}{_MS}(?: (?:{_JAVA_ZONE}))?",
    ),
    _form(
        "klog",
        "Kubernetes klog header (Lmmdd hh:mm:ss.uuuuuu)",
        "I1203 16:15:30.235123",
        rf"[IWEF]?(?P<m>[0-9]{{2}})(?P<d>[0-9]{{2}}) {_HMS}\.(?P<f>[0-9]{{6}})",
    ),
    _form(
        "Android logcat",
        "Android logcat -v threadtime and -v time (MM-DD HH:MM:SS.mmm)",
        "03-17 16:13:38.811",
        rf"(?P<m>[0-9]{{2}})-(?P<d>[0-9]{{2}}) {_HMS}\.(?P<f>[0-9]{{3}})",
    ),
)


def match_form(text: str) -> tuple[Form, re.Match[str]] | None:
    """The first form whose expression matches the whole of `text`."""
    for form in FORMS:
        if match := form.regex.fullmatch(text):
            return form, match
    if "(" in text:
        stripped = uncomment(text)  # RFC 5322 comments, or a JavaScript zone name
        if stripped is not None and stripped != text:
            return match_form(stripped)
    for form in YEARLESS:
        if match := form.regex.fullmatch(text):
            return form, match
    return None


def uncomment(text: str) -> str | None:
    """`text` with each RFC 5322 comment (nested, with quoted pairs) made one space; None if a
    parenthesis is unbalanced."""
    out: list[str] = []
    depth = 0
    chars = iter(text)
    for char in chars:
        if char == "\\" and depth:
            next(chars, None)  # a quoted pair: the next character is part of the comment
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return None
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            out.append(char)
    return " ".join("".join(out).split()) if depth == 0 else None


def fields_to_datetime(
    value: object, fields: Mapping[str, str | None], form: str, year: int | None
) -> tuple[datetime, tzinfo | None]:
    """The datetime a match's fields name, aware when an offset is written; else naive, with the
    zone named beside it (an IANA name is applied as --tz is, daylight-saving gaps checked)."""
    try:
        if fields.get("j") is None:
            date = _year(value, fields, form, year), *_month_day(value, fields)
            local = datetime(*date, *_time(value, fields))
        else:
            local = _ordinal(value, fields, form, year)
    except InvalidTimestamp:
        raise
    except ValueError as exc:  # day out of range for month, year 0
        raise InvalidTimestamp(value, str(exc)) from None
    weekday = fields.get("a")
    if weekday is not None:
        _check_weekday(value, local, weekday)
    if (offset := fields.get("z")) is not None:
        return local.replace(tzinfo=offset_zone(value, offset)), None
    if (name := fields.get("Z")) is not None:
        return zone_name(value, name, local)
    return local, None


def _year(value: object, fields: Mapping[str, str | None], form: str, year: int | None) -> int:
    if (text := fields.get("Y")) is not None:
        return int(text)
    if (text := fields.get("y")) is not None:  # RFC 5322 section 4.3
        found = int(text)
        if len(text) < 4:
            found += 2000 if len(text) == 2 and found < 50 else 1900
        return found
    if (text := fields.get("yy")) is not None:  # POSIX strptime %y: 69-99 are 19xx
        return int(text) + (1900 if int(text) >= 69 else 2000)
    if year is None:
        raise InvalidTimestamp(value, MISSING_YEAR.format(form=form))
    return year


def _month_day(value: object, fields: Mapping[str, str | None]) -> tuple[int, int]:
    if (text := fields.get("m")) is not None:
        month = int(text)
    elif (text := fields.get("b")) is not None:
        month = MONTHS.index(text.lower()) + 1
    else:
        name = fields["B"]
        assert name is not None
        month = MONTH_NAMES.index(name.lower()) + 1
    day = fields["d"]
    assert day is not None
    if not 1 <= month <= 12:
        raise InvalidTimestamp(value, f"month {month} is not 1..12")
    return month, int(day)


def _time(value: object, fields: Mapping[str, str | None]) -> tuple[int, int, int, int]:
    """Hour, minute, second, microsecond; a fraction belongs to the last unit written."""
    get = fields.get
    hour = get("H")
    if hour is None and (twelve := get("I")) is not None:
        h12, meridian = int(twelve), (get("p") or "").lower()
        if not 1 <= h12 <= 12:
            raise InvalidTimestamp(value, f"hour {h12} is not 1..12 (with AM/PM)")
        hour = str(h12 % 12 + (12 if meridian == "pm" else 0))
    parts = [int(hour or 0), int(get("M") or 0), int(get("S") or 0)]
    for part, (unit, most) in zip(
        parts, (("hour", 23), ("minute", 59), ("second", 59)), strict=True
    ):
        if part > most:
            raise InvalidTimestamp(value, f"{unit} {part} is not 0..{most}")
    if (millis := get("ms")) is not None:  # --format's %3N: a count, not a fraction
        return parts[0], parts[1], parts[2], int(millis) * 1000
    fraction = get("f")
    if not fraction:
        return parts[0], parts[1], parts[2], 0
    last = 2 if get("S") is not None else 1 if get("M") is not None else 0
    scale = (1_000_000, 60_000_000, 3_600_000_000)[2 - last]
    micros = int(fraction) * scale // 10 ** len(fraction)  # floored: never rounded up
    base = parts[0] * 3_600_000_000 + parts[1] * 60_000_000 + parts[2] * 1_000_000 + micros
    hour_, rest = divmod(base, 3_600_000_000)
    minute, rest = divmod(rest, 60_000_000)
    second, micro = divmod(rest, 1_000_000)
    return hour_, minute, second, micro


def _ordinal(
    value: object, fields: Mapping[str, str | None], form: str, year: int | None
) -> datetime:
    day_of_year = int(fields["j"] or 0)
    start = datetime(_year(value, fields, form, year), 1, 1, *_time(value, fields))
    days = 366 if calendar.isleap(start.year) else 365
    if not 1 <= day_of_year <= days:
        raise InvalidTimestamp(value, f"day of year {day_of_year} is not 1..{days}")
    return start + timedelta(days=day_of_year - 1)


def _check_weekday(value: object, local: datetime, weekday: str) -> None:
    name = weekday.lower()
    if name in WEEKDAYS:
        index = WEEKDAYS.index(name)
    elif name in WEEKDAY_NAMES:
        index = WEEKDAY_NAMES.index(name)
    else:
        raise InvalidTimestamp(value, f"{weekday!r} is not a weekday")
    if index != local.weekday():
        actual = WEEKDAYS[local.weekday()].title()
        raise InvalidTimestamp(value, f"{local:%Y-%m-%d} is a {actual}, not {weekday.title()}")


def offset_zone(value: object, text: str) -> tzinfo:
    """`Z`, `+hh`, `+hhmm` or `+hh:mm` as a fixed zone; beyond +/-23:59 is an error."""
    try:
        return _offset(text)
    except ValueError:
        raise InvalidTimestamp(value, f"time zone offset {text} is beyond +/-23:59") from None


@cache
def _offset(text: str) -> tzinfo:
    if text in ("Z", "z"):
        return UTC
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def zone_name(value: object, name: str, local: datetime) -> tuple[datetime, tzinfo | None]:
    """`local` in the zone `name`: an RFC 5322 name (UTC, GMT, EST, ...) fixes the offset; an
    IANA name (Area/Location) comes back beside it. Other abbreviations are ambiguous (IST,
    CST) and an error."""
    minutes = ZONE_NAMES.get(name.lower())
    if minutes is not None:
        return local.replace(tzinfo=_offset_minutes(minutes)), None
    if "/" not in name:
        raise InvalidTimestamp(value, f"unknown time zone abbreviation {name!r}")
    return local, iana_zone(value, name)


@cache
def _offset_minutes(minutes: int) -> tzinfo:
    return timezone(timedelta(minutes=minutes))


def iana_zone(value: object, name: str) -> tzinfo:
    try:
        return _iana(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimestamp(value, f"unknown time zone {name!r}") from None


@cache
def _iana(name: str) -> tzinfo:
    return ZoneInfo(name)
