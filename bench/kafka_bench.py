"""Shared helpers of the Kafka benchmarks (consume, produce, http; memory needs no broker).

- `broker()`: a context manager yielding a bootstrap address. Unless LUMU_BENCH_BOOTSTRAP is set,
  it starts a single-node Kafka with `scripts/kafka-broker start --port 29192` in a temporary
  data dir (LUMU_KAFKA_DIR), and stops it and deletes the dir on the way out, also after an error,
  Ctrl-C or SIGTERM (turned into KeyboardInterrupt so `finally` blocks run).
- `lumu()`: runs a lumu command with a timeout, returns its wall time and its JSON summary line.
- `preload()`: `lumu produce --rate 0 --count N` into a topic, as fast as it goes.
- `warm_up()`: the broker's one-off costs paid before anything is timed.
- `spawned()`: a background process that is always terminated (SIGTERM, then SIGKILL).
- `run_main()`: runs a script's main; Ctrl-C or SIGTERM end it with status 130, cleaned up.
- `fresh_consumer()`: a consumer in a fresh group from the earliest offset, telling partition ends.
- `lumu_settings()`: the librdkafka settings lumu gives a client, for the baselines to take;
  `track_settings()`: those of `lumu track -e --from-beginning`'s consumer.
- `children_cpu()`: the CPU seconds (user + system) of the waited-for child processes so far.
- `bytecode()`: lumu's modules compiled, as an install leaves them (see below).
- `median`, `rotations`, `env_int`, `fresh_name`, `end_offsets`, `delete_topics`.

Every subprocess call and wait loop has a timeout: a benchmark fails, it never hangs.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
LUMU = str(Path(sys.executable).with_name("lumu"))
BROKER_SCRIPT = ROOT / "scripts" / "kafka-broker"
BENCH_PORT = 29192  # below the ephemeral ports (32768+), where client sockets live
BROKER_START_TIMEOUT = 150.0
BROKER_STOP_TIMEOUT = 60.0


def env_int(name: str, default: int) -> int:
    """An integer knob from the environment (underscores allowed: 1_000_000)."""
    value = os.environ.get(name, "").strip()
    return int(value.replace("_", "")) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def fresh_name(prefix: str) -> str:
    """A topic or group name no earlier run used."""
    return f"{prefix}-{int(time.time())}-{uuid.uuid4().hex[:8]}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rotations(items: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """Round r runs the items rotated by r, so each takes each position once in len(items) rounds
    (drift on a shared machine then hits all alike)."""
    for r in range(rounds):
        k = r % len(items)
        yield r, [*items[k:], *items[:k]]


def machine() -> str:
    return f"machine: {os.cpu_count()} cores (shared), Python {sys.version.split()[0]}"


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main: Ctrl-C or SIGTERM end it with one line and status 130 (its
    `finally` blocks, such as stopping the broker, have run by then)."""
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; the broker and processes this run started are stopped", flush=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """A bootstrap address: LUMU_BENCH_BOOTSTRAP, or a broker started here for the run."""
    given = os.environ.get("LUMU_BENCH_BOOTSTRAP")
    if given:
        print(f"broker: {given} (LUMU_BENCH_BOOTSTRAP)", flush=True)
        yield given
        return
    previous = signal.signal(signal.SIGTERM, _sigterm)
    data = Path(tempfile.mkdtemp(prefix="lumu-bench-kafka-"))
    env = {**os.environ, "LUMU_KAFKA_DIR": str(data)}
    script = [str(BROKER_SCRIPT), "--port", str(BENCH_PORT)]
    try:
        began = time.perf_counter()
        started = subprocess.run(
            [*script[:1], "start", *script[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=BROKER_START_TIMEOUT,
        )
        if started.returncode != 0:
            raise RuntimeError(f"kafka-broker start failed:\n{started.stderr.strip()}")
        address = started.stdout.strip().splitlines()[-1]
        print(f"broker: {address}, started in {time.perf_counter() - began:.1f} s", flush=True)
        yield address
    finally:
        try:
            subprocess.run(
                [*script[:1], "stop", *script[1:]],
                env=env,
                capture_output=True,
                timeout=BROKER_STOP_TIMEOUT,
            )
        finally:
            shutil.rmtree(data, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous)


@dataclass
class Run:
    """A finished lumu command: wall time, exit status, its JSON summary and stderr."""

    wall: float
    returncode: int
    summary: dict[str, Any]
    stderr: str


def lumu(
    args: Sequence[str],
    *,
    timeout: float,
    ok: Sequence[int] = (0,),
    prefix: Sequence[str] = (LUMU,),
) -> Run:
    """Run `lumu ARGS` to its end (at most `timeout` s); its summary is its last stdout line."""
    began = time.perf_counter()
    done = subprocess.run(
        [*prefix, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - began
    if done.returncode not in ok:
        raise RuntimeError(
            f"lumu {' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()[-2000:]}"
        )
    return Run(wall, done.returncode, summary_of(done.stdout), done.stderr)


def summary_of(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON summary in lumu's output: {stdout[-500:]!r}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def preload(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    ips: int = 100_000,
    ipv6_ratio: float = 0.1,
    invalid_ratio: float = 0.01,
    seed: int = 1,
    timeout: float = 600.0,
) -> Run:
    """Fill `topic` (created with 3 partitions) with `count` records, as fast as lumu produces."""
    args = [
        "produce", "--rate", "0", "--count", str(count), "--ips", str(ips),
        "--ipv6-ratio", str(ipv6_ratio), "--invalid-ratio", str(invalid_ratio),
        "--seed", str(seed), "--partitions", "3", "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    return lumu(args, timeout=timeout)


def warm_up(bootstrap: str) -> None:
    """One untimed `lumu track -e` with its state over a small topic. A fresh broker creates its
    internal topics on first use (__consumer_offsets for the first group, __transaction_state
    for the first transaction), seconds that would otherwise fall on whichever run is first."""
    began = time.perf_counter()
    topic, group = fresh_name("bench-warm-up"), fresh_name("bench-warm-up")
    preload(bootstrap, topic, 100, ips=10)
    args = ["track", "-e", "--from-beginning", "-g", group, "-t", topic, "-b", bootstrap]
    lumu(args, timeout=180, ok=(0, 1))
    delete_topics(bootstrap, [topic, f"{group}-lumu-state"])
    seconds = time.perf_counter() - began
    print(f"warm-up (the broker's internal topics): {seconds:.1f} s", flush=True)


@contextlib.contextmanager
def spawned(cmd: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """A background process, terminated on the way out however the block ends."""
    proc = subprocess.Popen(list(cmd), text=True, stdin=subprocess.DEVNULL, **popen)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str], grace: float = 20.0) -> tuple[str, str]:
    """SIGTERM, wait up to `grace` s, then SIGKILL; the rest of its stdout and stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return out or "", err or ""


def wait_for(what: str, check: Any, timeout: float, every: float = 0.2) -> Any:
    """Call `check()` until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(every)


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark (the offset the next record will get)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": fresh_name("bench-wm"), "log_level": 0}
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        ends = {}
        for partition in sorted(meta.partitions):
            tp = TopicPartition(topic, partition)
            ends[partition] = consumer.get_watermark_offsets(tp, timeout=timeout)[1]
        return ends
    finally:
        consumer.close()


def fresh_consumer(
    bootstrap: str, topic: str, extra: Mapping[str, object] = {}
) -> tuple[Consumer, set[int]]:
    """A consumer in a fresh group, from the earliest offset, telling partition ends, subscribed
    to `topic`; and the set its assigned partitions go into."""
    from confluent_kafka import Consumer

    assigned: set[int] = set()

    def on_assign(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned.update(tp.partition for tp in partitions)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": fresh_name("bench"),
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            **extra,
        }
    )
    consumer.subscribe([topic], on_assign=on_assign)
    return consumer, assigned


def create_topic(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(timeout=timeout)


def delete_topics(bootstrap: str, topics: Sequence[str], timeout: float = 30.0) -> None:
    """Delete topics (to keep the broker's disk small between runs); errors are ignored."""
    from confluent_kafka.admin import AdminClient

    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for future in admin.delete_topics(list(topics), operation_timeout=timeout).values():
        with contextlib.suppress(Exception):
            future.result(timeout=timeout)


class _Made(Exception):
    """Raised instead of making a librdkafka client; carries the settings it was given."""


def lumu_settings(kind: str, make: Callable[[], object]) -> dict[str, Any]:
    """The settings lumu gives a librdkafka client: `make()` is called with lumu_cli.kafka_io's
    `kind` ("Consumer" or "Producer") replaced, so no client is made and no broker is asked.

    The baselines take their settings from here rather than from a copy, so that they cannot
    drift from lumu's. Callbacks are included as lumu's objects; the caller drops them.
    """
    from contextlib import ExitStack
    from unittest import mock

    from lumu_cli.kafka_io import consume, produce, transactions

    def capture(settings: dict[str, Any]) -> object:
        raise _Made(dict(settings))

    with ExitStack() as patches:
        for module in (consume, produce, transactions):  # where kafka_io makes its clients
            if hasattr(module, kind):
                patches.enter_context(mock.patch.object(module, kind, capture))
        try:
            make()
        except _Made as made:
            settings: dict[str, Any] = made.args[0]
            return settings
    raise RuntimeError(f"lumu made no {kind}")


# lumu's consumer settings that belong to lumu alone: its group, its health view's statistics
NOT_FOR_BASELINES = {"group.id", "bootstrap.servers", "statistics.interval.ms", "log_level"}


def track_settings() -> dict[str, Any]:
    """The librdkafka settings `lumu track -e --from-beginning` gives its consumer, but for its
    group, its callbacks and the statistics its health view reads."""
    from lumu_cli import kafka_io

    def make() -> object:
        config = kafka_io.client_config("localhost:9092")
        return kafka_io.Consumed(
            config, "t", "g", from_beginning=True, durable=True, to_the_end=True
        )

    settings = lumu_settings("Consumer", make)
    return {k: v for k, v in settings.items() if k not in NOT_FOR_BASELINES and not callable(v)}


def children_cpu() -> float:
    """CPU seconds (user + system, all threads) of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bytecode() -> None:
    """Compile lumu's modules as `pip install` leaves them. Where PYTHONDONTWRITEBYTECODE=1 (as
    on the machines this was built on), a module edited since its last compile would otherwise
    be compiled again by every lumu process, a cost its baselines (compiled libraries) never
    pay."""
    import lumu_cli

    compileall.compile_dir(Path(lumu_cli.__file__).parent, quiet=1)
