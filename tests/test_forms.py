"""The documented forms (forms.py), RFC 9557 suffixes, --year and --format (patterns.py).

Each example comes from its source's own documentation, named beside it. Near misses must fail
with their reason, and each form rendered from a random instant must parse back to the same
millisecond.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumu_cli.errors import InvalidTimestamp, UsageError
from lumu_cli.forms import FORMS, YEARLESS
from lumu_cli.patterns import compile_pattern
from lumu_cli.timestamps import normalize, parse_timestamp
from tests.test_cli import lines, lumu

DOCUMENTED = [
    # Apache mod_log_config, "Common Log Format" example; nginx $time_local is the same form
    ("[10/Oct/2000:13:55:36 -0700]", "2000-10-10T20:55:36.000Z"),
    ("10/Oct/2000:13:55:36 -0700", "2000-10-10T20:55:36.000Z"),
    # Go package time: Time.String ("2006-01-02 15:04:05.999999999 -0700 MST"), with the
    # monotonic reading the playground prints; UnixDate and RubyDate layouts
    ("2009-11-10 23:00:00 +0000 UTC m=+0.000000001", "2009-11-10T23:00:00.000Z"),
    ("2006-01-02 15:04:05.999999999 -0700 MST", "2006-01-02T22:04:05.999Z"),
    ("2021-12-03 17:15:30.235 +0100 CET", "2021-12-03T16:15:30.235Z"),
    ("2021-12-03 21:45:30 +0530 +0530", "2021-12-03T16:15:30.000Z"),  # no abbreviation known
    ("Mon Jan  2 15:04:05 MST 2006", "2006-01-02T22:04:05.000Z"),  # time.UnixDate
    ("Mon Jan 02 15:04:05 -0700 2006", "2006-01-02T22:04:05.000Z"),  # time.RubyDate
    # ECMAScript Date.prototype.toString (MDN's example)
    ("Tue Aug 19 1975 23:15:30 GMT+0200 (CEST)", "1975-08-19T21:15:30.000Z"),
    ("Fri Dec 03 2021 16:15:30 GMT+0000 (Coordinated Universal Time)", "2021-12-03T16:15:30.000Z"),
    ("Fri Dec 03 2021 17:15:30 GMT+0100", "2021-12-03T16:15:30.000Z"),
    # RFC 5322 appendix A.5 and A.6.3 (comments and folding white space), A.6.2 (2-digit year)
    ("Thu, 13 Feb 1969 23:32:54 -0330", "1969-02-14T03:02:54.000Z"),
    (
        "Thu,\n 13\n   Feb\n     1969\n 23:32\n    -0330 (Newfoundland Time)",
        "1969-02-14T03:02:00.000Z",
    ),
    ("21 Nov 97 09:55:06 GMT", "1997-11-21T09:55:06.000Z"),
    ("Fri, 3 Dec 2021 16:15:30 +0000 (UTC)", "2021-12-03T16:15:30.000Z"),
    ("(a) Fri (b), 3 (c) Dec 2021 16:15:30 (d (nested) \\) e) +0000", "2021-12-03T16:15:30.000Z"),
    # Netscape cookie form (Wdy, DD-Mon-YYYY HH:MM:SS GMT)
    ("Fri, 03-Dec-2021 16:15:30 GMT", "2021-12-03T16:15:30.000Z"),
    # RFC 9557 section 4 examples; Java ZonedDateTime.toString
    ("1996-12-19T16:39:57-08:00[America/Los_Angeles]", "1996-12-20T00:39:57.000Z"),
    ("1996-12-19T16:39:57-08:00[America/Los_Angeles][u-ca=hebrew]", "1996-12-20T00:39:57.000Z"),
    ("1996-12-19T16:39:57-08:00[_foo=bar][_baz=bat]", "1996-12-20T00:39:57.000Z"),
    ("2022-07-08T00:14:07+01:00[Europe/Paris]", "2022-07-07T23:14:07.000Z"),  # offset decides
    ("2022-07-08T00:14:07Z[!Europe/Paris]", "2022-07-08T00:14:07.000Z"),  # Z: local unknown
    ("2007-12-03T10:15:30+01:00[Europe/Paris]", "2007-12-03T09:15:30.000Z"),
    ("2021-12-03T17:15:30.235+01:00[!Europe/Paris][!u-ca=iso8601]", "2021-12-03T16:15:30.235Z"),
    ("2021-07-01T12:00:00[Europe/Madrid]", "2021-07-01T10:00:00.000Z"),  # no offset: the zone
    ("2021-12-03T16:15:30+05:30[+05:30]", "2021-12-03T10:45:30.000Z"),
    # BIND 9 ARM, logging: "28-Feb-2000 15:05:32.863 general: notice: running"
    ("28-Feb-2000 15:05:32.863", "2000-02-28T15:05:32.863Z"),
    ("03-Dec-2021 16:15:30", "2021-12-03T16:15:30.000Z"),
    # Cisco ASA "logging timestamp" and ArcSight CEF rt (MMM dd yyyy HH:mm:ss[.SSS] [zzz])
    ("Dec 03 2021 16:15:30", "2021-12-03T16:15:30.000Z"),
    ("Sep 07 2018 14:50:39.123", "2018-09-07T14:50:39.123Z"),
    ("Sep 07 2018 14:50:39.123 UTC", "2018-09-07T14:50:39.123Z"),
    ("Sep 07 2018 14:50:39 PDT", "2018-09-07T21:50:39.000Z"),
    ("Sep 07 2018 14:50:39 GMT-07:00", "2018-09-07T21:50:39.000Z"),
    # PAN-OS receive_time
    ("2019/05/07 14:33:52", "2019-05-07T14:33:52.000Z"),
    # RFC 4517 section 3.3.13 and X.680 GeneralizedTime
    ("199412161032Z", "1994-12-16T10:32:00.000Z"),
    ("199412160532-0500", "1994-12-16T10:32:00.000Z"),
    ("19851106210627.3Z", "1985-11-06T21:06:27.300Z"),
    ("19851106210627.3-0500", "1985-11-07T02:06:27.300Z"),
    ("1985110621.5Z", "1985-11-06T21:30:00.000Z"),  # a fraction of the hour
    ("20211203161530,235Z", "2021-12-03T16:15:30.235Z"),
    # GNU date: @ seconds since the epoch
    ("@2147483647", "2038-01-19T03:14:07.000Z"),
    ("@-1.5", "1969-12-31T23:59:58.500Z"),
    ("@0", "1970-01-01T00:00:00.000Z"),
    # a space before a numeric offset; GMT like UTC
    ("2021-12-03 16:15:30 +01:00", "2021-12-03T15:15:30.000Z"),
    ("2021-12-03T16:15:30.235 -0800", "2021-12-04T00:15:30.235Z"),
    ("2021-12-03T16:15:30 GMT", "2021-12-03T16:15:30.000Z"),
    # Apache httpd 2.4 error log (its documentation's example line), ctime with microseconds
    ("Fri Sep 09 10:42:29.902022 2011", "2011-09-09T10:42:29.902Z"),
    ("Mon Dec 26 16:15:55.103786 2016", "2016-12-26T16:15:55.103Z"),
    # PostgreSQL log_line_prefix %t: an ISO date and time, a space, an RFC 5322 zone name
    ("2017-07-31 13:36:43 EST", "2017-07-31T18:36:43.000Z"),
    ("2017-07-31 13:36:43 PDT", "2017-07-31T20:36:43.000Z"),
    ("2017-07-31 13:36:43 UT", "2017-07-31T13:36:43.000Z"),
    # Cisco ASA and CEF rt with a one-digit day, unpadded or space-padded
    ("Mar 7 2008 19:06:53", "2008-03-07T19:06:53.000Z"),
    ("Jan  6 2009 15:22:26", "2009-01-06T15:22:26.000Z"),
    # Redis server log ("1:M 27 Dec 2018 11:19:18.874 * Ready to accept connections")
    ("27 Dec 2018 11:19:18.874", "2018-12-27T11:19:18.874Z"),
    # java.util.logging.SimpleFormatter's default format (a 12-hour clock)
    ("Dec 30, 2020 11:30:40 AM", "2020-12-30T11:30:40.000Z"),
    ("Jul 30, 2020 3:00:21 PM", "2020-07-30T15:00:21.000Z"),
    ("Jan 1, 2021 12:05:00 AM", "2021-01-01T00:05:00.000Z"),
    ("Jan 1, 2021 12:05:00 PM", "2021-01-01T12:05:00.000Z"),
    # a full English month name with a comma (java.text.DateFormat.LONG, 24-hour time)
    ("October 11, 2019 13:15:40", "2019-10-11T13:15:40.000Z"),
    # ISO 8601 basic calendar date, as GNU date reads it (a Symantec Web Security date field)
    ("20070717", "2007-07-17T00:00:00.000Z"),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED, ids=[t for t, _ in DOCUMENTED])
def test_each_documented_example_reads_as_its_source_means(text: str, expected: str) -> None:
    assert normalize(text) == expected


NEAR_MISSES = [
    ("32/Oct/2000:13:55:36 -0700", "day is out of range for month"),
    ("2021/13/03 16:15:30", "month 13 is not 1..12"),
    ("20211303161530Z", "month 13 is not 1..12"),
    ("Fri, 3 Dec 2021 16:15:30 +0000 (UTC", "parentheses are unbalanced"),
    ("Fri, 3 Dec 2021 16:15:30 +0000 UTC)", "parentheses are unbalanced"),
    ("2021-12-03T17:15:30+01:00[Nowhere/City]", "unknown time zone 'Nowhere/City'"),
    ("10/Oct/2000:13:55:36 +2400", "beyond +/-23:59"),
    ("2021-12-03 16:15:30 +0000 UTC", None),  # valid: the control for the next line
    ("2021-12-03 16:15:30 +2400 UTC", "beyond +/-23:59"),
    ("Thu Dec 03 2021 16:15:30 GMT+0000", "2021-12-03 is a Fri, not Thu"),
    ("Thu, 3 Dec 2021 16:15:30 +0000", "2021-12-03 is a Fri, not Thu"),
    ("2022-07-08T00:14:07+01:00[!Europe/Paris]", "offset +01:00 disagrees with [!Europe/Paris]"),
    ("2021-12-03T16:15:30Z[!u-ca=hebrew]", "critical suffix [!u-ca=hebrew] is not supported"),
    ("2021-12-03T16:15:30Z[!x-key=1]", "critical suffix [!x-key=1] is not supported"),
    ("2021-12-03T16:15:30Z[u-ca=gregory][Europe/Paris]", "must come first"),
    ("2021-12-03T16:15:30Z[Bad Key=1]", "malformed suffix"),
    ("Dec  3 16:15:30", "the year is missing (RFC 3164 syslog has none); pass --year YYYY"),
    ("I1203 16:15:30.235123", "the year is missing (klog has none)"),
    ("12/03/2021 16:15:30", "must be year first (YYYY/MM/DD)"),
    ("Sep 07 2018 14:50:39 IST", "unknown time zone abbreviation 'IST'"),
    ("@", "expected seconds since the epoch after '@'"),
    ("@12e3", "expected seconds since the epoch after '@'"),
    ("28-Feb-2000 25:05:32.863", "hour 25 is not 0..23"),
    ("2019/05/07 14:60:52", "minute 60 is not 0..59"),
    ("Feb 30 2020 10:00:00", "day is out of range for month"),
    ("Tue Dec 26 16:15:55.103786 2016", "2016-12-26 is a Mon, not Tue"),
    ("Mon Dec 26 16:15:55.1037 2016", "not a recognized timestamp"),  # httpd writes 6 digits
    ("2017-07-31 13:36:43 CET", "unknown time zone abbreviation 'CET'"),
    ("Jan   6 2009 15:22:26", "not a recognized timestamp"),
    ("Feb 30 2008 19:06:53", "day is out of range for month"),
    ("27 Dec 2018 24:19:18.874", "hour 24 is not 0..23"),
    ("Dec 30, 2020 13:30:40 PM", "hour 13 is not 1..12 (with AM/PM)"),
    ("Dec 30, 2020 0:30:40 AM", "hour 0 is not 1..12 (with AM/PM)"),
    ("February 30, 2019 13:15:40", "day is out of range for month"),
    ("Octobre 11, 2019 13:15:40", "not a recognized timestamp"),
    ("03-17 16:13:38.811", "the year is missing (Android logcat has none); pass --year YYYY"),
    ("20070732", "eight digits are read as a date, YYYYMMDD, and 20070732 is not one"),
    ("12345678", "pass --unit s for epoch seconds"),
    ("081109 203615", "two-digit year first (YYMMDD, as HDFS and MySQL 5.5 write it)"),
    ("081109 203615", "pass --format '%y%m%d %H%M%S'"),
    ("161209 14:18:50", "pass --format '%y%m%d %H:%M:%S'"),
    ("2015 Nov 13 13:40:01", "a year first and then a month name (as OSSEC writes it)"),
    ("2015 Nov 13 13:40:01", "pass --format '%Y %b %d %H:%M:%S'"),
]


@pytest.mark.parametrize(("text", "reason"), NEAR_MISSES, ids=[t for t, _ in NEAR_MISSES])
def test_near_misses_fail_with_their_reason(text: str, reason: str | None) -> None:
    if reason is None:
        normalize(text)
        return
    with pytest.raises(InvalidTimestamp) as failed:
        normalize(text)
    assert reason in failed.value.reason


def test_generalized_time_without_a_zone_stays_an_epoch_number() -> None:
    # 14 digits are below 1e14: epoch milliseconds, never a date, as for any digit string
    assert normalize("20211203161530") == normalize(20211203161530)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oct 11 22:14:15", "2003-10-11T22:14:15.000Z"),  # RFC 3164 section 5.4 example 1
        ("Feb  5 17:32:18", "2003-02-05T17:32:18.000Z"),
        ("Dec 03 16:15:30.235 UTC", "2003-12-03T16:15:30.235Z"),  # CEF rt without a year
        ("I1203 16:15:30.235123", "2003-12-03T16:15:30.235Z"),  # klog
        ("E0511 13:07:12.345678", "2003-05-11T13:07:12.345Z"),
        ("03-17 16:13:38.811", "2003-03-17T16:13:38.811Z"),  # Android logcat threadtime
    ],
)
def test_year_supplies_the_year_of_yearless_forms(text: str, expected: str) -> None:
    assert normalize(text, year=2003) == expected


def test_year_never_overrides_a_written_year() -> None:
    assert normalize("Dec 03 2021 16:15:30", year=1999) == "2021-12-03T16:15:30.000Z"
    with pytest.raises(InvalidTimestamp, match="day is out of range"):
        normalize("Feb 29 00:00:00", year=2021)
    assert normalize("Feb 29 00:00:00", year=2024) == "2024-02-29T00:00:00.000Z"


# ---------------------------------------------------------------- --format


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("%d.%m.%Y %H:%M", "03.12.2021 16:15", "2021-12-03T16:15:00.000Z"),
        ("%Y%m%d-%H%M%S.%f%z", "20211203-161530.235+0100", "2021-12-03T15:15:30.235Z"),
        ("%d/%m/%y %I:%M:%S %p", "03/12/21 04:15:30 PM", "2021-12-03T16:15:30.000Z"),
        ("%d/%m/%y %I:%M:%S %p", "03/12/69 12:15:30 am", "1969-12-03T00:15:30.000Z"),
        (
            "%A, %B %d, %Y %T %Z",
            "Friday, December 03, 2021 16:15:30 EST",
            "2021-12-03T21:15:30.000Z",
        ),
        ("%a %e %b %Y %R %Z", "Fri  3 Dec 2021 17:15 Europe/Paris", "2021-12-03T16:15:00.000Z"),
        ("%Y-%j %H:%M", "2021-337 16:15", "2021-12-03T16:15:00.000Z"),
        ("%s", "1700000000", "2023-11-14T22:13:20.000Z"),
        ("ts=%s.%f", "ts=1700000000.2359", "2023-11-14T22:13:20.235Z"),
        ("%F %T%z", "2021-12-03 16:15:30Z", "2021-12-03T16:15:30.000Z"),
        ("%%%Y%%%m%%%d", "%2021%12%03", "2021-12-03T00:00:00.000Z"),
        ("%d  %b   %Y", "03 Dec\t2021", "2021-12-03T00:00:00.000Z"),  # any run of space
        # HealthApp: milliseconds as a plain count after a colon, which %3N reads and %f cannot
        ("%Y%m%d-%H:%M:%S:%3N", "20171223-22:15:29:606", "2017-12-23T22:15:29.606Z"),
        ("%Y%m%d-%H:%M:%S:%3N", "20171223-22:15:35:11", "2017-12-23T22:15:35.011Z"),
        ("%Y%m%d-%H:%M:%S:%3N", "20171223-22:15:35:1", "2017-12-23T22:15:35.001Z"),
        ("%Y%m%d-%H:%M:%S.%f", "20171223-22:15:35.11", "2017-12-23T22:15:35.110Z"),  # a fraction
        # the --format that each "a form lumu does not guess" error suggests reads its input
        ("%y%m%d %H%M%S", "081109 203615", "2008-11-09T20:36:15.000Z"),
        ("%y%m%d %H:%M:%S", "161209 14:18:50", "2016-12-09T14:18:50.000Z"),
        ("%Y %b %d %H:%M:%S", "2015 Nov 13 13:40:01", "2015-11-13T13:40:01.000Z"),
    ],
)
def test_format_patterns_read_what_they_say(pattern: str, text: str, expected: str) -> None:
    assert normalize(text, formats=[pattern]) == expected


@pytest.mark.parametrize(
    ("pattern", "text", "reason"),
    [
        ("%d.%m.%Y", "32.12.2021", "day is out of range for month"),
        ("%d.%m.%Y", "03.13.2021", "month 13 is not 1..12"),
        ("%a %d.%m.%Y", "Thu 03.12.2021", "is a Fri, not Thu"),
        ("%d.%m.%Y %z", "03.12.2021 +2400", "beyond +/-23:59"),
        ("%d.%m.%Y %Z", "03.12.2021 Nowhere/City", "unknown time zone 'Nowhere/City'"),
        ("%d.%m.%Y %Z", "03.12.2021 IST", "unknown time zone abbreviation 'IST'"),
        ("%d.%m.%Y %I %p", "03.12.2021 13 PM", "hour 13 is not 1..12"),
        ("%Y-%j", "2021-366", "day of year 366 is not 1..365"),
        ("%d.%m.%Y", "3.12.2021x", "matches no --format"),
    ],
)
def test_format_fields_are_checked_as_strictly(pattern: str, text: str, reason: str) -> None:
    with pytest.raises(InvalidTimestamp) as failed:
        normalize(text, formats=[pattern])
    assert reason in failed.value.reason


def test_formats_are_tried_in_order_before_the_built_in_forms() -> None:
    day_first = "%Y-%d-%m %H:%M:%S"  # would be ISO, read the other way
    assert normalize("2021-03-12 16:15:30", formats=[day_first]) == "2021-12-03T16:15:30.000Z"
    assert normalize("2021-03-12 16:15:30") == "2021-03-12T16:15:30.000Z"
    both = ["%d.%m.%Y", "%m/%d/%Y"]
    assert [normalize(t, formats=both) for t in ("03.12.2021", "12/03/2021")] == [
        "2021-12-03T00:00:00.000Z"
    ] * 2
    assert normalize("1700000000", formats=both) == "2023-11-14T22:13:20.000Z"  # built-in


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("%Q", "unknown directive %Q"),
        ("%F %T.%f:%3N", "%f and %3N both give the part of a second"),
        ("%F %T:%N", "unknown directive %N"),
        ("%Y-%m-%", "unknown directive a lone %"),
        ("%H:%M", "no date in it"),
        ("%Y %Y-%m-%d", "%Y says again"),
        ("%s %Y", "only %f may go with it"),
        ("%d.%m.%Y %I:%M", "%I needs %p"),
    ],
)
def test_bad_patterns_are_usage_errors_naming_them(pattern: str, words: str) -> None:
    with pytest.raises(UsageError) as failed:
        compile_pattern(pattern)
    assert f"--format {pattern!r}" in str(failed.value)
    assert words in str(failed.value)


def test_the_cli_takes_formats_and_year_on_arguments_and_stdin() -> None:
    stdin = b"03.12.2021 16:15\nDec  3 16:15:30\nnope\n2021-12-03T16:15:30Z\n"
    args = ("ts", "parse", "--format", "%d.%m.%Y %H:%M", "--year", "2020", "-")
    done = lumu(*args, stdin=stdin)
    assert done.returncode == 1
    assert lines(done.stdout) == [
        "2021-12-03T16:15:00.000Z", "2020-12-03T16:15:30.000Z", "2021-12-03T16:15:30.000Z",
    ]  # fmt: skip
    assert lines(done.stderr) == [
        "lumu: line 3: cannot parse 'nope': matches no --format, and is not a recognized "
        "timestamp (see lumu ts parse --help for the forms)"
    ]
    done = lumu("ts", "parse", "--format", "%d.%m.%Y %H:%M", "03.12.2021 16:15")
    assert (done.returncode, lines(done.stdout)) == (0, ["2021-12-03T16:15:00.000Z"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "%b %d %H:%M:%S", "x"), "has no year: add %Y or %y, or pass --year"),
        (("--format", "%Q", "x"), "unknown directive %Q"),
    ],
)
def test_the_cli_refuses_a_bad_format_with_one_line_and_exit_2(
    args: tuple[str, ...], message: str
) -> None:
    done = lumu("ts", "parse", *args)
    assert done.returncode == 2
    assert len(lines(done.stderr)) == 1
    assert message in done.stderr.decode()
    assert done.stdout == b""


def test_the_cli_says_the_year_is_missing_without_year() -> None:
    done = lumu("ts", "parse", "Dec  3 16:15:30")
    assert done.returncode == 1
    assert lines(done.stderr) == [
        "lumu: argument 1: cannot parse 'Dec  3 16:15:30': the year is missing (RFC 3164 syslog "
        "has none); pass --year YYYY"
    ]


# The examples of the issue "ts parse on real logs", each with its output or its error line.
REAL_LOG_LINES = [
    ("Mon Dec 26 16:15:55.103786 2016", "2016-12-26T16:15:55.103Z"),
    ("2017-07-31 13:36:43 EST", "2017-07-31T18:36:43.000Z"),
    ("Mar 7 2008 19:06:53", "2008-03-07T19:06:53.000Z"),
    ("Jan  6 2009 15:22:26", "2009-01-06T15:22:26.000Z"),
    ("27 Dec 2018 11:19:18.874", "2018-12-27T11:19:18.874Z"),
    ("Dec 30, 2020 11:30:40 AM", "2020-12-30T11:30:40.000Z"),
    ("Jul 30, 2020 3:00:21 PM", "2020-07-30T15:00:21.000Z"),
    ("October 11, 2019 13:15:40", "2019-10-11T13:15:40.000Z"),
    ("03-17 16:13:38.811", "2015-03-17T16:13:38.811Z"),  # with --year 2015
    ("20070717", "2007-07-17T00:00:00.000Z"),
    ("081109 203615", "pass --format '%y%m%d %H%M%S'"),
    ("161209 14:18:50", "pass --format '%y%m%d %H:%M:%S'"),
    ("2015 Nov 13 13:40:01", "pass --format '%Y %b %d %H:%M:%S'"),
]


def test_the_real_log_lines_as_arguments_and_on_stdin() -> None:
    texts = [text for text, _ in REAL_LOG_LINES]
    good = [out for _, out in REAL_LOG_LINES if out.endswith("Z")]
    bad = [(n, text, why) for n, (text, why) in enumerate(REAL_LOG_LINES, 1) if "--format" in why]
    stdin = ("\n".join(texts) + "\n").encode() * 30  # many lines: the array path's blocks
    for args, piped, where in (
        (texts, None, "argument"),
        (["-"], stdin, "line"),
    ):
        done = lumu("ts", "parse", "--year", "2015", *args, stdin=piped)
        assert done.returncode == 1
        copies = 30 if piped else 1
        assert lines(done.stdout) == good * copies
        errors = lines(done.stderr)
        assert len(errors) == len(bad) * copies
        for (n, text, why), line in zip(bad, errors, strict=False):
            assert line.startswith(f"lumu: {where} {n}: cannot parse {text!r}: ")
            assert line.endswith(why)
    without_year = lumu("ts", "parse", "03-17 16:13:38.811")
    assert lines(without_year.stderr) == [
        "lumu: argument 1: cannot parse '03-17 16:13:38.811': the year is missing (Android "
        "logcat has none); pass --year YYYY"
    ]


def test_empty_piped_input_prints_nothing_and_exits_0() -> None:
    done = lumu("ts", "parse")  # stdin: empty, not a terminal
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


# ---------------------------------------------------------------- round trips


def _hhmm(minutes: int, colon: bool = False) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{rest:02d}"


# form name -> render(local time, offset minutes): the text that form writes for that instant
RENDER: dict[str, Callable[[datetime, int], str]] = {
    "Go time.Time.String": lambda t, o: f"{t:%Y-%m-%d %H:%M:%S}.{t:%f}123 {_hhmm(o)} XYZ",
    "LDAP GeneralizedTime": lambda t, o: f"{t:%Y%m%d%H%M%S}.{t:%f}{_hhmm(o)}",
    "Common Log Format": lambda t, o: f"[{t:%d/%b/%Y:%H:%M:%S} {_hhmm(o)}]",
    "BIND query log": lambda t, o: f"{t:%d-%b-%Y %H:%M:%S}.{t.microsecond // 1000:03d}",
    "PAN-OS": lambda t, o: f"{t:%Y/%m/%d %H:%M:%S}",
    "JavaScript Date toString": lambda t, o: f"{t:%a %b %d %Y %H:%M:%S} GMT{_hhmm(o)} (Zone)",
    "RFC 5322": lambda t, o: f"{t:%a}, {t.day} {t:%b %Y %H:%M:%S} {_hhmm(o)} (comment)",
    "ctime and date(1)": lambda t, o: f"{t:%a %b} {t.day:2d} {t:%H:%M:%S} {_hhmm(o)} {t:%Y}",
    "Cisco ASA and CEF rt": lambda t, o: (
        f"{t:%b %d %Y %H:%M:%S}.{t.microsecond // 1000:03d} GMT{_hhmm(o, colon=True)}"
    ),
    "RFC 3164 syslog": lambda t, o: f"{t:%b} {t.day:2d} {t:%H:%M:%S}",
    "klog": lambda t, o: f"I{t:%m%d %H:%M:%S.%f}",
    "Redis log": lambda t, o: f"{t:%d %b %Y %H:%M:%S}.{t.microsecond // 1000:03d}",
    "java.util.logging": lambda t, o: (
        f"{t:%b} {t.day}, {t:%Y} {int(f'{t:%I}')}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"
    ),
    "English long date": lambda t, o: f"{t:%B} {t.day}, {t:%Y %H:%M:%S}",
    "Android logcat": lambda t, o: f"{t:%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}",
}
WITHOUT_OFFSET = {"BIND query log", "PAN-OS", "RFC 3164 syslog", "klog", "Redis log",
                  "java.util.logging", "English long date", "Android logcat"}  # fmt: skip
SUBSECOND = {"Go time.Time.String", "LDAP GeneralizedTime", "BIND query log", "klog",
             "Cisco ASA and CEF rt", "Redis log", "Android logcat"}  # fmt: skip


def test_every_form_has_a_round_trip() -> None:
    assert set(RENDER) == {form.name for form in (*FORMS, *YEARLESS)}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(RENDER)),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_each_form_rendered_from_an_instant_parses_back_to_its_millisecond(
    name: str, instant: datetime, offset: int
) -> None:
    offset = 0 if name in WITHOUT_OFFSET else offset
    exact = instant if name in SUBSECOND else instant.replace(microsecond=0)
    local = exact + timedelta(minutes=offset)
    text = RENDER[name](local, offset)
    parsed = parse_timestamp(text, year=local.year)
    assert parsed.utcoffset() == timedelta(0)
    millisecond = parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
    assert millisecond == exact.replace(microsecond=exact.microsecond // 1000 * 1000, tzinfo=UTC)


def test_a_format_wins_over_the_array_path_on_stdin_too() -> None:
    stdin = b"2021-03-12 16:15:30\n" * 40  # the common ISO shape, read in blocks as arrays
    done = lumu("ts", "parse", "--format", "%Y-%d-%m %H:%M:%S", "-", stdin=stdin)
    assert (done.returncode, set(lines(done.stdout))) == (0, {"2021-12-03T16:15:30.000Z"})


# ---------------------------------------------------------------- the array path


def assert_the_array_path_agrees(texts: list[str], year: int | None, zone: tzinfo | None) -> None:
    """Each line as `parse_block` reads it in one block equals what the definition says of it."""
    from lumu_cli.tsstream import parse_block

    block = parse_block(("\n".join(texts) + "\n").encode(), year=year, tz=zone)
    for row, text in enumerate(texts):
        try:
            expected: str | None = normalize(text, year=year, tz=zone)
        except InvalidTimestamp:
            expected = None
        assert block.result(row) == expected, text


MUTATIONS = "0123456789 +-:/.,ZTGMUCXabdDIW[]()"
EXTRA: dict[str, Callable[[datetime, int], str]] = {  # ISO with a spaced zone, read as arrays
    "ISO space offset": lambda t, o: f"{t:%Y-%m-%d %H:%M:%S}.{t:%f} {_hhmm(o, colon=True)}",
    "ISO T GMT": lambda t, o: f"{(t - timedelta(minutes=o)):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + " GMT",
    "cookie": lambda t, o: f"{(t - timedelta(minutes=o)):%a, %d-%b-%Y %H:%M:%S} GMT",
    "RFC 5322 padded": lambda t, o: f"{t:%a}, {t.day:2d} {t:%b %Y %H:%M:%S} {_hhmm(o)}",
    "JavaScript bare": lambda t, o: f"{t:%a %b %d %Y %H:%M:%S} GMT{_hhmm(o)}",
    "ASA UTC": lambda t, o: f"{(t - timedelta(minutes=o)):%b %d %Y %H:%M:%S} UTC",
    "ASA one-digit day": lambda t, o: f"{t:%b} {t.day:2d} {t:%Y %H:%M:%S}",
    "ASA unpadded day": lambda t, o: f"{t:%b} {t.day} {t:%Y %H:%M:%S}",
    "httpd error log": lambda t, o: f"{t:%a %b %d %H:%M:%S.%f %Y}",
    "PostgreSQL %t": lambda t, o: f"{(t - timedelta(minutes=o)):%Y-%m-%d %H:%M:%S} EST",
    "eight digits": lambda t, o: f"{t:%Y%m%d}",
}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted({*RENDER, *EXTRA})),
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
            st.integers(-23 * 60 - 59, 23 * 60 + 59),
            st.lists(st.tuples(st.integers(0, 40), st.sampled_from(MUTATIONS)), max_size=2),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([None, 2021, 2024, 1]),
    st.sampled_from([None, "Europe/Paris"]),
)
def test_the_array_path_reads_every_form_as_the_definition_does(
    rows: list[tuple[str, datetime, int, list[tuple[int, str]]]], year: int | None, tz: str | None
) -> None:
    from lumu_cli.timestamps import load_zone

    texts = []
    for name, instant, offset, mutations in rows:
        offset = 0 if name in WITHOUT_OFFSET else offset
        try:
            text = {**RENDER, **EXTRA}[name](instant + timedelta(minutes=offset), offset)
        except (OverflowError, ValueError):
            continue
        for at, char in mutations:
            text = text[:at] + char + text[at + 1 :]
        texts.append(text.replace("\n", " "))
    zone = load_zone(tz) if tz else None
    assert_the_array_path_agrees(texts, year, zone)


# field letter -> (usual values, all values drawn sometimes), for a run of that letter's digits
FIELD_VALUES = {
    "Y": ((1900, 2100), (1, 2, 1900, 2000, 2024, 2100, 9998, 9999)),
    "O": ((1, 12), (0, 1, 2, 2, 12, 13, 19)),
    "D": ((1, 28), (0, 1, 29, 29, 30, 31, 32, 39)),
    "h": ((0, 23), (0, 23, 24, 29)),
    "m": ((0, 59), (0, 59, 60, 69)),
    "s": ((0, 59), (0, 59, 60, 69)),
    "H": ((0, 14), (0, 23, 24, 29)),
    "N": ((0, 59), (0, 59, 60, 69)),
}


@st.composite
def template_lines(draw: st.DrawFn) -> str:
    """A line filled in field by field from one of the array path's own templates: mostly real
    instants, often not (day 39, month 13, hour 27, offset +24:00, the wrong weekday)."""
    from lumu_cli.forms import MONTHS, WEEKDAYS
    from lumu_cli.tsstream import _TEMPLATE_SPECS

    spec, _ = draw(st.sampled_from(_TEMPLATE_SPECS))
    out, col = [], 0
    while col < len(spec):
        char = spec[col]
        run = len(spec[col:]) - len(spec[col:].lstrip(char))
        if char == "E":  # the tens of a day, then its units (D)
            day = draw(st.integers(1, 28) | st.sampled_from(FIELD_VALUES["D"][1]))
            out.append(f"{day:2d}" if draw(st.booleans()) else f"{day:02d}")
            col += 2
            continue
        if char in FIELD_VALUES:
            usual, edges = FIELD_VALUES[char]
            value = draw(st.integers(*usual) | st.sampled_from(edges))
            out.append(f"{value:0{run}d}"[-run:])
        elif char in "ab":
            names = MONTHS if char == "b" else WEEKDAYS
            name = draw(st.sampled_from([*names, "xyz", "DEC", "mOn"]))
            out.append(name.title() if draw(st.booleans()) else name)
        elif char in "fx":
            out.append("".join(draw(st.sampled_from("0123456789")) for _ in range(run)))
        elif char == "~":
            out.append(draw(st.sampled_from("+-")))
        elif char == "A":
            out.append("".join(draw(st.sampled_from("ACEMSTUXz1")) for _ in range(run)))
        elif char == "L":
            out.append(draw(st.sampled_from("IWEFX")))
        else:
            out.append(spec[col : col + run])
        col += run
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(template_lines(), min_size=1, max_size=40),
    st.sampled_from([None, 2021, 2024]),
    st.sampled_from([None, "Europe/Paris"]),
)
def test_the_array_path_agrees_on_lines_filled_in_from_its_templates(
    texts: list[str], year: int | None, tz: str | None
) -> None:
    from lumu_cli.timestamps import load_zone

    zone = load_zone(tz) if tz else None
    assert_the_array_path_agrees(texts, year, zone)


EDGES = [
    "01/Jan/0001:00:30:00 +0100",  # before year 1 in UTC
    "01/Jan/0001:00:30:00 -0100",
    "31/Dec/9999:23:30:00 -0100",  # after 9999 in UTC
    "31/Dec/9999:23:30:00 +0100",
    "29/Feb/1900:00:00:00 +0000",
    "29/Feb/2000:00:00:00 +0000",
    "29/Feb/2021:00:00:00 +0000",
    "Sat, 29 Feb 2020 10:00:00 GMT",
    "Fri, 29 Feb 2020 10:00:00 GMT",  # one day off, either way
    "Sun, 29 Feb 2020 10:00:00 GMT",
    "Sun, 01 Mar 2020 10:00:00 GMT",
    "10/Oct/2000:13:55:36 +2400",
    "10/Oct/2000:13:55:36 +2360",
    "10/Oct/2000:24:00:00 +0000",
    "10/Oct/2000:13:60:00 +0000",
    "10/Oct/2000:13:55:60 +0000",
    "00/Oct/2000:13:55:36 +0000",
    "2000/13/10 13:55:36",
    "2000/00/10 13:55:36",
    "Dec 31 9999 23:59:59.999 UTC",
]


@pytest.mark.parametrize("year", [None, 2021])
def test_the_array_path_agrees_at_the_edges(year: int | None) -> None:
    assert_the_array_path_agrees(EDGES, year, None)
