"""Admin routes; the API key middleware lets only admin keys through to them."""

from fastapi import APIRouter

from app.dataplane.schemas import ReloadReport, RolloutStatus
from app.http.routes.deps import ServiceDep
from app.http.routes.errors import ERROR_RESPONSES
from app.runtime.rollout import RolloutPlan

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.post(
    "/reload",
    response_model=ReloadReport,
    summary="Check the model folder now",
    description="Loads new versions, drops removed ones (as the poller does every "
    "GLASSBOX_POLL_INTERVAL_S seconds). Needs an admin key (GLASSBOX_ADMIN_API_KEYS).",
)
async def reload(service: ServiceDep) -> ReloadReport:
    return await service.catalog.reload()


@router.put(
    "/models/{name}/rollout",
    response_model=RolloutStatus,
    summary="Set a model's labels, canary weights and shadow candidate",
    description="Puts the rollout in force at once and writes it to the model's rollout.json, "
    "which every other worker reads at its next poll. Refused with 409, the rollout in force "
    "staying, when a version it names is not ready or the file cannot be written. An empty "
    "body ({}) clears the rollout: the newest ready version serves every request again.",
)
async def set_rollout(name: str, plan: RolloutPlan, service: ServiceDep) -> RolloutStatus:
    return await service.catalog.set_rollout(name, plan)
