"""Benchmark `lumu track --serve`'s /count under load, against the same body served by others.

(Named http_serve.py, not http.py: a bench/http.py would shadow the standard library's `http`
package, both for this script and for mypy, which checks bench/ beside lumu_cli.)

Preloads BENCH_HTTP_PRELOAD (200,000) records drawn from a pool of BENCH_HTTP_IPS (100,000)
addresses (`lumu produce --seed 1`) into a fresh topic, starts
`lumu track --serve 127.0.0.1:PORT --from-beginning` on it, waits until it has counted them, and
keeps `lumu produce --rate BENCH_HTTP_RATE (2000)` running from the same pool (the same seed),
so it is tracking while it is asked and the unique count stays the pool's. Then, for
BENCH_HTTP_ROUNDS (4) rounds, the order rotated, drives each server for BENCH_HTTP_SECONDS (8)
s with BENCH_HTTP_CLIENTS (16) keep-alive connections on loopback:

  - lumu: GET /count of `lumu track --serve` (its endpoint: an asyncio Protocol reading with
    httptools on uvloop, on a thread of its own in the same process as the consume loop,
    reading the latest published snapshot);
  - uvicorn: a minimal ASGI app that answers every request with lumu's /count body (the same
    bytes, fetched once), `uvicorn.run(app, loop="uvloop", http="httptools",
    access_log=False)`, one process of its own: uvicorn at its fastest (printed; FAIL if uvloop
    or httptools is missing, rather than a weaker baseline);
  - stdlib: a bare ThreadingHTTPServer (HTTP/1.1, no logging), the same body, with TCP_NODELAY
    (`disable_nagle_algorithm = True`) as asyncio sets it on every connection, in its own
    process;
  - stdlib-nagle, for context: the same without TCP_NODELAY. Its handler writes the head and
    the body in two sends, and on a keep-alive connection Nagle's algorithm holds the body back
    until the client's delayed ACK (about 40 ms on Linux).

The headline is lumu against uvicorn (target, issue 21: at least 1.0x); the stdlib servers
follow as context. None of the baselines tracks anything meanwhile.

The load comes from wrk where it is installed (`apt-get install wrk`): `wrk -c16 -t2 -d8s
--latency`, as issue 21 measured, a C client light on the two cores the servers share. It
checks statuses and sockets, not bodies, so before and after each load one answer of each
server is read and checked here. With BENCH_HTTP_CLIENT=python (or without wrk),
BENCH_HTTP_CLIENTS Python threads instead, each with one http.client connection, bounded in
time and in requests, which read and check every answer: 200, and JSON that is the body served
(the baselines), or lumu's count of the pool with at least the preloaded messages. They are
heavier than the servers they drive: their figures say more about the client than the server.

Prints each round's requests/s and p99, their medians and the ratios. Checks (FAIL and
exit 1 when one does not hold): every answer as above, none failed; tracking kept up: right
after each load lumu's count was at most 2 s of records behind the topic's end, and after the
producer stops it catches up with every record; its final summary counts every record of the
topic and the pool's unique IPs.

Usage: python bench/http_serve.py   (env: the BENCH_HTTP_* knobs above, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures import check, ratio, readme
from kafka_bench import (
    LUMU,
    broker,
    end_offsets,
    env_int,
    fresh_name,
    machine,
    median,
    preload,
    rotations,
    run_main,
    spawned,
    stop,
    summary_of,
    wait_for,
)

HOST = "127.0.0.1"
MAX_REQUESTS_PER_CLIENT = 2_000_000  # the Python client's bound beside the time bound
BEHIND_SECONDS = 2  # tracking kept up: at most this many seconds of records behind after a load

BASELINE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, body, nodelay = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3] == "1"
backlog = int(sys.argv[4]) if len(sys.argv) > 4 else 5  # 5: socketserver's default

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = nodelay  # TCP_NODELAY on each connection

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = backlog

Server(("127.0.0.1", port), Handler).serve_forever()
"""

UVICORN_SERVER = """
import sys
import uvicorn

port, body = int(sys.argv[1]), sys.argv[2].encode()
start = {"type": "http.response.start", "status": 200, "headers": [
    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
answer = {"type": "http.response.body", "body": body}

async def app(scope, receive, send):
    await send(start)
    await send(answer)

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
            lifespan="off", loop="uvloop", http="httptools")
"""


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # connections that failed, answers that were not 200
    wrong: int = 0  # answers that were 200 with a body not as expected


Valid = Callable[[bytes], bool]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str = "/count", timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def count(port: int) -> dict[str, Any] | None:
    """lumu's /count, or None while it does not answer."""
    try:
        status, body = get(port)
    except OSError:
        return None
    result: dict[str, Any] = json.loads(body)
    return result if status == 200 else None


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(port: int, clients: int, seconds: int, _valid: Valid) -> Load:
    """The load from wrk: statuses and sockets checked, bodies not."""
    cmd = ["wrk", f"-c{clients}", "-t2", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    out = subprocess.run(
        [*cmd, f"http://{HOST}:{port}/count"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    done = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if not (done and rate and "50" in latency and "99" in latency):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx[1]) if non_2xx else 0
    return Load(float(rate[1]), _ms(latency["50"]), _ms(latency["99"]), int(done[1]), errors)


def threads(port: int, clients: int, seconds: int, valid: Valid) -> Load:
    """`clients` threads, each with one keep-alive connection; every answer checked."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors, wrong = [0] * clients, [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = 0.0

    def client(index: int) -> None:
        mine, clock = latencies[index], time.perf_counter
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        start.wait()
        while clock() < deadline and len(mine) < MAX_REQUESTS_PER_CLIENT:
            began = clock()
            try:
                conn.request("GET", "/count")
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
                continue
            mine.append(clock() - began)
            if response.status != 200:
                errors[index] += 1
            elif not valid(body):
                wrong[index] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for worker in workers:
        worker.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait(timeout=30)
    for worker in workers:
        worker.join(timeout=seconds + 30)
    wall = time.perf_counter() - began
    every = sorted(x for mine in latencies for x in mine)
    if not every:
        raise RuntimeError("no request was answered")

    def pct(q: float) -> float:
        return every[min(len(every) - 1, int(q * len(every)))] * 1000

    return Load(len(every) / wall, pct(0.50), pct(0.99), len(every), sum(errors), sum(wrong))


TARGETS = {  # name -> label
    "lumu": "lumu track --serve",
    "uvicorn": "uvicorn (uvloop, httptools), minimal ASGI app",
    "stdlib": "stdlib server, TCP_NODELAY",
    "stdlib-nagle": "stdlib server, Nagle on",
}
HEADLINE = "uvicorn"
TARGET = 1.0  # issue 21: /count at least as fast as uvicorn with uvloop and httptools


def uvicorn_build() -> str:
    """uvicorn's version, and those of the loop and parser it is told to run on."""
    missing = [name for name in ("uvloop", "httptools") if not importlib.util.find_spec(name)]
    check(not missing, f"uvicorn's baseline needs {' and '.join(missing)}: pip install uvloop "
          "httptools (uvicorn[standard])")  # fmt: skip
    version = importlib.metadata.version
    return (f"uvicorn {version('uvicorn')} on uvloop {version('uvloop')} and httptools "
            f"{version('httptools')}")  # fmt: skip


@dataclass
class Setting:
    """What the rounds need: where each server listens, the body, the load, the checks."""

    bootstrap: str
    topic: str
    ports: dict[str, int]
    body: bytes
    rate: int
    ips: int
    preloaded: int
    rounds: int
    seconds: int
    clients: int
    drive: Callable[[int, int, int, Valid], Load]
    logs: Path

    def valid(self, name: str) -> Valid:
        """The check of a body `name` answered."""
        if name != "lumu":
            return self.body.__eq__
        ips, preloaded = self.ips, self.preloaded

        def counted(body: bytes) -> bool:
            answer = json.loads(body)
            return bool(answer["unique_ips"] == ips and answer["messages"] >= preloaded)

        return counted


def main() -> None:
    preloaded = env_int("BENCH_HTTP_PRELOAD", 200_000)
    ips = env_int("BENCH_HTTP_IPS", 100_000)
    rate = env_int("BENCH_HTTP_RATE", 2000)
    rounds = env_int("BENCH_HTTP_ROUNDS", 4)
    seconds = env_int("BENCH_HTTP_SECONDS", 8)
    clients = env_int("BENCH_HTTP_CLIENTS", 16)
    use_wrk = shutil.which("wrk") is not None and os.environ.get("BENCH_HTTP_CLIENT") != "python"
    client = f"wrk -c{clients} -t2" if use_wrk else f"{clients} Python threads (http.client)"
    print(machine())
    print(f"baselines: {uvicorn_build()}; {sys.version.split()[0]}'s http.server")
    logs = Path(tempfile.mkdtemp(prefix="lumu-bench-http-"))
    try:
        with broker() as bootstrap:
            topic = fresh_name("bench-http")
            load = preload(bootstrap, topic, preloaded, ips=ips)
            distinct = load.summary["distinct_ips"]
            print(f"preload: {load.summary['delivered']:,} records into {topic}, {distinct:,} "
                  f"distinct IPs", flush=True)  # fmt: skip
            check(distinct == ips, f"the preload used {distinct:,} of the pool's {ips:,} "
                  "addresses: too few records for BENCH_HTTP_IPS")  # fmt: skip
            ports = {name: free_port() for name in TARGETS}
            track = [
                LUMU, "track", "--serve", f"{HOST}:{ports['lumu']}", "--from-beginning",
                "--group", fresh_name("bench-http"), "-t", topic, "-b", bootstrap,
            ]  # fmt: skip
            with (
                (logs / "track.err").open("w") as track_err,
                spawned(track, stdout=subprocess.PIPE, stderr=track_err) as tracker,
            ):
                began = time.perf_counter()

                def counted_preload() -> bool:
                    answer = count(ports["lumu"]) if tracker.poll() is None else None
                    return tracker.poll() is not None or (
                        answer is not None and answer["messages"] >= preloaded
                    )

                wait_for("lumu track to count the preload", counted_preload, timeout=180)
                check(tracker.poll() is None, f"lumu track exited:\n{_tail(logs / 'track.err')}")
                print(f"lumu track counted the preload in {time.perf_counter() - began:.1f} s "
                      f"(process start-up included)", flush=True)  # fmt: skip
                body = get(ports["lumu"])[1]
                setting = Setting(
                    bootstrap, topic, ports, body, rate, ips, preloaded, rounds, seconds,
                    clients, wrk if use_wrk else threads, logs,
                )  # fmt: skip
                runs, kept = run_rounds(setting)
                out, _ = stop(tracker)
            final = summary_of(out)
            ends = sum(end_offsets(bootstrap, topic).values())
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    check(
        final["messages"] == ends and final["unique_ips"] == ips,
        f"lumu track's final count: {final['messages']:,} messages and {final['unique_ips']:,} "
        f"unique IPs; the topic holds {ends:,} records from a pool of {ips:,}",
    )
    report(runs, kept, final, body, client, setting)


def report(
    runs: dict[str, list[Load]],
    kept: list[str],
    final: dict[str, Any],
    body: bytes,
    client: str,
    setting: Setting,
) -> None:
    checked = (
        "every answer checked" if setting.drive is threads
        else "statuses checked, and one answer of each server before and after each load"
    )  # fmt: skip
    print(f"\nGET /count, {setting.clients} keep-alive clients ({client}), {setting.seconds} s "
          f"each, median of {setting.rounds} rounds; body {len(body)} bytes; "
          f"{checked}")  # fmt: skip
    rps = {name: median([r.requests_per_s for r in loads]) for name, loads in runs.items()}
    p99 = {name: median([r.p99_ms for r in loads]) for name, loads in runs.items()}
    for name, label in TARGETS.items():
        p50 = median([r.p50_ms for r in runs[name]])
        done = sum(r.requests for r in runs[name])
        print(f"  {label:<46} {rps[name]:>9,.0f} requests/s  p50 {p50:7.2f} ms  "
              f"p99 {p99[name]:7.2f} ms  ({done:,} answers)")  # fmt: skip
    lumu = rps["lumu"]
    each = ", ".join(
        f"{a.requests_per_s / b.requests_per_s:.2f}x"
        for a, b in zip(runs["lumu"], runs[HEADLINE], strict=True)
    )
    met = "met" if lumu >= TARGET * rps[HEADLINE] else "not met"
    print(f"  {ratio(lumu, rps[HEADLINE], TARGETS[HEADLINE], 'headline')}; round by round "
          f"{each} (target {TARGET:g}x: {met})")  # fmt: skip
    for name in ("stdlib", "stdlib-nagle"):
        print(f"  {ratio(lumu, rps[name], TARGETS[name], 'context')}")
    print(f"tracking while loaded (lumu produce --rate {setting.rate}, the same pool):")
    for line in kept:
        print(f"  {line}")
    print(f"  lumu track's summary at the end: {json.dumps(final)}")

    def served(name: str) -> str:
        return f"{rps[name]:,.0f} req/s, p99 {p99[name]:.1f} ms"

    readme(
        [f"`http_serve.py`: `GET /count` ({len(body)} bytes), {setting.clients} keep-alive "
         f"clients ({client}), while tracking {setting.rate:,} records/s, median of "
         f"{setting.rounds} rounds", served("lumu"),
         f"{TARGETS[HEADLINE]} (the same body): {served(HEADLINE)}",
         f"{lumu / rps[HEADLINE]:.2f}x (target {TARGET:g}x: {met})"],
        ["", "", f"{TARGETS['stdlib']}: {served('stdlib')}", f"{lumu / rps['stdlib']:.2f}x"],
        ["", "", f"{TARGETS['stdlib-nagle']} (40 ms delayed ACKs): {served('stdlib-nagle')}",
         f"{lumu / rps['stdlib-nagle']:.2f}x"],
    )  # fmt: skip


def run_rounds(setting: Setting) -> tuple[dict[str, list[Load]], list[str]]:
    """The rotating load rounds, with the producer and the baseline servers running."""
    ports, logs, body = setting.ports, setting.logs, setting.body.decode()
    servers = {
        "uvicorn": [sys.executable, "-c", UVICORN_SERVER, str(ports["uvicorn"]), body],
        "stdlib": [sys.executable, "-I", "-c", BASELINE_SERVER, str(ports["stdlib"]), body, "1"],
        "stdlib-nagle": [
            sys.executable, "-I", "-c", BASELINE_SERVER, str(ports["stdlib-nagle"]), body, "0"
        ],
    }  # fmt: skip
    produce = [
        LUMU, "produce", "--rate", str(setting.rate), "--ips", str(setting.ips), "--seed", "1",
        "--invalid-ratio", "0.01", "-t", setting.topic, "-b", setting.bootstrap,
    ]  # fmt: skip
    runs: dict[str, list[Load]] = {name: [] for name in TARGETS}
    kept: list[str] = []
    with (
        (logs / "base.err").open("w") as base_err,
        (logs / "produce.err").open("w") as produce_err,
        spawned(servers["uvicorn"], stderr=base_err) as uvicorn,
        spawned(servers["stdlib"], stderr=base_err) as nodelay,
        spawned(servers["stdlib-nagle"], stderr=base_err) as nagle,
        spawned(produce, stdout=subprocess.PIPE, stderr=produce_err) as producer,
    ):
        for name, proc in (("uvicorn", uvicorn), ("stdlib", nodelay), ("stdlib-nagle", nagle)):
            wait_for(name, lambda p=proc, n=name: p.poll() is not None or _up(ports[n]), 30)
            check(proc.poll() is None, f"the {name} server exited:\n{_tail(logs / 'base.err')}")
            check(get(ports[name]) == (200, setting.body), f"{name} does not serve the body")
        time.sleep(3)  # the producer at its steady rate
        check(producer.poll() is None, f"lumu produce exited:\n{_tail(logs / 'produce.err')}")
        for r, order in rotations(list(TARGETS), setting.rounds):
            line = []
            for name in order:
                result, note = one_load(setting, name)
                if note:
                    kept.append(f"round {r + 1}: {note}")
                runs[name].append(result)
                line.append(f"{name} {result.requests_per_s:,.0f}/s p99 {result.p99_ms:.2f} ms")
            print(f"round {r + 1}/{setting.rounds}: {', '.join(line)}", flush=True)
        out, _ = stop(producer)
        produced = summary_of(out)
    ends = sum(end_offsets(setting.bootstrap, setting.topic).values())
    began = time.perf_counter()
    try:
        wait_for("lumu track to catch up", lambda: _messages(ports["lumu"]) >= ends, timeout=60)
    except TimeoutError:
        check(False, f"lumu track did not catch up with {ends:,} records within 60 s")
    kept.append(f"after the producer stopped, caught up with all {ends:,} records in "
                f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    kept.append(f"lumu produce's summary: rate {produced['rate']}, sent {produced['sent']:,}")
    return runs, kept


def one_load(setting: Setting, name: str) -> tuple[Load, str]:
    """One load on one server, checked; for lumu, a line on how tracking kept up."""
    port, note = setting.ports[name], ""
    if name == "lumu":
        ends0, seen0 = sum(end_offsets(setting.bootstrap, setting.topic).values()), _messages(port)
    answer_checked(setting, name)
    result = setting.drive(port, setting.clients, setting.seconds, setting.valid(name))
    answer_checked(setting, name)
    check(
        result.errors == 0 and result.wrong == 0,
        f"{name}: {result.errors:,} requests failed or were not 200, {result.wrong:,} answers "
        f"were not the body expected, of {result.requests:,}",
    )
    if name == "lumu":
        ends1 = sum(end_offsets(setting.bootstrap, setting.topic).values())
        seen1 = _messages(port)
        behind, allowed = ends1 - seen1, BEHIND_SECONDS * setting.rate
        check(
            behind <= allowed,
            f"lumu track fell behind: {behind:,} records behind the topic's end right after a "
            f"load (at most {allowed:,}, {BEHIND_SECONDS} s of records)",
        )
        note = (f"counted {seen1 - seen0:,} of {ends1 - ends0:,} produced during the load; "
                f"{behind:,} behind right after it (at most {allowed:,})")  # fmt: skip
    return result, note


def answer_checked(setting: Setting, name: str) -> None:
    """One answer of `name`, read and checked as the Python client checks each."""
    status, body = get(setting.ports[name])
    check(status == 200 and setting.valid(name)(body), f"{name} answered {status}: {body[:200]!r}")


def _tail(path: Path) -> str:
    return path.read_text()[-2000:]


def _up(port: int) -> bool:
    try:
        return get(port, "/")[0] == 200
    except OSError:
        return False


def _messages(port: int) -> int:
    answer = count(port)
    if answer is None:
        raise RuntimeError("lumu track stopped answering /count")
    return int(answer["messages"])


if __name__ == "__main__":
    run_main(main)
