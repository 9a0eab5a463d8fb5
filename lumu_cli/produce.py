"""`lumu produce`: synthetic events -> a token bucket -> an idempotent producer -> a summary."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lumu_cli.kafka_io import Sender
from lumu_cli.synth import Synth

__all__ = ["Progress", "TokenBucket", "produce"]

CHUNK = 1000  # records made and queued at a time when the rate allows
TICK = 0.02  # seconds a paced run sleeps at least between batches: 50 wake-ups a second at most
BURST = 0.1  # seconds of records a paced run saves up: a late wake-up catches up, a stall not
STOP_CHECK = 0.1  # seconds a paced run sleeps at most before it looks at `stop` again
FLUSH_SECONDS = 60.0


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; it starts empty, so no opening burst."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = 0.0
        self.last = clock()

    def take(self, want: int) -> int:
        """Take up to `want` whole tokens; how many were taken (0 means wait `wait()` s)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        got = min(want, int(self.tokens))
        self.tokens -= got
        return got

    def wait(self) -> float:
        """Seconds until the next whole token."""
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass
class Progress:
    """How far a run has got, for the progress display."""

    sent: int
    delivered: int
    failed: int
    elapsed: float
    total: int | None


def produce(
    sender: Sender,
    synth: Synth,
    *,
    rate: float,
    count: int | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Progress], None] = lambda _: None,
) -> dict[str, object]:
    """Send until `count` records, `duration` seconds or `stop`; flush; the summary."""
    stop = stop or threading.Event()
    start = time.monotonic()
    end = start + duration if duration is not None else math.inf
    bucket = TokenBucket(rate, burst=max(1.0, rate * BURST)) if rate else None
    sent = 0
    while not stop.is_set():
        now = time.monotonic()
        if (count is not None and sent >= count) or now >= end:
            break
        want = CHUNK if count is None else min(CHUNK, count - sent)
        if bucket is not None:
            want = bucket.take(want)
            if not want:
                sender.wait(min(max(bucket.wait(), TICK), STOP_CHECK, end - now))
                continue
        sender.send(synth.records(want))
        sent += want
        progress(Progress(sent, sender.delivered, sender.failed, now - start, count))
    undelivered = sender.flush(FLUSH_SECONDS)
    elapsed = time.monotonic() - start
    progress(Progress(sent, sender.delivered, sender.failed, elapsed, count))
    return {
        "sent": sent,
        "delivered": sender.delivered,
        "failed": sender.failed + undelivered,
        "distinct_ips": synth.distinct_ips,
        "invalid": sum(synth.invalid.values()),
        "invalid_by_reason": dict(sorted(synth.invalid.items())),
        "elapsed": round(elapsed, 3),
        "rate": round(sent / elapsed, 1) if elapsed else 0.0,
    }
