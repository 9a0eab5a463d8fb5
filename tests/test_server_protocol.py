"""The endpoint's reading of HTTP/1.1, byte by byte: heads split anywhere, requests sent together,
bodies framed, the deadlines of each request, a client that does not read, and what llhttp
refuses. Raw sockets on 127.0.0.1; no timings asserted.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from lumu_cli import server
from lumu_cli.server import Endpoint
from tests.test_server import STATS, Snapshot
from tests.test_server_limits import exchange, read_one, read_to_close, status_and_json

GET = b"GET /count HTTP/1.1\r\nHost: t\r\n\r\n"
LAST = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
        host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


def statuses(response: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", response)


def send_in_pieces(address: tuple[str, int], pieces: list[bytes]) -> bytes:
    """Each piece sent on its own (TCP_NODELAY, a pause between: each its own read), then
    everything the server sends until it closes."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.002)
        return read_to_close(sock)


def test_a_head_split_at_every_byte_is_answered_as_if_whole(address: tuple[str, int]) -> None:
    whole = exchange(address, GET + LAST)
    assert statuses(whole) == [b"200", b"200"]
    data = GET + LAST
    for at in range(1, len(data)):  # the end of a head split too: "\r\n\r" then "\n"
        assert send_in_pieces(address, [data[:at], data[at:]]) == whole, at


def test_a_head_sent_a_byte_at_a_time_is_answered(address: tuple[str, int]) -> None:
    data = GET + LAST
    said = send_in_pieces(address, [data[i : i + 1] for i in range(len(data))])
    assert said == exchange(address, data)


def test_requests_sent_together_are_answered_in_order_bodies_and_all(
    address: tuple[str, int],
) -> None:
    requests = [
        b"GET /count HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nGET /nope",  # a body only
        b"HEAD /count HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
        b"\r\nGET /api/v1/unique_ip_count HTTP/1.1\r\nHost: t\r\n\r\n",  # an empty line first
        LAST,
    ]
    data = b"".join(requests)
    said = exchange(address, data)
    assert statuses(said) == [b"200", b"200", b"404", b"200", b"200"]
    assert said.count(b'"unique_ips": 1234') == 1  # the HEAD has no body
    assert said.endswith(b'{"status": "ok"}')
    for at in range(1, len(data)):  # split anywhere: the same answers
        assert send_in_pieces(address, [data[:at], data[at:]]) == said, at


def test_a_client_that_reads_nothing_meanwhile_gets_every_answer_in_order(
    address: tuple[str, int],
) -> None:
    many = 3000  # answers far beyond the transport's buffer: reading pauses, then resumes
    page = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(page * many + LAST)
        said = read_to_close(sock)
    assert statuses(said) == [b"200"] * (many + 1)


@pytest.mark.parametrize(
    ("request_bytes", "answers"),
    [
        (b"GET /count HTTP/1.1\nHost: t\n\n", [b"400"]),  # bare LF: llhttp takes CRLF only
        (b"GET /count HTTP/1.1\r\n\r\n", [b"400"]),  # HTTP/1.1 without Host
        (b"GET /count HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", [b"400"]),
        (b"GET /count HTTP/2.0\r\nHost: t\r\n\r\n", [b"400"]),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [b"400"]),  # the HTTP/2 preface
        (b"GET /count HTTP/1.0\r\n\r\n" + GET, [b"200"]),  # 1.0 needs no Host; then closed
        (b"BREW /count HTTP/1.1\r\nHost: t\r\n\r\n", [b"405"]),  # a method llhttp does not know
        (b"get /count HTTP/1.1\r\nHost: t\r\n\r\n", [b"405"]),
        (b"CONNECT t:80 HTTP/1.1\r\nHost: t\r\n\r\n", [b"405"]),
        (b"GET /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
         b"\r\n" + GET, [b"200"]),  # a chunked body is read; then closed
        (b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
         + GET, [b"200"]),  # answered as HTTP/1.1, then closed
    ],
    ids=["bare-lf", "no-host", "two-hosts", "http-2", "h2-preface", "http-1.0", "brew",
         "lowercase", "connect", "chunked", "upgrade"],
)  # fmt: skip
def test_what_llhttp_reads_and_refuses(
    address: tuple[str, int], request_bytes: bytes, answers: list[bytes]
) -> None:
    said = exchange(address, request_bytes)
    assert statuses(said) == answers
    head = said.partition(b"\r\n\r\n")[0]
    assert b"Connection: close" in head.split(b"\r\n")
    if answers != [b"200"]:
        status, body = status_and_json(said)
        assert set(body) == {"error"}
        assert (b"Allow: GET, HEAD" in head) == (status == 405)
    if b"BREW" in request_bytes:
        assert status_and_json(said)[1] == {"error": "BREW is not allowed (use GET)"}


def test_a_chunked_body_beyond_the_limit_is_413(address: tuple[str, int]) -> None:
    chunk = b"%x\r\n%s\r\n" % (server.MAX_BODY, b"x" * server.MAX_BODY)
    start = b"GET /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    said = exchange(address, start + chunk + chunk + b"0\r\n\r\n")
    assert status_and_json(said) == (413, {"error": "request body too large"})


def test_each_request_has_its_own_head_deadline(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(6):  # 1.2 s on one connection, each head sent within its own 0.5 s
            sock.sendall(GET[:10])
            time.sleep(0.1)
            sock.sendall(GET[10:])
            assert read_one(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.1)
        sock.sendall(LAST)
        assert statuses(read_to_close(sock)) == [b"200"]


def test_a_body_not_sent_within_the_head_deadline_is_408(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    monkeypatch.setattr(server, "IDLE_SECONDS", 30.0)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        said = read_to_close(sock)
    assert status_and_json(said) == (408, {"error": "request not sent in time"})


def test_a_slow_head_does_not_cut_others_short(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    with (
        socket.create_connection(address, timeout=10) as slow,
        socket.create_connection(address, timeout=10) as idle,
    ):
        idle.sendall(GET)
        assert read_one(idle).startswith(b"HTTP/1.1 200 ")  # now idle: the idle deadline
        slow.sendall(b"GET /count HTTP/1.1\r\nHo")
        assert statuses(read_to_close(slow)) == [b"408"]
        idle.sendall(LAST)  # still open
        assert statuses(read_to_close(idle)) == [b"200"]


def test_with_windows_count_reads_the_sets_as_they_are_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lumu_cli.windows import Window, WindowSets

    hour = 3_600_000
    now = 1_764_928_800_000 + hour // 2
    sets = WindowSets(Window(hour, keep=24))
    sets.add(now, np.array([now], np.int64), np.array([1], np.uint32))
    snapshot = Snapshot()
    snapshot.stats = dataclasses.replace(STATS, windows=(sets,), clock_ms=now)
    with Endpoint("127.0.0.1:0", snapshot) as endpoint:
        host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
        count = b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

        def unique() -> int:
            body = exchange((host, int(port)), count).partition(b"\r\n\r\n")[2]
            return int(json.loads(body)["windows"]["1h"]["counts"][0]["unique_ips"])

        assert unique() == 1
        sets.add(now, np.array([now], np.int64), np.array([2], np.uint32))  # the same snapshot
        assert unique() == 2


def test_without_uvloop_asyncio_serves_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where it is not installed
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
        assert type(endpoint._loop).__module__.startswith("asyncio")
        host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
        data = GET + LAST
        said = exchange((host, int(port)), data)
        assert statuses(said) == [b"200", b"200"]
        assert send_in_pieces((host, int(port)), [data[:30], data[30:]]) == said
        assert statuses(exchange((host, int(port)), b"GET /count HTTP/1.1\r\nHo")) == [b"408"]
