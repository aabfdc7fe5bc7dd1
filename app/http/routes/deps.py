"""Dependencies shared by the routers, written once as `Annotated` aliases."""

from typing import Annotated

from fastapi import Depends, Query, Request

from app.dataplane.service import InferenceService
from app.runtime.model import ModelRuntime


async def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


ServiceDep = Annotated[InferenceService, Depends(get_service)]
VersionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description="Model version to use. Omitted (with no label): the model's canary split "
        "if it has one, else its `stable` label's version, else the newest ready version.",
    ),
]
LabelQuery = Annotated[
    str | None,
    Query(
        description="A version label of the model's rollout (e.g. stable, canary) instead of "
        "a version number; see GET /api/models/{name}/rollout."
    ),
]

# The scope key under which a matched request carries the runtime that will answer it (or the
# error that answers instead), so the body is validated and served by the same version.
SERVING = "glassbox.serving"


def serving_runtime(request: Request) -> ModelRuntime:
    """The runtime chosen when the request matched, whose card validated its body."""
    runtime: ModelRuntime = request.scope[SERVING]
    return runtime
