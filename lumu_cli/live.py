"""What `track` shows on stderr: a Rich live view on a terminal, a plain status line otherwise.

`render` is a pure function of a stats snapshot; `StatusView` runs it about four times a second
from Rich's own refresh thread, so drawing never slows the consume loop.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lumu_cli.produce import Progress
from lumu_cli.timestamps import format_millis

if TYPE_CHECKING:  # not imported to run: `produce` shows its progress without the tracker
    import rich.progress  # (imported by produce's bar only: track starts without it)

    from lumu_cli.tracker import Stats

__all__ = ["ProduceProgress", "StatusView", "render", "status_line"]

# Digits three rows high, so the count reads from across the room.
_BIG = {
    "0": ("█▀█", "█ █", "▀▀▀"), "1": ("▄█ ", " █ ", "▀▀▀"), "2": ("▀▀█", "█▀▀", "▀▀▀"),
    "3": ("▀▀█", " ▀█", "▀▀▀"), "4": ("█ █", "▀▀█", "  ▀"), "5": ("█▀▀", "▀▀█", "▀▀▀"),
    "6": ("█▀▀", "█▀█", "▀▀▀"), "7": ("▀▀█", "  █", "  ▀"), "8": ("█▀█", "█▀█", "▀▀▀"),
    "9": ("█▀█", "▀▀█", "▀▀▀"), ",": ("  ", "  ", "▄▀"),
}  # fmt: skip


def big_number(value: int) -> Text:
    """`value` with thousands separators, in three-row block digits."""
    chars = f"{value:,}"
    rows = (" ".join(_BIG[char][row] for char in chars) for row in range(3))
    return Text("\n".join(rows), style="bold green")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def render(stats: Stats, topic: str = "") -> RenderableType:
    """The live view of one snapshot."""
    totals = Table.grid(padding=(0, 2))
    totals.add_row("messages", f"{stats.messages:,}")
    totals.add_row("messages/s", f"{stats.rate:,.0f}")
    totals.add_row("invalid", f"{stats.invalid_total:,}")
    for reason, count in stats.invalid.items():
        totals.add_row(f"  {reason}", f"{count:,}", style="yellow")
    totals.add_row("uptime", _duration(stats.elapsed))
    if stats.waiting:
        totals.add_row("waiting for", Text(stats.waiting, style="bold yellow"))
    if not stats.healthy:
        totals.add_row("broker", Text("unreachable, retrying", style="bold red"))
    partitions = Table("partition", "offset", "lag", "counted", box=None, header_style="bold")
    for info in stats.partitions:
        position = "-" if info.position is None else f"{info.position:,}"
        lag = "-" if info.lag is None else f"{info.lag:,}"
        where = "here" if info.local else f"elsewhere, as of {(info.as_of or '-')[11:19]}"
        partitions.add_row(str(info.partition), position, lag, where)
    parts: list[RenderableType] = [Text("unique device IPs"), big_number(stats.unique_ips)]
    if stats.windows:
        parts += ["", _windows(stats)]
    body = Group(*parts, "", totals, "", partitions)
    return Panel(body, title=f"lumu track {topic}".strip(), expand=False)


def _windows(stats: Stats) -> Table:
    """The current window of each size, under the all-time figure."""
    table = Table("window", "unique IPs", "messages", "late", "future", box=None,
                  header_style="bold")  # fmt: skip
    for sets in stats.windows:
        start = sets.window.start(stats.clock_ms)
        current = sets.counts.get(start)
        unique, messages = (len(current.ips), current.messages) if current else (0, 0)
        since = format_millis(start)[11:16] if sets.window.size_ms < 86_400_000 else "today"
        table.add_row(f"{sets.window.name} ({since})", f"{unique:,}", f"{messages:,}",
                      f"{sets.late:,}", f"{sets.future:,}")  # fmt: skip
    return table


def status_line(stats: Stats) -> str:
    """The plain form of the view, for a stderr that is not a terminal."""
    broker = "" if stats.healthy else ", broker unreachable"
    if stats.waiting:
        return f"lumu: waiting for {stats.waiting}{broker}"
    elsewhere = sum(not info.local for info in stats.partitions)
    state = f", state lag {stats.lag(local=False):,}" if elsewhere else ""
    return (
        f"lumu: {stats.unique_ips:,} unique IPs, {stats.messages:,} messages "
        f"({stats.rate:,.0f}/s), {stats.invalid_total:,} invalid, "
        f"lag {stats.lag(local=True):,}{state}{broker}"
    )


class StatusView:
    """Shows `stats()` on stderr while open: live on a terminal, a line every `every` s if not."""

    def __init__(
        self,
        stats: Callable[[], Stats],
        *,
        topic: str = "",
        every: float = 5.0,
        plain: bool = False,
    ) -> None:
        self.stats = stats
        self.topic = topic
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self.console = Console(stderr=True)
        self.plain = plain or not self.console.is_terminal

    def __enter__(self) -> StatusView:
        if not self.plain:
            self._live = Live(
                get_renderable=lambda: render(self.stats(), self.topic),
                console=self.console,
                refresh_per_second=4,
                transient=False,
            )
            self._live.start()
        else:
            self._thread = threading.Thread(target=self._lines, daemon=True)
            self._thread.start()
        return self

    def _lines(self) -> None:
        while not self._stop.wait(self.every):
            sys.stderr.write(status_line(self.stats()) + "\n")
            sys.stderr.flush()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
        if self._thread is not None:
            self._thread.join()


class ProduceProgress:
    """`produce`'s progress on stderr: a Rich bar on a terminal, a line every `every` s if not.

    The bar is redrawn from the produce loop, at most every `redraw` seconds, and has no thread
    of its own: a paced run sleeps between its batches instead of waking for the drawing.
    """

    def __init__(
        self, count: int | None, duration: float | None, every: float = 5.0, redraw: float = 0.5
    ) -> None:
        self.count = count
        self.duration = duration
        self.every = every
        self.redraw = redraw
        self.console = Console(stderr=True)
        self._last = 0.0  # when the progress was last shown
        self._latest: Progress | None = None
        self._bar: rich.progress.Progress | None = None

    def __enter__(self) -> ProduceProgress:
        if self.console.is_terminal:
            from rich import progress as bars

            columns = [bars.TextColumn("producing"), bars.BarColumn(), bars.TaskProgressColumn()]
            columns += [bars.MofNCompleteColumn(), bars.TextColumn("{task.fields[info]}")]
            self._bar = bars.Progress(
                *columns, console=self.console, transient=False, auto_refresh=False
            )
            self._task = self._bar.add_task("produce", total=self.count or self.duration, info="")
            self._bar.start()
        return self

    def update(self, progress: Progress) -> None:
        """Note how far the run has got, and show it when it is time (called after each batch;
        cheap in between)."""
        self._latest = progress
        if progress.elapsed - self._last >= (self.every if self._bar is None else self.redraw):
            self._last = progress.elapsed
            self._show(progress)

    def _show(self, progress: Progress) -> None:
        rate = progress.sent / progress.elapsed if progress.elapsed else 0.0
        info = f"{rate:,.0f}/s, {progress.delivered:,} delivered, {progress.failed:,} failed"
        if self._bar is not None:
            done = progress.sent if self.count is not None else progress.elapsed
            self._bar.update(self._task, completed=done, info=info, refresh=True)
        else:
            sys.stderr.write(f"lumu: {progress.sent:,} sent, {info}\n")
            sys.stderr.flush()

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            if self._latest is not None:  # the final figures, whenever they came
                self._show(self._latest)
            self._bar.stop()
