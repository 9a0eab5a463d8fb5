"""A rolling restart of a 3-node cluster while two `lumu serve` of one group count and
`lumu produce` writes: what users of a replicated cluster fear, and its figures.

Shared by tests/integration/test_cluster.py (which asserts the count is exact) and
bench/cluster.py (which prints how long /count stood still, the producers abandoned and the
threads, against the same scenario).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from confluent_kafka.admin import AdminClient

from tests.integration.helpers import (
    LUMU,
    Cluster,
    count_when,
    get,
    lumu_env,
    metrics,
    together,
    until,
)
from tests.integration.reference import Reference, reference

Victim = Literal["state-leader", "coordinator"]


@dataclass
class Instance:
    """One `lumu serve` of the group, and what was seen of it."""

    process: subprocess.Popen[str]
    url: str
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, /count messages)
    threads: list[int] = field(default_factory=list)  # at the start, and at the end
    abandoned: int = 0  # lumu_state_producers_abandoned_total at the end
    count: dict[str, Any] = field(default_factory=dict)  # the last /count
    said: str = ""  # its stderr after it began serving


@dataclass
class Outcome:
    """What the scenario saw: the reference count, each instance's figures, the producer's."""

    ref: Reference
    instances: list[Instance]
    produced: dict[str, Any]
    incidents: int  # node restarts and kills
    phases: dict[str, tuple[float, float]]  # "rolling": the restarts; "kill": the kill -9 on
    beside: list[tuple[float, int]]  # the counts the `beside` process printed

    def stall(self, samples: list[tuple[float, int]], phase: str) -> float:
        """The longest time a count stood still in `phase`, while records kept coming."""
        start, end = self.phases[phase]
        changes = [start]
        last = None
        for at, messages in samples:
            if start <= at <= end and messages != last:
                changes.append(at)
            last = messages
        changes.append(end)
        return max(b - a for a, b in pairwise(changes))


def counted(url: str) -> int:
    """/count's messages."""
    messages: int = json.loads(get(f"{url}/count")[2])["messages"]
    return messages


def threads(process: subprocess.Popen[str]) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def node_of(cluster: Cluster, broker_port: int) -> int:
    """The node (1-3) that listens on `broker_port`: its place in the bootstrap list."""
    ports = [int(address.rsplit(":", 1)[1]) for address in cluster.bootstrap.split(",")]
    return ports.index(broker_port) + 1


def victim(cluster: Cluster, which: Victim, topic: str, group: str) -> int:
    """The node that leads the state topic, or that coordinates the group, now."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    metadata = admin.list_topics(timeout=10)
    if which == "state-leader":
        broker = metadata.topics[f"{group}-lumu-state"].partitions[0].leader
    else:
        found = admin.describe_consumer_groups([group], request_timeout=10)[group].result(10)
        broker = found.coordinator.id
    return node_of(cluster, metadata.brokers[broker].port)


@contextmanager
def sampled(instances: list[Instance]) -> Iterator[None]:
    """/count of each instance, ten times a second, in a thread of its own."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            for instance in instances:
                try:
                    messages = counted(instance.url)
                except OSError:
                    continue
                instance.samples.append((time.monotonic(), messages))

    with in_background(sample, stop.set):
        yield


@contextmanager
def in_background(work: Callable[[], None], stop: Callable[[], None]) -> Iterator[None]:
    """`work` in a thread of its own while the block runs; `stop` ends it."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop()
        thread.join(10)


@contextmanager
def printing(command: Sequence[str], samples: list[tuple[float, int]]) -> Iterator[None]:
    """A process that prints its count, one number a line, while it runs; each line noted."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip().isdigit():  # (its summary comes last)
                samples.append((time.monotonic(), int(line)))

    def stop() -> None:
        process.terminate()
        process.wait(30)

    with in_background(read, stop):
        yield


def rolling_restart(
    cluster: Cluster, topic: str, group: str, kill: Victim, beside: Sequence[str] = ()
) -> Outcome:
    """Restart each node in turn (SIGTERM, start), then kill -9 `kill` and start it again,
    while `lumu produce` writes 2,000 records a second and two `lumu serve` count them.
    `beside`: a command run alongside that prints its own running count (a baseline)."""
    env = lumu_env(cluster.bootstrap, topic)
    counts: list[tuple[float, int]] = []
    producer = subprocess.Popen(
        [*LUMU, "produce", "--rate", "2000", "--ips", "30000"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with ExitStack() as stack:
            args = ("serve", "127.0.0.1:0", "--group", group, "--from-beginning",
                    "--commit-interval", "1")  # fmt: skip
            started = stack.enter_context(together(2, cluster.bootstrap, topic, *args))
            instances = [Instance(process, url) for process, url in started]
            for instance in instances:
                url = instance.url
                until(lambda: counted(url) > 0, "both instances count", 60)  # noqa: B023
                instance.threads.append(threads(instance.process))
            if beside:
                stack.enter_context(printing(beside, counts))
            with sampled(instances):
                time.sleep(3)
                rolling = time.monotonic()
                for node in (1, 2, 3):
                    cluster.stop(node)
                    cluster.start(node)
                    time.sleep(2)
                killing = time.monotonic()
                target = victim(cluster, kill, topic, group)
                cluster.kill(target)
                time.sleep(3)
                cluster.start(target)
                time.sleep(5)
                producer.send_signal(signal.SIGINT)
                out, err = producer.communicate(timeout=120)
                phases = {"rolling": (rolling, killing), "kill": (killing, time.monotonic())}
            assert producer.returncode in (0, 3, 130), err  # 3: some records not delivered
            produced = json.loads(out.splitlines()[-1])
            ref = reference(cluster.bootstrap, topic)
            for instance in instances:
                instance.count = count_when(instance.url, ref.messages)
                instance.threads.append(threads(instance.process))
                instance.abandoned = int(
                    metrics(instance.url)["lumu_state_producers_abandoned_total"]
                )
            for instance in instances:
                instance.process.send_signal(signal.SIGTERM)
            for instance in instances:
                assert instance.process.wait(timeout=60) == 0
                assert instance.process.stderr is not None
                instance.said = instance.process.stderr.read()
        return Outcome(ref, instances, produced, incidents=4, phases=phases, beside=counts)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
