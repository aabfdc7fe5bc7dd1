"""Drift of the traffic: each model version's rolling window of answered predictions compared
with the training distribution in its card's `drift` block (docs/drift.md).

`Drift.observe` is called once per answered batch by `Predictor.predict`, which every transport
passes through; it writes the batch into the version's `PredictionWindow` (vectorised) and, each
time another tenth of the window has arrived, recomputes the figures into the
`glassbox_drift_*` gauges. `Drift.report` computes them on request. Each figure is a population
stability index over the card's bins: every input feature of a tabular model, the predicted
class against the training priors (classifiers), the answers against the model's answers on its
training inputs (regressors) and, where the card has a `familiarity` block and scores came with
the predictions, the scores against the deciles of its validation quantiles. A figure needs the
card's `min_predictions` rows; before that it is null ("not enough data"), never an alarm.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np

from app.artifact.card import ModelCard
from app.artifact.drift_reference import Bins, DriftReference, bin_counts
from app.core.settings import Settings
from app.dataplane import metrics
from app.dataplane.schemas import DriftFigure, ModelDrift
from app.runtime.model import ModelRuntime
from app.runtime.window import PredictionWindow, WindowRows

FigureKind = Literal["feature", "predicted_class", "prediction", "familiarity"]
# A share is floored here before its logarithm: an empty bin counts as 1 in 10,000.
FLOOR = 1e-4


def psi(training: Sequence[float] | np.ndarray, counts: np.ndarray) -> float:
    """Population stability index of the window's `counts` per bin against training shares."""
    expected = np.maximum(np.asarray(training, dtype=np.float64), FLOOR)
    actual = np.maximum(counts / max(int(counts.sum()), 1), FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class Drift:
    def __init__(self, settings: Settings):
        self.size = settings.drift_window  # 0: off

    def observe(
        self,
        runtime: ModelRuntime,
        batch: np.ndarray,
        outputs: np.ndarray,
        scores: np.ndarray | None = None,
    ) -> None:
        """Add an answered batch to the version's window (`scores`: one familiarity score per
        row, where the caller has them)."""
        window = self._window(runtime)
        if window is None:
            return
        card = runtime.loaded_card
        features = batch if card.input.kind == "features" else None
        if card.output.kind == "probabilities":
            answers = outputs.argmax(axis=1)
        else:
            answers = outputs.reshape(len(outputs), -1)[:, 0]
        before = window.seen
        window.observe(features, answers, scores)
        step = max(1, window.size // 10)
        if before // step != window.seen // step:
            self.publish(runtime)

    def report(self, runtime: ModelRuntime) -> ModelDrift:
        card = runtime.loaded_card
        window = self._window(runtime)
        reference = card.drift
        if window is None or reference is None:  # off, or a card without the block
            return ModelDrift(
                model=runtime.name,
                version=runtime.version,
                window_size=0 if window is None else window.size,
                rows=0,
                seen=0,
                min_rows=0 if reference is None else reference.thresholds.min_predictions,
                enough_data=False,
                figures=[],
                crossed=[],
            )
        rows = window.rows()
        found = figures(card, reference, rows)
        minimum = reference.thresholds.min_predictions
        return ModelDrift(
            model=runtime.name,
            version=runtime.version,
            window_size=window.size,
            rows=len(rows.answers),
            seen=rows.seen,
            min_rows=minimum,
            enough_data=len(rows.answers) >= minimum,
            figures=found,
            crossed=[figure.name for figure in found if figure.crossed],
        )

    def publish(self, runtime: ModelRuntime) -> None:
        """The version's figures into the gauges."""
        answer = self.report(runtime)
        metrics.set_drift(runtime.name, runtime.version, answer.rows, answer.figures)

    def _window(self, runtime: ModelRuntime) -> PredictionWindow | None:
        """The version's window, made on its first prediction; None when drift is off or the
        card has no reference to compare with."""
        if runtime.window is None and self.size and runtime.loaded_card.drift is not None:
            card = runtime.loaded_card
            features = card.input.features
            runtime.window = PredictionWindow(
                self.size,
                None if features is None else len(features),
                classifier=card.output.kind == "probabilities",
            )
        return runtime.window


def figures(card: ModelCard, reference: DriftReference, rows: WindowRows) -> list[DriftFigure]:
    """Every figure the card's reference allows, for the rows of a window."""
    limits = reference.thresholds.psi, reference.thresholds.min_predictions
    found = []
    if reference.features is not None and rows.features is not None:
        for column, feature in enumerate(reference.features):
            counts = bin_counts(rows.features[:, column], feature.edges)
            found.append(figure(feature.name, "feature", feature, counts, *limits))
    if reference.classes is not None:
        labels = reference.classes.labels
        counts = np.bincount(rows.answers.astype(np.int64), minlength=len(labels))[: len(labels)]
        priors = Bins(edges=[], proportions=reference.classes.priors)
        found.append(
            figure("predicted_class", "predicted_class", priors, counts, *limits, bins=labels)
        )
    if reference.prediction is not None:
        counts = bin_counts(rows.answers, reference.prediction.edges)
        found.append(figure("prediction", "prediction", reference.prediction, counts, *limits))
    familiar = familiarity_bins(card)
    if familiar is not None:
        scored = rows.scores[~np.isnan(rows.scores)]
        counts = bin_counts(scored, familiar.edges)
        found.append(figure("familiarity", "familiarity", familiar, counts, *limits))
    return found


def figure(
    name: str,
    kind: FigureKind,
    training: Bins,
    counts: np.ndarray,
    threshold: float,
    minimum: int,
    bins: list[str] | None = None,
) -> DriftFigure:
    """One figure, null below `minimum` rows; `bins` labels the bins (default: their ranges)."""
    shares = training.proportions
    total = int(counts.sum())
    value = psi(shares, counts) if total >= minimum else None
    return DriftFigure(
        name=name,
        kind=kind,
        psi=value,
        threshold=threshold,
        crossed=None if value is None else value > threshold,
        rows=total,
        bins=bin_labels(training.edges) if bins is None else bins,
        training=list(shares),
        window=[float(count) / total for count in counts] if total else None,
    )


def bin_labels(edges: list[float]) -> list[str]:
    bounds = [f"{edge:.4g}" for edge in edges]
    return (
        [f"< {bounds[0]}"]
        + [f"{low} to {high}" for low, high in itertools.pairwise(bounds)]
        + [f">= {bounds[-1]}"]
    )


def familiarity_bins(card: ModelCard) -> Bins | None:
    """The deciles of the card's familiarity validation quantiles as bins, each holding the
    share of validation inputs between its percentiles; None for a card without the block.

    The block (`familiarity`: `validation_quantiles`, the score at percentiles 0..100) is read
    by name, whichever object or mapping the card holds it as."""
    block = getattr(card, "familiarity", None)
    if block is None:
        return None
    quantiles = (
        block["validation_quantiles"] if isinstance(block, dict) else (block.validation_quantiles)
    )
    if len(quantiles) != 101:
        return None
    kept: dict[float, int] = {}  # edge to its highest percentile among the deciles
    for percentile in range(10, 100, 10):
        kept[float(quantiles[percentile])] = percentile
    edges = sorted(kept)
    percentiles = [0, *(kept[edge] for edge in edges), 100]
    shares = [(high - low) / 100 for low, high in itertools.pairwise(percentiles)]
    return Bins(edges=edges, proportions=shares)
