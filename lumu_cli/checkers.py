"""Where records are checked: in the consume loop's own thread, in threads, or in processes.

With the native checker (native_events), a batch is checked without the GIL, so a thread beside
the consume loop checks one batch while the loop reads the next: `Threaded`. Without it, checking
is Python work (decode, address, timestamp), and a second core helps only through a second
process: `Pooled`. Either hands back a future; the tracker applies results in the order the
batches were read, so counts and offsets stay exact.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Protocol

from lumu_cli.events import Checked
from lumu_cli.native_events import check_events

__all__ = ["Checker", "Inline", "Pooled", "Threaded", "default_workers"]

POOL_MIN = 2000  # a smaller batch is checked at once: shipping it would cost more than it saves


def default_workers() -> int:
    """One worker process per core beyond the consume loop's own, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class Checker(Protocol):
    times: bool

    def submit(self, values: Sequence[bytes | None]) -> Future[Checked]: ...
    def result(self, future: Future[Checked], values: Sequence[bytes | None]) -> Checked: ...
    def close(self) -> None: ...


class Inline:
    """Checks in the caller's thread; the future is done when returned. With `times`, each valid
    record's event time is kept too (windows need it)."""

    times = False

    def submit(self, values: Sequence[bytes | None]) -> Future[Checked]:
        future: Future[Checked] = Future()
        future.set_result(check_events(values, times=self.times))
        return future

    def result(self, future: Future[Checked], values: Sequence[bytes | None]) -> Checked:
        """The check `submit` started (waiting for it if need be)."""
        return future.result()

    def close(self) -> None:
        pass


def _worker_start(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once its parent is gone (a kill -9 leaves no one to shut it down)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


class Pooled(Inline):
    """Checks large batches in `workers` processes, started with the first large batch.

    A worker takes a third of a second of CPU to start (Python, numpy, msgspec): a reader that
    never falls behind (or an empty topic) never pays for one.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: Executor | None = None
        self._broken = False

    def submit(self, values: Sequence[bytes | None]) -> Future[Checked]:
        if self._broken or len(values) < POOL_MIN:
            return super().submit(values)
        if self._pool is None:
            import multiprocessing  # (here: a run without workers starts sooner)
            from concurrent.futures import ProcessPoolExecutor

            spawn = multiprocessing.get_context("spawn")  # no fork of librdkafka's threads
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=spawn, initializer=_worker_start, initargs=(os.getpid(),)
            )
        try:
            return self._pool.submit(partial(check_events, times=self.times), values)
        except BrokenExecutor:  # a worker died: go on without the pool
            self._broken = True
            return super().submit(values)

    def result(self, future: Future[Checked], values: Sequence[bytes | None]) -> Checked:
        try:
            return future.result()
        except BrokenExecutor:  # its worker died: check here, and from now on
            self._broken = True
            return check_events(values, times=self.times)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


class Threaded(Inline):
    """Checks large batches in `workers` threads, for the native checker, which lets go of the
    GIL while it reads a batch.

    Only when asked (--workers N): on a 2-core machine shared with the broker, a thread made
    `track -e` over 1M records no faster (1.82 s against 1.75 s in the loop, medians of 5). What
    is left is work that holds the GIL (making the messages, adding to the sets), and the
    thread waits for it to be handed over.
    """

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lumu-check")

    def submit(self, values: Sequence[bytes | None]) -> Future[Checked]:
        if len(values) < POOL_MIN:
            return super().submit(values)
        return self._pool.submit(partial(check_events, times=self.times), values)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
