"""The model list and each model's card."""

from fastapi import APIRouter

from app.artifact.card import ModelCard
from app.dataplane.schemas import ModelSummary
from app.http.routes.deps import ServiceDep, VersionQuery
from app.http.routes.errors import ERROR_RESPONSES
from app.http.schemas import ModelList

router = APIRouter(prefix="/api/models", tags=["models"], responses=ERROR_RESPONSES)


@router.get("", response_model=ModelList, summary="List the models and their versions")
async def list_models(service: ServiceDep) -> ModelList:
    return ModelList(models=service.summaries())


@router.get("/{name}", response_model=ModelSummary, summary="One model's versions and status")
async def model_status(name: str, service: ServiceDep) -> ModelSummary:
    return service.summary(name)


@router.get("/{name}/card", response_model=ModelCard, summary="A model version's card")
async def model_card(name: str, service: ServiceDep, version: VersionQuery = None) -> ModelCard:
    return service.registry.get(name, version).loaded_card
