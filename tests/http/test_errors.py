"""Every error case answers its status and one JSON shape, never a 500 or a stack trace."""

import io
import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.http.app import create_app
from app.http.schemas import ErrorResponse
from tests.conftest import MODELS

FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture(scope="module")
def small_limits_client(tmp_path_factory):
    """iris and mnist, plus a copy of iris whose weights file no longer matches its card."""
    root = tmp_path_factory.mktemp("models")
    for name in ("iris", "mnist"):
        shutil.copytree(MODELS / name, root / name)
    broken = root / "broken" / "1"
    shutil.copytree(sorted((MODELS / "iris").iterdir())[-1], broken)
    data = next((broken / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[:-8] + b"corrupt!")
    settings = Settings(
        model_dir=root,
        max_body_bytes=200_000,
        max_image_bytes=100_000,
        max_image_pixels=1_000_000,
        trace_max_values=10_000,
        max_instances=8,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def error_of(response, status: int) -> ErrorResponse:
    assert response.status_code == status, response.text
    body = ErrorResponse.model_validate(response.json())
    assert "Traceback" not in body.error
    assert "tensorflow" not in body.error.lower()
    return body


def png(size=(40, 40), mode="L", color=255) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unknown_model_is_404(small_limits_client):
    body = error_of(small_limits_client.get("/api/models/nope"), 404)
    assert body.code == "model_not_found"
    assert "iris" in body.error


def test_unknown_version_is_404(small_limits_client):
    response = small_limits_client.post("/api/models/iris/predict?version=99", json=FLOWER)
    assert "no version 99" in error_of(response, 404).error


def test_non_ascii_digit_version_is_422_not_a_crash(small_limits_client):
    # "²".isdigit() is True, but int("²") raises: the request log must not choke on it.
    response = small_limits_client.post("/api/models/iris/predict?version=²", json=FLOWER)
    assert error_of(response, 422).field == "version"


def test_missing_field_is_422_naming_it(small_limits_client):
    flower = {k: v for k, v in FLOWER.items() if k != "petal_width"}
    body = error_of(small_limits_client.post("/api/models/iris/predict", json=flower), 422)
    assert body.field == "petal_width"
    assert "required" in body.error


def test_non_numeric_field_is_422(small_limits_client):
    response = small_limits_client.post(
        "/api/models/iris/predict", json={**FLOWER, "sepal_width": "wide"}
    )
    assert error_of(response, 422).field == "sepal_width"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_422(small_limits_client, token):
    rest = '"sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2'
    raw = f'{{"sepal_length": {token}, {rest}}}'
    response = small_limits_client.post(
        "/api/models/iris/predict", content=raw, headers={"content-type": "application/json"}
    )
    body = error_of(response, 422)
    assert body.field == "sepal_length"
    assert "finite" in body.error


def test_out_of_range_is_422_with_the_allowed_range(small_limits_client):
    response = small_limits_client.post(
        "/api/models/iris/predict", json={**FLOWER, "petal_length": 40.0}
    )
    body = error_of(response, 422)
    assert body.field == "petal_length"
    assert "must be between" in body.error
    assert "cm" in body.error


def test_unknown_field_is_422(small_limits_client):
    response = small_limits_client.post("/api/models/iris/predict", json={**FLOWER, "color": 1})
    assert error_of(response, 422).field == "color"


def test_image_that_does_not_decode_is_422(small_limits_client):
    truncated = png((300, 300), "RGB", (200, 10, 10))[:200]
    response = small_limits_client.post(
        "/api/models/mnist/predict", files={"file": ("t.png", truncated, "image/png")}
    )
    assert "could not be decoded" in error_of(response, 422).error


def test_unsupported_type_is_415(small_limits_client):
    response = small_limits_client.post(
        "/api/models/mnist/predict", files={"file": ("notes.txt", b"hello, world", "text/plain")}
    )
    assert "supported format" in error_of(response, 415).error


def test_blank_image_says_no_digit(small_limits_client):
    response = small_limits_client.post(
        "/api/models/mnist/predict", files={"file": ("blank.png", png(), "image/png")}
    )
    assert "No digit" in error_of(response, 422).error


def test_body_over_the_limit_is_413(small_limits_client):
    response = small_limits_client.post(
        "/api/models/iris/predict",
        content=b"[" + b" " * 300_000 + b"]",
        headers={"content-type": "application/json"},
    )
    assert error_of(response, 413).code == "payload_too_large"


def test_image_over_the_pixel_limit_is_413_before_decoding(small_limits_client):
    response = small_limits_client.post(
        "/api/models/mnist/predict", files={"file": ("big.png", png((2000, 2000)), "image/png")}
    )
    assert "pixels" in error_of(response, 413).error


def test_bad_base64_is_422(small_limits_client):
    response = small_limits_client.post(
        "/api/models/mnist/predict/json", json={"image_base64": "not base64!!"}
    )
    assert error_of(response, 422).field == "image_base64"


def test_pixels_of_the_wrong_shape_are_422(small_limits_client):
    response = small_limits_client.post(
        "/api/models/mnist/predict/json", json={"pixels": [[0] * 27] * 28}
    )
    assert "[28, 28]" in error_of(response, 422).error


def test_model_that_failed_to_load_is_503_and_named_by_readiness(small_limits_client):
    response = small_limits_client.post("/api/models/broken/predict", json=FLOWER)
    assert error_of(response, 503).code == "model_not_ready"
    ready = small_limits_client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["missing"] == ["broken/1"]
    broken = next(m for m in ready.json()["models"] if m["name"] == "broken")
    assert "sha256" in broken["versions"][0]["reason"]


def test_the_other_models_keep_serving_beside_a_broken_one(small_limits_client):
    assert small_limits_client.post("/api/models/iris/predict", json=FLOWER).status_code == 200
    assert small_limits_client.get("/health/live").status_code == 200


def test_unknown_path_is_404_in_the_same_shape(small_limits_client):
    assert error_of(small_limits_client.get("/no/such/path"), 404).code == "not_found"


def test_trace_over_the_value_cap_is_413_and_a_summary_is_not(small_limits_client, mnist_sample):
    pixels = {"pixels": mnist_sample["x_test"][0].tolist()}
    summary = small_limits_client.post("/api/models/mnist/trace/json", json=pixels)
    assert summary.status_code == 200
    response = small_limits_client.post("/api/models/mnist/trace/json?full=true", json=pixels)
    assert "limit is 10000" in error_of(response, 413).error


def test_batch_over_the_instance_limit_is_422(small_limits_client):
    response = small_limits_client.post(
        "/api/models/iris/predict", json={"instances": [FLOWER] * 9}
    )
    assert error_of(response, 422).field == "instances"


def test_uploaded_image_over_the_image_limit_is_413(small_limits_client):
    """Within the body limit (200,000 bytes) but over the image limit (100,000)."""
    response = small_limits_client.post(
        "/api/models/mnist/predict", files={"file": ("big.png", b"\x89PNG" + bytes(150_000))}
    )
    assert "over the limit of 100000 bytes" in error_of(response, 413).error
