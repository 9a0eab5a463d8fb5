"""Authorization errors where kafka_io meets them, over fakes of confluent_kafka's clients: the
produce Sender and the consume loop's Consumed turn each into NotAuthorized (one line, exit 3)
naming the ACL, at once, and never let one through as a retried error or an internal one.

tests/integration/test_acls.py meets the same errors from a real broker's authorizer.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from lumu_cli import kafka_io
from lumu_cli.errors import BrokerError, NotAuthorized
from lumu_cli.kafka_io import Consumed, Sender

TOPIC, GROUP = "events", "g"


class FakeProducer:
    """A producer whose delivery reports and fatal errors a test sets."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.reports: list[KafkaError] = []  # each served by the next poll or flush
        self.fatal: KafkaException | None = None  # raised by the next poll or flush
        self.queued = 0

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.queued += 1

    def _serve(self) -> int:
        for report in self.reports:
            self.config["on_delivery"](report, None)
        self.reports = []
        if self.fatal is not None:
            raise self.fatal
        return 0

    def poll(self, timeout: float) -> int:
        return self._serve()

    def flush(self, timeout: float) -> int:
        return self._serve()

    def __len__(self) -> int:
        return 0


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    made: list[FakeProducer] = []

    def make(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config))
        return made[-1]

    monkeypatch.setattr(kafka_io.produce, "Producer", make)
    return made


WRITE = f"not authorized to WRITE topic {TOPIC!r} (grant WRITE on topic {TOPIC!r})"


def test_a_record_refused_stops_the_sender_at_its_next_call(producer: list[FakeProducer]) -> None:
    sender = Sender({"bootstrap.servers": "fake:9092"}, TOPIC)
    [fake] = producer
    fake.reports = [KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)]
    with pytest.raises(NotAuthorized) as refused:
        sender.send([(b"k", b"v")])
    assert str(refused.value) == WRITE
    with pytest.raises(NotAuthorized):  # and every call after: nothing more is sent
        sender.send([(b"k", b"v")])
    assert fake.queued == 1


def test_another_failed_delivery_is_counted_and_sending_goes_on(
    producer: list[FakeProducer],
) -> None:
    sender = Sender({"bootstrap.servers": "fake:9092"}, TOPIC)
    producer[0].reports = [KafkaError(KafkaError._MSG_TIMED_OUT)]
    sender.send([(b"k", b"v")])
    sender.send([(b"k", b"v")])
    assert (sender.sent, sender.failed, sender.stopped) == (2, 1, None)


@pytest.mark.parametrize("wrapped", [False, True])
def test_no_producer_id_for_want_of_write_is_a_refusal_not_an_internal_error(
    producer: list[FakeProducer], wrapped: bool
) -> None:
    """confluent-kafka raises a fatal error from flush, as a SystemError over the
    KafkaException when a delivery report is served in the same call (seen with 2.16)."""
    sender = Sender({"bootstrap.servers": "fake:9092"}, TOPIC)
    fatal = KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, fatal=True))
    if wrapped:
        try:
            raise SystemError("returned a result with an exception set") from fatal
        except SystemError as exc:
            producer[0].fatal = exc  # type: ignore[assignment]
    else:
        producer[0].fatal = fatal
    with pytest.raises(NotAuthorized) as refused:
        sender.flush(1.0)
    assert str(refused.value) == WRITE


def test_a_fatal_error_met_by_produce_itself_stops_the_sender(
    producer: list[FakeProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = Sender({"bootstrap.servers": "fake:9092"}, TOPIC)
    fatal = KafkaException(KafkaError(KafkaError._FATAL, "fatal error raised", fatal=True))

    def produce(topic: str, value: bytes, key: bytes) -> None:
        raise fatal

    monkeypatch.setattr(producer[0], "produce", produce)
    with pytest.raises(BrokerError, match="the producer stopped: fatal error raised"):
        sender.send([(b"k", b"v")])
    assert sender.stopped is not None


def test_another_fatal_producer_error_is_one_broker_error(producer: list[FakeProducer]) -> None:
    sender = Sender({"bootstrap.servers": "fake:9092"}, TOPIC)
    producer[0].fatal = KafkaException(
        KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "epoch", fatal=True)
    )
    with pytest.raises(BrokerError, match="the producer stopped: epoch"):
        sender.flush(1.0)


class FakeConsumer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.batches: list[list[Message]] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def consume(self, count: int, timeout: float) -> list[Message]:
        return self.batches.pop(0) if self.batches else []


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> tuple[Consumed, FakeConsumer]:
    made: list[FakeConsumer] = []

    def make(config: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(config))
        return made[-1]

    monkeypatch.setattr(kafka_io.consume, "Consumer", make)
    consumed = Consumed({"bootstrap.servers": "fake:9092"}, TOPIC, GROUP, from_beginning=True)
    return consumed, made[0]


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            f"not authorized to READ topic {TOPIC!r} (grant READ on topic {TOPIC!r})",
        ),
        (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            f"not authorized to READ group {GROUP!r} (grant READ on group {GROUP!r})",
        ),
    ],
)
def test_a_refused_read_or_join_stops_the_consume_loop(
    consumer: tuple[Consumed, FakeConsumer], code: int, line: str
) -> None:
    consumed, fake = consumer
    fake.batches = [[Message(topic=TOPIC, error=KafkaError(code))]]  # no partition, no offset
    with pytest.raises(NotAuthorized) as refused:
        consumed.poll(10, 0.1)
    assert str(refused.value) == line


def test_a_refusal_told_only_to_the_error_callback_stops_the_next_poll(
    consumer: tuple[Consumed, FakeConsumer],
) -> None:
    consumed, fake = consumer
    fake.config["error_cb"](KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))
    with pytest.raises(NotAuthorized, match=f"READ group {GROUP!r}"):
        consumed.poll(10, 0.1)


def test_another_error_is_reported_and_the_loop_goes_on(
    consumer: tuple[Consumed, FakeConsumer],
) -> None:
    consumed, fake = consumer
    refused = KafkaError(KafkaError._TRANSPORT, "Connection refused")
    fake.batches = [[Message(topic=TOPIC, error=refused)]]
    assert consumed.poll(10, 0.1).errors == ["Connection refused"]
    assert consumed.poll(10, 0.1).values == {}
