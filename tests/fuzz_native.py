"""Fuzz the native checker (`make fuzz`): atheris feeds it batches of random and mutated bytes.

Each input is cut at newlines into record values, and each piece is also spliced into one of a
few usual records (so that most values are nearly JSON, not noise): one batch of both. The
process must not crash, and the native path (`native_events.check_events`) must give what the
definition (`events.check_events`) gives; the timestamp reader (`lumu_native.parse_lines`) must
answer for every line. A difference is raised, and atheris stops and writes the input that
showed it (crash-*). Python's code is instrumented for coverage; the extension is not (atheris
cannot see inside it), so the inputs that reach new definition code are the ones kept.

Usage: python tests/fuzz_native.py [libFuzzer options, e.g. -max_total_time=60 -runs=100000]
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["lumu_cli"]):
    from lumu_cli import events, native_events

import lumu_native

USUAL = [
    b'{"timestamp": "2021-12-03T16:15:30.235Z", "device_ip": "10.0.0.1", "error_code": 3}',
    b'{"device_ip": "2001:db8::1", "timestamp": 1638548130235}',
    b'{"device_ip": "::ffff:10.0.0.1", "timestamp": "1638548130"}',
    b'{"timestamp": "2021-12-03 16:15:30,2-05:30", "device_ip": "fe80::1"}',
]


def canon(checked: events.Checked) -> object:
    v4 = sorted(zip(checked.v4.tolist(), checked.v4_millis.tolist(), strict=True))
    v6 = sorted(zip(checked.v6, checked.v6_millis, strict=True))
    return v4, v6, checked.invalid, checked.examples


def test_one(data: bytes) -> None:
    pieces = data.split(b"\n")
    values: list[bytes | None] = [piece or None for piece in pieces]
    for n, piece in enumerate(pieces):
        usual = USUAL[n % len(USUAL)]
        at = (piece[0] if piece else n) % len(usual)
        values.append(usual[:at] + piece[1:] + usual[at + len(piece) // 2 :])
    native = native_events.check_events(values, times=True)
    if canon(native) != canon(events.check_events(values, times=True)):
        raise AssertionError(f"the native checker differs from the definition on {values!r}")
    if lumu_native.parse_lines(data + b"\n", unit="auto", naive_utc=True, render=True) is None:
        raise AssertionError(f"the timestamp reader failed on {data!r}")


if __name__ == "__main__":
    assert native_events.native is not None, native_events.WHY_PYTHON
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
