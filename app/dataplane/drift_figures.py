"""The figures of drift: a window's rows against the training side of its card's `drift` block
(docs/drift.md), each a population stability index over the card's bins.

The training side is turned into arrays once per window (`compared`), so that recomputing the
figures is a few numpy calls: one `searchsorted` and `bincount` per figure over at most the
window's rows, then the PSI over ten bins.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.artifact.card import ModelCard
from app.artifact.drift_reference import Bins, DriftReference, bin_counts
from app.dataplane.schemas import DriftFigure
from app.runtime.window import WindowRows

FigureKind = Literal["feature", "predicted_class", "prediction", "familiarity"]
# A share is floored here before its logarithm: an empty bin counts as 1 in 10,000.
FLOOR = 1e-4


def psi(training: Sequence[float] | np.ndarray, counts: np.ndarray) -> float:
    """Population stability index of the window's `counts` per bin against training shares."""
    return float(psis(np.asarray(training, dtype=np.float64), counts))


def psis(training: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`psi` of each row of `counts` against the same row of `training` (or of one row each):
    a bin that is empty on both sides (padding) adds nothing."""
    expected = np.maximum(training, FLOOR)
    totals = np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    actual = np.maximum(counts / totals, FLOOR)
    found: np.ndarray = np.sum((actual - expected) * np.log(actual / expected), axis=-1)
    return found


@dataclass(frozen=True)
class Compared:
    """One figure's training side, as arrays."""

    name: str
    kind: FigureKind
    edges: np.ndarray  # inner bin edges (none for the predicted class)
    shares: np.ndarray  # the training share of each bin
    column: int = 0  # a feature's column in the window's features
    labels: tuple[str, ...] = ()  # the classes' names; else the bins' ranges, written on request

    def counts(self, rows: WindowRows) -> np.ndarray:
        """How many of the window's rows fall in each bin."""
        if self.kind == "predicted_class":
            found = np.bincount(rows.answers.astype(np.int64), minlength=len(self.shares))
            return found[: len(self.shares)]
        if self.kind == "prediction":
            return bin_counts(rows.answers, self.edges)
        if self.kind == "familiarity":
            return bin_counts(rows.scores[~np.isnan(rows.scores)], self.edges)
        if rows.features is None:  # a feature figure of a window without features: none
            return np.zeros(len(self.shares), np.int64)
        return bin_counts(rows.features[:, self.column], self.edges)

    def value(self, counts: np.ndarray, minimum: int) -> float | None:
        """The PSI, or None below `minimum` rows."""
        return psi(self.shares, counts) if int(counts.sum()) >= minimum else None

    def figure(self, counts: np.ndarray, threshold: float, minimum: int) -> DriftFigure:
        total = int(counts.sum())
        value = self.value(counts, minimum)
        return DriftFigure(
            name=self.name,
            kind=self.kind,
            psi=value,
            threshold=threshold,
            crossed=None if value is None else value > threshold,
            rows=total,
            bins=list(self.labels) or bin_labels(self.edges),
            training=[float(share) for share in self.shares],
            window=[float(count) / total for count in counts] if total else None,
        )


@dataclass(frozen=True)
class FeatureTable:
    """Every feature figure of a tabular card at once: the shares padded with 0 to the longest,
    so the window's features are counted in one `bincount` and their PSIs computed in one
    pass."""

    figures: list[Compared]
    shares: np.ndarray  # (features, most edges + 1)

    @classmethod
    def of(cls, figures: list[Compared]) -> FeatureTable:
        shares = np.zeros((len(figures), max(len(one.shares) for one in figures)))
        for row, one in enumerate(figures):
            shares[row, : len(one.shares)] = one.shares
        return cls(figures, shares)

    def counts(self, features: np.ndarray) -> np.ndarray:
        """(features, bins) counts, each feature binned as `bin_counts` bins it."""
        width = self.shares.shape[1]
        flat = np.concatenate(
            [
                np.searchsorted(one.edges, features[:, one.column], side="right") + row * width
                for row, one in enumerate(self.figures)
            ]
        )
        found = np.bincount(flat, minlength=len(self.figures) * width)
        return found.reshape(len(self.figures), width)

    def values(self, features: np.ndarray, minimum: int) -> dict[str, float | None]:
        if len(features) < minimum:
            return {one.name: None for one in self.figures}
        found = psis(self.shares, self.counts(features))
        return {one.name: float(value) for one, value in zip(self.figures, found, strict=True)}


def compared(card: ModelCard, reference: DriftReference) -> list[Compared]:
    """Every figure the card allows: its features, its predicted class or answer, and its
    familiarity scores where it has the block."""
    found = [
        _compared(feature.name, "feature", feature, column=column)
        for column, feature in enumerate(reference.features or [])
    ]
    if reference.classes is not None:
        priors = Bins(edges=[], proportions=reference.classes.priors)
        labels = tuple(reference.classes.labels)
        found.append(_compared("predicted_class", "predicted_class", priors, labels=labels))
    if reference.prediction is not None:
        found.append(_compared("prediction", "prediction", reference.prediction))
    familiar = familiarity_bins(card)
    if familiar is not None:
        found.append(_compared("familiarity", "familiarity", familiar))
    return found


def _compared(
    name: str, kind: FigureKind, bins: Bins, column: int = 0, labels: tuple[str, ...] = ()
) -> Compared:
    return Compared(
        name=name,
        kind=kind,
        edges=np.asarray(bins.edges, dtype=np.float64),
        shares=np.asarray(bins.proportions, dtype=np.float64),
        column=column,
        labels=labels,
    )


@dataclass(frozen=True)
class Figures:
    """A card's figures, prepared once per window: its features as one table, the rest one by
    one."""

    reference: DriftReference
    features: FeatureTable | None
    others: list[Compared]

    @classmethod
    def of(cls, card: ModelCard, reference: DriftReference) -> Figures:
        found = compared(card, reference)
        features = [one for one in found if one.kind == "feature"]
        others = [one for one in found if one.kind != "feature"]
        return cls(reference, FeatureTable.of(features) if features else None, others)

    def values(self, rows: WindowRows) -> dict[str, float | None]:
        """Each figure's PSI by name (None: too few rows), for the gauges."""
        minimum = self.reference.thresholds.min_predictions
        found: dict[str, float | None] = {}
        if self.features is not None and rows.features is not None:
            found.update(self.features.values(rows.features, minimum))
        for one in self.others:
            found[one.name] = one.value(one.counts(rows), minimum)
        return found

    def figures(self, rows: WindowRows) -> list[DriftFigure]:
        """Each figure with its bins and shares, for the endpoint."""
        limits = self.reference.thresholds.psi, self.reference.thresholds.min_predictions
        found = []
        if self.features is not None and rows.features is not None:
            table = self.features.counts(rows.features)
            for one, counts in zip(self.features.figures, table, strict=True):
                found.append(one.figure(counts[: len(one.shares)], *limits))
        return found + [one.figure(one.counts(rows), *limits) for one in self.others]


def figures(card: ModelCard, reference: DriftReference, rows: WindowRows) -> list[DriftFigure]:
    """Every figure of a window's rows, with its bins."""
    return Figures.of(card, reference).figures(rows)


def bin_labels(edges: np.ndarray) -> list[str]:
    bounds = [f"{edge:.4g}" for edge in edges]
    return (
        [f"< {bounds[0]}"]
        + [f"{low} to {high}" for low, high in itertools.pairwise(bounds)]
        + [f">= {bounds[-1]}"]
    )


def familiarity_bins(card: ModelCard) -> Bins | None:
    """The deciles of the card's familiarity validation quantiles as bins, each holding the
    share of validation inputs between its percentiles (`validation_quantiles`, the score at
    percentiles 0..100); None for a card without the block."""
    if card.familiarity is None:
        return None
    quantiles = card.familiarity.validation_quantiles
    kept: dict[float, int] = {}  # edge to its highest percentile among the deciles
    for percentile in range(10, 100, 10):
        kept[float(quantiles[percentile])] = percentile
    edges = sorted(kept)
    percentiles = [0, *(kept[edge] for edge in edges), 100]
    shares = [(high - low) / 100 for low, high in itertools.pairwise(percentiles)]
    return Bins(edges=edges, proportions=shares)
