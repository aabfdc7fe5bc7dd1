"""`python -m bench.tracing`: what tracing costs a typed iris prediction (issue 34's targets:
off within noise of the code before tracing, on at 10% sampling within 10%).

Five servers, one worker each, iris only, all started before any is measured:
- `before`: the code of `--before` (exported with `git archive` into a temporary folder), a
  commit without tracing (refused if it has `app/core/tracing.py`): `1d08af5^`, the first
  parent of the merge that brought tracing in, or, fairer now that later work (familiarity,
  drift) adds its own cost to each request, today's code with the tracing calls taken out
  (fa48c53, kept in main's history as a parent of a merge that took none of its tree);
- `off`: this tree with no OTEL_* variable set (tracing off);
- `0%`: this tree with tracing on and nothing sampled (`OTEL_TRACES_SAMPLER_ARG=0.0`): what
  every request pays, sampled or not (its server span, the answer's `traceparent`, the trace
  id in its log line);
- `10%`: this tree with `OTEL_TRACES_SAMPLER=parentbased_traceidratio`,
  `OTEL_TRACES_SAMPLER_ARG=0.1`, exporting over OTLP/HTTP to a receiver run here
  (`bench/otlp_receiver.py`, counting the spans it gets);
- `100%`: the same at `OTEL_TRACES_SAMPLER=parentbased_always_on`.
Then wrk sends the typed iris body at `--concurrency` (16) for `--seconds` (5, after a 2 s
warm-up) to each in turn, in `--rounds` (3) interleaved rounds, so the machine's drift falls
on all five alike; each round starts one server further on, so that none always runs right
after the same one (the 100% server's export backlog, say). The table gives the median req/s
and its spread (min-max) over the rounds, the server's CPU time per request (all its threads,
the export thread's included: on a shared machine a steadier measure of what tracing adds
than req/s), p50/p99 of the median round, and each row's ratios to `before`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TypeVar

from app.artifact.card import ModelCard
from bench import report, wrk
from bench.cards import newest_versions
from bench.compare import process_tree
from bench.otlp_receiver import OtlpReceiver
from bench.run_info import loadavg, run_header
from bench.scenarios import Payload, features_body
from bench.servers import ROOT, Server, Servers, child_env, free_port, uvicorn_command

T = TypeVar("T")
RATIO = "parentbased_traceidratio"
# The traced servers' samplers; `before` and `off` have no OTEL_* variable at all.
SAMPLED = {
    "0%": {"OTEL_TRACES_SAMPLER": RATIO, "OTEL_TRACES_SAMPLER_ARG": "0.0"},
    "10%": {"OTEL_TRACES_SAMPLER": RATIO, "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


@dataclass
class Row:
    name: str
    server: Server
    rounds: list[dict] = field(default_factory=list)


def resolved(ref: str) -> str:
    """The commit `ref` names now (a branch moves)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, check=True, text=True
    )
    return done.stdout.strip()


def has_tracing(ref: str) -> bool:
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{ref}:app/core/tracing.py"], cwd=ROOT, capture_output=True
    )
    return found.returncode == 0


def export_tree(ref: str, into: Path) -> Path:
    """The files of `ref` (a commit or branch) in a folder of their own, without a checkout."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def environment(name: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in child_env(["iris"]).items() if not k.startswith("OTEL_")}
    env["GLASSBOX_MODEL_DIR"] = str(ROOT / "models")
    if name in SAMPLED:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "glassbox-bench"}
        env |= SAMPLED[name]
    return env


def start_all(servers: Servers, before_dir: Path, endpoint: str) -> list[Row]:
    rows = []
    for name in ("before", "off", *SAMPLED):
        port = free_port()
        command = uvicorn_command("app.main:app", port)
        if name == "before":  # run from the exported tree: its own `app` package
            command = ["sh", "-c", f'cd "{before_dir}" && exec "$@"', "sh", *command]
        env = environment(name, endpoint)
        rows.append(Row(name, servers.start_command(f"tracing-{name}", command, env, port)))
    return rows


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its descendants so far (Linux /proc): every
    thread's, the export thread's included."""
    ticks = 0
    for node in process_tree(pid):
        try:
            stat = Path(f"/proc/{node}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # from the third field, the state, on
        ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


def measured(server: Server, payload: Payload, concurrency: int, seconds: float) -> dict:
    """One wrk run after its warm-up, with the server's CPU time per answered request: what
    a request costs, which other work on a shared machine moves much less than req/s."""
    wrk.measure(server.url, payload, concurrency=concurrency, seconds=wrk.WARM_UP_S)
    before = cpu_seconds(server.process.pid)
    result = wrk.measure(server.url, payload, concurrency=concurrency, seconds=seconds)
    spent = cpu_seconds(server.process.pid) - before
    return {**result, "cpu_ms": round(spent * 1000 / max(result["ok"], 1), 4)}


def in_turn(items: list[T], round_index: int) -> list[T]:
    """The items in round `round_index`'s order: all of them, from one further on each round."""
    start = round_index % len(items)
    return items[start:] + items[:start]


def summary(row: Row) -> dict:
    ordered = sorted(row.rounds, key=lambda result: result["rps"] or 0)
    median = ordered[len(ordered) // 2]
    rates = [result["rps"] or 0 for result in row.rounds]
    cpu = [result["cpu_ms"] for result in row.rounds]
    return {
        "server": row.name,
        "rps": round(statistics.median(rates), 1),
        "rps_min": min(rates),
        "rps_max": max(rates),
        "cpu_ms": round(statistics.median(cpu), 4),
        "cpu_ms_min": min(cpu),
        "cpu_ms_max": max(cpu),
        "p50_ms": median["p50_ms"],
        "p99_ms": median["p99_ms"],
        "errors": sum(result["errors"] for result in row.rounds),
    }


def markdown(meta: dict, rows: list[dict], args: argparse.Namespace, spans: int) -> str:
    before = next(row for row in rows if row["server"] == "before")
    lines = [
        f"# Tracing's cost, {meta['date']}",
        "",
        f"Commit {meta['commit']} against `{args.before}` ({meta['before_commit']}), "
        f"{meta['cpu_count']} cores, load "
        f"average {meta['loadavg_start']} at the start and {meta['loadavg_end']} at the end "
        "(a machine shared with other work: numbers move with it). Typed iris predictions, "
        f"wrk at {args.concurrency} connections, {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s, one uvicorn worker each; `python -m bench.tracing`.",
        "",
        "| server | req/s (median) | min-max | vs before | CPU ms/request (median) | min-max "
        "| vs before | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['rps']:.0f} | {row['rps_min']:.0f}-{row['rps_max']:.0f} "
            f"| {row['rps'] / before['rps']:.3f} | {row['cpu_ms']:.3f} "
            f"| {row['cpu_ms_min']:.3f}-{row['cpu_ms_max']:.3f} "
            f"| {row['cpu_ms'] / before['cpu_ms']:.3f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
        )
    lines += [
        "",
        "CPU ms/request: the server process's user and system CPU time over a measured run "
        "(every thread: the event loop, the inference threads, the span export thread) over "
        f"the requests it answered. Spans the receiver got from the traced servers: "
        f"{spans}.",
    ]
    return "\n".join(lines) + "\n"


async def measure(args: argparse.Namespace, work_dir: Path) -> tuple[list[dict], int]:
    card = ModelCard.read(newest_versions(ROOT / "models")["iris"])
    payload = Payload(
        "/api/models/iris/predict", features_body(card), {"content-type": "application/json"}
    )
    before_dir = export_tree(args.before, work_dir / "before")
    with OtlpReceiver(keep=False) as receiver, Servers(work_dir) as servers:
        rows = start_all(servers, before_dir, receiver.endpoint)
        for row in rows:
            await servers.wait_ready(row.server, args.startup_timeout, "/health/ready")
        for index in range(args.rounds):
            for row in in_turn(rows, index):
                result = await asyncio.to_thread(
                    measured, row.server, payload, args.concurrency, args.seconds
                )
                row.rounds.append(result)
                sys.stderr.write(
                    f"round {index + 1}: {row.name:<7} {result['rps'] or 0:>8.1f} req/s  "
                    f"{result['cpu_ms']:.3f} CPU ms/request  p50 {result['p50_ms']:.2f} ms  "
                    f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}  "
                    f"load {loadavg()}\n"
                )
        return [summary(row) for row in rows], receiver.received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument(
        "--before", required=True, help="a commit without tracing (the docstring names two)"
    )
    wrk.add_run_options(parser, concurrency=16, seconds=5.0, rounds=3)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if wrk.missing("bench.tracing"):
        return 2
    if has_tracing(args.before):
        sys.stderr.write(f"--before {args.before} has tracing: name a commit without it\n")
        return 2
    header = run_header()
    before_commit = resolved(args.before)
    with tempfile.TemporaryDirectory(prefix="glassbox-tracing-") as work:
        rows, spans = asyncio.run(measure(args, Path(work)))
    meta = {
        **header.as_dict(),
        "loadavg_end": loadavg(),
        "before": args.before,
        "before_commit": before_commit,
    }
    text = markdown(meta, rows, args, spans)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_tracing"
    report.publish(args.out, stem, text, {"meta": meta, "rows": rows, "spans": spans})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
