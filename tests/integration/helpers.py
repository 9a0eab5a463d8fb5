"""Running lumu against the test broker (or cluster) and reading its answers, for the
integration tests and bench/cluster.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUMU = [sys.executable, "-m", "lumu_cli"]
BROKER = Path(__file__).resolve().parents[2] / "scripts" / "kafka-broker"


@dataclass
class Cluster:
    """A 3-node cluster of scripts/kafka-broker (--nodes 3) in a data dir of its own, whose nodes
    a test can stop, kill and start (each waits for the script)."""

    env: dict[str, str]  # LUMU_KAFKA_DIR in it names the cluster's data dir
    port: str  # node I listens on port + 10 * (I - 1), its controller on the one after
    bootstrap: str = ""  # 127.0.0.1:P,127.0.0.1:P+10,127.0.0.1:P+20
    nodes: int = 3

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """scripts/kafka-broker COMMAND on this cluster, as it finished (not checked)."""
        return subprocess.run(
            [str(BROKER), command, "--nodes", str(self.nodes), "--port", self.port, *args],
            env=self.env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    def node(self, command: str, node: int) -> None:
        done = self.run(command, "--node", str(node))
        assert done.returncode == 0, f"{command} --node {node}: {done.stderr}"

    def stop(self, node: int) -> None:
        """Stop node NODE gracefully (SIGTERM), waiting until it is gone."""
        self.node("stop", node)

    def kill(self, node: int) -> None:
        """kill -9 node NODE; returns once the process is gone."""
        self.node("kill", node)

    def start(self, node: int) -> None:
        """Start node NODE again; returns once every running node lists it in its metadata."""
        self.node("start", node)


def lumu_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The environment for a lumu process aimed at the test broker ("": the -F file's) and
    `topic`."""
    aimed = {"LUMU_BOOTSTRAP_SERVERS": bootstrap} if bootstrap else {}
    return {**os.environ, **aimed, "LUMU_TOPIC": topic, **extra}


def lumu(
    bootstrap: str, topic: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LUMU, *args],
        env=lumu_env(bootstrap, topic, **(env or {})),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    out = done.stdout.splitlines()
    assert len(out) == 1, (done.stdout, done.stderr)
    result: dict[str, Any] = json.loads(out[0])
    return result


@contextmanager
def running(
    bootstrap: str, topic: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A lumu process that serves HTTP, and its base URL (read from its stderr)."""
    with together(1, bootstrap, topic, *args, env=env) as [started]:
        yield started


@contextmanager
def together(
    count: int, bootstrap: str, topic: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """`count` lumu processes that serve HTTP, started at the same moment, and their base URLs
    (each read from its stderr once all have started)."""
    command, environ, pipe = (
        [*LUMU, *args],
        lumu_env(bootstrap, topic, **(env or {})),
        subprocess.PIPE,
    )
    processes = [
        subprocess.Popen(command, env=environ, stdout=pipe, stderr=pipe, text=True)
        for _ in range(count)
    ]
    try:
        yield [(process, _serving(process)) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _serving(process: subprocess.Popen[str]) -> str:
    """The base URL a lumu process says it serves at (what it said before, if it exits)."""
    assert process.stderr is not None
    said = ""  # the state lines (created, restored) come first
    while not (match := re.search(r"serving (http://\S+)/count", said)):
        line = process.stderr.readline()
        assert line, said  # it exited without serving
        said += line
    return match[1]


def until(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for `check` (bounded: the test fails, never hangs)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def count_when(url: str, messages: int) -> dict[str, Any]:
    """/count once it has counted `messages` records (bounded wait: the test fails, never hangs)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, content_type, body = get(f"{url}/count")
        assert (status, content_type) == (200, "application/json")
        count: dict[str, Any] = json.loads(body)
        if count["messages"] == messages:
            return count
        time.sleep(0.2)
    raise AssertionError(f"/count never reached {messages} messages: {count}")


def metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, content_type, body = get(f"{url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {
        sample.name + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@dataclass
class Secured:
    """A broker of `scripts/kafka-broker start --sasl`: a plain listener (for the reference
    count, and the super user's admin when --acl) and a SASL_SSL one, for lumu's -F file."""

    plain: str  # 127.0.0.1:PORT
    sasl: str  # 127.0.0.1:PORT+2
    user: str
    password: str
    data: Path
    ca: Path

    def properties(self, name: str, **changes: str) -> Path:
        """A client.properties for the SASL_SSL listener, with some settings changed."""
        settings = {
            "bootstrap.servers": self.sasl,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": self.user,
            "sasl.password": self.password,
            "ssl.ca.location": str(self.ca),
            **changes,
        }
        path = self.data / name
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return path


def keystore(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 in a PKCS12 keystore, and it in PEM."""
    store, pem = directory / f"{name}.p12", directory / f"{name}.pem"
    common = ["-alias", name, "-keystore", str(store), "-storepass", "test-store"]
    subprocess.run(
        ["keytool", "-genkeypair", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
         "-dname", "CN=localhost", "-ext", "SAN=IP:127.0.0.1,DNS:localhost",
         "-storetype", "PKCS12", *common],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        ["keytool", "-exportcert", "-rfc", "-file", str(pem), *common],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return store, pem


@contextmanager
def secured_broker(port: int, user: str, password: str, *, acl: bool = False) -> Iterator[Secured]:
    """A broker with a SASL_SSL listener on port+2 whose SCRAM user is `user` (with --acl, the
    StandardAuthorizer on: that user may do only what ACLs grant), stopped and deleted after."""
    import pytest

    data = Path(tempfile.mkdtemp(prefix="lumu-test-sasl-"))
    store, ca = keystore(data, "broker")
    env = {
        **os.environ, "LUMU_KAFKA_DIR": str(data / "broker"), "LUMU_KAFKA_KEYSTORE": str(store),
        "LUMU_KAFKA_KEYSTORE_PASSWORD": "test-store", "LUMU_KAFKA_CA": str(ca),
        "LUMU_KAFKA_SASL_USER": user, "LUMU_KAFKA_SASL_PASSWORD": password,
    }  # fmt: skip
    started = subprocess.run(
        [str(BROKER), "start", "--sasl", *(["--acl"] if acl else []), "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"the SASL_SSL test broker did not start:\n{started.stderr}", pytrace=False)
    try:
        yield Secured(started.stdout.strip(), f"127.0.0.1:{port + 2}", user, password, data, ca)
    finally:
        subprocess.run([str(BROKER), "stop", "--port", str(port)], env=env, check=False)
        shutil.rmtree(data, ignore_errors=True)
