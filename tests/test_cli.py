"""`lumu ts parse` as a user runs it: a real process, real stdin, stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

LUMU = [sys.executable, "-m", "lumu_cli"]


def lumu(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*LUMU, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def test_one_epoch_argument() -> None:
    done = lumu("ts", "parse", "1700000000")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"2023-11-14T22:13:20.000Z\n", b"")


def test_bad_argument_is_reported_and_the_others_still_printed_in_order() -> None:
    done = lumu("ts", "parse", "1700000000", "2021-02-30T00:00:00", "2021-12-03T16:15:30.235Z")
    assert done.returncode == 1
    assert lines(done.stdout) == ["2023-11-14T22:13:20.000Z", "2021-12-03T16:15:30.235Z"]
    assert lines(done.stderr) == [
        "lumu: argument 2: cannot parse '2021-02-30T00:00:00': day is out of range for month"
    ]


def test_stdin_dash_reads_one_timestamp_per_line_and_names_bad_lines() -> None:
    stdin = b"1726667942\r\n  2021-12-03 16:15:30.1+05:30  \n\ninvalid\n\xff\xfe\n2016-W13-7"
    done = lumu("ts", "parse", "-", stdin=stdin)
    assert done.returncode == 1
    assert lines(done.stdout) == [
        "2024-09-18T13:59:02.000Z",
        "2021-12-03T10:45:30.100Z",
        "2016-04-03T00:00:00.000Z",
    ]
    assert lines(done.stderr) == [
        "lumu: line 3: cannot parse '': empty input",
        "lumu: line 4: cannot parse 'invalid': not a recognized timestamp "
        "(see lumu ts parse --help for the forms)",
        "lumu: line 5: cannot parse b'\\xff\\xfe': not valid UTF-8 text",
    ]


def test_no_argument_with_piped_stdin_reads_stdin() -> None:
    done = lumu("ts", "parse", stdin=b"1700000000\n")
    assert (done.returncode, done.stdout) == (0, b"2023-11-14T22:13:20.000Z\n")


def test_no_argument_with_a_terminal_is_a_usage_error() -> None:
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [*LUMU, "ts", "parse"], stdin=follower, capture_output=True, timeout=60
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2
    assert lines(done.stderr) == [
        "lumu: no timestamps given: pass them as arguments, or '-' to read lines from stdin"
    ]


def test_json_keeps_one_object_per_input_in_order() -> None:
    done = lumu("ts", "parse", "--json", "-", stdin=b"1700000000\nnope\n2021-12-03T16:15:30Z\n")
    assert done.returncode == 1
    assert [json.loads(line) for line in lines(done.stdout)] == [
        {"input": "1700000000", "output": "2023-11-14T22:13:20.000Z", "error": None},
        {
            "input": "nope",
            "output": None,
            "error": "not a recognized timestamp (see lumu ts parse --help for the forms)",
        },
        {"input": "2021-12-03T16:15:30Z", "output": "2021-12-03T16:15:30.000Z", "error": None},
    ]
    assert lines(done.stderr) == [
        "lumu: line 2: cannot parse 'nope': not a recognized timestamp "
        "(see lumu ts parse --help for the forms)"
    ]


def test_arguments_and_stdin_mix_in_order() -> None:
    done = lumu("ts", "parse", "0", "-", "1", stdin=b"2\n3\n")
    assert lines(done.stdout) == [f"1970-01-01T00:00:0{n}.000Z" for n in (0, 2, 3, 1)]


def test_negative_epoch_needs_a_unit() -> None:
    auto = lumu("ts", "parse", "-1234567890")
    assert auto.returncode == 1
    assert b"negative epoch is ambiguous; pass --unit" in auto.stderr
    explicit = lumu("ts", "parse", "--unit", "s", "-1234567890")
    assert (explicit.returncode, explicit.stdout) == (0, b"1930-11-18T00:28:30.000Z\n")


def test_tz_option_interprets_naive_inputs() -> None:
    done = lumu(
        "ts",
        "parse",
        "--tz",
        "Europe/Madrid",
        "2021-07-01 12:00",
        "-",
        stdin=b"2021-07-01T12:00Z\n",
    )
    assert lines(done.stdout) == ["2021-07-01T10:00:00.000Z", "2021-07-01T12:00:00.000Z"]


def test_unknown_zone_and_unit_are_usage_errors() -> None:
    zone = lumu("ts", "parse", "--tz", "Mars/Olympus", "1")
    assert zone.returncode == 2
    assert lines(zone.stderr) == [
        "lumu: unknown time zone 'Mars/Olympus' (expected an IANA name such as Europe/Madrid)"
    ]
    assert lumu("ts", "parse", "--unit", "fortnights", "1").returncode == 2


def test_stdin_given_twice_is_a_usage_error() -> None:
    done = lumu("ts", "parse", "-", "-")
    assert (done.returncode, lines(done.stderr)) == (
        2,
        ["lumu: '-' (stdin) can be given only once"],
    )


def test_no_traceback_unless_lumu_debug() -> None:
    quiet = lumu("ts", "parse", "--tz", "Nowhere/Else", "1")
    loud = lumu("ts", "parse", "--tz", "Nowhere/Else", "1", env={"LUMU_DEBUG": "1"})
    assert b"Traceback" not in quiet.stderr
    assert loud.returncode == quiet.returncode == 2  # the exit code stays
    assert b"Traceback" in loud.stderr
    assert loud.stderr.endswith(quiet.stderr)  # and so does the line


def test_unreadable_stdin_is_one_line_and_exit_1(tmp_path: Path) -> None:
    write_only = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)  # reading it fails: EBADF
    try:
        done = subprocess.run(
            [*LUMU, "ts", "parse", "-"], stdin=write_only, capture_output=True, timeout=60
        )
    finally:
        os.close(write_only)
    assert done.returncode == 1
    assert lines(done.stderr) == ["lumu: cannot read stdin: Bad file descriptor"]


@contextmanager
def streaming() -> Iterator[tuple[subprocess.Popen[bytes], Callable[[bytes], bytes]]]:
    """A running `lumu ts parse -`, and a function that feeds it a line and reads one back."""
    with subprocess.Popen(
        [*LUMU, "ts", "parse", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None
        assert stdout is not None

        def ask(line: bytes) -> bytes:
            stdin.write(line)
            stdin.flush()
            return stdout.readline()

        yield proc, ask


def test_closed_stdout_stops_quietly_like_gnu_tools() -> None:
    with streaming() as (proc, ask):
        assert ask(b"1700000000\n") == b"2023-11-14T22:13:20.000Z\n"
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        try:
            proc.stdin.write(b"1700000000\n" * 2_000_000)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it stopped even before we finished writing
        assert proc.wait(timeout=60) == 141
        assert proc.stderr.read() == b""


def test_stdin_lines_are_answered_as_they_arrive() -> None:
    """`tail -f log | lumu ts parse -` must not wait for a full block or for end of input."""
    with streaming() as (proc, ask):
        for second in range(3):
            assert ask(f"{second}\n".encode()) == f"1970-01-01T00:00:0{second}.000Z\n".encode()
            time.sleep(0.05)
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def test_ctrl_c_exits_130_quietly_after_printing_what_it_had() -> None:
    with streaming() as (proc, ask):
        assert ask(b"1700000000\n") == b"2023-11-14T22:13:20.000Z\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr is not None
        assert proc.stderr.read() == b""


@pytest.mark.parametrize(
    "args", [["--help"], ["ts", "--help"], ["ts", "parse", "--help"]], ids=" ".join
)
def test_every_command_has_help(args: list[str]) -> None:
    done = lumu(*args)
    assert done.returncode == 0
    assert b"Usage:" in done.stdout


def test_help_documents_the_auto_unit_rule_and_exit_codes() -> None:
    wide = {"COLUMNS": "400"}
    parse_help = " ".join(lumu("ts", "parse", "--help", env=wide).stdout.decode().split())
    assert "below 1e11 seconds, below 1e14 milliseconds" in parse_help
    top_help = " ".join(lumu("--help", env=wide).stdout.decode().split())
    assert "0 ok, 1 bad input, 2 usage, 3 broker" in top_help


def test_version() -> None:
    from lumu_cli import __version__

    assert lumu("--version").stdout == f"lumu {__version__}\n".encode()


# ---------------------------------------------------------------- the address serve listens on


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["serve", ":99999"], "lumu: ADDRESS ':99999': port out of range (0-65535)"),
        (["track", "--serve", ":99999"], "lumu: --serve ':99999': port out of range (0-65535)"),
        (
            ["serve", "localhost"],
            "lumu: ADDRESS 'localhost': expected [HOST]:PORT, "
            "e.g. :8000, 127.0.0.1:8000 or [::1]:8000",
        ),
    ],
    ids=" ".join,
)
def test_a_bad_address_names_what_the_user_typed_before_kafka_is_asked(
    args: list[str], given: str
) -> None:
    done = lumu(*args, "-b", "127.0.0.1:1", "--timeout", "1")  # nothing listens on port 1
    assert (done.returncode, lines(done.stderr), done.stdout) == (2, [given], b"")


# ---------------------------------------------------------------- help at 80 columns

COMMANDS = [[], ["produce"], ["track"], ["serve"], ["state"], ["ts", "parse"]]


def help_at_80_columns(command: list[str]) -> str:
    done = lumu(*command, "--help", env={"COLUMNS": "80"})
    assert (done.returncode, done.stderr) == (0, b"")
    return done.stdout.decode()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(["lumu", *c]))
def test_help_at_80_columns_wraps_whole_words_and_sentences_end_once(command: list[str]) -> None:
    text = help_at_80_columns(command)
    lines, in_a_list = [line.rstrip() for line in text.splitlines()], False
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        assert len(line) <= 80, line
        assert not re.search(r"--[\w-]*-$", line), line  # an option's name cut at a hyphen
        in_a_list |= line in ("Arguments:", "Options:", "Commands:")
        indent = len(after) - len(after.lstrip())
        if (
            line.strip()
            and after.strip()
            and indent == len(line) - len(line.lstrip())
            and (indent > 2 or not in_a_list)  # a paragraph, or an entry's help
        ):  # a paragraph's line is not broken well short of the edge
            assert len(line) + 1 + len(after.split()[0]) > 76, (line, after)
    prose = " ".join(text.split())
    assert not re.findall(r"(?<!\.)\.\.(?!\.)|\s\.(?=\s|$)|\[\s*\]", prose)


@pytest.mark.parametrize(
    "command",
    COMMANDS,
    ids=lambda c: " ".join(["lumu", *c]),
)
def test_help_names_what_each_option_takes(command: list[str]) -> None:
    text = help_at_80_columns(command)
    assert not re.findall(r"<(str|int|float|path)\b[^>]*>|\b(TEXT|INTEGER|FLOAT|PATH)\b", text)


@pytest.mark.parametrize("command", ["track", "serve"])
def test_help_shows_the_defaults_that_depend_on_the_machine(command: str) -> None:
    prose = " ".join(help_at_80_columns([command]).split())
    assert "--workers N " in prose
    assert (
        "default: (0; without the native checker, one per core beyond the first, at most 4)"
        in prose
    )
    assert "default: (the -F file's bootstrap.servers, else localhost:9092)" in prose


# ---------------------------------------------------------------- shell completion


def test_help_offers_shell_completion() -> None:
    options = lumu("--help", env={"COLUMNS": "80"}).stdout.decode()
    assert "--install-completion" in options
    assert "--show-completion" in options


def in_bash(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`command` with bash as lumu's parent, the shell Typer detects (`; true`: bash forks)."""
    return subprocess.run(
        ["bash", "-c", f"{command}; true"], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env}, check=True,
    )  # fmt: skip


def test_show_completion_prints_the_script_for_the_shell_it_runs_in() -> None:
    script = in_bash(shlex.join([*LUMU, "--show-completion"])).stdout
    assert "_LUMU_COMPLETE=complete_bash" in script
    assert "complete -o default -F _lumu_completion lumu" in script


def test_install_completion_adds_the_script_to_bashrc(tmp_path: Path) -> None:
    done = in_bash(shlex.join([*LUMU, "--install-completion"]), HOME=str(tmp_path))
    script = tmp_path / ".bash_completions" / "lumu.sh"
    assert "complete -o default -F _lumu_completion lumu" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert done.stdout.startswith(f"bash completion installed in {script}")


@pytest.mark.parametrize(
    ("words", "offered"),
    [("lumu tr", ["track"]), ("lumu track --gr", ["--group"]), ("lumu ts p", ["parse"])],
)
def test_completion_completes_commands_and_options(words: str, offered: list[str]) -> None:
    env = {"_LUMU_COMPLETE": "complete_bash", "COMP_WORDS": words}
    done = lumu(env={**env, "COMP_CWORD": str(len(words.split()) - 1)})
    assert (done.returncode, lines(done.stdout)) == (0, offered)


@pytest.mark.parametrize(("shell", "line"), [("zsh", "#compdef lumu"), ("fish", "--command lumu")])
def test_another_shells_script_is_one_variable_away(shell: str, line: str) -> None:
    done = lumu(env={"_LUMU_COMPLETE": f"source_{shell}"})
    assert done.returncode == 0
    assert line in done.stdout.decode()
