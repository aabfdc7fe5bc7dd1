"""California median house value (in $100k) from eight census block-group features.

Data: the 1990 California census housing data (StatLib) via scikit-learn's
`fetch_california_housing()`; offline from `<data-dir>/scikit_learn_data`. The test split is the
20% of `train_test_split(..., test_size=0.2, random_state=42)`; 10% of the rest is held out for
model selection (early stopping).

Inside the model, so that it takes the raw features: the heavy-tailed counts (rooms, bedrooms,
population, occupancy) are log-transformed; 50 "geo similarity" features are added, a Gaussian
of the distance from the block to each of 50 k-means centres of the training blocks' locations
(prices are local, and a plain MLP draws smooth maps poorly); everything is standardized. Then
three ReLU layers of 256 and a linear output. Baselines: linear regression and the course's
16-16 dropout net.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops
from sklearn.cluster import KMeans
from sklearn.datasets import fetch_california_housing
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from app.artifact.card import InputSpec, OutputSpec, Target
from training.common import Options, Splits, Trained, feature_specs

NAME = "housing"
DESCRIPTION = "Median house value of a California block group (1990 census), in $100,000."
TARGET = Target(metric="rmse", op="<=", value=0.50, split="20% test split (random_state=42)")
FEATURES = [
    ("MedInc", "$10,000", "Median household income in the block group"),
    ("HouseAge", "years", "Median house age in the block group"),
    ("AveRooms", "rooms", "Average number of rooms per household"),
    ("AveBedrms", "rooms", "Average number of bedrooms per household"),
    ("Population", "people", "Block group population"),
    ("AveOccup", "people", "Average number of household members"),
    ("Latitude", "degrees north", "Block group latitude"),
    ("Longitude", "degrees east", "Block group longitude (negative: west)"),
]
# California and a margin around it; the other features get the widened training range.
BOUNDS = {"Latitude": (30.0, 44.0), "Longitude": (-127.0, -112.0)}
LOG_COLUMNS = (2, 3, 4, 5)
# The familiarity score standardises the same count columns after log1p (training/familiarity.py).
FAMILIARITY_LOG_FEATURES = tuple(FEATURES[column][0] for column in LOG_COLUMNS)
# Block groups crowd around Los Angeles and the Bay Area: no one Gaussian describes them.
FAMILIARITY_METHOD = "input_mixture"
GEO_CENTRES = 50
GEO_GAMMA = 1.0
DEFAULT_EPOCHS = 200


@keras.saving.register_keras_serializable(package="glassbox")
class LogCounts(layers.Layer):
    """log(1 + x) of the heavy-tailed count columns; the other columns pass through."""

    def __init__(self, columns=LOG_COLUMNS, width=len(FEATURES), **kwargs):
        super().__init__(**kwargs)
        self.columns = tuple(columns)
        self.width = width
        self.mask = np.isin(np.arange(width), self.columns).astype("float32")

    def call(self, x):
        logged = ops.log1p(ops.maximum(x, 0.0))
        return self.mask * logged + (1.0 - self.mask) * x

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "width": self.width}


@keras.saving.register_keras_serializable(package="glassbox")
class GeoSimilarity(layers.Layer):
    """Appends exp(-gamma * squared distance) from (Latitude, Longitude) to each fixed centre."""

    def __init__(self, centres, gamma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.centres = np.asarray(centres, dtype="float32")
        self.gamma = gamma

    def call(self, x):
        location = x[:, 6:8]
        distance = ops.sum((ops.expand_dims(location, 1) - self.centres[None]) ** 2, axis=-1)
        return ops.concatenate([x, ops.exp(-self.gamma * distance)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "centres": self.centres.tolist(), "gamma": self.gamma}


def load_data(data_dir: Path | None, seed: int) -> Splits:
    if data_dir is not None:
        housing = fetch_california_housing(
            data_home=str(data_dir / "scikit_learn_data"), download_if_missing=False
        )
    else:
        housing = fetch_california_housing()
    x, y = housing.data.astype(np.float32), housing.target.astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.1, random_state=seed
    )
    return Splits(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        source="California housing, 1990 census (StatLib), via scikit-learn",
    )


def build_model(x_train: np.ndarray, seed: int) -> keras.Model:
    inputs = keras.Input(shape=(len(FEATURES),), name="features")
    logged = LogCounts(name="log_counts")
    centres = KMeans(GEO_CENTRES, n_init=4, random_state=seed).fit(x_train[:, 6:8])
    geo = GeoSimilarity(centres.cluster_centers_, GEO_GAMMA, name="geo_similarity")
    normalize = layers.Normalization(name="normalize")
    normalize.adapt(geo(logged(x_train)))
    x = normalize(geo(logged(inputs)))
    for index in range(3):
        x = layers.Dense(256, activation="relu", name=f"dense_{index}")(x)
    outputs = layers.Dense(1, name="value")(x)
    return keras.Model(inputs, outputs, name=NAME)


def build_seed_model(x_train: np.ndarray) -> keras.Model:
    normalize = layers.Normalization()
    normalize.adapt(x_train)
    return keras.Sequential(
        [
            keras.Input(shape=(len(FEATURES),)),
            normalize,
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(1),
        ]
    )


def fit(model: keras.Model, splits: Splits, epochs: int, batch_size: int, lr: float, verbose):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="mse",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_rmse", patience=25, restore_best_weights=True)
    shrink = keras.callbacks.ReduceLROnPlateau(monitor="val_rmse", factor=0.5, patience=8)
    return model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[stop, shrink],
        verbose=verbose,
    )


def train(splits: Splits, options: Options) -> Trained:
    epochs = options.epochs or DEFAULT_EPOCHS
    batch_size = options.batch_size or 128
    model = build_model(splits.x_train, options.seed)
    history = fit(model, splits, epochs, batch_size, 1e-3, options.verbose)
    seed_model = build_seed_model(splits.x_train)
    fit(seed_model, splits, options.baseline_epochs or epochs, 32, 1e-3, 0)
    linear = LinearRegression().fit(splits.x_train, splits.y_train)
    linear_rmse = float(np.sqrt(np.mean((linear.predict(splits.x_test) - splits.y_test) ** 2)))
    return Trained(
        model=model,
        settings={
            "max_epochs": epochs,
            "epochs_run": len(history.history["loss"]),
            "batch_size": batch_size,
            "optimizer": "Adam(1e-3), halved on a validation plateau of 8 epochs",
            "loss": "mse",
            "geo_similarity": f"{GEO_CENTRES} k-means centres, gamma {GEO_GAMMA}",
            "model_selection": "early stopping on validation RMSE (patience 25), best weights",
            "best_val_rmse": float(min(history.history["val_rmse"])),
        },
        baselines={
            "linear regression": {"rmse": linear_rmse},
            "seed 16-16 dropout net": evaluate(seed_model, splits.x_test, splits.y_test),
        },
    )


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    predicted = model.predict(x, batch_size=1024, verbose=0).reshape(-1)
    return {"rmse": float(np.sqrt(np.mean((predicted - y) ** 2)))}


def input_spec(splits: Splits) -> InputSpec:
    return InputSpec(
        kind="features",
        name="features",
        shape=[None, len(FEATURES)],
        features=feature_specs(FEATURES, splits.x_train, nonnegative=True, bounds=BOUNDS),
    )


def output_spec() -> OutputSpec:
    return OutputSpec(kind="value", name="value", unit="$100,000", unit_scale=100_000.0)
