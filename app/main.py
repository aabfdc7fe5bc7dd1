"""The FastAPI app: settings, lifespan (models load here), routers, error handlers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.api import errors, health, models, page, typed
from app.middleware import BodySizeLimit
from app.service import InferenceService
from app.settings import Settings, get_settings

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = InferenceService(settings)
        app.state.service = service
        await service.load_all()
        for name in service.registry.names():
            newest = [r for r in service.registry.versions(name) if r.card][-1:]
            if newest:
                app.include_router(typed.model_router(newest[0].card, settings.max_instances))
        app.openapi_schema = None  # the typed routes were added after start-up
        yield
        service.close()

    app = FastAPI(
        title="Glassbox",
        version="0.1.0",
        summary="Model serving that shows its work: typed predictions and layer traces.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    return app


app = create_app()
