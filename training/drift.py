"""The card's `drift` block: the training distribution the service compares its traffic with.

From the training split the model was trained on (the pipeline's own `load_data` with the seed
in its card): the deciles of each input feature of a tabular model and the training share in
each bin; a classifier's class priors from the training labels; and for a regressor the bins of
the model's own answers on the training inputs (what its answers look like when nothing has
shifted). The thresholds and why are in `app.artifact.drift_reference`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.artifact.card import InputSpec, OutputSpec
from app.artifact.drift_reference import (
    DriftReference,
    FeatureBins,
    class_priors,
    decile_bins,
)


def reference(
    input_spec: InputSpec,
    output_spec: OutputSpec,
    x_train: np.ndarray | None,
    y_train: np.ndarray,
    seed: int,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DriftReference:
    """The drift block of a model trained on `x_train`, `y_train` (split with `seed`).

    `x_train` may be None for an image model (only its labels are used); `predict` (raw inputs
    to the served output) is needed for a regressor."""
    features = None
    if input_spec.features is not None and x_train is not None:
        features = [
            FeatureBins(name=spec.name, **decile_bins(x_train[:, column]).model_dump())
            for column, spec in enumerate(input_spec.features)
        ]
    classes = prediction = None
    if output_spec.kind == "probabilities":
        classes = class_priors(list(output_spec.labels or []), y_train)
    else:
        if predict is None or x_train is None:
            raise ValueError("a regressor's drift reference needs its answers on x_train")
        prediction = decile_bins(np.asarray(predict(x_train)).reshape(-1))
    return DriftReference(
        split=f"the training split ({len(y_train)} rows, seed {seed})",
        features=features,
        classes=classes,
        prediction=prediction,
    )
