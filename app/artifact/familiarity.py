"""Familiarity of one input: how far it lies from the data the model was trained on.

Training fits the statistics (`training/familiarity.py`) and writes them beside the SavedModel
as `familiarity.npz` (hashed in the card like every file), with a `familiarity` block in the
card; the service scores each input with this module. numpy only: no TensorFlow, no HTTP.

Two methods, one score each, higher meaning less familiar:

- `class_mahalanobis` (image models; Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", 2018): the squared Mahalanobis distance
  of the input's activations at the card's `layer` (the penultimate layer) to the nearest class
  mean of the training activations, under their shared (class-centred, shrunk) covariance.
- `feature_ensemble` (Lee et al.'s feature ensemble): the same distance at each of the card's
  `parts`, a convolution's activations averaged over positions (one value per channel, the
  stroke statistics a penultimate layer has already discarded) or a dense layer as it is, each
  standardised by its validation scores (median, and 95th percentile minus median), summed.
- `input_mahalanobis` (tabular models): the squared Mahalanobis distance of the input from the
  training inputs' mean, each feature standardised (after log1p for the card's `log_features`)
  with the training inputs' standardised covariance. Where the card says
  `outside_range_unfamiliar`, any feature outside the training range (the 0th and 100th of
  `feature_quantiles`) also makes an input unfamiliar, whatever its score.
- `input_mixture` (tabular models whose inputs have several modes, housing's two metropolitan
  areas): minus the log density of the standardised input under a Gaussian mixture of the
  training inputs, as many components as the Bayesian information criterion chose; the range
  as for `input_mahalanobis`.

`energy` (Liu et al., "Energy-based Out-of-distribution Detection", 2020: -logsumexp of the
logits at `layer`) is computed too, so that the benchmark (`bench/familiarity.py`) can choose
between the two image methods by measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

FAMILIARITY_FILE = "familiarity.npz"
# The percentiles of each feature's training values a tabular card records.
FEATURE_PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)
Method = Literal[
    "class_mahalanobis", "energy", "feature_ensemble", "input_mahalanobis", "input_mixture"
]


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


class EnsemblePart(BaseModel):
    """One layer of a `feature_ensemble`: its class-conditional Mahalanobis distance, standardised
    by the validation split's distances at that layer."""

    layer: str = Field(description="Trace key of the layer.")
    channels: int | None = Field(
        None, description="Averaged over positions into this many channels; null: as it is."
    )
    centre: float = Field(description="The validation split's median distance.")
    spread: float = Field(
        description="The validation split's 95th percentile distance minus its median."
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
    parts: list[EnsemblePart] = Field(
        default_factory=list, description="feature_ensemble: the layers summed, in order."
    )
    fit_split: str = Field("train", description="The split the statistics were fitted on.")
    threshold_split: str = Field("validation", description="The split the threshold was set on.")
    log_features: list[str] = Field(
        default_factory=list, description="Tabular: features standardised after log1p."
    )
    feature_quantiles: dict[str, list[float]] | None = Field(
        None, description="Tabular: each feature's training values at FEATURE_PERCENTILES."
    )
    outside_range_unfamiliar: bool = Field(
        False,
        description="Tabular: a feature outside the training range makes an input unfamiliar "
        "(set where no more than 1% of the validation split lies outside it).",
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
            self._class_statistics = class_statistics(self.arrays, "")
        self._parts = [class_statistics(self.arrays, f"_{i}") for i in range(len(card.parts))]
        if card.method == "input_mixture":
            self._mixture = mixture_terms(self.arrays)

    @property
    def layers(self) -> dict[str, int | None]:
        """The trace keys the score reads (none: it reads the input itself), each with the
        channels it is averaged into over positions (None: read as it is)."""
        if self.card.parts:
            return {part.layer: part.channels for part in self.card.parts}
        return {} if self.card.layer is None else {self.card.layer: None}

    @classmethod
    def read(cls, card: Familiarity, version_dir: Path) -> Scorer:
        with np.load(version_dir / FAMILIARITY_FILE, allow_pickle=False) as data:
            return cls(card, {key: data[key] for key in data.files})

    def scores_of(self, batch: np.ndarray, outputs: Mapping[str, np.ndarray]) -> Scores:
        """Scores of each row of `batch`, given (at least) its outputs at `layers`."""
        if not self.card.parts:
            return self.scores(batch if self.card.layer is None else outputs[self.card.layer])
        total, nearest = np.zeros(len(batch)), None
        for index, part in enumerate(self.card.parts):
            rows = channel_means(outputs[part.layer], part.channels)
            distance, nearest = _class_distances(rows, self._parts[index])
            total += (distance - part.centre) / part.spread
        return Scores(total, nearest)  # the nearest class at the last (penultimate) layer

    def scores(self, values: np.ndarray) -> Scores:
        """Scores of each row of `values`: the input batch (input_mahalanobis) or the
        activations of the card's layer (the single-layer image methods)."""
        rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        if self.card.method == "energy":
            return Scores(-_logsumexp(rows), rows.argmax(axis=1))
        if self.card.method in ("input_mahalanobis", "input_mixture"):
            z = (logged(rows, self.arrays["log_mask"]) - self.arrays["mean"]) / self.arrays["scale"]
            if self.card.method == "input_mixture":
                return Scores(-self._log_density(z))
            return Scores(np.sum((z @ self.arrays["precision"]) * z, axis=1))
        return Scores(*_class_distances(rows, self._class_statistics))

    def _log_density(self, z: np.ndarray) -> np.ndarray:
        """The mixture's log density at each row: each component's squared distance
        z'P z - 2 m'P z + m'P m for all components in two matrix products."""
        quadratic, linear, constant = self._mixture
        pairs = (z[:, :, None] * z[:, None, :]).reshape(len(z), -1)
        return _logsumexp(constant - 0.5 * (pairs @ quadratic - 2 * (z @ linear)))

    def percentiles(self, scores: np.ndarray) -> np.ndarray:
        """Where each score stands among the validation inputs' scores, 0 to 100."""
        return np.asarray(np.interp(scores, self._quantiles, np.arange(101.0)))

    def named(self, mask: np.ndarray) -> list[list[str]]:
        """The features set in each row of an `outside_mask`, by name."""
        names = list(self.card.feature_quantiles or {})
        named: list[list[str]] = [[] for _ in range(len(mask))]
        for row in np.flatnonzero(mask.any(axis=1)):  # few rows: no Python for the others
            named[row] = [names[i] for i in np.flatnonzero(mask[row])]
        return named

    def familiar(self, scores: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
        """Which rows count as familiar: those scored at most the threshold and, where the card
        says `outside_range_unfamiliar`, with no feature set in `outside` (the inputs'
        `outside_mask`)."""
        familiar = np.asarray(scores <= self.card.threshold)
        if outside is not None and self.card.outside_range_unfamiliar:
            familiar &= ~outside.any(axis=1)
        return familiar

    def outside_mask(self, rows: np.ndarray) -> np.ndarray | None:
        """Tabular: for each row and feature, whether it lies outside the training range
        (None: an image model)."""
        quantiles = self.card.feature_quantiles
        if quantiles is None:
            return None
        low = np.array([values[0] for values in quantiles.values()])
        high = np.array([values[-1] for values in quantiles.values()])
        values = np.asarray(rows).reshape(len(rows), -1)
        return np.asarray((values < low) | (values > high))


# Each component's precision flattened (d*d, k), precision times mean (d, k), and what does not
# depend on the input (k): its log weight and normaliser less half its mean's own term.
MixtureTerms = tuple[np.ndarray, np.ndarray, np.ndarray]


def mixture_terms(arrays: Mapping[str, np.ndarray]) -> MixtureTerms:
    """The mixture's terms from scikit-learn's parametrisation (each component's precision as
    its Cholesky factor L, precision L L')."""
    weights, means = arrays["weights"], arrays["component_means"]
    cholesky = arrays["precision_cholesky"]
    precisions = cholesky @ cholesky.transpose(0, 2, 1)
    components, dimensions = means.shape
    projected = np.einsum("kde,ke->kd", precisions, means)
    log_det = np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(axis=1)
    constant = (
        np.log(weights)
        + log_det
        - 0.5 * (dimensions * np.log(2 * np.pi) + np.sum(projected * means, axis=1))
    )
    return precisions.reshape(components, -1).T, projected.T, constant


# A precision, the class means through it and each mean's own term: what every batch needs.
ClassStatistics = tuple[np.ndarray, np.ndarray, np.ndarray]


def class_statistics(arrays: Mapping[str, np.ndarray], suffix: str) -> ClassStatistics:
    """The class means and precision stored under `suffix`, as `ClassStatistics`."""
    means, precision = arrays[f"means{suffix}"], arrays[f"precision{suffix}"]
    projected = means @ precision
    return precision, projected, np.sum(projected * means, axis=1)


def _class_distances(
    rows: np.ndarray, statistics: ClassStatistics
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's squared Mahalanobis distance to the nearest class mean, and that class."""
    precision, projected_means, mean_terms = statistics
    # |f - m_c|^2_P = f.P.f - 2 f.P.m_c + m_c.P.m_c, for every class c at once.
    distances = (
        np.sum((rows @ precision) * rows, axis=1)[:, None]
        - 2 * rows @ projected_means.T
        + mean_terms[None, :]
    )
    return np.maximum(distances.min(axis=1), 0.0), distances.argmin(axis=1)


def channel_means(values: np.ndarray, channels: int | None) -> np.ndarray:
    """A batch of activations as rows: averaged over positions (channels last) into
    `channels` values, or flattened (None). Already averaged rows are returned as they are."""
    rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if channels is None:
        return rows
    return np.asarray(rows.reshape(len(rows), -1, channels).mean(axis=1))


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
