"""The load generator in C: wrk (Debian's `wrk` package), driven for a fixed time.

At 64 connections the Python client (httpx on asyncio) spends more of the two shared cores than
the servers it measures, so the table's throughput runs use wrk when it is installed; the
overload run keeps the Python client, which records every request's status. wrk counts a non-2xx
answer as an error, so req/s and the percentiles cover good answers only when errors are 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from bench import report
from bench.scenarios import Payload

_SCRIPT = Template(
    r"""
local file = io.open("$body_path", "rb")
wrk.method = "POST"
wrk.body = file:read("*all")
file:close()
$headers
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nGLASSBOX {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"status": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""
)


def available() -> bool:
    return shutil.which("wrk") is not None


def add_run_options(
    parser: argparse.ArgumentParser, *, concurrency: int, seconds: float, rounds: int
) -> None:
    """The options of a benchmark of interleaved wrk rounds, and where its results go."""
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--seconds", type=float, default=seconds, help="per row and round")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--out", type=Path, default=report.RESULTS)


def missing(rows: str) -> bool:
    """True, after saying so, when wrk is not installed for `rows`."""
    if available():
        return False
    sys.stderr.write(f"wrk is needed for {rows} (apt-get install wrk)\n")
    return True


def _run(
    script: Template,
    base_url: str,
    payload: Payload,
    concurrency: int,
    seconds: float,
    threads: int,
) -> dict:
    """Run wrk with `script` (which POSTs `payload` and prints one GLASSBOX JSON line at the
    end) for `seconds` on `concurrency` connections; that line, parsed."""
    with tempfile.TemporaryDirectory(prefix="glassbox-wrk-") as folder:
        body_path = Path(folder) / "body"
        body_path.write_bytes(payload.body)
        headers = "\n".join(
            f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
            for name, value in payload.headers.items()
        )
        script_path = Path(folder) / "post.lua"
        script_path.write_text(script.substitute(body_path=body_path, headers=headers))
        command = [
            "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
            "--timeout", "30s", "-s", str(script_path), base_url + payload.path,
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        )
    line = next(x for x in result.stdout.splitlines() if x.startswith("GLASSBOX "))
    return json.loads(line.removeprefix("GLASSBOX "))


def measure(base_url: str, payload: Payload, *, concurrency: int, seconds: float) -> dict:
    """One wrk run of `seconds` with `concurrency` keep-alive connections, as a table row."""
    stats = _run(_SCRIPT, base_url, payload, concurrency, seconds, threads=1)
    elapsed = stats["duration_us"] / 1e6
    kinds = {k: stats[k] for k in ("status", "connect", "read", "write", "timeout") if stats[k]}
    errors = sum(kinds.values())
    good = stats["requests"] - stats["status"]
    return {
        "completed": stats["requests"],
        "ok": good,
        "errors": errors,
        "error_kinds": {("non-2xx" if k == "status" else k): v for k, v in kinds.items()},
        "elapsed_s": round(elapsed, 3),
        "rps": round(good / elapsed, 2) if elapsed > 0 else None,
        "p50_ms": round(stats["p50_us"] / 1000, 3),
        "p99_ms": round(stats["p99_us"] / 1000, 3),
    }


WARM_UP_S = 2


def measure_warm(base_url: str, payload: Payload, *, concurrency: int, seconds: float) -> dict:
    """An unrecorded `WARM_UP_S` run on the same connections count, then the measured one."""
    measure(base_url, payload, concurrency=concurrency, seconds=WARM_UP_S)
    return measure(base_url, payload, concurrency=concurrency, seconds=seconds)


_OVERLOAD_SCRIPT = Template(
    r"""
local file = io.open("$body_path", "rb")
wrk.method = "POST"
wrk.body = file:read("*all")
file:close()
$headers
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) ok = 0; rejected = 0; retry_after = 0; other = 0 end
response = function(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then
    rejected = rejected + 1
    if headers["Retry-After"] or headers["retry-after"] then retry_after = retry_after + 1 end
  else other = other + 1 end
end
done = function(summary, latency, requests)
  local o, r, a, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); r = r + t:get("rejected"); a = a + t:get("retry_after")
    x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    '\nGLASSBOX {"ok": %d, "rejected": %d, "retry_after": %d, "other": %d, "p50_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "duration_us": %d, "socket_errors": %d}\n',
    o, r, a, x, latency:percentile(50), latency:percentile(99), latency.max, summary.duration,
    e.connect + e.read + e.write + e.timeout))
end
"""
)


def overload(base_url: str, payload: Payload, *, concurrency: int, seconds: float) -> dict:
    """One wrk run far above the service's queue: 200s, 503s (and how many carried
    Retry-After), other answers, socket errors, and the slowest answer."""
    stats = _run(_OVERLOAD_SCRIPT, base_url, payload, concurrency, seconds, threads=2)
    return {
        "ok_200": stats["ok"],
        "rejected_503": stats["rejected"],
        "retry_after_503": stats["retry_after"],
        "other": stats["other"],
        "socket_errors": stats["socket_errors"],
        "elapsed_s": round(stats["duration_us"] / 1e6, 3),
        "ok_rps": round(stats["ok"] / (stats["duration_us"] / 1e6), 1),
        "p50_ms": round(stats["p50_us"] / 1000, 1),
        "p99_ms": round(stats["p99_us"] / 1000, 1),
        "max_ms": round(stats["max_us"] / 1000, 1),
    }
