"""`python -m bench`: start the servers, drive them, print and write the table.

The servers run side by side and each (scenario, concurrency) is measured on all of them back to
back, so a change in background load shifts all three alike. The overload run gets a service of
its own, started with a small GLASSBOX_QUEUE_SIZE after the others have stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import signal
import sys
import tempfile
from pathlib import Path
from unittest import mock

from app.artifact.card import ModelCard
from app.core.settings import Settings
from bench import compare, protocols, report, wrk
from bench.cards import newest_versions
from bench.load import measure
from bench.run_info import RunHeader, loadavg, run_header
from bench.scenarios import (
    ALL_NAMES,
    OVERLOAD,
    PEERS,
    PROTOCOLS,
    SCENARIOS,
    Payload,
    Scenario,
    build_payload,
)
from bench.servers import (
    ROOT,
    TARGETS,
    UVICORN_OPTIONS,
    ServerFailed,
    Servers,
    child_env,
    served_models,
)
from bench.stats import summarize, summarize_overload

QUICK = {"requests": 64, "warmup": 8, "max_seconds": 15.0, "overload_requests": 512, "seconds": 3.0}
FULL = {
    "requests": 1000,
    "warmup": None,
    "max_seconds": 60.0,
    "overload_requests": 2048,
    "seconds": 10.0,
}


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (got {text!r})")
        return names

    return parse


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive ints (got {text!r})")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the service against a Keras model.predict baseline and an HTTP "
        "floor on loopback. Model settings come from the GLASSBOX_* environment, passed to "
        "every server.",
    )
    parser.add_argument("--requests", type=int, help="measured requests per run (1000; quick 64)")
    parser.add_argument(
        "--concurrency", type=_positive_ints, default=[1, 16, 64], help="default 1,16,64"
    )
    parser.add_argument(
        "--scenarios",
        type=_names(ALL_NAMES),
        default=list(ALL_NAMES),
        help=f"default {','.join(ALL_NAMES)}",
    )
    parser.add_argument(
        "--servers",
        type=_names(tuple(TARGETS)),
        default=list(TARGETS),
        help=f"default {','.join(TARGETS)}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes of every server, the same for all three (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--out", type=Path, default=report.RESULTS, help="default bench/results")
    parser.add_argument(
        "--warmup",
        type=int,
        help="unrecorded requests before each run (max(50, 2 x conc.); quick 8)",
    )
    parser.add_argument(
        "--max-seconds", type=float, help="wall-clock cap of one measured run (60; quick 15)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="per server, seconds")
    parser.add_argument("--overload-concurrency", type=int, default=256)
    parser.add_argument(
        "--overload-queue-size", type=int, default=32, help="GLASSBOX_QUEUE_SIZE of that run"
    )
    parser.add_argument("--overload-requests", type=int, help="2048; quick 512")
    parser.add_argument(
        "--driver",
        choices=["wrk", "httpx"],
        default="wrk" if wrk.available() else "httpx",
        help="load generator of the table's runs: wrk (C, when installed; a timed run per "
        "row) or httpx (Python; a fixed request count per row). Default: wrk if installed",
    )
    parser.add_argument(
        "--seconds", type=float, help="length of one measured wrk run (10; quick 3)"
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _version(*packages: str) -> str | None:
    for package in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(package)
    return None


def effective_settings(env: dict[str, str]) -> dict:
    """The service's Settings as the child environment makes them."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings().model_dump(mode="json")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _warmup(args: argparse.Namespace, concurrency: int) -> int:
    return args.warmup if args.warmup is not None else max(50, 2 * concurrency)


def plan(args: argparse.Namespace, present: dict[str, Path], model_dir: Path, notes: list[str]):
    """The table scenarios and the overload scenario (or None) that can run; notes for the
    rest."""
    scenarios = []
    for name in (n for n in args.scenarios if n in SCENARIOS):
        scenario = SCENARIOS[name]
        if scenario.model in present:
            scenarios.append(scenario)
        else:
            notes.append(
                f"{name}: skipped, no '{scenario.model}' model in {model_dir} (not trained yet?)"
            )
    overload = OVERLOAD if OVERLOAD.name in args.scenarios else None
    if overload and "service" not in args.servers:
        notes.append("overload: skipped, it runs against the service, not in --servers")
        overload = None
    if overload and overload.model not in present:
        notes.append(f"overload: skipped, no '{overload.model}' model in {model_dir}")
        overload = None
    return scenarios, overload


async def run_table(
    args: argparse.Namespace,
    servers: Servers,
    env: dict[str, str],
    scenarios: list[Scenario],
    payloads: dict[str, Payload],
    notes: list[str],
) -> list[dict]:
    """Every server side by side; each scenario and concurrency on all of them back to back."""
    running = {name: servers.start(name, env) for name in args.servers}
    _say(f"starting {', '.join(running)} (logs in {servers.log_dir})")
    for server in running.values():
        await servers.wait_ready(server, args.startup_timeout)
    served = {name: await served_models(server) for name, server in running.items()}
    results = []
    for scenario in scenarios:
        for concurrency in args.concurrency:
            for name, server in running.items():
                if scenario.model not in served[name]:
                    note = f"{scenario.name}: {name} does not serve '{scenario.model}' (its log?)"
                    if note not in notes:
                        notes.append(note)
                    continue
                if args.driver == "wrk":
                    row = await _wrk_row(args, server.url, payloads[scenario.name], concurrency)
                    outcome = None
                else:
                    outcome = await measure(
                        server.url,
                        payloads[scenario.name],
                        requests=args.requests,
                        concurrency=concurrency,
                        warmup=_warmup(args, concurrency),
                        max_seconds=args.max_seconds,
                        timeout=args.timeout,
                    )
                    row = {
                        "requests": args.requests,
                        "capped": outcome.capped,
                        **summarize(outcome.samples, outcome.elapsed_s, outcome.unfinished),
                    }
                row = {
                    "scenario": scenario.name,
                    "concurrency": concurrency,
                    "server": name,
                    "driver": args.driver,
                    **row,
                }
                results.append(row)
                _say(
                    f"{scenario.name:<10} c={concurrency:<3} {name:<8} "
                    f"{row['rps'] or 0:>8.1f} req/s  p50 {row['p50_ms'] or 0:.1f} ms  "
                    f"p99 {row['p99_ms'] or 0:.1f} ms  errors {row['errors']}"
                    + ("  (wall-clock cap)" if outcome and outcome.capped else "")
                )
                if outcome and outcome.capped:
                    notes.append(
                        f"{scenario.name} c={concurrency} {name}: stopped at the "
                        f"{args.max_seconds:.0f} s cap after {row['completed']} requests"
                    )
    servers.stop_all()
    return results


async def _wrk_row(args: argparse.Namespace, url: str, payload, concurrency: int) -> dict:
    """A short unrecorded wrk run to warm up, then the measured one (off the event loop)."""
    return await asyncio.to_thread(
        wrk.measure_warm, url, payload, concurrency=concurrency, seconds=args.seconds
    )


async def run_overload(
    args: argparse.Namespace, servers: Servers, env: dict[str, str], payload: Payload
) -> dict:
    """A service of its own with a small queue, driven far above it."""
    overload_env = {**env, "GLASSBOX_QUEUE_SIZE": str(args.overload_queue_size)}
    server = servers.start("service", overload_env, label="service-overload")
    _say(
        f"overload: service with GLASSBOX_QUEUE_SIZE={args.overload_queue_size}, "
        f"concurrency {args.overload_concurrency}"
    )
    await servers.wait_ready(server, args.startup_timeout)
    outcome = await measure(
        server.url,
        payload,
        requests=args.overload_requests,
        concurrency=args.overload_concurrency,
        warmup=_warmup(args, 1),
        max_seconds=args.max_seconds,
        timeout=args.timeout,
    )
    servers.stop(server)
    return {
        "scenario": OVERLOAD.model,
        "concurrency": args.overload_concurrency,
        "queue_size": args.overload_queue_size,
        "requests": args.overload_requests,
        "capped": outcome.capped,
        **summarize_overload(outcome.samples, outcome.elapsed_s, outcome.unfinished, args.timeout),
    }


def describe(
    args: argparse.Namespace,
    header: RunHeader,
    env: dict[str, str],
    cards: dict[str, ModelCard],
    model_dir: Path,
    log_dir: Path,
) -> dict:
    """The machine, the code and the settings of a run, for the results header: the shared
    run header (bench/run_info.py) and what only the benchmark records."""
    return {
        **header.as_dict(),
        "loadavg_end": loadavg(),
        "packages": {
            "tensorflow": _version("tensorflow"),
            "keras": _version("keras"),
            "fastapi": _version("fastapi"),
            "uvicorn": _version("uvicorn"),
            "uvloop": _version("uvloop"),
            "httptools": _version("httptools"),
            "httpx": _version("httpx"),
        },
        "model_dir": str(model_dir),
        "models": {name: card.version for name, card in cards.items()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "glassbox_env": {k: v for k, v in os.environ.items() if k.startswith("GLASSBOX_")},
        "service_settings": effective_settings(env),
        "launcher": "python -m app.serve",  # uvicorn's command line; see bench/servers.py
        "uvicorn_options": [*UVICORN_OPTIONS, "--workers", str(args.workers)],
        "client": "httpx.AsyncClient per run, keep-alive pool = concurrency, on loopback, "
        "sharing the machine's cores with the servers",
        "server_logs": str(log_dir),
    }


async def run(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    header = run_header()  # the code the servers import now, whatever changes during the run
    notes: list[str] = []
    model_dir = Path(effective_settings(dict(os.environ))["model_dir"])
    model_dir = model_dir if model_dir.is_absolute() else ROOT / model_dir
    present = newest_versions(model_dir)
    scenarios, overload = plan(args, present, model_dir, notes)

    needed = sorted({s.model for s in scenarios} | ({overload.model} if overload else set()))
    env = child_env(needed)
    cards = {name: ModelCard.read(present[name]) for name in needed}
    payloads = {s.name: build_payload(s, cards[s.model]) for s in scenarios}

    results: list[dict] = []
    overload_result: dict | None = None
    protocol_rows: list[dict] = []
    run_protocols = PROTOCOLS in args.scenarios
    if run_protocols and not ({"iris", "mnist"} <= set(present) and wrk.available()):
        notes.append(f"{PROTOCOLS}: skipped, it needs the iris and mnist models and wrk")
        run_protocols = False
    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    with Servers(log_dir, args.workers) as servers:
        if scenarios:
            results = await run_table(args, servers, env, scenarios, payloads, notes)
        if overload:
            try:
                payload = build_payload(overload, cards[overload.model])
                overload_result = await run_overload(args, servers, env, payload)
            except ServerFailed as error:
                notes.append(f"overload: not run, the service did not start: {error}")
        if run_protocols:
            _say(f"{PROTOCOLS}: REST and gRPC side by side on one service")
            protocol_rows, _ = await protocols.measure_all(
                servers,
                child_env(["iris", "mnist"]),
                concurrency=16,
                seconds=args.seconds,
                rounds=1 if args.quick else 2,
            )

    peers_text, peers_data = "", None
    if PEERS in args.scenarios and wrk.available():
        _say(f"{PEERS}: Glassbox beside BentoML, MLServer and the floor (bench/compare.py)")
        peers_args = compare.parse_args(["--seconds", str(args.seconds)])
        peers_args.rounds = 1 if args.quick else peers_args.rounds
        peers_text, peers_data = await compare.measure_all(peers_args)
    elif PEERS in args.scenarios:
        notes.append(f"{PEERS}: skipped, it needs wrk")

    if not results and not overload_result and not protocol_rows and not peers_data:
        _say("nothing was run:\n" + "\n".join(f"- {note}" for note in notes))
        return 1

    meta = describe(args, header, env, cards, model_dir, log_dir)
    meta["overload_env"] = (
        {"GLASSBOX_QUEUE_SIZE": str(args.overload_queue_size)} if overload_result else None
    )
    rows = report.with_ratios(results)
    markdown = report.render_markdown(meta, rows, overload_result, notes)
    if protocol_rows:
        rounds = 1 if args.quick else 2
        markdown += "\n" + protocols.section(protocol_rows, 16, rounds, args.seconds, args.workers)
    markdown += ("\n" + peers_text) if peers_text else ""
    data = {
        "meta": meta,
        "results": rows,
        "overload": overload_result,
        "protocols": protocol_rows,
        "peers": peers_data,
        "notes": notes,
    }
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + ("_quick" if args.quick else "")
    written = report.write(args.out, stem, markdown, data)
    sys.stdout.write(
        report.render_markdown(meta, rows, overload_result, notes, with_settings=False)
    )
    if protocol_rows:
        rounds = 1 if args.quick else 2
        sys.stdout.write(
            "\n" + protocols.section(protocol_rows, 16, rounds, args.seconds, args.workers)
        )
    sys.stdout.write(("\n" + peers_text) if peers_text else "")
    sys.stdout.flush()
    _say("written: " + ", ".join(str(path) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        _say("interrupted; every server the benchmark started has been stopped")
        return 130
    except ServerFailed as error:
        _say(f"a server failed: {error}")
        return 1
    except asyncio.CancelledError:  # SIGTERM
        _say("terminated; every server the benchmark started has been stopped")
        return 143


if __name__ == "__main__":
    sys.exit(main())
