"""The FastAPI app shared by the baseline and the floor: one router per newest model version,
plus the two routes the benchmark asks every server (liveness and the model list)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from app.artifact.card import ModelCard
from app.core.settings import get_settings
from bench.cards import newest_versions


def stand_in_app(title: str, model_router: Callable[[Path, ModelCard], APIRouter]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = get_settings()
        loaded = {}
        for name, path in newest_versions(settings.model_dir, settings.models or None).items():
            card = ModelCard.read(path)
            app.include_router(model_router(path, card))
            loaded[name] = card.version
        app.state.loaded = loaded
        yield

    app = FastAPI(title=title, lifespan=lifespan)

    @app.get("/health/live")
    async def live():
        return {"status": "alive"}

    @app.get("/api/models")
    async def models():
        return {"models": [{"name": n, "default_version": v} for n, v in app.state.loaded.items()]}

    return app
