"""The exact set of unique device IPs: IPv4 in a Roaring bitmap, IPv6 as sorted 16-byte values.

Python sets of strings cost about 100 bytes an address; a Roaring bitmap of IPv4 addresses costs
2 bytes or less, and an IPv6 address costs its 16 bytes in a sorted numpy array (new ones wait in
a small buffer and are merged in sorted order, so adding stays cheap). Adding an address twice
changes nothing, which is what makes replaying a Kafka partition safe.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

__all__ = ["UniqueIPs"]

_V6 = np.dtype("S16")  # big-endian address bytes: byte order is numeric order
_MERGE_AT = 1 << 16
_HEADER = struct.Struct("<4sII")  # magic, IPv4 bytes, IPv6 count
_MAGIC = b"LUI1"


class UniqueIPs:
    """An exact set of IPv4 and IPv6 addresses, given as ints (IPv4) and packed bytes (IPv6)."""

    def __init__(self) -> None:
        self.v4 = BitMap()
        self._v6: npt.NDArray[np.bytes_] = np.empty(0, _V6)
        self._pending: set[bytes] = set()

    def add_v4(self, addresses: Iterable[int] | npt.NDArray[np.uint32]) -> None:
        """Add IPv4 addresses given as 32-bit integers."""
        self.v4.update(addresses)

    def add_v6(self, packed: Iterable[bytes]) -> None:
        """Add IPv6 addresses given as their 16 packed bytes."""
        self._pending.update(packed)
        if len(self._pending) >= _MERGE_AT:
            self._merge()

    def update(self, other: UniqueIPs) -> None:
        """Add every address of `other` (a union in place)."""
        self.v4 |= other.v4
        self._v6 = np.union1d(self.v6, other.v6)  # arrays, not bytes: those lose trailing zeros

    @property
    def v6(self) -> npt.NDArray[np.bytes_]:
        """The IPv6 addresses, sorted, as 16-byte values."""
        self._merge()
        return self._v6

    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)

    def __contains__(self, address: int | bytes) -> bool:
        if isinstance(address, int):
            return address in self.v4
        return address in self._pending or _find(self._v6, address)

    def to_bytes(self) -> bytes:
        """A compact, portable serialization (Roaring's own format for IPv4)."""
        v4 = self.v4.serialize()
        v6 = self.v6
        return _HEADER.pack(_MAGIC, len(v4), len(v6)) + v4 + v6.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> UniqueIPs:
        """The set `to_bytes` wrote; ValueError if `data` is not one."""
        if len(data) < _HEADER.size:
            raise ValueError("not a lumu unique-IP set: too short")
        magic, v4_size, v6_count = _HEADER.unpack_from(data)
        body = memoryview(data)[_HEADER.size :]
        if magic != _MAGIC or len(body) != v4_size + 16 * v6_count:
            raise ValueError("not a lumu unique-IP set: bad header or length")
        ips = cls()
        try:
            ips.v4 = BitMap.deserialize(bytes(body[:v4_size]))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not a lumu unique-IP set: bad IPv4 bitmap ({exc})") from None
        ips._v6 = np.frombuffer(body[v4_size:], _V6).copy()
        if not np.all(ips._v6[1:] > ips._v6[:-1]):
            raise ValueError("not a lumu unique-IP set: IPv6 addresses not sorted and distinct")
        return ips

    def memory_bytes(self) -> int:
        """Approximate bytes held by the set's own arrays (for status and benchmarks)."""
        stats = self.v4.get_statistics()
        v4 = stats["n_bytes_array_containers"] + stats["n_bytes_run_containers"]
        v4 += stats["n_bytes_bitset_containers"]
        return v4 + self._v6.nbytes + 90 * len(self._pending)  # ~90 bytes a pending bytes object

    def _merge(self) -> None:
        if not self._pending:
            return
        new = np.array(sorted(self._pending), _V6)
        self._pending.clear()
        at = np.searchsorted(self._v6, new)
        seen = at < len(self._v6)
        seen[seen] = self._v6[at[seen]] == new[seen]
        self._v6 = np.insert(self._v6, at[~seen], new[~seen])


def _find(values: npt.NDArray[np.bytes_], address: bytes) -> bool:
    key = np.array(address, _V6)  # compared as numpy values: bytes() would drop trailing zeros
    at = int(np.searchsorted(values, key))
    return at < len(values) and bool(values[at] == key)
