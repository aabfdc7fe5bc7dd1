"""The explanation methods on the committed models (app/dataplane/explain.py): integrated
gradients' completeness, the deletion test of faithfulness, the model-randomisation sanity test,
and counterfactuals that do what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.dataplane import explain
from app.runtime.model import ModelRuntime
from tests import conftest

# Steps at which the trapezoid rule meets the completeness bounds on these models: the ReLU
# networks' gradients are piecewise constant, so the error falls only as 1/steps.
STEPS = {"iris": 4096, "housing": 4096, "mnist": 256, "catdog": 128}
BOUND = {"iris": 0.02, "housing": 0.02, "mnist": 0.02, "catdog": 0.05}


@pytest.fixture(scope="module")
def runtimes():
    loaded = {}
    for name in STEPS:
        runtime = ModelRuntime(name, 1, conftest.MODELS / name / "1")
        runtime.load()
        assert runtime.ready, runtime.reason
        loaded[name] = runtime
    return loaded


def inputs(name: str, runtime: ModelRuntime, count: int) -> np.ndarray:
    card = runtime.loaded_card
    if name in ("mnist", "housing"):
        with np.load(conftest.FIXTURES / f"{name}_sample.npz") as data:
            return data["x_test"][:count].astype(np.float32)
    rng = np.random.default_rng(0)
    if name == "iris":
        return np.array(
            [
                [
                    s.observed_min + rng.random() * (s.observed_max - s.observed_min)
                    for s in card.input.features
                ]
                for _ in range(count)
            ],
            np.float32,
        )
    photos = sorted(Path(conftest.FIXTURES / "catdog").rglob("*.jpg"))[:count]
    service_card = card
    from app.artifact import imaging

    return np.stack(
        [
            imaging.preprocess(
                imaging.decode(p.read_bytes(), max_bytes=10**7, max_pixels=10**8),
                service_card.input.image_spec,
            )
            for p in photos
        ]
    ).astype(np.float32)


@pytest.mark.parametrize("name", list(STEPS))
def test_integrated_gradients_add_up_to_the_change_of_the_output(runtimes, name):
    runtime = runtimes[name]
    errors = []
    for row in inputs(name, runtime, 20):
        output = explain.target_index(runtime.loaded_card, runtime.predict(row[None])[0], None)
        attribution = explain.integrated_gradients(runtime, row, output, STEPS[name])
        change = attribution.output - attribution.baseline_output
        errors.append(abs(attribution.values.sum() - change) / max(abs(change), 1e-6))
    assert max(errors) <= BOUND[name], errors


@pytest.mark.parametrize("method", explain.IMAGE_METHODS)
def test_blanking_the_most_attributed_pixels_hurts_more_than_blanking_random_ones(runtimes, method):
    runtime = runtimes["mnist"]
    rng = np.random.default_rng(0)
    count = int(0.1 * 28 * 28)
    top_drops, random_drops = [], []
    for row in inputs("mnist", runtime, 50):
        probabilities = runtime.predict(row[None])[0]
        label = int(np.argmax(probabilities))
        values = attribute(runtime, row, label, method)
        for chosen, drops in (
            (np.argsort(values.reshape(-1))[::-1][:count], top_drops),
            (rng.choice(row.size, count, replace=False), random_drops),
        ):
            blanked = row.reshape(-1).copy()
            blanked[chosen] = 0  # no ink
            drops.append(
                probabilities[label] - runtime.predict(blanked.reshape(row.shape)[None])[0][label]
            )
    assert np.mean(top_drops) > np.mean(random_drops)


def attribute(runtime, row, label, method):
    if method == "integrated_gradients":
        return explain.integrated_gradients(runtime, row, label, 128).values
    if method == "gradient_x_input":
        return explain.gradient_x_input(runtime, row, label).values
    if method == "smoothgrad":
        return explain.smoothgrad(runtime, row, label, 32).values
    return explain.grad_cam(runtime, row, label).values


def test_grad_cam_is_offered_where_the_head_can_be_reapplied(runtimes):
    for name in ("mnist", "catdog"):
        assert "grad_cam" in explain.methods(runtimes[name].loaded_card)
    assert explain.methods(runtimes["iris"].loaded_card) == ("integrated_gradients",)


def test_the_iris_counterfactual_changes_the_class_and_stays_in_range(runtimes):
    runtime = runtimes["iris"]
    card = runtime.loaded_card
    for row in inputs("iris", runtime, 20):
        found = explain.counterfactual(runtime, row, None)
        assert found is not None
        index = [f.name for f in card.input.features].index(found.feature)
        spec = card.input.features[index]
        assert spec.allowed_min <= found.changed_to <= spec.allowed_max
        changed = row.copy()
        changed[index] = found.changed_to
        before = np.argmax(runtime.predict(row[None])[0])
        after = runtime.predict(changed[None])[0]
        assert np.argmax(after) != before
        assert card.output.labels[int(np.argmax(after))] == found.outcome


def test_the_housing_counterfactual_moves_the_value_by_what_was_asked(runtimes):
    runtime = runtimes["housing"]
    found_any = 0
    for row in inputs("housing", runtime, 5):
        before = float(runtime.predict(row[None])[0][0])
        for change in (0.5, -0.3):
            found = explain.counterfactual(runtime, row, change)
            if found is None:
                continue
            found_any += 1
            assert (found.outcome - before) * np.sign(change) >= abs(change) - 1e-5
    assert found_any >= 5  # most of the ten asks have an answer within the ranges


@pytest.mark.parametrize("method", explain.IMAGE_METHODS)
def test_attributions_change_when_the_weights_are_randomised(runtimes, method):
    """Adebayo et al. 2018: a method whose map survives randomised weights only reflects the
    input. A second copy of mnist gets random weights of each variable's own scale."""
    random_model = ModelRuntime("mnist", 1, conftest.MODELS / "mnist" / "1")
    random_model.load()
    rng = np.random.default_rng(0)
    for variable in random_model._loaded.trainable_variables:
        scale = float(np.std(variable.numpy())) or 0.05
        variable.assign(rng.normal(0, scale, variable.shape).astype(np.float32))
    random_model._weights = {}  # the Grad-CAM head reads the weights the functions use
    for variable in random_model._loaded.variables:
        layer, _, weight = variable.name.rpartition(":")[0].rpartition("/")
        random_model._weights.setdefault(layer, {})[weight] = variable.numpy()
    correlations = []
    for row in inputs("mnist", runtimes["mnist"], 10):
        label = int(np.argmax(runtimes["mnist"].predict(row[None])[0]))
        trained = attribute(runtimes["mnist"], row, label, method).reshape(-1)
        randomised = attribute(random_model, row, label, method).reshape(-1)
        correlations.append(abs(np.corrcoef(trained, randomised)[0, 1]))
    assert np.nanmean(correlations) < 0.5, correlations
