"""Model folders for the rollout tests: iris version 1 as committed, and a version 2 whose Dense
weights are perturbed, so the two disagree on some flowers, as a retrained version would."""

import shutil
from pathlib import Path

import numpy as np

from app.artifact.card import ModelCard, hash_files
from app.artifact.familiarity import FAMILIARITY_FILE
from tests.conftest import MODELS

IRIS = sorted((MODELS / "iris").iterdir())[-1]
# Flowers of each species and between them (cm): some answers of the two versions differ.
FLOWERS = np.array(
    [
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
        [5.9, 3.0, 4.2, 1.5],
        [6.3, 2.8, 5.1, 1.5],
        [6.0, 2.7, 5.1, 1.6],
        [4.9, 2.5, 4.5, 1.7],
        [6.1, 3.0, 4.9, 1.8],
        [5.7, 2.8, 4.1, 1.3],
    ],
    dtype=np.float32,
)


def perturbed_iris(target: Path, seed: int = 0) -> Path:
    """A SavedModel of iris with noise added to its Dense layers, saved with both signatures,
    and its card (version 2, new file hashes)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(IRIS))
    rng = np.random.default_rng(seed)
    seen = set()
    for variable in loaded.variables:
        if "dense" in variable.name and id(variable) not in seen:
            seen.add(id(variable))
            noise = rng.normal(0, 0.5, variable.shape).astype(np.float32)
            variable.assign(variable + noise)
    signatures = {name: loaded.signatures[name] for name in loaded.signatures}
    tf.saved_model.save(loaded, str(target), signatures=signatures)
    # Its familiarity statistics are the inputs' own, which the noise does not change.
    shutil.copy2(IRIS / FAMILIARITY_FILE, target / FAMILIARITY_FILE)
    card = ModelCard.read(IRIS)
    card.version = 2
    card.files = hash_files(target)
    card.write(target)
    return target


def add_version(root: Path, source: Path, version: int, name: str = "iris") -> Path:
    target = root / name / str(version)
    shutil.copytree(source, target)
    card = ModelCard.read(target)
    card.name, card.version = name, version
    card.write(target)
    return target
