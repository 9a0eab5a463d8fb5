"""The consumer of `track` and `serve`: a group member with cooperative rebalancing, whose
polls come as `Polled` batches of values by partition."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress, pairwise
from operator import ne
from typing import Protocol

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from lumu_cli.acls import GROUP, TOPIC, Acl
from lumu_cli.errors import BrokerError, NotAuthorized
from lumu_cli.kafka_io.clients import DEFAULT_BOOTSTRAP, _client, _describe


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
        self.refused: NotAuthorized | None = None  # an authorization error, raised by poll
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
            if self.partition_count():
                self.from_beginning, self.waiting = True, None
                self._subscribe()
                return
        self._consumer.poll(timeout)  # serves the callbacks: brokers_up stays true

    def _error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_up.clear()
        self.refused = self.refused or self._refusal(error)

    def _refusal(self, error: KafkaError, operation: str | None = None) -> NotAuthorized | None:
        """What an authorization error says is missing (None for any other error)."""
        if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return Acl("READ", TOPIC, self.topic).refused(operation)
        if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            return Acl("READ", GROUP, self.group).refused(operation)
        return None

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
            if refused := self._refusal(exc.args[0], "DESCRIBE"):
                raise refused from None
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
        """Up to `max_records` records, waiting at most `timeout` seconds for the first.

        NotAuthorized if the broker refused to let this member read the topic or join the group:
        retrying does not mend that."""
        if self.refused is not None:
            raise self.refused
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
            elif refused := self._refusal(error):
                raise refused
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
