"""`python -m bench.repository`: what an unload gives back, and what a load takes again.

Starts `python -m app.serve` (one worker) with GLASSBOX_MODEL_CONTROL=explicit and every
committed model named at start, waits for /health/ready, then for each round unloads each model
in turn (POST /v2/repository/models/{name}/unload, which answers once the model's requests have
finished and its memory is collected) and loads each again, reading the server's resident
memory (RSS, and its anonymous part: the heap, where a model's weights and TensorFlow's
allocations live) after every call. Several rounds show whether memory a load takes again is
the memory the unload gave back (a plateau) or more each time (a leak).

RSS is read from /proc (Linux). Memory the process has freed but its allocators keep (glibc's
malloc arenas, TensorFlow's own pools) still counts: an unload that frees little says so here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

from bench import report
from bench.compare import process_tree
from bench.memory import MODELS, rollup
from bench.run_info import run_header
from bench.servers import Server, Servers, child_env

ADMIN_KEY = "bench-admin"


def anonymous_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "RssAnon":
            return int(value.split()[0]) / 1024
    return 0.0


def memory(server: Server) -> dict[str, float]:
    """RSS and its anonymous part of every process of the server, summed, MiB."""
    pids = process_tree(server.process.pid)
    return {
        "rss": round(sum(rollup(pid)["rss"] for pid in pids), 1),
        "anon": round(sum(anonymous_mib(pid) for pid in pids), 1),
    }


async def cycles(server: Server, rounds: int) -> list[dict]:
    measured = [{"round": 0, "step": "at ready (every model loaded)", **memory(server)}]
    headers = {"X-API-Key": ADMIN_KEY}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=300) as client:
        for number in range(1, rounds + 1):
            for action in ("unload", "load"):
                for name in MODELS:
                    answer = await client.post(f"/v2/repository/models/{name}/{action}")
                    answer.raise_for_status()
                    step = f"{name} {action}ed"
                    measured.append({"round": number, "step": step, **memory(server)})
    return measured


def markdown(meta: dict, measured: list[dict]) -> str:
    lines = [
        f"# Unload and load again, {meta['date']}",
        "",
        f"Commit {meta['commit']}, {meta['cpu_count']} cores, load average "
        f"{meta.get('loadavg_start')} at the start (a shared, busy machine). `python -m app.serve` "
        "with one worker, GLASSBOX_MODEL_CONTROL=explicit, every committed model named at "
        "start; the server's RSS after each call:",
        "",
        "| round | after | RSS MiB | change MiB | anonymous MiB |",
        "|---:|---|---:|---:|---:|",
    ]
    previous = None
    for row in measured:
        change = "" if previous is None else f"{row['rss'] - previous:+.1f}"
        lines.append(
            f"| {row['round']} | {row['step']} | {row['rss']:.1f} | {change} | {row['anon']:.1f} |"
        )
        previous = row["rss"]
    ready = measured[0]["rss"]
    emptied = [row for row in measured if row["step"] == f"{MODELS[-1]} unloaded"]
    refilled = [row for row in measured if row["step"] == f"{MODELS[-1]} loaded"]
    lines += [
        "",
        f"At ready {ready:.1f} MiB; with every model unloaded, "
        + ", ".join(f"{row['rss']:.1f}" for row in emptied)
        + " MiB (round by round); with every model loaded again, "
        + ", ".join(f"{row['rss']:.1f}" for row in refilled)
        + " MiB.",
    ]
    return "\n".join(lines) + "\n"


async def run(work_dir: Path, rounds: int, startup_limit_s: float) -> list[dict]:
    env = {
        **child_env(MODELS),
        "GLASSBOX_MODEL_CONTROL": "explicit",
        "GLASSBOX_MODELS": ",".join(MODELS),
        "GLASSBOX_ADMIN_API_KEYS": ADMIN_KEY,
        "GLASSBOX_POLL_INTERVAL_S": "0",
    }
    with Servers(work_dir, 1) as servers:
        server = servers.start("service", env, label="repository")
        await servers.wait_ready(server, startup_limit_s, "/health/ready")
        await asyncio.sleep(2)  # let start-up's last allocations settle
        return await cycles(server, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repository", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=report.RESULTS)
    args = parser.parse_args(argv)
    header = run_header()
    work_dir = Path(tempfile.mkdtemp(prefix="glassbox-repository-"))
    measured = asyncio.run(run(work_dir, args.rounds, args.startup_timeout))
    meta = header.as_dict()
    text = markdown(meta, measured)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_repository"
    written = report.write(args.out, stem, text, {"meta": meta, "steps": measured})
    sys.stdout.write(text)
    sys.stderr.write("written: " + ", ".join(str(path) for path in written) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
