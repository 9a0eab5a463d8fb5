"""Benchmark `lumu ts parse` on every accepted form against dateutil.parser.parse, in one run.

Makes a 1,000,000-line file with every form lumu reads in equal shares (FORMS below: ISO 8601
shapes, RFC 9557, epoch numbers, @EPOCH, RFC 5322 with and without comments, cookies, ctime,
Go, JavaScript, Common Log Format, BIND, Cisco ASA/CEF, PAN-OS, GeneralizedTime, RFC 3164 and
klog), random instants from 1990 to 2030 (the yearless forms: in YEAR, passed as --year).

- lumu: `lumu ts parse --year YEAR - < file`, wall time, process start-up included; every
  line must be accepted.
- the baseline: `dateutil.parser.parse(line, default=datetime(YEAR, 1, 1))`, in this process,
  on every line, or a random sample of BENCH_DATEUTIL_LINES (it takes 30-80 us a line). Its
  answers are normalized as lumu's are (naive is UTC, truncated to the millisecond).

On the lines both accept, lumu is timed again on exactly those lines, the ratio is
dateutil's time / lumu's (the headline; lumu's side carries its process start-up, dateutil's
none), and the outputs are compared line by line; each form's share of accepted lines and of
differing answers is printed. Target (issue 10): at least 20x, identical output on those lines.
The pure ISO stream against GNU date is bench/ts_parse.py's.

Checks (FAIL and exit 1 when one does not hold): lumu answers every line of both files, with no
error; the answers differ only on forms named in KNOWN_DIFFERENCES, each with its reason.

Usage: python bench/ts_forms.py [--lines N]   (env: BENCH_DATEUTIL_LINES)
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from figures import check, ratio, readme

import lumu_cli

DATA = Path(__file__).parent / ".data"
LUMU = [str(Path(sys.executable).with_name("lumu"))]
YEAR = 2021
PARIS = ZoneInfo("Europe/Paris")


def _hhmm(t: datetime, colon: bool = False) -> str:
    offset = t.utcoffset() or timedelta()
    minutes = int(offset.total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    return f"{'-' if minutes < 0 else '+'}{hours:02d}{':' if colon else ''}{rest:02d}"


def _ms(t: datetime) -> str:
    return f"{t.microsecond // 1000:03d}"


# name -> render(an aware instant in some zone): the text that form writes
FORMS: dict[str, Callable[[datetime], str]] = {
    "ISO 8601 Z": lambda t: f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{_ms(t)}Z",
    "ISO 8601 offset": lambda t: t.isoformat(timespec="milliseconds"),
    "RFC 9557": lambda t: t.astimezone(PARIS).isoformat(timespec="milliseconds") + "[Europe/Paris]",
    "ISO, space, offset": lambda t: f"{t:%Y-%m-%d %H:%M:%S} {_hhmm(t, colon=True)}",
    "ISO GMT": lambda t: f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} GMT",
    "epoch s": lambda t: str(int(t.timestamp())),
    "epoch ms": lambda t: str(int(t.timestamp() * 1000)),
    "@epoch": lambda t: f"@{int(t.timestamp())}",
    "RFC 5322": lambda t: f"{t:%a, %d %b %Y %H:%M:%S} {_hhmm(t)}",
    "RFC 5322 comment": lambda t: f"{t:%a, %d %b %Y %H:%M:%S} {_hhmm(t)} (local)",
    "cookie": lambda t: f"{t.astimezone(UTC):%a, %d-%b-%Y %H:%M:%S} GMT",
    "ctime": lambda t: (
        f"{t.astimezone(UTC):%a %b} {t.astimezone(UTC).day:2d} {t.astimezone(UTC):%H:%M:%S %Y}"
    ),
    "Go": lambda t: f"{t:%Y-%m-%d %H:%M:%S}.{t:%f} {_hhmm(t)} XST",
    "JavaScript": lambda t: f"{t:%a %b %d %Y %H:%M:%S} GMT{_hhmm(t)} (Local Time)",
    "Common Log Format": lambda t: f"{t:%d/%b/%Y:%H:%M:%S} {_hhmm(t)}",
    "BIND": lambda t: f"{t.astimezone(UTC):%d-%b-%Y %H:%M:%S}.{_ms(t)}",
    "Cisco ASA": lambda t: f"{t.astimezone(UTC):%b %d %Y %H:%M:%S}",
    "PAN-OS": lambda t: f"{t.astimezone(UTC):%Y/%m/%d %H:%M:%S}",
    "GeneralizedTime": lambda t: f"{t.astimezone(UTC):%Y%m%d%H%M%S}.{_ms(t)}Z",
    "RFC 3164 (--year)": lambda t: (
        f"{t.astimezone(UTC):%b} {t.astimezone(UTC).day:2d} {t.astimezone(UTC):%H:%M:%S}"
    ),
    "klog (--year)": lambda t: f"I{t.astimezone(UTC):%m%d %H:%M:%S.%f}",
}
YEARLESS = {"RFC 3164 (--year)", "klog (--year)"}
# form -> why dateutil answers otherwise on some of its lines; any other difference fails
KNOWN_DIFFERENCES = {
    "epoch ms": "dateutil reads the digits of epoch milliseconds as a date and time",
}


def make_file(path: Path, count: int, seed: int = 20211203) -> list[str]:
    """`count` lines, FORMS in turn; the form of each line."""
    rng = random.Random(seed)
    names = list(FORMS)
    kinds = []
    with path.open("w") as out:
        for i in range(count):
            name = names[i % len(names)]
            if name in YEARLESS:
                start, span = datetime(YEAR, 1, 1, tzinfo=UTC), 365 * 86_400_000 - 86_400_000
            else:
                start, span = datetime(1990, 1, 1, tzinfo=UTC), 40 * 365 * 86_400_000
            instant = start + timedelta(milliseconds=rng.randrange(span), microseconds=123)
            zone = timezone(timedelta(minutes=15 * rng.randrange(-48, 57)))
            out.write(FORMS[name](instant.astimezone(zone)) + "\n")
            kinds.append(name)
    return kinds


def lumu_run(path: Path) -> tuple[float, list[str], int]:
    """Wall seconds, output lines, error lines of `lumu ts parse --year YEAR -`."""
    with path.open("rb") as src:
        began = time.perf_counter()
        done = subprocess.run(
            [*LUMU, "ts", "parse", "--year", str(YEAR), "-"],
            stdin=src,
            capture_output=True,
            env={**os.environ, "TZ": "UTC"},
        )
        wall = time.perf_counter() - began
    return wall, done.stdout.decode().splitlines(), len(done.stderr.splitlines())


def dateutil_answer(parse: Callable[..., datetime], line: str) -> str | None:
    default = datetime(YEAR, 1, 1)
    try:
        found = parse(line, default=default)
    except (ValueError, OverflowError):
        return None
    found = found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)
    return found.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    sample_size = int(os.environ.get("BENCH_DATEUTIL_LINES", "0")) or args.lines
    from dateutil.parser import parse

    # lumu's bytecode as an install leaves it (see bench/ts_parse.py): its start-up is timed
    compileall.compile_dir(Path(lumu_cli.__file__).parent, quiet=1)
    DATA.mkdir(exist_ok=True)
    mixed = DATA / "forms.txt"
    kinds = make_file(mixed, args.lines)
    lines = mixed.read_text().splitlines()
    print(f"{args.lines:,} lines, {len(FORMS)} forms in equal shares, {os.cpu_count()} cores")

    wall, out, errors = lumu_run(mixed)
    print(f"lumu ts parse --year {YEAR} -: {wall:.2f} s, {args.lines / wall:,.0f} lines/s, "
          f"{len(out):,} answers, {errors} errors")  # fmt: skip
    check(
        not errors and len(out) == args.lines,
        f"lumu answered {len(out):,} of {args.lines:,} lines, {errors:,} errors",
    )

    sample = sorted(random.Random(7).sample(range(len(lines)), min(sample_size, len(lines))))
    theirs = {i: dateutil_answer(parse, lines[i]) for i in sample}
    both = [i for i in sample if theirs[i] is not None]
    subset = DATA / "forms-both.txt"
    subset.write_text("".join(lines[i] + "\n" for i in both))
    began = time.perf_counter()
    for i in both:
        parse(lines[i], default=datetime(YEAR, 1, 1))
    dateutil_s = time.perf_counter() - began
    lumu_s, lumu_out, subset_errors = lumu_run(subset)
    check(
        not subset_errors and len(lumu_out) == len(both),
        f"lumu answered {len(lumu_out):,} of the {len(both):,} lines dateutil accepts, "
        f"{subset_errors:,} errors",
    )
    differ = Counter(kinds[i] for i, mine in zip(both, lumu_out, strict=True) if mine != theirs[i])
    unknown = sorted(set(differ) - set(KNOWN_DIFFERENCES))
    check(not unknown, f"lumu and dateutil answer differently on forms {unknown}")
    accepted = Counter(kinds[i] for i in both)
    lumu_rate, dateutil_rate = len(both) / lumu_s, len(both) / dateutil_s
    print(f"\ndateutil.parser.parse on {len(sample):,} lines: accepts "
          f"{len(both):,}; on those, {dateutil_rate:,.0f} lines/s (in this process)")  # fmt: skip
    print(f"lumu on the same {len(both):,} lines: {lumu_rate:,.0f} lines/s "
          f"(one process, start-up included)")  # fmt: skip
    headline = "headline; target 20x"
    print(f"lumu {ratio(lumu_rate, dateutil_rate, 'dateutil.parser.parse', headline, 1)}")
    print(f"answers that differ on lines both accept: {sum(differ.values()):,}, only on forms "
          f"known to differ:")  # fmt: skip
    for name, why in KNOWN_DIFFERENCES.items():
        print(f"  {name}: {differ[name]:,} ({why})")
    print("\nper form: sample lines dateutil accepts / differing answers")
    per_form = Counter(kinds[i] for i in sample)
    for name in FORMS:
        print(
            f"  {name:<22} {accepted[name]:>6,} of {per_form[name]:>6,}  differ {differ[name]:>6,}"
        )
    met = "met" if lumu_rate / dateutil_rate >= 20 else "not met"
    reasons = "; ".join(f"{name}: {why}" for name, why in KNOWN_DIFFERENCES.items())
    readme(
        [f"`ts_forms.py`: {args.lines:,} lines, {len(FORMS)} forms in equal shares (every "
         f"accepted form), `--year {YEAR}`", f"{args.lines / wall / 1000:,.0f}k lines/s, every "
         "line accepted", "", ""],
        [f"`ts_forms.py`: the {len(both):,} of those lines that `dateutil.parser.parse` accepts "
         "too", f"{lumu_rate / 1e6:.2f}M lines/s, one process, start-up included",
         f"`dateutil.parser.parse`, in-process: {dateutil_rate / 1000:,.1f}k lines/s",
         f"{lumu_rate / dateutil_rate:.1f}x (target 20x: {met}). Identical answers on all but "
         f"{sum(differ.values()):,} lines ({reasons})"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
