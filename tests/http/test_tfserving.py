"""TensorFlow Serving's REST API, with the request bodies TF Serving documents, for every model.

Row format ("instances"), columnar format ("inputs"), named and unnamed inputs, {"b64": ...}
values and both signatures, each checked against the typed endpoint's numbers.
"""

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.http.app import create_app
from app.protocols import tfserving as protocol
from app.protocols.tfserving_bodies import (
    TFModelMetadata,
    TFModelStatus,
    TFPredictResponse,
    TFRestModelStatus,
)
from app.runtime.model import ModelRuntime, ModelState
from tests.http.protocol_cases import (
    assert_same_numbers,
    cached_typed_case,
    image_model_names,
    model_names,
    newest_version_dir,
    quickest_model,
    small_limits_settings,
)

MODELS = model_names()
IMAGE_MODELS = image_model_names()


def predict(client, name: str, body: dict, version: int | None = None):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + ":predict"
    return client.post(path, json=body)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_bad_request(response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


# -- status and metadata -----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_model_status_shows_the_version_available(app_client, name):
    response = app_client.get(f"/v1/models/{name}")
    assert response.status_code == 200
    status = TFModelStatus.model_validate(response.json())
    version = newest_version_dir(name).name
    assert {
        "version": version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    } in response.json()["model_version_status"]
    assert all(entry.state == "AVAILABLE" for entry in status.model_version_status)

    one = app_client.get(f"/v1/models/{name}/versions/{version}").json()
    assert one["model_version_status"] == [
        {
            "version": version,
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]


def _savedmodel_signatures(version_dir) -> dict:
    """The signature defs as TF Serving prints them, read from saved_model.pb itself."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    signatures = {}
    for name in ("serving_default", "trace"):
        printed = json_format.MessageToDict(
            saved.meta_graphs[0].signature_def[name],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        printed.pop("defaults", None)  # newer than TF Serving's printer; empty here
        signatures[name] = printed
    return signatures


@pytest.mark.parametrize("name", MODELS)
def test_metadata_is_the_savedmodel_signatures(app_client, name):
    version_dir = newest_version_dir(name)
    for path in (
        f"/v1/models/{name}/metadata",
        f"/v1/models/{name}/versions/{version_dir.name}/metadata",
    ):
        response = app_client.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        TFModelMetadata.model_validate(body)
        assert body["model_spec"] == {
            "name": name,
            "signature_name": "",
            "version": version_dir.name,
        }
        served = body["metadata"]["signature_def"]["signature_def"]
        # Besides the SavedModel's own outputs, the service's `familiarity` (asked by name).
        assert served["serving_default"]["outputs"].pop("familiarity") == {
            "dtype": "DT_STRING",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
            "name": "familiarity",
        }
        assert served == _savedmodel_signatures(version_dir)


def test_status_maps_each_runtime_state(tmp_path):
    loading = ModelRuntime("m", 1, tmp_path)
    ready = ModelRuntime("m", 2, tmp_path)
    ready.state = ModelState.READY
    failed = ModelRuntime("m", 3, tmp_path)
    failed.state, failed.reason = ModelState.FAILED, "the SavedModel lacks the signature(s)"
    status = protocol.tf_model_status([loading, ready, failed]).model_dump()
    assert status["model_version_status"] == [
        {"version": "1", "state": "LOADING", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {
            "version": "3",
            "state": "END",
            "status": {
                "error_code": "UNKNOWN",
                "error_message": "the SavedModel lacks the signature(s)",
            },
        },
    ]


@pytest.fixture(scope="module")
def small_limits_client(tmp_path_factory):
    settings = small_limits_settings(tmp_path_factory.mktemp("models"), quickest_model())
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_version_that_failed_to_load_is_end_with_its_error(small_limits_client):
    entry = small_limits_client.get("/v1/models/broken").json()["model_version_status"][0]
    assert entry["state"] == "END"
    assert entry["status"]["error_code"] == "UNKNOWN"
    assert "model card" in entry["status"]["error_message"]
    response = small_limits_client.post("/v1/models/broken:predict", json={"instances": [[1.0]]})
    assert response.status_code == 503
    assert "failed to load" in response.json()["error"]


@pytest.mark.parametrize("name", MODELS)
def test_status_carries_kserve_v1_name_and_ready(app_client, name):
    version = newest_version_dir(name).name
    for path in (f"/v1/models/{name}", f"/v1/models/{name}/versions/{version}"):
        status = TFRestModelStatus.model_validate(app_client.get(path).json())
        assert (status.name, status.ready) == (name, True), path


def test_a_model_with_no_version_serving_is_not_ready(small_limits_client):
    status = small_limits_client.get("/v1/models/broken").json()
    assert (status["name"], status["ready"]) == ("broken", False)


def test_instance_and_answer_limits_are_413(small_limits_client, app_client):
    case = cached_typed_case(app_client, quickest_model())
    name, one = case.card.name, case.rows[0]
    assert predict(small_limits_client, name, {"instances": [one, one]}).status_code == 200
    too_many = predict(small_limits_client, name, {"instances": [one, one, one]})
    assert too_many.status_code == 413
    assert "limit is 2" in too_many.json()["error"]
    too_large = predict(small_limits_client, name, {"signature_name": "trace", "instances": [one]})
    assert too_large.status_code == 413
    assert "fewer outputs" in too_large.json()["error"]


# -- predict: the same numbers as the typed endpoint -------------------------------------------


def test_row_format_unnamed_and_named(app_client, case):
    name, input_name = case.card.name, case.card.input.name
    for body in (
        {"instances": case.rows},
        {"instances": [{input_name: row} for row in case.rows]},
        {"signature_name": "serving_default", "instances": case.rows},
    ):
        response = predict(app_client, name, body)
        assert response.status_code == 200, response.text
        assert response.json().keys() == {"predictions"}
        assert_same_numbers(
            TFPredictResponse.model_validate(response.json()).predictions, case.expected
        )


def test_columnar_format_unnamed_and_named(app_client, case):
    name, input_name = case.card.name, case.card.input.name
    for body in ({"inputs": case.rows}, {"inputs": {input_name: case.rows}}):
        response = predict(app_client, name, body)
        assert response.status_code == 200, response.text
        assert response.json().keys() == {"outputs"}
        assert_same_numbers(response.json()["outputs"], case.expected)


def test_a_version_can_be_named(app_client, case):
    version = int(newest_version_dir(case.card.name).name)
    response = predict(app_client, case.card.name, {"instances": case.rows}, version=version)
    assert response.status_code == 200, response.text
    assert_same_numbers(response.json()["predictions"], case.expected)


def test_curl_form_content_type_is_read_as_json(app_client, case):
    """TF Serving's examples post with `curl -d`, which says the JSON is a form."""
    response = app_client.post(
        f"/v1/models/{case.card.name}:predict",
        content=json.dumps({"instances": case.rows}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert_same_numbers(response.json()["predictions"], case.expected)


def test_b64_image_file_is_decoded_as_the_typed_upload(app_client, image_case):
    case = image_case
    name, input_name, encoded = case.card.name, case.card.input.name, b64(case.image)
    for body, key in (
        ({"instances": [{"b64": encoded}]}, "predictions"),
        ({"instances": [{input_name: {"b64": encoded}}]}, "predictions"),
        ({"inputs": [{"b64": encoded}]}, "outputs"),
        ({"inputs": {input_name: [{"b64": encoded}]}}, "outputs"),
    ):
        response = predict(app_client, name, body)
        assert response.status_code == 200, response.text
        assert_same_numbers(response.json()[key], case.expected)


def test_trace_signature_returns_every_layer_keyed_by_name(app_client, case):
    card = case.card
    keys = [layer.trace_key for layer in card.layers]
    rows = predict(app_client, card.name, {"signature_name": "trace", "instances": case.rows})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert len(predictions) == len(case.rows)
    for instance in predictions:
        assert list(instance) == keys
        for layer in card.layers:
            assert list(np.shape(instance[layer.trace_key])) == layer.output_shape[1:]
    assert_same_numbers([p[keys[-1]] for p in predictions], case.expected)

    columns = predict(app_client, card.name, {"signature_name": "trace", "inputs": case.rows})
    assert columns.status_code == 200, columns.text
    outputs = columns.json()["outputs"]
    assert list(outputs) == keys
    assert_same_numbers(outputs[keys[-1]], case.expected)
    for key in keys:
        assert_same_numbers(outputs[key], np.array([p[key] for p in predictions], np.float32))


# -- errors ------------------------------------------------------------------------------------


def test_unknown_model_is_404(app_client):
    for response in (
        app_client.get("/v1/models/no-such-model"),
        app_client.get("/v1/models/no-such-model/metadata"),
        predict(app_client, "no-such-model", {"instances": [[1.0]]}),
    ):
        assert response.status_code == 404
        assert "no-such-model" in response.json()["error"]


def test_unknown_version_is_404(app_client, case):
    name = case.card.name
    for path in (f"/v1/models/{name}/versions/999", f"/v1/models/{name}/versions/latest"):
        assert app_client.get(path).status_code == 404
    assert predict(app_client, name, {"instances": case.rows}, version=999).status_code == 404


def test_wrong_shape_is_400_naming_the_input_and_its_shape(app_client, case):
    card = case.card
    expected = str([-1 if d is None else d for d in card.input.shape])
    short_row = np.asarray(case.rows[0])[..., :-1].tolist()
    assert_bad_request(
        predict(app_client, card.name, {"instances": [short_row]}),
        "instances[0]",
        card.input.name,
        expected,
    )
    assert_bad_request(
        predict(app_client, card.name, {"inputs": {card.input.name: short_row}}),
        card.input.name,
        expected,
    )


def test_non_numbers_are_400(app_client, case):
    card = case.card
    as_text = np.asarray(case.rows[0]).astype(str).tolist()
    assert_bad_request(predict(app_client, card.name, {"instances": [as_text]}), "numbers")
    ragged = [case.rows[0], [1.0]]
    assert_bad_request(predict(app_client, card.name, {"instances": ragged}), "instances[1]")


def test_bad_b64_is_400(app_client, case):
    name = case.card.name
    response = predict(app_client, name, {"instances": [{"b64": "not base64!"}]})
    if case.image is None:
        assert_bad_request(response, "encoded image", case.card.input.name)
    else:
        assert_bad_request(response, "instances[0]", "base64")
        not_an_image = predict(app_client, name, {"instances": [{"b64": b64(b"plain text")}]})
        assert_bad_request(not_an_image, "instances[0]", "not an image")


def test_request_format_errors_are_400(app_client, case):
    name = case.card.name
    assert_bad_request(
        predict(app_client, name, {"instances": case.rows, "inputs": case.rows}), "exactly one"
    )
    assert_bad_request(predict(app_client, name, {"signature_name": "serving_default"}), "one of")
    assert_bad_request(predict(app_client, name, {"instances": []}), "no instances")
    assert_bad_request(
        predict(app_client, name, {"signature_name": "classify", "instances": case.rows}),
        "classify",
        "not found",
    )
    assert_bad_request(
        predict(app_client, name, {"instances": [{"wrong_name": case.rows[0]}]}),
        "wrong_name",
        case.card.input.name,
    )
    malformed = app_client.post(f"/v1/models/{name}:predict", content=b'{"instances": [')
    assert_bad_request(malformed, "not valid JSON")
    assert_bad_request(app_client.post(f"/v1/models/{name}:classify", json={}), ":predict")
