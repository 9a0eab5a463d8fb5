"""Benchmark `lumu ts parse` against GNU date, in one run on this machine.

Prints, for the same 1,000,000-line file of ISO 8601 variants, lumu's bytecode compiled as an
install leaves it, each side a whole process (start-up included), run in turn:
  - the headline: lines per second of `lumu ts parse - < file` and of GNU
    `date -u -f - +%Y-%m-%dT%H:%M:%S.%3NZ`, and the ratio against GNU date (target >= 3x,
    issue 10). The two outputs must be byte-identical, one line for each line of the file;
  - the start-up median of `lumu ts parse 1700000000` over 10 runs (target <= 150 ms), beside
    `date -u -d @1700000000` as the baseline; the two must print the same;
  - the peak RSS of `lumu ts parse -` on 1M, 3M and 10M lines (the same file streamed again):
    streaming means it levels off once the blocks are full, a 10M/3M ratio near 1.0. Its output
    is counted (`wc -l`): one line for each line fed.
A check that does not hold prints FAIL and exits 1. The README rows come last.

Usage: python bench/ts_parse.py [--lines N] [--rounds R]
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from figures import check, ratio, readme

import lumu_cli

DATA = Path(__file__).parent / ".data"
LUMU = [str(Path(sys.executable).with_name("lumu"))]
GNU_DATE = ["date", "-u", "-f", "-", "+%Y-%m-%dT%H:%M:%S.%3NZ"]
ZONES = ["Z", "", "+00:00", "+05:30", "-08:00", "-0300"]


def make_file(path: Path, count: int, seed: int = 20211203) -> None:
    """`count` ISO 8601 lines: six zone forms, with and without milliseconds, T or space."""
    rng = random.Random(seed)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    with path.open("w") as out:
        for _ in range(count):
            instant = start + timedelta(milliseconds=rng.randrange(30 * 365 * 86_400_000))
            text = instant.strftime("%Y-%m-%d") + rng.choice("T ") + instant.strftime("%H:%M:%S")
            if rng.random() < 0.5:
                text += f".{instant.microsecond // 1000:03d}"
            out.write(text + rng.choice(ZONES) + "\n")


def timed(cmd: list[str], stdin: Path, stdout: Path) -> float:
    with stdin.open("rb") as src, stdout.open("wb") as dst:
        began = time.perf_counter()
        subprocess.run(cmd, stdin=src, stdout=dst, check=True, env={**os.environ, "TZ": "UTC"})
        return time.perf_counter() - began


def throughput(path: Path, lines: int, rounds: int) -> list[str]:
    gnu_out, lumu_out = DATA / "gnu.out", DATA / "lumu.out"
    gnu, lumu = [], []
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
        gnu.append(timed(GNU_DATE, path, gnu_out))
        lumu.append(timed([*LUMU, "ts", "parse", "-"], path, lumu_out))
    same = gnu_out.read_bytes() == lumu_out.read_bytes()
    check(same, "lumu and GNU date outputs differ (compare bench/.data/*.out)")
    answered = lumu_out.read_bytes().count(b"\n")
    check(answered == lines, f"lumu answered {answered:,} lines of {lines:,}")
    gnu_rate, lumu_rate = lines / statistics.median(gnu), lines / statistics.median(lumu)
    print(f"throughput, {lines:,} ISO 8601 lines, median of {rounds} runs, outputs byte-identical")
    print(f"  lumu ts parse -  {lumu_rate:>12,.0f} lines/s")
    print(f"  GNU date -f      {gnu_rate:>12,.0f} lines/s")
    print(f"  lumu {ratio(lumu_rate, gnu_rate, 'GNU date -f', 'headline; target >= 3x')}")
    verdict = "met" if lumu_rate / gnu_rate >= 3 else "not met"
    return [
        f"`ts_parse.py`: {lines / 1e6:g}M ISO 8601 lines, outputs byte-identical",
        f"{lumu_rate / 1e6:.2f}M lines/s",
        f"GNU `date -u -f -`: {gnu_rate / 1e6:.2f}M lines/s",
        f"{lumu_rate / gnu_rate:.2f}x (target 3x: {verdict})",
    ]


def startup(runs: int = 10) -> list[str]:
    def median_ms(cmd: list[str]) -> float:
        walls = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            walls.append(time.perf_counter() - began)
        return statistics.median(walls) * 1000

    lumu_cmd = [*LUMU, "ts", "parse", "1700000000"]
    date_cmd = ["date", "-u", "-d", "@1700000000", "+%Y-%m-%dT%H:%M:%S.%3NZ"]
    said = [
        subprocess.run(cmd, capture_output=True, check=True).stdout for cmd in (lumu_cmd, date_cmd)
    ]
    check(said[0] == said[1], f"lumu printed {said[0]!r}, date {said[1]!r}")
    lumu_ms, date_ms = median_ms(lumu_cmd), median_ms(date_cmd)
    verdict = "met" if lumu_ms <= 150 else "not met"
    print(f"start-up, median of {runs} runs, both printing {said[0].decode().strip()}")
    print(f"  lumu ts parse 1700000000  {lumu_ms:6.1f} ms (target <= 150 ms: {verdict})")
    print(f"  date -d @1700000000       {date_ms:6.1f} ms")
    print(f"  lumu {ratio(lumu_ms, date_ms, 'date -d @1700000000', 'time taken')}")
    return [
        "`ts_parse.py`: start-up of `lumu ts parse 1700000000`",
        f"{lumu_ms:.1f} ms",
        f"`date -u -d @1700000000`: {date_ms:.1f} ms",
        f"{lumu_ms / date_ms:.1f}x the time (target: at most 150 ms: {verdict})",
    ]


def peak_rss_mb(path: Path, copies: int, lines: int) -> float:
    """Peak RSS of `lumu ts parse -` fed `copies` times the file through a pipe; its output
    lines are counted by `wc -l` and must be one for each line fed."""
    with (
        subprocess.Popen(
            [*LUMU, "ts", "parse", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as proc,
        subprocess.Popen(["wc", "-l"], stdin=proc.stdout, stdout=subprocess.PIPE) as counter,
    ):
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdout.close()  # wc holds it now
        data = path.read_bytes()
        for _ in range(copies):
            proc.stdin.write(data)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        counted = int(counter.communicate(timeout=60)[0])
    check(proc.returncode == 0, f"lumu ts parse - exited {proc.returncode}")
    check(counted == lines * copies, f"lumu answered {counted:,} of {lines * copies:,} lines")
    return usage.ru_maxrss / 1024


def memory(path: Path, lines: int) -> list[str]:
    peaks = {copies: peak_rss_mb(path, copies, lines) for copies in (1, 3, 10)}
    print("memory, peak RSS of lumu ts parse - (streamed through a pipe), every line answered")
    for copies, peak in peaks.items():
        print(f"  {lines * copies:>11,} lines  {peak:6.1f} MB")
    ten, three = f"{lines * 10:,} lines", f"{lines * 3:,} lines"
    print(f"  {ten}: {ratio(peaks[10], peaks[3], three, 'flat: ~1')}")
    return [
        f"`ts_parse.py`: peak RSS of `lumu ts parse -` on {ten}",
        f"{peaks[10]:.1f} MB",
        f"the same on {three}: {peaks[3]:.1f} MB",
        f"{peaks[10] / peaks[3]:.2f}x (flat: ~1)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gnu = shutil.which("date") is not None and b"GNU" in subprocess.check_output(
        ["date", "--version"]
    )
    check(gnu, "this benchmark needs GNU date as its baseline")
    DATA.mkdir(exist_ok=True)
    path = DATA / f"stamps-{args.lines}.txt"
    if not path.exists():
        make_file(path, args.lines)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    # Bytecode as `pip install` leaves it, or as Python writes on a first run (unless, as on our
    # build machines, PYTHONDONTWRITEBYTECODE=1 makes every run of an editable install compile).
    compileall.compile_dir(Path(lumu_cli.__file__).parent, quiet=1)
    rows = [throughput(path, args.lines, args.rounds)]
    print()
    rows.append(startup())
    print()
    rows.append(memory(path, args.lines))
    readme(*rows)


if __name__ == "__main__":
    main()
