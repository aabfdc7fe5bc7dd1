"""What every training pipeline shares: data splits, seeding, export and the model card."""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from app.artifact import layout
from app.artifact.card import (
    SERVING_SIGNATURE,
    TRACE_SIGNATURE,
    FeatureSpec,
    InputSpec,
    LayerSpec,
    ModelCard,
    OutputSpec,
    Target,
    hash_files,
)
from training import familiarity
from training.calibration import calibrate
from training.drift import reference


@dataclass
class Splits:
    """Train, validation (model selection) and test (reported only) arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    # The training inputs as the service gets them, where x_train is not (catdog keeps larger
    # photos for its random crops): what the familiarity statistics are fitted on.
    x_train_served: np.ndarray | None = None

    def familiarity_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        served = self.x_train if self.x_train_served is None else self.x_train_served
        return served, self.y_train, self.x_val, self.x_test

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "validation": len(self.x_val), "test": len(self.x_test)}


@dataclass
class Options:
    epochs: int | None = None
    seed: int = 42
    out_dir: Path = Path("models")
    version: int | None = None
    data_dir: Path | None = None
    batch_size: int | None = None
    arch: str | None = None
    baseline_epochs: int | None = None
    verbose: int = 2
    # Long trainings (catdog) checkpoint every epoch here and, with `resume`, continue from the
    # last checkpoint; None: the pipeline's default folder.
    checkpoint_dir: Path | None = None
    resume: bool = False


@dataclass
class Trained:
    """What a pipeline's `train` hands back for the card."""

    model: keras.Model
    settings: dict[str, object]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


class Pipeline(Protocol):
    NAME: str
    DESCRIPTION: str
    TARGET: Target

    def load_data(self, data_dir: Path | None, seed: int) -> Splits: ...
    def train(self, splits: Splits, options: Options) -> Trained: ...
    def evaluate(self, model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]: ...
    def input_spec(self, splits: Splits) -> InputSpec: ...
    def output_spec(self) -> OutputSpec: ...


@dataclass
class Result:
    name: str
    version: int
    metric: str
    value: float
    target: Target
    seconds: float
    bytes_on_disk: int
    path: Path

    @property
    def met(self) -> bool:
        return self.target.met(self.value)


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def next_version(model_dir: Path) -> int:
    return max(layout.versions(model_dir) if model_dir.is_dir() else [], default=0) + 1


def trainable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def trace_key(index: int, layer: keras.layers.Layer) -> str:
    """Sortable keys, since a signature's outputs come back as an unordered map."""
    return f"{index:02d}_{layer.name}"


def layer_specs(model: keras.Model) -> list[LayerSpec]:
    specs = []
    for index, layer in enumerate(trainable_layers(model)):
        activation = getattr(layer, "activation", None)
        specs.append(
            LayerSpec(
                name=layer.name,
                type=type(layer).__name__,
                activation=getattr(activation, "__name__", None) if activation else None,
                output_shape=list(layer.output.shape),
                params=int(layer.count_params()),
                trace_key=trace_key(index, layer),
            )
        )
    return specs


def export_savedmodel(
    model: keras.Model, input_spec: InputSpec, output_spec: OutputSpec, version_dir: Path
) -> None:
    """Write a SavedModel with `serving_default` and `trace` (every layer's output) signatures."""
    layers = trainable_layers(model)
    keys = [trace_key(i, layer) for i, layer in enumerate(layers)]
    tracer = keras.Model(model.inputs, [layer.output for layer in layers])
    signature = [
        tf.TensorSpec(shape=input_spec.shape, dtype=tf.float32, name=input_spec.name),
    ]

    def serve(x):
        return {output_spec.name: model(x, training=False)}

    def trace(x):
        # Each layer's output for the input's rows only: inside a mirror-averaging model the
        # layers between `mirror` and `mirror_mean` run on 2n rows (the photos, then their
        # mirror images), and a trace row must stay the photo's.
        rows = tf.shape(x)[0]
        return {
            key: output[:rows] for key, output in zip(keys, tracer(x, training=False), strict=True)
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tracer)
    archive.add_endpoint(SERVING_SIGNATURE, serve, input_signature=signature)
    archive.add_endpoint(TRACE_SIGNATURE, trace, input_signature=signature)
    archive.write_out(str(version_dir), verbose=False)


def library_versions() -> dict[str, str]:
    import sklearn

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(pipeline: Pipeline, options: Options, splits: Splits | None = None) -> Result:
    """Train, evaluate on the test split, export and write the card for one pipeline."""
    started = time.perf_counter()
    set_seed(options.seed)
    splits = splits if splits is not None else pipeline.load_data(options.data_dir, options.seed)
    trained = pipeline.train(splits, options)
    output_spec = pipeline.output_spec()
    calibrated = None
    if output_spec.kind == "probabilities":
        trained.model, calibrated = calibrate(
            trained.model,
            *_floats(splits.x_val, splits.y_val, splits.x_test, splits.y_test),
            seed=options.seed,
        )
        judge = getattr(pipeline, "out_of_fold", None)  # where the test split is too small
        if judge is not None:
            calibrated.out_of_fold = judge(splits, options)
    metrics = pipeline.evaluate(trained.model, splits.x_test, splits.y_test)

    model_dir = options.out_dir / pipeline.NAME
    version = options.version or next_version(model_dir)
    # Written under a name the service ignores (not a number) and renamed into place at the
    # end, so an interrupted run never leaves a half-written version folder.
    version_dir = model_dir / f".partial-{version}"
    if version_dir.exists():
        shutil.rmtree(version_dir)
    version_dir.mkdir(parents=True)
    input_spec = pipeline.input_spec(splits)
    export_savedmodel(trained.model, input_spec, output_spec, version_dir)
    layers = layer_specs(trained.model)
    familiar = familiarity.add(
        version_dir,
        input_spec,
        layers,
        splits.familiarity_inputs(),
        *familiarity.options_of(pipeline),
    )
    model = trained.model
    drift = reference(
        input_spec,
        output_spec,
        splits.x_train,
        splits.y_train,
        options.seed,
        predict=lambda x: model.predict(x, batch_size=1024, verbose=0),
    )

    seconds = time.perf_counter() - started
    card = ModelCard(
        name=pipeline.NAME,
        version=version,
        task="classification" if output_spec.kind == "probabilities" else "regression",
        description=pipeline.DESCRIPTION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        library_versions=library_versions(),
        input=input_spec,
        output=output_spec,
        layers=layers,
        training={
            **trained.settings,
            "seed": options.seed,
            "seconds": round(seconds, 1),
            "cpu_count": _cpu_count(),
        },
        data={"source": splits.source, "split_sizes": splits.sizes()},
        metrics=metrics,
        target=pipeline.TARGET,
        baselines=trained.baselines,
        files=hash_files(version_dir),
        calibration=calibrated,
        drift=drift,
        familiarity=familiar,
    )
    card.write(version_dir)
    version_dir = replace_dir(version_dir, model_dir / str(version))
    metric = pipeline.TARGET.metric
    return Result(
        name=pipeline.NAME,
        version=version,
        metric=metric,
        value=metrics[metric],
        target=pipeline.TARGET,
        seconds=seconds,
        bytes_on_disk=dir_size(version_dir),
        path=version_dir,
    )


def replace_dir(source: Path, target: Path) -> Path:
    """Move `source` to `target`, replacing an existing `target` (which is gone for only the
    moment between two renames)."""
    old = target.with_name(f".replaced-{target.name}")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    source.rename(target)
    if old.exists():
        shutil.rmtree(old)
    return target


def _floats(
    x_val: np.ndarray, y_val: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return x_val.astype(np.float32), y_val, x_test.astype(np.float32), y_test


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def format_table(results: list[Result]) -> str:
    header = f"{'model':<8} {'ver':>3} {'test metric':<18} {'target':<16} {'met':<4} "
    header += f"{'time':>8} {'size':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<8} {r.version:>3} {f'{r.metric} {r.value:.4f}':<18} "
            f"{f'{r.target.metric} {r.target.op} {r.target.value}':<16} "
            f"{'yes' if r.met else 'NO':<4} {r.seconds:>7.0f}s {r.bytes_on_disk / 1e6:>7.2f}MB"
        )
    return "\n".join(lines)


def classification_metrics(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    probabilities = model.predict(x, batch_size=256, verbose=0)
    return {"accuracy": float(np.mean(np.argmax(probabilities, axis=1) == y))}


def compile_classifier(model: keras.Model, learning_rate) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def feature_specs(
    features: list[tuple[str, str, str]],
    x_train: np.ndarray,
    nonnegative: bool = False,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> list[FeatureSpec]:
    """Names, units and ranges from the training split.

    The allowed range is the observed one widened by half its span on each side (not below 0
    for quantities that cannot be negative), unless `bounds` gives it outright.
    """
    specs = []
    for column, (name, unit, description) in enumerate(features):
        values = x_train[:, column].astype(np.float64)
        low, high = float(values.min()), float(values.max())
        span = high - low
        allowed = (bounds or {}).get(name) or (
            max(0.0, low - span / 2) if nonnegative else low - span / 2,
            high + span / 2,
        )
        specs.append(
            FeatureSpec(
                name=name,
                unit=unit,
                description=description,
                observed_min=round(low, 4),
                observed_max=round(high, 4),
                mean=round(float(values.mean()), 4),
                allowed_min=round(allowed[0], 4),
                allowed_max=round(allowed[1], 4),
            )
        )
    return specs
