"""Benchmark what shell completion costs `lumu` at start-up; no broker needed.

Typer's completion adds --install-completion and --show-completion to the top command each time
the app is built, that is on every run. Against a baseline in the same run, the same app built
without them:

  (on)  the app as shipped, completion on;
  (off) the same app with Typer's `_add_completion` set False before it is called;
  (p)   `python -c pass`, the interpreter alone, for scale.

Each is a fresh process, `python -c` with the same code apart from that one attribute, so
the two differ only in completion. The rounds alternate on and off, so drift in the machine's
load falls on both alike. For `lumu ts parse 1700000000` and `lumu --help`: medians of
BENCH_ROUNDS (21) runs each of the wall time and of the CPU time (user + system, steadier on
a loaded machine), and the difference; then, in this process, the median time to build the
command from the app with and without it, the one step that differs. The target: at most
10 ms more with it on.

Checks (FAIL and exit 1 when one does not hold): the two apps print the same answer to
`lumu ts parse 1700000000`, and the same help, but for the completion options that only the
app with completion on offers. The README row comes last.

Usage: python bench/cli_startup.py   (env: BENCH_ROUNDS)
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import check, ratio, readme

import lumu_cli

CALL = "from lumu_cli.cli import app; {setup}app(prog_name='lumu')"
APPS = {
    "on": [sys.executable, "-c", CALL.format(setup="")],
    "off": [sys.executable, "-c", CALL.format(setup="app._add_completion = False; ")],
}
COMMANDS = {
    "lumu ts parse 1700000000": ["ts", "parse", "1700000000"],
    "lumu --help": ["--help"],
}
TARGET_MS = 10.0


def run_ms(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run of `cmd`."""
    began = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = (time.perf_counter() - began) * 1000
    check(proc.returncode == 0, f"{cmd} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def build_ms(add_completion: bool, rounds: int = 200) -> float:
    """Median milliseconds to build the Click command from the app, in this process: the only
    work that differs between on and off."""
    import typer.main

    from lumu_cli.cli import app

    app._add_completion = add_completion
    walls = []
    for _ in range(rounds):
        began = time.perf_counter()
        typer.main.get_command(app)
        walls.append((time.perf_counter() - began) * 1000)
    app._add_completion = True
    return statistics.median(walls)


def check_the_outputs() -> None:
    """The two apps differ as meant: the same answers, and only `on` offers completion."""
    for label, args in COMMANDS.items():
        on, off = (
            subprocess.run([*APPS[name], *args], capture_output=True, text=True, check=True).stdout
            for name in ("on", "off")
        )
        if args != ["--help"]:
            check(on == off, f"{label}: the app prints {on!r} with completion, {off!r} without")
            continue
        # off's lines, in order, among on's (spaces collapsed: the option column is narrower)
        rest = iter(" ".join(line.split()) for line in on.splitlines())
        within = all(" ".join(line.split()) in rest for line in off.splitlines())
        offered = ("--show-completion" in on, "--show-completion" in off)
        check(
            within and offered == (True, False),
            f"{label}: the help without completion is not the help with it, less its options",
        )


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "21"))
    # Bytecode as `pip install` leaves it (see bench/ts_parse.py).
    compileall.compile_dir(Path(lumu_cli.__file__).parent, quiet=1)
    check_the_outputs()
    python_ms = statistics.median(run_ms([sys.executable, "-c", "pass"])[0] for _ in range(rounds))
    print(f"start-up with shell completion on and off, medians of {rounds} runs each")
    print(f"  (p) python -c pass: {python_ms:.1f} ms wall")
    walls: dict[str, tuple[float, float]] = {}
    for label, args in COMMANDS.items():
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in APPS}
        for _ in range(rounds):
            for name, app in APPS.items():
                runs[name].append(run_ms([*app, *args]))
        for i, kind in enumerate(("wall", "CPU")):
            on, off = (statistics.median(run[i] for run in runs[name]) for name in ("on", "off"))
            verdict = "met" if on - off <= TARGET_MS else "not met"
            walls.setdefault(label, (on, off))
            print(f"  {label:<26} {kind:<4} on {on:6.1f} ms, off {off:6.1f} ms: ", end="")
            print(f"{on - off:+5.1f} ms (target <= +{TARGET_MS:g} ms: {verdict}); ", end="")
            print(ratio(on, off, "completion off", digits=3))
    on, off = build_ms(True), build_ms(False)
    print(f"  building the command in-process     on {on:6.2f} ms, off {off:6.2f} ms: ", end="")
    print(f"{on - off:+6.2f} ms (median of 200)")
    (ts_on, ts_off), (help_on, help_off) = walls.values()
    worst = max(ts_on - ts_off, help_on - help_off)
    verdict = "met" if worst <= TARGET_MS else "not met"
    readme(
        [f"`cli_startup.py`: start-up of `lumu ts parse 1700000000` and of `lumu --help` with "
         f"shell completion on, wall, medians of {rounds} runs alternating with the baseline",
         f"{ts_on:.1f} ms and {help_on:.1f} ms",
         f"the same app with completion off: {ts_off:.1f} ms and {help_off:.1f} ms",
         f"{ts_on - ts_off:+.1f} ms and {help_on - help_off:+.1f} ms (building the command "
         f"in-process: {on - off:+.2f} ms) (target: at most +{TARGET_MS:g} ms: {verdict})"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
