"""The consume loop: batches of records -> checked events -> unique-IP sets -> a stats snapshot.

The state is kept per partition (its unique IPs, messages, invalid counts and next offset), so it
can be snapshotted and restored, and shared between trackers of one group, partition by partition.
A record whose offset was already counted is skipped: a replay never counts twice.
"""

from __future__ import annotations

import bisect
import json
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from lumu_cli.checkers import Checker, Inline
from lumu_cli.events import Checked, Reason, check_events
from lumu_cli.kafka_io import PartitionInfo, Polled
from lumu_cli.timestamps import format_timestamp
from lumu_cli.uniques import UniqueIPs

__all__ = ["PartitionTally", "Stats", "Tally", "Tracker"]

BATCH = 20_000
MAX_IN_FLIGHT = 4  # batches read but not counted yet: bounds memory, keeps workers busy
POLL_SECONDS = 0.1
PUBLISH_SECONDS = 0.1
RATE_WINDOW = 5.0


@dataclass
class PartitionTally:
    """One partition's share of the count, and the offset it has been counted up to."""

    ips: UniqueIPs = field(default_factory=UniqueIPs)
    next_offset: int = 0
    messages: int = 0
    invalid: Counter[str] = field(default_factory=Counter)

    def to_bytes(self) -> bytes:
        """A self-contained snapshot: a JSON header line, then the serialized set."""
        header = {"next_offset": self.next_offset, "messages": self.messages}
        head = json.dumps({**header, "invalid": dict(self.invalid)}).encode()
        return struct.pack("<I", len(head)) + head + self.ips.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartitionTally:
        """The tally `to_bytes` wrote; ValueError if `data` is not one."""
        try:
            (size,) = struct.unpack_from("<I", data)
            head = json.loads(data[4 : 4 + size])
            offset, messages, invalid = head["next_offset"], head["messages"], head["invalid"]
            ips = UniqueIPs.from_bytes(data[4 + size :])
            return cls(ips, int(offset), int(messages), Counter(dict(invalid)))
        except (struct.error, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a lumu partition snapshot: {exc!r}") from None


class Tally:
    """The exact count over every partition seen: unique IPs, messages, invalid by reason."""

    def __init__(self) -> None:
        self.partitions: dict[int, PartitionTally] = {}
        self.ips = UniqueIPs()  # the union of the partitions' sets, kept: a union costs a merge

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
        checked = check_events(values[skip:])
        self.apply(partition, offsets[skip:], checked)
        return checked, skip

    def next_offset(self, partition: int) -> int:
        """The offset the partition is counted up to (0 for one not seen yet)."""
        part = self.partitions.get(partition)
        return part.next_offset if part else 0

    def apply(self, partition: int, offsets: Sequence[int], checked: Checked) -> None:
        """Count the checked records at `offsets` (none of them counted yet)."""
        part = self.partitions.setdefault(partition, PartitionTally())
        for ips in (part.ips, self.ips):
            ips.add_v4(checked.v4)
            ips.add_v6(checked.v6)
        part.messages += len(offsets)
        part.invalid.update(checked.invalid)
        if offsets:
            part.next_offset = offsets[-1] + 1

    def restore(self, partition: int, tally: PartitionTally) -> None:
        """Take over a partition's snapshot (one not counted here yet)."""
        self.partitions[partition] = tally
        self.ips.update(tally.ips)


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

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    def summary(self) -> dict[str, object]:
        """The one JSON line `track` prints at the end."""
        return {
            "unique_ips": self.unique_ips,
            "messages": self.messages,
            "invalid": self.invalid_total,
            "invalid_by_reason": self.invalid,
            "elapsed": round(self.elapsed, 3),
        }


class Source(Protocol):
    """What the tracker needs of a consumer (kafka_io.Consumed is one)."""

    assigned: set[int]
    brokers_up: threading.Event

    def poll(self, max_records: int, timeout: float) -> Polled: ...
    def done(self, next_offsets: dict[int, int]) -> None: ...
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
        exit_at_end: bool = False,
        on_invalid: InvalidReport | None = None,
        on_error: Callable[[str], None] | None = None,
        checker: Checker | None = None,
    ) -> None:
        self.source = source
        self.checker = checker or Inline()
        self.exit_at_end = exit_at_end
        self.on_invalid = on_invalid
        self.on_error = on_error  # told each distinct consumer error once
        self.tally = Tally()
        self.stop = threading.Event()
        self.errors: Counter[str] = Counter()
        self._started = time.monotonic()
        self._history: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._reported: set[Reason] = set()
        self._at_end: set[int] = set()
        self._read: dict[int, int] = {}  # partition -> next offset read (checked or in flight)
        self._in_flight: deque[_InFlight] = deque()
        self.stats = self._snapshot()

    def run(self) -> Stats:
        """Consume, count and publish `stats` until stopped; the final stats."""
        published = 0.0
        try:
            while not self.stop.is_set():
                batch = self.source.poll(BATCH, POLL_SECONDS)
                self._read_batch(batch)
                self._count(wait=len(self._in_flight) > MAX_IN_FLIGHT)
                now = time.monotonic()
                if now - published >= PUBLISH_SECONDS:
                    self.stats, published = self._snapshot(), now
                if self.exit_at_end and self._reached_end():
                    break
            self._count(wait=True, every=True)
        finally:
            self.checker.close()
        self.stats = self._snapshot()
        return self.stats

    def _read_batch(self, batch: Polled) -> None:
        """Send each partition's new records to be checked, in the order they were read."""
        replayed: dict[int, int] = {}
        for partition, values in batch.values.items():
            offsets = batch.offsets[partition]
            read = self._read.get(partition, self.tally.next_offset(partition))
            skip = bisect.bisect_left(offsets, read)  # a replay: those are counted already
            if skip < len(offsets):
                offsets, values = offsets[skip:], values[skip:]
                self._read[partition] = offsets[-1] + 1
                future = self.checker.submit(values)
                self._in_flight.append(_InFlight(partition, offsets, values, future))
            elif not any(item.partition == partition for item in self._in_flight):
                replayed[partition] = self.tally.next_offset(partition)  # say again how far
        if replayed := {p: offset for p, offset in replayed.items() if offset}:
            self.source.done(replayed)
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
        if counted:
            self.source.done(counted)

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
            updated_at=format_timestamp(datetime.now(UTC)),
            partitions=tuple(self.source.partitions()),
            healthy=self.source.brokers_up.is_set(),
        )
