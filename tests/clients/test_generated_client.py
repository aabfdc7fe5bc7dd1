"""A client generated from the live server's /openapi.json by openapi-python-client, the
installed CLI at its defaults (no metadata, `--fail-on-warning`), imported unmodified and called:
typed iris fields, and an mnist image upload as a file (the upload's schema once made it a string,
sent as a text part, which the service refused with 415)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.ops.server import ROOT, Server

PACKAGE = "glassbox_generated_client"  # the generated package's name: its folder's
DIGIT = ROOT / "app" / "examples" / "mnist.png"  # a handwritten 7
VIRGINICA = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
GENERATE_TIMEOUT_S = 300  # a bound on a hung process, not a speed check


def generate(document: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """openapi-python-client's `generate`, run as its documentation shows, with this Python's
    scripts first on the PATH: its post hooks run `ruff` from there."""
    scripts = str(Path(sys.executable).parent)  # not resolved: a venv's python is a link
    env = {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
    command = [sys.executable, "-m", "openapi_python_client", "generate"]
    options = ["--path", str(document), "--meta", "none", "--output-path", str(output)]
    return subprocess.run(
        [*command, *options, "--fail-on-warning"],
        env=env,
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def generated(live: Server, tmp_path_factory) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary folder; removed from sys.modules and
    sys.path after the module."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    response = httpx.get(f"{live.base}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    document.write_bytes(response.content)
    result = generate(document, folder / PACKAGE)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def client_for(generated: ModuleType, live: Server):
    return generated.Client(
        base_url=live.base, timeout=httpx.Timeout(30), raise_on_unexpected_status=True
    )


def assert_probabilities(probabilities: dict[str, float], labels: set[str]) -> None:
    assert set(probabilities) == labels
    assert all(0 <= p <= 1 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)


def test_iris_predict_with_typed_fields(generated, live):
    predict = importlib.import_module(f"{PACKAGE}.api.iris.predict_api_models_iris_predict_post")
    models = importlib.import_module(f"{PACKAGE}.models")
    with client_for(generated, live) as client:
        response = predict.sync_detailed(client=client, body=models.IrisFeatures(**VIRGINICA))
    assert response.status_code == 200, response.content
    answer = response.parsed
    assert isinstance(answer, models.ClassPrediction)
    assert (answer.model, answer.label, answer.class_index) == ("iris", "virginica", 2)
    probabilities = answer.probabilities.to_dict()
    assert_probabilities(probabilities, {"setosa", "versicolor", "virginica"})
    assert max(probabilities, key=probabilities.__getitem__) == "virginica"


def test_mnist_image_upload_as_a_file(generated, live):
    predict = importlib.import_module(
        f"{PACKAGE}.api.mnist.predict_upload_api_models_mnist_predict_post"
    )
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    with DIGIT.open("rb") as image, client_for(generated, live) as client:
        upload = types.File(payload=image, file_name=DIGIT.name, mime_type="image/png")
        body = models.PredictUploadApiModelsMnistPredictPostBody(file=upload)
        response = predict.sync_detailed(client=client, body=body)
    assert response.status_code == 200, response.content
    answer = response.parsed
    assert isinstance(answer, models.ClassPrediction)
    assert (answer.model, answer.label, answer.class_index) == ("mnist", "7", 7)
    assert_probabilities(answer.probabilities.to_dict(), {str(digit) for digit in range(10)})
