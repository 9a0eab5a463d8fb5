"""Windowed exact counts by event time, on the real broker, against a reference that groups the
records by window itself.

The records' timestamps are spread over the last 40 hours in every common form, with some late
(100 hours old: before every kept hourly window) and some future (5 hours ahead), and invalid
records among them. The reference reads the topic with its own consumer, applies the rules as
the README states them (tests/integration/reference.py) and groups each valid record by the
UTC window of its own timestamp: a count that is right in lumu's memory but not in the state
topic, or not after a kill -9, fails. No record is near a kept range's edge, so the hour
turning during a test changes nothing.
"""

from __future__ import annotations

import json
import random
import signal
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from lumu_cli.timestamps import EPOCH, format_millis, parse_timestamp
from tests.integration.helpers import get, lumu, summary, together, until
from tests.integration.reference import read_all, reference_reason
from tests.integration.test_state import FAST_SESSION, create_topic

HOUR, DAY = 3_600_000, 86_400_000
WINDOWS = ("--window", "1h", "--window", "1d:7")
RECORDS = 6000


def stamp(instant: datetime, form: int) -> object:
    """`instant` in one of the forms devices send."""
    ms = (instant - EPOCH) // timedelta(milliseconds=1)
    utc = instant.astimezone(UTC)
    forms: list[object] = [
        format_millis(ms),  # ISO 8601 with Z
        ms // 1000,  # epoch seconds, a JSON number
        str(ms),  # epoch milliseconds, a string
        utc.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        format_datetime(utc.replace(microsecond=0), usegmt=True),  # RFC 5322 / HTTP date
        utc.strftime("%a %b %d %H:%M:%S %Y"),  # ctime
    ]
    return forms[form]


def write(bootstrap: str, topic: str, seed: int, count: int = RECORDS) -> None:
    """`count` records over the last 40 hours, 2% late, 1% future, 3% invalid."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(count):
        roll = rng.random()
        if roll < 0.02:
            when = now - timedelta(hours=100, minutes=rng.randrange(600))
        elif roll < 0.03:
            when = now + timedelta(hours=5, minutes=rng.randrange(600))
        else:
            when = now - timedelta(hours=1, seconds=rng.randrange(39 * 3600))
        ip = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(200)}"
        if rng.random() < 0.2:
            ip = f"2001:db8::{rng.randrange(3000):x}"
        body: dict[str, Any] = {"timestamp": stamp(when, n % 6), "device_ip": ip}
        value = json.dumps(body).encode() if rng.random() > 0.03 else b'{"device_ip": "nope"}'
        producer.produce(topic, value, ip.encode())
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def expected(bootstrap: str, topic: str, now_ms: int) -> dict[str, dict[str, Any]]:
    """Each size's windows by the reference: late, future, and per start (addresses, records)."""
    groups: dict[str, dict[str, Any]] = {}
    valid = []
    for value in read_all(bootstrap, topic):
        reason, address = reference_reason(value)
        if reason == "valid":
            instant = parse_timestamp(json.loads(value or b"")["timestamp"])
            valid.append(((instant - EPOCH) // timedelta(milliseconds=1), address))
    for name, size, keep in (("1h", HOUR, 48), ("1d", DAY, 7)):
        current = now_ms // size * size
        first, last = current - (keep - 1) * size, current + size
        sizes: dict[str, Any] = {"late": 0, "future": 0, "counts": {}}
        for ms, address in valid:
            start = ms // size * size
            if start < first:
                sizes["late"] += 1
            elif start > last:
                sizes["future"] += 1
            else:
                ips, records = sizes["counts"].get(start, (set(), 0))
                sizes["counts"][start] = (ips | {address}, records + 1)
        groups[name] = sizes
    return groups


def as_shown(windows: dict[str, Any]) -> dict[str, Any]:
    """lumu's `windows` in the reference's terms: late, future, start -> (unique IPs, records)."""
    return {
        name: {
            "late": sizes["late"],
            "future": sizes["future"],
            "counts": {
                millis(c["start"]): (c["unique_ips"], c["messages"]) for c in sizes["counts"]
            },
        }
        for name, sizes in windows.items()
    }  # fmt: skip


def reference_shown(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        name: {
            "late": sizes["late"],
            "future": sizes["future"],
            "counts": {start: (len(ips), n) for start, (ips, n) in sizes["counts"].items()},
        }
        for name, sizes in groups.items()
    }


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def millis(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


@pytest.fixture
def filled(bootstrap: str, topic: str) -> str:
    create_topic(bootstrap, topic, 3)
    write(bootstrap, topic, seed=20)
    return topic


def test_track_counts_each_window_exactly_and_a_restart_restores_them(
    bootstrap: str, filled: str
) -> None:
    args = ("track", "-e", "--from-beginning", "-g", filled, *WINDOWS)
    done = lumu(bootstrap, filled, *args)
    assert done.returncode == 1, done.stderr  # 1: the invalid records
    want = reference_shown(expected(bootstrap, filled, now_ms()))
    assert as_shown(summary(done)["windows"]) == want
    assert summary(done)["windows"]["1h"]["keep"] == 48
    assert want["1h"]["late"] > 0
    assert want["1h"]["future"] > 0
    assert len(want["1h"]["counts"]) >= 30  # many windows, every form of timestamp
    again = lumu(bootstrap, filled, *args)  # nothing new: all from the state topic
    assert "restored 3 partitions" in again.stderr
    assert as_shown(summary(again)["windows"]) == want


@pytest.mark.parametrize("crash", ["mid-commit", "mid-commit@2"])
def test_kill_9_mid_stream_then_a_restart_counts_each_window_exactly(
    bootstrap: str, filled: str, crash: str
) -> None:
    args = ("track", "-e", "--from-beginning", "-g", filled, "--commit-interval", "0.05",
            *FAST_SESSION, *WINDOWS)  # fmt: skip
    killed = lumu(bootstrap, filled, *args, env={"LUMU_CRASH_AT": crash})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    write(bootstrap, filled, seed=21, count=2000)  # more records meanwhile
    restarted = lumu(bootstrap, filled, *args)
    assert restarted.returncode == 1, restarted.stderr
    want = reference_shown(expected(bootstrap, filled, now_ms()))
    assert as_shown(summary(restarted)["windows"]) == want


def test_three_instances_each_serve_every_window_and_the_rolling_union(
    bootstrap: str, filled: str
) -> None:
    args = ("serve", "127.0.0.1:0", "--from-beginning", "-g", filled, "--commit-interval",
            "0.3", *FAST_SESSION, *WINDOWS)  # fmt: skip
    groups = expected(bootstrap, filled, now_ms())
    want = reference_shown(groups)
    total = sum(n for _, n in want["1h"]["counts"].values()) + want["1h"]["late"]
    total += want["1h"]["future"]
    with ExitStack() as stack:
        served = stack.enter_context(together(3, bootstrap, filled, *args))
        for _, url in served:

            def counted(url: str = url) -> bool:
                hourly = json.loads(get(f"{url}/count")[2])["windows"]["1h"]
                shown = sum(c["messages"] for c in hourly["counts"])
                return bool(shown + hourly["late"] + hourly["future"] == total)

            until(counted, "an instance shows every record in its windows", seconds=90)
            assert as_shown(json.loads(get(f"{url}/count")[2])["windows"]) == want
            answer = json.loads(get(f"{url}/count?window=1h&last=24")[2])
            first, end = (millis(answer[edge]) for edge in ("start", "end"))
            assert end - first == 24 * HOUR  # the current hour and the 23 before it
            assert abs(end - (now_ms() // HOUR * HOUR + HOUR)) <= HOUR  # (the hour may turn)
            chosen = [v for s, v in groups["1h"]["counts"].items() if first <= s < end]
            assert answer["unique_ips"] == len(set().union(*(ips for ips, _ in chosen)))
            assert answer["messages"] == sum(n for _, n in chosen)
        for process, _ in served:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)


def state_records(bootstrap: str, group: str) -> dict[bytes, bytes | None]:
    """The latest value of each key of the group's state topic, read apart from lumu."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"{group}-check",
        "enable.partition.eof": True, "isolation.level": "read_committed",
    })  # fmt: skip
    consumer.assign([TopicPartition(f"{group}-lumu-state", 0, OFFSET_BEGINNING)])
    latest: dict[bytes, bytes | None] = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None:
                continue
            if message.error():
                break  # the end (partition EOF)
            latest[message.key() or b""] = message.value()
    finally:
        consumer.close()
    return latest


def test_windows_out_of_the_kept_range_are_tombstoned_in_the_state_topic(
    bootstrap: str, topic: str
) -> None:
    create_topic(bootstrap, topic, 1)
    while now_ms() % 60_000 > 45_000:  # not at a minute's end: its window must be current
        time.sleep(1)
    started = now_ms()
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(20):
        body = {"timestamp": format_millis(started - n), "device_ip": f"10.0.0.{n}"}
        producer.produce(topic, json.dumps(body).encode())
    assert producer.flush(30) == 0
    args = ("track", "-e", "--from-beginning", "-g", topic, "--window", "1m:1")
    first = lumu(bootstrap, topic, *args)
    assert first.returncode == 0, first.stderr
    start = started // 60_000 * 60_000
    meta = f"{topic}/0/w/1m/{start}/meta".encode()
    assert state_records(bootstrap, topic)[meta] is not None  # kept while current
    until(lambda: now_ms() >= start + 2 * 60_000 + 1000, "two minutes on", seconds=150)
    second = lumu(bootstrap, topic, *args)  # counts nothing new; its commit drops the window
    assert second.returncode == 0, second.stderr
    assert summary(second)["windows"]["1m"]["counts"] == []
    latest = state_records(bootstrap, topic)
    window_keys = [k for k in latest if k.startswith(f"{topic}/0/w/1m/{start}/".encode())]
    assert meta in window_keys
    assert len(window_keys) > 1  # its meta and its pieces
    assert all(latest[k] is None for k in window_keys)  # each a tombstone: compaction drops it
