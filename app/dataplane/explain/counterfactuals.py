"""Counterfactuals, for tabular models: the smallest change of one feature, within the card's
accepted range, that changes the class, or moves a regressor's value by a requested amount;
and the answer's sentence that says it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.artifact.card import ModelCard
from app.runtime.model import ModelRuntime


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


def sentence(card: ModelCard, found: Counterfactual | None, change: float) -> str:
    """The answer's sentence for what `counterfactual` found (None: nothing within the ranges);
    `change` is what a regressor's value was asked to move by."""
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
