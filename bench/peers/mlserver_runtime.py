"""A Seldon MLServer 1.7 custom runtime over `tf.saved_model.load`, as MLServer's docs write one
(an `MLModel` with `load` and `predict`, its inputs read with MLServer's own codecs). MLServer
has no TensorFlow runtime of its own; this is the small one its "custom inference runtimes"
guide describes. Adaptive batching is MLServer's (`max_batch_size`, `max_batch_time` in each
model's settings, written by `bench.peers.registry.mlserver_settings`).

- iris: the Open Inference Protocol v2 JSON body Glassbox's /v2 route takes, FP32 `[n, 4]`.
- mnist: a BYTES input holding the PNG file, base64 in JSON, decoded by MLServer's
  `Base64Codec`, then decoded with Pillow and preprocessed by the same code as the service.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from PIL import Image

from app.artifact import imaging
from app.artifact.card import ModelCard


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        self.card = ModelCard.read(Path(path))
        self.function = tf.saved_model.load(path).signatures["serving_default"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request = payload.inputs[0]
        if request.datatype == "BYTES":
            spec = self.card.input.image_spec
            files = Base64Codec.decode_input(request)
            batch = np.stack(
                [imaging.preprocess(imaging.load(Image.open(io.BytesIO(f))), spec) for f in files]
            )
        else:
            batch = NumpyCodec.decode_input(request)
        outputs = self.function(**{self.card.input.name: tf.constant(batch, dtype=tf.float32)})[
            self.card.output.name
        ].numpy()
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(self.card.output.name, outputs)],
        )
