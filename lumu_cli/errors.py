"""The project's own exceptions and the exit codes the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit statuses of every lumu command."""

    OK = 0
    BAD_INPUT = 1
    USAGE = 2
    BROKER = 3
    INTERNAL = 70
    BROKEN_PIPE = 141
    INTERRUPTED = 130


class LumuError(Exception):
    """Base of every error lumu reports; the CLI prints it as one line, exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class InvalidTimestamp(LumuError, ValueError):
    """A value that is not a real instant under lumu's timestamp rules."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"cannot parse {shorten(value)}: {reason}")


class InputError(LumuError):
    """An input that cannot be read at all (as opposed to one bad value in it)."""

    exit_code = ExitCode.BAD_INPUT


class BrokerError(LumuError):
    """Kafka is unreachable within the timeout, or refused what was asked (missing topic...)."""

    exit_code = ExitCode.BROKER


class NotAuthorized(BrokerError):
    """The broker's authorizer refused an operation; the message names it and the ACL to grant."""


class StateError(LumuError):
    """The group's state topic cannot be used: unreadable, foreign, another format, inconsistent."""

    exit_code = ExitCode.BROKER


class DeliveryError(LumuError):
    """Some produced records were not delivered (their count and the first reason)."""

    exit_code = ExitCode.BROKER


class UsageError(LumuError):
    """A bad option or argument, detected after Typer's own checks."""

    exit_code = ExitCode.USAGE


def shorten(value: object, limit: int = 80) -> str:
    """The repr of `value`, cut to `limit` characters so one bad input stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's 4300-digit str() limit
        text = f"<a {len(format(value, 'x'))}-hex-digit integer>"
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"
