"""Secured Kafka: the test broker with a SASL_SSL listener (SCRAM-SHA-512), reached with -F.

The broker is `scripts/kafka-broker start --sasl` on ports of its own, its SCRAM user made when
its storage is formatted, serving a TLS certificate this test makes with keytool. produce,
track and serve go through SASL_SSL with a client.properties file; the count is compared with
the independent reference count, read through the broker's plain listener. A wrong password
and an untrusted certificate are one line and exit 3. The password never shows: not in an
error line, /count, /metrics, the status lines, nor LUMU_DEBUG output.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.helpers import (
    LUMU,
    Secured,
    get,
    keystore,
    running,
    secured_broker,
    summary,
    until,
)
from tests.integration.reference import reference

PORT = 29200  # plain 29200, controller 29201, SASL_SSL 29202: apart from the other brokers
SASL_PORT = PORT + 2
PASSWORD = "pw-Zq7-not-for-eyes"
USER = "lumu-test"
TIMEOUT = 5  # lumu's --timeout for the refused runs


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    with secured_broker(PORT, USER, PASSWORD) as broker:
        yield broker


def lumu(*args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    """lumu with no Kafka settings from the environment: all of them come from -F."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMU_")}
    return subprocess.run(
        [*LUMU, *args], env={**env, "LUMU_DEBUG": "1"} if debug else env,
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def test_produce_track_and_serve_go_through_sasl_ssl_with_a_config_file(
    secured: Secured, topic: str
) -> None:
    config = str(secured.properties("client.properties"))
    produced = lumu("produce", "-F", config, "-t", topic, "--rate", "0", "--count", "2000",
                    "--invalid-ratio", "0.05", "--seed", "9")  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert summary(produced)["delivered"] == 2000
    ref = reference(secured.plain, topic)  # read apart from lumu, through the plain listener
    assert ref.messages == 2000

    tracked = lumu("track", "-F", config, "-t", topic, "-e", "--from-beginning", "-g", topic)
    assert tracked.returncode == 1, tracked.stderr  # 1: the invalid records
    result = summary(tracked)
    assert (result["messages"], result["unique_ips"]) == (ref.messages, ref.unique_ips)
    assert result["invalid_by_reason"] == ref.invalid

    args = ("serve", "127.0.0.1:0", "-F", config, "-t", topic, "--from-beginning",
            "-g", f"{topic}-serve")  # fmt: skip
    with running("", topic, *args) as (process, url):  # "": the brokers come from -F
        until(lambda: '"messages": 2000' in get(f"{url}/count")[2], "serve counted the topic")
        count, metrics = get(f"{url}/count")[2], get(f"{url}/metrics")[2]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert f'"unique_ips": {ref.unique_ips}' in count
    for text in (count, metrics, out, err, produced.stderr, tracked.stderr):
        assert PASSWORD not in text


@pytest.mark.parametrize("command", ["produce", "track", "serve", "state"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "SASL authentication error"),
        ("untrusted-certificate", "certificate verify failed"),
    ],
)
def test_a_refusal_is_one_line_exit_3_and_never_shows_the_password(
    secured: Secured, topic: str, command: str, case: str, expected: str
) -> None:
    if case == "wrong-password":
        config = secured.properties(f"{case}.properties", **{"sasl.password": f"{PASSWORD}x"})
    else:  # the broker's certificate is not signed by this CA
        _, other = keystore(secured.data, f"other-{command}")
        config = secured.properties(f"{case}.properties", **{"ssl.ca.location": str(other)})
    args = {
        "produce": ["--count", "10", "-t", topic],
        "track": ["-t", topic],
        "serve": ["127.0.0.1:0", "-t", topic],
        "state": ["-g", topic],
    }[command]
    for debug in (False, True):
        done = lumu(command, *args, "-F", str(config), "--timeout", str(TIMEOUT), debug=debug)
        assert done.returncode == 3, done.stderr  # LUMU_DEBUG adds a traceback, nothing else
        assert PASSWORD not in done.stdout + done.stderr
        assert done.stdout == ""
        line = done.stderr.splitlines()[-1]
        assert line.startswith(f"lumu: Kafka at 127.0.0.1:{SASL_PORT} refused lumu: ")
        assert expected in line
        assert ("Traceback" in done.stderr) == debug
        if not debug:
            assert done.stderr == line + "\n"
