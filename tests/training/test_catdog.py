"""The catdog training's checkpoints and resume, its augmentation stream, and its mirror averaging,
on the 12 committed fixture photos (batches of 4, so an epoch is 3 steps)."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.training.test_pipelines import tiny_splits
from training import catdog
from training.common import Options, export_savedmodel, set_seed


def options(checkpoint_dir, resume=False) -> Options:
    return Options(
        epochs=2,
        baseline_epochs=1,
        batch_size=4,
        verbose=0,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )


def state(checkpoint: object) -> dict:
    return json.loads((checkpoint / catdog.CHECKPOINT_STATE).read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catdog-ckpt")
    set_seed(42)
    trained = catdog.train(tiny_splits("catdog"), options(directory))
    return directory, trained


def test_every_epoch_leaves_a_complete_checkpoint(uninterrupted):
    directory, trained = uninterrupted
    found = catdog.checkpoints(directory)
    assert [path.name for path in found] == ["epoch-001", "epoch-002"]
    assert not list(directory.glob(".partial-*"))
    assert state(found[-1])["epochs_done"] == 2
    assert [h["epoch"] for h in state(found[-1])["history"]] == [1, 2]
    assert trained.settings["epochs"] == 2
    # The raw weights and their EMA were both scored on the validation split, one chosen.
    assert 0 <= trained.settings["val_accuracy_raw_weights"] <= 1
    assert 0 <= trained.settings["val_accuracy_ema_weights"] <= 1
    assert "after the last epoch" in trained.settings["weights"]


def test_an_interrupted_run_resumes_where_it_stopped(uninterrupted, tmp_path):
    directory, trained = uninterrupted
    # As if killed during epoch 2: only epoch 1's checkpoint was written.
    shutil.copytree(directory / "epoch-001", tmp_path / "epoch-001")
    set_seed(42)
    resumed = catdog.train(tiny_splits("catdog"), options(tmp_path, resume=True))
    last = catdog.checkpoints(tmp_path)[-1]
    assert last.name == "epoch-002"
    assert [h["epoch"] for h in state(last)["history"]] == [1, 2]
    model = tf.keras.models.load_model(last / catdog.CHECKPOINT_MODEL)
    assert int(model.optimizer.iterations) == 2 * 3  # steps went on from epoch 1's 3
    # Same data, order and views; the dropout masks are not replayed, so weights are close,
    # not equal.
    for a, b in zip(resumed.model.weights, trained.model.weights, strict=True):
        assert a.shape == b.shape
    assert resumed.settings["epochs"] == 2


def test_resuming_a_finished_run_only_exports_again(uninterrupted, tmp_path):
    directory, trained = uninterrupted
    shutil.copytree(directory / "epoch-002", tmp_path / "epoch-002")
    again = catdog.train(tiny_splits("catdog"), options(tmp_path, resume=True))
    assert [path.name for path in catdog.checkpoints(tmp_path)] == ["epoch-002"]
    x = tiny_splits("catdog").x_test.astype(np.float32)
    np.testing.assert_allclose(
        again.model.predict(x, verbose=0), trained.model.predict(x, verbose=0), atol=1e-5
    )


def test_checkpoints_of_an_earlier_run_are_not_overwritten_without_resume(uninterrupted):
    directory, _ = uninterrupted
    with pytest.raises(SystemExit, match="--resume"):
        catdog.train(tiny_splits("catdog"), options(directory))


def test_the_stream_resumed_at_an_epoch_repeats_its_batches():
    splits = tiny_splits("catdog")
    whole = list(catdog.training_stream(splits.x_train, splits.y_train, 4, 42, 0, 2))
    resumed = list(catdog.training_stream(splits.x_train, splits.y_train, 4, 42, 1, 2))
    assert len(whole) == 6
    assert len(resumed) == 3
    for (x_a, y_a), (x_b, y_b) in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(x_a.numpy(), x_b.numpy())
        np.testing.assert_array_equal(y_a.numpy(), y_b.numpy())
    # And epochs differ from each other.
    assert not np.array_equal(whole[0][0].numpy(), whole[3][0].numpy())


def test_training_views_are_96_pixel_photos_in_0_255(uninterrupted):
    splits = tiny_splits("catdog")
    large = tf.image.resize(splits.x_train, [112, 112]).numpy().astype(np.uint8)
    x, y = next(iter(catdog.training_stream(large, splits.y_train, 4, 42, 0, 1)))
    assert x.shape == (4, 96, 96, 3)
    assert float(tf.reduce_min(x)) >= 0
    assert float(tf.reduce_max(x)) <= 255
    assert y.shape == (4, 2)


def test_the_served_network_gives_a_photo_and_its_mirror_the_same_answer(uninterrupted):
    _, trained = uninterrupted
    x = tiny_splits("catdog").x_test.astype(np.float32)
    served = trained.model
    assert [layer.name for layer in served.layers][1] == "mirror"
    np.testing.assert_allclose(
        served.predict(x, verbose=0), served.predict(x[:, :, ::-1], verbose=0), atol=1e-6
    )


def test_a_resumed_run_can_be_given_a_new_length(uninterrupted, tmp_path):
    directory, _ = uninterrupted
    shutil.copytree(directory / "epoch-001", tmp_path / "epoch-001")
    longer = Options(**{**vars(options(tmp_path, resume=True)), "epochs": 3})
    trained = catdog.train(tiny_splits("catdog"), longer)
    last = catdog.checkpoints(tmp_path)[-1]
    assert last.name == "epoch-003"
    assert state(last)["epochs"] == 3
    assert state(last)["replanned"] == [{"after_epoch": 1, "from_epochs": 2, "to_epochs": 3}]
    assert trained.settings["replanned"] == state(last)["replanned"]
    model = tf.keras.models.load_model(last / catdog.CHECKPOINT_MODEL)
    assert int(model.optimizer.iterations) == 3 * 3
    # The saved schedule is a 3-epoch run's: it has reached zero at the last step.
    schedule = model.optimizer._learning_rate
    assert schedule.get_config() == catdog.learning_rate_schedule(3, 3).get_config()
    assert float(schedule(9)) == pytest.approx(0.0, abs=1e-9)


def test_a_run_cannot_be_shortened_below_the_epochs_it_has_done(uninterrupted):
    directory, _ = uninterrupted
    shorter = Options(**{**vars(options(directory, resume=True)), "epochs": 1})
    with pytest.raises(SystemExit, match="already done 2 epochs"):
        catdog.train(tiny_splits("catdog"), shorter)


def test_the_trace_has_one_row_per_photo_inside_the_mirror_averaging(uninterrupted, tmp_path):
    _, trained = uninterrupted
    splits = tiny_splits("catdog")
    photos = splits.x_test[:3].astype(np.float32)
    export_savedmodel(trained.model, catdog.input_spec(splits), catdog.output_spec(), tmp_path)
    trace = tf.saved_model.load(str(tmp_path)).signatures["trace"]
    outputs = trace(image=tf.constant(photos))
    assert {int(output.shape[0]) for output in outputs.values()} == {3}
    np.testing.assert_allclose(outputs["00_mirror"].numpy(), photos)  # the photos themselves
