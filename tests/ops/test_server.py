"""The real server from deploy/serve.sh: JSON logs from the first line, and SIGTERM drains.

One process for the module; it loads the smallest committed model only, since what is tested
here is the process, not the models.
"""

from __future__ import annotations

import json
import signal
import socket
import threading

import httpx
import pytest

from tests.ops.server import ROOT, Server, serve, wait_for
from tests.ops.sockets import connections_read

SMALL_MODEL = "iris"
IN_FLIGHT = 16  # requests the SIGTERM test holds inside the server as the signal comes
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TIMEOUT_S = 120  # a bound on each wait for the server, reached only by a hang (httpx's own is 5 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        "GLASSBOX_MODEL_DIR": str(ROOT / "models"),
        "GLASSBOX_MODELS": SMALL_MODEL,
        # The SIGTERM test's bodies wait for the drain to begin: longer than that, here.
        "GLASSBOX_BODY_TIMEOUT_S": "120",
        # The SIGTERM test's requests finish within this after SIGTERM: on a busy machine too.
        "GLASSBOX_GRACEFUL_SHUTDOWN_S": "120",
    }
    with serve(log, env) as running:
        yield running


def json_lines(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def test_serves_the_request_id_and_metrics(server):
    response = httpx.get(
        f"{server.base}/api/models", headers={"X-Request-ID": "ops-1"}, timeout=TIMEOUT_S
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ops-1"
    metrics = httpx.get(f"{server.base}/metrics", timeout=TIMEOUT_S).text
    assert 'glassbox_http_requests_total{method="GET",route="/api/models",status="200"}' in metrics


def test_every_request_is_logged_once_as_json(server):
    ids = [f"one-line-{i}" for i in range(5)]
    with httpx.Client(base_url=server.base, timeout=TIMEOUT_S) as client:
        for request_id in ids:
            response = client.post(
                "/api/models/iris/predict", json=FLOWER, headers={"X-Request-ID": request_id}
            )
            assert response.status_code == 200

    def logged(request_id: str) -> list[dict]:
        return [line for line in json_lines(server) if line.get("request_id") == request_id]

    wait_for(lambda: all(logged(request_id) for request_id in ids), "the request lines")
    assert [len(logged(request_id)) for request_id in ids] == [1] * len(ids)
    # No second, plain-text access line ('INFO: 127.0.0.1:... "POST ..." 200 OK') beside them.
    plain = [line for line in server.output().splitlines() if not line.startswith("{")]
    assert not [line for line in plain if "/api/models/iris/predict" in line], plain


def test_a_java_clients_h2c_upgrade_offer_is_answered_over_http_1_1(server):
    """Java's HttpClient offers HTTP/2 on every cleartext request, headers and body in two
    writes; the prediction is answered as if the offer had not been made, and the connection
    serves the next request."""
    body = json.dumps(FLOWER).encode()
    head = (
        "POST /api/models/iris/predict HTTP/1.1\r\nHost: glassbox\r\n"
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAA\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
        sock.sendall(head)
        sock.sendall(body)
        first = read_answer(sock)
        sock.sendall(b"GET /health/ready HTTP/1.1\r\nHost: glassbox\r\n\r\n")
        second = read_answer(sock)
    assert first[0] == 200, first
    assert json.loads(first[1])["label"] == "setosa"
    assert second[0] == 200, second


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status and body."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536) or b"<closed>"
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for k, _, v in (x.partition(": ") for x in lines) if k.lower() == "content-length"
    )
    while len(body) < length:
        body += sock.recv(65536) or b"<closed>"
    return int(lines[0].split()[1]), body


def test_sigterm_finishes_requests_in_flight_and_exits_0(server):
    httpx.get(f"{server.base}/api/models", headers={"X-Request-ID": "ops-2"}, timeout=TIMEOUT_S)
    body = json.dumps({"instances": [FLOWER]}).encode()
    released = threading.Event()

    def held_body():
        """Half the body at once and the rest only once the server is shutting down, so the
        request is inside the server, reading its body, when SIGTERM comes."""
        yield body[: len(body) // 2]
        released.wait(TIMEOUT_S)
        yield body[len(body) // 2 :]

    answers: list[int | str] = []

    def post() -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        with httpx.Client(base_url=server.base, timeout=TIMEOUT_S) as client:
            try:
                response = client.post(
                    "/api/models/iris/predict", content=held_body(), headers=headers
                )
                answers.append(response.status_code)
            except httpx.TransportError as error:
                answers.append(type(error).__name__)

    threads = [threading.Thread(target=post) for _ in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    # Each head and half body read by the server: every request is inside it.
    wait_for(lambda: connections_read(server) == IN_FLIGHT, f"{IN_FLIGHT} requests inside")
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "Shutting down" in server.output(), "the server to start shutting down")
    # uvicorn logs this inside its graceful timeout, so the requests finish within that timeout
    # (with GLASSBOX_GRACEFUL_SHUTDOWN_S=0 they are cut off).
    wait_for(
        lambda: "Waiting for connections to close" in server.output(),
        "the server to wait for its connections",
    )
    released.set()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert answers == [200] * IN_FLIGHT
    assert server.stop() == 0
    lines = json_lines(server)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
    requests = [line for line in lines if line.get("request_id") == "ops-2"]
    assert requests
    assert requests[0]["route"] == "/api/models"
    messages = [line["message"] for line in lines if line["logger"].startswith("uvicorn")]
    assert "Application startup complete." in messages
    assert "Shutting down" in messages
    assert "Application shutdown complete." in messages
    assert any(message.startswith("Finished server process") for message in messages)


def test_a_grpc_port_in_use_stops_the_server_at_start(tmp_path):
    """One worker binds the gRPC port without SO_REUSEPORT: a port something else listens on
    is a failed start (status 3), not a server that quietly shares it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        env = {
            "GLASSBOX_MODEL_DIR": str(ROOT / "models"),
            "GLASSBOX_MODELS": SMALL_MODEL,
            "GLASSBOX_GRPC_PORT": str(taken),
        }
        log = tmp_path / "server.log"
        with pytest.raises(RuntimeError, match="exited with 3"), serve(log, env):
            pass
    assert f"Cannot listen for gRPC on 127.0.0.1:{taken}" in log.read_text()
