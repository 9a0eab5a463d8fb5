"""Benchmark `lumu track --serve`'s /count under load, against a bare stdlib HTTP server.

(Named http_serve.py, not http.py: a bench/http.py would shadow the standard library's `http`
package, both for this script and for mypy, which checks bench/ beside lumu_cli.)

Preloads BENCH_HTTP_PRELOAD (200,000) records into a fresh topic, starts
`lumu track --serve 127.0.0.1:PORT --from-beginning` on it, waits until it has counted them, and
keeps `lumu produce --rate BENCH_HTTP_RATE (2000)` running so it is tracking while it is asked.
Then, for BENCH_HTTP_ROUNDS (3) rounds, alternating which goes first, drives for
BENCH_HTTP_SECONDS (10) s with BENCH_HTTP_CLIENTS (16) keep-alive connections on loopback:

  - lumu: GET /count of `lumu track --serve` (its asyncio endpoint, on a thread of its own in
    the same process as the consume loop, reading the latest published snapshot);
  - the baseline: a bare stdlib ThreadingHTTPServer (HTTP/1.1, no logging) in its own process,
    answering every GET with a constant JSON body of the same size as lumu's /count answer;
  - the same baseline with TCP_NODELAY (`disable_nagle_algorithm = True`): the stdlib handler
    writes the headers and the body in two sends, and on a keep-alive connection Nagle's
    algorithm holds the body back until the client's delayed ACK (about 40 ms on Linux).

The load comes from `wrk -c16 -t2 -d10s --latency` when wrk is installed (apt-get install wrk),
otherwise (or with BENCH_HTTP_CLIENT=python) from 16 Python threads, each with one
http.client.HTTPConnection, bounded in time and in requests. Prints requests/s and p50/p99
latency (medians over the rounds) and the ratio lumu/baseline, and whether tracking kept up:
records lumu counted during each load against records produced (the topic's end offsets).

Usage: python bench/http_serve.py   (env: the BENCH_HTTP_* knobs above, LUMU_BENCH_BOOTSTRAP)
"""

from __future__ import annotations

import http.client
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

BASELINE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, body, nodelay = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3] == "1"

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

Server(("127.0.0.1", port), Handler).serve_forever()
"""


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


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


def wrk(port: int, clients: int, seconds: int) -> Load:
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


def threads(port: int, clients: int, seconds: int) -> Load:
    """The fallback load: `clients` threads, each with one keep-alive connection."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
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
                response.read()
                if response.status != 200:
                    errors[index] += 1
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
                continue
            mine.append(clock() - began)
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

    return Load(len(every) / wall, pct(0.50), pct(0.99), len(every), sum(errors))


TARGETS = {  # name -> label
    "lumu": "lumu track --serve",
    "stdlib": "stdlib server (baseline)",
    "nodelay": "stdlib server, TCP_NODELAY",
}


def main() -> None:
    preloaded = env_int("BENCH_HTTP_PRELOAD", 200_000)
    rate = env_int("BENCH_HTTP_RATE", 2000)
    rounds = env_int("BENCH_HTTP_ROUNDS", 3)
    seconds = env_int("BENCH_HTTP_SECONDS", 10)
    clients = env_int("BENCH_HTTP_CLIENTS", 16)
    use_wrk = shutil.which("wrk") is not None and os.environ.get("BENCH_HTTP_CLIENT") != "python"
    drive = wrk if use_wrk else threads
    client = f"wrk -c{clients} -t2" if use_wrk else f"{clients} Python threads (http.client)"
    print(machine())
    logs = Path(tempfile.mkdtemp(prefix="lumu-bench-http-"))
    try:
        with broker() as bootstrap:
            topic = fresh_name("bench-http")
            load = preload(bootstrap, topic, preloaded)
            print(f"preload: {load.summary['delivered']:,} records into {topic}", flush=True)
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
                if tracker.poll() is not None:
                    raise SystemExit(f"FAIL: lumu track exited:\n{_tail(logs / 'track.err')}")
                print(f"lumu track counted the preload in {time.perf_counter() - began:.1f} s "
                      f"(process start-up included)", flush=True)  # fmt: skip
                body = get(ports["lumu"])[1].decode()
                runs, kept = run_rounds(
                    bootstrap, topic, ports, body, rate, rounds, seconds, clients, drive, logs
                )
                out, _ = stop(tracker)
            final = summary_of(out)
    finally:
        shutil.rmtree(logs, ignore_errors=True)

    print(f"\nGET /count, {clients} keep-alive clients ({client}), {seconds} s each, "
          f"median of {rounds} rounds; body {len(body)} bytes")  # fmt: skip
    rps = {name: median([r.requests_per_s for r in loads]) for name, loads in runs.items()}
    for name, label in TARGETS.items():
        p50 = median([r.p50_ms for r in runs[name]])
        p99 = median([r.p99_ms for r in runs[name]])
        errors = sum(r.errors for r in runs[name])
        print(f"  {label:<28} {rps[name]:>9,.0f} requests/s  p50 {p50:7.2f} ms  "
              f"p99 {p99:7.2f} ms  errors {errors}")  # fmt: skip
    print(f"  ratio lumu/stdlib baseline: {rps['lumu'] / rps['stdlib']:.2f}x requests/s")
    print(f"  ratio lumu/stdlib with TCP_NODELAY: {rps['lumu'] / rps['nodelay']:.2f}x requests/s")
    print(f"tracking while loaded (lumu produce --rate {rate}):")
    for line in kept:
        print(f"  {line}")
    print(f"  lumu track's summary at the end: {json.dumps(final)}")


def run_rounds(
    bootstrap: str,
    topic: str,
    ports: dict[str, int],
    body: str,
    rate: int,
    rounds: int,
    seconds: int,
    clients: int,
    drive: Callable[[int, int, int], Load],
    logs: Path,
) -> tuple[dict[str, list[Load]], list[str]]:
    """The rotating load rounds, with the producer and the baseline servers running."""

    def baseline(name: str, nodelay: bool) -> list[str]:
        code = [sys.executable, "-I", "-c", BASELINE_SERVER]
        return [*code, str(ports[name]), body, "1" if nodelay else "0"]

    produce = [
        LUMU, "produce", "--rate", str(rate), "--ips", "100000", "--invalid-ratio", "0.01",
        "-t", topic, "-b", bootstrap,
    ]  # fmt: skip
    runs: dict[str, list[Load]] = {name: [] for name in TARGETS}
    kept: list[str] = []
    with (
        (logs / "base.err").open("w") as base_err,
        (logs / "produce.err").open("w") as produce_err,
        spawned(baseline("stdlib", False), stderr=base_err) as base,
        spawned(baseline("nodelay", True), stderr=base_err) as nodelay,
        spawned(produce, stdout=subprocess.PIPE, stderr=produce_err) as producer,
    ):
        for name, proc in (("stdlib", base), ("nodelay", nodelay)):
            wait_for(name, lambda p=proc, n=name: p.poll() is not None or _up(ports[n]), 30)
            if proc.poll() is not None:
                raise SystemExit(f"FAIL: a baseline server exited:\n{_tail(logs / 'base.err')}")
        time.sleep(3)  # the producer at its steady rate
        if producer.poll() is not None:
            raise SystemExit(f"FAIL: lumu produce exited:\n{_tail(logs / 'produce.err')}")
        for r, order in rotations(list(TARGETS), rounds):
            line = []
            for name in order:
                if name == "lumu":
                    ends0 = sum(end_offsets(bootstrap, topic).values())
                    seen0 = _messages(ports[name])
                    result = drive(ports[name], clients, seconds)
                    ends1 = sum(end_offsets(bootstrap, topic).values())
                    seen1 = _messages(ports[name])
                    kept.append(
                        f"round {r + 1}: counted {seen1 - seen0:,} of {ends1 - ends0:,} produced "
                        f"during the load; lag right after it {ends1 - seen1:,}"
                    )
                else:
                    result = drive(ports[name], clients, seconds)
                runs[name].append(result)
                line.append(f"{name} {result.requests_per_s:,.0f}/s p99 {result.p99_ms:.2f} ms")
            print(f"round {r + 1}/{rounds}: {', '.join(line)}", flush=True)
        out, _ = stop(producer)
        produced = summary_of(out)
    ends = sum(end_offsets(bootstrap, topic).values())
    began = time.perf_counter()
    try:
        wait_for("lumu track to catch up", lambda: _messages(ports["lumu"]) >= ends, timeout=60)
        kept.append(f"after the producer stopped, caught up with all {ends:,} records in "
                    f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    except TimeoutError:
        kept.append(f"did NOT catch up with {ends:,} records within 60 s")
    kept.append(f"lumu produce's summary: rate {produced['rate']}, sent {produced['sent']:,}")
    return runs, kept


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
