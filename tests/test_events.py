"""Device events: which records count, which are invalid and why.

Expected outcomes are known by construction (a record built to be missing its timestamp) or
computed here with the stdlib: `json` to decode, `ipaddress` to canonicalize, and
`parse_timestamp` (the `lumu ts parse` definition, tested in test_timestamps.py) for timestamps.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumu_cli import events
from lumu_cli.errors import InvalidTimestamp
from lumu_cli.events import BATCH_MIN, Reason, canonical_ip, check_events, dotted_quads
from lumu_cli.timestamps import parse_timestamp

GOOD_IP = "192.0.2.1"
GOOD_TS = "2023-11-14T22:13:20.123Z"

IP = int | bytes  # IPv4 as its integer, IPv6 as its 16 packed bytes


# ---------------------------------------------------------------- helpers (independent of lumu)


def record(**fields: object) -> bytes:
    """A record value: the JSON object of `fields` (a field left out is absent)."""
    return json.dumps(fields).encode()


def good(**changes: object) -> bytes:
    """A valid record with some fields changed."""
    return record(**{"timestamp": GOOD_TS, "device_ip": GOOD_IP, "error_code": 3, **changes})


def reference_ip(value: object) -> IP | None:
    """The canonical address by the stdlib: IPv4-mapped IPv6 is IPv4; zones are not devices."""
    if type(value) is not str or "%" in value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return address.packed if mapped is None else int(mapped)
    return int(address)


def reference_stamp_ok(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    try:
        parse_timestamp(value)
    except InvalidTimestamp:
        return False
    return True


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def reference(value: bytes | None) -> Reason | IP:
    """What the rules say about one record: its reason, or its canonical address if it counts."""
    if not value:
        return Reason.EMPTY
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return Reason.NOT_UTF8
    try:
        obj = json.loads(text, parse_constant=_not_json)  # NaN and Infinity are not JSON
    except ValueError:
        return Reason.NOT_JSON
    if not isinstance(obj, dict):
        return Reason.NOT_OBJECT
    if obj.get("device_ip") is None:
        return Reason.MISSING_DEVICE_IP
    ip = reference_ip(obj["device_ip"])
    if ip is None:
        return Reason.BAD_DEVICE_IP
    if obj.get("timestamp") is None:
        return Reason.MISSING_TIMESTAMP
    if not reference_stamp_ok(obj["timestamp"]):
        return Reason.BAD_TIMESTAMP
    return ip


def only_reason(value: bytes | None) -> Reason | None:
    """The reason check_events gives one record, None if it counts (and it is counted once)."""
    checked = check_events([value])
    assert len(checked.v4) + len(checked.v6) + sum(checked.invalid.values()) == 1
    if checked.invalid:
        (reason,) = checked.invalid
        return reason
    return None


def spellings(address: ipaddress.IPv6Address) -> list[str]:
    return [str(address), address.exploded, str(address).upper(), address.exploded.upper()]


# ---------------------------------------------------------------- every reason, by example

INVALID = [
    # value, reason
    (None, Reason.EMPTY),
    (b"", Reason.EMPTY),
    (b"\xff\xfe{}", Reason.NOT_UTF8),
    (b'{"device_ip": "192.0.2.1", "timestamp": 1700000000, "note": "caf\xe9"}', Reason.NOT_UTF8),
    (b"\xc3\x28", Reason.NOT_UTF8),
    (b"not json", Reason.NOT_JSON),
    (b"   ", Reason.NOT_JSON),
    (b'{"device_ip": "192.0.2.1"', Reason.NOT_JSON),
    (b'{"device_ip": "192.0.2.1", "timestamp": 1700000000,}', Reason.NOT_JSON),
    (b"[]", Reason.NOT_OBJECT),
    (json.dumps([GOOD_TS, GOOD_IP]).encode(), Reason.NOT_OBJECT),
    (b'"192.0.2.1"', Reason.NOT_OBJECT),
    (b"1700000000", Reason.NOT_OBJECT),
    (b"3.5", Reason.NOT_OBJECT),
    (b"true", Reason.NOT_OBJECT),
    (b"null", Reason.NOT_OBJECT),
    (record(timestamp=GOOD_TS), Reason.MISSING_DEVICE_IP),
    (record(timestamp=GOOD_TS, device_ip=None), Reason.MISSING_DEVICE_IP),
    (record(), Reason.MISSING_DEVICE_IP),
    (record(device_ip=GOOD_IP), Reason.MISSING_TIMESTAMP),
    (record(device_ip=GOOD_IP, timestamp=None), Reason.MISSING_TIMESTAMP),
]

BAD_IPS: list[object] = [
    int(ipaddress.IPv4Address(GOOD_IP)),
    [GOOD_IP],
    {"ip": GOOD_IP},
    True,
    "",
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "1.2.3.4 ",
    "01.2.3.4",
    "1.2.3.4/32",
    "192.0.2.1:",  # a port left empty
    ":192.0.2.1",
    "192.0.2.1:80",
    "fe80::1%eth0",
    "::ffff:1.2.3.4%eth0",
    "2001:db8::g",
    "2001:db8:::1",
    "localhost",
]

BAD_STAMPS: list[object] = [
    "2021-02-30T00:00:00Z",
    "2021-13-01T00:00:00Z",
    "yesterday",
    "",
    "1e5",
    "-5",
    -5,
    True,
    False,
    {},
    [],
    [1700000000],
    {"seconds": 1700000000},
    "1" * 30,
    10**30,
]

# One instant, 2023-11-14T22:13:20.123Z, written every way a device may write it.
VALID_STAMPS: list[object] = [
    "2023-11-14T22:13:20.123Z",
    "2023-11-14T22:13:20.123",
    "2023-11-14T22:13:20Z",
    "2023-11-14T22:13:20",
    "2023-11-14T22:13:20.123+00:00",
    "2023-11-14T22:13:20+00:00",
    "2023-11-14 22:13:20Z",
    "1700000000",
    "1700000000123",
    1700000000,
    1700000000123,
    1700000000.5,
    1700000000.123,
    " 1700000000 ",
    "2023-11-14T22:13:20Z\n",  # a line break inside a JSON string, trimmed as ts parse does
]


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_each_reason_is_reported_for_its_record(value: bytes | None, reason: Reason) -> None:
    assert only_reason(value) == reason
    assert reference(value) == reason  # the table agrees with the rules as written here


@pytest.mark.parametrize("device_ip", BAD_IPS, ids=repr)
def test_a_device_ip_that_is_not_an_address_is_bad(device_ip: object) -> None:
    assert only_reason(good(device_ip=device_ip)) == Reason.BAD_DEVICE_IP


def test_every_device_ip_that_is_not_an_address_is_bad_in_a_batch_too() -> None:
    values = [good(device_ip=device_ip) for device_ip in BAD_IPS] + [good()] * BATCH_MIN
    agrees_with_the_rules(values)


@pytest.mark.parametrize("stamp", BAD_STAMPS, ids=repr)
def test_a_timestamp_ts_parse_rejects_is_bad(stamp: object) -> None:
    assert only_reason(good(timestamp=stamp)) == Reason.BAD_TIMESTAMP


@pytest.mark.parametrize("stamp", VALID_STAMPS, ids=repr)
def test_every_timestamp_form_counts(stamp: object) -> None:
    checked = check_events([good(timestamp=stamp)])
    assert checked.v4.tolist() == [int(ipaddress.IPv4Address(GOOD_IP))]
    assert checked.v6 == []
    assert not checked.invalid


@pytest.mark.parametrize("first", ["198.51.100.0", "2001:db8::"])
def test_every_timestamp_form_counts_in_one_batch(first: str) -> None:
    """The block path and the one-by-one path together: each record still counts once."""
    addresses = [ipaddress.ip_address(first) + i for i in range(len(VALID_STAMPS))]
    values = [
        good(timestamp=s, device_ip=str(a)) for s, a in zip(VALID_STAMPS, addresses, strict=True)
    ]
    checked = check_events(values)
    assert checked.v4.tolist() == sorted(int(a) for a in addresses if a.version == 4)  # in order
    assert sorted(checked.v6) == sorted(a.packed for a in addresses if a.version == 6)
    assert not checked.invalid


# A line break inside a JSON string: around the instant it is trimmed, as ts parse does; between
# the instant and more text, the whole string is read, and is not a timestamp.
LINE_BREAKS = [
    "\n2023-11-14T22:13:20Z",
    "2023-11-14T22:13:20Z\r\n",
    "\r2023-11-14T22:13:20Z",
    "2023-11-14T22:13:20Z\nyesterday",
    "yesterday\n2023-11-14T22:13:20Z",
    "2023-11-14T22:13:20Z\ryesterday",
    "2023-11-14T22:13:20Z\n\n1700000000",
]


@pytest.mark.parametrize("stamp", LINE_BREAKS, ids=repr)
def test_a_line_break_in_a_timestamp_is_part_of_it(stamp: str) -> None:
    """Alone, and twice in a batch: the records around it are still read as they are."""
    agrees_with_the_rules([good(timestamp=stamp)])
    batch = [good(device_ip=f"198.51.100.{i}") for i in range(BATCH_MIN)]
    batch[3] = good(timestamp=stamp, device_ip="2001:db8::2")
    batch[-1] = good(timestamp=stamp, device_ip="198.51.100.250")
    agrees_with_the_rules(batch)


@pytest.mark.parametrize(
    ("digits", "reason"), [(4300, Reason.BAD_TIMESTAMP), (4301, Reason.NOT_JSON)]
)
@pytest.mark.parametrize("size", [1, BATCH_MIN])
def test_an_integer_timestamp_is_read_up_to_4300_digits(
    digits: int, reason: Reason, size: int
) -> None:
    """The README's limit (msgspec's, and Python's), in a batch as one by one."""
    huge = b'{"device_ip": "192.0.2.1", "timestamp": %s}' % (b"9" * digits)
    checked = check_events([huge] + [good()] * (size - 1))
    assert checked.invalid == Counter({reason: 1})
    assert len(checked.v4) == size - 1


@pytest.mark.parametrize(
    ("device_ip", "timestamp", "reason"),
    [
        ("256.1.1.1", "yesterday", Reason.BAD_DEVICE_IP),
        ("256.1.1.1", None, Reason.BAD_DEVICE_IP),
        (None, "yesterday", Reason.MISSING_DEVICE_IP),
        (None, None, Reason.MISSING_DEVICE_IP),
        (GOOD_IP, None, Reason.MISSING_TIMESTAMP),
    ],
)
def test_the_first_failing_check_names_the_reason(
    device_ip: object, timestamp: object, reason: Reason
) -> None:
    assert only_reason(record(device_ip=device_ip, timestamp=timestamp)) == reason


def test_counts_and_first_examples_over_a_batch() -> None:
    values: list[bytes | None] = [
        good(timestamp="yesterday"),  # 0: bad timestamp, found by the block parser
        good(),  # 1
        None,  # 2
        b"[1]",  # 3
        good(timestamp=True),  # 4: bad timestamp, found one by one
        good(device_ip="1.2.3"),  # 5
        None,  # 6
        good(timestamp="2021-02-30T00:00:00Z"),  # 7
        good(device_ip="2001:db8::1"),  # 8
    ]
    checked = check_events(values)
    assert checked.invalid == Counter(
        {
            Reason.BAD_TIMESTAMP: 3,
            Reason.EMPTY: 2,
            Reason.NOT_OBJECT: 1,
            Reason.BAD_DEVICE_IP: 1,
        }
    )
    assert checked.examples == {
        Reason.BAD_TIMESTAMP: 0,
        Reason.EMPTY: 2,
        Reason.NOT_OBJECT: 3,
        Reason.BAD_DEVICE_IP: 5,
    }
    assert checked.v4.tolist() == [int(ipaddress.IPv4Address(GOOD_IP))]
    assert checked.v6 == [ipaddress.IPv6Address("2001:db8::1").packed]


def test_the_first_example_is_the_first_record_whichever_path_finds_it() -> None:
    checked = check_events([good(timestamp=[]), good(timestamp="yesterday")])
    assert checked.examples == {Reason.BAD_TIMESTAMP: 0}
    assert checked.invalid == Counter({Reason.BAD_TIMESTAMP: 2})


def test_an_empty_batch_counts_nothing() -> None:
    checked = check_events([])
    assert (checked.v4.tolist(), checked.v6, checked.invalid, checked.examples) == (
        [],
        [],
        Counter(),
        {},
    )


# ---------------------------------------------------------------- canonical addresses


def test_one_ipv6_address_written_several_ways_is_one_value() -> None:
    address = ipaddress.IPv6Address("2001:db8:0:0:8:800:200c:417a")
    written = [
        *spellings(address),
        "2001:0db8:0000:0000:0008:0800:200C:417A",
        "2001:db8::8:800:200c:417a",
    ]
    checked = check_events([good(device_ip=w) for w in written])
    assert checked.v6 == [address.packed] * len(written)
    assert checked.v4.tolist() == []


def test_an_ipv4_address_and_its_ipv4_mapped_form_are_one_value() -> None:
    address = ipaddress.IPv4Address("203.0.113.7")
    written = [str(address), f"::ffff:{address}", f"::FFFF:{address}", "::ffff:cb00:7107"]
    checked = check_events([good(device_ip=w) for w in written])
    assert checked.v4.tolist() == [int(address)] * len(written)
    assert checked.v6 == []


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.0.1",
        "::",
        "::1",
        "2001:db8::",
        "FE80::1",
        "::ffff:1.2.3.4",
    ],
)
def test_canonical_ip_agrees_with_the_stdlib(text: str) -> None:
    assert canonical_ip(text) == reference_ip(text)


QUAD_TEXT = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.text("0123456789.", max_size=18),
    st.text("0123456789.:abcdefABCDEF \n\x00é\ud800", max_size=20),  # a lone surrogate too
    st.sampled_from(["0.0.0.0", "255.255.255.255", "256.0.0.1", "01.2.3.4", "1.2.3.04", "1..2.3",
                     ".1.2.3", "1.2.3.", "1.2.3.4.", "1.2.3.4\n", "1234.1.1.1", "1.2.3.1000",
                     "1.2.3.4:", ":1.2.3.4", "1.2.3:4", "1.2.3.4:80"]),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(QUAD_TEXT, max_size=50))
def test_dotted_quads_read_together_agree_with_the_definition_one_by_one(texts: list[str]) -> None:
    """A text it does not read is left to canonical_ip: all of them if one holds a newline."""
    codes, quad = dotted_quads(texts)
    every = not any("\n" in text for text in texts)
    for text, code, is_quad in zip(texts, codes.tolist(), quad.tolist(), strict=True):
        ip = reference_ip(text)
        expected = type(ip) is int and ":" not in text  # a dotted quad, not IPv4-mapped IPv6
        assert is_quad == (expected and every), text
        assert code == (ip if is_quad else -1), text


@pytest.mark.parametrize("text", ["fe80::1%eth0", "fe80::1%1", "1.2.3", "01.2.3.4", "", " ::1"])
def test_canonical_ip_rejects_non_addresses_and_zones(text: str) -> None:
    assert canonical_ip(text) is None


# ---------------------------------------------------------------- hostile input


def test_a_one_megabyte_record_is_checked_without_crashing() -> None:
    mb = 1 << 20
    values: list[bytes | None] = [
        good(padding="x" * mb),
        good(device_ip="1" * mb),
        good(timestamp="1" * mb),
        good(timestamp=" " * mb + GOOD_TS),  # surrounding whitespace is trimmed, as ts parse does
        b"[" * mb,
        b"\xff" * mb,
    ]
    checked = check_events(values)
    ip = int(ipaddress.IPv4Address(GOOD_IP))
    assert checked.v4.tolist() == [ip, ip]
    assert checked.invalid == Counter(
        {
            Reason.BAD_DEVICE_IP: 1,
            Reason.BAD_TIMESTAMP: 1,
            Reason.NOT_JSON: 1,
            Reason.NOT_UTF8: 1,
        }
    )


@pytest.mark.parametrize("depth", [10, 100, 100_000])
def test_deeply_nested_values_do_not_crash(depth: int) -> None:
    nested = b'{"device_ip": "192.0.2.1", "timestamp": 1700000000, "x": %s}' % (
        b"[" * depth + b"]" * depth
    )
    checked = check_events([nested, b"{" * depth, good()])
    assert len(checked.v4) + len(checked.v6) + sum(checked.invalid.values()) == 3
    assert int(ipaddress.IPv4Address(GOOD_IP)) in checked.v4  # the good record still counts
    assert checked.invalid[Reason.NOT_JSON] >= 1  # the unclosed braces


def test_a_json_integer_timestamp_beyond_64_bits_is_read_exactly() -> None:
    stamp = 99_999_999_999_999_999_999
    assert reference_stamp_ok(stamp)  # ts parse reads it (nanoseconds, in the year 5138)
    assert only_reason(good(timestamp=stamp)) is None


# ---------------------------------------------------------------- properties

JSON_FRAGMENTS = st.sampled_from(
    [b"{", b"}", b"[", b"]", b":", b",", b'"', b"\\", b"null", b"true", b"\xff", b"\n", b" ",
     b'"device_ip"', b'"timestamp"', b'"192.0.2.1"', b'"::1"', b"1700000000", b'"2023-11-14"']
)  # fmt: skip
ANY_VALUE = st.one_of(
    st.none(), st.binary(max_size=40), st.lists(JSON_FRAGMENTS, max_size=12).map(b"".join)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_VALUE, max_size=3 * BATCH_MIN))
def test_any_bytes_are_counted_exactly_once(values: list[bytes | None]) -> None:
    checked = check_events(values)
    assert len(checked.v4) + len(checked.v6) + sum(checked.invalid.values()) == len(values)
    assert set(checked.examples) == set(checked.invalid)
    for reason, index in checked.examples.items():
        assert 0 <= index < len(values)
        assert reference(values[index]) == reason


def _v6_spelling(number: int, form: int) -> str:
    return spellings(ipaddress.IPv6Address(number))[form]


def _stamp_forms(instant: datetime) -> list[object]:
    iso = instant.strftime("%Y-%m-%dT%H:%M:%S")
    ms = instant.microsecond // 1000
    seconds = int(instant.timestamp())
    millis = seconds * 1000 + ms
    return [
        f"{iso}.{ms:03d}Z", f"{iso}.{ms:03d}", f"{iso}Z", iso, f"{iso}+00:00",
        str(seconds), str(millis), seconds, millis, seconds + 0.5,
    ]  # fmt: skip


ADDRESSES = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2**32 - 1).map(lambda n: f"::ffff:{ipaddress.IPv4Address(n)}"),
    st.builds(_v6_spelling, st.integers(0, 2**128 - 1), st.integers(0, 3)),
)
DEVICE_IPS = st.one_of(
    ADDRESSES,
    st.sampled_from(BAD_IPS),
    st.text(max_size=20),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.none(),
)
INSTANTS = st.datetimes(datetime(1974, 1, 1), datetime(4999, 12, 31), timezones=st.just(UTC))
STAMPS = st.one_of(
    INSTANTS.flatmap(lambda instant: st.sampled_from(_stamp_forms(instant))),
    st.sampled_from(BAD_STAMPS),
    st.text(max_size=30),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
OBJECTS = st.fixed_dictionaries(
    {}, optional={"device_ip": DEVICE_IPS, "timestamp": STAMPS, "error_code": st.integers(0, 10)}
).map(lambda obj: json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OBJECTS, ANY_VALUE), max_size=25))
def test_check_events_agrees_with_the_rules_record_by_record(values: list[bytes | None]) -> None:
    agrees_with_the_rules(values)


def _with_note(obj: bytes, note: bytes) -> bytes:
    """`obj` with one more field, a string of raw bytes (not always UTF-8, not always JSON)."""
    return obj[:-1] + (b", " if obj != b"{}" else b"") + b'"note": "' + note + b'"}'


NOTE = st.lists(st.one_of(st.integers(0x80, 0xFF), st.sampled_from(b'a"\\')), max_size=4).map(bytes)
NOTED = st.builds(_with_note, OBJECTS, NOTE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OBJECTS, NOTED, ANY_VALUE), min_size=BATCH_MIN, max_size=3 * BATCH_MIN))
def test_the_batch_path_agrees_with_the_rules_record_by_record(values: list[bytes | None]) -> None:
    agrees_with_the_rules(values)


@pytest.mark.parametrize("size", [1, BATCH_MIN, 3 * BATCH_MIN])
def test_a_skipped_field_that_is_not_utf8_makes_the_record_not_utf8(size: int) -> None:
    values = [good(), _with_note(good(), b"caf\xe9")] * (size // 2) or [_with_note(good(), b"\xff")]
    assert check_events(values).invalid == Counter({Reason.NOT_UTF8: max(1, size // 2)})


def agrees_with_the_rules(values: Sequence[bytes | None]) -> None:
    expected = [reference(value) for value in values]
    reasons = [e for e in expected if isinstance(e, Reason)]
    first: dict[Reason, int] = {}
    for index, outcome in enumerate(expected):
        if isinstance(outcome, Reason):
            first.setdefault(outcome, index)
    checked = check_events(values)
    assert checked.v4.tolist() == sorted(e for e in expected if type(e) is int)
    assert Counter(checked.v6) == Counter(e for e in expected if type(e) is bytes)
    assert checked.invalid == Counter(reasons)
    assert checked.examples == first


# ---------------------------------------------------------------- explain: the line track prints


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (None, "empty: None"),
        (b"\xff{", "not_utf8: b'\\xff{'"),
        (b'{"a":', "not_json: Input data was truncated: b'{\"a\":'"),
        (b"[1]", "not_object: a JSON list, not an object: b'[1]'"),
        (b"{}", "missing_device_ip: b'{}'"),
        (good(device_ip="300.1.1.1"), "bad_device_ip: '300.1.1.1' is not an IPv4 or IPv6 address"),
        (good(device_ip=5), "bad_device_ip: 5 is not an IPv4 or IPv6 address"),
        (b'{"device_ip": "1.1.1.1"}', 'missing_timestamp: b\'{"device_ip": "1.1.1.1"}\''),
        (good(timestamp={}), "bad_timestamp: {} is not a string or number"),
        (
            good(timestamp="2021-02-30T00:00:00Z"),
            "bad_timestamp: cannot parse '2021-02-30T00:00:00Z': day is out of range for month",
        ),
        (good(), ""),
        # a long value is cut to 60 characters, its last one kept
        (record(timestamp="x" * 100), 'missing_device_ip: b\'{"timestamp": "' + "x" * 39 + "...'"),
        (
            good(device_ip="1" * 100),
            "bad_device_ip: '" + "1" * 55 + "...' is not an IPv4 or IPv6 address",
        ),
        (
            good(timestamp=["x" * 100]),
            "bad_timestamp: ['" + "x" * 54 + "...] is not a string or number",
        ),
    ],
)
def test_explain_names_the_reason_and_the_offending_value(value: bytes | None, line: str) -> None:
    assert events.explain(value) == line


def reference_times(values: list[bytes | None]) -> Counter[tuple[IP, int]]:
    """(address, event time in epoch ms) of each valid record, by the rules written plainly."""
    from datetime import timedelta

    from lumu_cli.timestamps import EPOCH

    found: Counter[tuple[IP, int]] = Counter()
    for value in values:
        if isinstance(ip := reference(value), Reason):
            continue
        stamp = json.loads(value or b"")["timestamp"]  # valid: a JSON object with a timestamp
        found[ip, (parse_timestamp(stamp) - EPOCH) // timedelta(milliseconds=1)] += 1
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OBJECTS, NOTED, ANY_VALUE), max_size=3 * BATCH_MIN))
def test_with_times_each_valid_record_keeps_its_event_time(values: list[bytes | None]) -> None:
    timed, plain = check_events(values, times=True), check_events(values)
    assert np.array_equal(timed.v4, plain.v4)  # the same count, the times beside it
    assert (timed.v6, timed.invalid, timed.examples) == (plain.v6, plain.invalid, plain.examples)
    assert (len(plain.v4_millis), plain.v6_millis) == (0, [])
    pairs = Counter(zip(timed.v4.tolist(), timed.v4_millis.tolist(), strict=True))
    pairs += Counter(zip(timed.v6, timed.v6_millis, strict=True))
    assert pairs == reference_times(values)
