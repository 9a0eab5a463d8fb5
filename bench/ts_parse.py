"""Benchmark `lumu ts parse` against GNU date, in one run on this machine.

Prints, for the same 1,000,000-line file of ISO 8601 variants:
  - lines per second of `lumu ts parse - < file` and of GNU `date -u -f - +%Y-%m-%dT%H:%M:%S.%3NZ`,
    their ratio (target >= 3x, issue 10), after checking the two outputs are byte-identical;
  - the start-up median of `lumu ts parse 1700000000` over 10 runs (target <= 150 ms), with its
    bytecode compiled as an install leaves it, beside `date -u -d @1700000000` as the baseline;
  - the peak RSS of `lumu ts parse -` on 1M, 3M and 10M lines (the same file streamed again):
    streaming means it levels off once the blocks are full, a 10M/3M ratio near 1.0.

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


def throughput(path: Path, lines: int, rounds: int) -> None:
    gnu_out, lumu_out = DATA / "gnu.out", DATA / "lumu.out"
    gnu, lumu = [], []
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
        gnu.append(timed(GNU_DATE, path, gnu_out))
        lumu.append(timed([*LUMU, "ts", "parse", "-"], path, lumu_out))
    if gnu_out.read_bytes() != lumu_out.read_bytes():
        sys.exit("FAIL: lumu and GNU date outputs differ (compare bench/.data/*.out)")
    gnu_rate, lumu_rate = lines / statistics.median(gnu), lines / statistics.median(lumu)
    print(f"throughput, {lines:,} ISO 8601 lines, median of {rounds} runs, outputs byte-identical")
    print(f"  GNU date -f      {gnu_rate:>12,.0f} lines/s")
    print(f"  lumu ts parse -  {lumu_rate:>12,.0f} lines/s")
    print(f"  ratio lumu/GNU date: {lumu_rate / gnu_rate:.2f}x (target >= 3x)")


def startup(runs: int = 10) -> None:
    # Bytecode as `pip install` leaves it, or as Python writes on a first run (unless, as on our
    # build machines, PYTHONDONTWRITEBYTECODE=1 makes every run of an editable install compile).
    compileall.compile_dir(Path(lumu_cli.__file__).parent, quiet=1)

    def median_ms(cmd: list[str]) -> float:
        walls = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            walls.append(time.perf_counter() - began)
        return statistics.median(walls) * 1000

    lumu_ms = median_ms([*LUMU, "ts", "parse", "1700000000"])
    date_ms = median_ms(["date", "-u", "-d", "@1700000000", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
    print(f"start-up, median of {runs} runs")
    print(f"  lumu ts parse 1700000000  {lumu_ms:6.1f} ms (target <= 150 ms)")
    print(f"  date -d @1700000000       {date_ms:6.1f} ms (ratio {lumu_ms / date_ms:.1f}x)")


def peak_rss_mb(path: Path, copies: int) -> float:
    """Peak RSS of `lumu ts parse -` fed `copies` times the file through a pipe."""
    with subprocess.Popen(
        [*LUMU, "ts", "parse", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    ) as proc:
        assert proc.stdin is not None
        data = path.read_bytes()
        for _ in range(copies):
            proc.stdin.write(data)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def memory(path: Path, lines: int) -> None:
    peaks = {copies: peak_rss_mb(path, copies) for copies in (1, 3, 10)}
    print("memory, peak RSS of lumu ts parse - (streamed through a pipe)")
    for copies, peak in peaks.items():
        print(f"  {lines * copies:>11,} lines  {peak:6.1f} MB")
    print(f"  ratio {lines * 10:,} to {lines * 3:,} lines: {peaks[10] / peaks[3]:.2f}x (flat: ~1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("date") is None or b"GNU" not in subprocess.check_output(["date", "--version"]):
        sys.exit("FAIL: this benchmark needs GNU date as its baseline")
    DATA.mkdir(exist_ok=True)
    path = DATA / f"stamps-{args.lines}.txt"
    if not path.exists():
        make_file(path, args.lines)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    throughput(path, args.lines, args.rounds)
    print()
    startup()
    print()
    memory(path, args.lines)


if __name__ == "__main__":
    main()
