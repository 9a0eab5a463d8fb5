"""Benchmark what a rolling restart of a replicated cluster costs the live count.

On a 3-node KRaft cluster (`scripts/kafka-broker start --nodes 3 --port 29600`, replication 3,
min.insync.replicas 2), the scenario of tests/integration/rolling.py: `lumu produce` writes
2,000 records a second; two `lumu serve` of one group count them (--commit-interval 1); each
node is stopped (SIGTERM) and started in turn, then the node that leads the state topic (run 1)
or coordinates the group (run 2) is killed with kill -9 and started again.

Figures, for each run and each instance:
  - the longest time its /count stood still while records kept coming, during the rolling
    restart (the target: 5 s) and after the kill -9;
  - the transactional producers it abandoned (a state commit that did not answer in 20 s,
    librdkafka#5456), of 4 incidents;
  - its threads before and after (an abandoned producer keeps its threads while it hangs).

The baseline, in the same run, beside the instances: a plain confluent-kafka consumer
(bench/readers.py `follow`) with lumu's own consumer settings in a group of its own, counting
records and printing its count ten times a second: how long librdkafka itself stands still as
leaders and coordinators move, with no state to keep. The ratio is lumu's longest stall over
the baseline's.

Checks (FAIL and exit 1): both instances end with the exact count of an independent read of
the whole topic (tests/integration/reference.py).

Usage: python bench/cluster.py   (about 6 minutes)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import readers
from figures import check, ratio, readme
from kafka_bench import run_main, track_settings

from tests.integration.helpers import Cluster  # the project root is on the path
from tests.integration.rolling import Victim, rolling_restart

PORT = "29600"


def follower(bootstrap: str, topic: str) -> list[str]:
    settings = track_settings()
    settings["fetch.wait.max.ms"] = 100  # as lumu's reader that does not stop at the end
    settings["log_level"] = 0  # as lumu's: librdkafka's own lines would bury the figures
    group = f"bench-follow-{uuid.uuid4().hex[:8]}"
    script = str(Path(readers.__file__))
    return [sys.executable, script, "follow", bootstrap, topic, group, json.dumps(settings)]


def main() -> None:
    data = tempfile.mkdtemp(prefix="lumu-bench-cluster-")
    cluster = Cluster({**os.environ, "LUMU_KAFKA_DIR": data}, port=PORT)
    rows = []
    try:
        started = cluster.run("start")
        check(started.returncode == 0, f"kafka-broker start: {started.stderr.strip()}")
        cluster.bootstrap = started.stdout.strip()
        print(f"cluster: {cluster.bootstrap} (3 nodes, replication 3, min.insync.replicas 2)")
        kills: tuple[Victim, ...] = ("state-leader", "coordinator")
        for run, kill in enumerate(kills, 1):
            topic = f"bench-rolling-{uuid.uuid4().hex[:8]}"
            group = f"bench-{uuid.uuid4().hex[:8]}"
            try:
                outcome = rolling_restart(
                    cluster, topic, group, kill, beside=follower(cluster.bootstrap, topic)
                )
            except AssertionError as failed:  # a node that would not stop or start, and such
                check(False, str(failed))
                raise
            ref = outcome.ref
            for instance in outcome.instances:
                got = (instance.count["messages"], instance.count["unique_ips"])
                want = (ref.messages, ref.unique_ips)
                check(got == want, f"an instance counted {got}, the reference {want}")
            print(f"\nrolling restart, then kill -9 of the {kill} node: {ref.messages:,} records, "
                  f"{ref.unique_ips:,} unique IPs, exact in both instances")  # fmt: skip
            for number, instance in enumerate(outcome.instances):
                before, after = instance.threads
                print(f"  instance {number + 1}: longest stall "
                      f"{outcome.stall(instance.samples, 'rolling'):.1f} s in the rolling restart, "
                      f"{outcome.stall(instance.samples, 'kill'):.1f} s after the kill; producers "
                      f"abandoned {instance.abandoned} of {outcome.incidents} incidents; threads "
                      f"{before} -> {after}")  # fmt: skip
            for phase in ("rolling", "kill"):
                what = "rolling restart" if phase == "rolling" else f"kill -9 of the {kill}"
                stall = max(
                    outcome.stall(instance.samples, phase) for instance in outcome.instances
                )
                baseline = outcome.stall(outcome.beside, phase)
                shown = ratio(stall, baseline, "a plain consumer's longest stall")
                print(f"  {what}: lumu {stall:.1f} s, baseline {baseline:.1f} s; {shown}")
                rows.append((
                    f"cluster.py: longest `/count` stall, {what} (run {run})",
                    f"{stall:.1f} s", f"plain consumer, lumu's settings: {baseline:.1f} s",
                    f"{stall / baseline:.2f}x" if baseline else "n/a",
                ))  # fmt: skip
            print(f"  producer: {outcome.produced['delivered']:,} delivered, "
                  f"{outcome.produced['failed']:,} failed")  # fmt: skip
    finally:
        cluster.run("wipe")
        shutil.rmtree(data, ignore_errors=True)
    readme(*rows)


if __name__ == "__main__":
    run_main(main)
