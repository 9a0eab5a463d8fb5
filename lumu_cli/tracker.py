"""The consume loop: batches of records -> checked events -> per-partition tallies -> stats.

The count is kept per partition (snapshots.Tally), so it can be saved and restored partition by
partition (state.Durable) and shared between the instances of a group. A record whose offset was
already counted is skipped: a replay never counts twice.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from lumu_cli.checkers import Checker, Inline
from lumu_cli.events import Checked, Reason
from lumu_cli.kafka_io import PartitionInfo, Polled
from lumu_cli.snapshots import Tally
from lumu_cli.timestamps import format_timestamp
from lumu_cli.windows import WindowSets, describe

__all__ = ["Stats", "Tracker"]

BATCH = 20_000
MAX_IN_FLIGHT = 4  # batches read but not counted yet: bounds memory, keeps workers busy
POLL_SECONDS = 0.1  # a poll returns when BATCH records are in, or after this
END_POLL_SECONDS = 0.01  # with exit_at_end: the last, short batch is not waited for
PUBLISH_SECONDS = 0.1
RATE_WINDOW = 5.0


@dataclass(frozen=True)
class Stats:
    """A read-only snapshot of the count, for the live view, the HTTP endpoint and the summary."""

    unique_ips: int
    messages: int
    invalid: dict[str, int]
    rate: float
    elapsed: float
    updated_at: str
    partitions: tuple[PartitionInfo, ...] = ()
    healthy: bool = True
    first_record_at: float | None = None  # seconds after the start (restore and join included)
    commits_refused: int = 0  # state commits refused because this member had been fenced
    waiting: str | None = None  # what counting waits for: "topic 'x' on HOST:PORT"
    producers_abandoned: int = 0  # state producers left in a commit that did not answer in time
    windows: tuple[WindowSets, ...] = ()  # with --window: each size's union over partitions
    clock_ms: int = 0  # the wall clock when taken, in epoch ms: which windows are the last

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    @property
    def as_of(self) -> str | None:
        """When the oldest snapshot followed was written (None: every partition counted here)."""
        return min((p.as_of for p in self.partitions if not p.local and p.as_of), default=None)

    def lag(self, *, local: bool) -> int:
        """Records not yet counted: by this instance (local), or in the snapshots followed."""
        return sum(p.lag or 0 for p in self.partitions if p.local == local)

    def summary(self) -> dict[str, object]:
        """The one JSON line `track` prints at the end."""
        return {
            "unique_ips": self.unique_ips,
            "messages": self.messages,
            "invalid": self.invalid_total,
            "invalid_by_reason": self.invalid,
            "elapsed": round(self.elapsed, 3),
            "first_record_at": None
            if self.first_record_at is None
            else round(self.first_record_at, 3),
            **({"windows": describe(self.windows)} if self.windows else {}),
        }


class Source(Protocol):
    """What the tracker needs of a consumer (kafka_io.Consumed is one)."""

    assigned: set[int]
    brokers_up: threading.Event
    waiting: str | None  # what it waits for before it can read (a topic not created yet)

    def poll(self, max_records: int, timeout: float) -> Polled: ...
    def partitions(self) -> list[PartitionInfo]: ...


class Keeper(Protocol):
    """Where the count's state is kept (state.Ephemeral, state.Durable), told of every change."""

    commits_refused: int  # commits the group coordinator refused: this member was a zombie

    @property
    def producers_abandoned(self) -> int:
        """State producers left in a commit that did not answer in time."""

    def assigned(self, partitions: list[int]) -> dict[int, int]: ...
    def revoked(self, partitions: list[int]) -> None: ...
    def lost(self, partitions: list[int]) -> None: ...
    def counted(self, next_offsets: dict[int, int]) -> None: ...
    def tick(self, now: float) -> None: ...
    def finish(self) -> None: ...
    def partitions(self) -> list[PartitionInfo]: ...


InvalidReport = Callable[[int, int, Reason, bytes | None], None]


@dataclass
class _InFlight:
    """A partition's batch of new records, sent to be checked."""

    partition: int
    offsets: Sequence[int]
    values: Sequence[bytes | None]
    future: Future[Checked]


class Tracker:
    """Runs the consume loop until stopped (or, with exit_at_end, until every partition ends)."""

    def __init__(
        self,
        source: Source,
        *,
        tally: Tally | None = None,
        keeper: Keeper | None = None,
        exit_at_end: bool = False,
        on_invalid: InvalidReport | None = None,
        on_error: Callable[[str], None] | None = None,
        checker: Checker | None = None,
    ) -> None:
        self.source = source
        self.tally = tally or Tally()
        self.keeper = keeper
        self.checker = checker or Inline()
        self.exit_at_end = exit_at_end
        self.on_invalid = on_invalid
        self.on_error = on_error  # told each distinct consumer error once
        self.stop = threading.Event()
        self.errors: Counter[str] = Counter()
        self._started = time.monotonic()
        self._first_record: float | None = None
        self._history: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._reported: set[Reason] = set()
        self._at_end: set[int] = set()
        self._read: dict[int, int] = {}  # partition -> next offset read (checked or in flight)
        self._in_flight: deque[_InFlight] = deque()
        self.stats = self._snapshot()

    def run(self) -> Stats:
        """Consume, count and publish `stats` until stopped; the final stats."""
        published = 0.0
        wait = END_POLL_SECONDS if self.exit_at_end else POLL_SECONDS
        try:
            while not self.stop.is_set():
                batch = self.source.poll(BATCH, wait)
                self._read_batch(batch)
                self._count(wait=len(self._in_flight) > MAX_IN_FLIGHT)
                now = time.monotonic()
                if self.keeper:
                    self.keeper.tick(now)
                if now - published >= PUBLISH_SECONDS:
                    self.stats, published = self._snapshot(), now
                if self.exit_at_end and self._reached_end():
                    break
            self._count(wait=True, every=True)
            if self.keeper:
                self.keeper.finish()
        finally:
            self.checker.close()
        self.stats = self._snapshot()
        return self.stats

    # ------------------------------------------------------------ rebalance (kafka_io.Rebalance)

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        """Where to start each partition now assigned (told by the consumer, inside its poll)."""
        for partition in partitions:
            self._read.pop(partition, None)
        return self.keeper.assigned(partitions) if self.keeper else {}

    def revoked(self, partitions: list[int]) -> None:
        """Count what was read of them, then let the state save them."""
        self._count(wait=True, every=True)
        if self.keeper:
            self.keeper.revoked(partitions)
        for partition in partitions:
            self._read.pop(partition, None)

    def lost(self, partitions: list[int]) -> None:
        """What was read of them is dropped: their new owner counts it."""
        gone = set(partitions)
        self._in_flight = deque(item for item in self._in_flight if item.partition not in gone)
        for partition in partitions:
            self._read.pop(partition, None)
        if self.keeper:
            self.keeper.lost(partitions)

    # ------------------------------------------------------------ the loop

    def _read_batch(self, batch: Polled) -> None:
        """Send each partition's new records to be checked, in the order they were read."""
        replayed: dict[int, int] = {}
        for partition, values in batch.values.items():
            if partition not in self.source.assigned:  # read before it was revoked
                continue
            offsets = batch.offsets[partition]
            if self._first_record is None:
                self._first_record = time.monotonic() - self._started
            read = self._read.get(partition, self.tally.next_offset(partition))
            skip = bisect.bisect_left(offsets, read)  # a replay: those are counted already
            if skip < len(offsets):
                offsets, values = offsets[skip:], values[skip:]
                self._read[partition] = offsets[-1] + 1
                future = self.checker.submit(values)
                self._in_flight.append(_InFlight(partition, offsets, values, future))
            elif not any(item.partition == partition for item in self._in_flight):
                replayed[partition] = self.tally.next_offset(partition)  # say again how far
        if (replayed := {p: offset for p, offset in replayed.items() if offset}) and self.keeper:
            self.keeper.counted(replayed)
        self._note(batch)

    def _count(self, *, wait: bool, every: bool = False) -> None:
        """Count checked batches in order: those done, the oldest if `wait`, all if `every`."""
        counted: dict[int, int] = {}
        while self._in_flight and (wait or self._in_flight[0].future.done()):
            item = self._in_flight.popleft()
            checked = self.checker.result(item.future, item.values)
            self.tally.apply(item.partition, item.offsets, checked)
            counted[item.partition] = item.offsets[-1] + 1
            for reason, index in checked.examples.items():
                if reason not in self._reported and self.on_invalid:
                    self._reported.add(reason)
                    value = item.values[index]
                    self.on_invalid(item.partition, item.offsets[index], reason, value)
            wait = every
        if counted and self.keeper:
            self.keeper.counted(counted)

    def _note(self, batch: Polled) -> None:
        for partition, at_end in batch.at_end.items():
            (self._at_end.add if at_end else self._at_end.discard)(partition)
        for error in batch.errors:
            if error not in self.errors and self.on_error:
                self.on_error(error)
            self.errors[error] += 1

    def _reached_end(self) -> bool:
        assigned = self.source.assigned
        return bool(assigned) and assigned <= self._at_end  # what is in flight is counted next

    def _partitions(self) -> list[PartitionInfo]:
        return self.source.partitions() + (self.keeper.partitions() if self.keeper else [])

    def _snapshot(self) -> Stats:
        now = time.monotonic()
        tally = self.tally
        self._history.append((now, tally.messages))
        while now - self._history[0][0] > RATE_WINDOW:
            self._history.popleft()
        then, before = self._history[0]
        rate = (tally.messages - before) / (now - then) if now > then else 0.0
        return Stats(
            unique_ips=len(tally.ips),
            messages=tally.messages,
            invalid=dict(sorted(tally.invalid.items())),
            rate=rate,
            elapsed=now - self._started,
            first_record_at=self._first_record,
            updated_at=format_timestamp(datetime.now(UTC)),
            partitions=tuple(sorted(self._partitions(), key=lambda info: info.partition)),
            healthy=self.source.brokers_up.is_set(),
            commits_refused=self.keeper.commits_refused if self.keeper else 0,
            waiting=self.source.waiting,
            producers_abandoned=self.keeper.producers_abandoned if self.keeper else 0,
            windows=tuple(map(tally.window_sets, tally.windows)),
            clock_ms=tally.clock(),
        )
