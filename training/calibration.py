"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017).

One number T is fitted on a validation split by minimising the negative log-likelihood of
softmax(z / T), where z are the logits. For a softmax output p = softmax(z), softmax(log(p) / T)
equals softmax(z / T) exactly (log p and z differ by a constant per row), so the exported model
gets a `temperature` Dense layer with kernel I/T and zero bias between the logits and the
softmax: the trace shows it, the layer checks recompute it, and Grad-CAM still re-applies the
head. T changes no argmax, so accuracy is unchanged.

Expected calibration error (ECE): the top probability of each answer is binned into `bins`
equal-width bins on [0, 1]; ECE is the count-weighted mean of |accuracy - mean confidence| over
the bins. Its bootstrap 95% interval is the 2.5th and 97.5th percentiles of the ECE over
`RESAMPLES` resamples (rows drawn with replacement) of the same predictions: how much the
figure would move on another test split of the same size.
"""

from __future__ import annotations

import keras
import numpy as np
from scipy.optimize import minimize_scalar

from app.artifact.card import Calibration, EceInterval, ReliabilityBin

BINS = 15
RESAMPLES = 1000
TEST_PREDICTIONS = "the test split, answered by the exported model (temperature applied)"
TEMPERATURE_LAYER = "temperature"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL (a convex problem in log T)."""
    result = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[ReliabilityBin]:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    # Bin b holds confidences in [b/bins, (b+1)/bins); a confidence of exactly 1 goes in the last.
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        table.append(
            ReliabilityBin(
                lower=round(b / bins, 6),
                upper=round((b + 1) / bins, 6),
                count=count,
                mean_confidence=float(confidence[mask].mean()) if count else None,
                accuracy=float(correct[mask].mean()) if count else None,
            )
        )
    return table


def ece(probabilities: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    table = reliability(probabilities, y, bins)
    total = sum(b.count for b in table)
    return float(
        sum(b.count * abs(b.accuracy - b.mean_confidence) for b in table if b.count) / total
    )


def ece_interval(
    probabilities: np.ndarray,
    y: np.ndarray,
    predictions: str,
    seed: int = 0,
    resamples: int = RESAMPLES,
    bins: int = BINS,
) -> EceInterval:
    """The ECE of these predictions and its bootstrap 95% interval."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rng = np.random.default_rng(seed)
    scores = np.concatenate(
        [
            _resampled_eces(index, correct - confidence, rng, min(100, resamples - done), bins)
            for done in range(0, resamples, 100)
        ]
    )
    low, high = np.quantile(scores, [0.025, 0.975])
    return EceInterval(
        ece=ece(probabilities, y, bins),
        low=float(low),
        high=float(high),
        rows=len(y),
        resamples=resamples,
        predictions=predictions,
    )


def _resampled_eces(
    index: np.ndarray, gap: np.ndarray, rng: np.random.Generator, resamples: int, bins: int
) -> np.ndarray:
    """The ECE of `resamples` resamples at once, from each row's bin and (right - confidence):
    a bin's sum of the gaps is its count times (accuracy - mean confidence)."""
    rows = rng.integers(0, len(index), size=(resamples, len(index)))
    # Resample r's bin b is column r * bins + b.
    flat = (index[rows] + bins * np.arange(resamples)[:, None]).ravel()
    sums = np.bincount(flat, weights=gap[rows].ravel(), minlength=resamples * bins)
    return np.abs(sums).reshape(resamples, bins).sum(axis=1) / len(index)


def logits_model(model: keras.Model) -> keras.Model:
    """The model up to the input of its final softmax Activation."""
    last = model.layers[-1]
    if not (
        isinstance(last, keras.layers.Activation) and last.get_config()["activation"] == "softmax"
    ):
        raise ValueError(f"{model.name}: the last layer must be a softmax Activation to calibrate.")
    return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """The model with a fixed `temperature` Dense (kernel I/T, zero bias) before its softmax."""
    last = model.layers[-1]
    logits_model(model)  # checks the shape of the head
    classes = int(last.input.shape[-1])
    scale = keras.layers.Dense(classes, name=TEMPERATURE_LAYER, trainable=False)
    scaled = scale(last.input)
    scale.set_weights(
        [np.eye(classes, dtype=np.float32) / np.float32(temperature), np.zeros(classes, np.float32)]
    )
    outputs = keras.layers.Activation("softmax", name=last.name)(scaled)
    return keras.Model(model.inputs, outputs, name=model.name)


def calibrate(
    model: keras.Model,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    fit_split: str = "validation",
    seed: int = 0,
) -> tuple[keras.Model, Calibration]:
    """Fit T on the validation split, and score the test split before and after."""
    logits = logits_model(model)
    val_logits = logits.predict(x_val, batch_size=256, verbose=0)
    test_logits = logits.predict(x_test, batch_size=256, verbose=0)
    temperature = fit_temperature(val_logits, y_val)
    before, after = softmax(test_logits), softmax(test_logits, temperature)
    card = Calibration(
        temperature=round(temperature, 6),
        fit_split=fit_split,
        bins=BINS,
        ece_before=ece(before, y_test),
        ece_after=ece(after, y_test),
        nll_before=nll(test_logits, y_test),
        nll_after=nll(test_logits, y_test, temperature),
        reliability_before=reliability(before, y_test),
        reliability_after=reliability(after, y_test),
        ece_interval=ece_interval(after, y_test, TEST_PREDICTIONS, seed),
    )
    return with_temperature(model, temperature), card
