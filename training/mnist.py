"""Handwritten digit (0-9) from a 28x28 grayscale image, pixels 0-255, light ink on black.

Data: MNIST (LeCun and Cortes). Offline from `<data-dir>/mnist.npz` (Keras's keys), online via
`keras.datasets.mnist.load_data()`. The test split is the 10,000 MNIST test digits; 5,000 of the
60,000 training digits are held out for model selection.

`--arch cnn` (default, shipped): keras.io's "simple MNIST convnet" with a wider head, trained with
small shifts, rotations and zooms so that digits from photos and drawings (which the service
centres as MNIST did) are read too. `--arch mlp`: the course's Flatten/Dense(128)/Dense(10) seed,
also trained as the card's baseline.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.model_selection import train_test_split

from app.artifact.card import ImageSpec, InputSpec, OutputSpec, Target
from training.common import Options, Splits, Trained, classification_metrics, compile_classifier

NAME = "mnist"
DESCRIPTION = "Handwritten digit 0-9 from a 28x28 grayscale image (MNIST-style, 0-255)."
TARGET = Target(metric="accuracy", op=">=", value=0.99, split="MNIST test set (10,000 digits)")
LABELS = [str(digit) for digit in range(10)]
IMAGE = ImageSpec(height=28, width=28, channels=1, preprocessing="mnist")
DEFAULT_EPOCHS = 15
BASELINE_EPOCHS = 5
# The energy of the logits misses letters drawn in a font, the penultimate layer's Mahalanobis
# distance misses noise; with the first convolution's per-channel means (local stroke
# statistics) beside the penultimate layer, neither is missed (docs/models.md, "Familiarity").
FAMILIARITY_METHOD = "feature_ensemble"
FAMILIARITY_ENSEMBLE = ("conv_1", "dense")


def load_data(data_dir: Path | None, seed: int) -> Splits:
    if data_dir is not None:
        with np.load(data_dir / "mnist.npz") as data:
            x, y = data["x_train"], data["y_train"]
            x_test, y_test = data["x_test"], data["y_test"]
        source = f"MNIST (LeCun and Cortes, CC BY-SA 3.0) from {data_dir}/mnist.npz"
    else:
        (x, y), (x_test, y_test) = keras.datasets.mnist.load_data()
        source = "MNIST (LeCun and Cortes, CC BY-SA 3.0) via keras.datasets.mnist"
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=5000, stratify=y, random_state=seed
    )
    return Splits(
        x_train,
        y_train.astype(np.int64),
        x_val,
        y_val.astype(np.int64),
        x_test,
        y_test.astype(np.int64),
        source=source,
    )


def build_cnn() -> keras.Model:
    inputs = keras.Input(shape=(28, 28), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Reshape((28, 28, 1), name="channel")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv_1")(x)
    x = layers.MaxPooling2D(name="pool_1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D(name="pool_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dense(10, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


def build_mlp() -> keras.Model:
    inputs = keras.Input(shape=(28, 28), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dense(10, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{NAME}_mlp")


def augmented(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    augment = keras.Sequential(
        [
            layers.Reshape((28, 28, 1)),
            layers.RandomRotation(0.04, seed=seed),
            layers.RandomZoom(0.08, seed=seed),
            layers.RandomTranslation(0.08, 0.08, seed=seed),
            layers.Reshape((28, 28)),
        ]
    )
    data = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y))
    data = data.shuffle(len(x), seed=seed).batch(batch_size)
    data = data.map(lambda images, labels: (augment(images, training=True), labels))
    return data.prefetch(tf.data.AUTOTUNE)


def train(splits: Splits, options: Options) -> Trained:
    epochs = options.epochs or DEFAULT_EPOCHS
    batch_size = options.batch_size or 128
    arch = options.arch or "cnn"
    baseline_epochs = options.baseline_epochs or BASELINE_EPOCHS
    seed_model = build_mlp()
    compile_classifier(seed_model, 1e-3)
    seed_model.fit(
        splits.x_train,
        splits.y_train,
        batch_size=batch_size,
        epochs=baseline_epochs,
        verbose=options.verbose,
    )
    baselines = {
        f"seed MLP Flatten/Dense(128)/Dense(10), {baseline_epochs} epochs": evaluate(
            seed_model, splits.x_test, splits.y_test
        )
    }
    if arch == "mlp":
        return Trained(
            model=seed_model,
            settings={"arch": "mlp", "epochs": baseline_epochs, "batch_size": batch_size},
            baselines=baselines,
        )

    model = build_cnn()
    steps = epochs * int(np.ceil(len(splits.x_train) / batch_size))
    compile_classifier(model, keras.optimizers.schedules.CosineDecay(2e-3, steps))
    best = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=epochs, restore_best_weights=True
    )
    history = model.fit(
        augmented(splits.x_train, splits.y_train, batch_size, options.seed),
        validation_data=(splits.x_val.astype(np.float32), splits.y_val),
        epochs=epochs,
        callbacks=[best],
        verbose=options.verbose,
    )
    return Trained(
        model=model,
        settings={
            "arch": "cnn",
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "Adam, cosine decay from 2e-3",
            "augmentation": "rotation 0.04, zoom 8%, shift 8%",
            "model_selection": "weights of the epoch with the best validation accuracy",
            "best_val_accuracy": float(max(history.history["val_accuracy"])),
        },
        baselines=baselines,
    )


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return classification_metrics(model, x.astype(np.float32), y)


def input_spec(splits: Splits) -> InputSpec:
    return InputSpec(kind="image", name="image", shape=[None, 28, 28], image=IMAGE)


def output_spec() -> OutputSpec:
    return OutputSpec(kind="probabilities", name="probabilities", labels=LABELS)
