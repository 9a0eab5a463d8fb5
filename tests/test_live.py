"""What `track` draws on stderr: the live view of a snapshot, and the plain status line."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from lumu_cli.kafka_io import PartitionInfo
from lumu_cli.live import big_number, render, status_line
from lumu_cli.tracker import Stats

STATS = Stats(
    unique_ips=1_234_567,
    messages=2_000_000,
    invalid={"bad_timestamp": 12, "not_json": 3},
    rate=51_234.4,
    elapsed=3725.0,
    updated_at="2026-11-28T07:00:00.000Z",
    partitions=(
        PartitionInfo(0, 700_000, 700_010),
        PartitionInfo(1, None, None),
        PartitionInfo(2, 650_000, 650_042, local=False, as_of="2026-11-28T06:59:59.000Z"),
    ),
    healthy=False,
)


def drawn(stats: Stats) -> str:
    console = Console(width=100, record=True, color_system=None)
    console.print(render(stats, "device-events"))
    return console.export_text()


def test_big_number_draws_each_digit_and_separator_in_three_rows() -> None:
    rows = big_number(1_234_567).plain.split("\n")
    assert len(rows) == 3
    assert len({len(row) for row in rows}) == 1
    assert big_number(8).plain == "█▀█\n█▀█\n▀▀▀"  # one digit, as drawn
    assert big_number(1_000).plain.split("\n")[2].count("▄▀") == 1  # the thousands comma


def test_live_view_shows_every_figure_of_the_snapshot() -> None:
    text = drawn(STATS)
    assert "lumu track device-events" in text
    assert big_number(1_234_567).plain.split("\n")[0] in text
    for label, value in [
        ("messages", "2,000,000"),
        ("messages/s", "51,234"),
        ("invalid", "15"),
        ("bad_timestamp", "12"),
        ("not_json", "3"),
        ("uptime", "1:02:05"),
        ("broker", "unreachable, retrying"),
    ]:
        assert any(label in line and value in line for line in text.splitlines()), label
    rows = [line.split() for line in text.splitlines()]
    assert ["│", "0", "700,000", "10", "here", "│"] in rows
    assert ["│", "1", "-", "-", "here", "│"] in rows
    assert ["│", "2", "650,000", "42", "elsewhere,", "as", "of", "06:59:59", "│"] in rows


def test_live_view_of_a_healthy_broker_does_not_warn() -> None:
    healthy = Stats(1, 1, {}, 0.0, 1.0, "2026-11-28T07:00:00.000Z")
    assert "unreachable" not in drawn(healthy)


def test_status_line_is_one_plain_line() -> None:
    assert status_line(STATS) == (
        "lumu: 1,234,567 unique IPs, 2,000,000 messages (51,234/s), 15 invalid, lag 10, "
        "state lag 42, broker unreachable"
    )
    only_here = Stats(3, 4, {}, 0.0, 1.0, "2026-11-28T07:00:00.000Z", STATS.partitions[:1])
    assert status_line(only_here) == ("lumu: 3 unique IPs, 4 messages (0/s), 0 invalid, lag 10")


def test_waiting_for_the_topic_is_said_in_the_view_and_the_status_line() -> None:
    waiting = Stats(0, 0, {}, 0.0, 1.0, "2026-11-28T07:00:00.000Z", waiting="topic 'x' on h:9092")
    assert status_line(waiting) == "lumu: waiting for topic 'x' on h:9092"
    assert any(
        "waiting for" in line and "topic 'x' on h:9092" in line
        for line in drawn(waiting).splitlines()
    )
    assert "waiting" not in drawn(STATS)
    assert status_line(replace(waiting, healthy=False)).endswith(", broker unreachable")


def test_the_view_shows_the_current_window_of_each_size_under_the_all_time_figure() -> None:
    import numpy as np

    from lumu_cli.windows import Window, WindowSets

    hour, day = 3_600_000, 86_400_000
    now = 1_764_928_800_000 + hour // 2  # 2025-12-05T10:30:00Z
    hourly, daily = WindowSets(Window(hour)), WindowSets(Window(day, keep=31))
    for sets in (hourly, daily):
        times = np.array([now, now, now - hour, now - 400 * day], np.int64)
        sets.add(now, times, np.array([1, 2, 3, 4], np.uint32))
    shown = drawn(replace(STATS, windows=(hourly, daily), clock_ms=now))
    assert "1h (10:00)" in shown
    assert "1d (today)" in shown
    hour_row = next(line for line in shown.splitlines() if "1h (10:00)" in line).split()
    day_row = next(line for line in shown.splitlines() if "1d (today)" in line).split()
    assert hour_row[3:7] == ["2", "2", "1", "0"]  # unique, messages, late, future
    assert day_row[3:7] == ["3", "3", "1", "0"]
    assert shown.index("1h (10:00)") < shown.index("messages/s")  # under the all-time figure
    assert "window" not in drawn(STATS)  # without --window: nothing
