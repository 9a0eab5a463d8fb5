"""The state keeper (state.Durable), `lumu state` (describe) and --reset, on an in-memory topic.

The fakes stand at the kafka_io boundary: the state topic is a list of committed rows, written by
a fake Transactions (all of a commit or nothing; offsets of an old group generation refused, as
the group coordinator refuses a zombie's) and read by a fake StateReader; a fake source stands for
the consumer. Each test counts known addresses and checks what the instance shows, and what
another instance, or a restart, reads back from the rows.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError

from lumu_cli import kafka_io, state
from lumu_cli.acls import Acl
from lumu_cli.errors import StateError
from lumu_cli.kafka_io import (
    CommitFailed,
    Consumed,
    PartitionInfo,
    StateRow,
    TopicLayout,
    client_config,
)
from lumu_cli.snapshots import Meta, Tally, decode
from lumu_cli.state import Durable, SavedPartition, SavedTopic, describe, reset
from tests.test_kafka_state import Broker, FakeProducer, error

TOPIC, GROUP, STATE = "events", "g", "g-lumu-state"
CONFIG, TIMEOUT = client_config("fake:9092"), 1.0
INTERVAL = 5.0
STAMP = "2023-11-14T22:13:20.123Z"
# How librdkafka words the offsets a zombie sends, refused by the group coordinator (measured
# with the integration test's paused zombie).
REFUSED = (
    "Failed to commit offsets to transaction on broker 127.0.0.1:29300/1: "
    "events((null))[0](Broker: Unknown member) (after 2ms)"
)
Records = list[tuple[bytes, bytes | None]]


# ---------------------------------------------------------------- the fake Kafka


@dataclass
class Kafka:
    """The state topic's committed rows and the group as the broker holds them."""

    rows: list[StateRow] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)  # the group's committed offsets
    commits: list[Records] = field(default_factory=list)  # what each commit wrote
    failures: list[str] = field(default_factory=list)  # the next commits fail with these
    generation: int = 1  # the group's: offsets sent with an older one are refused
    members: int = 0
    exists: bool = True  # whether the state topic exists
    policy: str = "compact"
    brokers: int = 1  # in the cluster
    default_replication: int = 1  # the cluster's default.replication.factor
    replication: int = 1  # the state topic's
    deleted: list[str] = field(default_factory=list)  # groups deleted
    ends: dict[int, int] = field(default_factory=dict)  # the tracked topic's end offsets
    waited: float = 0.0  # seconds the state readers waited for records that were not there
    hang: int = 0  # how many of the next commits hang (until released)
    released: bool = False
    abandoned: int = 0  # commits given up on while they hung
    waits: list[float | None] = field(default_factory=list)  # how long each hung one was waited


def append(kafka: Kafka, records: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Add `records` to the state topic (committed)."""
    kafka.rows += [(len(kafka.rows) + i, k, v) for i, (k, v) in enumerate(records)]


def seconds(value: object, *, at_least: float = 1e-9) -> bool:
    """Whether `value` is a timeout kafka_io can use: a number of seconds (None waits forever)."""
    return type(value) in (int, float) and cast(float, value) >= at_least


def given(config: dict[str, str], timeout: float) -> None:
    """What every fake client asserts it was given: the config the caller was given, a timeout."""
    assert config == CONFIG, f"a client made without the config given: {config!r}"
    assert seconds(timeout), f"a timeout kafka_io cannot use: {timeout!r}"


class FakeTransactions:
    def __init__(
        self, kafka: Kafka, config: dict[str, str], topic: str, group: str, timeout: float,
        hook: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        given(config, timeout)
        assert (topic, group) == (STATE, GROUP)  # the transactional.id is made of the group
        self.kafka = kafka
        self.hook = hook

    def commit(self, records: Records, offsets: dict[int, int], source: FakeSource | None) -> None:
        kafka = self.kafka
        if source is not None and offsets and source.group_metadata() != kafka.generation:
            raise CommitFailed(REFUSED, refused=True)
        if kafka.failures:
            raise CommitFailed(kafka.failures.pop(0))
        if self.hook is not None:  # written, not committed yet
            self.hook("mid-commit")
        kafka.commits.append(list(records))
        append(kafka, records)
        if source is not None:
            kafka.offsets.update(offsets)

    def begin(self, records: Records, offsets: dict[int, int], source: FakeSource | None) -> Done:
        """As kafka_io's: the commit under way; here over at once, unless `kafka.hang` says this
        one hangs (until `kafka.released`)."""
        if self.kafka.hang:
            self.kafka.hang -= 1
            return Done(self, (list(records), dict(offsets), source))
        try:
            self.commit(records, offsets, source)
        except CommitFailed as exc:
            return Done(self, failure=exc)
        return Done(self)

    def close(self) -> None:
        pass


@dataclass
class Done:
    """A fake commit under way (kafka_io.Pending): over, or hanging until `kafka.released`."""

    writer: FakeTransactions
    held: tuple[Records, dict[int, int], FakeSource | None] | None = None
    failure: CommitFailed | None = None

    def done(self) -> bool:
        return self.held is None or self.writer.kafka.released

    def result(self, wait: float | None = None) -> None:
        if self.held is not None:
            self.writer.kafka.waits.append(wait)
            if not self.writer.kafka.released:  # not over within the wait: abandoned
                self.writer.kafka.abandoned += 1
                raise CommitFailed("no answer within 1.0 s; starting afresh")
            self.writer.commit(*self.held)
        if self.failure is not None:
            raise self.failure


class FakeReader:
    BATCH = 3  # small: a restore takes several batches

    def __init__(
        self,
        kafka: Kafka,
        config: dict[str, str],
        topic: str,
        group: str,
        timeout: float,
        group_grant: str = "DESCRIBE",
    ) -> None:
        given(config, timeout)
        assert (topic, group) == (STATE, GROUP)
        self.kafka = kafka
        self.at = 0
        self.reads = 0

    def rewind(self) -> None:
        self.at = 0

    def read(self, timeout: float) -> list[StateRow]:
        """As a consumer's consume(): with nothing there, it waits `timeout` seconds."""
        assert seconds(timeout, at_least=0), f"a timeout kafka_io cannot use: {timeout!r}"
        self.reads += 1
        rows = self.kafka.rows[self.at : self.at + self.BATCH]
        self.at += len(rows)
        if not rows:
            self.kafka.waited += timeout
        return rows

    def to_end(self, timeout: float, within: float) -> Iterator[list[StateRow]]:
        assert seconds(timeout), f"a timeout kafka_io cannot use: {timeout!r}"
        assert seconds(within), f"a time limit kafka_io cannot use: {within!r}"
        end = len(self.kafka.rows)
        while self.at < end:
            yield self.read(0)

    def close(self) -> None:
        pass


class FakeEnds:
    """The tracked topic's end offsets (kafka.ends), as the broker answers them."""

    def __init__(self, kafka: Kafka, config: dict[str, str], topic: str) -> None:
        assert (config, topic) == (CONFIG, TOPIC)
        self.kafka = kafka
        self.latest: dict[int, int] = {}

    def refresh(self, partitions: Iterable[int]) -> None:
        self.latest.update({p: self.kafka.ends[p] for p in partitions if p in self.kafka.ends})


@dataclass
class FakeSource:
    """What Durable asks of the consumer (kafka_io.Consumed)."""

    kafka: Kafka
    from_beginning: bool = True
    ends: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (low, high)
    count: int | Callable[[], int | None] | None = 2  # what partition_count() answers
    generation: int = 1
    topic: str = TOPIC
    group: str = GROUP
    brokers_up: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.brokers_up.set()

    def committed(self, partitions: Sequence[int], timeout: float) -> dict[int, int]:
        assert seconds(timeout)
        return {p: o for p, o in self.kafka.offsets.items() if p in partitions}

    def bounds(self, partition: int, timeout: float) -> tuple[int, int]:
        assert seconds(timeout)
        return self.ends.get(partition, (0, 0))

    def partition_count(self) -> int | None:
        return self.count() if callable(self.count) else self.count

    def group_metadata(self) -> object:
        return self.generation

    def member_id(self) -> str:
        return "rdkafka-7f3a"


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Kafka:
    """A fresh fake Kafka, put in the place of everything state.py asks of kafka_io."""
    return fake_kafka(monkeypatch)


def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Kafka:
    """The `kafka` fixture, for other modules' fixtures."""
    kafka = Kafka()

    def ensure(
        config: dict[str, str], topic: str, timeout: float, replication: int | None = None
    ) -> tuple[bool, TopicLayout]:
        given(config, timeout)
        assert topic == STATE
        created, kafka.exists = not kafka.exists, True
        if created:
            kafka.replication = replication or kafka.default_replication
        return created, check(config, topic, timeout)

    def check(config: dict[str, str], topic: str, timeout: float) -> TopicLayout:
        given(config, timeout)
        assert topic == STATE
        if kafka.policy != "compact":
            raise StateError(f"state topic {topic!r} has cleanup.policy={kafka.policy}")
        return TopicLayout(kafka.replication, 1, kafka.brokers, kafka.policy)

    def exists(config: dict[str, str], topic: str, timeout: float, grant: Acl) -> bool:
        given(config, timeout)
        assert topic == STATE
        assert str(grant) == f"READ on topic {STATE!r}"  # what `lumu state` needs of it
        return kafka.exists

    def members(config: dict[str, str], group: str, timeout: float) -> int:
        given(config, timeout)
        assert group == GROUP
        return kafka.members

    def delete(config: dict[str, str], group: str, timeout: float) -> None:
        given(config, timeout)
        kafka.deleted.append(group)

    patches: dict[str, Any] = {
        "Transactions": functools.partial(FakeTransactions, kafka),
        "StateReader": functools.partial(FakeReader, kafka),
        "Ends": functools.partial(FakeEnds, kafka),
        "ensure_state_topic": ensure,
        "check_state_topic": check,
        "topic_exists": exists,
        "group_members": members,
        "delete_group": delete,
    }
    for name, fake in patches.items():
        monkeypatch.setattr(state, name, fake)
    return kafka


# ---------------------------------------------------------------- an instance and its records


def event(ip: str) -> bytes:
    return json.dumps({"device_ip": ip, "timestamp": STAMP}).encode()


def v4(first: int, last: int) -> list[str]:
    """Addresses 10.0.0.first .. 10.0.0.(last - 1), spread over two pieces (10.0/14, 10.4/14)."""
    base = ipaddress.IPv4Address("10.0.0.0")
    return [str(base + (n if n % 2 else n + (1 << 18))) for n in range(first, last)]


def v6(first: int, last: int) -> list[str]:
    base = ipaddress.IPv6Address("2001:db8::")
    return [str(base + n) for n in range(first, last)]


@dataclass
class Instance:
    """One lumu instance: its Durable keeper over a fake source, and the lines it said."""

    durable: Durable
    source: FakeSource
    said: list[str]
    clock: float

    @property
    def tally(self) -> Tally:
        return self.durable.tally

    def count(self, partition: int, ips: Sequence[str], invalid: int = 0) -> None:
        """Count records of `ips` (and `invalid` records that are not JSON) at the next offsets."""
        values = [event(ip) for ip in ips] + [b"{not json"] * invalid
        first = self.tally.next_offset(partition)
        self.tally.count(partition, range(first, first + len(values)), values)

    def follow(self) -> None:
        """Turns of the consume loop before the commit interval is up, till all rows are read."""
        for _ in range(len(self.source.kafka.rows) // FakeReader.BATCH + 1):
            self.durable.tick(self.clock)

    def commit(self) -> None:
        """A turn of the consume loop once the commit interval is up, and the next, which takes
        the commit's outcome if it is over (a fake's is, unless it hangs)."""
        self.clock += INTERVAL
        self.durable.tick(self.clock)
        self.durable.tick(self.clock)

    def unique(self) -> int:
        return len(self.tally.ips)


def start(kafka: Kafka, **source: Any) -> Instance:
    said: list[str] = []
    fake = FakeSource(kafka, **source)
    durable = Durable(
        CONFIG, cast(Consumed, fake), Tally(), commit_interval=INTERVAL, timeout=TIMEOUT,
        notify=said.append,
    )  # fmt: skip
    return Instance(durable, fake, said, time.monotonic())


def restored(kafka: Kafka, **source: Any) -> Instance:
    """A fresh instance that has read the state topic, as at a restart."""
    instance = start(kafka, **source)
    instance.durable.restore()
    return instance


def keys(records: Records) -> list[str]:
    return [key.decode() for key, _ in records]


def meta(records: Records, partition: int) -> Meta:
    (value,) = [v for k, v in records if k == f"{TOPIC}/{partition}/meta".encode()]
    found = decode(f"{TOPIC}/{partition}/meta".encode(), value).value
    assert isinstance(found, Meta)
    return found


def restore_line(partitions: int, unique: int, messages: int) -> str:
    return (
        f"restored {partitions} partitions ({unique:,} unique IPs, {messages:,} messages) "
        f"from '{STATE}' in "
    )


def said_restored(line: str, partitions: int, unique: int, messages: int) -> bool:
    head = restore_line(partitions, unique, messages)
    return line.startswith(head) and re.fullmatch(r"\d+\.\d\d s", line[len(head) :]) is not None


# ---------------------------------------------------------------- restore and start


def test_a_restart_restores_the_committed_count_and_resumes_each_partition_after_it(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    assert a.durable.assigned([0, 1]) == {0: 0, 1: 0}
    a.count(0, v4(0, 40), invalid=3)
    a.count(1, v4(30, 50) + v6(0, 7))
    a.commit()
    a.count(0, v4(100, 110))  # counted after the commit: not in the state
    b = restored(kafka)
    (line,) = b.said
    assert said_restored(line, 2, unique=57, messages=70)
    assert (b.unique(), b.tally.messages, dict(b.tally.invalid)) == (57, 70, {"not_json": 3})
    assert b.durable.assigned([0, 1]) == {0: 43, 1: 27}
    assert b.tally.local == {0, 1}
    assert len(kafka.commits) == 2  # their snapshots were there: nothing written at assignment


@pytest.mark.parametrize(("from_beginning", "start_at"), [(True, 5), (False, 42)])
def test_a_partition_without_a_snapshot_gets_one_at_once_at_the_offset_it_starts_from(
    kafka: Kafka, from_beginning: bool, start_at: int
) -> None:
    a = start(kafka, from_beginning=from_beginning, ends={0: (5, 42)})
    assert a.durable.assigned([0]) == {0: start_at}
    (first,) = kafka.commits
    assert keys(first) == ["events/0/meta"]
    assert meta(first, 0) == Meta(start_at, 0, {}, 0, meta(first, 0).written_at)
    assert kafka.offsets == {0: start_at}  # the group's offsets go with it
    # killed before its first commit: the restart starts there, whatever the topic holds now
    b = restored(kafka, from_beginning=from_beginning, ends={0: (0, 1000)})
    assert b.durable.assigned([0]) == {0: start_at}
    assert len(kafka.commits) == 1


def test_committed_offsets_without_saved_state_are_refused(kafka: Kafka) -> None:
    kafka.offsets = {0: 10, 2: 3}  # counted with --no-state, or the state topic was deleted
    a = start(kafka)
    with pytest.raises(StateError) as refused:
        a.durable.assigned([0, 1, 2])
    assert str(refused.value) == (
        "group 'g' has committed offsets for partition(s) 0, 2 of 'events' but no saved state "
        "in 'g-lumu-state'; --reset discards them and counts again from the start"
    )
    assert kafka.rows == []


def test_a_new_state_topic_is_told_once_created(kafka: Kafka) -> None:
    kafka.exists = False
    assert start(kafka).said == ["created state topic 'g-lumu-state' (compacted, replication 1)"]
    assert start(kafka).said == []


def test_the_state_topic_takes_the_replication_given_else_the_clusters_default(
    kafka: Kafka,
) -> None:
    kafka.exists, kafka.brokers, kafka.default_replication = False, 5, 3
    assert start(kafka).said == ["created state topic 'g-lumu-state' (compacted, replication 3)"]
    kafka.exists = False
    said: list[str] = []
    Durable(
        CONFIG, cast(Consumed, FakeSource(kafka)), Tally(), commit_interval=INTERVAL,
        timeout=TIMEOUT, notify=said.append, replication=5,
    )  # fmt: skip
    assert (said, kafka.replication) == (
        ["created state topic 'g-lumu-state' (compacted, replication 5)"],
        5,
    )


def test_a_state_topic_on_one_broker_of_several_is_warned_of_at_each_start(kafka: Kafka) -> None:
    kafka.brokers = 3
    warning = (
        "warning: state topic 'g-lumu-state' has replication factor 1 on a cluster of 3 brokers: "
        "the saved count is lost with that broker (raise it with kafka-reassign-partitions)"
    )
    assert start(kafka).said == [warning]
    assert start(kafka).said == [warning]
    kafka.replication = 2
    assert start(kafka).said == []
    kafka.brokers, kafka.replication = 1, 1  # a single broker: nothing better to be had
    assert start(kafka).said == []


# ---------------------------------------------------------------- commits


def test_a_commit_writes_the_pieces_that_changed_then_the_meta_with_the_offsets(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    kafka.commits.clear()
    a.count(0, ["10.0.0.1", "10.0.0.2", "11.0.0.1", "2001:db8::1"], invalid=1)
    a.commit()
    assert [keys(records) for records in kafka.commits] == [
        ["events/0/v4/0280", "events/0/v4/02c0", "events/0/v6/" + "0" * 32, "events/0/meta"]
    ]
    assert meta(kafka.commits[0], 0).unique_ips == 4
    assert kafka.offsets == {0: 5, 1: 0}
    a.count(0, ["10.0.0.2", "2001:db8::1"])  # seen before: no piece changes, the offset moves
    a.commit()
    assert keys(kafka.commits[-1]) == ["events/0/meta"]
    assert kafka.offsets == {0: 7, 1: 0}
    a.count(1, ["11.0.0.9"])
    a.count(0, ["11.0.0.1"])
    a.commit()
    assert keys(kafka.commits[-1]) == ["events/0/meta", "events/1/v4/02c0", "events/1/meta"]
    a.commit()  # nothing counted since: nothing written
    assert len(kafka.commits) == 3
    assert restored(kafka).unique() == a.unique() == 5


def test_a_failed_commit_is_told_once_and_the_next_one_holds_all_it_held(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 10))
    kafka.failures = ["Broker: Not coordinator", "Broker: Not coordinator", "Local: Timed out"]
    a.commit()
    a.count(0, v4(10, 12))
    a.commit()
    a.commit()
    assert a.said == [
        "state commit failed, will retry: Broker: Not coordinator",
        "state commit failed, will retry: Local: Timed out",
    ]
    a.commit()
    b = restored(kafka)
    assert (b.unique(), b.tally.messages) == (12, 12)
    assert b.durable.assigned([0]) == {0: 12}
    assert a.durable.commits_refused == 0


def test_no_commit_is_tried_while_the_brokers_are_down(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 3))
    a.source.brokers_up.clear()
    a.commit()
    assert len(kafka.commits) == 1  # the start only
    a.source.brokers_up.set()
    a.commit()
    assert len(kafka.commits) == 2


def test_the_last_commit_is_made_on_a_clean_stop(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(1, v4(0, 4))
    a.durable.finish()
    assert restored(kafka).durable.assigned([0, 1]) == {0: 0, 1: 4}


# ---------------------------------------------------------------- a zombie's commit


def test_a_commit_with_an_old_generation_is_refused_told_counted_and_writes_nothing(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 20))
    a.commit()
    rows = list(kafka.rows)
    kafka.generation = 2  # a was paused past its session: the group went on without it
    a.count(0, v4(20, 30))
    a.count(1, v4(40, 41))
    a.commit()
    assert a.said == [
        "state commit refused: this member was fenced by a newer generation of group 'g'; "
        "its snapshot of partition(s) 0, 1 was aborted, nothing written"
    ]
    assert a.durable.commits_refused == 1
    assert kafka.rows == rows
    a.commit()  # still fenced: refused (and told) again
    assert a.durable.commits_refused == 2
    assert a.said[1] == a.said[0]
    assert kafka.rows == rows
    # the consumer learns it lost them: the state is read again, as at a restart
    a.durable.lost([0, 1])
    assert a.said[2] == "partition(s) 0, 1 lost (session timed out?); reading the state again"
    assert said_restored(a.said[3], 2, unique=20, messages=20)
    a.source.generation = 2  # it joins again
    assert a.durable.assigned([0, 1]) == {0: 20, 1: 0}


def test_lost_partitions_are_not_committed_and_the_newer_owners_state_is_read(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 10))
    a.count(1, v4(10, 20))
    a.commit()
    a.count(0, v4(50, 60))  # counted, never committed
    kafka.generation = b_generation = 2
    b = restored(kafka, generation=b_generation)  # took both over while a was paused
    assert b.durable.assigned([0, 1]) == {0: 10, 1: 10}
    b.count(1, v4(70, 75))
    b.commit()
    commits = len(kafka.commits)
    a.durable.lost([0, 1])
    assert len(kafka.commits) == commits
    assert a.said[-2] == "partition(s) 0, 1 lost (session timed out?); reading the state again"
    assert said_restored(a.said[-1], 2, unique=25, messages=25)
    assert a.tally.local == set()
    assert (a.tally.next_offset(0), a.tally.next_offset(1)) == (10, 15)


@pytest.mark.parametrize(
    ("code", "refused"),
    [
        (KafkaError.UNKNOWN_MEMBER_ID, True),
        (KafkaError.ILLEGAL_GENERATION, True),
        (KafkaError.FENCED_INSTANCE_ID, True),
        (KafkaError.REBALANCE_IN_PROGRESS, False),  # the member may keep its partitions
        (KafkaError.COORDINATOR_NOT_AVAILABLE, False),
    ],
)
def test_offsets_the_group_coordinator_refuses_to_a_fenced_member_are_a_refused_commit(
    kafka: Kafka, monkeypatch: pytest.MonkeyPatch, code: int, refused: bool
) -> None:
    """Through the real Transactions: librdkafka's refusal, as it words it, is told as refused."""
    broker = Broker()
    monkeypatch.setattr(
        kafka_io.transactions, "Producer", lambda config: FakeProducer(broker, config)
    )
    monkeypatch.setattr(state, "Transactions", kafka_io.Transactions)
    reason = REFUSED.replace("Broker: Unknown member", KafkaError(code).str())
    broker.fail["send_offsets_to_transaction"] = [error(code, reason)]
    said: list[str] = []
    source = FakeSource(kafka)
    durable = Durable(
        CONFIG, cast(Consumed, source), Tally(), commit_interval=5, timeout=TIMEOUT,
        notify=said.append,
    )  # fmt: skip
    with pytest.raises(StateError, match=r"^cannot record the start of a new partition"):
        durable.assigned([0])
    assert broker.committed == []
    assert durable.commits_refused == int(refused)
    assert said == [
        "state commit refused: this member was fenced by a newer generation of group 'g'; "
        "its snapshot of partition(s) 0 was aborted, nothing written"
        if refused
        else f"state commit failed, will retry: {reason}"
    ]


# ---------------------------------------------------------------- rebalances


def test_revoked_partitions_are_committed_before_they_are_given_up_then_followed(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 10))
    a.count(1, v4(10, 30))
    a.durable.revoked([1])
    assert keys(kafka.commits[-1]) == ["events/1/v4/0280", "events/1/v4/0281", "events/1/meta"]
    assert a.tally.local == {0}
    assert a.unique() == 30  # partition 1 is followed now: still in the count
    b = restored(kafka)
    assert b.durable.assigned([1]) == {1: 20}  # its next owner resumes where a stopped
    assert b.tally.partitions[1].messages == 20


def test_a_failed_revoke_commit_rereads_what_was_given_up_and_keeps_what_is_kept(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 10))
    a.count(1, v4(10, 20))
    a.commit()
    a.count(0, v4(100, 105))  # counted since the snapshot, in both
    a.count(1, v4(200, 203))
    kafka.failures = ["Broker: Not coordinator"]
    a.durable.revoked([1])
    assert a.said == [
        "state commit failed, will retry: Broker: Not coordinator",
        "partition(s) 1 given up without their last commit; their next owner counts them again "
        "from their last snapshot",
    ]
    # partition 1 is back at its snapshot: its next owner counts the 3 records again
    assert (a.tally.next_offset(1), len(a.tally.partitions[1].ips)) == (10, 10)
    # partition 0 is still counted here, with what was counted since its snapshot
    assert a.tally.local == {0}
    assert (a.tally.next_offset(0), len(a.tally.partitions[0].ips)) == (15, 15)
    assert a.unique() == 25
    a.count(0, v4(300, 301))
    a.commit()  # and it is still committed
    b = restored(kafka)
    assert b.durable.assigned([0, 1]) == {0: 16, 1: 10}
    assert b.unique() == 26


def test_an_instance_follows_the_others_snapshots_and_its_own_partitions_are_its_own(
    kafka: Kafka,
) -> None:
    kafka.ends = {0: 12, 1: 30}
    a, b = start(kafka), start(kafka)
    a.durable.assigned([0])
    b.durable.assigned([1])
    a.count(0, v4(0, 10) + v6(0, 2))
    b.count(1, v4(5, 25), invalid=1)
    b.commit()
    a.follow()
    assert (a.unique(), a.tally.messages, dict(a.tally.invalid)) == (27, 33, {"not_json": 1})
    as_of = b.tally.partitions[1].written_at
    assert a.durable.partitions() == [PartitionInfo(1, 21, None, local=False, as_of=as_of)]
    a.commit()  # the end offsets of the partitions counted elsewhere are asked for with it
    [info] = a.durable.partitions()
    assert (info, info.lag) == (PartitionInfo(1, 21, 30, local=False, as_of=as_of), 9)
    # rows of a partition counted here, written by another (a zombie), change nothing here
    zombie = Tally()
    zombie.take(0, 0)
    zombie.count(0, range(100), [event(ip) for ip in v4(500, 600)])
    append(kafka, zombie.changes(TOPIC, [0], STAMP))
    a.follow()
    assert (a.tally.next_offset(0), len(a.tally.partitions[0].ips)) == (12, 12)
    assert a.unique() == 27


def test_an_instance_counting_every_partition_stops_reading_the_state_until_a_rebalance(
    kafka: Kafka,
) -> None:
    a = start(kafka, count=2)
    a.durable.assigned([0, 1])
    a.commit()  # it learns it counts every partition of the topic
    reader = cast(FakeReader, a.durable._reader)
    reads = reader.reads
    a.durable.tick(a.clock)
    a.durable.tick(a.clock)
    assert reader.reads == reads
    a.durable.revoked([1])
    a.durable.tick(a.clock)
    assert reader.reads == reads + 1


def test_an_instance_whose_partition_count_is_not_known_keeps_following_the_others(
    kafka: Kafka,
) -> None:
    a, b = start(kafka, count=None), start(kafka)
    a.durable.assigned([0])
    b.durable.assigned([1])
    a.commit()  # the broker did not say how many partitions the topic has
    b.count(1, v4(0, 9))
    b.commit()
    a.follow()
    assert a.unique() == 9


def test_an_instance_whose_consumer_cannot_reach_the_broker_keeps_following_the_others(
    kafka: Kafka,
) -> None:
    """partition_count() of a consumer that gets no answer (it was 0, taken for 'every partition
    of none is counted here', and the instance stopped following the others until the next
    commit)."""
    consumer = Consumed(client_config("127.0.0.1:1"), TOPIC, GROUP, from_beginning=True)
    try:
        a, b = start(kafka), start(kafka)
        a.source.count = consumer.partition_count
        a.durable.assigned([0])
        b.durable.assigned([1])
        a.commit()
        b.count(1, v4(0, 9))
        b.commit()
        a.follow()
        assert a.unique() == 9
    finally:
        consumer.close()


# ---------------------------------------------------------------- a state that does not add up


def bad_piece(kafka: Kafka) -> None:
    """Write a v4 piece of partition 0 again under partition 1's key (one it does not have)."""
    theirs = {k for _, k, _ in kafka.rows if k and k.startswith(b"events/1/v4/")}
    for _, raw_key, value in list(kafka.rows):
        assert raw_key is not None
        moved = raw_key.replace(b"events/0/", b"events/1/")
        if raw_key.startswith(b"events/0/v4/") and moved not in theirs:
            kafka.rows.append((len(kafka.rows), moved, value))
            return
    raise AssertionError("no piece of partition 0 to move")


def test_a_piece_under_another_partitions_key_is_refused_alike_by_restore_and_describe(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, ["10.0.0.1", "10.0.0.2", "11.0.0.1"])
    a.count(1, ["10.0.0.1", "12.0.0.1"])
    a.commit()
    bad_piece(kafka)
    expected = (
        "state topic 'g-lumu-state' is inconsistent: partition 1 holds 3 unique IPs, its meta "
        "says 2 (pieces missing?)"
    )
    with pytest.raises(StateError) as restoring:
        start(kafka).durable.restore()
    with pytest.raises(StateError) as describing:
        describe(CONFIG, GROUP, TIMEOUT)
    assert str(restoring.value) == str(describing.value) == expected


def test_a_state_topic_that_is_not_compacted_is_refused_alike_by_an_instance_and_describe(
    kafka: Kafka,
) -> None:
    start(kafka).durable.assigned([0])
    kafka.policy = "delete"
    with pytest.raises(StateError) as starting:
        start(kafka)
    with pytest.raises(StateError) as describing:
        describe(CONFIG, GROUP, TIMEOUT)
    assert str(starting.value) == str(describing.value)
    assert "cleanup.policy=delete" in str(describing.value)


def test_a_foreign_record_is_refused_with_its_offset(kafka: Kafka) -> None:
    start(kafka).durable.assigned([0])
    kafka.rows.append((1, b"events/0/meta", b"not lumu"))
    expected = "state topic 'g-lumu-state' offset 1: not a lumu state record (key b'events/0/meta')"
    with pytest.raises(StateError, match=re.escape(expected)):
        start(kafka).durable.restore()
    with pytest.raises(StateError, match=re.escape(expected)):
        describe(CONFIG, GROUP, TIMEOUT)


# ---------------------------------------------------------------- lumu state


def test_describe_shows_each_partitions_snapshot_pieces_and_bytes(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, ["10.0.0.1", "11.0.0.1"], invalid=2)
    a.count(1, ["10.0.0.1", "2001:db8::1"])
    a.commit()
    a.count(0, ["10.0.0.3"])
    a.commit()  # piece 0280 of partition 0 written again: its last value counts, once
    live = {k.decode(): len(v) for _, k, v in kafka.rows if k and v}
    size = {p: sum(n for k, n in live.items() if k.startswith(f"events/{p}/")) for p in (0, 1)}
    metas = {p: meta(kafka.commits[-1 if p == 0 else 1], p) for p in (0, 1)}
    assert describe(CONFIG, GROUP, TIMEOUT).topics == [
        SavedTopic(TOPIC, 4, [
            SavedPartition(0, metas[0], 3, 3, size[0]),
            SavedPartition(1, metas[1], 2, 3, size[1]),
        ])
    ]  # fmt: skip
    assert metas[0].next_offset == 5
    assert metas[0].invalid == {"not_json": 2}


def test_describe_of_a_group_without_a_state_topic_is_a_state_error(kafka: Kafka) -> None:
    kafka.exists = False
    with pytest.raises(StateError) as refused:
        describe(CONFIG, GROUP, TIMEOUT)
    assert str(refused.value) == "group 'g' has no saved state (no topic 'g-lumu-state')"


# ---------------------------------------------------------------- --reset


def test_reset_refuses_while_the_group_has_members_and_touches_nothing(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    rows = list(kafka.rows)
    kafka.members = 2
    with pytest.raises(StateError) as refused:
        reset(CONFIG, GROUP, TIMEOUT)
    assert str(refused.value) == (
        "cannot reset group 'g': it has 2 active member(s); stop them first"
    )
    assert (kafka.rows, kafka.deleted) == (rows, [])


def test_reset_deletes_the_group_and_tombstones_every_live_key_once(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, ["10.0.0.1", "11.0.0.1"])
    a.count(1, ["12.0.0.1"])
    a.commit()
    a.count(0, ["10.0.0.2"])
    a.commit()
    kafka.rows.append((len(kafka.rows), b"events/1/v4/0300", None))  # a key gone already
    live = sorted({k for _, k, _ in kafka.rows if k} - {b"events/1/v4/0300"})
    assert reset(CONFIG, GROUP, TIMEOUT) == len(live) == 4
    assert kafka.deleted == [GROUP]
    assert kafka.commits[-1] == [(k, None) for k in live]
    b = restored(kafka)
    assert (b.unique(), len(b.tally.partitions)) == (0, 0)
    kafka.offsets.clear()  # (the group was deleted)
    assert b.durable.assigned([0, 1]) == {0: 0, 1: 0}  # counted again from the start
    assert reset(CONFIG, GROUP, TIMEOUT) == 2  # only the new starts are live now


def test_reset_without_a_state_topic_discards_the_offsets_only(kafka: Kafka) -> None:
    kafka.exists = False
    assert reset(CONFIG, GROUP, TIMEOUT) == 0
    assert kafka.deleted == [GROUP]


def test_a_reset_whose_tombstones_do_not_commit_is_a_state_error(kafka: Kafka) -> None:
    start(kafka).durable.assigned([0])
    kafka.failures = ["Broker: Not coordinator"]
    with pytest.raises(StateError) as failed:
        reset(CONFIG, GROUP, TIMEOUT)
    assert str(failed.value) == "cannot reset the state in 'g-lumu-state': Broker: Not coordinator"


# ---------------------------------------------------------------- commits beside the counting


def test_counting_goes_on_while_a_commit_hangs_and_the_next_snapshot_has_it_all(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 10) + v6(0, 3))
    kafka.hang = 1
    a.commit()  # begun: it hangs (the coordinator moved)
    a.count(0, v4(10, 20) + v6(3, 5))  # counted meanwhile, into pieces being written too
    a.commit()  # the interval is up again: no second commit while the first is under way
    assert len(kafka.commits) == 1  # (the start's)
    assert (a.unique(), a.tally.messages) == (25, 25)
    kafka.released = True  # the hanging commit answers: its snapshot of 13 records is stored
    a.commit()
    assert meta(kafka.commits[1], 0).next_offset == 13
    assert meta(kafka.commits[2], 0).next_offset == 25  # and at once the next, of the rest
    b = restored(kafka)
    assert b.durable.assigned([0]) == {0: 25}
    assert (b.unique(), list(b.tally.ips.v4), list(b.tally.ips.v6)) == (
        25, list(a.tally.ips.v4), list(a.tally.ips.v6),
    )  # fmt: skip


def test_a_commit_that_hangs_at_a_rebalance_is_abandoned_and_its_snapshot_written_anew(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0, 1])
    a.count(0, v4(0, 10))
    a.count(1, v4(10, 20))
    kafka.hang = 1
    a.commit()
    a.count(1, v4(20, 25))
    a.durable.revoked([1])
    assert kafka.waits == [state.GRACE_SECONDS]  # waited for a moment, then given up on
    assert kafka.abandoned == 1
    assert a.said == ["state commit failed, will retry: no answer within 1.0 s; starting afresh"]
    b = restored(kafka)
    assert b.durable.assigned([1]) == {1: 15}  # what the abandoned commit held is written anew
    assert b.unique() == 15  # partition 0's 10 are in no snapshot yet: a counts it still
    a.commit()
    c = restored(kafka)
    assert c.durable.assigned([0]) == {0: 10}
    assert c.unique() == 25


def test_a_lost_partition_waits_a_moment_at_most_for_the_commit_under_way(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 10))
    kafka.hang = 1
    a.commit()
    a.durable.lost([0])
    assert kafka.waits == [state.GRACE_SECONDS]
    assert (kafka.abandoned, a.unique()) == (1, 0)  # read again from the topic: nothing there


def test_a_clean_stop_waits_for_the_commit_under_way_then_makes_the_last(kafka: Kafka) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 10))
    kafka.hang, kafka.released = 1, True  # under way; it answers when waited for
    a.commit()
    kafka.released = False
    a.count(0, v4(10, 12))
    kafka.released = True
    a.durable.finish()
    assert kafka.waits[0] is None  # as long as a commit may take
    assert restored(kafka).unique() == 12


def test_a_zombies_commit_under_way_when_it_learns_of_its_loss_is_told_as_refused(
    kafka: Kafka,
) -> None:
    a = start(kafka)
    a.durable.assigned([0])
    a.count(0, v4(0, 10))
    kafka.hang = 1
    a.commit()  # under way when the process pauses (a zombie)
    kafka.generation += 1  # meanwhile the group moved on; the coordinator refuses its offsets
    kafka.released = True
    a.durable.lost([0])
    assert a.durable.commits_refused == 1
    assert a.said[0].startswith("state commit refused: this member was fenced")  # first
    assert kafka.abandoned == 0


def test_the_topics_partition_count_is_asked_once_a_rebalance(kafka: Kafka) -> None:
    """It is a metadata request in the consume loop, which waits while a broker is down."""
    asked: list[int] = []

    def count() -> int | None:
        asked.append(1)
        return None if len(asked) == 1 else 3  # no answer the first time

    a, b = start(kafka, count=count), start(kafka)
    a.durable.assigned([0])
    b.durable.assigned([1, 2])
    for _ in range(3):
        a.commit()
    assert len(asked) == 2  # asked again only while unknown
    a.durable.revoked([0])
    a.durable.assigned([0, 1, 2])
    a.commit()
    a.commit()
    assert len(asked) == 3
    reads = cast(FakeReader, a.durable._reader).reads
    a.commit()  # every partition is counted here now: nothing to follow
    assert cast(FakeReader, a.durable._reader).reads == reads
