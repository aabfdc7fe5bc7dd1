"""The service as a real process, started the way the container starts it: deploy/serve.sh.

`SERVE_COMMAND` is the container's ENTRYPOINT word for word (tests/ops/test_dockerfile.py checks
it), run from the repository root as the image runs it from its WORKDIR.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = "deploy/serve.sh"
SERVE_COMMAND = ["sh", SERVE_SCRIPT]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    base: str
    log: Path
    grpc_target: str  # host:port of its gRPC server

    def stop(self, timeout_s: float = 40) -> int:
        """SIGTERM, as a container runtime sends it; the exit status once the server is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(log: Path, env: dict[str, str], ready_timeout_s: float = 240) -> Iterator[Server]:
    """deploy/serve.sh on free loopback ports (HTTP and gRPC) with `env` over the test's
    environment (less any GLASSBOX_ setting from the calling shell), until /health/ready
    answers 200."""
    port = free_port()
    grpc_port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    environment |= {
        "PYTHON": sys.executable,
        "GLASSBOX_HOST": "127.0.0.1",
        "GLASSBOX_PORT": str(port),
        "GLASSBOX_GRPC_PORT": str(grpc_port),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            SERVE_COMMAND, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(
        process, f"http://127.0.0.1:{port}", log, f"127.0.0.1:{environment['GLASSBOX_GRPC_PORT']}"
    )
    try:
        _wait_ready(server, ready_timeout_s)
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.output()[-3000:]}"
            )
        try:
            response = httpx.get(f"{server.base}/health/ready", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout_s} s ({last}):\n{server.output()[-3000:]}")


def wait_for(condition, what: str, timeout_s: float = 30) -> None:
    """Polls `condition` until it is true; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.02)
