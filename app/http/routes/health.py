"""Liveness (the process answers) and readiness (every model that should serve does)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.http.routes.deps import ServiceDep
from app.http.schemas import Liveness, Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Liveness)
async def live() -> Liveness:
    return Liveness()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(service: ServiceDep) -> JSONResponse:
    missing = service.catalog.missing()
    body = Readiness(ready=not missing, models=service.catalog.summaries(), missing=missing)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
