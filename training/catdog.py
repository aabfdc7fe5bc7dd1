"""Cat or dog from a photo, trained from scratch.

Data: the Kaggle "Dogs vs. Cats" photos (Microsoft Research Asirra). Offline, `<data-dir>/catdog/
{train,extra,test}/{cat,dog}/*.jpg`: train/ and extra/ together are the training photos, 10% of
them (stratified) held out as the validation split, and test/ alone is the test split. Online,
Microsoft's archive is downloaded, unpacked and the corrupt JPEGs dropped as keras.io's "image
classification from scratch" does, then split 80/20 by a hash of the file name (no extra/).

Served photos are resized to 96x96 (bilinear, aspect not kept) with the same Pillow code the
service uses (`app.artifact.imaging.resize_rgb`); validation and test photos are resized so.
Training photos are kept at 112x112 and each epoch sees a random crop of each, resized to 96x96,
flipped at random and jittered in brightness, contrast and saturation; the views are stateless
functions of (seed, epoch, position), so a resumed run sees the same ones.

The network is a small Conv-BN-ReLU stack trained with AdamW, label smoothing and a warm-up then
cosine schedule, keeping an exponential moving average (EMA) of its weights, which are the ones
exported. The exported model answers for each photo and its mirror image together (the last
feature maps averaged, so the logits are the mean of both), and a temperature fitted on the
validation split sits before its softmax (`training.calibration`).

A checkpoint (model, optimizer state with EMA weights and step count, history) is written after
every epoch to `--checkpoint-dir`; `--resume` continues from the last one. The seed baseline is
the plain Conv/MaxPool/Dense net without augmentation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from PIL import Image
from sklearn.model_selection import train_test_split

from app.artifact.card import ImageSpec, InputSpec, OutputSpec, Target
from app.artifact.imaging import resize_rgb
from training.common import (
    Options,
    Splits,
    Trained,
    compile_classifier,
)

NAME = "catdog"
DESCRIPTION = "Cat or dog from an RGB photo of any size (resized to 96x96)."
TARGET = Target(metric="accuracy", op=">=", value=0.93, split="catdog/test (1,798 photos)")
LABELS = ["cat", "dog"]
IMAGE = ImageSpec(height=96, width=96, channels=3, preprocessing="resize")
ARCHIVE_URL = (
    "https://download.microsoft.com/download/3/E/1/"
    "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
# The training photos' size before the random crops that make the 96x96 training views.
CROP_SOURCE = ImageSpec(height=112, width=112, channels=3, preprocessing="resize")
DEFAULT_EPOCHS = 40
BASELINE_EPOCHS = 5
PEAK_LR = 2e-3
WARMUP_EPOCHS = 3
WEIGHT_DECAY = 0.01
LABEL_SMOOTHING = 0.1
EMA_MOMENTUM = 0.999
DEFAULT_CHECKPOINT_DIR = Path("checkpoints") / "catdog"
CHECKPOINT_MODEL = "model.keras"
CHECKPOINT_STATE = "state.json"
# The Mahalanobis distance at the penultimate layer measured better than the energy of the
# logits against every out-of-distribution set (docs/models.md, "Familiarity").
FAMILIARITY_METHOD = "class_mahalanobis"


def read_folder(folder: Path, specs: list[ImageSpec]) -> tuple[list[np.ndarray], np.ndarray]:
    """Photos under folder/{cat,dog}/, each resized to every spec, and labels 0=cat, 1=dog."""
    images: list[list[np.ndarray]] = [[] for _ in specs]
    for path in photos(folder):
        with Image.open(path) as image:
            for sized, spec in zip(images, specs, strict=True):
                sized.append(resize_rgb(image, spec).astype(np.uint8))
    return [np.stack(sized) for sized in images], folder_labels(folder)


def photos(folder: Path) -> list[Path]:
    """The photos under folder/{cat,dog}/, cats first, each class in name order."""
    return [path for name in LABELS for path in sorted((folder / name).glob("*.jpg"))]


def folder_labels(folder: Path) -> np.ndarray:
    """The label of each of `photos(folder)`: 0=cat, 1=dog."""
    counts = [len(list((folder / name).glob("*.jpg"))) for name in LABELS]
    return np.repeat(np.arange(len(LABELS), dtype=np.int64), counts)


def load_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Photos under folder/{cat,dog}/ as uint8 (n, 96, 96, 3) and labels 0=cat, 1=dog."""
    (x,), y = read_folder(folder, [IMAGE])
    return x, y


def download(cache_dir: Path) -> Path:
    """Microsoft's archive unpacked as train/ and test/ folders, corrupt JPEGs dropped."""
    root = cache_dir / "catdog"
    if (root / "test").exists():
        return root
    archive = keras.utils.get_file("kagglecatsanddogs_5340.zip", ARCHIVE_URL, cache_dir=cache_dir)
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            if not member.lower().endswith(".jpg"):
                continue
            data = bundle.read(member)
            if b"JFIF" not in data[:10]:  # keras.io's filter for the archive's corrupt files
                continue
            label = "cat" if "/Cat/" in member else "dog"
            split = "test" if hashlib.sha256(member.encode()).digest()[0] < 51 else "train"
            target = root / split / label / Path(member).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return root


def load_data(data_dir: Path | None, seed: int) -> Splits:
    """train/ and (offline) extra/ photos, 10% of them held out for validation; test/ alone.

    The training photos are kept at 112x112 so that random crops resized to 96x96 keep detail;
    validation and test photos are resized to 96x96 exactly as the service resizes uploads."""
    root, source, folders = _sources(data_dir)
    read = [read_folder(folder, [CROP_SOURCE, IMAGE]) for folder in folders]
    large = np.concatenate([sized[0] for sized, _ in read])
    small = np.concatenate([sized[1] for sized, _ in read])
    y = np.concatenate([labels for _, labels in read])
    x_test, y_test = load_folder(root / "test")
    train, val = _split(y, seed)
    return Splits(
        large[train],
        y[train],
        small[val],
        y[val],
        x_test,
        y_test,
        source=source,
        x_train_served=small[train],
    )


def training_labels(data_dir: Path | None, seed: int) -> np.ndarray:
    """The labels of `load_data`'s training split, in its order, without reading a photo."""
    _, _, folders = _sources(data_dir)
    y = np.concatenate([folder_labels(folder) for folder in folders])
    return y[_split(y, seed)[0]]


def _sources(data_dir: Path | None) -> tuple[Path, str, list[Path]]:
    """The data's root, its source for the card, and the folders of training photos."""
    if data_dir is not None:
        root, source = data_dir / "catdog", f"Kaggle Dogs vs. Cats subset from {data_dir}/catdog"
        folders = [root / "train", root / "extra"]
        source += " (train/ and extra/ for training and validation, test/ for the test)"
    else:
        root = download(Path.home() / ".keras" / "datasets")
        source = f"Microsoft Kaggle Cats and Dogs archive ({ARCHIVE_URL})"
        folders = [root / "train"]
    return root, source, [folder for folder in folders if folder.is_dir()]


def _split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, val = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=seed)
    return train, val


@keras.saving.register_keras_serializable(package="glassbox")
class MirrorBatch(layers.Layer):
    """(n, h, w, c) to (2n, h, w, c): the photos, then their mirror images (left-right)."""

    def call(self, x):
        return ops.concatenate([x, ops.flip(x, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="glassbox")
class MirrorMean(layers.Layer):
    """(2n, h, w, c) to (n, h, w, c): each photo's feature maps averaged with its mirror
    image's, mirrored back. What follows (pooling, Dense) is linear, so the logits are the mean
    of the photo's and the mirror's logits, and a photo and its mirror get the same answer."""

    def call(self, x):
        n = ops.shape(x)[0] // 2
        return (x[:n] + ops.flip(x[n:], axis=2)) / 2

    def compute_output_shape(self, input_shape):
        return input_shape


def conv_block(x, filters: int, name: str, pool: bool = True):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return x


def build_model(mirror: bool = False) -> keras.Model:
    """The network; with `mirror`, the served form that averages each photo with its mirror."""
    inputs = keras.Input(shape=(IMAGE.height, IMAGE.width, 3), name="image")
    x = MirrorBatch(name="mirror")(inputs) if mirror else inputs
    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = conv_block(x, 32, "block1")
    x = conv_block(x, 64, "block2a", pool=False)
    x = conv_block(x, 64, "block2b")
    x = conv_block(x, 128, "block3a", pool=False)
    x = conv_block(x, 128, "block3b")
    x = conv_block(x, 256, "block4", pool=False)
    if mirror:
        x = MirrorMean(name="mirror_mean")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    x = layers.Dense(2, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


def mirrored(model: keras.Model) -> keras.Model:
    """The served form of a trained `build_model()` network, with its weights."""
    served = build_model(mirror=True)
    for layer in model.layers:
        if layer.weights:
            served.get_layer(layer.name).set_weights(layer.get_weights())
    return served


def build_seed_model() -> keras.Model:
    inputs = keras.Input(shape=(IMAGE.height, IMAGE.width, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="catdog_seed")


def augment_photo(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One training photo (uint8, any square size) to a 96x96 float32 0-255 view: a random
    crop of 40-100% of the area and aspect 3:4 to 4:3, resized; a random left-right flip; random
    brightness, contrast and saturation. Stateless: the same seed gives the same view, so a
    resumed run sees exactly the views an uninterrupted one would."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.4, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    x = tf.cast(tf.slice(image, begin, size), tf.float32) / 255.0
    x = tf.image.resize(x, [IMAGE.height, IMAGE.width], method="bilinear", antialias=True)
    x = tf.image.stateless_random_flip_left_right(x, seeds[1])
    x = tf.image.stateless_random_brightness(x, 0.15, seeds[2])
    x = tf.image.stateless_random_contrast(x, 0.7, 1.3, seeds[3])
    x = tf.image.stateless_random_saturation(x, 0.7, 1.3, seeds[4])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def training_stream(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int
) -> tf.data.Dataset:
    """Augmented batches of epochs first_epoch..epochs-1, each epoch's order and views a
    function of (seed, epoch) alone, so resuming at an epoch reproduces it."""
    photos = tf.data.Dataset.from_tensor_slices((x, y))
    n = len(x)

    def epoch_batches(epoch):
        order_seed = tf.constant(seed, tf.int64) * 100_003 + epoch
        shuffled = photos.shuffle(n, seed=order_seed, reshuffle_each_iteration=False)

        def view(position, photo):
            image, label = photo
            element_seed = tf.stack([tf.constant(seed, tf.int64), epoch * 10_000_000 + position])
            return augment_photo(image, element_seed), tf.one_hot(label, len(LABELS))

        return (
            shuffled.enumerate()
            .map(view, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
        )

    epochs_range = tf.data.Dataset.range(first_epoch, epochs)
    return epochs_range.flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


def plain(x: np.ndarray, y: np.ndarray, batch_size: int, one_hot: bool = False):
    """Batches of photos resized to 96x96 (already that size for validation and test)."""
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if images.shape[1] != IMAGE.height:
            images = tf.image.resize(images, [IMAGE.height, IMAGE.width], antialias=True)
        return images, tf.one_hot(labels, len(LABELS)) if one_hot else labels

    return data.map(prepare).prefetch(tf.data.AUTOTUNE)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the whole model (weights, optimizer state with its step count and EMA
    weights) and the run's history, in a folder `epoch-NNN` written under a temporary name and
    renamed, so the newest complete folder is always a consistent state."""

    def __init__(self, directory: Path, state: dict, keep: int = 2):
        super().__init__()
        self.directory, self.state, self.keep = directory, state, keep
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.started = time.perf_counter()
        entry = {key: float(value) for key, value in (logs or {}).items()}
        self.state["history"].append({"epoch": epoch + 1, "seconds": round(seconds, 1), **entry})
        self.state["epochs_done"] = epoch + 1
        self.state["seconds"] = round(self.state["seconds"] + seconds, 1)
        partial = self.directory / f".partial-epoch-{epoch + 1:03d}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        self.model.save(partial / CHECKPOINT_MODEL)
        (partial / CHECKPOINT_STATE).write_text(json.dumps(self.state, indent=1) + "\n")
        partial.rename(self.directory / f"epoch-{epoch + 1:03d}")
        for old in checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(old)


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    return sorted(directory.glob("epoch-[0-9][0-9][0-9]")) if directory.is_dir() else []


def learning_rate_schedule(
    epochs: int, steps_per_epoch: int
) -> keras.optimizers.schedules.CosineDecay:
    """A linear warm-up to the peak, then a cosine to zero at the last step of `epochs`."""
    steps = epochs * steps_per_epoch
    warmup_steps = min(WARMUP_EPOCHS * steps_per_epoch, steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup_steps, warmup_target=PEAK_LR, warmup_steps=warmup_steps
    )


def compile_model(model: keras.Model, epochs: int, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate_schedule(epochs, steps_per_epoch),
            weight_decay=WEIGHT_DECAY,
            use_ema=True,
            ema_momentum=EMA_MOMENTUM,
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def start_or_resume(
    splits: Splits, options: Options, epochs: int, batch_size: int
) -> tuple[keras.Model, dict]:
    """A fresh compiled model and run state, or the newest checkpoint's with `--resume`."""
    directory = options.checkpoint_dir or DEFAULT_CHECKPOINT_DIR
    found = checkpoints(directory)
    if found and options.resume:
        model = keras.models.load_model(found[-1] / CHECKPOINT_MODEL)
        state = json.loads((found[-1] / CHECKPOINT_STATE).read_text())
        if state["train_size"] != len(splits.x_train):
            print(
                f"Resuming {found[-1]}: its run has {state['train_size']} photos; "
                "that setting is kept."
            )
        if options.epochs and options.epochs != state["epochs"]:
            replan(model, state, options.epochs)
        print(f"Resuming from {found[-1]} ({state['epochs_done']} of {state['epochs']} epochs)")
        return model, state
    if found:
        raise SystemExit(
            f"{directory} holds checkpoints of an earlier run: pass --resume to continue it, "
            "or delete the folder (or pass another --checkpoint-dir) to start over."
        )
    model = build_model()
    compile_model(model, epochs, len(splits.x_train) // batch_size)
    state = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": options.seed,
        "train_size": len(splits.x_train),
        "epochs_done": 0,
        "seconds": 0.0,
        "history": [],
    }
    return model, state


def replan(model: keras.Model, state: dict, epochs: int) -> None:
    """Give a resumed run a new length: the schedule becomes the one a run of `epochs` would
    have, from the step already reached on, keeping the weights, the optimizer's moments and
    the EMA. The change is recorded in the run state, and so in the card."""
    if epochs <= state["epochs_done"]:
        raise SystemExit(
            f"--epochs {epochs}: the run has already done {state['epochs_done']} epochs"
        )
    steps_per_epoch = state["train_size"] // state["batch_size"]
    model.optimizer.learning_rate = learning_rate_schedule(epochs, steps_per_epoch)
    state.setdefault("replanned", []).append(
        {"after_epoch": state["epochs_done"], "from_epochs": state["epochs"], "to_epochs": epochs}
    )
    print(f"Re-planned the run from {state['epochs']} to {epochs} epochs")
    state["epochs"] = epochs


def train(splits: Splits, options: Options) -> Trained:
    # Never more than the photos, so that a tiny slice still makes one batch an epoch.
    batch_size = min(options.batch_size or 64, len(splits.x_train))
    model, state = start_or_resume(splits, options, options.epochs or DEFAULT_EPOCHS, batch_size)
    epochs, batch_size, done = state["epochs"], state["batch_size"], state["epochs_done"]
    directory = options.checkpoint_dir or DEFAULT_CHECKPOINT_DIR
    if done < epochs:
        model.fit(
            training_stream(
                splits.x_train, splits.y_train, batch_size, state["seed"], done, epochs
            ),
            initial_epoch=done,
            epochs=epochs,
            steps_per_epoch=len(splits.x_train) // batch_size,
            validation_data=plain(splits.x_val, splits.y_val, 256, one_hot=True),
            callbacks=[
                # Validation scores the EMA weights, which are the ones exported. Only for
                # validation: the checkpoints keep the raw weights in the model and the EMA in
                # the optimizer, as a resumed run expects them.
                keras.callbacks.SwapEMAWeights(swap_on_epoch=False),
                EpochCheckpoint(directory, state),
            ],
            shuffle=False,  # the stream is shuffled, by epoch
            verbose=options.verbose,
        )
        # fit() ends with the EMA weights in the model; the last checkpoint has both sets.
        model = keras.models.load_model(checkpoints(directory)[-1] / CHECKPOINT_MODEL)
    chosen, val_scores = choose_weights(model, splits)
    without_mirror = evaluate(model, splits.x_test, splits.y_test)

    baseline_epochs = options.baseline_epochs or BASELINE_EPOCHS
    seed_model = build_seed_model()
    compile_classifier(seed_model, 1e-3)
    seed_model.fit(
        plain(splits.x_train, splits.y_train, batch_size),
        epochs=baseline_epochs,
        verbose=options.verbose,
    )
    history = state["history"]
    return Trained(
        model=mirrored(model),
        settings={
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": f"AdamW(weight_decay={WEIGHT_DECAY}), {WARMUP_EPOCHS} warm-up epochs "
            "then cosine decay to 0",
            "peak_learning_rate": PEAK_LR,
            "loss": f"cross-entropy with label smoothing {LABEL_SMOOTHING}",
            "augmentation": "random crop 40-100% of the area (aspect 3:4 to 4:3) of the "
            f"{CROP_SOURCE.height}px photo resized to {IMAGE.height}px, left-right flip, "
            "brightness 0.15, contrast 0.7-1.3, saturation 0.7-1.3",
            "weights": f"{chosen} after the last epoch, the better on the validation split "
            f"of the raw weights and their exponential moving average (momentum {EMA_MOMENTUM})",
            **val_scores,
            "test_time": "each photo and its mirror image, feature maps averaged before the "
            "pooling (the logits are the mean of both); flip consistency is 1 by construction",
            "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
            "best_val_accuracy": max((h["val_accuracy"] for h in history), default=None),
            "training_seconds": state["seconds"],
            "seconds_per_epoch": round(state["seconds"] / max(1, len(history)), 1),
            "checkpoints": "every epoch; --resume continues from the last",
            **({"replanned": state["replanned"]} if state.get("replanned") else {}),
        },
        baselines={
            "the same network without mirror averaging, uncalibrated": without_mirror,
            f"seed conv net, no augmentation, {baseline_epochs} epochs": evaluate(
                seed_model, splits.x_test, splits.y_test
            ),
        },
    )


def choose_weights(model: keras.Model, splits: Splits) -> tuple[str, dict[str, float]]:
    """Leave in `model` the raw weights or their EMA (kept in its optimizer), whichever the
    served (mirror-averaged) network scores better on the validation split; the EMA on a tie.
    Both scores are recorded: the EMA is meant to be the better, and this checks it."""
    raw = [variable.numpy() for variable in model.trainable_variables]
    raw_accuracy = evaluate(mirrored(model), splits.x_val, splits.y_val)["accuracy"]
    model.optimizer.finalize_variable_values(model.trainable_variables)
    ema_accuracy = evaluate(mirrored(model), splits.x_val, splits.y_val)["accuracy"]
    scores = {"val_accuracy_raw_weights": raw_accuracy, "val_accuracy_ema_weights": ema_accuracy}
    if raw_accuracy > ema_accuracy:
        for variable, value in zip(model.trainable_variables, raw, strict=True):
            variable.assign(value)
        return "the raw weights", scores
    return "the moving average of the weights", scores


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, and flip consistency: how often a photo and its mirror get the same label."""
    photos, mirrors = x.astype(np.float32), x[:, :, ::-1].astype(np.float32)
    labels = np.argmax(model.predict(photos, batch_size=256, verbose=0), axis=1)
    mirror_labels = np.argmax(model.predict(mirrors, batch_size=256, verbose=0), axis=1)
    return {
        "accuracy": float(np.mean(labels == y)),
        "flip_consistency": float(np.mean(labels == mirror_labels)),
    }


def input_spec(splits: Splits) -> InputSpec:
    return InputSpec(
        kind="image", name="image", shape=[None, IMAGE.height, IMAGE.width, 3], image=IMAGE
    )


def output_spec() -> OutputSpec:
    return OutputSpec(kind="probabilities", name="probabilities", labels=LABELS)
