"""The native checker (lumu_cli/native, Rust) against its definition (events.py, timestamps.py).

1. Property: for any batch of record values, `native_events.check_events` gives what
   `events.check_events` gives: the same addresses with the same event times (as multisets), the
   same invalid records by reason and the same first example of each.
2. Property, record by record: every answer the native checker gives itself (not "unsure") is
   the definition's answer for that record.
3. Fuzz: random bytes, alone or in batches, never crash the process, and still agree.
4. Failures: a panic inside is caught, and the batch goes to the definition, said once on stderr;
   without the extension (or with LUMU_NATIVE=0) every record goes to the definition.

The timestamp lines of `ts parse -` are held to the definition in test_properties.py, with the
native reader and without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import lumu_native  # built by make install: a test run without it fails, as it should
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lumu_cli import events, native_events
from lumu_cli.events import Checked, Reason
from tests.test_properties import fast_shaped, iso_strings, mutated, named_strings

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Canon = tuple[list[tuple[int, int]], list[tuple[bytes, int]], dict[Reason, int], dict[Reason, int]]


def canon(checked: Checked) -> Canon:
    """A check's outcome with the order of its addresses left out (sets ignore it)."""
    v4_millis = checked.v4_millis.tolist() or [0] * len(checked.v4)  # empty without times
    v4 = sorted(zip(checked.v4.tolist(), v4_millis, strict=True))
    v6 = sorted(zip(checked.v6, checked.v6_millis or [0] * len(checked.v6), strict=True))
    return v4, v6, dict(checked.invalid), dict(checked.examples)


def agree(values: Sequence[bytes | None]) -> None:
    for times in (True, False):
        got = native_events.check_events(values, times=times)
        assert canon(got) == canon(events.check_events(values, times=times)), values
        assert np.all(np.diff(got.v4.astype(np.int64)) >= 0), "IPv4 addresses are sorted"


# ---------------------------------------------------------------- strategies

v4_spellings = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.lists(st.integers(0, 300), min_size=3, max_size=5).map(lambda n: ".".join(map(str, n))),
    st.ip_addresses(v=4).map(lambda ip: ".".join(f"{int(o):03d}" for o in str(ip).split("."))),
    st.text("0123456789.", max_size=16),
)
v6_spellings = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded.upper()),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.ip_addresses(v=4).map(lambda ip: f"::FFFF:{ip}"),
    st.ip_addresses(v=4).map(lambda ip: f"::{ip}"),
    st.ip_addresses(v=4).map(lambda ip: f"64:ff9b::{ip}"),
    st.ip_addresses(v=4).map(lambda ip: "::ffff:{:x}:{:x}".format(*divmod(int(ip), 65536))),
    st.ip_addresses(v=6).map(lambda ip: f"{ip}%eth0"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded.replace(":0", ":00000", 1)),
    st.text("0123456789abcdefABCDEF:.", max_size=45),
)
addresses = st.one_of(v4_spellings, v6_spellings, st.text(max_size=20))

stamp_texts = st.one_of(
    fast_shaped(),
    iso_strings().map(lambda pair: pair[0]),
    mutated(fast_shaped()),
    named_strings(),
    st.integers(0, 10**19).map(str),
    st.integers(-(10**12), 10**21).map(str),
    st.text("0123456789", min_size=1, max_size=20),
    st.text(max_size=20),
)
stamp_values = st.one_of(
    stamp_texts,
    st.integers(-(10**12), 10**20),
    st.sampled_from([10**7, 10**8 - 1, 20240229, 20230229, 10**11, 10**14, 10**17, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ip_values = st.one_of(
    addresses, addresses, st.none(), st.integers(-5, 2**33), st.floats(), st.booleans(),
    st.lists(st.integers(), max_size=1),
)  # fmt: skip
MISSING = object()


@st.composite
def records(draw: st.DrawFn) -> bytes | None:
    """A record value: mostly JSON objects with the two fields of any kind, spelt many ways."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from([None, b""]))
    if kind == 1:
        return draw(st.binary(max_size=60))
    fields: dict[str, object] = {}
    for key, values in (("device_ip", ip_values), ("timestamp", stamp_values)):
        if draw(st.integers(0, 9)):  # now and then absent
            fields[key] = draw(values)
    if draw(st.booleans()):
        fields["error_code"] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
    items = list(fields.items())
    order = draw(st.permutations(range(len(items))))
    text = "{" + ", ".join(f"{json.dumps(items[i][0])}: {json.dumps(items[i][1])}" for i in order)
    text += "}"
    if kind == 2:  # not escaped: non-ASCII as UTF-8
        text = json.dumps(dict(items), ensure_ascii=False)
    if kind == 3 and items:  # a key twice
        key, _ = items[0]
        text = text[:-1] + f", {json.dumps(key)}: {json.dumps(draw(ip_values))}" + "}"
    if kind == 4:  # not an object
        text = json.dumps(draw(st.one_of(st.lists(st.integers()), st.text(), st.integers())))
    if kind == 5:  # deep
        depth = draw(st.integers(100, 1100))
        text = text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    if kind == 6:  # whitespace of all kinds around it
        text = draw(st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\ufeff", ""])) + text + " \n"
    data = text.encode("utf-8", "surrogatepass")
    if kind == 7:  # cut short
        data = data[: draw(st.integers(0, len(data)))]
    if kind == 8:  # a byte changed
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if kind == 9:  # escapes
        data = json.dumps(dict(items), ensure_ascii=True).replace("1", "\\u0031").encode()
    return data


# ---------------------------------------------------------------- 1 and 2: the properties

PLAIN = b'{"timestamp": "2021-12-03T16:15:30.235Z", "device_ip": "10.0.0.1", "error_code": 3}'


@SETTINGS
@given(st.lists(records(), max_size=60))
@example([PLAIN, b'{"device_ip": "::ffff:10.0.0.1", "timestamp": 1638548130235}'])
@example([b'{"device_ip": "1.2.3.4", "timestamp": 1e400}', b'{"device_ip": 1e400}'])
@example([b'{"device_ip": "1.2.3.4", "timestamp": 20240229}', b'{"device_ip": "1.2.3.4"'])
@example([b'{"device_ip": "fe80::1%eth0", "timestamp": 1}', b'\xef\xbb\xbf{"device_ip": 1}'])
def test_a_batch_is_checked_as_the_definition_checks_it(values: list[bytes | None]) -> None:
    agree(values)


@SETTINGS
@given(records())
def test_each_certain_answer_is_the_definitions(value: bytes | None) -> None:
    found = lumu_native.check([value])
    assert found is not None
    reasons, v4, v4_millis, v6, v6_millis = found
    expected = events.check_events([value], times=True)
    if reasons[0] == lumu_native.UNSURE:
        return
    if reasons[0] == 0:
        assert not expected.invalid, value
        if v4:
            assert expected.v4.tolist() == np.frombuffer(v4, np.uint32).tolist(), value
            assert expected.v4_millis.tolist() == np.frombuffer(v4_millis, np.int64).tolist()
        else:
            assert (expected.v6, expected.v6_millis) == (
                [v6],
                np.frombuffer(v6_millis, np.int64).tolist(),
            ), value
    else:
        assert dict(expected.invalid) == {list(Reason)[reasons[0] - 1]: 1}, value


def test_the_usual_records_are_certain() -> None:
    """The checker must decide the records devices send, or it saves nothing: every record of
    `lumu produce` but those with a timestamp outside the common shapes."""
    from lumu_cli.synth import Synth

    synth = Synth(1000, ipv6_ratio=0.2, invalid_ratio=0.1, seed=7)
    values = [value for _, value in synth.records(5000)]
    found = lumu_native.check(values)
    assert found is not None
    reasons = np.frombuffer(found[0], np.uint8)
    unsure = [values[row] for row in np.flatnonzero(reasons == lumu_native.UNSURE)]
    assert len(unsure) < 0.05 * len(values)
    for value in unsure:
        assert b'"timestamp": "yesterday"' in value or b'"2021-02-30T10:00:00Z"' in value, value
    agree(values)


def test_reason_codes_follow_the_definitions_order() -> None:
    assert list(lumu_native.REASONS) == [str(reason) for reason in Reason]


# ---------------------------------------------------------------- 3. fuzz


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=120), st.none()), max_size=40))
def test_random_bytes_never_crash_and_agree(values: list[bytes | None]) -> None:
    agree(values)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["auto", "s", "ms", "us", "ns"]), st.booleans())
def test_random_lines_never_crash(data: bytes, unit: str, naive_utc: bool) -> None:
    found = lumu_native.parse_lines(data + b"\n", unit=unit, naive_utc=naive_utc, render=True)
    assert found is not None
    ok, rendered, millis = found
    rows = data.count(b"\n") + 1
    assert (len(ok), len(rendered), len(millis)) == (rows, 25 * rows, 8 * rows)


def test_other_types_in_a_batch_go_to_the_definition() -> None:
    found = lumu_native.check([PLAIN, "text", 3, bytearray(PLAIN), None])
    assert found is not None
    assert list(found[0]) == [0, 255, 255, 255, 1]


# ---------------------------------------------------------------- 4. failures


def test_a_panic_inside_is_caught() -> None:
    assert lumu_native._panic_inside() is None


class _Failing:
    REASONS = lumu_native.REASONS
    UNSURE = lumu_native.UNSURE

    @staticmethod
    def check(_values: object) -> None:
        return None  # what `check` answers when the checker panicked

    @staticmethod
    def parse_lines(_data: bytes, **_options: object) -> None:
        return None


def test_a_failed_batch_is_checked_by_the_definition_and_told_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native_events, "native", _Failing)
    monkeypatch.setattr(native_events, "_failed_once", False)
    values = [PLAIN, b"{", None, b'{"device_ip": "::1", "timestamp": "yesterday"}'] * 10
    for _ in range(3):
        assert canon(native_events.check_events(values)) == canon(events.check_events(values))
    from lumu_cli.tsstream import parse_block

    assert parse_block(b"2021-12-03T16:15:30.235Z\nnope\n").ok.tolist() == [True, False]
    err = capsys.readouterr().err
    assert err == (
        "lumu: the native checker failed on a batch (a bug): it was checked in Python, as is "
        "any other batch it fails on\n"
    )


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("sys.modules['lumu_native'] = None", "the native checker is not installed"),
        ("os.environ['LUMU_NATIVE'] = '0'", "LUMU_NATIVE=0"),
        ("lumu_native.REASONS = ['empty']", "the native checker is from another lumu version"),
    ],
    ids=["missing", "turned-off", "stale"],
)
def test_without_the_extension_every_record_goes_to_the_definition(setup: str, why: str) -> None:
    code = f"""
import os, sys, lumu_native
{setup}
from lumu_cli import native_events
from lumu_cli.events import Reason
print(native_events.WHY_PYTHON)
checked = native_events.check_events([{PLAIN!r}, b"{{", None])
print(native_events.native is None, checked.v4.tolist(), sorted(map(str, checked.invalid)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith(why)
    assert out[1] == "True [167772161] ['empty', 'not_json']"


# ---------------------------------------------------------------- 5. the wheel

CRATE = Path(__file__).resolve().parent.parent / "lumu_cli" / "native"


def test_a_wheel_built_by_maturin_installs_and_runs_without_rust(tmp_path: Path) -> None:
    maturin = Path(sys.executable).with_name("maturin")
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [maturin, "build", "--release", "--out", wheels],
        cwd=CRATE, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("lumu_native-*-abi3-*.whl")  # one wheel for CPython 3.11 and later
    no_rust = {**os.environ, "PATH": str(tmp_path / "bin"), "CARGO": "", "RUSTC": ""}
    assert shutil.which("cargo", path=no_rust["PATH"]) is None
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps"]
    subprocess.run([*install, "--target", site, wheel], env=no_rust, check=True)
    code = (
        "import lumu_native; print(lumu_native.__file__); "
        f"print(lumu_native.check([{PLAIN!r}, None])[0])"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], env={**no_rust, "PYTHONPATH": str(site)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    where, reasons = ran.stdout.splitlines()
    assert Path(where).is_relative_to(site)
    assert reasons == repr(b"\x00\x01")
