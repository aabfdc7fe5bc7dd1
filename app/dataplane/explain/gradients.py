"""The gradient attributions, on the SavedModel's own serving function: integrated gradients
from the model's baseline (every model), gradient x input and SmoothGrad (image models).

Baselines (stated in every answer): a tabular model's training means (the card's `mean`); an
image model's blank input: zeros, which is white paper for mnist (its preprocessing inverts a
light background, so 0 is no ink) and a black photo for catdog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from app.artifact.card import ModelCard
from app.dataplane.explain.chunks import never_stop, summed_gradients
from app.runtime.model import ModelRuntime


@dataclass
class Attribution:
    values: np.ndarray  # shaped as one input row (Grad-CAM: the input's height x width)
    # Integrated gradients' ends of the path, for the completeness check: the explained output
    # at the input and at the baseline. The other methods have none.
    output: float | None = None
    baseline_output: float | None = None


def baseline(card: ModelCard) -> np.ndarray:
    if card.input.kind == "features":
        return np.array([spec.mean for spec in card.input.features or []], dtype=np.float32)
    return np.zeros(card.input.shape[1:], dtype=np.float32)  # type: ignore[arg-type]


def baseline_description(card: ModelCard) -> str:
    if card.input.kind == "features":
        return "the training mean of each feature (the model card's mean)"
    if card.input.image_spec.preprocessing == "mnist":
        return "a blank input: all zeros, white paper with no ink"
    return "a blank input: all zeros, a black image"


def integrated_gradients(
    runtime: ModelRuntime,
    row: np.ndarray,
    output: int,
    steps: int,
    stop: Callable[[], bool] = never_stop,
) -> Attribution:
    """The attributions along the straight path from the baseline to the input (trapezoid rule
    over `steps` intervals), with the path's two ends for the completeness check: their sum
    against f(input) - f(baseline)."""
    start = baseline(runtime.loaded_card)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    shape = (-1, *[1] * row.ndim)
    change = (row - start)[np.newaxis]

    def path(first: int, end: int) -> np.ndarray:
        points = start[np.newaxis] + alphas[first:end].reshape(shape) * change
        return cast(np.ndarray, points.astype(np.float32))

    # The trapezoid rule: the mean of each interval's two ends, over `steps` intervals.
    weights = np.full(steps + 1, 1.0 / steps, dtype=np.float64)
    weights[[0, -1]] /= 2
    average, at_baseline, at_input = summed_gradients(
        runtime, path, steps + 1, weights, output, stop
    )
    return Attribution(
        values=(row - start) * average.astype(np.float32),
        output=float(at_input[output]),
        baseline_output=float(at_baseline[output]),
    )


def gradient_x_input(runtime: ModelRuntime, row: np.ndarray, output: int) -> Attribution:
    _, gradients = runtime.output_gradients(row[np.newaxis], output)
    return Attribution(gradients[0] * row)


def smoothgrad(
    runtime: ModelRuntime,
    row: np.ndarray,
    output: int,
    samples: int,
    seed: int = 0,
    stop: Callable[[], bool] = never_stop,
) -> Attribution:
    """The gradient averaged over noisy copies of the input, noise of 15% of the input's value
    range (Smilkov et al. 2017), times the input."""
    low, high = runtime.loaded_card.input.image_spec.value_range
    generator = np.random.default_rng(seed)

    def noisy(first: int, end: int) -> np.ndarray:
        noise = generator.normal(0, 0.15 * (high - low), (end - first, *row.shape))
        return np.clip(row[np.newaxis] + noise, low, high).astype(np.float32)

    weights = np.full(samples, 1.0 / samples)
    mean, _, _ = summed_gradients(runtime, noisy, samples, weights, output, stop)
    return Attribution(mean.astype(np.float32) * row)
