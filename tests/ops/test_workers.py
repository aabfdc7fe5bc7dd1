"""Two workers from deploy/serve.sh: a listening socket each, connections spread over both, a
dead worker replaced, and SIGTERM stopping them all with status 0 (Linux: sockets are read from
/proc, and only those of the processes each test started: other processes come and go)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.http.framework_overrides.workers import Workers, balanced, parse_options
from app.serve import PROG, TF_THREAD_SETTINGS, share_cores, share_model_control
from tests.metrics import sample
from tests.ops.server import ROOT, Server, free_port, free_ports, serve, wait_for
from tests.ops.sockets import (
    ESTABLISHED,
    LISTEN,
    Process,
    alive,
    owners_in,
    port_of,
    process_tree,
    socket_inodes,
    socket_owners,
    tcp_sockets,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads sockets from /proc")

WORKERS = 2
CONNECTIONS = 16


@contextmanager
def serve_workers(log: Path) -> Iterator[Server]:
    """deploy/serve.sh with WORKERS workers serving iris, once every worker listens; their
    metrics files in `metrics` beside the log."""
    metrics = log.parent / "metrics"
    metrics.mkdir()
    env = {
        "GLASSBOX_MODEL_DIR": str(ROOT / "models"),
        "GLASSBOX_MODELS": "iris",
        "GLASSBOX_WORKERS": str(WORKERS),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    with serve(log, env) as running:
        # Ready means one worker answers; each listens only once its own models have loaded.
        port = port_of(running)
        wait_for(lambda: len(owners_in(running, port, LISTEN)) == WORKERS, "every worker", 120)
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_workers(tmp_path_factory.mktemp("workers") / "server.log") as running:
        yield running


@pytest.mark.parametrize(
    ("extra", "spread"),
    [
        ([], True),
        (["--workers", "1"], False),
        (["--reload"], False),
        (["--uds", "/tmp/glassbox.sock"], False),
        (["--fd", "3"], False),
        (["--port", "0"], False),
    ],
)
def test_a_socket_per_worker_only_where_the_kernel_spreads_connections(extra, spread):
    options = parse_options(["app.main:app", "--workers", "2", "--port", "8000", *extra], PROG)
    assert balanced(options) is spread


def test_workers_take_the_response_headers_of_the_command_line_as_uvicorn_does(tmp_path):
    """`--header Name:Value` reached uvicorn's Config unsplit, which every worker's start then
    refused (ValueError: not enough values to unpack)."""
    (tmp_path / "bare.py").write_text("async def app(scope, receive, send):\n    pass\n")
    args = ["bare:app", "--workers", "2", "--app-dir", str(tmp_path)]
    options = parse_options(
        [*args, "--header", "X-Served-By:glassbox", "--header", "X-A:b:c"], PROG
    )
    assert options is not None
    config = Workers(options).config
    config.load()  # what each worker does first
    assert config.encoded_headers[-2:] == [(b"x-served-by", b"glassbox"), (b"x-a", b"b:c")]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["app.main:app", "--bogus"], []])
def test_what_uvicorn_would_not_run_is_left_to_uvicorn_to_report(args):
    assert parse_options(args, PROG) is None


def supervisor_command(app: str, port: int, app_dir: Path | None = None) -> list[str]:
    """`python -m app.serve` with WORKERS workers on loopback, straight (not deploy/serve.sh)."""
    command = [sys.executable, "-m", "app.serve", app, "--host", "127.0.0.1", "--port", str(port)]
    return [*command, "--workers", str(WORKERS), *(["--app-dir", str(app_dir)] if app_dir else [])]


def run_supervisor(
    app: str, port: int, app_dir: Path | None = None, env: dict[str, str] | None = None
):
    """The supervisor run to its end (these tests expect it to stop on its own)."""
    command = supervisor_command(app, port, app_dir)
    environment = {**os.environ, "GLASSBOX_HOST": "127.0.0.1", **(env or {})}
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_a_port_another_server_listens_on_stops_the_workers_before_they_start():
    """Even one whose socket has SO_REUSEPORT too, as another Glassbox's workers have: the
    workers' sockets would join it and take a share of its connections."""
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        done = run_supervisor("app.main:app", port)
    assert done.returncode == 3
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Started 2 workers" not in done.stderr


def test_a_worker_that_fails_to_start_stops_the_server_with_status_3(tmp_path):
    (tmp_path / "failing.py").write_text(
        "from contextlib import asynccontextmanager\n"
        "from fastapi import FastAPI\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    raise RuntimeError('the models could not load')\n"
        "    yield\n\n"
        "app = FastAPI(lifespan=lifespan)\n"
    )
    done = run_supervisor("failing:app", free_port(), app_dir=tmp_path)
    assert done.returncode == 3
    assert "failed to start; stopping." in done.stderr
    assert "Stopped 2 workers" in done.stderr


def test_ctrl_c_stops_the_workers_without_replacing_them(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the supervisor and its workers at once. Workers of a
    small app exit within the supervisor's half-second check, and must not be taken for dead
    ones and replaced."""
    (tmp_path / "small.py").write_text("from fastapi import FastAPI\n\napp = FastAPI()\n")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        supervisor = subprocess.Popen(
            supervisor_command("small:app", port, tmp_path),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )

    def listening() -> list[int]:
        assert supervisor.poll() is None, log.read_text()  # stopped: no use waiting
        return socket_owners(port, LISTEN, process_tree(supervisor.pid))

    try:
        wait_for(lambda: len(listening()) == 2, "both workers", 120)
        workers = [Process.of(pid) for pid in listening()]
        for pid in [supervisor.pid, *(worker.pid for worker in workers)]:
            os.kill(pid, signal.SIGINT)
        assert supervisor.wait(120) == 0
    finally:
        supervisor.kill()
        supervisor.wait()
    output = log.read_text()
    assert "died" not in output
    assert "Stopped 2 workers" in output
    assert not alive(workers)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    with serve_workers(tmp_path / "server.log") as running:
        port = port_of(running)
        tree = process_tree(running.process.pid)
        workers = [Process.of(pid) for pid in socket_owners(port, LISTEN, tree)]
        sockets = set().union(*(socket_inodes(worker.pid) for worker in workers))
        assert len(workers) == WORKERS
        running.process.kill()
        running.process.wait(60)
        # Orphaned now, the workers are no longer under the supervisor: they are followed by pid.
        wait_for(lambda: not alive(workers), "the workers to exit", 120)
    # Their listening sockets closed with them (another process may listen on the port now).
    assert not sockets & tcp_sockets(port, LISTEN)


def test_each_worker_listens_on_a_socket_of_its_own(server):
    owners = owners_in(server, port_of(server), LISTEN)
    assert len(owners) == WORKERS, owners
    assert len(set(owners)) == WORKERS
    assert server.process.pid not in owners  # the supervisor itself takes no connections


def test_each_worker_serves_grpc_on_the_shared_port(server):
    """The supervisor checked the gRPC port was free, then every worker bound it (SO_REUSEPORT),
    and a gRPC call is answered."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    grpc_port = int(server.grpc_target.rsplit(":", 1)[1])
    wait_for(
        lambda: len(owners_in(server, grpc_port, LISTEN)) == WORKERS, "every worker's gRPC", 120
    )
    owners = owners_in(server, grpc_port, LISTEN)
    assert len(set(owners)) == WORKERS, owners
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_grpc_port_in_use_stops_the_workers_before_they_start():
    port, grpc_port = free_ports(2)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", grpc_port))
        other.listen()
        done = run_supervisor("app.main:app", port, env={"GLASSBOX_GRPC_PORT": str(grpc_port)})
    assert done.returncode == 3
    assert f"Cannot listen for gRPC on 127.0.0.1:{grpc_port}" in done.stderr
    assert "Started 2 workers" not in done.stderr


def test_connections_opened_together_reach_both_workers(server):
    """The kernel picks a listening socket for each connection by a hash of its addresses: all
    16 on one worker has odds of 2 in 65,536. (With one shared socket, the worker that woke
    first took every waiting connection: 16 of 16 on one worker happened in 1 of 7 runs.)"""
    clients = [httpx.Client(base_url=server.base, timeout=30) for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            assert client.get("/health/live").status_code == 200
        owners = owners_in(server, port_of(server), ESTABLISHED)
        assert len(owners) == CONNECTIONS
        assert len(set(owners)) == WORKERS, owners
    finally:
        for client in clients:
            client.close()


FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def live_gauge_pids(server: Server) -> set[int]:
    """The workers whose live gauges (queue depth) the metrics library sums into a scrape."""
    metrics = Path(server.log).parent / "metrics"
    return {int(path.stem.rsplit("_", 1)[1]) for path in metrics.glob("gauge_live*_*.db")}


def test_a_worker_that_dies_with_requests_queued_is_replaced_and_its_gauges_forgotten(server):
    """Killed while predictions stream in; the new worker serves, and the dead one's queue
    depth is no longer summed into glassbox_queue_depth (its livesum file is removed)."""
    port = port_of(server)
    stop = threading.Event()

    def predicting() -> None:
        while not stop.is_set():
            # New connections, spread over both workers; the killed worker's are cut off.
            with (
                httpx.Client(base_url=server.base, timeout=30) as client,
                contextlib.suppress(httpx.TransportError),
            ):
                for _ in range(20):
                    client.post("/api/models/iris/predict", json=FLOWER)

    load = [threading.Thread(target=predicting) for _ in range(4)]
    for thread in load:
        thread.start()
    try:
        workers = set(owners_in(server, port, LISTEN))
        wait_for(lambda: workers <= live_gauge_pids(server), "both workers to have queued")
        killed = sorted(workers)[0]
        os.kill(killed, signal.SIGKILL)

        def replaced() -> bool:
            owners = owners_in(server, port, LISTEN)
            return len(owners) == WORKERS and killed not in owners

        # A new worker imports TensorFlow and loads iris: on a busy machine that takes a while.
        wait_for(replaced, "a new worker listening", 240)
    finally:
        stop.set()
        for thread in load:
            thread.join(60)
    assert killed not in live_gauge_pids(server)
    for _ in range(8):  # fresh connections, spread over both workers
        with httpx.Client(base_url=server.base, timeout=30) as client:
            response = client.post("/api/models/iris/predict", json=FLOWER)
            assert response.status_code == 200
            assert response.json()["label"] == "setosa"
    with httpx.Client(base_url=server.base, timeout=30) as client:
        assert sample(client, "glassbox_queue_depth", model="iris") == 0
    assert f"Worker [{killed}] died" in server.output()


# Before the SIGTERM test, which stops the module's server.
def test_the_drift_gauges_of_both_workers_read_as_one_series(server):
    """Each worker keeps its own window and writes its own gauges; a scrape reads one series
    per figure (the largest live worker's PSI, the sum of their windows' rows), no pid label."""
    rows = [list(FLOWER.values())] * 250
    for _ in range(4):  # fresh connections, spread over both workers: 250 rows each
        with httpx.Client(base_url=server.base, timeout=60) as client:
            assert (
                client.post("/v1/models/iris:predict", json={"instances": rows}).status_code == 200
            )
    scrape = httpx.get(f"{server.base}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(scrape)}
    (psi,) = [
        s for s in families["glassbox_drift_psi"].samples if s.labels["figure"] == "predicted_class"
    ]
    assert "pid" not in psi.labels
    assert psi.value > 0.2  # every flower the same species: far from the training priors
    (window,) = [
        s for s in families["glassbox_drift_window_rows"].samples if s.labels["model"] == "iris"
    ]
    assert 1000 <= window.value <= WORKERS * 1000


def test_sigterm_stops_every_worker_and_exits_0(server):
    workers = [Process.of(pid) for pid in owners_in(server, port_of(server), LISTEN)]
    assert server.stop() == 0
    assert not alive(workers)
    output = server.output()
    assert output.count("Finished server process") == WORKERS
    assert f"Stopped {WORKERS} workers" in output


ONE_WRITE = "app.http.framework_overrides.transport:HttpProtocol"


@pytest.mark.parametrize(
    ("given", "loop", "http"),
    [
        ([], "asyncio", ONE_WRITE),
        (["--loop", "uvloop"], "uvloop", ONE_WRITE),
        (["--loop=uvloop"], "uvloop", ONE_WRITE),
        (["--workers", "1", "--loop", "auto"], "auto", ONE_WRITE),
        (["--http", "h11"], "asyncio", "h11"),
        (["--http=httptools", "--loop", "auto"], "auto", "httptools"),
    ],
)
def test_asyncio_and_one_write_an_answer_unless_the_command_line_names_others(
    monkeypatch, given, loop, http
):
    import app.serve

    ran = []
    # uvicorn's `main` is a click command; its own `main` method is what running it calls.
    monkeypatch.setattr(app.serve.main, "main", lambda args, prog_name: ran.append(args))
    monkeypatch.setattr(sys, "argv", ["app.serve", "app.main:app", *given])
    monkeypatch.setenv("GLASSBOX_GRPC_PORT", "0")
    app.serve.run()
    parsed = parse_options(ran[0], PROG)
    assert parsed is not None
    assert (parsed["loop"], parsed["http"]) == (loop, http)


def test_connections_on_a_worker_socket_have_nagles_algorithm_off():
    """asyncio sets TCP_NODELAY only on connections from a socket that names IPPROTO_TCP;
    without it every answer waits for the client's delayed ACK."""
    import asyncio

    from app.http.framework_overrides.workers import bound_socket

    async def main() -> int:
        listener = bound_socket("127.0.0.1", 0, reuse_port=True)
        nodelay = asyncio.get_running_loop().create_future()

        def accepted(reader, writer):
            sock = writer.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        value = await asyncio.wait_for(nodelay, 10)
        writer.close()
        server.close()
        return value

    assert asyncio.run(main()) != 0


def test_several_workers_share_the_cores_between_their_tensorflow_pools(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    environ: dict[str, str] = {}
    share_cores(2, environ)
    assert environ == {name: "2" for name in TF_THREAD_SETTINGS}
    share_cores(8, environ := {})
    assert environ == {name: "1" for name in TF_THREAD_SETTINGS}
    # A setting the operator chose stays as it is.
    environ = {"GLASSBOX_TF_INTRA_OP_THREADS": "3"}
    share_cores(2, environ)
    assert environ == {"GLASSBOX_TF_INTRA_OP_THREADS": "3", "GLASSBOX_TF_INTER_OP_THREADS": "2"}


def test_explicit_workers_get_one_model_control_file_seeded_with_the_start_set(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("GLASSBOX_MODEL_CONTROL", "explicit")
    monkeypatch.setenv("GLASSBOX_MODELS", "iris,mnist")
    share_model_control(tmp_path, environ := {})
    made = tmp_path / "model-control.json"
    assert environ == {"GLASSBOX_MODEL_CONTROL_FILE": str(made)}
    assert json.loads(made.read_text()) == {"models": ["iris", "mnist"]}


@pytest.mark.parametrize(
    "settings",
    [{"GLASSBOX_MODEL_CONTROL": "poll"}, {"GLASSBOX_MODEL_CONTROL_FILE": "/elsewhere.json"}],
)
def test_no_file_is_made_in_poll_mode_or_when_one_is_named(monkeypatch, tmp_path, settings):
    monkeypatch.setenv("GLASSBOX_MODEL_CONTROL", "explicit")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    share_model_control(tmp_path, environ := {})
    assert environ == {}
    assert list(tmp_path.iterdir()) == []
