"""The exact set of unique device IPs: IPv4 in a Roaring bitmap, IPv6 as sorted 16-byte values.

Python sets of strings cost about 100 bytes an address; a Roaring bitmap of IPv4 addresses costs
2 bytes or less, and an IPv6 address costs its 16 bytes in a sorted numpy array (new ones wait in
a small buffer and are merged in sorted order, so adding stays cheap). Adding an address twice
changes nothing, which is what makes replaying a Kafka partition safe.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

__all__ = ["V4_DIGITS", "V4_SHIFT", "V6_PIECE", "Pieces", "UniqueIPs", "v4_piece", "v6_piece"]

_V6 = np.dtype("S16")  # big-endian address bytes: byte order is numeric order
_MERGE_AT = 1 << 16
V4_BUFFER = 1 << 16  # IPv4 addresses a buffered set holds back at most (256 KiB)
V4_SHIFT = 18  # an IPv4 piece: the addresses sharing their high 14 bits (4 Roaring containers)
V4_DIGITS = 4  # hex digits that name one
V6_PIECE = 4096  # IPv6 addresses in one piece at most (64 KiB); a fuller piece is split in halves
FIRST_V6 = bytes(16)  # the lower bound of the first IPv6 piece

_U32 = next(code for code in "IL" if array.array(code).itemsize == 4)  # "I" wherever lumu runs

V4Piece = BitMap
V6Piece = npt.NDArray[np.bytes_]


class UniqueIPs:
    """An exact set of IPv4 and IPv6 addresses, given as ints (IPv4) and packed bytes (IPv6).

    `buffered`: IPv4 arrays added wait in a buffer and go into the bitmap together, when
    `V4_BUFFER` addresses wait or the set is read. Many small additions of scattered addresses
    (a window's share of each batch) cost a bitmap far less so: each new container is then
    made in one pass over the bitmap, not by an insertion of its own.

    Reading a set empties its buffers into it (IPv4 waiting, IPv6 pending), so a set that one
    thread adds to and another reads (a window's union, shown over HTTP) holds a lock for both.
    """

    def __init__(self, *, buffered: bool = False) -> None:
        self._v4 = BitMap()
        self._v4_waiting: list[npt.NDArray[np.uint32]] = []
        self._v4_waiting_count = 0
        self._buffered = buffered
        self._v6: npt.NDArray[np.bytes_] = np.empty(0, _V6)
        self._pending: set[bytes] = set()
        self._lock = threading.RLock()

    @property
    def v4(self) -> BitMap:
        """The IPv4 addresses (those waiting in the buffer included)."""
        if self._v4_waiting:
            with self._lock:
                if self._v4_waiting:
                    waiting = np.unique(np.concatenate(self._v4_waiting))
                    self._v4_waiting, self._v4_waiting_count = [], 0
                    self._v4 |= BitMap(array.array(_U32, waiting.astype(np.uint32).tobytes()))
        return self._v4

    @v4.setter
    def v4(self, bitmap: BitMap) -> None:
        self._v4 = bitmap

    def add_v4(self, addresses: Iterable[int] | npt.NDArray[np.uint32]) -> None:
        """Add IPv4 addresses given as 32-bit integers (sorted, they go in sooner)."""
        if isinstance(addresses, np.ndarray):
            if self._buffered:
                with self._lock:
                    self._v4_waiting.append(addresses)
                    self._v4_waiting_count += len(addresses)
                    if self._v4_waiting_count >= V4_BUFFER:
                        self.v4  # noqa: B018  # (reading it empties the buffer into the bitmap)
                return
            # pyroaring reads an array.array's buffer at once
            addresses = array.array(_U32, addresses.astype(np.uint32, copy=False).tobytes())
        self.v4.update(addresses)

    def add_v6(self, packed: Iterable[bytes]) -> None:
        """Add IPv6 addresses given as their 16 packed bytes."""
        with self._lock:
            self._pending.update(packed)
        if len(self._pending) >= _MERGE_AT:
            self._merge()

    def update(self, other: UniqueIPs) -> None:
        """Add every address of `other` (a union in place)."""
        self.v4 |= other.v4
        self._v6 = np.union1d(self.v6, other.v6)  # arrays, not bytes: those lose trailing zeros

    def add_pieces(self, v4: Sequence[V4Piece], v6: Sequence[V6Piece]) -> None:
        """Add pieces read back from a snapshot (a union in place, in one step each)."""
        if v4:
            self.v4 |= _union(list(v4))
        if v6:
            self._v6 = np.union1d(self.v6, np.concatenate(v6))

    @classmethod
    def union(cls, sets: Sequence[UniqueIPs]) -> UniqueIPs:
        """A new set holding every address of `sets`."""
        union = cls()
        union.add_pieces([ips.v4 for ips in sets], [ips.v6 for ips in sets])
        return union

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

    def memory_bytes(self) -> int:
        """Approximate bytes held by the set's own arrays (for status and benchmarks)."""
        stats = self.v4.get_statistics()
        v4 = stats["n_bytes_array_containers"] + stats["n_bytes_run_containers"]
        v4 += stats["n_bytes_bitset_containers"]
        return v4 + self._v6.nbytes + 90 * len(self._pending)  # ~90 bytes a pending bytes object

    def _merge(self) -> None:
        if not self._pending:
            return
        with self._lock:
            new = np.array(sorted(self._pending), _V6)
            self._pending.clear()
            at = np.searchsorted(self._v6, new)
            seen = at < len(self._v6)
            seen[seen] = self._v6[at[seen]] == new[seen]
            self._v6 = np.insert(self._v6, at[~seen], new[~seen])


def _union(maps: list[BitMap]) -> BitMap:
    """The union of many bitmaps, as a tree: OR-ing one by one costs a pass over the result each."""
    while len(maps) > 1:
        maps = [BitMap.union(*maps[at : at + 16]) for at in range(0, len(maps), 16)]
    return maps[0] if maps else BitMap()


def v4_piece(key: int, data: bytes) -> V4Piece:
    """IPv4 piece `key` read back; ValueError unless all its addresses have high 16 bits `key`."""
    try:
        piece = BitMap.deserialize(data)
    except (ValueError, IndexError, OverflowError) as exc:
        raise ValueError(f"not a Roaring bitmap ({exc})") from None
    if piece and not (piece.min() >> V4_SHIFT == piece.max() >> V4_SHIFT == key):
        raise ValueError(f"addresses outside IPv4 piece {key:0{V4_DIGITS}x}")
    return piece


def v6_piece(bound: bytes, data: bytes) -> V6Piece:
    """IPv6 piece from `bound` read back; ValueError unless sorted distinct addresses >= bound."""
    if len(data) % 16:
        raise ValueError(f"{len(data)} bytes is not a whole number of IPv6 addresses")
    piece = np.frombuffer(data, _V6)
    if len(piece) and piece[0] < np.array(bound, _V6):
        raise ValueError("addresses below the piece's lower bound")
    if not np.all(piece[1:] > piece[:-1]):
        raise ValueError("IPv6 addresses not sorted and distinct")
    return piece


class Pieces:
    """Which bounded pieces of one set changed since they were last written, and their bytes.

    IPv4 is cut by the high 14 bits (4 Roaring containers: 32 KiB at most), IPv6 into ranges of at
    most V6_PIECE addresses, each named by its lower bound. A set only grows, so a piece changed
    exactly when it holds more addresses than when it was last written.
    """

    def __init__(self, ips: UniqueIPs, v6_bounds: Iterable[bytes] = ()) -> None:
        self.ips = ips
        high = np.frombuffer(ips.v4.to_array(), np.uint32) >> V4_SHIFT
        self._written4 = np.bincount(high, minlength=1 << (32 - V4_SHIFT))
        self._bounds = np.array(sorted({FIRST_V6, *v6_bounds}), _V6)
        bounds = map(_address, self._bounds)
        self._written6 = dict(zip(bounds, self._sizes6(self._bounds), strict=True))
        self._touched4 = np.zeros(len(self._written4), bool)  # by piece: cheaper than addresses
        self._touched6: set[bytes] = set()
        self._proposed: tuple[dict[int, int], dict[bytes, int]] = ({}, {})
        self._sent: tuple[npt.NDArray[np.bool_], set[bytes]] | None = None  # what `changed` read

    def touch(self, v4: Sequence[int] | npt.NDArray[np.uint32], v6: Sequence[bytes]) -> None:
        """Note addresses just added to the set (their pieces may have changed)."""
        if len(v4):
            self._touched4[np.asarray(v4, np.uint32) >> V4_SHIFT] = True
        self._touched6.update(v6)

    def touched(self) -> bool:
        """Whether addresses were added since `changed` last read them."""
        return bool(self._touched4.any() or self._touched6)

    def changed(self) -> list[tuple[str, bytes]]:
        """(name, bytes) of each piece that changed since `written`: 'v4/00ff', 'v6/<hex>'.

        Changes from now on are noted afresh (the set may grow while these are being stored);
        `written` or `unwritten` tells what became of these.
        """
        written4: dict[int, int] = {}
        records = []
        keys = np.flatnonzero(self._touched4).tolist()
        for key in keys:  # (each alone: a pass over the whole set costs more, for a large one)
            low, high = key << V4_SHIFT, (key + 1) << V4_SHIFT
            size = self.ips.v4.range_cardinality(low, high)
            if size != self._written4[key]:
                piece = self.ips.v4 & BitMap(range(low, high))
                records.append((f"v4/{key:0{V4_DIGITS}x}", piece.serialize()))
                written4[key] = size
        written6: dict[bytes, int] = {}
        for bound, piece6 in self._changed6():
            records.append((f"v6/{bound.hex()}", piece6.tobytes()))
            written6[bound] = len(piece6)
        self._proposed = (written4, written6)
        self._sent = (self._touched4.copy(), set(self._touched6))
        self._touched4[:] = False
        self._touched6.clear()
        return records

    def written(self) -> None:
        """The pieces `changed` gave are stored."""
        written4, written6 = self._proposed
        for key, size in written4.items():
            self._written4[key] = size
        new = [bound for bound in written6 if bound not in self._written6]
        if new:
            self._bounds = np.union1d(self._bounds, np.array(new, _V6))
        self._written6.update(written6)
        self._proposed, self._sent = ({}, {}), None

    def unwritten(self) -> None:
        """The pieces `changed` gave were not stored: they count as changed again."""
        if self._sent is not None:
            touched4, touched6 = self._sent
            self._touched4 |= touched4
            self._touched6 |= touched6
        self._proposed, self._sent = ({}, {}), None

    def v6_bounds(self) -> set[bytes]:
        """The lower bounds that name the IPv6 pieces written so far."""
        return set(self._written6)

    def _changed6(self) -> Iterable[tuple[bytes, V6Piece]]:
        if not self._touched6:
            return
        v6, bounds = self.ips.v6, self._bounds
        touched = np.array(sorted(self._touched6), _V6)
        for at in np.unique(np.searchsorted(bounds, touched, side="right") - 1).tolist():
            low = int(np.searchsorted(v6, bounds[at]))
            high = int(np.searchsorted(v6, bounds[at + 1])) if at + 1 < len(bounds) else len(v6)
            bound = _address(bounds[at])
            if high - low == self._written6[bound]:
                continue
            step = V6_PIECE if high - low <= V6_PIECE else V6_PIECE // 2
            for start in range(low, high, step):
                first = bound if start == low else _address(v6[start])
                yield first, v6[start : min(start + step, high)]

    def _sizes6(self, bounds: npt.NDArray[np.bytes_]) -> list[int]:
        v6 = self.ips.v6
        starts = np.searchsorted(v6, bounds)
        ends = np.append(starts[1:], len(v6))
        return (ends - starts).tolist()  # type: ignore[no-any-return]


def _address(value: np.bytes_) -> bytes:
    """An IPv6 array element as its 16 bytes (numpy drops trailing NULs when it reads one)."""
    return bytes(value).ljust(16, b"\0")


def _find(values: npt.NDArray[np.bytes_], address: bytes) -> bool:
    key = np.array(address, _V6)  # compared as numpy values: bytes() would drop trailing zeros
    at = int(np.searchsorted(values, key))
    return at < len(values) and bool(values[at] == key)
