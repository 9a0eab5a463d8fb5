"""lumu_cli/windows.py: window sizes, which window a record counts in, which are kept, and the
exact sets per window, held to a plain reference that groups the records itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumu_cli.errors import UsageError
from lumu_cli.windows import DAY_MS, DEFAULT_KEEP, Window, WindowSets, parse_windows

HOUR = 3_600_000


def ms(text: str) -> int:
    instant = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("given_", "names"),
    [
        (["1h"], [("1h", DEFAULT_KEEP)]),
        (["1d:31", "1h"], [("1h", 48), ("1d", 31)]),  # smallest first
        (["1h,1d:7"], [("1h", 48), ("1d", 7)]),  # LUMU_WINDOWS: comma-separated
        (["60m"], [("1h", 48)]),
        (["1440m"], [("1d", 48)]),
        (
            ["15m", "5m", "1m", "6h", "30s"],
            [("30s", 48), ("1m", 48), ("5m", 48), ("15m", 48), ("6h", 48)],
        ),
    ],
)
def test_sizes_that_divide_a_day(given_: list[str], names: list[tuple[str, int]]) -> None:
    assert [(w.name, w.keep) for w in parse_windows(given_)] == names


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("7m", "7m does not divide a day evenly"),
        ("2d", "2d does not divide a day evenly"),
        ("0h", "0h does not divide a day evenly"),
        ("1w", "expected SIZE[:KEEP]"),
        ("h", "expected SIZE[:KEEP]"),
        ("1h:", "expected SIZE[:KEEP]"),
        ("1h:0", "KEEP must be 1 to 100,000, not 0"),
        ("1h:100001", "KEEP must be 1 to 100,000"),
        ("1h,60m", "1h is given twice"),
    ],
)
def test_a_bad_window_is_a_usage_error_naming_it(text: str, words: str) -> None:
    with pytest.raises(UsageError) as failed:
        parse_windows([text])
    assert str(failed.value).startswith(f"--window {text!r}: ")
    assert words in str(failed.value)
    assert failed.value.exit_code == 2


def test_windows_are_aligned_to_utc_and_hold_their_first_millisecond_only() -> None:
    hour, day = Window(HOUR), Window(DAY_MS)
    assert hour.start(ms("2026-12-04T10:00:00")) == ms("2026-12-04T10:00:00")
    assert hour.start(ms("2026-12-04T10:59:59.999")) == ms("2026-12-04T10:00:00")
    assert hour.start(ms("2026-12-04T11:00:00")) == ms("2026-12-04T11:00:00")
    assert day.start(ms("2024-02-29T23:59:59.999")) == ms("2024-02-29T00:00:00")  # leap day
    assert day.start(ms("2024-03-01T00:00:00")) == ms("2024-03-01T00:00:00")
    assert hour.start(-1) == -HOUR  # before 1970 (epochs with a unit may be negative)
    assert day.start(ms("1969-12-31T12:00:00")) == -DAY_MS


def test_the_kept_range_is_keep_windows_up_to_now_and_one_ahead() -> None:
    now = ms("2026-12-05T10:30:00")
    first, last = Window(HOUR, keep=24).kept(now)
    assert first == ms("2026-12-04T11:00:00")  # 24 windows up to the current one
    assert last == ms("2026-12-05T11:00:00")  # and the one after it
    sets = WindowSets(Window(HOUR, keep=24))
    times = np.array(
        [first - 1, first, ms("2026-12-05T10:59:59.999"), last, last + HOUR - 1, last + HOUR],
        np.int64,
    )
    changed = sets.add(now, times, np.arange(len(times), dtype=np.uint32))
    assert (sets.late, sets.future) == (1, 1)  # the first and the last millisecond outside
    assert changed == set(sets.counts) == {first, ms("2026-12-05T10:00:00"), last}
    assert sets.counts[last].messages == 2


def test_expire_drops_what_falls_out_as_the_clock_moves() -> None:
    sets = WindowSets(Window(HOUR, keep=2))
    now = ms("2026-12-05T10:30:00")
    times = np.array([ms("2026-12-05T09:10:00"), ms("2026-12-05T10:10:00")], np.int64)
    sets.add(now, times, np.array([1, 2], np.uint32))
    assert sets.expire(now) == []
    assert sets.expire(now + HOUR) == [ms("2026-12-05T09:00:00")]
    assert list(sets.counts) == [ms("2026-12-05T10:00:00")]


def reference(
    window: Window, now: int, records: list[tuple[int, int | bytes]]
) -> tuple[dict[int, tuple[set[int | bytes], int]], int, int]:
    """Group the records by window, plainly: start -> (addresses, records); late; future."""
    first = (now // window.size_ms - window.keep + 1) * window.size_ms
    last = (now // window.size_ms + 1) * window.size_ms
    groups: dict[int, tuple[set[int | bytes], int]] = {}
    late = future = 0
    for millis, ip in records:
        start = millis // window.size_ms * window.size_ms
        if start < first:
            late += 1
        elif start > last:
            future += 1
        else:
            ips, count = groups.get(start, (set(), 0))
            groups[start] = (ips | {ip}, count + 1)
    return groups, late, future


RECORDS = st.lists(
    st.tuples(
        st.integers(-3 * DAY_MS, 3 * DAY_MS),
        st.integers(0, 40) | st.binary(min_size=16, max_size=16).map(lambda b: b"\x20" + b[1:]),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([60_000, 15 * 60_000, HOUR, 6 * HOUR, DAY_MS]),
    st.integers(1, 60),
    st.integers(-DAY_MS, DAY_MS),
    st.lists(RECORDS, min_size=1, max_size=3),
    st.integers(1, 80),
)
def test_windows_and_their_unions_equal_a_plain_grouping(
    size: int, keep: int, now: int, partitions: list[list[tuple[int, int | bytes]]], last: int
) -> None:
    window = Window(size, keep)
    parts = []
    for records in partitions:
        sets = WindowSets(window)
        v4 = [(m, ip) for m, ip in records if isinstance(ip, int)]
        v6 = [(m, ip) for m, ip in records if isinstance(ip, bytes)]
        sets.add(
            now,
            np.array([m for m, _ in v4], np.int64),
            np.array([ip for _, ip in v4], np.uint32),
            [m for m, _ in v6],
            [ip for _, ip in v6],
        )
        groups, late, future = reference(window, now, records)
        assert (sets.late, sets.future) == (late, future)
        assert {start: (len(c.ips), c.messages) for start, c in sets.counts.items()} == {
            start: (len(ips), count) for start, (ips, count) in groups.items()
        }
        parts.append(sets)
    union = WindowSets.union(parts, window)
    everything = [record for records in partitions for record in records]
    groups, late, future = reference(window, now, everything)
    assert {start: (len(c.ips), c.messages) for start, c in union.counts.items()} == {
        start: (len(ips), count) for start, (ips, count) in groups.items()
    }
    assert (union.late, union.future) == (late, future)
    start, end, unique, messages = union.last(last, now)
    current = now // size * size
    assert (start, end) == (current - (last - 1) * size, current + size)
    chosen = [(ips, count) for at, (ips, count) in groups.items() if start <= at < end]
    assert unique == len(set().union(*(ips for ips, _ in chosen)))
    assert messages == sum(count for _, count in chosen)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
        | st.integers(0, 10**14).map(str)
        | st.sampled_from(["nonsense", "2021-02-30T00:00:00Z", "Dec  3 16:15:30"]),
        min_size=1,
        max_size=50,
    )
)
def test_a_block_gives_the_epoch_milliseconds_of_each_good_line(values: list[object]) -> None:
    """What windows count by: the event time of a record, as `lumu ts parse` reads it."""
    from lumu_cli.errors import InvalidTimestamp
    from lumu_cli.timestamps import EPOCH, parse_timestamp
    from lumu_cli.tsstream import parse_block

    texts = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
    data = ("\n".join(texts) + "\n").encode()
    block = parse_block(data)
    millis = block.millis()
    timed = parse_block(data, render=False, times=True)  # as records are checked: no text
    assert timed.ok.tolist() == block.ok.tolist()
    assert timed.millis().tolist() == millis.tolist()
    for row, text in enumerate(texts):
        try:
            instant = parse_timestamp(text)
        except InvalidTimestamp:
            assert not block.ok[row]
            continue
        assert millis[row] == (instant - EPOCH) // timedelta(milliseconds=1)


def test_a_tally_counts_each_partition_by_window_and_unions_them() -> None:
    from lumu_cli.snapshots import Tally

    now = ms("2026-12-05T10:30:00")
    hour, day = Window(HOUR, keep=24), Window(DAY_MS, keep=2)
    tally = Tally([hour, day], clock=lambda: now)

    def event(ip: str, stamp: str) -> bytes:
        return f'{{"device_ip": "{ip}", "timestamp": "{stamp}"}}'.encode()

    tally.count(0, [0, 1, 2], [
        event("10.0.0.1", "2026-12-05T10:10:00Z"),
        event("10.0.0.2", "2026-12-05T09:59:59.999Z"),
        event("10.0.0.1", "2026-12-01T00:00:00Z"),  # late for both
    ])  # fmt: skip
    tally.count(1, [0, 1, 2], [
        event("10.0.0.1", "2026-12-05T10:20:00Z"),
        event("2001:db8::1", "2026-12-05T10:21:00Z"),
        event("10.0.0.3", "2027-01-01T00:00:00Z"),  # future for both
    ])  # fmt: skip
    hourly = tally.window_sets(hour)
    assert {start: (len(c.ips), c.messages) for start, c in hourly.counts.items()} == {
        ms("2026-12-05T09:00:00"): (1, 1),
        ms("2026-12-05T10:00:00"): (2, 3),  # 10.0.0.1 twice, in two partitions: one address
    }
    assert (hourly.late, hourly.future) == (1, 1)
    daily = tally.window_sets(day)
    assert {start: (len(c.ips), c.messages) for start, c in daily.counts.items()} == {
        ms("2026-12-05T00:00:00"): (3, 4)
    }
    assert len(tally.ips) == 4  # every valid record, all time: windows change nothing there


def test_the_summary_and_count_give_windows_in_the_documented_shape() -> None:
    from lumu_cli.tracker import Stats
    from lumu_cli.windows import WindowCounts, describe

    sets = WindowSets(Window(HOUR, keep=48), late=12, future=3)
    sets.counts[ms("2026-12-04T11:00:00")] = WindowCounts(messages=7)
    sets.counts[ms("2026-12-04T10:00:00")] = WindowCounts(messages=5000)
    sets.counts[ms("2026-12-04T10:00:00")].ips.add_v4([1, 2, 3])
    shape = {
        "1h": {
            "keep": 48,
            "late": 12,
            "future": 3,
            "counts": [  # ascending by start
                {"start": "2026-12-04T10:00:00.000Z", "unique_ips": 3, "messages": 5000},
                {"start": "2026-12-04T11:00:00.000Z", "unique_ips": 0, "messages": 7},
            ],
        }
    }
    assert describe([sets]) == shape
    stats = Stats(0, 0, {}, 0.0, 0.0, "", windows=(sets,))
    assert stats.summary()["windows"] == shape
    assert "windows" not in Stats(0, 0, {}, 0.0, 0.0, "").summary()  # without --window: none


def test_windows_go_to_the_state_records_and_back_and_expire_as_tombstones() -> None:
    from lumu_cli.snapshots import Tally, decode

    clock = [ms("2026-12-05T10:30:00")]
    hour = Window(HOUR, keep=2)
    owner, follower = Tally([hour], clock=lambda: clock[0]), Tally([hour], clock=lambda: clock[0])
    owner.take(0, 0)

    def event(ip: str, stamp: str) -> bytes:
        return f'{{"device_ip": "{ip}", "timestamp": "{stamp}"}}'.encode()

    def commit() -> int:
        records = owner.changes("t", [0], "now")
        owner.written([0], "now")
        follower.read("t", [decode(k, v) for k, v in records])
        return len(records)

    def seen(tally: Tally) -> dict[int, tuple[int, int]]:
        sets = tally.window_sets(hour)
        return {start: (len(c.ips), c.messages) for start, c in sets.counts.items()}

    owner.count(0, [0, 1, 2, 3], [
        event("10.0.0.1", "2026-12-05T09:10:00Z"),
        event("2001:db8::1", "2026-12-05T10:10:00Z"),
        event("10.0.0.2", "2026-12-05T10:11:00Z"),
        event("10.0.0.9", "2026-12-01T00:00:00Z"),  # late
    ])  # fmt: skip
    commit()
    assert (
        seen(follower)
        == seen(owner)
        == {ms("2026-12-05T09:00:00"): (1, 1), ms("2026-12-05T10:00:00"): (2, 2)}
    )
    assert follower.window_sets(hour).late == 1
    owner.count(0, [4], [event("10.0.0.2", "2026-12-05T10:12:00Z")])  # a repeat: meta only
    records = owner.changes("t", [0], "now")
    assert [k for k, _ in records if b"/w/" in k] == [
        f"t/0/w/1h/{ms('2026-12-05T10:00:00')}/meta".encode()
    ]
    owner.unwritten([0])  # not stored: due again
    owner.count(0, [5], [event("10.0.0.3", "2026-12-05T10:13:00Z")])
    commit()
    assert (
        seen(follower)
        == seen(owner)
        == {ms("2026-12-05T09:00:00"): (1, 1), ms("2026-12-05T10:00:00"): (3, 4)}
    )
    clock[0] += HOUR  # 11:30: the 09:00 window falls out, tombstoned
    commit()
    assert seen(follower) == seen(owner) == {ms("2026-12-05T10:00:00"): (3, 4)}
    assert commit() == 0  # nothing new: nothing written


def test_a_window_that_expires_while_only_followed_is_tombstoned_once_owned() -> None:
    from lumu_cli.snapshots import Tally, decode

    clock = [ms("2025-12-05T10:00:05")]
    minute = Window(60_000, keep=1)
    owner, heir = Tally([minute], clock=lambda: clock[0]), Tally([minute], clock=lambda: clock[0])
    owner.take(0, 0)
    stamp = clock[0] // 1000 - 1
    owner.count(0, list(range(20)), [
        f'{{"device_ip": "10.0.0.{n}", "timestamp": {stamp}}}'.encode() for n in range(20)
    ])  # fmt: skip
    records = owner.changes("t", [0], "now")
    owner.written([0], "now")
    heir.read("t", [decode(k, v) for k, v in records])  # the owner is killed: the heir follows
    clock[0] += 3 * 60_000
    assert heir.window_sets(minute).counts == {}  # expired in memory while only followed
    heir.take(0, 0)  # then owned: its records are due as tombstones
    window = f"t/0/w/1m/{ms('2025-12-05T10:00:00')}/".encode()
    written = [k for k, _ in records if k.startswith(window)]
    tombstones = [k for k, v in heir.changes("t", [0], "now") if v is None]
    assert sorted(tombstones) == sorted(written)
    assert len(written) == 2  # its meta and its one IPv4 piece
