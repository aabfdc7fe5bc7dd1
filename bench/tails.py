"""`python -m bench.tails`: whose is the p99? Glassbox and the HTTP floor beside two bare ASGI
controls (bench/tail_controls.py) that do a fixed amount of work per request, one of plain CPU
and one of Python objects, all run by `python -m app.serve` with the same workers and driven by
wrk with the iris typed body on 64 connections, in interleaved rounds.

A control has no variance of its own, so its p99/p50 is what the machine gives to that kind of
work; a server whose tail is far over its control's has a tail of its own to remove, and one
level with the Python-objects control has the machine's. About 5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import report, wrk
from bench.compare import payloads
from bench.run_info import loadavg, run_header
from bench.servers import ROOT, TARGETS, Servers, child_env, free_port, uvicorn_command
from bench.tail_controls import OBJECTS, SPIN_S


@dataclass(frozen=True)
class Entrant:
    name: str
    target: str  # a bench.servers TARGETS name, or uvicorn's app import string
    ready_path: str
    work: str  # what it does per request, for the table


ENTRANTS = [
    Entrant("Glassbox", "service", "/health/ready", "iris typed predict, defaults"),
    Entrant("floor", "floor", "/health/live", "FastAPI, the validated body, no model"),
    Entrant(
        "control: constant CPU",
        "bench.tail_controls:constant_cpu",
        "/health/live",
        f"{SPIN_S * 1e6:.0f} µs of its own CPU time",
    ),
    Entrant(
        "control: Python objects",
        "bench.tail_controls:python_objects",
        "/health/live",
        f"pydantic validation, {OBJECTS} small dicts",
    ),
]


def tail_rows(runs: dict[str, list[dict]]) -> list[dict]:
    """Per server: median req/s, the medians of the rounds' p50 and p99, and the median, min
    and max of the rounds' own p99/p50 (a round's ratio compares latencies measured together)."""
    rows = []
    for name, measured in runs.items():
        ratios = [run["p99_ms"] / run["p50_ms"] for run in measured if run["p50_ms"]]
        rows.append(
            {
                "server": name,
                "rps_median": round(statistics.median(run["rps"] or 0 for run in measured)),
                "p50_ms": round(statistics.median(run["p50_ms"] for run in measured), 1),
                "p99_ms": round(statistics.median(run["p99_ms"] for run in measured), 1),
                "p99_over_p50": round(statistics.median(ratios), 2) if ratios else None,
                "ratio_min": round(min(ratios), 2) if ratios else None,
                "ratio_max": round(max(ratios), 2) if ratios else None,
                "errors": sum(run["errors"] for run in measured),
            }
        )
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    works = {entrant.name: entrant.work for entrant in ENTRANTS}
    lines = [
        f"# Tails: {meta['date']}, commit {meta['commit']}",
        "",
        f"Each server `python -m app.serve` with {meta['workers']} worker(s); wrk, iris typed "
        f"body, {meta['concurrency']} connections, {meta['rounds']} interleaved rounds of "
        f"{meta['seconds']} s (each after a 2 s warm-up). p99/p50 is each round's own; the "
        "table gives its median and range, and the median req/s, p50 and p99 of the rounds.",
        "",
        "| server | work per request | req/s | p50 ms | p99 ms | p99/p50 | range | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
        *(
            f"| {row['server']} | {works.get(row['server'], '')} | {row['rps_median']:,} | "
            f"{row['p50_ms']} | {row['p99_ms']} | {row['p99_over_p50']} | "
            f"{row['ratio_min']}-{row['ratio_max']} | {row['errors']} |"
            for row in rows
        ),
        "",
    ]
    return "\n".join(lines)


async def measure(args: argparse.Namespace) -> dict[str, list[dict]]:
    payload = payloads(ROOT / "models")["iris typed"]
    runs: dict[str, list[dict]] = {entrant.name: [] for entrant in ENTRANTS}
    with Servers(Path(tempfile.mkdtemp(prefix="glassbox-tails-")), args.workers) as servers:
        started = []
        for entrant in ENTRANTS:
            env = child_env(["iris"])
            if entrant.target in TARGETS:  # as bench.compare starts them
                server = servers.start(entrant.target, env)
            else:
                port = free_port()
                command = uvicorn_command(entrant.target, port, args.workers)
                label = entrant.name.replace(": ", "-").replace(" ", "-")
                server = servers.start_command(label, command, env, port)
            await servers.wait_ready(server, 300, entrant.ready_path)
            started.append((entrant, server))
        for round_number in range(args.rounds):
            for entrant, server in started:
                run = wrk.measure_warm(
                    server.url, payload, concurrency=args.concurrency, seconds=args.seconds
                )
                runs[entrant.name].append(run)
                sys.stderr.write(
                    f"round {round_number + 1} {entrant.name:<24} {run['rps'] or 0:>8.0f} "
                    f"req/s  p50 {run['p50_ms']} ms  p99 {run['p99_ms']} ms\n"
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tails", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    wrk.add_run_options(parser, concurrency=64, seconds=10.0, rounds=4)
    args = parser.parse_args(argv)
    if wrk.missing("every row"):
        return 2
    header = run_header()
    runs = asyncio.run(measure(args))
    meta = {
        **header.as_dict(),
        "loadavg_end": loadavg(),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "seconds": args.seconds,
    }
    rows = tail_rows(runs)
    text = markdown(meta, rows)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_tails"
    report.publish(args.out, stem, text, {"meta": meta, "results": rows, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
