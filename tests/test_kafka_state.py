"""kafka_io's state clients (Transactions, StateReader) over fakes of confluent_kafka's Producer,
Consumer and AdminClient, and Consumed.partition_count() against a broker that is not there.

A fake producer keeps what each transaction produced apart until it commits, as a broker does for
a read_committed reader: a test sees exactly what a reader would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from lumu_cli import kafka_io
from lumu_cli.errors import NotAuthorized, StateError
from lumu_cli.kafka_io import CommitFailed, Consumed, StateReader, Transactions, client_config

TOPIC, GROUP, STATE = "events", "g", "g-lumu-state"
CONFIG = {"bootstrap.servers": "fake:9092"}
Records = list[tuple[bytes, bytes | None]]


def error(code: int, reason: str | None = None, *, fatal: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, reason, fatal=fatal, txn_requires_abort=not fatal))


# ---------------------------------------------------------------- a fake transactional producer


@dataclass
class Broker:
    """What the fake producers' transactions committed, and how the next calls go wrong."""

    committed: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    offsets: list[tuple[list[TopicPartition], object]] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    fail: dict[str, list[BaseException]] = field(default_factory=dict)  # method -> next raises
    wedge: threading.Event | None = None  # send_offsets_to_transaction waits for it


class FakeProducer:
    def __init__(self, broker: Broker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.calls: list[str] = []
        self.pending: Records | None = None
        self.abortable: KafkaException | None = None  # as librdkafka, the first such error
        broker.producers.append(self)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if failures := self.broker.fail.get(name):
            failure = failures.pop(0)
            if isinstance(failure, KafkaException) and failure.args[0].txn_requires_abort():
                self.abortable = self.abortable or failure
            raise failure

    def list_topics(self, timeout: float) -> None:
        self._call("list_topics")

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")

    def begin_transaction(self) -> None:
        self._call("begin_transaction")
        self.pending, self.abortable = [], None

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
        self._call("produce")
        assert (topic, partition) == (STATE, 0)
        assert self.pending is not None
        self.pending.append((key, value))

    def poll(self, timeout: float) -> int:
        self.calls.append("poll")
        return 0

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group: object, timeout: float
    ) -> None:
        self._call("send_offsets_to_transaction")
        if self.broker.wedge is not None:
            self.broker.wedge.wait(30)
        self.broker.offsets.append((positions, group))

    def flush(self, timeout: float) -> int:
        self._call("flush")
        return 0

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")
        if self.abortable is not None:  # librdkafka: "requires abort", with the first error
            raise self.abortable
        assert self.pending is not None
        self.broker.committed += self.pending
        self.pending = None

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")
        self.pending, self.abortable = None, None

    def purge(self) -> None:
        self.calls.append("purge")


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    broker = Broker()
    monkeypatch.setattr(
        kafka_io.transactions, "Producer", lambda config: FakeProducer(broker, config)
    )
    return broker


@dataclass
class Member:
    """The consumer whose group's offsets go with a commit."""

    topic: str = TOPIC
    metadata: object = "generation 7"
    group: str = "g"
    member: str = "rdkafka-7f3a"

    def group_metadata(self) -> object:
        return self.metadata

    def member_id(self) -> str:
        return self.member


RECORDS: Records = [(b"events/0/v4/0280", b"LUMU\x01piece"), (b"events/0/meta", b"LUMU\x01{}")]


def transactions(hook: Callable[[str], None] | None = None) -> Transactions:
    return Transactions(CONFIG, STATE, GROUP, 1.0, hook)


def commit(writer: Transactions) -> None:
    writer.commit(RECORDS, {1: 40, 0: 7}, cast(Consumed, Member()))


# ---------------------------------------------------------------- Transactions


def test_a_commit_writes_its_records_and_the_groups_offsets_in_one_transaction(
    broker: Broker,
) -> None:
    writer = transactions()
    commit(writer)
    assert broker.committed == RECORDS
    [(positions, group)] = broker.offsets
    assert positions == [TopicPartition(TOPIC, 0, 7), TopicPartition(TOPIC, 1, 40)]
    assert group == "generation 7"  # the member's generation goes with them (KIP-447)
    [producer] = broker.producers
    assert producer.calls == [
        "list_topics", "init_transactions", "begin_transaction", "produce", "produce",
        "send_offsets_to_transaction", "commit_transaction",
    ]  # fmt: skip
    assert producer.config["transactional.id"].startswith("lumu-g-")
    assert producer.config["transaction.timeout.ms"] == 10_000
    writer.close()


def test_a_member_without_a_member_id_is_refused_before_anything_is_sent(broker: Broker) -> None:
    """librdkafka forgets its member id when its session times out, and the coordinator takes
    offsets without a member unchecked: such a commit would let a zombie through."""
    writer = transactions()
    with pytest.raises(CommitFailed, match=r"^not a member of group 'g' now$") as refused:
        writer.commit(RECORDS, {0: 7}, cast(Consumed, Member(member="")))
    assert refused.value.refused
    assert broker.committed == []
    assert broker.offsets == []


def test_records_without_a_source_commit_no_offsets(broker: Broker) -> None:
    writer = transactions()
    writer.commit([(b"events/0/meta", None)], {}, None)  # as --reset's tombstones
    assert broker.committed == [(b"events/0/meta", None)]
    assert broker.offsets == []


@pytest.mark.parametrize(
    "step", ["begin_transaction", "produce", "send_offsets_to_transaction", "commit_transaction"]
)
def test_a_non_fatal_error_aborts_the_whole_transaction_and_the_producer_goes_on(
    broker: Broker, step: str
) -> None:
    broker.fail[step] = [error(KafkaError._TIMED_OUT, f"{step} timed out.")]
    writer = transactions()
    with pytest.raises(CommitFailed, match=f"^{step} timed out$"):
        commit(writer)
    assert broker.committed == []  # nothing of it, not even the records produced before
    [producer] = broker.producers
    assert producer.calls[-1] == "abort_transaction"
    commit(writer)  # the next try starts afresh, with the same producer
    assert broker.committed == RECORDS
    assert len(broker.producers) == 1


def test_a_fatal_error_drops_the_producer_and_the_next_starts_with_the_same_id(
    broker: Broker,
) -> None:
    broker.fail["commit_transaction"] = [error(KafkaError._FENCED, fatal=True)]
    writer = transactions()
    with pytest.raises(CommitFailed, match=r"^Local: This instance has been fenced"):
        commit(writer)
    first = broker.producers[0]
    assert "abort_transaction" not in first.calls
    assert first.calls[-1] == "purge"
    commit(writer)
    assert broker.committed == RECORDS
    second = broker.producers[1]
    assert second.calls[:2] == ["list_topics", "init_transactions"]
    assert second.config["transactional.id"] == first.config["transactional.id"]


def test_an_abort_that_fails_drops_the_producer(broker: Broker) -> None:
    broker.fail["send_offsets_to_transaction"] = [error(KafkaError._TIMED_OUT)]
    broker.fail["abort_transaction"] = [error(KafkaError._TIMED_OUT)]
    writer = transactions()
    with pytest.raises(CommitFailed):
        commit(writer)
    assert broker.producers[0].calls[-1] == "purge"
    commit(writer)
    assert len(broker.producers) == 2
    assert broker.committed == RECORDS


def test_a_wedged_send_offsets_gives_commit_failed_and_a_new_producer(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_io.transactions, "WEDGED_SECONDS", 0.2)
    broker.wedge = wedge = threading.Event()
    writer = transactions()
    try:
        with pytest.raises(CommitFailed, match=r"^no answer within 0\.2 s; starting afresh$"):
            commit(writer)
        broker.wedge = None
        commit(writer)
        assert len(broker.producers) == 2
        assert broker.committed == RECORDS  # the wedged one never committed
    finally:
        wedge.set()


def test_a_full_queue_is_served_until_the_record_fits(broker: Broker) -> None:
    broker.fail["produce"] = [BufferError(), BufferError()]
    writer = transactions()
    commit(writer)
    assert broker.committed == RECORDS
    assert broker.producers[0].calls.count("poll") == 2


def test_a_producer_that_cannot_start_is_a_failed_commit_tried_again_next_time(
    broker: Broker,
) -> None:
    broker.fail["init_transactions"] = [
        error(KafkaError._TIMED_OUT, "Transaction coordinator not available"),
        error(KafkaError._TIMED_OUT, "Transaction coordinator not available"),
    ]
    writer = transactions()
    with pytest.raises(CommitFailed) as failed:
        commit(writer)
    assert str(failed.value) == (
        "cannot start state transactions: Transaction coordinator not available"
    )
    commit(writer)
    assert broker.committed == RECORDS
    assert len(broker.producers) == 3


def test_the_crash_hook_is_told_once_the_transaction_is_written_before_its_commit(
    broker: Broker,
) -> None:
    told: list[tuple[str, list[str]]] = []
    writer = transactions(hook=lambda point: told.append((point, list(broker.producers[0].calls))))
    commit(writer)
    [(point, calls)] = told
    assert point == "mid-commit"
    assert calls[-2:] == ["send_offsets_to_transaction", "flush"]
    assert broker.producers[0].calls[-1] == "commit_transaction"


# ---------------------------------------------------------------- StateReader


@dataclass
class Message:
    offset_: int
    key_: bytes | None = None
    value_: bytes | None = None
    error_: KafkaError | None = None
    partition_: int = 0

    def error(self) -> KafkaError | None:
        return self.error_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_


def eof(offset: int, partition: int = 0) -> Message:
    return Message(offset, error_=KafkaError(KafkaError._PARTITION_EOF), partition_=partition)


def row(offset: int, partition: int = 0) -> Message:
    return Message(offset, f"events/{offset}/meta".encode(), b"v", partition_=partition)


@dataclass
class Topics:
    topics: dict[str, Any]


@dataclass
class TopicInfo:
    error: KafkaError | None = None
    partitions: dict[int, object] = field(default_factory=lambda: {0: None})


@dataclass
class Offset:
    offset: int


class FakeConsumer:
    def __init__(self, log: StateLog, config: dict[str, Any]) -> None:
        self.log = log
        self.config = config
        log.consumers.append(self)

    def list_topics(self, topic: str, timeout: float) -> Topics:
        if self.log.metadata:
            answer = self.log.metadata.pop(0)
            if isinstance(answer, KafkaException):
                raise answer
            return Topics({topic: answer})
        return Topics({topic: TopicInfo(partitions=dict.fromkeys(self.log.ends))})

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.log.assigned.append([(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def consume(self, count: int, timeout: float) -> list[Message]:
        self.log.consumes += 1
        batches = self.log.batches
        batch = batches.pop(0) if len(batches) > 1 else batches[0]
        if isinstance(batch, KafkaException):
            raise batch
        return batch

    def close(self) -> None:
        pass


class FakeAdmin:
    def __init__(self, log: StateLog) -> None:
        self.log = log

    def list_offsets(
        self, wanted: dict[TopicPartition, object], isolation_level: object, request_timeout: float
    ) -> dict[TopicPartition, Future[Offset]]:
        assert isolation_level == IsolationLevel.READ_UNCOMMITTED  # past open transactions
        answers: dict[TopicPartition, Future[Offset]] = {}
        for tp in wanted:
            future: Future[Offset] = Future()
            answers[tp] = future
            if self.log.ends_error is not None:
                future.set_exception(self.log.ends_error)
            elif self.log.leaderless:  # just created: no leader in this client's metadata
                future.set_exception(error(KafkaError._NOENT, "No leaders found"))
            else:
                future.set_result(Offset(self.log.ends[tp.partition]))
        return answers

    def list_topics(self, topic: str, timeout: float) -> None:
        """A metadata request: the leaders known by now come with it."""
        self.log.leaderless = max(0, self.log.leaderless - 1)


@dataclass
class StateLog:
    """The state topic as the fake consumer serves it: batches in order (the last one repeats)."""

    ends: dict[int, int] = field(default_factory=lambda: {0: 0})  # high watermarks
    leaderless: int = 0  # metadata requests until a leader is known (none: the ends fail)
    batches: list[list[Message] | KafkaException] = field(default_factory=lambda: [[]])
    metadata: list[Any] = field(default_factory=list)  # list_topics answers before the usual
    ends_error: KafkaException | None = None
    consumers: list[FakeConsumer] = field(default_factory=list)
    assigned: list[list[tuple[str, int, int]]] = field(default_factory=list)
    consumes: int = 0


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> StateLog:
    log = StateLog()
    monkeypatch.setattr(kafka_io.transactions, "Consumer", lambda config: FakeConsumer(log, config))
    monkeypatch.setattr(kafka_io.transactions, "_admin", lambda config: FakeAdmin(log))
    return log


def reader(timeout: float = 5.0) -> StateReader:
    return StateReader(CONFIG, STATE, GROUP, timeout)


def read_to_end(state_reader: StateReader, seconds: float = 30) -> list[int]:
    return [offset for rows in state_reader.to_end(1.0, seconds) for offset, _, _ in rows]


def test_the_reader_is_read_committed_from_the_start_of_every_partition(log: StateLog) -> None:
    log.ends = {0: 0, 1: 0}
    state_reader = reader()
    [consumer] = log.consumers
    assert consumer.config["isolation.level"] == "read_committed"
    assert consumer.config["group.id"] == GROUP  # the group itself: only DESCRIBE on it needed
    assert consumer.config["enable.auto.commit"] is False
    assert log.assigned == [[(STATE, 0, OFFSET_BEGINNING), (STATE, 1, OFFSET_BEGINNING)]]
    state_reader.rewind()
    assert log.assigned[1] == log.assigned[0]


def test_to_end_reads_past_the_transaction_markers_to_the_end_and_stops(log: StateLog) -> None:
    log.ends = {0: 5, 1: 2}  # partition 0: rows 0-2, then a commit marker at 3 and 4
    log.batches = [[row(0), row(1), row(0, 1)], [row(2), eof(5), eof(2, 1)], [row(9)]]
    assert read_to_end(reader()) == [0, 1, 0, 2]
    assert log.consumes == 2


def test_to_end_of_an_empty_state_topic_reads_nothing(log: StateLog) -> None:
    log.ends = {0: 0}
    assert read_to_end(reader()) == []
    assert log.consumes == 0


def test_to_end_that_never_reaches_the_end_is_a_state_error(log: StateLog) -> None:
    log.ends = {0: 5}  # a transaction left open holds a read_committed reader back
    log.batches = [[row(0), row(1), row(2)], []]
    with pytest.raises(StateError) as failed:
        read_to_end(reader(), seconds=0.2)
    assert str(failed.value) == (
        f"state topic {STATE!r} could not be read to its end within 0.2 s (a transaction left "
        "open?)"
    )


def test_the_end_offsets_not_answered_are_a_state_error(log: StateLog) -> None:
    log.ends_error = error(KafkaError._TRANSPORT, "Connection refused")
    with pytest.raises(StateError) as failed:
        read_to_end(reader())
    assert str(failed.value) == f"cannot reach state topic {STATE!r}: Connection refused"


def test_the_end_offsets_of_a_topic_just_created_are_asked_again_until_it_has_a_leader(
    log: StateLog,
) -> None:
    """On a cluster, a state topic just created may have no leader in the admin client's
    metadata, which librdkafka does not refresh by itself: asking again without new metadata
    would fail until the timeout."""
    log.ends, log.leaderless = {0: 2}, 2
    log.batches = [[row(0), row(1)], []]
    assert read_to_end(reader()) == [0, 1]
    assert log.leaderless == 0


def test_a_fatal_error_while_reading_is_a_state_error(log: StateLog) -> None:
    fatal = KafkaError(KafkaError._FATAL, "Fatal error: broker went mad", fatal=True)
    log.ends = {0: 5}
    log.batches = [[row(0), Message(1, error_=fatal)]]
    with pytest.raises(StateError, match=f"^reading state topic {STATE!r}: Fatal error: broker"):
        read_to_end(reader())


def test_a_consume_that_raises_is_a_state_error(log: StateLog) -> None:
    log.ends = {0: 5}
    log.batches = [error(KafkaError._FATAL, "Fatal error", fatal=True)]
    with pytest.raises(StateError, match=f"^reading state topic {STATE!r}: Fatal error$"):
        read_to_end(reader())


def test_a_transient_error_while_reading_is_passed_over(log: StateLog) -> None:
    log.ends = {0: 2}
    log.batches = [[row(0), Message(1, error_=KafkaError(KafkaError._TRANSPORT))], [row(1), eof(2)]]
    assert read_to_end(reader()) == [0, 1]


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            f"not authorized to READ topic {STATE!r} (grant READ on topic {STATE!r})",
        ),
        (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            f"not authorized to DESCRIBE group {GROUP!r} (grant DESCRIBE on group {GROUP!r})",
        ),
    ],
)
def test_an_authorization_error_while_reading_names_the_acl_at_once(
    log: StateLog, code: int, line: str
) -> None:
    log.ends = {0: 5}
    log.batches = [[Message(0, error_=KafkaError(code))], []]  # (an error has no offset)
    with pytest.raises(NotAuthorized) as refused:
        read_to_end(reader(), seconds=0.5)
    assert str(refused.value) == line


def test_a_state_topic_without_metadata_yet_is_waited_for(log: StateLog) -> None:
    log.metadata = [
        error(KafkaError._TRANSPORT, "Connection refused"),
        TopicInfo(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)),
    ]
    assert reader().partitions == [0]  # the third answer has it (a topic just created)


def test_a_state_topic_that_never_has_metadata_is_a_state_error(log: StateLog) -> None:
    log.metadata = [TopicInfo(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))] * 1000
    with pytest.raises(StateError) as failed:
        reader(timeout=0.3)
    assert str(failed.value) == (
        f"cannot read state topic {STATE!r}: Broker: Unknown topic or partition"
    )


# ---------------------------------------------------------------- Consumed.partition_count


def test_partition_count_of_a_broker_that_does_not_answer_is_none() -> None:
    consumer = Consumed(client_config("127.0.0.1:1"), TOPIC, GROUP, from_beginning=True)
    try:
        assert consumer.partition_count() is None  # not 0: "no partition" would be a claim
    finally:
        consumer.close()


# ---------------------------------------------------------------- the state topic's layout


@dataclass
class LayoutAdmin:
    """An admin client of a cluster where a topic just created is unknown to the broker asked
    for the first `unknown` asks; `failure` fails every ask."""

    unknown: int = 0
    failure: KafkaException | None = None
    asks: int = 0

    def _ask(self) -> None:
        self.asks += 1
        if self.failure is not None:
            raise self.failure
        if self.asks <= self.unknown:
            raise error(KafkaError.UNKNOWN_TOPIC_OR_PART, "Broker: Unknown topic or partition")

    def list_topics(self, topic: str, timeout: float) -> Any:
        self._ask()
        partition = type("P", (), {"replicas": [1, 2, 3]})()
        meta = type("T", (), {"error": None, "partitions": {0: partition}})()
        return type("M", (), {"topics": {topic: meta}, "brokers": {1: 0, 2: 0, 3: 0}})()

    def describe_configs(self, resources: list[Any], request_timeout: float) -> Any:
        future: Future[dict[str, Any]] = Future()
        future.set_result({
            "cleanup.policy": type("C", (), {"value": "compact"})(),
            "min.insync.replicas": type("C", (), {"value": "2"})(),
        })  # fmt: skip
        return {resources[0]: future}


def test_a_state_topic_another_instance_just_created_is_asked_for_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start-up race on a cluster: the broker asked does not know the new topic yet."""
    admin = LayoutAdmin(unknown=2)
    monkeypatch.setattr(kafka_io.admin, "_admin", lambda config: admin)
    monkeypatch.setattr(kafka_io.clients, "_TRY_SECONDS", 0.01)
    layout = kafka_io.check_state_topic(CONFIG, STATE, 5.0)
    assert (admin.asks, layout) == (3, kafka_io.TopicLayout(3, 2, 3, "compact"))


def test_a_state_topic_still_unknown_at_the_timeout_is_a_state_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_io.admin, "_admin", lambda config: LayoutAdmin(unknown=10**9))
    monkeypatch.setattr(kafka_io.clients, "_TRY_SECONDS", 0.01)
    with pytest.raises(StateError) as failed:
        kafka_io.check_state_topic(CONFIG, STATE, 0.1)
    assert str(failed.value) == (
        f"cannot read the config of state topic {STATE!r}: Broker: Unknown topic or partition"
    )


def test_another_error_of_the_state_topics_layout_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = LayoutAdmin(failure=error(KafkaError.POLICY_VIOLATION, "Not allowed by policy"))
    monkeypatch.setattr(kafka_io.admin, "_admin", lambda config: admin)
    with pytest.raises(StateError, match=r"Not allowed by policy$"):
        kafka_io.check_state_topic(CONFIG, STATE, 5.0)
    assert admin.asks == 1
