"""The committed models: complete cards, intact files, and targets met on held-out samples."""

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.artifact import layout
from app.artifact.card import ModelCard, hash_files
from tests.conftest import FIXTURES, MODELS
from tests.savedmodel_checks import check_dense_layers
from training import PIPELINES, calibration, catdog, iris

NAMES = sorted(PIPELINES)


def newest(name: str) -> Path:
    versions = layout.versions(MODELS / name)
    return versions[max(versions)]


@cache
def serving(name: str):
    path = newest(name)
    card = ModelCard.read(path)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def predict(x: np.ndarray) -> np.ndarray:
        return signature(**{card.input.name: tf.constant(x, tf.float32)})[card.output.name].numpy()

    return card, predict


@pytest.mark.parametrize("name", NAMES)
def test_card_is_complete(name):
    card = ModelCard.read(newest(name))
    assert card.name == name
    assert card.layers
    assert card.baselines
    assert card.metrics
    assert card.data["source"]
    assert card.data["split_sizes"]["test"] > 0
    assert {"seed", "epochs"} <= set(card.training) or "max_epochs" in card.training
    assert set(card.library_versions) >= {"tensorflow", "keras", "numpy"}
    if card.input.kind == "features":
        assert all(f.unit and f.allowed_min < f.allowed_max for f in card.input.features)
    else:
        assert card.input.image is not None
    if card.output.kind == "probabilities":
        assert len(card.output.labels) == card.layers[-1].output_shape[-1]


@pytest.mark.parametrize("name", NAMES)
def test_files_match_the_card_hashes(name):
    path = newest(name)
    assert hash_files(path) == ModelCard.read(path).files


@pytest.mark.parametrize("name", NAMES)
def test_recorded_test_metric_meets_the_target(name):
    card = ModelCard.read(newest(name))
    assert card.target.met(card.metrics[card.target.metric])


@pytest.mark.parametrize("name", NAMES)
def test_dense_layers_recompute_in_numpy(name):
    card, _ = serving(name)
    shape = [2, *card.input.shape[1:]]
    x = np.random.default_rng(0).uniform(0, 255 if card.input.image else 1, shape)
    if card.input.features:
        low = np.array([f.observed_min for f in card.input.features])
        high = np.array([f.observed_max for f in card.input.features])
        x = low + (high - low) * np.random.default_rng(0).uniform(size=shape)
    assert check_dense_layers(newest(name), x.astype(np.float32)) >= 1


def test_iris_reaches_its_target_on_the_test_split():
    splits = iris.load_data(None, seed=42)
    _, predict = serving("iris")
    accuracy = np.mean(predict(splits.x_test).argmax(axis=1) == splits.y_test)
    assert accuracy >= 0.93


def test_housing_reaches_its_target_on_500_test_rows(housing_sample):
    _, predict = serving("housing")
    predicted = predict(housing_sample["x_test"]).reshape(-1)
    rmse = np.sqrt(np.mean((predicted - housing_sample["y_test"]) ** 2))
    assert rmse <= 0.50


def test_mnist_reaches_its_target_on_200_test_digits(mnist_sample):
    _, predict = serving("mnist")
    accuracy = np.mean(predict(mnist_sample["x_test"]).argmax(axis=1) == mnist_sample["y_test"])
    assert accuracy >= 0.99


def test_catdog_reaches_its_target_on_100_test_photos():
    x, y = catdog.load_folder(FIXTURES / "catdog" / "test")
    _, predict = serving("catdog")
    assert np.mean(predict(x).argmax(axis=1) == y) >= 0.85


# Behaviour: invariances and directions a user would expect.


def test_mnist_digit_shifted_by_two_pixels_keeps_its_label(mnist_sample):
    _, predict = serving("mnist")
    digits = mnist_sample["x_test"]
    before = predict(digits).argmax(axis=1)
    for axis, step in ((1, 2), (1, -2), (2, 2), (2, -2)):
        after = predict(np.roll(digits, step, axis=axis)).argmax(axis=1)
        assert np.mean(after == before) >= 0.97


def test_catdog_mirror_image_keeps_its_label():
    x, _ = catdog.load_folder(FIXTURES / "catdog" / "test")
    _, predict = serving("catdog")
    photos, mirrors = predict(x), predict(x[:, :, ::-1])
    if "mirror_mean" in [layer.name for layer in ModelCard.read(newest("catdog")).layers]:
        # The served model averages each photo with its mirror: the same answer by construction.
        np.testing.assert_allclose(photos, mirrors, atol=1e-5)
    assert np.mean(photos.argmax(axis=1) == mirrors.argmax(axis=1)) >= 0.97


def test_housing_higher_median_income_mostly_raises_the_price(housing_sample):
    """Measured, not guaranteed: the MLP is not monotone in income. On the committed rows +$10k
    raises the price for 85% of blocks; the rest are mostly low-income coastal blocks."""
    _, predict = serving("housing")
    rows = housing_sample["x_test"]
    richer = rows.copy()
    richer[:, 0] += 1.0  # +$10,000 median income
    change = predict(richer).reshape(-1) - predict(rows).reshape(-1)
    assert np.mean(change > 0) >= 0.8
    assert change.mean() > 0.05


def test_iris_small_measurement_noise_keeps_the_species():
    splits = iris.load_data(None, seed=42)
    _, predict = serving("iris")
    noise = np.random.default_rng(1).normal(0, 0.05, splits.x_test.shape).astype(np.float32)
    before = predict(splits.x_test).argmax(axis=1)
    after = predict(splits.x_test + noise).argmax(axis=1)
    assert np.mean(before == after) >= 0.95


# Calibration: the temperature in the export, the error it leaves on the test split.

CLASSIFIERS = [name for name in NAMES if name != "housing"]
ECE_TARGET = 0.03


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_card_records_its_calibration(name):
    card = ModelCard.read(newest(name))
    recorded = card.calibration
    assert recorded is not None
    assert recorded.fit_split == "validation"
    assert recorded.bins == 15
    assert [layer.name for layer in card.layers][-2:] == ["temperature", card.layers[-1].name]
    assert sum(b.count for b in recorded.reliability_after) == card.data["split_sizes"]["test"]
    assert recorded.nll_after <= recorded.nll_before + 1e-3


def judged_ece(card: ModelCard) -> float:
    """The ECE the target is judged on: the pooled out-of-fold one where the card has it (iris,
    whose 30 test flowers cannot resolve 0.03), else the test split's."""
    recorded = card.calibration
    return recorded.out_of_fold.ece if recorded.out_of_fold else recorded.ece_after


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                strict=True,
                reason="judged on pooled out-of-fold answers over the 120 non-test flowers "
                "(5 folds, each net trained and its temperature fitted without its fold), iris's "
                "ECE is 0.040 (bootstrap 95% interval 0.027 to 0.091; 0.077 at T = 1): the "
                "temperature fitted on each fold's 19 or 20 held-out flowers ranges from 0.05 "
                "(the fit's bound: a held-out part with no wrong flower) to 4.99",
            ),
        )
        if name == "iris"
        else name
        for name in CLASSIFIERS
    ],
)
def test_recorded_calibration_error_meets_the_target(name):
    assert judged_ece(ModelCard.read(newest(name))) <= ECE_TARGET


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_card_gives_its_test_ece_with_a_bootstrap_interval(name):
    card = ModelCard.read(newest(name))
    interval = card.calibration.ece_interval
    assert interval is not None
    assert interval.ece == pytest.approx(card.calibration.ece_after, abs=1e-4)
    assert interval.low <= interval.ece <= interval.high
    assert interval.rows == card.data["split_sizes"]["test"]
    assert interval.resamples >= 1000


def test_iris_card_judges_its_ece_on_every_non_test_flower_out_of_fold():
    card = ModelCard.read(newest("iris"))
    pooled = card.calibration.out_of_fold
    sizes = card.data["split_sizes"]
    assert pooled.rows == sizes["train"] + sizes["validation"] == 120
    assert sum(b.count for b in pooled.reliability) == 120
    assert pooled.folds == len(pooled.temperatures) == 5
    assert pooled.low <= pooled.ece <= pooled.high


@pytest.mark.parametrize("name", NAMES)
def test_card_has_the_training_distribution_drift_compares_with(name):
    card = ModelCard.read(newest(name))
    reference = card.drift
    assert reference is not None
    assert reference.thresholds.psi == 0.2
    assert f"seed {card.training['seed']}" in reference.split
    if card.input.features is not None:
        assert [f.name for f in reference.features] == [f.name for f in card.input.features]
        for feature in reference.features:
            assert len(feature.proportions) == len(feature.edges) + 1
            assert sum(feature.proportions) == pytest.approx(1.0, abs=1e-5)
    if card.output.labels is not None:
        assert reference.classes.labels == card.output.labels
        assert sum(reference.classes.priors) == pytest.approx(1.0, abs=1e-5)
    else:
        assert reference.prediction is not None


def test_iris_card_calibration_is_what_the_served_model_gives_on_its_test_split():
    splits = iris.load_data(None, seed=42)
    card, predict = serving("iris")
    probabilities = predict(splits.x_test).astype(np.float64)
    assert calibration.ece(probabilities, splits.y_test) == pytest.approx(
        card.calibration.ece_after, abs=1e-4
    )
    table = calibration.reliability(probabilities, splits.y_test)
    assert [b.count for b in table] == [b.count for b in card.calibration.reliability_after]


def test_mnist_is_calibrated_on_200_test_digits(mnist_sample):
    _, predict = serving("mnist")
    probabilities = predict(mnist_sample["x_test"]).astype(np.float64)
    assert calibration.ece(probabilities, mnist_sample["y_test"]) <= ECE_TARGET


def test_catdog_is_calibrated_on_100_test_photos():
    """100 photos resolve the ECE only to a few hundredths, hence the wider bound here."""
    x, y = catdog.load_folder(FIXTURES / "catdog" / "test")
    _, predict = serving("catdog")
    assert calibration.ece(predict(x).astype(np.float64), y) <= 0.06
