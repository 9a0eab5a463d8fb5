"""Kafka client settings: a properties file (-F, as kcat -F), then -b, then -X; errors that name
the setting or the file, never a value (a value may be a password)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lumu_cli.errors import UsageError
from lumu_cli.kafka_io import DEFAULT_BOOTSTRAP, client_config

SECRET = "hunter2-s3cret"


def properties(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "client.properties"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_without_a_file_or_b_the_bootstrap_is_localhost() -> None:
    assert client_config(None)["bootstrap.servers"] == DEFAULT_BOOTSTRAP == "localhost:9092"


def test_a_confluent_cloud_style_file_is_read_as_written(tmp_path: Path) -> None:
    path = properties(
        tmp_path,
        "# Required connection configs for Kafka producer, consumer, and admin\n"
        "bootstrap.servers=pkc-abc12.eu-west-1.aws.confluent.cloud:9092\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanisms=PLAIN\n"
        f"sasl.username=ABCDEFGHIJKLMNOP\nsasl.password={SECRET}\n\n"
        "! Best practice for higher availability in librdkafka clients prior to 1.7\n"
        "session.timeout.ms=45000\n",
    )
    config = client_config(None, (), path)
    assert config["bootstrap.servers"] == "pkc-abc12.eu-west-1.aws.confluent.cloud:9092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == SECRET
    assert config["session.timeout.ms"] == "45000"
    assert not any(key.startswith(("#", "!")) for key in config)


def test_the_java_format_separators_escapes_and_continued_lines(tmp_path: Path) -> None:
    path = properties(
        tmp_path,
        "bootstrap.servers : broker-1:9093,\\\n    broker-2:9093\n"
        "client.id   lumu\\u0020test\n"
        "sasl.password=a\\=b\\:c\n",
    )
    config = client_config(None, (), path)
    assert config["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert config["client.id"] == "lumu test"
    assert config["sasl.password"] == "a=b:c"


def test_b_overrides_the_file_and_x_overrides_both(tmp_path: Path) -> None:
    path = properties(tmp_path, "bootstrap.servers=file:9092\nclient.id=from-file\nacks=1\n")
    config = client_config("cli:9092", ["client.id=from-x", "acks=all"], path)
    assert config["bootstrap.servers"] == "cli:9092"
    assert (config["client.id"], config["acks"]) == ("from-x", "all")
    assert client_config(None, ["bootstrap.servers=x:1"], path)["bootstrap.servers"] == "x:1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "cannot read it (No such file or directory)"),
        (b"sasl.password=\xff" + SECRET.encode(), "not UTF-8 text"),
        (
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="u" password="{SECRET}";\n',
            "sasl.jaas.config is a Java client setting; librdkafka takes sasl.username and "
            "sasl.password instead",
        ),
    ],
    ids=["missing", "not-utf8", "java-jaas"],
)
def test_an_unusable_file_is_named_with_the_reason_and_no_value(
    tmp_path: Path, text: str | bytes | None, reason: str
) -> None:
    path = tmp_path / "client.properties" if text is None else properties(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        client_config(None, (), path)
    assert str(caught.value) == f"-F {str(path)!r}: {reason}"
    assert SECRET not in str(caught.value)


def test_a_bad_x_names_the_key_only() -> None:
    with pytest.raises(UsageError) as caught:
        client_config(None, [f"={SECRET}"])
    assert SECRET not in str(caught.value)
    assert "expected key=value" in str(caught.value)


def test_lumu_kafka_config_is_the_file_and_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "absent.properties"
    for args, env in (
        (["state", "-F", str(missing)], {}),
        (["state"], {"LUMU_KAFKA_CONFIG": str(missing)}),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "lumu_cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
            check=False,
        )
        assert done.returncode == 2, done.stderr
        reason = "cannot read it (No such file or directory)"
        assert done.stderr == f"lumu: -F {str(missing)!r}: {reason}\n"
