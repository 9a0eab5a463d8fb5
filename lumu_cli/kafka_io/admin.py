"""Topics and groups: whether a topic exists, its creation and layout, the state topic's
check, a group's members and deletion, and the end offsets of a topic's partitions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    OffsetSpec,
)
from confluent_kafka.cimpl import NewTopic

from lumu_cli.acls import GROUP, TOPIC, Acl, not_visible
from lumu_cli.errors import BrokerError, NotAuthorized, StateError
from lumu_cli.kafka_io.clients import _TRY_SECONDS, _admin, _asked_again, _describe, _refusals


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


def topic_exists(config: dict[str, str], topic: str, timeout: float, grant: Acl) -> bool:
    """Whether `topic` exists (BrokerError if no broker answers within `timeout` s).

    Kafka lists only the topics the principal may DESCRIBE. One not listed is asked about by
    name, and if the broker refuses to say, that is NotAuthorized, naming `grant`: the ACL of
    the command that implies DESCRIBE.
    """
    admin = _admin(config)
    if topic in _topics(admin, config, timeout):
        return True
    _check_visible(admin, topic, timeout, grant)
    return False


def _check_visible(admin: AdminClient, topic: str, timeout: float, grant: Acl) -> None:
    """NotAuthorized if the principal may not DESCRIBE `topic` (whether it exists or not)."""
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise not_visible(grant) from None
    except TimeoutError:  # said of the topic list already, if the broker is gone
        pass


def ensure_topic(
    config: dict[str, str],
    topic: str,
    partitions: int,
    timeout: float,
    settings: dict[str, str] | None = None,
    replication: int | None = None,
    *,
    grant: Acl | None = None,
) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True if it was created.

    Its replication factor is `replication`, or (None) the cluster's default.replication.factor,
    as Kafka Streams does since 3.0. `grant`: the ACL that lets the principal see it (above).
    """
    admin = _admin(config)
    if topic in _topics(admin, config, timeout):
        return False
    _check_visible(admin, topic, timeout, grant or Acl("DESCRIBE", TOPIC, topic))
    new = NewTopic(topic, partitions, replication or -1, config=settings or {})
    future = admin.create_topics([new], request_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        code = exc.args[0].code()
        if code == KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile
            return False
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            raise Acl("CREATE", TOPIC, topic).refused() from None
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
    grant = Acl("READ", TOPIC, topic)
    created = ensure_topic(config, topic, 1, timeout, STATE_TOPIC_CONFIG, replication, grant=grant)
    return created, check_state_topic(config, topic, timeout)


def check_state_topic(config: dict[str, str], topic: str, timeout: float) -> TopicLayout:
    """The state topic's layout; StateError unless it is compacted: retention would delete it."""
    try:
        layout = describe_topic(config, topic, timeout)
    except NotAuthorized:
        raise
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
            if meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise not_visible(Acl("READ", TOPIC, topic))
            raise KafkaException(meta.error)
        asked = admin.describe_configs([resource], request_timeout=wait)[resource]
        try:
            configs = asked.result(timeout=wait)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise Acl("DESCRIBE_CONFIGS", TOPIC, topic).refused() from None
            raise
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


def group_members(config: dict[str, str], group: str, timeout: float) -> int:
    """How many members the consumer group has right now (0 for a group that does not exist)."""
    admin = _admin(config)  # kept until the answer: its futures die with it
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        return len(future.result(timeout=timeout).members)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            raise Acl("READ", GROUP, group).refused("DESCRIBE") from None
        raise BrokerError(f"cannot describe group {group!r}: {_describe(exc)}") from None


def delete_group(config: dict[str, str], group: str, timeout: float) -> None:
    """Delete an empty group and its committed offsets (nothing to do if there is none)."""
    admin = _admin(config)  # kept until the answer: its futures die with it
    future = admin.delete_consumer_groups([group], request_timeout=timeout)[group]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            raise Acl("DELETE", GROUP, group).refused() from None
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
