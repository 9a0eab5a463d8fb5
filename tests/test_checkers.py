"""Checking records in worker processes gives exactly what checking them in place gives."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor

from lumu_cli.checkers import POOL_MIN, Inline, Pooled
from lumu_cli.state import Ephemeral
from lumu_cli.synth import Synth
from lumu_cli.tracker import Tracker
from tests.test_tracker import FakeSource, batch, numbered


def records(count: int, seed: int) -> list[bytes | None]:
    synth = Synth(500, ipv6_ratio=0.3, invalid_ratio=0.2, seed=seed)
    return [value for _, value in synth.records(count)]


def test_pooled_checks_equal_inline_checks_for_large_and_small_batches() -> None:
    pooled = Pooled(1)
    try:
        for size, seed in [(POOL_MIN * 2, 1), (POOL_MIN - 1, 2), (POOL_MIN, 3)]:
            values = records(size, seed)
            in_place = Inline().submit(values).result()
            future = pooled.submit(values)
            assert pooled.result(future, values) == in_place
    finally:
        pooled.close()


def test_a_dead_worker_is_replaced_by_checking_in_place() -> None:
    pooled = Pooled(1)
    try:
        values = records(POOL_MIN * 2, 4)
        assert pooled.result(pooled.submit(values), values) == Inline().submit(values).result()
        assert isinstance(pooled._pool, ProcessPoolExecutor)
        for pid in list(pooled._pool._processes):
            os.kill(pid, signal.SIGKILL)
        future = pooled.submit(values)  # the pool may not know yet that it is broken
        assert pooled.result(future, values) == Inline().submit(values).result()
        again = pooled.submit(values)  # from now on in place
        assert again.done()
        assert pooled.result(again, values) == Inline().submit(values).result()
    finally:
        pooled.close()


def test_a_tracker_with_workers_counts_and_commits_exactly_as_one_without() -> None:
    def script() -> list:  # type: ignore[type-arg]
        return [
            batch({0: numbered(records(POOL_MIN * 2, 5), 0), 1: numbered(records(50, 6), 0)}),
            batch({0: numbered(records(POOL_MIN, 7), POOL_MIN * 2)}, at_end={1: True}),
            batch({0: numbered(records(POOL_MIN, 7), POOL_MIN * 2)}),  # a replay
            batch(at_end={0: True}),
        ]

    results = []
    for checker in (Inline(), Pooled(1)):
        source = FakeSource(script(), assigned={0, 1})
        tracker = Tracker(source, keeper=Ephemeral(source), exit_at_end=True, checker=checker)
        source.exhausted = tracker.stop.set
        stats = tracker.run()
        stored = {p: o for call in source.done_calls for p, o in call.items()}  # the last of each
        results.append((stats.unique_ips, stats.messages, stats.invalid, stored))
        assert not source.overrun  # it stopped at the end, with nothing left in flight
    assert results[0] == results[1]
    assert results[0][1] == POOL_MIN * 3 + 50
    assert results[0][3] == {0: POOL_MIN * 3, 1: 50}
