"""Temperature scaling and the expected calibration error, on synthetic sets with known answers."""

import json

import keras
import numpy as np
import pytest

from app.artifact.card import ModelCard
from tests.conftest import MODELS
from training import calibration


def overconfident(n: int = 4000, classes: int = 3, factor: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z), and the logits a model `factor` times too sure gives."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, classes))
    p = calibration.softmax(z)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return factor * z, y


def test_fitted_temperature_undoes_overconfidence_and_lowers_the_nll():
    logits, y = overconfident()
    temperature = calibration.fit_temperature(logits, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert calibration.nll(logits, y, temperature) < calibration.nll(logits, y) - 0.1
    before = calibration.ece(calibration.softmax(logits), y)
    after = calibration.ece(calibration.softmax(logits, temperature), y)
    assert after < 0.03 < before


def test_a_calibrated_set_keeps_a_temperature_near_one():
    logits, y = overconfident(factor=1.0, seed=1)
    assert calibration.fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_ece_and_reliability_by_hand():
    # Top probabilities 0.95 (right), 0.95 (wrong), 0.55 (right), 1.0 (right).
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [1.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    table = calibration.reliability(p, y, bins=10)
    assert [b.count for b in table] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 3]
    assert table[9].accuracy == pytest.approx(2 / 3)
    assert table[9].mean_confidence == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert table[0].accuracy is None
    expected = (1 * abs(1 - 0.55) + 3 * abs(2 / 3 - 2.9 / 3)) / 4
    assert calibration.ece(p, y, bins=10) == pytest.approx(expected)


def tiny_classifier() -> keras.Model:
    inputs = keras.Input(shape=(4,), name="features")
    x = keras.layers.Dense(3, name="logits")(inputs)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def test_temperature_layer_is_softmax_of_log_p_over_t_exactly():
    model = tiny_classifier()
    x = np.random.default_rng(0).normal(0, 3, (16, 4)).astype(np.float32)
    p = model.predict(x, verbose=0).astype(np.float64)
    scaled = calibration.with_temperature(model, 2.5)
    expected = calibration.softmax(np.log(p), 2.5)
    np.testing.assert_allclose(scaled.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in scaled.layers][-2:] == ["temperature", "probabilities"]
    np.testing.assert_array_equal(scaled.predict(x, verbose=0).argmax(axis=1), p.argmax(axis=1))


def test_calibrate_fits_on_validation_and_scores_the_test_split():
    model = tiny_classifier()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (400, 4)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(axis=1)
    y[::7] = (y[::7] + 1) % 3  # 1 in 7 answers wrong however sure: T > 1 must help
    _, card = calibration.calibrate(model, x[:200], y[:200], x[200:], y[200:])
    assert card.temperature > 1
    assert card.fit_split == "validation"
    assert card.nll_after < card.nll_before
    assert sum(b.count for b in card.reliability_before) == 200
    assert sum(b.count for b in card.reliability_after) == 200
    assert len(card.reliability_after) == card.bins == 15


def test_a_card_without_calibration_still_loads(tmp_path):
    data = json.loads((MODELS / "housing" / "1" / "metadata.json").read_text())
    data.pop("calibration", None)
    (tmp_path / "metadata.json").write_text(json.dumps(data))
    assert ModelCard.read(tmp_path).calibration is None


def test_the_last_layer_must_be_a_softmax():
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="softmax"):
        calibration.with_temperature(model, 2.0)


# The ECE's bootstrap interval and the pooled out-of-fold ECE.


def test_the_interval_is_the_spread_of_the_ece_over_resamples():
    logits, y = overconfident(n=600, factor=1.0, seed=2)
    p = calibration.softmax(logits)
    judged = calibration.ece_interval(p, y, "synthetic", seed=3, resamples=300)
    rng = np.random.default_rng(3)
    by_hand = [calibration.ece(p[rows], y[rows]) for rows in rng.integers(0, 600, (300, 600))]
    assert judged.ece == pytest.approx(calibration.ece(p, y))
    assert (judged.low, judged.high) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])))
    assert judged.low <= judged.ece <= judged.high
    assert (judged.rows, judged.resamples) == (600, 300)


def test_a_larger_sample_narrows_the_interval():
    widths = []
    for n in (100, 3000):
        logits, y = overconfident(n=n, factor=1.0, seed=4)
        judged = calibration.ece_interval(
            calibration.softmax(logits), y, "synthetic", resamples=200
        )
        widths.append(judged.high - judged.low)
    assert widths[1] < widths[0] / 2


def test_out_of_fold_answers_every_row_once_with_a_net_that_never_saw_it():
    from training import iris
    from training.common import Options
    from training.out_of_fold import out_of_fold

    splits = iris.load_data(None, seed=42)
    x, y = splits.x_train[:45], splits.y_train[:45]
    seen: list[set[bytes]] = []

    def train_net(fold):
        seen.append({row.tobytes() for row in fold.x_train} | {row.tobytes() for row in fold.x_val})
        assert not {row.tobytes() for row in fold.x_test} & seen[-1]
        model = iris.build_model(fold.x_train)
        iris.fit(model, fold, 2, Options(epochs=2))
        return model

    judged = out_of_fold(x, y, train_net, seed=0, folds=3)
    assert len(seen) == 3 == judged.folds == len(judged.temperatures)
    assert sum(b.count for b in judged.reliability) == judged.rows == 45
    assert judged.low <= judged.ece <= judged.high
    assert 0 <= judged.ece_untempered <= 1
