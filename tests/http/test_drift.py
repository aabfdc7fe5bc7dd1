"""GET /api/models/{name}/drift through the app, on the committed models: the issue's two
behavioural checks on housing's held-out sample, the answer's shape, and every transport's
predictions counted in the same window."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.dataplane.schemas import ModelDrift
from app.http.app import create_app
from tests.conftest import MODELS

CHUNK = 100  # rows per typed batch request


@pytest.fixture
def housing_client():
    """A fresh app serving housing only, so its window holds this test's predictions alone."""
    with TestClient(create_app(Settings(model_dir=MODELS, models=["housing"]))) as client:
        yield client


def send(client: TestClient, rows: np.ndarray) -> None:
    card = client.get("/api/models/housing/card").json()
    names = [feature["name"] for feature in card["input"]["features"]]
    for start in range(0, len(rows), CHUNK):
        instances = [dict(zip(names, map(float, row), strict=True)) for row in rows[start:][:CHUNK]]
        response = client.post("/api/models/housing/predict", json={"instances": instances})
        assert response.status_code == 200, response.text


def drift(client: TestClient, name: str = "housing") -> ModelDrift:
    response = client.get(f"/api/models/{name}/drift")
    assert response.status_code == 200
    return ModelDrift.model_validate(response.json())


def test_the_held_out_sample_keeps_every_figure_under_its_threshold(housing_client, housing_sample):
    send(housing_client, housing_sample["x_test"])
    answer = drift(housing_client)
    assert answer.rows == len(housing_sample["x_test"])
    assert answer.enough_data
    # The familiarity scores come from the same model calls (the card's `familiarity` block).
    assert {figure.kind for figure in answer.figures} == {"feature", "prediction", "familiarity"}
    assert all(figure.psi < figure.threshold for figure in answer.figures)
    assert answer.crossed == []


def test_one_feature_shifted_by_two_deviations_crosses_its_threshold_alone(
    housing_client, housing_sample
):
    rows = housing_sample["x_test"].copy()
    house_age = 1
    rows[:, house_age] += 2 * rows[:, house_age].std()
    send(housing_client, rows)
    answer = drift(housing_client)
    features = [figure for figure in answer.figures if figure.kind == "feature"]
    assert [figure.name for figure in features if figure.crossed] == ["HouseAge"]
    assert "HouseAge" in answer.crossed


def test_a_window_with_too_few_predictions_says_not_enough_data(housing_client, housing_sample):
    send(housing_client, housing_sample["x_test"][:10])
    answer = drift(housing_client)
    assert (answer.rows, answer.seen, answer.enough_data) == (10, 10, False)
    assert answer.min_rows == 200
    assert all(figure.psi is None and figure.crossed is None for figure in answer.figures)
    assert answer.crossed == []


def test_an_unknown_model_is_404(app_client):
    response = app_client.get("/api/models/no-such-model/drift")
    assert response.status_code == 404
    assert "no-such-model" in response.text


@pytest.mark.parametrize("name", ["iris", "mnist", "catdog"])
def test_a_classifier_compares_its_predicted_classes_with_the_training_priors(app_client, name):
    answer = drift(app_client, name)
    card = app_client.get(f"/api/models/{name}/card").json()
    (classes,) = [figure for figure in answer.figures if figure.kind == "predicted_class"]
    assert classes.bins == card["output"]["labels"]
    assert classes.training == card["drift"]["classes"]["priors"]
    assert classes.threshold == card["drift"]["thresholds"]["psi"]
    assert answer.window_size == 1000


def test_every_transport_feeds_the_same_window(app_client):
    flowers = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    before = drift(app_client, "iris").seen
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    typed = dict(zip(names, flowers[0], strict=True))
    assert app_client.post("/api/models/iris/predict", json=typed).status_code == 200
    tensor = {
        "name": "features",
        "shape": [2, 4],
        "datatype": "FP32",
        "data": flowers[0] + flowers[1],
    }
    assert app_client.post("/v2/models/iris/infer", json={"inputs": [tensor]}).status_code == 200
    tf_serving = {"instances": flowers}
    assert app_client.post("/v1/models/iris:predict", json=tf_serving).status_code == 200
    assert drift(app_client, "iris").seen == before + 1 + 2 + 2


def test_inputs_outside_the_training_data_move_the_familiarity_figure(
    housing_client, housing_sample
):
    rows = housing_sample["x_test"].copy()
    rows[:, 0] = np.minimum(rows[:, 0] * 3, 22.0)  # MedInc tripled, within the accepted range
    send(housing_client, rows)
    figure = next(f for f in drift(housing_client).figures if f.kind == "familiarity")
    assert figure.crossed
