"""The real server from deploy/serve.sh: JSON logs from the first line, and SIGTERM drains.

One process for the module; it loads the smallest committed model only, since what is tested
here is the process, not the models.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.ops.server import ROOT, Server, serve

SMALL_MODEL = "iris"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {"GLASSBOX_MODEL_DIR": str(ROOT / "models"), "GLASSBOX_MODELS": SMALL_MODEL}
    with serve(log, env) as running:
        yield running


def json_lines(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def test_serves_the_request_id_and_metrics(server):
    response = httpx.get(f"{server.base}/api/models", headers={"X-Request-ID": "ops-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ops-1"
    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'glassbox_http_requests_total{method="GET",route="/api/models",status="200"}' in metrics


def test_sigterm_finishes_requests_in_flight_and_exits_0(server):
    httpx.get(f"{server.base}/api/models", headers={"X-Request-ID": "ops-2"})
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    body = {"instances": [flower] * 1024}  # tens of ms each: still running at the signal
    clients = [httpx.Client(base_url=server.base, timeout=60) for _ in range(16)]
    for client in clients:
        client.get("/health/live")  # connected before the signal
    sent = threading.Barrier(len(clients) + 1)
    answers: list[int] = []

    def post(client: httpx.Client) -> None:
        sent.wait()
        answers.append(client.post("/api/models/iris/predict", json=body).status_code)

    threads = [threading.Thread(target=post, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    sent.wait()
    time.sleep(0.1)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert answers == [200] * len(clients)
    assert server.stop() == 0
    lines = json_lines(server)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
    requests = [line for line in lines if line.get("request_id") == "ops-2"]
    assert requests and requests[0]["route"] == "/api/models"
    messages = [line["message"] for line in lines if line["logger"].startswith("uvicorn")]
    assert "Application startup complete." in messages
    assert "Shutting down" in messages
    assert "Application shutdown complete." in messages
    assert any(message.startswith("Finished server process") for message in messages)
