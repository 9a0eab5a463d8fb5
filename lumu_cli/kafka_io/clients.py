"""Client settings (-b, -F, -X), the making of librdkafka clients, and what a refusal says."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient

from lumu_cli.errors import UsageError

DEFAULT_BOOTSTRAP = "localhost:9092"

# For producers whose fatal errors lumu tells itself: librdkafka logs those as FATAL, which
# log_level 0 still prints (as a second line), unless the lines go to a logger; this drops them.
QUIET = logging.getLogger("lumu.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def client_config(
    bootstrap: str | None, settings: Sequence[str] = (), file: Path | None = None
) -> dict[str, str]:
    """librdkafka properties: those of `file` (a client.properties file, as kcat -F reads it),
    then `--bootstrap-servers`, then each `-X key=value`; a later one wins."""
    config = {
        # librdkafka drops the bootstrap connection once it knows the brokers, and waits half of
        # this (default 100 ms) before it connects to them: every client started 40 ms sooner
        "reconnect.backoff.ms": "10",
        **(read_properties(file) if file is not None else {}),
    }
    if bootstrap is not None:
        config["bootstrap.servers"] = bootstrap
    config.setdefault("bootstrap.servers", DEFAULT_BOOTSTRAP)
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-X {key!r}: expected key=value, e.g. -X security.protocol=SSL")
        config[key.strip()] = value
    return config


def read_properties(path: Path) -> dict[str, str]:
    """The properties of a Java-style properties file: key=value (or key: value) lines, # and !
    comments, backslash escapes and continued lines. Errors name the file, never a value."""
    import javaproperties  # (here: only -F needs it)

    try:
        with path.open(encoding="utf-8") as file:
            properties: dict[str, str] = javaproperties.load(file)
    except OSError as exc:
        raise UsageError(f"-F {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"-F {str(path)!r}: not UTF-8 text") from None
    if "sasl.jaas.config" in properties:  # what a Java client's file holds
        raise UsageError(
            f"-F {str(path)!r}: sasl.jaas.config is a Java client setting; librdkafka takes "
            "sasl.username and sasl.password instead"
        )
    return properties


def _describe(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    text = error.str() if isinstance(error, KafkaError) else str(error)
    return text.rstrip(".")


def _admin(config: dict[str, str]) -> AdminClient:
    """An admin client for `config`, shared: each new one costs a connection and a handshake."""
    return _shared_admin(tuple(sorted(config.items())))


@functools.lru_cache(maxsize=4)
def _shared_admin(config: tuple[tuple[str, str], ...]) -> AdminClient:
    settings: dict[str, Any] = dict(config)
    settings.update(log_level=0, error_cb=_note_refusal(settings.get("bootstrap.servers", "")))
    return _client(AdminClient, settings)


Client = TypeVar("Client", AdminClient, Consumer, Producer)


def _client(kind: Callable[[dict[str, Any]], Client], settings: dict[str, Any]) -> Client:
    """A librdkafka client; a setting it refuses (such as -X enable.idempotence=false for the
    state's transactions) is a usage error, told at once."""
    try:
        return kind(settings)
    except KafkaException as exc:
        raise UsageError(f"bad Kafka client setting: {_describe(exc)}") from None


# Why brokers turned a client away (bootstrap servers -> librdkafka's reason, which names
# neither user nor password): a wrong password or an untrusted certificate otherwise shows only
# as a metadata request timing out.
_refusals: dict[str, str] = {}
_REFUSED = {
    KafkaError._AUTHENTICATION: "check sasl.username, sasl.password and sasl.mechanisms",
    KafkaError.SASL_AUTHENTICATION_FAILED: "check sasl.username, sasl.password and sasl.mechanisms",
    KafkaError._SSL: "check ssl.ca.location, or the broker's certificate",
}


def _note_refusal(where: str) -> Callable[[KafkaError], None]:
    def note(error: KafkaError) -> None:
        if error.code() in _REFUSED:
            _refusals[where] = f"{_describe(KafkaException(error))}; {_REFUSED[error.code()]}"

    return note


_TRY_SECONDS = 0.5


Answer = TypeVar("Answer")


def _asked_again(
    ask: Callable[[], Answer], again: Callable[[int], bool], deadline: float
) -> Answer:
    """ask()'s answer; a KafkaException whose code `again` holds for is asked again, in
    half-second tries, until `deadline`; any other, or one past it, is raised."""
    while True:
        try:
            return ask()
        except KafkaException as exc:
            if not again(exc.args[0].code()) or time.monotonic() >= deadline:
                raise
        time.sleep(min(_TRY_SECONDS, max(0.0, deadline - time.monotonic())))
