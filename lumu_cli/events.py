"""Device events: record bytes -> a canonical device IP or the reason the record is invalid.

A record counts if and only if it is a JSON object whose `device_ip` is an IPv4 or IPv6 address
and whose `timestamp` parses under the `lumu ts parse` rules. Everything else is invalid, with one
reason from `Reason`, checked in that order.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import compress

import msgspec

from lumu_cli.errors import InvalidTimestamp, shorten
from lumu_cli.timestamps import parse_timestamp
from lumu_cli.tsstream import parse_block

__all__ = ["Checked", "Reason", "canonical_ip", "check_events", "explain"]


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
