"""The endpoint against bursts and bad clients: raw sockets on 127.0.0.1, bounded in count and time.

Every refusal is a JSON body with its status; the server keeps answering afterwards, holds its
connections on one thread, and a fuzz of random and mutated requests never gets a 5xx. Under a
low open-file limit (an endpoint in a child process, 128 files), it says so and keeps going.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lumu_cli import server
from lumu_cli.server import MAX_BODY, MAX_HEAD, MAX_TARGET, Endpoint
from tests.test_server import STATS, Snapshot, samples

GET = b"GET /count HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    endpoint = Endpoint("127.0.0.1:0", Snapshot())
    url = urlsplit(endpoint.url)
    assert url.hostname is not None
    assert url.port is not None
    yield url.hostname, url.port
    endpoint.close()


def exchange(address: tuple[str, int], data: bytes, *, timeout: float = 10) -> bytes:
    """Send `data` on a fresh connection; everything the server sends until it closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_one(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) from a kept-alive `sock`."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_json(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Content-Type: application/json" in head, head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    return status, json.loads(body)


def answers_count(address: tuple[str, int]) -> bool:
    response = exchange(address, b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return status_and_json(response) == (200, json.loads(response.partition(b"\r\n\r\n")[2]))


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "request line too long"),
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "request target too long"),
        (b"GET /count HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", 431,
         "request head too large"),
        (b"GET /count HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,
         413, "request body too large"),
        (bytes.fromhex("16030100a5010000a10303") + bytes(200), 400, "malformed request"),  # TLS
        (b"\x00\xff garbage\r\n\r\n", 400, "malformed request"),
        (b"GET /count HTTP/1.1\r\nHost: t\r\nHost: u\r\nContent-Length: 1\r\nContent-Length: 2"
         b"\r\n\r\n", 400, "malformed request"),
        (b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", 405,
         "POST is not allowed (use GET)"),
        (b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", 405, "DELETE is not allowed (use GET)"),
    ],
    ids=["line-100k", "target-9k", "header-100k", "body-100k", "tls", "garbage", "two-lengths",
         "post", "delete"],
)  # fmt: skip
def test_each_bad_request_is_a_json_error_and_the_server_goes_on(
    address: tuple[str, int], request_bytes: bytes, status: int, error: str
) -> None:
    response = exchange(address, request_bytes)
    assert status_and_json(response) == (status, {"error": error})
    head = response.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert (b"Allow: GET, HEAD" in head) == (status == 405)  # only a 405 names the methods
    assert b"Connection: close" in head  # a refusal closes the connection
    assert answers_count(address)


def test_a_head_never_finished_is_408_after_the_head_timeout(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost:")  # and nothing more
        status, body = status_and_json(read_to_close(sock))
    assert (status, body) == (408, {"error": "request not sent in time"})


def test_a_slow_but_steady_head_is_still_cut_at_the_head_timeout(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nX-Pad: ")
        for _ in range(50):  # a byte every 0.1 s, for 5 s unless cut: each byte is in time
            if select.select([sock], [], [], 0.1)[0]:
                break  # answered (and closed) while still sending
            try:
                sock.sendall(b"p")
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("a head sent a byte at a time was never cut")
        assert status_and_json(read_to_close(sock)) == (408, {"error": "request not sent in time"})


def test_an_idle_keep_alive_connection_is_closed_without_a_word(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IDLE_SECONDS", 0.5)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(GET)
        began = time.monotonic()
        said = read_to_close(sock)  # it closes once idle: the read ends
    assert time.monotonic() - began < 9  # by the idle timeout, not by the socket's own
    assert said.startswith(b"HTTP/1.1 200 ")
    assert said.count(b"HTTP/1.1 ") == 1  # the answer, then nothing more


def test_connections_beyond_the_limit_are_told_503(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 3)
    held = [socket.create_connection(address, timeout=10) for _ in range(3)]
    try:
        for sock in held:  # each one is open on the server's side (it answered)
            sock.sendall(GET)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert status_and_json(exchange(address, GET)) == (503, {"error": "too many connections"})
    finally:
        for sock in held:
            sock.close()
    until_answered = time.monotonic() + 10
    while not answers_count(address):  # the held ones are counted out as they close
        assert time.monotonic() < until_answered


def test_head_keeps_the_headers_and_drops_the_body(address: tuple[str, int]) -> None:
    response = exchange(address, b"HEAD /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b""
    full = exchange(address, b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    length = int(full.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert f"Content-Length: {length}".encode() in head


def test_a_burst_of_1000_clients_are_all_answered_on_one_thread(
    address: tuple[str, int],
) -> None:
    threads = threading.active_count()

    async def one() -> int:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = await reader.read()
        writer.close()
        return int(response.split(b" ", 2)[1])

    async def burst() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 60)

    statuses = asyncio.run(burst())
    assert statuses == [200] * 1000
    assert threading.active_count() == threads  # no thread a connection


def test_slow_clients_are_held_on_one_thread_while_count_is_answered(
    address: tuple[str, int],
) -> None:
    threads = threading.active_count()
    half = b"GET /count HTTP/1.1\r\nHo"  # a head begun and not finished

    async def held() -> list[int]:
        pairs = await asyncio.gather(*(asyncio.open_connection(*address) for _ in range(300)))
        for _, writer in pairs:
            writer.write(half)
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(answers_count, address)  # not queued behind the slow
        assert threading.active_count() == threads + 1  # + the to_thread worker, none per client
        for _, writer in pairs:
            writer.write(b"st: t\r\nConnection: close\r\n\r\n")
        statuses = []
        for reader, writer in pairs:
            statuses.append(int((await reader.read()).split(b" ", 2)[1]))
            writer.close()
        return statuses

    assert asyncio.run(asyncio.wait_for(held(), 60)) == [200] * 300


def test_start_up_objects_are_kept_out_of_full_collections(address: tuple[str, int]) -> None:
    import gc

    assert gc.get_freeze_count() > 0  # else each full pass walks them all, pausing answers


def test_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    paths = ["/count", "/nope", "/healthz"]
    data = b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths)
    response = exchange(
        address, data + b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", response) == [b"200", b"404", b"200", b"200"]


MUTATIONS = (
    b"\r\n", b"\n", b" ", b":", b"\x00", b"\xff", b"GET", b"HTTP/1.1", b"Content-Length: 5",
    b"Transfer-Encoding: chunked", b"0\r\n\r\n", b"/count", b"?", b"%", b"\t",
)  # fmt: skip


def test_random_and_mutated_requests_never_get_a_5xx(address: tuple[str, int]) -> None:
    rng = random.Random(20261128)
    threads = threading.active_count()
    for _ in range(300):  # bounded: a few seconds
        data = bytearray(GET)
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                data[at:at] = rng.choice(MUTATIONS)
            else:
                del data[at : at + rng.randrange(1, 4)]
        if rng.random() < 0.2:
            data = bytearray(rng.randbytes(rng.randrange(1, 200)))
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(bytes(data))
            sock.shutdown(socket.SHUT_WR)  # the request ends here, whatever it is
            response = read_to_close(sock)
        for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", response):
            assert not status.startswith(b"5"), (bytes(data), response)
    assert answers_count(address)
    assert threading.active_count() == threads
    assert STATS.unique_ips == json.loads(
        exchange(address, b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").partition(
            b"\r\n\r\n")[2])["unique_ips"]  # fmt: skip


def test_close_drops_open_connections_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    endpoint = Endpoint("127.0.0.1:0", Snapshot())
    url = urlsplit(endpoint.url)
    assert url.hostname is not None
    assert url.port is not None
    idle = socket.create_connection((url.hostname, url.port), timeout=10)
    half = socket.create_connection((url.hostname, url.port), timeout=10)
    try:
        idle.sendall(GET)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")  # now idle, kept alive
        half.sendall(b"GET /count HTT")  # a head never finished
        endpoint.close()  # does not wait for their timeouts
        assert read_to_close(idle).count(b"HTTP/1.1 ") <= 1  # the rest of the answer, then EOF
        assert read_to_close(half) == b""
    finally:
        idle.close()
        half.close()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # no "Task was destroyed", no traceback


def test_a_pipelined_head_left_unfinished_is_408_too(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_SECONDS", 0.5)
    monkeypatch.setattr(server, "IDLE_SECONDS", 30.0)  # the head timeout, not the idle one
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(GET + b"GET /count HTTP/1.1\r\nHo")
        said = read_to_close(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", said) == [b"200", b"408"]


def test_a_pipelined_request_line_left_unfinished_is_414(address: tuple[str, int]) -> None:
    said = exchange(address, GET + b"GET /" + b"a" * (MAX_HEAD + 100))
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", said) == [b"200", b"414"]
    assert said.endswith(b'{"error": "request line too long"}')


def test_a_pipelined_head_too_large_is_431_once_its_line_is_done(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(GET + b"GET /count HTTP/1.1\r\nX-Pad: ")  # the next line came with the first
        assert read_one(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"p" * (MAX_HEAD + 100))
        said = read_to_close(sock)
    assert status_and_json(said) == (431, {"error": "request head too large"})


def test_an_unfinished_head_beyond_the_limit_is_431_at_once(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_HEAD", 4096)  # a limit below h11's own default (16 KiB)
    monkeypatch.setattr(server, "HEAD_SECONDS", 30.0)  # told at once, not by the head timeout
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nX-Pad: " + b"p" * 5000)  # never finished
        said = read_to_close(sock)
    assert status_and_json(said) == (431, {"error": "request head too large"})


def test_a_body_cut_short_is_400(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)  # 3 bytes of 10, then no more
        said = read_to_close(sock)
    assert status_and_json(said) == (400, {"error": "request body cut short"})


# ---------------------------------------------------------------- each limit's boundary


def target_of(size: int, start: bytes) -> bytes:
    return start + b"a" * (size - len(start))


@pytest.mark.parametrize(
    ("start", "answer"),
    [(b"/", 404), (b"/count?pad=", 200)],  # the whole target counts, query string and all
    ids=["path", "query"],
)
def test_a_target_of_max_target_bytes_is_served_and_one_more_is_414(
    address: tuple[str, int], start: bytes, answer: int
) -> None:
    for size, status in [(MAX_TARGET, answer), (MAX_TARGET + 1, 414)]:
        target = target_of(size, start)
        request = b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        got, body = status_and_json(exchange(address, request))
        assert (len(target), got) == (size, status)
        if status == 404:
            assert body == {"error": f"no such path: {target.decode()} (try /count)"}
        if status == 414:
            assert body == {"error": "request target too long"}


def head_of(size: int) -> bytes:
    """A GET /count head of exactly `size` bytes, request line to blank line."""
    start, end = b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize("pieces", [1, 2], ids=["whole", "in-two-pieces"])
def test_a_head_of_max_head_bytes_is_served_and_one_more_is_431(
    address: tuple[str, int], pieces: int
) -> None:
    for size, status in [(MAX_HEAD, 200), (MAX_HEAD + 1, 431)]:
        head = head_of(size)
        with socket.create_connection(address, timeout=10) as sock:
            if pieces == 2:  # MAX_HEAD bytes, unfinished, then the rest
                sock.sendall(head[:MAX_HEAD])
                time.sleep(0.2)
            sock.sendall(head[MAX_HEAD if pieces == 2 else 0 :])
            got, body = status_and_json(read_to_close(sock))
        assert (len(head), got) == (size, status)
        if status == 431:
            assert body == {"error": "request head too large"}


def test_a_body_of_max_body_bytes_is_dropped_and_one_more_is_413(address: tuple[str, int]) -> None:
    for size, status in [(MAX_BODY, 200), (MAX_BODY + 1, 413)]:
        head = f"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {size}"
        got, body = status_and_json(exchange(address, f"{head}\r\n\r\n".encode() + b"x" * size))
        assert got == status
        if status == 413:
            assert body == {"error": "request body too large"}


# ---------------------------------------------------------------- a low open-file limit

CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
from lumu_cli.server import Endpoint
from tests.test_server import Snapshot
with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
    print(endpoint.url, flush=True)
    sys.stdin.read()  # serving until the test closes stdin
"""
CAPPED = "lumu: the open-file limit (ulimit -Hn) is 128: at most 64 connections at once, not 4096"
PAUSED = (
    "lumu: http: cannot accept connections: Too many open files (the open-file limit is 128): "
    "pausing, trying again within 1 s"
)


class Child:
    """`lumu serve`'s endpoint in a process whose open-file limit is 128, soft and hard."""

    def __init__(self, stderr: Path) -> None:
        self.stderr_path = stderr
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        url = urlsplit(self.process.stdout.readline().strip())
        assert url.hostname is not None, self.stderr()
        assert url.port is not None
        self.address = (url.hostname, url.port)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, line: str, seconds: float = 10) -> None:
        until = time.monotonic() + seconds
        while line not in self.stderr().splitlines():
            assert time.monotonic() < until, self.stderr()
            time.sleep(0.05)

    def stop(self) -> str:
        """Close the endpoint, end the process; its stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=20) == 0, self.stderr()
        return self.stderr()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    started = Child(tmp_path / "stderr")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def answers_again(address: tuple[str, int], seconds: float = 10) -> None:
    until = time.monotonic() + seconds
    while True:
        try:
            if answers_count(address):
                return
        except OSError:
            pass
        assert time.monotonic() < until, "/count never answered again"
        time.sleep(0.1)


def test_out_of_file_handles_accepting_pauses_in_a_line_and_resumes(child: Child) -> None:
    began = time.monotonic()
    held = []
    try:
        for _ in range(300):  # the kernel takes them all; the endpoint runs out of files
            sock = socket.create_connection(child.address, timeout=10)
            held.append(sock)
            sock.sendall(GET)
        child.wait_for(PAUSED)
    finally:
        for sock in held:
            sock.close()
    answers_again(child.address)  # by itself, once files are free
    held = [socket.create_connection(child.address, timeout=10) for _ in range(300)]
    try:  # out of files again, and closed meanwhile: quietly too
        for sock in held:
            sock.sendall(GET)
        said = child.stop()
    finally:
        for sock in held:
            sock.close()
    lines = said.splitlines()
    assert lines[:2] == [CAPPED, PAUSED], said
    told_again = re.compile(re.escape(PAUSED) + r"; \d+ more like it in the last \d+ s")
    assert all(told_again.fullmatch(line) for line in lines[2:]), said
    assert len(lines) <= 3 + (time.monotonic() - began) / server.REPORT_SECONDS, said
    assert "Traceback" not in said


def test_a_low_open_file_limit_caps_connections_and_says_so(child: Child) -> None:
    held = [http.client.HTTPConnection(*child.address, timeout=10) for _ in range(64)]
    try:
        for connection in held:
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status": "ok"}'
        held[0].request("GET", "/metrics")
        values = samples(held[0].getresponse().read().decode())
        assert values[("lumu_http_max_connections", frozenset())] == 64
        assert values[("lumu_http_connections", frozenset())] == 64
        status, body = status_and_json(exchange(child.address, GET))
        assert (status, body) == (503, {"error": "too many connections"})
        held.pop().close()
        answers_again(child.address)  # one closed: one more is served
    finally:
        for connection in held:
            connection.close()
    assert child.stop().splitlines() == [CAPPED]
