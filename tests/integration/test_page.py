"""The live page at `/`, in a real headless Chromium (Debian's package), loaded once: the number
on screen is the count, and it changes, without a reload, as records arrive. Each count is
checked against the independent reference count of the topic.

Chromium is driven over its DevTools protocol on a pipe (--remote-debugging-pipe: commands on
fd 3, answers on fd 4, each JSON message ended by a NUL byte), so no other package is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.integration.helpers import count_when, get, lumu, running, summary
from tests.integration.reference import reference

# Headless, and nothing a CI machine lacks: no sandbox (root), no GPU, no /dev/shm use,
# no background traffic.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--no-first-run", "--remote-debugging-pipe",
]  # fmt: skip


class Page:
    """One page in a headless Chromium, asked what it shows."""

    def __init__(self, process: subprocess.Popen[bytes], send: Any, receive: Any) -> None:
        self.process, self.send, self.receive = process, send, receive
        self.buffer, self.last_id, self.session = b"", 0, ""
        self.events: list[dict[str, Any]] = []  # what came between the answers, in order

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        self.send.write(json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = self.receive.read(65536)
                assert chunk, "chromium closed its DevTools pipe"
                self.buffer += chunk
            raw, _, self.buffer = self.buffer.partition(b"\0")
            reply: dict[str, Any] = json.loads(raw)
            if reply.get("id") == self.last_id:
                assert "error" not in reply, reply
                result: dict[str, Any] = reply["result"]
                return result
            if "method" in reply:
                self.events.append(reply)

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]

    def visit(self, url: str) -> None:
        """Open `url` with the network watched from its first request (see `requested`)."""
        self.open("about:blank")
        self.call("Network.enable")
        self.call("Page.navigate", {"url": url})

    def requested(self) -> list[str]:
        """The URL of every request the page has made since `visit`."""
        sent = (e for e in self.events if e["method"] == "Network.requestWillBeSent")
        return [event["params"]["request"]["url"] for event in sent]

    def value(self, expression: str) -> Any:
        """What a JavaScript expression gives on the page (a JSON value)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def text(self, element: str) -> str:
        return str(self.value(f"document.getElementById({element!r})?.textContent ?? ''"))

    def shows(self, element: str, text: str, seconds: float = 30) -> None:
        """Wait until `element` shows `text` (bounded: the test fails, never hangs)."""
        deadline = time.monotonic() + seconds
        while (seen := self.text(element)) != text:
            assert time.monotonic() < deadline, f"#{element} shows {seen!r}, never {text!r}"
            time.sleep(0.2)

    def gives(self, expression: str, expected: Any, seconds: float = 30) -> None:
        """Wait until `expression` gives `expected` (bounded: the test fails, never hangs)."""
        deadline = time.monotonic() + seconds
        while (seen := self.value(expression)) != expected:
            assert time.monotonic() < deadline, f"{expression} gives {seen!r}, never {expected!r}"
            time.sleep(0.2)


@contextmanager
def browser() -> Iterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:  # never a skip: CI installs it (.ci/run), and so can you
        pytest.fail("no chromium: apt-get install chromium (Debian's package)", pytrace=False)
    commands, answers = os.pipe(), os.pipe()

    def pipes_on_3_and_4() -> None:
        os.dup2(commands[0], 3)
        os.dup2(answers[1], 4)

    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, "about:blank"], pass_fds=(3, 4), preexec_fn=pipes_on_3_and_4,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(commands[0])
    os.close(answers[1])
    with (
        os.fdopen(commands[1], "wb", buffering=0) as send,
        os.fdopen(answers[0], "rb", buffering=0) as receive,
    ):
        try:
            yield Page(process, send, receive)
        finally:
            process.kill()
            process.wait(timeout=30)


def produce(bootstrap: str, topic: str, count: int, seed: int) -> None:
    done = lumu(bootstrap, topic, "produce", "--rate", "0", "--count", str(count),
                "--ips", "3000", "--invalid-ratio", "0.02", "--seed", str(seed))  # fmt: skip
    assert summary(done)["delivered"] == count, done.stderr


def test_the_page_shows_the_count_and_follows_it_as_records_arrive(
    bootstrap: str, topic: str
) -> None:
    produce(bootstrap, topic, 500, seed=1)
    args = ("serve", "127.0.0.1:0", "--from-beginning", "--group", f"{topic}-page")
    with running(bootstrap, topic, *args) as (_process, url), browser() as page:
        status, content_type, html = get(f"{url}/")
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from elsewhere

        ref = reference(bootstrap, topic)
        count_when(url, ref.messages)
        page.open(f"{url}/")  # loaded once, from here on
        page.shows("unique", f"{ref.unique_ips:,}")
        page.shows("messages", f"{ref.messages:,}")
        page.shows("invalid", f"{sum(ref.invalid.values()):,}")
        page.shows("health", "broker up")
        assert page.value("document.getElementById('windows').hidden") is True  # no --window
        before = page.text("unique")

        produce(bootstrap, topic, 1500, seed=2)  # new addresses among them
        ref = reference(bootstrap, topic)
        page.shows("unique", f"{ref.unique_ips:,}")  # without a reload
        page.shows("messages", f"{ref.messages:,}")
        assert page.text("unique") != before


WINDOW_ROWS = (  # the windows table, cell by cell
    "[...document.querySelectorAll('#window-sizes tr')]"
    ".map((row) => [...row.cells].map((cell) => cell.textContent))"
)
BARS = (  # the chart's bars in order: each one's data-unique and its title
    "[...document.querySelectorAll('#window-chart .bar')]"
    ".map((bar) => [bar.dataset.unique, bar.textContent])"
)


def iso(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_the_page_shows_the_windows_and_charts_the_smallest_size(
    bootstrap: str, topic: str
) -> None:
    # Three minutes: this one and the two before (all kept by --window 1m:5, even if a minute
    # or two turns during the test); overlapping addresses, some sent more than once.
    minute = int(time.time()) // 60 * 60
    produced = [
        (minute - 60 * back + n % 50, f"10.0.0.{n}")
        for back, low, high in ((2, 1, 30), (1, 21, 60), (0, 51, 62))
        for n in range(low, high + 1)
        for _ in range(1 + n % 3)
    ]
    ips: dict[int, set[str]] = {}
    for second, ip in produced:
        ips.setdefault(second - second % 60, set()).add(ip)
    starts = sorted(ips)
    assert [len(ips[start]) for start in starts] == [30, 40, 12]
    now_messages = sum(1 for second, _ in produced if second >= minute)

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(topic, 2)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for second, ip in produced:
        record = {"timestamp": iso(second), "device_ip": ip, "error_code": 1}
        producer.produce(topic, json.dumps(record).encode())
    assert producer.flush(30) == 0

    args = ("serve", "127.0.0.1:0", "--from-beginning", "--group", f"{topic}-page",
            "--window", "1m:5")  # fmt: skip
    with running(bootstrap, topic, *args) as (_process, url), browser() as page:
        count_when(url, len(produced))
        page.open(f"{url}/")
        page.gives("document.getElementById('windows').hidden", False)
        page.gives(WINDOW_ROWS, [["1m", f"{len(ips[minute])}", f"{now_messages}", "0", "0"]])
        page.shows("window-size", "1m")
        page.gives(BARS, [
            [str(len(ips[start])), f"{iso(start)}: {len(ips[start])} unique IPs"]
            for start in starts
        ])  # fmt: skip


# Swagger UI 5's page: each operation's block, its summary's button, "Try it out", "Execute", and
# the body of the answer it shows.
OPERATION_PATHS = (
    "[...document.querySelectorAll('.opblock-summary-path')]"
    ".map((path) => path.dataset.path ?? path.textContent)"
)
COUNT_BLOCK = "document.querySelector('#operations-default-get_count')"
ANSWER = (
    f"{COUNT_BLOCK}?.querySelector('.live-responses-table .response-col_description pre')"
    "?.textContent ?? ''"
)


def test_the_api_docs_list_the_paths_and_try_count_against_the_live_count(
    bootstrap: str, topic: str
) -> None:
    produce(bootstrap, topic, 800, seed=5)
    args = ("serve", "127.0.0.1:0", "--from-beginning", "--group", f"{topic}-api-docs")
    with running(bootstrap, topic, *args) as (_process, url), browser() as page:
        ref = reference(bootstrap, topic)
        count_when(url, ref.messages)
        page.visit(f"{url}/api/docs")
        spec = json.loads(get(f"{url}/openapi.json")[2])
        page.gives(f"new Set({OPERATION_PATHS}).size", len(spec["paths"]), seconds=60)
        assert set(page.value(OPERATION_PATHS)) == set(spec["paths"])

        page.value(f"{COUNT_BLOCK}.querySelector('.opblock-summary-control').click()")
        page.gives(f"!!{COUNT_BLOCK}.querySelector('.try-out__btn')", True)
        page.value(f"{COUNT_BLOCK}.querySelector('.try-out__btn').click()")
        page.gives(f"!!{COUNT_BLOCK}.querySelector('.execute')", True)
        page.value(f"{COUNT_BLOCK}.querySelector('.execute').click()")
        page.gives(f"({ANSWER}).includes('unique_ips')", True)
        answer = json.loads(page.value(ANSWER))
        assert answer["unique_ips"] == ref.unique_ips
        assert answer["messages"] == ref.messages

        asked = page.requested()
        assert f"{url}/api/docs/swagger-ui-bundle.js" in asked
        assert f"{url}/openapi.json" in asked
        assert f"{url}/count" in asked  # what "Execute" sent
        elsewhere = [u for u in asked if not u.startswith((f"{url}/", "data:"))]
        assert elsewhere == []  # nothing from outside the lumu server
