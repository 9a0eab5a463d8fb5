"""Device events: record bytes -> a canonical device IP or the reason the record is invalid.

A record counts if and only if it is a JSON object whose `device_ip` is an IPv4 or IPv6 address
and whose `timestamp` parses under the `lumu ts parse` rules. Everything else is invalid, with one
reason from `Reason`, checked in that order. This module also makes synthetic events (`Synth`).
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import compress

import msgspec

from lumu_cli.errors import InvalidTimestamp, shorten
from lumu_cli.timestamps import format_timestamp, parse_timestamp
from lumu_cli.tsstream import parse_block

__all__ = ["Checked", "Reason", "Synth", "canonical_ip", "check_events", "explain"]


class Reason(StrEnum):
    """Why a record is invalid, in the order the checks run."""

    EMPTY = "empty"  # a null (tombstone) or zero-length value
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_DEVICE_IP = "missing_device_ip"  # absent or null
    BAD_DEVICE_IP = "bad_device_ip"  # not a string, or not an IPv4 or IPv6 address
    MISSING_TIMESTAMP = "missing_timestamp"  # absent or null
    BAD_TIMESTAMP = "bad_timestamp"  # not a string or number that `lumu ts parse` accepts


IP = int | bytes  # IPv4 as its 32-bit integer, IPv6 as its 16 packed bytes
_BAD = -1
_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6
_CACHE_LIMIT = 1 << 18
_CACHED_LENGTH = 64  # every spelling of an address is shorter; longer strings are not cached


def canonical_ip(text: str) -> IP | None:
    """One value per address however it is written; None if `text` is not an address.

    Read by the C library's inet_pton, which is as strict as the ipaddress module (no leading
    zeros, spaces or zones) and 5-10x faster. IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4
    address. An IPv6 zone (`fe80::1%eth0`) names a link on the sender's host, not a device.
    """
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    return int.from_bytes(packed[12:], "big") if packed[:12] == _MAPPED else packed


@dataclass
class Checked:
    """The outcome for a sequence of records: valid addresses, invalid counts, first examples."""

    v4: list[int] = field(default_factory=list)
    v6: list[bytes] = field(default_factory=list)
    invalid: Counter[Reason] = field(default_factory=Counter)
    examples: dict[Reason, int] = field(default_factory=dict)  # reason -> index of first record

    def _invalid(self, reason: Reason, index: int) -> None:
        self.invalid[reason] += 1
        self.examples[reason] = min(index, self.examples.get(reason, index))


class _Event(msgspec.Struct, gc=False):
    """The two fields that decide; other fields are skipped, not decoded."""

    device_ip: object = None
    timestamp: object = None


_decode = msgspec.json.Decoder(_Event).decode
_ip_cache: dict[str, IP] = {}


def check_events(values: Sequence[bytes | None]) -> Checked:
    """Check each record value; timestamps are parsed together, as a block of lines."""
    out = Checked()
    lines: list[str] = []  # timestamps to parse as one block, with their records' addresses
    ips: list[IP] = []
    rows: list[int] = []
    cache, decode = _ip_cache, _decode
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    for index, value in enumerate(values):
        if not value:
            out._invalid(Reason.EMPTY, index)
            continue
        try:
            event = decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            out._invalid(_not_an_object(value), index)
            continue
        if not value.isascii() and not _is_utf8(value):  # skipped fields are not checked
            out._invalid(Reason.NOT_UTF8, index)
            continue
        text = event.device_ip
        if text is None:
            out._invalid(Reason.MISSING_DEVICE_IP, index)
            continue
        ip = cache.get(text, None) if type(text) is str else _BAD
        if ip is None:
            assert isinstance(text, str)
            ip = _or_bad(canonical_ip(text))
            if len(text) <= _CACHED_LENGTH:
                cache[text] = ip
        if ip == _BAD:
            out._invalid(Reason.BAD_DEVICE_IP, index)
            continue
        stamp = event.timestamp
        if stamp is None:
            out._invalid(Reason.MISSING_TIMESTAMP, index)
        elif (type(stamp) is str and "\n" not in stamp and "\r" not in stamp) or (
            type(stamp) is int
        ):
            lines.append(stamp if type(stamp) is str else str(stamp))
            ips.append(ip)
            rows.append(index)
        elif _parses(stamp):
            _add(out, ip)
        else:
            out._invalid(Reason.BAD_TIMESTAMP, index)
    if lines:
        ok = parse_block(("\n".join(lines) + "\n").encode()).ok
        if not ok.all():
            flags = ok.tolist()
            for index in compress(rows, [not good for good in flags]):
                out._invalid(Reason.BAD_TIMESTAMP, index)
            ips = list(compress(ips, flags))
        out.v4 += [ip for ip in ips if type(ip) is int]
        out.v6 += [ip for ip in ips if type(ip) is bytes]
    return out


def explain(value: bytes | None) -> str:
    """Why one record is invalid, in words that name the offending value ("" if it is valid)."""
    checked = check_events([value])
    if not checked.invalid:
        return ""
    reason = next(iter(checked.invalid))
    record = shorten(value, 60)
    if reason in (Reason.EMPTY, Reason.NOT_UTF8):
        return f"{reason}: {record}"
    try:
        obj = msgspec.json.decode(value)  # type: ignore[arg-type]  # not empty
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return f"{reason}: {exc}: {record}"
    if reason is Reason.NOT_OBJECT:
        return f"{reason}: a JSON {type(obj).__name__}, not an object: {record}"
    if reason is Reason.BAD_DEVICE_IP:
        return f"{reason}: {shorten(obj['device_ip'], 60)} is not an IPv4 or IPv6 address"
    if reason is Reason.BAD_TIMESTAMP:
        stamp = obj["timestamp"]
        if not isinstance(stamp, str | int | float):
            return f"{reason}: {shorten(stamp, 60)} is not a string or number"
        try:
            parse_timestamp(stamp)
        except InvalidTimestamp as exc:
            return f"{reason}: {exc}"
    return f"{reason}: {record}"


def _add(out: Checked, ip: IP) -> None:
    if type(ip) is int:
        out.v4.append(ip)
    else:
        out.v6.append(ip)  # type: ignore[arg-type]


def _or_bad(ip: IP | None) -> IP:
    return _BAD if ip is None else ip


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _not_an_object(value: bytes) -> Reason:
    """Why a record that does not decode as an object does not: the first rule it breaks."""
    if not _is_utf8(value):
        return Reason.NOT_UTF8
    try:
        msgspec.json.decode(value)  # all of it: the typed decoder stops at the first wrong type
    except (msgspec.DecodeError, RecursionError):
        return Reason.NOT_JSON
    return Reason.NOT_OBJECT


def _parses(stamp: object) -> bool:
    """The definition, for the rare timestamps the block path does not take (floats, odd types)."""
    if not isinstance(stamp, str | int | float) or isinstance(stamp, bool):
        return False
    try:
        parse_timestamp(stamp)
    except InvalidTimestamp:
        return False
    return True


_V6_PREFIX = 0x2001_0DB8 << 96  # 2001:db8::/32, the documentation prefix
_V4_UNICAST = range(0x0100_0000, 0xE000_0000)  # 1.0.0.0 .. 223.255.255.255


class Synth:
    """Synthetic device events from a fixed pool of addresses; the same seed, the same records.

    Valid events write their timestamp in the forms devices send (ISO 8601 with and without a
    zone and milliseconds, epoch seconds and milliseconds as strings and numbers) and an address
    in any of its spellings (IPv6 compressed, expanded or upper case; IPv4 also IPv4-mapped).
    """

    def __init__(
        self, ips: int, *, ipv6_ratio: float = 0.0, invalid_ratio: float = 0.0, seed: int | None
    ) -> None:
        self.random = rng = random.Random(seed)
        self.invalid_ratio = invalid_ratio
        n6 = round(ips * ipv6_ratio)
        v6: set[int] = set()
        while len(v6) < n6:
            v6.add(_V6_PREFIX | rng.getrandbits(96))
        addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
            *map(ipaddress.IPv4Address, rng.sample(_V4_UNICAST, ips - n6)),
            *map(ipaddress.IPv6Address, sorted(v6)),
        ]
        rng.shuffle(addresses)
        self.pool = [str(address) for address in addresses]
        self.spellings = [_spellings(address) for address in addresses]
        self.used = bytearray(ips)  # 1 where a valid event has used that address
        self.invalid: Counter[Reason] = Counter()

    @property
    def distinct_ips(self) -> int:
        """How many addresses of the pool valid events have used so far."""
        return len(self.used) - self.used.count(0)

    def records(self, count: int) -> list[tuple[bytes, bytes]]:
        """`count` (key, value) records, valid or not; the key is the device IP as written."""
        rng = self.random
        stamps = _stamps(time.time())
        out = []
        for _ in range(count):
            which = rng.randrange(len(self.pool))
            if self.invalid_ratio and rng.random() < self.invalid_ratio:
                reason, value = _invalid_value(rng, self.pool[which], stamps[0])
                self.invalid[reason] += 1
                out.append((self.pool[which].encode(), value))
                continue
            self.used[which] = 1
            ip = rng.choice(self.spellings[which])
            value = b'{"timestamp": %s, "device_ip": "%s", "error_code": %d}' % (
                rng.choice(stamps),
                ip.encode(),
                rng.randint(0, 10),
            )
            out.append((self.pool[which].encode(), value))
        return out


def _spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, ...]:
    if isinstance(address, ipaddress.IPv4Address):
        return (str(address),) * 7 + (f"::ffff:{address}",)
    return (str(address), address.exploded, str(address).upper())


def _stamps(now: float) -> tuple[bytes, ...]:
    """One instant written the ways devices write it, as JSON values."""
    iso = format_timestamp(parse_timestamp(int(now * 1000)))  # ...T16:15:30.235Z
    seconds, millis = int(now), int(now * 1000)
    return tuple(
        json.dumps(value).encode()
        for value in (
            iso, iso[:-1], iso[:-5] + "Z", iso[:-5], iso.replace("Z", "+00:00"),
            str(seconds), str(millis), seconds, millis,
        )
    )  # fmt: skip


def _invalid_value(rng: random.Random, ip: str, stamp: bytes) -> tuple[Reason, bytes]:
    """One malformed record, of a kind picked at random, and the reason it is invalid."""
    good = b'{"timestamp": %s, "device_ip": "%s", "error_code": 3}' % (stamp, ip.encode())
    kinds = (
        (Reason.NOT_JSON, good[:-7]),
        (Reason.NOT_OBJECT, b'["%s"]' % ip.encode()),
        (Reason.MISSING_DEVICE_IP, b'{"timestamp": %s, "error_code": 3}' % stamp),
        (Reason.MISSING_DEVICE_IP, good.replace(b'"%s"' % ip.encode(), b"null")),
        (Reason.BAD_DEVICE_IP, good.replace(ip.encode(), b"300.1.2.3")),
        (Reason.BAD_DEVICE_IP, good.replace(b'"%s"' % ip.encode(), b"167772161")),
        (Reason.MISSING_TIMESTAMP, b'{"device_ip": "%s", "error_code": 3}' % ip.encode()),
        (Reason.BAD_TIMESTAMP, good.replace(stamp, b'"2021-02-30T10:00:00Z"')),
        (Reason.BAD_TIMESTAMP, good.replace(stamp, b'"yesterday"')),
        (Reason.NOT_UTF8, b"\xff\xfe" + good),
    )
    return rng.choice(kinds)
