"""Where the count's state lives: in memory only (`Ephemeral`), or in the group's state topic.

`Durable` keeps each partition's tally in the compacted topic `<group>-lumu-state`:
  - restore: at start, the whole topic is read (read_committed), so every partition's last
    snapshot is known; a partition assigned here resumes at its snapshot's next offset;
  - start: a partition with no snapshot gets one at once, at the offset it starts from;
  - commit: every commit interval, the pieces that changed and each partition's meta are written
    in one transaction with the group's offsets (the snapshot's offsets are the truth). It runs
    beside the counting, which never waits for it: a commit that hangs while a broker restarts
    (librdkafka#5456) holds back the next snapshot, not the count;
  - rebalance: revoked partitions are committed before they are given up (if that fails, what
    is known of them is read again from the topic); lost ones are not committed, and everything
    is read again from the topic, as at a restart;
  - fencing: a commit the group coordinator refuses (this member's generation is no longer the
    group's: a zombie) is aborted whole, told, and counted in `commits_refused`;
  - follow: snapshots of the partitions counted elsewhere are read as they commit, so every
    instance shows the union over all partitions.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from lumu_cli.acls import TOPIC, Acl, state_topic
from lumu_cli.errors import StateError
from lumu_cli.kafka_io import (
    OFFSET_BEGINNING,
    CommitFailed,
    Consumed,
    Ends,
    PartitionInfo,
    Pending,
    StateReader,
    StateRow,
    TopicLayout,
    Transactions,
    check_state_topic,
    delete_group,
    ensure_state_topic,
    group_members,
    topic_exists,
)
from lumu_cli.snapshots import Meta, StateRecord, Tally, decode, key
from lumu_cli.timestamps import format_timestamp
from lumu_cli.windows import MAX_KEEP, Window, WindowSets, parse_windows

__all__ = [
    "Durable",
    "Ephemeral",
    "Saved",
    "SavedTopic",
    "describe",
    "replication_warning",
    "reset",
    "state_topic",
]

CATCH_UP_SECONDS = 120.0  # an open transaction of a killed instance ends within its timeout
# How long a rebalance waits for the periodic commit under way before it abandons it (and its
# producer): a commit answers in milliseconds, or hangs (librdkafka#5456).
GRACE_SECONDS = 1.0


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


_passed: Counter[tuple[str, str]] = Counter()


def _reached(variable: str, name: str) -> bool:
    """Whether this pass of point `name` is the one `variable`=name[@N] names (default: 1st)."""
    point, _, nth = os.environ.get(variable, "").partition("@")
    if point != name:
        return False
    _passed[variable, name] += 1
    return _passed[variable, name] == int(nth or 1)


def crash_point(name: str) -> None:
    """Die at once (as kill -9) where LUMU_CRASH_AT=name[@N] says: the fault tests' hook.

    Points: before-first-commit, mid-commit (a transaction written, not committed),
    during-restore. With @N, the Nth time the point is passed (default: the first).
    """
    if _reached("LUMU_CRASH_AT", name):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Stop the whole process (SIGSTOP, as a long pause would) where LUMU_PAUSE_AT=name[@N]
    says, until SIGCONT: the zombie test's hook.

    Point: commit (a state commit with something to write, before the transaction starts).
    """
    if _reached("LUMU_PAUSE_AT", name):
        os.kill(os.getpid(), signal.SIGSTOP)


def _crash_hook() -> Callable[[str], None] | None:
    return crash_point if os.environ.get("LUMU_CRASH_AT") else None


class Offsets(Protocol):
    """What `Ephemeral` needs of the consumer (kafka_io.Consumed is one)."""

    from_beginning: bool

    def done(self, next_offsets: dict[int, int]) -> None: ...


class Ephemeral:
    """The count in memory only: offsets are stored after counting and committed every 5 s."""

    def __init__(self, source: Offsets) -> None:
        self.source = source
        self.commits_refused = 0  # (no commits: the offsets are committed by librdkafka)
        self.producers_abandoned = 0

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        if self.source.from_beginning:  # as kcat -o beginning: committed offsets are not used
            return dict.fromkeys(partitions, OFFSET_BEGINNING)
        return {}

    def revoked(self, partitions: list[int]) -> None:
        pass

    def lost(self, partitions: list[int]) -> None:
        pass

    def counted(self, next_offsets: dict[int, int]) -> None:
        self.source.done(next_offsets)

    def tick(self, now: float) -> None:
        pass

    def finish(self) -> None:
        pass

    def partitions(self) -> list[PartitionInfo]:
        return []


class Durable:
    """The count kept in `<group>-lumu-state`, shared through it by every instance of the group."""

    def __init__(
        self,
        config: dict[str, str],
        source: Consumed,
        tally: Tally,
        *,
        commit_interval: float,
        timeout: float,
        notify: Callable[[str], None],
        replication: int | None = None,
    ) -> None:
        self.source = source
        self.tally = tally
        self.commit_interval = commit_interval
        self.timeout = timeout
        self.notify = notify
        self.name = state_topic(source.group)
        # first: a setting its producer cannot work with is told before anything is created
        self._writer = Transactions(config, self.name, source.group, timeout, _crash_hook())
        created, layout = ensure_state_topic(config, self.name, timeout, replication)
        if created:
            notify(
                f"created state topic {self.name!r} (compacted, replication {layout.replication})"
            )
        if warning := replication_warning(self.name, layout):
            notify(warning)
        self._reader = StateReader(config, self.name, source.group, timeout, group_grant="READ")
        self._ends = Ends(config, source.topic)
        self._committed_at = time.monotonic()
        self._failures: set[str] = set()
        self._pending: tuple[Pending, list[int], str] | None = None  # partitions, written at
        self._alone = False
        self._partition_count: int | None = None  # of the topic, asked once a rebalance
        self.restore_seconds = 0.0
        self.commits_refused = 0  # commits aborted because this member had been fenced

    @property
    def producers_abandoned(self) -> int:
        """State producers left in a commit that did not answer in time (librdkafka#5456)."""
        return self._writer.abandoned

    def restore(self) -> None:
        """Read every snapshot in the state topic (the time it took is told, and kept)."""
        started = time.monotonic()
        self._catch_up()
        self.restore_seconds = seconds = time.monotonic() - started
        tally = self.tally
        self.notify(
            f"restored {len(tally.partitions)} partitions ({len(tally.ips):,} unique IPs, "
            f"{tally.messages:,} messages) from {self.name!r} in {seconds:.2f} s"
        )

    # ------------------------------------------------------------ rebalance

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        """Resume each partition at its snapshot; one without a snapshot gets one now."""
        self._settle(GRACE_SECONDS)
        self._catch_up()  # a snapshot its last owner committed while giving it up is read
        self._alone, self._partition_count = False, None
        new = [p for p in partitions if not self.tally.saved(p)]
        if committed := new and self.source.committed(new, self.timeout):
            which = ", ".join(map(str, sorted(committed)))
            raise StateError(
                f"group {self.source.group!r} has committed offsets for partition(s) "
                f"{which} of {self.source.topic!r} but no saved state in {self.name!r}; "
                "--reset discards them and counts again from the start"
            )
        starts = {}
        for partition in partitions:
            low, high = self.source.bounds(partition, self.timeout) if partition in new else (0, 0)
            self.tally.take(partition, low if self.source.from_beginning else high)
            starts[partition] = self.tally.partitions[partition].next_offset
        if new:
            crash_point("before-first-commit")
            if not self._commit(new):  # the start position, recorded at once
                raise StateError(f"cannot record the start of a new partition in {self.name!r}")
        return starts

    def revoked(self, partitions: list[int]) -> None:
        """Commit the partitions given up, then follow them as any other's."""
        self._settle(GRACE_SECONDS)
        self._alone, self._partition_count = False, None
        mine = [p for p in partitions if p in self.tally.local]
        committed = self._commit(mine)
        for partition in mine:
            self.tally.give(partition)
        if not committed:  # what was counted of them since their last commit is in no snapshot
            self.notify(
                f"partition(s) {_listed(mine)} given up without their last commit; their next "
                "owner counts them again from their last snapshot"
            )
            self._read_again(mine)

    def lost(self, partitions: list[int]) -> None:
        """Not committed (others may own them already): read the state again, as at a restart."""
        self._settle(GRACE_SECONDS)  # the commit under way came first: a refusal is told as such
        self.notify(
            f"partition(s) {_listed(partitions)} lost (session timed out?); reading the state again"
        )
        self._alone, self._partition_count = False, None
        self._reload()

    # ------------------------------------------------------------ the loop's share

    def counted(self, next_offsets: dict[int, int]) -> None:
        pass  # the offsets are committed with the snapshot

    def tick(self, now: float) -> None:
        """Follow the others' snapshots; commit ours when the interval is up and the last
        commit is over (it goes on beside the counting)."""
        if not self._alone:
            self._follow(0)
        if self._pending is not None:
            if not self._pending[0].done():
                return
            self._settle()
        if now - self._committed_at >= self.commit_interval and self.source.brokers_up.is_set():
            self._committed_at = now
            self._begin(sorted(self.tally.local))
            self._ends.refresh(set(self.tally.partitions) - self.tally.local)
            # Counting every partition here, there is no one to follow (until a rebalance). The
            # count is asked once a rebalance (partitions added start one): a metadata request
            # waits up to a second while a broker is down, and this is the consume loop.
            if self._partition_count is None:
                self._partition_count = self.source.partition_count()
            count = self._partition_count
            self._alone = count is not None and self.tally.local >= set(range(count))

    def finish(self) -> None:
        """The last commit, on a clean stop (after the one under way)."""
        self._settle()
        self._commit(sorted(self.tally.local))

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def partitions(self) -> list[PartitionInfo]:
        """Where each partition counted elsewhere stands, as of its last snapshot."""
        return [
            PartitionInfo(
                partition,
                part.next_offset,
                self._ends.latest.get(partition),
                local=False,
                as_of=part.written_at,
            )
            for partition, part in sorted(self.tally.partitions.items())
            if partition not in self.tally.local
        ]

    # ------------------------------------------------------------ state topic I/O

    def _commit(self, partitions: list[int]) -> bool:
        """Write what changed in `partitions` with their offsets, and wait; False if it did not
        commit. (Nothing else is under way: each caller settles that first.)"""
        return self._begin(partitions) and self._settle()

    def _begin(self, partitions: list[int]) -> bool:
        """Start writing what changed in `partitions` with their offsets (False: cannot)."""
        now = _now()
        records = self.tally.changes(self.source.topic, partitions, now)
        if not records:
            return True
        offsets = {p: self.tally.partitions[p].next_offset for p in partitions}
        pause_point("commit")
        try:
            self._pending = self._writer.begin(records, offsets, self.source), partitions, now
        except CommitFailed as exc:
            self.tally.unwritten(partitions)
            self._failed(exc, partitions)
            return False
        return True

    def _settle(self, wait: float | None = None) -> bool:
        """The outcome of the commit under way, waited for at most `wait` s (None: as long as
        a commit may take); abandoned if not over by then. True if none failed."""
        if self._pending is None:
            return True
        (pending, partitions, now), self._pending = self._pending, None
        try:
            pending.result(wait)
        except CommitFailed as exc:
            self.tally.unwritten(partitions)
            self._failed(exc, partitions)
            return False
        self.tally.written(partitions, now)
        return True

    def _failed(self, exc: CommitFailed, partitions: list[int]) -> None:
        if exc.refused:
            self.commits_refused += 1
            self.notify(
                "state commit refused: this member was fenced by a newer generation of group "
                f"{self.source.group!r}; its snapshot of partition(s) {_listed(partitions)} "
                "was aborted, nothing written"
            )
        elif str(exc) not in self._failures:
            self._failures.add(str(exc))
            self.notify(f"state commit failed, will retry: {exc}")

    def _follow(self, timeout: float) -> None:
        """Apply the committed records that are there."""
        self._apply(self._reader.read(timeout))

    def _apply(self, rows: list[StateRow]) -> None:
        # Those of partitions counted here are this instance's own commits: not decoded again.
        mine = tuple(key(self.source.topic, p, "") for p in self.tally.local)
        theirs = [row for row in rows if not (row[1] or b"").startswith(mine)] if mine else rows
        if theirs:
            self.tally.read(self.source.topic, (_decoded(self.name, row) for row in theirs))

    def _catch_up(self) -> None:
        """Read to where the state topic ends now (open transactions end first), then check."""
        for rows in self._reader.to_end(self.timeout, CATCH_UP_SECONDS):
            crash_point("during-restore")
            self._apply(rows)
        _check_consistent(self.name, self.tally)

    def _reload(self) -> None:
        self.tally.clear()
        self._reader.rewind()
        self.restore()

    def _read_again(self, partitions: list[int]) -> None:
        """Forget `partitions` and read their snapshots again (those counted here are kept)."""
        self.tally.forget(partitions)
        self._reader.rewind()
        self._catch_up()


def replication_warning(name: str, layout: TopicLayout) -> str | None:
    """A warning if the state topic is on one broker of several: that broker's loss loses it."""
    if layout.replication == 1 and layout.brokers > 1:
        return (
            f"warning: state topic {name!r} has replication factor 1 on a cluster of "
            f"{layout.brokers} brokers: the saved count is lost with that broker (raise it "
            "with kafka-reassign-partitions)"
        )
    return None


def _listed(partitions: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(partitions)))


def _check_consistent(name: str, tally: Tally) -> None:
    """StateError if a followed snapshot does not add up: a restore and `lumu state` both refuse.

    (A partition's pieces hold another number of addresses than its meta says: pieces lost, or
    written under another partition's key.)
    """
    if problems := tally.check():
        raise StateError(f"state topic {name!r} is inconsistent: {problems[0]}")


def _decoded(name: str, row: StateRow) -> StateRecord:
    offset, raw_key, raw_value = row
    try:
        return decode(raw_key, raw_value)
    except ValueError as exc:
        raise StateError(f"state topic {name!r} offset {offset}: {exc}") from None


# ---------------------------------------------------------------- lumu state, --reset


@dataclass(frozen=True)
class SavedPartition:
    """One partition's saved snapshot, as `lumu state` shows it."""

    partition: int
    meta: Meta | None  # None: pieces without a meta (never written so by lumu)
    unique_ips: int
    pieces: int
    bytes: int


@dataclass(frozen=True)
class SavedTopic:
    """The saved state of one tracked topic: its partitions and their union."""

    topic: str
    unique_ips: int
    partitions: list[SavedPartition]
    windows: tuple[WindowSets, ...] = ()  # each size's windows, the union over partitions


@dataclass(frozen=True)
class Saved:
    """A group's state topic, as `lumu state` shows it: how it is kept, and what it holds."""

    name: str
    layout: TopicLayout
    topics: list[SavedTopic]


def _read_all(config: dict[str, str], group: str, timeout: float) -> list[StateRow]:
    reader = StateReader(config, state_topic(group), group, timeout)
    try:
        return [row for rows in reader.to_end(timeout, CATCH_UP_SECONDS) for row in rows]
    finally:
        reader.close()


def describe(config: dict[str, str], group: str, timeout: float) -> Saved:
    """Every partition's saved snapshot in `group`'s state topic, by tracked topic.

    StateError where a restoring instance would refuse it: not compacted, not lumu's, another
    format, or inconsistent.
    """
    name = state_topic(group)
    if not topic_exists(config, name, timeout, Acl("READ", TOPIC, name)):
        raise StateError(f"group {group!r} has no saved state (no topic {name!r})")
    layout = check_state_topic(config, name, timeout)  # as ensure_state_topic does at start
    rows = _read_all(config, group, timeout)
    records = [_decoded(name, row) for row in rows]
    sizes: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> its records' sizes
    for raw_key, size in _live(rows).items():  # keys checked by _decoded: topic/partition/piece
        owner, number, _ = raw_key.decode().split("/", 2)
        sizes.setdefault((owner, int(number)), []).append(size)
    saved = []
    named = {record.piece.split("/")[1] for record in records if record.piece.startswith("w/")}
    windows = [Window(size.size_ms, MAX_KEEP) for size in parse_windows(sorted(named))]
    for topic in sorted({record.topic for record in records}):
        tally = Tally(windows)
        tally.read(topic, (record for record in records if record.topic == topic))
        _check_consistent(name, tally)
        partitions = []
        for partition, part in sorted(tally.partitions.items()):
            mine = sizes.get((topic, partition), [])
            meta = (
                Meta(part.next_offset, part.messages, dict(part.invalid), part.saved_unique,
                     part.written_at)
                if part.written_at else None
            )  # fmt: skip
            unique = len(part.ips)
            partitions.append(SavedPartition(partition, meta, unique, len(mine), sum(mine)))
        unions = tuple(
            WindowSets.union(tally.partition_windows(window), window) for window in windows
        )  # as saved: none expired here (which are kept is the counting instances' rule)
        if partitions:
            saved.append(SavedTopic(topic, len(tally.ips), partitions, unions))
    return Saved(name, layout, saved)


def reset(config: dict[str, str], group: str, timeout: float) -> int:
    """Discard `group`'s state and committed offsets; how many records were discarded.

    StateError if the group has members: their state would be written again.
    """
    if members := group_members(config, group, timeout):
        raise StateError(
            f"cannot reset group {group!r}: it has {members} active member(s); stop them first"
        )
    delete_group(config, group, timeout)
    name = state_topic(group)
    if not topic_exists(config, name, timeout, Acl("READ", TOPIC, name)):
        return 0
    live = _live(_read_all(config, group, timeout))
    if live:
        writer = Transactions(config, name, group, timeout)
        try:
            writer.commit([(raw_key, None) for raw_key in sorted(live)], {}, None)
        except CommitFailed as exc:
            raise StateError(f"cannot reset the state in {name!r}: {exc}") from None
        finally:
            writer.close()
    return len(live)


def _live(rows: Iterable[StateRow]) -> dict[bytes, int]:
    """The size of the last value of each key whose last record is not a tombstone."""
    live: dict[bytes, int] = {}
    for _, raw_key, raw_value in rows:
        if raw_key is None:
            continue
        if raw_value is None:
            live.pop(raw_key, None)
        else:
            live[raw_key] = len(raw_value)
    return live
