"""The only module that imports confluent_kafka: client config, topic admin, producer, consumer.

Everything librdkafka reports is turned into lumu's own values here: a `BrokerError` with one
line to say, a `Polled` batch of record values grouped by partition, plain numbers for offsets.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from lumu_cli.errors import BrokerError, UsageError

__all__ = ["Consumed", "Polled", "Sender", "client_config", "ensure_topic", "require_topic"]


def client_config(bootstrap: str, settings: Sequence[str] = ()) -> dict[str, str]:
    """librdkafka properties from `--bootstrap-servers` and each `-X key=value` (as kcat takes)."""
    config = {"bootstrap.servers": bootstrap}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-X {setting!r}: expected key=value, e.g. -X security.protocol=SSL")
        config[key.strip()] = value
    return config


def _describe(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    text = error.str() if isinstance(error, KafkaError) else str(error)
    return text.rstrip(".")


def _admin(config: dict[str, str]) -> AdminClient:
    try:
        return AdminClient({**config, "log_level": 0})
    except KafkaException as exc:
        raise UsageError(f"bad Kafka client setting: {_describe(exc)}") from None


def _topics(admin: AdminClient, config: dict[str, str], timeout: float) -> set[str]:
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        where = config["bootstrap.servers"]
        raise BrokerError(
            f"cannot reach Kafka at {where} within {timeout:g} s ({_describe(exc)}); "
            "is a broker running? (scripts/kafka-broker start)"
        ) from None


def require_topic(config: dict[str, str], topic: str, timeout: float) -> None:
    """Check within `timeout` seconds that the broker answers and `topic` exists."""
    if topic not in _topics(_admin(config), config, timeout):
        raise BrokerError(f"topic {topic!r} does not exist on {config['bootstrap.servers']}")


def ensure_topic(config: dict[str, str], topic: str, partitions: int, timeout: float) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True if it was created."""
    admin = _admin(config)
    if topic in _topics(admin, config, timeout):
        return False
    future = admin.create_topics([NewTopic(topic, partitions)], request_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile
            return False
        raise BrokerError(f"cannot create topic {topic!r}: {_describe(exc)}") from None
    return True


@dataclass
class Sender:
    """An idempotent producer (acks=all) that counts delivery reports."""

    config: dict[str, str]
    topic: str
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    _producer: Producer = field(init=False)

    def __post_init__(self) -> None:
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "message.timeout.ms": 30_000,  # a dead broker fails deliveries in 30 s, not 5 min
                "log_level": 0,
                **self.config,
            }
        )

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or error.str()

    def send(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Queue records (key, value); waits for room when librdkafka's queue is full."""
        produce, poll, report = self._producer.produce, self._producer.poll, self._report
        for key, value in records:
            while True:
                try:
                    produce(self.topic, value, key, on_delivery=report)
                    break
                except BufferError:
                    poll(0.05)
        poll(0)

    def wait(self, seconds: float) -> None:
        """Serve delivery reports for up to `seconds` (instead of sleeping)."""
        self._producer.poll(seconds)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for deliveries; the number still undelivered."""
        left: int = self._producer.flush(timeout)
        return left


@dataclass
class Polled:
    """One batch from the consumer: record values by partition, partitions at their end."""

    values: dict[int, list[bytes | None]] = field(default_factory=dict)
    offsets: dict[int, list[int]] = field(default_factory=dict)
    at_end: dict[int, bool] = field(default_factory=dict)  # partition -> ends the batch at its end
    errors: list[str] = field(default_factory=list)


@dataclass
class PartitionInfo:
    """Where a partition stands: the next offset to read and the end (high watermark)."""

    partition: int
    position: int | None
    end: int | None

    @property
    def lag(self) -> int | None:
        """Records between the position and the end, when both are known."""
        if self.position is None or self.end is None:
            return None
        return max(self.end - self.position, 0)


class Consumed:
    """A consumer-group member that reads `topic`; offsets are stored only when told (`done`)."""

    def __init__(
        self, config: dict[str, str], topic: str, group: str, *, from_beginning: bool
    ) -> None:
        self.topic = topic
        self.from_beginning = from_beginning
        self.brokers_up = threading.Event()
        self.brokers_up.set()
        self.assigned: set[int] = set()
        self.last_stats = time.monotonic()
        self._consumer = Consumer(
            {
                "group.id": group,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.offset.store": False,  # stored after counting: at least once
                "enable.partition.eof": True,
                "statistics.interval.ms": 1000,
                "fetch.max.bytes": 64 << 20,
                # librdkafka pauses a partition's fetching for 1 s (the default) whenever its
                # local queue is full; 10 ms keeps a consumer that keeps up from stalling
                "fetch.queue.backoff.ms": 10,
                "log_level": 0,
                **config,
                "error_cb": self._error,
                "stats_cb": self._stats,
            }
        )
        self._consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke)

    def _error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_up.clear()

    def _stats(self, text: str) -> None:
        stats = json.loads(text)
        up = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        if up:
            self.brokers_up.set()
        else:
            self.brokers_up.clear()

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.from_beginning:  # as kcat -o beginning: committed offsets are not used
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            consumer.assign(partitions)
        self.assigned |= {tp.partition for tp in partitions}

    def _revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned -= {tp.partition for tp in partitions}

    def poll(self, max_records: int, timeout: float) -> Polled:
        """Up to `max_records` records, waiting at most `timeout` seconds for the first."""
        try:
            messages = self._consumer.consume(max_records, timeout)
        except KafkaException as exc:  # fatal: librdkafka retries everything else itself
            raise BrokerError(f"consuming {self.topic!r}: {_describe(exc)}") from None
        if any(map(Message.error, messages)):  # map over the C methods: no Python loop
            return self._poll_slowly(messages)
        batch = Polled()
        if not messages:
            return batch
        self.brokers_up.set()
        partitions = list(map(Message.partition, messages))
        values = list(map(Message.value, messages))
        offsets: list[int] = list(map(Message.offset, messages))  # type: ignore[arg-type]
        for partition in set(partitions):
            if partitions.count(partition) < len(partitions):
                rows = [row for row, p in enumerate(partitions) if p == partition]
                batch.values[partition] = [values[row] for row in rows]  # type: ignore[index]
                batch.offsets[partition] = [offsets[row] for row in rows]  # type: ignore[index]
            else:
                batch.values[partition], batch.offsets[partition] = values, offsets  # type: ignore[index]
            batch.at_end[partition] = False  # type: ignore[index]
        return batch

    def _poll_slowly(self, messages: list[Message]) -> Polled:
        """A batch with partition ends or errors among its records, taken in order."""
        batch = Polled()
        for message in messages:
            partition: int = message.partition()  # type: ignore[assignment]  # set on consumed records
            error = message.error()
            if error is None:
                batch.values.setdefault(partition, []).append(message.value())
                batch.offsets.setdefault(partition, []).append(message.offset())  # type: ignore[arg-type]
                batch.at_end[partition] = False
            elif error.code() == KafkaError._PARTITION_EOF:
                batch.at_end[partition] = True
            else:
                batch.errors.append(error.str())
        if batch.values:
            self.brokers_up.set()
        return batch

    def done(self, next_offsets: dict[int, int]) -> None:
        """Mark records up to (not including) each partition's next offset as counted."""
        mine = [
            TopicPartition(self.topic, p, o) for p, o in next_offsets.items() if p in self.assigned
        ]
        with contextlib.suppress(KafkaException):  # revoked meanwhile: its new owner reads them
            self._consumer.store_offsets(offsets=mine)

    def partitions(self) -> list[PartitionInfo]:
        """Position and end of each assigned partition (ends as last fetched: no request made)."""
        infos = []
        for partition in sorted(self.assigned):
            tp = TopicPartition(self.topic, partition)
            try:
                position = self._consumer.position([tp])[0].offset
                _, end = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                position, end = -1, -1
            infos.append(
                PartitionInfo(
                    partition, position if position >= 0 else None, end if end >= 0 else None
                )
            )
        return infos

    def close(self) -> None:
        """Commit the stored offsets and leave the group."""
        # Nothing stored yet, or the broker is gone: then those records will be read again.
        with contextlib.suppress(KafkaException):
            self._consumer.commit(asynchronous=False)
        self._consumer.close()
