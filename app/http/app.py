"""The FastAPI app: settings, lifespan (models load here), routers, error handlers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

from app.core.logging import configure_logging
from app.core.settings import Settings, get_settings
from app.dataplane.admission import InFlightLimit
from app.dataplane.service import InferenceService
from app.http.middleware.gateway import Gateway
from app.http.middleware.limits import BodyLimits
from app.http.middleware.security import KeyCheck
from app.http.observability import router as metrics_router
from app.http.routes import (
    admin,
    docs,
    errors,
    health,
    models,
    page,
    tfserving,
    v2,
    v2_repository,
)
from app.http.routes.model_routes import ModelRoutes
from app.protocols.tensors import SERVER_VERSION
from app.runtime.model import configure_threads
from app.runtime.registry import ModelRegistry

logger = logging.getLogger("app")


# Something that runs beside the HTTP app for its lifetime, on the same service and event loop
# (the gRPC server): entered once the models have loaded, left before the service closes.
Companion = Callable[[InferenceService], AbstractAsyncContextManager[None]]


def create_app(settings: Settings | None = None, companions: Sequence[Companion] = ()) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    # Made before the lifespan: the Gateway (built with the app) admits requests against it.
    registry = ModelRegistry()
    admission = InFlightLimit.of(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_threads(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
        service = InferenceService(settings, registry, admission)
        app.state.service = service
        await service.catalog.reload()
        model_routes.documented(service)  # built before the first request, not during it
        watcher = (
            asyncio.create_task(service.catalog.watch(settings.poll_interval_s))
            if settings.poll_interval_s
            else None
        )
        async with AsyncExitStack() as running:
            for companion in companions:
                await running.enter_async_context(companion(service))
            yield
        if watcher is not None:
            watcher.cancel()
        await service.aclose()

    app = FastAPI(
        title="Glassbox",
        version=SERVER_VERSION,
        summary="Model serving that shows its work: typed predictions and layer traces.",
        lifespan=lifespan,
        docs_url=None,  # routes/docs.py serves both, with their assets
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks asked the global providers on every request whether
        # they were set up (3% of an iris prediction); the service's own metrics and logs are
        # Prometheus and JSON lines (docs/operations.md).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    cors = (
        functools.partial(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
        if settings.cors_origins
        else None
    )
    app.add_middleware(
        Gateway,
        keys=KeyCheck(settings.api_keys, settings.admin_api_keys),
        admission=admission,
        limits=BodyLimits(
            settings.max_body_bytes, settings.max_json_depth, settings.body_timeout_s
        ),
        cors=cors,
    )
    errors.install(app)
    # First: it carries most of the traffic, and routes are tried in order.
    model_routes = ModelRoutes()
    app.router.routes.insert(0, model_routes)
    # FastAPI's documented way to make the schema oneself, though it types `openapi` a method.
    app.openapi = documentation(app, model_routes)  # type: ignore[method-assign]
    # Then the wire protocols, which carry the rest of the traffic: FastAPI tries an included
    # router's routes one by one, and matching past the others cost a fifth of a v2 inference.
    app.include_router(v2.router)
    app.include_router(tfserving.router)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(v2_repository.router)
    app.include_router(page.router)
    app.include_router(docs.router)
    app.include_router(metrics_router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.mount(docs.ASSETS_PATH, docs.assets, name="docs-assets")
    return app


def documentation(app: FastAPI, model_routes: ModelRoutes) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: the schema with each model's typed routes as its default version's card
    shapes them, made again when a default version's card changes."""
    made_for: list[list[BaseRoute]] = [[]]

    def openapi() -> dict[str, Any]:
        service = getattr(app.state, "service", None)
        documented = model_routes.documented(service) if service is not None else []
        if app.openapi_schema is None or documented != made_for[0]:
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=[*documented, *app.routes],
            )
            made_for[0] = documented
        return app.openapi_schema

    return openapi
