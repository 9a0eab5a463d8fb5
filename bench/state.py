"""Benchmark the durable state of `lumu track`: the group's compacted topic `<group>-lumu-state`.

Each figure is printed with a ratio against a named baseline measured in the same run:

1. Commit cost against set size. For each of BENCH_STATE_SIZES ("1000000,10000000") distinct
   random IPv4 addresses (numpy, seeded), all in partition 0 of a `snapshots.Tally` (made local
   with `take(0, 0)`, filled with `apply` in chunks of 1,000,000, so its pieces track changes),
   in this process:
     (a) the first commit, which writes the whole set: `tally.changes` + `Transactions.commit`
         (into a fresh state topic made by `ensure_state_topic`) + `tally.written`; the baseline;
     (b) then BENCH_STATE_INCREMENTS (5) times: 1,000 addresses not in the set are applied and
         committed the same way (the apply is not timed); the median.
   Printed: seconds, records and MB of each, the ratio (b)/(a), and the cost per 1,000 addresses
   of (b) against (a)'s (its time spread over the whole set).
2. Restore. BENCH_RESTORE (10,000,000) distinct IPv4 addresses spread over the 3 partitions of a
   fresh source topic are committed as in 1 (one transaction per partition). Then, each in a
   fresh interpreter (this script with a hidden --case), BENCH_ROUNDS (3) rounds, order rotated:
     - restore: `kafka_io.Consumed(..., from_beginning=True, durable=True)` for the source topic,
       then `state.Durable(...)` and `.restore()`: the real restart path. Timed from creating
       the first of its clients (the Consumed) to the end of restore; lumu's own
       `restore_seconds` (the reading, from `restore()` on) is shown too. The restored unique
       count must equal the number committed, or the case fails;
     - the baseline, bare: a confluent_kafka Consumer with StateReader's own settings (read from
       lumu_cli.kafka_io: read_committed, fetch.wait.max.ms=10, reconnect.backoff.ms=10, ...)
       assigned to the state topic from its beginning, `consume(10000, 0.1)` as StateReader
       reads, until each partition's end, counting records and bytes, nothing decoded. Timed
       the same way, from creating its consumer to the end, in its own subprocess too. It must
       read exactly the records committed, or the case fails.
   Both clocks start in an interpreter that has made its imports. Medians, and the ratio
   restore/bare.
3. Memory of the restored instance: in each restore case, VmRSS after gc and malloc_trim (as
   bench/memory.py does) once the imports are made, again once the Consumed is made (before
   the Durable; the growth is counted from here), and after restore, gc and malloc_trim (it
   holds each partition's set and their union). The baseline, in another fresh
   interpreter: bench/memory.py's own case for ONE UniqueIPs holding the same addresses. Printed:
   both growths, the difference, and whether it meets the aim (at most 64 MB more than one set).
4. Consume with state on and off. BENCH_MESSAGES (1,000,000) records preloaded as bench/consume.py
   does (`lumu produce --rate 0 --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01 --seed 1`),
   then `lumu track --from-beginning --exit-at-end` in a fresh group with the state (the default)
   and with `--no-state`, whole processes, BENCH_ROUNDS rounds, order rotated. Three figures
   each, medians, every one named in the output: wall (the whole process: start-up, for the
   state its topic and restore, group join, reading, the final commit); its own `elapsed` (from
   after the restore to the end: join, reading, final commit); reading (`elapsed -
   first_record_at`: the first record to the end). The ratio on/off of each (aim >= 0.9x, on
   wall). Every run must count every record, and the unique IPs and invalid records (by reason)
   that `lumu produce` says it sent.

The README rows come last, in the README's order: 4, 1, 2, 3. Checks (FAIL and exit 1 when one
does not hold) are named above; also, after section 1's commits the set holds every address
applied.

Every subprocess and wait loop has a timeout: a benchmark fails, it never hangs.

Usage: python bench/state.py   (env: BENCH_STATE_SIZES, BENCH_STATE_INCREMENTS, BENCH_RESTORE,
BENCH_MESSAGES, BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import memory
import numpy as np
import numpy.typing as npt
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from figures import check, ratio, readme
from kafka_bench import (
    Run,
    broker,
    bytecode,
    delete_topics,
    end_offsets,
    env_int,
    fresh_name,
    lumu,
    lumu_settings,
    machine,
    median,
    preload,
    rotations,
    run_main,
    warm_up,
)

from lumu_cli.events import Checked
from lumu_cli.kafka_io import (
    CommitFailed,
    Consumed,
    StateReader,
    Transactions,
    client_config,
    ensure_state_topic,
    ensure_topic,
)
from lumu_cli.snapshots import Tally
from lumu_cli.state import Durable, state_topic
from lumu_cli.timestamps import format_timestamp

CHUNK = 1_000_000  # addresses applied at once
NEW = 1_000  # new addresses per incremental commit
TIMEOUT = 30.0  # each Kafka request
CASE_TIMEOUT = 600.0  # a restore or bare read in a subprocess
CONSUME_TIMEOUT = 300.0  # one lumu track run
SEED = 20211203
AIM_MB = 64.0
SOURCE_PARTITIONS = 3

V4 = npt.NDArray[np.uint32]
Results = dict[str, list[dict[str, Any]]]  # each case's results, by case


def distinct_v4(count: int, seed: int) -> V4:
    """`count` distinct random IPv4 addresses, in random order (sort and dedup: numpy 2.4's
    np.unique takes 10 s on 10M here, a sort 0.5 s)."""
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.integers(0, 1 << 32, size=count + count // 50 + 1000, dtype=np.uint32))
    pool = drawn[np.concatenate(([True], drawn[1:] != drawn[:-1]))]
    if len(pool) < count:
        raise RuntimeError("not enough distinct IPv4 addresses drawn")
    return rng.permutation(pool)[:count]


def filled(shares: dict[int, V4]) -> Tally:
    """A Tally counting each partition here, holding its share of the addresses."""
    tally = Tally()
    for partition, addresses in shares.items():
        tally.take(partition, 0)
        for at in range(0, len(addresses), CHUNK):
            add(tally, partition, addresses[at : at + CHUNK])
    return tally


def add(tally: Tally, partition: int, addresses: V4) -> None:
    """Count `addresses` as the next records of `partition` (as track does with checked ones)."""

    start = tally.next_offset(partition)
    offsets = range(start, start + len(addresses))
    tally.apply(partition, offsets, Checked(v4=addresses, v6=[]))


# ---------------------------------------------------------------- 1. commit cost


@dataclass
class Commit:
    seconds: float
    changes: float  # tally.changes
    transact: float  # Transactions.commit
    records: int
    size: int  # bytes of keys and values

    @property
    def mb(self) -> float:
        return self.size / 1e6


def commit(tally: Tally, writer: Transactions, topic: str, partitions: list[int]) -> Commit:
    """One state commit of `partitions`, as Durable._commit makes it (offsets aside), timed."""
    began = time.perf_counter()
    now = format_timestamp(datetime.now(UTC))
    records = tally.changes(topic, partitions, now)
    changed = time.perf_counter()
    try:
        writer.commit(records, {}, None)
    except CommitFailed as exc:
        raise SystemExit(f"FAIL: a commit of {len(records):,} records failed: {exc}") from None
    transacted = time.perf_counter()
    tally.written(partitions, now)
    done = time.perf_counter()
    size = sum(len(k) + len(v or b"") for k, v in records)
    return Commit(done - began, changed - began, transacted - changed, len(records), size)


Row = list[str]  # a README table row: script, lumu, baseline, ratio


def commit_cost(config: dict[str, str], size: int, increments: int) -> tuple[list[str], Row]:
    """Section 1 for one set size; the topics it made, and its README row."""
    pool = distinct_v4(size + increments * NEW, SEED + size)
    began = time.perf_counter()
    tally = filled({0: pool[:size]})
    print(f"  {size:,} IPv4 in partition 0 (applied in {time.perf_counter() - began:.1f} s)")
    group = fresh_name("bench-state")
    name = state_topic(group)
    ensure_state_topic(config, name, TIMEOUT)
    writer = Transactions(config, name, group, TIMEOUT)
    writer.commit([], {}, None)  # an empty transaction: waits until the producer is ready
    try:
        full = commit(tally, writer, "bench-topic", [0])
        steps = []
        for k in range(increments):
            add(tally, 0, pool[size + k * NEW : size + (k + 1) * NEW])
            steps.append(commit(tally, writer, "bench-topic", [0]))
    finally:
        writer.close()
    held, applied = len(tally.ips), size + increments * NEW
    check(held == applied, f"the set holds {held:,} addresses; {applied:,} were applied")
    return [name], print_commits(size, full, steps)


FIRST_COMMIT = "(a) the first commit, rewriting the whole set"


def print_commits(size: int, full: Commit, steps: list[Commit]) -> Row:
    step = median([c.seconds for c in steps])
    records = median([c.records for c in steps])
    mb = median([c.mb for c in steps])
    per_k = full.seconds * NEW / size
    print(
        f"    (a) first commit, the whole set: {full.seconds:7.3f} s "
        f"(changes {full.changes:.3f} s, transaction {full.transact:.3f} s), "
        f"{full.records:,} records, {full.mb:.1f} MB\n"
        f"    (b) +{NEW:,} new addresses, commit: {step:7.3f} s "
        f"(median of {len(steps)}: {', '.join(f'{c.seconds:.3f}' for c in steps)}), "
        f"{records:,.0f} records, {mb:.2f} MB\n"
        f"    (b) {ratio(step, full.seconds, FIRST_COMMIT, digits=4)}\n"
        f"    per {NEW:,} addresses: (b) {step * 1e3:.1f} ms a commit of {NEW:,} new, "
        f"(a) {per_k * 1e3:.3f} ms as its share of the full rewrite: {step / per_k:.1f}x",
        flush=True,
    )
    return [
        f"`state.py`: commit after {NEW:,} new IPv4 among {millions(size)} (one partition)",
        f"{step * 1e3:.0f} ms, {records:,.0f} records, {mb:.2f} MB",
        f"the first commit, the whole set: {full.seconds:.2f} s, {full.records:,} records, "
        f"{full.mb:.1f} MB",
        f"{step / full.seconds:.2f}x",
    ]


def millions(count: int) -> str:
    return f"{count / 1e6:g}M" if count >= 1_000_000 else f"{count:,}"


# ---------------------------------------------------------------- 2, 3. restore and memory


def committed_state(config: dict[str, str], addresses: V4, group: str, topic: str) -> int:
    """Commit `addresses`, spread over the source topic's partitions, into `group`'s state;
    the number of records written."""
    ensure_topic(config, topic, SOURCE_PARTITIONS, TIMEOUT)
    name = state_topic(group)
    ensure_state_topic(config, name, TIMEOUT)
    shares = {p: addresses[p::SOURCE_PARTITIONS] for p in range(SOURCE_PARTITIONS)}
    began = time.perf_counter()
    tally = filled(shares)
    print(f"  {len(addresses):,} IPv4 over {SOURCE_PARTITIONS} partitions of {topic} "
          f"(applied in {time.perf_counter() - began:.1f} s)")  # fmt: skip
    writer = Transactions(config, name, group, TIMEOUT)
    written = 0
    try:
        for partition in shares:
            c = commit(tally, writer, topic, [partition])
            written += c.records
            print(f"    partition {partition} committed: {c.seconds:.2f} s, "
                  f"{c.records:,} records, {c.mb:.1f} MB", flush=True)  # fmt: skip
    finally:
        writer.close()
    return written


def run_case(args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """This script's hidden `--case` in a fresh interpreter: its JSON result and what it said."""
    done = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    check(
        done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}"
    )
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result, lines[:-1]


def restore_rounds(
    bootstrap: str, group: str, topic: str, count: int, records: int, rounds: int
) -> Results:
    """Restore and bare cases, alternating; each case's results by name."""
    base = ["--bootstrap", bootstrap]
    cases = {
        "restore": [*base, "--case", "restore", "--topic", topic, "--group", group,
                    "--expect", str(count)],
        "bare": [*base, "--case", "bare", "--topic", state_topic(group), "--expect", str(records)],
    }  # fmt: skip
    results: Results = {"restore": [], "bare": []}
    for r, order in rotations(list(cases), rounds):
        line = []
        for name in order:
            result, said = run_case(cases[name])
            results[name].append(result)
            line.append(f"{name} {result['seconds']:.2f} s")
            if r == 0 and said:
                print(f"    ({name} said: {' | '.join(said)})")
        print(f"    round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    return results


def restore_and_memory(
    config: dict[str, str], bootstrap: str, count: int, rounds: int
) -> tuple[list[str], list[Row]]:
    """Sections 2 and 3; the topics they made, and their README rows."""
    group, topic = fresh_name("bench-state-restore"), fresh_name("bench-state-source")
    addresses = distinct_v4(count, SEED)
    records = committed_state(config, addresses, group, topic)
    with tempfile.TemporaryDirectory(prefix="lumu-bench-state-") as tmp:
        addresses.tofile(Path(tmp) / "v4.bin")  # what memory.py's case reads
        del addresses
        gc.collect()
        results = restore_rounds(bootstrap, group, topic, count, records, rounds)
        one_set = memory.run_case("v4-lumu", Path(tmp), count)
    rows = [print_restore(results, count), print_memory(results, one_set, count)]
    return [topic, state_topic(group)], rows


def print_restore(results: Results, count: int) -> Row:
    restore, bare = results["restore"], results["bare"]
    wall = median([r["seconds"] for r in restore])
    own = median([r["restore_seconds"] for r in restore])
    read = median([r["seconds"] for r in bare])
    name = "bare read_committed read, nothing decoded"
    print(
        f"  restore of {count:,} IPv4 ({restore[-1]['unique']:,} restored, as committed), "
        f"median of {len(restore)}, each in a fresh process, timed from making its first "
        f"Kafka client:\n"
        f"    restore (Consumed + Durable made, restore()): {wall:6.2f} s "
        f"(its own restore_seconds, from restore() on: {own:.2f} s)\n"
        f"    {name}: {read:6.2f} s ({bare[-1]['records']:,} records, as committed, "
        f"{bare[-1]['bytes'] / 1e6:.1f} MB)\n"
        f"    restore: {ratio(wall, read, name, 'headline')}\n"
        f"    restore_seconds: {ratio(own, read, name)}",
        flush=True,
    )
    return [
        f"`state.py`: restore {millions(count)} IPv4 ({SOURCE_PARTITIONS} partitions), a fresh "
        "process, from making its first Kafka client",
        f"{wall:.2f} s",
        f"a bare read_committed read of the same {bare[-1]['records']:,} records, timed the "
        f"same: {read:.2f} s",
        f"{wall / read:.1f}x",
    ]


def print_memory(results: Results, one_set: dict[str, Any], count: int) -> Row:
    restore = results["restore"]
    grown = median([(r["after_kb"] - r["before_kb"]) / 1024 for r in restore])
    peak = median([(r["peak_kb"] - r["before_kb"]) / 1024 for r in restore])
    single = (one_set["after_kb"] - one_set["before_kb"]) / 1024
    more = grown - single
    verdict = "met" if more <= AIM_MB else "not met"
    print(
        f"  memory (VmRSS after - before, after gc and malloc_trim), each in a fresh process:\n"
        f"    restored instance, {count:,} IPv4 over {SOURCE_PARTITIONS} partitions and their "
        f"union: +{grown:.1f} MB (peak +{peak:.1f} MB; median of {len(restore)})\n"
        f"    baseline, one UniqueIPs of the same {count:,} (bench/memory.py's case): "
        f"+{single:.1f} MB\n"
        f"    difference: {more:+.1f} MB; {ratio(grown, single, 'one UniqueIPs')}\n"
        f"    aim: at most {AIM_MB:.0f} MB more than one set: {verdict}",
        flush=True,
    )
    return [
        "`state.py`: memory of an instance holding those 3 partitions' sets and their union",
        f"+{grown:.1f} MB RSS",
        f"one set of the same {millions(count)} (`memory.py`): +{single:.1f} MB",
        f"{more:+.1f} MB (aim at most +{AIM_MB:.0f} MB: {verdict})",
    ]


# ---------------------------------------------------------------- the cases, in a subprocess


def restore_case(bootstrap: str, topic: str, group: str, expect: int) -> dict[str, Any]:
    """Restore `group`'s state as `lumu track` does at start; time, count and memory."""
    from lumu_cli.snapshots import Tally

    config = client_config(bootstrap)
    memory._settle()  # resets the peak
    began = time.perf_counter()
    consumer = Consumed(config, topic, group, from_beginning=True, durable=True)
    before = memory._status_kb("VmRSS")  # the growth counts from here, the Durable's on
    tally = Tally()
    durable = Durable(config, consumer, tally, commit_interval=1.0, timeout=TIMEOUT, notify=print)
    durable.restore()
    seconds = time.perf_counter() - began
    unique = len(tally.ips)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    after, peak = memory._status_kb("VmRSS"), memory._status_kb("VmHWM")
    durable.close()
    consumer.close()
    check(unique == expect, f"restored {unique:,} unique IPs, {expect:,} were committed")
    return {
        "seconds": seconds,
        "restore_seconds": durable.restore_seconds,
        "unique": unique,
        "before_kb": before,
        "after_kb": after,
        "peak_kb": peak,
    }


def state_reader_settings(bootstrap: str) -> dict[str, Any]:
    """The settings lumu's StateReader gives its consumer (kafka_io), its group aside."""
    config = client_config(bootstrap)
    settings = lumu_settings("Consumer", lambda: StateReader(config, "t", "g", TIMEOUT))
    return {k: v for k, v in settings.items() if k != "group.id" and not callable(v)}


def bare_case(bootstrap: str, topic: str, expect: int) -> dict[str, Any]:
    """Read the state topic to its end, read_committed, counting records and bytes only."""
    settings = state_reader_settings(bootstrap)
    group = fresh_name("bench-state-bare")  # never joined, never committed
    began = time.perf_counter()
    consumer = Consumer({**settings, "group.id": group})
    partitions = sorted(consumer.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
        for p in partitions
    }
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records = size = 0
    at_end: set[int] = set()
    deadline = time.monotonic() + CASE_TIMEOUT / 2
    while at_end != set(partitions):
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare read of {topic} did not reach its end")
        for message in consumer.consume(StateReader.BATCH, 0.1):
            error = message.error()
            if error is None:
                records += 1
                size += len(message.key() or b"") + len(message.value() or b"")
            elif error.code() == KafkaError._PARTITION_EOF:
                partition, offset = message.partition(), message.offset()
                assert partition is not None
                assert offset is not None
                if offset >= ends[partition]:  # the end, not a pause before it
                    at_end.add(partition)
            else:
                raise KafkaException(error)
    seconds = time.perf_counter() - began
    consumer.close()
    check(records == expect, f"the bare read found {records:,} records; {expect:,} were committed")
    return {"seconds": seconds, "records": records, "bytes": size}


# ---------------------------------------------------------------- 4. consume, state on and off


def consume_on_off(bootstrap: str, messages: int, rounds: int) -> tuple[list[str], Row]:
    """Section 4; the topics it made (the preloaded one and the state topics), its README row."""
    topic = fresh_name("bench-state-consume")
    load = preload(bootstrap, topic, messages)
    total = sum(end_offsets(bootstrap, topic).values())
    check(total == messages, f"the topic holds {total:,} records, not {messages:,}")
    print(f"  preload: {total:,} records into {topic} by lumu produce "
          f"({load.summary['rate']:,.0f} records/s)", flush=True)  # fmt: skip
    flags = {"on": [], "off": ["--no-state"]}
    runs: dict[str, list[Run]] = {"on": [], "off": []}
    groups = []
    for r, order in rotations(list(flags), rounds):
        line = []
        for name in order:
            group = fresh_name("bench-state-track")
            groups.append(group)
            args = ["track", "--from-beginning", "--exit-at-end", "--group", group,
                    "-t", topic, "-b", bootstrap, *flags[name]]  # fmt: skip
            run = lumu(args, timeout=CONSUME_TIMEOUT, ok=(0, 1))  # 1: invalid records, expected
            check_counts(name, run.summary, total, load.summary)
            runs[name].append(run)
            line.append(f"{name} {run.wall:.2f} s")
        print(f"    round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    row = print_consume(runs, total)
    return [topic, *(f"{group}-lumu-state" for group in groups)], row


def check_counts(name: str, counted: dict[str, Any], total: int, sent: dict[str, Any]) -> None:
    """A track run counted every record, and what lumu produce sent."""
    for mine, theirs, expected in (
        ("messages", "records in the topic", total),
        ("unique_ips", "distinct_ips sent", sent["distinct_ips"]),
        ("invalid_by_reason", "invalid_by_reason sent", sent["invalid_by_reason"]),
    ):
        check(
            counted[mine] == expected,
            f"track, state {name}: {mine} {counted[mine]}, {theirs} {expected}",
        )


AIM_ON_OFF = "headline; aim >= 0.9x"


def print_consume(runs: dict[str, list[Run]], total: int) -> Row:
    def rate(seconds: Callable[[Run], float]) -> dict[str, float]:
        return {name: total / median([seconds(r) for r in rs]) for name, rs in runs.items()}

    wall = rate(lambda r: r.wall)
    own = rate(lambda r: float(r.summary["elapsed"]))
    reading = rate(lambda r: float(r.summary["elapsed"]) - float(r.summary["first_record_at"]))
    unique = runs["on"][0].summary["unique_ips"]
    print(
        f"  lumu track --from-beginning --exit-at-end, {total:,} records, median of "
        f"{len(runs['on'])} (every run: {unique:,} unique IPs, {total:,} messages, as sent):\n"
        f"    wall, the whole process (start-up, state topic and restore, join, reading, final "
        f"commit):\n"
        f"      state on (default): {wall['on']:9,.0f} msgs/s   --no-state: {wall['off']:9,.0f}"
        f" msgs/s\n"
        f"    its own elapsed (from after the restore: join, reading, final commit):\n"
        f"      state on (default): {own['on']:9,.0f} msgs/s   --no-state: {own['off']:9,.0f}"
        f" msgs/s\n"
        f"    reading (elapsed - first_record_at: the first record to the end, final commit "
        f"included):\n"
        f"      state on (default): {reading['on']:9,.0f} msgs/s   --no-state: "
        f"{reading['off']:9,.0f} msgs/s\n"
        f"    state on, wall: {ratio(wall['on'], wall['off'], '--no-state', AIM_ON_OFF)}\n"
        f"    state on, own elapsed: {ratio(own['on'], own['off'], '--no-state')}\n"
        f"    state on, reading: {ratio(reading['on'], reading['off'], '--no-state')}",
        flush=True,
    )
    return [
        f"`state.py`: the same {millions(total)} records, `track --exit-at-end` with the state, "
        "whole processes, wall",
        f"{wall['on'] / 1000:,.0f}k msgs/s (reading {reading['on'] / 1000:,.0f}k)",
        f"`--no-state`: {wall['off'] / 1000:,.0f}k msgs/s (reading {reading['off'] / 1000:,.0f}k)",
        f"{wall['on'] / wall['off']:.2f}x (aim 0.9x), "
        f"reading {reading['on'] / reading['off']:.2f}x",
    ]


# ---------------------------------------------------------------- main


def sizes_from_env() -> list[int]:
    text = os.environ.get("BENCH_STATE_SIZES", "").strip() or "1000000,10000000"
    return [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]


def cases(args: argparse.Namespace) -> dict[str, Any]:
    if args.case == "restore":
        return restore_case(args.bootstrap, args.topic, args.group, args.expect)
    return bare_case(args.bootstrap, args.topic, args.expect)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for hidden in ("--case", "--bootstrap", "--topic", "--group"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(cases(args)))
        return

    increments = env_int("BENCH_STATE_INCREMENTS", 5)
    restore = env_int("BENCH_RESTORE", 10_000_000)
    messages, rounds = env_int("BENCH_MESSAGES", 1_000_000), env_int("BENCH_ROUNDS", 3)
    print(machine())
    bytecode()
    commits: list[Row] = []
    with broker() as bootstrap:
        warm_up(bootstrap)
        config = client_config(bootstrap)
        print("\n1. commit cost against set size (one partition, IPv4)", flush=True)
        for size in sizes_from_env():
            topics, row = commit_cost(config, size, increments)
            delete_topics(bootstrap, topics)
            commits.append(row)
        print(f"\n2, 3. restore and memory of {restore:,} IPv4", flush=True)
        topics, restored = restore_and_memory(config, bootstrap, restore, rounds)
        delete_topics(bootstrap, topics)
        print("\n4. consume throughput, state on and off", flush=True)
        topics, consumed = consume_on_off(bootstrap, messages, rounds)
        delete_topics(bootstrap, topics)
    readme(consumed, *reversed(commits), *restored)


if __name__ == "__main__":
    run_main(main)
