"""`lumu produce` without Kafka: the token bucket on a fake clock, the loop with a fake sender.

The fake sender keeps every record it is given and reports deliveries as told; the fake clock
only moves when the test (or the sender's `wait`) moves it, so no assertion depends on timing.
Expected unique and invalid counts are computed from the sent records with `json` and
`ipaddress` (and `parse_timestamp`, the timestamp definition tested in test_timestamps.py).
The real Sender is tried against no broker at all (its failures), and the progress display
against a console that writes to memory.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import json
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest
from rich.console import Console

from lumu_cli import produce as produce_module
from lumu_cli.errors import InvalidTimestamp
from lumu_cli.kafka_io import Sender
from lumu_cli.live import ProduceProgress
from lumu_cli.produce import BURST, CHUNK, STOP_CHECK, TICK, Progress, TokenBucket, produce
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


# ---------------------------------------------------------------- a paced run mostly sleeps


class WaitingSender(FakeSender):
    """A FakeSender that notes each wait it is asked for."""

    def __init__(self, clock: FakeClock, **options: object) -> None:
        super().__init__(clock, **options)  # type: ignore[arg-type]
        self.waits: list[float] = []

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        super().wait(seconds)


@pytest.mark.parametrize("rate", [500, 5000, 200_000])
def test_a_paced_run_sends_a_batch_a_tick_and_sleeps_in_between(
    clock: FakeClock, rate: float
) -> None:
    sender = WaitingSender(clock)
    summary = run(sender, Synth(10, seed=11), rate=rate, duration=2.0)
    assert summary["sent"] == pytest.approx(rate * 2.0, rel=0.02)
    ticks = 2.0 / TICK
    assert len(sender.waits) <= ticks + 1  # not a wake-up per record, nor a busy loop
    assert all(wait >= TICK for wait in sender.waits[:-1])  # the last one stops at the end
    assert len(sender.batches) <= ticks * (rate * TICK // CHUNK + 1) + 1  # full CHUNKs, a rest


def test_a_slow_rate_waits_for_each_record_but_looks_at_stop_often(clock: FakeClock) -> None:
    sender = WaitingSender(clock)
    summary = run(sender, Synth(10, seed=12), rate=2, duration=5.0)
    assert summary["sent"] == len(sender.records) == pytest.approx(2 * 5.0, abs=1)
    assert all(len(batch) == 1 for batch in sender.batches)
    assert max(sender.waits) <= STOP_CHECK


def test_after_a_stall_a_paced_run_catches_up_by_its_burst_at_most(clock: FakeClock) -> None:
    sender = WaitingSender(clock, send_seconds=1.0)  # each send takes a whole second
    run(sender, Synth(10, seed=13), rate=500, count=400)
    assert max(len(batch) for batch in sender.batches) <= 500 * BURST


# ---------------------------------------------------------------- Sender, with librdkafka


def test_the_sender_counts_failed_deliveries_and_no_delivered_ones() -> None:
    """With no broker to take them, records fail: each failure is counted, none delivered."""
    config = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": "1000"}
    sender = Sender(config, "nowhere")
    sender.send([(b"k%d" % n, b"v") for n in range(5)])
    assert (sender.sent, sender.delivered + sender.failed) == (5, 0)  # all still queued
    assert sender.flush(30) == 0
    assert (sender.sent, sender.delivered, sender.failed) == (5, 0, 5)
    assert sender.first_error is not None


# ---------------------------------------------------------------- the progress display


def progress_at(elapsed: float, sent: int = 10) -> Progress:
    return Progress(sent, sent - 1, 1, elapsed, None)


def test_the_plain_progress_is_a_line_every_so_often(capsys: pytest.CaptureFixture[str]) -> None:
    display = ProduceProgress(None, 30.0, every=5.0)
    display.console = Console(file=io.StringIO(), force_terminal=False)
    with display:
        for tenth in range(121):
            display.update(progress_at(tenth / 10, sent=tenth))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" sent")[0] for line in lines] == ["lumu: 50", "lumu: 100"]


def test_the_bar_is_redrawn_now_and_then_and_shows_the_final_figures() -> None:
    screen = io.StringIO()
    display = ProduceProgress(1000, None, redraw=0.5)
    display.console = Console(file=screen, force_terminal=True, width=120)
    with display:
        for hundredth in range(1, 201):  # two seconds of batches, every 10 ms
            display.update(progress_at(hundredth / 100, sent=hundredth * 5))
        display.update(Progress(1000, 987, 13, 2.004, 1000))  # the last, just after a redraw
    drawn = screen.getvalue()
    assert drawn.count("producing") <= 2 / 0.5 + 3  # not once per batch
    assert "987 delivered, 13 failed" in drawn
