"""Benchmark the fixed cost of `lumu track --from-beginning --exit-at-end` on an empty topic.

Against named baselines, all in the same run, on one fresh empty 3-partition topic:

  (p)  Python start-up: `python -c pass`, the interpreter alone.
  (v)  `lumu --version`: the interpreter and the command line, no Kafka.
  (k)  a plain confluent-kafka consumer in a fresh group, timed from its creation until it has
       seen the end of all three partitions, at librdkafka's defaults (fetch.wait.max.ms 500)
       and (k10) with fetch.wait.max.ms=10. In this process: no start-up.
  (t)  `lumu track --from-beginning --exit-at-end` in a fresh group, the durable state on: it
       checks the topic, creates the group's state topic, restores it, joins the group, writes
       each partition's first snapshot and reaches the ends. Wall time of the whole process.
  (tr) the same group again: a restart, which restores the state topic instead of creating it.
  (tn) a fresh group with --no-state.

BENCH_ROUNDS (7) rounds, each a fresh group; medians. The target: (t) - (p) <= 0.4 s.

Usage: python bench/startup.py   (env: BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaError, KafkaException
from kafka_bench import (
    LUMU,
    broker,
    create_topic,
    env_int,
    fresh_consumer,
    fresh_name,
    lumu,
    machine,
    median,
    run_main,
)

TIMEOUT = 60.0


def wall(cmd: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT)
    return time.perf_counter() - began


def plain_consumer(bootstrap: str, topic: str, extra: Mapping[str, object]) -> float:
    """Seconds from creating a consumer to its end-of-partition on every partition."""
    began = time.perf_counter()
    consumer, assigned = fresh_consumer(bootstrap, topic, extra)
    at_end: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (assigned and at_end >= assigned):
            if time.monotonic() > deadline:
                raise TimeoutError("the plain consumer did not reach the ends")
            message = consumer.poll(0.01)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())  # type: ignore[arg-type]
            elif error is not None:
                raise KafkaException(error)
        return time.perf_counter() - began
    finally:
        consumer.close()


def track(bootstrap: str, topic: str, group: str, *extra: str) -> float:
    args = ["track", "-e", "--from-beginning", "-g", group, "-t", topic, "-b", bootstrap, *extra]
    run = lumu(args, timeout=TIMEOUT)
    if run.summary["messages"] != 0:
        raise SystemExit(f"FAIL: the empty topic gave {run.summary['messages']} messages")
    return run.wall


def main() -> None:
    rounds = env_int("BENCH_ROUNDS", 7)
    print(machine())
    with broker() as bootstrap:
        topic = fresh_name("bench-startup")
        create_topic(bootstrap, topic, 3)
        groups: list[str] = []

        def fresh_track(*extra: str) -> float:
            groups.append(fresh_name("bench-startup"))
            return track(bootstrap, topic, groups[-1], *extra)

        variants: dict[str, tuple[str, Callable[[], float]]] = {
            "p": ("(p)  python -c pass", lambda: wall([sys.executable, "-c", "pass"])),
            "v": ("(v)  lumu --version", lambda: wall([LUMU, "--version"])),
            "k": ("(k)  plain consumer to the ends, defaults", lambda: plain_consumer(
                bootstrap, topic, {})),
            "k10": ("(k10) the same, fetch.wait.max.ms=10", lambda: plain_consumer(
                bootstrap, topic, {"fetch.wait.max.ms": 10})),
            "t": ("(t)  lumu track -e --from-beginning", fresh_track),
            "tr": ("(tr) the same group again (restart)", lambda: track(
                bootstrap, topic, groups[-1])),
            "tn": ("(tn) lumu track ... --no-state", lambda: fresh_track("--no-state")),
        }  # fmt: skip
        times: dict[str, list[float]] = {key: [] for key in variants}
        for r in range(rounds):
            for key, (_, run) in variants.items():
                times[key].append(run())
            line = ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items())
            print(f"round {r + 1}/{rounds}: {line}", flush=True)

    m = {key: median(values) for key, values in times.items()}
    print(f"\nan empty 3-partition topic, median of {rounds} rounds (wall seconds)")
    for key, (label, _) in variants.items():
        print(f"  {label:<45} {m[key]:6.3f} s")
    print(f"  (t) - (p): {m['t'] - m['p']:.3f} s beyond Python start-up (target <= 0.4 s)")
    print(f"  (t) - (v): {m['t'] - m['v']:.3f} s beyond lumu's own start-up")
    print(f"  (tr) - (p): {m['tr'] - m['p']:.3f} s; (tn) - (p): {m['tn'] - m['p']:.3f} s")
    print(f"  ratio t/k: {m['t'] / m['k']:.2f}x (a plain consumer at librdkafka's defaults)")


if __name__ == "__main__":
    run_main(main)
