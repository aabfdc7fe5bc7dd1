"""Open Inference Protocol v2 through a real client (tritonclient) against a real server.

A uvicorn process on a free loopback port serves the models folder for the session; every model
must give the same numbers as its typed endpoint. A few behaviours the client hides (empty health
bodies, nested data, 400 for a model that failed to load) go through the app directly.
"""

import base64
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from app.http.app import create_app
from app.http.routes.responses import ModelJSON
from app.protocols.v2_bodies import InferenceResponse, MetadataModelResponse, ResponseOutput
from tests import conftest
from tests.http.protocol_cases import (
    assert_same_numbers,
    cached_typed_case,
    image_model_names,
    model_names,
    newest_card,
    newest_version_dir,
    quickest_model,
    small_limits_settings,
)

MODELS = model_names()
IMAGE_MODELS = image_model_names()

SERVER_START_TIMEOUT_S = 240  # four models load on a busy two-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    """`python -m uvicorn app.main:app` on 127.0.0.1 and a free port, until the session ends."""
    port = _free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    env = {
        **os.environ,
        "GLASSBOX_MODEL_DIR": str(conftest.MODELS),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=conftest.ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{_log_tail(log)}")
            try:
                if httpx.get(f"http://{url}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready in time:\n{_log_tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def client(server_url):
    client = triton.InferenceServerClient(url=server_url, network_timeout=120)
    yield client
    client.close()


def fp32_input(name: str, batch: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.astype(np.float32), binary_data=False)
    return tensor


def bytes_input(name: str, files: list[bytes]) -> triton.InferInput:
    encoded = np.array([base64.b64encode(data) for data in files], dtype=np.object_)
    tensor = triton.InferInput(name, [len(files)], "BYTES")
    tensor.set_data_from_numpy(encoded, binary_data=False)
    return tensor


def outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def assert_refused(call, status: str, *words: str) -> None:
    with pytest.raises(InferenceServerException) as refused:
        call()
    assert refused.value.status() == status, refused.value
    for word in words:
        assert word in refused.value.message(), refused.value.message()


# -- health and metadata -----------------------------------------------------------------------


def test_server_is_live_ready_and_describes_itself(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "glassbox"
    assert metadata["version"]
    assert metadata["extensions"] == [
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
    ]


@pytest.mark.parametrize("name", MODELS)
def test_model_is_ready_and_its_metadata_is_the_card(client, name):
    version, card = newest_version_dir(name).name, newest_card(name)
    assert client.is_model_ready(name)
    assert client.is_model_ready(name, version)
    for metadata in (client.get_model_metadata(name), client.get_model_metadata(name, version)):
        MetadataModelResponse.model_validate(metadata)
        assert metadata["name"] == name
        assert version in metadata["versions"]
        assert metadata["platform"] == "tensorflow_savedmodel"
        assert metadata["inputs"] == [
            {
                "name": card.input.name,
                "datatype": "FP32",
                "shape": [-1 if d is None else d for d in card.input.shape],
            }
        ]
        assert metadata["outputs"] == [
            {
                "name": card.output.name,
                "datatype": "FP32",
                "shape": [-1 if d is None else d for d in card.layers[-1].output_shape],
            },
            # One JSON object per row, answered only when a request names it.
            {"name": "familiarity", "datatype": "BYTES", "shape": [-1]},
        ]


def test_unknown_model_is_not_ready_and_has_no_metadata(client):
    assert not client.is_model_ready("no-such-model")
    assert_refused(lambda: client.get_model_metadata("no-such-model"), "404", "no-such-model")


def test_health_answers_say_true_in_the_status_and_the_body(app_client):
    for path, key in (
        ("/v2/health/live", "live"),
        ("/v2/health/ready", "ready"),
        (f"/v2/models/{quickest_model()}/ready", "ready"),
    ):
        response = app_client.get(path)
        assert (response.status_code, response.json()) == (200, {key: True}), path


@pytest.fixture(scope="module")
def small_limits_client(tmp_path_factory):
    settings = small_limits_settings(tmp_path_factory.mktemp("models"), quickest_model())
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_model_that_failed_to_load_is_not_ready(small_limits_client):
    for path in (
        "/v2/health/ready",
        "/v2/models/broken/ready",
        "/v2/models/broken/versions/1/ready",
    ):
        response = small_limits_client.get(path)
        assert (response.status_code, response.json()) == (400, {"ready": False}), path
    assert small_limits_client.get("/v2/health/live").status_code == 200
    assert small_limits_client.get("/v2/models/no-such-model/ready").status_code == 404
    assert small_limits_client.get("/v2/models/broken").status_code == 503


def test_instance_and_answer_limits_are_413(small_limits_client, app_client):
    case = cached_typed_case(app_client, quickest_model())
    card = case.card

    def infer(batch: np.ndarray, *names: str):
        tensor = {
            "name": card.input.name,
            "shape": list(batch.shape),
            "datatype": "FP32",
            "data": batch.reshape(-1).tolist(),
        }
        body = {"inputs": [tensor], "outputs": [{"name": name} for name in names]}
        return small_limits_client.post(f"/v2/models/{card.name}/infer", json=body)

    one = case.batch[:1]
    assert infer(np.concatenate([one, one])).status_code == 200
    assert infer(np.concatenate([one, one, one])).status_code == 413
    too_large = infer(one, *(layer.trace_key for layer in card.layers))
    assert too_large.status_code == 413
    assert "fewer outputs" in too_large.json()["error"]


# -- inference: the same numbers as the typed endpoint -----------------------------------------


def test_fp32_inference_matches_typed(client, case):
    card = case.card
    result = client.infer(
        card.name,
        [fp32_input(card.input.name, case.batch)],
        outputs=outputs(card.output.name),
        request_id="request-7",
    )
    assert_same_numbers(result.as_numpy(card.output.name), case.expected)
    response = InferenceResponse.model_validate(result.get_response())
    assert response.id == "request-7"
    assert response.model_name == card.name
    assert response.model_version == newest_version_dir(card.name).name


def test_default_output_is_the_prediction(client, case):
    """Without requested outputs tritonclient asks for binary outputs (binary_data_output)."""
    card = case.card
    version = newest_version_dir(card.name).name
    result = client.infer(
        card.name, [fp32_input(card.input.name, case.batch)], model_version=version
    )
    assert [output["name"] for output in result.get_response()["outputs"]] == [card.output.name]
    assert_same_numbers(result.as_numpy(card.output.name), case.expected)


def test_bytes_image_file_matches_typed_upload(client, image_case):
    card = image_case.card
    result = client.infer(
        card.name,
        [bytes_input(card.input.name, [image_case.image, image_case.image])],
        outputs=outputs(card.output.name),
    )
    expected = np.concatenate([image_case.expected, image_case.expected])
    assert_same_numbers(result.as_numpy(card.output.name), expected)


def test_layer_outputs_by_trace_key(client, app_client, case):
    card = case.card
    keys = [layer.trace_key for layer in card.layers]
    result = client.infer(
        card.name,
        [fp32_input(card.input.name, case.batch)],
        outputs=outputs(card.output.name, *keys),
    )
    assert [output["name"] for output in result.get_response()["outputs"]] == [
        card.output.name,
        *keys,
    ]
    for layer in card.layers:
        assert list(result.as_numpy(layer.trace_key).shape[1:]) == layer.output_shape[1:]
    assert_same_numbers(result.as_numpy(keys[-1]), case.expected)
    assert_same_numbers(result.as_numpy(card.output.name), case.expected)

    # The same numbers as the typed trace for the same input, one instance (a batch of two may
    # round differently in the last bit).
    one = client.infer(
        card.name, [fp32_input(card.input.name, case.batch[:1])], outputs=outputs(*keys)
    )
    if card.input.kind == "features":
        first = {
            spec.name: value
            for spec, value in zip(card.input.features, case.batch[0].tolist(), strict=True)
        }
        typed = app_client.post(f"/api/models/{card.name}/trace", json=first)
    else:
        typed = app_client.post(
            f"/api/models/{card.name}/trace", files={"file": ("image", case.image)}
        )
    assert typed.status_code == 200, typed.text
    for layer in typed.json()["layers"]:
        ours = one.as_numpy(card.layers[layer["index"]].trace_key)[0]
        if layer.get("values") is not None:
            assert_same_numbers(ours, np.asarray(layer["values"], np.float32))
        else:
            assert_same_numbers(ours.reshape(-1)[: len(layer["slice"])], np.asarray(layer["slice"]))


def test_nested_data_is_accepted(app_client, case):
    card = case.card
    body = {
        "inputs": [
            {
                "name": card.input.name,
                "shape": list(case.batch.shape),
                "datatype": "FP32",
                "data": case.rows,
            }
        ]
    }
    response = app_client.post(f"/v2/models/{card.name}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = InferenceResponse.model_validate(response.json()).outputs[0]
    assert answer.shape == list(case.expected.shape)
    assert_same_numbers(np.reshape(answer.data, answer.shape), case.expected)


# -- errors ------------------------------------------------------------------------------------


def test_unknown_model_is_404(client, case):
    tensor = fp32_input(case.card.input.name, case.batch)
    assert_refused(lambda: client.infer("no-such-model", [tensor]), "404", "no-such-model")


def test_wrong_datatype_is_400_naming_the_input_and_what_it_takes(client, case):
    card = case.card
    tensor = triton.InferInput(card.input.name, list(case.batch.shape), "FP64")
    tensor.set_data_from_numpy(case.batch.astype(np.float64), binary_data=False)
    assert_refused(
        lambda: client.infer(card.name, [tensor], outputs=outputs(card.output.name)),
        "400",
        f"'{card.input.name}'",
        "FP64",
        "FP32",
    )


def test_wrong_shape_is_400_naming_the_input_and_its_shape(client, case):
    card = case.card
    short = case.batch[..., :-1]
    expected = str([-1 if d is None else d for d in card.input.shape])
    assert_refused(
        lambda: client.infer(
            card.name, [fp32_input(card.input.name, short)], outputs=outputs(card.output.name)
        ),
        "400",
        f"'{card.input.name}'",
        expected,
    )


def test_wrong_input_name_is_400(client, case):
    card = case.card
    assert_refused(
        lambda: client.infer(card.name, [fp32_input("wrong_name", case.batch)]),
        "400",
        "wrong_name",
        f"'{card.input.name}'",
    )


def test_unknown_output_is_400(client, case):
    card = case.card
    assert_refused(
        lambda: client.infer(
            card.name, [fp32_input(card.input.name, case.batch)], outputs=outputs("no_such_layer")
        ),
        "400",
        "no_such_layer",
        card.layers[0].trace_key,
    )


def test_bytes_are_refused_by_a_tabular_model_and_bad_base64_by_any(client, case):
    card = case.card
    if card.input.kind == "image":
        tensor = triton.InferInput(card.input.name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array(["not base64!"], dtype=np.object_), binary_data=False)
        assert_refused(lambda: client.infer(card.name, [tensor]), "400", "base64")
        not_an_image = bytes_input(card.input.name, [b"plain text"])
        assert_refused(lambda: client.infer(card.name, [not_an_image]), "400", "not an image")
    else:
        tensor = bytes_input(card.input.name, [b"anything"])
        assert_refused(lambda: client.infer(card.name, [tensor]), "400", "BYTES", "FP32")


def binary_fp32(name: str, batch: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.astype(np.float32))  # tritonclient's default: binary
    return tensor


def test_tritonclient_at_its_defaults_gets_the_typed_numbers(client, case):
    """Binary inputs and, with no outputs named, binary outputs: tritonclient as shipped."""
    card = case.card
    result = client.infer(card.name, [binary_fp32(card.input.name, case.batch)])
    (output,) = result.get_response()["outputs"]
    assert output["parameters"]["binary_data_size"] == 4 * case.expected.size
    assert "data" not in output
    assert_same_numbers(result.as_numpy(card.output.name), case.expected)


def test_binary_and_json_outputs_mix_as_asked(client, case):
    card = case.card
    layer = card.layers[0].trace_key
    result = client.infer(
        card.name,
        [binary_fp32(card.input.name, case.batch)],
        outputs=[
            triton.InferRequestedOutput(card.output.name),  # binary by default
            triton.InferRequestedOutput(layer, binary_data=False),
        ],
    )
    answer = {output["name"]: output for output in result.get_response()["outputs"]}
    assert "binary_data_size" in answer[card.output.name]["parameters"]
    assert "data" in answer[layer]
    assert_same_numbers(result.as_numpy(card.output.name), case.expected)
    assert result.as_numpy(layer).shape[0] == len(case.batch)


def test_binary_image_files_match_typed_upload(client, image_case):
    card = image_case.card
    tensor = triton.InferInput(card.input.name, [2], "BYTES")
    tensor.set_data_from_numpy(np.array([image_case.image, image_case.image], dtype=np.object_))
    result = client.infer(card.name, [tensor])
    expected = np.concatenate([image_case.expected, image_case.expected])
    assert_same_numbers(result.as_numpy(card.output.name), expected)


def binary_body(header: dict, section: bytes) -> tuple[bytes, dict[str, str]]:
    encoded = json.dumps(header).encode()
    return encoded + section, {"Inference-Header-Content-Length": str(len(encoded))}


def test_malformed_binary_bodies_are_400_naming_the_problem(app_client, case):
    card = case.card
    name, shape = card.input.name, list(case.batch.shape)
    raw = case.batch.astype("<f4").tobytes()
    tensor = {"name": name, "shape": shape, "datatype": "FP32"}
    cases = [
        (
            {"inputs": [tensor | {"parameters": {"binary_data_size": len(raw)}}]},
            raw[:-4],
            "holds only",
        ),
        (
            {"inputs": [tensor | {"parameters": {"binary_data_size": len(raw) - 4}}]},
            raw[:-4],
            "takes",
        ),
        ({"inputs": [tensor | {"parameters": {"binary_data_size": 4}}]}, raw, "add up"),
        ({"inputs": [tensor]}, raw, "neither data nor"),
        (
            {"inputs": [tensor | {"data": [0.0], "parameters": {"binary_data_size": len(raw)}}]},
            raw,
            "both data and",
        ),
    ]
    for header, section, words in cases:
        body, headers = binary_body(header, section)
        response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert words in response.json()["error"]
    body, _ = binary_body({"inputs": [tensor]}, raw)
    too_long = {"Inference-Header-Content-Length": str(len(body) + 1)}
    response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=too_long)
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


def test_raw_nan_is_computed_as_sent_and_answered_as_null_in_json(app_client, case):
    """Raw bytes are used as sent, as Triton uses them (perf_analyzer's random inputs hold
    NaN): the answer is computed (whether NaN survives the layers depends on the model and the
    CPU), and JSON, which has no NaN, would say null."""
    card = case.card
    nan = np.full(case.batch.shape, np.nan, "<f4").tobytes()
    tensor = {
        "name": card.input.name,
        "shape": list(case.batch.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(nan)},
    }
    body, headers = binary_body({"inputs": [tensor]}, nan)
    response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert len(output["data"]) == math.prod(output["shape"])
    assert all(value is None or isinstance(value, float) for value in output["data"])


def test_a_nan_answer_is_null_in_json():
    output = ResponseOutput(name="value", shape=[2], datatype="FP32", data=[float("nan"), 1.0])
    assert json.loads(ModelJSON(output).body)["data"] == [None, 1.0]


def test_a_binary_answer_is_a_json_header_and_float32_bytes(app_client, case):
    card = case.card
    raw = case.batch.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": card.input.name,
                "shape": list(case.batch.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, headers = binary_body(header, raw)
    response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    values = np.frombuffer(response.content[length:], "<f4").reshape(answer["outputs"][0]["shape"])
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == len(response.content) - length
    assert_same_numbers(values, case.expected)


def test_binary_bytes_that_are_not_images_are_400(app_client, case):
    card = case.card
    element = struct.pack("<I", 10) + b"plain text"
    header = {
        "inputs": [
            {
                "name": card.input.name,
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(element)},
            }
        ]
    }
    body, headers = binary_body(header, element)
    response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=headers)
    assert response.status_code == 400
    expected = "not an image" if card.input.kind == "image" else "BYTES"
    assert expected in response.json()["error"]
    if card.input.kind == "image":
        header["inputs"][0]["parameters"]["binary_data_size"] = 6
        body, headers = binary_body(header, element[:6])
        response = app_client.post(f"/v2/models/{card.name}/infer", content=body, headers=headers)
        assert response.status_code == 400
        assert "runs past the end" in response.json()["error"]


def test_malformed_request_is_400(app_client, case):
    name = case.card.name
    for body in (b'{"inputs": [', b'{"inputs": []}', b'{"inputs": [{"name": "x"}]}'):
        response = app_client.post(f"/v2/models/{name}/infer", content=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]
