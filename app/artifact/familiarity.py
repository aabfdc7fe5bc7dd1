"""Familiarity of one input: how far it lies from the data the model was trained on.

Training fits the statistics (`training/familiarity.py`) and writes them beside the SavedModel
as `familiarity.npz` (hashed in the card like every file), with a `familiarity` block in the
card; the service scores each input with this module. numpy only: no TensorFlow, no HTTP.

Two methods, one score each, higher meaning less familiar:

- `class_mahalanobis` (image models; Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", 2018): the squared Mahalanobis distance
  of the input's activations at the card's `layer` (the penultimate layer) to the nearest class
  mean of the training activations, under their shared (class-centred, shrunk) covariance.
- `input_mahalanobis` (tabular models): the squared Mahalanobis distance of the input from the
  training inputs' mean, each feature standardised (after log1p for the card's `log_features`)
  with the training inputs' standardised covariance. Besides the score, any feature outside
  the training range (the 0th and 100th of `feature_quantiles`) makes an input unfamiliar.

`energy` (Liu et al., "Energy-based Out-of-distribution Detection", 2020: -logsumexp of the
logits at `layer`) is computed too, so that the benchmark (`bench/familiarity.py`) can choose
between the two image methods by measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

FAMILIARITY_FILE = "familiarity.npz"
# The percentiles of each feature's training values a tabular card records.
FEATURE_PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)
Method = Literal["class_mahalanobis", "energy", "input_mahalanobis"]


class OutOfDistributionRow(BaseModel):
    """One line of the measured table: the test split against one out-of-distribution set."""

    name: str = Field(description="The out-of-distribution set (bench/familiarity.py).")
    count: int = Field(description="Inputs in the set.")
    refused: int = Field(
        0, description="Of them, refused before any score (422): counted as flagged."
    )
    auroc: float | None = Field(
        description="Area under the ROC curve, test split against the set's scored inputs "
        "(null: every input was refused)."
    )
    fpr_at_95_tpr: float | None = Field(
        description="Share of the set's scored inputs scored as familiar at the score that "
        "keeps 95% of the test split familiar (null: every input was refused)."
    )
    flagged: float = Field(
        description="Share of the set the card's threshold calls unfamiliar, or refused."
    )


class Familiarity(BaseModel):
    """How the service tells an input the model knows from one it is guessing about."""

    method: Method
    layer: str | None = Field(
        None, description="Trace key of the layer the score reads; null: the raw input."
    )
    threshold: float = Field(
        description="Scores above it are unfamiliar: the 95th percentile of the validation split."
    )
    higher_is_less_familiar: bool = True
    validation_quantiles: list[float] = Field(
        min_length=101,
        max_length=101,
        description="The score at percentiles 0, 1, ..., 100 of the held-in validation inputs.",
    )
    fit_split: str = Field("train", description="The split the statistics were fitted on.")
    threshold_split: str = Field("validation", description="The split the threshold was set on.")
    log_features: list[str] = Field(
        default_factory=list, description="Tabular: features standardised after log1p."
    )
    feature_quantiles: dict[str, list[float]] | None = Field(
        None, description="Tabular: each feature's training values at FEATURE_PERCENTILES."
    )
    test_familiar: float | None = Field(None, description="Share of the test split familiar.")
    measured: list[OutOfDistributionRow] = Field(
        default_factory=list, description="python -m bench.familiarity, against the test split."
    )


@dataclass(frozen=True)
class Scores:
    """Scores of a batch, and (image models) the index of each row's nearest class: the class
    mean nearest (class_mahalanobis), the highest logit (energy)."""

    score: np.ndarray
    nearest: np.ndarray | None = None


class Scorer:
    """A card's familiarity block with its statistics, scoring batches of inputs or
    activations."""

    def __init__(self, card: Familiarity, arrays: dict[str, np.ndarray]):
        self.card = card
        self.arrays = {key: np.asarray(value, dtype=np.float64) for key, value in arrays.items()}
        self._quantiles = np.asarray(card.validation_quantiles, dtype=np.float64)
        if card.method == "class_mahalanobis":
            means, precision = self.arrays["means"], self.arrays["precision"]
            self._projected_means = means @ precision
            self._mean_terms = np.sum(self._projected_means * means, axis=1)

    @classmethod
    def read(cls, card: Familiarity, version_dir: Path) -> Scorer:
        with np.load(version_dir / FAMILIARITY_FILE, allow_pickle=False) as data:
            return cls(card, {key: data[key] for key in data.files})

    def scores(self, values: np.ndarray) -> Scores:
        """Scores of each row of `values`: the input batch (input_mahalanobis) or the
        activations of the card's layer (the other methods)."""
        rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        if self.card.method == "energy":
            return Scores(-_logsumexp(rows), rows.argmax(axis=1))
        if self.card.method == "input_mahalanobis":
            z = (logged(rows, self.arrays["log_mask"]) - self.arrays["mean"]) / self.arrays["scale"]
            return Scores(np.sum((z @ self.arrays["precision"]) * z, axis=1))
        # |f - m_c|^2_P = f.P.f - 2 f.P.m_c + m_c.P.m_c, for every class c at once.
        projected = rows @ self.arrays["precision"]
        distances = (
            np.sum(projected * rows, axis=1)[:, None]
            - 2 * rows @ self._projected_means.T
            + self._mean_terms[None, :]
        )
        return Scores(np.maximum(distances.min(axis=1), 0.0), distances.argmin(axis=1))

    def percentiles(self, scores: np.ndarray) -> np.ndarray:
        """Where each score stands among the validation inputs' scores, 0 to 100."""
        return np.asarray(np.interp(scores, self._quantiles, np.arange(101.0)))

    def outside(self, rows: np.ndarray) -> list[list[str]] | None:
        """Tabular: the features of each row outside the training range (None: an image
        model, which has no such range)."""
        quantiles = self.card.feature_quantiles
        if quantiles is None:
            return None
        names = list(quantiles)
        low = np.array([values[0] for values in quantiles.values()])
        high = np.array([values[-1] for values in quantiles.values()])
        out = (rows < low) | (rows > high)
        return [[names[i] for i in np.flatnonzero(row)] for row in out]

    def familiar(self, scores: np.ndarray) -> np.ndarray:
        """Which rows count as familiar: those scored at most the threshold."""
        return np.asarray(scores <= self.card.threshold)


def logged(rows: np.ndarray, log_mask: np.ndarray) -> np.ndarray:
    """Tabular rows with the masked features as log1p (negative values taken as 0)."""
    mask = log_mask.astype(bool)
    out = np.array(rows, dtype=np.float64)
    out[:, mask] = np.log1p(np.maximum(out[:, mask], 0.0))
    return out


def quantiles_of(scores: np.ndarray) -> list[float]:
    """The 101 percentiles (0 to 100) of `scores`."""
    return [float(q) for q in np.quantile(np.asarray(scores, np.float64), np.linspace(0, 1, 101))]


def _logsumexp(rows: np.ndarray) -> np.ndarray:
    top = rows.max(axis=1)
    return np.asarray(top + np.log(np.exp(rows - top[:, None]).sum(axis=1)))
