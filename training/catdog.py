"""Cat or dog from a photo, trained from scratch.

Data: the Kaggle "Dogs vs. Cats" photos (Microsoft Research Asirra). Offline, `<data-dir>/catdog/
{train,test}/{cat,dog}/*.jpg`; online, Microsoft's archive is downloaded, unpacked and the corrupt
JPEGs dropped as keras.io's "image classification from scratch" does, then split 80/20 by a hash
of the file name. 10% of the training photos are held out for model selection.

Every photo is resized to 96x96 (bilinear, aspect not kept) with the same Pillow code the service
uses (`app.artifact.imaging.resize_rgb`). The network is a small Conv-BN-ReLU stack trained with
flips, rotations, zooms and shifts and a cosine learning-rate schedule. The seed baseline is the
plain Conv/MaxPool/Dense net without augmentation.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from PIL import Image
from sklearn.model_selection import train_test_split

from app.artifact.card import ImageSpec, InputSpec, OutputSpec, Target
from app.artifact.imaging import resize_rgb
from training.common import (
    Options,
    Splits,
    Trained,
    classification_metrics,
    compile_classifier,
)

NAME = "catdog"
DESCRIPTION = "Cat or dog from an RGB photo of any size (resized to 96x96)."
TARGET = Target(metric="accuracy", op=">=", value=0.85, split="catdog/test (1,798 photos)")
LABELS = ["cat", "dog"]
IMAGE = ImageSpec(height=96, width=96, channels=3, preprocessing="resize")
ARCHIVE_URL = (
    "https://download.microsoft.com/download/3/E/1/"
    "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
DEFAULT_EPOCHS = 40
BASELINE_EPOCHS = 5


def load_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Photos under folder/{cat,dog}/ as uint8 (n, 96, 96, 3) and labels 0=cat, 1=dog."""
    images, labels = [], []
    for label, name in enumerate(LABELS):
        for path in sorted((folder / name).glob("*.jpg")):
            with Image.open(path) as image:
                images.append(resize_rgb(image, IMAGE).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


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
    if data_dir is not None:
        root, source = data_dir / "catdog", f"Kaggle Dogs vs. Cats subset from {data_dir}/catdog"
    else:
        root = download(Path.home() / ".keras" / "datasets")
        source = f"Microsoft Kaggle Cats and Dogs archive ({ARCHIVE_URL})"
    x, y = load_folder(root / "train")
    x_test, y_test = load_folder(root / "test")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.1, stratify=y, random_state=seed
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, source=source)


def conv_block(x, filters: int, name: str, pool: bool = True):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return x


def build_model() -> keras.Model:
    inputs = keras.Input(shape=(IMAGE.height, IMAGE.width, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = conv_block(x, 32, "block1")
    x = conv_block(x, 64, "block2a", pool=False)
    x = conv_block(x, 64, "block2b")
    x = conv_block(x, 128, "block3a", pool=False)
    x = conv_block(x, 128, "block3b")
    x = conv_block(x, 256, "block4", pool=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    x = layers.Dense(2, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


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


def augmenter(seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.08, fill_mode="reflect", seed=seed),
            layers.RandomZoom((-0.2, 0.1), fill_mode="reflect", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            layers.RandomContrast(0.2, seed=seed),
        ],
        name="augment",
    )


def dataset(x, y, batch_size: int, seed: int, augment: keras.Sequential | None = None):
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if augment is not None:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augment is not None:
        data = data.map(
            lambda images, labels: (augment(tf.cast(images, tf.float32), training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def train(splits: Splits, options: Options) -> Trained:
    epochs = options.epochs or DEFAULT_EPOCHS
    batch_size = options.batch_size or 64
    learning_rate = 2e-3
    steps = epochs * int(np.ceil(len(splits.x_train) / batch_size))
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(
                0.0, steps, warmup_target=learning_rate, warmup_steps=min(300, steps // 10)
            ),
            weight_decay=1e-4,
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    best = keras.callbacks.ModelCheckpoint(
        str(Path(tempfile.mkdtemp()) / f"{NAME}-best.weights.h5"),
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=True,
    )
    history = model.fit(
        dataset(splits.x_train, splits.y_train, batch_size, options.seed, augmenter(options.seed)),
        validation_data=dataset(splits.x_val, splits.y_val, 256, options.seed),
        epochs=epochs,
        callbacks=[best],
        verbose=options.verbose,
    )
    model.load_weights(best.filepath)

    baseline_epochs = options.baseline_epochs or BASELINE_EPOCHS
    seed_model = build_seed_model()
    compile_classifier(seed_model, 1e-3)
    seed_model.fit(
        dataset(splits.x_train, splits.y_train, batch_size, options.seed),
        epochs=baseline_epochs,
        verbose=options.verbose,
    )
    return Trained(
        model=model,
        settings={
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "AdamW(weight_decay=1e-4), cosine decay with warm-up",
            "peak_learning_rate": learning_rate,
            "augmentation": "horizontal flip, rotation 0.08, zoom -20..+10%, shift 10%, "
            "contrast 0.2",
            "model_selection": "weights of the epoch with the best validation accuracy",
            "best_val_accuracy": float(max(history.history["val_accuracy"])),
        },
        baselines={
            f"seed conv net, no augmentation, {baseline_epochs} epochs": evaluate(
                seed_model, splits.x_test, splits.y_test
            ),
        },
    )


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return classification_metrics(model, x.astype(np.float32), y)


def input_spec(splits: Splits) -> InputSpec:
    return InputSpec(
        kind="image", name="image", shape=[None, IMAGE.height, IMAGE.width, 3], image=IMAGE
    )


def output_spec() -> OutputSpec:
    return OutputSpec(kind="probabilities", name="probabilities", labels=LABELS)
