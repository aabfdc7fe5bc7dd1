"""Figures added to the committed models' cards without retraining, each command idempotent:

    python -m training drift-reference --data-dir /work/shared/data [--out models]
    python -m training calibration-intervals --data-dir /work/shared/data [--out models]

`drift-reference` writes each card's `drift` block (`training.drift`) from the training split its
model was trained on (the pipeline's `load_data` with the seed in the card). `calibration-
intervals` adds to each classifier's `calibration` block its test ECE with a bootstrap 95%
interval, from the committed model's own answers on the test split, and for a pipeline with an
`out_of_fold` judge (iris) the pooled out-of-fold ECE, which trains that pipeline's small net
once per fold. Only those keys change: the rest of each card is kept as it is, byte for byte.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from app.artifact import layout
from app.artifact.card import CARD_FILE, SERVING_SIGNATURE, ModelCard
from training import PIPELINES, catdog
from training.calibration import TEST_PREDICTIONS, ece_interval
from training.common import Options, Pipeline
from training.drift import reference

COMMANDS = ("drift-reference", "calibration-intervals")


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m training {command}", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="offline data folder")
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder")
    parser.add_argument("models", nargs="*", default=list(PIPELINES), help="default: all")
    args = parser.parse_args(argv)
    update = drift_block if command == "drift-reference" else calibration_block
    for name in args.models:
        model_dir = args.out / name
        for version in layout.versions(model_dir) if model_dir.is_dir() else []:
            version_dir = model_dir / str(version)
            raw = json.loads((version_dir / CARD_FILE).read_text())
            card = ModelCard.model_validate(without_rewritten(raw, command))
            changed = update(PIPELINES[name], card, version_dir, args.data_dir)
            if changed is not None:
                key, block = changed
                raw[key] = {**raw.get(key, {}), **block} if key == "calibration" else block
                (version_dir / CARD_FILE).write_text(
                    json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
                )
                print(f"{name} {version}: {key} written", flush=True)
    return 0


def without_rewritten(raw: dict[str, Any], command: str) -> dict[str, Any]:
    """The card less what `command` writes anew, so that a block an older version of this
    command wrote never stops the card from being read."""
    kept = json.loads(json.dumps(raw))
    if command == "drift-reference":
        kept.pop("drift", None)
    elif isinstance(kept.get("calibration"), dict):
        for key in ("ece_interval", "out_of_fold"):
            kept["calibration"].pop(key, None)
    return kept


def drift_block(
    pipeline: Pipeline, card: ModelCard, version_dir: Path, data_dir: Path | None
) -> tuple[str, dict[str, Any]]:
    seed = int(card.training["seed"])
    if pipeline is catdog:  # its labels only: reading 15,000 photos would change nothing
        x_train, y_train = None, catdog.training_labels(data_dir, seed)
    else:
        splits = pipeline.load_data(data_dir, seed)
        x_train, y_train = splits.x_train.astype(np.float32), splits.y_train
    predict = served(card, version_dir) if card.output.kind == "value" else None
    block = reference(card.input, card.output, x_train, y_train, seed, predict)
    return "drift", block.model_dump(mode="json")


def calibration_block(
    pipeline: Pipeline, card: ModelCard, version_dir: Path, data_dir: Path | None
) -> tuple[str, dict[str, Any]] | None:
    if card.calibration is None:
        return None
    seed = int(card.training["seed"])
    splits = pipeline.load_data(data_dir, seed)
    probabilities = served(card, version_dir)(splits.x_test.astype(np.float32))
    block: dict[str, Any] = {
        "ece_interval": ece_interval(
            probabilities.astype(np.float64), splits.y_test, TEST_PREDICTIONS, seed
        ).model_dump(mode="json")
    }
    judge = getattr(pipeline, "out_of_fold", None)
    if judge is not None:
        epochs = int(card.training["epochs"])
        options = Options(seed=seed, epochs=epochs, data_dir=data_dir, verbose=0)
        block["out_of_fold"] = judge(splits, options).model_dump(mode="json")
    return "calibration", block


def served(card: ModelCard, version_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The committed SavedModel's serving output for raw inputs, in batches."""
    function = tf.saved_model.load(str(version_dir)).signatures[SERVING_SIGNATURE]

    def predict(x: np.ndarray) -> np.ndarray:
        parts = [
            function(**{card.input.name: tf.constant(x[start : start + 256], tf.float32)})[
                card.output.name
            ].numpy()
            for start in range(0, len(x), 256)
        ]
        return np.concatenate(parts)

    return predict
