"""`python -m bench.compare`: Glassbox beside real peers, BentoML and Seldon MLServer, and the
HTTP floor, on the scenarios of issue 19, with each server's start-up time and memory.

Two groups, each its own set of servers with the same worker count:
- one worker: iris at 64 connections (each server's native request: Glassbox's typed JSON,
  BentoML's ndarray body, MLServer's Open Inference v2 JSON, the floor's typed JSON), and the
  same v2 JSON body to Glassbox's /v2 route and to MLServer;
- two workers: iris at 64 connections (Glassbox and the floor) and an mnist PNG at 16
  (Glassbox's upload, BentoML's upload, MLServer's base64 BYTES input).
Each server starts alone (its start-up time is measured from the process start to its ready
route answering 200), then the rows run in interleaved rounds (`--rounds`, 3): every row once,
then every row again, and again, so the machine's noise falls on all servers alike. The table
gives the median and the spread (min-max) of req/s over the rounds, and p50/p99 of the median
round. Three rounds, not two: this machine's speed drifts by a third within minutes, and with
two rounds a median is their mean, moved by one slow round.

Then an overload run: a Glassbox service with GLASSBOX_QUEUE_SIZE=32 sent iris predictions on
256 connections, while a probe asks /health/ready every 100 ms.

The peers need their environments: `python -m bench.peers install`. A peer that is not
installed is left out, with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.artifact.card import ModelCard
from bench import report, server_matrix, wrk
from bench.cards import newest_versions
from bench.peers.registry import PEERS
from bench.run_info import loadavg, run_header
from bench.scenarios import BOUNDARY, EXAMPLES_DIR, Payload, features_body, multipart_body
from bench.servers import ROOT, Server, Servers, child_env, free_port
from bench.stats import ratio

READY_PATHS = {
    "service": "/health/ready",
    "floor": "/health/live",
    "bentoml": "/readyz",
    "mlserver": "/v2/health/ready",
}
HOW = {
    "service": "Glassbox, `python -m app.serve app.main:app` as deploy/serve.sh runs it, defaults",
    "floor": "bench/floor_app.py: FastAPI, the same validated bodies, a constant answer",
    **server_matrix.HOW,
    **{name: peer.description for name, peer in PEERS.items()},
}


@dataclass(frozen=True)
class Row:
    scenario: str
    concurrency: int
    server: str
    payload: Payload
    request: str  # what is sent, for the table


@dataclass
class Group:
    name: str
    workers: int
    rows: list[Row]
    servers: list[str] = field(default_factory=list)


def _json_payload(path: str, body: dict | bytes) -> Payload:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Payload(path, data, {"content-type": "application/json"})


def payloads(model_dir: Path) -> dict[str, Payload]:
    cards = {name: ModelCard.read(path) for name, path in newest_versions(model_dir).items()}
    iris = cards["iris"]
    row = [spec.mean for spec in iris.input.features or []]
    v2_iris = {"inputs": [{"name": iris.input.name, "shape": [1, 4], "datatype": "FP32",
                           "data": row}]}  # fmt: skip
    png = (EXAMPLES_DIR / "mnist.png").read_bytes()
    upload = multipart_body("file", "mnist.png", "image/png", png)
    boundary = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    v2_png = {"inputs": [{"name": cards["mnist"].input.name, "shape": [1], "datatype": "BYTES",
                          "data": [base64.b64encode(png).decode()]}]}  # fmt: skip
    return {
        "iris typed": _json_payload("/api/models/iris/predict", features_body(iris)),
        "iris v2": _json_payload("/v2/models/iris/infer", v2_iris),
        "iris bentoml": _json_payload("/predict_iris", {"features": [row]}),
        "mnist upload": Payload("/api/models/mnist/predict", upload, boundary),
        "mnist bentoml": Payload(
            "/classify_mnist",
            multipart_body("images", "mnist.png", "image/png", png),
            boundary,
        ),
        "mnist v2": _json_payload("/v2/models/mnist/infer", v2_png),
    }


def groups(sent: dict[str, Payload], peers: list[str]) -> list[Group]:
    iris, v2, mnist = "iris", "iris v2 JSON", "mnist"
    one = [
        Row(iris, 64, "service", sent["iris typed"], "typed JSON"),
        Row(iris, 64, "floor", sent["iris typed"], "typed JSON"),
        Row(iris, 64, "bentoml", sent["iris bentoml"], "its ndarray JSON"),
        Row(iris, 64, "mlserver", sent["iris v2"], "Open Inference v2 JSON"),
        Row(v2, 64, "service", sent["iris v2"], "Open Inference v2 JSON"),
        Row(v2, 64, "mlserver", sent["iris v2"], "Open Inference v2 JSON"),
    ]
    two = [
        Row(iris, 64, "service", sent["iris typed"], "typed JSON"),
        Row(iris, 64, "floor", sent["iris typed"], "typed JSON"),
        Row(mnist, 16, "service", sent["mnist upload"], "PNG upload"),
        Row(mnist, 16, "bentoml", sent["mnist bentoml"], "PNG upload"),
        Row(mnist, 16, "mlserver", sent["mnist v2"], "base64 PNG, v2 BYTES"),
    ]
    made = []
    for name, workers, rows in (("one worker", 1, one), ("two workers", 2, two)):
        kept = [row for row in rows if row.server in ("service", "floor") or row.server in peers]
        made.append(Group(name, workers, kept, list(dict.fromkeys(r.server for r in kept))))
    return made


def server_groups(sent: dict[str, Payload]) -> list[Group]:
    """The HTTP servers side by side (bench/server_matrix.py), with one and two workers."""
    rows = [Row(*cell) for cell in server_matrix.matrix(sent)]
    servers = list(dict.fromkeys(row.server for row in rows))
    return [
        Group(name, workers, rows, servers)
        for name, workers in (("servers one worker", 1), ("servers two workers", 2))
    ]


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc): each process's parent from its stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])  # after the name, which may hold ")"
        children.setdefault(parent, []).append(int(entry.name))
    found, waiting = [], [pid]
    while waiting:
        node = waiting.pop()
        found.append(node)
        waiting += children.get(node, [])
    return found


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB (Linux /proc)."""
    total_kib = 0
    for node in process_tree(pid):
        try:
            status = Path(f"/proc/{node}/status").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        total_kib += int(fields.get("VmRSS", "0 kB").split()[0])
    return round(total_kib / 1024, 1)


async def start(
    servers: Servers, name: str, workers: int, model_dir: Path, work_dir: Path, limit_s: float
) -> tuple[Server, dict]:
    """One server, started alone: (server, its start-up seconds and memory at ready)."""
    began = time.perf_counter()
    if name in PEERS:
        peer = PEERS[name]
        port = free_port()
        env = {**os.environ, **peer.env(workers, model_dir)}
        server = servers.start_command(
            f"{name}-{workers}w", peer.command(port, workers, work_dir, model_dir), env, port
        )
        await servers.wait_ready(server, limit_s, READY_PATHS[name], started_lines=0)
    else:
        server = servers.start(
            server_matrix.target(name),
            child_env(["iris", "mnist"]),
            label=f"{name.replace('@', '-')}-{workers}w",
            http=server_matrix.http_server(name),
        )
        await servers.wait_ready(server, limit_s, READY_PATHS[server_matrix.base_name(name)])
    startup = round(time.perf_counter() - began, 1)
    return server, {"startup_s": startup, "rss_ready_mib": tree_rss_mib(server.process.pid)}


async def measure_row(row: Row, url: str, seconds: float) -> dict:
    return await asyncio.to_thread(
        wrk.measure_warm, url, row.payload, concurrency=row.concurrency, seconds=seconds
    )


async def run_group(
    group: Group, args: argparse.Namespace, model_dir: Path, work_dir: Path
) -> tuple[list[dict], dict[str, dict]]:
    """The group's rows in interleaved rounds; each server's start-up and memory."""
    runs: dict[int, list[dict]] = {index: [] for index in range(len(group.rows))}
    facts: dict[str, dict] = {}
    with Servers(work_dir, group.workers) as servers:
        running = {}
        for name in group.servers:
            say(f"{group.name}: starting {name}")
            running[name], facts[name] = await start(
                servers, name, group.workers, model_dir, work_dir, args.startup_timeout
            )
            say(f"  ready in {facts[name]['startup_s']} s, {facts[name]['rss_ready_mib']} MiB")
        for round_index in range(args.rounds):
            for index, row in enumerate(group.rows):
                result = await measure_row(row, running[row.server].url, args.seconds)
                runs[index].append(result)
                say(
                    f"{group.name} round {round_index + 1}: {row.scenario:<12} "
                    f"c={row.concurrency:<3} {row.server:<21} {result['rps'] or 0:>8.1f} req/s  "
                    f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
                    f"errors {result['errors']}"
                )
        for name, server in running.items():
            facts[name]["rss_after_mib"] = tree_rss_mib(server.process.pid)
            facts[name]["workers"] = group.workers
    return summarize(group, runs), facts


def summarize(group: Group, runs: dict[int, list[dict]]) -> list[dict]:
    """A table row per group row: req/s median and spread over its rounds, the latency of its
    median round, and every round's errors."""
    rows = []
    for index, row in enumerate(group.rows):
        measured = runs[index]
        rps = [run["rps"] or 0.0 for run in measured]
        middle = sorted(measured, key=lambda run: run["rps"] or 0.0)[len(measured) // 2]
        rows.append(
            {
                "group": group.name,
                "workers": group.workers,
                "scenario": row.scenario,
                "concurrency": row.concurrency,
                "server": row.server,
                "request": row.request,
                "rps_median": round(statistics.median(rps), 1),
                "rps_min": round(min(rps), 1),
                "rps_max": round(max(rps), 1),
                "p50_ms": middle["p50_ms"],
                "p99_ms": middle["p99_ms"],
                "errors": sum(run["errors"] for run in measured),
                "rounds": measured,
            }
        )
    return rows


async def probe_ready(url: str, stop: asyncio.Event) -> dict:
    """/health/ready every 100 ms until `stop`: how many answered 200, and the slowest."""
    answers: list[tuple[int | None, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while not stop.is_set():
            began = time.perf_counter()
            try:
                status: int | None = (await client.get("/health/ready")).status_code
            except httpx.HTTPError:
                status = None
            answers.append((status, time.perf_counter() - began))
            await asyncio.sleep(0.1)
    return {
        "probes": len(answers),
        "probes_200": sum(1 for status, _ in answers if status == 200),
        "probe_max_ms": round(1000 * max((s for _, s in answers), default=0.0), 1),
    }


async def run_overload(args: argparse.Namespace, sent: Payload, work_dir: Path) -> dict:
    """A service with a small queue, driven by wrk far above it, its readiness probed."""
    env = {**child_env(["iris"]), "GLASSBOX_QUEUE_SIZE": str(args.overload_queue_size)}
    with Servers(work_dir, 1) as servers:
        server = servers.start("service", env, label="service-overload")
        await servers.wait_ready(server, args.startup_timeout, "/health/ready")
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_ready(server.url, stop))
        outcome = await asyncio.to_thread(
            wrk.overload,
            server.url,
            sent,
            concurrency=args.overload_concurrency,
            seconds=args.seconds,
        )
        stop.set()
        probed = await probe
    return {
        "concurrency": args.overload_concurrency,
        "queue_size": args.overload_queue_size,
        **outcome,
        **probed,
    }


def targets(rows: list[dict], overload: dict | None) -> list[tuple[str, str, bool | None]]:
    """Issue 19's targets against this run's medians: (target, measured, met)."""

    def rps(group: str, scenario: str, server: str) -> float | None:
        for row in rows:
            if (row["group"], row["scenario"], row["server"]) == (group, scenario, server):
                return row["rps_median"]
        return None

    checks = []

    def check(text: str, value: float | None, bound: float) -> None:
        # Judged on the exact ratio: a rounded 0.80 may be 0.797.
        shown = "-" if value is None else f"{value:.3f}x"
        checks.append((text, shown, None if value is None else value >= bound))

    def exact(numerator: float | None, denominator: float | None) -> float | None:
        return numerator / denominator if numerator and denominator else None

    one, two = "one worker", "two workers"
    check("iris c=64, 1 worker: >= 0.60 of the floor", exact(
        rps(one, "iris", "service"), rps(one, "iris", "floor")), 0.60)  # fmt: skip
    check("iris c=64, 1 worker: >= 5x BentoML", exact(
        rps(one, "iris", "service"), rps(one, "iris", "bentoml")), 5.0)  # fmt: skip
    check("iris c=64, 2 workers: >= 0.80 of the floor", exact(
        rps(two, "iris", "service"), rps(two, "iris", "floor")), 0.80)  # fmt: skip
    v2 = "iris v2 JSON"
    check("iris v2 JSON c=64, 1 worker: >= 1.5x MLServer", exact(
        rps(one, v2, "service"), rps(one, v2, "mlserver")), 1.5)  # fmt: skip
    check("iris v2 JSON c=64, 1 worker: >= 0.80 of the typed route", exact(
        rps(one, "iris v2 JSON", "service"), rps(one, "iris", "service")), 0.80)  # fmt: skip
    for peer in ("bentoml", "mlserver"):
        check(f"mnist c=16, 2 workers: ahead of {peer}", exact(
            rps(two, "mnist", "service"), rps(two, "mnist", peer)), 1.0)  # fmt: skip
    ours = [row for row in rows if row["server"] == "service"]
    worst = max((row["p99_ms"] / row["p50_ms"] for row in ours if row["p50_ms"]), default=None)
    checks.append(("every Glassbox row: p99 <= 3x p50",
                   "-" if worst is None else f"worst {worst:.2f}x",
                   None if worst is None else worst <= 3.0))  # fmt: skip
    errors = sum(row["errors"] for row in ours)
    checks.append(("every Glassbox row: zero errors", str(errors), errors == 0))
    if overload:
        fine = (
            overload["rejected_503"] > 0
            and overload["retry_after_503"] == overload["rejected_503"]
            and overload["other"] == 0
            and overload["socket_errors"] == 0
            and overload["max_ms"] <= 1000
            and overload["probes"] > 0
            and overload["probes_200"] == overload["probes"]
        )
        checks.append(("overload: 503 + Retry-After, none over 1 s, ready throughout",
                       f"{overload['rejected_503']} x 503, slowest {overload['max_ms']} ms, "
                       f"ready {overload['probes_200']}/{overload['probes']}", fine))  # fmt: skip
    return checks


def markdown(meta: dict, rows: list[dict], facts: dict, overload: dict | None, notes: list[str]):
    lines = [
        f"# Glassbox and its peers, {meta['date']}",
        "",
        f"Commit {meta['commit']}, {meta['cpu_count']} cores, load average "
        f"{meta['loadavg_start']} at the start and {meta['loadavg_end']} at the end. "
        f"wrk, {meta['rounds']} interleaved rounds of {meta['seconds']:.0f} s per row "
        "(after a 2 s warm-up each): req/s median and spread (min-max); p50/p99 of the "
        "median round.",
        "",
        "| workers | scenario | conc. | server | request | req/s | spread | p50 ms | p99 ms "
        "| errors | Glassbox/this |",
        "|---:|---|---:|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours = next(
            (
                r["rps_median"]
                for r in rows
                if (r["group"], r["scenario"], r["concurrency"], r["server"])
                == (row["group"], row["scenario"], row["concurrency"], "service")
            ),
            None,
        )
        versus = "" if row["server"] == "service" else _times(ratio(ours, row["rps_median"]))
        lines.append(
            f"| {row['workers']} | {row['scenario']} | {row['concurrency']} | {row['server']} "
            f"| {row['request']} | {row['rps_median']:,.1f} | {row['rps_min']:,.0f}-"
            f"{row['rps_max']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['errors']} | {versus} |"
        )
    peer_rows = [row for row in rows if not row["group"].startswith("servers")]
    matrix_rows = [row for row in rows if row["group"].startswith("servers")]
    for title, verdicts in (
        ("issue 19", targets(peer_rows, overload) if peer_rows else []),
        ("issue 33, the HTTP servers", server_matrix.targets(matrix_rows) if matrix_rows else []),
    ):
        if not verdicts:
            continue
        lines += ["", f"**Targets** ({title}), from this run's medians:", ""]
        lines += ["| target | measured | met |", "|---|---|---|"]
        for text, shown, met in verdicts:
            mark = "-" if met is None else "yes" if met else "no"
            lines.append(f"| {text} | {shown} | {mark} |")
    lines += [
        "",
        "**Start-up and memory**: seconds from the process start to its ready route answering "
        "200 (polled every 0.25 s; started alone), and resident memory of all its processes "
        "at ready and after the group's load.",
        "",
        "| server | workers | ready route | start-up s | RSS at ready MiB | RSS after load MiB "
        "| per worker after load MiB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for key, fact in facts.items():
        name = key.rsplit("#", 1)[0]
        lines.append(
            f"| {name} | {fact['workers']} | {READY_PATHS[server_matrix.base_name(name)]} "
            f"| {fact['startup_s']} "
            f"| {fact['rss_ready_mib']} | {fact['rss_after_mib']} "
            f"| {fact['rss_after_mib'] / fact['workers']:.0f} |"
        )
    if overload:
        o = overload
        lines += [
            "",
            f"**Overload**: wrk, {o['concurrency']} connections for {o['elapsed_s']:.0f} s, "
            f"iris typed predictions, against a service with GLASSBOX_QUEUE_SIZE="
            f"{o['queue_size']}.",
            "",
            f"- 200: {o['ok_200']} ({o['ok_rps']:,.1f} req/s); 503: {o['rejected_503']}, "
            f"{o['retry_after_503']} of them with Retry-After; other answers: {o['other']}; "
            f"socket errors: {o['socket_errors']}",
            f"- latency of every answer: p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms, slowest "
            f"{o['max_ms']} ms",
            f"- `/health/ready` probed every 100 ms during the run: {o['probes_200']} of "
            f"{o['probes']} answered 200, the slowest in {o['probe_max_ms']} ms",
        ]
    lines += ["", "**How each server runs**", ""]
    lines += [f"- **{name}**: {text}" for name, text in HOW.items()]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="one measured row (10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--groups",
        default="one,two",
        help="one,two (Glassbox beside its peers, the default) and/or servers (the HTTP servers "
        "side by side, bench/server_matrix.py)",
    )
    parser.add_argument("--no-overload", action="store_true")
    parser.add_argument("--overload-concurrency", type=int, default=256)
    parser.add_argument("--overload-queue-size", type=int, default=32)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=report.RESULTS)
    return parser.parse_args(argv)


async def measure_all(args: argparse.Namespace) -> tuple[str, dict]:
    """Every chosen group and the overload run: the markdown report and its data."""
    header = run_header()
    model_dir = ROOT / "models"
    peers = [name for name, peer in PEERS.items() if peer.installed()]
    notes = [
        f"{name}: not installed, left out (python -m bench.peers install {name})"
        for name in PEERS
        if name not in peers
    ]
    sent = payloads(model_dir)
    wanted = args.groups.split(",")
    chosen = [g for g in groups(sent, peers) if g.name.split()[0] in wanted]
    if "servers" in wanted:
        chosen += server_groups(sent)
    work_dir = Path(tempfile.mkdtemp(prefix="glassbox-compare-"))
    rows: list[dict] = []
    facts: dict[str, dict] = {}
    for group in chosen:
        group_rows, group_facts = await run_group(group, args, model_dir, work_dir)
        rows += group_rows
        facts.update({f"{name}#{group.workers}": fact for name, fact in group_facts.items()})
    overload = None if args.no_overload else await run_overload(args, sent["iris typed"], work_dir)
    meta = {
        **header.as_dict(),
        "loadavg_end": loadavg(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "server_logs": str(work_dir),
    }
    data = {"meta": meta, "rows": rows, "servers": facts, "overload": overload, "notes": notes}
    return markdown(meta, rows, facts, overload, notes), data


async def run(args: argparse.Namespace) -> int:
    if wrk.missing("bench.compare"):
        return 1
    started = run_header().started
    text, data = await measure_all(args)
    stem = started.strftime("%Y-%m-%d_%H%M%S") + "_compare"
    written = report.write(args.out, stem, text, data)
    sys.stdout.write(text)
    say("written: " + ", ".join(str(path) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:
        say("interrupted; every server the benchmark started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
