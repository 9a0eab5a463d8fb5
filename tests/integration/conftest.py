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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "scripts" / "kafka-broker"
# Below the ephemeral range (32768+), where a client socket could be holding the port.
TEST_PORT = os.environ.get("LUMU_TEST_KAFKA_PORT", "29092")


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


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"lumu-test-{uuid.uuid4().hex[:12]}"
