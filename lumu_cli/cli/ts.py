"""`lumu ts parse`: timestamps as arguments or lines of stdin -> ISO 8601 UTC, in order."""

from __future__ import annotations

import json
import sys
from functools import partial
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from lumu_cli.cli import app, fail, reported
from lumu_cli.errors import ExitCode, InvalidTimestamp, UsageError
from lumu_cli.patterns import compile_pattern
from lumu_cli.timestamps import AUTO_RULE, Unit, load_zone, normalize

if TYPE_CHECKING:
    from lumu_cli.tsstream import ParsedBlock

ts_app = typer.Typer(help="Timestamp tools.", no_args_is_help=True)
app.add_typer(ts_app, name="ts")


class _Results:
    """Writes each input's result in order: lines or JSON objects on stdout, errors on stderr."""

    def __init__(self, stdout: BinaryIO, as_json: bool) -> None:
        self.stdout = stdout
        self.as_json = as_json
        self.failed = 0

    def one(
        self, where: str, value: str, output: str | None, error: InvalidTimestamp | None
    ) -> None:
        if self.as_json:
            reason = None if error is None else error.reason
            obj = {"input": value, "output": output, "error": reason}
            self.stdout.write(json.dumps(obj).encode() + b"\n")
        elif output is not None:
            self.stdout.write(output.encode() + b"\n")
        if error is not None:
            self._error(where, error)

    def block(self, block: ParsedBlock) -> None:
        if self.as_json:
            for row in range(len(block)):
                error = block.errors.get(row)
                self.one(
                    f"line {block.first_line + row}", block.text(row), block.result(row), error
                )
            self.stdout.flush()
            return
        done = 0
        for row, error in sorted(block.errors.items()):
            self.stdout.write(block.output(done, row))
            self._error(f"line {block.first_line + row}", error)
            done = row + 1
        self.stdout.write(block.output(done, len(block)))
        self.stdout.flush()

    def _error(self, where: str, error: InvalidTimestamp) -> None:
        self.stdout.flush()  # keep stdout and stderr in input order on a terminal
        fail(f"{where}: {error}")
        self.failed += 1


@ts_app.command("parse", context_settings={"ignore_unknown_options": True})
@reported
def ts_parse(
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TIMESTAMP...",
            help="Timestamps, one per argument. '-' (or no argument with stdin piped) reads one "
            "per line from stdin.",
            show_default=False,
        ),
    ] = None,
    unit: Annotated[
        Unit, typer.Option("--unit", "-u", help=f"Unit of epoch numbers; {AUTO_RULE}.")
    ] = Unit.AUTO,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            metavar="ZONE",
            help="IANA zone for inputs written without one (default UTC).",
            show_default=False,
        ),
    ] = None,
    year: Annotated[
        int | None,
        typer.Option(
            "--year",
            min=1,
            max=9999,
            metavar="YYYY",
            help="The year of forms written without one (RFC 3164 syslog, klog, Android "
            "logcat); never taken from today's date.",
            show_default=False,
        ),
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            metavar="STRPTIME",
            help="A strptime pattern (%Y %m %d %H %M %S %f %3N %z %Z %s %b %a %j %p ...), "
            "tried before the built-in forms; repeat it to try several in order.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per input: input, output, error.")
    ] = False,
) -> None:
    """Normalize timestamps to ISO 8601 UTC with milliseconds: 2021-12-03T16:15:30.235Z.

    Accepts ISO 8601 / RFC 3339 (with RFC 9557 zone suffixes), RFC 5322 and HTTP dates,
    ctime and date(1), Apache httpd, Common Log Format, Go, JavaScript, BIND, Cisco ASA and
    CEF, PAN-OS, Redis, java.util.logging, LDAP GeneralizedTime, @EPOCH and epoch numbers;
    RFC 3164 syslog, klog and Android logcat with --year.
    Finer digits are truncated, never rounded. Empty piped input prints nothing (exit 0).

    Each bad input is reported on stderr as `line N` or `argument N` with the reason; the others
    are still printed in order, and the exit status is 1. A negative epoch needs --unit.
    """
    zone = load_zone(tz) if tz else None
    patterns = formats or []
    for pattern in patterns:
        if compile_pattern(pattern).needs_year and year is None:
            raise UsageError(f"--format {pattern!r} has no year: add %Y or %y, or pass --year")
    rules = partial(normalize, unit=unit, tz=zone, year=year, formats=patterns)
    sources = values or _stdin_or_usage_error()
    if sources.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    results = _Results(sys.stdout.buffer, as_json)
    for position, value in enumerate(sources, 1):
        if value == "-":
            from lumu_cli.tsstream import parse_stream  # numpy only when streaming

            stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115 (not ours to close)
            for block in parse_stream(stdin, **rules.keywords):
                results.block(block)
            continue
        try:
            results.one(f"argument {position}", value, rules(value), None)
        except InvalidTimestamp as exc:
            results.one(f"argument {position}", value, None, exc)
    sys.stdout.flush()
    if results.failed:
        raise typer.Exit(ExitCode.BAD_INPUT)


def _stdin_or_usage_error() -> list[str]:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "no timestamps given: pass them as arguments, or '-' to read lines from stdin"
        )
    return ["-"]
