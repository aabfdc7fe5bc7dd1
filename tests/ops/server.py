"""The service as a real process, started the way the container starts it: deploy/serve.sh.

`SERVE_COMMAND` is the container's ENTRYPOINT word for word (tests/ops/test_dockerfile.py checks
it), run from the repository root as the image runs it from its WORKDIR.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = "deploy/serve.sh"
SERVE_COMMAND = ["sh", SERVE_SCRIPT]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports free now (the kernel's choice, all held at once while
    they are picked, so none comes twice). Free now only: another process may take one before
    the server binds it, which `serve` answers by starting again on others."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class Server:
    process: subprocess.Popen
    base: str
    log: Path
    grpc_target: str  # host:port of its gRPC server

    def stop(self, timeout_s: float = 90) -> int:
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


# Starts on new ports when a port picked here was taken before the server bound it (another
# process on the machine may take any free port): a bound on those retries, not a timing.
START_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """The server stopped at start because a port picked for it was taken meanwhile."""


@contextmanager
def serve(log: Path, env: dict[str, str], ready_timeout_s: float = 240) -> Iterator[Server]:
    """deploy/serve.sh on free loopback ports (HTTP and gRPC) with `env` over the test's
    environment (less any GLASSBOX_ setting from the calling shell), until /health/ready
    answers 200. A port `env` names is the test's own: one taken is the test's failure, never
    retried."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            server = _start(log, env, ready_timeout_s)
        except PortTaken:
            if attempt == START_ATTEMPTS:
                raise
            continue
        break
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _start(log: Path, env: dict[str, str], ready_timeout_s: float) -> Server:
    """The server, once ready; PortTaken if a port picked here was taken before it bound it."""
    port, grpc_port = free_ports(2)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    environment |= {
        "PYTHON": sys.executable,
        "GLASSBOX_HOST": "127.0.0.1",
        "GLASSBOX_PORT": str(port),
        "GLASSBOX_GRPC_PORT": str(grpc_port),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env,
    }
    picked = [
        number
        for name, number in (("GLASSBOX_PORT", port), ("GLASSBOX_GRPC_PORT", grpc_port))
        if name not in env
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            SERVE_COMMAND, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(
        process,
        f"http://127.0.0.1:{environment['GLASSBOX_PORT']}",
        log,
        f"127.0.0.1:{environment['GLASSBOX_GRPC_PORT']}",
    )
    try:
        _wait_ready(server, ready_timeout_s)
    except BaseException as error:
        if process.poll() is None:
            server.stop()
        if isinstance(error, RuntimeError) and _taken(server.output(), picked):
            raise PortTaken(str(error)) from error
        raise
    return server


def _taken(output: str, ports: list[int]) -> bool:
    """Whether the server's output says it could not listen on one of `ports`."""
    refusals = [
        line
        for line in output.splitlines()
        if "already in use" in line.lower() or "Cannot listen" in line
    ]
    return any(
        re.search(rf"(?<![0-9]){port}(?![0-9])", line) for line in refusals for port in ports
    )


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.output()[-3000:]}"
            )
        try:
            # Per probe: a server still loading its models on a busy machine is slow to
            # answer; the deadline above bounds the whole wait.
            response = httpx.get(f"{server.base}/health/ready", timeout=30)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout_s} s ({last}):\n{server.output()[-3000:]}")


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
    """Polls `condition` until it is true; fails naming `what` after `timeout_s`, a bound on a
    wait that should end (generous: a busy machine is slow), never a measure of speed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.02)
