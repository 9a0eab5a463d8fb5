"""The HTTP endpoint, served on 127.0.0.1 (an ephemeral port) over a fixed stats snapshot.

Requests go through the stdlib's http.client; /metrics is read back with prometheus_client's
own text parser, and every expected number is taken from the snapshot the test made.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lumu_cli import server
from lumu_cli.errors import UsageError, shorten
from lumu_cli.kafka_io import PartitionInfo
from lumu_cli.server import JSON, Endpoint, parse_address
from lumu_cli.tracker import Stats

STATS = Stats(
    unique_ips=1234,
    messages=98765,
    invalid={"bad_timestamp": 7, "empty": 1, "not_json": 30},
    rate=250.5,
    elapsed=42.0,
    updated_at="2024-09-18T14:14:10.124Z",
    partitions=(
        PartitionInfo(0, 100, 130),
        PartitionInfo(1, None, 50),
        PartitionInfo(2, 9, 9),
        PartitionInfo(3, 40, 45, local=False, as_of="2024-09-18T14:14:09.500Z"),
        PartitionInfo(4, 70, 70, local=False, as_of="2024-09-18T14:14:08.000Z"),
    ),
    healthy=True,
    commits_refused=2,
    producers_abandoned=3,
)
PARTITIONS = [
    {"partition": 0, "owner": "here", "offset": 100, "lag": 30},
    {"partition": 1, "owner": "here", "offset": None, "lag": None},
    {"partition": 2, "owner": "here", "offset": 9, "lag": 0},
    {
        "partition": 3,
        "owner": "elsewhere",
        "offset": 40,
        "lag": 5,
        "as_of": "2024-09-18T14:14:09.500Z",
    },
    {
        "partition": 4,
        "owner": "elsewhere",
        "offset": 70,
        "lag": 0,
        "as_of": "2024-09-18T14:14:08.000Z",
    },
]


class Snapshot:
    """The stats callable the endpoint reads; a test may swap the snapshot it returns."""

    def __init__(self) -> None:
        self.stats = STATS

    def __call__(self) -> Stats:
        return self.stats


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Endpoint, Snapshot]]:
    snapshot = Snapshot()
    endpoint = Endpoint("127.0.0.1:0", snapshot)
    yield endpoint, snapshot
    endpoint.close()


@pytest.fixture
def snapshot(served: tuple[Endpoint, Snapshot]) -> Iterator[Snapshot]:
    yield served[1]
    served[1].stats = STATS


def connect(endpoint: Endpoint) -> http.client.HTTPConnection:
    url = urlsplit(endpoint.url)
    assert url.hostname is not None
    assert url.port is not None
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10)


@pytest.fixture
def conn(served: tuple[Endpoint, Snapshot]) -> Iterator[http.client.HTTPConnection]:
    connection = connect(served[0])
    yield connection
    connection.close()


def fetch(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn.request(method, path, body=body)
    response = conn.getresponse()
    return response.status, response.headers, response.read()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ---------------------------------------------------------------- parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8000", ("", 8000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::]:9", ("::", 9)),
    ],
)
def test_parse_address_accepts_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "8000",
        "localhost",
        "localhost:",
        "localhost:http",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:80.0",
        pytest.param(
            ":\u00b2",
            id="superscript-two",
        ),
        pytest.param(
            "::1",
            id="unbracketed-ipv6",
        ),
        pytest.param("[::1:8000", id="no-closing-bracket"),  # not [::] on every interface
        pytest.param("::1]:8000", id="no-opening-bracket"),
    ],
)
def test_parse_address_rejects_anything_else_with_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_address(text)
    example = "e.g. :8000, 127.0.0.1:8000 or [::1]:8000"
    assert str(raised.value) == f"{shorten(text)}: expected [HOST]:PORT, {example}"


@pytest.mark.parametrize("text", ["127.0.0.1:65536", ":99999", "[::1]:1" + "0" * 5000])
def test_parse_address_tells_a_port_out_of_range(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_address(text)
    assert str(raised.value) == f"{shorten(text)}: port out of range (0-65535)"


# ---------------------------------------------------------------- Endpoint


def test_the_url_names_the_port_actually_bound(served: tuple[Endpoint, Snapshot]) -> None:
    url = urlsplit(served[0].url)
    assert (url.scheme, url.hostname) == ("http", "127.0.0.1")
    assert url.port is not None
    assert url.port > 0


def test_count_is_json_of_the_snapshot(conn: http.client.HTTPConnection) -> None:
    status, headers, body = fetch(conn, "/count")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {
        "unique_ips": 1234,
        "messages": 98765,
        "invalid": 7 + 1 + 30,
        "invalid_by_reason": {"bad_timestamp": 7, "empty": 1, "not_json": 30},
        "rate": 250.5,
        "healthy": True,
        "waiting_for_topic": False,
        "updated_at": "2024-09-18T14:14:10.124Z",
        "as_of": "2024-09-18T14:14:08.000Z",  # the oldest snapshot followed
        "lag": 30,
        "state_lag": 5,
        "partitions": PARTITIONS,
    }


def test_count_follows_the_latest_snapshot(
    conn: http.client.HTTPConnection, snapshot: Snapshot
) -> None:
    snapshot.stats = replace(STATS, unique_ips=5, messages=6, invalid={}, rate=0.04, healthy=False)
    _, _, body = fetch(conn, "/count")
    assert json.loads(body) == {
        "unique_ips": 5,
        "messages": 6,
        "invalid": 0,
        "invalid_by_reason": {},
        "rate": 0.0,
        "healthy": False,
        "waiting_for_topic": False,
        "updated_at": STATS.updated_at,
        "as_of": "2024-09-18T14:14:08.000Z",
        "lag": 30,
        "state_lag": 5,
        "partitions": PARTITIONS,
    }


def test_healthz_is_200_while_a_broker_answers(conn: http.client.HTTPConnection) -> None:
    status, headers, body = fetch(conn, "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


def test_the_seed_path_answers_as_its_fastapi_service_did(
    conn: http.client.HTTPConnection, snapshot: Snapshot
) -> None:
    status, headers, body = fetch(conn, "/api/v1/unique_ip_count")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body == b'{"unique_ip_count":1234}'  # FastAPI's compact JSON, as its clients read it
    snapshot.stats = replace(STATS, unique_ips=5)
    assert json.loads(fetch(conn, "/api/v1/unique_ip_count?x=1")[2]) == {"unique_ip_count": 5}
    status, headers, body = fetch(conn, "/api/v1/unique_ip_count", "HEAD")
    assert (status, headers["Content-Length"], body) == (200, "21", b"")


def test_healthz_is_503_while_none_does(
    conn: http.client.HTTPConnection, snapshot: Snapshot
) -> None:
    snapshot.stats = replace(STATS, healthy=False)
    status, headers, body = fetch(conn, "/healthz")
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "broker unreachable"}


def test_metrics_are_prometheus_text_with_the_snapshot_numbers(
    conn: http.client.HTTPConnection,
) -> None:
    status, headers, body = fetch(conn, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = samples(body.decode())
    assert values[("lumu_unique_ips", frozenset())] == 1234
    assert values[("lumu_messages_total", frozenset())] == 98765
    invalid = {
        dict(labels)["reason"]: value
        for (name, labels), value in values.items()
        if name == "lumu_invalid_messages_total"
    }
    assert invalid == {"bad_timestamp": 7, "empty": 1, "not_json": 30}
    lag = {
        dict(labels)["partition"]: value
        for (name, labels), value in values.items()
        if name == "lumu_partition_lag"
    }
    assert lag == {"0": 130 - 100, "2": 0}  # partition 1 has no known position: no sample
    state_lag = {
        dict(labels)["partition"]: value
        for (name, labels), value in values.items()
        if name == "lumu_state_lag"
    }
    assert state_lag == {"3": 45 - 40, "4": 0}  # only the partitions counted elsewhere
    assert values[("lumu_up", frozenset())] == 1
    assert values[("lumu_commits_refused_total", frozenset())] == 2
    assert values[("lumu_state_producers_abandoned_total", frozenset())] == 3
    assert values[("lumu_waiting_for_topic", frozenset())] == 0


def test_a_service_waiting_for_its_topic_says_so_and_is_healthy(
    conn: http.client.HTTPConnection, snapshot: Snapshot
) -> None:
    empty = replace(STATS, unique_ips=0, messages=0, invalid={}, partitions=())
    snapshot.stats = replace(empty, waiting="topic 'device-events' on 127.0.0.1:9092")
    count = json.loads(fetch(conn, "/count")[2])
    assert (count["waiting_for_topic"], count["unique_ips"]) == (True, 0)
    assert fetch(conn, "/healthz")[0] == 200
    values = samples(fetch(conn, "/metrics")[2].decode())
    assert values[("lumu_waiting_for_topic", frozenset())] == 1


def test_metrics_count_open_connections_and_show_the_cap() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = min(256, hard // 2)  # what the README says is kept for all but connections
    room = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard - spare)
    with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
        held = [connect(endpoint) for _ in range(3)]
        for connection in held:  # answered: open on the server's side too
            assert fetch(connection, "/healthz")[0] == 200
        values = samples(fetch(held[0], "/metrics")[2].decode())
        for connection in held:
            connection.close()
    assert values[("lumu_http_connections", frozenset())] == 3
    assert values[("lumu_http_max_connections", frozenset())] == room
    assert values[("lumu_http_accept_pauses_total", frozenset())] == 0


def test_connections_closed_by_their_clients_are_counted_out() -> None:
    with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
        held = [connect(endpoint) for _ in range(4)]
        for connection in held:
            assert fetch(connection, "/healthz")[0] == 200
        for connection in held[1:3]:
            connection.close()
        until = time.monotonic() + 10
        while (
            open_now := samples(fetch(held[0], "/metrics")[2].decode())[
                ("lumu_http_connections", frozenset())
            ]
        ) != 2:  # the two still held, not one, nor none
            assert time.monotonic() < until, open_now
            time.sleep(0.05)
        for connection in (held[0], held[3]):
            connection.close()


def test_metrics_report_a_broker_outage(
    conn: http.client.HTTPConnection, snapshot: Snapshot
) -> None:
    snapshot.stats = replace(STATS, healthy=False, invalid={}, partitions=())
    _, _, body = fetch(conn, "/metrics")
    values = samples(body.decode())
    assert values[("lumu_up", frozenset())] == 0
    assert not any(name == "lumu_invalid_messages_total" for name, _ in values)


@pytest.mark.parametrize("path", ["/nope", "/index.html", "/count/", "/COUNT", "/metrics/x"])
def test_an_unknown_path_is_a_json_404(conn: http.client.HTTPConnection, path: str) -> None:
    status, headers, body = fetch(conn, path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": f"no such path: {path} (try /count)"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/count", "/nope"])
def test_other_methods_are_405_with_allow(
    conn: http.client.HTTPConnection, method: str, path: str
) -> None:
    status, headers, body = fetch(conn, path, method)
    assert status == 405
    assert {m.strip() for m in headers["Allow"].split(",")} == {"GET", "HEAD"}
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": f"{method} is not allowed (use GET)"}


@pytest.mark.parametrize("path", ["/count", "/healthz", "/metrics", "/nope"])
def test_head_gives_the_headers_of_get_and_no_body(
    conn: http.client.HTTPConnection, path: str
) -> None:
    get_status, get_headers, get_body = fetch(conn, path)
    status, headers, body = fetch(conn, path, "HEAD")
    assert status == get_status
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert int(headers["Content-Length"]) == len(get_body)
    assert body == b""
    assert fetch(conn, "/count")[0] == 200  # the connection is still in step


@pytest.mark.parametrize(
    ("path", "plain"),
    [("/count?pretty=1", "/count"), ("/healthz?", "/healthz"), ("/nope?x=/count", "/nope")],
)
def test_a_query_string_is_ignored(conn: http.client.HTTPConnection, path: str, plain: str) -> None:
    status, _, body = fetch(conn, path)
    plain_status, _, plain_body = fetch(conn, plain)
    assert (status, body) == (plain_status, plain_body)


def test_metrics_ignore_a_query_string(conn: http.client.HTTPConnection) -> None:
    status, _, body = fetch(conn, "/metrics?name[]=lumu_up")
    assert status == 200
    assert samples(body.decode())[("lumu_unique_ips", frozenset())] == 1234


@pytest.mark.parametrize(("path", "reason"), [("/count", "OK"), ("/nope", "Not Found")])
def test_the_status_line_has_its_reason_phrase(
    conn: http.client.HTTPConnection, path: str, reason: str
) -> None:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert response.reason == reason


def test_one_connection_serves_many_requests(conn: http.client.HTTPConnection) -> None:
    for path in ["/count", "/nope", "/healthz", "/metrics", "/count"]:
        status, _, _ = fetch(conn, path)
        assert status == (404 if path == "/nope" else 200)


def test_a_refused_request_with_a_body_leaves_the_connection_usable(
    conn: http.client.HTTPConnection,
) -> None:
    assert fetch(conn, "/count", "POST", body=b'{"reset": true}')[0] == 405
    status, _, body = fetch(conn, "/count")
    assert status == 200
    assert json.loads(body)["unique_ips"] == 1234


def test_a_port_in_use_is_a_usage_error(served: tuple[Endpoint, Snapshot]) -> None:
    port = urlsplit(served[0].url).port
    with pytest.raises(UsageError) as raised:
        Endpoint(f"127.0.0.1:{port}", Snapshot())
    assert str(raised.value) == f"'127.0.0.1:{port}': cannot listen: address already in use"


@pytest.mark.parametrize("host", ["a..b", "x" * 64])  # an empty label, a label over 63 bytes
def test_a_host_name_that_cannot_be_a_name_is_a_usage_error(host: str) -> None:
    with pytest.raises(UsageError) as raised:
        Endpoint(f"{host}:8000", Snapshot())
    assert str(raised.value) == f"'{host}:8000': cannot listen: not a valid host name"


def test_a_bad_address_is_a_usage_error_before_listening() -> None:
    with pytest.raises(UsageError, match=r"expected \[HOST\]:PORT"):
        Endpoint("127.0.0.1", Snapshot())


def test_close_stops_serving() -> None:
    endpoint = Endpoint("127.0.0.1:0", Snapshot())
    url = urlsplit(endpoint.url)
    assert url.hostname is not None
    assert url.port is not None
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    assert fetch(connection, "/healthz")[0] == 200
    connection.close()
    endpoint.close()
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection(url.hostname, url.port, timeout=10).request("GET", "/count")


# ---------------------------------------------------------------- internal errors


def broken() -> Stats:
    raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


BROKEN = "http: internal error answering GET /count: TypeError: unsupported operand type(s) for +: "


def test_an_internal_error_is_a_500_and_one_line_on_stderr(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LUMU_DEBUG", raising=False)
    with Endpoint("127.0.0.1:0", broken) as endpoint:
        connection = connect(endpoint)
        for path in ["/count", "/count", "/metrics", "/count"]:  # a 500 closes: http.client reopens
            status, headers, body = fetch(connection, path)
            assert (status, headers["Content-Type"]) == (500, "application/json")
            assert json.loads(body) == {"error": "internal error: TypeError"}
        connection.close()
    out, err = capfd.readouterr()
    assert out == ""
    assert err == f"lumu: {BROKEN}'int' and 'str' (LUMU_DEBUG=1 shows the traceback)\n"  # once


def test_an_internal_error_names_its_own_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUMU_DEBUG", raising=False)

    def missing() -> Stats:
        raise KeyError("unique_ips")

    told: list[str] = []
    with Endpoint("127.0.0.1:0", missing, notify=told.append) as endpoint:
        connection = connect(endpoint)
        status, _, body = fetch(connection, "/count")
        connection.close()
    assert (status, json.loads(body)) == (500, {"error": "internal error: KeyError"})
    assert told == [
        "http: internal error answering GET /count: KeyError: 'unique_ips' "
        "(LUMU_DEBUG=1 shows the traceback)"
    ]


def test_an_internal_error_past_the_answer_is_a_500_and_one_line_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LUMU_DEBUG", raising=False)
    wrong = server._Route("a bug: a body that is not bytes", JSON, lambda *_: (
        HTTPStatus.OK, "{}"))  # type: ignore[arg-type]  # fmt: skip
    monkeypatch.setitem(server._ROUTES, "/count", wrong)
    told: list[str] = []
    with Endpoint("127.0.0.1:0", Snapshot(), notify=told.append) as endpoint:
        connection = connect(endpoint)
        status, headers, body = fetch(connection, "/count")
        connection.close()
    assert (status, headers["Content-Type"]) == (500, "application/json")
    assert json.loads(body) == {"error": "internal error: TypeError"}
    assert told == [
        "http: internal error serving a connection: TypeError: can't concat str to bytes "
        "(LUMU_DEBUG=1 shows the traceback)"
    ]


def test_lumu_debug_puts_the_traceback_before_the_line(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUMU_DEBUG", "1")
    told: list[str] = []
    with Endpoint("127.0.0.1:0", broken, notify=told.append) as endpoint:
        connection = connect(endpoint)
        assert fetch(connection, "/count")[0] == 500
        connection.close()
    _, err = capfd.readouterr()
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("TypeError: unsupported operand type(s) for +: 'int' and 'str'\n")
    assert ", in broken\n" in err
    assert told == [f"{BROKEN}'int' and 'str'"]  # through notify, without the hint


def test_an_error_reaching_the_event_loop_is_one_line(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LUMU_DEBUG", raising=False)
    done = threading.Event()

    def lost() -> None:
        raise RuntimeError("a callback lost its way")

    with Endpoint("127.0.0.1:0", Snapshot()) as endpoint:
        for _ in range(3):
            endpoint._loop.call_soon_threadsafe(lost)  # as an unexpected error would reach it
        endpoint._loop.call_soon_threadsafe(done.set)  # after them, in order
        assert done.wait(10)
    _, err = capfd.readouterr()
    assert re.fullmatch(
        r"lumu: http: Exception in callback .*lost.*: RuntimeError: a callback lost its way "
        r"\(LUMU_DEBUG=1 shows the traceback\)\n",
        err,
    ), err


# ---------------------------------------------------------------- /openapi.json


def documented_paths() -> set[str]:
    """The paths the README's `lumu serve` table documents (`GET /count` and so on)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## `lumu serve`", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `GET (/\S*)` \|", section, re.M))


def test_openapi_describes_every_documented_path_and_nothing_else_answers(
    conn: http.client.HTTPConnection,
) -> None:
    status, headers, body = fetch(conn, "/openapi.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    spec = json.loads(body)
    assert spec["openapi"] == "3.1.0"
    assert documented_paths() == set(spec["paths"])
    assert documented_paths() >= {"/count", "/healthz", "/metrics", "/openapi.json"}
    for path, operations in spec["paths"].items():
        assert set(operations) == {"get", "head"}
        for asked in [path] if "{" not in path else templated(path, operations["get"]):
            status, headers, body = fetch(conn, asked)
            response = operations["get"]["responses"][str(status)]  # a documented status
            media = response["content"][headers["Content-Type"]]  # a documented type
            if "schema" in media:
                jsonschema.validate(json.loads(body), media["schema"])  # Draft 2020-12, as 3.1
    assert fetch(conn, "/nope")[0] == 404


def templated(path: str, operation: dict[str, Any]) -> list[str]:
    """`path` with its one path parameter set to each value its schema allows."""
    ((parameter,),) = [[p for p in operation["parameters"] if p["in"] == "path"]]
    return [
        path.replace(f"{{{parameter['name']}}}", value) for value in parameter["schema"]["enum"]
    ]


def test_the_count_schema_is_strict_enough_to_fail(conn: http.client.HTTPConnection) -> None:
    schema = json.loads(fetch(conn, "/openapi.json")[2])["paths"]["/count"]["get"]["responses"][
        "200"]["content"]["application/json"]["schema"]  # fmt: skip
    answer = json.loads(fetch(conn, "/count")[2])
    jsonschema.validate(answer, schema)
    wrong_owner = [{"partition": 0, "owner": "there", "offset": 1, "lag": 0}]
    no_lag = {key: value for key, value in answer.items() if key != "lag"}
    for broken in ({**answer, "unique_ips": "1234"}, no_lag, {**answer, "partitions": wrong_owner}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_count_answers_the_exact_union_of_the_last_windows(
    snapshot: Snapshot, conn: http.client.HTTPConnection
) -> None:
    import dataclasses

    import numpy as np

    from lumu_cli.windows import Window, WindowSets

    hour = 3_600_000
    now = 1_764_928_800_000 + hour // 2  # 2025-12-05T10:30:00Z
    sets = WindowSets(Window(hour, keep=24))
    times = np.array([now, now - hour, now - hour, now - 3 * hour, now - 24 * hour], np.int64)
    sets.add(now, times, np.array([1, 1, 2, 3, 4], np.uint32))  # the last one is late
    snapshot.stats = dataclasses.replace(STATS, windows=(sets,), clock_ms=now)
    status, _, body = fetch(conn, "/count?window=1h&last=2")
    assert status == 200
    assert json.loads(body) == {
        "window": "1h", "last": 2, "start": "2025-12-05T09:00:00.000Z",
        "end": "2025-12-05T11:00:00.000Z", "unique_ips": 2, "messages": 3,
    }  # fmt: skip
    assert json.loads(fetch(conn, "/count?window=1h&last=24")[2])["unique_ips"] == 3
    assert json.loads(fetch(conn, "/count")[2])["windows"]["1h"]["late"] == 1
    spec = json.loads(fetch(conn, "/openapi.json")[2])["paths"]["/count"]["get"]
    schema = spec["responses"]["200"]["content"]["application/json"]["schema"]
    for path in ("/count", "/count?window=1h&last=2"):
        jsonschema.validate(json.loads(fetch(conn, path)[2]), schema)
    assert {p["name"] for p in spec["parameters"]} == {"window", "last"}
    assert "400" in spec["responses"]
    metrics = fetch(conn, "/metrics")[2].decode()
    assert 'lumu_window_unique_ips{window="1h"} 1.0' in metrics  # the current window: 10:00
    assert 'lumu_window_messages{window="1h"} 1.0' in metrics
    assert 'lumu_window_late_total{window="1h"} 1.0' in metrics
    assert 'lumu_window_future_total{window="1h"} 0.0' in metrics
    for query, words in [
        ("window=1h&last=25", "last must be 1 to 24 (KEEP of window 1h), not '25'"),
        ("window=1h&last=0", "last must be 1 to 24"),
        ("window=2h&last=1", "no window '2h' (counted: 1h)"),
        ("last=2", "no window ''"),
        ("window=1h&window=1d", "the query takes window=SIZE and last=N once"),
    ]:
        status, headers, body = fetch(conn, f"/count?{query}")
        assert (status, headers["Content-Type"]) == (400, "application/json"), query
        assert json.loads(body) == {"error": words} or words in json.loads(body)["error"]


# ---------------------------------------------------------------- the API docs (Swagger UI)


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/"])
def test_the_api_docs_page_starts_swagger_ui_on_this_description(
    conn: http.client.HTTPConnection, path: str
) -> None:
    status, headers, body = fetch(conn, path)
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert headers["Cache-Control"] == "public, max-age=86400"
    page = body.decode()
    assert 'url: "/openapi.json"' in page
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(loaded) == [
        "/api/docs/favicon-32x32.png", "/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"
    ]  # fmt: skip
    assert not re.findall(r"https?://", page)  # nothing from elsewhere
    assert fetch(conn, path, "HEAD")[2] == b""


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("favicon-32x32.png", "image/png"),
        ("LICENSE", "text/plain; charset=utf-8"),
    ],
)
def test_the_api_docs_files_come_from_the_swagger_ui_package(
    conn: http.client.HTTPConnection, name: str, kind: str
) -> None:
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    status, headers, body = fetch(conn, f"/api/docs/{name}")
    assert (status, headers["Content-Type"]) == (200, kind)
    assert headers["Cache-Control"] == "public, max-age=86400"
    assert body == (folder / name).read_bytes()
    status, headers, body = fetch(conn, f"/api/docs/{name}", "HEAD")
    assert (status, int(headers["Content-Length"]), body) == (
        200,
        (folder / name).stat().st_size,
        b"",
    )


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-initializer.js", "..%2F..%2Fopenapi.json", "../LICENSE", "x"]
)
def test_no_other_file_is_served_under_the_api_docs(
    conn: http.client.HTTPConnection, name: str
) -> None:
    status, headers, body = fetch(conn, f"/api/docs/{name}")
    assert (status, headers["Content-Type"]) == (404, "application/json")
    assert json.loads(body)["error"].startswith("no such file of the API docs")
    assert "Cache-Control" not in headers


def test_the_live_page_links_to_the_api_docs(conn: http.client.HTTPConnection) -> None:
    assert b'<a href="/api/docs">' in fetch(conn, "/")[2]


def test_the_api_docs_import_nothing_of_the_package_and_read_its_files_when_asked() -> None:
    code = """
import sys
from lumu_cli import apidocs, server
before = sorted(name for name in ("swagger_ui", "jinja2", "yaml") if name in sys.modules)
assert apidocs._folder.cache_info().currsize == 0, "nothing found before it is asked"
kind, body = apidocs.asset("swagger-ui-bundle.js")
after = sorted(name for name in ("swagger_ui", "jinja2", "yaml") if name in sys.modules)
print(before, after, kind, len(body) > 100_000)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[0] == "[] [] text/javascript; charset=utf-8 True"
