"""Benchmark `lumu track --window`: exact unique IPs per tumbling window of event time.

Each figure is printed with a ratio against a named baseline measured in the same run:

1. Speed. --records (1,000,000) valid records, written once by a confluent_kafka Producer into a
   fresh topic of 3 partitions (round robin), each of one of 100,000 distinct random IPv4
   addresses (numpy, seeded), its timestamp an ISO 8601 string, spread evenly over the last 72
   hours. Then `lumu track -e --from-beginning --no-state` (the state's cost is figure 3) in a
   fresh group per run, whole processes, --rounds (BENCH_ROUNDS, 3) rounds, order rotated:
   with `--window 1h --window 1d`, and without (the baseline). Medians of records/s of the whole
   process (wall) and of its reading (elapsed - first_record_at); the ratios (target >= 0.8x, on
   wall). Checks: every run counts every record and the distinct addresses sent; with windows,
   for each size late + future + its windows' messages == the valid records and future == 0,
   and 1d has late == 0 (1h keeps 48: records older than ~47 hours are late for it).
2. Memory. 48 hourly windows of 100,000 distinct random IPv4 addresses each (seeded, drawn
   afresh each hour), built here by WindowSets.add (batches of 10,000), against the all-time
   set alone (one UniqueIPs of their union): UniqueIPs.memory_bytes() (the containers' data,
   not their headers) summed over the windows, and the ratio; also each one's RSS growth (after
   gc and malloc_trim, as bench/memory.py). Also shown: the same 100,000 addresses every hour
   (devices seen all day), where the all-time set stays at 100,000.
3. Commit cost. Here, a Tally with windows 1h and 1d counting partition 0 (take(0, 0)), its clock
   fixed: --intervals (50) times, 10,000 records (JSON values of the same 100,000 addresses,
   timestamps in the current hour) counted by Tally.count as track does, then one commit's
   records: Tally.changes("t", [0], now) + Tally.written([0], now), no broker. The baseline: a
   Tally without windows fed the same values, the order alternating. Medians of records and
   bytes per commit and of the time changes() takes.

The README rows come last. Checks (FAIL and exit 1 when one does not hold) are named above.

Usage: python bench/windows.py [--records N] [--rounds N] [--intervals N] [--port N (29192)]
   (env: BENCH_ROUNDS, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime
from typing import Any

import kafka_bench as kb
import numpy as np
import numpy.typing as npt
from confluent_kafka import Producer
from figures import check, ratio, readme
from memory import _settle
from state import distinct_v4

from lumu_cli.snapshots import Tally
from lumu_cli.timestamps import format_timestamp
from lumu_cli.uniques import UniqueIPs
from lumu_cli.windows import Window, WindowSets, parse_windows, wall_clock_ms

HOUR = 3_600_000
SPAN = 72 * HOUR  # the event times of figure 1
DEVICES = 100_000  # distinct addresses, each figure
PARTITIONS = 3
BATCH = 10_000  # records added at once (2), records between commits (3)
SEED = 20211203
TIMEOUT = 600.0  # writing the records; one lumu track run
WINDOWS = ("1h", "1d")
LUMU = (sys.executable, "-m", "lumu_cli")  # the lumu on this interpreter's path
TARGET = "headline; target >= 0.8x"

Row = list[str]  # a README table row: script, lumu, baseline, ratio


def values(addresses: npt.NDArray[np.uint32], millis: npt.NDArray[np.int64]) -> list[bytes]:
    """Valid device events: each address with its event time as an ISO 8601 string."""
    stamps = np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms").tolist()
    text = [f"{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}" for x in addresses.tolist()]
    return [b'{"timestamp": "%sZ", "device_ip": "%s", "error_code": 3}' % (s.encode(), ip.encode())
            for s, ip in zip(stamps, text, strict=True)]  # fmt: skip


# ---------------------------------------------------------------- 1. speed


def write(bootstrap: str, topic: str, records: list[bytes]) -> float:
    """Write `records` round robin over the topic's partitions; records/s."""
    kb.create_topic(bootstrap, topic, PARTITIONS)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    began, deadline = time.perf_counter(), time.monotonic() + TIMEOUT
    for i, value in enumerate(records):
        while time.monotonic() < deadline:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:  # the queue is full: let it drain
                producer.poll(0.05)
    left = producer.flush(max(deadline - time.monotonic(), 1.0))
    rate = len(records) / (time.perf_counter() - began)
    total = sum(kb.end_offsets(bootstrap, topic).values())
    check(left == 0 and total == len(records), f"{total:,} of {len(records):,} records written")
    return rate


def check_run(name: str, summary: dict[str, Any], records: int, distinct: int) -> None:
    """A track run counted every record and address; its windows hold every valid record."""
    valid = records - sum(summary["invalid_by_reason"].values())
    for what, got, sent in (("messages", summary["messages"], records), ("valid", valid, records),
                            ("unique_ips", summary["unique_ips"], distinct)):  # fmt: skip
        check(got == sent, f"{name}: {what} {got:,}, sent {sent:,}")
    sizes = summary.get("windows", {})
    check(sorted(sizes) == sorted(WINDOWS if name == "windows" else ()), f"{name}: {sizes}")
    for size, sets in sizes.items():
        inside = sum(c["messages"] for c in sets["counts"])
        check(sets["late"] + sets["future"] + inside == valid and sets["future"] == 0,
              f"{name} {size}: late {sets['late']:,} + future {sets['future']:,} (expected 0) "
              f"+ in windows {inside:,} != {valid:,} valid records")  # fmt: skip
    late = sizes.get("1d", {}).get("late", 0)
    check(late == 0, f"{name}: 1d counts {late:,} late records, none expected")


def speed(bootstrap: str, count: int, rounds: int) -> Row:
    """Figure 1; its README row."""
    chosen = distinct_v4(DEVICES, SEED)[np.random.default_rng(SEED).integers(0, DEVICES, count)]
    distinct = len(np.unique(chosen))
    millis = wall_clock_ms() - SPAN + np.arange(count, dtype=np.int64) * SPAN // count
    topic = kb.fresh_name("bench-windows")
    rate = write(bootstrap, topic, values(chosen, millis))
    print(f"  {count:,} records ({distinct:,} distinct IPv4, event times over the last 72 h) "
          f"into {topic}, {PARTITIONS} partitions ({rate:,.0f} records/s)", flush=True)  # fmt: skip
    flags = {"windows": [f"--window={w}" for w in WINDOWS], "none": []}
    runs: dict[str, list[kb.Run]] = {name: [] for name in flags}
    for r, order in kb.rotations(list(flags), rounds):
        for name in order:
            args = ["track", "-e", "--from-beginning", "--no-state", "-t", topic, "-b",
                    bootstrap, "-g", kb.fresh_name("bench-windows"), *flags[name]]  # fmt: skip
            run = kb.lumu(args, timeout=TIMEOUT, prefix=LUMU)
            check_run(name, run.summary, count, distinct)
            runs[name].append(run)
        walls = ", ".join(f"{n} {runs[n][-1].wall:.2f} s" for n in order)
        print(f"    round {r + 1}/{rounds} ({' '.join(order)}): {walls}", flush=True)
    kb.delete_topics(bootstrap, [topic])

    wall = {n: count / kb.median([r.wall for r in rs]) for n, rs in runs.items()}
    read = {n: count / kb.median([float(r.summary["elapsed"]) - float(r.summary["first_record_at"])
                                  for r in rs]) for n, rs in runs.items()}  # fmt: skip
    late = runs["windows"][-1].summary["windows"]["1h"]["late"]
    print(
        f"  lumu track -e --from-beginning --no-state, median of {rounds} (every run: "
        f"{distinct:,} unique IPs, {count:,} messages; with windows 1h late {late:,}, 1d late 0):\n"
        f"    wall, the whole process:  --window 1h --window 1d: {wall['windows']:9,.0f} "
        f"records/s   none: {wall['none']:9,.0f} records/s\n"
        f"    reading (elapsed - first_record_at): with windows: {read['windows']:9,.0f} "
        f"records/s   none: {read['none']:9,.0f} records/s\n"
        f"    wall: {ratio(wall['windows'], wall['none'], 'no windows', TARGET)}\n"
        f"    reading: {ratio(read['windows'], read['none'], 'no windows')}",
        flush=True,
    )
    return [
        f"`windows.py`: `track -e --window 1h --window 1d`, {count / 1e6:g}M records over 72 h, "
        "whole processes, wall",
        f"{wall['windows'] / 1000:,.0f}k records/s (reading {read['windows'] / 1000:,.0f}k)",
        f"no `--window`: {wall['none'] / 1000:,.0f}k records/s "
        f"(reading {read['none'] / 1000:,.0f}k)",
        f"{wall['windows'] / wall['none']:.2f}x (target 0.8x)",
    ]


# ---------------------------------------------------------------- 2. memory


def memory(same: bool) -> Row:
    """Figure 2: 48 hourly windows against the all-time set; `same`: the same IPs each hour."""
    window, now, rng = Window(HOUR, 48), wall_clock_ms(), np.random.default_rng(SEED)
    hours = [distinct_v4(DEVICES, SEED if same else SEED + h) for h in range(window.keep)]
    sets, alltime, rss = WindowSets(window), UniqueIPs(), [_settle()]
    for h, v4 in enumerate(hours):
        millis = window.start(now) - h * HOUR + rng.integers(0, HOUR, DEVICES)
        for at in range(0, DEVICES, BATCH):
            sets.add(now, millis[at : at + BATCH], v4[at : at + BATCH])
    rss.append(_settle())
    for v4 in hours:
        alltime.add_v4(v4)
    rss.append(_settle())
    counts = sets.counts.values()
    check(len(counts) == window.keep and all(len(c.ips) == c.messages == DEVICES for c in counts),
          f"{len(counts)} windows, not {window.keep} of {DEVICES:,} addresses each")  # fmt: skip
    check(len(UniqueIPs.union([c.ips for c in counts])) == len(alltime),
          "the windows' union is not the all-time set")  # fmt: skip
    held, one = sum(c.ips.memory_bytes() for c in counts), alltime.memory_bytes()
    grown = [(after - before) / 1024 for before, after in itertools.pairwise(rss)]  # MB
    what = "the same 100,000 every hour" if same else "drawn afresh each hour"
    print(f"  48 windows of 1h, {DEVICES:,} IPv4 each ({what}): {held / 2**20:7.1f} MB   "
          f"all-time set alone ({len(alltime):,} IPv4): {one / 2**20:6.1f} MB\n"
          f"    {ratio(held, one, 'the all-time set', 'headline' if not same else '')}\n"
          f"    RSS growth (container headers too): windows +{grown[0]:.1f} MB, all-time set "
          f"+{grown[1]:.1f} MB; {ratio(grown[0], grown[1], 'the all-time set')}",
          flush=True)  # fmt: skip
    return [
        f"`windows.py`: 48 windows of 1h, 100,000 IPv4 each ({what}), `memory_bytes()`",
        f"{held / 2**20:.1f} MB (RSS +{grown[0]:.1f} MB)",
        f"the all-time set of their {len(alltime):,}: {one / 2**20:.1f} MB (RSS +{grown[1]:.1f})",
        f"{held / one:.1f}x (RSS {grown[0] / grown[1]:.1f}x)",
    ]


# ---------------------------------------------------------------- 3. commit cost


def commits(intervals: int) -> Row:
    """Figure 3: one state commit's records every BATCH records, windows on and off."""
    now_ms, rng, pool = wall_clock_ms(), np.random.default_rng(SEED + 1), distinct_v4(DEVICES, SEED)
    hour = Window(HOUR).start(now_ms)
    batches = [
        values(pool[rng.integers(0, DEVICES, BATCH)], hour + rng.integers(0, HOUR, BATCH))
        for _ in range(intervals)
    ]
    tallies = {"windows": Tally(parse_windows(WINDOWS), clock=lambda: now_ms), "none": Tally()}
    for tally in tallies.values():
        tally.take(0, 0)
    made: dict[str, list[tuple[int, int, float]]] = {name: [] for name in tallies}
    for i, batch in enumerate(batches):
        for name in list(tallies)[:: 1 if i % 2 else -1]:
            tally = tallies[name]
            start = tally.next_offset(0)
            tally.count(0, range(start, start + len(batch)), batch)
            now = format_timestamp(datetime.now(UTC))
            began = time.perf_counter()
            records = tally.changes("t", [0], now)
            seconds = time.perf_counter() - began
            tally.written([0], now)
            made[name].append(
                (len(records), sum(len(k) + len(v or b"") for k, v in records), seconds)
            )
    windowed, plain = tallies["windows"], tallies["none"]
    counted = [windowed.window_sets(w).counts[w.start(now_ms)] for w in windowed.windows]
    total = intervals * BATCH
    check(plain.messages == windowed.messages == total and len(plain.ips) == len(windowed.ips),
          "the two tallies counted differently")  # fmt: skip
    check(all(c.messages == total and len(c.ips) == len(plain.ips) for c in counted),
          "a window does not hold every record of the current hour")  # fmt: skip

    def med(name: str, at: int) -> float:
        return kb.median([m[at] for m in made[name]])

    (rw, rn), (bw, bn), (sw, sn) = ((med("windows", k), med("none", k)) for k in range(3))
    print(
        f"  {intervals} commits, each after {BATCH:,} records of the current hour "
        f"({len(plain.ips):,} distinct IPv4 in all), medians:\n"
        f"    windows 1h, 1d: {rw:8,.0f} records {bw / 1e3:8.1f} kB, changes() "
        f"{sw * 1e3:6.2f} ms\n"
        f"    no windows:     {rn:8,.0f} records {bn / 1e3:8.1f} kB, changes() "
        f"{sn * 1e3:6.2f} ms\n"
        f"    records: {ratio(rw, rn, 'no windows')}\n"
        f"    bytes: {ratio(bw, bn, 'no windows')}\n"
        f"    changes(): {ratio(sw, sn, 'no windows', 'headline')}",
        flush=True,
    )
    return [
        f"`windows.py`: a state commit every {BATCH:,} records, windows 1h and 1d (median)",
        f"{sw * 1e3:.1f} ms in changes(), {rw:,.0f} records, {bw / 1e3:.0f} kB",
        f"no windows: {sn * 1e3:.1f} ms, {rn:,.0f} records, {bn / 1e3:.0f} kB",
        f"{sw / sn:.2f}x time, {bw / bn:.2f}x bytes",
    ]


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000, help="figure 1's records")
    parser.add_argument("--rounds", type=int, default=kb.env_int("BENCH_ROUNDS", 3))
    parser.add_argument("--intervals", type=int, default=50, help="figure 3's commits")
    parser.add_argument("--port", type=int, default=kb.BENCH_PORT, help="the broker's")
    args = parser.parse_args()
    kb.BENCH_PORT = args.port  # where broker() starts its Kafka
    print(kb.machine())
    kb.bytecode()
    with kb.broker() as bootstrap:
        kb.warm_up(bootstrap)
        print("\n1. speed: lumu track with and without windows", flush=True)
        speed_row = speed(bootstrap, args.records, args.rounds)
    print("\n2. memory: 48 hourly windows against the all-time set", flush=True)
    memory_rows = [memory(same=False), memory(same=True)]
    print("\n3. commit cost with windows (in this process, no broker)", flush=True)
    commit_row = commits(args.intervals)
    readme(speed_row, *memory_rows, commit_row)


if __name__ == "__main__":
    kb.run_main(main)
