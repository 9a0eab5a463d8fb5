"""The endpoint and the open-file limit, in this process: the cap it derives from the limit, and
accepting paused while no file is free, then resumed by itself.

The limits a kernel would hold (an unlimited hard limit, one that refuses to be raised) are played
by a stand-in for RLIMIT_NOFILE; running out of files is real: the soft limit is lowered for a
moment below the next free descriptor, as a process full of connections would find it.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import resource
import socket
import sys
import time
from urllib.parse import urlsplit

import pytest

from lumu_cli import server
from lumu_cli.server import Endpoint
from tests.test_server import Snapshot, connect, fetch, samples

INFINITY = resource.RLIM_INFINITY
GET = b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class Limits:
    """RLIMIT_NOFILE as a kernel keeps it, refusing what Linux refuses, or everything if told."""

    def __init__(self, soft: int, hard: int, refuse: Exception | None = None) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.real_get, self.real_set = resource.getrlimit, resource.setrlimit

    def getrlimit(self, which: int) -> tuple[int, int]:
        if which != resource.RLIMIT_NOFILE:
            return self.real_get(which)
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if which != resource.RLIMIT_NOFILE:
            return self.real_set(which, limits)
        soft, hard = limits
        if self.refuse is not None:
            raise self.refuse
        if hard != self.hard:
            raise ValueError("not allowed to raise maximum limit")
        if hard != INFINITY and (soft == INFINITY or soft > hard):
            raise ValueError("current limit exceeds maximum limit")
        self.soft = soft


def started_under(
    monkeypatch: pytest.MonkeyPatch, limits: Limits
) -> tuple[list[str], float, tuple[int, int]]:
    """What an endpoint started under `limits` says, its cap in /metrics, the limits it leaves."""
    monkeypatch.setattr(resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", limits.setrlimit)
    told: list[str] = []
    with Endpoint("127.0.0.1:0", Snapshot(), notify=told.append) as endpoint:
        connection = connect(endpoint)
        values = samples(fetch(connection, "/metrics")[2].decode())
        connection.close()
    return told, values[("lumu_http_max_connections", frozenset())], (limits.soft, limits.hard)


def capped(files: int, most: int) -> str:
    at_most = f"at most {most} connections at once, not 4096"
    return f"the open-file limit (ulimit -Hn) is {files}: {at_most}"


def test_a_low_soft_limit_is_raised_to_the_hard_one_and_the_cap_is_what_it_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told, cap, limits = started_under(monkeypatch, Limits(256, 1024))
    assert limits == (1024, 1024)
    assert (told, cap) == ([capped(1024, 768)], 768)  # 256 kept for all but connections


@pytest.mark.parametrize(
    ("soft", "hard", "raised"),
    [(1024, INFINITY, 4352), (1024, 100_000, 4352), (8000, 10_000, 8000), (INFINITY, INFINITY,
     INFINITY)],
    ids=["unlimited-hard", "high-hard", "already-high", "unlimited"],
)  # fmt: skip
def test_a_limit_with_room_is_raised_to_4352_at_most_and_never_lowered(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, raised: int
) -> None:
    told, cap, limits = started_under(monkeypatch, Limits(soft, hard))
    assert limits == (raised, hard)  # 4096 connections and 256 files for the rest
    assert (told, cap) == ([], 4096)


@pytest.mark.parametrize(
    "refusal",
    [ValueError("not allowed to raise maximum limit"), OSError(errno.EPERM, "not permitted")],
    ids=["ValueError", "OSError"],
)
def test_a_limit_that_cannot_be_raised_is_served_within(
    monkeypatch: pytest.MonkeyPatch, refusal: Exception
) -> None:
    told, cap, limits = started_under(monkeypatch, Limits(129, 100_000, refusal))
    assert limits == (129, 100_000)
    assert (told, cap) == ([capped(129, 65)], 65)  # half of an odd 129 kept: 64


# ---------------------------------------------------------------- out of files, for real

PAUSED = (
    "http: cannot accept connections: Too many open files (the open-file limit is {files}): "
    "pausing, trying again within 1 s"
)


def pauses(connection: http.client.HTTPConnection) -> float:
    return samples(fetch(connection, "/metrics")[2].decode())[
        ("lumu_http_accept_pauses_total", frozenset())
    ]


def out_of_files(clients: int) -> tuple[list[socket.socket], int]:
    """`clients` sockets made now, to connect once no file is free; the lowest free descriptor."""
    sockets = [socket.socket() for _ in range(clients)]
    for sock in sockets:
        sock.settimeout(10)
    free = os.dup(0)
    os.close(free)
    return sockets, free


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lowers RLIMIT_NOFILE in place")
def test_out_of_files_accepting_pauses_backs_off_and_resumes_by_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "REPORT_SECONDS", 60.0)
    told: list[str] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with Endpoint("127.0.0.1:0", Snapshot(), notify=told.append) as endpoint:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # as the endpoint set it
        address = address_of(endpoint)
        metrics = connect(endpoint)  # kept alive: it needs no new file on either side
        assert pauses(metrics) == 0
        waiting, free = out_of_files(5)
        resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
        try:
            for sock in waiting:  # the kernel takes them; the endpoint has no file to give
                sock.connect(address)
                sock.sendall(GET)
            until = time.monotonic() + 2.5
            while (paused := pauses(metrics)) < 8:  # 5 ms, 10 ms, ... 640 ms: 1.3 s in all
                assert time.monotonic() < until, f"{paused} pauses, not doubling from 5 ms"
                time.sleep(0.02)
            assert told == [PAUSED.format(files=files)]  # once: one a pause would be a flood
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for sock in waiting:  # resumed by itself, once files are free: none was dropped
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
            sock.close()
        first = pauses(metrics)

        monkeypatch.setattr(server, "REPORT_SECONDS", 0.0)  # each pause told from now on
        waiting, free = out_of_files(1)
        resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
        try:
            waiting[0].connect(address)
            waiting[0].sendall(GET)
            until = time.monotonic() + 10
            while len(told) < 2:
                assert time.monotonic() < until
                time.sleep(0.02)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert read_answer(waiting[0]).startswith(b"HTTP/1.1 200 ")
        waiting[0].close()
        last = pauses(metrics)
        metrics.close()
    held = re.fullmatch(re.escape(PAUSED.format(files=files)) + r"; (\d+) more like it in the "
                        r"last (\d+) s", told[1])  # fmt: skip
    assert held is not None, told
    assert int(held[1]) == first - 1  # every pause of the first round, told or counted
    assert int(held[2]) <= 60
    assert told[2:] == [PAUSED.format(files=files)] * (len(told) - 2)
    assert last == first + len(told) - 1  # one pause a line in the second round


def read_answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lowers RLIMIT_NOFILE in place")
def test_out_of_files_from_the_first_connection_on_pauses_and_resumes_too() -> None:
    told: list[str] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with Endpoint("127.0.0.1:0", Snapshot(), notify=told.append) as endpoint:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        (sock,), free = out_of_files(1)
        resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
        try:  # not one connection accepted before
            sock.connect(address_of(endpoint))
            sock.sendall(GET)
            until = time.monotonic() + 10
            while not told:
                assert time.monotonic() < until
                time.sleep(0.02)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        sock.close()
    assert told == [PAUSED.format(files=files)]


def test_each_kind_of_accept_error_is_told_in_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors = [
        OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS)),
        OSError(errno.EMFILE, os.strerror(errno.EMFILE)),
    ]
    accept = socket.socket.accept

    def failing(sock: socket.socket) -> tuple[socket.socket, object]:
        """The kernel's answers: out of buffers, then out of files, then a connection."""
        if errors:
            raise errors.pop(0)
        return accept(sock)

    told: list[str] = []
    with Endpoint("127.0.0.1:0", Snapshot(), notify=told.append) as endpoint:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        monkeypatch.setattr(socket.socket, "accept", failing)
        with socket.create_connection(address_of(endpoint), timeout=10) as sock:
            sock.sendall(GET)
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")  # after two pauses
    assert told == [  # within 5 s of each other, and neither held back for the other
        "http: cannot accept connections: No buffer space available: pausing, trying again "
        "within 1 s",  # not blamed on the open-file limit
        PAUSED.format(files=files),
    ]


def address_of(endpoint: Endpoint) -> tuple[str, int]:
    url = urlsplit(endpoint.url)
    assert url.hostname is not None
    assert url.port is not None
    return url.hostname, url.port
