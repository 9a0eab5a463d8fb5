"""Tumbling windows of event time, aligned to UTC, and which of them are kept.

A window of SIZE holds the valid records whose event time (their `timestamp`, read by the
`lumu ts parse` rules, as epoch milliseconds) is in [start, start + SIZE), where start is a
multiple of SIZE since the epoch. SIZE divides a day evenly, so a 1h window starts at a whole
hour and a 1d window at 00:00Z.

Kept, relative to the wall clock: with `current` the window that holds now, the windows that
start from current - (KEEP-1) * SIZE up to current + SIZE (one ahead, for fast device clocks).
A record before them is `late`, after them `future`; neither makes a window, so a device whose
clock is years off never evicts a real one.

Each window holds an exact set of addresses (uniques.UniqueIPs) and its count of records; the
union of the last N windows of a size is exact too. Pure: nothing here knows Kafka.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from lumu_cli.errors import UsageError
from lumu_cli.uniques import V4_DIGITS, V4_SHIFT, Pieces, UniqueIPs

__all__ = [
    "DEFAULT_KEEP",
    "Window",
    "WindowCounts",
    "WindowSets",
    "parse_windows",
    "wall_clock_ms",
]

DAY_MS = 86_400_000
DEFAULT_KEEP = 48
MAX_KEEP = 100_000  # a bound on memory and state-topic records, far beyond any use
_UNITS = {"d": DAY_MS, "h": 3_600_000, "m": 60_000, "s": 1000}  # largest first: canonical names
_SPEC = re.compile(r"([0-9]+)([smhd])(?::([0-9]+))?", re.ASCII)
_EXAMPLE = "e.g. 1h, 15m, 1d:31 (SIZE[:KEEP], SIZE a divisor of a day)"


def wall_clock_ms() -> int:
    """Now, in epoch milliseconds: the wall clock decides which windows are kept."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, order=True)
class Window:
    """A window size and how many windows of it are kept."""

    size_ms: int
    keep: int = DEFAULT_KEEP

    @property
    def name(self) -> str:
        """The size in its largest whole unit: 1h, not 60m."""
        for unit, ms in _UNITS.items():
            if self.size_ms % ms == 0:
                return f"{self.size_ms // ms}{unit}"
        raise AssertionError(self.size_ms)  # sizes are whole seconds

    def start(self, millis: int) -> int:
        """The start of the window that holds `millis` (floored, also before 1970)."""
        return millis - millis % self.size_ms

    def kept(self, now_ms: int) -> tuple[int, int]:
        """The first and the last start kept at wall-clock time `now_ms` (both included)."""
        current = self.start(now_ms)
        return current - (self.keep - 1) * self.size_ms, current + self.size_ms

    def group(
        self,
        now_ms: int,
        v4_millis: npt.NDArray[np.int64],
        v4: npt.NDArray[np.uint32],
        v6_millis: Sequence[int] = (),
        v6: Sequence[bytes] = (),
    ) -> Grouped:
        """Valid records (IPv4 by address and event time, then IPv6) sorted out by window:
        how many are late and future, and each kept window's share."""
        first, last = self.kept(now_ms)
        starts = v4_millis - v4_millis % self.size_ms
        inside = (starts >= first) & (starts <= last)
        grouped = Grouped(
            int(np.count_nonzero(starts < first)), int(np.count_nonzero(starts > last))
        )
        if inside.any():
            kept_starts, kept_v4 = starts[inside], v4[inside]
            order = np.argsort(kept_starts, kind="stable")  # each run keeps its order
            kept_starts, kept_v4 = kept_starts[order], kept_v4[order]
            at = [0, *(np.flatnonzero(np.diff(kept_starts)) + 1).tolist(), len(kept_starts)]
            grouped.v4.extend(
                (int(kept_starts[low]), kept_v4[low:high]) for low, high in pairwise(at)
            )
        for millis, packed in zip(v6_millis, v6, strict=True):
            start = self.start(millis)
            if start < first:
                grouped.late += 1
            elif start > last:
                grouped.future += 1
            else:
                grouped.v6.append((start, packed))
        return grouped


@dataclass
class Grouped:
    """Records sorted out by window (`Window.group`): late, future, and each window's share."""

    late: int
    future: int
    v4: list[tuple[int, npt.NDArray[np.uint32]]] = field(default_factory=list)  # start, run
    v6: list[tuple[int, bytes]] = field(default_factory=list)  # start, address


def parse_windows(texts: Iterable[str]) -> tuple[Window, ...]:
    """--window values (each may hold several, comma-separated, as LUMU_WINDOWS does), smallest
    first. UsageError naming the value and what is wrong with it."""
    windows: dict[int, Window] = {}
    for text in texts:
        for spec in text.split(","):
            window = _parse(spec.strip(), text)
            if window.size_ms in windows:
                raise UsageError(f"--window {text!r}: {window.name} is given twice")
            windows[window.size_ms] = window
    return tuple(sorted(windows.values()))


def _parse(spec: str, text: str) -> Window:
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise UsageError(f"--window {text!r}: expected SIZE[:KEEP], {_EXAMPLE}")
    count, unit, keep = int(match[1]), match[2], match[3]
    size = count * _UNITS[unit]
    if count == 0 or DAY_MS % size:
        raise UsageError(
            f"--window {text!r}: {count}{unit} does not divide a day evenly ({_EXAMPLE})"
        )
    kept = DEFAULT_KEEP if keep is None else int(keep)
    if not 1 <= kept <= MAX_KEEP:
        raise UsageError(f"--window {text!r}: KEEP must be 1 to {MAX_KEEP:,}, not {keep}")
    return Window(size, kept)


@dataclass
class WindowCounts:
    """One window's exact set and its count of valid records."""

    ips: UniqueIPs = field(default_factory=lambda: UniqueIPs(buffered=True))
    messages: int = 0


@dataclass
class WindowSets:
    """The kept windows of one size (of one partition, or a union): start -> counts.

    Of a partition counted here (`local`), it also knows what its state records must say next
    (`changes`): the windows that changed since they were written, each as its changed pieces
    and its meta, and the windows that expired, as tombstones. A window's pieces are tracked
    (uniques.Pieces) only from its first change after a write until the next write: the
    windows that change between two commits are few, the kept ones many.
    """

    window: Window
    counts: dict[int, WindowCounts] = field(default_factory=dict)
    late: int = 0
    future: int = 0
    local: bool = False
    _trackers: dict[int, Pieces] = field(default_factory=dict)  # start -> its pieces, changing
    _bounds: dict[int, set[bytes]] = field(default_factory=dict)  # start -> v6 pieces written
    _dirty: set[int] = field(default_factory=set)  # starts whose meta is due
    _gone: dict[int, list[str]] = field(default_factory=dict)  # expired: their piece names
    _sent: tuple[set[int], dict[int, list[str]], tuple[int, int]] | None = None
    _written: tuple[int, int] = (0, 0)  # late, future as last written

    def add(
        self,
        now_ms: int,
        v4_millis: npt.NDArray[np.int64],
        v4: npt.NDArray[np.uint32],
        v6_millis: Sequence[int] = (),
        v6: Sequence[bytes] = (),
    ) -> set[int]:
        """Count valid records, IPv4 ones by address and event time, then IPv6 ones; the starts
        of the windows that changed."""
        return self.add_grouped(self.window.group(now_ms, v4_millis, v4, v6_millis, v6))

    def add_grouped(self, grouped: Grouped) -> set[int]:
        """Count records `Window.group` sorted out (one grouping serves several sets)."""
        self.late += grouped.late
        self.future += grouped.future
        for start, run in grouped.v4:
            counts = self._counts(start)
            counts.ips.add_v4(run)
            counts.messages += len(run)
            if self.local:
                self._trackers[start].touch(run, ())
        for start, packed in grouped.v6:
            counts = self._counts(start)
            counts.ips.add_v6([packed])
            counts.messages += 1
            if self.local:
                self._trackers[start].touch((), [packed])
        changed = {start for start, _ in grouped.v4} | {start for start, _ in grouped.v6}
        self._dirty |= changed
        return changed

    def _counts(self, start: int) -> WindowCounts:
        """The window at `start`, made if new; of a local one, its pieces tracked from now."""
        counts = self.counts.setdefault(start, WindowCounts())
        if self.local and start not in self._trackers:
            self._trackers[start] = Pieces(counts.ips, self._bounds.get(start, ()))
        return counts

    def expire(self, now_ms: int) -> list[int]:
        """Drop the windows that have fallen out of the kept range; their starts. Of a local
        partition, their records are tombstoned by the next `changes`. (A followed partition's
        windows are not expired here: its owner tombstones them, or this instance once it owns
        the partition.)"""
        first, last = self.window.kept(now_ms)
        gone = sorted(start for start in self.counts if not first <= start <= last)
        for start in gone:
            counts = self.counts.pop(start)
            if self.local:
                self._gone[start] = [
                    *(f"v4/{key:0{V4_DIGITS}x}" for key in _v4_keys(counts.ips)),
                    *(f"v6/{bound.hex()}" for bound in self._bounds.pop(start, ())),
                ]
            self._trackers.pop(start, None)
            self._dirty.discard(start)
        return gone

    # ------------------------------------------------------------ state records

    def changes(self, now_ms: int) -> list[tuple[str, bytes | None]]:
        """(piece name, value) of the records that bring this size's windows up to date: for
        each window changed, its changed pieces and then its meta; for each expired, a
        tombstone (None) for each of its records; the late and future counts if they moved.

        Counting may go on while they are stored; `written` or `unwritten` tells the outcome.
        """
        self.expire(now_ms)
        name = self.window.name
        records: list[tuple[str, bytes | None]] = []
        for start, pieces in sorted(self._gone.items()):
            for piece in (*pieces, "meta"):
                records.append((f"w/{name}/{start}/{piece}", None))
        for start in sorted(self._dirty):
            tracker, counts = self._trackers.get(start), self.counts[start]
            for piece, body in tracker.changed() if tracker is not None else ():
                records.append((f"w/{name}/{start}/{piece}", body))
            meta = {"messages": counts.messages, "unique_ips": len(counts.ips)}
            records.append((f"w/{name}/{start}/meta", json.dumps(meta).encode()))
        if (self.late, self.future) != self._written:
            body = json.dumps({"late": self.late, "future": self.future}).encode()
            records.append((f"w/{name}/meta", body))
        self._sent = (set(self._dirty), dict(self._gone), (self.late, self.future))
        self._dirty.clear()
        self._gone.clear()
        return records

    def written(self) -> None:
        """The records `changes` gave are stored. A tracker no longer needed is let go."""
        if self._sent is None:
            return
        dirty, _, self._written = self._sent
        for start in dirty:
            tracker = self._trackers.get(start)
            if tracker is None:
                continue
            tracker.written()
            self._bounds[start] = tracker.v6_bounds()
            if not tracker.touched() and start not in self._dirty:
                del self._trackers[start]
        self._sent = None

    def unwritten(self) -> None:
        """The records `changes` gave were not stored: due again."""
        if self._sent is None:
            return
        dirty, gone, _ = self._sent
        for start in dirty:
            if (tracker := self._trackers.get(start)) is not None:
                tracker.unwritten()
        self._dirty |= {start for start in dirty if start in self.counts}
        self._gone = {**gone, **self._gone}
        self._sent = None

    def follow(self) -> None:
        """Counted elsewhere from now on: its records are the owner's to write."""
        self.local = False
        for start, tracker in self._trackers.items():
            self._bounds[start] = tracker.v6_bounds()
        self._trackers.clear()
        self._dirty.clear()
        self._sent = None

    def note_bound(self, start: int, bound: bytes) -> None:
        """A followed window's IPv6 piece written from `bound` (kept for when it is owned)."""
        self._bounds.setdefault(start, set()).add(bound)

    def own(self) -> None:
        """Counted here from now on (its windows as the snapshots it followed left them)."""
        self.local = True
        self._written = (self.late, self.future)

    @classmethod
    def union(cls, parts: Sequence[WindowSets], window: Window) -> WindowSets:
        """The exact union, window by window, of the sets of several partitions."""
        union = cls(window)
        for start in sorted({start for part in parts for start in part.counts}):
            here = [part.counts[start] for part in parts if start in part.counts]
            union.counts[start] = WindowCounts(
                UniqueIPs.union([counts.ips for counts in here]),
                sum(counts.messages for counts in here),
            )
        union.late = sum(part.late for part in parts)
        union.future = sum(part.future for part in parts)
        return union

    def last(self, count: int, now_ms: int) -> tuple[int, int, int, int]:
        """The last `count` windows up to the current one: (start, end, unique IPs of their
        exact union, messages)."""
        current = self.window.start(now_ms)
        start = current - (count - 1) * self.window.size_ms
        end = current + self.window.size_ms
        here = [counts for at, counts in self.counts.items() if start <= at < end]
        ips = UniqueIPs.union([counts.ips for counts in here])
        return start, end, len(ips), sum(counts.messages for counts in here)


def describe(unions: Sequence[WindowSets], *, keep: bool = True) -> dict[str, object]:
    """The `windows` of the -e summary and of GET /count: by size, its KEEP, late and future
    counts, and each kept window with a valid record, ascending by start. (`lumu state` shows
    them as saved, without KEEP: that is the counting instances' option.)"""
    from lumu_cli.timestamps import format_millis

    return {
        sets.window.name: {
            **({"keep": sets.window.keep} if keep else {}),
            "late": sets.late,
            "future": sets.future,
            "counts": [
                {
                    "start": format_millis(start),
                    "unique_ips": len(counts.ips),
                    "messages": counts.messages,
                }
                for start, counts in sorted(sets.counts.items())
            ],
        }
        for sets in unions
    }


def _v4_keys(ips: UniqueIPs) -> list[int]:
    """The IPv4 pieces a set's addresses fall in (their high bits)."""
    high = np.frombuffer(ips.v4.to_array(), np.uint32) >> V4_SHIFT
    return np.unique(high).tolist()  # type: ignore[no-any-return]
