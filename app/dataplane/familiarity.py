"""Familiarity answers: each input's score (computed by the runtime, from the same model call as
its prediction) against the card's threshold, its percentile among the validation inputs, the
nearest class (image models) and the features outside the training range (tabular models)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.artifact.familiarity import Scores
from app.dataplane.schemas import InputFamiliarity
from app.runtime.model import ModelRuntime


@dataclass(frozen=True)
class Familiarities:
    """A batch's familiarity as columns, one entry per row: what `answers` says row by row."""

    threshold: float  # the card's: a score at most this is familiar
    score: np.ndarray
    familiar: np.ndarray  # bool
    percentile: np.ndarray  # among the validation inputs, 0 to 100, unrounded
    nearest_class: list[str | None]
    features_outside: list[list[str]] | None  # tabular models only


def columns(runtime: ModelRuntime, batch: np.ndarray, scores: Scores) -> Familiarities | None:
    """The batch's familiarity, None where the card has none."""
    scorer = runtime.familiarity
    if scorer is None:
        return None
    labels = runtime.loaded_card.output.labels or []
    nearest: list[str | None] = [None] * len(batch)
    if scores.nearest is not None and labels:
        nearest = [labels[index] for index in scores.nearest.tolist()]
    outside = scorer.outside_mask(batch)
    return Familiarities(
        threshold=scorer.card.threshold,
        score=scores.score,
        familiar=scorer.familiar(scores.score, outside),
        percentile=scorer.percentiles(scores.score),
        nearest_class=nearest,
        features_outside=None if outside is None else scorer.named(outside),
    )


def answers(
    runtime: ModelRuntime, batch: np.ndarray, scores: Scores | None
) -> list[InputFamiliarity | None]:
    """One answer per row of `batch`; None for each where the card has no familiarity."""
    found = None if scores is None else columns(runtime, batch, scores)
    if found is None:
        return [None] * len(batch)
    outside: list[list[str] | None] = [None] * len(batch)
    if found.features_outside is not None:
        outside = list(found.features_outside)
    return [
        InputFamiliarity(
            score=score,
            threshold=found.threshold,
            familiar=is_familiar,
            percentile=round(percentile, 2),
            nearest_class=nearest,
            features_outside=outside_row,
        )
        for score, is_familiar, percentile, nearest, outside_row in zip(
            found.score.tolist(),
            found.familiar.tolist(),
            found.percentile.tolist(),
            found.nearest_class,
            outside,
            strict=True,
        )
    ]
