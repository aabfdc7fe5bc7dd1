"""`python -m bench.tracing_cpu`: what tracing adds to the CPU of a typed iris prediction, in one
process with nothing else in it, so the machine's other work moves every setting alike.

`bench.tracing` measures servers under wrk, where wrk, the kernel's loopback and the rest of the
machine share the two cores with the server and its CPU per request moves by 15% between two
servers of the same code. Here one process serves iris through the whole ASGI application
(middleware, routes, validation, the batcher, the model call in its thread, the log line, with
the lifespan run as under uvicorn), called directly by `--concurrency` tasks with no HTTP client
and no socket; tracing is installed and shut down between blocks of `--requests` requests, the
settings taking turns block by block for `--rounds` rounds: off, 0%, 10% and 100% sampling
(`parentbased_traceidratio`), exporting over OTLP/HTTP to a receiver in a child process, so the
receiver's CPU is not counted but the encoding and sending are (the span export thread is this
process's). A block's CPU is `time.process_time()` (every thread) from its first request until
its spans are flushed; its figure is that over the requests. Without the HTTP server's parsing
and the socket, a request costs less here than under uvicorn, so tracing's share reads larger
here than a server's: the ratios are an upper bound of what tracing adds to a served request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.artifact.card import ModelCard
from bench import report
from bench.cards import newest_versions
from bench.run_info import loadavg, run_header
from bench.scenarios import features_body
from bench.tracing import in_turn

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/models/iris/predict"
SETTINGS: dict[str, float | None] = {"off": None, "0%": 0.0, "10%": 0.1, "100%": 1.0}
_RECEIVER = (
    "import sys, time; from bench.otlp_receiver import OtlpReceiver\n"
    "with OtlpReceiver(keep=False) as receiver:\n"
    "    print(receiver.endpoint, flush=True)\n"
    "    sys.stdin.read()\n"
)


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """An OTLP/HTTP receiver in a child process until the block ends; its endpoint."""
    child = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


class Caller:
    """Requests into the ASGI application, as a server would make them."""

    def __init__(self, app: Any, body: bytes):
        self.app = app
        self.body = body
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }

    async def call(self) -> int:
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # no disconnect: the answer ends the call
            sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(dict(self.scope, state={}), receive, send)
        return status

    async def block(self, requests: int, concurrency: int) -> int:
        """`requests` calls by `concurrency` tasks; how many were not answered 200."""
        left = requests
        errors = 0

        async def worker() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                if await self.call() != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return errors


async def measure(args: argparse.Namespace, endpoint: str) -> dict[str, list[float]]:
    from app.core import tracing
    from app.http.app import create_app

    card = ModelCard.read(newest_versions(ROOT / "models")["iris"])
    app = create_app()
    caller = Caller(app, features_body(card))
    cpu_us: dict[str, list[float]] = {name: [] for name in SETTINGS}
    async with app.router.lifespan_context(app):
        await caller.block(args.requests, args.concurrency)  # warm-up: first calls, caches
        for round_index in range(args.rounds):
            for name in in_turn(list(SETTINGS), round_index):
                ratio = SETTINGS[name]
                if ratio is not None:
                    os.environ.update(
                        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                        OTEL_TRACES_SAMPLER_ARG=str(ratio),
                        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                    )
                    tracing.install()
                started = time.process_time()
                errors = await caller.block(args.requests, args.concurrency)
                tracing.shutdown()  # its flush is the block's export, so it is counted
                spent = time.process_time() - started
                if errors:
                    raise SystemExit(f"{name}: {errors} requests not answered 200")
                cpu_us[name].append(spent / args.requests * 1e6)
                sys.stderr.write(
                    f"round {round_index + 1}: {name:5} {cpu_us[name][-1]:7.1f} CPU us/request\n"
                )
    return cpu_us


def markdown(meta: dict, rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"# Tracing's CPU in one process, {meta['date']}",
        "",
        f"Commit {meta['commit']}, {meta['cpus_usable']} cores, load average "
        f"{meta['loadavg_start']} at the start and {meta['loadavg_end']} at the end. Typed iris "
        f"predictions through the ASGI application, {args.concurrency} at once, "
        f"{args.rounds} rounds of one block of {args.requests} requests per setting, "
        "the settings' order turning each round; `python -m bench.tracing_cpu` (its "
        "docstring says what is counted).",
        "",
        "| tracing | CPU us/request (median) | min-max | vs off (median of the rounds' ratios) "
        "| min-max |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['median_us']:.1f} | {row['min_us']:.1f}-"
            f"{row['max_us']:.1f} | {row['ratio_median']:.3f} | {row['ratio_min']:.3f}-"
            f"{row['ratio_max']:.3f} |"
        )
    return "\n".join([*lines, ""])


def summary(cpu_us: dict[str, list[float]]) -> list[dict]:
    off = cpu_us["off"]
    rows = []
    for name, values in cpu_us.items():
        ratios = [value / base for value, base in zip(values, off, strict=True)]
        rows.append(
            {
                "setting": name,
                "median_us": statistics.median(values),
                "min_us": min(values),
                "max_us": max(values),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "cpu_us": values,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_cpu", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=report.RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("GLASSBOX_MODELS", "iris")
    for name in [key for key in os.environ if key.startswith("OTEL_")]:
        del os.environ[name]  # each block sets its own
    header = run_header()
    with receiver() as endpoint:
        cpu_us = asyncio.run(measure(args, endpoint))
    meta = {**header.as_dict(), "loadavg_end": loadavg()}
    rows = summary(cpu_us)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_tracing_cpu"
    report.publish(args.out, stem, markdown(meta, rows, args), {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
