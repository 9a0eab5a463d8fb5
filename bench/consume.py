"""Benchmark `lumu track` reading a whole topic against plain confluent-kafka consumers.

Preloads BENCH_MESSAGES (1,000,000) records into a fresh 3-partition topic with
`lumu produce --rate 0 --ips 100000 --ipv6-ratio 0.1 --invalid-ratio 0.01 --seed 1` (its rate is
printed too, but bench/produce.py is the produce benchmark). Then, in the same run, each reading
the topic from the beginning in a fresh consumer group until every partition is at its end:

  (a)  bare: `consumer.consume(num_messages=10000, timeout=0.1)` counting messages, nothing
       decoded: what librdkafka and the Python binding deliver with lumu's consumer settings
       (fetch.max.bytes=64 MiB, fetch.queue.backoff.ms=10): the ceiling for lumu.
  (a0) the same with librdkafka's defaults: its fetch.queue.backoff.ms (1000 ms) pauses fetching
       a partition for a second whenever its local queue is full (queued.min.messages, 100,000),
       which caps a fast reader. Shown for context; lumu sets 10 ms.
  (b)  seed style, the original exercise's consumer: `consumer.poll(1.0)` one record at a time,
       `json.loads(msg.value())`, `device_ip` added to a Python set of strings, exceptions
       caught; with lumu's consumer settings, so the ratio compares code, not configuration.
  (f)  the floor for Python: `consume(10000)` as (a), each value decoded by msgspec into its two
       fields (as lumu decodes them), the raw `device_ip` added to a set: no address or timestamp
       checked, no state kept. What is left of the bare rate once every record is decoded.
  (c)  `lumu track --from-beginning --exit-at-end` as a subprocess, the durable state on: its
       wall time includes process start-up, the state topic, group join and the final commit.
       Its steady rate is messages / (elapsed - first_record_at) from its summary: without
       start-up, restore, join and the first fetch.
  (c1) the same pinned to one core (`taskset -c 0`; the broker still has both): what the second
       core gives lumu.

(a) and (b) run in this process and are timed from creating the consumer to closing it (group
join included); CPU seconds are this process's (librdkafka threads included) or the child's.
BENCH_ROUNDS (3) rounds, the order rotated each round; medians are printed with msgs/s and the
ratios c/b (target >= 2x), c/a (target >= 0.5x) and c/c1.

Usage: python bench/consume.py   (env: BENCH_MESSAGES, BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message
from kafka_bench import (
    LUMU,
    broker,
    end_offsets,
    env_int,
    fresh_consumer,
    fresh_name,
    lumu,
    machine,
    median,
    preload,
    rotations,
    run_main,
)

CONSUME_TIMEOUT = 300.0  # a variant that has not finished by then has failed
# what lumu's consumer sets (kafka_io.Consumed)
LUMU_FETCH = {"fetch.max.bytes": 64 << 20, "fetch.queue.backoff.ms": 10}


@dataclass
class Result:
    wall: float
    cpu: float
    messages: int
    detail: str = ""
    steady: float | None = None  # seconds of reading, without start-up and join


def bare(bootstrap: str, topic: str, extra: Mapping[str, object]) -> Result:
    """(a) batches of up to 10,000 messages, counted; nothing decoded."""
    began, cpu = time.perf_counter(), time.process_time()
    consumer, assigned = fresh_consumer(bootstrap, topic, extra)
    at_end: set[int] = set()
    count = 0
    deadline = time.monotonic() + CONSUME_TIMEOUT
    try:
        while not (assigned and at_end >= assigned):
            if time.monotonic() > deadline:
                raise TimeoutError("bare consumer did not reach the end")
            for message in consumer.consume(num_messages=10_000, timeout=0.1):
                error = message.error()
                if error is None:
                    count += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())  # type: ignore[arg-type]
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    return Result(time.perf_counter() - began, time.process_time() - cpu, count)


class _Fields(msgspec.Struct, gc=False):
    device_ip: object = None
    timestamp: object = None


def floor(bootstrap: str, topic: str) -> Result:
    """(f) consume(10000) batches, msgspec-decoded, raw device_ip into a set; nothing checked."""
    decode = msgspec.json.Decoder(_Fields).decode
    began, cpu = time.perf_counter(), time.process_time()
    consumer, assigned = fresh_consumer(bootstrap, topic, LUMU_FETCH)
    at_end: set[int] = set()
    ips: set[object] = set()
    count = 0
    deadline = time.monotonic() + CONSUME_TIMEOUT
    try:
        while not (assigned and at_end >= assigned):
            if time.monotonic() > deadline:
                raise TimeoutError("floor consumer did not reach the end")
            for message in consumer.consume(num_messages=10_000, timeout=0.1):
                error = message.error()
                if error is None:
                    count += 1
                    try:  # noqa: SIM105  (a `with suppress` per record would slow the floor)
                        ips.add(decode(message.value()).device_ip)  # type: ignore[arg-type]
                    except (msgspec.DecodeError, TypeError):
                        pass
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())  # type: ignore[arg-type]
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    return Result(time.perf_counter() - began, time.process_time() - cpu, count)


def naive(bootstrap: str, topic: str) -> Result:
    """(b) seed style: poll one message, json.loads, add device_ip to a set.

    With lumu's consumer settings, so that the ratio c/b compares code, not configuration.
    """
    began, cpu = time.perf_counter(), time.process_time()
    consumer, assigned = fresh_consumer(bootstrap, topic, LUMU_FETCH)
    at_end: set[int] = set()
    ips: set[object] = set()
    count = failed = 0
    deadline = time.monotonic() + CONSUME_TIMEOUT
    try:
        while not (assigned and at_end >= assigned):
            if time.monotonic() > deadline:
                raise TimeoutError("naive consumer did not reach the end")
            msg: Message | None = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())  # type: ignore[arg-type]
                    continue
                raise KafkaException(error)
            count += 1
            try:
                record = json.loads(msg.value())  # type: ignore[arg-type]
                ips.add(record["device_ip"])
            except Exception:
                failed += 1
    finally:
        consumer.close()
    detail = f"set of raw device_ip values: {len(ips):,}; exceptions caught: {failed:,}"
    return Result(time.perf_counter() - began, time.process_time() - cpu, count, detail)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tracked(bootstrap: str, topic: str, cores: str | None = None) -> Result:
    """(c) lumu track --from-beginning --exit-at-end in a fresh group, as a subprocess."""
    cpu = _children_cpu()
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
    detail = f"unique_ips: {s['unique_ips']:,}; invalid: {s['invalid']:,}"
    cpu = _children_cpu() - cpu
    steady = float(s["elapsed"]) - float(s["first_record_at"])
    return Result(run.wall, cpu, int(s["messages"]), detail, steady)


VARIANTS: dict[str, tuple[str, Callable[[str, str], Result]]] = {
    "a": ("(a)  bare consume(10000), lumu's settings", lambda b, t: bare(b, t, LUMU_FETCH)),
    "a0": ("(a0) bare consume(10000), librdkafka defaults", lambda b, t: bare(b, t, {})),
    "b": ("(b)  seed style: poll + json.loads + set", naive),
    "f": ("(f)  floor: consume + msgspec + set, unchecked", floor),
    "c": ("(c)  lumu track (subprocess, wall)", tracked),
    "c1": ("(c1) lumu track on one core (taskset -c 0)", lambda b, t: tracked(b, t, "0")),
}


def main() -> None:
    messages = env_int("BENCH_MESSAGES", 1_000_000)
    rounds = env_int("BENCH_ROUNDS", 3)
    print(machine())
    with broker() as bootstrap:
        topic = fresh_name("bench-consume")
        load = preload(bootstrap, topic, messages)
        s = load.summary
        print(
            f"preload: {s['delivered']:,} records into {topic} (3 partitions) by lumu produce: "
            f"{s['rate']:,.0f} records/s by its summary, {load.wall:.1f} s wall; "
            f"expected unique IPs {s['distinct_ips']:,}, invalid {s['invalid']:,}"
        )
        total = sum(end_offsets(bootstrap, topic).values())
        if total != messages:
            raise SystemExit(f"FAIL: the topic holds {total:,} records, not {messages:,}")
        results: dict[str, list[Result]] = {key: [] for key in VARIANTS}
        for r, order in rotations(list(VARIANTS), rounds):
            line = []
            for key in order:
                result = VARIANTS[key][1](bootstrap, topic)
                if result.messages != total:
                    raise SystemExit(f"FAIL: {key} read {result.messages:,} of {total:,} records")
                results[key].append(result)
                line.append(f"{key} {result.wall:.2f} s")
            print(f"round {r + 1}/{rounds} ({' '.join(order)}): {', '.join(line)}", flush=True)

    rate = {key: total / median([x.wall for x in res]) for key, res in results.items()}
    print(f"\nreading {total:,} records from the beginning, median of {rounds} rounds")
    for key, (label, _) in VARIANTS.items():
        wall, cpu = median([x.wall for x in results[key]]), median([x.cpu for x in results[key]])
        print(f"  {label:<45} {rate[key]:>9,.0f} msgs/s  ({wall:5.2f} s wall, {cpu:5.2f} s CPU)")
        steady = [x.steady for x in results[key] if x.steady is not None]
        if steady:
            print(f"  {'     steady: without start-up, restore, join':<45} "
                  f"{total / median(steady):>9,.0f} msgs/s  ({median(steady):5.2f} s)")  # fmt: skip
    print(f"  (b) {results['b'][-1].detail}")
    print(f"  (c) {results['c'][-1].detail}; expected (lumu produce) {s['distinct_ips']:,}")
    print(f"  ratio c/b: {rate['c'] / rate['b']:.2f}x (target >= 2x)")
    print(f"  ratio c/a: {rate['c'] / rate['a']:.2f}x (target >= 0.5x)")
    print(f"  ratio c/c1: {rate['c'] / rate['c1']:.2f}x (two cores against one)")
    print(f"  ratio f/b: {rate['f'] / rate['b']:.2f}x (decoding alone, nothing checked)")
    print(f"  ratio c/a0: {rate['c'] / rate['a0']:.2f}x (bare, left at librdkafka's defaults)")


if __name__ == "__main__":
    run_main(main)
