"""produce -> Kafka -> track / serve, against the real broker, each count checked independently
(tests/integration/reference.py)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.integration.helpers import (
    LUMU,
    count_when,
    get,
    lumu,
    lumu_env,
    metrics,
    running,
    summary,
)
from tests.integration.reference import read_all, reference


def track_to_end(bootstrap: str, topic: str, *args: str) -> dict[str, Any]:
    done = lumu(bootstrap, topic, "track", "--exit-at-end", *args)
    assert done.returncode in (0, 1), done.stderr
    result = summary(done)
    assert done.returncode == (1 if result["invalid"] else 0)
    return result


# ---------------------------------------------------------------- produce -> track


@pytest.fixture(scope="module")
def seeded(bootstrap: str) -> tuple[str, dict[str, Any]]:
    """A topic seeded by `lumu produce` with IPv6 and every kind of invalid record mixed in."""
    topic = f"lumu-test-seeded-{time.time_ns()}"
    done = lumu(
        bootstrap, topic, "produce", "--rate", "0", "--count", "20000", "--ips", "3000",
        "--ipv6-ratio", "0.3", "--invalid-ratio", "0.05", "--seed", "11", "--partitions", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return topic, summary(done)


def test_produce_summary_counts_every_record(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, produced = seeded
    ref = reference(bootstrap, topic)
    assert produced["sent"] == produced["delivered"] == ref.messages == 20000
    assert produced["failed"] == 0
    assert produced["distinct_ips"] == ref.unique_ips
    assert produced["invalid"] == sum(ref.invalid.values())
    assert produced["invalid_by_reason"] == ref.invalid
    assert set(ref.invalid) >= {"not_json", "not_object", "missing_device_ip", "bad_device_ip"}
    assert set(ref.invalid) >= {"bad_timestamp", "not_utf8"}


def test_track_counts_exactly_the_distinct_valid_ips(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, _ = seeded
    ref = reference(bootstrap, topic)
    result = track_to_end(bootstrap, topic, "--from-beginning", "--group", f"{topic}-exact")
    assert result["unique_ips"] == ref.unique_ips
    assert result["messages"] == ref.messages
    assert result["invalid"] == sum(ref.invalid.values())
    assert result["invalid_by_reason"] == ref.invalid


@pytest.mark.parametrize(
    ("native", "workers"),
    [("1", "0"), ("1", "2"), ("0", "0"), ("0", "1")],
    ids=["native", "native-threads", "python", "python-processes"],
)
def test_every_checker_counts_exactly_the_same(
    bootstrap: str, seeded: tuple[str, dict[str, Any]], native: str, workers: str
) -> None:
    """The native checker, in the loop or in threads, and the Python definition, in the loop or
    in worker processes (LUMU_NATIVE=0, as where the extension is not installed)."""
    topic, _ = seeded
    ref = reference(bootstrap, topic)
    group = f"{topic}-checker-{native}-{workers}"
    env = {"LUMU_NATIVE": native, "LUMU_WORKERS": workers}
    done = lumu(bootstrap, topic, "track", "-e", "--from-beginning", "--group", group, env=env)
    result = summary(done)
    assert (result["unique_ips"], result["messages"]) == (ref.unique_ips, ref.messages)
    assert result["invalid_by_reason"] == ref.invalid
    told = "lumu: checking records in Python: LUMU_NATIVE=0\n"
    assert done.stderr.count("checking records in Python") == (native == "0")
    assert (told in done.stderr) == (native == "0")


def test_first_invalid_record_of_each_reason_is_named_on_stderr(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, produced = seeded
    done = lumu(bootstrap, topic, "track", "-e", "--from-beginning", "--group", f"{topic}-stderr")
    assert done.returncode == 1
    shown = re.findall(r"^lumu: partition \d+ offset \d+: (\w+): ", done.stderr, re.M)
    assert sorted(shown) == sorted(produced["invalid_by_reason"])
    assert "Traceback" not in done.stderr


def test_a_new_group_counts_the_same_and_a_group_resumes_from_its_state(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, _ = seeded
    first = track_to_end(bootstrap, topic, "--from-beginning", "--group", f"{topic}-g1")
    second = track_to_end(bootstrap, topic, "--from-beginning", "--group", f"{topic}-g2")
    timings = ("elapsed", "first_record_at")
    assert {k: v for k, v in first.items() if k not in timings} == {
        k: v for k, v in second.items() if k not in timings
    }
    # g1's state holds the whole topic: it restores it and reads nothing twice.
    resumed = track_to_end(bootstrap, topic, "--group", f"{topic}-g1")
    assert resumed["first_record_at"] is None  # nothing new to read
    assert {k: v for k, v in resumed.items() if k not in timings} == {
        k: v for k, v in first.items() if k not in timings
    }
    # Without state, a group starts after what it committed, with a count of its own.
    track_to_end(bootstrap, topic, "--from-beginning", "--group", f"{topic}-g3", "--no-state")
    resumed = track_to_end(bootstrap, topic, "--group", f"{topic}-g3", "--no-state")
    assert (resumed["messages"], resumed["unique_ips"]) == (0, 0)


def test_hand_built_records_are_counted_by_construction(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(topic, 2)])[topic].result()
    stamp = '"2021-12-03T16:15:30.235Z"'
    valid = [  # 4 distinct addresses, each written two ways, on both partitions
        ("10.0.0.1", "::ffff:10.0.0.1"),
        ("2001:db8::1", "2001:0DB8:0000:0000:0000:0000:0000:0001"),
        ("192.168.1.254", "192.168.1.254"),
        ("fe80::1", "FE80::1"),
    ]
    records: list[tuple[int, bytes | None]] = []
    for first, second in valid:
        for partition, ip in ((0, first), (1, second)):
            records.append(
                (partition, b'{"timestamp": %s, "device_ip": "%s"}' % (stamp.encode(), ip.encode()))
            )
    invalid: dict[str, list[bytes | None]] = {
        "empty": [None, b""],
        "not_utf8": [b'{"device_ip": "10.9.9.9", "timestamp": 1700000000, "x": "\xff"}'],
        "not_json": [b"{", b'{"device_ip": "10.9.9.9", "timestamp": NaN}', b"[" * 100_000],
        "not_object": [b"null", b"[]", b'"10.9.9.9"', b"42"],
        "missing_device_ip": [b'{"timestamp": 1700000000}', b'{"device_ip": null, "timestamp": 1}'],
        "bad_device_ip": [
            b'{"device_ip": "10.0.0.256", "timestamp": 1700000000}',
            b'{"device_ip": ["10.0.0.1"], "timestamp": 1700000000}',
            b'{"device_ip": "fe80::1%eth0", "timestamp": 1700000000}',
            b'{"device_ip": "' + b"1" * 900_000 + b'", "timestamp": 1700000000}',
        ],
        "missing_timestamp": [b'{"device_ip": "10.9.9.9"}'],
        "bad_timestamp": [
            b'{"device_ip": "10.9.9.9", "timestamp": "2021-02-30T00:00:00Z"}',
            b'{"device_ip": "10.9.9.9", "timestamp": true}',
            b'{"device_ip": "10.9.9.9", "timestamp": -5}',
            b'{"device_ip": "10.9.9.9", "timestamp": {"a": [[[[1]]]]}}',
        ],
    }
    records += [(n % 2, value) for n, value in enumerate(v for vs in invalid.values() for v in vs)]
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for partition, value in records:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(30) == 0
    result = track_to_end(bootstrap, topic, "--from-beginning", "--group", topic)
    assert result["unique_ips"] == len(valid)
    assert result["messages"] == len(records)
    assert result["invalid_by_reason"] == {
        reason: len(vs) for reason, vs in sorted(invalid.items())
    }


# ---------------------------------------------------------------- HTTP: serve and track --serve


def test_serve_answers_count_the_seed_path_healthz_and_metrics(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, _ = seeded
    ref = reference(bootstrap, topic)
    args = ("serve", "127.0.0.1:0", "--from-beginning", "--group", f"{topic}-serve")
    with running(bootstrap, topic, *args) as (process, url):
        count = count_when(url, ref.messages)
        assert count["unique_ips"] == ref.unique_ips
        assert count["invalid"] == sum(ref.invalid.values())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(count["updated_at"]))
        assert get(f"{url}/healthz")[:2] == (200, "application/json")
        seed = get(f"{url}/api/v1/unique_ip_count")
        assert json.loads(seed[2]) == {"unique_ip_count": ref.unique_ips}
        found = metrics(url)
        assert found["lumu_unique_ips"] == ref.unique_ips
        assert found["lumu_messages_total"] == ref.messages
        for reason, n in ref.invalid.items():
            assert found[f"lumu_invalid_messages_total[{reason}]"] == n
        assert get(f"{url}/nope")[:2] == (404, "application/json")
        request = urllib.request.Request(f"{url}/count", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_track_serve_gives_the_same_numbers_and_ctrl_c_prints_the_summary(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, _ = seeded
    ref = reference(bootstrap, topic)
    args = ("track", "--serve", "127.0.0.1:0", "--from-beginning", "--group", f"{topic}-served")
    with running(bootstrap, topic, *args) as (process, url):
        count = count_when(url, ref.messages)
        assert count["unique_ips"] == ref.unique_ips
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert json.loads(out)["unique_ips"] == ref.unique_ips
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "named"), [(["serve"], "ADDRESS"), (["track", "--serve"], "--serve")], ids=str
)
def test_a_port_in_use_is_one_line_naming_the_parameter_given(
    bootstrap: str, seeded: tuple[str, dict[str, Any]], command: list[str], named: str
) -> None:
    topic, _ = seeded
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        group = f"{topic}-in-use-{command[0]}"
        done = lumu(bootstrap, topic, *command, address, "--group", group)
    assert done.returncode == 2, done.stderr
    said = done.stderr.splitlines()
    assert said[-1] == f"lumu: {named} {address!r}: cannot listen: address already in use"
    assert all(line.startswith("lumu: ") for line in said)  # the state's lines, then that one
    assert done.stdout == ""


# ---------------------------------------------------------------- produce details and failures


def test_produce_exact_count_keys_and_message_format(bootstrap: str, topic: str) -> None:
    done = lumu(
        bootstrap, topic, "produce", "--count", "300", "--rate", "0", "--ips", "5", "--seed", "3"
    )
    assert done.returncode == 0, done.stderr
    assert summary(done)["delivered"] == 300
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "format"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    assert len(partitions) == 3  # created with the default --partitions
    consumer.close()
    values = read_all(bootstrap, topic)
    assert len(values) == 300
    for value in values:
        assert value is not None
        event = json.loads(value)
        assert set(event) == {"timestamp", "device_ip", "error_code"}
        assert 0 <= event["error_code"] <= 10
    assert reference(bootstrap, topic).unique_ips == 5


def test_produce_ctrl_c_flushes_and_prints_the_summary(bootstrap: str, topic: str) -> None:
    process = subprocess.Popen(
        [*LUMU, "produce", "--rate", "200"], env=lumu_env(bootstrap, topic),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    result = json.loads(out)
    assert result["sent"] == result["delivered"] == len(read_all(bootstrap, topic)) > 0


def test_track_to_the_end_of_a_missing_topic_is_a_broker_error_naming_the_next_step(
    bootstrap: str, topic: str
) -> None:
    done = lumu(bootstrap, topic, "track", "-e")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"lumu: topic {topic!r} does not exist on {bootstrap} (name another with -t, or create "
        "it: lumu produce -t TOPIC)"
    ]


@pytest.mark.parametrize("state", ["--state", "--no-state"])
def test_a_service_started_before_its_topic_waits_then_counts_it_exactly(
    bootstrap: str, topic: str, state: str
) -> None:
    """As in compose or Kubernetes, where lumu may start before its producer creates the topic."""
    args = ("serve", "127.0.0.1:0", "--group", f"{topic}-serve", state)
    with running(bootstrap, topic, *args) as (process, url):
        waiting = json.loads(get(f"{url}/count")[2])
        assert (waiting["waiting_for_topic"], waiting["unique_ips"]) == (True, 0)
        assert get(f"{url}/healthz")[0] == 200
        assert metrics(url)["lumu_waiting_for_topic"] == 1
        produced = summary(lumu(bootstrap, topic, "produce", "-n", "3000", "-r", "0"))
        ref = reference(bootstrap, topic)
        assert ref.messages == produced["delivered"] == 3000
        count = count_when(url, ref.messages)  # every record: none went before the start
        assert (count["waiting_for_topic"], count["unique_ips"]) == (False, ref.unique_ips)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert process.stderr is not None
        said = process.stderr.read()
    assert f"lumu: waiting for topic {topic!r} on {bootstrap}; counting starts" in said


def test_track_started_before_its_topic_says_it_is_waiting_in_its_status_line(
    bootstrap: str, topic: str
) -> None:
    process = subprocess.Popen(
        [*LUMU, "track", "--no-state"], env=lumu_env(bootstrap, topic),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]  # the status line comes in 5 s
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert lines == [
        f"lumu: waiting for topic {topic!r} on {bootstrap}; counting starts once it is created\n",
        f"lumu: waiting for topic {topic!r} on {bootstrap}\n",
    ]


@pytest.mark.parametrize(
    "command", [["produce", "--count", "1"], ["track"], ["serve", "127.0.0.1:0"]], ids=str
)
def test_unreachable_broker_is_one_line_and_exit_3(command: list[str], topic: str) -> None:
    done = lumu("127.0.0.1:1", topic, *command, "--timeout", "2")  # nothing listens on port 1
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lumu: cannot reach Kafka at 127.0.0.1:1 within 2 s")
    assert done.stdout == ""


def test_track_on_a_terminal_draws_the_live_view(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, produced = seeded
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [*LUMU, "track", "-e", "--from-beginning", "--group", f"{topic}-tty"],
        env={**lumu_env(bootstrap, topic), "COLUMNS": "100"},
        stdout=subprocess.PIPE, stderr=child, text=True,
    )  # fmt: skip
    os.close(child)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(parent, 65536):
            drawn += chunk
    os.close(parent)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 1  # the seeded topic holds invalid records
    screen = drawn.decode()
    assert "lumu track " + topic in screen
    assert "unique device IPs" in screen
    assert f"{produced['delivered']:,}" in screen  # the messages row of the last frame
    assert json.loads(out)["unique_ips"] == produced["distinct_ips"]


def test_a_setting_the_state_cannot_work_with_is_a_usage_error(
    bootstrap: str, seeded: tuple[str, dict[str, Any]]
) -> None:
    topic, _ = seeded
    done = lumu(
        bootstrap, topic, "track", "-e", "-g", f"g-{time.time_ns()}", "-X",
        "enable.idempotence=false",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [  # told before the state topic is created
        "lumu: bad Kafka client setting: Failed to create producer: `transactional.id` requires "
        "`enable.idempotence=true`"
    ]
