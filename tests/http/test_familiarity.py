"""`familiarity` on every surface of the committed models: the typed answers, traces and
explanations always; TF Serving and v2 only when a request names the output, so existing
clients get what they got before."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from app.dataplane.schemas import ClassPrediction, InputFamiliarity, LayerTrace, ValuePrediction
from tests.http.protocol_cases import cached_typed_case, newest_card

FIELDS = {"score", "threshold", "familiar", "percentile"}


def iris_row(**changed) -> dict:
    return {spec.name: spec.mean for spec in newest_card("iris").input.features} | changed


def noise_png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def familiarity_of(body: dict) -> InputFamiliarity:
    return InputFamiliarity.model_validate(body["familiarity"])


def test_a_typical_flower_is_familiar_and_an_odd_one_is_not_and_says_which_feature(app_client):
    card = newest_card("iris")
    usual = app_client.post("/api/models/iris/predict", json=iris_row())
    assert usual.status_code == 200, usual.text
    familiar = familiarity_of(ClassPrediction.model_validate(usual.json()).model_dump())
    assert familiar.familiar
    assert familiar.score < familiar.threshold
    assert familiar.threshold == pytest.approx(card.familiarity.threshold)
    assert familiar.features_outside == []
    assert familiar.nearest_class is None
    # Accepted (inside the allowed range) but far past every training flower's petal.
    petal = next(spec for spec in card.input.features if spec.name == "petal_length")
    odd = iris_row(sepal_length=4.5, petal_length=petal.observed_max + 2.0)
    answer = familiarity_of(app_client.post("/api/models/iris/predict", json=odd).json())
    assert not answer.familiar
    assert answer.percentile == 100
    assert answer.features_outside == ["petal_length"]


def test_each_instance_of_a_batch_carries_its_own_familiarity(app_client):
    rows = [iris_row(), iris_row(petal_length=9.0), iris_row()]
    body = app_client.post("/api/models/iris/predict", json={"instances": rows}).json()
    assert [p["familiarity"]["familiar"] for p in body["predictions"]] == [True, False, True]


def test_a_housing_block_of_typical_values_is_familiar(app_client):
    row = {spec.name: spec.mean for spec in newest_card("housing").input.features}
    body = app_client.post("/api/models/housing/predict", json=row).json()
    ValuePrediction.model_validate(body)
    assert familiarity_of(body).familiar


def test_noise_sent_to_mnist_gets_a_digit_but_is_flagged_and_the_example_is_not(app_client):
    example = app_client.post(
        "/api/models/mnist/predict", files={"file": ("mnist.png", cached_image("mnist"))}
    ).json()
    noise = app_client.post(
        "/api/models/mnist/predict", files={"file": ("noise.png", noise_png(), "image/png")}
    ).json()
    assert familiarity_of(example).familiar
    flagged = familiarity_of(noise)
    assert not flagged.familiar
    assert flagged.percentile > 99
    assert flagged.nearest_class in newest_card("mnist").output.labels
    assert set(noise["familiarity"]) >= FIELDS | {"nearest_class"}


def cached_image(name: str) -> bytes:
    from tests.http.protocol_cases import EXAMPLES

    return next(iter(sorted(EXAMPLES.glob(f"{name}.*")))).read_bytes()


def test_the_trace_and_the_explanation_carry_the_same_familiarity_as_the_prediction(app_client):
    predicted = app_client.post("/api/models/iris/predict", json=iris_row()).json()
    traced = app_client.post("/api/models/iris/trace", json=iris_row()).json()
    explained = app_client.post("/api/models/iris/explain", json=iris_row()).json()
    LayerTrace.model_validate(traced)
    for other in (traced, traced["prediction"], explained):
        assert other["familiarity"]["score"] == pytest.approx(
            predicted["familiarity"]["score"], rel=1e-4
        )


def test_an_image_trace_scores_from_its_layers_as_the_prediction_does(app_client):
    data = cached_image("catdog")
    predicted = app_client.post("/api/models/catdog/predict", files={"file": ("c.jpg", data)})
    traced = app_client.post("/api/models/catdog/trace", files={"file": ("c.jpg", data)})
    assert traced.status_code == 200, traced.text
    score = predicted.json()["familiarity"]["score"]
    assert traced.json()["familiarity"]["score"] == pytest.approx(score, rel=1e-3)
    assert traced.json()["familiarity"]["nearest_class"] in ("cat", "dog")


@pytest.mark.parametrize("name", ["iris", "mnist"])
def test_tf_serving_answers_familiarity_only_when_the_output_filter_names_it(app_client, name):
    case = cached_typed_case(app_client, name)
    plain = app_client.post(f"/v1/models/{name}:predict", json={"instances": case.rows})
    assert plain.status_code == 200, plain.text
    assert isinstance(plain.json()["predictions"][0], list)  # the lone output, unnamed
    body = {"instances": case.rows, "output_filter": [case.card.output.name, "familiarity"]}
    asked = app_client.post(f"/v1/models/{name}:predict", json=body)
    assert asked.status_code == 200, asked.text
    for row, plain_row in zip(
        asked.json()["predictions"], plain.json()["predictions"], strict=True
    ):
        assert row[case.card.output.name] == pytest.approx(plain_row, rel=1e-5, abs=1e-6)
        InputFamiliarity.model_validate(json.loads(row["familiarity"]))
    alone = app_client.post(
        f"/v1/models/{name}:predict", json={"inputs": case.rows, "output_filter": ["familiarity"]}
    )
    # A tabular case's second row has every feature at its training minimum at once.
    expected = [True, False][: len(case.rows)]
    assert [json.loads(row)["familiar"] for row in alone.json()["outputs"]] == expected


def test_tf_serving_refuses_an_output_the_signature_does_not_have(app_client):
    case = cached_typed_case(app_client, "iris")
    body = {"instances": case.rows, "signature_name": "trace", "output_filter": ["familiarity"]}
    response = app_client.post("/v1/models/iris:predict", json=body)
    assert response.status_code == 400, response.text
    assert "familiarity" in response.text


@pytest.mark.parametrize("name", ["housing", "catdog"])
def test_v2_answers_familiarity_only_when_outputs_name_it(app_client, name):
    case = cached_typed_case(app_client, name)
    inputs = [
        {
            "name": case.card.input.name,
            "datatype": "FP32",
            "shape": list(case.batch.shape),
            "data": case.batch.reshape(-1).tolist(),
        }
    ]
    plain = app_client.post(f"/v2/models/{name}/infer", json={"inputs": inputs}).json()
    assert [output["name"] for output in plain["outputs"]] == [case.card.output.name]
    asked = app_client.post(
        f"/v2/models/{name}/infer",
        json={"inputs": inputs, "outputs": [{"name": "familiarity"}]},
    )
    assert asked.status_code == 200, asked.text
    (output,) = asked.json()["outputs"]
    assert output["name"] == "familiarity"
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [len(case.batch)]
    answers = [InputFamiliarity.model_validate(json.loads(row)) for row in output["data"]]
    # A tabular case's second row has every feature at its training minimum at once.
    assert [answer.familiar for answer in answers] == [True, False][: len(case.batch)]
