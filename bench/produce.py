"""Benchmark `lumu produce` against bare confluent-kafka producers: throughput, pacing, CPU.

The baselines take lumu's own producer settings, read at run time from lumu_cli.kafka_io's
Sender (enable.idempotence, acks=all, linger.ms=20, batch.size=1 MiB, message.timeout.ms,
delivery.report.only.error, reconnect.backoff.ms=10; printed), on_delivery aside.

Throughput, BENCH_MESSAGES (1,000,000) records, each run into a fresh 3-partition topic:
  (a)  `lumu produce --rate 0 --count N --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01
       --seed 1` as a process of its own. Two figures: its own rate, from its summary (`elapsed`
       runs from making its producer to the end of its flush, records made on the way
       included); and its wall time, process start-up, topic creation and building its pool
       of records included.
  (b2) the headline baseline, like for like: a bare loop `producer.produce(topic, value, key)`
       over the same records pre-built in memory (lumu's own generator, not timed), with lumu's
       settings, so librdkafka reports failed deliveries only and no Python runs per delivered
       record, as in lumu; `poll` on BufferError, then `flush()`. Timed as lumu's own rate is:
       from making the producer to the end of the flush (the topic is made first, untimed).
  (b)  for context, (b2) with a Python delivery callback for every record
       (`produce(..., on_delivery=count)`; delivery.report.only.error off), as the
       confluent-kafka examples write it.
  BENCH_ROUNDS (3) rounds, rotating which goes first; medians. Printed, headline first: the
  ratio of (a)'s own rate against (b2) (the claim: at least 0.8x), then (a)'s wall against
  (b2) (lumu's start-up on its side only) and against (b).

Pacing and CPU, BENCH_ROUNDS rounds of BENCH_RATE_SECONDS (20) s each, alternating which goes
first; CPU is the child's user+sys (all its threads, start-up included) as % of one core, both
sides whole processes:
  (c) `lumu produce --rate 500 --duration S`: the achieved rate from its summary and its deviation
      from 500 (the claim: within 2% over 10 s or more), checked independently from the records'
      CreateTime timestamps in the topic (count over first-to-last span, and the records in each
      whole second); and its CPU (the claim: at most 5% of a core over 20 s);
  (d) the baseline: a bare confluent-kafka producer in its own Python process, lumu's producer
      settings, sending pre-built records at 500/s: what is due, then `time.sleep` for lumu's
      tick (produce.TICK), for S seconds, then `flush()`;
  (e) for reference, `lumu produce --rate 500 --duration 0`: lumu's start-up alone (imports,
      topic check, its pool of records, the producer), of the CPU of (c).
  Medians of the CPU, and the ratio c/d.

Checks (FAIL and exit 1 when one does not hold): every run, lumu's and the baselines', delivered
every record it sent, none failed, and its topic holds exactly that many records.

Usage: python bench/produce.py  (env: BENCH_MESSAGES, BENCH_ROUNDS, BENCH_RATE_SECONDS,
LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from figures import check, ratio, readme
from kafka_bench import (
    broker,
    bytecode,
    children_cpu,
    create_topic,
    delete_topics,
    end_offsets,
    env_float,
    env_int,
    fresh_name,
    lumu,
    lumu_settings,
    machine,
    median,
    rotations,
    run_main,
    warm_up,
)

from lumu_cli import kafka_io
from lumu_cli.produce import TICK
from lumu_cli.synth import Synth

IPS, IPV6_RATIO, INVALID_RATIO, SEED = 100_000, 0.1, 0.01, 1
RUN_TIMEOUT = 300.0
TARGET_RATE = 500
TARGET_CPU = 5.0  # % of one core, over 20 s


def baseline_settings() -> dict[str, Any]:
    """The librdkafka settings of lumu's producer (kafka_io.Sender), its callback and its logger
    aside (Python objects: the logger only drops the log line of a refusal, which no run here
    meets)."""
    config = kafka_io.client_config("localhost:9092")
    settings = lumu_settings("Producer", lambda: kafka_io.Sender(config, "t"))
    plain = (str, int, float, bool)
    return {k: v for k, v in settings.items() if k != "bootstrap.servers" and isinstance(v, plain)}


PRODUCER = baseline_settings()


@dataclass
class Result:
    wall: float
    cpu: float
    own: float  # seconds by the run's own clock: from making the producer to the flush done


def lumu_produce(bootstrap: str, topic: str, count: int) -> Result:
    cpu = children_cpu()
    args = [
        "produce", "--rate", "0", "--count", str(count), "--ips", str(IPS),
        "--ipv6-ratio", str(IPV6_RATIO), "--invalid-ratio", str(INVALID_RATIO),
        "--seed", str(SEED), "--partitions", "3", "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    run = lumu(args, timeout=RUN_TIMEOUT)
    s = run.summary
    check(
        s["sent"] == s["delivered"] == count and s["failed"] == 0,
        f"lumu produce sent {s['sent']:,}, delivered {s['delivered']:,}, failed {s['failed']:,} "
        f"of {count:,}",
    )
    return Result(run.wall, children_cpu() - cpu, float(s["elapsed"]))


def bare_produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *, error_only: bool
) -> Result:
    """(b2), or without `error_only` (b): the records produced one by one, then a flush."""
    create_topic(bootstrap, topic, 3)  # untimed, as lumu's own clock leaves its topic out
    delivered = failed = 0

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        nonlocal delivered, failed
        if error is None:
            delivered += 1
        else:
            failed += 1

    settings = {**PRODUCER, "bootstrap.servers": bootstrap}
    began, cpu = time.perf_counter(), time.process_time()
    if error_only:
        producer = Producer({**settings, "on_delivery": on_delivery})
        options: dict[str, Any] = {}
    else:
        producer = Producer({**settings, "delivery.report.only.error": False})
        options = {"on_delivery": on_delivery}
    deadline = time.monotonic() + RUN_TIMEOUT
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, **options)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError("the bare producer's queue never drained") from None
    left = producer.flush(RUN_TIMEOUT)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    if error_only:
        delivered = len(records) - failed - left
    name = "(b2)" if error_only else "(b)"
    check(
        delivered == len(records) and not failed and not left,
        f"{name} delivered {delivered:,} of {len(records):,} ({failed:,} failed, {left:,} queued)",
    )
    return Result(wall, cpu, wall)


def throughput(bootstrap: str, count: int, rounds: int) -> list[list[str]]:
    """The throughput section; its README rows."""
    began = time.perf_counter()
    synth = Synth(IPS, ipv6_ratio=IPV6_RATIO, invalid_ratio=INVALID_RATIO, seed=SEED)
    records = synth.records(count)
    size = sum(len(k) + len(v) for k, v in records) / count
    print(f"pre-built {count:,} records for (b2) and (b) in {time.perf_counter() - began:.1f} s "
          f"(mean key+value {size:.0f} bytes)")  # fmt: skip
    results: dict[str, list[Result]] = {"a": [], "b2": [], "b": []}
    for r, order in rotations(list(results), rounds):
        line = []
        for key in order:
            topic = fresh_name(f"bench-produce-{key}")
            try:
                if key == "a":
                    result = lumu_produce(bootstrap, topic, count)
                else:
                    result = bare_produce(bootstrap, topic, records, error_only=key == "b2")
                total = sum(end_offsets(bootstrap, topic).values())
                check(total == count, f"({key}): its topic holds {total:,} of {count:,} records")
            finally:
                delete_topics(bootstrap, [topic])
            results[key].append(result)
            wall_too = f" ({result.wall:.2f} s wall)" if key == "a" else ""
            line.append(f"{key} {result.own:.2f} s{wall_too}")
        print(f"round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    del records

    own = {key: count / median([x.own for x in res]) for key, res in results.items()}
    cpu = {key: median([x.cpu for x in res]) for key, res in results.items()}
    wall = count / median([x.wall for x in results["a"]])
    print(f"\nthroughput, {count:,} records, every run delivered all, median of {rounds} rounds")
    print(f"  (a)  lumu produce --rate 0, own rate     {own['a']:>10,.0f} records/s "
          f"(from making its producer to its flush done)")  # fmt: skip
    print(f"       the same, wall                      {wall:>10,.0f} records/s (process start-up, "
          f"topic creation, its pool of records included; {cpu['a']:.2f} s CPU)")  # fmt: skip
    print(f"  (b2) bare loop, error-only reports      {own['b2']:>10,.0f} records/s "
          f"(making the producer to flush done; {cpu['b2']:.2f} s CPU)")  # fmt: skip
    print(f"  (b)  the same, a callback each          {own['b']:>10,.0f} records/s "
          f"({cpu['b']:.2f} s CPU)")  # fmt: skip
    b2, b = "(b2) bare loop, error-only reports", "(b) a delivery callback each"
    print(f"  (a) {ratio(own['a'], own['b2'], b2, 'headline; the claim: at least 0.8x')}")
    print(f"  (a) wall: {ratio(wall, own['b2'], b2, 'start-up, topic, pool: on lumu side only')}")
    print(f"  (a) {ratio(own['a'], own['b'], b, 'context')}")
    return [
        [f"`produce.py`: `produce --rate 0 --count {count:,}`, its own rate (making its producer "
         "to the flush done)", f"{own['a'] / 1000:,.0f}k records/s",
         "(b2) bare `produce()` loop of pre-built records, lumu's producer settings "
         f"(error-only delivery reports), timed the same: {own['b2'] / 1000:,.0f}k records/s",
         f"{own['a'] / own['b2']:.2f}x (target 0.8x)"],
        ["", f"wall, start-up, topic creation and its pool included: {wall / 1000:,.0f}k "
         "records/s", "the same (b2), none of those", f"{wall / own['b2']:.2f}x"],
        ["", "", f"(b) the same loop, a delivery callback each: {own['b'] / 1000:,.0f}k "
         "records/s", f"{own['a'] / own['b']:.2f}x"],
    ]  # fmt: skip


def _create_times(bootstrap: str, topic: str, expected: int) -> list[int]:
    """The CreateTime (ms) of every record of `topic`, read to its end."""
    assigned: set[int] = set()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": fresh_name("bench-pacing"),
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic], on_assign=lambda _c, ps: assigned.update(p.partition for p in ps))
    at_end: set[int] = set()
    stamps: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while not (assigned and at_end >= assigned and len(stamps) >= expected):
            if time.monotonic() > deadline:
                raise TimeoutError("could not read the pacing topic to its end")
            for message in consumer.consume(10_000, 0.2):
                error = message.error()
                if error is None:
                    stamps.append(message.timestamp()[1])
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())  # type: ignore[arg-type]
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    return sorted(stamps)


# (d): a paced producer with nothing but confluent-kafka, in a process of its own.
BARE_PACED = """
import json, sys, time
from confluent_kafka import Producer
bootstrap, topic, rate, seconds, tick, settings = sys.argv[1:]
rate, seconds, tick = float(rate), float(seconds), float(tick)
failed = 0
def on_delivery(error, _message):
    global failed
    failed += 1
producer = Producer({"bootstrap.servers": bootstrap, **json.loads(settings),
                     "on_delivery": on_delivery})
records = [(b"10.0.%d.%d" % (i >> 8, i & 255),
            b'{"timestamp": 1700000000, "device_ip": "10.0.%d.%d", "error_code": 3}'
            % (i >> 8, i & 255)) for i in range(1000)]
start, sent = time.monotonic(), 0
while (now := time.monotonic()) < start + seconds:
    due = int((now - start) * rate)
    for i in range(sent, due):
        key, value = records[i % 1000]
        producer.produce(topic, value, key)
    sent = max(sent, due)
    producer.poll(0)
    time.sleep(tick)
left = producer.flush(60)
elapsed = time.monotonic() - start
print(json.dumps({"sent": sent, "delivered": sent - failed - left, "elapsed": elapsed}))
"""


@dataclass
class Paced:
    cpu: float
    rate: float  # records a second, from the CreateTime of the records in the topic
    seconds: list[int]  # records in each whole second


def lumu_paced(bootstrap: str, seconds: float) -> tuple[Paced, str]:
    """(c): its CPU seconds and pacing, checked in the topic; a line on it."""
    topic = fresh_name("bench-pacing")
    args = [
        "produce", "--rate", str(TARGET_RATE), "--duration", f"{seconds:g}", "--ips", "1000",
        "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    cpu = children_cpu()
    run = lumu(args, timeout=seconds + 120)
    cpu = children_cpu() - cpu
    s = run.summary
    try:
        stamps = _create_times(bootstrap, topic, int(s["delivered"]))
    finally:
        delete_topics(bootstrap, [topic])
    check(
        s["sent"] == s["delivered"] == len(stamps) and s["failed"] == 0,
        f"(c) lumu produce sent {s['sent']:,}, delivered {s['delivered']:,}, failed "
        f"{s['failed']:,}; its topic holds {len(stamps):,}",
    )
    deviation = (float(s["rate"]) / TARGET_RATE - 1) * 100
    span = (stamps[-1] - stamps[0]) / 1000
    topic_rate = (len(stamps) - 1) / span if span > 0 else 0.0
    per_second = Counter((t - stamps[0]) // 1000 for t in stamps)
    whole = [per_second[k] for k in range(int(span))] or [0]  # whole seconds only
    line = (
        f"summary: sent {s['sent']:,}, delivered {s['delivered']:,}, elapsed {s['elapsed']} s, "
        f"rate {s['rate']}/s ({deviation:+.2f}%); topic: {len(stamps):,} records over "
        f"{span:.3f} s, {topic_rate:.1f}/s ({(topic_rate / TARGET_RATE - 1) * 100:+.2f}%); "
        f"each whole second: min {min(whole)}, median {median(whole):g}, max {max(whole)} "
        f"(over {len(whole)} s)"
    )
    return Paced(cpu, topic_rate, whole), line


def bare_paced(bootstrap: str, seconds: float) -> float:
    """(d): its CPU seconds."""
    topic = fresh_name("bench-pacing-bare")
    create_topic(bootstrap, topic, 3)
    cpu = children_cpu()
    try:
        run = lumu(
            [bootstrap, topic, str(TARGET_RATE), f"{seconds:g}", str(TICK), json.dumps(PRODUCER)],
            timeout=seconds + 120,
            prefix=[sys.executable, "-c", BARE_PACED],
        )
        total = sum(end_offsets(bootstrap, topic).values())
    finally:
        delete_topics(bootstrap, [topic])
    cpu = children_cpu() - cpu
    s = run.summary
    check(
        s["sent"] == s["delivered"] == total,
        f"(d) the bare paced producer sent {s['sent']:,}, delivered {s['delivered']:,}; its "
        f"topic holds {total:,}",
    )
    return cpu


def lumu_start_up(bootstrap: str) -> float:
    """(e): the CPU seconds of a run that sends nothing."""
    topic = fresh_name("bench-start-up")
    args = ["produce", "--rate", str(TARGET_RATE), "--duration", "0", "-t", topic, "-b", bootstrap]
    cpu = children_cpu()
    try:
        lumu(args, timeout=120)
    finally:
        delete_topics(bootstrap, [topic])
    return children_cpu() - cpu


def paced(bootstrap: str, seconds: float, rounds: int) -> list[list[str]]:
    """The pacing and CPU section; its README rows."""
    runs: list[Paced] = []
    cpu: dict[str, list[float]] = {"c": [], "d": [], "e": []}
    print(f"\npacing and CPU, --rate {TARGET_RATE} for {seconds:g} s, {rounds} rounds")
    for r, order in rotations(["c", "d"], rounds):
        for key in order:
            if key == "c":
                run, line = lumu_paced(bootstrap, seconds)
                runs.append(run)
                used = run.cpu
                print(f"  round {r + 1} (c) {line}", flush=True)
            else:
                used = bare_paced(bootstrap, seconds)
            cpu[key].append(used)
        cpu["e"].append(lumu_start_up(bootstrap))
        shown = ", ".join(f"{key} {cpu[key][-1]:.2f} s" for key in ("c", "d", "e"))
        print(f"  round {r + 1}/{rounds} ({' '.join(order)}) CPU: {shown}", flush=True)

    c, d, e = median(cpu["c"]), median(cpu["d"]), median(cpu["e"])
    share = c / seconds * 100
    rate = median([run.rate for run in runs])
    low, high = min(min(run.seconds) for run in runs), max(max(run.seconds) for run in runs)
    deviation = (rate / TARGET_RATE - 1) * 100
    print(f"  (c) lumu produce --rate {TARGET_RATE}, whole process: {c:.2f} CPU s, {share:.1f}% of "
          f"a core (claim: at most {TARGET_CPU:g}% over 20 s)")  # fmt: skip
    print(f"  (d) bare paced confluent-kafka, whole process: {d:.2f} CPU s, "
          f"{d / seconds * 100:.1f}% of a core")  # fmt: skip
    print(f"  (e) lumu's start-up alone: {e:.2f} CPU s")
    print(f"  (c) {ratio(c, d, '(d) a bare producer paced with time.sleep', 'headline, CPU')}")
    print(f"  (c) pacing, from the topic: {rate:.1f} records/s, each whole second {low}-{high}: "
          f"{deviation:+.2f}% against the target, {TARGET_RATE} (claim: within 2%)")  # fmt: skip
    return [
        [f"`produce.py`: `produce --rate {TARGET_RATE} --duration {seconds:g}`, CPU",
         f"{c:.2f} CPU s, {share:.1f}% of a core, start-up included",
         f"a bare producer paced with `time.sleep`, its own process: {d:.2f} CPU s",
         f"{c / d:.2f}x (target: at most {TARGET_CPU:g}% of a core: "
         f"{'met' if share <= TARGET_CPU else 'not met'})"],
        ["`produce.py`: the same, pacing", f"{rate:.1f} records/s, each whole second "
         f"{low}-{high}", f"the target, {TARGET_RATE}", f"{deviation:+.2f}%"],
    ]  # fmt: skip


def main() -> None:
    count = env_int("BENCH_MESSAGES", 1_000_000)
    rounds = env_int("BENCH_ROUNDS", 3)
    seconds = env_float("BENCH_RATE_SECONDS", 20.0)
    print(machine())
    print(f"the baselines take lumu's producer settings: {json.dumps(PRODUCER)}")
    bytecode()
    with broker() as bootstrap:
        warm_up(bootstrap)
        rows = throughput(bootstrap, count, rounds)
        rows += paced(bootstrap, seconds, rounds)
    readme(*rows)


if __name__ == "__main__":
    run_main(main)
