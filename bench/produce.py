"""Benchmark `lumu produce` against a bare confluent-kafka produce loop, and its rate pacing.

Throughput, BENCH_MESSAGES (1,000,000) records, each run into a fresh 3-partition topic:
  (a) `lumu produce --rate 0 --count N --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01
      --seed 1` as a subprocess: wall time (process start-up, topic creation, making the records
      and the final flush included) and the rate from its own summary;
  (b) the baseline: a bare loop `producer.produce(topic, value, key, on_delivery=count)` over the
      same records pre-built in memory (lumu's own generator, not timed), with lumu's producer
      settings (enable.idempotence, acks=all, linger.ms=20, batch.size=1 MiB), retrying on
      BufferError, then `flush()`; timed from creating the producer to the end of the flush.
  BENCH_ROUNDS (3) rounds, alternating which goes first; medians, and the ratio a/b.

Pacing: (c) `lumu produce --rate 500 --duration BENCH_RATE_SECONDS (20)`: the achieved rate from
its summary and its deviation from 500 (the claim: within 2% over 10 s or more), checked
independently from the records' CreateTime timestamps in the topic (count over first-to-last
span, and the records in each whole second).

Usage: python bench/produce.py  (env: BENCH_MESSAGES, BENCH_ROUNDS, BENCH_RATE_SECONDS,
LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from dataclasses import dataclass

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
    run_main,
)

from lumu_cli.synth import Synth

IPS, IPV6_RATIO, INVALID_RATIO, SEED = 100_000, 0.1, 0.01, 1
PRODUCER = {  # as lumu_cli.kafka_io.Sender sets them
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1 << 20,
    "message.timeout.ms": 30_000,
}
RUN_TIMEOUT = 300.0
TARGET_RATE = 500


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


def bare_produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> Result:
    create_topic(bootstrap, topic, 3)  # not timed (lumu's wall includes its topic creation)
    delivered = 0

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1

    began, cpu = time.perf_counter(), time.process_time()
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    deadline = time.monotonic() + RUN_TIMEOUT
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError("the bare producer's queue never drained") from None
    left = producer.flush(RUN_TIMEOUT)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    if left or delivered != len(records):
        raise SystemExit(f"FAIL: bare producer delivered {delivered} of {len(records)}")
    return Result(wall, cpu)


def throughput(bootstrap: str, count: int, rounds: int) -> None:
    began = time.perf_counter()
    synth = Synth(IPS, ipv6_ratio=IPV6_RATIO, invalid_ratio=INVALID_RATIO, seed=SEED)
    records = synth.records(count)
    size = sum(len(k) + len(v) for k, v in records) / count
    print(f"pre-built {count:,} records for (b) in {time.perf_counter() - began:.1f} s "
          f"(mean key+value {size:.0f} bytes)")  # fmt: skip
    results: dict[str, list[Result]] = {"a": [], "b": []}
    for r in range(rounds):
        order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
        line = []
        for key in order:
            topic = fresh_name(f"bench-produce-{key}")
            try:
                if key == "a":
                    result = lumu_produce(bootstrap, topic, count)
                else:
                    result = bare_produce(bootstrap, topic, records)
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
    print(f"  (a) lumu produce --rate 0, wall      {count / wall['a']:>10,.0f} records/s "
          f"({wall['a']:.2f} s wall, {cpu['a']:.2f} s CPU)")  # fmt: skip
    print(f"      its own summary rate             {own:>10,.0f} records/s "
          f"(no process start-up or topic creation)")  # fmt: skip
    print(f"  (b) bare confluent-kafka loop + flush {count / wall['b']:>9,.0f} records/s "
          f"({wall['b']:.2f} s wall, {cpu['b']:.2f} s CPU)")  # fmt: skip
    print(f"  ratio a/b: {wall['b'] / wall['a']:.2f}x on wall time, "
          f"{own / (count / wall['b']):.2f}x on lumu's summary rate")  # fmt: skip


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


def pacing(bootstrap: str, seconds: float) -> None:
    topic = fresh_name("bench-pacing")
    args = [
        "produce", "--rate", str(TARGET_RATE), "--duration", f"{seconds:g}", "--ips", "1000",
        "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    run = lumu(args, timeout=seconds + 120)
    s = run.summary
    stamps = _create_times(bootstrap, topic, int(s["delivered"]))
    delete_topics(bootstrap, [topic])
    deviation = (float(s["rate"]) / TARGET_RATE - 1) * 100
    span = (stamps[-1] - stamps[0]) / 1000
    topic_rate = (len(stamps) - 1) / span if span > 0 else 0.0
    per_second = Counter((t - stamps[0]) // 1000 for t in stamps)
    whole = [per_second[k] for k in range(int(span))]  # whole seconds only
    print(f"\npacing, lumu produce --rate {TARGET_RATE} --duration {seconds:g}")
    print(f"  summary: sent {s['sent']:,}, delivered {s['delivered']:,}, elapsed {s['elapsed']} s, "
          f"rate {s['rate']} records/s: {deviation:+.2f}% from {TARGET_RATE} "
          f"(claim: within 2%)")  # fmt: skip
    print(f"  topic:   {len(stamps):,} records, CreateTime first to last {span:.3f} s: "
          f"{topic_rate:.1f} records/s, {(topic_rate / TARGET_RATE - 1) * 100:+.2f}%")  # fmt: skip
    if whole:
        print(f"  records in each whole second: min {min(whole)}, median {median(whole):g}, "
              f"max {max(whole)} (over {len(whole)} s)")  # fmt: skip


def main() -> None:
    count = env_int("BENCH_MESSAGES", 1_000_000)
    rounds = env_int("BENCH_ROUNDS", 3)
    seconds = env_float("BENCH_RATE_SECONDS", 20.0)
    print(machine())
    with broker() as bootstrap:
        throughput(bootstrap, count, rounds)
        pacing(bootstrap, seconds)


if __name__ == "__main__":
    run_main(main)
