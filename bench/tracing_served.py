"""`python -m bench.tracing_served`: what tracing costs a served typed iris prediction, every
setting in one server process, switched block by block.

`bench.tracing` starts one server per setting, and two server processes of the same code
differ by 15% or more in CPU per request on this machine (its `before` and `off` rows), more
than the 10% that issue 34 allows tracing at 10% sampling. Here one server
(`python -m app.serve bench.tracing_switch:app`: the service's server, options and lifespan,
with one more route that turns tracing on or off) serves every block, so the settings differ in
nothing but tracing: off, 0% (every request's server span, `traceparent` and trace id, nothing
sampled), 10% and 100% sampling (`parentbased_traceidratio`), exporting over OTLP/HTTP to a
receiver in this process. Blocks are short (`--seconds`, 3) and many (`--rounds`, 12), the
settings' order turning each round, so the machine's drift falls on all alike, and each
setting's figure is the median over the rounds of its ratio to that round's `off` block.

A block: tracing switched to the setting, wrk for 1 s unrecorded (the new exporter's first
spans), the server's CPU time read, wrk at `--concurrency` for `--seconds`, tracing switched
off (which exports what is still buffered, so the block's spans are all paid for in it), the
CPU time read again: CPU per request is that over the answered requests (every thread, the
event loop's, the inference threads', the span export thread's); req/s is wrk's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from app.artifact.card import ModelCard
from bench import report, wrk
from bench.cards import newest_versions
from bench.otlp_receiver import OtlpReceiver
from bench.run_info import loadavg, run_header
from bench.scenarios import Payload, features_body
from bench.servers import ROOT, Server, Servers, child_env, free_port, uvicorn_command
from bench.tracing import cpu_seconds, in_turn
from bench.tracing_switch import SWITCH_PATH

SETTINGS: dict[str, float | None] = {"off": None, "0%": 0.0, "10%": 0.1, "100%": 1.0}
SETTLE_S = 1.0


def switched(server: Server, ratio: float | None, endpoint: str) -> None:
    answer = httpx.post(
        server.url + SWITCH_PATH, json={"ratio": ratio, "endpoint": endpoint}, timeout=60
    )
    answer.raise_for_status()


def block(
    server: Server, payload: Payload, ratio: float | None, endpoint: str, args: argparse.Namespace
) -> dict:
    """One setting's block (the docstring says what is counted)."""
    switched(server, ratio, endpoint)
    wrk.measure(server.url, payload, concurrency=args.concurrency, seconds=SETTLE_S)
    before = cpu_seconds(server.process.pid)
    result = wrk.measure(server.url, payload, concurrency=args.concurrency, seconds=args.seconds)
    switched(server, None, endpoint)  # its flush is the block's export, so it is counted
    spent = cpu_seconds(server.process.pid) - before
    return {**result, "cpu_ms": spent * 1000 / max(result["ok"], 1)}


def summary(blocks: dict[str, list[dict]]) -> list[dict]:
    off = blocks["off"]
    rows = []
    for name, results in blocks.items():
        rps = [result["rps"] or 0.0 for result in results]
        cpu = [result["cpu_ms"] for result in results]
        rps_ratios = [a / (b["rps"] or 1.0) for a, b in zip(rps, off, strict=True)]
        cpu_ratios = [a / b["cpu_ms"] for a, b in zip(cpu, off, strict=True)]
        rows.append(
            {
                "setting": name,
                "rps": statistics.median(rps),
                "rps_vs_off": statistics.median(rps_ratios),
                "rps_vs_off_range": [min(rps_ratios), max(rps_ratios)],
                "cpu_ms": statistics.median(cpu),
                "cpu_vs_off": statistics.median(cpu_ratios),
                "cpu_vs_off_range": [min(cpu_ratios), max(cpu_ratios)],
                "p50_ms": statistics.median(result["p50_ms"] for result in results),
                "p99_ms": statistics.median(result["p99_ms"] for result in results),
                "errors": sum(result["errors"] for result in results),
                "blocks": results,
            }
        )
    return rows


def markdown(
    meta: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace, spans: int
) -> str:
    lines = [
        f"# Tracing's cost in one server, {meta['date']}",
        "",
        f"Commit {meta['commit']}, {meta['cpus_usable']} cores, load average "
        f"{meta['loadavg_start']} at the start and {meta['loadavg_end']} at the end. Typed iris "
        f"predictions, wrk at {args.concurrency} connections, one uvicorn worker "
        f"(`python -m app.serve`), {args.rounds} rounds of one {args.seconds:g} s block per "
        "setting, the order turning each round; `python -m bench.tracing_served` (its "
        "docstring says what is counted). Ratios: the median over the rounds of the block's "
        "figure over that round's `off` block, with their range.",
        "",
        "| tracing | req/s (median) | req/s vs off | range | CPU ms/request (median) "
        "| CPU vs off | range | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        low, high = row["rps_vs_off_range"]
        cpu_low, cpu_high = row["cpu_vs_off_range"]
        lines.append(
            f"| {row['setting']} | {row['rps']:.0f} | {row['rps_vs_off']:.3f} "
            f"| {low:.3f}-{high:.3f} | {row['cpu_ms']:.3f} | {row['cpu_vs_off']:.3f} "
            f"| {cpu_low:.3f}-{cpu_high:.3f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['errors']} |"
        )
    lines += ["", f"Spans the receiver got: {spans}.", ""]
    return "\n".join(lines)


async def measure(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[dict]], int]:
    card = ModelCard.read(newest_versions(ROOT / "models")["iris"])
    payload = Payload(
        "/api/models/iris/predict", features_body(card), {"content-type": "application/json"}
    )
    env = {k: v for k, v in child_env(["iris"]).items() if not k.startswith("OTEL_")}
    env["GLASSBOX_MODEL_DIR"] = str(ROOT / "models")
    blocks: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with OtlpReceiver(keep=False) as receiver, Servers(work) as servers:
        port = free_port()
        command = uvicorn_command("bench.tracing_switch:app", port)
        server = servers.start_command("tracing-switched", command, env, port)
        await servers.wait_ready(server, args.startup_timeout, "/health/ready")
        wrk.measure(server.url, payload, concurrency=args.concurrency, seconds=wrk.WARM_UP_S)
        for index in range(args.rounds):
            for name in in_turn(list(SETTINGS), index):
                result = await asyncio.to_thread(
                    block, server, payload, SETTINGS[name], receiver.endpoint, args
                )
                blocks[name].append(result)
                sys.stderr.write(
                    f"round {index + 1}: {name:<5} {result['rps'] or 0:>8.1f} req/s  "
                    f"{result['cpu_ms']:.3f} CPU ms/request  errors {result['errors']}\n"
                )
        return blocks, receiver.received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_served", description=__doc__)
    wrk.add_run_options(parser, concurrency=16, seconds=3.0, rounds=12)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if wrk.missing("bench.tracing_served"):
        return 2
    header = run_header()
    with tempfile.TemporaryDirectory(prefix="glassbox-tracing-") as work:
        blocks, spans = asyncio.run(measure(args, Path(work)))
    meta = {**header.as_dict(), "loadavg_end": loadavg()}
    rows = summary(blocks)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_tracing_served"
    report.publish(args.out, stem, markdown(meta, rows, args, spans), {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
