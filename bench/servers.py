"""Server processes for a benchmark: started on free loopback ports, always stopped.

`Servers` is a context manager; leaving it (normally, on an exception or on Ctrl-C) terminates
every process it started, waits, and kills the ones that do not exit in time. On Linux the
children also get SIGTERM if the benchmark itself dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.http.framework_overrides.workers import die_with_parent

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TARGETS = {
    "service": "app.main:app",
    "service-plain": "bench.plain_app:app",
    "baseline": "bench.baseline_app:app",
    "floor": "bench.floor_app:app",
}
# The same uvicorn options for all three servers (and the same worker count, `Servers.workers`).
UVICORN_OPTIONS = [
    "--no-access-log", "--timeout-graceful-shutdown", "5",
    # As deploy/serve.sh: longer than any client's keep-alive, so the server never closes a
    # connection just as a client sends on it.
    "--timeout-keep-alive", "75",
]  # fmt: skip


# What each server logs once per worker when that worker's lifespan has started.
STARTED = {"uvicorn": "Application startup complete", "granian": "Started worker-"}


class ServerFailed(RuntimeError):
    pass


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path
    started: str = STARTED["uvicorn"]  # the line each worker logs once it has started

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def child_env(models: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("GLASSBOX_GRPC_PORT", "0")  # HTTP only here; bench/protocols.py runs gRPC
    if "GLASSBOX_MODELS" not in env and models:
        env["GLASSBOX_MODELS"] = ",".join(models)  # load only what the scenarios need
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def uvicorn_command(target: str, port: int, workers: int = 1) -> list[str]:
    """uvicorn's command line through `app.serve`, as deploy/serve.sh runs the service: with
    several workers, each has a listening socket of its own (SO_REUSEPORT)."""
    return [
        sys.executable,
        "-m",
        "app.serve",
        target,
        "--host",
        HOST,
        "--port",
        str(port),
        # info: each worker logs its "Application startup complete", which wait_ready counts.
        "--log-level",
        "info",
        "--workers",
        str(workers),
        *UVICORN_OPTIONS,
    ]


def granian_command(target: str, port: int, workers: int = 1) -> list[str]:
    """Granian's command line at its defaults (its Rust HTTP/1.1 server, its own workers on one
    shared socket, no access log), as a deployment on Granian would run it."""
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", target,
        "--host", HOST, "--port", str(port), "--workers", str(workers),
        "--log-level", "info", "--http1-keep-alive",
        # As uvicorn's --timeout-graceful-shutdown 5 above.
        "--workers-kill-timeout", "5",
    ]  # fmt: skip


COMMANDS = {"uvicorn": uvicorn_command, "granian": granian_command}


class Servers:
    def __init__(self, log_dir: Path, workers: int = 1):
        self.log_dir = log_dir
        self.workers = workers  # uvicorn worker processes of every server started here
        self.running: list[Server] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

    def start(
        self, name: str, env: dict[str, str], label: str | None = None, http: str = "uvicorn"
    ) -> Server:
        """Start `name` (a key of TARGETS) on a free port on the `http` server (a key of
        COMMANDS); returns at once."""
        port = free_port()
        if self.workers > 1:
            # As deploy/serve.sh runs several workers: their metrics summed through files here.
            metrics_dir = self.log_dir / f"{label or name}-metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir()
            env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        server = self.start_command(
            label or name, COMMANDS[http](TARGETS[name], port, self.workers), env, port
        )
        server.started = STARTED[http]
        return server

    def start_command(
        self, label: str, command: list[str], env: dict[str, str], port: int, cwd: Path = ROOT
    ):
        """Start any server's command line, which listens on `port`, in `cwd` (whose `app` a
        `python -m` command imports); returns at once."""
        log_path = self.log_dir / f"{label}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them in order
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        server = Server(label, process, f"http://{HOST}:{port}", log_path)
        self.running.append(server)
        return server

    async def wait_ready(
        self,
        server: Server,
        timeout: float,  # noqa: ASYNC109 (polls a process and its log against this deadline)
        path: str = "/health/live",
        started_lines: int | None = None,
    ) -> None:
        """Until `path` answers 200 and every worker has logged that its startup is complete
        (uvicorn answers only after the lifespan loaded the models, but a second worker may
        still be loading when the first answers), or `started_lines` of them for a server
        with another count (0 for one that logs no such line); ServerFailed if the process
        exits or the timeout passes."""
        expected = self.workers if started_lines is None else started_lines
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
            while True:
                if server.process.poll() is not None:
                    raise ServerFailed(
                        f"{server.name} exited with code {server.process.returncode}; "
                        f"its log ({server.log_path}) ends:\n{server.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    answered = (await client.get(path)).status_code == 200
                    if answered and server.log_text().count(server.started) >= expected:
                        return
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"{server.name} did not answer {path} within {timeout:.0f} s; "
                        f"its log ({server.log_path}) ends:\n{server.log_tail()}"
                    )
                await asyncio.sleep(0.25)

    def stop(self, server: Server, grace: float = 10.0) -> None:
        """SIGTERM, wait `grace` seconds, then SIGKILL; then SIGKILL whatever its session
        still runs (a peer's worker processes that outlived their parent)."""
        process = server.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", server.name, grace)
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: start_new_session
        if server in self.running:
            self.running.remove(server)

    def stop_all(self) -> None:
        for server in list(reversed(self.running)):
            self.stop(server)


async def served_models(server: Server) -> set[str]:
    """Names of the models the server answers for (a ready version, for the service)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        response = await client.get("/api/models")
        response.raise_for_status()
        return {
            model["name"]
            for model in response.json()["models"]
            if model.get("default_version") is not None
        }
