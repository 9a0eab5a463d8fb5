"""The timestamp rules, as a user of the library or of `lumu ts parse` sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lumu_cli import InvalidTimestamp, Unit, format_timestamp, load_zone, normalize, parse_timestamp
from lumu_cli.errors import UsageError

# The original exercise's table: (input, output).
CANONICAL = [
    ("2021-12-03T16:15:30.235Z", "2021-12-03T16:15:30.235Z"),
    ("2021-12-03T16:15:30.235", "2021-12-03T16:15:30.235Z"),
    ("2021-10-28T00:00:00.000", "2021-10-28T00:00:00.000Z"),
    ("2011-12-03T10:15:30", "2011-12-03T10:15:30.000Z"),
    (1726668850124, "2024-09-18T14:14:10.124Z"),
    ("1726668850124", "2024-09-18T14:14:10.124Z"),
    (1726667942, "2024-09-18T13:59:02.000Z"),
    ("1726667942", "2024-09-18T13:59:02.000Z"),
    (969286895000, "2000-09-18T14:21:35.000Z"),
    ("969286895000", "2000-09-18T14:21:35.000Z"),
    (3336042095, "2075-09-18T14:21:35.000Z"),
    ("3336042095", "2075-09-18T14:21:35.000Z"),
    (3336042095000, "2075-09-18T14:21:35.000Z"),
    ("3336042095000", "2075-09-18T14:21:35.000Z"),
    (10000000000, "2286-11-20T17:46:40.000Z"),
    (10000000000000, "2286-11-20T17:46:40.000Z"),
    (1726667942.123, "2024-09-18T13:59:02.123Z"),
    (969286895000.789, "2000-09-18T14:21:35.000Z"),
]

ACCEPTED = [
    # ISO 8601 / RFC 3339, extended and basic, every separator, fraction and zone form
    ("20211203T161530,235Z", "2021-12-03T16:15:30.235Z"),
    ("2021-12-03t16:15:30.235z", "2021-12-03T16:15:30.235Z"),
    ("2021-12-03 16:15:30.235Z", "2021-12-03T16:15:30.235Z"),
    ("2021-12-03T16:15:30,5Z", "2021-12-03T16:15:30.500Z"),
    ("2021-12-03T16:15:30.123456789Z", "2021-12-03T16:15:30.123Z"),
    ("2021-12-03T16:15:30.99999999999999Z", "2021-12-03T16:15:30.999Z"),
    ("2021-12-03T16:15:30+05:30", "2021-12-03T10:45:30.000Z"),
    ("2021-12-03T16:15:30-0800", "2021-12-04T00:15:30.000Z"),
    ("2021-12-03T16:15:30+05", "2021-12-03T11:15:30.000Z"),
    ("2021-12-03T16:15:30-00:00", "2021-12-03T16:15:30.000Z"),
    ("2021-12-03T16:15:30+23:59", "2021-12-02T16:16:30.000Z"),
    ("2021-12-03 16:15:30 UTC", "2021-12-03T16:15:30.000Z"),
    ("2021-12-03", "2021-12-03T00:00:00.000Z"),
    ("2014-02-04T12:30", "2014-02-04T12:30:00.000Z"),
    ("2014-02-04T12", "2014-02-04T12:00:00.000Z"),
    ("2016-W13-7", "2016-04-03T00:00:00.000Z"),
    ("2016W137", "2016-04-03T00:00:00.000Z"),
    ("2016-060", "2016-02-29T00:00:00.000Z"),
    ("2021-12-03T24:00:00", "2021-12-04T00:00:00.000Z"),
    ("2020-02-29T00:00:00Z", "2020-02-29T00:00:00.000Z"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
    ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999Z"),
    # RFC 2822, HTTP (IMF-fixdate, RFC 850), ctime and date(1)
    ("Wed, 18 Sep 2024 19:44:10 +0530", "2024-09-18T14:14:10.000Z"),
    ("Sun, 06 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37.000Z"),
    ("6 Nov 1994 08:49 EST", "1994-11-06T13:49:00.000Z"),
    ("Sunday, 06-Nov-94 08:49:37 GMT", "1994-11-06T08:49:37.000Z"),
    ("Tue, 06 Nov 07 08:49:37 +0000", "2007-11-06T08:49:37.000Z"),
    ("Sun, 06 Nov 094 08:49:37 +0000", "1994-11-06T08:49:37.000Z"),
    ("Thu Feb  4 21:00:57 2010", "2010-02-04T21:00:57.000Z"),
    ("Fri Dec  3 16:15:30 UTC 2021", "2021-12-03T16:15:30.000Z"),
    # epochs: ints, floats, Decimals and digit strings, exact decimal reading
    ("1726667942.9999999", "2024-09-18T13:59:02.999Z"),
    (Decimal("1726667942.1239"), "2024-09-18T13:59:02.123Z"),
    (Decimal("1e-999999999"), "1970-01-01T00:00:00.000Z"),
    (Decimal("17266679421239e-4"), "2024-09-18T13:59:02.123Z"),
    ("0", "1970-01-01T00:00:00.000Z"),
    ("99999999999", "5138-11-16T09:46:39.000Z"),
    ("100000000000", "1973-03-03T09:46:40.000Z"),
    ("1726668850124001", "2024-09-18T14:14:10.124Z"),
    ("1726668850124001999", "2024-09-18T14:14:10.124Z"),
    ("1420070400001", "2015-01-01T00:00:00.001Z"),
    ("20211203", "2021-12-03T00:00:00.000Z"),  # eight digits: a date, YYYYMMDD
    ("  2021-12-03T16:15:30Z \r", "2021-12-03T16:15:30.000Z"),
    (b"1700000000", "2023-11-14T22:13:20.000Z"),
]


@pytest.mark.parametrize(("value", "expected"), CANONICAL + ACCEPTED)
def test_accepted_forms_normalize_to_iso_utc_milliseconds(value: object, expected: str) -> None:
    assert normalize(value) == expected  # type: ignore[arg-type]


REJECTED = [
    ("invalid", "not a recognized timestamp"),
    ("abc123", "not a recognized timestamp"),
    ("-1234567890", "pass --unit"),
    ("", "empty input"),
    ("   ", "empty input"),
    ("2021-02-30T00:00:00", "day is out of range for month"),
    ("2021-02-29T00:00:00", "day is out of range for month"),
    ("2021-13-01T00:00:00", "month must be in 1..12"),
    ("2021-12-32T00:00:00", "day is out of range for month"),
    ("2021-12-03T25:00:00", "hour must be in 0..23"),
    ("2021-12-03T16:60:00", "minute must be in 0..59"),
    ("2021-12-03T16:15:61", "second must be in 0..59"),
    ("2021-12-03T16:15:30+24:00", "hours in time zone offset"),
    ("2021-12-03T16:15:30+23:60", "minutes in time zone offset"),
    ("Wed, 18 Sep 2024 19:44:10 +2400", "beyond +/-23:59"),
    ("2021-12-03T16:15:30Zjunk", "time zone"),
    ("junk2021-12-03T16:15:30Z", "not a recognized timestamp"),
    ("2021-12-03T16:15:30Z trailing", "time zone"),
    ("2021-12-03T16:15:30ZZ", "time zone"),
    ("2021-12-03T16:15:30Z+01:00", "time zone"),
    ("2021-12-03T16:15:30+01:00 UTC", "time zone"),
    ("2021-12-03x16:15:30", "after the date"),
    ("2021-12-03T16:15:30.Z", "unexpected characters"),
    ("nan", "not a recognized timestamp"),
    ("inf", "not a recognized timestamp"),
    ("1e400", "not a recognized timestamp"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    (float("-inf"), "not a finite number"),
    (Decimal("NaN"), "not a finite number"),
    (True, "boolean"),
    (Decimal("1e999999999"), "too many integer digits"),
    ("1" * 21, "too many integer digits for any unit"),
    ("1" * 5000, "too many integer digits for any unit"),
    ("0000-01-01T00:00:00Z", "year 0 is out of range"),
    ("0001-01-01T00:00:00+01:00", "outside years 1..9999"),
    ("9999-12-31T23:59:59-00:01", "outside years 1..9999"),
    ("9999-12-31T24:00:00", "outside years 1..9999"),
    ("Fri, 18 Sep 2024 19:44:10 +0530", "is a Wed, not Fri"),
    ("Fri Dec  3 16:15:30 CET 2021", "unknown time zone abbreviation"),
    ("Wed, 31 Feb 2024 19:44:10 +0530", "day is out of range for month"),
    ("\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660", "not a recognized"),
    (b"\xff\xfe", "not valid UTF-8"),
]


@pytest.mark.parametrize(("value", "reason"), REJECTED)
def test_rejected_inputs_name_the_input_and_the_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidTimestamp) as caught:
        parse_timestamp(value)  # type: ignore[arg-type]
    assert reason in caught.value.reason
    assert str(caught.value).startswith("cannot parse ")
    assert repr(value)[:40] in str(caught.value)


def test_a_number_is_never_read_as_an_iso_basic_date() -> None:
    assert normalize("1420070400001") == "2015-01-01T00:00:00.001Z"  # not the year 1420
    assert normalize("2021") == "1970-01-01T00:33:41.000Z"  # not the year 2021


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1700000000", Unit.S, "2023-11-14T22:13:20.000Z"),
        ("1700000000", Unit.MS, "1970-01-20T16:13:20.000Z"),
        ("1700000000", Unit.US, "1970-01-01T00:28:20.000Z"),
        ("1700000000123456789", Unit.NS, "2023-11-14T22:13:20.123Z"),
        ("-1234567890", Unit.S, "1930-11-18T00:28:30.000Z"),
        ("-1.0005", Unit.S, "1969-12-31T23:59:58.999Z"),  # floor: truncating the printed digits
        ("-1", Unit.NS, "1969-12-31T23:59:59.999Z"),
        ("-62135596800", Unit.S, "0001-01-01T00:00:00.000Z"),
        ("253402300799999", Unit.MS, "9999-12-31T23:59:59.999Z"),
        ("2021-12-03T16:15:30Z", Unit.MS, "2021-12-03T16:15:30.000Z"),  # units touch numbers only
    ],
)
def test_explicit_units(value: str, unit: Unit, expected: str) -> None:
    assert normalize(value, unit=unit) == expected


@pytest.mark.parametrize(("value", "unit"), [("-62135596801", Unit.S), ("253402300800", Unit.S)])
def test_explicit_unit_still_bounded_to_years_1_to_9999(value: str, unit: Unit) -> None:
    with pytest.raises(InvalidTimestamp, match=r"outside years 1\.\.9999"):
        parse_timestamp(value, unit=unit)


def test_auto_unit_boundaries_follow_the_documented_rule() -> None:
    assert normalize(10**11 - 1) == "5138-11-16T09:46:39.000Z"  # seconds
    assert normalize(10**11) == "1973-03-03T09:46:40.000Z"  # milliseconds
    assert normalize(10**14) == "1973-03-03T09:46:40.000Z"  # microseconds
    assert normalize(10**17) == "1973-03-03T09:46:40.000Z"  # nanoseconds
    assert normalize(10**20 - 1) == "5138-11-16T09:46:39.999Z"
    with pytest.raises(InvalidTimestamp, match="too many integer digits"):
        parse_timestamp(10**20)


def test_naive_inputs_take_the_given_zone_and_aware_ones_keep_theirs() -> None:
    madrid = load_zone("Europe/Madrid")
    assert normalize("2021-07-01T12:00:00", tz=madrid) == "2021-07-01T10:00:00.000Z"
    assert normalize("2021-01-01 12:00", tz=madrid) == "2021-01-01T11:00:00.000Z"
    assert normalize("Thu Feb  4 21:00:57 2010", tz=madrid) == "2010-02-04T20:00:57.000Z"
    assert normalize("2021-07-01T12:00:00Z", tz=madrid) == "2021-07-01T12:00:00.000Z"
    assert normalize("1700000000", tz=madrid) == "2023-11-14T22:13:20.000Z"
    # an hour that happens twice takes its first occurrence; one that never happens is an error
    assert normalize("2021-10-31T02:30:00", tz=madrid) == "2021-10-31T00:30:00.000Z"
    with pytest.raises(InvalidTimestamp, match="does not exist in Europe/Madrid"):
        parse_timestamp("2021-03-28T02:30:00", tz=madrid)


def test_unknown_zone_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Mars/Olympus"):
        load_zone("Mars/Olympus")


def test_library_returns_aware_utc_datetimes_with_microseconds() -> None:
    parsed = parse_timestamp("2021-12-03T16:15:30.123456+01:00")
    assert parsed == datetime(2021, 12, 3, 15, 15, 30, 123456, tzinfo=UTC)
    assert parsed.tzinfo is UTC
    assert format_timestamp(parsed) == "2021-12-03T15:15:30.123Z"


def test_format_truncates_rather_than_rounds() -> None:
    assert format_timestamp(datetime(2021, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)) == (
        "2021-01-01T23:59:59.999Z"
    )


def test_invalid_timestamp_is_a_value_error_and_a_lumu_error() -> None:
    from lumu_cli import LumuError

    with pytest.raises(ValueError, match="cannot parse"):
        parse_timestamp("nope")
    with pytest.raises(LumuError):
        parse_timestamp("nope")


def test_long_inputs_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidTimestamp) as caught:
        parse_timestamp("x" * 10_000)
    assert len(str(caught.value)) < 200
