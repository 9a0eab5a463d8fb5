"""The only module that imports confluent_kafka: client config, topic admin, producer, consumer.

Everything librdkafka reports is turned into lumu's own values here: a `BrokerError` with one
line to say, a `Polled` batch of record values grouped by partition, plain numbers for offsets.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import compress, pairwise
from operator import ne
from pathlib import Path
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    OffsetSpec,
)
from confluent_kafka.cimpl import NewTopic

from lumu_cli.errors import BrokerError, StateError, UsageError

__all__ = [
    "OFFSET_BEGINNING",
    "CommitFailed",
    "Consumed",
    "Polled",
    "Sender",
    "StateReader",
    "Transactions",
    "check_state_topic",
    "client_config",
    "ensure_state_topic",
    "ensure_topic",
    "topic_exists",
]


DEFAULT_BOOTSTRAP = "localhost:9092"


def client_config(
    bootstrap: str | None, settings: Sequence[str] = (), file: Path | None = None
) -> dict[str, str]:
    """librdkafka properties: those of `file` (a client.properties file, as kcat -F reads it),
    then `--bootstrap-servers`, then each `-X key=value`; a later one wins."""
    config = {
        # librdkafka drops the bootstrap connection once it knows the brokers, and waits half of
        # this (default 100 ms) before it connects to them: every client started 40 ms sooner
        "reconnect.backoff.ms": "10",
        **(read_properties(file) if file is not None else {}),
    }
    if bootstrap is not None:
        config["bootstrap.servers"] = bootstrap
    config.setdefault("bootstrap.servers", DEFAULT_BOOTSTRAP)
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-X {key!r}: expected key=value, e.g. -X security.protocol=SSL")
        config[key.strip()] = value
    return config


def read_properties(path: Path) -> dict[str, str]:
    """The properties of a Java-style properties file: key=value (or key: value) lines, # and !
    comments, backslash escapes and continued lines. Errors name the file, never a value."""
    import javaproperties  # (here: only -F needs it)

    try:
        with path.open(encoding="utf-8") as file:
            properties: dict[str, str] = javaproperties.load(file)
    except OSError as exc:
        raise UsageError(f"-F {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"-F {str(path)!r}: not UTF-8 text") from None
    if "sasl.jaas.config" in properties:  # what a Java client's file holds
        raise UsageError(
            f"-F {str(path)!r}: sasl.jaas.config is a Java client setting; librdkafka takes "
            "sasl.username and sasl.password instead"
        )
    return properties


def _describe(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    text = error.str() if isinstance(error, KafkaError) else str(error)
    return text.rstrip(".")


def _admin(config: dict[str, str]) -> AdminClient:
    """An admin client for `config`, shared: each new one costs a connection and a handshake."""
    return _shared_admin(tuple(sorted(config.items())))


@functools.lru_cache(maxsize=4)
def _shared_admin(config: tuple[tuple[str, str], ...]) -> AdminClient:
    settings: dict[str, Any] = dict(config)
    settings.update(log_level=0, error_cb=_note_refusal(settings.get("bootstrap.servers", "")))
    return _client(AdminClient, settings)


Client = TypeVar("Client", AdminClient, Consumer, Producer)


def _client(kind: Callable[[dict[str, Any]], Client], settings: dict[str, Any]) -> Client:
    """A librdkafka client; a setting it refuses (such as -X enable.idempotence=false for the
    state's transactions) is a usage error, told at once."""
    try:
        return kind(settings)
    except KafkaException as exc:
        raise UsageError(f"bad Kafka client setting: {_describe(exc)}") from None


# Why brokers turned a client away (bootstrap servers -> librdkafka's reason, which names
# neither user nor password): a wrong password or an untrusted certificate otherwise shows only
# as a metadata request timing out.
_refusals: dict[str, str] = {}
_REFUSED = {
    KafkaError._AUTHENTICATION: "check sasl.username, sasl.password and sasl.mechanisms",
    KafkaError.SASL_AUTHENTICATION_FAILED: "check sasl.username, sasl.password and sasl.mechanisms",
    KafkaError._SSL: "check ssl.ca.location, or the broker's certificate",
}


def _note_refusal(where: str) -> Callable[[KafkaError], None]:
    def note(error: KafkaError) -> None:
        if error.code() in _REFUSED:
            _refusals[where] = f"{_describe(KafkaException(error))}; {_REFUSED[error.code()]}"

    return note


def _topics(admin: AdminClient, config: dict[str, str], timeout: float) -> set[str]:
    """The topics, asked for in half-second tries, so that a refusal is told at once."""
    where, deadline = config["bootstrap.servers"], time.monotonic() + timeout
    while True:
        try:
            wait = min(_TRY_SECONDS, max(0.01, deadline - time.monotonic()))
            return set(admin.list_topics(timeout=wait).topics)
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks that say why
            if refusal := _refusals.get(where):
                raise BrokerError(f"Kafka at {where} refused lumu: {refusal}") from None
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"cannot reach Kafka at {where} within {timeout:g} s ({_describe(exc)}); "
                    "is a broker running? (scripts/kafka-broker start)"
                ) from None


_TRY_SECONDS = 0.5


def topic_exists(config: dict[str, str], topic: str, timeout: float) -> bool:
    """Whether `topic` exists (BrokerError if no broker answers within `timeout` s)."""
    return topic in _topics(_admin(config), config, timeout)


def ensure_topic(
    config: dict[str, str],
    topic: str,
    partitions: int,
    timeout: float,
    settings: dict[str, str] | None = None,
    replication: int | None = None,
) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True if it was created.

    Its replication factor is `replication`, or (None) the cluster's default.replication.factor,
    as Kafka Streams does since 3.0.
    """
    admin = _admin(config)
    if topic in _topics(admin, config, timeout):
        return False
    new = NewTopic(topic, partitions, replication or -1, config=settings or {})
    future = admin.create_topics([new], request_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile
            return False
        raise BrokerError(f"cannot create topic {topic!r}: {_describe(exc)}") from None
    return True


# Compaction keeps the latest record of each key. Segments of 64 MiB roll (and so get compacted)
# well before the default 1 GiB, so a restore reads little more than the live state.
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": str(64 << 20)}


@dataclass(frozen=True)
class TopicLayout:
    """How a topic is kept: its replicas, the in-sync replicas a write needs, and the cluster."""

    replication: int
    min_isr: int
    brokers: int
    cleanup_policy: str


def ensure_state_topic(
    config: dict[str, str], topic: str, timeout: float, replication: int | None = None
) -> tuple[bool, TopicLayout]:
    """Create the compacted state topic unless it exists; whether it was created, and its layout.

    StateError if it is not compacted: retention would delete the state.
    """
    created = ensure_topic(config, topic, 1, timeout, STATE_TOPIC_CONFIG, replication)
    return created, check_state_topic(config, topic, timeout)


def check_state_topic(config: dict[str, str], topic: str, timeout: float) -> TopicLayout:
    """The state topic's layout; StateError unless it is compacted: retention would delete it."""
    try:
        layout = describe_topic(config, topic, timeout)
    except BrokerError as exc:
        raise StateError(f"cannot read the config of state topic {topic!r}: {exc}") from None
    if "compact" not in layout.cleanup_policy.split(","):
        raise StateError(
            f"state topic {topic!r} has cleanup.policy={layout.cleanup_policy}, not compact: its "
            "state would be deleted by retention (set cleanup.policy=compact, or use another group)"
        )
    return layout


def describe_topic(config: dict[str, str], topic: str, timeout: float) -> TopicLayout:
    """`topic`'s layout. A topic another client has just created may not have reached the broker
    asked yet (on a cluster): "unknown topic" is asked again until `timeout`. BrokerError after
    that, or on any other error."""
    admin, deadline = _admin(config), time.monotonic() + timeout
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)

    def ask() -> TopicLayout:
        wait = max(0.01, deadline - time.monotonic())
        found = admin.list_topics(topic, timeout=wait)
        meta = found.topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        asked = admin.describe_configs([resource], request_timeout=wait)[resource]
        try:
            configs = asked.result(timeout=wait)
        except TimeoutError:
            why = f"no answer within {timeout:g} s"
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, why)) from None
        return TopicLayout(
            replication=min((len(p.replicas) for p in meta.partitions.values()), default=0),
            min_isr=int(configs["min.insync.replicas"].value or 1),
            brokers=len(found.brokers),
            cleanup_policy=configs["cleanup.policy"].value or "",
        )

    try:
        return _asked_again(ask, lambda code: code == KafkaError.UNKNOWN_TOPIC_OR_PART, deadline)
    except KafkaException as exc:
        raise BrokerError(_describe(exc)) from None


Answer = TypeVar("Answer")


def _asked_again(
    ask: Callable[[], Answer], again: Callable[[int], bool], deadline: float
) -> Answer:
    """ask()'s answer; a KafkaException whose code `again` holds for is asked again, in
    half-second tries, until `deadline`; any other, or one past it, is raised."""
    while True:
        try:
            return ask()
        except KafkaException as exc:
            if not again(exc.args[0].code()) or time.monotonic() >= deadline:
                raise
        time.sleep(min(_TRY_SECONDS, max(0.0, deadline - time.monotonic())))


def group_members(config: dict[str, str], group: str, timeout: float) -> int:
    """How many members the consumer group has right now (0 for a group that does not exist)."""
    admin = _admin(config)  # kept until the answer: its futures die with it
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        return len(future.result(timeout=timeout).members)
    except KafkaException as exc:
        raise BrokerError(f"cannot describe group {group!r}: {_describe(exc)}") from None


def delete_group(config: dict[str, str], group: str, timeout: float) -> None:
    """Delete an empty group and its committed offsets (nothing to do if there is none)."""
    admin = _admin(config)  # kept until the answer: its futures die with it
    future = admin.delete_consumer_groups([group], request_timeout=timeout)[group]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise BrokerError(f"cannot delete group {group!r}: {_describe(exc)}") from None


class Ends:
    """The end offsets of a topic's partitions, asked for in the background, read without wait."""

    def __init__(self, config: dict[str, str], topic: str) -> None:
        self.topic = topic
        self.latest: dict[int, int] = {}
        self._admin = _admin(config)
        self._asked: dict[Any, Future[Any]] = {}

    def refresh(self, partitions: Iterable[int]) -> None:
        """Take the answers that came, and ask again for `partitions` if nothing is pending."""
        if self._asked and not all(future.done() for future in self._asked.values()):
            return
        for tp, future in self._asked.items():
            with contextlib.suppress(KafkaException):
                self.latest[tp.partition] = future.result().offset
        wanted = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in partitions}  # type: ignore[no-untyped-call]
        self._asked = self._admin.list_offsets(wanted, request_timeout=5) if wanted else {}


@dataclass
class Sender:
    """An idempotent producer (acks=all) that counts the records sent and the deliveries failed.

    librdkafka reports failed deliveries only (delivery.report.only.error), so no Python code
    runs per delivered record: a record sent is delivered once it has neither failed nor is
    still in librdkafka's queue.
    """

    config: dict[str, str]
    topic: str
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    _producer: Producer = field(init=False)

    def __post_init__(self) -> None:
        self._producer = _client(
            Producer,
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "message.timeout.ms": 30_000,  # a dead broker fails deliveries in 30 s, not 5 min
                "delivery.report.only.error": True,
                "log_level": 0,
                **self.config,
                "on_delivery": self._report,
            },
        )

    @property
    def delivered(self) -> int:
        """Records sent that have not failed and are no longer queued."""
        return self.sent - self.failed - len(self._producer)

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:  # (a success is reported too if -X turns error-only off)
            self.failed += 1
            self.first_error = self.first_error or error.str()

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Queue records (key, value); waits for room when librdkafka's queue is full."""
        produce, topic = self._producer.produce, self.topic
        for key, value in records:
            try:
                produce(topic, value, key)
            except BufferError:
                self._send_when_room(key, value)
        self.sent += len(records)
        self._producer.poll(0)

    def _send_when_room(self, key: bytes, value: bytes) -> None:
        """Serve delivery reports until librdkafka's queue takes the record."""
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, then serve the delivery reports that came meanwhile.

        A sleep, not a poll(seconds): that returns early each time records go out, and so would
        wake a paced run twice as often.
        """
        time.sleep(seconds)
        self._producer.poll(0)

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
    local: bool = True  # counted here; else followed through its owner's snapshots
    as_of: str | None = None  # when the snapshot followed was written

    @property
    def lag(self) -> int | None:
        """Records between the position and the end, when both are known."""
        if self.position is None or self.end is None:
            return None
        return max(self.end - self.position, 0)


class Rebalance(Protocol):
    """Told of each change of assignment, inside the consumer's poll (cooperative: only changes)."""

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        """Get ready to count `partitions`; the offset to start each at (if not the committed)."""

    def revoked(self, partitions: list[int]) -> None:
        """`partitions` are given up, cleanly: the last chance to save their state."""

    def lost(self, partitions: list[int]) -> None:
        """`partitions` were taken away (session timed out): others may own them already."""


class Consumed:
    """A consumer-group member that reads `topic`, with cooperative incremental rebalancing.

    Without `durable`, offsets are stored when told (`done`) and committed every 5 s; with it,
    they are committed only within state transactions (`Transactions.commit`). `to_the_end`:
    the reader stops at the end of every partition, so ends are told at once.

    Not `subscribe`d (the topic does not exist yet), each poll looks for the topic once a second
    (`waiting` says what for) and subscribes once it is there, from its beginning: every record
    in it was written after the wait began.
    """

    def __init__(
        self,
        config: dict[str, str],
        topic: str,
        group: str,
        *,
        from_beginning: bool,
        durable: bool = False,
        to_the_end: bool = False,
        subscribe: bool = True,
    ) -> None:
        self.topic = topic
        self.group = group
        self.from_beginning = from_beginning
        self.listener: Rebalance | None = None
        self.brokers_up = threading.Event()
        self.brokers_up.set()
        self.assigned: set[int] = set()
        self.last_stats = time.monotonic()
        self._consumer = _client(
            Consumer,
            {
                "group.id": group,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.offset.store": False,  # stored after counting: at least once
                "enable.auto.commit": not durable,
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.partition.eof": True,
                "statistics.interval.ms": 1000,
                "fetch.max.bytes": 64 << 20,
                # librdkafka pauses a partition's fetching for 1 s (the default) whenever its
                # local queue is full; 10 ms keeps a consumer that keeps up from stalling
                "fetch.queue.backoff.ms": 10,
                # how long the broker holds a fetch that finds nothing new (default 500 ms): the
                # end of an empty partition is known only then. Reading to the end, 10 ms; else
                # 100 ms, or ten fetches a second to each broker while the topic is idle.
                "fetch.wait.max.ms": 10 if to_the_end else 100,
                "log_level": 0,
                **config,
                "error_cb": self._error,
                "stats_cb": self._stats,
            },
        )
        where = config.get("bootstrap.servers", DEFAULT_BOOTSTRAP)
        self.waiting = None if subscribe else f"topic {topic!r} on {where}"
        self._looked = 0.0
        if subscribe:
            self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
        )

    def _look_for_topic(self, timeout: float) -> None:
        """While waiting: once a second, subscribe if the topic is there now."""
        if time.monotonic() - self._looked >= 1.0:
            self._looked = time.monotonic()
            with contextlib.suppress(KafkaException):
                found = self._consumer.list_topics(self.topic, timeout=1).topics[self.topic]
                if found.error is None and found.partitions:
                    self.from_beginning, self.waiting = True, None
                    self._subscribe()
                    return
        self._consumer.poll(timeout)  # serves the callbacks: brokers_up stays true

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
        numbers = [tp.partition for tp in partitions]
        starts = self.listener.assigned(numbers) if self.listener is not None else {}
        for tp in partitions:
            tp.offset = starts.get(tp.partition, tp.offset)
        consumer.incremental_assign(partitions)
        self.assigned |= set(numbers)

    def _revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        if self.listener is not None:
            self.listener.revoked(numbers)
        self.assigned -= set(numbers)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        self.assigned -= set(numbers)
        if self.listener is not None:
            self.listener.lost(numbers)

    def group_metadata(self) -> object:
        """This member's group metadata (generation included), for a transaction's offsets."""
        return self._consumer.consumer_group_metadata()

    def member_id(self) -> str:
        """This member's id in the group ("" while it has none: not joined, or timed out)."""
        return self._consumer.memberid() or ""

    def committed(self, partitions: Iterable[int], timeout: float) -> dict[int, int]:
        """The group's committed offset of each partition that has one."""
        asked = [TopicPartition(self.topic, p) for p in partitions]
        try:
            found = self._consumer.committed(asked, timeout=timeout)
        except KafkaException as exc:
            raise BrokerError(f"cannot read the committed offsets: {_describe(exc)}") from None
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def partition_count(self) -> int | None:
        """How many partitions the topic has (None if the broker does not say within a second)."""
        try:
            found = self._consumer.list_topics(self.topic, timeout=1).topics[self.topic]
        except KafkaException:
            return None
        return len(found.partitions) if found.error is None and found.partitions else None

    def bounds(self, partition: int, timeout: float) -> tuple[int, int]:
        """The first and the next offset of `partition`, asked of the broker now."""
        tp = TopicPartition(self.topic, partition)
        try:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        except KafkaException as exc:
            why = f"cannot read the offsets of {tp.topic}/{partition}: {_describe(exc)}"
            raise BrokerError(why) from None
        return int(low), int(high)

    def poll(self, max_records: int, timeout: float) -> Polled:
        """Up to `max_records` records, waiting at most `timeout` seconds for the first."""
        if self.waiting is not None:
            self._look_for_topic(timeout)
            return Polled()
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
        partitions: list[int] = list(map(Message.partition, messages))  # type: ignore[arg-type]
        values = list(map(Message.value, messages))
        offsets: list[int] = list(map(Message.offset, messages))  # type: ignore[arg-type]
        if partitions.count(partitions[0]) == len(partitions):
            batch.values[partitions[0]], batch.offsets[partitions[0]] = values, offsets
        else:  # a fetch brings runs of one partition's records: cut at each change
            changes = compress(range(1, len(partitions)), map(ne, partitions[1:], partitions))
            for start, end in pairwise([0, *changes, len(partitions)]):
                partition = partitions[start]
                batch.values.setdefault(partition, []).extend(values[start:end])
                batch.offsets.setdefault(partition, []).extend(offsets[start:end])
        batch.at_end = dict.fromkeys(batch.values, False)
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
        """Commit the stored offsets and leave the group (the listener has had its last word)."""
        self.listener = None
        # Nothing stored yet, or the broker is gone: then those records will be read again.
        with contextlib.suppress(KafkaException):
            self._consumer.commit(asynchronous=False)
        self._consumer.close()


class CommitFailed(Exception):
    """A state transaction did not commit (aborted); its records and offsets are not stored.

    `refused`: the group coordinator refused the offsets because this member is no longer in the
    group's current generation (KIP-447): a zombie, whose partitions others own now.
    """

    def __init__(self, why: str, *, refused: bool = False) -> None:
        super().__init__(why)
        self.refused = refused


# The group coordinator's answers to the offsets of a member it has fenced. Not
# REBALANCE_IN_PROGRESS: through a cooperative rebalance the member may keep its partitions.
FENCED = frozenset(
    {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}
)


_QUIET = logging.getLogger("lumu.state-producer")  # librdkafka's log lines, dropped
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

TXN_SECONDS = 5.0  # librdkafka's timeout for each step of a state transaction
WEDGED_SECONDS = 4 * TXN_SECONDS  # how long the consume loop waits for a whole one, at most


class Pending:
    """A state transaction under way in a thread of its own (`Transactions.begin`).

    Its outcome is waited for at most WEDGED_SECONDS from its start: when the group coordinator
    moves (a broker restarts), librdkafka's send_offsets_to_transaction can ignore its own
    timeout (librdkafka#5456). Such a producer is abandoned, and the next commit starts a new one
    with the same transactional.id, which fences whatever the old one left open.
    """

    def __init__(self, owner: Transactions, producer: Producer) -> None:
        self.owner = owner
        self.producer = producer
        self.started = time.monotonic()
        self.outcome: list[tuple[KafkaException | None, bool]] = []
        self.worker: threading.Thread | None = None

    def done(self) -> bool:
        """Whether `result` would answer at once: finished, or given up on."""
        return bool(self.outcome) or time.monotonic() - self.started >= WEDGED_SECONDS

    def result(self, wait: float | None = None) -> None:
        """Wait for the outcome (at most `wait` s, and no later than WEDGED_SECONDS from the
        start); CommitFailed unless it committed. One not over by then is abandoned."""
        if self.worker is not None:
            left = self.started + WEDGED_SECONDS - time.monotonic()
            self.worker.join(max(0.0, left if wait is None else min(wait, left)))
        if not self.outcome:
            self.owner.abandoned += 1
            self.owner._drop(self.producer)
            waited = time.monotonic() - self.started
            raise CommitFailed(f"no answer within {waited:.1f} s; starting afresh")
        error, usable = self.outcome[0]
        if not usable:
            self.owner._drop(self.producer)
        if error is not None:
            raise CommitFailed(_describe(error), refused=error.args[0].code() in FENCED)


class Transactions:
    """A transactional producer of state records, each commit with the group's offsets.

    The offsets go in with the consumer's group metadata (KIP-447): a member that has lost its
    partitions (a zombie) has an old generation, the group coordinator refuses its offsets and the
    whole transaction is aborted, so its snapshot never becomes visible.
    """

    def __init__(
        self,
        config: dict[str, str],
        topic: str,
        group: str,
        timeout: float,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.hook = hook  # told "mid-commit" once a transaction is written, before its commit
        self._config = {
            "transactional.id": f"lumu-{group}-{uuid.uuid4().hex[:12]}",
            # a killed instance's open transaction holds readers back this long, at most
            "transaction.timeout.ms": 10_000,
            "linger.ms": 5,
            "log_level": 0,
            # An abandoned producer is fenced by its successor, and librdkafka logs that as
            # FATAL, which log_level 0 still prints: lumu tells its commits' failures itself.
            "logger": _QUIET,
            **config,
        }
        self._producer: Producer | None = None
        self.abandoned = 0  # producers left in a transaction that did not answer in time
        first = _client(
            Producer, self._config
        )  # a setting librdkafka refuses is told now, not in a thread
        # init_transactions takes about half a second: started now, it overlaps the group join
        self._early = threading.Thread(target=self._start_early, args=(first,), daemon=True)
        self._early.start()

    def _start_early(self, producer: Producer) -> None:
        with contextlib.suppress(BrokerError):  # the first commit tries again, and says why
            self._producer = self._start(producer)

    def _start(self, producer: Producer | None = None) -> Producer:
        producer = producer or _client(Producer, self._config)
        try:
            # librdkafka's first look for the transaction coordinator can find no broker up
            # yet, and it looks again only 500 ms later. A metadata request first (of all
            # topics: one of a single topic did not help, when measured) avoids that.
            producer.list_topics(timeout=self.timeout)
            producer.init_transactions(self.timeout)
        except KafkaException as exc:
            raise BrokerError(f"cannot start state transactions: {_describe(exc)}") from None
        return producer

    def commit(
        self,
        records: Sequence[tuple[bytes, bytes | None]],
        offsets: dict[int, int],
        source: Consumed | None,
    ) -> None:
        """Write `records` and commit `offsets` for `source`'s group, all or nothing, and wait.

        CommitFailed if it did not commit: nothing of it is visible, and the next try starts
        afresh.
        """
        self.begin(records, offsets, source).result()

    def begin(
        self,
        records: Sequence[tuple[bytes, bytes | None]],
        offsets: dict[int, int],
        source: Consumed | None,
    ) -> Pending:
        """Start the transaction of `commit` in a thread of its own; its outcome comes later.

        CommitFailed at once if it cannot start (no member of the group now, no producer).
        """
        positions, group = [], None
        if source is not None and offsets:
            positions = [TopicPartition(source.topic, p, o) for p, o in sorted(offsets.items())]
            group = source.group_metadata()
            # librdkafka forgets its member id when its session times out; the coordinator takes
            # offsets without a member (as from producers before KIP-447) without checking them
            if not source.member_id():
                raise CommitFailed(f"not a member of group {source.group!r} now", refused=True)
        self._early.join()
        try:
            producer = self._producer = self._producer or self._start()
        except BrokerError as exc:
            raise CommitFailed(str(exc)) from None
        pending = Pending(self, producer)
        worker = threading.Thread(
            target=lambda: pending.outcome.append(
                self._transact(producer, records, positions, group)
            ),
            name="lumu-state-commit",
            daemon=True,  # a wedged one must not hold the process at exit
        )
        pending.worker = worker
        worker.start()
        return pending

    def _drop(self, producer: Producer) -> None:
        """Use a new producer next time (the same transactional.id: it fences this one)."""
        if self._producer is producer:
            self._producer = None

    def _transact(
        self,
        producer: Producer,
        records: Sequence[tuple[bytes, bytes | None]],
        positions: list[TopicPartition],
        group: object,
    ) -> tuple[KafkaException | None, bool]:
        """One transaction: (None or its error, whether the producer can be used again)."""
        try:
            producer.begin_transaction()
            for key, value in records:
                while True:
                    try:
                        producer.produce(self.topic, value, key, partition=0)
                        break
                    except BufferError:
                        producer.poll(0.05)
            if group is not None:
                producer.send_offsets_to_transaction(positions, group, TXN_SECONDS)
            if self.hook is not None:
                producer.flush(TXN_SECONDS)
                self.hook("mid-commit")
            producer.commit_transaction(TXN_SECONDS)
            return None, True
        except KafkaException as exc:
            if not exc.args[0].fatal():
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(TXN_SECONDS)
                    return exc, True
            with contextlib.suppress(KafkaException):  # dropped without waiting for its queue
                producer.purge()
            return exc, False

    def close(self) -> None:
        self._early.join()
        if self._producer is not None:
            with contextlib.suppress(KafkaException):
                self._producer.flush(TXN_SECONDS)


StateRow = tuple[int, bytes | None, bytes | None]  # offset, key, value


# Errors that waiting will not mend (others, such as a leader moving, librdkafka retries itself)
_PERMANENT = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}
)


class StateReader:
    """Reads the state topic from its start, read_committed: whole transactions only."""

    BATCH = 10_000

    def __init__(self, config: dict[str, str], topic: str, group: str, timeout: float) -> None:
        self.topic = topic
        self._consumer = _client(
            Consumer,
            {
                "group.id": f"{group}-lumu-state-reader",  # never joined, never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "log_level": 0,
                **config,
            },
        )
        self._admin = _admin(config)
        self.partitions = self._partitions(timeout)
        self._at: dict[int, int] = {}  # partition -> the offset read up to
        self.rewind()

    def _partitions(self, timeout: float) -> list[int]:
        """The topic's partitions, once its metadata has reached the broker (just created?)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                metadata = self._consumer.list_topics(self.topic, timeout=timeout).topics
                found = metadata[self.topic]
                why = found.error.str() if found.error is not None else ""
            except KafkaException as exc:
                why = _describe(exc)
            if not why and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() > deadline:
                raise StateError(
                    f"cannot read state topic {self.topic!r}: {why or 'no partitions'}"
                )
            time.sleep(0.1)

    def rewind(self) -> None:
        """Read again from the start."""
        start = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        self._consumer.assign(start)
        self._at = {}

    def read(self, timeout: float) -> list[StateRow]:
        """The committed records there are (up to BATCH): (offset, key, value), in order."""
        try:
            messages = self._consumer.consume(self.BATCH, timeout)
        except KafkaException as exc:
            raise StateError(f"reading state topic {self.topic!r}: {_describe(exc)}") from None
        records = []
        for message in messages:
            error, partition, offset = message.error(), message.partition(), message.offset()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                assert partition is not None
                assert offset is not None
                if error is None:
                    records.append((offset, message.key(), message.value()))
                    offset += 1
                self._at[partition] = offset  # at EOF: past transaction markers, to the end
            elif error.fatal() or error.code() in _PERMANENT:
                raise StateError(f"reading state topic {self.topic!r}: {error.str()}")
        return records

    def to_end(self, timeout: float, seconds: float) -> Iterator[list[StateRow]]:
        """Batches of records up to where the topic ends now; StateError after `seconds`.

        The end is the high watermark, past any transaction still open (a read_committed
        consumer sees only the stable end): reaching it waits for such a transaction to commit
        or abort, so a snapshot being committed as a partition changes hands is never missed.
        """
        ends = self._ends(timeout)
        deadline = time.monotonic() + seconds
        while not all(self._at.get(p, -1) >= end or end == 0 for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise StateError(
                    f"state topic {self.topic!r} could not be read to its end within "
                    f"{seconds:g} s (a transaction left open?)"
                )
            yield self.read(0.1)

    def _ends(self, timeout: float) -> dict[int, int]:
        """Each partition's end, past open transactions. A topic just created (by another
        instance, on a cluster) may have no leader known yet: asked again until `timeout`."""
        wanted = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in self.partitions}  # type: ignore[no-untyped-call]

        def ask() -> dict[int, int]:
            asked = self._admin.list_offsets(
                wanted, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=timeout
            )
            return {tp.partition: f.result(timeout=timeout).offset for tp, f in asked.items()}

        try:
            return _asked_again(
                ask, lambda code: code not in _PERMANENT, time.monotonic() + timeout
            )
        except KafkaException as exc:
            why = f"cannot reach state topic {self.topic!r}: {_describe(exc)}"
            raise StateError(why) from None

    def close(self) -> None:
        self._consumer.close()
