"""The count kept in the group's state topic, under the faults users fear, on the real broker.

Every count is compared with the independent reference count of the whole topic
(tests/integration/reference.py), and, once the instances are gone, with what a fresh instance
restores from the state topic alone: a count that is right in memory but wrong in the state
topic fails too.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from lumu_cli.snapshots import Meta, decode
from tests.integration.helpers import (
    LUMU,
    count_when,
    get,
    lumu,
    lumu_env,
    metrics,
    running,
    summary,
    until,
)
from tests.integration.reference import Reference, end_offsets, reference

# A short session, so a paused or killed member is taken out of the group in seconds, not 45.
FAST_SESSION = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")
SERVE = ("serve", "127.0.0.1:0", "--from-beginning", "--commit-interval", "0.3", *FAST_SESSION)


def create_topic(
    bootstrap: str, topic: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(topic, partitions, config=config or {})])[topic].result(30)


def produce(bootstrap: str, topic: str, count: int, seed: int) -> None:
    done = lumu(
        bootstrap, topic, "produce", "--rate", "0", "--count", str(count), "--ips", "4000",
        "--ipv6-ratio", "0.3", "--invalid-ratio", "0.03", "--seed", str(seed),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def producing(bootstrap: str, topic: str, rate: int, seconds: float) -> subprocess.Popen[str]:
    """`lumu produce` in the background, for `seconds` at `rate` records a second."""
    args = ["produce", "--rate", str(rate), "--duration", str(seconds), "--ips", "6000"]
    args += ["--ipv6-ratio", "0.3", "--invalid-ratio", "0.03"]
    return subprocess.Popen(
        [*LUMU, *args], env=lumu_env(bootstrap, topic), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(process: subprocess.Popen[str]) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result = json.loads(out)
    assert result["failed"] == 0


def assert_exact(count: dict[str, Any], ref: Reference) -> None:
    assert count["messages"] == ref.messages
    assert count["unique_ips"] == ref.unique_ips
    assert count["invalid"] == sum(ref.invalid.values())


def assert_state_exact(bootstrap: str, topic: str, group: str, ref: Reference) -> None:
    """A fresh instance restores the exact count from the state topic, and reads nothing new."""
    done = lumu(bootstrap, topic, "track", "-e", "--group", group)
    assert done.returncode in (0, 1), done.stderr
    restored = summary(done)
    assert_exact(restored, ref)
    assert restored["invalid_by_reason"] == ref.invalid
    shown = lumu(bootstrap, topic, "state", "--group", group, "--json")
    assert shown.returncode == 0, shown.stderr
    saved = json.loads(shown.stdout)["topics"][topic]
    assert saved["unique_ips"] == ref.unique_ips
    assert sum(p["messages"] for p in saved["partitions"]) == ref.messages


def partitions_here(url: str) -> set[int]:
    _, _, body = get(f"{url}/count")
    return {p["partition"] for p in json.loads(body)["partitions"] if p["owner"] == "here"}


def state_rows(bootstrap: str, state: str) -> list[tuple[bytes, bytes | None]]:
    """The committed records of a state topic, in order (read_committed, by a plain consumer)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.partition.eof": True,
        "enable.auto.commit": False,
    })  # fmt: skip
    try:
        consumer.assign([TopicPartition(state, 0, OFFSET_BEGINNING)])
        rows: list[tuple[bytes, bytes | None]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return rows
                assert error is None, error
                key = message.key()
                assert key is not None
                rows.append((key, message.value()))
        raise AssertionError(f"{state!r} not read to its end")
    finally:
        consumer.close()


def assert_snapshots_never_go_back(bootstrap: str, topic: str) -> None:
    """Each partition's snapshots, in the order the state topic holds them, only move forward:
    an older snapshot committed after a newer one (a zombie's) would show as a step back."""
    offsets: dict[int, list[int]] = {}
    for key, value in state_rows(bootstrap, f"{topic}-lumu-state"):
        record = decode(key, value)
        if isinstance(record.value, Meta):
            offsets.setdefault(record.partition, []).append(record.value.next_offset)
    assert offsets
    for partition, written in offsets.items():
        assert written == sorted(written), f"partition {partition} went back: {written}"


def stopped(process: subprocess.Popen[str]) -> bool:
    """Whether `process` is stopped (SIGSTOP), as /proc/PID/stat says."""
    stat = Path(f"/proc/{process.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def killed(process: subprocess.Popen[str]) -> None:
    process.kill()  # SIGKILL: no last commit, no goodbye to the group
    process.wait(timeout=30)


# ---------------------------------------------------------------- kill -9 and restarts


def test_kill_9_before_the_first_commit_of_a_new_group_loses_nothing(
    bootstrap: str, topic: str
) -> None:
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 500, seed=1)  # before the group: not counted, it starts at the end
    start = end_offsets(bootstrap, topic)
    args = ("serve", "127.0.0.1:0", "--group", topic, "--commit-interval", "3600", *FAST_SESSION)
    with running(bootstrap, topic, *args) as (process, url):
        until(lambda: partitions_here(url) == {0, 1, 2}, "all three partitions assigned")
        produce(bootstrap, topic, 3000, seed=2)
        count_when(url, 3000)
        killed(process)  # counted, never committed: only the start offsets are saved
    ref = reference(bootstrap, topic, after=start)
    assert ref.messages == 3000
    assert_state_exact(bootstrap, topic, topic, ref)


@pytest.mark.parametrize(
    "crash",
    ["before-first-commit", "mid-commit", "mid-commit@2", "during-restore"],
)
def test_kill_9_at_a_named_moment_then_a_restart_counts_exactly(
    bootstrap: str, topic: str, crash: str
) -> None:
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 20_000, seed=3)
    group = topic  # a group and state topic of this test's own
    first = (
        "track", "-e", "--from-beginning", "--group", group, "--commit-interval", "0.05",
        *FAST_SESSION,  # the killed member leaves the group in 6 s, not 45
    )  # fmt: skip
    if crash == "during-restore":  # a state to restore first
        assert lumu(bootstrap, topic, *first).returncode in (0, 1)
        produce(bootstrap, topic, 5000, seed=4)
    done = lumu(bootstrap, topic, *first, env={"LUMU_CRASH_AT": crash})
    assert done.returncode == -signal.SIGKILL, done.stderr
    ref = reference(bootstrap, topic)
    restarted = lumu(bootstrap, topic, *first)  # the same command again
    assert restarted.returncode == 1, restarted.stderr  # the topic holds invalid records
    assert_exact(summary(restarted), ref)
    assert_state_exact(bootstrap, topic, group, ref)


def test_kill_9_at_random_moments_while_producing_then_the_count_is_exact(
    bootstrap: str, topic: str
) -> None:
    create_topic(bootstrap, topic, 3)
    rng = random.Random(7)
    producer = producing(bootstrap, topic, rate=2000, seconds=12)
    try:
        for _ in range(4):
            with running(bootstrap, topic, *SERVE, "--group", topic) as (process, _url):
                time.sleep(rng.uniform(0.5, 2.5))
                killed(process)
    finally:
        finished(producer)
    ref = reference(bootstrap, topic)
    with running(bootstrap, topic, *SERVE, "--group", topic) as (process, url):
        assert_exact(count_when(url, ref.messages), ref)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert_state_exact(bootstrap, topic, topic, ref)


def test_sigterm_then_a_restart_resumes_the_count(bootstrap: str, topic: str) -> None:
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 6000, seed=5)
    with running(bootstrap, topic, *SERVE, "--group", topic) as (process, url):
        count_when(url, 6000)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    produce(bootstrap, topic, 4000, seed=6)
    ref = reference(bootstrap, topic)
    resume = ("serve", "127.0.0.1:0", "--group", topic, *FAST_SESSION)  # no --from-beginning:
    with running(bootstrap, topic, *resume) as (process, url):  # only the state says where
        assert_exact(count_when(url, ref.messages), ref)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert_state_exact(bootstrap, topic, topic, ref)


# ---------------------------------------------------------------- several instances


@pytest.fixture
def instances() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def test_three_instances_with_one_joining_and_one_leaving_all_show_the_exact_count(
    bootstrap: str, topic: str, instances: ExitStack
) -> None:
    create_topic(bootstrap, topic, 6)
    producer = producing(bootstrap, topic, rate=3000, seconds=12)
    group = ("--group", topic)
    a, url_a = instances.enter_context(running(bootstrap, topic, *SERVE, *group))
    b, _url_b = instances.enter_context(running(bootstrap, topic, *SERVE, *group))
    time.sleep(4)
    c, url_c = instances.enter_context(running(bootstrap, topic, *SERVE, *group))  # joins
    time.sleep(3)
    b.send_signal(signal.SIGTERM)  # leaves
    assert b.wait(timeout=60) == 0
    finished(producer)
    ref = reference(bootstrap, topic)
    for url in (url_a, url_c):
        count = count_when(url, ref.messages)
        assert_exact(count, ref)
        assert count["lag"] == count["state_lag"] == 0
    assert partitions_here(url_a) | partitions_here(url_c) == set(range(6))
    assert partitions_here(url_a)
    assert partitions_here(url_c)
    for process in (a, c):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert_state_exact(bootstrap, topic, topic, ref)


def test_a_paused_zombie_cannot_overwrite_newer_state_and_rejoins(
    bootstrap: str, topic: str, instances: ExitStack
) -> None:
    create_topic(bootstrap, topic, 4)
    producer = producing(bootstrap, topic, rate=2000, seconds=16)
    args = (*SERVE, "--group", topic)
    # The zombie stops itself (SIGSTOP) in its 15th commit, with the snapshot counted and before
    # its transaction starts: it wakes up, past session.timeout.ms, still sure it owns its
    # partitions, with a snapshot older than those the other commits meanwhile.
    paused = {"LUMU_PAUSE_AT": "commit@15"}
    zombie, url_z = instances.enter_context(running(bootstrap, topic, *args, env=paused))
    other, url_o = instances.enter_context(running(bootstrap, topic, *args))
    until(lambda: stopped(zombie), "the zombie paused in a commit")
    until(lambda: partitions_here(url_o) == {0, 1, 2, 3}, "the other owns all", seconds=30)
    time.sleep(2)  # the other commits newer snapshots of the zombie's old partitions
    zombie.send_signal(signal.SIGCONT)  # its commit goes on, with its old group generation
    finished(producer)
    ref = reference(bootstrap, topic)
    for url in (url_o, url_z):
        assert_exact(count_when(url, ref.messages), ref)
    # (the other's commit may be refused too, when it races the rebalance the zombie's return
    # starts: its generation moves on; it commits again at the next interval)
    assert metrics(url_z)["lumu_commits_refused_total"] >= 1
    said = {}
    for name, process in (("zombie", zombie), ("other", other)):
        process.send_signal(signal.SIGTERM)
        _, said[name] = process.communicate(timeout=60)
        assert process.returncode == 0, said[name]
    lines = said["zombie"].splitlines()
    refused = [line for line in lines if line.startswith("lumu: state commit refused: ")]
    assert refused, said["zombie"]  # (a commit racing a later rebalance may be refused too)
    assert re.fullmatch(
        "lumu: state commit refused: this member was fenced by a newer generation of group "
        f"{re.escape(repr(topic))}; its snapshot of partition\\(s\\) [0-3](, [0-3])* was "
        "aborted, nothing written",
        refused[0],
    ), refused[0]
    lost = [line for line in lines if " lost (session timed out?); reading the state" in line]
    assert lost, said["zombie"]
    assert lines.index(refused[0]) < lines.index(lost[0])  # refused before it knew
    assert "Traceback" not in said["zombie"]
    assert_snapshots_never_go_back(bootstrap, topic)  # nothing of the refused commit was written
    assert_state_exact(bootstrap, topic, topic, ref)


# ---------------------------------------------------------------- a state that cannot be used


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"x", b"y", "not a lumu state record (key b'x')"),
        (b"{topic}/0/meta", b"not lumu", "not a lumu state record (key b'{topic}/0/meta')"),
        (b"{topic}/0/meta", b"LUMU\x02{}", "written in state format 2; this lumu reads format 1"),
        (b"{topic}/1/v4/0a00", b"LUMU\x01garbage", "partition 1 piece v4/0a00: not a Roaring"),
    ],
    ids=["foreign key", "foreign value", "newer format", "corrupt piece"],
)
def test_an_unusable_state_record_is_one_line_and_exit_3_and_nothing_is_discarded(
    bootstrap: str, topic: str, key: bytes, value: bytes, reason: str
) -> None:
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2000, seed=8)
    group, state = topic, f"{topic}-lumu-state"
    assert lumu(bootstrap, topic, "track", "-e", "--from-beginning", "-g", group).returncode == 1
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(state, value, key.replace(b"{topic}", topic.encode()), partition=0)
    assert producer.flush(30) == 0
    before = end_offsets(bootstrap, state)
    expected = reason.replace("{topic}", topic)
    for command in (["track", "-e"], ["serve", "127.0.0.1:0"], ["state"]):
        done = lumu(bootstrap, topic, *command, "-g", group)
        assert done.returncode == 3
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"lumu: state topic {state!r} offset ")
        assert expected in lines[0]
        assert done.stdout == ""
    assert end_offsets(bootstrap, state) == before  # nothing written over it


def move_a_piece(bootstrap: str, topic: str) -> None:
    """Write a v4 piece of partition 0 again under partition 1's key (one partition 1 lacks)."""
    state = f"{topic}-lumu-state"
    rows = state_rows(bootstrap, state)
    theirs = {key for key, _ in rows if key.startswith(f"{topic}/1/v4/".encode())}
    mine = f"{topic}/0/v4/".encode()
    key, value = next(
        (key, value) for key, value in rows
        if key.startswith(mine) and key.replace(b"/0/", b"/1/", 1) not in theirs
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(state, value, key.replace(b"/0/", b"/1/", 1), partition=0)
    assert producer.flush(30) == 0


@pytest.mark.parametrize("fault", ["inconsistent", "not compacted"])
def test_lumu_state_refuses_a_state_topic_as_a_restoring_instance_does(
    bootstrap: str, topic: str, fault: str
) -> None:
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2000, seed=11)
    group, state = topic, f"{topic}-lumu-state"
    if fault == "inconsistent":
        done = lumu(bootstrap, topic, "track", "-e", "--from-beginning", "-g", group)
        assert done.returncode == 1, done.stderr
        move_a_piece(bootstrap, topic)
        expected = (
            rf"lumu: state topic {re.escape(repr(state))} is inconsistent: partition 1 holds "
            r"\d+ unique IPs, its meta says \d+ \(pieces missing\?\)"
        )
    else:
        create_topic(bootstrap, state, 1, {"cleanup.policy": "delete"})
        expected = (
            rf"lumu: state topic {re.escape(repr(state))} has cleanup.policy=delete, not compact: "
            r"its state would be deleted by retention \(set cleanup.policy=compact, or use "
            r"another group\)"
        )
    before = end_offsets(bootstrap, state)
    said = []
    for command in (["track", "-e"], ["state"], ["state", "--json"]):
        done = lumu(bootstrap, topic, *command, "-g", group)
        assert (done.returncode, done.stdout) == (3, ""), done.stderr
        assert re.fullmatch(expected, done.stderr.rstrip("\n")), done.stderr
        said.append(done.stderr)
    assert said[0] == said[1] == said[2]  # the very line a restoring instance says
    assert end_offsets(bootstrap, state) == before  # nothing written over it


def test_committed_offsets_without_state_are_refused_until_reset(
    bootstrap: str, topic: str
) -> None:
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 3000, seed=9)
    ref = reference(bootstrap, topic)
    done = lumu(bootstrap, topic, "track", "-e", "--from-beginning", "-g", topic, "--no-state")
    assert summary(done)["messages"] == ref.messages
    done = lumu(bootstrap, topic, "track", "-e", "-g", topic)
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1].startswith(
        f"lumu: group {topic!r} has committed offsets for partition(s) 0, 1, 2 of "
    )
    assert "--reset" in done.stderr
    done = lumu(bootstrap, topic, "track", "-e", "-g", topic, "--reset")
    assert_exact(summary(done), ref)
    assert_state_exact(bootstrap, topic, topic, ref)


def test_reset_discards_the_state_and_counts_again_but_not_while_a_member_runs(
    bootstrap: str, topic: str
) -> None:
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2000, seed=10)
    ref = reference(bootstrap, topic)
    assert_exact(
        summary(lumu(bootstrap, topic, "track", "-e", "--from-beginning", "-g", topic)), ref
    )
    with running(bootstrap, topic, *SERVE, "--group", topic) as (process, url):
        count_when(url, ref.messages)
        refused = lumu(bootstrap, topic, "track", "-e", "-g", topic, "--reset")
        assert refused.returncode == 3
        assert refused.stderr.splitlines() == [
            f"lumu: cannot reset group {topic!r}: it has 1 active member(s); stop them first"
        ]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    done = lumu(bootstrap, topic, "track", "-e", "-g", topic, "--reset")
    assert f"reset group {topic!r}: " in done.stderr
    assert_exact(summary(done), ref)  # counted again from the start: once, not twice
    assert_state_exact(bootstrap, topic, topic, ref)
