"""The HTTP floor: the service's request bodies validated, no model, a constant answer.

Same routes and the same card-built pydantic bodies as the service (uploads are read in full),
so its numbers are what FastAPI, uvicorn and the load generator cost on this machine: no server
that parses these requests can be faster here.

Run by `python -m bench`; by hand: `python -m uvicorn bench.floor_app:app --port 8002`.
No `from __future__ import annotations`: FastAPI must see the card-built body classes.
"""

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, UploadFile

from app.card import ModelCard
from app.schemas import features_model
from app.settings import get_settings
from bench.cards import newest_versions

CONSTANT = {"model": "floor", "label": "floor", "value": 0.0}


def model_router(card: ModelCard) -> APIRouter:
    router = APIRouter(prefix=f"/api/models/{card.name}")

    if card.input.kind == "features":
        Features = features_model(card)

        @router.post("/predict")
        async def predict(body: Features):
            return CONSTANT

        @router.post("/trace")
        async def trace(body: Features):
            return CONSTANT

    else:

        @router.post("/predict")
        async def predict_upload(file: Annotated[UploadFile, File()]):
            await file.read()
            return CONSTANT

    return router


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    loaded = {}
    for name, path in newest_versions(settings.model_dir, settings.models or None).items():
        card = ModelCard.read(path)
        app.include_router(model_router(card))
        loaded[name] = card.version
    app.state.loaded = loaded
    yield


app = FastAPI(title="Glassbox benchmark floor (validation only)", lifespan=lifespan)


@app.get("/health/live")
async def live():
    return {"status": "alive"}


@app.get("/api/models")
async def models():
    return {"models": [{"name": n, "default_version": v} for n, v in app.state.loaded.items()]}
