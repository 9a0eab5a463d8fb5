"""lumu on a replicated 3-node cluster (replication 3, min.insync.replicas 2): instances that
start together, a rolling restart, and kill -9 of the node that leads the state topic or
coordinates the group. Every count is compared with an independent read of the whole topic.
How long the count stood still is measured by bench/cluster.py, not asserted here."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.helpers import Cluster, count_when, lumu, summary, together
from tests.integration.reference import reference
from tests.integration.rolling import Victim, rolling_restart


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_instances_started_together_on_a_new_group_all_come_up_and_count_exactly(
    cluster: Cluster,
) -> None:
    """The start-up race: the first creates the state topic, the others must wait until the
    broker they ask knows it, not exit."""
    topic, group = fresh("together"), fresh("g")
    produced = summary(lumu(cluster.bootstrap, topic, "produce", "-n", "6000", "-r", "0"))
    assert produced["delivered"] == 6000
    ref = reference(cluster.bootstrap, topic)
    args = ("serve", "127.0.0.1:0", "--group", group, "--from-beginning")
    with together(3, cluster.bootstrap, topic, *args) as started:
        for process, url in started:
            count = count_when(url, ref.messages)
            assert count["unique_ips"] == ref.unique_ips
            assert process.poll() is None
    shown = lumu(cluster.bootstrap, topic, "state", "--group", group, "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""  # no warning: replicated
    state = json.loads(shown.stdout)
    assert (state["replication_factor"], state["min_insync_replicas"], state["brokers"]) == (
        3, 2, 3,
    )  # fmt: skip
    assert state["topics"][topic]["unique_ips"] == ref.unique_ips


def test_a_state_topic_of_one_replica_on_the_cluster_is_warned_of(cluster: Cluster) -> None:
    topic, group = fresh("single"), fresh("g")
    lumu(cluster.bootstrap, topic, "produce", "-n", "100", "-r", "0")
    done = lumu(
        cluster.bootstrap, topic, "track", "-e", "--from-beginning", "--group", group,
        "--replication-factor", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warning = (
        f"lumu: warning: state topic '{group}-lumu-state' has replication factor 1 on a cluster "
        "of 3 brokers: the saved count is lost with that broker (raise it with "
        "kafka-reassign-partitions)"
    )
    assert warning in done.stderr.splitlines()
    shown = lumu(cluster.bootstrap, topic, "state", "--group", group)
    assert (shown.returncode, shown.stderr.splitlines()) == (0, [warning])
    assert "replication factor 1, min.insync.replicas 2, 3 broker(s)" in shown.stdout


@pytest.mark.timeout(900)  # about 3 minutes each: 4 node restarts while 2,000 records/s come
@pytest.mark.parametrize("kill", ["state-leader", "coordinator"])
def test_a_rolling_restart_and_a_kill_keep_both_instances_exact(
    cluster: Cluster, kill: Victim
) -> None:
    outcome = rolling_restart(cluster, fresh("rolling"), fresh("g"), kill)
    ref = outcome.ref
    assert ref.messages > 20_000  # records kept coming throughout
    for instance in outcome.instances:
        assert instance.count["messages"] == ref.messages
        assert instance.count["unique_ips"] == ref.unique_ips
        assert instance.count["invalid"] == sum(ref.invalid.values())
        # a producer is abandoned only for a commit that hung: at most one an incident
        assert instance.abandoned <= outcome.incidents
