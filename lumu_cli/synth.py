"""Synthetic device events for `lumu produce`: a pool of records built once from a fixed set of
addresses and then sent round and round, only the timestamps kept current; the same seed, the same
records. A share of them is invalid, each for a known reason (events.Reason)."""

from __future__ import annotations

import math
import random
import socket
import time
from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lumu_cli.timestamps import format_timestamp

if TYPE_CHECKING:  # at run time, only where invalid records are made (see _invalid_value)
    from lumu_cli.events import Reason

__all__ = ["POOL", "Synth"]

POOL = 1 << 14  # records in the pool at least: how many go by before they repeat

_V6_PREFIX = 0x2001_0DB8 << 96  # 2001:db8::/32, the documentation prefix
_V4_UNICAST = range(0x0100_0000, 0xE000_0000)  # 1.0.0.0 .. 223.255.255.255
_FORMS = 9  # ways a timestamp is written (_stamps); a template's form indexes them
_NO_STAMP = _FORMS  # the form of a template without the current time in it: the empty stamp
_CODES = 11  # error codes 0..10
_SPELLINGS = 24  # a draw that picks evenly among 8 (IPv4) or 3 (IPv6) spellings
_MARK = b"\x00"  # where the timestamp goes in a template (never in a record's JSON text)
_VALID_HEAD = b'{"timestamp": '
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A template is a record waiting for the time: key, head, form, tail; the value is
# head + the current time written in that form + tail.
Template = tuple[bytes, bytes, int, bytes]


class Synth:
    """Synthetic device events from a fixed pool of addresses; the same seed, the same records.

    Valid events write their timestamp in the forms devices send (ISO 8601 with and without a
    zone and milliseconds, epoch seconds and milliseconds as strings and numbers) and an address
    in any of its spellings (IPv6 compressed, expanded or upper case; IPv4 also IPv4-mapped).

    The records are drawn once, into a pool of at least POOL records that `records` goes round:
    each pass gives every address a valid record (unless more than half of the records are
    invalid), and an exact `invalid_ratio` share of invalid ones. Only the timestamps change,
    to the time of each `records` call.
    """

    def __init__(
        self, ips: int, *, ipv6_ratio: float = 0.0, invalid_ratio: float = 0.0, seed: int | None
    ) -> None:
        rng = random.Random(seed)
        self.addresses = _addresses(rng, ips, ipv6_ratio)  # canonical forms, the records' keys
        size = _pool_size(ips, invalid_ratio)
        self.invalid_at = sorted(rng.sample(range(size), round(size * invalid_ratio)))
        self.picks = _picks(rng, ips, size - len(self.invalid_at))  # of the valid records
        self.reasons: list[Reason] = []  # of the invalid records, in pool order
        self.pool = self._templates(rng)
        self.made = 0  # records made so far: the next one is pool[made % len(pool)]

    def _templates(self, rng: random.Random) -> list[Template]:
        """The pool in order: the valid records at their picked addresses, and the invalid ones
        (their reasons noted) at their places among them."""
        draws = rng.choices(range(_FORMS * _CODES * _SPELLINGS), k=len(self.picks))
        valid = [_valid(self.addresses[p], draw) for p, draw in zip(self.picks, draws, strict=True)]
        pool: list[Template] = []
        for n, position in enumerate(self.invalid_at):  # position - n valid records come first
            pool += valid[len(pool) - n : position - n]
            key = self.addresses[rng.randrange(len(self.addresses))]
            reason, template = _invalid(rng, key)
            self.reasons.append(reason)
            pool.append(template)
        return pool + valid[len(pool) - len(self.invalid_at) :]

    @property
    def distinct_ips(self) -> int:
        """How many addresses of the pool valid events have used so far."""
        if self.made >= len(self.pool):
            return len(set(self.picks))
        valid = self.made - bisect_left(self.invalid_at, self.made)
        return len(set(self.picks[:valid]))

    @property
    def invalid(self) -> Counter[Reason]:
        """How many invalid events were made so far, by reason."""
        rounds, at = divmod(self.made, len(self.pool))
        counts = Counter(self.reasons[: bisect_left(self.invalid_at, at)])
        for reason, n in Counter(self.reasons).items():
            counts[reason] += rounds * n
        return counts

    def records(self, count: int) -> list[tuple[bytes, bytes]]:
        """The next `count` (key, value) records, valid or not, stamped with the time now; the
        key is the device IP in its canonical form."""
        stamps = (*_stamps(time.time()), b"")
        out: list[tuple[bytes, bytes]] = []
        while len(out) < count:
            at = self.made % len(self.pool)
            part = self.pool[at : at + count - len(out)]
            out += [(key, head + stamps[form] + tail) for key, head, form, tail in part]
            self.made += len(part)
        return out


def _pool_size(ips: int, invalid_ratio: float) -> int:
    """At least POOL, and enough records that the valid ones can use every address once, but
    no more than twice the addresses."""
    enough = math.ceil(ips / (1 - invalid_ratio)) if invalid_ratio < 0.5 else 2 * ips
    return max(POOL, enough)


def _addresses(rng: random.Random, ips: int, ipv6_ratio: float) -> list[bytes]:
    """`ips` distinct addresses in their canonical forms, a share `ipv6_ratio` of them IPv6."""
    n6 = round(ips * ipv6_ratio)
    v6: set[int] = set()
    while len(v6) < n6:
        v6.add(_V6_PREFIX | rng.getrandbits(96))
    v4 = dict.fromkeys(rng.choices(_V4_UNICAST, k=ips - n6))
    while len(v4) < ips - n6:  # a number drawn twice (rare): draw another
        v4[rng.choice(_V4_UNICAST)] = None
    ntoa, ntop, v6_family = socket.inet_ntoa, socket.inet_ntop, socket.AF_INET6
    return [
        *(ntoa(number.to_bytes(4, "big")).encode() for number in v4),
        *(ntop(v6_family, number.to_bytes(16, "big")).encode() for number in sorted(v6)),
    ]  # ntop writes RFC 5952, as ipaddress does


def _picks(rng: random.Random, ips: int, valid: int) -> list[int]:
    """The address of each of `valid` records: every one of `ips` once (as far as they go), the
    rest at random; in random order."""
    if valid < ips:
        return rng.sample(range(ips), valid)
    picks = [*range(ips), *rng.choices(range(ips), k=valid - ips)]
    rng.shuffle(picks)
    return picks


def _spelling(key: bytes, draw: int) -> bytes:
    """The address `key` written one of the ways devices write it, picked evenly by `draw`:
    IPv6 compressed (as the key), expanded or upper case; IPv4 plain, or one in 8 IPv4-mapped."""
    if b":" not in key:
        return b"::ffff:" + key if draw % 8 == 7 else key
    form = draw % 3
    if form == 0:
        return key
    return (
        key.upper()
        if form == 1
        else socket.inet_pton(socket.AF_INET6, key.decode()).hex(":", 2).encode()
    )


def _valid(key: bytes, draw: int) -> Template:
    """A valid record of the address `key`: `draw` picks the timestamp form, the error code and
    the spelling of the address."""
    draw, form = divmod(draw, _FORMS)
    spelling, code = divmod(draw, _CODES)
    tail = b', "device_ip": "%s", "error_code": %d}' % (_spelling(key, spelling), code)
    return key, _VALID_HEAD, form, tail


def _invalid(rng: random.Random, key: bytes) -> tuple[Reason, Template]:
    """A malformed record keyed by `key`, and the reason it is invalid."""
    reason, value = _invalid_value(rng, key, _MARK)
    head, mark, tail = value.partition(_MARK)
    return reason, (key, head, 0 if mark else _NO_STAMP, tail)  # form 0: ISO 8601 with Z


def _stamps(now: float) -> tuple[bytes, ...]:
    """One instant written the ways devices write it, as JSON values (strings quoted)."""
    millis = int(now * 1000)
    seconds = millis // 1000
    iso = format_timestamp(_EPOCH + timedelta(milliseconds=millis)).encode()  # ...:30.235Z
    return (
        b'"%s"' % iso, b'"%s"' % iso[:-1], b'"%sZ"' % iso[:-5], b'"%s"' % iso[:-5],
        b'"%s+00:00"' % iso[:-1], b'"%d"' % seconds, b'"%d"' % millis, b"%d" % seconds,
        b"%d" % millis,
    )  # fmt: skip


def _invalid_value(rng: random.Random, ip: bytes, stamp: bytes) -> tuple[Reason, bytes]:
    """One malformed record, of a kind picked at random, and the reason it is invalid."""
    from lumu_cli.events import Reason  # here: the rules load numpy, 0.1 s a valid-only run saves

    good = b'{"timestamp": %s, "device_ip": "%s", "error_code": 3}' % (stamp, ip)
    kinds = (
        (Reason.NOT_JSON, good[:-7]),
        (Reason.NOT_OBJECT, b'["%s"]' % ip),
        (Reason.MISSING_DEVICE_IP, b'{"timestamp": %s, "error_code": 3}' % stamp),
        (Reason.MISSING_DEVICE_IP, good.replace(b'"%s"' % ip, b"null")),
        (Reason.BAD_DEVICE_IP, good.replace(ip, b"300.1.2.3")),
        (Reason.BAD_DEVICE_IP, good.replace(b'"%s"' % ip, b"167772161")),
        (Reason.MISSING_TIMESTAMP, b'{"device_ip": "%s", "error_code": 3}' % ip),
        (Reason.BAD_TIMESTAMP, good.replace(stamp, b'"2021-02-30T10:00:00Z"')),
        (Reason.BAD_TIMESTAMP, good.replace(stamp, b'"yesterday"')),
        (Reason.NOT_UTF8, b"\xff\xfe" + good),
    )
    return rng.choice(kinds)
