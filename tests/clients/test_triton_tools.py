"""Triton's own tools at their defaults against a live server: perf_analyzer (which reads the
model configuration and the statistics before and while it measures), and tritonclient's model
configuration, statistics and classification calls over HTTP and gRPC."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from bench.perf_analyzer import Unavailable, perf_analyzer

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@pytest.fixture(scope="module")
def analyzer():
    try:
        return perf_analyzer()
    except Unavailable as why:
        if os.environ.get("CI") == "true":  # .ci/run installs what it needs
            pytest.fail(f"perf_analyzer is required in CI: {why}")
        pytest.skip(f"perf_analyzer cannot run here: {why}")


@pytest.fixture(scope="module")
def http_client(live):
    client = triton_http.InferenceServerClient(live.base.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(live):
    client = triton_grpc.InferenceServerClient(live.grpc_target)
    yield client
    client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["iris", "mnist"])
def test_perf_analyzer_runs_to_completion_with_the_servers_statistics(
    analyzer, live, model, protocol
):
    binary, environment = analyzer
    url = live.base.removeprefix("http://") if protocol == "http" else live.grpc_target
    # Its defaults (batch 1, random inputs, binary tensors, concurrency 1, synchronous calls),
    # except the stopping rule: 1 s windows, not 5 s, and a stability bound no busy machine
    # misses (its default, 10% between windows, is the machine's to meet, not the server's).
    command = [str(binary), "-m", model, "-u", url, "-i", protocol]
    command += ["--measurement-interval", "1000", "--stability-percentage", "1000"]
    run = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "error" not in output.lower(), output
    assert re.search(r"Throughput: [0-9.]+ infer/sec", output), output
    # The server's side, from the statistics extension, counted what the client sent.
    counted = re.search(r"Server:\s+Inference count: (\d+)", output)
    assert counted is not None, output
    assert int(counted.group(1)) > 0


def test_the_model_configuration_states_the_models_tensors_and_batching(http_client, grpc_client):
    over_http = http_client.get_model_config("iris")
    over_grpc = grpc_client.get_model_config("iris", as_json=True)["config"]
    for config in (over_http, over_grpc):
        assert config["name"] == "iris"
        assert config["platform"] == "tensorflow_savedmodel"
        assert int(config["max_batch_size"]) > 0
        assert [
            (t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]
        ] == [("features", "TYPE_FP32", [4])]
        assert [(t["name"], [int(d) for d in t["dims"]]) for t in config["output"]] == [
            ("probabilities", [3])
        ]
        batching = config["dynamic_batching"]
        assert int(batching["max_queue_delay_microseconds"]) > 0
        assert [int(size) for size in batching["preferred_batch_size"]] == [
            int(config["max_batch_size"])
        ]
    assert http_client.get_model_config("mnist", "1")["input"][0]["dims"] == [28, 28]


def test_the_configuration_of_an_unknown_model_is_not_found(http_client, grpc_client):
    with pytest.raises(InferenceServerException, match="no-such-model"):
        http_client.get_model_config("no-such-model")
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.get_model_config("no-such-model")
    assert refused.value.status() == "StatusCode.NOT_FOUND"


def _iris_counts(statistics: dict) -> tuple[int, int, int]:
    (iris,) = [entry for entry in statistics["model_stats"] if entry["name"] == "iris"]
    success = iris["inference_stats"]["success"]
    return int(iris["inference_count"]), int(success["count"]), int(success.get("ns", 0))


def test_statistics_grow_with_traffic_over_both_transports(http_client, grpc_client):
    before = _iris_counts(http_client.get_inference_statistics("iris"))
    inputs = triton_http.InferInput("features", list(IRIS_ROWS.shape), "FP32")
    inputs.set_data_from_numpy(IRIS_ROWS)
    for _ in range(3):
        http_client.infer("iris", [inputs])
    after_http = _iris_counts(http_client.get_inference_statistics("iris"))
    assert after_http[0] - before[0] >= 3 * len(IRIS_ROWS)  # rows
    assert after_http[1] - before[1] >= 3  # requests
    assert after_http[2] > before[2]  # their time, in ns

    tensor = triton_grpc.InferInput("features", list(IRIS_ROWS.shape), "FP32")
    tensor.set_data_from_numpy(IRIS_ROWS)
    grpc_client.infer("iris", [tensor])
    over_grpc = grpc_client.get_inference_statistics("iris", as_json=True)
    assert _iris_counts(over_grpc)[1] > after_http[1]

    every = http_client.get_inference_statistics()  # GET /v2/models/stats
    assert {entry["name"] for entry in every["model_stats"]} >= {"iris", "mnist"}
    (iris,) = [entry for entry in every["model_stats"] if entry["name"] == "iris"]
    stats = iris["inference_stats"]
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[part]["count"] >= stats["success"]["count"] > 0, part
    assert iris["execution_count"] > 0
    assert iris["last_inference"] > 0
    assert (
        sum(batch["compute_infer"]["count"] for batch in iris["batch_stats"])
        == (iris["execution_count"])
    )


def _classes(answer: np.ndarray) -> list[list[tuple[float, int, str]]]:
    rows = []
    for row in answer:
        parsed = []
        for item in row:
            text = item.decode() if isinstance(item, bytes) else item  # JSON answers are str
            score, index, label = text.split(":")
            parsed.append((float(score), int(index), label))
        rows.append(parsed)
    return rows


@pytest.mark.parametrize("binary_data", [True, False])
def test_class_count_answers_the_top_classes_over_http(http_client, binary_data):
    inputs = triton_http.InferInput("features", list(IRIS_ROWS.shape), "FP32")
    inputs.set_data_from_numpy(IRIS_ROWS, binary_data=binary_data)
    asked = triton_http.InferRequestedOutput(
        "probabilities", binary_data=binary_data, class_count=2
    )
    answer = http_client.infer("iris", [inputs], outputs=[asked]).as_numpy("probabilities")
    assert answer.shape == (2, 2)
    rows = _classes(answer)
    assert [row[0][1:] for row in rows] == [(0, "setosa"), (2, "virginica")]
    for row in rows:
        assert row[0][0] >= row[1][0]  # likeliest first
        assert 0.0 <= row[1][0] <= row[0][0] <= 1.0


def test_class_count_answers_the_top_classes_over_grpc(grpc_client):
    tensor = triton_grpc.InferInput("features", list(IRIS_ROWS.shape), "FP32")
    tensor.set_data_from_numpy(IRIS_ROWS)
    asked = triton_grpc.InferRequestedOutput("probabilities", class_count=5)
    answer = grpc_client.infer("iris", [tensor], outputs=[asked]).as_numpy("probabilities")
    assert answer.shape == (2, 3)  # at most every class
    rows = _classes(answer)
    assert [row[0][2] for row in rows] == ["setosa", "virginica"]
    assert all(sorted(index for _, index, _ in row) == [0, 1, 2] for row in rows)


def test_class_count_on_a_regressor_is_a_bad_request(http_client, grpc_client):
    row = np.array([[3.0, 20.0, 5.0, 1.0, 1000.0, 3.0, 34.0, -118.0]], dtype=np.float32)
    inputs = triton_http.InferInput("features", list(row.shape), "FP32")
    inputs.set_data_from_numpy(row)
    asked = triton_http.InferRequestedOutput("value", class_count=1)
    with pytest.raises(InferenceServerException, match="cannot be classified") as refused:
        http_client.infer("housing", [inputs], outputs=[asked])
    assert refused.value.status() == "400"
    tensor = triton_grpc.InferInput("features", list(row.shape), "FP32")
    tensor.set_data_from_numpy(row)
    with pytest.raises(InferenceServerException, match="cannot be classified") as refused:
        grpc_client.infer(
            "housing", [tensor], outputs=[triton_grpc.InferRequestedOutput("value", class_count=1)]
        )
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
