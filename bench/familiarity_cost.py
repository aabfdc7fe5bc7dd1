"""`python -m bench.familiarity_cost`: what familiarity costs a typed predict, side by side.

Two services on the same committed models (with their familiarity files): this checkout's, and
the code this branch started from (`--base`, default the merge base with main, exported with
`git archive` into a temporary folder), which reads the same cards and ignores their
familiarity block. Each scenario (a typed JSON predict of iris and housing, an image upload to
mnist and catdog) sends sequential requests on one keep-alive connection per service, the two
services taking turns every BLOCK requests, in `--rounds` rounds; the table gives each service's
median over the rounds of its p50, their ratio, and the median of the rounds' own ratios. The target
(issue 32): the p50 grows by at most 15%. The machine is shared: the numbers move with its load,
which the interleaving spreads over both services alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import httpx

from app.artifact.card import ModelCard
from bench.cards import newest_versions
from bench.report import RESULTS
from bench.run_info import loadavg
from bench.scenarios import BOUNDARY, EXAMPLES_DIR, features_body, multipart_body
from bench.servers import ROOT, Servers, child_env, free_port, uvicorn_command
from bench.stats import percentile

MODELS = ("iris", "housing", "mnist", "catdog")
TARGET = 1.15
BLOCK = 20  # requests to one service before the other takes its turn


def requests_of(model_dir: Path) -> dict[str, tuple[str, bytes, str]]:
    """Each scenario's path, body and content type."""
    cards = {name: ModelCard.read(path) for name, path in newest_versions(model_dir).items()}
    upload = f"multipart/form-data; boundary={BOUNDARY}"
    mnist = (EXAMPLES_DIR / "mnist.png").read_bytes()
    catdog = (EXAMPLES_DIR / "catdog.jpg").read_bytes()
    return {
        "iris": ("/api/models/iris/predict", features_body(cards["iris"]), "application/json"),
        "housing": (
            "/api/models/housing/predict",
            features_body(cards["housing"]),
            "application/json",
        ),
        "mnist": (
            "/api/models/mnist/predict",
            multipart_body("file", "mnist.png", "image/png", mnist),
            upload,
        ),
        "catdog": (
            "/api/models/catdog/predict",
            multipart_body("file", "catdog.jpg", "image/jpeg", catdog),
            upload,
        ),
    }


def export_base(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "app"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def merge_base() -> str:
    return subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()[:12]


async def timed(client: httpx.AsyncClient, request: tuple[str, bytes, str], count: int):
    """Latencies (seconds) of `count` sequential requests, and the last answer's body."""
    path, body, content_type = request
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.post(path, content=body, headers={"content-type": content_type})
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies, response.json()


async def measure(args: argparse.Namespace, work: Path) -> dict:
    base = args.base or merge_base()
    export_base(base, work / "base")
    sent = requests_of(ROOT / "models")
    env = {**child_env(list(MODELS)), "GLASSBOX_MODEL_DIR": str(ROOT / "models")}
    p50s: dict[tuple[str, str], list[float]] = {}
    carries: dict[str, bool] = {}
    with Servers(work) as servers:
        clients = {}
        for label, cwd in (("base", work / "base"), ("familiarity", ROOT)):
            port = free_port()
            server = servers.start_command(
                label, uvicorn_command("app.main:app", port), env, port, cwd=cwd
            )
            await servers.wait_ready(server, args.startup_timeout, path="/health/ready")
            clients[label] = httpx.AsyncClient(base_url=server.url, timeout=30.0)
        try:
            for request in sent.values():  # warm-up, not measured
                for client in clients.values():
                    await timed(client, request, 20)
            for round_index in range(args.rounds):
                for scenario, request in sent.items():
                    found: dict[str, list[float]] = {label: [] for label in clients}
                    # Blocks of BLOCK requests, the two services taking turns (the first
                    # alternating too), so that the machine's drift falls on both alike.
                    for block in range(args.requests // BLOCK):
                        order = list(clients)
                        if (round_index + block) % 2:
                            order.reverse()
                        for label in order:
                            latencies, answer = await timed(clients[label], request, BLOCK)
                            found[label].extend(latencies)
                            carries[label] = "familiarity" in answer
                    for label, latencies in found.items():
                        p50 = float(percentile(latencies, 50) or 0.0) * 1e3
                        p50s.setdefault((scenario, label), []).append(p50)
        finally:
            for client in clients.values():
                await client.aclose()
    rows = []
    for scenario in sent:
        before = statistics.median(p50s[(scenario, "base")])
        after = statistics.median(p50s[(scenario, "familiarity")])
        rounds = zip(p50s[(scenario, "familiarity")], p50s[(scenario, "base")], strict=True)
        paired = statistics.median(a / b for a, b in rounds)
        rows.append(
            {
                "scenario": scenario,
                "base_p50_ms": round(before, 3),
                "familiarity_p50_ms": round(after, 3),
                "ratio": round(after / before, 3),
                "round_ratio_median": round(paired, 3),
                "met": after / before <= TARGET,
                "base_rounds_ms": [round(v, 3) for v in p50s[(scenario, "base")]],
                "familiarity_rounds_ms": [round(v, 3) for v in p50s[(scenario, "familiarity")]],
            }
        )
    return {
        "base": base,
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "loadavg": loadavg(),
        "answers_carry_familiarity": carries,
        "rows": rows,
    }


def in_process(rounds: int, calls: int = 20) -> list[dict]:
    """The model call and the typed answer alone, in this process, without and with the
    familiarity score: what the score adds, free of HTTP and of most of the machine's noise
    (both run in turns of `calls`, `rounds` x 10 times, medians)."""
    import numpy as np

    from app.dataplane import familiarity, traces
    from app.runtime.model import ModelRuntime

    rows = []
    for name, path in newest_versions(ROOT / "models", list(MODELS)).items():
        runtime = ModelRuntime(name, int(path.name), path)
        runtime.load()
        card = runtime.loaded_card
        if card.input.kind == "features":
            x = np.array([[spec.mean for spec in card.input.features or []]], np.float32)
        else:
            shape = [int(side) for side in card.input.shape[1:] if side is not None]
            x = np.random.default_rng(0).uniform(0, 255, [1, *shape]).astype(np.float32)

        def plain(runtime: ModelRuntime = runtime, x: np.ndarray = x) -> None:
            traces.describe(runtime, runtime.predict(x))

        def scored(runtime: ModelRuntime = runtime, x: np.ndarray = x) -> None:
            out = runtime.predict_scored(x)
            traces.describe(runtime, out.outputs, familiarity.answers(runtime, x, out.familiarity))

        times: dict[str, list[float]] = {"plain": [], "scored": []}
        for _ in range(rounds * 10):
            for label, call in (("plain", plain), ("scored", scored)):
                started = time.perf_counter()
                for _ in range(calls):
                    call()
                times[label].append((time.perf_counter() - started) / calls * 1e3)
        before, after = statistics.median(times["plain"]), statistics.median(times["scored"])
        rows.append(
            {
                "model": name,
                "plain_ms": round(before, 4),
                "scored_ms": round(after, 4),
                "added_ms": round(after - before, 4),
            }
        )
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"Typed predict p50, base `{result['base']}` against this checkout, "
        f"{result['rounds']} rounds of {result['requests_per_round']} sequential requests per "
        f"service, in turns of {BLOCK}, medians over the rounds; load average "
        f"{result['loadavg']} (a shared machine).",
        "",
        "| scenario | base p50 ms | familiarity p50 ms | ratio | median round ratio | <= 1.15 |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scenario']} | {r['base_p50_ms']:.2f} | {r['familiarity_p50_ms']:.2f} | "
            f"{r['ratio']:.3f} | {r['round_ratio_median']:.3f} | {'yes' if r['met'] else 'NO'} |"
        )
    lines += [
        "",
        "In process, the model call and the typed answer without and with the score (ms, medians):",
        "",
        "| model | without | with | added |",
        "|---|---|---|---|",
    ]
    for r in result["in_process"]:
        lines.append(
            f"| {r['model']} | {r['plain_ms']:.3f} | {r['scored_ms']:.3f} | {r['added_ms']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.familiarity_cost", description=__doc__)
    parser.add_argument("--base", default=None, help="commit to compare (default: merge base)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200, help="per scenario and round")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(measure(args, Path(work)))
    result["in_process"] = in_process(args.rounds)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d_%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"familiarity_cost_{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"familiarity_cost_{stamp}.md").write_text(markdown(result) + "\n")
    sys.stdout.write(markdown(result) + "\n")
    return 0 if all(r["met"] for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
