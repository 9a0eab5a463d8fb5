"""The count's state, partition by partition, and the records that hold it in the state topic.

Each partition of the tracked topic has a tally: its unique-IP set, the offset it is counted up to,
its messages and its invalid counts. A tally is kept as records of a compacted topic, keyed so
that compaction keeps the latest of each:

    <topic>/<partition>/meta        JSON: next_offset, messages, invalid, unique_ips, written_at
    <topic>/<partition>/v4/<hhhh>   the IPv4 addresses whose high 14 bits are hhhh (Roaring)
    <topic>/<partition>/v6/<hex>    at most 4096 sorted IPv6 addresses from the bound <hex>

Every value starts with b"LUMU" and the format version. A commit writes the pieces that changed
and then the meta, in one transaction, so a read_committed reader only ever sees whole snapshots.
Pure: nothing here knows Kafka.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lumu_cli.events import Checked
from lumu_cli.native_events import check_events
from lumu_cli.uniques import (
    V4_DIGITS,
    Pieces,
    UniqueIPs,
    V4Piece,
    V6Piece,
    v4_piece,
    v6_piece,
)
from lumu_cli.windows import Window, WindowCounts, WindowSets, wall_clock_ms

__all__ = ["FORMAT", "Meta", "PartitionTally", "StateRecord", "Tally", "decode"]

FORMAT = 1
MAGIC = b"LUMU"
_HEAD = MAGIC + bytes([FORMAT])


@dataclass
class PartitionTally:
    """One partition's share of the count, and the offset it has been counted up to."""

    ips: UniqueIPs = field(default_factory=UniqueIPs)
    next_offset: int = 0
    messages: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    written_at: str | None = None  # of the snapshot it was restored from or last written as
    saved_offset: int | None = None  # next_offset of that snapshot (None: never written)
    saved_unique: int = 0  # its unique_ips
    pieces: Pieces | None = None  # while counted here: which pieces changed since the snapshot
    sending: tuple[int, int] | None = None  # next_offset, unique IPs of the snapshot being stored
    v6_bounds: set[bytes] = field(default_factory=set)  # while followed: its IPv6 pieces' names
    windows: dict[str, WindowSets] = field(default_factory=dict)  # by size: its kept windows

    def meta(self, written_at: str) -> bytes:
        body = {
            "next_offset": self.next_offset,
            "messages": self.messages,
            "invalid": dict(sorted(self.invalid.items())),
            "unique_ips": len(self.ips),
            "written_at": written_at,
        }
        return _HEAD + json.dumps(body).encode()


@dataclass(frozen=True)
class Meta:
    """What a snapshot says besides its addresses."""

    next_offset: int
    messages: int
    invalid: dict[str, int]
    unique_ips: int
    written_at: str


@dataclass(frozen=True)
class StateRecord:
    """One record of the state topic, read back: whose it is, which piece, and its content."""

    topic: str
    partition: int
    piece: str  # "meta", "v4/00ff", "v6/<32 hex digits>", or a window's: "w/1h/<start>/..."
    value: Meta | V4Piece | V6Piece | dict[str, int] | None  # None: a tombstone


def key(topic: str, partition: int, piece: str) -> bytes:
    return f"{topic}/{partition}/{piece}".encode()


def decode(raw_key: bytes | None, raw_value: bytes | None) -> StateRecord:
    """A state record read back; ValueError naming what is wrong with it."""
    try:
        topic, partition, piece = (raw_key or b"").decode().split("/", 2)
        number = int(partition)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"not a lumu state record (key {raw_key!r})") from None
    if raw_value is None:
        return StateRecord(topic, number, piece, None)
    if raw_value[:4] != MAGIC or len(raw_value) < 5:
        raise ValueError(f"not a lumu state record (key {raw_key!r})")
    if raw_value[4] != FORMAT:
        raise ValueError(
            f"written in state format {raw_value[4]}; this lumu reads format {FORMAT} "
            "(use the lumu that wrote it, or --reset to count again)"
        )
    body = raw_value[5:]
    kind, _, name = _window_piece(piece).partition("/")
    try:
        if piece == "meta":
            return StateRecord(topic, number, piece, _meta(body))
        if kind == "v4" and _hex(name, V4_DIGITS):
            return StateRecord(topic, number, piece, v4_piece(int(name, 16), body))
        if kind == "v6" and _hex(name, 32):
            return StateRecord(topic, number, piece, v6_piece(bytes.fromhex(name), body))
        if piece.startswith("w/") and kind == "meta" and not name:
            return StateRecord(topic, number, piece, _counts(body))
    except ValueError as exc:
        raise ValueError(f"partition {number} piece {piece}: {exc}") from None
    raise ValueError(f"not a lumu state record (key {raw_key!r})")


def _window_piece(piece: str) -> str:
    """The piece of a window record (`w/1h/<start>/v4/00ff` -> `v4/00ff`; its sizes' meta,
    `w/1h/meta`, -> `meta`), or `piece` itself."""
    if not piece.startswith("w/"):
        return piece
    parts = piece.split("/", 3)
    if len(parts) == 3 and parts[2] == "meta":
        return "meta"
    if len(parts) == 4 and parts[2].lstrip("-").isdigit():
        return parts[3]
    return ""


def _counts(body: bytes) -> dict[str, int]:
    """A window's meta ({messages, unique_ips}) or its size's ({late, future})."""
    try:
        counts = json.loads(body)
        if not isinstance(counts, dict) or not all(
            type(n) is int and n >= 0 for n in counts.values()
        ):
            raise ValueError
    except ValueError:
        raise ValueError(f"bad window meta {body[:80]!r}") from None
    return counts


def _hex(name: str, digits: int) -> bool:
    return len(name) == digits and not set(name) - set("0123456789abcdef")


def _meta(body: bytes) -> Meta:
    try:
        meta = Meta(**json.loads(body))
        counts = [meta.next_offset, meta.messages, meta.unique_ips, *meta.invalid.values()]
        if not all(type(n) is int and n >= 0 for n in counts) or not isinstance(
            meta.written_at, str
        ):
            raise ValueError
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"bad meta {body[:80]!r}") from None
    return meta


class Tally:
    """The exact count over every partition: unique IPs, messages, invalid by reason, and with
    `windows`, the same per window of event time (windows.py).

    Partitions counted here (`local`) grow record by record; the others follow their owners'
    snapshots. The union of every partition's set is kept, since a union costs a merge. `clock`
    gives the wall-clock time in epoch milliseconds, which decides the windows kept.
    """

    def __init__(
        self, windows: Sequence[Window] = (), clock: Callable[[], int] = wall_clock_ms
    ) -> None:
        self.partitions: dict[int, PartitionTally] = {}
        self.local: set[int] = set()
        self.ips = UniqueIPs()
        self.windows = tuple(windows)
        self.clock = clock
        # each size's union over partitions, of addresses only (messages, late and future are
        # summed from the partitions when asked): kept as the records come, as `ips` is
        self._unions = {window.name: WindowSets(window) for window in self.windows}

    @property
    def messages(self) -> int:
        return sum(part.messages for part in self.partitions.values())

    @property
    def invalid(self) -> Counter[str]:
        return sum((part.invalid for part in self.partitions.values()), Counter())

    def count(
        self, partition: int, offsets: Sequence[int], values: Sequence[bytes | None]
    ) -> tuple[Checked, int]:
        """Count the records not counted yet; their check and the index of the first one."""
        skip = bisect.bisect_left(offsets, self.next_offset(partition))
        checked = check_events(values[skip:], times=bool(self.windows))
        self.apply(partition, offsets[skip:], checked)
        return checked, skip

    def next_offset(self, partition: int) -> int:
        """The offset the partition is counted up to (0 for one not seen yet)."""
        part = self.partitions.get(partition)
        return part.next_offset if part else 0

    def apply(self, partition: int, offsets: Sequence[int], checked: Checked) -> None:
        """Count the checked records at `offsets` (none of them counted yet)."""
        part = self.partitions.setdefault(partition, PartitionTally())
        v4 = checked.v4
        before = len(part.ips.v4)
        part.ips.add_v4(v4)
        grew = len(part.ips.v4) != before  # if not, the union has them all too
        if grew:
            self.ips.add_v4(v4)
        part.ips.add_v6(checked.v6)
        self.ips.add_v6(checked.v6)
        if part.pieces:  # a batch of addresses seen before changes no piece: most batches
            part.pieces.touch(v4 if grew else (), checked.v6)
        part.messages += len(offsets)
        part.invalid.update(checked.invalid)
        if offsets:
            part.next_offset = offsets[-1] + 1
        if self.windows:
            now = self.clock()
            times = checked.v4_millis, checked.v4, checked.v6_millis, checked.v6
            for window in self.windows:
                local = partition in self.local
                sets = part.windows.setdefault(window.name, WindowSets(window, local=local))
                grouped = window.group(now, *times)  # once for the partition and the union
                sets.add_grouped(grouped)
                self._unions[window.name].add_grouped(grouped)

    def partition_windows(self, window: Window) -> list[WindowSets]:
        """Each partition's windows of that size (of the partitions that have any)."""
        named = window.name
        return [part.windows[named] for part in self.partitions.values() if named in part.windows]

    def window_sets(self, window: Window) -> WindowSets:
        """The union of every partition's windows of that size, as of now: a snapshot of the
        windows (their sets shared, read-only) with the messages, late and future summed."""
        now = self.clock()
        parts = self.partition_windows(window)
        for sets in parts:
            if sets.local:
                sets.expire(now)
        union = self._unions[window.name]
        union.expire(now)
        shown = WindowSets(window)
        shown.late = sum(sets.late for sets in parts)
        shown.future = sum(sets.future for sets in parts)
        for start, counts in union.counts.items():
            messages = sum(sets.counts[start].messages for sets in parts if start in sets.counts)
            shown.counts[start] = WindowCounts(counts.ips, messages)
        return shown

    # ------------------------------------------------------------ snapshots

    def saved(self, partition: int) -> bool:
        """Whether a snapshot of `partition` has been read or written."""
        part = self.partitions.get(partition)
        return part is not None and part.saved_offset is not None

    def take(self, partition: int, start: int) -> bool:
        """Count `partition` here from now on: from its snapshot, or from `start` if it has none.

        True if it had a snapshot.
        """
        part = self.partitions.get(partition)
        restored = self.saved(partition)
        if part is None or part.saved_offset is None:  # (pieces without a meta: none either)
            self._drop(partition)
            part = self.partitions[partition] = PartitionTally(next_offset=start)
        part.pieces = Pieces(part.ips, part.v6_bounds)
        part.v6_bounds = set()
        for sets in part.windows.values():
            sets.own()
        self.local.add(partition)
        return restored

    def give(self, partition: int) -> None:
        """`partition` is counted elsewhere now: follow its snapshots (its last one is ours)."""
        self.local.discard(partition)
        part = self.partitions.get(partition)
        if part is not None and part.pieces is not None:
            part.v6_bounds = part.pieces.v6_bounds()
            part.pieces = None
        for sets in part.windows.values() if part is not None else ():
            sets.follow()

    def changes(
        self, topic: str, partitions: Iterable[int], now: str
    ) -> list[tuple[bytes, bytes | None]]:
        """The records that bring each local partition's snapshot up to date (meta last).

        Counting may go on while they are stored; `written` or `unwritten` tells the outcome.
        """
        records: list[tuple[bytes, bytes | None]] = []
        now_ms = self.clock()
        for partition in sorted(partitions):
            part = self.partitions[partition]
            assert part.pieces is not None, f"partition {partition} is not counted here"
            pieces: list[tuple[str, bytes | None]] = list(part.pieces.changed())
            for window in self.windows:
                sets = part.windows.setdefault(window.name, WindowSets(window, local=True))
                pieces += sets.changes(now_ms)
            part.sending = part.next_offset, len(part.ips)
            if pieces or part.next_offset != part.saved_offset:
                records += [
                    (key(topic, partition, name), None if body is None else _HEAD + body)
                    for name, body in pieces
                ]
                records.append((key(topic, partition, "meta"), part.meta(now)))
        return records

    def written(self, partitions: Iterable[int], now: str) -> None:
        """The records `changes` gave for `partitions` are committed."""
        for partition in partitions:
            part = self.partitions[partition]
            assert part.pieces is not None
            assert part.sending is not None
            part.pieces.written()
            for sets in part.windows.values():
                sets.written()
            part.saved_offset, part.saved_unique = part.sending
            part.sending, part.written_at = None, now

    def unwritten(self, partitions: Iterable[int]) -> None:
        """The records `changes` gave for `partitions` were not committed: due again."""
        for partition in partitions:
            part = self.partitions[partition]
            assert part.pieces is not None
            part.pieces.unwritten()
            for sets in part.windows.values():
                sets.unwritten()
            part.sending = None

    def read(self, topic: str, records: Iterable[StateRecord]) -> None:
        """Follow the snapshots of partitions counted elsewhere (in the order they were written)."""
        v4: dict[int, list[V4Piece]] = {}
        v6: dict[int, list[V6Piece]] = {}
        for record in records:
            if record.topic != topic or record.partition in self.local:
                continue
            if record.value is None and record.piece.startswith("w/"):  # a window expired
                self._read_window(self.partitions.setdefault(record.partition, PartitionTally()),
                                  record)  # fmt: skip
                continue
            if record.value is None:  # the state was reset: start that partition afresh
                v4.pop(record.partition, None)
                v6.pop(record.partition, None)
                self._drop(record.partition)
                continue
            part = self.partitions.setdefault(record.partition, PartitionTally())
            if record.piece.startswith("w/"):
                self._read_window(part, record)
            elif isinstance(record.value, Meta):
                _follow(part, record.value)
            elif record.piece.startswith("v4/"):
                v4.setdefault(record.partition, []).append(record.value)  # type: ignore[arg-type]
            else:
                part.v6_bounds.add(bytes.fromhex(record.piece[3:]))
                v6.setdefault(record.partition, []).append(record.value)  # type: ignore[arg-type]
        for partition in v4.keys() | v6.keys():
            pieces4, pieces6 = v4.get(partition, []), v6.get(partition, [])
            self.partitions[partition].ips.add_pieces(pieces4, pieces6)
            self.ips.add_pieces(pieces4, pieces6)

    def _read_window(self, part: PartitionTally, record: StateRecord) -> None:
        """Follow one window record of a partition counted elsewhere (sizes not counted here
        are passed over)."""
        _, name, rest = record.piece.split("/", 2)
        window = next((w for w in self.windows if w.name == name), None)
        if window is None:
            return
        sets = part.windows.setdefault(name, WindowSets(window))
        if rest == "meta":
            said = record.value if isinstance(record.value, dict) else {}
            sets.late, sets.future = said.get("late", 0), said.get("future", 0)
            return
        start_text, piece = rest.split("/", 1)
        start = int(start_text)
        if record.value is None:  # expired: its owner tombstoned it
            sets.counts.pop(start, None)
            return
        counts = sets.counts.setdefault(start, WindowCounts())
        union = self._unions[name].counts.setdefault(start, WindowCounts())
        if piece == "meta":
            assert isinstance(record.value, dict)
            counts.messages = record.value.get("messages", 0)
        elif piece.startswith("v4/"):
            counts.ips.add_pieces([record.value], [])  # type: ignore[list-item]
            union.ips.add_pieces([record.value], [])  # type: ignore[list-item]
        else:
            counts.ips.add_pieces([], [record.value])  # type: ignore[list-item]
            union.ips.add_pieces([], [record.value])  # type: ignore[list-item]
            sets.note_bound(start, bytes.fromhex(piece[3:]))

    def check(self) -> list[str]:
        """What does not add up in the followed snapshots (each a reason); [] if all is well."""
        return [
            f"partition {partition} holds {len(part.ips)} unique IPs, its meta says "
            f"{part.saved_unique} (pieces missing?)"
            for partition, part in sorted(self.partitions.items())
            if partition not in self.local and len(part.ips) != part.saved_unique
        ]

    def forget(self, partitions: Iterable[int]) -> None:
        """Forget what is known of `partitions`, followed ones (to read their snapshots again)."""
        for partition in partitions:
            self._drop(partition)

    def clear(self) -> None:
        """Forget every partition (to read the state again)."""
        self.partitions.clear()
        self.local.clear()
        self.ips = UniqueIPs()
        self._unions = {window.name: WindowSets(window) for window in self.windows}

    def _drop(self, partition: int) -> None:
        if self.partitions.pop(partition, None) is not None:
            self.ips = UniqueIPs.union([part.ips for part in self.partitions.values()])
            for window in self.windows:
                parts = self.partition_windows(window)
                self._unions[window.name] = WindowSets.union(parts, window)


def _follow(part: PartitionTally, meta: Meta) -> None:
    part.next_offset = part.saved_offset = meta.next_offset
    part.messages = meta.messages
    part.invalid = Counter(meta.invalid)
    part.saved_unique = meta.unique_ips
    part.written_at = meta.written_at
