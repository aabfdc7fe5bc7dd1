"""`python -m bench.memory`: what a worker's memory is made of, step by step, and what a server
holds at ready with one and two workers.

Part 1 runs in a fresh child process: the interpreter, the web stack (numpy, pydantic, FastAPI,
Pillow), TensorFlow's import, the app's, each committed model loaded (its SavedModel read and
both signatures warmed up, as at start-up), the heap settled, then each model's first trace and
first explanation (default method) with the time each took. For each step: resident memory
(RSS) and its anonymous and file-backed parts, from /proc/self/status (Linux). File-backed
pages are the shared libraries' code and data read from disk: the kernel shares them between
processes that map the same files, and can drop them under pressure.

Part 2 starts `python -m app.serve` with one and then two workers on a loopback port, waits for
/health/ready, and reads every process's RSS and PSS (proportional set size: each shared page
divided among the processes that map it, /proc/<pid>/smaps_rollup), so two workers' shared
libraries count once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import report
from bench.compare import process_tree
from bench.run_info import run_header
from bench.servers import ROOT, Servers, child_env

MODELS = ["iris", "housing", "mnist", "catdog"]

_STEPS = r"""
import json, sys, time

def memory():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields["VmRSS"], "anon": fields["RssAnon"], "file": fields["RssFile"]}

def step(name, seconds=None):
    print(json.dumps({"step": name, "seconds": seconds, **memory()}), flush=True)

step("interpreter")
import numpy, pydantic, fastapi, PIL.Image
step("web stack: numpy, pydantic, FastAPI, Pillow")
import tensorflow
step("TensorFlow imported")
import app.main
step("app imported (gRPC stubs, routes)")
from pathlib import Path
import numpy as np
from app.runtime.model import ModelRuntime, settle_heap
from app.dataplane import explain
runtimes = {}
for name in sys.argv[2:]:
    folder = sorted((Path(sys.argv[1]) / name).iterdir())[-1]
    runtime = runtimes[name] = ModelRuntime(name, int(folder.name), folder)
    began = time.perf_counter()
    runtime.load()
    step(f"{name} loaded and warmed up", time.perf_counter() - began)
settle_heap()
step("heap settled (at ready)")
for name, runtime in runtimes.items():
    one = np.zeros([1, *runtime.loaded_card.input.shape[1:]], np.float32)
    began = time.perf_counter()
    runtime.trace(one)
    step(f"{name}: a trace", time.perf_counter() - began)
    began = time.perf_counter()
    explain.explanation(runtime, one[0], explain.ExplainOptions(), lambda: False)
    step(f"{name}: its first explanation", time.perf_counter() - began)
"""


def steps(model_dir: Path) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _STEPS, str(model_dir), *MODELS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def rollup(pid: int) -> dict[str, float]:
    """RSS and PSS of one process, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower()] = int(value.split()[0]) / 1024
    return values


async def servers_at_ready(work_dir: Path, startup_limit_s: float) -> list[dict]:
    measured = []
    for workers in (1, 2):
        with Servers(work_dir, workers) as servers:
            server = servers.start("service", child_env([]), label=f"memory-{workers}w")
            await servers.wait_ready(server, startup_limit_s, "/health/ready")
            await asyncio.sleep(2)  # let start-up's last allocations settle
            processes = [rollup(pid) for pid in process_tree(server.process.pid)]
            measured.append(
                {
                    "workers": workers,
                    "processes": len(processes),
                    "rss_mib": round(sum(p["rss"] for p in processes), 1),
                    "pss_mib": round(sum(p["pss"] for p in processes), 1),
                }
            )
    return measured


def markdown(meta: dict, measured: list[dict], at_ready: list[dict]) -> str:
    lines = [
        f"# A worker's memory, {meta['date']}",
        "",
        f"Commit {meta['commit']}, {meta['cpu_count']} cores. One process, step by step "
        "(RSS = anonymous + file-backed):",
        "",
        "| step | RSS MiB | added MiB | anonymous MiB | file-backed MiB | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    previous = 0.0
    for row in measured:
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.3f}"
        lines.append(
            f"| {row['step']} | {row['rss']:.0f} | {row['rss'] - previous:+.0f} "
            f"| {row['anon']:.0f} | {row['file']:.0f} | {seconds} |"
        )
        previous = row["rss"]
    lines += [
        "",
        "`python -m app.serve app.main:app` (all committed models) at ready, every process of "
        "the server summed:",
        "",
        "| workers | processes | RSS MiB | PSS MiB |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['workers']} | {m['processes']} | {m['rss_mib']} | {m['pss_mib']} |" for m in at_ready
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=report.RESULTS)
    args = parser.parse_args(argv)
    header = run_header()
    measured = steps(ROOT / "models")
    work_dir = Path(tempfile.mkdtemp(prefix="glassbox-memory-"))
    at_ready = asyncio.run(servers_at_ready(work_dir, args.startup_timeout))
    meta = header.as_dict()
    text = markdown(meta, measured, at_ready)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_memory"
    report.publish(args.out, stem, text, {"meta": meta, "steps": measured, "at_ready": at_ready})
    return 0


if __name__ == "__main__":
    sys.exit(main())
