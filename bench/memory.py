"""Benchmark the memory of lumu's exact unique-IP set against a Python set of strings.

The random distinct addresses are made once, here, and saved to a temporary file. Each case runs
in a fresh subprocess, which reads that file into one array (so the addresses are part of its
baseline, without the temporaries of making them), collects garbage, gives freed heap back to the
kernel (glibc malloc_trim, so memory freed earlier is not reused unseen), resets its peak
(/proc/self/clear_refs) and reads VmRSS from /proc/self/status; then builds the set, and after gc
and malloc_trim again reads VmRSS and the peak (VmHWM, transient memory included):

  - lumu_cli.uniques.UniqueIPs holding BENCH_V4 (10,000,000) distinct random IPv4 addresses, added
    with `add_v4` as numpy uint32 arrays of 1,000,000 (target: at most 64 MB above the baseline),
    and BENCH_V6 (1,000,000) distinct random IPv6 addresses, added with `add_v6` as lists of
    100,000 16-byte values;
  - the baseline, the original exercise's approach: a Python `set` of the same addresses as
    strings (dotted quads; IPv6 in compressed form), added in chunks of 100,000.

Prints the RSS growth in MB of each and, for each family, the ratio of UniqueIPs against the set
(the headline: IPv4). Checks (FAIL and exit 1 when one does not hold): each structure holds
exactly the number of distinct addresses made. The README rows come last. No broker is needed.

Usage: python bench/memory.py   (env: BENCH_V4, BENCH_V6)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import check, ratio, readme

CASE_TIMEOUT = 600.0
SEED = 20211203


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _settle() -> int:
    """Collect garbage, return freed heap to the kernel, reset the peak; VmRSS in kB."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status_kb("VmRSS")


def make_addresses(folder: Path, v4: int, v6: int) -> None:
    """`v4` distinct random IPv4 addresses (uint32, random order) and `v6` random IPv6 ones."""
    rng = np.random.default_rng(SEED)
    pool = np.unique(rng.integers(0, 1 << 32, size=v4 + v4 // 50 + 1000, dtype=np.uint32))
    if len(pool) < v4:
        raise RuntimeError("not enough distinct IPv4 addresses drawn")
    rng.permutation(pool)[:v4].tofile(folder / "v4.bin")
    packed = rng.bytes(16 * v6)
    if len({packed[i : i + 16] for i in range(0, len(packed), 16)}) != v6:
        raise RuntimeError("IPv6 addresses drawn twice")
    (folder / "v6.bin").write_bytes(packed)


def _v4_text(chunk: list[int]) -> list[str]:
    return [f"{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}" for x in chunk]


def case(name: str, folder: Path) -> dict[str, Any]:
    """Build one structure in this process; the RSS before and after, in kB."""
    from lumu_cli.uniques import UniqueIPs

    family, kind = name.split("-")
    if family == "v4":
        v4 = np.fromfile(folder / "v4.bin", np.uint32)
        count = len(v4)
    else:
        v6 = (folder / "v6.bin").read_bytes()
        count = len(v6) // 16
    before = _settle()
    began = time.perf_counter()
    held: object
    if kind == "lumu":
        ips = UniqueIPs()
        if family == "v4":
            for at in range(0, count, 1_000_000):
                ips.add_v4(v4[at : at + 1_000_000])
        else:
            for at in range(0, count, 100_000):
                end = min(at + 100_000, count)
                ips.add_v6([v6[i : i + 16] for i in range(16 * at, 16 * end, 16)])
        size, held, own = len(ips), ips, ips.memory_bytes()
    else:
        strings: set[str] = set()
        if family == "v4":
            for at in range(0, count, 100_000):
                strings.update(_v4_text(v4[at : at + 100_000].tolist()))
        else:
            ntop, inet6 = socket.inet_ntop, socket.AF_INET6
            for at in range(0, count, 100_000):
                end = min(at + 100_000, count)
                strings.update(ntop(inet6, v6[i : i + 16]) for i in range(16 * at, 16 * end, 16))
        size, held, own = len(strings), strings, None
    seconds = time.perf_counter() - began
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    after = _status_kb("VmRSS")
    peak = _status_kb("VmHWM")
    del held
    return {
        "case": name,
        "count": size,
        "before_kb": before,
        "after_kb": after,
        "peak_kb": peak,
        "seconds": seconds,
        "own_bytes": own,
    }


def run_case(name: str, folder: Path, count: int) -> dict[str, Any]:
    """`case` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, __file__, "--case", name, "--data", str(folder)],
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT,
        check=False,
    )
    check(done.returncode == 0, f"case {name} exited {done.returncode}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    check(result["count"] == count, f"case {name} holds {result['count']:,} of {count:,} addresses")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.data)))
        return

    from kafka_bench import env_int, machine

    sizes = {"v4": env_int("BENCH_V4", 10_000_000), "v6": env_int("BENCH_V6", 1_000_000)}
    print(machine())
    with tempfile.TemporaryDirectory(prefix="lumu-bench-memory-") as tmp:
        make_addresses(Path(tmp), sizes["v4"], sizes["v6"])
        rows = report(Path(tmp), sizes)
    readme(*rows)


def report(folder: Path, sizes: dict[str, int]) -> list[list[str]]:
    print("RSS growth (VmRSS after - before, after gc and malloc_trim), each in a fresh process")
    rows = []
    for family, count in sizes.items():
        grown = {}
        for kind, label in (("lumu", "UniqueIPs"), ("set", "set of str")):
            r = run_case(f"{family}-{kind}", folder, count)
            grown[kind] = (r["after_kb"] - r["before_kb"]) / 1024
            peak = (r["peak_kb"] - r["before_kb"]) / 1024
            own = f", own estimate {r['own_bytes'] / 2**20:.1f} MB" if r["own_bytes"] else ""
            print(
                f"  {count:>11,} IP{family} {label:<11} {grown[kind]:8.1f} MB "
                f"({grown[kind] * 2**20 / count:6.1f} bytes/address; peak +{peak:.1f} MB; "
                f"built in {r['seconds']:.1f} s{own}; baseline RSS {r['before_kb'] / 1024:.0f} MB)",
                flush=True,
            )
        target = f"; target: <= 64 MB: {'met' if grown['lumu'] <= 64 else 'not met'}"
        note = ("headline" + target) if family == "v4" else ""
        print(f"  UniqueIPs, IP{family}: {ratio(grown['lumu'], grown['set'], 'set of str', note)}, "
              f"{grown['set'] / grown['lumu']:.1f}x smaller")  # fmt: skip
        rows.append([
            f"`memory.py`: {count / 1e6:g}M distinct IP{family} in the unique set",
            f"+{grown['lumu']:.1f} MB RSS",
            f"Python `set` of the strings: +{grown['set']:.0f} MB",
            f"{grown['set'] / grown['lumu']:.1f}x smaller",
        ])  # fmt: skip
    return rows


if __name__ == "__main__":
    from kafka_bench import run_main

    run_main(main)
