"""The typed endpoints through the app's lifespan on the committed models."""

import io

import numpy as np
import pytest
from PIL import Image

from app.dataplane.schemas import BatchPrediction, ClassPrediction, LayerTrace, ValuePrediction
from app.http.schemas import ModelList
from tests.conftest import ROOT
from tests.savedmodel_checks import ACTIVATIONS

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VERSICOLOR = {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4}
VIRGINICA = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
HOUSING_FEATURES = [
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
]


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def digit_on_paper(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An MNIST digit as dark ink on light paper, enlarged, off centre on a bigger canvas."""
    scale = int(rng.integers(2, 5))
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (200, 160), int(rng.integers(215, 250)))
    left = int(rng.integers(0, 200 - ink.width))
    top = int(rng.integers(0, 160 - ink.height))
    paper = np.asarray(canvas, dtype=np.float32)
    patch = np.asarray(ink, dtype=np.float32)
    region = paper[top : top + ink.height, left : left + ink.width]
    paper[top : top + ink.height, left : left + ink.width] = np.minimum(region, patch)
    return png_bytes(Image.fromarray(paper.astype(np.uint8)).convert("RGB"))


def test_model_list_names_every_committed_model(app_client):
    body = ModelList.model_validate(app_client.get("/api/models").json())
    assert {model.name for model in body.models} == {"iris", "housing", "mnist", "catdog"}
    assert all(model.versions[-1].state == "ready" for model in body.models)


def test_model_card_is_served(app_client):
    card = app_client.get("/api/models/iris/card").json()
    assert card["output"]["labels"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("flower", "species"),
    [(SETOSA, "setosa"), (VERSICOLOR, "versicolor"), (VIRGINICA, "virginica")],
)
def test_iris_known_flowers_get_their_species(app_client, flower, species):
    response = app_client.post("/api/models/iris/predict", json=flower)
    assert response.status_code == 200
    prediction = ClassPrediction.model_validate(response.json())
    assert prediction.label == species
    assert prediction.probabilities[species] == max(prediction.probabilities.values())
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_iris_batch_answers_in_order(app_client):
    response = app_client.post(
        "/api/models/iris/predict", json={"instances": [SETOSA, VIRGINICA, VERSICOLOR]}
    )
    body = BatchPrediction.model_validate(response.json())
    assert [p.label for p in body.predictions] == ["setosa", "virginica", "versicolor"]


def test_housing_error_on_committed_rows_is_close_to_the_card(app_client, housing_sample):
    instances = [
        dict(zip(HOUSING_FEATURES, map(float, row), strict=True))
        for row in housing_sample["x_test"]
    ]
    response = app_client.post("/api/models/housing/predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = BatchPrediction.model_validate(response.json()).predictions
    values = np.array([p.value for p in predictions])
    rmse = float(np.sqrt(np.mean((values - housing_sample["y_test"]) ** 2)))
    card_rmse = app_client.get("/api/models/housing/card").json()["metrics"]["rmse"]
    assert rmse <= card_rmse + 0.06
    first = ValuePrediction.model_validate(predictions[0])
    assert first.dollars == pytest.approx(first.value * 100_000, rel=1e-6)


def test_mnist_reads_digits_drawn_dark_on_light_off_centre(app_client, mnist_sample):
    rng = np.random.default_rng(7)
    correct = 0
    for digit, label in zip(mnist_sample["x_test"], mnist_sample["y_test"], strict=True):
        response = app_client.post(
            "/api/models/mnist/predict",
            files={"file": ("digit.png", digit_on_paper(digit, rng), "image/png")},
        )
        assert response.status_code == 200, response.text
        correct += response.json()["label"] == str(label)
    assert correct / len(mnist_sample["y_test"]) >= 0.97


def test_mnist_returns_the_image_the_model_saw(app_client, mnist_sample):
    digit = mnist_sample["x_test"][0]
    response = app_client.post(
        "/api/models/mnist/predict?return_input=true",
        files={"file": ("d.png", png_bytes(Image.fromarray(255 - digit)), "image/png")},
    )
    seen = np.array(response.json()["model_input"])
    assert seen.shape == (28, 28)
    assert seen.max() > 200
    assert seen[0].max() == 0


def test_mnist_json_pixels_and_base64_agree_with_upload(app_client, mnist_sample):
    import base64

    digit = mnist_sample["x_test"][1]
    by_pixels = app_client.post(
        "/api/models/mnist/predict/json", json={"pixels": digit.tolist()}
    ).json()
    assert by_pixels["label"] == str(mnist_sample["y_test"][1])
    encoded = base64.b64encode(png_bytes(Image.fromarray(255 - digit))).decode()
    by_base64 = app_client.post(
        "/api/models/mnist/predict/json", json={"image_base64": encoded}
    ).json()
    assert by_base64["label"] == by_pixels["label"]


def test_catdog_committed_photos_reach_the_card_accuracy(app_client, catdog_photos):
    correct = 0
    for path, label in catdog_photos:
        response = app_client.post(
            "/api/models/catdog/predict", files={"file": (path.name, path.read_bytes())}
        )
        assert response.status_code == 200, response.text
        correct += response.json()["label"] == label
    card = app_client.get("/api/models/catdog/card").json()
    assert correct / len(catdog_photos) >= card["target"]["value"]


def test_catdog_honours_exif_orientation(app_client, catdog_photos):
    path, _ = catdog_photos[0]
    photo = Image.open(path)
    upright = app_client.post(
        "/api/models/catdog/predict", files={"file": ("a.jpg", path.read_bytes())}
    ).json()
    # Stored rotated, with the EXIF tag that says how to turn it back.
    rotated = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", quality=95, exif=exif)
    tagged = app_client.post(
        "/api/models/catdog/predict", files={"file": ("b.jpg", buffer.getvalue())}
    ).json()
    assert tagged["probabilities"]["cat"] == pytest.approx(upright["probabilities"]["cat"], abs=0.1)


@pytest.mark.parametrize("name", ["iris", "housing"])
def test_trace_dense_layers_recompute_from_the_returned_weights(app_client, name):
    card = app_client.get(f"/api/models/{name}/card").json()
    instance = {f["name"]: f["mean"] for f in card["input"]["features"]}
    response = app_client.post(f"/api/models/{name}/trace?weights=true", json=instance)
    trace = LayerTrace.model_validate(response.json())
    assert [layer.name for layer in trace.layers] == [layer["name"] for layer in card["layers"]]
    previous = np.array([instance[f["name"]] for f in card["input"]["features"]])
    for layer in trace.layers:
        values = np.array(layer.values)
        if layer.type == "Dense":
            kernel, bias = np.array(layer.weights["kernel"]), np.array(layer.weights["bias"])
            expected = ACTIVATIONS[layer.activation](previous @ kernel + bias)
            np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4)
        previous = values
    predicted = app_client.post(f"/api/models/{name}/predict", json=instance).json()
    last = np.array(trace.layers[-1].values).reshape(-1)
    if name == "iris":
        np.testing.assert_allclose(last, list(predicted["probabilities"].values()), rtol=1e-5)
    else:
        assert last[0] == pytest.approx(predicted["value"], rel=1e-5)


def test_image_trace_summarises_large_layers_and_ends_in_the_prediction(app_client):
    photo = (ROOT / "app" / "examples" / "catdog.jpg").read_bytes()
    response = app_client.post("/api/models/catdog/trace", files={"file": ("c.jpg", photo)})
    assert response.status_code == 200
    trace = LayerTrace.model_validate(response.json())
    conv = next(layer for layer in trace.layers if layer.type == "Conv2D")
    assert conv.values is None
    assert len(conv.slice) == 64
    assert conv.size > 4096
    assert conv.summary.min <= conv.summary.mean <= conv.summary.max
    probabilities = trace.layers[-1].values
    assert probabilities == pytest.approx(list(trace.prediction.probabilities.values()), rel=1e-5)
