"""Admin routes; the API key middleware lets only admin keys through to them."""

from fastapi import APIRouter

from app.dataplane.schemas import ReloadReport
from app.http.routes.deps import ServiceDep
from app.http.routes.errors import ERROR_RESPONSES

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.post(
    "/reload",
    response_model=ReloadReport,
    summary="Check the model folder now",
    description="Loads new versions, drops removed ones (as the poller does every "
    "GLASSBOX_POLL_INTERVAL_S seconds). Needs an admin key (GLASSBOX_ADMIN_API_KEYS).",
)
async def reload(service: ServiceDep) -> ReloadReport:
    return await service.reload()
