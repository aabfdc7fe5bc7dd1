"""Each pipeline trains one short epoch on a tiny slice and exports a self-contained SavedModel."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from app.artifact.card import ModelCard, hash_files
from app.runtime.model import ModelRuntime
from tests.conftest import FIXTURES
from tests.savedmodel_checks import check_dense_layers, variables_by_layer
from training import PIPELINES, catdog, familiarity, iris
from training.common import Options, Splits, run


def tiny_splits(name: str) -> Splits:
    if name == "iris":
        full = iris.load_data(None, seed=42)
        return Splits(
            full.x_train[:40],
            full.y_train[:40],
            full.x_val,
            full.y_val,
            full.x_test,
            full.y_test,
            source="iris slice",
        )
    if name in ("mnist", "housing"):
        with np.load(FIXTURES / f"{name}_sample.npz") as data:
            x, y = data["x_train"], data["y_train"]
            if name == "mnist":
                y = y.astype(np.int64)
            return Splits(
                x[:200],
                y[:200],
                x[200:],
                y[200:],
                data["x_test"][:50],
                data["y_test"][:50].astype(y.dtype),
                source=f"{name} slice",
            )
    x, y = catdog.load_folder(FIXTURES / "catdog" / "train")
    x_test, y_test = catdog.load_folder(FIXTURES / "catdog" / "test")
    return Splits(x, y, x[:4], y[:4], x_test[:8], y_test[:8], source="catdog slice")


@pytest.fixture(scope="module", params=list(PIPELINES))
def exported(request, tmp_path_factory):
    name = request.param
    options = Options(
        epochs=1,
        baseline_epochs=1,
        out_dir=tmp_path_factory.mktemp(name),
        version=1,
        verbose=0,
        checkpoint_dir=tmp_path_factory.mktemp(f"{name}-checkpoints"),
    )
    result = run(PIPELINES[name], options, splits=tiny_splits(name))
    return name, result.path, tiny_splits(name)


def test_export_reloads_with_tensorflow_alone(exported):
    name, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) >= {"serving_default", "trace"}
    card = ModelCard.read(path)
    assert card.name == name
    assert card.version == 1
    assert card.files == hash_files(path)


def test_signatures_have_documented_shapes_and_dtypes(exported):
    _, path, splits = exported
    card = ModelCard.read(path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.name == card.input.name
    assert spec.dtype == tf.float32
    assert spec.shape.as_list() == card.input.shape
    x = splits.x_test[:3].astype(np.float32)
    out = serve(**{card.input.name: tf.constant(x)})[card.output.name].numpy()
    assert out.dtype == np.float32
    if card.output.kind == "probabilities":
        assert out.shape == (3, len(card.output.labels))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert out.shape == (3, 1)


def test_trace_is_every_layer_in_order_ending_in_the_prediction(exported):
    _, path, splits = exported
    card = ModelCard.read(path)
    loaded = tf.saved_model.load(str(path))
    x = tf.constant(splits.x_test[:2].astype(np.float32))
    traced = loaded.signatures["trace"](**{card.input.name: x})
    assert sorted(traced) == [layer.trace_key for layer in card.layers]
    last = traced[card.layers[-1].trace_key].numpy()
    served = loaded.signatures["serving_default"](**{card.input.name: x})[card.output.name]
    np.testing.assert_allclose(last, served.numpy(), rtol=1e-5, atol=1e-6)


def test_dense_layers_are_previous_output_times_kernel_plus_bias(exported):
    _, path, splits = exported
    assert check_dense_layers(path, splits.x_test[:4].astype(np.float32)) >= 1


def test_classifiers_export_their_fitted_temperature(exported):
    _, path, _ = exported
    card = ModelCard.read(path)
    if card.output.kind != "probabilities":
        assert card.calibration is None
        return
    calibration = card.calibration
    assert calibration is not None
    assert calibration.fit_split == "validation"
    assert calibration.temperature > 0
    assert [layer.name for layer in card.layers][-2] == "temperature"
    kernel = variables_by_layer(tf.saved_model.load(str(path)))["temperature"]["kernel"]
    classes = len(card.output.labels)
    np.testing.assert_allclose(kernel, np.eye(classes) / calibration.temperature, rtol=1e-5)
    for table in (calibration.reliability_before, calibration.reliability_after):
        assert len(table) == calibration.bins
        assert sum(b.count for b in table) == card.data["split_sizes"]["test"]


@pytest.mark.parametrize("exported", ["catdog"], indirect=True)  # mirror averaging is catdog's
def test_catdog_export_answers_a_photo_and_its_mirror_alike(exported):
    _, path, splits = exported
    card = ModelCard.read(path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = splits.x_test.astype(np.float32)
    photo = serve(image=tf.constant(x))["probabilities"].numpy()
    mirror = serve(image=tf.constant(x[:, :, ::-1]))["probabilities"].numpy()
    np.testing.assert_allclose(photo, mirror, atol=1e-6)
    assert card.metrics["flip_consistency"] == 1.0
    assert "mirror_mean" in [layer.name for layer in card.layers]


def test_export_writes_familiarity_with_its_threshold_on_the_validation_split(exported, tmp_path):
    name, path, splits = exported
    card = ModelCard.read(path)
    block = card.familiarity
    assert block is not None
    assert block.method == getattr(PIPELINES[name], "FAMILIARITY_METHOD", "input_mahalanobis")
    assert "familiarity.npz" in card.files
    runtime = ModelRuntime(name, 1, path)
    runtime.load()
    assert runtime.ready, runtime.reason
    x_val = splits.x_val.astype(np.float32)
    scores = runtime.predict_scored(x_val).familiarity.score
    # The threshold keeps 95% of the validation split familiar, and the quantiles are its own.
    assert block.threshold == pytest.approx(np.quantile(scores, 0.95), rel=1e-4, abs=1e-4)
    assert block.validation_quantiles[0] == pytest.approx(scores.min(), rel=1e-4, abs=1e-4)
    assert block.validation_quantiles[100] == pytest.approx(scores.max(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("exported", ["iris"], indirect=True)
def test_the_re_export_adds_familiarity_to_a_version_without_it(exported, tmp_path):
    _, path, splits = exported
    version_dir = tmp_path / "iris" / "1"
    shutil.copytree(path, version_dir)
    card = ModelCard.read(version_dir)
    (version_dir / "familiarity.npz").unlink()
    card.familiarity = None
    card.files = hash_files(version_dir)
    card.write(version_dir)
    refreshed = familiarity.refresh(version_dir, splits.familiarity_inputs(), iris)
    assert refreshed.familiarity is not None
    assert refreshed.files == hash_files(version_dir)
    assert "familiarity.npz" in refreshed.files
    assert refreshed.familiarity.threshold == pytest.approx(card_threshold(path), rel=1e-6)


def card_threshold(path) -> float:
    block = ModelCard.read(path).familiarity
    assert block is not None
    return block.threshold
