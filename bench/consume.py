"""Benchmark `lumu track` reading a whole topic against plain confluent-kafka consumers.

Preloads BENCH_MESSAGES (1,000,000) records into a fresh 3-partition topic with
`lumu produce --rate 0 --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01 --seed 1` (its rate is
printed too, but bench/produce.py is the produce benchmark). Then every reader below reads the
topic from the beginning in a fresh consumer group, and stops as `lumu track --exit-at-end`
does: once every partition has told its end (partition EOF). Each is a process of its own,
timed here by wall clock from its start to its exit: Python's start-up, the imports, the
consumer, the group join, reading to the end and leaving, on both sides alike. Before any of
them, one untimed `lumu track -e` on a small topic has the broker create its internal topics.

  (c)  `lumu track --from-beginning --exit-at-end`, the durable state on (the default): it also
       creates the group's state topic and commits the count at the end.
  (b)  the original exercise's consumer (seed style): `poll(1.0)` one record at a time,
       `json.loads`, `device_ip` added to a set of str, exceptions caught.
  (a)  bare: `consume()` batches, records counted, nothing decoded: what librdkafka and the
       Python binding deliver, the ceiling for any reader in Python.
  (f)  the headline baseline, the fastest unique count in Python we know of: (a), each value
       decoded by msgspec into its two fields (as lumu decodes them), the raw `device_ip` added
       to a set; nothing checked, nothing kept. It counts what the seed counted, the same data
       read the same way, so it is the strongest like-for-like baseline; lumu also checks every
       address and timestamp strictly and keeps its count durable.
  (c1) (c) pinned to one core (`taskset -c 0`; the broker still has both): what the second core
       gives lumu.
  (a0) (a) at librdkafka's defaults, for context: its fetch.wait.max.ms (500 ms) holds the end
       of each partition back, and fetch.queue.backoff.ms (1 s) pauses a partition whose local
       queue is full. lumu sets both to 10 ms.

The baselines are bench/readers.py. (b), (a) and (f) take lumu's own librdkafka settings, read
from lumu_cli.kafka_io at run time (printed; lumu's statistics callback aside, which only lumu
pays for), and lumu's batch size and wait (checked against lumu_cli.tracker).

Two figures each, medians of BENCH_ROUNDS (3) rounds, the order rotated each round:
  - wall: records / wall seconds of the whole process;
  - reading: records / seconds from the first record to the end, as each reader reports it
    (lumu: `elapsed - first_record_at` of its summary, which also holds counting the last batch
    and the final state commit; a baseline: from the batch with its first record to the end of
    its last partition). Start-up, state topic, group join and first fetch are left out of
    both sides alike.
CPU seconds are each child's (user + system, all threads).

Checks (FAIL and exit 1 when one does not hold): the topic holds BENCH_MESSAGES records; every
run read exactly that many; every lumu run's unique_ips and invalid records by reason equal what
`lumu produce` says it sent (distinct_ips, invalid_by_reason); each baseline's set has the same
size in every round.

Usage: python bench/consume.py   (env: BENCH_MESSAGES, BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import readers
from figures import check, ratio, readme
from kafka_bench import (
    LUMU,
    broker,
    bytecode,
    children_cpu,
    end_offsets,
    env_int,
    fresh_name,
    lumu,
    machine,
    median,
    preload,
    rotations,
    run_main,
    track_settings,
    warm_up,
)

from lumu_cli import tracker

CONSUME_TIMEOUT = 300.0  # a reader that has not finished by then has failed
READERS = str(Path(readers.__file__).resolve())


@dataclass
class Result:
    wall: float
    cpu: float
    messages: int
    reading: float  # seconds from the first record to the end
    summary: dict[str, Any]


def read(kind: str, settings: dict[str, Any], bootstrap: str, topic: str) -> Result:
    """A baseline reader of bench/readers.py, as a process of its own."""
    cpu = children_cpu()
    args = [kind, bootstrap, topic, fresh_name(f"bench-{kind}"), json.dumps(settings)]
    run = lumu(args, timeout=CONSUME_TIMEOUT, prefix=(sys.executable, READERS))
    s = run.summary
    return Result(run.wall, children_cpu() - cpu, int(s["messages"]), float(s["reading"]), s)


def tracked(bootstrap: str, topic: str, cores: str | None = None) -> Result:
    """(c) lumu track --from-beginning --exit-at-end in a fresh group, as a process of its own."""
    cpu = children_cpu()
    args = [
        "track", "--from-beginning", "--exit-at-end", "--group", fresh_name("bench-track"),
        "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    run = lumu(
        args,
        timeout=CONSUME_TIMEOUT,
        ok=(0, 1),  # 1: some records were invalid, as the preload makes them
        prefix=(LUMU,) if cores is None else ("taskset", "-c", cores, LUMU),
    )
    s = run.summary
    reading = float(s["elapsed"]) - float(s["first_record_at"])
    return Result(run.wall, children_cpu() - cpu, int(s["messages"]), reading, s)


def variants(settings: dict[str, Any]) -> dict[str, tuple[str, Callable[[str, str], Result]]]:
    def reader(kind: str, given: dict[str, Any]) -> Callable[[str, str], Result]:
        return lambda b, t: read(kind, given, b, t)

    return {
        "c": ("(c)  lumu track -e, state on", tracked),
        "b": ("(b)  seed style: poll + json.loads + set", reader("seed", settings)),
        "a": ("(a)  bare consume(), counted only", reader("bare", settings)),
        "f": ("(f)  consume() + msgspec + set", reader("floor", settings)),
        "c1": ("(c1) lumu track -e, one core", lambda b, t: tracked(b, t, "0")),
        "a0": ("(a0) bare, librdkafka's defaults", reader("bare", {})),
    }


def check_result(key: str, result: Result, total: int, produced: dict[str, Any]) -> None:
    check(result.messages == total, f"({key}) read {result.messages:,} of {total:,} records")
    if key.startswith("c"):
        s = result.summary
        for mine, theirs in (("unique_ips", "distinct_ips"), ("invalid_by_reason",) * 2):
            check(
                s[mine] == produced[theirs],
                f"({key}) lumu track counted {mine} {s[mine]}; lumu produce sent "
                f"{theirs} {produced[theirs]}",
            )


def main() -> None:
    messages = env_int("BENCH_MESSAGES", 1_000_000)
    rounds = env_int("BENCH_ROUNDS", 3)
    print(machine())
    check(
        (readers.BATCH, readers.WAIT) == (tracker.BATCH, tracker.END_POLL_SECONDS),
        f"bench/readers.py reads batches of {readers.BATCH} waiting {readers.WAIT} s; "
        f"lumu track -e, {tracker.BATCH} and {tracker.END_POLL_SECONDS} s",
    )
    settings = track_settings()
    print(f"(b), (a), (f) take lumu's consumer settings: {json.dumps(settings)}")
    bytecode()
    with broker() as bootstrap:
        warm_up(bootstrap)
        topic = fresh_name("bench-consume")
        load = preload(bootstrap, topic, messages)
        produced = load.summary
        print(
            f"preload: {produced['delivered']:,} records into {topic} (3 partitions) by lumu "
            f"produce: {produced['rate']:,.0f} records/s by its summary, {load.wall:.1f} s wall; "
            f"expected unique IPs {produced['distinct_ips']:,}, invalid {produced['invalid']:,}"
        )
        total = sum(end_offsets(bootstrap, topic).values())
        check(total == messages, f"the topic holds {total:,} records, not {messages:,}")
        runners = variants(settings)
        results: dict[str, list[Result]] = {key: [] for key in runners}
        for r, order in rotations(list(runners), rounds):
            line = []
            for key in order:
                result = runners[key][1](bootstrap, topic)
                check_result(key, result, total, produced)
                results[key].append(result)
                line.append(f"{key} {result.wall:.2f} s")
            print(f"round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    for key in ("b", "f"):
        sizes = {x.summary["distinct"] for x in results[key]}
        check(len(sizes) == 1, f"({key}) held sets of different sizes over the rounds: {sizes}")
    report(results, runners, total, rounds, produced)


def report(
    results: dict[str, list[Result]],
    runners: dict[str, tuple[str, Callable[[str, str], Result]]],
    total: int,
    rounds: int,
    produced: dict[str, Any],
) -> None:
    wall = {key: median([x.wall for x in res]) for key, res in results.items()}
    reading = {key: median([x.reading for x in res]) for key, res in results.items()}
    rate = {key: total / seconds for key, seconds in wall.items()}
    steady = {key: total / seconds for key, seconds in reading.items()}
    print(f"\nreading {total:,} records from the beginning to the end of every partition, each a "
          f"whole process, median of {rounds} rounds")  # fmt: skip
    for key, (label, _) in runners.items():
        cpu = median([x.cpu for x in results[key]])
        print(f"  {label:<42} wall {rate[key]:>9,.0f} msgs/s ({wall[key]:5.2f} s, {cpu:5.2f} s "
              f"CPU), reading {steady[key]:>9,.0f} msgs/s ({reading[key]:5.2f} s)")  # fmt: skip
    s = results["c"][-1].summary
    print(f"  (c) every run: unique_ips {s['unique_ips']:,}, invalid {s['invalid']:,}, by reason "
          f"as lumu produce sent them")  # fmt: skip
    b = results["b"][-1].summary
    print(f"  (b) set of raw device_ip values: {b['distinct']:,}; exceptions caught: "
          f"{b['exceptions']:,}; (f) set: {results['f'][-1].summary['distinct']:,}")  # fmt: skip
    lines = {
        "f": ("(f) consume() + msgspec + set, nothing checked", ""),
        "b": ("(b) seed style", "target >= 2x"),
        "a": ("(a) bare consume()", "target >= 0.5x"),
        "c1": ("(c1) lumu on one core", "what the second core gives"),
        "a0": ("(a0) bare at librdkafka's defaults", "context"),
    }
    for key, (name, note) in lines.items():
        head = "headline" + ("; " if note else "") if key == "f" else ""
        print(f"  (c) {ratio(rate['c'], rate[key], name + ', wall', head + note)}")
        if key != "c1":
            print(f"  (c) {ratio(steady['c'], steady[key], name + ', reading')}")
    print(f"  (f) {ratio(rate['f'], rate['b'], '(b) seed style, wall', 'decoding alone')}")
    c, c_steady = kilo(rate["c"]), kilo(steady["c"])
    readme(
        [f"`consume.py`: read {total:,} records from the beginning, `track --exit-at-end` (state "
         "on), whole processes, wall", c,
         f"(f) `consume()` + msgspec + `set`, nothing checked, lumu's settings: "
         f"{kilo(rate['f'])}", f"{rate['c'] / rate['f']:.2f}x (headline)"],
        ["", f"reading, first record to end: {c_steady}", f"the same (f): {kilo(steady['f'])}",
         f"{steady['c'] / steady['f']:.2f}x"],
        ["", "", f"(b) seed style: `poll()` + `json.loads` + `set`: {kilo(rate['b'])} (reading "
         f"{kilo(steady['b'])}); f/b is {rate['f'] / rate['b']:.2f}x",
         f"{rate['c'] / rate['b']:.2f}x, reading {steady['c'] / steady['b']:.2f}x (target 2x)"],
        ["", "", f"(a) bare `consume()`, count only: {kilo(rate['a'])} "
         f"(reading {kilo(steady['a'])})", f"{rate['c'] / rate['a']:.2f}x, reading "
         f"{steady['c'] / steady['a']:.2f}x (target 0.5x)"],
        ["", "the same, two cores", f"one core (`taskset -c 0`): {kilo(rate['c1'])}",
         f"{rate['c'] / rate['c1']:.2f}x"],
    )  # fmt: skip


def kilo(per_second: float) -> str:
    return f"{per_second / 1000:,.0f}k msgs/s"


if __name__ == "__main__":
    run_main(main)
