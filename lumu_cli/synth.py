"""Synthetic device events for `lumu produce`: a fixed pool of addresses, the same seed, the same
records; a share of them invalid, each for a known reason (events.Reason)."""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections import Counter

from lumu_cli.events import Reason
from lumu_cli.timestamps import format_timestamp, parse_timestamp

__all__ = ["Synth"]


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
