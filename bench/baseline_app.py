"""The seed-style baseline: `keras.Model.predict` per request, as the course material serves.

Each model is the newest version in GLASSBOX_MODEL_DIR, loaded with
`keras.layers.TFSMLayer(path, call_endpoint=...)` inside a `keras.Sequential`, and every request
calls its `predict` on its own one-row batch, straight from the `async def` handler (the
tutorial form: no executor, no batching, so calls run one at a time on the event loop).
Request shapes and validation are the service's (the same card-built pydantic bodies; uploads
decoded with Pillow and preprocessed by `app.artifact.imaging`), so the model call is what differs.

Run by `python -m bench`; by hand: `python -m uvicorn bench.baseline_app:app --port 8001`.
No `from __future__ import annotations`: FastAPI must see the card-built body classes.
"""

import os
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, UploadFile

from app.artifact import imaging
from app.artifact.card import ModelCard
from app.core.settings import get_settings
from app.http.schemas import features_model
from bench.stand_in import stand_in_app

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def keras_model(path: Path, card: ModelCard, endpoint: str):
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=tuple(card.input.shape[1:])),
            keras.layers.TFSMLayer(str(path), call_endpoint=endpoint),
        ]
    )


def answer(card: ModelCard, row: np.ndarray) -> dict:
    if card.output.kind == "probabilities":
        index = int(np.argmax(row))
        return {
            "model": card.name,
            "label": card.output.labels[index],
            "probabilities": {
                label: float(p) for label, p in zip(card.output.labels, row, strict=True)
            },
        }
    return {"model": card.name, "value": float(np.asarray(row).reshape(-1)[0])}


def model_router(path: Path, card: ModelCard) -> APIRouter:
    router = APIRouter(prefix=f"/api/models/{card.name}")
    model = keras_model(path, card, "serving_default")
    output = card.output.name

    if card.input.kind == "features":
        Features = features_model(card)
        names = [spec.name for spec in card.input.features]
        trace_model = keras_model(path, card, "trace")

        @router.post("/predict")
        async def predict(body: Features):
            x = np.array([[getattr(body, name) for name in names]], dtype=np.float32)
            return answer(card, model.predict(x, verbose=0)[output][0])

        @router.post("/trace")
        async def trace(body: Features):
            x = np.array([[getattr(body, name) for name in names]], dtype=np.float32)
            outputs = trace_model.predict(x, verbose=0)
            layers = [
                {"name": spec.name, "values": outputs[spec.trace_key][0].tolist()}
                for spec in card.layers
            ]
            last = outputs[card.layers[-1].trace_key][0]
            return {"layers": layers, "prediction": answer(card, last)}

    else:
        settings = get_settings()

        @router.post("/predict")
        async def predict_upload(file: Annotated[UploadFile, File()]):
            image = imaging.decode(
                await file.read(),
                max_bytes=settings.max_image_bytes,
                max_pixels=settings.max_image_pixels,
            )
            x = imaging.preprocess(image, card.input.image)[np.newaxis]
            return answer(card, model.predict(x, verbose=0)[output][0])

    return router


app = stand_in_app("Glassbox benchmark baseline (Keras model.predict)", model_router)
