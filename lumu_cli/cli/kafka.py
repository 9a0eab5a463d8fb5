"""The Kafka commands: produce, track, serve and state, and the options they share."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumu_cli.cli import app, fail, reported
from lumu_cli.errors import BrokerError, DeliveryError, ExitCode, UsageError

if TYPE_CHECKING:
    from lumu_cli.tracker import Stats, Tracker
    from lumu_cli.windows import Window

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        envvar="LUMU_BOOTSTRAP_SERVERS",
        metavar="HOST:PORT,...",
        help="Kafka brokers.",
        show_default="the -F file's bootstrap.servers, else localhost:9092",
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config-file",
        "-F",
        envvar="LUMU_KAFKA_CONFIG",
        metavar="FILE",
        help="librdkafka properties, key=value lines (as kcat -F), e.g. client.properties for "
        "SASL_SSL; -b and -X override them.",
        show_default=False,
        dir_okay=False,
    ),
]
Topic = Annotated[
    str,
    typer.Option(
        "--topic", "-t", envvar="LUMU_TOPIC", metavar="TOPIC", help="Topic of device events."
    ),
]
Settings = Annotated[
    list[str] | None,
    typer.Option(
        "-X",
        metavar="KEY=VALUE",
        help="Any librdkafka property, repeatable (as kcat -X), e.g. -X security.protocol=SSL.",
        show_default=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        envvar="LUMU_TIMEOUT",
        min=0.1,
        metavar="SECONDS",
        help="Seconds to wait for the broker at start before giving up (exit 3).",
    ),
]
Group = Annotated[
    str,
    typer.Option("--group", "-g", envvar="LUMU_GROUP", metavar="GROUP", help="Consumer group."),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        envvar="LUMU_WORKERS",
        min=0,
        metavar="N",
        help="Threads that check records beside the consume loop; without the native checker, "
        "processes. 0 checks them in it.",
        show_default="0; without the native checker, one per core beyond the first, at most 4",
    ),
]
FromBeginning = Annotated[
    bool,
    typer.Option(
        "--from-beginning",
        help="A partition with no saved state starts at its first record, not its end (as "
        "auto.offset.reset=earliest); every partition does with --no-state.",
    ),
]
State = Annotated[
    bool,
    typer.Option(
        "--state/--no-state",
        envvar="LUMU_STATE",
        help="Keep the count in the group's compacted topic <group>-lumu-state: a restart "
        "resumes it, and every instance of the group shows the count of all partitions. "
        "--no-state keeps it in memory only.",
    ),
]
Reset = Annotated[
    bool,
    typer.Option(
        "--reset",
        help="Discard the group's saved state and committed offsets first, and count again "
        "from the first record (no other member of the group may be running).",
    ),
]
CommitInterval = Annotated[
    float,
    typer.Option(
        "--commit-interval",
        envvar="LUMU_COMMIT_INTERVAL",
        min=0.05,
        metavar="SECONDS",
        help="Seconds between state commits: how stale other instances' view can get.",
    ),
]

Replication = Annotated[
    int | None,
    typer.Option(
        "--replication-factor",
        envvar="LUMU_REPLICATION_FACTOR",
        min=1,
        metavar="N",
        help="Replicas of each partition of a topic lumu creates (produce: the topic; track "
        "and serve: the state topic).",
        show_default="the cluster's default.replication.factor",
    ),
]

WindowsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--window",
        envvar="LUMU_WINDOWS",
        metavar="SIZE[:KEEP]",
        help="Also count unique IPs per window of event time: tumbling, aligned to UTC, SIZE a "
        "divisor of a day (1m, 15m, 1h, 1d), KEEP windows kept (48). Repeatable, or "
        "comma-separated: --window 1h --window 1d:31.",
        show_default=False,
    ),
]


class _Signals:
    """SIGINT and SIGTERM set `stop` for a clean stop; `interrupted` tells a Ctrl-C."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.interrupted = False

    def __enter__(self) -> _Signals:
        self._old = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():  # a second Ctrl-C: stop waiting for the clean stop
            raise KeyboardInterrupt
        self.interrupted = signum == signal.SIGINT
        self.stop.set()

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return ExitCode.INTERRUPTED if self.interrupted else ExitCode.OK


def _summary(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@app.command()
@reported
def produce(
    rate: Annotated[
        float,
        typer.Option(
            "--rate", "-r", min=0, metavar="N", help="Records per second; 0: as fast as possible."
        ),
    ] = 100,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", "-n", min=0, metavar="N", help="Stop after N records.", show_default=False
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            min=0,
            metavar="SECONDS",
            help="Stop after this many seconds.",
            show_default=False,
        ),
    ] = None,
    ips: Annotated[
        int, typer.Option("--ips", min=1, metavar="N", help="Size of the device-IP pool.")
    ] = 1000,
    ipv6_ratio: Annotated[
        float,
        typer.Option(
            "--ipv6-ratio", min=0, max=1, metavar="FRACTION", help="Share of the pool that is IPv6."
        ),
    ] = 0.1,
    invalid_ratio: Annotated[
        float,
        typer.Option(
            "--invalid-ratio",
            min=0,
            max=1,
            metavar="FRACTION",
            help="Share of records that are malformed, of every kind.",
        ),
    ] = 0.0,
    seed: Annotated[
        int | None,
        typer.Option("--seed", metavar="N", help="Make the run reproducible.", show_default=False),
    ] = None,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions", min=1, metavar="N", help="Partitions, if the topic must be created."
        ),
    ] = 3,
    replication: Replication = None,
    bootstrap: Bootstrap = None,
    topic: Topic = "device-events",
    settings: Settings = None,
    config_file: ConfigFile = None,
    timeout: Timeout = 10.0,
) -> None:
    """Seed a topic with synthetic device events at a steady rate.

    Each record is JSON {"timestamp", "device_ip", "error_code"} keyed by the device IP, with
    timestamps in the forms devices send. Runs until --count, --duration or Ctrl-C, then prints
    one JSON summary line: sent, delivered, failed, distinct_ips, invalid, elapsed, rate. The
    exit status is 3 if any record was not delivered, 130 after Ctrl-C.
    """
    from lumu_cli.acls import TOPIC, Acl
    from lumu_cli.kafka_io import Sender, client_config, ensure_topic
    from lumu_cli.live import ProduceProgress
    from lumu_cli.produce import FLUSH_SECONDS
    from lumu_cli.produce import produce as run
    from lumu_cli.synth import Synth

    config = client_config(bootstrap, settings or (), config_file)
    grant = Acl("WRITE", TOPIC, topic)
    if ensure_topic(config, topic, partitions, timeout, replication=replication, grant=grant):
        fail(f"created topic {topic!r} with {partitions} partitions")
    synth = Synth(ips, ipv6_ratio=ipv6_ratio, invalid_ratio=invalid_ratio, seed=seed)
    stop, sender = threading.Event(), Sender(config, topic)
    with _Signals(stop) as signals, ProduceProgress(count, duration) as progress:
        summary = run(
            sender, synth, rate=rate, count=count, duration=duration, stop=stop,
            progress=progress.update,
        )  # fmt: skip
    _summary(summary)
    if summary["failed"]:
        why = sender.first_error or f"still queued after {FLUSH_SECONDS:g} s"
        failed = f"{summary['failed']} of {summary['sent']} records were not delivered"
        raise DeliveryError(f"{failed} (first reason: {why})")
    raise typer.Exit(signals.exit_code)


@dataclass(frozen=True)
class _Counting:
    """What `track` and `serve` share: where to read, and how the count is kept."""

    bootstrap: str | None
    topic: str
    settings: list[str] | None
    config_file: Path | None
    timeout: float
    group: str
    from_beginning: bool
    state: bool
    reset: bool
    commit_interval: float
    workers: int | None
    replication: int | None  # of the state topic, if it must be created
    windows: tuple[Window, ...] = ()


@dataclass(frozen=True)
class _Listen:
    """Where to serve HTTP, and the parameter that said so: `--serve` (track) or ADDRESS (serve).

    The server's errors name the address only; `named` adds the parameter the user typed.
    """

    parameter: str
    address: str

    @contextlib.contextmanager
    def named(self) -> Iterator[None]:
        try:
            yield
        except UsageError as exc:
            raise UsageError(f"{self.parameter} {exc}") from exc


def _count(
    how: _Counting,
    *,
    exit_at_end: bool,
    serve: _Listen | None,
    view: Callable[[Tracker], AbstractContextManager[object]],
) -> tuple[Stats, int]:
    """What `track` and `serve` share: consume, count, keep the state, serve; the final stats."""
    from lumu_cli.acls import TOPIC, Acl
    from lumu_cli.checkers import Inline, Pooled, Threaded, default_workers
    from lumu_cli.events import explain
    from lumu_cli.kafka_io import Consumed, client_config, topic_exists
    from lumu_cli.native_events import WHY_PYTHON
    from lumu_cli.snapshots import Tally
    from lumu_cli.state import Durable, Ephemeral, reset
    from lumu_cli.tracker import Tracker

    if serve is not None:  # a bad address is told at once, before the broker is asked
        from lumu_cli.server import parse_address

        with serve.named():
            parse_address(serve.address)
    config = client_config(how.bootstrap, how.settings or (), how.config_file)
    exists = topic_exists(config, how.topic, how.timeout, Acl("READ", TOPIC, how.topic))
    if not exists and exit_at_end:  # nothing to read to the end of
        raise BrokerError(
            f"topic {how.topic!r} does not exist on {config['bootstrap.servers']} (name another "
            "with -t, or create it: lumu produce -t TOPIC)"
        )
    if how.reset and not how.state:
        raise UsageError("--reset discards the saved state: it needs --state")
    if how.reset:
        discarded = reset(config, how.group, how.timeout)
        fail(f"reset group {how.group!r}: {discarded} state records discarded")

    def report(partition: int, offset: int, _reason: str, value: bytes | None) -> None:
        fail(f"partition {partition} offset {offset}: {explain(value)}")

    def error(text: str) -> None:
        fail(f"kafka: {text} (retrying; further reports of it are not shown)")

    with contextlib.ExitStack() as resources:  # closed in reverse, also on an error
        consumer = Consumed(
            config, how.topic, how.group, from_beginning=how.from_beginning or how.reset,
            durable=how.state, to_the_end=exit_at_end, subscribe=exists,
        )  # fmt: skip
        resources.callback(consumer.close)
        tally, keeper = Tally(how.windows), None
        if how.state:
            keeper = Durable(
                config, consumer, tally, commit_interval=how.commit_interval,
                timeout=how.timeout, notify=fail, replication=how.replication,
            )  # fmt: skip
            resources.callback(keeper.close)
            keeper.restore()
        if WHY_PYTHON is None:  # threads only when asked: see checkers.Threaded
            checker: Inline = Threaded(how.workers) if how.workers else Inline()
        else:
            fail(f"checking records in Python: {WHY_PYTHON}")
            workers = default_workers() if how.workers is None else how.workers
            checker = Pooled(workers) if workers else Inline()
        checker.times = bool(how.windows)  # windows count by event time
        tracker = Tracker(
            consumer, tally=tally, keeper=keeper or Ephemeral(consumer), exit_at_end=exit_at_end,
            on_invalid=report, on_error=error, checker=checker,
        )  # fmt: skip
        consumer.listener = tracker
        if serve is not None:
            from lumu_cli.server import Endpoint

            with serve.named():
                endpoint = Endpoint(serve.address, lambda: tracker.stats, notify=fail)
            resources.enter_context(endpoint)
            fail(f"serving {endpoint.url}/count, /healthz, /metrics, /openapi.json and /api/docs")
        if consumer.waiting:
            fail(f"waiting for {consumer.waiting}; counting starts once it is created")
        _quiet_collector()
        with _Signals(tracker.stop) as signals, view(tracker):
            stats = tracker.run()
    return stats, signals.exit_code


def _quiet_collector() -> None:
    """Fewer passes of Python's cyclic garbage collector over the consume loop.

    The loop frees what it makes (a batch's messages, values, arrays) by reference counting.
    At Python's default threshold the collector still ran a pass every 700 new objects, and a
    full pass over every object (the start-up's modules among them) every 70,000: 10-15% of
    reading a backlog (issue 21). So the objects alive now are frozen out of every pass (as the
    endpoint does for its own), and a pass comes every 100,000 new objects.
    """
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


@app.command()
@reported
def track(
    group: Group = "lumu-track",
    from_beginning: FromBeginning = False,
    exit_at_end: Annotated[
        bool,
        typer.Option(
            "--exit-at-end",
            "-e",
            help="Stop when every assigned partition has reached its end (as kcat -e).",
        ),
    ] = False,
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="[HOST]:PORT",
            help="Also serve the count over HTTP, e.g. :8000.",
            show_default=False,
        ),
    ] = None,
    state: State = True,
    reset: Reset = False,
    commit_interval: CommitInterval = 5.0,
    replication: Replication = None,
    windows: WindowsOption = None,
    bootstrap: Bootstrap = None,
    topic: Topic = "device-events",
    settings: Settings = None,
    config_file: ConfigFile = None,
    timeout: Timeout = 10.0,
    workers: Workers = None,
) -> None:
    """Count unique device IPs in a topic, live.

    A record counts if it is a JSON object whose device_ip is an IPv4 or IPv6 address (compared
    in canonical form) and whose timestamp `lumu ts parse` accepts; the others are counted as
    invalid, by reason, and the first of each reason is shown on stderr with its offset. The
    count shows live on a terminal, as a status line otherwise. A topic that does not exist yet
    is waited for (with --exit-at-end, it is exit 3). It stops at Ctrl-C, SIGTERM or, with
    --exit-at-end, the end of the topic, and prints one JSON line: unique_ips, messages,
    invalid, invalid_by_reason, elapsed, first_record_at, and with --window the windows. The
    exit status is 1 if any record was invalid, 130 after Ctrl-C.

    The count is kept in the group's compacted topic <group>-lumu-state (unless --no-state): a
    restart resumes it, and every instance of the group shows the count over all partitions.
    """
    from lumu_cli.live import StatusView
    from lumu_cli.windows import parse_windows

    how = _Counting(
        bootstrap, topic, settings, config_file, timeout, group, from_beginning, state, reset,
        commit_interval, workers, replication, parse_windows(windows or ()),
    )  # fmt: skip
    stats, code = _count(
        how, exit_at_end=exit_at_end, serve=None if serve is None else _Listen("--serve", serve),
        view=lambda tracker: StatusView(lambda: tracker.stats, topic=topic),
    )  # fmt: skip
    _summary(stats.summary())
    raise typer.Exit(code or (ExitCode.BAD_INPUT if stats.invalid_total else ExitCode.OK))


@app.command()
@reported
def serve(
    address: Annotated[
        str,
        typer.Argument(
            metavar="ADDRESS",
            help="Where to listen, [HOST]:PORT: :8000 for every interface, 127.0.0.1:8000 or "
            "[::1]:8000 for loopback.",
            show_default=False,
        ),
    ],
    group: Group = "lumu-serve",
    from_beginning: FromBeginning = False,
    state: State = True,
    reset: Reset = False,
    commit_interval: CommitInterval = 5.0,
    replication: Replication = None,
    windows: WindowsOption = None,
    bootstrap: Bootstrap = None,
    topic: Topic = "device-events",
    settings: Settings = None,
    config_file: ConfigFile = None,
    timeout: Timeout = 10.0,
    workers: Workers = None,
) -> None:
    """Serve the unique-IP count over HTTP: the daemon form of track.

    GET /count gives {"unique_ips", "messages", "invalid", "updated_at", "as_of", "lag",
    "state_lag", "partitions"}, and with --window the "windows" (GET /count?window=1h&last=24:
    the union of the last 24 windows of 1h); /healthz is 200 while a broker answers and 503
    while none does; /metrics is Prometheus text (lumu_unique_ips, lumu_messages_total,
    lumu_invalid_messages_total{reason}, lumu_partition_lag, lumu_state_lag, lumu_up);
    /openapi.json describes them. The count is kept and shared as with track. A topic that does
    not exist yet is waited for ("waiting_for_topic": true) and counted from its first record
    once created. A status line goes to stderr every minute. SIGTERM or Ctrl-C stops it cleanly.
    """
    from lumu_cli.live import StatusView
    from lumu_cli.windows import parse_windows

    how = _Counting(
        bootstrap, topic, settings, config_file, timeout, group, from_beginning, state, reset,
        commit_interval, workers, replication, parse_windows(windows or ()),
    )  # fmt: skip
    _, code = _count(
        how, exit_at_end=False, serve=_Listen("ADDRESS", address),
        view=lambda tracker: StatusView(lambda: tracker.stats, plain=True, every=60),
    )  # fmt: skip
    raise typer.Exit(code)


@app.command("state")
@reported
def state_(
    group: Group = "lumu-track",
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object instead of a table.")
    ] = False,
    bootstrap: Bootstrap = None,
    settings: Settings = None,
    config_file: ConfigFile = None,
    timeout: Timeout = 10.0,
) -> None:
    """Show the count a group has saved in its state topic.

    The state topic is the group's compacted topic <group>-lumu-state: its replication factor
    and min.insync.replicas are shown, with a warning on stderr if it has one replica on a
    cluster of several brokers. Per tracked topic, the union of unique IPs; per partition, its
    next offset, messages, invalid records, unique IPs, pieces, bytes and the age of its last
    commit.

    Exit status 3 if the group has no saved state, or its state topic cannot be read (not
    lumu's, another format version, inconsistent).
    """
    from datetime import UTC, datetime

    from lumu_cli.kafka_io import client_config
    from lumu_cli.state import describe, replication_warning
    from lumu_cli.timestamps import format_millis
    from lumu_cli.windows import describe as describe_windows

    found = describe(client_config(bootstrap, settings or (), config_file), group, timeout)
    saved, layout = found.topics, found.layout
    if warning := replication_warning(found.name, layout):
        fail(warning)
    now = datetime.now(UTC)
    rows = {
        entry.topic: [
            {
                "partition": part.partition,
                "next_offset": part.meta and part.meta.next_offset,
                "messages": part.meta and part.meta.messages,
                "invalid": part.meta and sum(part.meta.invalid.values()),
                "unique_ips": part.unique_ips,
                "pieces": part.pieces,
                "bytes": part.bytes,
                "written_at": part.meta and part.meta.written_at,
                "age": part.meta
                and round((now - datetime.fromisoformat(part.meta.written_at)).total_seconds(), 1),
            }
            for part in entry.partitions
        ]
        for entry in saved
    }
    if as_json:
        topics = {
            entry.topic: {
                "unique_ips": entry.unique_ips, "partitions": rows[entry.topic],
                **({"windows": describe_windows(entry.windows, keep=False)}
                   if entry.windows else {}),
            }
            for entry in saved
        }  # fmt: skip
        _summary({
            "group": group, "state_topic": found.name, "replication_factor": layout.replication,
            "min_insync_replicas": layout.min_isr, "brokers": layout.brokers, "topics": topics,
        })  # fmt: skip
        return
    from rich.console import Console
    from rich.table import Table

    for entry in saved:
        table = Table(
            *(("partition", "next offset", "messages", "invalid", "unique IPs", "pieces")),
            "bytes", "age (s)",
            title=f"{found.name}: {entry.topic}, {entry.unique_ips:,} unique IPs",
            caption=f"replication factor {layout.replication}, min.insync.replicas "
            f"{layout.min_isr}, {layout.brokers} broker(s)",
        )  # fmt: skip
        for row in rows[entry.topic]:
            table.add_row(*(("-" if v is None else f"{v:,}") for v in (
                row["partition"], row["next_offset"], row["messages"], row["invalid"],
                row["unique_ips"], row["pieces"], row["bytes"], row["age"],
            )))  # fmt: skip
        Console().print(table)
        for sets in entry.windows:
            kept = Table(
                "start", "unique IPs", "messages",
                title=f"{entry.topic}: {sets.window.name} windows",
                caption=f"late {sets.late:,}, future {sets.future:,}",
            )  # fmt: skip
            for start, counts in sorted(sets.counts.items()):
                kept.add_row(format_millis(start), f"{len(counts.ips):,}", f"{counts.messages:,}")
            Console().print(kept)
