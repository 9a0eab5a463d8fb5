"""Benchmark `lumu produce` against bare confluent-kafka producers: throughput, pacing, CPU.

Throughput, BENCH_MESSAGES (1,000,000) records, each run into a fresh 3-partition topic:
  (a) `lumu produce --rate 0 --count N --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01
      --seed 1` as a subprocess: wall time (process start-up, topic creation, building its pool
      of records and the final flush included) and the rate from its own summary;
  (b) the baseline: a bare loop `producer.produce(topic, value, key, on_delivery=count)` over the
      same records pre-built in memory (lumu's own generator, not timed), with lumu's producer
      settings (enable.idempotence, acks=all, linger.ms=20, batch.size=1 MiB), retrying on
      BufferError, then `flush()`; timed from creating the producer to the end of the flush.
  (b2) for reference, (b) as lumu delivers: librdkafka reports failed deliveries only
      (delivery.report.only.error) to one callback, so no Python runs per delivered record.
  BENCH_ROUNDS (3) rounds, rotating which goes first; medians, and the ratios a/b (the claim:
  at least 0.8x) and a/b2.

Pacing and CPU, BENCH_ROUNDS rounds of BENCH_RATE_SECONDS (20) s each, alternating which goes
first; CPU is the child's user+sys (all its threads, start-up included) as % of one core:
  (c) `lumu produce --rate 500 --duration S`: the achieved rate from its summary and its deviation
      from 500 (the claim: within 2% over 10 s or more), checked independently from the records'
      CreateTime timestamps in the topic (count over first-to-last span, and the records in each
      whole second); and its CPU (the claim: at most 5% of a core over 20 s);
  (d) the baseline: a bare confluent-kafka producer in its own Python process, lumu's producer
      settings and error-only delivery reports, sending pre-built records at 500/s: what is due,
      then `time.sleep` for lumu's tick (produce.TICK), for S seconds, then `flush()`;
  (e) for reference, `lumu produce --rate 500 --duration 0`: lumu's start-up alone (imports,
      topic check, its pool of records, the producer), of the CPU of (c).
  Medians of the CPU, and the ratio c/d.

Usage: python bench/produce.py  (env: BENCH_MESSAGES, BENCH_ROUNDS, BENCH_RATE_SECONDS,
LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from kafka_bench import (
    broker,
    create_topic,
    delete_topics,
    end_offsets,
    env_float,
    env_int,
    fresh_name,
    lumu,
    machine,
    median,
    rotations,
    run_main,
)

from lumu_cli.produce import TICK
from lumu_cli.synth import Synth

IPS, IPV6_RATIO, INVALID_RATIO, SEED = 100_000, 0.1, 0.01, 1
PRODUCER = {  # as lumu_cli.kafka_io.Sender sets them, but for its error-only delivery reports
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1 << 20,
    "message.timeout.ms": 30_000,
}
ERROR_ONLY = {"delivery.report.only.error": True}  # the rest of Sender's settings
RUN_TIMEOUT = 300.0
TARGET_RATE = 500
TARGET_CPU = 5.0  # % of one core, over 20 s


@dataclass
class Result:
    wall: float
    cpu: float
    rate_own: float | None = None  # lumu's summary rate


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lumu_produce(bootstrap: str, topic: str, count: int) -> Result:
    cpu = _children_cpu()
    args = [
        "produce", "--rate", "0", "--count", str(count), "--ips", str(IPS),
        "--ipv6-ratio", str(IPV6_RATIO), "--invalid-ratio", str(INVALID_RATIO),
        "--seed", str(SEED), "--partitions", "3", "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    run = lumu(args, timeout=RUN_TIMEOUT)
    if run.summary["delivered"] != count:
        raise SystemExit(f"FAIL: lumu produce delivered {run.summary['delivered']} of {count}")
    return Result(run.wall, _children_cpu() - cpu, float(run.summary["rate"]))


def bare_produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *, error_only: bool
) -> Result:
    """(b), or with `error_only` (b2): the records produced one by one, then a flush."""
    create_topic(bootstrap, topic, 3)  # not timed (lumu's wall includes its topic creation)
    delivered = failed = 0

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        nonlocal delivered, failed
        if error is None:
            delivered += 1
        else:
            failed += 1

    began, cpu = time.perf_counter(), time.process_time()
    if error_only:
        producer = Producer(
            {"bootstrap.servers": bootstrap, **PRODUCER, **ERROR_ONLY, "on_delivery": on_delivery}
        )
        options: dict[str, Any] = {}
    else:
        producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
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
    if left or failed or delivered != len(records):
        raise SystemExit(f"FAIL: bare producer delivered {delivered} of {len(records)}")
    return Result(wall, cpu)


def throughput(bootstrap: str, count: int, rounds: int) -> None:
    began = time.perf_counter()
    synth = Synth(IPS, ipv6_ratio=IPV6_RATIO, invalid_ratio=INVALID_RATIO, seed=SEED)
    records = synth.records(count)
    size = sum(len(k) + len(v) for k, v in records) / count
    print(f"pre-built {count:,} records for (b) in {time.perf_counter() - began:.1f} s "
          f"(mean key+value {size:.0f} bytes)")  # fmt: skip
    results: dict[str, list[Result]] = {"a": [], "b": [], "b2": []}
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
                if total != count:
                    raise SystemExit(f"FAIL: {key}: the topic holds {total:,} of {count:,}")
            finally:
                delete_topics(bootstrap, [topic])
            results[key].append(result)
            line.append(f"{key} {result.wall:.2f} s")
        print(f"round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)
    del records

    wall = {key: median([x.wall for x in res]) for key, res in results.items()}
    cpu = {key: median([x.cpu for x in res]) for key, res in results.items()}
    own = median([x.rate_own for x in results["a"] if x.rate_own is not None])
    print(f"\nthroughput, {count:,} records, median of {rounds} rounds")
    print(f"  (a)  lumu produce --rate 0, wall      {count / wall['a']:>10,.0f} records/s "
          f"({wall['a']:.2f} s wall, {cpu['a']:.2f} s CPU)")  # fmt: skip
    print(f"       its own summary rate             {own:>10,.0f} records/s "
          f"(no process start-up or topic creation)")  # fmt: skip
    print(f"  (b)  bare confluent-kafka loop + flush {count / wall['b']:>9,.0f} records/s "
          f"({wall['b']:.2f} s wall, {cpu['b']:.2f} s CPU)")  # fmt: skip
    print(f"  (b2) the same, error-only reports     {count / wall['b2']:>10,.0f} records/s "
          f"({wall['b2']:.2f} s wall, {cpu['b2']:.2f} s CPU)")  # fmt: skip
    print(f"  ratio a/b: {wall['b'] / wall['a']:.2f}x on wall time (claim: at least 0.8x), "
          f"{own / (count / wall['b']):.2f}x on lumu's summary rate")  # fmt: skip
    print(f"  ratio a/b2: {wall['b2'] / wall['a']:.2f}x on wall time")


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


def lumu_paced(bootstrap: str, seconds: float) -> tuple[float, str]:
    """(c): its CPU seconds, and a line on its pacing, checked in the topic."""
    topic = fresh_name("bench-pacing")
    args = [
        "produce", "--rate", str(TARGET_RATE), "--duration", f"{seconds:g}", "--ips", "1000",
        "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    cpu = _children_cpu()
    run = lumu(args, timeout=seconds + 120)
    cpu = _children_cpu() - cpu
    s = run.summary
    try:
        stamps = _create_times(bootstrap, topic, int(s["delivered"]))
    finally:
        delete_topics(bootstrap, [topic])
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
    return cpu, line


def bare_paced(bootstrap: str, seconds: float) -> float:
    """(d): its CPU seconds."""
    topic = fresh_name("bench-pacing-bare")
    create_topic(bootstrap, topic, 3)
    settings = json.dumps({**PRODUCER, **ERROR_ONLY})
    cpu = _children_cpu()
    try:
        run = lumu(
            [bootstrap, topic, str(TARGET_RATE), f"{seconds:g}", str(TICK), settings],
            timeout=seconds + 120,
            prefix=[sys.executable, "-c", BARE_PACED],
        )
    finally:
        delete_topics(bootstrap, [topic])
    cpu = _children_cpu() - cpu
    if run.summary["delivered"] != run.summary["sent"]:
        raise SystemExit(f"FAIL: the bare paced producer: {run.summary}")
    return cpu


def lumu_start_up(bootstrap: str) -> float:
    """(e): the CPU seconds of a run that sends nothing."""
    topic = fresh_name("bench-start-up")
    args = ["produce", "--rate", str(TARGET_RATE), "--duration", "0", "-t", topic, "-b", bootstrap]
    cpu = _children_cpu()
    try:
        lumu(args, timeout=120)
    finally:
        delete_topics(bootstrap, [topic])
    return _children_cpu() - cpu


def paced(bootstrap: str, seconds: float, rounds: int) -> None:
    cpu: dict[str, list[float]] = {"c": [], "d": [], "e": []}
    print(f"\npacing and CPU, --rate {TARGET_RATE} for {seconds:g} s, {rounds} rounds")
    for r, order in rotations(["c", "d"], rounds):
        for key in order:
            if key == "c":
                used, line = lumu_paced(bootstrap, seconds)
                print(f"  round {r + 1} (c) {line}", flush=True)
            else:
                used = bare_paced(bootstrap, seconds)
            cpu[key].append(used)
        cpu["e"].append(lumu_start_up(bootstrap))
        shown = ", ".join(f"{key} {cpu[key][-1]:.2f} s" for key in ("c", "d", "e"))
        print(f"  round {r + 1}/{rounds} ({' '.join(order)}) CPU: {shown}", flush=True)

    def share(key: str) -> str:
        used = median(cpu[key])
        return f"{used:.2f} CPU s, {used / seconds * 100:.1f}% of a core"

    print(f"  (c) lumu produce --rate {TARGET_RATE}     {share('c')} "
          f"(claim: at most {TARGET_CPU:g}% over 20 s)")  # fmt: skip
    print(f"  (d) bare paced confluent-kafka {share('d')}")
    print(f"  (e) lumu's start-up alone      {median(cpu['e']):.2f} CPU s")
    print(f"  ratio c/d: {median(cpu['c']) / median(cpu['d']):.2f}x the CPU of the bare producer")


def main() -> None:
    count = env_int("BENCH_MESSAGES", 1_000_000)
    rounds = env_int("BENCH_ROUNDS", 3)
    seconds = env_float("BENCH_RATE_SECONDS", 20.0)
    print(machine())
    with broker() as bootstrap:
        throughput(bootstrap, count, rounds)
        paced(bootstrap, seconds, rounds)


if __name__ == "__main__":
    run_main(main)
