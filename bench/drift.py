"""`python -m bench.drift`: what the drift window costs a prediction.

In one process, on the committed housing model, two services side by side: one with the drift
window off (GLASSBOX_DRIFT_WINDOW=0) and one with the default 1,000. Each round sends
`--requests` one-row predictions through `Predictor.predict` to each, the order of the two
alternating from round to round so the machine's noise falls on both. Beside it, the cost of
`Drift.observe` alone per answered batch (one row, and 64), its gauge refresh every 100 rows
included. The table gives the median over rounds of each p50 and p99 and the ratios; the result
is written under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from app.core.settings import Settings
from app.dataplane.service import InferenceService
from bench import report
from bench.run_info import run_header
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
HOUSING = np.array([[3.87, 29.0, 5.4, 1.1, 1425.0, 3.1, 35.6, -119.6]], dtype=np.float32)
WINDOWS = (0, 1000)


async def one_round(service: InferenceService, requests: int) -> list[float]:
    runtime = service.registry.resolve("housing")
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await service.predictor.predict(runtime, HOUSING)
        latencies.append(time.perf_counter() - started)
    return latencies


def observe_cost(service: InferenceService, rows: int, calls: int) -> list[float]:
    """Seconds of each `Drift.observe` of a `rows`-row batch."""
    runtime = service.registry.resolve("housing")
    batch = np.repeat(HOUSING, rows, axis=0)
    outputs = np.ones((rows, 1), np.float32)
    costs = []
    for _ in range(calls):
        started = time.perf_counter()
        service.predictor.drift.observe(runtime, batch, outputs)
        costs.append(time.perf_counter() - started)
    return costs


async def measure(rounds: int, requests: int) -> dict[str, list[list[float]]]:
    services = {
        window: InferenceService(
            Settings(
                model_dir=ROOT / "models",
                models=["housing"],
                poll_interval_s=0,
                drift_window=window,
            )
        )
        for window in WINDOWS
    }
    results: dict[str, list[list[float]]] = {
        **{f"predict, window {w}": [] for w in WINDOWS},
        "observe, 1 row": [],
        "observe, 64 rows": [],
    }
    try:
        for service in services.values():
            await service.catalog.reload()
            await one_round(service, 200)  # warm-up
        for number in range(rounds):
            order = WINDOWS if number % 2 == 0 else WINDOWS[::-1]
            for window in order:
                results[f"predict, window {window}"].append(
                    await one_round(services[window], requests)
                )
            results["observe, 1 row"].append(observe_cost(services[1000], 1, requests))
            results["observe, 64 rows"].append(observe_cost(services[1000], 64, requests))
    finally:
        for service in services.values():
            await service.aclose()
    return results


def rows(results: dict[str, list[list[float]]]) -> list[dict]:
    def median_of(name: str, q: float) -> float:
        return float(np.median([percentile(run, q) or 0.0 for run in results[name]])) * 1000

    base = median_of("predict, window 0", 50), median_of("predict, window 0", 99)
    table = []
    for name in results:
        p50, p99 = median_of(name, 50), median_of(name, 99)
        table.append(
            {
                "what": name,
                "p50_ms": round(p50, 4),
                "p99_ms": round(p99, 4),
                "p50_vs_window_0": round(p50 / base[0], 3) if name.startswith("predict") else None,
                "p99_vs_window_0": round(p99 / base[1], 3) if name.startswith("predict") else None,
            }
        )
    return table


def markdown_table(found: list[dict]) -> str:
    columns = list(found[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in found:
        cells = ["-" if row[key] is None else str(row[key]) for key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    header = run_header()
    found = rows(asyncio.run(measure(args.rounds, args.requests)))
    title = (
        f"commit {header.commit}, {args.rounds} interleaved rounds x {args.requests} one-row "
        f"predictions per window setting, load average at start {header.loadavg_start}"
    )
    markdown = "\n".join([f"# Drift window cost\n\n{title}\n", markdown_table(found), ""])
    sys.stdout.write(markdown)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_drift"
    report.write(
        args.out,
        stem,
        markdown,
        {**header.as_dict(), "args": vars(args) | {"out": str(args.out)}, "rows": found},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
