"""The HTTP endpoint: /count, /healthz, /metrics and more over the tracker's latest stats snapshot.

An asyncio server on a thread of its own (uvloop's loop where installed) reads HTTP/1.1 with
httptools, one `Protocol` a connection, and answers from the published,
immutable `Stats`: a request never waits for the consume loop, nor the loop for a request. The
limits hold against bursts and bad clients:

- a listen backlog of BACKLOG connections, and at most MAX_CONNECTIONS open (one more is told
  503 and closed): one thread holds them all. Under an open-file limit too low for that many,
  the cap is what the limit leaves room for, told in one line at start;
- HEAD_SECONDS to send a request's head once its first byte came (else 408), IDLE_SECONDS for a
  kept-alive connection to start its next request (else it is closed);
- MAX_TARGET bytes of request target (414), MAX_HEAD of head (431), MAX_BODY of body (413);
- out of file handles, accepting pauses (ACCEPT_PAUSE, doubling up to ACCEPT_PAUSE_MAX) and
  resumes by itself, told in one line at most every REPORT_SECONDS;
- every error is a JSON body: 400, 404, 405, 408, 413, 414, 431, 500, 503. An internal error
  (a bug) is also told in one line, its traceback before it with LUMU_DEBUG=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs

import httptools

from lumu_cli import apidocs
from lumu_cli.errors import UsageError, shorten
from lumu_cli.timestamps import format_millis
from lumu_cli.windows import describe

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from lumu_cli.tracker import Stats

__all__ = ["Endpoint", "parse_address"]

JSON = "application/json"
HTML = "text/html; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_DOCS = apidocs.DOCS
_ASSET_TYPES = tuple(dict.fromkeys(apidocs.ASSETS.values()))
BACKLOG = 1024
MAX_CONNECTIONS = 4096
HEAD_SECONDS = 5.0
IDLE_SECONDS = 60.0
MAX_TARGET = 8 * 1024
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
LINGER_SECONDS = 2.0  # a closing connection reads what the client still sends, this long at most
SPARE_FILES = 256  # open files kept for all but connections: librdkafka's, the state's, Python's
ACCEPT_PAUSE = 0.005  # the first pause of accepting after an error, doubled while errors go on
ACCEPT_PAUSE_MAX = 1.0
REPORT_SECONDS = 5.0  # one kind of trouble is told at most this often


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST]:PORT` -> (host, port); an empty host means every interface, as `:8000` does.

    A bad address is a UsageError that names the value, not the option or argument it came
    from: the command line adds that.
    """
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if (
        not sep
        or not (port.isascii() and port.isdigit())
        or (":" in host and not bracketed)  # an IPv6 host needs brackets: [::1]:8000
    ):
        example = "e.g. :8000, 127.0.0.1:8000 or [::1]:8000"
        raise UsageError(f"{shorten(text)}: expected [HOST]:PORT, {example}")
    if len(port.lstrip("0")) > 5 or int(port) > 65535:  # int() refuses over 4,300 digits
        raise UsageError(f"{shorten(text)}: port out of range (0-65535)")
    return host, int(port)


class _Collector:
    """Prometheus metrics made from the current stats at each scrape."""

    def __init__(self, stats: Callable[[], Stats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.stats()
        yield GaugeMetricFamily(
            "lumu_unique_ips", "Distinct valid device IPs counted.", value=stats.unique_ips
        )
        yield CounterMetricFamily(
            "lumu_messages_total", "Records counted, valid or not.", value=stats.messages
        )
        invalid = CounterMetricFamily(
            "lumu_invalid_messages_total", "Invalid records, by reason.", labels=["reason"]
        )
        for reason, count in stats.invalid.items():
            invalid.add_metric([reason], count)
        yield invalid
        lag = GaugeMetricFamily(
            "lumu_partition_lag",
            "Records not yet counted, by partition counted here.",
            labels=["partition"],
        )
        state_lag = GaugeMetricFamily(
            "lumu_state_lag",
            "Records not yet in the last snapshot followed, by partition counted elsewhere.",
            labels=["partition"],
        )
        for info in stats.partitions:
            if info.lag is not None:
                (lag if info.local else state_lag).add_metric([str(info.partition)], info.lag)
        yield lag
        yield state_lag
        yield GaugeMetricFamily(
            "lumu_up", "1 while a broker answers, 0 while none does.", value=int(stats.healthy)
        )
        yield GaugeMetricFamily(
            "lumu_waiting_for_topic",
            "1 while the topic does not exist yet (counting starts once it is created), else 0.",
            value=int(stats.waiting is not None),
        )
        yield CounterMetricFamily(
            "lumu_commits_refused",
            "State commits the group coordinator refused: this member had been fenced (a zombie).",
            value=stats.commits_refused,
        )
        yield CounterMetricFamily(
            "lumu_state_producers_abandoned",
            "State producers left in a commit that did not answer in time (librdkafka#5456).",
            value=stats.producers_abandoned,
        )
        if stats.windows:  # one series per size, never per window start: bounded
            yield from _window_metrics(stats)


def _window_metrics(stats: Stats) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    unique = GaugeMetricFamily(
        "lumu_window_unique_ips",
        "Distinct valid device IPs in the current window of event time, by window size.",
        labels=["window"],
    )
    messages = GaugeMetricFamily(
        "lumu_window_messages",
        "Valid records in the current window of event time, by window size.",
        labels=["window"],
    )
    late = CounterMetricFamily(
        "lumu_window_late",
        "Valid records older than the windows kept (counted all-time only), by window size.",
        labels=["window"],
    )
    future = CounterMetricFamily(
        "lumu_window_future",
        "Valid records beyond the window after the current one, by window size.",
        labels=["window"],
    )
    for sets in stats.windows:
        name = sets.window.name
        current = sets.counts.get(sets.window.start(stats.clock_ms))
        unique.add_metric([name], len(current.ips) if current else 0)
        messages.add_metric([name], current.messages if current else 0)
        late.add_metric([name], sets.late)
        future.add_metric([name], sets.future)
    yield from (unique, messages, late, future)


class _Serving:
    """Prometheus metrics of the endpoint itself: its connections and its pauses."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        endpoint = self.endpoint
        yield GaugeMetricFamily(
            "lumu_http_connections", "HTTP connections open and served now.",
            value=endpoint.connections,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "lumu_http_max_connections",
            "The most HTTP connections served at once (fewer under a low open-file limit).",
            value=endpoint.max_connections,
        )
        yield CounterMetricFamily(
            "lumu_http_accept_pauses", "Times accepting paused, out of file handles or other.",
            value=endpoint.accept_pauses,
        )  # fmt: skip


class _Refused(Exception):
    """A request answered with an error status, after which the connection is closed."""

    def __init__(self, status: HTTPStatus, message: str, *, allow: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.allow = allow  # a 405: the answer names the methods allowed


Answer = tuple[HTTPStatus, bytes]


def _count(stats: Stats, _registry: CollectorRegistry) -> Answer:
    body = {
        "unique_ips": stats.unique_ips,
        "messages": stats.messages,
        "invalid": stats.invalid_total,
        "invalid_by_reason": stats.invalid,
        "rate": round(stats.rate, 1),
        "healthy": stats.healthy,
        "waiting_for_topic": stats.waiting is not None,
        "updated_at": stats.updated_at,
        "as_of": stats.as_of,
        "lag": stats.lag(local=True),
        "state_lag": stats.lag(local=False),
        "partitions": [
            {
                "partition": p.partition,
                "owner": "here" if p.local else "elsewhere",
                "offset": p.position,
                "lag": p.lag,
                **({} if p.local else {"as_of": p.as_of}),
            }
            for p in stats.partitions
        ],
    }
    if stats.windows:
        body["windows"] = describe(stats.windows)
    return HTTPStatus.OK, json.dumps(body).encode()


def _rolling(stats: Stats, asked: dict[str, list[str]]) -> Answer:
    """GET /count?window=1h&last=24: the exact union of the last N windows of one size, the
    current one included; 400 with the reason for a query it cannot answer. (Other query
    parameters are ignored, as on every path.)"""
    if len(asked.get("window", [])) > 1 or len(asked.get("last", [])) > 1:
        return HTTPStatus.BAD_REQUEST, _error_body("the query takes window=SIZE and last=N once")
    sizes = {sets.window.name: sets for sets in stats.windows}
    name = asked.get("window", [""])[0]
    if name not in sizes:
        counted = ", ".join(sizes) or "none: start lumu with --window"
        return HTTPStatus.BAD_REQUEST, _error_body(f"no window {name!r} (counted: {counted})")
    sets, text = sizes[name], asked.get("last", ["1"])[0]
    if not text.isdigit() or not 1 <= int(text) <= sets.window.keep:
        keep = sets.window.keep
        why = f"last must be 1 to {keep} (KEEP of window {name}), not {shorten(text, 20)}"
        return HTTPStatus.BAD_REQUEST, _error_body(why)
    last = int(text)
    start, end, unique, messages = sets.last(last, stats.clock_ms)
    body = {
        "window": name, "last": last, "start": format_millis(start), "end": format_millis(end),
        "unique_ips": unique, "messages": messages,
    }  # fmt: skip
    return HTTPStatus.OK, json.dumps(body).encode()


def _unique_ip_count(stats: Stats, _registry: CollectorRegistry) -> Answer:
    """The seed's FastAPI answer as it wrote it: compact JSON, `{"unique_ip_count":N}`."""
    return HTTPStatus.OK, b'{"unique_ip_count":%d}' % stats.unique_ips


def _healthz(stats: Stats, _registry: CollectorRegistry) -> Answer:
    status = HTTPStatus.OK if stats.healthy else HTTPStatus.SERVICE_UNAVAILABLE
    word = "ok" if stats.healthy else "broker unreachable"
    return status, json.dumps({"status": word}).encode()


def _metrics(_stats: Stats, registry: CollectorRegistry) -> Answer:
    from prometheus_client import generate_latest

    return HTTPStatus.OK, generate_latest(registry)


def _page(_stats: Stats, _registry: CollectorRegistry) -> Answer:
    from lumu_cli.page import PAGE

    return HTTPStatus.OK, PAGE.encode()


def _openapi(_stats: Stats, _registry: CollectorRegistry) -> Answer:
    return HTTPStatus.OK, json.dumps(openapi()).encode()


def _docs(_stats: Stats, _registry: CollectorRegistry) -> Answer:
    return HTTPStatus.OK, apidocs.page()


_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_COUNT_SCHEMA = {
    "type": "object",
    "required": ["unique_ips", "messages", "invalid", "invalid_by_reason", "rate", "healthy",
                 "waiting_for_topic", "updated_at", "as_of", "lag", "state_lag", "partitions"],
    "properties": {
        "unique_ips": _INT, "messages": _INT, "invalid": _INT,
        "invalid_by_reason": {"type": "object", "additionalProperties": _INT},
        "rate": {"type": "number", "description": "Records a second, over the last 5 s."},
        "healthy": {"type": "boolean", "description": "Whether a broker answers."},
        "waiting_for_topic": {"type": "boolean",
                              "description": "The topic does not exist yet: counting starts, "
                                             "from its first record, once it is created."},
        "updated_at": _TIME,
        "as_of": {**_TIME, "type": ["string", "null"],
                  "description": "When the oldest snapshot followed was written (null: every "
                                 "partition is counted here)."},
        "lag": {**_INT, "description": "Records not yet counted here."},
        "state_lag": {**_INT, "description": "Records beyond the snapshots followed."},
        "partitions": {"type": "array", "items": {
            "type": "object",
            "required": ["partition", "owner", "offset", "lag"],
            "properties": {
                "partition": _INT, "owner": {"enum": ["here", "elsewhere"]},
                "offset": {"type": ["integer", "null"]}, "lag": {"type": ["integer", "null"]},
                "as_of": _TIME,
            },
        }},
        "windows": {
            "type": "object",
            "description": "With --window only: by window size (1h, 1d, ...), the windows of "
                           "event time kept, each with a valid record, ascending by start.",
            "additionalProperties": {
                "type": "object", "required": ["keep", "late", "future", "counts"],
                "properties": {
                    "keep": _INT, "late": _INT, "future": _INT,
                    "counts": {"type": "array", "items": {
                        "type": "object", "required": ["start", "unique_ips", "messages"],
                        "properties": {"start": _TIME, "unique_ips": _INT, "messages": _INT},
                    }},
                },
            },
        },
    },
}  # fmt: skip
# GET /count?window=1h&last=24: the union of the last N windows of one size.
_ROLLING_SCHEMA = {
    "type": "object",
    "required": ["window", "last", "start", "end", "unique_ips", "messages"],
    "properties": {
        "window": {"type": "string"}, "last": _INT, "start": _TIME, "end": _TIME,
        "unique_ips": {**_INT, "description": "The exact union of the last N windows."},
        "messages": _INT,
    },
}  # fmt: skip
_ROLLING_PARAMETERS = (
    {"name": "window", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A window size lumu counts (--window), e.g. 1h: answer the union of the "
                    "last N windows of it instead of the whole count"},
    {"name": "last", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1},
     "description": "How many windows, the current one included (1 to KEEP; default 1)"},
)  # fmt: skip


@dataclass(frozen=True)
class _Route:
    """One path: what GET (and HEAD) answer, and how /openapi.json describes it."""

    summary: str
    content_type: str
    answer: Callable[[Stats, CollectorRegistry], Answer]
    schema: Mapping[str, object] | None = None  # of a JSON body
    also: tuple[HTTPStatus, ...] = ()  # statuses beside 200
    parameters: tuple[Mapping[str, object], ...] = ()  # query parameters
    other: Mapping[str, object] | None = None  # another schema its 200 may have (a query's)
    more_types: tuple[str, ...] = ()  # other content types its 200 may have


_ROUTES = {
    "/": _Route("The live page: the count, updated once a second", HTML, _page),
    "/count": _Route(
        "The unique-IP count, messages, invalid and lag; with ?window=&last=, the union of the "
        "last N windows of event time", JSON, _count, _COUNT_SCHEMA,
        also=(HTTPStatus.BAD_REQUEST,), parameters=_ROLLING_PARAMETERS, other=_ROLLING_SCHEMA,
    ),
    "/api/v1/unique_ip_count": _Route(
        "The seed service's path and answer: the unique-IP count alone", JSON, _unique_ip_count,
        {"type": "object", "required": ["unique_ip_count"],
         "properties": {"unique_ip_count": _INT}, "additionalProperties": False},
    ),
    "/healthz": _Route(
        "200 while a broker answers, 503 while none does", JSON, _healthz,
        {"type": "object", "properties": {"status": {"type": "string"}}},
        also=(HTTPStatus.SERVICE_UNAVAILABLE,),
    ),
    "/metrics": _Route("Prometheus text exposition", PROMETHEUS, _metrics),
    "/openapi.json": _Route("This description (OpenAPI 3.1)", JSON, _openapi, {"type": "object"}),
    _DOCS: _Route(
        "This description to read and try in a browser: Swagger UI, served by lumu itself "
        "(also at /api/docs/)", HTML, _docs,
    ),
    # (described here; answered by _asset, as every path under /api/docs/ is)
    f"{_DOCS}/{{file}}": _Route(
        "A file of the Swagger UI page, from its package: "
        f"{', '.join(apidocs.ASSETS)} (any other is 404)", _ASSET_TYPES[0], _docs,
        parameters=({"name": "file", "in": "path", "required": True,
                     "schema": {"enum": list(apidocs.ASSETS)}},),
        more_types=_ASSET_TYPES[1:],
    ),
}  # fmt: skip


def openapi() -> dict[str, object]:
    """The OpenAPI 3.1 description of every path the endpoint answers, made from its routes."""
    from lumu_cli import __version__

    error = {"description": "An error, with its reason", "content": {JSON: {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}  # fmt: skip
    paths = {}
    for path, route in _ROUTES.items():
        schema = route.schema if route.other is None else {"oneOf": [route.schema, route.other]}
        media = {"schema": schema} if schema is not None else {}
        responses: dict[str, object] = {
            str(status.value): {
                "description": status.phrase,
                "content": dict.fromkeys((route.content_type, *route.more_types), media),
            }
            for status in (HTTPStatus.OK, *route.also)
        }
        responses["default"] = error
        operation: dict[str, object] = {"summary": route.summary, "responses": responses}
        if route.parameters:
            operation["parameters"] = list(route.parameters)
        paths[path] = {"get": operation, "head": {**operation, "summary": f"HEAD of {path}"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lumu", "version": __version__,
                 "description": "The unique device IP count of lumu track --serve and lumu serve."},
        "paths": paths,
    }  # fmt: skip


# The targets whose answers depend on the snapshot alone: made once for each snapshot.
_PER_SNAPSHOT = frozenset(
    {b"/", b"/count", b"/api/v1/unique_ip_count", b"/healthz", b"/openapi.json"}
)


def _answer(stats: Stats, path: str, registry: CollectorRegistry) -> tuple[HTTPStatus, str, bytes]:
    """(status, content type, body) for GET `path` over `stats`."""
    if path == f"{_DOCS}/":
        path = _DOCS
    elif path.startswith(f"{_DOCS}/"):
        return _asset(path.removeprefix(f"{_DOCS}/"))
    route = _ROUTES.get(path)
    if route is None:
        return HTTPStatus.NOT_FOUND, JSON, _error_body(f"no such path: {path} (try /count)")
    status, body = route.answer(stats, registry)
    return status, route.content_type, body


def _asset(name: str) -> tuple[HTTPStatus, str, bytes]:
    """One of Swagger UI's files (read from its package the first time), or 404."""
    found = apidocs.asset(name)
    if found is None:
        message = f"no such file of the API docs: {_cut(name)} (try {_DOCS})"
        return HTTPStatus.NOT_FOUND, JSON, _error_body(message)
    kind, body = found
    return HTTPStatus.OK, kind, body


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _head(status: HTTPStatus, kind: str, length: int, *, lasting: bool = False) -> bytes:
    """An answer's status line and headers, without the blank line that ends them. `lasting`:
    the same for as long as this lumu runs (the API docs' page and files), which a browser may
    keep for a day."""
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status.value, status.phrase.encode(), kind.encode(), length,
    )  # fmt: skip
    return head + b"Cache-Control: public, max-age=86400\r\n" if lasting else head


def _raw(status: HTTPStatus, body: bytes, *, allow: bool = False) -> bytes:
    """A whole error response that closes the connection."""
    allowed = b"Allow: GET, HEAD\r\n" if allow else b""
    return _head(status, JSON, len(body)) + allowed + b"Connection: close\r\n\r\n" + body


# A head ends with an empty line. llhttp takes CRLF line ends only (a bare LF is a 400), so this
# is where every head it accepts ends, and the endpoint can give it one head at a time.
_END = b"\r\n\r\n"
_TOKEN = re.compile(rb"\r?\n?([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}) ")  # a method, as RFC 9110 has it
# What a connection is doing: waiting for a request, reading its head or its body, or closing
# (its last answer given, what the client still sends dropped for a moment).
_IDLE, _HEAD, _BODY, _CLOSING = "idle", "head", "body", "closing"


class _Beyond(Exception):
    """A request began after one with a chunked body, in the same read: that connection closes
    once the first is answered."""


class _Connection(asyncio.Protocol):
    """One client: its requests read with httptools (llhttp) under the limits and answered in
    order, each as it completes, in the loop's own callbacks (no task, no stream).

    Bytes are given to the parser one head at a time (up to its empty line, found here), then
    one body at a time (Content-Length), so that each head is measured exactly as sent and
    requests sent together (pipelined) are answered one after another. The deadlines are the
    endpoint's: one timer for every connection.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.state = _IDLE
        self.counted = False  # among the endpoint's open connections
        self.paused = False  # the client is not reading its answers: nor is its next request read
        self.pending = b""  # what came after the answer that paused it, read once it resumes
        self._begin()

    def _begin(self) -> None:
        """Ready for the next request."""
        self.target = b""
        self.fed = 0  # bytes of this request's head given to the parser
        self.tail = b""  # the last bytes of an unfinished head: its end may straddle two reads
        self.line_done = False  # whether the request line has ended
        self.hosts = 0
        self.length = 0  # Content-Length
        self.chunked = False
        self.body = 0  # body bytes read
        self.headed = False  # the head is complete
        self.done = False  # the request is complete
        self.method = b""
        self.version = ""
        self.keep_alive = True
        self.upgrade = False

    # ------------------------------------------------------------ httptools' callbacks

    def on_message_begin(self) -> None:
        if self.done:
            raise _Beyond

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"host":
            self.hosts += 1
        elif name == b"content-length":  # one, all digits: llhttp refuses any other
            self.length = int(value)
        elif name == b"transfer-encoding":  # ending in chunked: llhttp refuses any other
            self.chunked = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.headed = True
        self.method = parser.get_method()
        self.version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.done = True

    # ------------------------------------------------------------ asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered
        self.endpoint.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.closed(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.state is not _CLOSING and self.transport is not None:
            self.transport.resume_reading()
            pending, self.pending = self.pending, b""
            if pending:
                self.data_received(pending)

    def eof_received(self) -> bool:
        """The client sent all it will: a body cut short is told so; the connection closes
        once its answers are sent."""
        if self.state is _BODY and not self.pending:
            self._refuse(HTTPStatus.BAD_REQUEST, "request body cut short")
        return False

    def data_received(self, data: bytes) -> None:
        if self.state is _CLOSING:
            return  # dropped, as the connection closes
        if self.paused:
            self.pending += data
            return
        try:
            self._take(data)
        except _Refused as refused:
            self._refuse(refused.status, str(refused), allow=refused.allow)
        except Exception as exc:  # a bug: told in a line, answered
            self.endpoint.internal_error("serving a connection", exc)
            self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

    # ------------------------------------------------------------ reading

    def _take(self, data: bytes) -> None:
        """Read the requests in `data`, answering each one complete, then set the deadline of
        what is left: the head's (from its first byte), or the idle one."""
        endpoint, at, size = self.endpoint, 0, len(data)
        if self.state is _IDLE:
            endpoint.idle.pop(self, None)
        while at < size:
            if self.state is _BODY:
                at = self._take_body(data, at)
            else:
                self.state = _HEAD
                at = self._take_head(data, at)
            if self.done:
                self._answer()
                if self.state is _CLOSING:
                    return
                if self.paused and at < size:  # the rest is read once the client reads
                    self.pending = data[at:]
                    assert self.transport is not None
                    self.transport.pause_reading()
                    break
        if self.state is _IDLE:
            endpoint.due(endpoint.idle, self, IDLE_SECONDS)
        elif self not in endpoint.heads:
            endpoint.due(endpoint.heads, self, HEAD_SECONDS)

    def _take_head(self, data: bytes, at: int) -> int:
        """Give the parser the head bytes from `at`, to the head's end if it is here, never
        past MAX_HEAD + 1 bytes in all; where the next unread byte is."""
        tail = self.tail
        end = -1
        if tail:  # the end of the head may have begun in the last read
            found = (tail + data[at : at + 3]).find(_END)
            if found >= 0:
                end = at + found + 4 - len(tail)
        if end < 0:
            found = data.find(_END, at)
            end = found + 4 if found >= 0 else -1
        room = MAX_HEAD + 1 - self.fed
        if end < 0 or end - at > room:  # unfinished, or already too large: no further
            chunk = data[at : at + room]
            finished = False
        else:
            chunk = data[at:end]
            finished = True
        self.fed += len(chunk)
        self._feed(chunk)
        if not finished:
            if not self.line_done:
                self.line_done = b"\n" in chunk
            if self.fed > MAX_HEAD:
                if not self.line_done:
                    raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            self.tail = (tail + chunk)[-3:]
            return at + len(chunk)
        if not self.headed:  # empty lines before a request, which llhttp skips
            self.line_done = False
            self.tail = b""
            return end
        self.tail = b""
        self._check_head()
        if not self.done:
            self.state = _BODY
        return end

    def _take_body(self, data: bytes, at: int) -> int:
        """Give the parser the body bytes from `at` (a chunked body: all there is); where the
        next unread byte is."""
        chunk = data[at:] if self.chunked else data[at : at + self.length - self.body]
        self._feed(chunk)
        if self.body > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        return at + len(chunk)

    def _feed(self, chunk: bytes) -> None:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:  # answered as any request, then closed
            self.upgrade = True
        except httptools.HttpParserInvalidMethodError:
            method = _TOKEN.match(chunk) if self.fed == len(chunk) else None
            if method is None:
                raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request") from None
            raise _Refused(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method[1].decode()} is not allowed (use GET)", allow=True,
            ) from None  # fmt: skip
        except httptools.HttpParserError:
            if not self.done:  # else a request followed a chunked body: answered, then closed
                raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request") from None

    def _check_head(self) -> None:
        """Refuse a complete head beyond a limit, or for a method other than GET and HEAD."""
        if not self.version.startswith("1."):
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request")
        if self.hosts > 1 or (self.hosts == 0 and self.version != "1.0"):  # RFC 9112, 3.2
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request")
        if len(self.target) > MAX_TARGET:
            raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request target too long")
        if self.fed > MAX_HEAD:
            raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        if self.method not in (b"GET", b"HEAD"):  # its body is not read: closed after
            method = self.method.decode("ascii", "replace")
            raise _Refused(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed (use GET)", allow=True
            )
        if self.length > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")

    # ------------------------------------------------------------ answering

    def _answer(self) -> None:
        """Answer the request just read, then wait for the next one, or close."""
        endpoint, transport = self.endpoint, self.transport
        assert transport is not None
        endpoint.heads.pop(self, None)
        head, body = endpoint.answer(self.method, self.target)
        close = not self.keep_alive or self.upgrade or self.chunked
        if close:
            head += b"Connection: close\r\n"
        transport.write(head + b"\r\n" + body if self.method == b"GET" else head + b"\r\n")
        if close:
            self._close()
        else:
            self._begin()
            self.state = _IDLE

    def _refuse(self, status: HTTPStatus, message: str, *, allow: bool = False) -> None:
        """Answer with an error, then close."""
        if self.state is _CLOSING or self.transport is None:
            return
        self.transport.write(_raw(status, _error_body(message), allow=allow))
        self._close()

    def timed_out(self) -> None:
        """The head's deadline passed: 408. Idle past its time: closed without a word."""
        if self.state is _IDLE:
            self._close()
        else:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, "request not sent in time")

    def _close(self) -> None:
        """Close after the client has read the answer: say we are done sending, drop what it
        still sends for a moment (closing with its bytes unread would reset the connection, and
        the answer with it), then close."""
        transport = self.transport
        assert transport is not None
        self.state = _CLOSING
        self.pending = b""
        self.endpoint.closing(self)
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()


def _cut(text: str, limit: int = 100) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _stderr(line: str) -> None:
    sys.stderr.write(f"lumu: {line}\n")
    sys.stderr.flush()


class _Reports:
    """One-line reports, each kind at most once every REPORT_SECONDS: a flood of one trouble
    (a storm of clients while out of file handles) is a line, then a line with a count, not a
    line each. LUMU_DEBUG=1 puts an exception's traceback (without locals) before its line."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (when last told, held back since)

    def tell(self, kind: str, line: str, exc: BaseException | None = None) -> None:
        now = time.monotonic()
        told, held = self._last.get(kind, (-math.inf, 0))
        if now - told < REPORT_SECONDS:
            self._last[kind] = (told, held + 1)
            return
        self._last[kind] = (now, 0)
        if held:
            line += f"; {held} more like it in the last {now - told:.0f} s"
        if exc is not None and os.environ.get("LUMU_DEBUG") == "1":
            traceback.print_exception(exc)
        elif exc is not None:
            line += " (LUMU_DEBUG=1 shows the traceback)"
        self.notify(line)


def _allow_files(wanted: int) -> int | None:
    """Raise this process's open-file limit towards `wanted` (up to the hard limit), as servers
    do: a soft limit of 1,024 would refuse connections long before MAX_CONNECTIONS. The limit
    then in force; None if there is none."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv) where it is installed, else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address `host` names (every interface if empty), bound as
    asyncio's create_server binds them: IPv6 ones for IPv6 only, addresses reused at once, a
    family this machine lacks (IPv6 turned off) skipped."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    lacking: OSError | None = None
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                lacking = exc
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        if not sockets and lacking is not None:
            raise lacking
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Endpoint:
    """The HTTP endpoint, served from a background thread until `close`.

    `notify` takes each status line (without the `lumu: ` before it): the effective connection
    cap at start, pauses of accepting, internal errors. By default they go to stderr.
    """

    def __init__(
        self, address: str, stats: Callable[[], Stats], *, notify: Callable[[str], None] = _stderr
    ) -> None:
        from prometheus_client import CollectorRegistry

        host, port = parse_address(address)
        self.stats = stats
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(stats))
        self.registry.register(_Serving(self))
        self.connections = 0  # open and served now (not those lingering as they close)
        self.accept_pauses = 0
        self._reports = _Reports(notify)
        self._starting: set[asyncio.Task[object]] = set()  # accepted, getting their transports
        self._open: set[_Connection] = set()  # until each is closed, lingering ones too
        # The deadlines, each table in the order its deadlines fall (each adds a constant to the
        # time a connection entered it): one timer for them all, set for the earliest.
        self.heads: dict[_Connection, float] = {}  # a head begun (or its body), HEAD_SECONDS
        self.idle: dict[_Connection, float] = {}  # waiting for a request, IDLE_SECONDS
        self._lingering: dict[_Connection, float] = {}  # answered for the last time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._cached: tuple[Stats | None, dict[bytes, tuple[bytes, bytes]]] = (None, {})
        self._resumes: dict[socket.socket, asyncio.TimerHandle] = {}
        self._pause = ACCEPT_PAUSE
        self._closing = False
        self._files = _allow_files(MAX_CONNECTIONS + SPARE_FILES)
        # what the open-file limit leaves for connections, once the process's own are set aside
        self._room = (
            None if self._files is None else self._files - min(SPARE_FILES, self._files // 2)
        )
        try:
            self._sockets = _listen(host, port)
        except UnicodeError:  # getaddrinfo's IDNA encoding of the host: "a..b", a label too long
            raise UsageError(f"{address!r}: cannot listen: not a valid host name") from None
        except OSError as exc:  # in use, no such host, not an address of this machine...
            reason = exc.strerror or str(exc)  # "Address already in use": "address already..."
            raise UsageError(
                f"{address!r}: cannot listen: {reason[:1].lower()}{reason[1:]}"
            ) from None
        if self.max_connections < MAX_CONNECTIONS:
            notify(
                f"the open-file limit (ulimit -Hn) is {self._files}: at most "
                f"{self.max_connections} connections at once, not {MAX_CONNECTIONS}"
            )
        self._loop = _new_loop()
        self._loop.set_exception_handler(self._loop_error)
        for sock in self._sockets:
            self._loop.add_reader(sock, self._accept, sock)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        # The objects of start-up (modules, clients, a restored state) live as long as the
        # process: kept out of the collector's full passes, which stop every thread and would
        # otherwise walk them all, pausing answers (about 140 ms with 2,000 connections open).
        gc.freeze()

    @property
    def max_connections(self) -> int:
        """MAX_CONNECTIONS, or fewer if the open-file limit leaves room for fewer."""
        return MAX_CONNECTIONS if self._room is None else max(1, min(MAX_CONNECTIONS, self._room))

    def internal_error(self, doing: str, exc: BaseException) -> None:
        """Tell a bug met while `doing` something, in one line."""
        self._reports.tell(
            f"internal {type(exc).__name__}",
            f"http: internal error {doing}: {_cut(f'{type(exc).__name__}: {exc}', 200)}",
            exc,
        )

    def _loop_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """The loop's exception handler: anything that reaches it is a line, not a traceback."""
        exc = context.get("exception")
        if not isinstance(exc, BaseException):
            self._reports.tell(
                f"loop {context['message']}"[:60], f"http: {_cut(str(context['message']))}"
            )
            return
        self._reports.tell(
            f"loop {type(exc).__name__}",
            f"http: {_cut(str(context['message']))}: {_cut(f'{type(exc).__name__}: {exc}', 200)}",
            exc,
        )

    def _accept(self, sock: socket.socket) -> None:
        """Take the connections waiting on `sock` (BACKLOG at most a turn, as asyncio does)."""
        for _ in range(BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # gone before it was taken
                continue
            except OSError as exc:  # out of file handles, or another error that may go on
                self._stop_accepting(sock, exc)
                return
            self._pause = ACCEPT_PAUSE
            task = self._loop.create_task(self._start(conn))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _stop_accepting(self, sock: socket.socket, exc: OSError) -> None:
        """Pause accepting on `sock` (Linux would report it ready again and again), told in a
        line at most every REPORT_SECONDS; resume after the pause, each pause twice the last."""
        self._loop.remove_reader(sock)
        self._resumes[sock] = self._loop.call_later(self._pause, self._resume, sock)
        self._pause = min(2 * self._pause, ACCEPT_PAUSE_MAX)
        self.accept_pauses += 1
        why = exc.strerror or str(exc)
        if exc.errno == errno.EMFILE and self._files is not None:
            why += f" (the open-file limit is {self._files})"
        self._reports.tell(
            f"accept {exc.errno}",
            f"http: cannot accept connections: {why}: pausing, trying again within "
            f"{ACCEPT_PAUSE_MAX:g} s",
        )

    def _resume(self, sock: socket.socket) -> None:
        del self._resumes[sock]
        if not self._closing:
            self._loop.add_reader(sock, self._accept, sock)

    async def _start(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: _Connection(self), conn)
        except OSError:
            conn.close()

    def opened(self, connection: _Connection) -> None:
        """A connection's transport is made: serve it, or tell it 503 beyond the cap."""
        self._open.add(connection)
        if self._closing:  # accepted just as the endpoint closes
            assert connection.transport is not None
            connection.transport.close()
            return
        self.connections += 1
        connection.counted = True
        if self.connections > self.max_connections:
            connection._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections")
        else:
            self.due(self.idle, connection, IDLE_SECONDS)

    def closing(self, connection: _Connection) -> None:
        """A connection has given its last answer: no longer served, lingering a moment."""
        if connection.counted:
            connection.counted = False
            self.connections -= 1
        self.heads.pop(connection, None)
        self.idle.pop(connection, None)
        self.due(self._lingering, connection, LINGER_SECONDS)

    def closed(self, connection: _Connection) -> None:
        """A connection is gone: forgotten everywhere."""
        if connection.counted:
            connection.counted = False
            self.connections -= 1
        self._open.discard(connection)
        self.heads.pop(connection, None)
        self.idle.pop(connection, None)
        self._lingering.pop(connection, None)

    def due(self, table: dict[_Connection, float], connection: _Connection, seconds: float) -> None:
        """Put `connection` last in `table`, due in `seconds`."""
        at = self._loop.time() + seconds
        table.pop(connection, None)
        table[connection] = at
        if at < self._timer_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._sweep)

    def _sweep(self) -> None:
        """The one timer: act on every deadline passed, then wait for the next."""
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time() + 0.001  # the loop may wake a little early
        for table in (self.heads, self.idle, self._lingering):
            while table:
                connection, at = next(iter(table.items()))
                if at > now:
                    break
                del table[connection]
                if table is self._lingering:
                    if connection.transport is not None:
                        connection.transport.abort()  # it neither read its answer nor closed
                else:
                    connection.timed_out()
        fronts = [next(iter(table.values())) for table in (self.heads, self.idle,
                  self._lingering) if table]  # fmt: skip
        if fronts:
            self._arm(min(fronts))

    def answer(self, method: bytes, target: bytes) -> tuple[bytes, bytes]:
        """The head (without its blank line) and body answering GET `target`. Those that depend
        on the snapshot alone are made once a snapshot; a failure (a bug) is told in one line
        and answered 500."""
        path = ""
        try:
            stats = self.stats()
            taken, cache = self._cached
            if stats is not taken:
                cache = {}
                self._cached = stats, cache
            made = cache.get(target)
            if made is not None:
                return made
            path, _, query = target.decode("ascii", "replace").partition("?")
            asked = parse_qs(query, keep_blank_values=True)
            if path == "/count" and asked.keys() & {"window", "last"}:  # ?window=1h&last=24
                (status, body), kind = _rolling(stats, asked), JSON
            else:
                status, kind, body = _answer(stats, path, self.registry)
        except Exception as exc:
            how = method.decode("ascii", "replace")
            self.internal_error(
                f"answering {how} {_cut(path or target.decode('ascii', 'replace'))}", exc
            )
            raise _Refused(
                HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}"
            ) from None
        lasting = status is HTTPStatus.OK and path.startswith(_DOCS)
        made = _head(status, kind, len(body), lasting=lasting), body
        if target in _PER_SNAPSHOT and not (stats.windows and target == b"/count"):
            cache[target] = made  # (with windows, /count reads sets that change meanwhile)
        return made

    @property
    def url(self) -> str:
        host, port = self._sockets[0].getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def close(self) -> None:
        """Stop listening, drop the open connections, and end the server's thread."""

        async def stop() -> None:
            self._closing = True
            for sock in self._sockets:
                self._loop.remove_reader(sock)
                sock.close()
            for resume in self._resumes.values():
                resume.cancel()
            if self._timer is not None:
                self._timer.cancel()
            for task in list(self._starting):
                task.cancel()
            await asyncio.gather(*self._starting, return_exceptions=True)
            for connection in list(self._open):
                if connection.transport is not None:
                    connection.transport.close()  # what is written is still sent
            for _ in range(3):  # their connection_lost calls
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
