"""The committed models' familiarity: the card's block as the contract says, its statistics
hashed, held-out inputs familiar and inputs no model was made for flagged (with margins: the
threshold keeps 95% of validation inputs familiar, so about 5% of held-out ones are not)."""

from functools import cache

import numpy as np
import pytest

from app.artifact import layout
from app.artifact.familiarity import FAMILIARITY_FILE
from app.runtime.model import ModelRuntime
from tests.conftest import FIXTURES, MODELS
from training import PIPELINES, catdog, iris

NAMES = sorted(PIPELINES)
METHODS = {
    "iris": "input_mahalanobis",
    "housing": "input_mixture",
    "mnist": "feature_ensemble",
    "catdog": "class_mahalanobis",
}


@cache
def runtime(name: str) -> ModelRuntime:
    versions = layout.versions(MODELS / name)
    loaded = ModelRuntime(name, max(versions), versions[max(versions)])
    loaded.load()
    assert loaded.ready, loaded.reason
    return loaded


def familiar(name: str, batch: np.ndarray) -> np.ndarray:
    model = runtime(name)
    scores = model.predict_scored(batch.astype(np.float32)).familiarity
    assert scores is not None
    assert model.familiarity is not None
    return model.familiarity.familiar(scores.score, model.familiarity.outside_mask(batch))


@pytest.mark.parametrize("name", NAMES)
def test_card_block_is_the_contract_and_its_statistics_are_hashed(name):
    card = runtime(name).loaded_card
    block = card.familiarity
    assert block is not None
    assert block.method == METHODS[name]
    assert block.higher_is_less_familiar is True
    quantiles = block.validation_quantiles
    assert len(quantiles) == 101
    assert quantiles == sorted(quantiles)
    # The threshold is the validation split's 95th percentile: 95% of it counts as familiar.
    assert block.threshold == pytest.approx(quantiles[95])
    assert block.threshold_split == "validation"
    assert FAMILIARITY_FILE in card.files
    assert block.test_familiar is not None
    assert 0.85 <= block.test_familiar <= 1.0
    assert {row.name for row in block.measured}, "python -m bench.familiarity --record"


def test_held_out_digits_are_familiar_and_noise_blank_and_inverted_pages_are_not():
    with np.load(FIXTURES / "mnist_sample.npz") as data:
        digits = data["x_test"]
    assert familiar("mnist", digits).mean() >= 0.85
    noise = np.random.default_rng(0).uniform(0, 255, (50, 28, 28))
    assert familiar("mnist", noise).mean() <= 0.05
    assert familiar("mnist", 255 - digits[:50]).mean() <= 0.2
    assert not familiar("mnist", np.full((1, 28, 28), 255.0))[0]


def test_held_out_pets_are_familiar_and_noise_and_digits_are_not():
    photos, _ = catdog.load_folder(FIXTURES / "catdog" / "test")
    assert familiar("catdog", photos).mean() >= 0.8
    noise = np.random.default_rng(0).uniform(0, 255, (20, 96, 96, 3))
    assert familiar("catdog", noise).mean() <= 0.05
    with np.load(FIXTURES / "mnist_sample.npz") as data:
        digits = data["x_test"][:20]
    as_photos = np.repeat(np.kron(digits, np.ones((4, 4)))[:, 8:104, 8:104, None], 3, axis=-1)
    assert familiar("catdog", as_photos[:, :96, :96]).mean() <= 0.2


def test_held_out_flowers_are_familiar_and_shifted_ones_are_not():
    x_test = iris.load_data(None, seed=42).x_test
    assert familiar("iris", x_test).mean() >= 0.8
    petals_swapped = x_test[:, [0, 1, 3, 2]]  # petal length and width exchanged
    assert familiar("iris", petals_swapped).mean() <= 0.2


def test_held_out_blocks_are_familiar_and_a_swapped_location_is_not():
    with np.load(FIXTURES / "housing_sample.npz") as data:
        x_test = data["x_test"]
    assert familiar("housing", x_test).mean() >= 0.85
    swapped = x_test.copy()
    swapped[:, [1, 5]] = swapped[:, [5, 1]]  # house age and occupancy exchanged
    assert familiar("housing", swapped).mean() <= 0.2


def test_a_housing_answer_names_the_features_outside_the_training_range():
    model = runtime("housing")
    quantiles = model.loaded_card.familiarity.feature_quantiles
    row = np.array([[values[4] for values in quantiles.values()]])  # the medians
    row[0, 0] = quantiles["MedInc"][-1] * 1.2
    assert model.familiarity.named(model.familiarity.outside_mask(row)) == [["MedInc"]]
