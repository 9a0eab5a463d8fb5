"""The independent reference count of a topic, for the integration tests.

It reads the topic with its own plain consumer and applies the rules as the README states them,
with the stdlib's json and ipaddress; only the timestamp rules come from lumu's definition
(`parse_timestamp`), which tests/test_timestamps.py holds to the README.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from lumu_cli.errors import InvalidTimestamp
from lumu_cli.timestamps import parse_timestamp


def reference_reason(value: bytes | None) -> tuple[str, int | bytes | None]:
    """(reason or "valid", canonical address) by the README's rules, written plainly."""
    if not value:
        return "empty", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", None
    try:
        obj = json.loads(text, parse_constant=lambda name: 1 / 0)  # NaN is not JSON
    except (ValueError, ZeroDivisionError):
        return "not_json", None
    if not isinstance(obj, dict):
        return "not_object", None
    if obj.get("device_ip") is None:
        return "missing_device_ip", None
    if not isinstance(obj["device_ip"], str):  # ip_address() would take 167772161 as 10.0.0.1
        return "bad_device_ip", None
    try:
        address = ipaddress.ip_address(obj["device_ip"])
    except ValueError:
        return "bad_device_ip", None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return "bad_device_ip", None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    stamp = obj.get("timestamp")
    if stamp is None:
        return "missing_timestamp", None
    if isinstance(stamp, bool) or not isinstance(stamp, str | int | float):
        return "bad_timestamp", None
    try:
        parse_timestamp(stamp)
    except InvalidTimestamp:
        return "bad_timestamp", None
    return "valid", address.packed


@dataclass
class Reference:
    unique_ips: int
    messages: int
    invalid: dict[str, int]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The current end of each partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reference"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, after: dict[int, int] | None = None) -> list[bytes | None]:
    """Every record value of `topic` (from the offsets `after`, if given) up to the current ends."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reference"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[bytes | None] = []
        seen = Counter[int]()
        deadline = time.monotonic() + 120
        while any(seen[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                assert message.error() is None, message.error()
                partition: int = message.partition()  # type: ignore[assignment]
                seen[partition] += 1
                if message.offset() >= (after or {}).get(partition, 0):  # type: ignore[operator]
                    values.append(message.value())
        assert sum(seen.values()) == sum(ends.values())
        return values
    finally:
        consumer.close()


def reference(bootstrap: str, topic: str, after: dict[int, int] | None = None) -> Reference:
    """The count of `topic`'s records (from the offsets `after`, if given), by the README."""
    results = [reference_reason(value) for value in read_all(bootstrap, topic, after)]
    invalid = Counter(reason for reason, _ in results if reason != "valid")
    unique = {address for reason, address in results if reason == "valid"}
    return Reference(len(unique), len(results), dict(sorted(invalid.items())))
