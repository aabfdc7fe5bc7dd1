"""The card's `drift` block: computed from a training split, written into existing cards by
`python -m training drift-reference` without touching anything else."""

import json
import shutil

import numpy as np
import pytest

from app.artifact.card import CARD_FILE, InputSpec, ModelCard
from tests.conftest import FIXTURES, MODELS
from training import iris
from training.__main__ import main
from training.drift import reference


def test_the_reference_bins_each_feature_by_its_training_deciles_and_counts_the_priors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    y = rng.choice(3, size=1000, p=[0.5, 0.3, 0.2])
    block = reference(iris.input_spec(iris.load_data(None, 42)), iris.output_spec(), x, y, seed=5)
    assert [f.name for f in block.features] == [name for name, _, _ in iris.FEATURES]
    for column, feature in enumerate(block.features):
        assert feature.edges == pytest.approx(
            np.quantile(x[:, column], np.arange(1, 10) / 10), abs=1e-5
        )
        assert feature.proportions == pytest.approx([0.1] * 10, abs=0.002)
    assert block.classes.priors == pytest.approx(np.bincount(y) / 1000, abs=1e-6)
    assert block.prediction is None
    assert "seed 5" in block.split


def test_a_regressor_needs_its_answers_and_bins_them():
    spec = InputSpec(kind="features", name="x", shape=[None, 1], features=[])
    card = ModelCard.read(MODELS / "housing" / "1")
    x = np.linspace(0, 1, 500, dtype=np.float32)[:, None]
    with pytest.raises(ValueError, match="answers"):
        reference(spec, card.output, x, x[:, 0], seed=0)
    block = reference(spec, card.output, x, x[:, 0], seed=0, predict=lambda rows: 2 * rows)
    assert block.prediction.edges == pytest.approx(np.arange(1, 10) / 5, abs=0.01)
    assert block.classes is None


def test_the_command_adds_the_block_to_a_committed_card_and_nothing_else(tmp_path):
    version_dir = tmp_path / "iris" / "1"
    shutil.copytree(MODELS / "iris" / "1", version_dir)
    committed = json.loads((version_dir / CARD_FILE).read_text())
    stale = {**committed, "drift": {"split": "stale"}}
    (version_dir / CARD_FILE).write_text(json.dumps(stale, indent=2) + "\n")
    assert main(["drift-reference", "--out", str(tmp_path), "iris"]) == 0
    written = (version_dir / CARD_FILE).read_text()
    assert json.loads(written) == committed  # the committed block is what the command writes
    assert main(["drift-reference", "--out", str(tmp_path), "iris"]) == 0
    assert (version_dir / CARD_FILE).read_text() == written


def test_catdogs_labels_alone_are_its_training_splits_labels():
    """The drift command reads catdog's priors from file names only: the same labels, in the
    same order, as the photos `load_data` reads (on the committed photos as a data folder)."""
    from training import catdog

    assert catdog.training_labels(FIXTURES, 42).tolist() == (
        catdog.load_data(FIXTURES, 42).y_train.tolist()
    )
