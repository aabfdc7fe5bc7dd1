"""Familiarity statistics, fitted at export and written beside the SavedModel.

Every export (`training.common.run`) calls `add`, and `python -m training familiarity
--data-dir <data>` adds them to models already exported, from their SavedModels and the training
data, without retraining (the split is rebuilt with the seed in the card). What is written:

- `familiarity.npz` (hashed in the card): image models, the class means of the training
  split's activations at the penultimate layer (a feature ensemble: at each of its layers,
  `means_<i>`, `precision_<i>`) and the precision of their class-centred covariance
  (Ledoit-Wolf shrinkage); tabular models, the training inputs' mean, standard
  deviation and the precision of their standardised covariance (a mixture: its components'
  weights, means and precisions' Cholesky factors, as many as the BIC chose).
- the card's `familiarity` block (`app.artifact.familiarity.Familiarity`): the method, the layer,
  the threshold at the 95th percentile of the validation split's scores (so that 95% of held-in
  inputs count as familiar) and those scores' 101 percentiles; a feature ensemble, each layer's
  validation median and spread; tabular, each feature's training percentiles, and whether the
  training range holds the validation split (then a feature outside it makes an input
  unfamiliar). The test split is only scored (`test_familiar`), never used to set anything.

The activations come from the SavedModel's own `trace` signature, pruned to each layer read.
Which method each kind of model uses was chosen by measurement (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.mixture import GaussianMixture

from app.artifact.card import InputSpec, LayerSpec, ModelCard, hash_files
from app.artifact.familiarity import (
    FAMILIARITY_FILE,
    FEATURE_PERCENTILES,
    EnsemblePart,
    Familiarity,
    Method,
    Scorer,
    channel_means,
    logged,
    quantiles_of,
)

# The inputs as the service gets them, for the statistics: (x_train, y_train, x_val, x_test).
SplitInputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A layer's activations for a batch of inputs, as rows (the inputs themselves for the layer
# None), averaged over positions into the given number of channels where one is given.
LayerValues = Callable[[str | None, np.ndarray, int | None], np.ndarray]

# An image pipeline's FAMILIARITY_METHOD, else this: of the image methods, each model uses
# the one whose lowest AUROC over bench/familiarity.py's sets is higher (docs/models.md).
IMAGE_METHOD: Method = "class_mahalanobis"
FAMILIAR_SHARE = 0.95
# The most of the validation split that may lie outside the training range for the range to
# count as what the model knows (iris's 96 training flowers leave 12.5% of its validation
# flowers outside; housing's 14,860 blocks, 0.06%).
OUTSIDE_RANGE_SHARE = 0.01
# The mixture sizes tried for `input_mixture`; the one of lowest BIC on the training split is kept.
MIXTURE_COMPONENTS = (1, 2, 5, 10, 20, 40, 80)
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

    def values(key: str | None, x: np.ndarray, channels: int | None = None) -> np.ndarray:
        if key is None:
            return x.astype(np.float64)

        def layer(batch: tf.Tensor, kept: object = loaded) -> tf.Tensor:  # the variables' owner
            return trace(**{input_name: batch})[key]

        one_layer = tf.function(layer, input_signature=[tf.TensorSpec(None, tf.float32)])
        parts = [  # grappler prunes the layers the key does not need
            channel_means(one_layer(tf.constant(x[start : start + BATCH], tf.float32)), channels)
            for start in range(0, len(x), BATCH)
        ]
        return np.concatenate(parts)

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


def fit_mixture(x: np.ndarray, log_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The standardisation of `fit_inputs` and a Gaussian mixture of the standardised rows."""
    arrays = fit_inputs(x, log_mask)
    del arrays["precision"]  # the one Gaussian's, which the mixture replaces
    z = (logged(x, log_mask) - arrays["mean"]) / arrays["scale"]
    fitted = [
        GaussianMixture(size, covariance_type="full", reg_covar=1e-4, random_state=0).fit(z)
        for size in MIXTURE_COMPONENTS
        if size < len(z) // 10  # at least ten rows a component
    ]
    best = min(fitted, key=lambda mixture: mixture.bic(z))
    return arrays | {
        "weights": best.weights_,
        "component_means": best.means_,
        "precision_cholesky": best.precisions_cholesky_,
    }


def fit_ensemble(
    layers: list[LayerSpec],
    names: tuple[str, ...],
    splits_xy: SplitInputs,
    values: LayerValues,
) -> tuple[list[EnsemblePart], dict[str, np.ndarray]]:
    """Each named layer's class statistics on the training split, and its distances'
    standardisation on the validation split."""
    x_train, y_train, x_val, _ = splits_xy
    by_name = {layer.name: layer for layer in layers}
    parts, arrays = [], {}
    for index, name in enumerate(names):
        layer = by_name[name]
        channels = layer.output_shape[-1] if len(layer.output_shape) == 4 else None
        statistics = fit_class_mahalanobis(values(layer.trace_key, x_train, channels), y_train)
        one = Scorer(_placeholder("class_mahalanobis", layer.trace_key), statistics)
        distances = one.scores(values(layer.trace_key, x_val, channels)).score
        centre = float(np.median(distances))
        spread = float(np.quantile(distances, FAMILIAR_SHARE)) - centre
        parts.append(
            EnsemblePart(layer=layer.trace_key, channels=channels, centre=centre, spread=spread)
        )
        arrays |= {f"{key}_{index}": value for key, value in statistics.items()}
    return parts, arrays


def fit(
    input_spec: InputSpec,
    layers: list[LayerSpec],
    splits_xy: SplitInputs,
    values: LayerValues,
    log_features: tuple[str, ...] = (),
    method: Method = IMAGE_METHOD,
    ensemble: tuple[str, ...] = (),
) -> tuple[Familiarity, dict[str, np.ndarray]]:
    """The block (threshold not yet set) and statistics fitted on the training split (a
    feature ensemble's standardisation and the tabular range's use, on the validation one)."""
    x_train, y_train, x_val, _ = splits_xy
    if input_spec.kind == "features":
        names = [feature.name for feature in input_spec.features or []]
        log_mask = np.isin(names, log_features)
        mixture = method == "input_mixture"
        arrays = (fit_mixture if mixture else fit_inputs)(x_train, log_mask)
        quantiles = np.percentile(x_train.astype(np.float64), FEATURE_PERCENTILES, axis=0)
        block = _placeholder(
            "input_mixture" if mixture else "input_mahalanobis",
            None,
            log_features=[name for name in names if name in log_features],
            feature_quantiles={name: quantiles[:, i].tolist() for i, name in enumerate(names)},
        )
        outside = Scorer(block, arrays).outside_mask(x_val).any(axis=1).mean()
        block.outside_range_unfamiliar = bool(outside <= OUTSIDE_RANGE_SHARE)
        return block, arrays
    if method == "feature_ensemble":
        parts, arrays = fit_ensemble(layers, ensemble, splits_xy, values)
        return _placeholder(method, None, parts=parts), arrays
    key = score_layer(layers, method)
    arrays = (
        fit_class_mahalanobis(values(key, x_train, None), y_train) if method != "energy" else {}
    )
    return _placeholder(method, key), arrays


def _placeholder(method: Method, layer: str | None, **extra: object) -> Familiarity:
    return Familiarity.model_validate(
        {"method": method, "layer": layer, "threshold": 0.0, "validation_quantiles": [0.0] * 101}
        | extra
    )


def scored(scorer: Scorer, values: LayerValues, x: np.ndarray) -> np.ndarray:
    """The familiarity score of each input, from the layers the scorer reads."""
    outputs = {key: values(key, x, channels) for key, channels in scorer.layers.items()}
    return scorer.scores_of(x, outputs).score


def add(
    version_dir: Path,
    input_spec: InputSpec,
    layers: list[LayerSpec],
    splits_xy: SplitInputs,
    log_features: tuple[str, ...] = (),
    method: Method = IMAGE_METHOD,
    ensemble: tuple[str, ...] = (),
) -> Familiarity:
    """Fit on the training split, threshold on the validation split, score the test split;
    write `familiarity.npz` into the version folder and return the card's block.

    `splits_xy` is (x_train, y_train, x_val, x_test), the inputs as the service gets them."""
    _, _, x_val, x_test = splits_xy
    values = layer_values(version_dir, input_spec.name)
    block, arrays = fit(input_spec, layers, splits_xy, values, log_features, method, ensemble)
    validation = scored(Scorer(block, arrays), values, x_val)
    block.threshold = float(np.quantile(validation, FAMILIAR_SHARE))
    block.validation_quantiles = quantiles_of(validation)
    scorer = Scorer(block, arrays)
    test = scored(scorer, values, x_test)
    block.test_familiar = float(scorer.familiar(test, scorer.outside_mask(x_test)).mean())
    np.savez(version_dir / FAMILIARITY_FILE, **{k: v.astype(np.float64) for k, v in arrays.items()})
    return block


def options_of(pipeline: object) -> tuple[tuple[str, ...], Method, tuple[str, ...]]:
    """A pipeline's log features (tabular), image method and a feature ensemble's layers (by
    name), where it sets them."""
    return (
        getattr(pipeline, "FAMILIARITY_LOG_FEATURES", ()),
        getattr(pipeline, "FAMILIARITY_METHOD", IMAGE_METHOD),
        getattr(pipeline, "FAMILIARITY_ENSEMBLE", ()),
    )


def refresh(version_dir: Path, splits_xy: SplitInputs, pipeline: object) -> ModelCard:
    """Add familiarity to an exported version: statistics, the card's block and its hashes."""
    card = ModelCard.read(version_dir)
    card.familiarity = add(version_dir, card.input, card.layers, splits_xy, *options_of(pipeline))
    card.files = hash_files(version_dir)
    card.write(version_dir)
    return card
