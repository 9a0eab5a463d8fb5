"""scripts/kafka-broker --nodes 3: a replicated local cluster, and its nodes killed, stopped and
started again, through the `cluster` fixture."""

from __future__ import annotations

import re
import socket
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # confluent_kafka.admin's, not re-exported
from confluent_kafka.cimpl import NewTopic

from tests.integration.helpers import Cluster, until


def brokers(bootstrap: str) -> set[int]:
    """The node ids the cluster's metadata lists."""
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers)


def create(bootstrap: str, topic: str) -> AdminClient:
    """TOPIC made with the broker's defaults (no partition count, no replication factor)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(topic)])[topic].result(30)
    return admin


def partitions(admin: AdminClient, topic: str) -> dict[int, Any]:
    """TOPIC's partitions as the broker asked knows them."""
    return admin.list_topics(topic, timeout=10).topics[topic].partitions


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def round_trip(bootstrap: str, topic: str, count: int) -> list[str]:
    """Produce COUNT messages with acks=all, all delivered, then read them back."""
    sent = [f"m{i}" for i in range(count)]
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for value in sent:
        producer.produce(topic, value.encode(), on_delivery=delivered)
    assert producer.flush(60) == 0, "not all delivered within 60 s"
    assert not failed, failed
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"lumu-test-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.subscribe([topic])
    read: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(read) < count and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                read.append(message.value().decode())  # type: ignore[union-attr]
    finally:
        consumer.close()
    return sorted(read, key=lambda value: int(value[1:]))


def test_start_lists_three_addresses_and_the_metadata_three_brokers(cluster: Cluster) -> None:
    addresses = cluster.bootstrap.split(",")
    assert len(addresses) == 3
    assert all(listening(address) for address in addresses)
    assert brokers(cluster.bootstrap) == {1, 2, 3}


def test_status_prints_one_line_per_node(cluster: Cluster) -> None:
    done = cluster.run("status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for node, (line, address) in enumerate(zip(lines, cluster.bootstrap.split(","), strict=True)):
        assert re.fullmatch(rf"node {node + 1} running {address} \(pid \d+\)", line), line


def test_a_topic_gets_replication_3_and_min_insync_2_by_default(
    cluster: Cluster, topic: str
) -> None:
    admin = create(cluster.bootstrap, topic)
    # the broker asked may not know of the topic yet
    until(lambda: len(partitions(admin, topic)) == 3, "the topic's 3 partitions", 10)
    assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions(admin, topic).values())
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["min.insync.replicas"].value == "2"


def test_a_killed_node_leaves_the_cluster_serving_and_start_brings_it_back(
    cluster: Cluster, topic: str
) -> None:
    create(cluster.bootstrap, topic)
    killed = cluster.bootstrap.split(",")[1]
    cluster.kill(2)
    try:
        assert not listening(killed)  # gone when kill returns
        status = cluster.run("status")
        assert status.returncode == 1
        assert "node 2 stopped" in status.stdout.splitlines()
        # acks=all with min.insync.replicas 2: served by the 2 nodes left, once the controller
        # has fenced node 2 (broker.session.timeout.ms, 9 s) and moved its leaders.
        assert round_trip(cluster.bootstrap, topic, 20) == [f"m{i}" for i in range(20)]
        until(lambda: brokers(cluster.bootstrap) == {1, 3}, "node 2 out of the metadata", 30)
    finally:
        cluster.start(2)
    assert brokers(cluster.bootstrap) == {1, 2, 3}  # start waited for it
    assert cluster.run("status").returncode == 0


def test_a_stopped_node_leaves_the_metadata_and_start_brings_it_back(cluster: Cluster) -> None:
    cluster.stop(3)
    try:
        assert not listening(cluster.bootstrap.split(",")[2])
        # a graceful stop: the controller fences the node at once, no session timeout
        until(lambda: brokers(cluster.bootstrap) == {1, 2}, "node 3 out of the metadata", 5)
    finally:
        cluster.start(3)
    assert brokers(cluster.bootstrap) == {1, 2, 3}
