"""The consume loop and its tally, fed by a hand-made source instead of a Kafka consumer.

Records are built here from known addresses, so the expected unique count is the size of a
Python set of `ipaddress` values, and each invalid record is invalid by construction.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from lumu_cli.checkers import Inline
from lumu_cli.events import Checked, Reason, check_events
from lumu_cli.kafka_io import PartitionInfo, Polled
from lumu_cli.snapshots import Tally
from lumu_cli.state import Ephemeral
from lumu_cli.tracker import Stats, Tracker

STAMP = "2023-11-14T22:13:20.123Z"
NOT_JSON = b"{not json"
BAD_STAMP = json.dumps({"device_ip": "192.0.2.1", "timestamp": "yesterday"}).encode()
BAD_IP = json.dumps({"device_ip": "256.0.0.1", "timestamp": STAMP}).encode()


# ---------------------------------------------------------------- helpers


def event(ip: str) -> bytes:
    return json.dumps({"device_ip": ip, "timestamp": STAMP, "error_code": 1}).encode()


def v4(n: int) -> str:
    return str(ipaddress.IPv4Address("10.0.0.0") + n)


def v6(n: int) -> str:
    return str(ipaddress.IPv6Address("2001:db8::") + n)


def canonical(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d is the IPv4 address
    return address if mapped is None else mapped


def distinct(ips: Sequence[str]) -> int:
    return len({canonical(ip) for ip in ips})


Records = dict[int, list[tuple[int, bytes | None]]]  # partition -> (offset, value)


def batch(records: Records | None = None, at_end: dict[int, bool] | None = None) -> Polled:
    """A consumer batch: records by partition, and partitions that reached (or left) their end.

    As from the real consumer, a partition with records is not at its end unless `at_end` says
    it reached it after them.
    """
    polled = Polled(at_end={partition: False for partition in records or {}} | (at_end or {}))
    for partition, pairs in (records or {}).items():
        polled.offsets[partition] = [offset for offset, _ in pairs]
        polled.values[partition] = [value for _, value in pairs]
    return polled


def numbered(values: Sequence[bytes | None], start: int = 0) -> list[tuple[int, bytes | None]]:
    return list(enumerate(values, start))


@dataclass
class FakeSource:
    """Plays `script` one batch a poll; when it runs out, it calls `exhausted` (e.g. a stop)."""

    script: list[Polled]
    assigned: set[int] = field(default_factory=set)
    brokers_up: threading.Event = field(default_factory=threading.Event)
    waiting: str | None = None
    exhausted: Callable[[], None] = lambda: None
    polls: int = 0
    overrun: bool = False
    from_beginning: bool = False
    done_calls: list[dict[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.brokers_up.set()

    def poll(self, max_records: int, timeout: float) -> Polled:
        self.polls += 1
        if self.script:
            return self.script.pop(0)
        self.overrun = True
        self.exhausted()
        return Polled()

    def done(self, next_offsets: dict[int, int]) -> None:
        self.done_calls.append(dict(next_offsets))

    def partitions(self) -> list[PartitionInfo]:
        return [PartitionInfo(p, 10 * p, 10 * p + 5) for p in sorted(self.assigned)]


def tracker_for(source: FakeSource, *, exit_at_end: bool = False) -> Tracker:
    """A tracker over `source`, stopped once the source has nothing more to play."""
    tracker = Tracker(source, keeper=Ephemeral(source), exit_at_end=exit_at_end)
    source.exhausted = tracker.stop.set
    return tracker


# ---------------------------------------------------------------- Tally


def test_tally_counts_messages_unique_ips_and_invalid_by_reason() -> None:
    ips = [v4(1), v4(2), v4(1), v6(1), f"::ffff:{v4(2)}", v6(1).upper(), v6(2)]
    values: list[bytes | None] = [*map(event, ips), None, NOT_JSON, NOT_JSON, BAD_STAMP]
    tally = Tally()
    tally.count(0, range(len(values)), values)
    assert tally.messages == len(values)
    assert len(tally.ips) == distinct(ips) == 4
    assert tally.invalid == Counter({"empty": 1, "not_json": 2, "bad_timestamp": 1})


def test_replaying_the_same_offsets_changes_nothing() -> None:
    values: list[bytes | None] = [*(event(v4(i)) for i in range(10)), NOT_JSON]
    offsets = list(range(100, 111))
    tally = Tally()
    tally.count(0, offsets, values)
    before = (tally.messages, len(tally.ips), Counter(tally.invalid))
    checked, _ = tally.count(0, offsets, values)
    tally.count(0, offsets[3:], values[3:])
    assert (tally.messages, len(tally.ips), tally.invalid) == before
    assert not checked.invalid
    assert not len(checked.v4)
    assert tally.partitions[0].next_offset == 111


def test_an_overlapping_batch_counts_only_the_new_records() -> None:
    tally = Tally()
    tally.count(0, [0, 1, 2, 3], [event(v4(i)) for i in range(4)])
    tally.count(0, [2, 3, 4, 5], [event(v4(i)) for i in range(2, 5)] + [NOT_JSON])
    assert tally.messages == 6
    assert len(tally.ips) == 5
    assert tally.invalid == Counter({"not_json": 1})
    assert tally.partitions[0].next_offset == 6


def test_the_same_offsets_in_another_partition_are_other_records() -> None:
    tally = Tally()
    tally.count(0, [0, 1], [event(v4(1)), event(v4(2))])
    tally.count(1, [0, 1], [event(v4(3)), NOT_JSON])
    assert tally.messages == 4
    assert len(tally.ips) == 3


def _three_partitions() -> tuple[Tally, list[str]]:
    tally = Tally()
    seen: list[str] = []
    for partition in range(3):
        ips = [v4(partition + i) for i in range(5)] + [v6(2 * partition + i) for i in range(4)]
        seen += ips
        invalid: list[bytes | None] = [NOT_JSON] * partition + [None] * (2 - partition)
        values = [event(ip) for ip in ips] + invalid + [BAD_IP]
        tally.count(partition, range(50, 50 + len(values)), values)
    return tally, seen


def test_per_partition_tallies_add_up_to_the_totals() -> None:
    tally, seen = _three_partitions()
    parts = tally.partitions.values()
    assert tally.messages == sum(p.messages for p in parts) == 3 * 12
    assert tally.invalid == sum((p.invalid for p in parts), Counter())
    assert tally.invalid == Counter({"not_json": 3, "empty": 3, "bad_device_ip": 3})
    assert len(tally.ips) == distinct(seen)  # addresses shared by partitions count once
    assert sum(len(p.ips) for p in parts) > len(tally.ips)
    assert all(p.next_offset == 62 for p in parts)


# ---------------------------------------------------------------- Tracker.run


def test_exit_at_end_stops_once_every_assigned_partition_is_at_its_end() -> None:
    ips = [v4(i) for i in range(6)] + [v6(i) for i in range(3)]
    source = FakeSource(
        [
            batch({0: numbered([event(ip) for ip in ips[:5]]), 1: numbered([NOT_JSON])}),
            batch({1: numbered([event(ip) for ip in ips[5:]], 1)}, at_end={0: True}),
            batch(at_end={1: True}),
            batch({0: numbered([event(v4(1000))], 5)}),  # never read: the run has ended
        ],
        assigned={0, 1},
    )
    stats = tracker_for(source, exit_at_end=True).run()
    assert source.polls == 3
    assert not source.overrun
    assert (stats.messages, stats.unique_ips, stats.invalid) == (
        len(ips) + 1,
        distinct(ips),
        {"not_json": 1},
    )


def test_exit_at_end_waits_for_a_partition_that_got_records_after_its_end() -> None:
    source = FakeSource(
        [
            batch({1: numbered([event(v4(0))])}, at_end={0: True}),
            batch({0: numbered([event(v4(1)), event(v4(2))])}, at_end={1: True}),  # 0 moves on
            batch({0: numbered([event(v4(3))], 2)}),
            batch(at_end={0: True}),
        ],
        assigned={0, 1},
    )
    stats = tracker_for(source, exit_at_end=True).run()
    assert source.polls == 4
    assert not source.overrun
    assert (stats.messages, stats.unique_ips) == (4, 4)


def test_exit_at_end_waits_for_every_assigned_partition() -> None:
    source = FakeSource(
        [batch({0: numbered([event(v4(0))])}, at_end={0: True}), batch(at_end={2: True})],
        assigned={0, 1, 2},
    )
    tracker_for(source, exit_at_end=True).run()
    assert source.overrun  # partition 1 never reached its end: only the stop ended the run


def test_exit_at_end_waits_while_nothing_is_assigned() -> None:
    source = FakeSource([batch(at_end={0: True})], assigned=set())
    tracker_for(source, exit_at_end=True).run()
    assert source.overrun


def test_without_exit_at_end_the_end_of_every_partition_does_not_stop_it() -> None:
    source = FakeSource(
        [batch({0: numbered([event(v4(0))])}, at_end={0: True}), batch(at_end={0: True})],
        assigned={0},
    )
    stats = tracker_for(source).run()
    assert source.overrun
    assert stats.messages == 1


def test_a_stop_set_before_running_polls_nothing() -> None:
    source = FakeSource([batch({0: numbered([event(v4(0))])})], assigned={0})
    tracker = tracker_for(source)
    tracker.stop.set()
    stats = tracker.run()
    assert source.polls == 0
    assert (stats.messages, stats.unique_ips) == (0, 0)


def test_a_stop_during_a_batch_ends_the_run_after_it() -> None:
    source = FakeSource([batch({0: numbered([event(v4(i)) for i in range(3)])})], assigned={0})
    tracker = tracker_for(source)
    first_poll = source.poll

    def poll_then_stop(max_records: int, timeout: float) -> Polled:
        tracker.stop.set()  # as the signal handler would, while the batch is in flight
        return first_poll(max_records, timeout)

    source.poll = poll_then_stop  # type: ignore[method-assign]
    stats = tracker.run()
    assert source.polls == 1
    assert stats.messages == 3  # the batch in hand is still counted


def test_a_stop_from_another_thread_ends_a_running_tracker() -> None:
    source = FakeSource([], assigned={0})
    source.exhausted = lambda: None  # polls forever, empty
    tracker = Tracker(source)
    thread = threading.Thread(target=tracker.run, daemon=True)
    thread.start()
    tracker.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_on_invalid_is_called_once_per_reason_with_its_first_record() -> None:
    calls: list[tuple[int, int, Reason, bytes | None]] = []
    source = FakeSource(
        [
            batch(
                {
                    3: numbered([event(v4(0)), NOT_JSON, event(v4(1)), None, BAD_STAMP], 40),
                    7: numbered([b"[1]", NOT_JSON, BAD_IP], 900),
                }
            ),
            batch({3: numbered([NOT_JSON, None, b"[2]", BAD_STAMP, BAD_IP], 45)}),
        ],
        assigned={3, 7},
    )
    tracker = Tracker(source, on_invalid=lambda *call: calls.append(call))
    source.exhausted = tracker.stop.set
    tracker.run()
    assert sorted(calls, key=lambda call: call[2]) == sorted(
        [
            (3, 41, Reason.NOT_JSON, NOT_JSON),
            (3, 43, Reason.EMPTY, None),
            (3, 44, Reason.BAD_TIMESTAMP, BAD_STAMP),
            (7, 900, Reason.NOT_OBJECT, b"[1]"),
            (7, 902, Reason.BAD_DEVICE_IP, BAD_IP),
        ],
        key=lambda call: call[2],
    )


def test_on_invalid_names_the_right_offset_in_a_replayed_batch() -> None:
    calls: list[tuple[int, int, Reason, bytes | None]] = []
    replay: list[bytes | None] = [*(event(v4(i)) for i in range(4)), b"[]", event(v4(9))]
    source = FakeSource(
        [batch({0: numbered(replay[:3], 10)}), batch({0: numbered(replay, 10)})],
        assigned={0},
    )
    tracker = Tracker(source, on_invalid=lambda *call: calls.append(call))
    source.exhausted = tracker.stop.set
    stats = tracker.run()
    assert calls == [(0, 14, Reason.NOT_OBJECT, b"[]")]
    assert stats.messages == len(replay)


def test_done_is_told_the_next_offset_of_each_partition_in_the_batch() -> None:
    source = FakeSource(
        [
            batch({0: numbered([event(v4(i)) for i in range(5)]), 1: numbered([NOT_JSON] * 3, 7)}),
            batch({1: numbered([event(v4(0)), event(v4(1))], 10)}, at_end={0: True}),
            batch(at_end={1: True}),  # no records: nothing to mark
            batch({0: numbered([event(v4(0))] * 3, 2)}),  # a replay: still at 5
        ],
        assigned={0, 1},
    )
    tracker_for(source).run()
    assert source.done_calls == [{0: 5, 1: 10}, {1: 12}, {0: 5}]


def test_stats_report_health_partitions_and_the_summary() -> None:
    ips = [v4(i) for i in range(7)] + [v6(i) for i in range(2)] + [v4(3)]
    invalid: list[bytes | None] = [NOT_JSON, NOT_JSON, None, BAD_STAMP]
    source = FakeSource(
        [batch({0: numbered([event(ip) for ip in ips]), 2: numbered(invalid)})], assigned={0, 2}
    )
    source.brokers_up.clear()
    stats = tracker_for(source).run()
    assert isinstance(stats, Stats)
    assert stats.healthy is False
    assert stats.partitions == tuple(source.partitions())
    assert stats.invalid_total == len(invalid)
    summary = stats.summary()
    elapsed, first = summary.pop("elapsed"), summary.pop("first_record_at")
    assert summary == {
        "unique_ips": distinct(ips),
        "messages": len(ips) + len(invalid),
        "invalid": len(invalid),
        "invalid_by_reason": {"bad_timestamp": 1, "empty": 1, "not_json": 2},
    }
    assert isinstance(elapsed, float)
    assert isinstance(first, float)
    assert 0 <= first <= elapsed
    assert round(elapsed, 3) == elapsed
    line = json.loads(json.dumps(stats.summary()))  # the line `track` prints
    assert line["invalid_by_reason"] == {"bad_timestamp": 1, "empty": 1, "not_json": 2}


def test_stats_are_healthy_while_a_broker_answers() -> None:
    source = FakeSource([], assigned={0})
    stats = tracker_for(source).run()
    assert stats.healthy is True
    assert (stats.unique_ips, stats.messages, stats.invalid, stats.invalid_total) == (0, 0, {}, 0)


def test_stats_summary_of_a_fixed_snapshot() -> None:
    stats = Stats(
        unique_ips=3,
        messages=10,
        invalid={"empty": 2, "not_json": 5},
        rate=1.5,
        elapsed=12.34567,
        updated_at="2024-01-01T00:00:00.000Z",
    )
    assert stats.invalid_total == 7
    assert stats.summary() == {
        "unique_ips": 3,
        "messages": 10,
        "invalid": 7,
        "invalid_by_reason": {"empty": 2, "not_json": 5},
        "elapsed": 12.346,
        "first_record_at": None,  # nothing read
    }


def test_on_error_is_told_each_distinct_consumer_error_once_and_counting_goes_on() -> None:
    errors = ["Broker: Unknown topic or partition", "Local: Broker transport failure"]
    first, second = batch({0: numbered([event(v4(1))], 0)}), batch({0: numbered([event(v4(2))], 1)})
    first.errors = [errors[0], errors[0]]
    second.errors = [errors[1], errors[0]]
    source = FakeSource([first, second], assigned={0})
    told: list[str] = []
    tracker = Tracker(source, on_error=told.append)
    source.exhausted = tracker.stop.set
    stats = tracker.run()
    assert told == errors
    assert (stats.messages, stats.unique_ips) == (2, 2)


# ---------------------------------------------------------------- rebalances


@dataclass
class FakeKeeper:
    """Records what the tracker tells the state, and what it had counted at that moment."""

    tracker: Tracker | None = None
    calls: list[tuple[str, list[int], int]] = field(default_factory=list)
    commits_refused: int = 0
    producers_abandoned: int = 0

    def _note(self, what: str, partitions: list[int]) -> None:
        assert self.tracker is not None
        self.calls.append((what, partitions, self.tracker.tally.messages))

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        self._note("assigned", partitions)
        return {p: 100 for p in partitions}

    def revoked(self, partitions: list[int]) -> None:
        self._note("revoked", partitions)

    def lost(self, partitions: list[int]) -> None:
        self._note("lost", partitions)

    def counted(self, next_offsets: dict[int, int]) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def finish(self) -> None:
        self._note("finish", [])

    def partitions(self) -> list[PartitionInfo]:
        return []


class Deferred(Inline):
    """A checker whose checks finish only when their result is asked for (a slow worker)."""

    def submit(self, values: Sequence[bytes | None]) -> Future[Checked]:
        return Future()

    def result(self, future: Future[Checked], values: Sequence[bytes | None]) -> Checked:
        return check_events(values)


def test_revoked_partitions_are_counted_to_the_last_record_read_before_the_state_is_told() -> None:
    values = [event(v4(i)) for i in range(3000)]
    source = FakeSource([batch({0: numbered(values)})], assigned={0})
    keeper = FakeKeeper()
    tracker = Tracker(source, keeper=keeper, checker=Deferred())
    keeper.tracker = tracker
    first_poll = source.poll

    def poll_then_revoke(max_records: int, timeout: float) -> Polled:
        if source.polls == 1:  # the first batch is in flight, not counted yet
            tracker.revoked([0])
            source.assigned.clear()
        return first_poll(max_records, timeout)

    source.poll = poll_then_revoke  # type: ignore[method-assign]
    source.exhausted = tracker.stop.set
    tracker.run()
    assert ("revoked", [0], 3000) in keeper.calls  # all of it counted first


def test_records_of_a_partition_not_assigned_any_more_are_not_counted() -> None:
    source = FakeSource(
        [batch({0: numbered([event(v4(1))]), 1: numbered([event(v4(2))] * 5)})], assigned={0}
    )
    stats = tracker_for(source).run()
    assert stats.messages == 1


def test_assigned_partitions_start_where_the_state_says_and_lost_ones_are_dropped() -> None:
    source = FakeSource([], assigned={0, 1})
    keeper = FakeKeeper()
    tracker = Tracker(source, keeper=keeper)
    keeper.tracker = tracker
    assert tracker.assigned([0, 1]) == {0: 100, 1: 100}
    tracker.lost([1])
    assert [call[:2] for call in keeper.calls] == [("assigned", [0, 1]), ("lost", [1])]
