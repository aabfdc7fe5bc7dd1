"""Iris species from four flower measurements in cm.

Data: Fisher's Iris data as scikit-learn ships it (`load_iris()`, no download). The test split is
the stratified 20% of `train_test_split(..., stratify=y, random_state=42)`; 20% of the rest is
held out for model selection.

The network keeps the course's layer structure, Dense(8) / ReLU / Dense(3) / softmax, so the
layer trace mirrors its "behind the scenes" walk-through. A Normalization layer adapted on the
training split sits in front, so the model takes measurements in cm as they are. The seed
baseline is the same net without it.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from app.artifact.card import InputSpec, OutOfFold, OutputSpec, Target
from training.common import (
    Options,
    Splits,
    Trained,
    classification_metrics,
    compile_classifier,
    feature_specs,
)
from training.out_of_fold import out_of_fold as pooled

NAME = "iris"
DESCRIPTION = "Iris species (setosa, versicolor, virginica) from four flower measurements."
TARGET = Target(metric="accuracy", op=">=", value=0.93, split="stratified 20% test split")
FEATURES = [
    ("sepal_length", "cm", "Sepal length"),
    ("sepal_width", "cm", "Sepal width"),
    ("petal_length", "cm", "Petal length"),
    ("petal_width", "cm", "Petal width"),
]
LABELS = ["setosa", "versicolor", "virginica"]
DEFAULT_EPOCHS = 300


def load_data(data_dir: Path | None, seed: int) -> Splits:
    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=42
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=seed
    )
    return Splits(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        source="Fisher's Iris data set (scikit-learn load_iris)",
    )


def build_model(x_train: np.ndarray | None) -> keras.Model:
    inputs = keras.Input(shape=(len(FEATURES),), name="features")
    x = inputs
    if x_train is not None:
        normalize = layers.Normalization(name="normalize")
        normalize.adapt(x_train)
        x = normalize(x)
    x = layers.Dense(8, name="dense")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.Dense(3, name="dense_1")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=NAME)


def fit(model: keras.Model, splits: Splits, epochs: int, options: Options) -> None:
    compile_classifier(model, 0.01)
    model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=epochs,
        batch_size=options.batch_size or 16,
        verbose=0,
    )


def train(splits: Splits, options: Options) -> Trained:
    epochs = options.epochs or DEFAULT_EPOCHS
    model = build_model(splits.x_train)
    fit(model, splits, epochs, options)
    seed_model = build_model(None)
    fit(seed_model, splits, options.baseline_epochs or epochs, options)
    logistic = LogisticRegression(max_iter=1000).fit(splits.x_train, splits.y_train)
    return Trained(
        model=model,
        settings={
            "epochs": epochs,
            "batch_size": options.batch_size or 16,
            "optimizer": "Adam",
            "learning_rate": 0.01,
            "validation_accuracy": classification_metrics(model, splits.x_val, splits.y_val)[
                "accuracy"
            ],
        },
        baselines={
            "seed net on raw cm (no normalization)": evaluate(
                seed_model, splits.x_test, splits.y_test
            ),
            "logistic regression": {
                "accuracy": float(logistic.score(splits.x_test, splits.y_test))
            },
        },
    )


def out_of_fold(splits: Splits, options: Options) -> OutOfFold:
    """The ECE judged on pooled out-of-fold answers for the 120 non-test flowers (the test
    split's 30 cannot judge it), each fold's net trained as `train` trains the shipped one."""

    def train_net(fold: Splits) -> keras.Model:
        model = build_model(fold.x_train)
        fit(model, fold, options.epochs or DEFAULT_EPOCHS, options)
        return model

    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    return pooled(x, y, train_net, options.seed)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return classification_metrics(model, x, y)


def input_spec(splits: Splits) -> InputSpec:
    return InputSpec(
        kind="features",
        name="features",
        shape=[None, len(FEATURES)],
        features=feature_specs(FEATURES, splits.x_train, nonnegative=True),
    )


def output_spec() -> OutputSpec:
    return OutputSpec(kind="probabilities", name="probabilities", labels=LABELS)
