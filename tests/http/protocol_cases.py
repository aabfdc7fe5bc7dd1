"""The models under test, and for each one request with the typed endpoint's answer to it.

Shared by the TF Serving and Open Inference tests, which must return the same numbers as the
typed endpoints for the same input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.artifact import layout
from app.artifact.card import CARD_FILE, ModelCard
from app.core.settings import Settings
from tests import conftest
from training import PIPELINES

EXAMPLES = conftest.ROOT / "app" / "examples"
# Same input, same numbers; room only for a batch computed in another order.
RTOL, ATOL = 1e-5, 1e-6


def newest_version_dir(name: str) -> Path:
    versions = {
        number: path
        for number, path in layout.versions(conftest.MODELS / name).items()
        if (path / CARD_FILE).is_file()
    }
    return versions[max(versions)]


def model_names() -> list[str]:
    """Every model training makes, each committed with a card: iris and housing, mnist and
    catdog. A models folder without one of them is an error, not a reason to test fewer."""
    committed = sorted(
        path.name
        for path in conftest.MODELS.iterdir()
        if path.is_dir() and any((v / CARD_FILE).is_file() for v in layout.versions(path).values())
    )
    assert committed == sorted(PIPELINES), f"{conftest.MODELS} has cards for {committed} only"
    return committed


def newest_card(name: str) -> ModelCard:
    return ModelCard.read(newest_version_dir(name))


def quickest_model() -> str:
    """The model with the smallest SavedModel, for tests that start an app of their own."""
    return min(
        model_names(),
        key=lambda name: sum(f.stat().st_size for f in newest_version_dir(name).rglob("*")),
    )


def image_model_names() -> list[str]:
    return [name for name in model_names() if newest_card(name).input.kind == "image"]


@dataclass
class Case:
    """One request's input as the model sees it and the typed endpoint's answer."""

    card: ModelCard
    batch: np.ndarray  # float32, shaped as the card's input with the batch first
    expected: np.ndarray  # the serving_default output for the batch, from the typed endpoint
    image: bytes | None = None  # the encoded file behind batch[0], for image models

    @property
    def rows(self) -> list:
        return self.batch.tolist()


def _answer_row(card: ModelCard, prediction: dict) -> list[float]:
    if card.output.kind == "probabilities":
        return [prediction["probabilities"][label] for label in card.output.labels]
    return [prediction["value"]]


def typed_case(client, name: str) -> Case:
    """Ask the typed endpoint: two rows for a tabular model (the training means and minima),
    the committed example image for an image model (with the array the model saw)."""
    card = newest_card(name)
    if card.input.kind == "features":
        features = card.input.features
        rows = [
            {spec.name: spec.mean for spec in features},
            {spec.name: spec.observed_min for spec in features},
        ]
        response = client.post(f"/api/models/{name}/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        batch = np.array([[row[spec.name] for spec in features] for row in rows], np.float32)
        expected = np.array([_answer_row(card, p) for p in predictions], np.float32)
        return Case(card, batch, expected)
    example = next(iter(sorted(EXAMPLES.glob(f"{name}.*"))), None)
    assert example is not None, f"no example image for '{name}' in app/examples"
    data = example.read_bytes()
    response = client.post(
        f"/api/models/{name}/predict",
        params={"return_input": "true"},
        files={"file": (example.name, data)},
    )
    assert response.status_code == 200, response.text
    prediction = response.json()
    batch = np.array([prediction["model_input"]], np.float32)
    expected = np.array([_answer_row(card, prediction)], np.float32)
    return Case(card, batch, expected, image=data)


def assert_same_numbers(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, np.float32), expected, rtol=RTOL, atol=ATOL)


def small_limits_settings(root: Path, name: str) -> Settings:
    """Settings for an app on one model under test (linked, not copied) and a version that
    cannot load, with limits small enough to hit: 2 instances, and an answer of at most the
    prediction for 2 instances (less than any model's layer trace for one)."""
    version_dir = newest_version_dir(name)
    (root / name).mkdir()
    (root / name / version_dir.name).symlink_to(version_dir, target_is_directory=True)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / CARD_FILE).write_text("{}")
    prediction_size = math.prod(newest_card(name).layers[-1].output_shape[1:])
    return Settings(model_dir=root, max_instances=2, trace_max_values=2 * prediction_size)


_typed_cases: dict = {}


def cached_typed_case(client, name: str):
    """`typed_case`, asked once per session for each model."""
    if name not in _typed_cases:
        _typed_cases[name] = typed_case(client, name)
    return _typed_cases[name]
