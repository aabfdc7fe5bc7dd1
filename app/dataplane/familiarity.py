"""Familiarity answers: each input's score (computed by the runtime, from the same model call as
its prediction) against the card's threshold, its percentile among the validation inputs, the
nearest class (image models) and the features outside the training range (tabular models)."""

from __future__ import annotations

import numpy as np

from app.artifact.familiarity import Scores
from app.dataplane.schemas import InputFamiliarity
from app.runtime.model import ModelRuntime


def answers(
    runtime: ModelRuntime, batch: np.ndarray, scores: Scores | None
) -> list[InputFamiliarity | None]:
    """One answer per row of `batch`; None for each where the card has no familiarity."""
    scorer = runtime.familiarity
    if scorer is None or scores is None:
        return [None] * len(batch)
    outside = scorer.outside(batch.reshape(len(batch), -1))
    features_outside: list[list[str] | None] = [None] * len(batch)
    if outside is not None:
        features_outside = list(outside)
    familiar = scorer.familiar(scores.score, batch).tolist()
    percentiles = scorer.percentiles(scores.score).tolist()
    labels = runtime.loaded_card.output.labels or []
    nearest = [None] * len(batch) if scores.nearest is None else scores.nearest.tolist()
    return [
        InputFamiliarity(
            score=score,
            threshold=scorer.card.threshold,
            familiar=is_familiar,
            percentile=round(percentile, 2),
            nearest_class=labels[index] if index is not None and labels else None,
            features_outside=outside_row,
        )
        for score, is_familiar, percentile, index, outside_row in zip(
            scores.score.tolist(),
            familiar,
            percentiles,
            nearest,
            features_outside,
            strict=True,
        )
    ]
