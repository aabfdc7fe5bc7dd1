"""The payload log through the app: one record per prediction whatever the surface, and a full
disk that costs the records, never the answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.http.app import create_app
from tests.conftest import MODELS
from tests.metrics import sample

SAFETY_S = 30  # a bound on waiting for the writer thread, reached only when it is broken
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ROW = list(FLOWER.values())
V2_BODY = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}


def iris_app(payload_log: str) -> TestClient:
    settings = Settings(
        model_dir=MODELS, models=["iris"], poll_interval_s=0, payload_log=payload_log
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("payload") / "payload.jsonl"


@pytest.fixture(scope="module")
def client(log_path):
    with iris_app(str(log_path)) as client:
        yield client


def record_of(client: TestClient, path: Path, request_id: str) -> dict:
    assert client.app.state.service.predictor.payload_log.flush(SAFETY_S)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    (record,) = [record for record in records if record["request_id"] == request_id]
    return record


@pytest.mark.parametrize(
    ("surface", "path", "body"),
    [
        ("http/typed", "/api/models/iris/predict", FLOWER),
        ("http/v2", "/v2/models/iris/infer", V2_BODY),
        ("http/tfserving", "/v1/models/iris:predict", {"instances": [ROW]}),
    ],
)
def test_a_prediction_is_logged_with_what_the_model_saw_and_answered(
    client, log_path, surface, path, body
):
    request_id = f"payload-{surface.replace('/', '-')}"
    response = client.post(path, json=body, headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    record = record_of(client, log_path, request_id)
    assert record["surface"] == surface
    assert (record["model"], record["version"], record["rows"]) == ("iris", 1, 1)
    assert record["inputs"] == [FLOWER]
    (probabilities,) = record["outputs"]
    assert len(probabilities) == 3
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert record["latency_ms"] > 0
    assert set(record) == {
        "ts",
        "request_id",
        "surface",
        "model",
        "version",
        "rows",
        "latency_ms",
        "inputs",
        "outputs",
    }


def test_a_batch_is_one_record_of_its_rows(client, log_path):
    body = {"instances": [FLOWER, {**FLOWER, "petal_width": 2.5}]}
    response = client.post(
        "/api/models/iris/predict", json=body, headers={"X-Request-ID": "payload-batch"}
    )
    assert response.status_code == 200, response.text
    record = record_of(client, log_path, "payload-batch")
    assert record["rows"] == 2
    assert [row["petal_width"] for row in record["inputs"]] == [0.2, 2.5]
    answered = [p["probabilities"] for p in response.json()["predictions"]]
    labels = ["setosa", "versicolor", "virginica"]
    logged = [dict(zip(labels, row, strict=True)) for row in record["outputs"]]
    for mine, theirs in zip(logged, answered, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-6)


def test_a_refused_request_is_not_logged(client, log_path):
    bad = {**FLOWER, "sepal_length": -1}
    headers = {"X-Request-ID": "payload-refused"}
    assert client.post("/api/models/iris/predict", json=bad, headers=headers).status_code == 422
    assert client.app.state.service.predictor.payload_log.flush(SAFETY_S)
    assert "payload-refused" not in log_path.read_text()


def test_a_full_disk_drops_and_counts_records_and_every_request_succeeds():
    with iris_app("/dev/full") as client:
        dropped = sample(client, "glassbox_payload_log_dropped_total", reason="write_error")
        written = sample(client, "glassbox_payload_log_written_total")
        for _ in range(5):
            response = client.post("/api/models/iris/predict", json=FLOWER)
            assert response.status_code == 200, response.text
        response = client.post("/v2/models/iris/infer", json=V2_BODY)
        assert response.status_code == 200, response.text
        assert client.app.state.service.predictor.payload_log.flush(SAFETY_S)
        assert sample(client, "glassbox_payload_log_dropped_total", reason="write_error") == (
            dropped + 6
        )
        assert sample(client, "glassbox_payload_log_written_total") == written
        assert client.get("/health/ready").status_code == 200
