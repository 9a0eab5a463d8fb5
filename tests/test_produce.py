"""`lumu produce` without Kafka: the token bucket on a fake clock, the loop with a fake sender.

The fake sender keeps every record it is given and reports deliveries as told; the fake clock
only moves when the test (or the sender's `wait`) moves it, so no assertion depends on timing.
Expected unique and invalid counts are computed from the sent records with `json` and
`ipaddress` (and `parse_timestamp`, the timestamp definition tested in test_timestamps.py).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest

from lumu_cli import produce as produce_module
from lumu_cli.errors import InvalidTimestamp
from lumu_cli.kafka_io import Sender
from lumu_cli.produce import Progress, TokenBucket, produce
from lumu_cli.synth import Synth
from lumu_cli.timestamps import parse_timestamp

Record = tuple[bytes, bytes]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSender:
    """Keeps what it is sent; the records for which `fails(record)` is true fail to deliver."""

    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        send_seconds: float = 0.0,
        fails: Callable[[Record], bool] = lambda _: False,
        undelivered: int = 0,
        on_send: Callable[[FakeSender], None] = lambda _: None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.send_seconds = send_seconds
        self.fails = fails
        self.undelivered = undelivered
        self.on_send = on_send
        self.delivered = 0
        self.failed = 0
        self.batches: list[list[Record]] = []
        self.flushes: list[float] = []

    @property
    def records(self) -> list[Record]:
        return [record for batch in self.batches for record in batch]

    def send(self, records: list[Record]) -> None:
        self.batches.append(list(records))
        for record in records:
            if self.fails(record):
                self.failed += 1
            else:
                self.delivered += 1
        self.clock.advance(self.send_seconds)
        self.on_send(self)

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds + 1e-6)  # a real poll takes a little longer than asked

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        return self.undelivered


def run(sender: FakeSender, synth: Synth, **options: object) -> dict[str, object]:
    return produce(cast(Sender, sender), synth, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock for both the produce loop and its token bucket."""
    fake = FakeClock()
    monkeypatch.setattr(produce_module, "time", SimpleNamespace(monotonic=fake))
    monkeypatch.setattr(produce_module, "TokenBucket", functools.partial(TokenBucket, clock=fake))
    return fake


def canonical(text: object) -> int | bytes | None:
    """The device address a record counts under, or None if `text` is not an address."""
    if type(text) is not str or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return address.packed if address.ipv4_mapped is None else int(address.ipv4_mapped)
    return int(address)


def counted_ip(value: bytes) -> int | bytes | None:
    """The address a record counts under, or None if the record is invalid."""
    try:
        obj = json.loads(value.decode())
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("timestamp") is None:
        return None
    stamp = obj["timestamp"]
    if isinstance(stamp, bool) or not isinstance(stamp, str | int | float):
        return None
    try:
        parse_timestamp(stamp)
    except InvalidTimestamp:
        return None
    return canonical(obj.get("device_ip"))


# ---------------------------------------------------------------- TokenBucket


def test_the_bucket_starts_empty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=100, clock=clock)
    assert bucket.take(5) == 0
    assert bucket.wait() == pytest.approx(1 / 10)


def test_the_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=100, clock=clock)
    clock.advance(0.5)
    assert bucket.take(100) == 5
    assert bucket.take(100) == 0
    clock.advance(2)
    assert bucket.take(3) == 3  # takes no more than asked: the rest stays
    assert bucket.take(100) == 20 - 3


def test_the_bucket_saves_up_at_most_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=25, clock=clock)
    clock.advance(3600)
    assert bucket.take(10_000) == 25
    assert bucket.take(10_000) == 0


def test_the_bucket_gives_whole_tokens_and_keeps_the_fraction() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, burst=10, clock=clock)
    clock.advance(0.375)  # 1.5 tokens
    assert bucket.take(5) == 1
    assert bucket.wait() == pytest.approx((1 - 0.5) / 4)
    clock.advance(0.125)  # 0.5 + 0.5
    assert bucket.take(5) == 1


def test_wait_is_zero_while_a_whole_token_is_there() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, burst=100, clock=clock)
    clock.advance(0.5)
    bucket.take(0)  # the bucket fills when asked
    assert bucket.wait() == 0.0


def test_waiting_as_told_is_enough_for_the_next_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, burst=1, clock=clock)
    for _ in range(20):
        assert bucket.take(1) == 0
        clock.advance(bucket.wait() + 1e-9)
        assert bucket.take(1) == 1


# ---------------------------------------------------------------- produce


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 2500])
def test_count_sends_exactly_that_many_records(clock: FakeClock, count: int) -> None:
    sender = FakeSender(clock)
    summary = run(sender, Synth(50, seed=1), rate=0, count=count)
    assert len(sender.records) == count
    assert summary["sent"] == summary["delivered"] == count
    assert summary["failed"] == 0
    assert len(sender.flushes) == 1


def test_the_summary_agrees_with_the_records_sent(clock: FakeClock) -> None:
    synth = Synth(300, ipv6_ratio=0.3, invalid_ratio=0.2, seed=2)
    sender = FakeSender(clock, send_seconds=0.25)
    summary = run(sender, synth, rate=0, count=2345)
    values = [value for _, value in sender.records]
    counted = [counted_ip(value) for value in values]
    valid = [ip for ip in counted if ip is not None]
    elapsed = 0.25 * len(sender.batches)
    assert summary == {
        "sent": 2345,
        "delivered": 2345,
        "failed": 0,
        "distinct_ips": len(set(valid)),
        "invalid": len(values) - len(valid),
        "invalid_by_reason": summary["invalid_by_reason"],
        "elapsed": elapsed,
        "rate": round(2345 / elapsed, 1),
    }
    by_reason = cast(dict[str, int], summary["invalid_by_reason"])
    assert sum(by_reason.values()) == len(values) - len(valid)
    assert list(by_reason) == sorted(by_reason)
    assert 0 < len(set(valid)) <= 300
    assert json.loads(json.dumps(summary)) == summary  # the one JSON line it prints


def test_failed_deliveries_are_counted(clock: FakeClock) -> None:
    sender = FakeSender(clock, fails=lambda record: record[0].endswith(b"7"))
    summary = run(sender, Synth(100, seed=3), rate=0, count=1500)
    failed = sum(key.endswith(b"7") for key, _ in sender.records)
    assert failed > 0
    assert summary["failed"] == failed
    assert summary["delivered"] == 1500 - failed
    assert summary["sent"] == 1500


def test_records_left_undelivered_at_the_flush_count_as_failed(clock: FakeClock) -> None:
    sender = FakeSender(clock, fails=lambda record: record[0].endswith(b"1"), undelivered=40)
    summary = run(sender, Synth(100, seed=4), rate=0, count=1000)
    failed = sum(key.endswith(b"1") for key, _ in sender.records)
    assert summary["failed"] == failed + 40


def test_a_stop_set_before_starting_sends_nothing(clock: FakeClock) -> None:
    stop = threading.Event()
    stop.set()
    sender = FakeSender(clock)
    summary = run(sender, Synth(10, seed=5), rate=0, count=100, stop=stop)
    assert sender.records == []
    assert (summary["sent"], summary["delivered"], summary["distinct_ips"]) == (0, 0, 0)
    assert len(sender.flushes) == 1  # still flushed


def test_a_stop_during_the_run_ends_it_after_the_batch_in_hand(clock: FakeClock) -> None:
    stop = threading.Event()
    sender = FakeSender(clock, on_send=lambda s: stop.set() if len(s.batches) == 2 else None)
    summary = run(sender, Synth(10, seed=6), rate=0, stop=stop)  # no count: until stopped
    assert len(sender.batches) == 2
    assert summary["sent"] == len(sender.records) > 0
    assert len(sender.flushes) == 1


def test_a_rate_is_kept_on_the_clock(clock: FakeClock) -> None:
    sender = FakeSender(clock)
    summary = run(sender, Synth(10, seed=7), rate=200, count=1000)
    assert summary["sent"] == len(sender.records) == 1000
    assert summary["elapsed"] == pytest.approx(1000 / 200, rel=0.02)
    assert summary["rate"] == pytest.approx(200, rel=0.02)


def test_a_duration_is_kept_on_the_clock(clock: FakeClock) -> None:
    sender = FakeSender(clock)
    summary = run(sender, Synth(10, seed=8), rate=500, duration=3.0)
    assert summary["sent"] == len(sender.records)
    assert len(sender.records) == pytest.approx(500 * 3.0, rel=0.02)
    assert summary["elapsed"] == pytest.approx(3.0, rel=0.02)


def test_a_zero_duration_sends_nothing(clock: FakeClock) -> None:
    sender = FakeSender(clock)
    summary = run(sender, Synth(10, seed=9), rate=0, duration=0)
    assert summary["sent"] == 0
    assert sender.records == []


def test_progress_is_reported_up_to_the_final_count(clock: FakeClock) -> None:
    seen: list[Progress] = []
    sender = FakeSender(clock, fails=lambda record: record[0].endswith(b"3"))
    run(sender, Synth(100, seed=10), rate=0, count=2200, progress=seen.append)
    failed = sum(key.endswith(b"3") for key, _ in sender.records)
    assert seen
    assert [p.sent for p in seen] == sorted(p.sent for p in seen)
    last = seen[-1]
    assert (last.sent, last.delivered, last.failed, last.total) == (
        2200,
        2200 - failed,
        failed,
        2200,
    )
