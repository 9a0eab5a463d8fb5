"""A real Apache Kafka broker for the integration tests, started once per run.

`scripts/kafka-broker` fetches the Kafka jars from Maven Central (cached), formats a single-node
KRaft log directory and starts it on a test port, so these tests never touch a broker a developer
runs on 9092. LUMU_TEST_BOOTSTRAP=host:port uses an existing broker instead. Nothing here skips:
if the broker cannot start, every integration test errors, and CI fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.helpers import BROKER, Cluster

# Below the ephemeral range (32768+), where a client socket could be holding the port.
TEST_PORT = os.environ.get("LUMU_TEST_KAFKA_PORT", "29092")
# Node I of the cluster listens on this port + 10 * (I - 1), its controller on the one after.
CLUSTER_PORT = os.environ.get("LUMU_TEST_CLUSTER_PORT", "29500")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """host:port of a running broker: LUMU_TEST_BOOTSTRAP, or one started for this run."""
    if given := os.environ.get("LUMU_TEST_BOOTSTRAP"):
        yield given
        return
    data = tempfile.mkdtemp(prefix="lumu-test-broker-")
    env = {**os.environ, "LUMU_KAFKA_DIR": data}
    started = subprocess.run(
        [str(BROKER), "start", "--port", TEST_PORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # the first run fetches the jars from Maven Central
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"the test broker did not start:\n{started.stderr}", pytrace=False)
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(BROKER), "stop", "--port", TEST_PORT], env=env, check=False)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A 3-node cluster started for this run, stopped and deleted at its end."""
    data = tempfile.mkdtemp(prefix="lumu-test-cluster-")
    cluster = Cluster(env={**os.environ, "LUMU_KAFKA_DIR": data}, port=CLUSTER_PORT)
    try:
        started = cluster.run("start")  # the first run fetches the jars from Maven Central
        if started.returncode != 0:
            pytest.fail(f"the test cluster did not start:\n{started.stderr}", pytrace=False)
        cluster.bootstrap = started.stdout.strip()
        yield cluster
    finally:
        cluster.run("wipe")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"lumu-test-{uuid.uuid4().hex[:12]}"
