"""What users see when the broker goes away mid-run: a second real broker, stopped on purpose."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.integration.helpers import (
    BROKER,
    LUMU,
    count_when,
    get,
    lumu,
    lumu_env,
    running,
    summary,
    until,
)

# Below the ephemeral range (32768+), where a client socket could be holding the port.
PORT = os.environ.get("LUMU_TEST_KAFKA_PORT_2", "29096")


class Broker:
    """A broker of this test's own, which it can stop and start again."""

    def __init__(self) -> None:
        self.env = {**os.environ, "LUMU_KAFKA_DIR": tempfile.mkdtemp(prefix="lumu-test-broker2-")}

    def run(self, command: str) -> str:
        done = subprocess.run(
            [str(BROKER), command, "--port", PORT],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = Broker()
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop")
        shutil.rmtree(broker.env["LUMU_KAFKA_DIR"], ignore_errors=True)


def test_healthz_turns_503_while_the_broker_is_down_and_back_to_200(
    broker: Broker, topic: str
) -> None:
    bootstrap = f"127.0.0.1:{PORT}"
    assert lumu(bootstrap, topic, "produce", "--count", "100", "--rate", "0").returncode == 0
    with running(bootstrap, topic, "serve", "127.0.0.1:0", "--from-beginning") as (process, url):
        assert count_when(url, 100)["messages"] == 100
        assert get(f"{url}/healthz")[0] == 200
        broker.run("stop")
        until(lambda: get(f"{url}/healthz")[0] == 503, "/healthz 503 with the broker down")
        _, _, body = get(f"{url}/healthz")
        assert json.loads(body) == {"status": "broker unreachable"}
        assert json.loads(get(f"{url}/count")[2])["messages"] == 100  # the count is still served
        assert "lumu_up 0.0" in get(f"{url}/metrics")[2]
        broker.run("start")
        until(lambda: get(f"{url}/healthz")[0] == 200, "/healthz 200 with the broker back")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_produce_exits_3_when_deliveries_fail(broker: Broker, topic: str) -> None:
    bootstrap = f"127.0.0.1:{PORT}"
    args = ["produce", "--rate", "500", "--duration", "8", "-X", "message.timeout.ms=3000"]
    process = subprocess.Popen(
        [*LUMU, *args], env=lumu_env(bootstrap, topic), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    broker.run("stop")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 3, err
    result = summary(subprocess.CompletedProcess(args, 3, out, err))
    assert result["failed"] > 0
    assert result["delivered"] + result["failed"] == result["sent"]
    assert err.splitlines()[-1] == (
        f"lumu: {result['failed']} of {result['sent']} records were not delivered "
        "(first reason: Local: Message timed out)"
    )
    assert "Traceback" not in err
