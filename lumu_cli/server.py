"""The HTTP endpoint: /count, /healthz and /metrics over the tracker's latest stats snapshot.

Handlers only read a published, immutable `Stats`, so a request never waits for the consume loop
and the consume loop never waits for a request.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from lumu_cli.errors import UsageError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from lumu_cli.tracker import Stats

__all__ = ["Endpoint", "parse_address"]

JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST]:PORT` -> (host, port); an empty host means every interface, as `:8000` does."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if (
        not sep
        or not (port.isascii() and port.isdigit())
        or int(port) > 65535
        or (":" in host and not bracketed)  # an IPv6 host needs brackets: [::1]:8000
    ):
        example = "e.g. :8000, 127.0.0.1:8000 or [::1]:8000"
        raise UsageError(f"--serve {text!r}: expected [HOST]:PORT, {example}")
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so scrapers and load tests reuse connections
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms ACK wait
    server: _Server

    def do_GET(self) -> None:
        stats = self.server.stats()
        path = self.path.partition("?")[0]
        if path == "/count":
            body = {
                "unique_ips": stats.unique_ips,
                "messages": stats.messages,
                "invalid": stats.invalid_total,
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
            self._send(HTTPStatus.OK, JSON, json.dumps(body).encode())
        elif path == "/healthz":
            status = HTTPStatus.OK if stats.healthy else HTTPStatus.SERVICE_UNAVAILABLE
            word = "ok" if stats.healthy else "broker unreachable"
            self._send(status, JSON, json.dumps({"status": word}).encode())
        elif path == "/metrics":
            from prometheus_client import generate_latest

            self._send(HTTPStatus.OK, PROMETHEUS, generate_latest(self.server.registry))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path: {path} (try /count)")

    do_HEAD = do_GET  # _send leaves the body out

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # its body, if any, is not read: it must not become a request
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed (use GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, JSON, json.dumps({"error": message}).encode())

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # stderr belongs to the live view and status lines


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stats: Callable[[], Stats]
    registry: CollectorRegistry


class _Server6(_Server):
    """IPv6, and IPv4 too on `::` where the system allows (as `python -m http.server` does)."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _listen(host: str, port: int) -> _Server:
    """A server on host:port; an empty host is every interface, IPv6 and IPv4 if possible."""
    if ":" in host:
        return _Server6((host, port), _Handler)
    if not host:
        try:
            return _Server6(("::", port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise
        host = "0.0.0.0"  # no IPv6 here
    return _Server((host, port), _Handler)


class Endpoint:
    """The HTTP endpoint, served from a background thread until `close`."""

    def __init__(self, address: str, stats: Callable[[], Stats]) -> None:
        host, port = parse_address(address)
        try:
            self._server = _listen(host, port)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UsageError(f"--serve {address!r}: cannot listen: {reason}") from None
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(stats))
        self._server.stats, self._server.registry = stats, registry
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
