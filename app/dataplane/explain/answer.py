"""The explanation the API answers: the methods a model supports, the options a request may
ask and their limits, the output explained, and the answer assembled from the method's
attributions (with the completeness check, and for tabular models the counterfactual)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import BadInput
from app.core.settings import Settings
from app.dataplane import familiarity, schemas
from app.dataplane.explain.chunks import never_stop
from app.dataplane.explain.counterfactuals import counterfactual, sentence
from app.dataplane.explain.gradcam import grad_cam, grad_cam_layer
from app.dataplane.explain.gradients import (
    baseline_description,
    gradient_x_input,
    integrated_gradients,
    smoothgrad,
)
from app.runtime.model import ModelRuntime

Method = Literal["integrated_gradients", "gradient_x_input", "smoothgrad", "grad_cam"]
TABULAR_METHODS: tuple[Method, ...] = ("integrated_gradients",)
IMAGE_METHODS: tuple[Method, ...] = (
    "integrated_gradients",
    "gradient_x_input",
    "smoothgrad",
    "grad_cam",
)


@dataclass(frozen=True)
class ExplainOptions:
    method: Method = "integrated_gradients"
    target: str | None = None  # a class label or index; default the predicted class
    steps: int | None = None  # default: default_steps(card)
    samples: int = 32
    change: float | None = None  # the regressor's counterfactual: move the value by this


def methods(card: ModelCard) -> tuple[Method, ...]:
    """The methods the model supports, from its card."""
    if card.input.kind == "features":
        return TABULAR_METHODS
    return IMAGE_METHODS if grad_cam_layer(card) is not None else IMAGE_METHODS[:3]


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


def explanation(
    runtime: ModelRuntime,
    row: np.ndarray,
    options: ExplainOptions,
    stop: Callable[[], bool] = never_stop,
) -> schemas.Explanation:
    """The explanation of one input row (its preprocessing done), as the API answers it;
    ClientGone at the next chunk of gradients once `stop()` says the caller has gone."""
    card = runtime.loaded_card
    scored = runtime.predict_scored(row[np.newaxis])
    prediction = scored.outputs[0]
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
        familiarity=familiarity.answers(runtime, row[np.newaxis], scored.familiarity)[0],
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
            sentence=sentence(card, found, wanted),
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
