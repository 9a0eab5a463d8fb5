"""Device events: record bytes -> a canonical device IP or the reason the record is invalid.

A record counts if and only if it is a JSON object whose `device_ip` is an IPv4 or IPv6 address
and whose `timestamp` parses under the `lumu ts parse` rules. Everything else is invalid, with one
reason from `Reason`, checked in that order.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from itertools import compress
from operator import attrgetter

import msgspec
import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from lumu_cli.errors import InvalidTimestamp, shorten
from lumu_cli.timestamps import EPOCH, parse_timestamp
from lumu_cli.tsstream import parse_block

__all__ = ["Checked", "Reason", "canonical_ip", "check_events", "dotted_quads", "explain"]


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
_BIG = 10**4000  # str() refuses integers of more than 4300 digits
_MILLISECOND = timedelta(milliseconds=1)


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


@dataclass(eq=False)
class Checked:
    """The outcome for a sequence of records: valid addresses, invalid counts, first examples.

    `v4` holds the IPv4 address of each valid record, sorted (a bitmap takes them sooner so,
    and the sort is done where the records are checked, perhaps in a worker process). Checked
    with `times`, `v4_millis` and `v6_millis` hold each one's event time in epoch milliseconds,
    in the same order as the addresses; else they are empty.
    """

    v4: npt.NDArray[np.uint32] = field(default_factory=lambda: np.empty(0, np.uint32))
    v6: list[bytes] = field(default_factory=list)
    v4_millis: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    v6_millis: list[int] = field(default_factory=list)
    invalid: Counter[Reason] = field(default_factory=Counter)
    examples: dict[Reason, int] = field(default_factory=dict)  # reason -> index of first record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checked):
            return NotImplemented
        return (
            np.array_equal(self.v4, other.v4)
            and np.array_equal(self.v4_millis, other.v4_millis)
            and (self.v6, self.v6_millis, self.invalid, self.examples)
            == (other.v6, other.v6_millis, other.invalid, other.examples)
        )

    def _add_v4(self, v4: npt.NDArray[np.uint32], millis: npt.NDArray[np.int64] | None) -> None:
        """Take more IPv4 addresses (and their times, when kept), all sorted by address."""
        v4 = np.concatenate((v4.astype(np.uint32), self.v4))
        if millis is None:
            self.v4 = np.sort(v4)
            return
        order = np.argsort(v4, kind="stable")
        self.v4, self.v4_millis = v4[order], np.concatenate((millis, self.v4_millis))[order]

    def _invalid(self, reason: Reason, index: int, count: int = 1) -> None:
        self.invalid[reason] += count
        self.examples[reason] = min(index, self.examples.get(reason, index))


class _Event(msgspec.Struct, gc=False):
    """The two fields that decide; other fields are skipped, not decoded."""

    device_ip: object = None
    timestamp: object = None


class _Plain(msgspec.Struct, gc=False):
    """The usual record: a string address and a string or integer timestamp; nothing else decoded.

    A record that does not decode as one is checked on its own, by the rules in order.
    """

    device_ip: str
    timestamp: str | int


_decode = msgspec.json.Decoder(_Event).decode
_decode_plain = msgspec.json.Decoder(_Plain).decode
_ODD = _Plain("", "0")  # stands in for a record checked on its own (parsed at no cost)
_DEVICE_IP, _TIMESTAMP = attrgetter("device_ip"), attrgetter("timestamp")
BATCH_MIN = 32  # fewer records are checked one by one: the batch path's fixed cost is larger

# An address -> its code: an IPv4 address itself (0 .. 2**32-1), -1 if it is not an address, or
# -2 - i for the IPv6 address _v6_codes[i]. Codes make a batch's addresses one int64 array.
_ip_codes: dict[str, int] = {"": _BAD}
_v6_codes: list[bytes] = []


def check_events(values: Sequence[bytes | None], *, times: bool = False) -> Checked:
    """Check each record value, as the rules say, a batch at a time; with `times`, keep each
    valid record's event time too.

    Records that decode as `_Plain` are checked together: their addresses through the code cache,
    their timestamps as one block of lines (tsstream). Every other record is checked on its own.
    """
    if len(_ip_codes) > _CACHE_LIMIT:  # (never within a batch: its codes stay valid)
        _ip_codes.clear()
        _ip_codes[""] = _BAD
        _v6_codes.clear()
    if len(values) < BATCH_MIN:
        return _check_each(values, range(len(values)), times)
    events, odd = _decode_batch(values)
    # (msgspec reads no integer that str() refuses: 4300 characters at most, or Python's limit)
    lines = "\n".join(map(str, map(_TIMESTAMP, events)))
    if lines.count("\n") != len(values) - 1 or "\r" in lines:  # a line break in a timestamp
        return _check_each(values, range(len(values)), times)
    codes = _codes(list(map(_DEVICE_IP, events)))
    block = parse_block((lines + "\n").encode("utf-8", "surrogatepass"), render=False, times=times)
    stamped = block.ok
    plain = np.ones(len(values), np.bool_)
    plain[odd] = False
    out = _check_each(values, odd, times) if odd else Checked()
    bad_ip = plain & (codes == _BAD)
    bad_stamp = plain & ~bad_ip & ~stamped
    for reason, rows in ((Reason.BAD_DEVICE_IP, bad_ip), (Reason.BAD_TIMESTAMP, bad_stamp)):
        if (count := int(np.count_nonzero(rows))) != 0:
            out._invalid(reason, int(np.argmax(rows)), count)
    counted = plain & ~bad_ip & stamped
    good = codes[counted]
    millis = block.millis()[counted] if times else None
    out._add_v4(good[good >= 0], None if millis is None else millis[good >= 0])
    if len(v6 := good[good < _BAD]):
        out.v6 += map(_v6_codes.__getitem__, (-2 - v6).tolist())
        if millis is not None:
            out.v6_millis += millis[good < _BAD].tolist()
    return out


def _decode_batch(values: Sequence[bytes | None]) -> tuple[list[_Plain], list[int]]:
    """Each value decoded as `_Plain` (in one pass of C calls); the rows that did not decode.

    A row that does not decode, or that is not ASCII (msgspec checks UTF-8 only in what it
    decodes), is `_ODD` in the list and its index is among those returned.
    """
    events: list[_Plain] = []
    odd: list[int] = []
    rest = iter(values)
    while True:
        try:
            events.extend(map(_decode_plain, rest))  # type: ignore[arg-type]  # None: TypeError
            break
        except (msgspec.DecodeError, TypeError, UnicodeDecodeError, RecursionError):
            odd.append(len(events))  # TypeError: None, a tombstone
            events.append(_ODD)
    try:
        ascii_only = all(map(bytes.isascii, values))  # type: ignore[arg-type]
    except TypeError:  # a None among them
        ascii_only = all(value is None or value.isascii() for value in values)
    if not ascii_only:
        for row, value in enumerate(values):
            if value and not value.isascii() and events[row] is not _ODD:
                odd.append(row)
                events[row] = _ODD
        odd.sort()
    return events, odd


def _codes(texts: list[str]) -> npt.NDArray[np.int64]:
    """The code of each address: dotted quads parsed together, any other text through the cache."""
    codes, quad = dotted_quads(texts)
    if not quad.all():
        others = np.flatnonzero(~quad).tolist()
        words = list(map(texts.__getitem__, others))
        cached: list[int | None] = list(map(_ip_codes.get, words))
        if None in cached:
            pairs = zip(words, cached, strict=True)
            cached = [_code(word) if code is None else code for word, code in pairs]
        codes[others] = cached  # type: ignore[assignment]  # no None left
    return codes


_QUAD = 18  # a dotted quad's 15 characters at most, and room to read 3 digits at any start


def dotted_quads(texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Each text's IPv4 address as an integer (-1 if none), and which texts are dotted quads.

    As strict as inet_pton, for a whole batch at once with numpy: four decimal numbers of one to
    three digits, each at most 255 and without a leading zero, joined by dots, nothing else.
    """
    data = ("\n".join(texts) + "\n").encode("utf-8", "surrogatepass")
    chars = np.frombuffer(data + bytes(_QUAD), np.uint8)
    ends = np.flatnonzero(chars == ord("\n"))
    codes = np.full(len(texts), _BAD, np.int64)
    if len(ends) != len(texts):  # a text holds a newline: none of them is read here
        return codes, np.zeros(len(texts), np.bool_)
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    grid = sliding_window_view(chars, _QUAD)[starts]
    inside = np.arange(_QUAD) < lengths[:, None]
    dot = (grid == ord(".")) & inside
    digit = ((grid - ord("0")) < 10) & inside  # uint8: bytes below '0' wrap around
    quad = (lengths >= 7) & (lengths <= 15) & (np.count_nonzero(dot, axis=1) == 3)
    quad &= np.count_nonzero(digit, axis=1) == lengths - 3
    rows = np.flatnonzero(quad)
    numbers = grid[rows].astype(np.int64) - ord("0")
    dots = (np.flatnonzero(dot[rows]) % _QUAD).reshape(-1, 3)
    first = np.column_stack((np.zeros(len(rows), np.int64), dots + 1))
    last = np.column_stack((dots, lengths[rows]))
    at = np.arange(len(rows))
    value = np.zeros(len(rows), np.int64)
    valid = np.ones(len(rows), np.bool_)
    for k in range(4):
        start, size = first[:, k], last[:, k] - first[:, k]
        a, b, c = numbers[at, start], numbers[at, start + 1], numbers[at, start + 2]
        octet = np.where(size == 1, a, np.where(size == 2, a * 10 + b, a * 100 + b * 10 + c))
        valid &= (size >= 1) & (size <= 3) & ((size == 1) | (a != 0)) & (octet <= 255)
        value = value * 256 + octet
    quad[rows[~valid]] = False
    codes[rows[valid]] = value[valid]
    return codes, quad


def _code(text: str) -> int:
    code = _ip_codes.get(text)
    if code is None:
        ip = canonical_ip(text)
        if ip is None:
            code = _BAD
        elif type(ip) is int:
            code = ip
        else:
            _v6_codes.append(ip)  # type: ignore[arg-type]
            code = -1 - len(_v6_codes)
        if len(text) <= _CACHED_LENGTH:
            _ip_codes[text] = code
    return code


def _check_each(
    values: Sequence[bytes | None], rows: Iterable[int], times: bool = False
) -> Checked:
    """Check the records at `rows` one by one, by the rules in order (timestamps in a block)."""
    out = Checked()
    v4: list[int] = []
    v4_millis: list[int] = []
    odd_times: list[tuple[IP, int]] = []  # (address, time) of timestamps read one by one
    lines: list[str] = []  # timestamps to parse as one block, with their records' addresses
    ips: list[IP] = []
    stamped: list[int] = []
    decode = _decode
    for index in rows:
        value = values[index]
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
        code = _code(text) if type(text) is str else _BAD
        if code == _BAD:
            out._invalid(Reason.BAD_DEVICE_IP, index)
            continue
        ip: IP = code if code >= 0 else _v6_codes[-2 - code]
        stamp = event.timestamp
        if stamp is None:
            out._invalid(Reason.MISSING_TIMESTAMP, index)
        elif (type(stamp) is str and "\n" not in stamp and "\r" not in stamp) or (
            type(stamp) is int and abs(stamp) < _BIG
        ):
            lines.append(stamp if type(stamp) is str else str(stamp))
            ips.append(ip)
            stamped.append(index)
        elif (millis := _millis(stamp)) is not None:
            odd_times.append((ip, millis))
        else:
            out._invalid(Reason.BAD_TIMESTAMP, index)
    stamps: list[int] = []
    if lines:
        if len(lines) < BATCH_MIN:  # one by one: a block's fixed cost is larger
            found = list(map(_millis, lines))
            flags = [millis is not None for millis in found]
            stamps = [millis or 0 for millis in found]
        else:
            block = parse_block(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
            flags = block.ok.tolist()
            stamps = block.millis().tolist() if times else [0] * len(ips)
        if not all(flags):
            for index in compress(stamped, [not good for good in flags]):
                out._invalid(Reason.BAD_TIMESTAMP, index)
            ips, stamps = list(compress(ips, flags)), list(compress(stamps, flags))
    for ip, millis in [*zip(ips, stamps, strict=True), *odd_times]:
        if type(ip) is int:
            v4.append(ip)
            v4_millis.append(millis)
        else:
            out.v6.append(ip)  # type: ignore[arg-type]
            out.v6_millis.append(millis)
    out._add_v4(np.array(v4, np.uint32), np.array(v4_millis, np.int64) if times else None)
    if not times:
        out.v6_millis = []
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


def _millis(stamp: object) -> int | None:
    """The definition, for the rare timestamps the block path does not take (floats, odd types):
    the epoch milliseconds, or None if it is not a timestamp."""
    if not isinstance(stamp, str | int | float) or isinstance(stamp, bool):
        return None
    try:
        instant = parse_timestamp(stamp)
    except InvalidTimestamp:
        return None
    return (instant - EPOCH) // _MILLISECOND
