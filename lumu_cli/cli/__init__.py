"""The `lumu` command line: options -> a library call -> output; errors -> a line and exit code.

This package is the only place that imports Typer: `ts` holds the timestamp commands, `kafka`
the Kafka ones (produce, track, serve, state); here are the app and its one error policy.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Annotated, ParamSpec

import typer

from lumu_cli import __version__
from lumu_cli.errors import ExitCode, LumuError

P = ParamSpec("P")

app = typer.Typer(
    name="lumu",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
    # Click's plain help, not Typer's Rich panels: it rewraps each paragraph to the terminal,
    # where the panels keep the source's line breaks and squeeze options' help into a column
    # about 20 characters wide at 80 columns, and it never takes [text] for Rich markup.
    rich_markup_mode=None,
)


def fail(message: str) -> None:
    """Print one `lumu: ...` status line on stderr."""
    sys.stderr.write(f"lumu: {message}\n")
    sys.stderr.flush()


def reported(command: Callable[P, None]) -> Callable[P, None]:
    """The one error policy of every command: a one-line message and a documented exit code.

    LUMU_DEBUG=1 prints the traceback first (no local variables: they may hold credentials);
    the message and the exit code stay the same. An exception that ends any other thread is
    told the same way, stops the command as SIGTERM would (cleanly, where it handles SIGTERM),
    and makes its exit code 70.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with _ThreadFailures() as threads:
            try:
                command(*args, **kwargs)
                code: int = ExitCode.OK
            except Exception as exc:
                code = _exit_code(exc)
            except KeyboardInterrupt:
                code = ExitCode.INTERRUPTED
        raise typer.Exit(ExitCode.INTERNAL if threads.failed else code)

    return run


def _debug() -> bool:
    return os.environ.get("LUMU_DEBUG") == "1"


def _internal(exc: BaseException, where: str = "") -> None:
    """Tell an unexpected error (a bug): one line, the traceback first under LUMU_DEBUG=1."""
    if _debug():
        traceback.print_exception(exc)
    fail(f"internal error{where}: {type(exc).__name__}: {exc} (LUMU_DEBUG=1 shows the traceback)")


class _ThreadFailures:
    """While open, an exception that ends a thread is told in one line (threading.excepthook)
    and the main thread is stopped as by SIGTERM."""

    def __init__(self) -> None:
        self.failed = False

    def __enter__(self) -> _ThreadFailures:
        self._old, threading.excepthook = threading.excepthook, self._hook
        return self

    def __exit__(self, *_exc: object) -> None:
        threading.excepthook = self._old

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        _internal(args.exc_value, f" in thread {name!r}")
        self.failed = True
        if callable(signal.getsignal(signal.SIGTERM)):  # a command that stops cleanly on it
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


def _exit_code(exc: Exception) -> int:
    """Report `exc` on stderr (unless it is an exit or a closed pipe) and return its exit code."""
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):  # `lumu ... | head`: stop quietly, as GNU tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.BROKEN_PIPE
    if not isinstance(exc, LumuError | OSError):
        _internal(exc)
        return ExitCode.INTERNAL
    if _debug():
        traceback.print_exception(exc)
    if isinstance(exc, LumuError):
        fail(str(exc))
        return exc.exit_code
    fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
    return ExitCode.BAD_INPUT


def _version(show: bool) -> None:
    if show:
        typer.echo(f"lumu {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Toolkit for device event streams from Kafka: normalize timestamps (ts parse), seed a topic
    (produce), count unique device IPs live (track) or as an HTTP endpoint (serve), and show the
    count a group has saved (state).

    Exit codes: 0 ok, 1 bad input, 2 usage, 3 broker, 70 internal error, 130 Ctrl-C,
    141 closed pipe. LUMU_DEBUG=1 shows tracebacks.
    """


from lumu_cli.cli import kafka, ts  # noqa: E402  (each adds its commands to `app`)

__all__ = ["app", "fail", "kafka", "reported", "ts"]
