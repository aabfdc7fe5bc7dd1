"""The HTTP floor: the service's request bodies validated, no model, a constant answer.

Same routes and the same card-built pydantic bodies as the service (uploads are read in full),
so its numbers are what FastAPI, uvicorn and the load generator cost on this machine: no server
that parses these requests can be faster here.

Run by `python -m bench`; by hand: `python -m uvicorn bench.floor_app:app --port 8002`.
No `from __future__ import annotations`: FastAPI must see the card-built body classes.
"""

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from app.artifact.card import ModelCard
from app.http.schemas import features_model
from bench.stand_in import stand_in_app

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


app = stand_in_app(
    "Glassbox benchmark floor (validation only)", lambda path, card: model_router(card)
)
