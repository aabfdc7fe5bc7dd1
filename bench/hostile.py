"""`python -m bench.hostile`: the hostile clients of issue 35 replayed against a live server.

Three scenarios, each on a server of its own (`python -m app.serve` as deploy/serve.sh runs it,
all four models, gRPC on), each bounded in time and stopping itself:

- **slow-bodies**: iris predictions from 8 keep-alive clients, alone and then beside 256
  connections that each declare a 64-byte body and send one byte of it every `--drip-s`
  seconds; p50/p99 and status counts of both, and what the slow connections got back.
- **idle**: 2,000 connections that send nothing and 300 that never finish their request head;
  a prediction on a new connection every second meanwhile; how many of them are still open
  after the header deadline, and the worker's open descriptors before, during and after.
- **sigterm**: 16 keep-alive clients sending iris predictions to one and to two workers, then
  SIGTERM: answers after it (and after half a second), requests lost (sent, then the
  connection closed without an answer), time to exit.
- **explain**: the worker's resident memory at ready (all four models) and at its peak through
  the largest explanation the default limits allow for each model and method (sampled every
  20 ms), and after.

The server is the README's, with API keys, gRPC and the payload log on. Prints each
scenario's figures as JSON and writes them all to bench/results/<time>_hostile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.run_info import run_header
from bench.servers import ROOT, Server, Servers, child_env, free_port
from bench.stats import percentile

IRIS = b'{"sepal_length": 5.8, "sepal_width": 3.0, "petal_length": 4.4, "petal_width": 1.4}'
JSON = {"content-type": "application/json"}
HOUSE = (
    b'{"MedInc": 3.87, "HouseAge": 28.6, "AveRooms": 5.43, "AveBedrms": 1.1, '
    b'"Population": 1425.5, "AveOccup": 3.07, "Latitude": 35.63, "Longitude": -119.57}'
)
PREDICT = "/api/models/iris/predict"
RESULTS = ROOT / "bench" / "results"
API_KEY = "hostile-bench-key"
SCENARIOS = ("slow-bodies", "idle", "sigterm", "explain")


def request(path: str = PREDICT, body: bytes = IRIS, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-API-Key: {API_KEY}\r\n".encode()
        + b"Connection: "
        + connection
        + b"\r\n\r\n"
        + body
    )


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """One answer's status and headers, its body read and dropped; EOFError if the connection
    closed before a whole answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        raise EOFError(len(error.partial)) from None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    try:
        await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise EOFError(length) from None
    return status, headers


async def keep_alive_client(
    port: int, stop: asyncio.Event, answers: list[tuple[float, int, float]], lost: list[float]
) -> None:
    """Predictions one after the other on one connection (a new one when the server closes
    it), until `stop`: (time answered, status, latency) per answer; the time of each request
    sent and then cut off without an answer."""
    writer = None
    while not stop.is_set():
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:  # refused: the server is going or gone
                await asyncio.sleep(0.05)
                continue
        try:
            sent = time.perf_counter()
            writer.write(request())
            status, headers = await read_answer(reader)
            done = time.perf_counter()
            answers.append((done, status, done - sent))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        except (EOFError, ConnectionError):
            lost.append(time.perf_counter())
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def latency_run(port: int, clients: int, seconds: float) -> dict:
    stop = asyncio.Event()
    answers: list[tuple[float, int, float]] = []
    lost: list[float] = []
    tasks = [
        asyncio.create_task(keep_alive_client(port, stop, answers, lost)) for _ in range(clients)
    ]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    ok = [latency * 1000 for _, status, latency in answers if status == 200]
    return {
        "answers": len(answers),
        "statuses": dict(Counter(status for _, status, _ in answers)),
        "lost": len(lost),
        "p50_ms": round(statistics.median(ok), 2) if ok else None,
        "p99_ms": round(percentile(ok, 99) or 0, 2) if ok else None,
    }


async def slow_body(
    port: int, drip_s: float, limit_s: float, outcomes: list[tuple[str, float]]
) -> None:
    """A prediction whose 64-byte body comes one byte every `drip_s`; what the server did
    with it and when, within `limit_s`."""
    opened = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        outcomes.append((f"refused: {type(error).__name__}", 0.0))
        return
    head = request(body=b" " * 64)
    writer.write(head[:-64])
    answer = asyncio.create_task(read_answer(reader))
    try:
        while not answer.done() and time.perf_counter() - opened < limit_s:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(b" ")
            await asyncio.wait([answer], timeout=drip_s)
        if answer.done():
            try:
                status, _ = answer.result()
                outcomes.append((str(status), time.perf_counter() - opened))
            except (EOFError, ConnectionError):
                outcomes.append(("closed", time.perf_counter() - opened))
        else:
            outcomes.append(("still open", time.perf_counter() - opened))
    finally:
        answer.cancel()
        writer.close()


async def slow_bodies(servers: Servers, args: argparse.Namespace) -> dict:
    server = await start(servers, "slow-bodies", 1)
    port = port_of(server)
    await latency_run(port, 8, 1.0)  # warm up
    alone = await latency_run(port, 8, args.seconds)
    outcomes: list[tuple[str, float]] = []
    limit_s = max(args.seconds + 4, 12)
    drips = [
        asyncio.create_task(slow_body(port, args.drip_s, limit_s, outcomes))
        for _ in range(args.slow)
    ]
    await asyncio.sleep(1.0)
    beside = await latency_run(port, 8, args.seconds)
    await asyncio.gather(*drips)
    answered = Counter(outcome for outcome, _ in outcomes)
    times = [seconds for outcome, seconds in outcomes if outcome != "still open"]
    return {
        "alone": alone,
        "beside_slow_bodies": beside,
        "slow_connections": args.slow,
        "drip_s": args.drip_s,
        "slow_outcomes": dict(answered),
        "slow_answered_after_s": round(statistics.median(times), 1) if times else None,
        "p99_ratio": ratio(beside["p99_ms"], alone["p99_ms"]),
    }


async def open_idle(port: int, count: int, partial: bool, held: list) -> int:
    """`count` connections, sending nothing or a request head that never ends; the number
    opened."""
    opened = 0
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        if partial:
            writer.write(f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        held.append((reader, writer))
        opened += 1
    return opened


async def still_open(held: list) -> int:
    """How many of the held connections the server has not closed (no EOF within 0.2 s)."""

    async def is_open(reader: asyncio.StreamReader) -> bool:
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        return bool(data) and not reader.at_eof()

    found = await asyncio.gather(*(is_open(reader) for reader, _ in held))
    return sum(found)


def open_descriptors(server: Server) -> int:
    """Open file descriptors of the server's processes (Linux /proc)."""
    total = 0
    pids = [server.process.pid, *children(server.process.pid)]
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


async def probe(port: int) -> tuple[str, float]:
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(close=True))
        status, _ = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
        return str(status), time.perf_counter() - began
    except (OSError, EOFError, TimeoutError) as error:
        return type(error).__name__, time.perf_counter() - began


async def idle(servers: Servers, args: argparse.Namespace) -> dict:
    server = await start(servers, "idle", 1)
    port = port_of(server)
    before = open_descriptors(server)
    held_idle: list = []
    held_partial: list = []
    began = time.perf_counter()
    opened_idle = await open_idle(port, args.idle, False, held_idle)
    opened_partial = await open_idle(port, args.slowloris, True, held_partial)
    probes = []
    during = open_descriptors(server)
    while time.perf_counter() - began < args.idle_wait_s:
        probes.append(await probe(port))
        await asyncio.sleep(1.0)
    open_idle_after = await still_open(held_idle)
    open_partial_after = await still_open(held_partial)
    after = open_descriptors(server)
    for _, writer in held_idle + held_partial:
        writer.close()
    return {
        "idle_opened": opened_idle,
        "slowloris_opened": opened_partial,
        "waited_s": round(time.perf_counter() - began, 1),
        "idle_still_open": open_idle_after,
        "slowloris_still_open": open_partial_after,
        "server_fds": {"before": before, "during": during, "after": after},
        "probes": dict(Counter(status for status, _ in probes)),
        "probe_p50_ms": round(statistics.median(s for _, s in probes) * 1000, 1),
        "probe_max_ms": round(max(s for _, s in probes) * 1000, 1),
    }


async def sigterm(servers: Servers, workers: int, args: argparse.Namespace) -> dict:
    servers.workers = workers
    server = await start(servers, f"sigterm-{workers}w", workers)
    port = port_of(server)
    stop = asyncio.Event()
    answers: list[tuple[float, int, float]] = []
    lost: list[float] = []
    tasks = [asyncio.create_task(keep_alive_client(port, stop, answers, lost)) for _ in range(16)]
    await asyncio.sleep(3.0)
    signalled = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    exit_s = None
    while time.perf_counter() - signalled < 30:
        if server.process.poll() is not None:
            exit_s = round(time.perf_counter() - signalled, 2)
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    after = [done - signalled for done, _, _ in answers if done > signalled]
    return {
        "workers": workers,
        "exit_s": exit_s,
        "exit_status": server.process.poll(),
        "answers_before": len(answers) - len(after),
        "answers_after_sigterm": len(after),
        "answers_after_0.5s": sum(1 for t in after if t > 0.5),
        "last_answer_after_s": round(max(after), 2) if after else None,
        "lost_after_sigterm": sum(1 for t in lost if t > signalled),
    }


# The largest explanation of each kind the default limits allow (GLASSBOX_EXPLAIN_MAX_STEPS
# 8192, _MAX_SAMPLES 128, _MAX_VALUES 32,000,000: catdog's (steps + 1) x 27,648 values).
LARGEST = {
    "iris": [("integrated_gradients", "steps=8192")],
    "housing": [("integrated_gradients", "steps=8192")],
    "mnist": [("integrated_gradients", "steps=8192"), ("smoothgrad", "samples=128")],
    "catdog": [("integrated_gradients", "steps=1156"), ("smoothgrad", "samples=128")],
}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def explanation_memory(servers: Servers, args: argparse.Namespace) -> dict:
    server = await start(servers, "explain", 1)
    pid = server.process.pid  # one worker: uvicorn runs in the process itself
    ready = rss_mib(pid)
    rows = []
    headers = {"x-api-key": API_KEY}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=300) as client:
        for model, kinds in LARGEST.items():
            for method, size in kinds:
                url = f"/api/models/{model}/explain?method={method}&{size}"
                if model in ("mnist", "catdog"):
                    name = "mnist.png" if model == "mnist" else "catdog.jpg"
                    data = (ROOT / "app" / "examples" / name).read_bytes()
                    sent = client.post(url, files={"file": (name, data)})
                else:
                    body = IRIS if model == "iris" else HOUSE
                    sent = client.post(url, content=body, headers=JSON)
                request = asyncio.ensure_future(sent)
                peak = rss_mib(pid)
                began = time.perf_counter()
                while not request.done():
                    peak = max(peak, rss_mib(pid))
                    await asyncio.sleep(0.02)
                response = request.result()
                rows.append(
                    {
                        "model": model,
                        "method": method,
                        "size": size,
                        "status": response.status_code,
                        "seconds": round(time.perf_counter() - began, 1),
                        "peak_mib": round(peak),
                        "after_mib": round(rss_mib(pid)),
                    }
                )
                say(json.dumps(rows[-1]))
    return {
        "ready_mib": round(ready),
        "explanations": rows,
        "peak_mib": max(r["peak_mib"] for r in rows),
    }


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def start(servers: Servers, label: str, workers: int) -> Server:
    servers.workers = workers
    env = child_env([])
    env.pop("GLASSBOX_GRPC_PORT", None)  # gRPC on, as the README's server has it
    env["GLASSBOX_GRPC_PORT"] = str(free_port())
    # The README's server with keys and the payload log on, as the issue tried it.
    env["GLASSBOX_API_KEYS"] = API_KEY
    env["GLASSBOX_PAYLOAD_LOG"] = str(servers.log_dir / f"{label}-payload-{{pid}}.jsonl")
    server = servers.start("service", env, label=label)
    await servers.wait_ready(server, 300, "/health/ready")
    return server


def raise_descriptor_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument(
        "scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each latency run")
    parser.add_argument("--slow", type=int, default=256, help="slow-body connections")
    parser.add_argument("--drip-s", type=float, default=20.0, help="seconds between body bytes")
    parser.add_argument("--idle", type=int, default=2000, help="connections that send nothing")
    parser.add_argument("--slowloris", type=int, default=300, help="heads that never end")
    parser.add_argument("--idle-wait-s", type=float, default=20.0, help="how long to watch them")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    return args


async def run(args: argparse.Namespace) -> dict:
    results: dict = {}
    with (
        tempfile.TemporaryDirectory(prefix="glassbox-hostile-") as work,
        Servers(Path(work)) as servers,
    ):
        for scenario in args.scenarios:
            if scenario == "slow-bodies":
                results[scenario] = await slow_bodies(servers, args)
            elif scenario == "idle":
                results[scenario] = await idle(servers, args)
            elif scenario == "sigterm":
                results[scenario] = [await sigterm(servers, n, args) for n in (1, 2)]
            else:
                results[scenario] = await explanation_memory(servers, args)
            servers.stop_all()
            say(f"{scenario}: {json.dumps(results[scenario], indent=1)}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_descriptor_limit()
    if limit < args.idle + args.slowloris + 100:
        args.idle = max(0, limit - args.slowloris - 100)
    header = run_header()  # the run's start: its time, commit and load
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    results = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}_hostile.json"
    path.write_text(json.dumps({"meta": header.as_dict(), "results": results}, indent=1) + "\n")
    say(f"written: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
