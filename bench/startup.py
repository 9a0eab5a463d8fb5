"""Benchmark the fixed cost of `lumu track --from-beginning --exit-at-end` on an empty topic.

Against named baselines, all in the same run, on one fresh empty 3-partition topic, each a
whole process timed here by wall clock from its start to its exit:

  (p)  Python start-up: `python -c pass`, the interpreter alone.
  (v)  `lumu --version`: the interpreter and the command line, no Kafka.
  (t)  `lumu track --from-beginning --exit-at-end` in a fresh group, the durable state on: it
       checks the topic, creates the group's state topic, restores it, joins the group, writes
       each partition's first snapshot and reaches the ends.
  (kl) the headline baseline: a plain confluent-kafka consumer (bench/readers.py, `bare`) in a
       fresh group, with lumu's own consumer settings (read from lumu_cli.kafka_io:
       fetch.wait.max.ms=10, reconnect.backoff.ms=10, cooperative-sticky, ...), from its start
       until it has seen the end of all three partitions, and leaving the group: Python's
       start-up, importing confluent_kafka, the join and the ends, nothing of lumu's own.
  (k)  the same consumer at librdkafka's defaults (fetch.wait.max.ms 500 ms, reconnect.backoff.ms
       100 ms), for context.
  (tr) the same group as (t) again: a restart, which restores the state topic instead of
       creating it.
  (tn) a fresh group with --no-state.

One untimed `lumu track -e` first has the broker create its internal topics. BENCH_ROUNDS (7)
rounds, each a fresh group; medians. The target: (t) - (p) <= 0.4 s. Checks (FAIL and exit 1):
every run read no record from the empty topic.

Usage: python bench/startup.py   (env: BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import readers
from figures import check, ratio, readme
from kafka_bench import (
    LUMU,
    broker,
    bytecode,
    create_topic,
    env_int,
    fresh_name,
    lumu,
    machine,
    median,
    run_main,
    track_settings,
    warm_up,
)

TIMEOUT = 60.0
TARGET = 0.4  # seconds beyond Python's start-up
READERS = str(Path(readers.__file__).resolve())


def wall(cmd: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT)
    return time.perf_counter() - began


def plain_consumer(bootstrap: str, topic: str, settings: dict[str, Any]) -> float:
    """Wall seconds of a plain consumer process reaching the end of every partition."""
    group = fresh_name("bench-startup-plain")
    args = ["bare", bootstrap, topic, group, json.dumps(settings)]
    run = lumu(args, timeout=TIMEOUT, prefix=(sys.executable, READERS))
    check(run.summary["messages"] == 0, f"the empty topic gave {run.summary['messages']} records")
    return run.wall


def track(bootstrap: str, topic: str, group: str, *extra: str) -> float:
    args = ["track", "-e", "--from-beginning", "-g", group, "-t", topic, "-b", bootstrap, *extra]
    run = lumu(args, timeout=TIMEOUT)
    check(run.summary["messages"] == 0, f"the empty topic gave {run.summary['messages']} messages")
    return run.wall


def main() -> None:
    rounds = env_int("BENCH_ROUNDS", 7)
    print(machine())
    settings = track_settings()
    print(f"(kl) takes lumu's consumer settings: {json.dumps(settings)}")
    bytecode()
    with broker() as bootstrap:
        warm_up(bootstrap)
        topic = fresh_name("bench-startup")
        create_topic(bootstrap, topic, 3)
        groups: list[str] = []

        def fresh_track(*extra: str) -> float:
            groups.append(fresh_name("bench-startup"))
            return track(bootstrap, topic, groups[-1], *extra)

        variants: dict[str, tuple[str, Callable[[], float]]] = {
            "p": ("(p)  python -c pass", lambda: wall([sys.executable, "-c", "pass"])),
            "v": ("(v)  lumu --version", lambda: wall([LUMU, "--version"])),
            "t": ("(t)  lumu track -e --from-beginning", fresh_track),
            "kl": ("(kl) plain consumer to the ends, lumu's settings", lambda: plain_consumer(
                bootstrap, topic, settings)),
            "k": ("(k)  the same, librdkafka's defaults", lambda: plain_consumer(
                bootstrap, topic, {})),
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
    beyond = m["t"] - m["p"]
    verdict = "met" if beyond <= TARGET else "not met"
    print(
        f"\nan empty 3-partition topic, whole processes, median of {rounds} rounds (wall seconds)"
    )
    for key, (label, _) in variants.items():
        print(f"  {label:<50} {m[key]:6.3f} s")
    print(f"  (t) - (p): {beyond:.3f} s beyond Python start-up (headline; target <= {TARGET} s: "
          f"{verdict})")  # fmt: skip
    print(f"  (t) {ratio(m['t'], m['kl'], '(kl) a plain consumer with lumu settings')}; "
          f"(t) - (kl): {m['t'] - m['kl']:+.3f} s")  # fmt: skip
    print(
        f"  (t) {ratio(m['t'], m['k'], '(k) a plain consumer at librdkafka defaults', 'context')}"
    )
    print(f"  (t) - (v): {m['t'] - m['v']:.3f} s beyond lumu's own start-up")
    print(f"  (tr) - (p): {m['tr'] - m['p']:.3f} s; (tn) - (p): {m['tn'] - m['p']:.3f} s")
    readme(
        ["`startup.py`: `track -e --from-beginning` on an empty 3-partition topic, new group",
         f"{m['t']:.3f} s wall, {beyond:.3f} s beyond `python -c pass`",
         f"a plain confluent-kafka consumer process reaching the ends, lumu's settings: "
         f"{m['kl']:.3f} s", f"{m['t'] / m['kl']:.2f}x (target: at most {TARGET} s beyond "
         f"Python start-up: {verdict})"],
        ["", f"the same group again (restart): {m['tr']:.3f} s", f"`--no-state`: {m['tn']:.3f} s",
         ""],
        ["", "", f"the same consumer at librdkafka's defaults: {m['k']:.3f} s",
         f"{m['t'] / m['k']:.2f}x"],
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)
