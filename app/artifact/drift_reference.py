"""What the traffic of a model is compared with: the card's `drift` block.

Training writes it (`python -m training drift-reference`) from the same split the model was
trained on, and the service compares a rolling window of answered predictions with it
(`app.dataplane.drift`). Both sides bin values with `bin_counts`, so a value on an edge lands
in the same bin on either side. Numpy only.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

# Decile edges: nine inner edges, the outer bins open.
QUANTILES = tuple(q / 10 for q in range(1, 10))
PSI_THRESHOLD = 0.2
PSI_REASON = (
    "PSI 0.2 is the usual line of a significant shift (below 0.1 none, 0.1-0.2 moderate); "
    "a sample of the training distribution itself stays near (bins - 1) / n, 0.045 for 10 "
    "bins and the 200 predictions a figure needs"
)
MIN_PREDICTIONS = 200


class Bins(BaseModel):
    """Bins of one value and the training split's share in each: bin 0 is below `edges[0]`,
    bin i is [edges[i-1], edges[i]), the last is at or above `edges[-1]`."""

    edges: list[float] = Field(
        description="Inner edges, ascending (deciles of the training split)."
    )
    proportions: list[float] = Field(description="Training share per bin (len(edges) + 1).")


class FeatureBins(Bins):
    name: str = Field(description="The feature, as the card's input names it.")


class ClassPriors(BaseModel):
    labels: list[str]
    priors: list[float] = Field(description="Share of each class among the training labels.")


class DriftThresholds(BaseModel):
    psi: float = Field(PSI_THRESHOLD, description="A figure above this has crossed.")
    min_predictions: int = Field(
        MIN_PREDICTIONS, description="Fewer predictions in the window: no figure (not enough data)."
    )
    reason: str = PSI_REASON


class DriftReference(BaseModel):
    """The training distribution a model's traffic is compared with (the card's `drift`)."""

    split: str = Field(description="Which rows these come from, and the seed of the split.")
    thresholds: DriftThresholds = DriftThresholds()
    features: list[FeatureBins] | None = Field(
        None, description="Tabular models: each input feature's training bins."
    )
    classes: ClassPriors | None = Field(None, description="Classifiers: the training priors.")
    prediction: Bins | None = Field(
        None, description="Regressors: the model's answers on the training inputs, binned."
    )


def decile_bins(values: np.ndarray) -> Bins:
    """The deciles of `values` as edges (repeated ones once) and the share of `values` per bin."""
    edges = np.unique(np.quantile(np.asarray(values, dtype=np.float64), QUANTILES).round(6))
    counts = bin_counts(values, edges)
    return Bins(
        edges=[float(edge) for edge in edges],
        proportions=[round(float(share), 6) for share in counts / counts.sum()],
    )


def bin_counts(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """How many of `values` fall in each bin of `edges` (len(edges) + 1 counts)."""
    edges = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def class_priors(labels: list[str], y: np.ndarray) -> ClassPriors:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return ClassPriors(
        labels=labels, priors=[round(float(share), 6) for share in counts / counts.sum()]
    )
