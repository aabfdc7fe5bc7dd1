"""Familiarity statistics, fitted at export and written beside the SavedModel.

Every export (`training.common.run`) calls `add`, and `python -m training familiarity
--data-dir <data>` adds them to models already exported, from their SavedModels and the training
data, without retraining (the split is rebuilt with the seed in the card). What is written:

- `familiarity.npz` (hashed in the card): image models, the class means of the training
  split's activations at the penultimate layer and the precision of their class-centred
  covariance (Ledoit-Wolf shrinkage); tabular models, the training inputs' mean, standard
  deviation and the precision of their standardised covariance.
- the card's `familiarity` block (`app.artifact.familiarity.Familiarity`): the method, the layer,
  the threshold at the 95th percentile of the validation split's scores (so that 95% of held-in
  inputs count as familiar) and those scores' 101 percentiles; tabular, each feature's training
  percentiles. The test split is only scored (`test_familiar`), never used to set anything.

The activations come from the SavedModel's own `trace` signature, pruned to the one layer.
Which method each kind of model uses was chosen by measurement (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from app.artifact.card import InputSpec, LayerSpec, ModelCard, hash_files
from app.artifact.familiarity import (
    FAMILIARITY_FILE,
    FEATURE_PERCENTILES,
    Familiarity,
    Method,
    Scorer,
    logged,
    quantiles_of,
)

# The inputs as the service gets them, for the statistics: (x_train, y_train, x_val, x_test).
SplitInputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A layer's activations for a batch of inputs (the inputs themselves for the layer None).
LayerValues = Callable[[str | None, np.ndarray], np.ndarray]

# An image pipeline's FAMILIARITY_METHOD, else this: of the two image methods, each model uses
# the one whose lowest AUROC over bench/familiarity.py's sets is higher (docs/models.md).
IMAGE_METHOD: Method = "class_mahalanobis"
FAMILIAR_SHARE = 0.95
LOGITS_LAYER = "logits"
BATCH = 128


def score_layer(layers: list[LayerSpec], method: Method) -> str:
    """The trace key a method reads: the logits for energy, else the layer feeding the logits
    (the penultimate), past any Dropout (the identity when serving)."""
    names = [layer.name for layer in layers]
    if LOGITS_LAYER not in names:
        raise ValueError(f"No '{LOGITS_LAYER}' layer among {names}.")
    index = names.index(LOGITS_LAYER)
    if method == "energy":
        return layers[index].trace_key
    before = [layer for layer in layers[:index] if layer.type != "Dropout"]
    return before[-1].trace_key


def layer_values(version_dir: Path, input_name: str) -> LayerValues:
    """A layer's output for every row of a batch, from the SavedModel's trace signature."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    trace = loaded.signatures["trace"]

    def values(key: str | None, x: np.ndarray) -> np.ndarray:
        if key is None:
            return x.astype(np.float64)

        def layer(batch: tf.Tensor, kept: object = loaded) -> tf.Tensor:  # the variables' owner
            return trace(**{input_name: batch})[key]

        one_layer = tf.function(layer, input_signature=[tf.TensorSpec(None, tf.float32)])
        parts = [  # grappler prunes the layers the key does not need
            one_layer(tf.constant(x[start : start + BATCH], tf.float32)).numpy()
            for start in range(0, len(x), BATCH)
        ]
        return np.concatenate(parts).reshape(len(x), -1).astype(np.float64)

    return values


def fit_class_mahalanobis(features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"means": means, "precision": precision}


def fit_inputs(x: np.ndarray, log_mask: np.ndarray) -> dict[str, np.ndarray]:
    rows = logged(x, log_mask)
    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    correlation = np.cov(((rows - mean) / scale).T)
    return {
        "log_mask": log_mask.astype(np.float64),
        "mean": mean,
        "scale": scale,
        "precision": np.linalg.pinv(correlation),
    }


def fit(
    input_spec: InputSpec,
    layers: list[LayerSpec],
    x_train: np.ndarray,
    y_train: np.ndarray,
    values: LayerValues,
    log_features: tuple[str, ...] = (),
    method: Method = IMAGE_METHOD,
) -> tuple[Familiarity, dict[str, np.ndarray]]:
    """The block (threshold not yet set) and statistics fitted on the training split."""
    if input_spec.kind == "features":
        names = [feature.name for feature in input_spec.features or []]
        log_mask = np.isin(names, log_features)
        arrays = fit_inputs(x_train, log_mask)
        quantiles = np.percentile(x_train.astype(np.float64), FEATURE_PERCENTILES, axis=0)
        block = _placeholder(
            "input_mahalanobis",
            None,
            log_features=[name for name in names if name in log_features],
            feature_quantiles={name: quantiles[:, i].tolist() for i, name in enumerate(names)},
        )
        return block, arrays
    key = score_layer(layers, method)
    arrays = fit_class_mahalanobis(values(key, x_train), y_train) if method != "energy" else {}
    return _placeholder(method, key), arrays


def _placeholder(method: Method, layer: str | None, **extra: object) -> Familiarity:
    return Familiarity.model_validate(
        {"method": method, "layer": layer, "threshold": 0.0, "validation_quantiles": [0.0] * 101}
        | extra
    )


def add(
    version_dir: Path,
    input_spec: InputSpec,
    layers: list[LayerSpec],
    splits_xy: SplitInputs,
    log_features: tuple[str, ...] = (),
    method: Method = IMAGE_METHOD,
) -> Familiarity:
    """Fit on the training split, threshold on the validation split, score the test split;
    write `familiarity.npz` into the version folder and return the card's block.

    `splits_xy` is (x_train, y_train, x_val, x_test), the inputs as the service gets them."""
    x_train, y_train, x_val, x_test = splits_xy
    values = layer_values(version_dir, input_spec.name)
    block, arrays = fit(input_spec, layers, x_train, y_train, values, log_features, method)
    scorer = Scorer(block, arrays)
    validation = scorer.scores(values(block.layer, x_val)).score
    block.threshold = float(np.quantile(validation, FAMILIAR_SHARE))
    block.validation_quantiles = quantiles_of(validation)
    scorer = Scorer(block, arrays)
    test = scorer.scores(values(block.layer, x_test)).score
    block.test_familiar = float(scorer.familiar(test).mean())
    np.savez(version_dir / FAMILIARITY_FILE, **{k: v.astype(np.float64) for k, v in arrays.items()})
    return block


def options_of(pipeline: object) -> tuple[tuple[str, ...], Method]:
    """A pipeline's log features (tabular) and image method, where it sets them."""
    return (
        getattr(pipeline, "FAMILIARITY_LOG_FEATURES", ()),
        getattr(pipeline, "FAMILIARITY_METHOD", IMAGE_METHOD),
    )


def refresh(version_dir: Path, splits_xy: SplitInputs, pipeline: object) -> ModelCard:
    """Add familiarity to an exported version: statistics, the card's block and its hashes."""
    card = ModelCard.read(version_dir)
    card.familiarity = add(version_dir, card.input, card.layers, splits_xy, *options_of(pipeline))
    card.files = hash_files(version_dir)
    card.write(version_dir)
    return card
