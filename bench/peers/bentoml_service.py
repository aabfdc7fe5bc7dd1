"""The committed iris and mnist SavedModels as a BentoML 1.4 service, as BentoML's docs write
one: a class-based `@bentoml.service`, the model loaded once in `__init__`, and `batchable`
APIs so BentoML's adaptive batching gathers concurrent requests into one model call.

Started by `python -m bench` in the BentoML environment (`python -m bench.peers install`):
`bentoml serve bench.peers.bentoml_service:Peer`. Environment: GLASSBOX_MODEL_DIR (the models
folder), BENCH_PEER_WORKERS (BentoML workers, default 1) and BENCH_PEER_MAX_BATCH (64).
`max_latency_ms` stays BentoML's default (60 s): with 100 ms its dispatcher refused more than
half the iris requests at 64 connections with 503.

- iris: `POST /predict_iris` with BentoML's native body for a batchable ndarray parameter,
  `{"features": [[5.8, 3.0, 3.8, 1.2]]}`; answers the class probabilities.
- mnist: `POST /classify_mnist`, a multipart upload of the PNG (field `images`), decoded with
  Pillow and preprocessed by the same code as the service (`app.artifact.imaging`), batched.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import numpy as np
import tensorflow as tf
from PIL.Image import Image

from app.artifact import imaging
from app.artifact.card import ModelCard
from bench.cards import newest_versions

MODEL_DIR = Path(os.environ.get("GLASSBOX_MODEL_DIR", "models"))
WORKERS = int(os.environ.get("BENCH_PEER_WORKERS", "1"))
MAX_BATCH = int(os.environ.get("BENCH_PEER_MAX_BATCH", "64"))


class _SavedModel:
    def __init__(self, name: str):
        path = newest_versions(MODEL_DIR, [name])[name]
        self.card = ModelCard.read(path)
        self.function = tf.saved_model.load(str(path)).signatures["serving_default"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.function(**{self.card.input.name: tf.constant(batch, dtype=tf.float32)})
        return outputs[self.card.output.name].numpy()


@bentoml.service(workers=WORKERS, traffic={"timeout": 30})
class Peer:
    def __init__(self) -> None:
        self.iris = _SavedModel("iris")
        self.mnist = _SavedModel("mnist")

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH)
    def predict_iris(self, features: np.ndarray) -> np.ndarray:
        return self.iris(features)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH)
    def classify_mnist(self, images: list[Image]) -> np.ndarray:
        spec = self.mnist.card.input.image_spec
        batch = np.stack([imaging.preprocess(imaging.load(image), spec) for image in images])
        return self.mnist(batch)
