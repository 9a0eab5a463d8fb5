"""The one error policy: every failure is one line and a documented exit code, in any thread."""

from __future__ import annotations

import re
import threading

import pytest
import typer

from lumu_cli.cli import reported
from lumu_cli.cli.kafka import _Signals
from lumu_cli.errors import ExitCode, UsageError
from lumu_cli.kafka_io import Transactions
from lumu_cli.live import StatusView
from lumu_cli.tracker import Stats


def _broken_stats() -> Stats:
    raise KeyError("partitions")


@reported
def _count_with_a_broken_status_line() -> None:
    """As track and serve run: signals handled, the plain status line drawn from its thread."""
    stop = threading.Event()
    with _Signals(stop), StatusView(_broken_stats, plain=True, every=0.01):
        if not stop.wait(10):  # the status thread's failure stops the command as SIGTERM does
            raise AssertionError("not stopped")


@pytest.mark.parametrize("debug", ["", "1"])
def test_a_thread_that_fails_is_one_line_stops_the_command_and_exits_70(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, debug: str
) -> None:
    monkeypatch.setenv("LUMU_DEBUG", debug)
    before = threading.excepthook
    with pytest.raises(typer.Exit) as stopped:
        _count_with_a_broken_status_line()
    assert stopped.value.exit_code == ExitCode.INTERNAL
    err = capfd.readouterr().err
    told = [line for line in err.splitlines() if line.startswith("lumu: ")]
    assert len(told) == 1
    assert re.fullmatch(
        r"lumu: internal error in thread 'Thread-\d+ \(_lines\)': KeyError: 'partitions' "
        r"\(LUMU_DEBUG=1 shows the traceback\)",
        told[0],
    )
    assert ("Traceback" in err) == bool(debug)
    assert threading.excepthook is before  # put back after the command


@reported
def _fine() -> None:
    threading.Thread(target=lambda: None).start()


def test_a_command_whose_threads_end_well_exits_0() -> None:
    with pytest.raises(typer.Exit) as ended:
        _fine()
    assert ended.value.exit_code == ExitCode.OK


def test_a_setting_the_state_transactions_cannot_work_with_is_a_usage_error_at_once() -> None:
    config = {"bootstrap.servers": "127.0.0.1:1", "enable.idempotence": "false"}
    with pytest.raises(
        UsageError, match=re.escape("`transactional.id` requires `enable.idempotence=true`")
    ):
        Transactions(config, "g-lumu-state", "g", 1.0)
