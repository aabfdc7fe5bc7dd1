"""The model list and each model's card."""

from fastapi import APIRouter

from app.artifact.card import ModelCard
from app.dataplane.schemas import ModelDrift, ModelSummary, RolloutStatus
from app.http.routes.deps import ServiceDep, VersionQuery
from app.http.routes.errors import ERROR_RESPONSES
from app.http.schemas import ModelList
from app.runtime.registry import Asked

router = APIRouter(prefix="/api/models", tags=["models"], responses=ERROR_RESPONSES)


@router.get("", response_model=ModelList, summary="List the models and their versions")
async def list_models(service: ServiceDep) -> ModelList:
    return ModelList(models=service.catalog.summaries())


@router.get("/{name}", response_model=ModelSummary, summary="One model's versions and status")
async def model_status(name: str, service: ServiceDep) -> ModelSummary:
    return service.catalog.summary(name)


@router.get("/{name}/card", response_model=ModelCard, summary="A model version's card")
async def model_card(name: str, service: ServiceDep, version: VersionQuery = None) -> ModelCard:
    return service.registry.resolve(name, Asked(version=version)).loaded_card


@router.get(
    "/{name}/rollout",
    response_model=RolloutStatus,
    summary="A model's labels, canary split and shadow comparison",
    description="The rollout in force, and how the shadow candidate's answers differ from "
    "the default version's, as this worker has counted them (Prometheus sums the workers).",
)
async def rollout_status(name: str, service: ServiceDep) -> RolloutStatus:
    service.registry.versions(name)  # 404 for an unknown model
    return service.catalog.rollout_status(name)


@router.get(
    "/{name}/drift",
    response_model=ModelDrift,
    summary="A model version's traffic against its training distribution",
    description="Each figure of the version's rolling window of answered predictions "
    "(GLASSBOX_DRIFT_WINDOW, per worker) against the training distribution in its card: its "
    "population stability index, the card's threshold and whether it is crossed; null figures "
    "while the window holds fewer than min_rows predictions (not enough data). docs/drift.md.",
)
async def model_drift(name: str, service: ServiceDep, version: VersionQuery = None) -> ModelDrift:
    runtime = service.registry.resolve(name, Asked(version=version))
    return service.predictor.drift.report(runtime)
