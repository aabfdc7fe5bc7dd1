"""Typed endpoints follow the card of the version that answers, across hot reloads: renamed,
added and re-ranged features and relabelled classes are accepted under their new names by the
new version, the old ones get a 422 naming the expected fields, `?version=` reaches either
version with its own schema, /openapi.json shows the default's, and nothing answers 500."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.artifact.card import FeatureSpec, ModelCard, hash_files
from app.core.settings import Settings
from app.http.app import create_app
from app.runtime.registry import Asked
from tests.conftest import MODELS
from training.common import export_savedmodel, layer_specs

IRIS = sorted((MODELS / "iris").iterdir())[-1]
OLD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
RENAMED = {"sepal_len_cm": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def new_version(root: Path, version: int, change) -> Path:
    """Version `version` of iris: the committed one with `change(card)` applied to its card."""
    target = root / "iris" / str(version)
    shutil.copytree(IRIS, target)
    card = ModelCard.read(target)
    card.version = version
    change(card)
    card.write(target)
    return target


def rename_sepal_length(card: ModelCard) -> None:
    card.input.features[0].name = "sepal_len_cm"


def relabel(card: ModelCard) -> None:
    card.output.labels = ["Iris setosa", "Iris versicolor", "Iris virginica"]


def narrow_petal_length(card: ModelCard) -> None:
    card.input.features[2].allowed_max = 1.0


def five_features(root: Path, version: int) -> Path:
    """A version with a fifth feature, `stem_length`: a small network of its own that takes five
    inputs, exported the way training exports, under iris's card with the feature added."""
    card = ModelCard.read(IRIS)
    card.version = version
    card.input.features.append(
        FeatureSpec(
            name="stem_length",
            unit="cm",
            description="Stem length",
            observed_min=0.0,
            observed_max=10.0,
            mean=5.0,
            allowed_min=0.0,
            allowed_max=20.0,
        )
    )
    card.input.shape = [None, 5]
    card.familiarity = card.drift = None  # iris's statistics are of four features
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), name=card.input.name)
    hidden = keras.layers.Dense(8, activation="relu", name="dense")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense_1")(hidden)
    model = keras.Model(inputs, outputs)
    target = root / "iris" / str(version)
    target.mkdir(parents=True)
    export_savedmodel(model, card.input, card.output, target)
    card.layers = layer_specs(model)
    card.files = hash_files(target)
    card.write(target)
    return target


@pytest.fixture
def iris_root(tmp_path):
    shutil.copytree(IRIS, tmp_path / "iris" / "1")
    return tmp_path


@pytest.fixture
def client(iris_root):
    with TestClient(create_app(Settings(model_dir=iris_root, poll_interval_s=0))) as client:
        yield client


def reload(client: TestClient) -> None:
    report = client.portal.call(client.app.state.service.catalog.reload)
    assert not report.failed, report.failed


def predict(client: TestClient, body: dict, version: int | None = None, path: str = "predict"):
    query = "" if version is None else f"?version={version}"
    return client.post(f"/api/models/iris/{path}{query}", json=body)


def documented_features(client: TestClient) -> list[str]:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    return list(schemas["IrisFeatures"]["properties"])


def test_a_renamed_feature_is_taken_by_the_new_version_and_the_old_name_by_the_old(
    client, iris_root
):
    assert documented_features(client)[0] == "sepal_length"
    new_version(iris_root, 2, rename_sepal_length)
    reload(client)

    answer = predict(client, RENAMED)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    refused = predict(client, OLD)
    assert refused.status_code == 422
    assert "sepal_len_cm" in refused.json()["error"]
    assert {detail["field"] for detail in refused.json()["details"]} == {
        "sepal_len_cm",
        "sepal_length",
    }
    batch = predict(client, {"instances": [RENAMED, RENAMED]})
    assert [p["version"] for p in batch.json()["predictions"]] == [2, 2]
    trace = predict(client, RENAMED, path="trace")
    assert trace.status_code == 200
    assert trace.json()["version"] == 2

    old = predict(client, OLD, version=1)
    assert old.status_code == 200
    assert old.json()["version"] == 1
    # The same network: the same numbers, to float32 precision.
    assert old.json()["probabilities"] == pytest.approx(answer.json()["probabilities"], rel=1e-6)
    assert predict(client, RENAMED, version=1).status_code == 422
    assert predict(client, OLD, version=1, path="trace").json()["version"] == 1

    assert documented_features(client)[0] == "sepal_len_cm"


def test_an_added_feature_is_required_by_the_version_that_has_it(client, iris_root):
    five_features(iris_root, 2)
    reload(client)
    with_stem = OLD | {"stem_length": 4.0}

    answer = predict(client, with_stem)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    refused = predict(client, OLD)
    assert refused.status_code == 422
    assert refused.json()["field"] == "stem_length"
    assert predict(client, with_stem, path="trace").json()["version"] == 2
    assert predict(client, OLD, version=1).json()["version"] == 1
    assert predict(client, with_stem, version=1).status_code == 422
    assert "stem_length" in documented_features(client)


def test_relabelled_classes_answer_with_the_labels_of_the_version(client, iris_root):
    new_version(iris_root, 2, relabel)
    reload(client)
    new = predict(client, OLD).json()
    old = predict(client, OLD, version=1).json()
    assert (new["version"], new["label"]) == (2, "Iris setosa")
    assert (old["version"], old["label"]) == (1, "setosa")
    assert list(new["probabilities"]) == ["Iris setosa", "Iris versicolor", "Iris virginica"]


def test_a_narrowed_range_is_enforced_by_its_version_only(client, iris_root):
    new_version(iris_root, 2, narrow_petal_length)
    reload(client)
    refused = predict(client, OLD)
    assert refused.status_code == 422
    assert refused.json()["field"] == "petal_length"
    assert predict(client, OLD, version=1).status_code == 200
    schema = client.get("/openapi.json").json()["components"]["schemas"]["IrisFeatures"]
    assert schema["properties"]["petal_length"]["maximum"] == 1.0


def test_a_removed_version_takes_its_schema_with_it(client, iris_root):
    new_version(iris_root, 2, rename_sepal_length)
    reload(client)
    shutil.rmtree(iris_root / "iris" / "2")
    reload(client)
    assert predict(client, OLD).json()["version"] == 1
    assert predict(client, RENAMED).status_code == 422
    gone = predict(client, RENAMED, version=2)
    assert gone.status_code == 404
    assert documented_features(client)[0] == "sepal_length"


def test_a_version_that_cannot_answer_is_a_clear_error_whatever_the_body(client, iris_root):
    for body in (OLD, RENAMED, {"nonsense": 1}, []):
        missing = predict(client, body, version=9)
        assert missing.status_code == 404, missing.text
        assert "no version 9" in missing.json()["error"]
    for malformed in ("0", "abc", "", "1.5", "²"):
        refused = predict(client, OLD, path=f"predict?version={malformed}")
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "version"


def test_the_new_versions_answers_match_its_network(client, iris_root):
    five_features(iris_root, 2)
    reload(client)
    runtime = client.app.state.service.registry.resolve("iris", Asked(version=2))
    row = np.array([[5.1, 3.5, 1.4, 0.2, 4.0]], np.float32)
    expected = runtime.predict(row)[0]
    answer = predict(client, OLD | {"stem_length": 4.0}).json()
    np.testing.assert_allclose(list(answer["probabilities"].values()), expected, rtol=1e-6)


def test_the_version_is_read_as_the_route_reads_it(client, iris_root):
    """`?version=1.0`, ` 1` or a repeated `version` (the last counts) name version 1 to the
    route's validation: they get version 1's schema and answer, not the default's."""
    new_version(iris_root, 2, rename_sepal_length)
    reload(client)
    for query in ("version=1.0", "version=%201", "version=2&version=1", "version=+1"):
        answer = predict(client, OLD, path=f"predict?{query}")
        assert answer.status_code == 200, (query, answer.text)
        assert answer.json()["version"] == 1
        assert predict(client, RENAMED, path=f"predict?{query}").status_code == 422
