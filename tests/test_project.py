"""The project's promises about itself: layout rules, documented commands, a README that is true."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main

from lumu_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEMO = (ROOT / "scripts" / "demo").read_text()

# Who may import what: lower modules know nothing of the CLI, the terminal or Kafka.
CLI = {"cli/__init__.py", "cli/ts.py", "cli/kafka.py"}  # the command line, a command group each
KAFKA_IO = {  # the Kafka clients, a concern each
    f"kafka_io/{name}.py"
    for name in ("__init__", "admin", "clients", "consume", "produce", "transactions")
}
ALLOWED = {
    "typer": CLI,
    "click": set(),
    "rich": {*CLI, "live.py"},
    "confluent_kafka": KAFKA_IO,
    "numpy": {
        "events.py",
        "native_events.py",
        "snapshots.py",
        "tsstream.py",
        "uniques.py",
        "windows.py",
    },
    "lumu_native": {"native_events.py"},  # the native checker, joined to its definition there
    "pyroaring": {"uniques.py"},
    "msgspec": {"events.py"},
    "javaproperties": {"kafka_io/clients.py"},
    "prometheus_client": {"server.py"},
    "httptools": {"server.py"},
    "uvloop": {"server.py"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_only_the_named_modules_import_each_outside_layer(module: str) -> None:
    package = ROOT / "lumu_cli"
    importers = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if module in imported_roots(p)
    }
    assert importers <= ALLOWED[module]


def test_the_library_api_imports_no_cli_or_array_code() -> None:
    heavy = "('typer', 'rich', 'numpy')"
    code = f"import lumu_cli, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def command_paths() -> list[str]:
    """Every leaf command of the app, as the user types it: `ts parse`, ..."""
    paths = []

    def walk(command: Any, prefix: str) -> None:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            paths.append(prefix)

    walk(typer.main.get_command(app), "")
    return paths


@pytest.mark.parametrize("path", command_paths())
def test_every_command_has_help_and_a_readme_section(path: str) -> None:
    command: Any = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    assert command.help
    assert f"## `lumu {path}`" in README


def readme_examples() -> list[tuple[str, list[str]]]:
    """`$ lumu ...` lines of the README's console blocks without pipes, with the lines after."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        for chunk in block.split("$ ")[1:]:
            command, *output = chunk.rstrip("\n").split("\n")
            if command.startswith("lumu ") and not set("|<>") & set(command):
                examples.append((command, output))
    return examples


@pytest.mark.parametrize(("command", "output"), readme_examples(), ids=lambda x: str(x)[:40])
def test_readme_examples_print_what_the_readme_says(command: str, output: list[str]) -> None:
    args = shlex.split(command)[1:]
    done = subprocess.run(
        [sys.executable, "-m", "lumu_cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.splitlines() + done.stderr.splitlines() == output


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test " in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert [
        line for line in ci.splitlines() if line and not line.startswith(("#", "set", "cd"))
    ] == ["make test"]


def test_readme_python_example_runs_as_commented(capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    namespace: dict[str, Any] = {"datetime": datetime, "UTC": UTC}
    exec(code, namespace)  # our own README
    assert capsys.readouterr().out == "day is out of range for month\n"
    pairs = re.findall(r"^# [^:]*: (.+)\n(.+)$", code, re.M)
    assert len(pairs) == 3
    for expected, call in pairs:
        assert eval(call, namespace) == eval(expected, namespace)


def demo_lines(pattern: str) -> list[str]:
    """The lines of scripts/demo that match `pattern`, apart from comments and narration."""
    return [
        line.strip()
        for line in DEMO.splitlines()
        if re.search(pattern, line) and not line.lstrip().startswith(("#", "note ", "printf "))
    ]


def test_every_command_the_demo_runs_goes_through_run() -> None:
    commands = demo_lines(r"\blumu \w|scripts/kafka-broker (start|stop)")
    assert len(commands) >= 10
    for line in commands:
        assert re.match(r"(\[\[ .* \]\] && )?run (['\"])(lumu|timeout|scripts/kafka-broker) ", line)


def test_the_demo_run_function_prints_the_very_line_it_runs(tmp_path: Path) -> None:
    (run,) = re.findall(r"^run\(\) \{\n.*?^\}\n", DEMO, re.M | re.S)
    line = """printf '%s\\n' 'a b' "$HOME" > out && cat out"""
    done = subprocess.run(
        ["bash", "-c", f"{run}run {shlex.quote(line)}"], cwd=tmp_path, capture_output=True,
        text=True, check=True, env={"HOME": "/home/x", "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert done.stdout == f"\n$ {line}\na b\n/home/x\n"


def test_each_demo_run_counts_its_own_topic_with_its_own_group() -> None:
    # A second `make demo` counts what the first did, instead of the two runs' records together.
    assert re.search(r"^run_id=\$\(date \+%Y%m%d-%H%M%S\)$", DEMO, re.M)
    assert re.search(r"^topic=device-events-demo-\$run_id$", DEMO, re.M)
    assert re.search(r"^group=lumu-demo-\$run_id$", DEMO, re.M)
    assert "LUMU_TOPIC" not in DEMO
    for line in demo_lines(r"\blumu (produce|track)\b"):
        assert " -t $topic " in line
    for line in demo_lines(r"\blumu (track|state)\b"):
        assert re.search(r" -g \$group\b", line)
