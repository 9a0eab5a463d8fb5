"""The state keeper's safety checks that tests/test_state.py leaves open, found by mutating
state.py (issue 16), with the fault tests' hooks and the --no-state keeper.

Same fake Kafka as tests/test_state.py: each test counts known addresses and checks what an
instance shows, what it writes, and what another instance, `lumu state` or --reset reads back.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from lumu_cli import state
from lumu_cli.errors import StateError
from lumu_cli.kafka_io import OFFSET_BEGINNING
from lumu_cli.snapshots import StateRecord, Tally, decode
from lumu_cli.state import Ephemeral, SavedPartition, SavedTopic, describe, reset
from tests.test_state import (
    CONFIG,
    GROUP,
    STAMP,
    STATE,
    TIMEOUT,
    TOPIC,
    Kafka,
    append,
    event,
    fake_kafka,
    restored,
    start,
    v4,
)


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Kafka:
    return fake_kafka(monkeypatch)


def keyless(kafka: Kafka) -> None:
    """A record without a key, as a producer that is not lumu's would write."""
    kafka.rows.append((len(kafka.rows), None, b"hello"))


# ---------------------------------------------------------------- following the others


def test_an_instance_not_assigned_anything_yet_follows_the_others(kafka: Kafka) -> None:
    a = restored(kafka)  # restored, waiting for the group to give it partitions
    b = start(kafka)
    b.durable.assigned([0, 1])
    b.count(0, v4(0, 8))
    b.count(1, v4(8, 11))
    b.commit()
    a.follow()
    assert (a.unique(), a.tally.messages) == (11, 11)


def test_an_instance_that_lost_every_partition_follows_their_new_owner(kafka: Kafka) -> None:
    a = start(kafka, count=2)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 5))
    a.commit()  # it counts every partition: it stops reading the state
    kafka.generation = 2
    b = restored(kafka, generation=2)  # took both over while a was paused
    b.durable.assigned([0, 1])
    a.durable.lost([0, 1])
    b.count(1, v4(5, 12))
    b.commit()
    a.follow()
    assert (a.unique(), a.tally.messages) == (b.unique(), b.tally.messages) == (12, 12)


def test_an_instance_never_decodes_its_own_commits_again(
    kafka: Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its partitions' pieces are known here: decoding them at every commit is work for nothing
    (a big set's pieces are 32 KiB each), and a row of them could only be older."""
    decoded: list[bytes | None] = []

    def spy(raw_key: bytes | None, raw_value: bytes | None) -> StateRecord:
        decoded.append(raw_key)
        return decode(raw_key, raw_value)

    monkeypatch.setattr(state, "decode", spy)
    a, b = start(kafka), start(kafka)
    a.durable.assigned([0])
    b.durable.assigned([1])
    a.count(0, v4(0, 10))
    a.commit()
    b.count(1, v4(10, 14))
    b.commit()
    decoded.clear()
    a.follow()
    assert a.unique() == 14
    assert decoded  # b's snapshot was decoded
    assert all(k is not None and k.startswith(b"events/1/") for k in decoded), decoded


def test_following_the_others_never_holds_up_the_count_here(kafka: Kafka) -> None:
    """Each turn of the consume loop reads what the others committed, without waiting for more."""
    a, b = start(kafka), start(kafka)
    a.durable.assigned([0])
    b.durable.assigned([1])
    b.count(1, v4(0, 3))
    b.commit()
    for _ in range(5):
        a.follow()
    assert a.unique() == 3
    assert kafka.waited == 0


# ---------------------------------------------------------------- commits


def test_nothing_is_written_before_the_commit_interval_is_up(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 6))
    a.follow()  # turns of the consume loop within the interval
    assert len(kafka.commits) == 1  # the start only
    assert restored(kafka).durable.assigned([0]) == {0: 0}
    a.commit()
    assert len(kafka.commits) == 2
    assert restored(kafka).durable.assigned([0]) == {0: 6}


def test_the_restore_time_told_and_kept_is_the_time_the_reading_took(
    kafka: Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 4))
    a.commit()
    b = start(kafka)
    clock = iter([1000.0, 1001.25])  # when the reading starts, when it ends
    monkeypatch.setattr(state, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    b.durable.restore()
    assert b.said == [f"restored 1 partitions (4 unique IPs, 4 messages) from '{STATE}' in 1.25 s"]
    assert b.durable.restore_seconds == 1.25


# ---------------------------------------------------------------- lumu state, --reset


def test_describe_shows_a_partition_of_pieces_without_a_meta_without_one(kafka: Kafka) -> None:
    """Never written so by lumu; `lumu state` shows it has no meta (an empty IPv6 piece here:
    with addresses, it would not add up)."""
    kafka.rows.append((0, f"{TOPIC}/3/v6/{'0' * 32}".encode(), b"LUMU\x01"))
    assert describe(CONFIG, GROUP, TIMEOUT).topics == [
        SavedTopic(TOPIC, 0, [SavedPartition(3, None, 0, 1, 5)])
    ]


def test_a_tombstone_whose_value_compaction_removed_is_passed_over(kafka: Kafka) -> None:
    """Compaction drops a key's older values before its tombstone: the tombstone can come first."""
    kafka.rows.append((0, b"events/0/v4/0280", None))
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, ["10.0.0.1", "11.0.0.1"])
    a.commit()
    [saved] = describe(CONFIG, GROUP, TIMEOUT).topics
    assert (saved.unique_ips, [p.pieces for p in saved.partitions]) == (2, [3])
    assert reset(CONFIG, GROUP, TIMEOUT) == 3
    assert kafka.commits[-1] == [
        (b"events/0/meta", None),
        (b"events/0/v4/0280", None),
        (b"events/0/v4/02c0", None),
    ]


def test_reset_tombstones_every_key_around_a_record_without_a_key(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, ["10.0.0.1"])
    a.commit()
    keyless(kafka)  # an instance would refuse this state: --reset is the way out
    later = Tally()  # and a snapshot written after it
    later.take(1, 0)
    later.count(1, range(1), [event("11.0.0.1")])
    append(kafka, later.changes(TOPIC, [1], STAMP))
    with pytest.raises(StateError, match="not a lumu state record"):
        restored(kafka)
    assert reset(CONFIG, GROUP, TIMEOUT) == 4
    assert [k for k, _ in kafka.commits[-1]] == [
        b"events/0/meta",
        b"events/0/v4/0280",
        b"events/1/meta",
        b"events/1/v4/02c0",
    ]


# ---------------------------------------------------------------- --no-state


@dataclass
class Offsets:
    from_beginning: bool
    stored: list[dict[int, int]] = field(default_factory=list)

    def done(self, next_offsets: dict[int, int]) -> None:
        self.stored.append(next_offsets)


@pytest.mark.parametrize(
    ("from_beginning", "starts"),
    [(True, {0: OFFSET_BEGINNING, 2: OFFSET_BEGINNING}), (False, {})],  # {}: committed offsets
)
def test_without_state_the_group_offsets_are_used_unless_from_the_beginning(
    from_beginning: bool, starts: dict[int, int]
) -> None:
    source = Offsets(from_beginning)
    keeper = Ephemeral(source)
    assert keeper.assigned([0, 2]) == starts
    keeper.counted({0: 12, 2: 3})
    keeper.tick(1e9)
    keeper.revoked([2])
    keeper.finish()
    assert source.stored == [{0: 12, 2: 3}]  # stored once counted, committed by librdkafka
    assert (keeper.commits_refused, keeper.partitions()) == (0, [])


# ---------------------------------------------------------------- the fault tests' hooks


@dataclass
class Signals:
    sent: list[tuple[int, int]] = field(default_factory=list)

    def kill(self, pid: int, number: int) -> None:
        self.sent.append((pid, number))


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> Signals:
    """os.kill, told instead of done; every point passed afresh."""
    sent = Signals()
    monkeypatch.setattr(os, "kill", sent.kill)
    monkeypatch.setattr(state, "_passed", Counter())
    for variable in ("LUMU_CRASH_AT", "LUMU_PAUSE_AT"):
        monkeypatch.delenv(variable, raising=False)
    return sent


@pytest.mark.parametrize(
    ("variable", "value", "signal_number", "sent_after"),
    [
        # mid-commit: the start's transaction is the 1st, so @3 is the 2nd commit after it
        ("LUMU_CRASH_AT", "mid-commit@3", signal.SIGKILL, [0, 0, 1, 1]),
        ("LUMU_CRASH_AT", "before-first-commit", signal.SIGKILL, [1, 1]),
        ("LUMU_CRASH_AT", "during-restore", signal.SIGKILL, [0, 1]),
        ("LUMU_PAUSE_AT", "commit", signal.SIGSTOP, [1, 1, 1]),
        ("LUMU_PAUSE_AT", "commit@2", signal.SIGSTOP, [0, 1, 1]),
    ],
)
def test_a_fault_hook_signals_this_process_once_at_the_point_and_pass_it_names(
    kafka: Kafka,
    signals: Signals,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    signal_number: int,
    sent_after: list[int],
) -> None:
    """sent_after: how many signals were sent after the start (a new partition), after each
    commit, and after a restart."""
    monkeypatch.setenv(variable, value)
    counts = []
    a = start(kafka)
    a.durable.assigned([0])
    counts.append(len(signals.sent))
    for n in range(len(sent_after) - 2):
        a.count(0, v4(n, n + 1))
        a.commit()
        counts.append(len(signals.sent))
    restored(kafka)
    counts.append(len(signals.sent))
    assert counts == sent_after
    assert set(signals.sent) == {(os.getpid(), signal_number)}


def test_the_hooks_do_nothing_unless_asked(kafka: Kafka, signals: Signals) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    for n in range(3):
        a.count(0, v4(n, n + 1))
        a.commit()
    assert restored(kafka).unique() == 3
    assert signals.sent == []
