"""The ECE of pooled out-of-fold predictions, for a data set whose test split is too small to
judge calibration on (iris: 30 flowers, one wrong answer worth up to 0.033 of ECE).

Every non-test row is answered once, by a net that never saw it: the rows are cut into `folds`
stratified folds; for each, the pipeline's own net is trained on the other folds' rows (less a
stratified 20% held out, as the pipeline's own validation split), its temperature fitted on that
held-out part, and the fold answered with the temperature applied. The ECE and its bootstrap
interval are computed over all the pooled answers.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from app.artifact.card import OutOfFold
from training.calibration import (
    ece,
    ece_interval,
    fit_temperature,
    logits_model,
    reliability,
    softmax,
)
from training.common import Splits, set_seed

FOLDS = 5
VALIDATION = 0.2


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    train_net: Callable[[Splits], keras.Model],
    seed: int,
    folds: int = FOLDS,
) -> OutOfFold:
    """Pooled out-of-fold calibration of the nets `train_net` trains (on a split's train
    part, selecting on its validation part), over the rows `x`, `y`."""
    set_seed(seed)
    pooled = np.zeros((len(y), int(y.max()) + 1))
    untempered = np.zeros_like(pooled)
    temperatures = []
    cut = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for inside, held in cut.split(x, y):
        x_train, x_val, y_train, y_val = train_test_split(
            x[inside], y[inside], test_size=VALIDATION, stratify=y[inside], random_state=seed
        )
        net = train_net(Splits(x_train, y_train, x_val, y_val, x[held], y[held]))
        logits = logits_model(net)
        temperature = fit_temperature(logits.predict(x_val, verbose=0), y_val)
        held_logits = logits.predict(x[held], verbose=0)
        pooled[held] = softmax(held_logits, temperature)
        untempered[held] = softmax(held_logits)
        temperatures.append(round(temperature, 6))
    predictions = (
        f"every non-test row, answered out of fold ({folds} stratified folds, seed {seed}; "
        "each fold by a net trained and its temperature fitted without it)"
    )
    judged = ece_interval(pooled, y, predictions, seed)
    return OutOfFold(
        **judged.model_dump(),
        folds=folds,
        temperatures=temperatures,
        ece_untempered=ece(untempered, y),
        reliability=reliability(pooled, y),
    )
