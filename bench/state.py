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
       then `state.Durable(...)` and `.restore()`: the real restart path. Timed from creating the
       Durable to the end of restore (its clients' start included); lumu's own `restore_seconds`
       (the reading, from `restore()` on) is shown too. The restored unique count must equal the
       number committed, or the case fails;
     - the baseline, bare: a confluent_kafka Consumer (read_committed, StateReader's settings)
       assigned to the state topic from its beginning, `consume(10000, 0.1)` until each
       partition's end, counting records and bytes, nothing decoded; timed from creating the
       consumer to the end, in its own subprocess too.
   Medians, and the ratio restore/bare.
3. Memory of the restored instance: in each restore case, after gc and malloc_trim (as
   bench/memory.py does), VmRSS before creating the Durable (imports and the Consumed made) and
   after restore (it holds each partition's set and their union). The baseline, in another fresh
   interpreter: bench/memory.py's own case for ONE UniqueIPs holding the same addresses. Printed:
   both growths, the difference, and whether it meets the aim (at most 64 MB more than one set).
4. Consume with state on and off. BENCH_MESSAGES (1,000,000) records preloaded as bench/consume.py
   does (`lumu produce --rate 0 --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01 --seed 1`),
   then `lumu track --from-beginning --exit-at-end` in a fresh group with the state (the default)
   and with `--no-state`, whole processes, BENCH_ROUNDS rounds, order rotated; median msgs/s of
   each and the ratio on/off (aim >= 0.9x). Every run must give the same unique_ips and messages.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import memory
import numpy as np
import numpy.typing as npt
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from kafka_bench import (
    Run,
    broker,
    delete_topics,
    end_offsets,
    env_int,
    fresh_name,
    lumu,
    machine,
    median,
    preload,
    rotations,
    run_main,
)

from lumu_cli.events import Checked
from lumu_cli.kafka_io import (
    CommitFailed,
    Consumed,
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
STATE_READER = {  # as lumu_cli.kafka_io.StateReader sets them
    "enable.auto.commit": False,
    "isolation.level": "read_committed",
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 10,
    "log_level": 0,
}

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
    size = sum(len(k) + len(v) for k, v in records)
    return Commit(done - began, changed - began, transacted - changed, len(records), size)


def commit_cost(config: dict[str, str], size: int, increments: int) -> list[str]:
    """Section 1 for one set size; the topics it made."""
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
    print_commits(size, full, steps)
    return [name]


def print_commits(size: int, full: Commit, steps: list[Commit]) -> None:
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
        f"    ratio (b)/(a): {step / full.seconds:.4f}x "
        f"(baseline: (a) rewriting the whole set)\n"
        f"    per {NEW:,} addresses: (b) {step * 1e3:.1f} ms a commit of {NEW:,} new, "
        f"(a) {per_k * 1e3:.3f} ms as its share of the full rewrite: {step / per_k:.1f}x",
        flush=True,
    )


# ---------------------------------------------------------------- 2, 3. restore and memory


def committed_state(config: dict[str, str], addresses: V4, group: str, topic: str) -> None:
    """Commit `addresses`, spread over the source topic's partitions, into `group`'s state."""
    ensure_topic(config, topic, SOURCE_PARTITIONS, TIMEOUT)
    name = state_topic(group)
    ensure_state_topic(config, name, TIMEOUT)
    shares = {p: addresses[p::SOURCE_PARTITIONS] for p in range(SOURCE_PARTITIONS)}
    began = time.perf_counter()
    tally = filled(shares)
    print(f"  {len(addresses):,} IPv4 over {SOURCE_PARTITIONS} partitions of {topic} "
          f"(applied in {time.perf_counter() - began:.1f} s)")  # fmt: skip
    writer = Transactions(config, name, group, TIMEOUT)
    try:
        for partition in shares:
            c = commit(tally, writer, topic, [partition])
            print(f"    partition {partition} committed: {c.seconds:.2f} s, "
                  f"{c.records:,} records, {c.mb:.1f} MB", flush=True)  # fmt: skip
    finally:
        writer.close()


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
    if done.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result, lines[:-1]


def restore_rounds(bootstrap: str, group: str, topic: str, count: int, rounds: int) -> Results:
    """Restore and bare cases, alternating; each case's results by name."""
    base = ["--bootstrap", bootstrap]
    cases = {
        "restore": [*base, "--case", "restore", "--topic", topic, "--group", group,
                    "--expect", str(count)],
        "bare": [*base, "--case", "bare", "--topic", state_topic(group)],
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
) -> list[str]:
    """Sections 2 and 3; the topics they made."""
    group, topic = fresh_name("bench-state-restore"), fresh_name("bench-state-source")
    addresses = distinct_v4(count, SEED)
    committed_state(config, addresses, group, topic)
    with tempfile.TemporaryDirectory(prefix="lumu-bench-state-") as tmp:
        addresses.tofile(Path(tmp) / "v4.bin")  # what memory.py's case reads
        del addresses
        gc.collect()
        results = restore_rounds(bootstrap, group, topic, count, rounds)
        one_set = memory.run_case("v4-lumu", Path(tmp), count)
    print_restore(results, count)
    print_memory(results, one_set, count)
    return [topic, state_topic(group)]


def print_restore(results: Results, count: int) -> None:
    restore, bare = results["restore"], results["bare"]
    wall = median([r["seconds"] for r in restore])
    own = median([r["restore_seconds"] for r in restore])
    read = median([r["seconds"] for r in bare])
    print(
        f"  restore of {count:,} IPv4 ({restore[-1]['unique']:,} restored, as committed), "
        f"median of {len(restore)}:\n"
        f"    restore (Durable created + restore(), subprocess): {wall:6.2f} s "
        f"(its own restore_seconds: {own:.2f} s)\n"
        f"    bare read_committed read, nothing decoded (subprocess, consumer created to end): "
        f"{read:6.2f} s ({bare[-1]['records']:,} records, {bare[-1]['bytes'] / 1e6:.1f} MB)\n"
        f"    ratio restore/bare: {wall / read:.2f}x (own restore_seconds/bare: {own / read:.2f}x)",
        flush=True,
    )


def print_memory(results: Results, one_set: dict[str, Any], count: int) -> None:
    restore = results["restore"]
    grown = median([(r["after_kb"] - r["before_kb"]) / 1024 for r in restore])
    peak = median([(r["peak_kb"] - r["before_kb"]) / 1024 for r in restore])
    single = (one_set["after_kb"] - one_set["before_kb"]) / 1024
    more = grown - single
    print(
        f"  memory (VmRSS after - before, after gc and malloc_trim), each in a fresh process:\n"
        f"    restored instance, {count:,} IPv4 over {SOURCE_PARTITIONS} partitions and their "
        f"union: +{grown:.1f} MB (peak +{peak:.1f} MB; median of {len(restore)})\n"
        f"    baseline, one UniqueIPs of the same {count:,} (bench/memory.py's case): "
        f"+{single:.1f} MB\n"
        f"    difference: {more:+.1f} MB, ratio {grown / single:.2f}x\n"
        f"    aim: at most {AIM_MB:.0f} MB more than one set: "
        f"{'met' if more <= AIM_MB else 'NOT met'}",
        flush=True,
    )


# ---------------------------------------------------------------- the cases, in a subprocess


def restore_case(bootstrap: str, topic: str, group: str, expect: int) -> dict[str, Any]:
    """Restore `group`'s state as `lumu track` does at start; time, count and memory."""
    from lumu_cli.snapshots import Tally

    config = client_config(bootstrap)
    consumer = Consumed(config, topic, group, from_beginning=True, durable=True)
    tally = Tally()
    before = memory._settle()
    began = time.perf_counter()
    durable = Durable(config, consumer, tally, commit_interval=1.0, timeout=TIMEOUT, notify=print)
    durable.restore()
    seconds = time.perf_counter() - began
    unique = len(tally.ips)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    after, peak = memory._status_kb("VmRSS"), memory._status_kb("VmHWM")
    durable.close()
    consumer.close()
    if unique != expect:
        raise RuntimeError(f"restored {unique:,} unique IPs, {expect:,} were committed")
    return {
        "seconds": seconds,
        "restore_seconds": durable.restore_seconds,
        "unique": unique,
        "before_kb": before,
        "after_kb": after,
        "peak_kb": peak,
    }


def bare_case(bootstrap: str, topic: str) -> dict[str, Any]:
    """Read the state topic to its end, read_committed, counting records and bytes only."""
    began = time.perf_counter()
    group = fresh_name("bench-state-bare")  # never joined, never committed
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **STATE_READER})
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
        for message in consumer.consume(10_000, 0.1):
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
    consumer.close()
    return {"seconds": time.perf_counter() - began, "records": records, "bytes": size}


# ---------------------------------------------------------------- 4. consume, state on and off


def consume_on_off(bootstrap: str, messages: int, rounds: int) -> list[str]:
    """Section 4; the topics it made (the preloaded one and the state topics)."""
    topic = fresh_name("bench-state-consume")
    load = preload(bootstrap, topic, messages)
    total = sum(end_offsets(bootstrap, topic).values())
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
            runs[name].append(run)
            line.append(f"{name} {run.wall:.2f} s")
        print(f"    round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    print_consume(runs, total)
    return [topic, *(f"{group}-lumu-state" for group in groups)]


def print_consume(runs: dict[str, list[Run]], total: int) -> None:
    counts = {(r.summary["unique_ips"], r.summary["messages"]) for rs in runs.values() for r in rs}
    if len(counts) != 1 or next(iter(counts))[1] != total:
        raise SystemExit(f"FAIL: the runs disagree (unique_ips, messages): {sorted(counts)}")
    rate = {name: total / median([r.wall for r in rs]) for name, rs in runs.items()}
    own = {name: total / median([r.summary["elapsed"] for r in rs]) for name, rs in runs.items()}
    unique, _ = next(iter(counts))
    print(
        f"  lumu track --from-beginning --exit-at-end, {total:,} records, whole processes, "
        f"median of {len(runs['on'])} (all runs: {unique:,} unique IPs, {total:,} messages):\n"
        f"    state on (default): {rate['on']:9,.0f} msgs/s (its own elapsed: {own['on']:,.0f})\n"
        f"    --no-state:         {rate['off']:9,.0f} msgs/s (its own elapsed: {own['off']:,.0f})\n"
        f"    ratio on/off: {rate['on'] / rate['off']:.2f}x (aim >= 0.9x; "
        f"by own elapsed {own['on'] / own['off']:.2f}x)",
        flush=True,
    )


# ---------------------------------------------------------------- main


def sizes_from_env() -> list[int]:
    text = os.environ.get("BENCH_STATE_SIZES", "").strip() or "1000000,10000000"
    return [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]


def cases(args: argparse.Namespace) -> dict[str, Any]:
    if args.case == "restore":
        return restore_case(args.bootstrap, args.topic, args.group, args.expect)
    return bare_case(args.bootstrap, args.topic)


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
    with broker() as bootstrap:
        config = client_config(bootstrap)
        print("\n1. commit cost against set size (one partition, IPv4)", flush=True)
        for size in sizes_from_env():
            delete_topics(bootstrap, commit_cost(config, size, increments))
        print(f"\n2, 3. restore and memory of {restore:,} IPv4", flush=True)
        delete_topics(bootstrap, restore_and_memory(config, bootstrap, restore, rounds))
        print("\n4. consume throughput, state on and off", flush=True)
        delete_topics(bootstrap, consume_on_off(bootstrap, messages, rounds))


if __name__ == "__main__":
    run_main(main)
