"""The synthetic generator: the same seed gives the same records, in every form, with invalid
records whose reasons check_events agrees with."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from lumu_cli import synth as synth_module
from lumu_cli.events import Reason, check_events
from lumu_cli.synth import POOL, Synth
from lumu_cli.timestamps import parse_timestamp
from tests.test_events import IP, reference, reference_ip, reference_stamp_ok


def synth_records(
    seed: int, count: int = 500, *, ipv6_ratio: float = 0.0, invalid_ratio: float = 0.0
) -> list[tuple[bytes, bytes]]:
    synth = Synth(200, ipv6_ratio=ipv6_ratio, invalid_ratio=invalid_ratio, seed=seed)
    return synth.records(count)


def test_the_same_seed_makes_the_same_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth_module, "time", SimpleNamespace(time=lambda: 1_700_000_000.123))
    first = synth_records(7, ipv6_ratio=0.3, invalid_ratio=0.2)
    assert synth_records(7, ipv6_ratio=0.3, invalid_ratio=0.2) == first
    assert synth_records(8, ipv6_ratio=0.3, invalid_ratio=0.2) != first


def test_the_same_seed_makes_the_same_addresses_at_any_time() -> None:
    """Only the timestamps follow the clock; addresses and the invalid mix follow the seed."""
    one, two = synth_records(11, invalid_ratio=0.2), synth_records(11, invalid_ratio=0.2)
    assert [key for key, _ in one] == [key for key, _ in two]
    assert [reference(v) for _, v in one] == [reference(v) for _, v in two]


def _outcomes(records: Sequence[tuple[bytes, bytes]]) -> list[Reason | IP]:
    return [reference(value) for _, value in records]


@pytest.mark.parametrize("ipv6_ratio", [0.0, 0.25, 1.0])
def test_distinct_ips_is_the_number_of_distinct_valid_addresses(ipv6_ratio: float) -> None:
    synth = Synth(300, ipv6_ratio=ipv6_ratio, invalid_ratio=0.1, seed=3)
    outcomes = _outcomes(synth.records(400)) + _outcomes(synth.records(200))
    valid = {o for o in outcomes if not isinstance(o, Reason)}
    assert synth.distinct_ips == len(valid)
    assert 0 < len(valid) < 300  # not every address used yet: the count is not just the pool


def test_distinct_ips_reaches_the_pool_size_and_the_ipv6_share() -> None:
    synth = Synth(40, ipv6_ratio=0.25, seed=5)
    outcomes = _outcomes(synth.records(4000))  # all 40 addresses drawn: a miss has odds ~1e-42
    valid = {o for o in outcomes if not isinstance(o, Reason)}
    assert synth.distinct_ips == len(valid) == 40
    assert sum(type(o) is bytes for o in valid) == 10


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synth_invalid_counts_match_what_check_events_finds(seed: int) -> None:
    synth = Synth(100, ipv6_ratio=0.5, invalid_ratio=0.5, seed=seed)
    values: list[bytes | None] = [value for _, value in synth.records(2000)]
    expected = Counter(o for o in map(reference, values) if isinstance(o, Reason))
    assert synth.invalid == expected
    assert check_events(values).invalid == expected
    assert set(expected) == set(Reason) - {Reason.EMPTY}  # every kind it makes was made


def test_ipv6_ratio_zero_makes_no_ipv6() -> None:
    records = synth_records(9, 2000, ipv6_ratio=0.0)
    checked = check_events([value for _, value in records])
    assert checked.v6 == []
    assert len(checked.v4) == 2000
    assert all(type(reference_ip(key.decode())) is int for key, _ in records)


def test_synth_writes_addresses_and_timestamps_in_every_form() -> None:
    records = synth_records(4, 3000, ipv6_ratio=0.5)
    objects = [json.loads(value) for _, value in records]
    ips = [obj["device_ip"] for obj in objects]
    assert any(ip.startswith("::ffff:") for ip in ips)  # IPv4-mapped
    assert any(ip != ip.lower() for ip in ips)  # upper case IPv6
    assert any(ip.count(":") == 7 and "::" not in ip for ip in ips)  # exploded IPv6
    v6 = [ip for ip in ips if ":" in ip and not ip.startswith("::ffff:")]
    assert any(ip == ip.lower() != ipaddress.IPv6Address(ip).exploded for ip in v6)  # compressed
    stamps = [obj["timestamp"] for obj in objects]
    assert any(type(s) is int for s in stamps)
    assert any(type(s) is str and s.isdigit() for s in stamps)
    assert any(type(s) is str and s.endswith("Z") for s in stamps)
    assert any(type(s) is str and s.endswith("+00:00") for s in stamps)
    assert all(reference_stamp_ok(s) for s in stamps)
    for key, obj in zip([k for k, _ in records], objects, strict=True):  # the key is the device
        assert reference_ip(key.decode()) == reference_ip(obj["device_ip"])


# ---------------------------------------------------------------- the pool the records go round


def test_the_same_seed_makes_the_same_records_whatever_the_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(synth_module, "time", SimpleNamespace(time=lambda: 1_700_000_000.5))
    size = len(Synth(50, invalid_ratio=0.2, seed=12).pool)
    whole = Synth(50, invalid_ratio=0.2, seed=12).records(2 * size + 7)
    synth = Synth(50, invalid_ratio=0.2, seed=12)
    pieces = [synth.records(n) for n in (1, 999, size, 0, size - 993)]
    assert [record for piece in pieces for record in piece] == whole
    assert whole[size:] == whole[: size + 7]  # the same records again, pass after pass


def test_each_batch_is_stamped_with_the_time_it_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The only thing that varies from pass to pass: the timestamps, current in each batch."""
    times = [1_700_000_000.25, 1_800_000_000.75]
    clock = iter(times)
    monkeypatch.setattr(synth_module, "time", SimpleNamespace(time=lambda: next(clock)))
    synth = Synth(30, ipv6_ratio=0.5, seed=13)
    first = synth.records(len(synth.pool))
    second = synth.records(len(synth.pool))  # the same records of the pool, a later time
    for records, instant in zip((first, second), times, strict=True):
        stamps = {parse_timestamp(json.loads(value)["timestamp"]) for _, value in records}
        assert min(stamps) == parse_timestamp(int(instant))  # the forms without milliseconds
        assert max(stamps) == parse_timestamp(int(instant * 1000))
    assert [key for key, _ in first] == [key for key, _ in second]
    assert [_without_time(v) for _, v in first] == [_without_time(v) for _, v in second]


def _without_time(value: bytes) -> object:
    obj = json.loads(value)
    return {**obj, "timestamp": type(obj["timestamp"])}


@pytest.mark.parametrize(("ips", "invalid_ratio"), [(40, 0.0), (300, 0.3), (30_000, 0.2)])
def test_each_pass_gives_every_address_a_valid_record(ips: int, invalid_ratio: float) -> None:
    synth = Synth(ips, ipv6_ratio=0.2, invalid_ratio=invalid_ratio, seed=14)
    assert len(synth.pool) >= POOL
    outcomes = _outcomes(synth.records(len(synth.pool)))
    assert len({o for o in outcomes if not isinstance(o, Reason)}) == ips == synth.distinct_ips


@pytest.mark.parametrize("invalid_ratio", [0.0, 0.01, 0.37, 0.5, 1.0])
def test_the_invalid_share_of_each_pass_is_exact(invalid_ratio: float) -> None:
    synth = Synth(100, invalid_ratio=invalid_ratio, seed=15)
    size = len(synth.pool)
    for passes in (1, 2):
        synth.records(size)
        assert sum(synth.invalid.values()) == passes * round(size * invalid_ratio)


@pytest.mark.parametrize("seed", [16, 17])
def test_the_counts_stay_exact_across_passes(seed: int) -> None:
    """distinct_ips and invalid are what the records sent say, also part-way into a pass."""
    synth = Synth(5000, ipv6_ratio=0.3, invalid_ratio=0.3, seed=seed)
    size = len(synth.pool)
    outcomes: list[Reason | IP] = []
    for count in (1000, size - 1500, 1, 700, size // 3, size, 5):
        outcomes += _outcomes(synth.records(count))
        valid = {o for o in outcomes if not isinstance(o, Reason)}
        assert synth.distinct_ips == len(valid)
        assert synth.invalid == Counter(o for o in outcomes if isinstance(o, Reason))


def test_the_keys_are_the_addresses_in_canonical_form() -> None:
    synth = Synth(3000, ipv6_ratio=0.5, invalid_ratio=0.1, seed=18)
    keys = {key.decode() for key, _ in synth.records(len(synth.pool))}
    assert len(keys) == 3000
    assert all(str(ipaddress.ip_address(key)) == key for key in keys)
