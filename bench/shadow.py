"""`python -m bench.shadow`: what a shadow version costs the callers of the default version.

In one process, on the committed iris model served as versions 1 and 2 (two copies, so a
shadow copy costs a real model call), the latency of `Predictor.predict` for the
default version, under four shadows: none, a working one, one that raises and one that hangs
(blocked until the end of the run). Each round sends `--requests` predictions from `--callers`
concurrent callers; rounds interleave the shadows so the machine's noise falls on all. The
table gives the median over rounds of each shadow's p50 and p99, and the ratio to no shadow.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.core.settings import Settings
from app.dataplane.service import InferenceService
from app.runtime.registry import Asked
from app.runtime.rollout import RolloutPlan, ShadowPlan
from bench.run_info import run_header
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "models" / "iris" / "1"
FLOWER = np.array([[6.3, 2.8, 5.1, 1.5]], dtype=np.float32)
SHADOWS = ("none", "working", "raising", "hanging")


def model_folder(root: Path) -> Path:
    for version in (1, 2):
        shutil.copytree(IRIS, root / "iris" / str(version))
    return root


async def one_round(service: InferenceService, requests: int, callers: int) -> list[float]:
    runtime = service.registry.resolve("iris", Asked(version=1))
    latencies: list[float] = []
    per_caller = requests // callers

    async def caller() -> None:
        for _ in range(per_caller):
            started = time.perf_counter()
            await service.predictor.predict(runtime, FLOWER)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies


def shadowed(service: InferenceService, shadow: str, release: threading.Event) -> None:
    plan = RolloutPlan(labels={"stable": 1})
    if shadow != "none":
        plan = RolloutPlan(labels={"stable": 1}, shadow=ShadowPlan(version=2))
    service.registry.set_plan("iris", plan)
    candidate = service.registry.resolve("iris", Asked(version=2))
    behaviours: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "raising": _raise,
        "hanging": lambda batch: (release.wait(), np.zeros((len(batch), 3), np.float32))[1],
    }
    candidate.__dict__.pop("predict", None)  # back to the real model call
    if shadow in behaviours:
        candidate.predict = behaviours[shadow]  # type: ignore[method-assign]


def _raise(batch: np.ndarray) -> np.ndarray:
    raise RuntimeError("the candidate is broken")


async def measure(rounds: int, requests: int, callers: int) -> dict[str, list[list[float]]]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(model_dir=model_folder(Path(scratch)), poll_interval_s=0)
        service = InferenceService(settings)
        await service.catalog.reload()
        results: dict[str, list[list[float]]] = {shadow: [] for shadow in SHADOWS}
        try:
            await one_round(service, requests, callers)  # warm-up
            for _ in range(rounds):
                for shadow in SHADOWS:
                    release = threading.Event()
                    shadowed(service, shadow, release)
                    try:
                        results[shadow].append(await one_round(service, requests, callers))
                    finally:  # the hung copies end with their round, so the next starts clear
                        release.set()
                    await service.shadow.idle()
        finally:
            await service.aclose()
    return results


def table(results: dict[str, list[list[float]]]) -> str:
    def median_of(shadow: str, q: float) -> float:
        values = [percentile(latencies, q) or 0.0 for latencies in results[shadow]]
        return float(np.median(values)) * 1000

    base50, base99 = median_of("none", 50), median_of("none", 99)
    lines = [
        "| shadow | p50 ms | p99 ms | p50 vs none | p99 vs none |",
        "| --- | --- | --- | --- | --- |",
    ]
    for shadow in SHADOWS:
        p50, p99 = median_of(shadow, 50), median_of(shadow, 99)
        lines.append(
            f"| {shadow} | {p50:.3f} | {p99:.3f} | {p50 / base50:.3f}x | {p99 / base99:.3f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=1)
    args = parser.parse_args(argv)
    header = run_header()
    sys.stdout.write(
        f"commit {header.commit}, {args.rounds} rounds x {args.requests} predictions, "
        f"{args.callers} concurrent callers\n"
    )
    sys.stdout.write(table(asyncio.run(measure(args.rounds, args.requests, args.callers))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
