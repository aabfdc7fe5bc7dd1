"""Explanations: which inputs made an answer, computed with tf.GradientTape on the SavedModel's
own serving function (and, for Grad-CAM, on the layers after the last convolutional block,
re-applied from the SavedModel's variables), so any model in the folder gets them.

- Integrated gradients (every model): the attributions along the straight path from a baseline
  to the input (trapezoid rule over `steps` intervals), with the completeness check: their sum
  against f(input) - f(baseline).
- Gradient x input and SmoothGrad (image models): the gradient at the input times the input,
  and the gradient averaged over noisy copies of the input, times the input.
- Grad-CAM (image models whose layers after the last 4-D activation the service can re-apply):
  the last block's activation maps weighted by the mean gradient of the class score (the value
  before the softmax) over each map, rectified and resized to the model's input size.
- Counterfactual (tabular models): the smallest change of one feature, within the card's
  accepted range, that changes the class, or moves the value by a requested amount.

Baselines (stated in every answer): a tabular model's training means (the card's `mean`); an
image model's blank input: zeros, which is white paper for mnist (its preprocessing inverts a
light background, so 0 is no ink) and a black photo for catdog.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import BadInput, ClientGone
from app.core.settings import Settings
from app.dataplane import schemas
from app.runtime.model import ModelRuntime

Method = Literal["integrated_gradients", "gradient_x_input", "smoothgrad", "grad_cam"]
TABULAR_METHODS: tuple[Method, ...] = ("integrated_gradients",)
IMAGE_METHODS: tuple[Method, ...] = (
    "integrated_gradients",
    "gradient_x_input",
    "smoothgrad",
    "grad_cam",
)
# Layers the Grad-CAM head can re-apply from the SavedModel's variables.
_HEAD_LAYERS = {"Flatten", "Dropout", "GlobalAveragePooling2D", "Dense", "Activation"}


@dataclass
class Attribution:
    values: np.ndarray  # shaped as one input row (Grad-CAM: the input's height x width)
    # Integrated gradients' ends of the path, for the completeness check: the explained output
    # at the input and at the baseline. The other methods have none.
    output: float | None = None
    baseline_output: float | None = None


def methods(card: ModelCard) -> tuple[Method, ...]:
    """The methods the model supports, from its card."""
    if card.input.kind == "features":
        return TABULAR_METHODS
    return IMAGE_METHODS if grad_cam_layer(card) is not None else IMAGE_METHODS[:3]


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


def target_index(card: ModelCard, prediction: np.ndarray, target: str | None) -> int:
    """The output explained: a class label or index (default: the predicted class), or the
    value of a regressor."""
    if card.output.kind == "value":
        if target not in (None, "value", "0"):
            raise BadInput(
                f"Model '{card.name}' answers one value; there is no output '{target}'.",
                field="target",
            )
        return 0
    labels = card.output.labels or []
    if target is None:
        return int(np.argmax(prediction))
    if target in labels:
        return labels.index(target)
    if target.isascii() and target.isdecimal() and int(target) < len(labels):
        return int(target)
    raise BadInput(
        f"Model '{card.name}' has no class '{target}'. Classes: {', '.join(labels)}.",
        field="target",
    )


# What one gradient call may hold, about: the activations of every layer for each row in it,
# which the tape keeps for the backward pass, with that pass's own of the same size. A long
# path (or many noisy samples) is computed a chunk of rows at a time, its gradients summed as
# they come, so memory follows this bound, not the number of steps.
CHUNK_BYTES = 192 * 1024 * 1024
_BYTES_PER_VALUE = 4 * 2 * 2  # float32; forward and backward; the mirrored batch of catdog


def chunk_rows(card: ModelCard) -> int:
    """Rows per gradient call for `card`'s model, from its layers' output sizes."""
    values = int(np.prod(card.input.shape[1:]))  # type: ignore[arg-type]
    values += sum(int(np.prod(cast(list[int], layer.output_shape[1:]))) for layer in card.layers)
    return max(1, CHUNK_BYTES // (values * _BYTES_PER_VALUE))


def _summed_gradients(
    runtime: ModelRuntime,
    rows: Callable[[int, int], np.ndarray],
    count: int,
    weights: np.ndarray,
    output: int,
    stop: Callable[[], bool],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum of the rows' gradients of `output`, each times its weight, with the first and
    the last row's outputs. `rows(start, end)` makes rows start..end-1 when they are needed;
    `stop()` is asked before each chunk, and ClientGone raised when it says so."""
    size = chunk_rows(runtime.loaded_card)
    total: np.ndarray | None = None
    first = last = np.empty(0)
    for start in range(0, count, size):
        if stop():
            raise ClientGone("The client went away; the explanation stopped before its end.")
        end = min(start + size, count)
        values, gradients = runtime.output_gradients(rows(start, end), output)
        part = np.tensordot(weights[start:end], gradients, axes=1)
        total = part if total is None else total + part
        if start == 0:
            first = values[0]
        last = values[-1]
    assert total is not None  # count >= 1
    return total, first, last


def _never() -> bool:
    return False


def integrated_gradients(
    runtime: ModelRuntime,
    row: np.ndarray,
    output: int,
    steps: int,
    stop: Callable[[], bool] = _never,
) -> Attribution:
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
    average, at_baseline, at_input = _summed_gradients(
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
    stop: Callable[[], bool] = _never,
) -> Attribution:
    """Noise of 15% of the input's value range (Smilkov et al. 2017), times the input."""
    low, high = runtime.loaded_card.input.image_spec.value_range
    generator = np.random.default_rng(seed)

    def noisy(first: int, end: int) -> np.ndarray:
        noise = generator.normal(0, 0.15 * (high - low), (end - first, *row.shape))
        return np.clip(row[np.newaxis] + noise, low, high).astype(np.float32)

    weights = np.full(samples, 1.0 / samples)
    mean, _, _ = _summed_gradients(runtime, noisy, samples, weights, output, stop)
    return Attribution(mean.astype(np.float32) * row)


def grad_cam_layer(card: ModelCard) -> int | None:
    """The index of the last 4-D layer output (the last convolutional block's) when every
    layer after it can be re-applied from the SavedModel's variables; None otherwise."""
    last = max(
        (i for i, layer in enumerate(card.layers) if len(layer.output_shape) == 4), default=None
    )
    if last is None or not all(layer.type in _HEAD_LAYERS for layer in card.layers[last + 1 :]):
        return None
    return last


def _activation(name: str | None, tensor: Any) -> Any:
    import tensorflow as tf

    functions = {
        None: tf.identity,
        "linear": tf.identity,
        "relu": tf.nn.relu,
        "softmax": tf.nn.softmax,
        "sigmoid": tf.sigmoid,
        "tanh": tf.tanh,
    }
    if name not in functions:
        raise BadInput(f"Grad-CAM cannot re-apply the activation '{name}'.", field="method")
    return functions[name](tensor)


def grad_cam(runtime: ModelRuntime, row: np.ndarray, output: int) -> Attribution:
    import tensorflow as tf

    card = runtime.loaded_card
    index = grad_cam_layer(card)
    if index is None:
        raise BadInput(f"Model '{card.name}' does not support grad_cam.", field="method")
    block = card.layers[index]
    head = card.layers[index + 1 :]
    if head and head[-1].type == "Activation" and head[-1].activation == "softmax":
        head = head[:-1]  # the class score is the value before the softmax
    before_softmax = bool(head) and head[-1].type == "Dense" and head[-1].activation == "softmax"
    activations = tf.constant(runtime.trace(row[np.newaxis])[block.trace_key])
    with tf.GradientTape() as tape:
        tape.watch(activations)
        tensor = activations
        for layer in head:
            if layer.type == "Flatten":
                tensor = tf.reshape(tensor, [tf.shape(tensor)[0], -1])
            elif layer.type == "GlobalAveragePooling2D":
                tensor = tf.reduce_mean(tensor, axis=[1, 2])
            elif layer.type == "Dense":
                weights = runtime.weights(layer.name)
                tensor = tf.matmul(tensor, weights["kernel"]) + weights.get("bias", 0.0)
                last = layer is head[-1]
                tensor = (
                    tensor if last and before_softmax else _activation(layer.activation, tensor)
                )
            elif layer.type == "Activation":
                tensor = _activation(layer.activation, tensor)
            # Dropout: the identity at inference.
        score = tensor[:, output]
    gradients = tape.gradient(score, activations)[0].numpy()
    weights = gradients.mean(axis=(0, 1))  # one weight per activation map
    cam = np.maximum((activations[0].numpy() * weights).sum(axis=-1), 0)
    height, width = card.input.shape[1], card.input.shape[2]
    resized = tf.image.resize(cam[..., np.newaxis], [height, width], method="bilinear")
    return Attribution(resized.numpy()[..., 0])


@dataclass
class Counterfactual:
    feature: str
    value: float
    changed_to: float
    outcome: float | str  # the new class, or the new value
    probability: float | None


def counterfactual(
    runtime: ModelRuntime, row: np.ndarray, change: float | None, grid: int = 401
) -> Counterfactual | None:
    """The smallest change of one feature (relative to its training span), within its accepted
    range, that changes the predicted class, or moves the value by at least `change` (its sign
    says which way). One model call over a grid of every feature's accepted range."""
    card = runtime.loaded_card
    specs = card.input.features or []
    candidates = []
    for index, spec in enumerate(specs):
        values = np.linspace(spec.allowed_min, spec.allowed_max, grid, dtype=np.float32)
        rows = np.repeat(row[np.newaxis], grid, axis=0)
        rows[:, index] = values
        candidates.append(rows)
    batch = np.concatenate([row[np.newaxis], *candidates])
    outputs = runtime.predict(batch)
    now, answers = outputs[0], outputs[1:]
    spans = np.repeat([max(s.observed_max - s.observed_min, 1e-9) for s in specs], grid)
    distances = np.abs(batch[1:] - row).max(axis=1) / spans
    if card.output.kind == "probabilities":
        hits = np.argmax(answers, axis=1) != np.argmax(now)
    else:
        wanted = 0.5 if change is None else change
        moved = answers[:, 0] - now[0]
        hits = moved >= wanted if wanted >= 0 else moved <= wanted
    if not hits.any():
        return None
    best = int(np.flatnonzero(hits)[np.argmin(distances[hits])])
    feature = best // grid
    answer = answers[best]
    if card.output.kind == "probabilities":
        labels = card.output.labels or []
        top = int(np.argmax(answer))
        return Counterfactual(
            specs[feature].name,
            float(row[feature]),
            float(batch[1 + best, feature]),
            labels[top],
            float(answer[top]),
        )
    return Counterfactual(
        specs[feature].name,
        float(row[feature]),
        float(batch[1 + best, feature]),
        float(answer[0]),
        None,
    )


# -- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainOptions:
    method: Method = "integrated_gradients"
    target: str | None = None  # a class label or index; default the predicted class
    steps: int | None = None  # default: default_steps(card)
    samples: int = 32
    change: float | None = None  # the regressor's counterfactual: move the value by this


def default_steps(card: ModelCard) -> int:
    """The small tabular networks need many steps, which cost little; images need fewer.
    Completeness holds at these on the committed models (tests/service/test_explain.py), but
    for catdog, whose black baseline is already 97% cat, a cat photo's error can be as large
    as its small change at 128 steps (512 make it 0.002); 512 would make every photo's
    explanation 4.7 s here and hold the explanation queue that long, so ask `steps` for it."""
    if card.input.kind == "features":
        return 4096
    pixels = int(np.prod(card.input.shape[1:]))  # type: ignore[arg-type]
    return 256 if pixels <= 4096 else 128


def check_options(card: ModelCard, options: ExplainOptions, settings: Settings) -> None:
    supported = methods(card)
    if options.method not in supported:
        raise BadInput(
            f"Model '{card.name}' does not support {options.method}; it supports "
            f"{', '.join(supported)}.",
            field="method",
        )
    steps = options.steps or default_steps(card)
    if not 1 <= steps <= settings.explain_max_steps:
        raise BadInput(
            f"steps must be from 1 to {settings.explain_max_steps} (GLASSBOX_EXPLAIN_MAX_STEPS).",
            field="steps",
        )
    if options.method == "smoothgrad" and not 1 <= options.samples <= settings.explain_max_samples:
        raise BadInput(
            f"samples must be from 1 to {settings.explain_max_samples} "
            "(GLASSBOX_EXPLAIN_MAX_SAMPLES).",
            field="samples",
        )
    per_row = int(np.prod(card.input.shape[1:]))  # type: ignore[arg-type]
    rows = (steps + 1) if options.method == "integrated_gradients" else options.samples
    if rows * per_row > settings.explain_max_values:
        most = settings.explain_max_values // per_row - 1
        raise BadInput(
            f"That many steps or samples would feed the model {rows * per_row} input values; "
            f"the limit is {settings.explain_max_values} (GLASSBOX_EXPLAIN_MAX_VALUES): at most "
            f"{most} for model '{card.name}'.",
            field="steps" if options.method == "integrated_gradients" else "samples",
        )
    if options.change is not None and card.output.kind != "value":
        raise BadInput(
            "change is for a regressor; a classifier's counterfactual changes its class.",
            field="change",
        )


def _sentence(card: ModelCard, found: Counterfactual | None, change: float) -> str:
    if found is None:
        if card.output.kind == "probabilities":
            return "No change of one feature within its accepted range changes the class."
        return (
            f"No change of one feature within its accepted range moves the value by "
            f"{change:+g} {card.output.unit or ''}".rstrip()
            + "."
        )
    spec = next(s for s in card.input.features or [] if s.name == found.feature)
    what = (
        f"would make it {found.outcome} (probability {found.probability:.2f})"
        if card.output.kind == "probabilities"
        else f"would move the value to {found.outcome:.3g} {card.output.unit or ''}".rstrip()
    )
    return (
        f"{found.feature} {found.changed_to:.3g} {spec.unit} instead of {found.value:.3g} {what}."
    )


def explanation(
    runtime: ModelRuntime,
    row: np.ndarray,
    options: ExplainOptions,
    stop: Callable[[], bool] = _never,
) -> schemas.Explanation:
    """The explanation of one input row (its preprocessing done), as the API answers it;
    ClientGone at the next chunk of gradients once `stop()` says the caller has gone."""
    card = runtime.loaded_card
    prediction = runtime.predict(row[np.newaxis])[0]
    output = target_index(card, prediction, options.target)
    steps = options.steps or default_steps(card)
    if options.method == "integrated_gradients":
        attribution = integrated_gradients(runtime, row, output, steps, stop)
    elif options.method == "gradient_x_input":
        attribution = gradient_x_input(runtime, row, output)
    elif options.method == "smoothgrad":
        attribution = smoothgrad(runtime, row, output, options.samples, stop=stop)
    else:
        attribution = grad_cam(runtime, row, output)
    labels = card.output.labels or []
    answer = schemas.Explanation(
        model=runtime.name,
        version=runtime.version,
        method=options.method,
        target=labels[output] if card.output.kind == "probabilities" else "value",
        output=float(prediction[output]),
        baseline=baseline_description(card) if options.method == "integrated_gradients" else None,
        steps=steps if options.method == "integrated_gradients" else None,
        samples=options.samples if options.method == "smoothgrad" else None,
    )
    if attribution.output is not None and attribution.baseline_output is not None:
        total = float(attribution.values.sum())
        change = attribution.output - attribution.baseline_output
        answer.completeness = schemas.Completeness(
            attribution_sum=total,
            output_change=change,
            relative_error=abs(total - change) / max(abs(change), 1e-12),
        )
    if card.input.kind == "features":
        answer.features = sorted(
            (
                schemas.FeatureAttribution(
                    name=spec.name, value=float(value), unit=spec.unit, attribution=float(a)
                )
                for spec, value, a in zip(
                    card.input.features or [], row, attribution.values, strict=True
                )
            ),
            key=lambda item: -abs(item.attribution),
        )
        wanted = 0.5 if options.change is None else options.change
        found = counterfactual(runtime, row, wanted if card.output.kind == "value" else None)
        answer.counterfactual = schemas.Counterfactual(
            found=found is not None,
            sentence=_sentence(card, found, wanted),
            **(
                {
                    "feature": found.feature,
                    "value": found.value,
                    "changed_to": found.changed_to,
                    "outcome": found.outcome,
                    "probability": found.probability,
                }
                if found
                else {}
            ),
        )
    else:
        values = attribution.values
        answer.attribution_map = (values.sum(axis=-1) if values.ndim == 3 else values).tolist()
    return answer


PHOTO_OVERLAY_MAX_SIDE = 1024  # an overlay on the uploaded photo is drawn at most this large


def photo_overlay_png(
    card: ModelCard, data: bytes, attribution_map: np.ndarray, settings: Settings
) -> bytes:
    """The map over the uploaded photo itself (resized down to at most 1024 px a side), for a
    model whose preprocessing only resizes, so the map's pixels are the photo's."""
    from app.artifact import imaging

    photo = imaging.load(
        imaging.open_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    )
    photo.thumbnail((PHOTO_OVERLAY_MAX_SIDE, PHOTO_OVERLAY_MAX_SIDE))
    return _overlay_png(photo.convert("RGB"), attribution_map)


def input_overlay_png(
    card: ModelCard, model_input: np.ndarray, attribution_map: np.ndarray
) -> bytes:
    """The map over the image the model saw, enlarged (nearest) to about 280 px a side."""
    from PIL import Image

    low, high = card.input.image_spec.value_range
    pixels = np.clip((model_input - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    base = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").convert("RGB")
    scale = max(1, 280 // max(base.size))
    base = base.resize((base.width * scale, base.height * scale), Image.Resampling.NEAREST)
    return _overlay_png(base, attribution_map)


def _overlay_png(base: Any, attribution_map: np.ndarray) -> bytes:
    """The attribution map over `base` (an RGB PIL image): red where it raised the output,
    blue where it lowered it."""
    from PIL import Image

    # Scaled to the 99th percentile, not the peak: integrated gradients put a few pixels far
    # above the rest, and the map would fade to nothing around them.
    magnitude = np.abs(attribution_map)
    peak = float(np.percentile(magnitude, 99)) or float(magnitude.max()) or 1.0
    signed = np.clip(attribution_map / peak, -1, 1).astype(np.float32)
    resized = np.asarray(
        Image.fromarray(signed, "F").resize(base.size, Image.Resampling.BILINEAR), np.float32
    )
    heat = np.zeros((*resized.shape, 3), np.float32)
    heat[..., 0] = np.clip(resized, 0, 1) * 255
    heat[..., 2] = np.clip(-resized, 0, 1) * 255
    alpha = (np.abs(resized) * 0.7)[..., np.newaxis]
    blended = np.asarray(base, np.float32) * (1 - alpha) + heat * alpha
    out = Image.fromarray(blended.astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()
